// ZS-N2N on the CPU: pair downsampler (forward/backward) and the fused loss (value and every gradient
// in one pass). Rounding as in fastdenoise/ops/zsn2n/reference.py: (a + b) * 0.5 in the compute type,
// no contraction (the build passes -ffp-contract=off).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <type_traits>

#include "../checks.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastdenoise {
namespace {

constexpr int kLanes = 8;  // per-lane partial sums inside a row: fixed order, vectorisable

// Zeroes what a full-size gradient gets in the dropped last column (W odd) of rows 2i, 2i+1 and, for the
// last cell row, the dropped last row (H odd). top points at row 2i of the plane.
template <typename T>
inline void zero_dropped(T* top, int64_t i, int64_t H, int64_t W, int64_t HH) {
  if (W % 2) top[W - 1] = top[2 * W - 1] = T(0);
  if (H % 2 && i == HH - 1)
    for (int64_t j = 0; j < W; ++j) top[2 * W + j] = T(0);
}

#if defined(__AVX2__)
// Even (left) and odd (right) elements of p[0..15]: the 8 cells' left and right pixels of one row.
inline void deinterleave(const float* p, __m256& even, __m256& odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// p[0..15] = even0 odd0 even1 odd1 ... (inverse of deinterleave).
inline void interleave(float* p, __m256 even, __m256 odd) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd);  // e0 o0 e1 o1 | e4 o4 e5 o5
  const __m256 hi = _mm256_unpackhi_ps(even, odd);  // e2 o2 e3 o3 | e6 o6 e7 o7
  _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}
#endif

}  // namespace

// (d1, d2) = ((TR + BL) * 0.5, (TL + BR) * 0.5) of every 2x2 cell, each (B, C, H//2, W//2).
std::vector<at::Tensor> pair_downsample_fwd_cpu(const at::Tensor& x_) {
  FD_CHECK_IMAGE(x_);
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HH = H / 2, WH = W / 2;
  auto d1 = at::empty({B, C, HH, WH}, x.options());
  auto d2 = at::empty({B, C, HH, WH}, x.options());
  if (d1.numel() == 0) return {d1, d2};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pair_downsample_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* ap = d1.data_ptr<scalar_t>();
    scalar_t* bp = d2.data_ptr<scalar_t>();
    const opmath half = opmath(0.5);
    at::parallel_for(0, B * C * HH, grain_for(2 * W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t plane = row / HH, i = row % HH;
        const scalar_t* r0 = xp + (plane * H + 2 * i) * W;
        const scalar_t* r1 = r0 + W;
        scalar_t* a = ap + row * WH;
        scalar_t* b = bp + row * WH;
        for (int64_t j = 0; j < WH; ++j) {
          const opmath tl = r0[2 * j], tr = r0[2 * j + 1], bl = r1[2 * j], br = r1[2 * j + 1];
          a[j] = static_cast<scalar_t>((tr + bl) * half);
          b[j] = static_cast<scalar_t>((tl + br) * half);
        }
      }
    });
  });
  return {d1, d2};
}

