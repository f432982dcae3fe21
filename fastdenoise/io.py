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

__all__ = ["ImageInfo", "Layout", "SAMPLES", "as_bchw", "from_bchw", "from_tensor", "load_sample", "read_image",
           "to_tensor", "write_image"]

TIFF_EXT = (".tif", ".tiff")
NPY_EXT = (".npy",)
SAMPLES = ("astronaut", "chelsea", "coffee", "camera")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` learned about a file.

    Attributes:
        path: absolute path of the file read.
        dtype: NumPy dtype name of the stored data (``"uint8"``, ``"uint16"``, ``"float32"`` ...).
        bit_depth: 8 or 16 for integer data scaled to [0, 1]; 32 for float data (kept as is); for
            other integer types the number of bits of the dtype.
        shape: shape of the stored array as read (before any channel axis was added or moved).
        channels: number of channels of the returned (H, W, C) array.
        planar: the file stored channels first (C, H, W), which was moved last.
    """

    path: str
    dtype: str
    bit_depth: int
    shape: tuple
    channels: int
    planar: bool = False


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


def read_image(path) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as a float32 (H, W, C) array on [0, 1].

    Args:
        path: file to read (PNG, JPEG, TIFF 8/16-bit/float, ``.npy``, or anything imageio reads).

    Returns:
        ``(image, info)``: the image, float32 (H, W, C) (grayscale (H, W, 1)), and an
        :class:`ImageInfo` with the stored dtype, bit depth and shape.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded or does not hold a 2-D image; the message names the path.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path does not exist or is not a file: {path!r}")
    try:
        raw = np.asarray(_raw_read(path))
    except Exception as e:  # decoders raise many different types
        raise ValueError(f"cannot read image {path!r}: {type(e).__name__}: {e}") from e
    shape = tuple(raw.shape)
    planar = False
    if raw.ndim == 2:
        arr = raw[:, :, None]
    elif raw.ndim == 3:
        arr = raw
        if raw.shape[-1] > 4 and raw.shape[0] <= 4:
            arr, planar = np.moveaxis(raw, 0, -1), True
    else:
        raise ValueError(f"image {path!r} must hold a 2-D image (H, W) or (H, W, C), got an array of shape {shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"image {path!r} is empty (shape {shape})")
    dt = arr.dtype
    if dt == np.bool_:
        img, depth = arr.astype(np.float32), 1
    elif np.issubdtype(dt, np.unsignedinteger):
        depth = dt.itemsize * 8
        img = (arr.astype(np.float64) / float(np.iinfo(dt).max)).astype(np.float32)
    elif np.issubdtype(dt, np.signedinteger):
        depth = dt.itemsize * 8
        img = (arr.astype(np.float64) / float(np.iinfo(dt).max)).astype(np.float32)
    elif np.issubdtype(dt, np.floating):
        img, depth = arr.astype(np.float32), 32
    else:
        raise ValueError(f"image {path!r} has unsupported dtype {dt}")
    info = ImageInfo(path=path, dtype=str(dt), bit_depth=depth, shape=shape, channels=int(img.shape[2]),
                     planar=planar)
    return np.ascontiguousarray(img), info


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
    if os.path.exists(path):
        for p in protected:
            if _same_file(path, p):
                raise FileExistsError(f"refusing to overwrite input image {path!r}: write the result elsewhere")
        if not overwrite:
            raise FileExistsError(f"path already exists and overwrite=False: {path!r}")
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

            tifffile.imwrite(tmp, data, photometric="minisblack" if data.ndim == 2 else None)
        else:
            import imageio.v3 as iio

            iio.imwrite(tmp, data, extension=ext)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, (OSError, ValueError)):
            raise ValueError(f"cannot write image {path!r}: {type(e).__name__}: {e}") from e
        raise
    return path


@dataclass(frozen=True)
class Layout:
    """How an image was laid out before :func:`as_bchw` (what :func:`from_bchw` restores)."""

    kind: str              # "numpy" or "torch"
    ndim: int
    device: object = None


def as_bchw(name: str, image) -> tuple[torch.Tensor, Layout]:
    """The one image -> tensor conversion: a (B, C, H, W) tensor view of ``image`` (dtype kept) and its layout.

    ``image`` is a NumPy array (H, W), (H, W, C) or (B, H, W, C) (channels last, as images are stored) or
    a torch tensor (H, W), (C, H, W) or (B, C, H, W) (channels first, as networks take them). Errors name
    the argument ``name``.
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3, 4):
            raise ValueError(f"{name} must be a NumPy array of shape (H, W), (H, W, C) or (B, H, W, C), "
                             f"got shape {image.shape}")
        a = image[None, :, :, None] if image.ndim == 2 else image[None] if image.ndim == 3 else image
        # a channels-first copy with standard strides (reductions then see the usual memory order)
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))), Layout("numpy", image.ndim)
    if isinstance(image, torch.Tensor):
        if image.dim() not in (2, 3, 4):
            raise ValueError(f"{name} must be a tensor of shape (B, C, H, W), (C, H, W) or (H, W), "
                             f"got shape {tuple(image.shape)}")
        t = image[None, None] if image.dim() == 2 else image[None] if image.dim() == 3 else image
        return t, Layout("torch", image.dim(), image.device)
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(image).__name__}")


def from_bchw(t: torch.Tensor, layout: Layout):
    """Inverse of :func:`as_bchw`: the (B, C, H, W) tensor ``t`` in the original kind and shape (dtype kept)."""
    if layout.kind == "torch":
        out = t[0, 0] if layout.ndim == 2 else t[0] if layout.ndim == 3 else t
        return out.to(layout.device)
    a = t.detach().cpu().permute(0, 2, 3, 1).numpy()
    a = a[0, :, :, 0] if layout.ndim == 2 else a[0] if layout.ndim == 3 else a
    return np.ascontiguousarray(a)


def to_tensor(img, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> contiguous (1, C, H, W) tensor."""
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"img must have shape (H, W) or (H, W, C), got {arr.shape}")
    return as_bchw("img", arr)[0].to(device=device, dtype=dtype).contiguous()


def from_tensor(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> float32 (H, W, C) array (detached, on the CPU)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 4 and t.shape[0] != 1:
        raise ValueError(f"t must hold one image (batch size 1), got shape {tuple(t.shape)}")
    if t.dim() not in (3, 4):
        raise ValueError(f"t must have shape (1, C, H, W) or (C, H, W), got {tuple(t.shape)}")
    return from_bchw(t.detach().to("cpu", torch.float32).reshape(1, *t.shape[-3:]), Layout("numpy", 3))


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
