"""Helpers shared by the Triton kernels and launchers (imported only by the ``ops/*/triton.py`` files):
dtypes, block sizes, the tile choice for real GPUs, the no-contraction launch option with the claims it
backs, and the one store-rounding helper."""
from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}

# Launch option of every kernel whose outputs are claimed bit-identical to the reference: no FP
# contraction (LLVM emits no fma and ptxas runs with --fmad=false; the same option on Triton 3.6 and
# 3.9, whose default for it changes in 3.10). ``python -m tools.gpucheck`` checks that these
# kernels were launched with it and that their PTX holds no fma.
EXACT = {"enable_fp_fusion": False}
# Launch option of the other kernels (stated tolerance): contraction allowed, said explicitly so the
# result does not change with Triton's default.
FUSED = {"enable_fp_fusion": True}

# The tolerance of kernels that are not bit-identical (reductions in per-program partials, exp/log, or a
# different summation order than the reference): what tests/common.tol allows.
TOLERANCE = "assert_close: fp32 1e-5, fp64 1e-10, fp16 2e-3, bf16 2e-2 (rtol and atol)"

# kernel name -> "bit-identical" or the tolerance its outputs are tested to (filled by the decorators).
CLAIMS: dict[str, str] = {}

# Set by tools.gpucheck while it records launches on the CPU: launchers then choose the tiles
# they would choose for CUDA tensors.
_PRETEND_CUDA = False


def _kernel_name(kernel) -> str:
    return getattr(kernel, "fn", kernel).__name__


def bit_identical(kernel):
    """Mark a kernel as bit-identical to its reference (launch it with ``**EXACT``)."""
    CLAIMS[_kernel_name(kernel)] = "bit-identical"
    return kernel


def tolerance(text: str):
    """Mark a kernel as matching its reference within ``text`` (e.g. the test's assert_close bounds)."""
    def mark(kernel):
        CLAIMS[_kernel_name(kernel)] = text
        return kernel
    return mark


def cuda_tiles(device: torch.device) -> bool:
    """True when a launcher should pick the tile shape for a real GPU (CUDA tensors, or gpucheck's
    recording); False under the CPU interpreter, whose cost is per operation (big tiles win there)."""
    return device.type == "cuda" or _PRETEND_CUDA


def f64_bits(v: float) -> int:
    """The bit pattern of ``v`` as a float64, passed to a kernel as an int64 argument and turned back
    with :func:`from_bits` (a float argument is rounded to float32; a one-element tensor made with
    ``torch.tensor(..., device='cuda')`` is a host-to-device copy per call)."""
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


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


@triton.jit
def from_bits(bits):
    """The float64 scalar whose bit pattern is the int64 argument ``bits`` (:func:`f64_bits`)."""
    return (bits + tl.zeros([], tl.int64)).to(tl.float64, bitcast=True)


@triton.jit
def to_store(v, out_ty: tl.constexpr):
    """``v`` (op-math value) cast to the stored type ``out_ty`` with round-to-nearest-even, the GPU's
    rounding, on every backend: for bfloat16 the rounding is done on the float32 bits first (the
    Triton interpreter truncates on a float32 -> bfloat16 cast; the cast of the pre-rounded value is
    exact everywhere); NaN passes through unchanged. float16 casts round to nearest even everywhere.
    A float64 value goes to a half type through float32, as torch's conversion does."""
    if out_ty == tl.bfloat16:
        f = v.to(tl.float32)
        bits = f.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
        v = tl.where(f == f, bits.to(tl.float32, bitcast=True), f)
    elif out_ty == tl.float16:
        v = v.to(tl.float32)
    return v.to(out_ty)
