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
    """A fresh 62-bit seed from torch's (CPU) generator: callers who pass no seed stay reproducible
    under ``torch.manual_seed``."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())
