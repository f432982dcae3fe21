// APR (Adjacent Pixel Replacer) 3x3 pair sampler (forward / gather-form backward) and fused loss on
// the CPU. Table and counter layout: fastdenoise/ops/apr/reference.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "../checks.h"
#include "../philox.h"
#include "../vmath.h"

namespace fastdenoise {
namespace {

constexpr uint32_t kNumPairs = 72;

// Pair ids of one image row (flat row index b * H + r), one packed Philox word per pixel.
inline void row_ids(const Seed& s, int64_t flat_row, int64_t W, uint8_t* k) {
  thread_local std::vector<uint32_t> words;
  words.resize(W);
  packed_run(s, static_cast<uint64_t>(flat_row * W), W, words.data());
  for (int64_t j = 0; j < W; ++j) k[j] = static_cast<uint8_t>(choice(words[j], kNumPairs));
}

// Window positions (p, q) of pair id k: p = k / 8, q = k % 8 skipping p.
inline void pair_of(int k, int& p, int& q) {
  p = k >> 3;
  const int j = k & 7;
  q = j + (j >= p);
}

inline int64_t clampi(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

// Offsets (dy * W + dx) of the h1 and h2 sources of every pair id, for interior pixels (int32 copies
// for the AVX2 path when they fit).
struct PairDeltas {
  int64_t d1[kNumPairs], d2[kNumPairs];
  alignas(32) int32_t e1[kNumPairs], e2[kNumPairs];
  explicit PairDeltas(int64_t W) {
    for (int k = 0; k < static_cast<int>(kNumPairs); ++k) {
      int p, q;
      pair_of(k, p, q);
      d1[k] = (p / 3 - 1) * W + (p % 3 - 1);
      d2[k] = (q / 3 - 1) * W + (q % 3 - 1);
      e1[k] = static_cast<int32_t>(d1[k]);
      e2[k] = static_cast<int32_t>(d2[k]);
    }
  }
};

// Columns [1, vec_end(W)) of an interior row are handled eight at a time by the AVX2 paths; the rest
// (column 0 and the tail) one by one.
inline int64_t vec_end(int64_t W) { return W >= 10 ? 1 + ((W - 2) / 8) * 8 : 1; }

#if defined(__AVX2__)
// Pair ids k = (word * 72) >> 32 (choice) of the eight pixels whose packed words start at wd: the
// 32x32->64 products of the even and odd lanes, blended back into lane order.
inline __m256i pair_ids8(const uint32_t* wd) {
  const __m256i k72 = _mm256_set1_epi32(static_cast<int>(kNumPairs));
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wd));
  const __m256i ke = _mm256_srli_epi64(_mm256_mul_epu32(w, k72), 32);
  const __m256i ko = _mm256_mul_epu32(_mm256_srli_epi64(w, 32), k72);
  return _mm256_blend_epi32(ke, ko, 0xAA);
}
#endif

// Source offsets inside the (H, W) plane of h1 and h2 for every pixel of image row r, from the row's
// packed Philox words (o2 may be null when only h1 is wanted). Interior pixels add the pair's table
// offset; border pixels clamp. edges_only: only column 0 and the columns from vec_end(W) on (the
// caller does the interior columns of an interior row itself).
template <typename index_t>
inline void sources_from_words(const uint32_t* wd, const PairDeltas& t, int64_t r, int64_t H, int64_t W,
                               index_t* o1, index_t* o2, bool edges_only = false) {
  const bool interior_row = r > 0 && r < H - 1;
  const int64_t base = r * W;
  int64_t j = 0;
  auto scalar = [&](int64_t jj) {
    const int kk = static_cast<int>(choice(wd[jj], kNumPairs));
    if (interior_row && jj > 0 && jj < W - 1) {
      o1[jj] = static_cast<index_t>(base + jj + t.d1[kk]);
      if (o2) o2[jj] = static_cast<index_t>(base + jj + t.d2[kk]);
    } else {
      int p, q;
      pair_of(kk, p, q);
      o1[jj] = static_cast<index_t>(clampi(r + p / 3 - 1, H - 1) * W + clampi(jj + p % 3 - 1, W - 1));
      if (o2) o2[jj] = static_cast<index_t>(clampi(r + q / 3 - 1, H - 1) * W + clampi(jj + q % 3 - 1, W - 1));
    }
  };
  if (edges_only && interior_row) {
    scalar(0);
    j = vec_end(W);
  }
#if defined(__AVX2__)
  if constexpr (std::is_same_v<index_t, int32_t>) {
    if (!edges_only && interior_row && W >= 10) {
      // columns 1 .. W-2, eight at a time: the pair ids, then the offsets from the int32 tables by
      // an AVX2 gather.
      scalar(0);
      const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      for (j = 1; j + 8 <= W - 1; j += 8) {
        const __m256i k = pair_ids8(wd + j);
        const __m256i pos = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(base + j)), lane);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o1 + j),
                            _mm256_add_epi32(pos, _mm256_i32gather_epi32(t.e1, k, 4)));
        if (o2)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o2 + j),
                              _mm256_add_epi32(pos, _mm256_i32gather_epi32(t.e2, k, 4)));
      }
    }
  }
