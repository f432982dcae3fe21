"""Triton kernels for Blind2Grad: dual-mask keys + write (threshold by an on-device k-th value), and
the fused loss (value, gradient w.r.t. out_masked and optionally out_full, gather form)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import philox
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
def _dual_mask_keys_kernel(y_ptr, x_ptr, thr_bits, comp_ptr, N, C, HW, SENTINEL, seed_lo, seed_hi,
                           ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Composite key key * HW + (i * W + j) per flat pixel, 2**32 * HW per detail pixel (reference.py).
    Flat 1-D grid over the B * H * W pixels (the linear pixel index is also the Philox counter)."""
    q = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = q < N
    b = q // HW  # int64 (q is): no .to() on scalar args, which Triton may specialise to constexpr 1
    pix = q - b * HW
    thr = from_bits(thr_bits).to(ACC)  # eps_g rounded to the compute dtype, as the reference does
    mx = tl.zeros([BLOCK], dtype=thr.dtype)
    for c in range(0, C):
        o = (b * C + c) * HW + pix
        yv = tl.load(y_ptr + o, mask=m, other=0).to(thr.dtype)
        xv = tl.load(x_ptr + o, mask=m, other=0).to(thr.dtype)
        mx = tl.maximum(mx, tl.abs(yv - xv))
    key = philox(seed_lo, seed_hi, q, 0).to(tl.int64) & 0xFFFFFFFF
    comp = tl.where(mx >= thr, pix * 0 + SENTINEL, key * HW + pix)
    tl.store(comp_ptr + q, comp, mask=m)


@bit_identical
@triton.jit
def _dual_mask_write_kernel(comp_ptr, t_ptr, mask_ptr, HW, SENTINEL, BLOCK: tl.constexpr):
    """mask = (comp <= T[b]) & (comp < sentinel)."""
    b = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = p < HW
    c = tl.load(comp_ptr + b * HW + p, mask=m, other=0)
    t = tl.load(t_ptr + b)
    sel = (c <= t) & (c < SENTINEL)
    val = tl.where(sel, 1.0, 0.0)  # float32 first: bool -> bfloat16 is not portable
    tl.store(mask_ptr + b * HW + p, to_store(val, mask_ptr.dtype.element_ty), mask=m)


@triton.jit
def _diff_at(f_ptr, a_ptr, off, msk, ref):
    """f - a at ``off`` (0 where ``msk`` is off), in the dtype of ``ref``."""
    fv = tl.load(f_ptr + off, mask=msk, other=0).to(ref.dtype)
    return fv - tl.load(a_ptr + off, mask=msk, other=0).to(ref.dtype)


@tolerance(TOLERANCE)
@triton.jit
def _blind2grad_loss_kernel(a_ptr, f_ptr, y_ptr, m_ptr, coef_ptr, ga_ptr, gf_ptr, part_ptr, N, C, H, W, HW,
                            MASKED: tl.constexpr, GRAD_A: tl.constexpr, GRAD_F: tl.constexpr, BLOCK: tl.constexpr):
    """Flat 1-D grid over the B * H * W pixels. Per program: partial sums of d_c^2 and w d_g^2, and
    (gather form) dL/da = s_c m d_c + s_g G, dL/df = -s_g G (G as in csrc/cpu/blind2grad.cpp);
    coef = (s_c, s_g) already divided by the counts."""
    pid = tl.program_id(0)
    q = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inb = q < N
    b = q // HW
    pix = q - b * HW
    i = pix // W
    j = pix - i * W
    s_c = tl.load(coef_ptr)
    s_g = tl.load(coef_ptr + 1)
    has_r = inb & ((j + 1) < W)
    has_l = inb & (j > 0)
    has_d = inb & ((i + 1) < H)
    has_u = inb & (i > 0)
    m0 = tl.load(m_ptr + q, mask=inb, other=0).to(s_c.dtype)
    one = m0 * 0 + 1
    zero = m0 * 0
    if MASKED:
        z = m0 != 0
        wxr = tl.where(has_r & (z | (tl.load(m_ptr + q + 1, mask=has_r, other=0) != 0)), one, zero)
        wxl = tl.where(has_l & (z | (tl.load(m_ptr + q - 1, mask=has_l, other=0) != 0)), one, zero)
        wyd = tl.where(has_d & (z | (tl.load(m_ptr + q + W, mask=has_d, other=0) != 0)), one, zero)
        wyu = tl.where(has_u & (z | (tl.load(m_ptr + q - W, mask=has_u, other=0) != 0)), one, zero)
    else:
        wxr = tl.where(has_r, one, zero)
        wxl = tl.where(has_l, one, zero)
        wyd = tl.where(has_d, one, zero)
        wyu = tl.where(has_u, one, zero)
    acc_c = tl.zeros([BLOCK], dtype=s_c.dtype)
    acc_g = tl.zeros([BLOCK], dtype=s_c.dtype)
    for c in range(0, C):
        p = (b * C + c) * HW + pix
        av = tl.load(a_ptr + p, mask=inb, other=0).to(s_c.dtype)
        e = tl.load(f_ptr + p, mask=inb, other=0).to(s_c.dtype) - av
        dc = m0 * (av - tl.load(y_ptr + p, mask=inb, other=0).to(s_c.dtype))
        er = _diff_at(f_ptr, a_ptr, p + 1, has_r, s_c)
        ed = _diff_at(f_ptr, a_ptr, p + W, has_d, s_c)
        gx = tl.where(has_r, er - e, zero)
        gy = tl.where(has_d, ed - e, zero)
        acc_c += dc * dc
        acc_g += wxr * gx * gx + wyd * gy * gy
        if GRAD_A or GRAD_F:
            el = _diff_at(f_ptr, a_ptr, p - 1, has_l, s_c)
            eu = _diff_at(f_ptr, a_ptr, p - W, has_u, s_c)
            gxl = tl.where(has_l, e - el, zero)
            gyu = tl.where(has_u, e - eu, zero)
            g = wxr * gx - wxl * gxl + wyd * gy - wyu * gyu
            if GRAD_A:
                tl.store(ga_ptr + p, to_store(s_c * m0 * dc + s_g * g, ga_ptr.dtype.element_ty), mask=inb)
            if GRAD_F:
                tl.store(gf_ptr + p, to_store(-(s_g * g), gf_ptr.dtype.element_ty), mask=inb)
    npr = tl.num_programs(0)
    tl.store(part_ptr + pid, tl.sum(acc_c, axis=0))
    tl.store(part_ptr + npr + pid, tl.sum(acc_g, axis=0))


