// Positive2Negative on the CPU: renoised data construction (forward/backward) and the fused
// (|d| + eps)^gamma loss (value and gradient in one pass).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cmath>
#include <type_traits>

#include "../checks.h"
#include "../vmath.h"

namespace fastdenoise {
namespace {

constexpr int64_t kBlock = 8192;  // elements per partial sum (fixed: thread-count independent result)

template <typename T>
inline T clamp01(T z) {
  return z < T(0) ? T(0) : (z > T(1) ? T(1) : z);  // NaN passes through, like torch.clamp
}

// Calls fn(i0, i1, a, b) over [begin, end) split into runs that share one scale pair.
template <typename opmath, typename Fn>
inline void scale_runs(int64_t begin, int64_t end, int64_t group, int64_t ns, const opmath* sp, const Fn& fn) {
  int64_t i = begin;
  while (i < end) {
    const int64_t g = i / group;
    const int64_t i1 = std::min(end, (g + 1) * group);
    fn(i, i1, sp[g], sp[ns + g]);
    i = i1;
  }
}

}  // namespace

// z = cat([xh + a (y - xh), xh - b (y - xh)]), scales (2, ns) in the compute dtype, one scale pair
// per `group` consecutive elements (group == 1: per pixel). Optional clamp to [0, 1].
at::Tensor rdc_renoise_fwd_cpu(const at::Tensor& y_, const at::Tensor& xh_, const at::Tensor& scales_, int64_t group,
                               bool clamp) {
  FD_CHECK_IMAGE(y_);
  FD_CHECK_SAME(y_, xh_);
  const auto y = y_.contiguous(), xh = xh_.contiguous(), scales = scales_.contiguous();
  const int64_t N = y.numel();
  TORCH_CHECK(group >= 1 && N % group == 0 && scales.numel() == 2 * (N / group), "scales do not match the group size");
  auto z = at::empty({2 * y.size(0), y.size(1), y.size(2), y.size(3)}, y.options());
  if (N == 0) return z;
  const int64_t ns = N / group;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "rdc_renoise_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    TORCH_CHECK(scales.scalar_type() == c10::CppTypeToScalarType<opmath>::value, "scales must have the compute dtype");
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* xp = xh.data_ptr<scalar_t>();
    const opmath* sp = scales.data_ptr<opmath>();
    scalar_t* zp = z.data_ptr<scalar_t>();
    scalar_t* zn = zp + N;
    at::parallel_for(0, N, 32768, [&](int64_t begin, int64_t end) {
      if (group == 1) {
        for (int64_t i = begin; i < end; ++i) {
          const opmath x = static_cast<opmath>(xp[i]), n = static_cast<opmath>(yp[i]) - x;
          const opmath p = x + sp[i] * n, q = x - sp[ns + i] * n;
          zp[i] = static_cast<scalar_t>(clamp ? clamp01(p) : p);
          zn[i] = static_cast<scalar_t>(clamp ? clamp01(q) : q);
        }
        return;
      }
      scale_runs<opmath>(begin, end, group, ns, sp, [&](int64_t i0, int64_t i1, opmath a, opmath b) {
        if (clamp) {
          for (int64_t i = i0; i < i1; ++i) {
            const opmath x = static_cast<opmath>(xp[i]), n = static_cast<opmath>(yp[i]) - x;
            zp[i] = static_cast<scalar_t>(clamp01(x + a * n));
            zn[i] = static_cast<scalar_t>(clamp01(x - b * n));
          }
        } else {
          for (int64_t i = i0; i < i1; ++i) {
            const opmath x = static_cast<opmath>(xp[i]), n = static_cast<opmath>(yp[i]) - x;
            zp[i] = static_cast<scalar_t>(x + a * n);
            zn[i] = static_cast<scalar_t>(x - b * n);
          }
        }
      });
    });
  });
  return z;
}

