// Blind2Grad dual mask (exact-count selection by histogram select) and fused loss on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <limits>

#include "../checks.h"
#include "../philox.h"

namespace fastdenoise {
namespace {
constexpr uint64_t kDetail = std::numeric_limits<uint64_t>::max();  // composite of a detail pixel
}  // namespace

// mask (B, 1, H, W) in y's dtype. Pass 1 (rows in parallel): composite (key << 32 | index) per flat
// pixel, kDetail for detail pixels. Pass 2 (images in parallel): K-th smallest composite by a
// histogram of the top 16 key bits, then nth_element among the candidates of the crossing bin.
// Pass 3 (rows in parallel): mask = composite <= threshold. Same order as (key * HW + index) in
// reference.py, so the mask is bit-identical.
at::Tensor dual_mask_fwd_cpu(const at::Tensor& y_, const at::Tensor& x_, int64_t seed, int64_t k, double eps_g) {
  FD_CHECK_IMAGE(y_);
  FD_CHECK_SAME(y_, x_);
  const auto y = y_.contiguous(), x = x_.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), HW = H * W;
  TORCH_CHECK(k >= 0 && k <= HW, "mask count out of range");
  auto mask = at::empty({B, 1, H, W}, y.options());
  if (mask.numel() == 0) return mask;
  std::vector<uint64_t> comp(B * HW);
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "dual_mask_keys", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const opmath thr = static_cast<opmath>(eps_g);
    at::parallel_for(0, B * H, grain_for(C * W), [&](int64_t begin, int64_t end) {
      std::vector<opmath> mx(W);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H, i = row % H;
        std::fill(mx.begin(), mx.end(), opmath(0));
        for (int64_t c = 0; c < C; ++c) {
          const int64_t o = ((bi * C + c) * H + i) * W;
          for (int64_t j = 0; j < W; ++j) {
            const opmath d = std::abs(static_cast<opmath>(yp[o + j]) - static_cast<opmath>(xp[o + j]));
            mx[j] = d > mx[j] ? d : mx[j];
          }
        }
        uint64_t* cp = comp.data() + row * W;
        for (int64_t j = 0; j < W; ++j) {  // detail pixels need no key: Philox only for flat ones
          if (mx[j] >= thr) {
            cp[j] = kDetail;
          } else {
            const uint64_t key = philox(s, static_cast<uint64_t>(row * W + j));
            cp[j] = (key << 32) | static_cast<uint64_t>(i * W + j);
          }
        }
      }
    });
  });
  // Per image: threshold composite (masked iff comp <= thr[b] and comp != kDetail); none when k == 0.
  std::vector<uint64_t> thr(B, 0);
  std::vector<uint8_t> any(B, k > 0);
  if (k > 0) {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> hist(1 << 16);
      std::vector<uint64_t> cand;
      for (int64_t bi = begin; bi < end; ++bi) {
        const uint64_t* cp = comp.data() + bi * HW;
        std::fill(hist.begin(), hist.end(), 0);
        int64_t nflat = 0;
        for (int64_t p = 0; p < HW; ++p)
          if (cp[p] != kDetail) {
            ++hist[cp[p] >> 48];
            ++nflat;
          }
        if (nflat <= k) {
          thr[bi] = kDetail - 1;  // every flat pixel
          continue;
        }
        int64_t below = 0, bin = 0;
        while (below + hist[bin] < k) below += hist[bin++];
        cand.clear();
        for (int64_t p = 0; p < HW; ++p)
          if (cp[p] != kDetail && static_cast<int64_t>(cp[p] >> 48) == bin) cand.push_back(cp[p]);
        const int64_t r = k - below - 1;
        std::nth_element(cand.begin(), cand.begin() + r, cand.end());
        thr[bi] = cand[r];
      }
    });
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "dual_mask_write", [&] {
    scalar_t* mp = mask.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H;
        const uint64_t t = thr[bi];
        const bool on = any[bi];
        const uint64_t* cp = comp.data() + row * W;
        for (int64_t j = 0; j < W; ++j)
          mp[row * W + j] = static_cast<scalar_t>((on && cp[j] != kDetail && cp[j] <= t) ? 1 : 0);
      }
    });
  });
  return mask;
}