#endif
  for (; j < W; ++j) scalar(j);
}

#if defined(__AVX2__)
// Window selection without gathers, for interior pixels: each source is one of the 3x3 neighbours, so
// load the window's nine shifted vectors once and pick per lane with blends. On Zen 3 this is about
// twice as fast as three vgatherdps per eight pixels.
//
// Masks of eight pixels whose source sits at window code (dy + 1) * 3 + (dx + 1): all-ones lanes
// where dx = -1, dx = +1, dy = -1, dy = +1.
struct WinMask {
  __m256 xm, xp, ym, yp;
};

inline WinMask win_mask(__m256i code) {
  // dy + 1 = code / 3 = (code * 11) >> 5 for code < 9
  const __m256i ry = _mm256_srli_epi32(_mm256_mullo_epi32(code, _mm256_set1_epi32(11)), 5);
  const __m256i rx = _mm256_sub_epi32(code, _mm256_mullo_epi32(ry, _mm256_set1_epi32(3)));
  const __m256i zero = _mm256_setzero_si256(), two = _mm256_set1_epi32(2);
  return {_mm256_castsi256_ps(_mm256_cmpeq_epi32(rx, zero)), _mm256_castsi256_ps(_mm256_cmpeq_epi32(rx, two)),
          _mm256_castsi256_ps(_mm256_cmpeq_epi32(ry, zero)), _mm256_castsi256_ps(_mm256_cmpeq_epi32(ry, two))};
}

// Masks of both members for the eight pixels whose packed words start at wd: member codes p = k / 8
// and q = k % 8 skipping p (pair_of) of the pair id k.
inline void pair_masks(const uint32_t* wd, WinMask& m1, WinMask& m2) {
  const __m256i k = pair_ids8(wd);
  const __m256i p = _mm256_srli_epi32(k, 3);
  const __m256i jj = _mm256_and_si256(k, _mm256_set1_epi32(7));
  // q = jj + (jj >= p): cmpgt gives -1 where jj + 1 > p
  const __m256i q = _mm256_sub_epi32(jj, _mm256_cmpgt_epi32(_mm256_add_epi32(jj, _mm256_set1_epi32(1)), p));
  m1 = win_mask(p);
  m2 = win_mask(q);
}

// The nine vectors v[(dy + 1) * 3 + dx + 1] = c[dy * W + dx .. + 8] around the eight pixels at c.
inline void load_win(const float* c, int64_t W, __m256* v) {
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx) v[(dy + 1) * 3 + dx + 1] = _mm256_loadu_ps(c + dy * W + dx);
}

