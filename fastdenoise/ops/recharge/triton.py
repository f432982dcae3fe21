"""Triton kernel for RD's recharged multi-target L1 loss (value and gradient in one pass)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._runtime import seed_halves
from fastdenoise._triton_rng import philox
from fastdenoise._triton_util import FUSED
from fastdenoise._triton_util import TOLERANCE
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import to_store
from fastdenoise._triton_util import tolerance


@tolerance(TOLERANCE)
@triton.jit
def _recharge_l1_kernel(s_ptr, y_ptr, t_ptr, grad_ptr, part_ptr, J, C, H, W, N, seed_lo, seed_hi, inv_n,
                        COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (image row, block of pixels): k = choice(philox(seed, pixel), J) is drawn once
    and shared by all C channels; sum_j |s - (j == k ? y : t_j)| is accumulated, and the gradient
    sum_j sign(.) / N written."""
    row = tl.program_id(0).to(tl.int64)  # b * H + r
    pid_c = tl.program_id(1)
    col = pid_c.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = col < W
    b = row // H
    r = row - b * H
    word = philox(seed_lo, seed_hi, row * W + col, 0)
    k = tl.umulhi(word, (word * 0 + J).to(tl.uint32)).to(tl.int32)
    acc = tl.zeros([BLOCK], dtype=part_ptr.dtype.element_ty)
    for c in range(0, C):
        o = ((b * C + c) * H + r) * W + col
        s = tl.load(s_ptr + o, mask=m, other=0).to(acc.dtype)
        yv = tl.load(y_ptr + o, mask=m, other=0).to(acc.dtype)
        gs = acc * 0
        tp = t_ptr + o  # teacher j is tp + j N, advanced by pointer (no int32 j * N product)
        for j in range(0, J):
            tv = tl.load(tp, mask=m & (k != j), other=0).to(acc.dtype)
            tp += N
            d = s - tl.where(k == j, yv, tv)
            acc += tl.where(m, tl.abs(d), acc * 0)
            gs += tl.where(d > 0, acc * 0 + 1, tl.where(d < 0, acc * 0 - 1, acc * 0))
        if COMPUTE_GRAD:
            tl.store(grad_ptr + o, to_store(gs * inv_n, grad_ptr.dtype.element_ty), mask=m)
    tl.store(part_ptr + row * tl.num_programs(1) + pid_c, tl.sum(acc, axis=0))


def recharge_l1_fwd_triton(student, y, teachers, seed: int, compute_grad: bool):
    student, y, teachers = student.contiguous(), y.contiguous(), teachers.contiguous()
    b, c, h, w = student.shape
    j = teachers.shape[0]
    n = student.numel()
    acc_dt = opmath_dtype(student.dtype)
    blk = block_size(w)
    nc = triton.cdiv(w, blk)
    part = torch.empty((b * h, nc), dtype=acc_dt, device=student.device)
    grad = torch.empty_like(student) if compute_grad else student.new_empty((0,))
    _recharge_l1_kernel[(b * h, nc)](student, y, teachers, grad if compute_grad else student, part, j, c, h, w, n,
                                     *seed_halves(seed), 1.0 / n, COMPUTE_GRAD=compute_grad, BLOCK=blk, **FUSED)
    return part.sum() / n, grad
