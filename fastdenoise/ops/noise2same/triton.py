"""Triton kernels for Noise2Same: stratified mask sampler (forward/backward) and the loss (sums, gradient).

Counter layout and donut order: see reference.py (identical here, so outputs are bit-identical)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import choice
from fastdenoise._triton_rng import normal_exact
from fastdenoise._triton_rng import philox
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import cuda_tiles
from fastdenoise._triton_util import f64_bits
from fastdenoise._triton_util import from_bits
from fastdenoise._triton_util import tl_dtype
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance
from fastdenoise.ops.noise2same.reference import STREAM_GAUSS
from fastdenoise.ops.noise2same.reference import n_boxes


@triton.jit
def _nb(x_ptr, base, i, j, di: tl.constexpr, dj: tl.constexpr, H, W, hit, ACC: tl.constexpr):
    """Neighbour (i + di, j + dj) of the masked lanes, 0 outside the image (zero padding)."""
    a = i + di
    b = j + dj
    ok = hit & (a >= 0) & (a < H) & (b >= 0) & (b < W)
    return tl.load(x_ptr + base + a * W + b, mask=ok, other=0).to(ACC)


@bit_identical
@triton.jit
def _mask_fwd_kernel(x_ptr, w6_bits, xm_ptr, m_ptr, H, W, NBH, NBW, NGBR, seed_lo, seed_hi, sigma_bits,
                     BOX: tl.constexpr, BOXP2: tl.constexpr, NBR: tl.constexpr, DONUT: tl.constexpr,
                     GAUSS: tl.constexpr,
                     ACC: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (group of NBR box rows over all planes, block of columns), a (NBR, BOXP2, BLOCK) tile: the
    draws are made once per box row and column (BOX times fewer than pixels), then x is copied with
    the replacement and the mask is written in the same pass."""
    gbr = tl.program_id(0).to(tl.int64) * NBR + tl.arange(0, NBR)[:, None, None].to(tl.int64)  # plane * NBH + bi
    pl = gbr // NBH
    bi = gbr - pl * NBH
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)[None, None, :]  # (1, 1, BLOCK)
    bj = j // BOX
    n = gbr * NBW + bj  # (NBR, 1, BLOCK)
    rr = choice(philox(seed_lo, seed_hi, n, 0), BOX)
    cc = choice(philox(seed_lo, seed_hi, n, 1), BOX)
    col_hit = (gbr < NGBR) & (j < W) & (j == bj * BOX + cc)
    r = tl.arange(0, BOXP2)[None, :, None]
    i = bi * BOX + r.to(tl.int64)  # (NBR, BOXP2, 1)
    m = (r < BOX) & (gbr < NGBR) & (i < H) & (j < W)
    hit = m & col_hit & (r == rr)
    base = pl * H * W
    off = base + i * W + j
    xv = tl.load(x_ptr + off, mask=m, other=0)
    if DONUT:
        w6 = from_bits(w6_bits).to(ACC)
        corners = ((_nb(x_ptr, base, i, j, -1, -1, H, W, hit, ACC) + _nb(x_ptr, base, i, j, -1, 1, H, W, hit, ACC))
                   + _nb(x_ptr, base, i, j, 1, -1, H, W, hit, ACC)) + _nb(x_ptr, base, i, j, 1, 1, H, W, hit, ACC)
        edges = ((_nb(x_ptr, base, i, j, -1, 0, H, W, hit, ACC) + _nb(x_ptr, base, i, j, 0, -1, H, W, hit, ACC))
                 + _nb(x_ptr, base, i, j, 0, 1, H, W, hit, ACC)) + _nb(x_ptr, base, i, j, 1, 0, H, W, hit, ACC)
        rep = to_store((corners * 0.5 + edges) * w6, xm_ptr.dtype.element_ty)
    else:  # sigma_m * normal number n of the Gaussian stream, drawn here (reference.gaussian_values)
        sigma = from_bits(sigma_bits)
        rep = to_store(normal_exact(seed_lo, seed_hi, n, GAUSS) * sigma, xm_ptr.dtype.element_ty)
    tl.store(xm_ptr + off, tl.where(hit, rep, xv), mask=m)
    tl.store(m_ptr + off, tl.where(hit, 1.0, 0.0).to(m_ptr.dtype.element_ty), mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _mask_bwd_kernel(g_ptr, m_ptr, w6_bits, dx_ptr, H, W, NRB, DONUT: tl.constexpr, ACC: tl.constexpr,
                     BLOCK_H: tl.constexpr, BLOCK: tl.constexpr):
    """Gather per pixel on a (BLOCK_H, BLOCK) tile: own gradient off-mask, plus (donut) each masked
    neighbour's gradient times its weight, neighbours in raster order of the offsets (as the C++ kernel)."""
    t = tl.program_id(0).to(tl.int64)  # plane * NRB + row block
    pl = t // NRB
    i = (t - pl * NRB) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None].to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)[None, :]
    ok0 = (i < H) & (j < W)
    base = pl * H * W
    g = tl.load(g_ptr + base + i * W + j, mask=ok0, other=0).to(ACC)
    mv = tl.load(m_ptr + base + i * W + j, mask=ok0, other=0)
    zero = tl.zeros([BLOCK_H, BLOCK], dtype=ACC)
    acc = tl.where(mv != 0, zero, g)
    if DONUT:
        w6 = from_bits(w6_bits).to(ACC)
        for k in tl.static_range(9):
            if k != 4:
                a = i + (k // 3 - 1)
                b = j + (k % 3 - 1)
                ok = ok0 & (a >= 0) & (a < H) & (b >= 0) & (b < W)
                mq = tl.load(m_ptr + base + a * W + b, mask=ok, other=0)
                hq = ok & (mq != 0)
                gq = tl.load(g_ptr + base + a * W + b, mask=hq, other=0).to(ACC)
                if k % 2 == 0:
                    wk = w6 * 0.5
                else:
                    wk = w6
                acc += tl.where(hq, gq * wk, zero)
    tl.store(dx_ptr + base + i * W + j, to_store(acc, dx_ptr.dtype.element_ty), mask=ok0)


@tolerance(TOLERANCE)
@triton.jit
def _loss_sums_kernel(f_ptr, g_ptr, x_ptr, m_ptr, part_ptr, N, BLOCK: tl.constexpr):
    """Per-program partials of sum (f - x)^2, sum m (f - g)^2 and sum m."""
    pid = tl.program_id(0)
    k = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = k < N
    acc_t = part_ptr.dtype.element_ty
    f = tl.load(f_ptr + k, mask=ok, other=0).to(acc_t)
    g = tl.load(g_ptr + k, mask=ok, other=0).to(acc_t)
    x = tl.load(x_ptr + k, mask=ok, other=0).to(acc_t)
    m = tl.load(m_ptr + k, mask=ok, other=0).to(acc_t)
    d = f - x
    e = f - g
    tl.store(part_ptr + pid * 3, tl.sum(d * d, axis=0))
    tl.store(part_ptr + pid * 3 + 1, tl.sum(m * e * e, axis=0))
    tl.store(part_ptr + pid * 3 + 2, tl.sum(m, axis=0))


@tolerance(TOLERANCE)
@triton.jit
def _loss_bwd_kernel(coef_ptr, f_ptr, g_ptr, x_ptr, m_ptr, gf_ptr, gm_ptr, N, ACC: tl.constexpr,
                     BLOCK: tl.constexpr):
    """grad_full = c0 (f - x) + c1 m (f - g), grad_masked = -c1 m (f - g); (c0, c1) read on device."""
    k = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = k < N
    c0 = tl.load(coef_ptr).to(ACC)
    c1 = tl.load(coef_ptr + 1).to(ACC)
    f = tl.load(f_ptr + k, mask=ok, other=0).to(ACC)
    g = tl.load(g_ptr + k, mask=ok, other=0).to(ACC)
    x = tl.load(x_ptr + k, mask=ok, other=0).to(ACC)
    m = tl.load(m_ptr + k, mask=ok, other=0).to(ACC)
    t = c1 * m * (f - g)
    tl.store(gf_ptr + k, to_store(c0 * (f - x) + t, gf_ptr.dtype.element_ty), mask=ok)
    tl.store(gm_ptr + k, to_store(-t, gm_ptr.dtype.element_ty), mask=ok)


# 1/6 as float64 bits: the kernels round it to the op-math type (reference.donut_ref's W6)
W6_BITS = f64_bits(1.0 / 6.0)


def noise2same_mask_fwd_triton(x: torch.Tensor, seed: int, box: int, donut: bool, sigma_m: float = 0.0):
    x = x.contiguous()
    b, c, h, w = x.shape
    _, nbh, nbw = n_boxes(x.shape, box)
    xm, mask = torch.empty_like(x), torch.empty_like(x)
    if x.numel():
        # GPU: two box rows by 64 columns per program. Interpreter: big tiles (its cost is per op).
        gpu = cuda_tiles(x.device)
        blk = block_size(w, hi=64 if gpu else 1024)
        boxp2, ngbr = triton.next_power_of_2(box), b * c * nbh
        nbr = 2 if gpu else min(triton.next_power_of_2(ngbr), max(1, 2**18 // (boxp2 * blk)))
        sigma_bits = f64_bits(sigma_m)
        _mask_fwd_kernel[(triton.cdiv(ngbr, nbr), triton.cdiv(w, blk))](
            x, W6_BITS, xm, mask, h, w, nbh, nbw, ngbr, *seed_halves(seed), sigma_bits,
            BOX=box, BOXP2=boxp2, NBR=nbr, DONUT=donut, GAUSS=STREAM_GAUSS, ACC=tl_dtype(opmath_dtype(x.dtype)),
            BLOCK=blk, num_warps=8 if gpu else 4, **EXACT)  # 4 warps spill on sm_80 (donut, fp16/fp64)
    return xm, mask


def noise2same_mask_bwd_triton(g: torch.Tensor, mask: torch.Tensor, donut: bool) -> torch.Tensor:
    g, mask = g.contiguous(), mask.contiguous()
    b, c, h, w = g.shape
    dx = torch.empty_like(g)
    if g.numel():
        gpu = cuda_tiles(g.device)
        blk = block_size(w, hi=128 if gpu else 1024)
        bh = min(16 if gpu else 256, triton.next_power_of_2(h))
        nrb = triton.cdiv(h, bh)
        _mask_bwd_kernel[(b * c * nrb, triton.cdiv(w, blk))](
            g, mask, W6_BITS, dx, h, w, nrb, DONUT=donut, ACC=tl_dtype(opmath_dtype(g.dtype)),
            BLOCK_H=bh, BLOCK=blk, **FUSED)
    return dx


_LOSS_BLOCK = 1024


def noise2same_loss_sums_triton(f, g, x, m) -> torch.Tensor:
    f, g, x, m = f.contiguous(), g.contiguous(), x.contiguous(), m.contiguous()
    n = f.numel()
    nprog = triton.cdiv(n, _LOSS_BLOCK)
    part = torch.empty((nprog, 3), dtype=opmath_dtype(f.dtype), device=f.device)
    _loss_sums_kernel[(nprog,)](f, g, x, m, part, n, BLOCK=_LOSS_BLOCK, **FUSED)
    return part.sum(0)


def noise2same_loss_bwd_triton(coef, f, g, x, m):
    f, g, x, m = f.contiguous(), g.contiguous(), x.contiguous(), m.contiguous()
    n = f.numel()
    gf, gm = torch.empty_like(f), torch.empty_like(f)
    _loss_bwd_kernel[(triton.cdiv(n, _LOSS_BLOCK),)](coef.contiguous(), f, g, x, m, gf, gm, n,
                                                     ACC=tl_dtype(opmath_dtype(f.dtype)), BLOCK=_LOSS_BLOCK, **FUSED)
    return gf, gm