// Gradients of rdc_renoise: dy = a gp - b gn, dxh = (1 - a) gp + (1 + b) gn, where gp, gn are the
// two halves of dz (zeroed where the clamp was active). Tensors not needed come back empty.
std::vector<at::Tensor> rdc_renoise_bwd_cpu(const at::Tensor& dz_, const at::Tensor& y_, const at::Tensor& xh_,
                                            const at::Tensor& scales_, int64_t group, bool clamp, bool need_dy,
                                            bool need_dxh) {
  FD_CHECK_IMAGE(dz_);
  FD_CHECK_IMAGE(y_);
  FD_CHECK_SAME(y_, xh_);
  const auto dz = dz_.contiguous(), y = y_.contiguous(), xh = xh_.contiguous(), scales = scales_.contiguous();
  const int64_t N = y.numel();
  TORCH_CHECK(dz.numel() == 2 * N, "dz must have shape (2B, C, H, W)");
  TORCH_CHECK(group >= 1 && N % group == 0 && scales.numel() == 2 * (N / group), "scales do not match the group size");
  auto dy = need_dy ? at::empty_like(y) : at::empty({0}, y.options());
  auto dx = need_dxh ? at::empty_like(y) : at::empty({0}, y.options());
  if (N == 0 || (!need_dy && !need_dxh)) return {dy, dx};
  const int64_t ns = N / group;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "rdc_renoise_bwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* gp = dz.data_ptr<scalar_t>();
    const scalar_t* gn = gp + N;
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* xp = xh.data_ptr<scalar_t>();
    const opmath* sp = scales.data_ptr<opmath>();
    scalar_t* dyp = need_dy ? dy.data_ptr<scalar_t>() : nullptr;
    scalar_t* dxp = need_dxh ? dx.data_ptr<scalar_t>() : nullptr;
    auto body = [&](int64_t i0, int64_t i1, opmath a, opmath b, int64_t sstride) {
      for (int64_t i = i0; i < i1; ++i) {
        const opmath aa = sstride ? sp[i] : a, bb = sstride ? sp[ns + i] : b;
        opmath p = static_cast<opmath>(gp[i]), q = static_cast<opmath>(gn[i]);
        if (clamp) {
          const opmath x = static_cast<opmath>(xp[i]), n = static_cast<opmath>(yp[i]) - x;
          const opmath zp = x + aa * n, zq = x - bb * n;
          if (!(zp >= opmath(0) && zp <= opmath(1))) p = opmath(0);
          if (!(zq >= opmath(0) && zq <= opmath(1))) q = opmath(0);
        }
        if (dyp) dyp[i] = static_cast<scalar_t>(aa * p - bb * q);
        if (dxp) dxp[i] = static_cast<scalar_t>((opmath(1) - aa) * p + (opmath(1) + bb) * q);
      }
    };
    at::parallel_for(0, N, 32768, [&](int64_t begin, int64_t end) {
      if (group == 1) {
        body(begin, end, opmath(0), opmath(0), 1);
        return;
      }
      scale_runs<opmath>(begin, end, group, ns, sp,
                         [&](int64_t i0, int64_t i1, opmath a, opmath b) { body(i0, i1, a, b, 0); });
    });
  });
  return {dy, dx};
}

