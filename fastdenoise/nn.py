"""nn.Module wrappers of the fused ops (hyper-parameters stored on the module)."""
from __future__ import annotations

import torch
from torch import nn

from fastdenoise import functional as F


class Nb2NbLoss(nn.Module):
    """Module form of :func:`fastdenoise.functional.nb2nb_loss` with a fixed ``gamma``."""

    def __init__(self, gamma: float = 2.0, backend: str | None = None):
        super().__init__()
        self.gamma, self.backend = float(gamma), backend

    def forward(self, out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int) -> torch.Tensor:
        return F.nb2nb_loss(out, y, fy, seed, self.gamma, backend=self.backend)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, backend={self.backend!r}"


class NeighborSubsampler(nn.Module):
    """Module form of :func:`fastdenoise.functional.neighbor_subsample`."""

    def __init__(self, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, x: torch.Tensor, seed: int):
        return F.neighbor_subsample(x, seed, backend=self.backend)
