"""Philox4x32-10 for Triton kernels, identical to ``fastdenoise._rng.philox`` (see there)."""
import triton
import triton.language as tl


@triton.jit
def philox(seed_lo, seed_hi, counter, stream):
    """First Philox word for int64/int32 ``counter`` tensors; seed halves and stream are scalars."""
    c0, _, _, _ = philox4(seed_lo, seed_hi, counter, stream)
    return c0


@triton.jit
def packed(seed_lo, seed_hi, index, stream):
    """Word ``index & 3`` of the block of counter ``index >> 2`` (``fastdenoise._rng.packed``)."""
    index = index.to(tl.int64)
    c0, c1, c2, c3 = philox4(seed_lo, seed_hi, index >> 2, stream)
    lane = index & 3
    return tl.where(lane == 0, c0, tl.where(lane == 1, c1, tl.where(lane == 2, c2, c3)))


@triton.jit
def philox4(seed_lo, seed_hi, counter, stream):
    """The four Philox words (c0, c1, c2, c3) for ``counter`` tensors."""
    counter = counter.to(tl.int64)
    c0 = (counter & 0xFFFFFFFF).to(tl.uint32)
    c1 = ((counter >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c2 = (c0 * 0 + stream).to(tl.uint32)
    c3 = c0 * 0
    k0 = (c0 * 0 + seed_lo).to(tl.uint32)
    k1 = (c0 * 0 + seed_hi).to(tl.uint32)
    for _ in tl.static_range(10):
        a = tl.full(c0.shape, 0xD2511F53, tl.uint32)
        b = tl.full(c0.shape, 0xCD9E8D57, tl.uint32)
        n0 = tl.umulhi(b, c2) ^ c1 ^ k0
        n2 = tl.umulhi(a, c0) ^ c3 ^ k1
        c1 = b * c2
        c3 = a * c0
        c0 = n0
        c2 = n2
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def choice(word, k: tl.constexpr):
    """Integer in [0, k) as int32: (word * k) >> 32."""
    return tl.umulhi(word, tl.full(word.shape, k, tl.uint32)).to(tl.int32)


@triton.jit
def uniform(word):
    """float32 uniform in [0, 1) from the top 24 bits."""
    return (word >> 8).to(tl.float32) * (1.0 / 16777216.0)