inline __m256 select_win(const __m256* v, const WinMask& m) {
  auto row = [&](int i) { return _mm256_blendv_ps(_mm256_blendv_ps(v[i + 1], v[i], m.xm), v[i + 2], m.xp); };
  return _mm256_blendv_ps(_mm256_blendv_ps(row(3), row(0), m.ym), row(6), m.yp);
}
#endif

// Whether the AVX2 paths apply: float32 data with int32 offsets on an AVX2 build.
template <typename scalar_t, typename index_t>
constexpr bool kAvx2Path =
#if defined(__AVX2__)
    std::is_same_v<scalar_t, float> && std::is_same_v<index_t, int32_t>;
#else
    false;
#endif

// One thread's per-row state, shared by the sampler and the loss: the row's packed words, the source
// offsets o1 / o2 read by the scalar (and gather) columns, and the blend masks of the window-select
// columns. prepare() fills them for one image row and returns whether the row takes the window-select
// path (interior rows of float images, columns [1, vec_end(W))); masks[2 * (j >> 3)] and
// masks[2 * (j >> 3) + 1] are then the h1 and h2 masks of the eight columns starting at j.
template <typename index_t, bool kVec>
struct RowPlan {
  std::vector<index_t> o1, o2;
  std::vector<uint32_t> words;
#if defined(__AVX2__)
  std::vector<WinMask> masks;
#endif
  RowPlan(int64_t W, bool need_o2) : o1(W), o2(need_o2 ? W : 0), words(W) {
#if defined(__AVX2__)
    masks.resize(kVec ? 2 * (W / 8 + 1) : 0);
#endif
  }

  bool prepare(const Seed& s, const PairDeltas& t, int64_t row, int64_t r, int64_t H, int64_t W) {
    const int64_t jv = vec_end(W);
    packed_run(s, static_cast<uint64_t>(row * W), W, words.data());
    const bool sel = kVec && r > 0 && r < H - 1 && jv > 1;
    sources_from_words<index_t>(words.data(), t, r, H, W, o1.data(), o2.empty() ? nullptr : o2.data(), sel);
#if defined(__AVX2__)
    if (sel)
      for (int64_t j = 1, q = 0; j < jv; j += 8, q += 2) pair_masks(words.data() + j, masks[q], masks[q + 1]);
#endif
    return sel;
  }
};

// dst[j] = src[idx[j]] for j < n.
template <typename scalar_t, typename index_t>
inline void gather_row(const scalar_t* src, const index_t* idx, scalar_t* dst, int64_t n) {
  int64_t j = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<index_t, int32_t>) {
    for (; j + 8 <= n; j += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + j));
      _mm256_storeu_ps(dst + j, _mm256_i32gather_ps(src, v, 4));
    }
  }
#endif
  for (; j < n; ++j) dst[j] = src[idx[j]];
}

// Clamped window codes (cy + 1) * 3 + (cx + 1) of the h1 / h2 sources of every pixel of row r, where
// (cy, cx) is the source minus the pixel after clamping (still in -1..1).
inline void row_codes(const Seed& s, int64_t flat_row, int64_t r, int64_t H, int64_t W, uint8_t* k, uint8_t* c1,
                      uint8_t* c2) {
  row_ids(s, flat_row, W, k);
  for (int64_t j = 0; j < W; ++j) {
    int p, q;
    pair_of(k[j], p, q);
    const int64_t y1 = clampi(r + p / 3 - 1, H - 1) - r, x1 = clampi(j + p % 3 - 1, W - 1) - j;
    const int64_t y2 = clampi(r + q / 3 - 1, H - 1) - r, x2 = clampi(j + q % 3 - 1, W - 1) - j;
    c1[j] = static_cast<uint8_t>((y1 + 1) * 3 + x1 + 1);
    c2[j] = static_cast<uint8_t>((y2 + 1) * 3 + x2 + 1);
  }
}

