// Noise2Same: stratified mask sampler (forward/backward) and fused loss (reduction + gradient) on the CPU.
// Counter layout, donut order and loss definition: fastdenoise/ops/noise2same/reference.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "../checks.h"
#include "../philox.h"

namespace fastdenoise {
namespace {

constexpr int64_t kDonut = 1;

// Donut mean at (i, j) of one plane, zero padding, in the reference's fixed order.
template <typename scalar_t, typename opmath>
inline opmath donut_at(const scalar_t* p, int64_t H, int64_t W, int64_t i, int64_t j, opmath w6) {
  auto v = [&](int64_t di, int64_t dj) -> opmath {
    const int64_t a = i + di, b = j + dj;
    return (a >= 0 && a < H && b >= 0 && b < W) ? static_cast<opmath>(p[a * W + b]) : opmath(0);
  };
  const opmath corners = ((v(-1, -1) + v(-1, 1)) + v(1, -1)) + v(1, 1);
  const opmath edges = ((v(-1, 0) + v(0, -1)) + v(0, 1)) + v(1, 0);
  return (opmath(0.5) * corners + edges) * w6;
}

// Gradient of x at (i, j) of one plane: its own upstream gradient off-mask, plus the donut weights of
// the masked neighbours in raster order of the offsets (same order as the Triton kernel).
template <typename scalar_t, typename opmath>
inline opmath donut_grad_at(const scalar_t* g, const scalar_t* m, int64_t H, int64_t W, int64_t i, int64_t j,
                            opmath w6) {
  opmath acc = m[i * W + j] != scalar_t(0) ? opmath(0) : static_cast<opmath>(g[i * W + j]);
  for (int64_t di = -1; di <= 1; ++di) {
    for (int64_t dj = -1; dj <= 1; ++dj) {
      if (di == 0 && dj == 0) continue;
      const int64_t a = i + di, b = j + dj;
      if (a < 0 || a >= H || b < 0 || b >= W || m[a * W + b] == scalar_t(0)) continue;
      const opmath wk = (di != 0 && dj != 0) ? opmath(0.5) * w6 : w6;
      acc += static_cast<opmath>(g[a * W + b]) * wk;
    }
  }
  return acc;
}

inline void box_pos(const Seed& s, int64_t n, int64_t box, int64_t bi, int64_t bj, int64_t* r, int64_t* c) {
  *r = bi * box + choice(philox(s, static_cast<uint64_t>(n), 0), static_cast<uint32_t>(box));
  *c = bj * box + choice(philox(s, static_cast<uint64_t>(n), 1), static_cast<uint32_t>(box));
}

}  // namespace

// x_masked (copy of x, replaced at one position per box and channel) and mask (1 there, else 0).
// vals: one replacement value per box (Gaussian mode), or empty (donut mode).
std::vector<at::Tensor> noise2same_mask_fwd_cpu(const at::Tensor& x_, const at::Tensor& vals_, int64_t seed,
                                                int64_t box, int64_t mode) {
  FD_CHECK_IMAGE(x_);
  TORCH_CHECK(box >= 1, "box must be >= 1");
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t nbh = (H + box - 1) / box, nbw = (W + box - 1) / box, P = B * C;
  const auto vals = vals_.contiguous();
  TORCH_CHECK(mode == kDonut || (vals.numel() == P * nbh * nbw && vals.scalar_type() == x.scalar_type()),
              "vals must hold one value per box in x's dtype");
  auto xm = at::empty_like(x);
  auto mask = at::empty_like(x);
  if (x.numel() == 0) return {xm, mask};
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "noise2same_mask_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* vp = mode == kDonut ? nullptr : vals.data_ptr<scalar_t>();
    scalar_t* op = xm.data_ptr<scalar_t>();
    scalar_t* mp = mask.data_ptr<scalar_t>();
    const opmath w6 = static_cast<opmath>(1.0 / 6.0);
    // One task per (plane, box row): copies its rows, then writes the box row's masked positions.
    at::parallel_for(0, P * nbh, grain_for(box * W), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t pl = t / nbh, bi = t % nbh;
        const int64_t r0 = bi * box, r1 = std::min(H, r0 + box);
        const scalar_t* src = xp + pl * H * W;
        std::copy(src + r0 * W, src + r1 * W, op + pl * H * W + r0 * W);
        std::fill(mp + pl * H * W + r0 * W, mp + pl * H * W + r1 * W, scalar_t(0));
        for (int64_t bj = 0; bj < nbw; ++bj) {
          const int64_t n = t * nbw + bj;
          int64_t r, c;
          box_pos(s, n, box, bi, bj, &r, &c);
          if (r >= H || c >= W) continue;
          const int64_t o = pl * H * W + r * W + c;
          mp[o] = scalar_t(1);
          op[o] = mode == kDonut ? static_cast<scalar_t>(donut_at<scalar_t, opmath>(src, H, W, r, c, w6)) : vp[n];
        }
      }
    });
  });
  return {xm, mask};
}

