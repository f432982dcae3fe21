"""Triton kernels for the shifted 2x2 max-pool (forward saves an int8 argmax; backward gathers)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastdenoise._runtime import opmath_dtype
from fastdenoise._triton_util import EXACT
from fastdenoise._triton_util import bit_identical
from fastdenoise._triton_util import block_size
from fastdenoise._triton_util import tl_dtype
from fastdenoise._triton_util import to_store
from fastdenoise.ops.blindspot.reference import OFFSETS


@bit_identical
@triton.jit
def _smp_fwd_kernel(x_ptr, y_ptr, idx_ptr, H, W, HO, WO, RO: tl.constexpr, CO: tl.constexpr, BLOCK: tl.constexpr,
                    ACC: tl.constexpr):
    """One program per (plane, output row, block of columns). Window (2i+RO.., 2j+CO..), positions
    outside the image read 0; raster order, strict >, the first NaN wins (torch's rule). ACC is the
    comparison dtype: float32, or float64 for float64 inputs (which must not round through float32)."""
    row = tl.program_id(0).to(tl.int64)  # plane * HO + i
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = j < WO
    plane = row // HO
    i = row - plane * HO
    base = x_ptr + plane * H * W
    best = tl.zeros([BLOCK], dtype=ACC)
    k = tl.zeros([BLOCK], dtype=tl.int32)
    for a in tl.static_range(2):
        r = 2 * i + RO + a + j * 0  # as a block: scalar masks are not broadcast by the interpreter
        for b in tl.static_range(2):
            c = 2 * j + CO + b
            ok = m & (r >= 0) & (r < H) & (c >= 0) & (c < W)
            v = tl.load(base + r * W + c, mask=ok, other=0).to(ACC)
            if a + b == 0:
                best = v
            else:
                take = (v > best) | ((v != v) & (best == best))
                best = tl.where(take, v, best)
                k = tl.where(take, 2 * a + b, k)
    tl.store(y_ptr + row * WO + j, to_store(best, y_ptr.dtype.element_ty), mask=m)
    tl.store(idx_ptr + row * WO + j, k.to(tl.int8), mask=m)


@bit_identical
@triton.jit
def _smp_bwd_kernel(dy_ptr, idx_ptr, dx_ptr, H, W, HO, WO, RO: tl.constexpr, CO: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (plane, input row, block of columns): each input element reads its window's
    gradient if it holds the saved argmax (no atomics; uncovered rows/columns and the zero row get 0)."""
    row = tl.program_id(0).to(tl.int64)  # plane * H + r
    c = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = c < W
    plane = row // H
    r = row - plane * H
    i = (r - RO + 2 + c * 0) // 2 - 1  # floor((r - RO) / 2) (r - RO >= -1), as a block for the mask
    a = r - RO - 2 * i
    j = (c - CO + 2) // 2 - 1
    b = c - CO - 2 * j
    ok = m & (i >= 0) & (i < HO) & (j >= 0) & (j < WO)
    o = (plane * HO + i) * WO + j
    k = tl.load(idx_ptr + o, mask=ok, other=-1).to(tl.int64)
    g = tl.load(dy_ptr + o, mask=ok, other=0)
    g = tl.where(k == 2 * a + b, g, tl.zeros_like(g))  # no arithmetic (a bf16 g * 0 is an fma on sm_80)
    tl.store(dx_ptr + row * W + c, g, mask=m)


def shifted_max_pool2d_fwd_triton(x: torch.Tensor, direction: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    b, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    y = torch.empty((b, c, ho, wo), dtype=x.dtype, device=x.device)
    idx = torch.empty((b, c, ho, wo), dtype=torch.int8, device=x.device)
    if y.numel():
        ro, co = OFFSETS[direction]
        blk = block_size(wo)
        acc = tl_dtype(opmath_dtype(x.dtype))
        _smp_fwd_kernel[(b * c * ho, triton.cdiv(wo, blk))](x, y, idx, h, w, ho, wo, RO=ro, CO=co, BLOCK=blk, ACC=acc,
                                                            **EXACT)
    return y, idx


def shifted_max_pool2d_bwd_triton(dy: torch.Tensor, idx: torch.Tensor, direction: int, h: int, w: int) -> torch.Tensor:
    dy, idx = dy.contiguous(), idx.contiguous()
    b, c, ho, wo = dy.shape
    dx = torch.empty((b, c, h, w), dtype=dy.dtype, device=dy.device)
    if dx.numel():
        ro, co = OFFSETS[direction]
        blk = block_size(w)
        _smp_bwd_kernel[(b * c * h, triton.cdiv(w, blk))](dy, idx, dx, h, w, ho, wo, RO=ro, CO=co, BLOCK=blk, **EXACT)
    return dx
