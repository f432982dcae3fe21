"""Plain-torch reference of the Nb2Nb neighbour sub-sampler and loss: the oracle for every backend."""
from __future__ import annotations

import torch

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype

# The 8 ordered edge-adjacent pairs of positions in a 2x2 cell (0=TL, 1=TR, 2=BL, 3=BR).
PAIRS = ((0, 1), (0, 2), (1, 3), (2, 3), (1, 0), (2, 0), (3, 1), (3, 2))


def neighbor_choice_ref(seed: int, batch: int, hh: int, wh: int, device=None) -> torch.Tensor:
    """Pair index in [0, 8) per cell, shape (B, H//2, W//2): Philox word of the cell's linear index."""
    cells = torch.arange(batch * hh * wh, dtype=torch.int64, device=device)
    return _rng.choice(_rng.philox(seed, cells), 8).view(batch, hh, wh)


def _cells(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H//2, W//2, 4) view-copy of the 2x2 cells, positions ordered TL, TR, BL, BR."""
    b, c, h, w = x.shape
    hh, wh = h // 2, w // 2
    return x[:, :, : 2 * hh, : 2 * wh].reshape(b, c, hh, 2, wh, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh, wh, 4)


def neighbor_subsample_ref(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """g1, g2 of shape (B, C, H//2, W//2); differentiable (the gather's backward scatters)."""
    b, c, h, w = x.shape
    k = neighbor_choice_ref(seed, b, h // 2, w // 2, x.device)
    pairs = torch.tensor(PAIRS, dtype=torch.int64, device=x.device)[k]  # (B, hh, wh, 2)
    cells = _cells(x)
    idx = pairs[:, None].expand(b, c, *pairs.shape[1:])
    g1 = cells.gather(-1, idx[..., 0:1]).squeeze(-1)
    g2 = cells.gather(-1, idx[..., 1:2]).squeeze(-1)
    return g1, g2


def nb2nb_terms_ref(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean((out - g2(y))^2), mean((out - g2(y) - (g1(fy) - g2(fy)))^2)) in opmath_dtype; grad to ``out`` only."""
    dt = opmath_dtype(out.dtype)
    _, g2y = neighbor_subsample_ref(y.detach().to(dt), seed)
    g1f, g2f = neighbor_subsample_ref(fy.detach().to(dt), seed)
    d = out.to(dt) - g2y
    e = g1f - g2f
    return (d * d).mean(), ((d - e) ** 2).mean()


def nb2nb_loss_ref(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int, gamma: float,
                   lambda1: float = 1.0) -> torch.Tensor:
    """lambda1 * mean((out - g2(y))^2) + gamma * mean((out - g2(y) - (g1(fy) - g2(fy)))^2); grad to ``out`` only."""
    t1, t2 = nb2nb_terms_ref(out, y, fy, seed)
    return lambda1 * t1 + gamma * t2
