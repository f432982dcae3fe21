// Philox4x32-10, identical to fastdenoise/_rng.py (the reference) and fastdenoise/_triton_rng.py.
#pragma once
#include <cstdint>

namespace fastdenoise {

struct Seed {
  uint32_t k0, k1;
  explicit Seed(int64_t seed)
      : k0(static_cast<uint32_t>(static_cast<uint64_t>(seed) & 0xFFFFFFFFu)),
        k1(static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32)) {}
};

// First output word for counter (64-bit, split into c0/c1) and stream (c2); c3 = 0.
inline uint32_t philox(const Seed& s, uint64_t counter, uint32_t stream = 0) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = stream, c3 = 0, k0 = s.k0, k1 = s.k1;
  for (int r = 0; r < 10; ++r) {
    const uint64_t pb = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint64_t pa = static_cast<uint64_t>(0xD2511F53u) * c0;
    c0 = static_cast<uint32_t>(pb >> 32) ^ c1 ^ k0;
    c1 = static_cast<uint32_t>(pb);
    c2 = static_cast<uint32_t>(pa >> 32) ^ c3 ^ k1;
    c3 = static_cast<uint32_t>(pa);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// Words for counters base, base + 1, ..., base + n - 1 (stream `stream`) into out[0..n). Lanes of 8 with
// the rounds outside the lane loop, so the compiler vectorises the 32x32->64 products; same results as
// philox() above.
inline void philox_run(const Seed& s, uint64_t base, int64_t n, uint32_t* out, uint32_t stream = 0) {
  constexpr int L = 8;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    uint32_t c0[L], c1[L], c2[L], c3[L];
    for (int l = 0; l < L; ++l) {
      const uint64_t c = base + static_cast<uint64_t>(i + l);
      c0[l] = static_cast<uint32_t>(c);
      c1[l] = static_cast<uint32_t>(c >> 32);
      c2[l] = stream;
      c3[l] = 0;
    }
    uint32_t k0 = s.k0, k1 = s.k1;
    for (int r = 0; r < 10; ++r) {
      for (int l = 0; l < L; ++l) {
        const uint64_t pb = static_cast<uint64_t>(0xCD9E8D57u) * c2[l];
        const uint64_t pa = static_cast<uint64_t>(0xD2511F53u) * c0[l];
        const uint32_t n0 = static_cast<uint32_t>(pb >> 32) ^ c1[l] ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(pa >> 32) ^ c3[l] ^ k1;
        c1[l] = static_cast<uint32_t>(pb);
        c3[l] = static_cast<uint32_t>(pa);
        c0[l] = n0;
        c2[l] = n2;
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    for (int l = 0; l < L; ++l) out[i + l] = c0[l];
  }
  for (; i < n; ++i) out[i] = philox(s, base + static_cast<uint64_t>(i), stream);
}

// Integer in [0, k): (word * k) >> 32.
inline uint32_t choice(uint32_t word, uint32_t k) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * k) >> 32);
}

// float32 uniform in [0, 1) from the top 24 bits (exact on every backend).
inline float uniform(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

}  // namespace fastdenoise