// dx: TR, BL <- g1 * 0.5, TL, BR <- g2 * 0.5; a dropped odd row/column gets 0.
at::Tensor pair_downsample_bwd_cpu(const at::Tensor& g1_, const at::Tensor& g2_, int64_t H, int64_t W) {
  FD_CHECK_IMAGE(g1_);
  FD_CHECK_SAME(g1_, g2_);
  const auto g1 = g1_.contiguous(), g2 = g2_.contiguous();
  const int64_t B = g1.size(0), C = g1.size(1), HH = g1.size(2), WH = g1.size(3);
  TORCH_CHECK(HH == H / 2 && WH == W / 2, "gradient shape does not match the input size");
  if (g1.numel() == 0) return at::zeros({B, C, H, W}, g1.options());
  auto dx = at::empty({B, C, H, W}, g1.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g1.scalar_type(), "pair_downsample_bwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* ap = g1.data_ptr<scalar_t>();
    const scalar_t* bp = g2.data_ptr<scalar_t>();
    scalar_t* dp = dx.data_ptr<scalar_t>();
    const opmath half = opmath(0.5);
    at::parallel_for(0, B * C * HH, grain_for(2 * W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t plane = row / HH, i = row % HH;
        scalar_t* r0 = dp + (plane * H + 2 * i) * W;
        scalar_t* r1 = r0 + W;
        const scalar_t* a = ap + row * WH;
        const scalar_t* b = bp + row * WH;
        for (int64_t j = 0; j < WH; ++j) {
          const scalar_t va = static_cast<scalar_t>(static_cast<opmath>(a[j]) * half);
          const scalar_t vb = static_cast<scalar_t>(static_cast<opmath>(b[j]) * half);
          r0[2 * j] = vb;
          r0[2 * j + 1] = va;
          r1[2 * j] = va;
          r1[2 * j + 1] = vb;
        }
        zero_dropped(r0, i, H, W, HH);
      }
    });
  });
  return dx;
}