def dual_mask_fwd_triton(y: torch.Tensor, x_m: torch.Tensor, seed: int, k: int, eps_g: float) -> torch.Tensor:
    y, x_m = y.contiguous(), x_m.contiguous()
    b, c, h, w = y.shape
    hw = h * w
    mask = torch.empty((b, 1, h, w), dtype=y.dtype, device=y.device)
    if mask.numel() == 0:
        return mask
    comp = torch.empty((b, hw), dtype=torch.int64, device=y.device)
    blk = block_size(b * hw)
    _dual_mask_keys_kernel[(triton.cdiv(b * hw, blk),)](y, x_m, f64_bits(eps_g), comp, b * hw, c, hw, hw * 2**32,
                                                        *seed_halves(seed), ACC=tl_dtype(opmath_dtype(y.dtype)),
                                                        BLOCK=blk, **EXACT)
    if k > 0:
        t = comp.kthvalue(k, dim=1).values.contiguous()  # on device, no host sync
    else:
        t = torch.full((b,), -1, dtype=torch.int64, device=y.device)
    blk = block_size(hw)
    _dual_mask_write_kernel[(b, triton.cdiv(hw, blk))](comp, t, mask, hw, hw * 2**32, BLOCK=blk, **EXACT)
    return mask


def blind2grad_loss_fwd_triton(a, f, y, mask, omega: float, gamma: float, masked_only: bool, grad_a: bool,
                               grad_f: bool):
    a, f, y, mask = a.contiguous(), f.contiguous(), y.contiguous(), mask.contiguous()
    b, c, h, w = a.shape
    acc_dt = opmath_dtype(a.dtype)
    ga = torch.empty_like(a) if grad_a else a.new_empty((0,))
    gf = torch.empty_like(a) if grad_f else a.new_empty((0,))
    if a.numel() == 0:
        return a.new_zeros((), dtype=acc_dt), ga, gf
    m = mask.to(acc_dt)
    n_m = (m.sum() * c).clamp_min(1)
    if masked_only:
        nz = mask != 0
        n_d = (nz[..., 1:] | nz[..., :-1]).sum() + (nz[..., 1:, :] | nz[..., :-1, :]).sum()
        n_d = (n_d * c).to(acc_dt).clamp_min(1)
    else:
        n_d = torch.full((), float(max(b * c * (h * (w - 1) + (h - 1) * w), 1)), dtype=acc_dt, device=a.device)
    coef = torch.stack([2.0 * (1.0 + gamma) / n_m, 2.0 * omega * omega / n_d])
    n = b * h * w
    blk = block_size(n, hi=512)
    npr = triton.cdiv(n, blk)
    part = torch.empty((2, npr), dtype=acc_dt, device=a.device)
    _blind2grad_loss_kernel[(npr,)](a, f, y, mask, coef, ga if grad_a else a, gf if grad_f else a, part, n, c, h, w,
                                    h * w, MASKED=masked_only, GRAD_A=grad_a, GRAD_F=grad_f, BLOCK=blk, **FUSED)
    s_c, s_g = part.sum(1).unbind(0)  # unbind, not [0]: integer indexing of a fake CUDA tensor aborts on CPU builds
    return (1.0 + gamma) * s_c / n_m + omega * omega * s_g / n_d, ga, gf