// Gather-form transpose of the two gathers: dx[s] = s1 * sum d1[n] + s2 * sum d2[n] over the 3x3
// neighbours n of s whose h1 (resp. h2) source is s. Neighbours are visited in window order
// o = 0..8 (d1 before d2), the same order as the Triton kernel, so both give identical bits.
template <typename scalar_t>
void gather_bwd(const scalar_t* d1, const scalar_t* d2, scalar_t* dx, int64_t B, int64_t C, int64_t H, int64_t W,
                const Seed& s, double s1_, double s2_) {
  using opmath = at::opmath_type<scalar_t>;
  const opmath s1 = static_cast<opmath>(s1_), s2 = static_cast<opmath>(s2_);
  at::parallel_for(0, B * H, grain_for(C * W * 6), [&](int64_t begin, int64_t end) {
    // Codes of the flat rows [lo, hi): the task's rows plus one halo row on each side.
    const int64_t lo = std::max<int64_t>(0, begin - 1), hi = std::min<int64_t>(B * H, end + 1);
    std::vector<uint8_t> k(W), c1((hi - lo) * W), c2((hi - lo) * W);
    for (int64_t fr = lo; fr < hi; ++fr)
      row_codes(s, fr, fr % H, H, W, k.data(), c1.data() + (fr - lo) * W, c2.data() + (fr - lo) * W);
    std::vector<opmath> acc(W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bi = row / H, sr = row % H;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t plane = (bi * C + c) * H * W;
        std::fill(acc.begin(), acc.end(), opmath(0));
        for (int64_t oy = -1; oy <= 1; ++oy) {
          const int64_t nr = sr + oy;
          if (nr < 0 || nr >= H) continue;
          const uint8_t* k1 = c1.data() + (row + oy - lo) * W;
          const uint8_t* k2 = c2.data() + (row + oy - lo) * W;
          const scalar_t* a = d1 + plane + nr * W;
          const scalar_t* b = d2 + plane + nr * W;
          for (int64_t ox = -1; ox <= 1; ++ox) {
            // neighbour n = (sr + oy, sc + ox) reads s iff its clamped code is the opposite offset
            const uint8_t want = static_cast<uint8_t>(8 - ((oy + 1) * 3 + ox + 1));
            const int64_t jlo = std::max<int64_t>(0, -ox), jhi = std::min<int64_t>(W, W - ox);
            for (int64_t sc = jlo; sc < jhi; ++sc) {
              const int64_t n = sc + ox;
              opmath v = acc[sc];
              v += k1[n] == want ? s1 * static_cast<opmath>(a[n]) : opmath(0);
              v += k2[n] == want ? s2 * static_cast<opmath>(b[n]) : opmath(0);
              acc[sc] = v;
            }
          }
        }
        scalar_t* dst = dx + plane + sr * W;
        for (int64_t sc = 0; sc < W; ++sc) dst[sc] = static_cast<scalar_t>(acc[sc]);
      }
    }
  });
}

template <typename T>
inline T sgn(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

}  // namespace

