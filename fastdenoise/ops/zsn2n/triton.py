"""Triton kernels for the ZS-N2N pair downsampler (forward/backward) and the fused loss (value + gradients).

Rounding: every product that feeds an addition is a multiplication by 0.5 ((a + b) * 0.5 - n1, ...),
which is exact, so an FMA the compiler may contract there rounds exactly like the separate operations
(outside the subnormal range): values and gradients match the reference and the C++ kernels (built with
-ffp-contract=off) bit for bit. Only the loss value's sum of squares may contract differently, and its
reduction order differs between backends anyway.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import f64_bits
from fastdenoise._triton_util import from_bits
from fastdenoise._triton_util import tl_dtype
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance


@bit_identical
@triton.jit
def _pair_fwd_kernel(x_ptr, d1_ptr, d2_ptr, H, W, HH, WH, CT: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (plane, output row, block of columns): d1 = (TR + BL) * 0.5, d2 = (TL + BR) * 0.5."""
    row = tl.program_id(0).to(tl.int64)  # plane * HH + i
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    plane = row // HH
    i = row - plane * HH
    top = x_ptr + (plane * H + 2 * i) * W + 2 * j
    v_tl = tl.load(top, mask=m, other=0).to(CT)
    v_tr = tl.load(top + 1, mask=m, other=0).to(CT)
    v_bl = tl.load(top + W, mask=m, other=0).to(CT)
    v_br = tl.load(top + W + 1, mask=m, other=0).to(CT)
    o = row * WH + j
    tl.store(d1_ptr + o, to_store((v_tr + v_bl) * 0.5, d1_ptr.dtype.element_ty), mask=m)
    tl.store(d2_ptr + o, to_store((v_tl + v_br) * 0.5, d2_ptr.dtype.element_ty), mask=m)


@bit_identical
@triton.jit
def _pair_bwd_kernel(g1_ptr, g2_ptr, dx_ptr, H, W, HH, WH, CT: tl.constexpr, BLOCK: tl.constexpr):
    """Transpose: TR and BL get g1 * 0.5, TL and BR get g2 * 0.5 (a dropped odd row/column stays 0)."""
    row = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    plane = row // HH
    i = row - plane * HH
    o = row * WH + j
    a = to_store(tl.load(g1_ptr + o, mask=m, other=0).to(CT) * 0.5, dx_ptr.dtype.element_ty)
    b = to_store(tl.load(g2_ptr + o, mask=m, other=0).to(CT) * 0.5, dx_ptr.dtype.element_ty)
    top = dx_ptr + (plane * H + 2 * i) * W + 2 * j
    tl.store(top, b, mask=m)
    tl.store(top + 1, a, mask=m)
    tl.store(top + W, a, mask=m)
    tl.store(top + W + 1, b, mask=m)


@tolerance(TOLERANCE)
@triton.jit
def _zsn2n_loss_kernel(y_ptr, ny_ptr, n1_ptr, n2_ptr, c_bits, h_bits, gy_ptr, gny_ptr, gn1_ptr, gn2_ptr, part_ptr, H,
                       W, HH, WH, GRAD_Y: tl.constexpr, GRAD_NY: tl.constexpr, GRAD_N1: tl.constexpr,
                       GRAD_N2: tl.constexpr, BLOCK: tl.constexpr):
    """Partial sum of r1^2 + r2^2 + r3^2 + r4^2 per program, and the gradients in the same pass.

    With p1 = d1 - n1, p2 = d2 - n2: r1 = d1 - p2, r2 = d2 - p1, r3 = p1 - e1, r4 = p2 - e2 and
    L = sum(...) / (2N). dL/dn1 = (r2 - r3) / N, dL/dn2 = (r1 - r4) / N; n_y enters through e = pair(y - n_y):
    dL/dn_y = r3 / (2N) at TR, BL and r4 / (2N) at TL, BR; y enters through d and e, whose e-parts cancel:
    dL/dy = (r1 - r2) / (2N) at TR, BL and its negative at TL, BR. c_bits, h_bits: the float64 bits of
    1/N and 1/(2N), rounded here to the compute dtype (a float argument would be rounded to float32)."""
    row = tl.program_id(0).to(tl.int64)
    pid_j = tl.program_id(1)
    j = pid_j.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WH
    plane = row // HH
    i = row - plane * HH
    ct = part_ptr.dtype.element_ty
    c_scale = from_bits(c_bits).to(ct)
    h_scale = from_bits(h_bits).to(ct)
    top = (plane * H + 2 * i) * W + 2 * j
    y_tl = tl.load(y_ptr + top, mask=m, other=0).to(ct)
    y_tr = tl.load(y_ptr + top + 1, mask=m, other=0).to(ct)
    y_bl = tl.load(y_ptr + top + W, mask=m, other=0).to(ct)
    y_br = tl.load(y_ptr + top + W + 1, mask=m, other=0).to(ct)
    n_tl = tl.load(ny_ptr + top, mask=m, other=0).to(ct)
    n_tr = tl.load(ny_ptr + top + 1, mask=m, other=0).to(ct)
    n_bl = tl.load(ny_ptr + top + W, mask=m, other=0).to(ct)
    n_br = tl.load(ny_ptr + top + W + 1, mask=m, other=0).to(ct)
    o = row * WH + j
    n1 = tl.load(n1_ptr + o, mask=m, other=0).to(ct)
    n2 = tl.load(n2_ptr + o, mask=m, other=0).to(ct)
    d1 = (y_tr + y_bl) * 0.5
    d2 = (y_tl + y_br) * 0.5
    e1 = ((y_tr - n_tr) + (y_bl - n_bl)) * 0.5
    e2 = ((y_tl - n_tl) + (y_br - n_br)) * 0.5
    p1 = d1 - n1
    p2 = d2 - n2
    r1 = d1 - p2
    r2 = d2 - p1
    r3 = p1 - e1
    r4 = p2 - e2
    q = r1 * r1 + r2 * r2 + r3 * r3 + r4 * r4  # masked lanes are 0
    tl.store(part_ptr + row * tl.num_programs(1) + pid_j, tl.sum(q, axis=0))
    if GRAD_N1:
        tl.store(gn1_ptr + o, to_store((r2 - r3) * c_scale, gn1_ptr.dtype.element_ty), mask=m)
    if GRAD_N2:
        tl.store(gn2_ptr + o, to_store((r1 - r4) * c_scale, gn2_ptr.dtype.element_ty), mask=m)
    if GRAD_NY:
        a = to_store(r3 * h_scale, gny_ptr.dtype.element_ty)
        b = to_store(r4 * h_scale, gny_ptr.dtype.element_ty)
        tl.store(gny_ptr + top, b, mask=m)
        tl.store(gny_ptr + top + 1, a, mask=m)
        tl.store(gny_ptr + top + W, a, mask=m)
        tl.store(gny_ptr + top + W + 1, b, mask=m)
    if GRAD_Y:
        t = (r1 - r2) * h_scale
        a = to_store(t, gy_ptr.dtype.element_ty)
        b = to_store(-t, gy_ptr.dtype.element_ty)
        tl.store(gy_ptr + top, b, mask=m)
        tl.store(gy_ptr + top + 1, a, mask=m)
        tl.store(gy_ptr + top + W, a, mask=m)
        tl.store(gy_ptr + top + W + 1, b, mask=m)


