"""Reading and writing images, tensor conversion and bundled sample images.

Images travel through the library as float32 NumPy arrays of shape (H, W, C) on the [0, 1] scale
(grayscale is (H, W, 1)); :func:`as_bchw` / :func:`from_bchw` are the library's one conversion between
images (NumPy channels-last or torch channels-first, with or without batch axis) and (B, C, H, W) tensors,
and :func:`to_tensor` / :func:`from_tensor` its (1, C, H, W) float shorthands. :func:`read_image` returns an :class:`ImageInfo` next to the array so that
:func:`write_image` can save the result in the input's bit depth (``like=info``).

Formats: TIFF (``.tif``/``.tiff``, through tifffile: 8-, 16-bit and float), ``.npy`` (any numeric
dtype), and everything imageio reads (PNG, JPEG, BMP, ...). Integer images are scaled by the maximum
of their dtype (8-bit / 255, 16-bit / 65535); float images are kept as they are (not clipped).
Limitation: the Pillow PNG writer stores 16 bits only for single-channel images, so a 16-bit colour
image must be written as TIFF or ``.npy``.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from fastdenoise.layout import Layout  # noqa: F401  (the library's image/tensor conversions)
from fastdenoise.layout import as_bchw  # noqa: F401
from fastdenoise.layout import from_bchw  # noqa: F401
from fastdenoise.layout import from_tensor  # noqa: F401
from fastdenoise.layout import to_tensor  # noqa: F401

__all__ = ["ImageInfo", "Layout", "SAMPLES", "as_bchw", "check_axes", "from_bchw", "from_tensor", "guess_axes",
           "load_sample", "read_image", "read_stack", "to_tensor", "write_image", "write_stack"]

TIFF_EXT = (".tif", ".tiff")
NPY_EXT = (".npy",)
SAMPLES = ("astronaut", "chelsea", "coffee", "camera")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` / :func:`read_stack` learned about a file.

    Attributes:
        path: absolute path of the file read.
        dtype: NumPy dtype name of the stored data (``"uint8"``, ``"uint16"``, ``"float32"`` ...).
        bit_depth: 8 or 16 for integer data scaled to [0, 1]; 32 for float data (kept as is); for
            other integer types the number of bits of the dtype.
        shape: shape of the stored array as read (before any channel axis was added or moved).
        channels: number of channels of the returned (H, W, C) array.
        planar: the file stored channels first (C, H, W), which was moved last.
        axes: the file's axes, one letter each (``Y``, ``X``, ``C`` for channels, any other letter a stack
            axis such as ``Z`` or ``T``), e.g. ``"YXC"``, ``"ZYX"``, ``"TYXC"``.
        guessed: ``axes`` was guessed (no ``axes`` argument was given).
        slices: number of 2-D images (the product of the stack axes; 1 for a plain image).
        alpha: the last channel is an alpha channel (RGBA or gray + alpha from an image format).
    """

    path: str
    dtype: str
    bit_depth: int
    shape: tuple
    channels: int
    planar: bool = False
    axes: str = ""
    guessed: bool = True
    slices: int = 1
    alpha: bool = False

    def describe(self) -> str:
        """One line: the axes (and whether they were guessed) and what they mean."""
        h, w = (self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]) if self.axes else (0, 0)
        what = f"{self.slices} slice(s) of {h}x{w}" if self.slices > 1 else f"{h}x{w}"
        alpha = " + alpha" if self.alpha else ""
        how = "guessed, --axes to override" if self.guessed else "given"
        return (f"axes {self.axes} ({how}): {what}, {self.channels - int(self.alpha)} channel(s){alpha}, "
                f"{self.dtype}")


