"""Synthetic noise in the Nb2Nb / Laine19 convention (METHODS.md §1.1).

* Gaussian: ``y = x + sigma / 255 * N(0, 1)``; ``sigma`` is quoted on the 0-255 scale. **No clipping.**
  A range ``(lo, hi)`` draws one std per image, uniform in [lo, hi] / 255 (e.g. gauss5_50).
* Poisson: ``y = Poisson(lam * x) / lam`` with ``x`` in [0, 1]; ``lam`` a number or a range (one
  ``lam`` per image, uniform in [lo, hi]).
* Spatially correlated (the case APR-RD and P2N were made for; Nb2Nb and Noise2Same assume independent
  pixels): ``correlated:SIGMA[:K]`` is white Gaussian noise filtered per channel by the K x K binomial
  kernel (K odd, default 3), scaled back to a per-pixel std of ``SIGMA / 255``; ``demosaic:LAM[:READ]`` is
  a raw sensor image: the clean RGB image sampled on an RGGB Bayer mosaic, Poisson-Gaussian noise on the
  mosaic (``Poisson(lam * x) / lam`` plus read noise of std ``READ / 255``, default 2), then bilinear
  demosaicing, so neighbouring pixels and channels share noise.

Randomness: a ``torch.Generator`` on the CPU seeded with ``seed``; all values are drawn on the CPU and
moved to ``x``'s device, so a given seed gives the same noise on every device. Draw order: with a
range, first one uniform per image (the per-image parameter), then the noise field. "Image" means
the leading axis of a 4-D input ((B, C, H, W) tensor or (B, H, W, C) array); a 2-D or 3-D input is a
single image. Torch tensors and NumPy arrays are accepted and the result has the input's type, dtype
and shape.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_seed
from fastdenoise._runtime import opmath_dtype

__all__ = ["NoiseSpec", "add_correlated", "add_demosaic", "add_gaussian", "add_noise", "add_poisson",
           "parse_noise"]


def _as_tensor(name: str, x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        t, is_np = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        t, is_np = x, False
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating point image on [0, 1], got dtype {t.dtype}")
    if t.dim() < 2 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty image with at least 2 dims, got shape {tuple(t.shape)}")
    return t, is_np


def _check_level(name: str, v, *, lo_open: bool) -> float | tuple[float, float]:
    """A non-negative (or positive) number, or an ordered (lo, hi) pair of them."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {v!r}")
        lo = check_float(f"{name}[0]", v[0], lo=0.0, lo_open=lo_open)
        hi = check_float(f"{name}[1]", v[1], lo=0.0, lo_open=lo_open)
        if hi < lo:
            raise ValueError(f"{name} must satisfy lo <= hi, got {v!r}")
        return (lo, hi)
    return check_float(name, v, lo=0.0, lo_open=lo_open)


def _per_image(level, n_img: int, g: torch.Generator) -> torch.Tensor:
    """float64 (n_img,) parameter values: the constant, or uniform draws in [lo, hi]."""
    if isinstance(level, tuple):
        lo, hi = level
        return lo + (hi - lo) * torch.rand(n_img, generator=g, dtype=torch.float64)
    return torch.full((n_img,), float(level), dtype=torch.float64)


def _bshape(t: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    if t.dim() == 4:
        return t.shape[0], (t.shape[0], 1, 1, 1)
    return 1, (1,) * t.dim()


def _finish(y: torch.Tensor, is_np: bool):
    return y.numpy() if is_np else y


def add_gaussian(x, sigma, seed: int):
    """Add white Gaussian noise with std ``sigma / 255`` (not clipped).

    Args:
        x: clean image on [0, 1]: tensor or array, any layout; a 4-D input is a batch.
        sigma: std on the 0-255 scale, or ``(lo, hi)``: one std per image, uniform in [lo, hi].
        seed: integer seed of the CPU ``torch.Generator``.

    Returns:
        The noisy image, same type, dtype, device and shape as ``x``.
    """
    t, is_np = _as_tensor("x", x)
    sigma = _check_level("sigma", sigma, lo_open=False)
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, bshape = _bshape(t)
    std = _per_image(sigma, n_img, g) / 255.0
    work = opmath_dtype(t.dtype)
    z = torch.randn(t.shape, generator=g, dtype=work)
    noise = (z * std.to(work).view(bshape)).to(device=t.device)
    y = (t.to(work) + noise).to(t.dtype)
    return _finish(y, is_np)


def add_poisson(x, lam, seed: int):
    """Poisson noise ``Poisson(lam * x) / lam`` (values are not clipped).

    Args:
        x: clean image on [0, 1] (must be >= 0): tensor or array; a 4-D input is a batch.
        lam: photon count scale (> 0), or ``(lo, hi)``: one value per image, uniform in [lo, hi].
        seed: integer seed of the CPU ``torch.Generator``.

    Returns:
        The noisy image, same type, dtype, device and shape as ``x``.
    """
    t, is_np = _as_tensor("x", x)
    lam = _check_level("lam", lam, lo_open=True)
    g = torch.Generator().manual_seed(check_seed(seed))
    if bool((t < 0).any()) or bool(torch.isnan(t).any()):
        raise ValueError("x must be >= 0 (and not NaN) for Poisson noise")
    n_img, bshape = _bshape(t)
    lam_t = _per_image(lam, n_img, g).view(bshape)
    rate = t.detach().to("cpu", torch.float64) * lam_t
    counts = torch.poisson(rate, generator=g)
    y = (counts / lam_t).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)