def _full_grad(like: torch.Tensor, need: bool) -> torch.Tensor:
    """A full-size gradient buffer: zeros when H or W is odd (the dropped row/column gets no gradient)."""
    if not need:
        return like.new_empty((0,))
    h, w = like.shape[-2:]
    alloc = torch.zeros if (h % 2 or w % 2) else torch.empty
    return alloc(like.shape, dtype=like.dtype, device=like.device)


def pair_downsample_fwd_triton(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    b, c, h, w = x.shape
    hh, wh = h // 2, w // 2
    d1 = torch.empty((b, c, hh, wh), dtype=x.dtype, device=x.device)
    d2 = torch.empty_like(d1)
    if d1.numel():
        blk = block_size(wh)
        _pair_fwd_kernel[(b * c * hh, triton.cdiv(wh, blk))](x, d1, d2, h, w, hh, wh,
                                                             CT=tl_dtype(opmath_dtype(x.dtype)), BLOCK=blk, **EXACT)
    return d1, d2


def pair_downsample_bwd_triton(g1: torch.Tensor, g2: torch.Tensor, h: int, w: int) -> torch.Tensor:
    g1, g2 = g1.contiguous(), g2.contiguous()
    b, c, hh, wh = g1.shape
    alloc = torch.zeros if (h % 2 or w % 2) else torch.empty
    dx = alloc((b, c, h, w), dtype=g1.dtype, device=g1.device)
    if g1.numel():
        blk = block_size(wh)
        _pair_bwd_kernel[(b * c * hh, triton.cdiv(wh, blk))](g1, g2, dx, h, w, hh, wh,
                                                             CT=tl_dtype(opmath_dtype(g1.dtype)), BLOCK=blk, **EXACT)
    return dx


def zsn2n_loss_fwd_triton(y, n_y, n1, n2, grad_y: bool, grad_ny: bool, grad_n1: bool, grad_n2: bool):
    y, n_y, n1, n2 = y.contiguous(), n_y.contiguous(), n1.contiguous(), n2.contiguous()
    b, c, h, w = y.shape
    hh, wh = h // 2, w // 2
    n = n1.numel()
    acc_dt = opmath_dtype(y.dtype)
    gy, gny = _full_grad(y, grad_y), _full_grad(y, grad_ny)
    gn1 = torch.empty_like(n1) if grad_n1 else n1.new_empty((0,))
    gn2 = torch.empty_like(n2) if grad_n2 else n2.new_empty((0,))
    blk = block_size(wh)
    nj = triton.cdiv(wh, blk)
    part = torch.empty((b * c * hh, nj), dtype=acc_dt, device=y.device)
    _zsn2n_loss_kernel[(b * c * hh, nj)](y, n_y, n1, n2, f64_bits(1.0 / n), f64_bits(0.5 / n),
                                         gy if grad_y else y, gny if grad_ny else y,
                                         gn1 if grad_n1 else n1, gn2 if grad_n2 else n2, part, h, w, hh, wh,
                                         GRAD_Y=grad_y, GRAD_NY=grad_ny, GRAD_N1=grad_n1,
                                         GRAD_N2=grad_n2, BLOCK=blk, **FUSED)
    return part.sum() * (0.5 / n), gy, gny, gn1, gn2
