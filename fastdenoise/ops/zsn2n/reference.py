"""Plain-torch reference of the ZS-N2N pair downsampler and loss: the oracle for every backend.

Rounding (every backend computes exactly these operations, in this order, in ``opmath_dtype``:
float32 for half inputs): ``d1 = (TR + BL) * 0.5`` and ``d2 = (TL + BR) * 0.5``, one addition then one
multiplication by 0.5 (not ``0.5 * a + 0.5 * b``, which differs near overflow and for subnormals). The
denoised image is ``y - n_y`` per pixel before it is downsampled: ``e1 = ((TR_y - TR_n) + (BL_y - BL_n)) * 0.5``.
The products by 0.5 are exact, so a multiply-add contracted into an FMA (Triton on a GPU) rounds the same;
the C++ build has contraction off.
"""
from __future__ import annotations

import torch

from fastdenoise._runtime import opmath_dtype


def _corners(x: torch.Tensor):
    """(TL, TR, BL, BR) of every 2x2 cell, each (B, C, H//2, W//2); an odd last row/column is dropped."""
    hh, wh = x.shape[-2] // 2, x.shape[-1] // 2
    x = x[..., : 2 * hh, : 2 * wh]
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


def _pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d1, d2) in x's dtype: anti-diagonal (TR + BL) * 0.5 and main diagonal (TL + BR) * 0.5."""
    tl, tr, bl, br = _corners(x)
    return (tr + bl) * 0.5, (tl + br) * 0.5


def pair_downsample_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d1, d2), each (B, C, H//2, W//2) of x's dtype, computed in opmath_dtype; differentiable."""
    d1, d2 = _pair(x.to(opmath_dtype(x.dtype)))
    return d1.to(x.dtype), d2.to(x.dtype)


def zsn2n_loss_ref(y: torch.Tensor, n_y: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor) -> torch.Tensor:
    """ZS-N2N loss with the network predicting noise (no stop-gradient anywhere):

    ``0.5 (mse(d1, d2 - n2) + mse(d2, d1 - n1)) + 0.5 (mse(d1 - n1, e1) + mse(d2 - n2, e2))`` with
    (d1, d2) = pair(y), (e1, e2) = pair(y - n_y); all in opmath_dtype, returned in it.
    """
    dt = opmath_dtype(y.dtype)
    y, n_y, n1, n2 = y.to(dt), n_y.to(dt), n1.to(dt), n2.to(dt)
    d1, d2 = _pair(y)
    e1, e2 = _pair(y - n_y)
    p1, p2 = d1 - n1, d2 - n2  # the denoised sub-images

    def mse(a, b):
        return ((a - b) ** 2).mean()

    return 0.5 * (mse(d1, p2) + mse(d2, p1)) + 0.5 * (mse(p1, e1) + mse(p2, e2))
