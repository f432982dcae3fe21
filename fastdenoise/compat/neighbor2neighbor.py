"""Drop-in for the official Neighbor2Neighbor ``train.py`` (TaoHuang2018/Neighbor2Neighbor).

Switch the official loop with one import line in place of its ``space_to_depth``,
``generate_mask_pair`` and ``generate_subimages`` definitions::

    from fastdenoise.compat.neighbor2neighbor import generate_mask_pair, generate_subimages

The loop body stays as it is: ``mask1, mask2 = generate_mask_pair(noisy)`` then the four
``generate_subimages`` calls, the official loss and its print line. The four sub-images now come
from the fused sampler (the pair ``generate_subimages(img, mask1)``/``(img, mask2)`` is one kernel
call). To fuse the loss as well, replace the sub-images of ``noisy_denoised`` and the five loss
statements by::

    loss1, loss2, loss_all = loss_terms(noisy_output, noisy, noisy_denoised, mask1, Lambda,
                                        opt.Lambda1, opt.Lambda2)

Draws: the official code draws one ``torch.randint(0, 8)`` per cell from a CUDA generator seeded
with its operation counter; ``generate_mask_pair`` here draws one 62-bit seed from torch's default
generator (``torch.manual_seed`` makes runs repeat) and the cells' choices from the Philox stream of
that seed. The choices have the same law (uniform over the same 8 pairs, independent per cell and
image, shared across channels), so results are **statistically** equal to the official code's, not
bitwise; given the same per-cell choices (:meth:`NeighborMask.pairs` returns them) the sub-images
are bit-identical and the loss terms and gradients equal to float32 rounding (tests/test_compat_nb2nb.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as nnf

from fastdenoise._rng import draw_seed
from fastdenoise.ops.neighbor.api import nb2nb_loss
from fastdenoise.ops.neighbor.api import neighbor_pairs
from fastdenoise.ops.neighbor.api import neighbor_subsample
from fastdenoise.ops.neighbor.reference import PAIRS

__all__ = ["NeighborMask", "generate_mask_pair", "generate_subimages", "loss_terms", "ramp", "space_to_depth"]


class _Draw:
    """The state a mask pair shares: the seed, the image shape, and the last (image, g2) computed
    with the first mask, so that ``generate_subimages(img, mask2)`` after ``(img, mask1)`` reuses it."""

    def __init__(self, seed: int, shape: tuple[int, ...], device: torch.device):
        self.seed, self.shape, self.device = seed, shape, device
        self.cached = None  # (img, img._version, g2)


class NeighborMask:
    """One mask of :func:`generate_mask_pair`: which member (0 for g1, 1 for g2) of the pair drawn
    under ``seed``. Use it like the official boolean mask: ``generate_subimages(img, mask)``.
    ``to_bool()`` gives the official layout (a flat bool tensor of ``4 * B * H/2 * W/2`` entries, one
    True per 2x2 cell) for code that reads the mask itself."""

    def __init__(self, draw: _Draw, member: int):
        self._draw, self.member = draw, member

    @property
    def seed(self) -> int:
        return self._draw.seed

    def pairs(self) -> torch.Tensor:
        """Pair index per cell, (B, H // 2, W // 2), into the official ``idx_pair`` table (same order)."""
        return neighbor_pairs(torch.empty(self._draw.shape, device=self._draw.device), self.seed)

    def to_bool(self) -> torch.Tensor:
        k = self.pairs().reshape(-1)
        pos = torch.tensor(PAIRS, dtype=torch.int64, device=k.device)[k, self.member]
        mask = torch.zeros(4 * k.numel(), dtype=torch.bool, device=k.device)
        mask[torch.arange(k.numel(), device=k.device) * 4 + pos] = True
        return mask

    def __repr__(self) -> str:
        return f"NeighborMask(seed={self.seed}, member={self.member}, shape={self._draw.shape})"


def space_to_depth(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * block_size**2, H // block_size, W // block_size), as the official helper."""
    n, c, h, w = x.shape
    return nnf.unfold(x, block_size, stride=block_size).view(n, c * block_size**2, h // block_size, w // block_size)


def generate_mask_pair(img: torch.Tensor, *, seed: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[NeighborMask, NeighborMask]:
    """The pair of neighbour masks for ``img`` (B, C, H, W), as ``mask1, mask2``.

    A fresh seed is drawn from ``generator`` or torch's default generator on every call (pass
    ``seed=`` to fix it); see the module docstring for how the draws relate to the official code's.
    """
    if seed is None:
        seed = draw_seed(generator)
    draw = _Draw(int(seed), tuple(img.shape), img.device)
    return NeighborMask(draw, 0), NeighborMask(draw, 1)


def generate_subimages(img: torch.Tensor, mask: NeighborMask) -> torch.Tensor:
    """The sub-image of ``img`` (B, C, H, W) selected by ``mask``: (B, C, H // 2, W // 2), differentiable.

    Any image of the shape the mask pair was drawn for works (the official loop applies one pair to
    ``noisy`` and to the network's ``noisy_denoised``). Odd H or W drop the last row or column.
    """
    if not isinstance(mask, NeighborMask):
        raise TypeError("mask must come from fastdenoise.compat.neighbor2neighbor.generate_mask_pair, "
                        f"got {type(mask).__name__}")
    draw = mask._draw
    if tuple(img.shape) != draw.shape:
        raise ValueError(f"img has shape {tuple(img.shape)} but the mask pair was drawn for {draw.shape}")
    if mask.member == 1 and draw.cached is not None:
        ref, version, g2 = draw.cached
        draw.cached = None
        if ref is img and img._version == version:
            return g2
    g1, g2 = neighbor_subsample(img, draw.seed, need_g2=True)
    if mask.member == 1:
        return g2
    draw.cached = (img, img._version, g2)
    return g1


def ramp(epoch: int, n_epoch: int, increase_ratio: float = 2.0) -> float:
    """The official regulariser weight ``Lambda = epoch / n_epoch * increase_ratio`` (epochs from 1)."""
    return epoch / n_epoch * increase_ratio


def loss_terms(noisy_output: torch.Tensor, noisy: torch.Tensor, noisy_denoised: torch.Tensor, mask1: NeighborMask,
               Lambda: float, Lambda1: float = 1.0, Lambda2: float = 1.0):  # noqa: N803 (the official names)
    """The official two-term loss, fused: ``(loss1, loss2, loss_all)`` as the official loop computes them.

    With ``diff = noisy_output - g2(noisy)`` and ``exp_diff = g1(noisy_denoised) - g2(noisy_denoised)``
    (g1, g2 the sub-images of ``mask1``'s pair): ``loss1 = mean(diff**2)``,
    ``loss2 = Lambda * mean((diff - exp_diff)**2)``, ``loss_all = Lambda1 * loss1 + Lambda2 * loss2``.
    ``noisy_denoised`` is a constant (the official loop computes it under ``torch.no_grad``).

    Args:
        noisy_output: (B, C, H // 2, W // 2) ``network(generate_subimages(noisy, mask1))``.
        noisy: (B, C, H, W) noisy batch.
        noisy_denoised: (B, C, H, W) ``network(noisy)``.
        mask1: the first mask of :func:`generate_mask_pair` (either mask of the pair works).
        Lambda: the ramped weight (:func:`ramp`); Lambda1, Lambda2: the official ``--Lambda1``/``--Lambda2``
            (any of them may be 0). Numbers or one-element tensors.

    Returns:
        ``(loss1, loss2, loss_all)``: ``loss_all`` is differentiable w.r.t. ``noisy_output``;
        ``loss1`` and ``loss2`` are detached scalars for the official print line.
    """
    if not isinstance(mask1, NeighborMask):
        raise TypeError(f"mask1 must come from generate_mask_pair, got {type(mask1).__name__}")
    lam = float(Lambda.item() if isinstance(Lambda, torch.Tensor) else Lambda)
    l2 = float(Lambda2.item() if isinstance(Lambda2, torch.Tensor) else Lambda2)
    loss_all, t1, t2 = nb2nb_loss(noisy_output, noisy, noisy_denoised, mask1.seed, gamma=l2 * lam,
                                  lambda1=Lambda1, return_terms=True)
    return t1, lam * t2, loss_all