namespace {

template <typename scalar_t, typename index_t>
void sample_fwd(const scalar_t* xp, scalar_t* a, scalar_t* b, int64_t B, int64_t C, int64_t H, int64_t W,
                const Seed& s) {
  const PairDeltas t(W);
  constexpr bool kVec = kAvx2Path<scalar_t, index_t>;
  const int64_t jv = vec_end(W);
  at::parallel_for(0, B * H, grain_for(C * W * (b ? 2 : 1)), [&](int64_t begin, int64_t end) {
    RowPlan<index_t, kVec> plan(W, b != nullptr);
    const index_t* o1 = plan.o1.data();
    const index_t* o2 = plan.o2.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bi = row / H, r = row % H;
      const bool sel = plan.prepare(s, t, row, r, H, W);
      for (int64_t c = 0; c < C; ++c) {
        const int64_t plane = (bi * C + c) * H * W;
        const scalar_t* src = xp + plane;
        scalar_t* d1 = a + plane + r * W;
        scalar_t* d2 = b ? b + plane + r * W : nullptr;
        if (!sel) {
          gather_row(src, o1, d1, W);
          if (b) gather_row(src, o2, d2, W);
          continue;
        }
#if defined(__AVX2__)
        if constexpr (kVec) {
          d1[0] = src[o1[0]];
          if (b) d2[0] = src[o2[0]];
          const float* xr = src + r * W;
          __m256 v[9];
          for (int64_t j = 1; j < jv; j += 8) {
            load_win(xr + j, W, v);
            _mm256_storeu_ps(d1 + j, select_win(v, plan.masks[2 * (j >> 3)]));
            if (b) _mm256_storeu_ps(d2 + j, select_win(v, plan.masks[2 * (j >> 3) + 1]));
          }
          for (int64_t j = jv; j < W; ++j) {
            d1[j] = src[o1[j]];
            if (b) d2[j] = src[o2[j]];
          }
        }
#endif
      }
    }
  });
}

}  // namespace

// h1 and h2 (h2 only when need_h2; otherwise an empty tensor is returned in its place).
std::vector<at::Tensor> apr_sample_fwd_cpu(const at::Tensor& x_, int64_t seed, bool need_h2) {
  FD_CHECK_IMAGE(x_);
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h1 = at::empty({B, C, H, W}, x.options());
  auto h2 = need_h2 ? at::empty({B, C, H, W}, x.options()) : at::empty({0}, x.options());
  if (h1.numel() == 0) return {h1, h2};
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "apr_sample_fwd", [&] {
    scalar_t* b = need_h2 ? h2.data_ptr<scalar_t>() : nullptr;
    if (H * W <= INT32_MAX)
      sample_fwd<scalar_t, int32_t>(x.data_ptr<scalar_t>(), h1.data_ptr<scalar_t>(), b, B, C, H, W, s);
    else
      sample_fwd<scalar_t, int64_t>(x.data_ptr<scalar_t>(), h1.data_ptr<scalar_t>(), b, B, C, H, W, s);
  });
  return {h1, h2};
}

at::Tensor apr_sample_bwd_cpu(const at::Tensor& dh1_, const at::Tensor& dh2_, int64_t seed) {
  FD_CHECK_IMAGE(dh1_);
  FD_CHECK_SAME(dh1_, dh2_);
  const auto dh1 = dh1_.contiguous(), dh2 = dh2_.contiguous();
  const int64_t B = dh1.size(0), C = dh1.size(1), H = dh1.size(2), W = dh1.size(3);
  auto dx = at::empty({B, C, H, W}, dh1.options());
  if (dx.numel() == 0) return dx;
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dh1.scalar_type(), "apr_sample_bwd", [&] {
    gather_bwd<scalar_t>(dh1.data_ptr<scalar_t>(), dh2.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), B, C, H, W, s,
                         1.0, 1.0);
  });
  return dx;
}

