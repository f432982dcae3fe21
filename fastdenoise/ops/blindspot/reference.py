"""Plain-torch reference of the shifted max-pool and the s-shift: the oracle for every backend.

Directions are indexed by the number k of 90-degree rotations (``torch.rot90(x, k, (2, 3))``) that
map the upstream "down" network onto them: the op in direction k equals
``rot90(op_down(rot90(x, k)), -k)`` (exactly for even H and W).

==========  ===  ==================================  ==================================
name        k    pooled rows (output i)               pooled columns (output j)
==========  ===  ==================================  ==================================
``down``    0    2i-1, 2i (row -1 is a zero row)      2j, 2j+1
``left``    1    2i, 2i+1                             2j+1, 2j+2 (column W is zero)
``up``      2    2i+1, 2i+2 (row H is a zero row)     2j, 2j+1
``right``   3    2i, 2i+1                             2j-1, 2j (column -1 is zero)
==========  ===  ==================================  ==================================

"down" sees rows <= its own (the receptive field grows downwards only), "up" rows >= its own,
"right" columns <= its own, "left" columns >= its own. Output size is always (H // 2, W // 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DIRECTIONS = ("down", "left", "up", "right")
# (row offset, column offset) of each 2x2 window's top-left corner relative to (2i, 2j)
OFFSETS = ((-1, 0), (0, 1), (1, 0), (0, -1))


def direction_index(direction) -> int:
    """``"down"``/``"left"``/``"up"``/``"right"`` or 0..3 -> 0..3 (raises with the argument named)."""
    if isinstance(direction, str):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS} or 0..3, got {direction!r}")
        return DIRECTIONS.index(direction)
    if isinstance(direction, bool) or not hasattr(direction, "__index__"):
        raise TypeError(f"direction must be a str or an int, got {type(direction).__name__}")
    d = int(direction)
    if not 0 <= d <= 3:
        raise ValueError(f"direction must be one of {DIRECTIONS} or 0..3, got {d}")
    return d


def shifted_max_pool2d_ref(x: torch.Tensor, direction=0) -> torch.Tensor:
    """The upstream formulation: zero-pad one row/column on the leading side, drop the last one,
    2x2 max-pool. Differentiable (the pad's backward drops the zero row's gradient); ties go to the
    first maximum in raster order of the unrotated image (torch's max_pool2d rule)."""
    d = direction_index(direction)
    h, w = x.shape[-2:]
    if d == 0:
        xp = F.pad(x, (0, 0, 1, 0))[..., :h, :]
    elif d == 2:
        xp = F.pad(x, (0, 0, 0, 1))[..., 1:, :]
    elif d == 3:
        xp = F.pad(x, (1, 0, 0, 0))[..., :, :w]
    else:
        xp = F.pad(x, (0, 1, 0, 0))[..., :, 1:]
    return F.max_pool2d(xp, 2)


def shifted_max_pool2d_index_ref(x: torch.Tensor, direction=0) -> torch.Tensor:
    """int8 argmax position 2a+b (a: row, b: column inside the window, raster order; strict ``>``,
    first NaN wins) per output element, the index the fused kernels save for the backward."""
    d = direction_index(direction)
    ro, co = OFFSETS[d]
    b_, c_, h, w = x.shape
    ho, wo = h // 2, w // 2
    xp = F.pad(x.detach(), (1, 2, 1, 2))  # room for offsets -1..+2
    best = idx = None
    for a in range(2):
        for b in range(2):
            r0, c0 = 1 + ro + a, 1 + co + b
            v = xp[:, :, r0:r0 + 2 * ho:2, c0:c0 + 2 * wo:2]
            if best is None:
                best, idx = v, torch.zeros(v.shape, dtype=torch.int8, device=x.device)
            else:
                take = (v > best) | (torch.isnan(v) & ~torch.isnan(best))
                best = torch.where(take, v, best)
                idx = torch.where(take, torch.full_like(idx, 2 * a + b), idx)
    return idx


def s_shift_ref(x: torch.Tensor, s: int, direction=0) -> torch.Tensor:
    """Shift the content s pixels in ``direction`` (zeros enter on the opposite side): "down" =
    zero-pad s rows at the top and crop s at the bottom, "left"/"up"/"right" the rotated equivalents."""
    d = direction_index(direction)
    pad = ((0, 0, s, -s), (-s, s, 0, 0), (0, 0, -s, s), (s, -s, 0, 0))[d]
    return F.pad(x, pad)