// Returns (loss, grad): loss = mean((|d| + eps)^gamma), d = out_pos - out_neg;
// grad = dL/dout_pos = gamma (|d| + eps)^(gamma - 1) sign(d) / N (dL/dout_neg = -grad).
std::vector<at::Tensor> p2n_loss_fwd_cpu(const at::Tensor& op_, const at::Tensor& on_, double gamma, double eps,
                                         bool compute_grad) {
  FD_CHECK_CPU(op_);
  FD_CHECK_FLOAT(op_);
  FD_CHECK_SAME(op_, on_);
  const auto op = op_.contiguous(), on = on_.contiguous();
  const int64_t N = op.numel();
  auto grad = compute_grad ? at::empty_like(op) : at::empty({0}, op.options());
  const int64_t nblk = (N + kBlock - 1) / kBlock;
  std::vector<acc_t> part(nblk, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, op.scalar_type(), "p2n_loss_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* pp = op.data_ptr<scalar_t>();
    const scalar_t* qp = on.data_ptr<scalar_t>();
    scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
    const opmath g = static_cast<opmath>(gamma), gm1 = static_cast<opmath>(gamma - 1.0);
    const opmath e = static_cast<opmath>(eps), scale = static_cast<opmath>(gamma / static_cast<double>(N));
    const bool square = gamma == 2.0;
    at::parallel_for(0, nblk, 1, [&](int64_t bb, int64_t be) {
      for (int64_t blk = bb; blk < be; ++blk) {
        const int64_t i0 = blk * kBlock, i1 = std::min(N, i0 + kBlock);
        acc_t acc = 0;
        int64_t i = i0;
#if defined(__AVX2__)
        if constexpr (std::is_same_v<scalar_t, float>) {
          // eight lanes: vmath::pow_pos_ps for the power (gamma in (1, 2) is the schedule's range),
          // the block sum in double lanes
          const __m256 ve = _mm256_set1_ps(e), vsc = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.0f);
          const int mode = square ? 0 : (gm1 == 0.0f ? 1 : (gm1 == 1.0f ? 0 : 2));  // 0: p = ad, 1: p = 1
          // (casts: this lambda is not a template, so the branch is compiled for every dtype)
          const float* fpp = reinterpret_cast<const float*>(pp);
          const float* fqp = reinterpret_cast<const float*>(qp);
          float* fgp = reinterpret_cast<float*>(gp);
          __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
          for (; i + 8 <= i1; i += 8) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(fpp + i), _mm256_loadu_ps(fqp + i));
            const __m256 ad = _mm256_add_ps(vmath::abs_ps(d), ve);
            const __m256 p = mode == 0 ? ad : (mode == 1 ? one : vmath::pow_pos_ps(ad, gm1));
            const __m256 v = _mm256_mul_ps(p, ad);
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
            if (gp) {
              const __m256 sg = vmath::sign_ps(d);
              _mm256_storeu_ps(fgp + i, _mm256_mul_ps(_mm256_mul_ps(vsc, p), sg));
            }
          }
          alignas(32) double lanes[8];
          _mm256_store_pd(lanes, a0);
          _mm256_store_pd(lanes + 4, a1);
          for (int q = 0; q < 8; ++q) acc += lanes[q];
        }
#endif
        for (; i < i1; ++i) {
          const opmath d = static_cast<opmath>(pp[i]) - static_cast<opmath>(qp[i]);
          const opmath ad = std::abs(d) + e;
          const opmath p = square ? ad : static_cast<opmath>(std::pow(ad, gm1));  // (|d| + eps)^(gamma - 1)
          acc += static_cast<acc_t>(p * ad);
          if (gp) {
            const opmath sg = static_cast<opmath>((d > opmath(0)) - (d < opmath(0)));
            gp[i] = static_cast<scalar_t>(scale * p * sg);
          }
        }
        part[blk] = acc;
      }
    });
    (void)g;
  });
  acc_t total = 0;
  for (auto v : part) total += v;  // fixed order
  const auto ldt = at::promote_types(op.scalar_type(), at::kFloat);
  return {at::scalar_tensor(N ? total / N : std::nan(""), op.options().dtype(ldt)), grad};
}

void register_p2n(pybind11::module_& m) {
  m.def("rdc_renoise_fwd", &rdc_renoise_fwd_cpu, "P2N renoised data construction forward (CPU)");
  m.def("rdc_renoise_bwd", &rdc_renoise_bwd_cpu, "P2N renoised data construction backward (CPU)");
  m.def("p2n_loss_fwd", &p2n_loss_fwd_cpu, "P2N fused loss value and gradient (CPU)");
}

}  // namespace fastdenoise