// Returns (loss, grad_y, grad_ny, grad_n1, grad_n2); a gradient not asked for is an empty tensor.
// With d = pair(y), e = pair(y - n_y), p1 = d1 - n1, p2 = d2 - n2: r1 = d1 - p2, r2 = d2 - p1, r3 = p1 - e1,
// r4 = p2 - e2, loss = sum(r1^2 + r2^2 + r3^2 + r4^2) / (2N) (N = elements of n1). Gradients (derivation in
// ops/zsn2n/triton.py): dn1 = (r2 - r3) / N, dn2 = (r1 - r4) / N; dn_y = r3 / (2N) at TR, BL, r4 / (2N) at
// TL, BR; dy = (r1 - r2) / (2N) at TR, BL and its negative at TL, BR; 0 in a dropped odd row/column.
std::vector<at::Tensor> zsn2n_loss_fwd_cpu(const at::Tensor& y_, const at::Tensor& ny_, const at::Tensor& n1_,
                                           const at::Tensor& n2_, bool grad_y, bool grad_ny, bool grad_n1,
                                           bool grad_n2) {
  FD_CHECK_IMAGE(y_);
  FD_CHECK_SAME(y_, ny_);
  FD_CHECK_IMAGE(n1_);
  FD_CHECK_SAME(n1_, n2_);
  TORCH_CHECK(n1_.scalar_type() == y_.scalar_type(), "n1 and y must have the same dtype");
  const auto y = y_.contiguous(), ny = ny_.contiguous(), n1 = n1_.contiguous(), n2 = n2_.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), HH = H / 2, WH = W / 2;
  TORCH_CHECK(n1.size(0) == B && n1.size(1) == C && n1.size(2) == HH && n1.size(3) == WH,
              "n1 must have shape (B, C, H//2, W//2)");
  TORCH_CHECK(HH >= 1 && WH >= 1, "y must have H and W >= 2");
  const int64_t N = n1.numel(), rows = B * C * HH;
  auto none = [&] { return at::empty({0}, y.options()); };  // one fresh tensor per output (no aliasing)
  auto gy = grad_y ? at::empty_like(y) : none();
  auto gny = grad_ny ? at::empty_like(y) : none();
  auto gn1 = grad_n1 ? at::empty_like(n1) : none();
  auto gn2 = grad_n2 ? at::empty_like(n2) : none();
  std::vector<acc_t> part(rows, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "zsn2n_loss_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* np = ny.data_ptr<scalar_t>();
    const scalar_t* p1p = n1.data_ptr<scalar_t>();
    const scalar_t* p2p = n2.data_ptr<scalar_t>();
    scalar_t* gyp = grad_y ? gy.data_ptr<scalar_t>() : nullptr;
    scalar_t* gnp = grad_ny ? gny.data_ptr<scalar_t>() : nullptr;
    scalar_t* g1p = grad_n1 ? gn1.data_ptr<scalar_t>() : nullptr;
    scalar_t* g2p = grad_n2 ? gn2.data_ptr<scalar_t>() : nullptr;
    const opmath half = opmath(0.5);
    const opmath cs = static_cast<opmath>(1.0 / static_cast<double>(N));
    const opmath hs = static_cast<opmath>(0.5 / static_cast<double>(N));
    at::parallel_for(0, rows, grain_for(4 * W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t plane = row / HH, i = row % HH;
        const int64_t top = (plane * H + 2 * i) * W, o = row * WH;
        const scalar_t* y0 = yp + top;
        const scalar_t* y1 = y0 + W;
        const scalar_t* n0 = np + top;
        const scalar_t* n1r = n0 + W;
        opmath lanes[kLanes] = {};
        int64_t j = 0;
#if defined(__AVX2__)
        if constexpr (std::is_same_v<scalar_t, float>) {
          // Eight cells at a time with the scalar loop's operations in its order (bit-identical results);
          // lane k accumulates cells j % 8 == k, exactly like lanes[] below. (Casts: the lambda is compiled
          // for every dtype.)
          const float* fy0 = reinterpret_cast<const float*>(y0);
          const float* fy1 = reinterpret_cast<const float*>(y1);
          const float* fn0 = reinterpret_cast<const float*>(n0);
          const float* fn1 = reinterpret_cast<const float*>(n1r);
          const float* fp1 = reinterpret_cast<const float*>(p1p) + o;
          const float* fp2 = reinterpret_cast<const float*>(p2p) + o;
          float* fg1 = reinterpret_cast<float*>(g1p);
          float* fg2 = reinterpret_cast<float*>(g2p);
          float* fgn = reinterpret_cast<float*>(gnp);
          float* fgy = reinterpret_cast<float*>(gyp);
          const __m256 vh = _mm256_set1_ps(0.5f), vc = _mm256_set1_ps(cs), vhs = _mm256_set1_ps(hs);
          const __m256 sign = _mm256_set1_ps(-0.0f);
          __m256 acc = _mm256_setzero_ps();
          for (; j + kLanes <= WH; j += kLanes) {
            __m256 ytl, ytr, ybl, ybr, ntl, ntr, nbl, nbr;
            deinterleave(fy0 + 2 * j, ytl, ytr);
            deinterleave(fy1 + 2 * j, ybl, ybr);
            deinterleave(fn0 + 2 * j, ntl, ntr);
            deinterleave(fn1 + 2 * j, nbl, nbr);
            const __m256 d1 = _mm256_mul_ps(_mm256_add_ps(ytr, ybl), vh);
            const __m256 d2 = _mm256_mul_ps(_mm256_add_ps(ytl, ybr), vh);
            const __m256 e1 = _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(ytr, ntr), _mm256_sub_ps(ybl, nbl)), vh);
            const __m256 e2 = _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(ytl, ntl), _mm256_sub_ps(ybr, nbr)), vh);
            const __m256 p1 = _mm256_sub_ps(d1, _mm256_loadu_ps(fp1 + j));
            const __m256 p2 = _mm256_sub_ps(d2, _mm256_loadu_ps(fp2 + j));
            const __m256 r1 = _mm256_sub_ps(d1, p2), r2 = _mm256_sub_ps(d2, p1);
            const __m256 r3 = _mm256_sub_ps(p1, e1), r4 = _mm256_sub_ps(p2, e2);
            __m256 q = _mm256_add_ps(_mm256_mul_ps(r1, r1), _mm256_mul_ps(r2, r2));
            q = _mm256_add_ps(_mm256_add_ps(q, _mm256_mul_ps(r3, r3)), _mm256_mul_ps(r4, r4));
            acc = _mm256_add_ps(acc, q);
            if (fg1) _mm256_storeu_ps(fg1 + o + j, _mm256_mul_ps(_mm256_sub_ps(r2, r3), vc));
            if (fg2) _mm256_storeu_ps(fg2 + o + j, _mm256_mul_ps(_mm256_sub_ps(r1, r4), vc));
            if (fgn) {
              const __m256 a = _mm256_mul_ps(r3, vhs), b = _mm256_mul_ps(r4, vhs);
              interleave(fgn + top + 2 * j, b, a);
              interleave(fgn + top + W + 2 * j, a, b);
            }
            if (fgy) {
              const __m256 a = _mm256_mul_ps(_mm256_sub_ps(r1, r2), vhs), b = _mm256_xor_ps(a, sign);
              interleave(fgy + top + 2 * j, b, a);
              interleave(fgy + top + W + 2 * j, a, b);
            }
          }
          alignas(32) float v[kLanes];
          _mm256_store_ps(v, acc);
          for (int k = 0; k < kLanes; ++k) lanes[k] = v[k];
        }
