"""Counter-based Philox4x32-10 in plain torch integer arithmetic: the reference stream.

Every backend (this file, ``csrc/philox.h`` and ``fastdenoise/_triton_rng.py``) computes the same
function ``philox(seed, counter, stream) -> uint32``:

* key ``(k0, k1) = (seed & 0xFFFFFFFF, seed >> 32)``, a 64-bit non-negative seed;
* counter words ``(c0, c1, c2, c3) = (counter & 0xFFFFFFFF, counter >> 32, stream, 0)``;
* ten rounds of ``c0, c1, c2, c3 = hi(B*c2) ^ c1 ^ k0, lo(B*c2), hi(A*c0) ^ c3 ^ k1, lo(A*c0)``
  with ``A = 0xD2511F53``, ``B = 0xCD9E8D57``, then ``k0 += 0x9E3779B9``, ``k1 += 0xBB67AE85``;
* the result is ``c0`` after the last round (with ``stream = 0`` and counters below 2**32 this is
  exactly Triton's ``tl.randint(seed, counter)``).

``packed(seed, index, stream)`` uses all four output words: word ``index & 3`` of the block of
counter ``index >> 2`` (ops that need one word per pixel use it: a quarter of the rounds).

Choices among ``K`` options use ``(word * K) >> 32`` (integer only, so bit-identical everywhere);
uniform floats use ``(word >> 8) * 2**-24`` (exact in float32).
"""
from __future__ import annotations

import struct

import numpy as np
import torch

PHILOX_A = 0xD2511F53
PHILOX_B = 0xCD9E8D57
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
MASK32 = 0xFFFFFFFF
SEED_MAX = 2**63 - 1


def _mul_hilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi32, lo32) of the 64-bit product of a 32-bit constant and uint32 values held in int64."""
    a_hi, a_lo = a >> 16, a & 0xFFFF
    lo = b * a_lo  # < 2**48
    hi = b * a_hi  # < 2**48
    mid = hi + (lo >> 16)
    return mid >> 16, (((mid & 0xFFFF) << 16) | (lo & 0xFFFF))


def philox(seed: int, counter: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Philox4x32-10 first output word for each ``counter`` (int64 tensor), as int64 in [0, 2**32)."""
    return philox4(seed, counter, stream)[0]


