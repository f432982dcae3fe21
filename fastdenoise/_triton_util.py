"""Host-side helpers shared by the Triton launchers (imported only by the ``ops/*/triton.py`` files)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


def tl_dtype(dtype: torch.dtype):
    """The Triton dtype of a torch floating dtype (e.g. ``tl_dtype(opmath_dtype(x.dtype))`` for an
    accumulator ``tl.constexpr``)."""
    try:
        return _TL_DTYPES[dtype]
    except KeyError:
        raise TypeError(f"no Triton dtype for {dtype}") from None


def block_size(n: int, lo: int = 16, hi: int = 1024) -> int:
    """``BLOCK`` of a launch covering ``n`` elements: ``next_power_of_2(n)`` clamped to [lo, hi].

    Reductions store one partial sum per program, so the block size fixes their summation order:
    every launch must keep the ``lo``/``hi`` it was validated with.
    """
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))
