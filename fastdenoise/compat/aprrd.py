"""Drop-in for the official APR-RD sampler (HYK2017/APRRD, ``codes/utils/function.py``: class ``APR``).

Switch with one import line in place of the official class::

    from fastdenoise.compat.aprrd import APR

and keep ``apr = APR()`` and ``h1_y, h2_y, h1_fy, h2_fy = apr.apply(y, fy)``. The four images come
from one fused sampler call per input. For the fused loss too, replace the official loss lines by
``loss = fastdenoise.functional.apr_loss(out, y, fy, apr.seed, lam=4.0, grad_through_reg=True)``
(``apr.seed`` is the seed of the last ``apply``; ``grad_through_reg=True`` keeps the official
gradient through ``h1(fy) - h2(fy)``) and feed ``h1_y`` to the network.

Draws: the official class draws ``torch.randint(0, 72, (B, H, W))`` on the images' device from
torch's default generator; this one draws one 62-bit seed from torch's default CPU generator
(``torch.manual_seed`` makes runs repeat) and the per-pixel pairs from the Philox stream of that
seed. The law is the same (uniform over the 72 ordered pairs of distinct 3x3 positions, one pair per
pixel and image shared across channels, coordinates clamped at the borders), so results are
**statistically** equal to the official code's, not bitwise; given the same per-pixel pairs
(:meth:`APR.official_indices` translates them to the official table's indices) the four images are
bit-identical (tests/test_compat_apr.py).
"""
from __future__ import annotations

import torch

from fastdenoise._rng import draw_seed
from fastdenoise.ops.apr.api import apr_sample
from fastdenoise.ops.apr.reference import PAIRS72
from fastdenoise.ops.apr.reference import apr_choice_ref

__all__ = ["APR"]


def _official_index(p: int, q: int) -> int:
    """Index of the pair of window positions (p, q) (ours: p = 3 (dy + 1) + (dx + 1)) in the official
    table, which lists ((dx1, dy1), (dx2, dy2)) with dx1 outermost, then dy1, dx2, dy2, skipping
    identical members."""
    def xy(pos):
        return pos % 3, pos // 3  # (dx + 1, dy + 1)

    (a, b), (c, d) = xy(p), xy(q)
    full = ((a * 3 + b) * 3 + c) * 3 + d  # index among all 81 ordered pairs
    same_before = a * 3 + b + (1 if (c * 3 + d) > (a * 3 + b) else 0)  # identical pairs listed before it
    return full - same_before


# ours (index into PAIRS72) -> the official table's index
_TO_OFFICIAL = torch.tensor([_official_index(p, q) for p, q in PAIRS72], dtype=torch.int64)


class APR:
    """The official Adjacent Pixel Replacer: ``APR(size=3).apply(y, fy) -> (h1_y, h2_y, h1_fy, h2_fy)``.

    Only the official 3x3 window (``size=3``) is fused; other sizes raise ``ValueError``.
    ``apply`` draws a fresh seed per call from ``generator`` (or torch's default generator); the
    last seed is kept in ``self.seed`` for :func:`fastdenoise.functional.apr_loss`.
    """

    def __init__(self, size: int = 3, *, generator: torch.Generator | None = None):
        if size != 3:
            raise ValueError(f"fastdenoise fuses the official 3x3 window only (size=3), got size={size}")
        self.size = (size - 1) // 2
        self.generator = generator
        self.seed: int | None = None

    def apply(self, y: torch.Tensor, fy: torch.Tensor):
        """h1 and h2 of ``y`` and of ``fy`` (each (B, C, H, W)) under one draw; differentiable w.r.t.
        both inputs (the official code lets the gradient reach ``fy``)."""
        self.seed = draw_seed(self.generator)
        h1_y, h2_y = apr_sample(y, self.seed)
        h1_fy, h2_fy = apr_sample(fy, self.seed)
        return h1_y, h2_y, h1_fy, h2_fy

    def official_indices(self, y: torch.Tensor) -> torch.Tensor:
        """The last draw as the official code's ``random_indices`` (B, H, W) into its 72-pair window."""
        if self.seed is None:
            raise RuntimeError("no draw yet: call apply first")
        b, _, h, w = y.shape
        return _TO_OFFICIAL.to(y.device)[apr_choice_ref(self.seed, b, h, w, y.device)]