def packed(seed: int, index: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Word ``index & 3`` of the Philox block of counter ``index >> 2``: the packed stream, four words
    per block, as int64 in [0, 2**32)."""
    index = index.to(torch.int64)
    words = torch.stack(philox4(seed, index >> 2, stream), -1)  # (..., 4)
    return words.gather(-1, (index & 3).unsqueeze(-1)).squeeze(-1)


def philox4(seed: int, counter: torch.Tensor, stream: int = 0) -> tuple[torch.Tensor, ...]:
    """The four Philox4x32-10 output words ``(c0, c1, c2, c3)`` for each ``counter``."""
    seed = int(seed)
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed}")
    counter = counter.to(torch.int64)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    c0 = counter & MASK32
    c1 = (counter >> 32) & MASK32
    c2 = torch.full_like(counter, int(stream) & MASK32)
    c3 = torch.zeros_like(counter)
    for _ in range(10):
        hi_b, lo_b = _mul_hilo(PHILOX_B, c2)
        hi_a, lo_a = _mul_hilo(PHILOX_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + PHILOX_KEY_A) & MASK32
        k1 = (k1 + PHILOX_KEY_B) & MASK32
    return c0, c1, c2, c3


def choice(words: torch.Tensor, k: int) -> torch.Tensor:
    """Map uint32 words (int64 tensor) to integers in [0, k): ``(word * k) >> 32``."""
    return (words * int(k)) >> 32


def uniform(words: torch.Tensor) -> torch.Tensor:
    """Map uint32 words to float32 uniforms in [0, 1) with 24 random bits (exact on every backend)."""
    return (words >> 8).to(torch.float32) * (2.0**-24)


def normal_host(seed: int, n: int, stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``n`` standard normals from the stream, by Box-Muller in float64 on the CPU.

    Host-drawn values are the way to get bit-identical Gaussian draws on every backend: kernels read
    them instead of evaluating transcendental functions whose rounding differs between libraries.
    """
    idx = torch.arange(2 * ((n + 1) // 2), dtype=torch.int64)
    w = philox(seed, idx, stream).to(torch.float64)
    u1 = (w[0::2] + 1.0) * 2.0**-32  # (0, 1]
    u2 = w[1::2] * 2.0**-32
    r = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.stack([r * torch.cos(2 * torch.pi * u2), r * torch.sin(2 * torch.pi * u2)], -1)
    return z.reshape(-1)[:n].to(dtype)


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A fresh 62-bit seed from ``generator`` or, without one, torch's default CPU generator.

    Call it once per training iteration and pass the seed to a sampler and to its loss: a program
    that calls ``torch.manual_seed(s)`` first draws the same seeds on every run (a constant seed would
    reuse one sampling pattern for every iteration). A CUDA generator works too (one device sync).
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())


# ----------------------------------------------------------------------------------------------
# Exactly reproducible standard normals: Box-Muller with the logarithm, sine and cosine built from
# correctly rounded float64 operations only (+, -, *, /, sqrt; integer and bit operations), in one fixed
# order. ``_triton_rng.normal_pair`` performs the very same operations, so the values are bit-identical
# on the host, in the Triton interpreter and on a GPU (kernels launched without FP contraction). They
# agree with ``normal_host`` to a few float64 ulps (its libm log/cos/sin round differently), hence the
# same numbers once rounded to float32.


def _f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


# 2 / (2k + 1), k = 0..11: log(m) = s * P(s^2) with s = (m - 1) / (m + 1), |s| <= 0.1716 (truncation < 1e-18)
LOG_C = tuple(_f64(b) for b in (
    0x4000000000000000, 0x3FE5555555555555, 0x3FD999999999999A, 0x3FD2492492492492, 0x3FCC71C71C71C71C,
    0x3FC745D1745D1746, 0x3FC3B13B13B13B14, 0x3FC1111111111111, 0x3FBE1E1E1E1E1E1E, 0x3FBAF286BCA1AF28,
    0x3FB8618618618618, 0x3FB642C8590B2164))
# 1 / (2k + 1)!, k = 0..8 (sin) and 1 / (2k)!, k = 0..9 (cos) on |theta| <= pi / 4 (truncation < 1e-19)
SIN_C = tuple(_f64(b) for b in (
    0x3FF0000000000000, 0x3FC5555555555555, 0x3F81111111111111, 0x3F2A01A01A01A01A, 0x3EC71DE3A556C734,
    0x3E5AE64567F544E4, 0x3DE6124613A86D09, 0x3D6AE7F3E733B81F, 0x3CE952C77030AD4A))
COS_C = tuple(_f64(b) for b in (
    0x3FF0000000000000, 0x3FE0000000000000, 0x3FA5555555555555, 0x3F56C16C16C16C17, 0x3EFA01A01A01A01A,
    0x3E927E4FB7789F5C, 0x3E21EED8EFF8D898, 0x3DA93974A8C07C9D, 0x3D2AE7F3E733B81F, 0x3CA6827863B97D97))
LN2_HI = _f64(0x3FE62E42FEE00000)  # few mantissa bits: e * LN2_HI is exact
LN2_LO = _f64(0x3DEA39EF35793C76)
PI_2 = _f64(0x3FF921FB54442D18)
SQRT2 = _f64(0x3FF6A09E667F3BCD)
_MANT = (1 << 52) - 1
_EXP1 = 1023 << 52


def _sqrt_rn(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float64 square root (torch's vectorised CPU sqrt is not: measured, 7 of 1024
    values one ulp off; NumPy's is IEEE)."""
    return torch.from_numpy(np.sqrt(x.cpu().numpy())).to(x.device)


def box_muller_exact(w0: torch.Tensor, w1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(r cos(2 pi u2), r sin(2 pi u2)), r = sqrt(-2 log u1), u1 = (w0 + 1) 2**-32 in (0, 1],
    u2 = w1 2**-32, from uint32 words (int64 tensors), in float64; the operation order that every
    backend follows."""
    # log(u1) = log(m) + (e - 32) log 2 with w0 + 1 = m 2**e, m in [sqrt(1/2), sqrt(2)) (exact split)
    k = (w0 + 1).to(torch.float64)
    bits = k.view(torch.int64)
    e = (bits >> 52) - 1023
    m = ((bits & _MANT) | _EXP1).view(torch.float64)
    big = m > SQRT2
    m = torch.where(big, m * 0.5, m)
    e = e + big.to(torch.int64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = LOG_C[10] + s2 * LOG_C[11]
    for c in reversed(LOG_C[:10]):
        p = c + s2 * p
    ef = (e - 32).to(torch.float64)
    log_u1 = (s * p + ef * LN2_LO) + ef * LN2_HI
    r = _sqrt_rn(-2.0 * log_u1)
    # 2 pi u2 = n pi/2 + theta: n = round(4 u2) and d = 4 u2 - n in [-1/2, 1/2] by integer arithmetic
    n = (w1 + 2**29) >> 30
    th = (w1 - (n << 30)).to(torch.float64) * 2.0**-30 * PI_2
    t = th * th
    sp = SIN_C[7] - t * SIN_C[8]
    for c in reversed(SIN_C[:7]):
        sp = c - t * sp
    sn = th * sp
    cs = COS_C[8] - t * COS_C[9]
    for c in reversed(COS_C[:8]):
        cs = c - t * cs
    q = n & 3
    cos2 = torch.where(q == 0, cs, torch.where(q == 1, -sn, torch.where(q == 2, -cs, sn)))
    sin2 = torch.where(q == 0, sn, torch.where(q == 1, cs, torch.where(q == 2, -sn, -cs)))
    return r * cos2, r * sin2


def normal_exact(seed: int, index: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Standard normal number ``index`` of the stream, float64, in ``normal_host``'s layout (normal ``j``
    is the cosine (even ``j``) or sine (odd ``j``) branch of the words at counters ``2 (j // 2)`` and
    ``2 (j // 2) + 1``), computed by :func:`box_muller_exact`."""
    index = index.to(torch.int64)
    base = (index >> 1) << 1
    zc, zs = box_muller_exact(philox(seed, base, stream), philox(seed, base + 1, stream))
    return torch.where((index & 1) == 0, zc, zs)


# ----------------------------------------------------------------------------------------------
# Seeds as the public ops take them


def resolve_seed(seed=None, generator: torch.Generator | None = None) -> int:
    """The integer seed an op runs with.

    ``seed`` may be a Python or NumPy integer, a one-element integer tensor (read with ``.item()``,
    which synchronises when it lives on a GPU), or None: then a fresh seed is drawn with
    :func:`draw_seed` from ``generator`` or, without one, from torch's default CPU generator, so a
    program that calls ``torch.manual_seed(s)`` first draws the same seeds (and samples) on every run.
    Passing both a seed and a generator is an error. The result is checked to lie in [0, 2**63).
    """
    if torch.compiler.is_compiling() and seed is not None and generator is None and not isinstance(seed, torch.Tensor):
        return seed  # an int (or symbolic int) traced by torch.compile: checked when the same code runs eagerly
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if seed is None:
        return draw_seed(generator)
    if generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if isinstance(seed, torch.Tensor):
        if seed.numel() != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise TypeError(f"a tensor seed must hold one integer, got dtype {seed.dtype} "
                            f"and shape {tuple(seed.shape)}")
        seed = int(seed.item())
    elif isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed must be an int, a one-element integer tensor or None, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return seed
