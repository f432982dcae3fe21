"""Input handling shared by the noise models: tensors or arrays in, the same kind out, per-image levels."""
from __future__ import annotations


import numpy as np
import torch

from fastdenoise._runtime import check_float


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