// dx from dx_masked: identity off-mask; at masked positions 0 (Gaussian) or, for the donut, the
// transpose of the weighted mean (gathered per pixel, fixed order).
at::Tensor noise2same_mask_bwd_cpu(const at::Tensor& g_, const at::Tensor& m_, int64_t seed, int64_t box,
                                   int64_t mode) {
  FD_CHECK_IMAGE(g_);
  FD_CHECK_SAME(g_, m_);
  const auto g = g_.contiguous(), m = m_.contiguous();
  const int64_t B = g.size(0), C = g.size(1), H = g.size(2), W = g.size(3);
  const int64_t nbh = (H + box - 1) / box, nbw = (W + box - 1) / box, P = B * C;
  auto dx = at::empty_like(g);
  if (g.numel() == 0) return dx;
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "noise2same_mask_bwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    scalar_t* dp = dx.data_ptr<scalar_t>();
    const opmath w6 = static_cast<opmath>(1.0 / 6.0);
    at::parallel_for(0, P * nbh, grain_for(box * W), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t pl = t / nbh, bi = t % nbh;
        const int64_t r0 = bi * box, r1 = std::min(H, r0 + box), base = pl * H * W;
        for (int64_t k = base + r0 * W; k < base + r1 * W; ++k) dp[k] = mp[k] != scalar_t(0) ? scalar_t(0) : gp[k];
        if (mode != kDonut) continue;
        // Pixels of these rows next to a masked position (of box rows bi-1..bi+1) get the full gather;
        // only this task's rows are written, so tasks never race.
        for (int64_t bk = std::max<int64_t>(0, bi - 1); bk <= std::min(nbh - 1, bi + 1); ++bk) {
          for (int64_t bj = 0; bj < nbw; ++bj) {
            int64_t r, c;
            box_pos(s, (pl * nbh + bk) * nbw + bj, box, bk, bj, &r, &c);
            if (r >= H || c >= W) continue;
            for (int64_t i = std::max(r - 1, r0); i <= std::min(r + 1, r1 - 1); ++i)
              for (int64_t j = std::max<int64_t>(c - 1, 0); j <= std::min(c + 1, W - 1); ++j)
                if (i != r || j != c)
                  dp[base + i * W + j] =
                      static_cast<scalar_t>(donut_grad_at<scalar_t, opmath>(gp + base, mp + base, H, W, i, j, w6));
          }
        }
      }
    });
  });
  return dx;
}

