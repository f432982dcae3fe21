"""Plain-torch reference of RD's recharged multi-target L1 loss: the oracle for every backend.

Counter layout: pixel (b, r, c) of a (B, C, H, W) image uses counter ``(b * H + r) * W + c`` on
stream 0; its recharged target is ``k = choice(philox(seed, counter), J)``, shared by all channels.
"""
from __future__ import annotations

import torch

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype


def recharge_choice_ref(seed: int, batch: int, h: int, w: int, j: int, device=None) -> torch.Tensor:
    """Recharged target index in [0, J) per pixel, shape (B, H, W)."""
    pix = torch.arange(batch * h * w, dtype=torch.int64, device=device)
    return _rng.choice(_rng.philox(seed, pix), j).view(batch, h, w)


def recharge_targets_ref(y: torch.Tensor, teachers: torch.Tensor, seed: int) -> torch.Tensor:
    """The J recharged targets (J, B, C, H, W): y where the pixel's draw is j, else teachers[j]."""
    j, b, _, h, w = teachers.shape
    k = recharge_choice_ref(seed, b, h, w, j, teachers.device)
    sel = k[None, :, None] == torch.arange(j, device=teachers.device).view(j, 1, 1, 1, 1)
    return torch.where(sel, y.unsqueeze(0), teachers)


def recharge_l1_loss_ref(student: torch.Tensor, y: torch.Tensor, teachers: torch.Tensor, seed: int) -> torch.Tensor:
    """sum_j mean|student - target_j|; y and the teachers are constants (gradient to student only)."""
    dt = opmath_dtype(student.dtype)
    tg = recharge_targets_ref(y.detach().to(dt), teachers.detach().to(dt), seed)
    return (student.to(dt).unsqueeze(0) - tg).abs().mean(dim=(1, 2, 3, 4)).sum()
