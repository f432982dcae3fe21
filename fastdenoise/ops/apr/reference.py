"""Plain-torch reference of the APR sampler and loss: the oracle for every backend.

Random layout: one word of the packed Philox stream per output pixel (``fastdenoise._rng.packed``:
four words per Philox block), index ``b * H * W + r * W + c``, stream 0; the
pair id is ``k = choice(word, 72)`` and is shared across channels. ``PAIRS72[k] = (p, q)`` are two
distinct positions of the 3x3 window, ``p = 0..8`` meaning ``(dy, dx) = (p // 3 - 1, p % 3 - 1)``
(the centre, p = 4, is allowed), in lexicographic order: ``p = k // 8``, ``q = k % 8 + (k % 8 >= p)``.
h1 reads position p, h2 position q; source rows and columns are clamped to the image (replicate
edge, as the official code), so at borders h1 and h2 can read the same pixel.
"""
from __future__ import annotations

import torch

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype

NPAIRS = 72
# The 72 ordered pairs (p, q) of distinct 3x3 window positions, lexicographic.
PAIRS72 = tuple((p, q) for p in range(9) for q in range(9) if p != q)


def position_offset(p: int) -> tuple[int, int]:
    """(dy, dx) of window position ``p`` in 0..8."""
    return p // 3 - 1, p % 3 - 1


def apr_choice_ref(seed: int, batch: int, h: int, w: int, device=None) -> torch.Tensor:
    """Pair id in [0, 72) per pixel, shape (B, H, W)."""
    pix = torch.arange(batch * h * w, dtype=torch.int64, device=device)
    return _rng.choice(_rng.packed(seed, pix), NPAIRS).view(batch, h, w)


def apr_source_index_ref(seed: int, batch: int, h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear source indices ``r_src * W + c_src`` (B, H, W) of h1 and h2 (clamped at borders)."""
    k = apr_choice_ref(seed, batch, h, w, device)
    pairs = torch.tensor(PAIRS72, dtype=torch.int64, device=device)[k]  # (B, H, W, 2)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    out = []
    for m in range(2):
        p = pairs[..., m]
        sr = (rows + p // 3 - 1).clamp(0, h - 1)
        sc = (cols + p % 3 - 1).clamp(0, w - 1)
        out.append(sr * w + sc)
    return out[0], out[1]


def apr_sample_ref(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """h1(x), h2(x), each (B, C, H, W); differentiable (the gather's backward scatters)."""
    b, c, h, w = x.shape
    i1, i2 = apr_source_index_ref(seed, b, h, w, x.device)
    flat = x.reshape(b, c, h * w)
    h1 = flat.gather(-1, i1.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    h2 = flat.gather(-1, i2.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)
    return h1, h2


def apr_loss_ref(out: torch.Tensor, y: torch.Tensor, fy: torch.Tensor, seed: int, lam: float = 4.0,
                 grad_through_reg: bool = False) -> torch.Tensor:
    """mean|out - h2(y)| + lam * mean|out - h2(y) - (h1(fy) - h2(fy))|.

    The gradient flows into ``out``; into ``fy`` only when ``grad_through_reg`` (official code),
    otherwise ``fy`` is a constant (paper). ``y`` is always a constant."""
    dt = opmath_dtype(out.dtype)
    _, h2y = apr_sample_ref(y.detach().to(dt), seed)
    f = fy.to(dt) if grad_through_reg else fy.detach().to(dt)
    h1f, h2f = apr_sample_ref(f, seed)
    d = out.to(dt) - h2y
    return d.abs().mean() + lam * (d - (h1f - h2f)).abs().mean()