def _binomial(k: int) -> torch.Tensor:
    """The k x k binomial kernel (outer product of a row of binomial coefficients), float64."""
    row = torch.tensor([float(math.comb(k - 1, i)) for i in range(k)], dtype=torch.float64)
    return row[:, None] * row[None, :]


def _planes(t: torch.Tensor, is_np: bool):
    """float64 CPU (B*C, 1, H, W) planes of an image (arrays channels-last: (H, W), (H, W, C), (B, H, W, C);
    tensors channels-first: (H, W), (C, H, W), (B, C, H, W)) and the function that restores the layout."""
    d = t.dim()
    if d == 2:
        b = t[None, None]
    elif d == 3:
        b = t.permute(2, 0, 1)[None] if is_np else t[None]
    elif d == 4:
        b = t.permute(0, 3, 1, 2) if is_np else t
    else:
        raise ValueError(f"x must be a 2-D, 3-D or 4-D image, got shape {tuple(t.shape)}")
    shape = b.shape
    planes = b.detach().to("cpu", torch.float64).reshape(-1, 1, shape[2], shape[3])

    def restore(p: torch.Tensor) -> torch.Tensor:
        q = p.reshape(shape)
        if d == 2:
            return q[0, 0]
        if d == 3:
            return q[0].permute(1, 2, 0) if is_np else q[0]
        return q.permute(0, 2, 3, 1) if is_np else q

    return planes, restore


def add_correlated(x, sigma, seed: int, kernel: int = 3):
    """Spatially correlated Gaussian noise: white N(0, 1) filtered per channel by the ``kernel`` x ``kernel``
    binomial kernel (normalised to unit L2 norm, so every pixel's std stays ``sigma / 255``; neighbours
    within the kernel are correlated), added without clipping.

    Args:
        x: clean image on [0, 1]: (H, W) or (H, W, C) array, (C, H, W) tensor, or a 4-D batch
            ((B, H, W, C) array, (B, C, H, W) tensor).
        sigma: per-pixel std on the 0-255 scale, or ``(lo, hi)``: one per image.
        seed: integer seed of the CPU ``torch.Generator``.
        kernel: odd kernel side >= 1 (1: white noise).
    """
    t, is_np = _as_tensor("x", x)
    sigma = _check_level("sigma", sigma, lo_open=False)
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd int >= 1, got {kernel!r}")
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, bshape = _bshape(t)
    std = _per_image(sigma, n_img, g) / 255.0
    planes, restore = _planes(t, is_np)
    k = _binomial(kernel)
    k = (k / k.pow(2).sum().sqrt())[None, None]
    p = kernel // 2
    z = torch.randn((planes.shape[0], 1, planes.shape[2] + 2 * p, planes.shape[3] + 2 * p), generator=g,
                    dtype=torch.float64)
    field = torch.nn.functional.conv2d(z, k)                       # (B*C, 1, H, W), unit std per pixel
    per = std.repeat_interleave(planes.shape[0] // n_img).view(-1, 1, 1, 1)
    y = restore(planes + per * field).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)


