// Vectorised float32 math for the CPU kernels (AVX2 builds only): abs, sign, and x^a for x >= 0 as
// exp2(a log2 x).
// Relative error about 1e-7 * |a log2 x| (float rounding of the exponent dominates), tested against
// torch.pow in tests/test_p2n.py; callers keep a scalar std::pow path for other dtypes and builds.
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

namespace fastdenoise {
namespace vmath {

// |x|
inline __m256 abs_ps(__m256 x) { return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF))); }

// sign(x) in {-1, 0, 1} (0 for +-0 and NaN), as the scalar (x > 0) - (x < 0).
inline __m256 sign_ps(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  return _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), one),
                       _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_LT_OQ), one));
}

// log2(x) for x > 0 (denormals scaled first); x == 0 gives -inf.
inline __m256 log2_ps(__m256 x) {
  const __m256 tiny = _mm256_set1_ps(1.17549435e-38f);
  const __m256 is_den = _mm256_cmp_ps(x, tiny, _CMP_LT_OQ);
  x = _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(16777216.0f)), is_den);  // * 2^24
  const __m256i bits = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
  e = _mm256_sub_ps(e, _mm256_and_ps(is_den, _mm256_set1_ps(24.0f)));
  __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F800000)));
  // m in [1, 2) -> [sqrt(1/2), sqrt(2))
  const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_add_ps(e, _mm256_and_ps(big, _mm256_set1_ps(1.0f)));
  // ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716: odd series to t^9
  const __m256 t = _mm256_div_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.0f)), _mm256_add_ps(m, _mm256_set1_ps(1.0f)));
  const __m256 t2 = _mm256_mul_ps(t, t);
  __m256 p = _mm256_set1_ps(1.0f / 9.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, t2), _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, t2), _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, t2), _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, t2), _mm256_set1_ps(1.0f));
  const __m256 log2m = _mm256_mul_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(2.0f * 1.44269504088896f));
  const __m256 r = _mm256_add_ps(e, log2m);
  const __m256 zero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ);
  return _mm256_blendv_ps(r, _mm256_set1_ps(-__builtin_inff()), zero);
}

// 2^y; y below -126 gives 0, above 128 gives inf.
inline __m256 exp2_ps(__m256 y) {
  const __m256 lo = _mm256_cmp_ps(y, _mm256_set1_ps(-126.0f), _CMP_LT_OQ);
  const __m256 hi = _mm256_cmp_ps(y, _mm256_set1_ps(128.0f), _CMP_GE_OQ);
  y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
  const __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_mul_ps(_mm256_sub_ps(y, n), _mm256_set1_ps(0.693147180559945f));  // |f| <= ln2 / 2
  // e^f, Taylor to f^7
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(1.0f));
  const __m256i sc = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(sc));
  r = _mm256_andnot_ps(lo, r);
  return _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_inff()), hi);
}

// x^a for x >= 0 and finite a != 0 (0^a is 0 for a > 0, inf for a < 0, as std::pow).
inline __m256 pow_pos_ps(__m256 x, float a) { return exp2_ps(_mm256_mul_ps(_mm256_set1_ps(a), log2_ps(x))); }

}  // namespace vmath
}  // namespace fastdenoise
#endif