def _ext(path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _raw_read(path: str) -> np.ndarray:
    ext = _ext(path)
    if ext in NPY_EXT:
        return np.load(path, allow_pickle=False)
    if ext in TIFF_EXT:
        import tifffile

        return tifffile.imread(path)
    import imageio.v3 as iio

    return iio.imread(path)


def _tiff_read(path: str) -> tuple[np.ndarray, str | None, bool]:
    """The first series of a TIFF, its axes when they are informative (None for bare pages) and whether the
    last sample is alpha."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        raw = series.asarray()
        axes = series.axes.replace("S", "C")
        page = tf.pages[0]
        alpha = any(int(e) in (1, 2) for e in (getattr(page, "extrasamples", ()) or ()))
    if raw.shape != tuple(series.shape):   # tifffile squeezes length-1 axes in some series
        axes = None
    if axes is not None and ("Q" in axes or "I" in axes):
        axes = None                         # bare pages: a stack, or an old multi-channel write (guess)
    return raw, axes, alpha


def guess_axes(shape: tuple, pages: bool = False) -> str:
    """The axes of an array of ``shape`` as fastdenoise guesses them.

    2-D: ``YX``. 3-D: ``YXC`` when the last axis is short (<= 4: gray+alpha, RGB, RGBA) or the shortest,
    else ``CYX`` when the first is <= 4 (planar colour), else ``ZYX`` (a stack of 2-D images); ``pages``
    (the leading axis counts the pages of a multi-page TIFF) means a stack. 4-D and more: leading stack axes,
    then ``YXC`` when the last axis is short, ``CYX`` when the third-last is, else ``YX``.
    """
    n = len(shape)
    if n < 2:
        raise ValueError(f"an image needs at least 2 axes, got shape {tuple(shape)}")
    stack = "ZTQPRUVW"
    if n == 2:
        return "YX"
    if n == 3:
        if pages:
            return "ZYX"
        if shape[-1] <= 4 or shape[-1] < min(shape[:2]):
            return "YXC"
        return "CYX" if shape[0] <= 4 else "ZYX"
    lead = stack[: n - 3]
    if shape[-1] <= 4:
        return lead + "YXC"
    if shape[-3] <= 4:
        return lead + "CYX"
    return stack[: n - 2] + "YX"


def check_axes(axes: str, shape: tuple, path: str = "image") -> str:
    """``axes`` upper-cased and checked against ``shape``: one letter per axis, exactly one ``Y`` and one
    ``X``, at most one ``C`` (or ``S``), no letter twice."""
    a = str(axes).upper().replace("S", "C")
    if len(a) != len(shape):
        raise ValueError(f"{path}: axes {axes!r} has {len(a)} letters but the data have {len(shape)} axes "
                         f"(shape {tuple(shape)})")
    if not a.isalpha() or a.count("Y") != 1 or a.count("X") != 1 or a.count("C") > 1 or len(set(a)) != len(a):
        raise ValueError(f"{path}: axes {axes!r} must name each axis once with one letter: exactly one Y and one "
                         f"X, at most one C (channels); other letters (Z, T, ...) are stack axes")
    return a


def _to_canonical(raw: np.ndarray, axes: str) -> np.ndarray:
    """(N, H, W, C): the stack axes (file order) flattened into N, channels last (C = 1 when absent)."""
    stack = [i for i, c in enumerate(axes) if c not in "YXC"]
    order = stack + [axes.index("Y"), axes.index("X")] + ([axes.index("C")] if "C" in axes else [])
    arr = np.transpose(raw, order)
    if "C" not in axes:
        arr = arr[..., None]
    return arr.reshape((-1,) + arr.shape[-3:])


def _from_canonical(vol: np.ndarray, axes: str, shape: tuple) -> np.ndarray:
    """Inverse of :func:`_to_canonical`: ``vol`` (N, H, W, C) back in the file's ``axes`` and ``shape``."""
    stack = [i for i, c in enumerate(axes) if c not in "YXC"]
    order = stack + [axes.index("Y"), axes.index("X")] + ([axes.index("C")] if "C" in axes else [])
    arr = vol.reshape(tuple(shape[i] for i in order) if "C" in axes else
                      tuple(shape[i] for i in order) + (vol.shape[-1],))
    if "C" not in axes:
        arr = arr[..., 0]
    return np.transpose(arr, np.argsort(order))


def _to_float(arr: np.ndarray, path: str) -> tuple[np.ndarray, int]:
    """Stored values -> float32 on [0, 1] (integers by the maximum of their dtype) and the bit depth."""
    dt = arr.dtype
    if dt == np.bool_:
        return arr.astype(np.float32), 1
    if np.issubdtype(dt, np.integer):
        return (arr.astype(np.float64) / float(np.iinfo(dt).max)).astype(np.float32), dt.itemsize * 8
    if np.issubdtype(dt, np.floating) and dt.itemsize <= 8:
        return arr.astype(np.float32), 32
    raise ValueError(f"image {path!r} has unsupported dtype {dt} (supported: bool, integers, float16/32/64)")


def read_stack(path, axes: str | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Read an image or a stack of 2-D images as a float32 (N, H, W, C) array on [0, 1].

    Multi-page and 3-D TIFF and N-D ``.npy`` files are stacks: every axis other than Y, X and C is a stack
    axis, flattened (in file order) into N. The axes come from the TIFF metadata where it names them (ImageJ,
    OME, tifffile's own), else from :func:`guess_axes`; ``axes`` overrides both. :func:`write_stack` with
    ``like=info`` puts a result back in the file's layout and dtype.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded, is empty, has an unsupported dtype, NaN or infinite values,
            or axes that do not fit; the message names the path and the problem.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path does not exist or is not a file: {path!r}")
    ext, file_axes, alpha = _ext(path), None, False
    try:
        if ext in TIFF_EXT:
            raw, file_axes, alpha = _tiff_read(path)
            pages = file_axes is None
        else:
            raw, pages = np.asarray(_raw_read(path)), False
    except Exception as e:  # decoders raise many different types
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot read image {path!r}: not a decodable {ext or 'image'} file "
                         f"({type(e).__name__}: {first})") from e
    shape = tuple(raw.shape)
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"image {path!r} has unsupported dtype {raw.dtype} (supported: bool, integers, "
                         f"float16/32/64)")
    if raw.size == 0 or raw.ndim < 2:
        raise ValueError(f"image {path!r} is empty (shape {shape})")
    given = axes is not None
    if given:
        ax = check_axes(axes, shape, path)
    else:
        ax = file_axes if file_axes is not None and "Y" in file_axes and "X" in file_axes else None
        if ext in TIFF_EXT and ax is None and raw.ndim == 3:
            import tifffile

            with tifffile.TiffFile(path) as tf:      # an old fastdenoise multi-channel TIFF: one shape entry
                shaped = bool(tf.is_shaped) and len(tf.pages) == shape[0] and shape[-1] <= 4
            pages = pages and not shaped
        ax = check_axes(ax or guess_axes(shape, pages=pages), shape, path)
    vol = _to_canonical(raw, ax)
    img, depth = _to_float(vol, path)
    bad = ~np.isfinite(img)
    if bad.any():
        n_nan = int(np.isnan(img).sum())
        raise ValueError(f"image {path!r} has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s) "
                         f"out of {img.size}: refusing to denoise it (fix or mask them first)")
    c = img.shape[-1]
    if ext not in TIFF_EXT + NPY_EXT:
        alpha = c in (2, 4)                      # gray + alpha, RGBA from an image format
    else:
        alpha = alpha and c in (2, 4)
    info = ImageInfo(path=path, dtype=str(raw.dtype), bit_depth=depth, shape=shape, channels=int(c),
                     planar=ax.index("C") < ax.index("Y") if "C" in ax else False, axes=ax, guessed=not given,
                     slices=int(img.shape[0]), alpha=alpha)
    return np.ascontiguousarray(img), info


def read_image(path) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as a float32 (H, W, C) array on [0, 1].

    Args:
        path: file to read (PNG, JPEG, TIFF 8/16-bit/float, ``.npy``, or anything imageio reads).

    Returns:
        ``(image, info)``: the image, float32 (H, W, C) (grayscale (H, W, 1)), and an
        :class:`ImageInfo` with the stored dtype, bit depth and shape.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded, does not hold one 2-D image (a stack: use
            :func:`read_stack`), or holds NaN/infinite values; the message names the path.
    """
    vol, info = read_stack(path)
    if vol.shape[0] != 1:
        raise ValueError(f"image {info.path!r} holds a stack ({info.describe()}); read it with read_stack")
    return vol[0], info


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _encode(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth == 8:
        return np.floor(np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if bit_depth == 16:
        return np.floor(np.clip(arr.astype(np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    return arr.astype(np.float32)


def write_image(path, image, *, bit_depth: int | None = None, like: ImageInfo | None = None,
                protect: Iterable = (), overwrite: bool = True) -> str:
    """Write a [0, 1] image atomically.

    The data go to a temporary file in the destination directory, which is then moved over ``path``
    with ``os.replace``; on any error the temporary file is removed and ``path`` is untouched.

    Args:
        path: destination; the format follows the extension (``.png``, ``.jpg``, ``.tif``, ``.npy`` ...).
        image: (H, W), (H, W, C) array or a (C, H, W) / (1, C, H, W) tensor, values on [0, 1].
            Integer outputs are clipped to [0, 1] and rounded half up; float outputs are stored as is.
        bit_depth: 8, 16 or 32 (float32; TIFF and ``.npy`` only). None keeps ``like.bit_depth`` where
            the format can store it (else 16 for a grayscale PNG, 8 otherwise; 8 for an input of
            another integer depth); without ``like``: 8 (32 for ``.npy``).
        like: the :class:`ImageInfo` of the input this result comes from; its file is protected.
        protect: further paths that must never be overwritten (the inputs of a run).
        overwrite: if False, refuse to replace any existing file.

    Returns:
        The absolute path written.

    Raises:
        FileExistsError: ``path`` is an input (in ``protect`` or ``like.path``), or exists and
            ``overwrite`` is False.
        ValueError: bad ``image`` shape, ``bit_depth`` or format/bit-depth combination.
    """
    path = os.path.abspath(os.fspath(path))
    ext = _ext(path)
    protected = [os.fspath(p) for p in protect]
    if like is not None:
        protected.append(like.path)
    _check_target(path, protected, overwrite)
    if isinstance(image, torch.Tensor):
        image = from_tensor(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] < 1 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {np.asarray(image).shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        raise ValueError(f"integer image must be uint8 or a float [0, 1] image, got dtype {arr.dtype}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    if bit_depth is None:
        if like is not None:
            # the input's depth where this format can store it, else the format's best
            bit_depth = like.bit_depth if like.bit_depth in (8, 16, 32) else 8
            if ext not in TIFF_EXT + NPY_EXT and bit_depth > 8:
                bit_depth = 16 if ext == ".png" and arr.shape[2] == 1 else 8
        else:
            bit_depth = 32 if ext in NPY_EXT else 8
    if bit_depth not in (8, 16, 32):
        raise ValueError(f"bit_depth must be 8, 16, 32 or None, got {bit_depth!r}")
    if bit_depth == 32 and ext not in TIFF_EXT + NPY_EXT:
        raise ValueError(f"bit_depth=32 (float) needs a .tif/.tiff or .npy path, got {path!r}")
    if bit_depth == 16 and ext not in TIFF_EXT + NPY_EXT + (".png",):
        raise ValueError(f"bit_depth=16 needs a .png, .tif/.tiff or .npy path, got {path!r}")
    if bit_depth == 16 and ext == ".png" and arr.shape[2] != 1:
        raise ValueError(f"16-bit PNG is only supported for single-channel images (got {arr.shape[2]} channels); "
                         f"use .tif or .npy for {path!r}")
    data = _encode(arr, bit_depth)
    if data.shape[2] == 1 and ext not in NPY_EXT:
        data = data[:, :, 0]
    elif ext in NPY_EXT and like is not None and len(like.shape) == 2 and data.shape[2] == 1:
        data = data[:, :, 0]
    _store(path, data)
    return path


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def _store(path: str, data: np.ndarray, axes: str | None = None) -> None:
    """Write ``data`` (already encoded) to ``path`` atomically: a temporary file in the same directory, given the
    permissions a plain ``open`` would (0666 minus the umask; ``mkstemp`` makes 0600), then ``os.replace``."""
    ext = _ext(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory of path does not exist: {directory!r}")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + ext, dir=directory)
    os.close(fd)
    try:
        if ext in NPY_EXT:
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
        elif ext in TIFF_EXT:
            import tifffile

            kw = {}
            if axes is not None:
                kw["metadata"] = {"axes": axes}
                c = data.shape[axes.index("C")] if "C" in axes else 1
                rgb = c in (3, 4) and axes.endswith("YXC") and data.dtype in (np.uint8, np.uint16)
                kw["photometric"] = "rgb" if rgb else "minisblack"
                if "C" in axes and not rgb:
                    kw["planarconfig"] = "contig" if axes.endswith("YXC") else "separate"
            elif data.ndim == 2 or (data.ndim == 3 and data.shape[2] not in (3, 4)):
                kw = {"photometric": "minisblack", "planarconfig": "contig" if data.ndim == 3 else None}
            tifffile.imwrite(tmp, data, **kw)
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, data, extension=ext)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, (OSError, ValueError)):
            raise ValueError(f"cannot write image {path!r}: {type(e).__name__}: {e}") from e
        raise


def _encode_as(arr: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] floats -> ``dtype`` the way :func:`read_stack` decoded it (integers x their maximum, rounded half
    up and clipped; floats stored as they are; bool >= 0.5)."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return arr >= 0.5
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        v = np.floor(arr.astype(np.float64) * float(info.max) + 0.5)
        return np.clip(v, max(info.min, -info.max), info.max).astype(dt)
    return arr.astype(dt)


def write_stack(path, vol, *, like: ImageInfo, protect: Iterable = (), overwrite: bool = True) -> str:
    """Write the (N, H, W, C) [0, 1] result ``vol`` of the input ``like`` in the input's layout.

    TIFF and ``.npy`` keep the input's shape (axes order, stack axes) and dtype; other formats hold one
    image (N = 1) and follow :func:`write_image`'s bit-depth rules. Atomic, never over an input.
    """
    path = os.path.abspath(os.fspath(path))
    vol = np.asarray(vol)
    if vol.ndim != 4 or vol.shape[0] != like.slices or vol.shape[-1] != like.channels:
        raise ValueError(f"vol must be (N, H, W, C) = ({like.slices}, H, W, {like.channels}) for {like.path!r}, "
                         f"got shape {vol.shape}")
    ext = _ext(path)
    if ext not in TIFF_EXT + NPY_EXT:
        if vol.shape[0] != 1:
            raise ValueError(f"a stack of {vol.shape[0]} images needs a .tif or .npy path, got {path!r}")
        return write_image(path, vol[0], like=like, protect=protect, overwrite=overwrite)
    _check_target(path, [os.fspath(p) for p in protect] + [like.path], overwrite)
    data = _from_canonical(_encode_as(vol, like.dtype), like.axes, like.shape)
    _store(path, np.ascontiguousarray(data), like.axes if ext in TIFF_EXT else None)
    return path


def _check_target(path: str, protected: list, overwrite: bool) -> None:
    if os.path.exists(path):
        for p in protected:
            if _same_file(path, p):
                raise FileExistsError(f"refusing to overwrite input image {path!r}: write the result elsewhere")
        if not overwrite:
            raise FileExistsError(f"path already exists and overwrite=False: {path!r}")


def load_sample(name: str = "astronaut", crop: int | None = 256) -> np.ndarray:
    """A bundled skimage.data image as float32 (H, W, C) on [0, 1], centre-cropped to ``crop``.

    Args:
        name: one of ``"astronaut"`` (512x512 RGB), ``"chelsea"`` (300x451 RGB), ``"coffee"`` (400x600
            RGB), ``"camera"`` (512x512 grayscale, returned as (H, W, 1)).
        crop: side of the centred square crop (None: the whole image); at most the smaller side.
    """
    if name not in SAMPLES:
        raise ValueError(f"name must be one of {SAMPLES}, got {name!r}")
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w = arr.shape[:2]
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)):
            raise TypeError(f"crop must be an int or None, got {type(crop).__name__}")
        if not 1 <= crop <= min(h, w):
            raise ValueError(f"crop must be in [1, {min(h, w)}] for {name!r} ({h}x{w}), got {crop}")
        top, left = (h - crop) // 2, (w - crop) // 2
        arr = arr[top:top + crop, left:left + crop]
    return np.ascontiguousarray(arr.astype(np.float32) / 255.0)
