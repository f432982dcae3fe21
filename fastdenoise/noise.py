"""Synthetic noise in the Nb2Nb / Laine19 convention (METHODS.md §1.1).

* Gaussian: ``y = x + sigma / 255 * N(0, 1)``; ``sigma`` is quoted on the 0-255 scale. **No clipping.**
  A range ``(lo, hi)`` draws one std per image, uniform in [lo, hi] / 255 (e.g. gauss5_50).
* Poisson: ``y = Poisson(lam * x) / lam`` with ``x`` in [0, 1]; ``lam`` a number or a range (one
  ``lam`` per image, uniform in [lo, hi]).

Randomness: a ``torch.Generator`` on the CPU seeded with ``seed``; all values are drawn on the CPU and
moved to ``x``'s device, so a given seed gives the same noise on every device. Draw order: with a
range, first one uniform per image (the per-image parameter), then the noise field. "Image" means
the leading axis of a 4-D input ((B, C, H, W) tensor or (B, H, W, C) array); a 2-D or 3-D input is a
single image. Torch tensors and NumPy arrays are accepted and the result has the input's type, dtype
and shape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from fastdenoise._runtime import check_float
from fastdenoise._runtime import check_seed
from fastdenoise._runtime import opmath_dtype

__all__ = ["NoiseSpec", "add_gaussian", "add_noise", "add_poisson", "parse_noise"]


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


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise description; call it as ``spec(x, seed)``.

    Attributes:
        kind: ``"gaussian"`` or ``"poisson"``.
        level: sigma (0-255 scale) or lam, or a (lo, hi) range.
    """

    kind: str
    level: float | tuple[float, float]

    def __call__(self, x, seed: int):
        if self.kind == "gaussian":
            return add_gaussian(x, self.level, seed)
        return add_poisson(x, self.level, seed)

    def __str__(self) -> str:
        lv = self.level
        s = f"{lv[0]:g}-{lv[1]:g}" if isinstance(lv, tuple) else f"{lv:g}"
        return f"{self.kind}:{s}"


_KINDS = {"gaussian": "gaussian", "gauss": "gaussian", "g": "gaussian", "poisson": "poisson", "p": "poisson"}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_SPEC_RE = re.compile(rf"^([a-z]+)\s*:?\s*{_NUM}(?:\s*[-_,]\s*{_NUM})?$")


def parse_noise(spec: str) -> NoiseSpec:
    """Parse ``"gaussian:25"``, ``"poisson:30"``, ``"gaussian:5-50"`` (a per-image range).

    Also accepted: the Nb2Nb checkpoint names ``"gauss25"``, ``"gauss5_50"``, ``"poisson30"``,
    ``"poisson5_50"``, and the short kinds ``g``/``p``. Case and surrounding spaces are ignored.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    m = _SPEC_RE.match(spec.strip().lower())
    if m is None or m.group(1) not in _KINDS:
        raise ValueError(f"spec must look like 'gaussian:25', 'poisson:30' or 'gaussian:5-50', got {spec!r}")
    kind = _KINDS[m.group(1)]
    lo = float(m.group(2))
    level = lo if m.group(3) is None else (lo, float(m.group(3)))
    level = _check_level("spec level", level, lo_open=(kind == "poisson"))
    return NoiseSpec(kind, level)


def add_noise(x, spec: str | NoiseSpec, seed: int):
    """Apply a noise given as a string (see :func:`parse_noise`) or a :class:`NoiseSpec`."""
    if isinstance(spec, str):
        spec = parse_noise(spec)
    if not isinstance(spec, NoiseSpec):
        raise TypeError(f"spec must be a str or NoiseSpec, got {type(spec).__name__}")
    return spec(x, seed)