// Sums (sum (full - x)^2, sum m (full - masked)^2, sum m) as a float64 tensor of 3, fixed order.
at::Tensor noise2same_loss_sums_cpu(const at::Tensor& f_, const at::Tensor& g_, const at::Tensor& x_,
                                    const at::Tensor& m_) {
  FD_CHECK_IMAGE(f_);
  FD_CHECK_SAME(f_, g_);
  FD_CHECK_SAME(f_, x_);
  FD_CHECK_SAME(f_, m_);
  const auto f = f_.contiguous(), g = g_.contiguous(), x = x_.contiguous(), m = m_.contiguous();
  const int64_t W = f.size(3), rows = f.numel() / std::max<int64_t>(W, 1);
  std::vector<acc_t> part(3 * rows, 0.0);
  if (f.numel()) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "noise2same_loss_sums", [&] {
      using opmath = at::opmath_type<scalar_t>;
      const scalar_t* fp = f.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* mp = m.data_ptr<scalar_t>();
      at::parallel_for(0, rows, grain_for(W), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          opmath a = 0, b = 0, c = 0;
          for (int64_t k = r * W; k < (r + 1) * W; ++k) {
            const opmath fv = static_cast<opmath>(fp[k]);
            const opmath d = fv - static_cast<opmath>(xp[k]);
            const opmath e = fv - static_cast<opmath>(gp[k]);
            const opmath mv = static_cast<opmath>(mp[k]);
            a += d * d;
            b += mv * e * e;
            c += mv;
          }
          part[3 * r] = a;
          part[3 * r + 1] = b;
          part[3 * r + 2] = c;
        }
      });
    });
  }
  acc_t tot[3] = {0, 0, 0};
  for (int64_t r = 0; r < rows; ++r)  // fixed order: independent of the thread count
    for (int k = 0; k < 3; ++k) tot[k] += part[3 * r + k];
  auto out = at::empty({3}, f.options().dtype(at::kDouble));
  for (int k = 0; k < 3; ++k) out.data_ptr<double>()[k] = tot[k];
  return out;
}

// grad_full = c0 (full - x) + c1 m (full - masked), grad_masked = -c1 m (full - masked);
// coef = (c0, c1) already multiplied by the incoming gradient.
std::vector<at::Tensor> noise2same_loss_bwd_cpu(const at::Tensor& coef_, const at::Tensor& f_, const at::Tensor& g_,
                                                const at::Tensor& x_, const at::Tensor& m_) {
  FD_CHECK_IMAGE(f_);
  FD_CHECK_SAME(f_, g_);
  FD_CHECK_SAME(f_, x_);
  FD_CHECK_SAME(f_, m_);
  TORCH_CHECK(coef_.numel() == 2, "coef must hold 2 values");
  const auto coef = coef_.to(at::kDouble).contiguous();
  const double c0d = coef.data_ptr<double>()[0], c1d = coef.data_ptr<double>()[1];
  const auto f = f_.contiguous(), g = g_.contiguous(), x = x_.contiguous(), m = m_.contiguous();
  auto gf = at::empty_like(f), gm = at::empty_like(f);
  const int64_t N = f.numel();
  if (N == 0) return {gf, gm};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "noise2same_loss_bwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* fp = f.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    scalar_t* a = gf.data_ptr<scalar_t>();
    scalar_t* b = gm.data_ptr<scalar_t>();
    const opmath c0 = static_cast<opmath>(c0d), c1 = static_cast<opmath>(c1d);
    at::parallel_for(0, N, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const opmath fv = static_cast<opmath>(fp[k]);
        const opmath t = c1 * static_cast<opmath>(mp[k]) * (fv - static_cast<opmath>(gp[k]));
        a[k] = static_cast<scalar_t>(c0 * (fv - static_cast<opmath>(xp[k])) + t);
        b[k] = static_cast<scalar_t>(-t);
      }
    });
  });
  return {gf, gm};
}

void register_noise2same(pybind11::module_& m) {
  m.def("noise2same_mask_fwd", &noise2same_mask_fwd_cpu, "Noise2Same stratified mask sampler forward (CPU)");
  m.def("noise2same_mask_bwd", &noise2same_mask_bwd_cpu, "Noise2Same stratified mask sampler backward (CPU)");
  m.def("noise2same_loss_sums", &noise2same_loss_sums_cpu, "Noise2Same loss: the three fused sums (CPU)");
  m.def("noise2same_loss_bwd", &noise2same_loss_bwd_cpu, "Noise2Same loss gradients (CPU)");
}

}  // namespace fastdenoise
