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


@triton.jit
def _f64(bits: tl.constexpr):
    """A float64 constant from its bit pattern (a float literal would be rounded to float32)."""
    return tl.full([], bits, tl.int64).to(tl.float64, bitcast=True)


@triton.jit
def box_muller_exact(w0, w1):
    """``fastdenoise._rng.box_muller_exact`` operation for operation (same constants, same order), so
    the float64 results are bit-identical when launched without FP contraction (``_triton_util.EXACT``)."""
    k = (w0.to(tl.int64) + 1).to(tl.float64)
    bits = k.to(tl.int64, bitcast=True)
    e = (bits >> 52) - 1023
    m = ((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000).to(tl.float64, bitcast=True)
    big = m > _f64(0x3FF6A09E667F3BCD)
    m = tl.where(big, m * 0.5, m)
    e = e + big.to(tl.int64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = _f64(0x3FB8618618618618) + s2 * _f64(0x3FB642C8590B2164)
    p = _f64(0x3FBAF286BCA1AF28) + s2 * p
    p = _f64(0x3FBE1E1E1E1E1E1E) + s2 * p
    p = _f64(0x3FC1111111111111) + s2 * p
    p = _f64(0x3FC3B13B13B13B14) + s2 * p
    p = _f64(0x3FC745D1745D1746) + s2 * p
    p = _f64(0x3FCC71C71C71C71C) + s2 * p
    p = _f64(0x3FD2492492492492) + s2 * p
    p = _f64(0x3FD999999999999A) + s2 * p
    p = _f64(0x3FE5555555555555) + s2 * p
    p = _f64(0x4000000000000000) + s2 * p
    ef = (e - 32).to(tl.float64)
    log_u1 = (s * p + ef * _f64(0x3DEA39EF35793C76)) + ef * _f64(0x3FE62E42FEE00000)
    r = tl.sqrt(-2.0 * log_u1)  # fp64: sqrt.rn.f64 (correctly rounded)
    w1 = w1.to(tl.int64)
    n = (w1 + 536870912) >> 30
    th = (w1 - (n << 30)).to(tl.float64) * 9.313225746154785e-10 * _f64(0x3FF921FB54442D18)
    t = th * th
    sp = _f64(0x3D6AE7F3E733B81F) - t * _f64(0x3CE952C77030AD4A)
    sp = _f64(0x3DE6124613A86D09) - t * sp
    sp = _f64(0x3E5AE64567F544E4) - t * sp
    sp = _f64(0x3EC71DE3A556C734) - t * sp
    sp = _f64(0x3F2A01A01A01A01A) - t * sp
    sp = _f64(0x3F81111111111111) - t * sp
    sp = _f64(0x3FC5555555555555) - t * sp
    sp = _f64(0x3FF0000000000000) - t * sp
    sn = th * sp
    cs = _f64(0x3D2AE7F3E733B81F) - t * _f64(0x3CA6827863B97D97)
    cs = _f64(0x3DA93974A8C07C9D) - t * cs
    cs = _f64(0x3E21EED8EFF8D898) - t * cs
    cs = _f64(0x3E927E4FB7789F5C) - t * cs
    cs = _f64(0x3EFA01A01A01A01A) - t * cs
    cs = _f64(0x3F56C16C16C16C17) - t * cs
    cs = _f64(0x3FA5555555555555) - t * cs
    cs = _f64(0x3FE0000000000000) - t * cs
    cs = _f64(0x3FF0000000000000) - t * cs
    q = n & 3
    cos2 = tl.where(q == 0, cs, tl.where(q == 1, -sn, tl.where(q == 2, -cs, sn)))
    sin2 = tl.where(q == 0, sn, tl.where(q == 1, cs, tl.where(q == 2, -sn, -cs)))
    return r * cos2, r * sin2


@triton.jit
def normal_exact(seed_lo, seed_hi, index, stream):
    """Standard normal number ``index`` of the stream in float64 (``fastdenoise._rng.normal_exact``)."""
    index = index.to(tl.int64)
    base = (index >> 1) << 1
    zc, zs = box_muller_exact(philox(seed_lo, seed_hi, base, stream), philox(seed_lo, seed_hi, base + 1, stream))
    return tl.where((index & 1) == 0, zc, zs)