namespace {

// Loss rows [begin, end): part[row] = sum over channels and columns of |d| + lam |d - e|; grad_out and
// the regulariser sign written when G / R. Eight partial sums per row (lane l takes columns = l mod 8)
// let the compiler vectorise the row while the result stays independent of the thread count.
template <typename scalar_t, typename index_t, bool G, bool R>
void loss_rows(const scalar_t* op, const scalar_t* yp, const scalar_t* fp, scalar_t* gp, scalar_t* rp,
               acc_t* part, int64_t B, int64_t C, int64_t H, int64_t W, const Seed& s, double lam, int64_t N) {
  using opmath = at::opmath_type<scalar_t>;
  const PairDeltas t(W);
  const opmath l = static_cast<opmath>(lam), scale = static_cast<opmath>(1.0 / static_cast<double>(N));
  const opmath lscale = static_cast<opmath>(lam / static_cast<double>(N));
  constexpr int L = 8;
  constexpr bool kVec = kAvx2Path<scalar_t, index_t>;
  const int64_t jv = vec_end(W);
  at::parallel_for(0, B * H, grain_for(C * W * 4), [&](int64_t begin, int64_t end) {
    RowPlan<index_t, kVec> plan(W, true);
    const index_t* i1 = plan.o1.data();
    const index_t* i2 = plan.o2.data();
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bi = row / H, r = row % H;
      // interior rows of float images: the window-select path over columns [1, jv) (masks built once
      // per row); the other columns (and every column of border rows) read through i1 / i2.
      const bool sel = plan.prepare(s, t, row, r, H, W);
      acc_t acc = 0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t plane = (bi * C + c) * H * W;
        const scalar_t* yc = yp + plane;
        const scalar_t* fc = fp + plane;
        const scalar_t* oc = op + plane + r * W;
        scalar_t* gc = G ? gp + plane + r * W : nullptr;
        scalar_t* rc = R ? rp + plane + r * W : nullptr;
        alignas(32) opmath lane[L] = {};
        auto body = [&](int64_t j, opmath& a) {
          const opmath d = static_cast<opmath>(oc[j]) - static_cast<opmath>(yc[i2[j]]);
          const opmath e = static_cast<opmath>(fc[i1[j]]) - static_cast<opmath>(fc[i2[j]]);
          const opmath rr = d - e;
          a += std::abs(d) + l * std::abs(rr);
          if (G) gc[j] = static_cast<scalar_t>(scale * (sgn(d) + l * sgn(rr)));
          if (R) rc[j] = static_cast<scalar_t>(lscale * sgn(rr));
        };
        int64_t j = 0;
#if defined(__AVX2__)
        if constexpr (kVec) {
          // the same arithmetic as body(), eight columns per step (lane q takes the columns j0 + q + 8m of
          // the vector range, j0 = 1 on the select path and 0 on the gather path)
          const __m256 vl = _mm256_set1_ps(l), vs = _mm256_set1_ps(scale), vls = _mm256_set1_ps(lscale);
          __m256 va = _mm256_setzero_ps();
          auto step = [&](int64_t jj, __m256 d, __m256 e) {
            const __m256 rr = _mm256_sub_ps(d, e);
            va = _mm256_add_ps(va, _mm256_add_ps(vmath::abs_ps(d), _mm256_mul_ps(vl, vmath::abs_ps(rr))));
            if (G) {
              const __m256 g = _mm256_add_ps(vmath::sign_ps(d), _mm256_mul_ps(vl, vmath::sign_ps(rr)));
              _mm256_storeu_ps(gc + jj, _mm256_mul_ps(vs, g));
            }
            if (R) _mm256_storeu_ps(rc + jj, _mm256_mul_ps(vls, vmath::sign_ps(rr)));
          };
          if (sel) {
            body(0, lane[0]);
            const float* yr = yc + r * W;
            const float* fr = fc + r * W;
            __m256 v[9];
            for (j = 1; j < jv; j += 8) {
              const WinMask& m1 = plan.masks[2 * (j >> 3)];
              const WinMask& m2 = plan.masks[2 * (j >> 3) + 1];
              load_win(yr + j, W, v);
              const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(oc + j), select_win(v, m2));
              load_win(fr + j, W, v);
              step(j, d, _mm256_sub_ps(select_win(v, m1), select_win(v, m2)));
            }
          } else {
            for (; j + L <= W; j += L) {
              const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(i1 + j));
              const __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(i2 + j));
              const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(oc + j), _mm256_i32gather_ps(yc, v2, 4));
              step(j, d, _mm256_sub_ps(_mm256_i32gather_ps(fc, v1, 4), _mm256_i32gather_ps(fc, v2, 4)));
            }
          }
          alignas(32) float vlane[L];
          _mm256_store_ps(vlane, va);
          for (int q = 0; q < L; ++q) lane[q] += vlane[q];
        }
