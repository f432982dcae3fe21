"""Triton kernels for P2N: renoised data construction (forward/backward) and the fused loss."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import normal_exact
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import f64_bits
from fastdenoise._triton_util import from_bits
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance

BLOCK = 1024


@triton.jit
def _clamp01(z):
    return tl.where(z < 0, z * 0, tl.where(z > 1, z * 0 + 1, z))


@bit_identical
@triton.jit
def _scales_kernel(s_ptr, M2, seed_lo, seed_hi, stream, sigma_bits, BLOCK: tl.constexpr):
    """s[j] = 1 + sigma * normal_exact(seed, j) in float64, rounded to s's dtype (reference.scales_flat)."""
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    sigma = from_bits(sigma_bits)
    v = 1.0 + sigma * normal_exact(seed_lo, seed_hi, j, stream)
    tl.store(s_ptr + j, to_store(v, s_ptr.dtype.element_ty), mask=j < M2)


@bit_identical
@triton.jit
def _renoise_fwd_kernel(y_ptr, x_ptr, s_ptr, z_ptr, N, NS, GROUP, CLAMP: tl.constexpr, BLOCK: tl.constexpr):
    """z[i] = x + a n, z[N + i] = x - b n with n = y - x; scale pair (a, b) = s[i // GROUP], s[NS + i // GROUP]."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    g = i // GROUP
    a = tl.load(s_ptr + g, mask=m, other=0)
    b = tl.load(s_ptr + NS + g, mask=m, other=0)
    x = tl.load(x_ptr + i, mask=m, other=0).to(a.dtype)
    n = tl.load(y_ptr + i, mask=m, other=0).to(a.dtype) - x
    p = x + a * n
    q = x - b * n
    if CLAMP:
        p = _clamp01(p)
        q = _clamp01(q)
    tl.store(z_ptr + i, to_store(p, z_ptr.dtype.element_ty), mask=m)
    tl.store(z_ptr + N + i, to_store(q, z_ptr.dtype.element_ty), mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _renoise_bwd_kernel(dz_ptr, y_ptr, x_ptr, s_ptr, dy_ptr, dx_ptr, N, NS, GROUP, CLAMP: tl.constexpr,
                        NEED_DY: tl.constexpr, NEED_DX: tl.constexpr, BLOCK: tl.constexpr):
    """dy = a gp - b gn, dx = (1 - a) gp + (1 + b) gn (gp, gn zeroed where the clamp was active)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    g = i // GROUP
    a = tl.load(s_ptr + g, mask=m, other=0)
    b = tl.load(s_ptr + NS + g, mask=m, other=0)
    p = tl.load(dz_ptr + i, mask=m, other=0).to(a.dtype)
    q = tl.load(dz_ptr + N + i, mask=m, other=0).to(a.dtype)
    if CLAMP:
        x = tl.load(x_ptr + i, mask=m, other=0).to(a.dtype)
        n = tl.load(y_ptr + i, mask=m, other=0).to(a.dtype) - x
        zp = x + a * n
        zq = x - b * n
        p = tl.where((zp >= 0) & (zp <= 1), p, p * 0)
        q = tl.where((zq >= 0) & (zq <= 1), q, q * 0)
    if NEED_DY:
        tl.store(dy_ptr + i, to_store(a * p - b * q, dy_ptr.dtype.element_ty), mask=m)
    if NEED_DX:
        tl.store(dx_ptr + i, to_store((1 - a) * p + (1 + b) * q, dx_ptr.dtype.element_ty), mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _p2n_loss_kernel(p_ptr, q_ptr, grad_ptr, part_ptr, N, gm1, eps, grad_scale, COMPUTE_GRAD: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Partial sum of (|d| + eps)^gamma per program; grad = gamma/N (|d| + eps)^(gamma-1) sign(d)."""
    pid = tl.program_id(0)
    i = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    zero = tl.zeros([BLOCK], dtype=part_ptr.dtype.element_ty)
    d = tl.load(p_ptr + i, mask=m, other=0).to(zero.dtype) - tl.load(q_ptr + i, mask=m, other=0).to(zero.dtype)
    ad = tl.abs(d) + eps
    pw = tl.exp(tl.log(ad) * gm1)  # (|d| + eps)^(gamma - 1)
    v = tl.where(m, pw * ad, zero)
    if COMPUTE_GRAD:
        sg = tl.where(d > 0, zero + 1, tl.where(d < 0, zero - 1, zero))
        tl.store(grad_ptr + i, to_store(grad_scale * pw * sg, grad_ptr.dtype.element_ty), mask=m)
    tl.store(part_ptr + pid, tl.sum(v, axis=0))


def rdc_scales_triton(y: torch.Tensor, seed: int, sigma: float, m: int) -> torch.Tensor:
    """The 2 * m scales of ``reference.scales_flat``, drawn on y's device."""
    from fastdenoise.ops.p2n.reference import RENOISE_STREAM

    s = torch.empty((2 * m,), dtype=opmath_dtype(y.dtype), device=y.device)
    if m:
        # 256 per program: the float64 normal transform at 1024 spills on sm_90
        _scales_kernel[(triton.cdiv(2 * m, 256),)](s, 2 * m, *seed_halves(seed), RENOISE_STREAM, f64_bits(sigma),
                                                    BLOCK=256, **EXACT)
    return s


def _scales_meta(y: torch.Tensor, scales: torch.Tensor, group: int):
    n = y.numel()
    return n, n // group


def rdc_renoise_fwd_triton(y, x_hat, scales, group: int, clamp: bool) -> torch.Tensor:
    y, x_hat, scales = y.contiguous(), x_hat.contiguous(), scales.contiguous()
    b, c, h, w = y.shape
    z = torch.empty((2 * b, c, h, w), dtype=y.dtype, device=y.device)
    n, ns = _scales_meta(y, scales, group)
    if n:
        _renoise_fwd_kernel[(triton.cdiv(n, BLOCK),)](y, x_hat, scales, z, n, ns, group, CLAMP=clamp, BLOCK=BLOCK,
                                                      **EXACT)
    return z


def rdc_renoise_bwd_triton(dz, y, x_hat, scales, group: int, clamp: bool, need_dy: bool, need_dxh: bool):
    dz, y, x_hat, scales = dz.contiguous(), y.contiguous(), x_hat.contiguous(), scales.contiguous()
    dy = torch.empty_like(y) if need_dy else y.new_empty((0,))
    dx = torch.empty_like(y) if need_dxh else y.new_empty((0,))
    n, ns = _scales_meta(y, scales, group)
    if n and (need_dy or need_dxh):
        _renoise_bwd_kernel[(triton.cdiv(n, BLOCK),)](dz, y, x_hat, scales, dy if need_dy else y,
                                                      dx if need_dxh else y, n, ns, group, CLAMP=clamp,
                                                      NEED_DY=need_dy, NEED_DX=need_dxh, BLOCK=BLOCK, **EXACT)
    return dy, dx


def p2n_loss_fwd_triton(out_pos, out_neg, gamma: float, eps: float, compute_grad: bool):
    out_pos, out_neg = out_pos.contiguous(), out_neg.contiguous()
    n = out_pos.numel()
    acc_dt = opmath_dtype(out_pos.dtype)
    nprog = triton.cdiv(n, BLOCK)
    part = torch.zeros((max(nprog, 1),), dtype=acc_dt, device=out_pos.device)
    grad = torch.empty_like(out_pos) if compute_grad else out_pos.new_empty((0,))
    if n:
        _p2n_loss_kernel[(nprog,)](out_pos, out_neg, grad if compute_grad else out_pos, part, n, float(gamma) - 1.0,
                                   float(eps), float(gamma) / n, COMPUTE_GRAD=compute_grad, BLOCK=BLOCK, **FUSED)
    return part.sum() / n, grad
