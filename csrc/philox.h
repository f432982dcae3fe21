// Philox4x32-10, identical to fastdenoise/_rng.py (the reference) and fastdenoise/_triton_rng.py.
#pragma once
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastdenoise {

struct Seed {
  uint32_t k0, k1;
  explicit Seed(int64_t seed)
      : k0(static_cast<uint32_t>(static_cast<uint64_t>(seed) & 0xFFFFFFFFu)),
        k1(static_cast<uint32_t>(static_cast<uint64_t>(seed) >> 32)) {}
};

// The four output words for counter (64-bit, split into c0/c1) and stream (c2); c3 = 0.
inline void philox4(const Seed& s, uint64_t counter, uint32_t stream, uint32_t out[4]) {
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
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// First output word for counter and stream.
inline uint32_t philox(const Seed& s, uint64_t counter, uint32_t stream = 0) {
  uint32_t w[4];
  philox4(s, counter, stream, w);
  return w[0];
}

#if defined(__AVX2__)
// Lanes of the rounds in AVX2 registers, G groups of eight interleaved so the multiplier latency is
// hidden. _mm256_mul_epu32 forms the 32x32->64 products of the even lanes; the odd lanes are shifted
// down and multiplied the same way; blends put the high and low halves back into lane order.
// With ALL4 the four words of counter base + l go to out[4 l .. 4 l + 3]; else c0 to out[l].
template <int G, bool ALL4 = false>
inline void philox_avx2(const Seed& s, uint64_t base, uint32_t stream, uint32_t* out) {
  alignas(32) uint32_t lo[8 * G], hi[8 * G];
  for (int l = 0; l < 8 * G; ++l) {
    const uint64_t c = base + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(c);
    hi[l] = static_cast<uint32_t>(c >> 32);
  }
  __m256i c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    c0[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo + 8 * g));
    c1[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi + 8 * g));
    c2[g] = _mm256_set1_epi32(static_cast<int>(stream));
    c3[g] = _mm256_setzero_si256();
  }
  const __m256i ma = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i mb = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int r = 0; r < 10; ++r) {
    const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0)), vk1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < G; ++g) {
      const __m256i pb_even = _mm256_mul_epu32(c2[g], mb);
      const __m256i pb_odd = _mm256_mul_epu32(_mm256_srli_epi64(c2[g], 32), mb);
      const __m256i pa_even = _mm256_mul_epu32(c0[g], ma);
      const __m256i pa_odd = _mm256_mul_epu32(_mm256_srli_epi64(c0[g], 32), ma);
      const __m256i hb = _mm256_blend_epi32(_mm256_srli_epi64(pb_even, 32), pb_odd, 0xAA);
      const __m256i lb = _mm256_blend_epi32(pb_even, _mm256_slli_epi64(pb_odd, 32), 0xAA);
      const __m256i ha = _mm256_blend_epi32(_mm256_srli_epi64(pa_even, 32), pa_odd, 0xAA);
      const __m256i la = _mm256_blend_epi32(pa_even, _mm256_slli_epi64(pa_odd, 32), 0xAA);
      c0[g] = _mm256_xor_si256(_mm256_xor_si256(hb, c1[g]), vk0);
      c2[g] = _mm256_xor_si256(_mm256_xor_si256(ha, c3[g]), vk1);
      c1[g] = lb;
      c3[g] = la;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  if constexpr (ALL4) {
    alignas(32) uint32_t w[4][8];
    for (int g = 0; g < G; ++g) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(w[0]), c0[g]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(w[1]), c1[g]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(w[2]), c2[g]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(w[3]), c3[g]);
      for (int l = 0; l < 8; ++l)
        for (int q = 0; q < 4; ++q) out[32 * g + 4 * l + q] = w[q][l];
    }
  } else {
    for (int g = 0; g < G; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * g), c0[g]);
  }
}
#endif

// Words for counters base, base + 1, ..., base + n - 1 (stream `stream`) into out[0..n): 16 or 8 lanes at
// a time in AVX2 registers where the build targets AVX2, else scalar; same results as philox() above
// (tests compare the two through fastdenoise._C.philox_words).
inline void philox_run(const Seed& s, uint64_t base, int64_t n, uint32_t* out, uint32_t stream = 0) {
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i + 16 <= n; i += 16) philox_avx2<2>(s, base + static_cast<uint64_t>(i), stream, out + i);
  for (; i + 8 <= n; i += 8) philox_avx2<1>(s, base + static_cast<uint64_t>(i), stream, out + i);
#endif
  for (; i < n; ++i) out[i] = philox(s, base + static_cast<uint64_t>(i), stream);
}

// Words index .. index + n - 1 of the packed stream (fastdenoise/_rng.py: word i is word i & 3 of the
// block of counter i >> 2) into out[0..n): a quarter of the rounds of philox_run for the same count.
inline void packed_run(const Seed& s, uint64_t index, int64_t n, uint32_t* out, uint32_t stream = 0) {
  uint32_t blk[32];
  int64_t i = 0;
  // leading words up to a block boundary
  if (index & 3u) {
    philox4(s, index >> 2, stream, blk);
    for (uint64_t q = index & 3u; q < 4 && i < n; ++q) out[i++] = blk[q];
  }
  uint64_t c = (index + static_cast<uint64_t>(i)) >> 2;
#if defined(__AVX2__)
  for (; i + 32 <= n; i += 32, c += 8) philox_avx2<1, true>(s, c, stream, out + i);
#endif
  for (; i < n; ++c) {
    philox4(s, c, stream, blk);
    for (int q = 0; q < 4 && i < n; ++q) out[i++] = blk[q];
  }
}

// Integer in [0, k): (word * k) >> 32.
inline uint32_t choice(uint32_t word, uint32_t k) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * k) >> 32);
}

// float32 uniform in [0, 1) from the top 24 bits (exact on every backend).
inline float uniform(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

}  // namespace fastdenoise