// Returns (loss, grad_a, grad_f); see reference.py for L. With e = f - a, dgx = e[j+1] - e[j] and
// dgy = e[i+1] - e[i]; per pixel (gather form, no atomics)
//   dL/da = s_c m^2 (a - y) + s_g G,  dL/df = -s_g G,
//   G = w_x(j) dgx(j) - w_x(j-1) dgx(j-1) + w_y(i) dgy(i) - w_y(i-1) dgy(i-1),
// s_c = 2 (1 + gamma) / n_m, s_g = 2 omega^2 / n_d. Counts come from a first (integer) pass over m.
std::vector<at::Tensor> blind2grad_loss_fwd_cpu(const at::Tensor& a_, const at::Tensor& f_, const at::Tensor& y_,
                                                const at::Tensor& m_, double omega, double gamma, bool masked_only,
                                                bool grad_a, bool grad_f) {
  FD_CHECK_IMAGE(a_);
  FD_CHECK_SAME(a_, f_);
  FD_CHECK_SAME(a_, y_);
  FD_CHECK_IMAGE(m_);
  const auto a = a_.contiguous(), f = f_.contiguous(), y = y_.contiguous(), m = m_.contiguous();
  const int64_t B = a.size(0), C = a.size(1), H = a.size(2), W = a.size(3);
  TORCH_CHECK(m.size(0) == B && m.size(1) == 1 && m.size(2) == H && m.size(3) == W && m.scalar_type() == a.scalar_type(),
              "mask must have shape (B, 1, H, W) and the dtype of out_masked");
  auto ga = grad_a ? at::empty_like(a) : at::empty({0}, a.options());
  auto gf = grad_f ? at::empty_like(a) : at::empty({0}, a.options());
  const auto ldt = at::promote_types(a.scalar_type(), at::kFloat);
  if (a.numel() == 0) return {at::zeros({}, a.options().dtype(ldt)), ga, gf};
  std::vector<acc_t> pm(B * H, 0.0), pd(B * H, 0.0), pc(B * H, 0.0), pg(B * H, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "blind2grad_loss_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const scalar_t* fp = f.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    // pass 1: counts (sums of m and of the edge weights), per row, summed in a fixed order
    at::parallel_for(0, B * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row % H;
        const scalar_t* mr = mp + row * W;
        acc_t sm = 0;
        int64_t nd = 0;
        for (int64_t j = 0; j < W; ++j) {
          sm += static_cast<acc_t>(mr[j]);
          if (masked_only) {
            const bool z = mr[j] != scalar_t(0);
            if (j + 1 < W) nd += (z || mr[j + 1] != scalar_t(0));
            if (i + 1 < H) nd += (z || mr[j + W] != scalar_t(0));
          }
        }
        pm[row] = sm;
        pd[row] = static_cast<acc_t>(nd);
      }
    });
    acc_t nm = 0, nd = 0;
    for (int64_t r = 0; r < B * H; ++r) nm += pm[r], nd += pd[r];
    nm *= C;
    nd = masked_only ? nd * C : static_cast<acc_t>(B * C * (H * (W - 1) + (H - 1) * W));
    nm = std::max<acc_t>(nm, 1.0);
    nd = std::max<acc_t>(nd, 1.0);
    const opmath s_c = static_cast<opmath>(2.0 * (1.0 + gamma) / nm);
    const opmath s_g = static_cast<opmath>(2.0 * omega * omega / nd);
    scalar_t* gap = grad_a ? ga.data_ptr<scalar_t>() : nullptr;
    scalar_t* gfp = grad_f ? gf.data_ptr<scalar_t>() : nullptr;
    // pass 2: value and gradients
    at::parallel_for(0, B * H, grain_for(C * W), [&](int64_t begin, int64_t end) {
      std::vector<opmath> wxr(W), wyr(W), wyu(W), mv(W);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H, i = row % H;
        const scalar_t* mr = mp + row * W;
        for (int64_t j = 0; j < W; ++j) {
          mv[j] = static_cast<opmath>(mr[j]);
          const bool z = mr[j] != scalar_t(0);
          wxr[j] = (j + 1 < W) && (!masked_only || z || mr[j + 1] != scalar_t(0)) ? 1 : 0;
          wyr[j] = (i + 1 < H) && (!masked_only || z || mr[j + W] != scalar_t(0)) ? 1 : 0;
          wyu[j] = (i > 0) && (!masked_only || z || mr[j - W] != scalar_t(0)) ? 1 : 0;
        }
        acc_t sc = 0, sg = 0;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t o = ((bi * C + c) * H + i) * W;
          opmath rc = 0, rg = 0;
          for (int64_t j = 0; j < W; ++j) {
            const int64_t p = o + j;
            const opmath av = static_cast<opmath>(ap[p]);
            const opmath e = static_cast<opmath>(fp[p]) - av;
            const opmath dc = mv[j] * (av - static_cast<opmath>(yp[p]));
            const opmath gx = j + 1 < W ? (static_cast<opmath>(fp[p + 1]) - static_cast<opmath>(ap[p + 1])) - e : opmath(0);
            const opmath gy = i + 1 < H ? (static_cast<opmath>(fp[p + W]) - static_cast<opmath>(ap[p + W])) - e : opmath(0);
            rc += dc * dc;
            rg += wxr[j] * gx * gx + wyr[j] * gy * gy;
            if (gap || gfp) {
              const opmath gxl = j > 0 ? e - (static_cast<opmath>(fp[p - 1]) - static_cast<opmath>(ap[p - 1])) : opmath(0);
              const opmath gyu = i > 0 ? e - (static_cast<opmath>(fp[p - W]) - static_cast<opmath>(ap[p - W])) : opmath(0);
              const opmath wxl = j > 0 ? wxr[j - 1] : opmath(0);
              const opmath G = wxr[j] * gx - wxl * gxl + wyr[j] * gy - wyu[j] * gyu;
              if (gap) gap[p] = static_cast<scalar_t>(s_c * mv[j] * dc + s_g * G);
              if (gfp) gfp[p] = static_cast<scalar_t>(-s_g * G);
            }
          }
          sc += rc;
          sg += rg;
        }
        pc[row] = sc;
        pg[row] = sg;
      }
    });
    acc_t tc = 0, tg = 0;
    for (int64_t r = 0; r < B * H; ++r) tc += pc[r], tg += pg[r];
    pc[0] = (1.0 + gamma) * tc / nm + omega * omega * tg / nd;
  });
  return {at::scalar_tensor(pc[0], a.options().dtype(ldt)), ga, gf};
}

void register_blind2grad(pybind11::module_& m) {
  m.def("dual_mask_fwd", &dual_mask_fwd_cpu, "Blind2Grad dual mask (CPU)");
  m.def("blind2grad_loss_fwd", &blind2grad_loss_fwd_cpu, "Blind2Grad fused loss value and gradients (CPU)");
}

}  // namespace fastdenoise