def add_demosaic(x, lam, seed: int, read: float = 2.0):
    """A raw sensor image through demosaicing: the clean RGB image sampled on an RGGB Bayer mosaic,
    ``Poisson(lam * x) / lam`` plus Gaussian read noise of std ``read / 255`` on the mosaic, then bilinear
    demosaicing (each missing colour the mean of its nearest same-colour neighbours). The noise of the
    result is signal-dependent and correlated across neighbouring pixels and channels.

    Args:
        x: clean RGB image on [0, 1] (3 channels; layouts as :func:`add_correlated`).
        lam: photon count scale (> 0), or ``(lo, hi)``: one per image.
        seed: integer seed of the CPU ``torch.Generator``.
        read: read-noise std on the 0-255 scale (>= 0).
    """
    t, is_np = _as_tensor("x", x)
    lam = _check_level("lam", lam, lo_open=True)
    read = check_float("read", read, lo=0.0)
    g = torch.Generator().manual_seed(check_seed(seed))
    n_img, _ = _bshape(t)
    planes, restore = _planes(t, is_np)
    b = planes.view(n_img, -1, *planes.shape[2:])
    if b.shape[1] != 3:
        raise ValueError(f"x must be an RGB image (3 channels) for demosaic noise, got {b.shape[1]} channels")
    if bool((b < 0).any()) or bool(torch.isnan(b).any()):
        raise ValueError("x must be >= 0 (and not NaN) for demosaic noise")
    lam_t = _per_image(lam, n_img, g).view(n_img, 1, 1, 1)
    h, w = b.shape[-2:]
    cfa = torch.zeros((1, 3, h, w), dtype=torch.float64)           # RGGB: R at (0,0), G at (0,1)/(1,0), B at (1,1)
    cfa[0, 0, 0::2, 0::2] = 1
    cfa[0, 1, 0::2, 1::2] = 1
    cfa[0, 1, 1::2, 0::2] = 1
    cfa[0, 2, 1::2, 1::2] = 1
    mosaic = (b * cfa).sum(1, keepdim=True)                        # (B, 1, H, W)
    counts = torch.poisson(mosaic * lam_t, generator=g)
    raw = counts / lam_t + read / 255.0 * torch.randn(mosaic.shape, generator=g, dtype=torch.float64)
    kern = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=torch.float64)
    kern = kern[None, None].repeat(3, 1, 1, 1)
    pad = lambda v: torch.nn.functional.pad(v, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    num = torch.nn.functional.conv2d(pad(raw * cfa), kern, groups=3)
    den = torch.nn.functional.conv2d(pad(cfa.expand(n_img, -1, -1, -1)), kern, groups=3)
    y = restore((num / den).reshape(planes.shape)).to(device=t.device, dtype=t.dtype)
    return _finish(y, is_np)


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise description; call it as ``spec(x, seed)``.

    Attributes:
        kind: ``"gaussian"``, ``"poisson"``, ``"correlated"`` or ``"demosaic"``.
        level: sigma (0-255 scale) or lam, or a (lo, hi) range.
        extra: the kernel side (correlated) or the read-noise std (demosaic); None: the default.
    """

    kind: str
    level: float | tuple[float, float]
    extra: float | None = None

    def __call__(self, x, seed: int):
        if self.kind == "gaussian":
            return add_gaussian(x, self.level, seed)
        if self.kind == "correlated":
            return add_correlated(x, self.level, seed, kernel=3 if self.extra is None else int(self.extra))
        if self.kind == "demosaic":
            return add_demosaic(x, self.level, seed, read=2.0 if self.extra is None else self.extra)
        return add_poisson(x, self.level, seed)

    @property
    def sigma_hint(self) -> float | None:
        """The per-pixel std on the 0-255 scale when the spec fixes it (Gaussian kinds), else None."""
        return None if self.kind not in ("gaussian", "correlated") or isinstance(self.level, tuple) \
            else float(self.level)

    def __str__(self) -> str:
        lv = self.level
        s = f"{lv[0]:g}-{lv[1]:g}" if isinstance(lv, tuple) else f"{lv:g}"
        return f"{self.kind}:{s}" + ("" if self.extra is None else f":{self.extra:g}")


_KINDS = {"gaussian": "gaussian", "gauss": "gaussian", "g": "gaussian", "poisson": "poisson", "p": "poisson",
          "correlated": "correlated", "demosaic": "demosaic"}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(rf"^([a-z]+)\s*:?\s*{_NUM}(?:\s*[-_,]\s*{_NUM})?(?:\s*:\s*{_NUM})?$")


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``"gaussian:25"``, ``"poisson:30"``, ``"gaussian:5-50"`` (a per-image range),
    ``"correlated:25"`` / ``"correlated:25:5"`` (sigma, kernel side) and ``"demosaic:30"`` /
    ``"demosaic:30:2"`` (lam, read-noise std).

    Also accepted: the Nb2Nb checkpoint names ``"gauss25"``, ``"gauss5_50"``, ``"poisson30"``,
    ``"poisson5_50"``, and the short kinds ``g``/``p``. Case and surrounding spaces are ignored.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    m = _SPEC_RE.match(spec.strip().lower())
    if m is None or m.group(1) not in _KINDS:
        raise ValueError(f"spec must look like 'gaussian:25', 'poisson:30', 'gaussian:5-50', 'correlated:25[:K]' "
                         f"or 'demosaic:30[:READ]', got {spec!r}")
    kind = _KINDS[m.group(1)]
    lo = float(m.group(2))
    level = lo if m.group(3) is None else (lo, float(m.group(3)))
    level = _check_level("spec level", level, lo_open=(kind in ("poisson", "demosaic")))
    extra = None if m.group(4) is None else float(m.group(4))
    if extra is not None and kind not in ("correlated", "demosaic"):
        raise ValueError(f"only correlated and demosaic noise take a third field, got {spec!r}")
    if kind == "correlated" and extra is not None and (extra != int(extra) or int(extra) % 2 == 0):
        raise ValueError(f"the kernel side of correlated noise must be an odd integer, got {spec!r}")
    return NoiseSpec(kind, level, extra)


def add_noise(x, spec: str | NoiseSpec, seed: int):
    """Apply a noise given as a string (see :func:`parse_noise`) or a :class:`NoiseSpec`."""
    if isinstance(spec, str):
        spec = parse_noise(spec)
    if not isinstance(spec, NoiseSpec):
        raise TypeError(f"spec must be a str or NoiseSpec, got {type(spec).__name__}")
    return spec(x, seed)
