"""Triton kernels for the APR sampler (forward, gather-form backward) and the fused loss."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import choice
from fastdenoise._triton_rng import packed
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import cuda_tiles
from fastdenoise._triton_util import tl_dtype
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance


@triton.jit
def _sources(b, r, c, H, W, seed_lo, seed_hi):
    """Clamped (row, col) of the h1 and h2 sources of pixels (b, r, c); pair table in reference.py."""
    k = choice(packed(seed_lo, seed_hi, (b * H + r) * W + c, 0), 72)
    p = k // 8
    j = k - 8 * p
    q = j + (j >= p).to(tl.int32)
    r1 = tl.minimum(tl.maximum(r + (p // 3 - 1), 0), H - 1)
    c1 = tl.minimum(tl.maximum(c + (p % 3 - 1), 0), W - 1)
    r2 = tl.minimum(tl.maximum(r + (q // 3 - 1), 0), H - 1)
    c2 = tl.minimum(tl.maximum(c + (q % 3 - 1), 0), W - 1)
    return r1, c1, r2, c2


@bit_identical
@triton.jit
def _apr_fwd_kernel(x_ptr, h1_ptr, h2_ptr, C, H, W, seed_lo, seed_hi, NEED_H2: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (image, block of pixels); the pair is drawn once and used for all C; h2 is
    written only when NEED_H2."""
    b = tl.program_id(1).to(tl.int64)
    pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # r * W + c
    m = pix < H * W
    r = pix // W
    col = pix - r * W
    r1, c1, r2, c2 = _sources(b, r, col, H, W, seed_lo, seed_hi)
    off1 = r1 * W + c1
    off2 = r2 * W + c2
    for ch in range(0, C):
        plane = (b * C + ch) * H * W
        v1 = tl.load(x_ptr + plane + off1, mask=m)
        tl.store(h1_ptr + plane + pix, v1, mask=m)
        if NEED_H2:
            v2 = tl.load(x_ptr + plane + off2, mask=m)
            tl.store(h2_ptr + plane + pix, v2, mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _apr_bwd_kernel(d1_ptr, d2_ptr, dx_ptr, C, H, W, seed_lo, seed_hi, s1, s2, ACC_DTYPE: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Gather-form transpose: each source pixel s sums s1 * d1[n] (s2 * d2[n]) over the 3x3 neighbours n
    whose regenerated h1 (h2) source is s, in window order o = 0..8, d1 before d2 (as the C++ kernel).
    The 18 hit flags are packed in two bit masks, so the choices are drawn once for all C."""
    b = tl.program_id(1).to(tl.int64)
    pix = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = pix < H * W
    r = pix // W
    col = pix - r * W
    bits1 = tl.zeros([BLOCK], dtype=tl.int32)
    bits2 = tl.zeros([BLOCK], dtype=tl.int32)
    for o in tl.static_range(9):
        nr = r + (o // 3 - 1)
        nc = col + (o % 3 - 1)
        ok = m & (nr >= 0) & (nr < H) & (nc >= 0) & (nc < W)
        r1, c1, r2, c2 = _sources(b, nr, nc, H, W, seed_lo, seed_hi)
        hit1 = ok & (r1 == r) & (c1 == col)
        hit2 = ok & (r2 == r) & (c2 == col)
        bits1 = bits1 | (hit1.to(tl.int32) << o)
        bits2 = bits2 | (hit2.to(tl.int32) << o)
    for ch in range(0, C):
        plane = (b * C + ch) * H * W
        acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
        for o in tl.static_range(9):
            n = plane + pix + (o // 3 - 1) * W + (o % 3 - 1)
            h1 = ((bits1 >> o) & 1) != 0
            h2 = ((bits2 >> o) & 1) != 0
            v1 = tl.load(d1_ptr + n, mask=h1, other=0).to(ACC_DTYPE)
            v2 = tl.load(d2_ptr + n, mask=h2, other=0).to(ACC_DTYPE)
            acc = acc + tl.where(h1, s1 * v1, 0.0).to(ACC_DTYPE)
            acc = acc + tl.where(h2, s2 * v2, 0.0).to(ACC_DTYPE)
        tl.store(dx_ptr + plane + pix, to_store(acc, dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _sgn(v):
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, 0.0)).to(v.dtype)


@tolerance(TOLERANCE)
@triton.jit
def _apr_loss_kernel(out_ptr, y_ptr, fy_ptr, grad_ptr, gr_ptr, part_ptr, C, H, W, seed_lo, seed_hi, lam, scale,
                     lscale, COMPUTE_GRAD: tl.constexpr, GRAD_FY: tl.constexpr, BLOCK: tl.constexpr):
    """Partial sum of |d| + lam |d - e| per program, d = out - h2(y), e = h1(fy) - h2(fy).

    dL/dout = (sign d + lam sign(d - e)) / N is written in the same pass (scale = 1/N); with GRAD_FY
    also gr = lam sign(d - e) / N (lscale = lam/N), which the backward kernel turns into dL/dfy."""
    b = tl.program_id(1).to(tl.int64)
    pid_j = tl.program_id(0)
    pix = pid_j.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = pix < H * W
    r = pix // W
    col = pix - r * W
    r1, c1, r2, c2 = _sources(b, r, col, H, W, seed_lo, seed_hi)
    off1 = r1 * W + c1
    off2 = r2 * W + c2
    acc = tl.zeros([BLOCK], dtype=part_ptr.dtype.element_ty)
    for ch in range(0, C):
        plane = (b * C + ch) * H * W
        o = plane + pix
        out = tl.load(out_ptr + o, mask=m, other=0).to(acc.dtype)
        y2 = tl.load(y_ptr + plane + off2, mask=m, other=0).to(acc.dtype)
        f1 = tl.load(fy_ptr + plane + off1, mask=m, other=0).to(acc.dtype)
        f2 = tl.load(fy_ptr + plane + off2, mask=m, other=0).to(acc.dtype)
        d = out - y2
        rr = d - (f1 - f2)
        acc += tl.abs(d) + lam * tl.abs(rr)
        if COMPUTE_GRAD:
            g = scale * (_sgn(d) + lam * _sgn(rr))
            tl.store(grad_ptr + o, to_store(g, grad_ptr.dtype.element_ty), mask=m)
        if GRAD_FY:
            tl.store(gr_ptr + o, to_store(lscale * _sgn(rr), gr_ptr.dtype.element_ty), mask=m)
    tl.store(part_ptr + b * tl.num_programs(0) + pid_j, tl.sum(acc, axis=0))


def apr_sample_fwd_triton(x: torch.Tensor, seed: int, need_h2: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    b, c, h, w = x.shape
    h1 = torch.empty((b, c, h, w), dtype=x.dtype, device=x.device)
    h2 = torch.empty_like(h1) if need_h2 else h1.new_empty((0,))
    if h1.numel():
        blk = block_size(h * w)
        _apr_fwd_kernel[(triton.cdiv(h * w, blk), b)](x, h1, h2 if need_h2 else h1, c, h, w, *seed_halves(seed),
                                                      NEED_H2=bool(need_h2), BLOCK=blk, **EXACT)
    return h1, h2


def _gather_bwd(d1, d2, seed: int, s1: float, s2: float) -> torch.Tensor:
    b, c, h, w = d1.shape
    dx = torch.empty((b, c, h, w), dtype=d1.dtype, device=d1.device)
    if dx.numel():
        # GPU: 256 pixels per program (at 1024 the 18 hit flags per pixel spill on sm_80 and sm_90; a gather,
        # so the result does not depend on the block)
        blk = block_size(h * w, hi=256 if cuda_tiles(d1.device) else 1024)
        _apr_bwd_kernel[(triton.cdiv(h * w, blk), b)](d1, d2, dx, c, h, w, *seed_halves(seed), float(s1), float(s2),
                                                      ACC_DTYPE=tl_dtype(opmath_dtype(d1.dtype)), BLOCK=blk, **FUSED)
    return dx


def apr_sample_bwd_triton(dh1: torch.Tensor, dh2: torch.Tensor, seed: int) -> torch.Tensor:
    return _gather_bwd(dh1.contiguous(), dh2.contiguous(), seed, 1.0, 1.0)


def _loss_warps(blk: int, dtype: torch.dtype) -> int:
    """Warps of the loss kernel: 4 warps at BLOCK 1024 spill on sm_90 (8 warps on sm_80 in float64)."""
    return (8 if blk >= 1024 else 4) * (2 if dtype == torch.float64 and blk >= 1024 else 1)


def apr_loss_fwd_triton(out, y, fy, seed: int, lam: float, compute_grad: bool, grad_fy: bool):
    out, y, fy = out.contiguous(), y.contiguous(), fy.contiguous()
    b, c, h, w = y.shape
    n = out.numel()
    acc_dt = opmath_dtype(out.dtype)
    blk = block_size(h * w)
    nj = triton.cdiv(h * w, blk)
    part = torch.empty((b, nj), dtype=acc_dt, device=out.device)
    grad = torch.empty_like(out) if compute_grad else out.new_empty((0,))
    gr = torch.empty_like(out) if grad_fy else out.new_empty((0,))
    _apr_loss_kernel[(nj, b)](out, y, fy, grad if compute_grad else out, gr if grad_fy else out, part, c, h, w,
                                  *seed_halves(seed), float(lam), 1.0 / n, float(lam) / n,
                                  COMPUTE_GRAD=compute_grad, GRAD_FY=grad_fy, BLOCK=blk,
                                  num_warps=_loss_warps(blk, out.dtype), **FUSED)
    gfy = _gather_bwd(gr, gr, seed, -1.0, 1.0) if grad_fy else out.new_empty((0,))
    return part.sum() / n, grad, gfy