#endif
        for (; j < WH; ++j) {
          const opmath ytl = y0[2 * j], ytr = y0[2 * j + 1], ybl = y1[2 * j], ybr = y1[2 * j + 1];
          const opmath ntl = n0[2 * j], ntr = n0[2 * j + 1], nbl = n1r[2 * j], nbr = n1r[2 * j + 1];
          const opmath d1 = (ytr + ybl) * half, d2 = (ytl + ybr) * half;
          const opmath e1 = ((ytr - ntr) + (ybl - nbl)) * half, e2 = ((ytl - ntl) + (ybr - nbr)) * half;
          const opmath p1 = d1 - static_cast<opmath>(p1p[o + j]), p2 = d2 - static_cast<opmath>(p2p[o + j]);
          const opmath r1 = d1 - p2, r2 = d2 - p1, r3 = p1 - e1, r4 = p2 - e2;
          lanes[j % kLanes] += r1 * r1 + r2 * r2 + r3 * r3 + r4 * r4;
          if (g1p) g1p[o + j] = static_cast<scalar_t>((r2 - r3) * cs);
          if (g2p) g2p[o + j] = static_cast<scalar_t>((r1 - r4) * cs);
          if (gnp) {
            const scalar_t a = static_cast<scalar_t>(r3 * hs), b = static_cast<scalar_t>(r4 * hs);
            gnp[top + 2 * j] = b;
            gnp[top + 2 * j + 1] = a;
            gnp[top + W + 2 * j] = a;
            gnp[top + W + 2 * j + 1] = b;
          }
          if (gyp) {
            const opmath t = (r1 - r2) * hs;
            const scalar_t a = static_cast<scalar_t>(t), b = static_cast<scalar_t>(-t);
            gyp[top + 2 * j] = b;
            gyp[top + 2 * j + 1] = a;
            gyp[top + W + 2 * j] = a;
            gyp[top + W + 2 * j + 1] = b;
          }
        }
        acc_t acc = 0;
        for (int k = 0; k < kLanes; ++k) acc += static_cast<acc_t>(lanes[k]);
        part[row] = acc;
        if (gnp) zero_dropped(gnp + top, i, H, W, HH);
        if (gyp) zero_dropped(gyp + top, i, H, W, HH);
      }
    });
  });
  acc_t total = 0;
  for (auto v : part) total += v;  // fixed order: the result does not depend on the thread count
  const auto ldt = y.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return {at::scalar_tensor(0.5 * total / static_cast<double>(N), y.options().dtype(ldt)), gy, gny, gn1, gn2};
}

void register_zsn2n(pybind11::module_& m) {
  m.def("pair_downsample_fwd", &pair_downsample_fwd_cpu, "ZS-N2N pair downsampler forward (CPU)");
  m.def("pair_downsample_bwd", &pair_downsample_bwd_cpu, "ZS-N2N pair downsampler backward (CPU)");
  m.def("zsn2n_loss_fwd", &zsn2n_loss_fwd_cpu, "ZS-N2N fused loss value and gradients (CPU)");
}

}  // namespace fastdenoise
