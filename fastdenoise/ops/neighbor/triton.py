"""Triton kernels for the Nb2Nb sub-sampler (forward/backward) and the fused loss (value + gradient)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import choice
from fastdenoise._triton_rng import philox
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance


@triton.jit
def _pair(cell, seed_lo, seed_hi):
    """Positions (p1, p2) in {0..3} of the cell's ordered edge-adjacent pair (table in reference.py)."""
    k = choice(philox(seed_lo, seed_hi, cell, 0), 8)
    base = k & 3  # pairs (0,1) (0,2) (1,3) (2,3), then the same reversed for k >= 4
    a = base - (base >= 1).to(tl.int32)
    b = tl.minimum(base + 1, 3)
    rev = k >= 4
    return tl.where(rev, b, a), tl.where(rev, a, b)


@bit_identical
@triton.jit
def _neighbor_fwd_kernel(x_ptr, g1_ptr, g2_ptr, C, H, W, HH, WH, seed_lo, seed_hi, NEED_G2: tl.constexpr,
                         BLOCK: tl.constexpr):
    """One program per (image, cell row, block of cells); the pair is drawn once and used for all C.
    NEED_G2=False writes g1 only."""
    row = tl.program_id(0).to(tl.int64)  # b * HH + i
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    b = row // HH
    i = row - b * HH
    p1, p2 = _pair(row * WH + j, seed_lo, seed_hi)
    off1 = (2 * i + p1 // 2) * W + 2 * j + p1 % 2
    off2 = (2 * i + p2 // 2) * W + 2 * j + p2 % 2
    for c in range(0, C):
        plane = (b * C + c) * H * W
        o = ((b * C + c) * HH + i) * WH + j
        v1 = tl.load(x_ptr + plane + off1, mask=m)
        tl.store(g1_ptr + o, v1, mask=m)
        if NEED_G2:
            v2 = tl.load(x_ptr + plane + off2, mask=m)
            tl.store(g2_ptr + o, v2, mask=m)


@bit_identical
@triton.jit
def _neighbor_bwd_kernel(dg1_ptr, dg2_ptr, dx_ptr, C, H, W, HH, WH, seed_lo, seed_hi, BLOCK: tl.constexpr):
    """Scatter: each cell writes all four of its positions (p1 <- dg1, p2 <- dg2, the others 0)."""
    row = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    b = row // HH
    i = row - b * HH
    p1, p2 = _pair(row * WH + j, seed_lo, seed_hi)
    for c in range(0, C):
        o = ((b * C + c) * HH + i) * WH + j
        d1 = tl.load(dg1_ptr + o, mask=m)
        d2 = tl.load(dg2_ptr + o, mask=m)
        zero = tl.zeros_like(d1)
        plane = (b * C + c) * H * W
        for pos in tl.static_range(4):  # p1 != p2: a select, no arithmetic (bf16 adds are fmas on sm_80)
            v = tl.where(p1 == pos, d1, tl.where(p2 == pos, d2, zero))
            tl.store(dx_ptr + plane + (2 * i + pos // 2) * W + 2 * j + pos % 2, v, mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _nb2nb_loss_kernel(out_ptr, y_ptr, fy_ptr, grad_ptr, part_ptr, C, H, W, HH, WH, seed_lo, seed_hi,
                       w1, w2, grad_scale, COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    """Partial sums of d^2 and of (d - e)^2 per program, d = out - g2(y), e = g1(fy) - g2(fy).

    For L = w1 mean(d^2) + w2 mean((d - e)^2), dL/dout = 2/N * (w1 d + w2 (d - e)) is written in the
    same pass (grad_scale = 2/N)."""
    row = tl.program_id(0).to(tl.int64)
    pid_j = tl.program_id(1)
    j = pid_j.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    b = row // HH
    i = row - b * HH
    p1, p2 = _pair(row * WH + j, seed_lo, seed_hi)
    off1 = (2 * i + p1 // 2) * W + 2 * j + p1 % 2
    off2 = (2 * i + p2 // 2) * W + 2 * j + p2 % 2
    acc = tl.zeros([BLOCK], dtype=part_ptr.dtype.element_ty)
    acc2 = tl.zeros([BLOCK], dtype=part_ptr.dtype.element_ty)
    for c in range(0, C):
        plane = (b * C + c) * H * W
        o = ((b * C + c) * HH + i) * WH + j
        out = tl.load(out_ptr + o, mask=m, other=0).to(acc.dtype)
        y2 = tl.load(y_ptr + plane + off2, mask=m, other=0).to(acc.dtype)
        f1 = tl.load(fy_ptr + plane + off1, mask=m, other=0).to(acc.dtype)
        f2 = tl.load(fy_ptr + plane + off2, mask=m, other=0).to(acc.dtype)
        d = out - y2
        r = d - (f1 - f2)
        acc += d * d
        acc2 += r * r
        if COMPUTE_GRAD:
            g = grad_scale * (w1 * d + w2 * r)
            tl.store(grad_ptr + o, to_store(g, grad_ptr.dtype.element_ty), mask=m)
    k = (row * tl.num_programs(1) + pid_j) * 2
    tl.store(part_ptr + k, tl.sum(acc, axis=0))
    tl.store(part_ptr + k + 1, tl.sum(acc2, axis=0))


def neighbor_subsample_fwd_triton(x: torch.Tensor, seed: int,
                                  need_g2: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(g1, g2); g2 is an empty (0,) placeholder when ``need_g2`` is False."""
    x = x.contiguous()
    b, c, h, w = x.shape
    hh, wh = h // 2, w // 2
    g1 = torch.empty((b, c, hh, wh), dtype=x.dtype, device=x.device)
    g2 = torch.empty_like(g1) if need_g2 else x.new_empty((0,))
    if g1.numel():
        blk = block_size(wh)
        _neighbor_fwd_kernel[(b * hh, triton.cdiv(wh, blk))](x, g1, g2 if need_g2 else g1, c, h, w, hh, wh,
                                                             *seed_halves(seed), NEED_G2=need_g2, BLOCK=blk, **EXACT)
    return g1, g2


def neighbor_subsample_bwd_triton(dg1: torch.Tensor, dg2: torch.Tensor, seed: int, h: int, w: int) -> torch.Tensor:
    dg1, dg2 = dg1.contiguous(), dg2.contiguous()
    b, c, hh, wh = dg1.shape
    alloc = torch.zeros if (h % 2 or w % 2) else torch.empty  # odd leftovers get no gradient
    dx = alloc((b, c, h, w), dtype=dg1.dtype, device=dg1.device)
    if dg1.numel():
        blk = block_size(wh)
        _neighbor_bwd_kernel[(b * hh, triton.cdiv(wh, blk))](dg1, dg2, dx, c, h, w, hh, wh, *seed_halves(seed),
                                                             BLOCK=blk, **EXACT)
    return dx


def nb2nb_loss_fwd_triton(out, y, fy, seed: int, w1: float, w2: float, compute_grad: bool):
    """(terms, grad): terms = [mean(d^2), mean((d - e)^2)] in the compute dtype; grad of
    w1 * terms[0] + w2 * terms[1] with respect to out (empty when not compute_grad)."""
    out, y, fy = out.contiguous(), y.contiguous(), fy.contiguous()
    b, c, h, w = y.shape
    hh, wh = h // 2, w // 2
    n = out.numel()
    acc_dt = opmath_dtype(out.dtype)
    blk = block_size(wh)
    nj = triton.cdiv(wh, blk)
    part = torch.empty((b * hh, nj, 2), dtype=acc_dt, device=out.device)
    grad = torch.empty_like(out) if compute_grad else out.new_empty((0,))
    _nb2nb_loss_kernel[(b * hh, nj)](out, y, fy, grad if compute_grad else out, part, c, h, w, hh, wh,
                                     *seed_halves(seed), float(w1), float(w2), 2.0 / n, COMPUTE_GRAD=compute_grad,
                                     BLOCK=blk, **FUSED)
    return part.view(-1, 2).sum(0) / n, grad