#endif
        for (; j + L <= W; j += L)
          for (int q = 0; q < L; ++q) body(j + q, lane[q]);
        for (; j < W; ++j) body(j, lane[j % L]);
        opmath racc = 0;
        for (int q = 0; q < L; ++q) racc += lane[q];
        acc += racc;
      }
      part[row] = acc;
    }
  });
}

}  // namespace

// Returns (loss, grad_out, grad_fy): loss = [sum |d| + lam |d - e|] / N with d = out - h2(y),
// e = h1(fy) - h2(fy); grad_out = (sign d + lam sign(d - e)) / N when compute_grad; grad_fy = the
// transpose of e's gathers applied to -lam sign(d - e) / N when grad_fy; empty tensors otherwise.
std::vector<at::Tensor> apr_loss_fwd_cpu(const at::Tensor& out_, const at::Tensor& y_, const at::Tensor& fy_,
                                         int64_t seed, double lam, bool compute_grad, bool compute_grad_fy) {
  FD_CHECK_IMAGE(out_);
  FD_CHECK_SAME(out_, y_);
  FD_CHECK_SAME(y_, fy_);
  const auto out = out_.contiguous(), y = y_.contiguous(), fy = fy_.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3);
  const int64_t N = out.numel();
  auto grad = compute_grad ? at::empty_like(out) : at::empty({0}, out.options());
  auto gr = compute_grad_fy ? at::empty_like(out) : at::empty({0}, out.options());
  auto gfy = compute_grad_fy ? at::empty_like(out) : at::empty({0}, out.options());
  std::vector<acc_t> part(B * H, 0.0);
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "apr_loss_fwd", [&] {
    const scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* fp = fy.data_ptr<scalar_t>();
    scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
    scalar_t* rp = compute_grad_fy ? gr.data_ptr<scalar_t>() : nullptr;
    auto go = [&](auto idx) {
      using index_t = decltype(idx);
      if (gp && rp)
        loss_rows<scalar_t, index_t, true, true>(op, yp, fp, gp, rp, part.data(), B, C, H, W, s, lam, N);
      else if (gp)
        loss_rows<scalar_t, index_t, true, false>(op, yp, fp, gp, rp, part.data(), B, C, H, W, s, lam, N);
      else if (rp)
        loss_rows<scalar_t, index_t, false, true>(op, yp, fp, gp, rp, part.data(), B, C, H, W, s, lam, N);
      else
        loss_rows<scalar_t, index_t, false, false>(op, yp, fp, gp, rp, part.data(), B, C, H, W, s, lam, N);
    };
    if (H * W <= INT32_MAX)
      go(int32_t{0});
    else
      go(int64_t{0});
    if (compute_grad_fy) {
      // e = h1(fy) - h2(fy): d e / d fy is the sampler transpose with weights (+1, -1); dL/de = -gr.
      const scalar_t* g = gr.data_ptr<scalar_t>();
      gather_bwd<scalar_t>(g, g, gfy.data_ptr<scalar_t>(), B, C, H, W, s, -1.0, 1.0);
    }
  });
  acc_t total = 0;
  for (auto v : part) total += v;  // fixed order: the result does not depend on the thread count
  const auto ldt = at::promote_types(out.scalar_type(), at::kFloat);
  return {at::scalar_tensor(total / N, out.options().dtype(ldt)), grad, gfy};
}

void register_apr(pybind11::module_& m) {
  m.def("apr_sample_fwd", &apr_sample_fwd_cpu, "APR 3x3 pair sampler forward (CPU)");
  m.def("apr_sample_bwd", &apr_sample_bwd_cpu, "APR sampler backward, gather form (CPU)");
  m.def("apr_loss_fwd", &apr_loss_fwd_cpu, "APR fused loss value and gradients (CPU)");
}

}  // namespace fastdenoise
