"""Plain-torch reference of Noise2Same's stratified mask sampler and loss: the oracle for every backend.

Counter layout of the sampler (Philox keyed by ``seed``): boxes of side ``s`` tile the image from
(0, 0), ``nbh = ceil(H / s)`` by ``nbw = ceil(W / s)`` per plane. Box ``(b, c, bi, bj)`` has the
linear index ``n = ((b * C + c) * nbh + bi) * nbw + bj`` (channels are independent). Its masked
position is ``(bi * s + choice(philox(seed, n, stream=0), s), bj * s + choice(philox(seed, n,
stream=1), s))``, dropped when outside the image. Gaussian replacement values are
``sigma_m * normal_exact(seed, n, stream=2)`` (float64, rounded to x's dtype through float32 for half
types): the normal transform uses correctly rounded float64 operations only, so the Triton kernel
draws the same values in place (no host work) and every backend is bit-identical.

Donut replacement (upstream: 3x3 weights [[.5, 1, .5], [1, 0, 1], [.5, 1, .5]] / 6, zero padding),
evaluated in the op-math type (float32 for half types) in this fixed order, which every backend
follows (bit-identical results; the products by 0.5 are exact, so FMA contraction cannot change it)::

    ((0.5 * (((x[-1,-1] + x[-1,+1]) + x[+1,-1]) + x[+1,+1])) + (((x[-1,0] + x[0,-1]) + x[0,+1]) + x[+1,0])) * W6

with ``W6 = 1/6`` rounded to the op-math type.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as tF

from fastdenoise import _rng
from fastdenoise._runtime import opmath_dtype

REPLACE_MODES = ("gaussian", "donut")
STREAM_ROW, STREAM_COL, STREAM_GAUSS = 0, 1, 2


def box_size(perc: float) -> int:
    """Side of the stratification boxes: ``round(sqrt(100 / perc))`` (14 at the default 0.5 %)."""
    return max(1, int(round(math.sqrt(100.0 / perc))))


def n_boxes(shape, box: int) -> tuple[int, int, int]:
    """(total boxes, boxes per column nbh, boxes per row nbw) for a (B, C, H, W) shape."""
    b, c, h, w = shape
    nbh, nbw = -(-h // box), -(-w // box)
    return b * c * nbh * nbw, nbh, nbw


def gaussian_values(seed: int, nbox: int, sigma_m: float, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Replacement value of every box (out-of-image boxes included): sigma_m * N(0, 1) in ``dtype``."""
    z = _rng.normal_exact(seed, torch.arange(nbox, dtype=torch.int64), stream=STREAM_GAUSS)
    return round_to(z * float(sigma_m), dtype).to(device)


def round_to(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 values rounded to ``dtype`` the way the kernels store them: through float32 for half types."""
    return (v.to(torch.float32) if dtype in (torch.float16, torch.bfloat16) else v).to(dtype)


def mask_positions_ref(seed: int, shape, box: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked (row, col) of every box, shape (B, C, nbh, nbw) each (may lie outside the image)."""
    b, c, _, _ = shape
    nbox, nbh, nbw = n_boxes(shape, box)
    n = torch.arange(nbox, dtype=torch.int64, device=device)
    r = _rng.choice(_rng.philox(seed, n, STREAM_ROW), box).view(b, c, nbh, nbw)
    q = _rng.choice(_rng.philox(seed, n, STREAM_COL), box).view(b, c, nbh, nbw)
    bi = torch.arange(nbh, device=device).view(nbh, 1) * box
    bj = torch.arange(nbw, device=device).view(1, nbw) * box
    return bi + r, bj + q


def donut_ref(x: torch.Tensor) -> torch.Tensor:
    """Weighted 3x3 mean without the centre, zero padding, in the fixed order of the module docstring."""
    dt = opmath_dtype(x.dtype)
    h, w = x.shape[-2:]
    p = tF.pad(x.to(dt), (1, 1, 1, 1))

    def at(di, dj):
        return p[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w]

    corners = ((at(-1, -1) + at(-1, 1)) + at(1, -1)) + at(1, 1)
    edges = ((at(-1, 0) + at(0, -1)) + at(0, 1)) + at(1, 0)
    w6 = torch.tensor(1.0 / 6.0, dtype=dt, device=x.device)
    return ((0.5 * corners + edges) * w6).to(x.dtype)


def stratified_mask_ref(x: torch.Tensor, seed: int, box: int, replace: str = "gaussian",
                        sigma_m: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_masked, mask) for a (B, C, H, W) ``x``; x_masked is differentiable w.r.t. ``x``."""
    b, c, h, w = x.shape
    nbox, _, _ = n_boxes(x.shape, box)
    rows, cols = mask_positions_ref(seed, x.shape, box, x.device)
    ib = torch.arange(b, device=x.device).view(b, 1, 1, 1).expand_as(rows)
    ic = torch.arange(c, device=x.device).view(1, c, 1, 1).expand_as(rows)
    valid = (rows < h) & (cols < w)
    idx = (ib[valid], ic[valid], rows[valid], cols[valid])
    mask = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
    mask[idx] = 1
    if replace == "gaussian":
        vals = gaussian_values(seed, nbox, sigma_m, x.dtype, x.device).view(rows.shape)
        rep = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        rep[idx] = vals[valid]
    elif replace == "donut":
        rep = donut_ref(x)
    else:
        raise ValueError(f"replace must be one of {REPLACE_MODES}, got {replace!r}")
    return torch.where(mask.bool(), rep, x), mask


def noise2same_loss_ref(out_full: torch.Tensor, out_masked: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                        lam: float = 2.0, eps: float = 1e-12) -> torch.Tensor:
    """rec + lam * sqrt(max(inv, eps)), rec = mean((full - x)^2), inv = sum(m (full - masked)^2) / sum(m).

    ``sum(m) == 0`` gives ``inv = 0``. The clamp at ``eps`` makes the value finite and the gradient of
    the invariance term zero while ``inv < eps``. x and mask are constants; both outputs get gradients.
    """
    dt = opmath_dtype(out_full.dtype)
    f, g = out_full.to(dt), out_masked.to(dt)
    xd, m = x.detach().to(dt), mask.detach().to(dt)
    rec = ((f - xd) ** 2).mean()
    sm = m.sum()
    pos = sm > 0
    inv = torch.where(pos, (m * (f - g) ** 2).sum() / torch.where(pos, sm, torch.ones_like(sm)), torch.zeros_like(sm))
    return rec + lam * torch.sqrt(torch.clamp(inv, min=eps))


def standardize(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardise each image per channel (the upstream data convention that ``lam = 2`` assumes).

    The one definition: ``fastdenoise.functional.standardize`` and the Noise2Same trainer use it.

    Args:
        x: (..., H, W) floating tensor, e.g. (B, C, H, W).
        eps: lower clamp of the standard deviation. 1e-6 (the value the trainer has always used) keeps
            a constant image at zeros and an almost-constant one near zero: in float32 the mean of a
            constant image can be off by an ulp (about 6e-8 at 0.5), and a clamp like 1e-12 would blow
            that round-off up to values of 1 and more.

    Returns:
        (xs, mean, std) with ``xs = (x - mean) / std``; mean and std are (..., 1, 1) (population std).
        Un-standardise a prediction with ``pred * std + mean``.
    """
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, correction=0).clamp_min(eps)
    return (x - mean) / std, mean, std
