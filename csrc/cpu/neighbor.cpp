// Nb2Nb neighbour sub-sampler (forward/backward) and fused loss on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "../checks.h"
#include "../philox.h"

namespace fastdenoise {
namespace {

// The 8 ordered edge-adjacent pairs (0=TL, 1=TR, 2=BL, 3=BR), same table as reference.py.
constexpr int8_t kPairs[8][2] = {{0, 1}, {0, 2}, {1, 3}, {2, 3}, {1, 0}, {2, 0}, {3, 1}, {3, 2}};

// Offsets of the two picks inside the cell's top-left corner, for one row of cells.
inline void row_pairs(const Seed& s, int64_t row, int64_t wh, int64_t w, int64_t* o1, int64_t* o2,
                      int8_t* p1, int8_t* p2) {
  thread_local std::vector<uint32_t> words;
  words.resize(wh);
  philox_run(s, static_cast<uint64_t>(row * wh), wh, words.data());
  for (int64_t j = 0; j < wh; ++j) {
    const uint32_t k = choice(words[j], 8);
    p1[j] = kPairs[k][0];
    p2[j] = kPairs[k][1];
    o1[j] = (p1[j] >> 1) * w + 2 * j + (p1[j] & 1);
    o2[j] = (p2[j] >> 1) * w + 2 * j + (p2[j] & 1);
  }
}

}  // namespace

// Returns (g1, g2); g2 is an empty (0,) placeholder when need_g2 is false (only g1 is written).
std::vector<at::Tensor> neighbor_subsample_fwd_cpu(const at::Tensor& x_, int64_t seed, bool need_g2) {
  FD_CHECK_IMAGE(x_);
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HH = H / 2, WH = W / 2;
  auto g1 = at::empty({B, C, HH, WH}, x.options());
  auto g2 = need_g2 ? at::empty({B, C, HH, WH}, x.options()) : at::empty({0}, x.options());
  if (g1.numel() == 0) return {g1, g2};
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "neighbor_subsample_fwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* a = g1.data_ptr<scalar_t>();
    scalar_t* b = need_g2 ? g2.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, B * HH, grain_for(C * WH), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> o1(WH), o2(WH);
      std::vector<int8_t> p1(WH), p2(WH);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / HH, i = row % HH;
        row_pairs(s, row, WH, W, o1.data(), o2.data(), p1.data(), p2.data());
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* src = xp + ((bi * C + c) * H + 2 * i) * W;
          const int64_t o = ((bi * C + c) * HH + i) * WH;
          for (int64_t j = 0; j < WH; ++j) a[o + j] = src[o1[j]];
          if (b) {
            for (int64_t j = 0; j < WH; ++j) b[o + j] = src[o2[j]];
          }
        }
      }
    });
  });
  return {g1, g2};
}

at::Tensor neighbor_subsample_bwd_cpu(const at::Tensor& dg1_, const at::Tensor& dg2_, int64_t seed, int64_t H,
                                      int64_t W) {
  FD_CHECK_IMAGE(dg1_);
  FD_CHECK_SAME(dg1_, dg2_);
  const auto dg1 = dg1_.contiguous(), dg2 = dg2_.contiguous();
  const int64_t B = dg1.size(0), C = dg1.size(1), HH = dg1.size(2), WH = dg1.size(3);
  TORCH_CHECK(HH == H / 2 && WH == W / 2, "gradient shape does not match the input size");
  auto dx = (H % 2 || W % 2) ? at::zeros({B, C, H, W}, dg1.options()) : at::empty({B, C, H, W}, dg1.options());
  if (dg1.numel() == 0) return dx;
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dg1.scalar_type(), "neighbor_subsample_bwd", [&] {
    const scalar_t* a = dg1.data_ptr<scalar_t>();
    const scalar_t* b = dg2.data_ptr<scalar_t>();
    scalar_t* dp = dx.data_ptr<scalar_t>();
    at::parallel_for(0, B * HH, grain_for(C * WH), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> o1(WH), o2(WH);
      std::vector<int8_t> p1(WH), p2(WH);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / HH, i = row % HH;
        row_pairs(s, row, WH, W, o1.data(), o2.data(), p1.data(), p2.data());
        for (int64_t c = 0; c < C; ++c) {
          scalar_t* dst = dp + ((bi * C + c) * H + 2 * i) * W;
          const int64_t o = ((bi * C + c) * HH + i) * WH;
          for (int64_t j = 0; j < 2 * WH; ++j) dst[j] = dst[W + j] = scalar_t(0);
          for (int64_t j = 0; j < WH; ++j) {
            dst[o1[j]] = a[o + j];
            dst[o2[j]] = b[o + j];
          }
        }
      }
    });
  });
  return dx;
}

// Returns (terms, grad): terms = [sum d^2 / N, sum (d - e)^2 / N] with d = out - g2(y), e = g1(fy) - g2(fy);
// grad = 2/N (w1 d + w2 (d - e)), the gradient of w1 terms[0] + w2 terms[1], when compute_grad, else an
// empty tensor.
std::vector<at::Tensor> nb2nb_loss_fwd_cpu(const at::Tensor& out_, const at::Tensor& y_, const at::Tensor& fy_,
                                           int64_t seed, double w1, double w2, bool compute_grad) {
  FD_CHECK_IMAGE(out_);
  FD_CHECK_IMAGE(y_);
  FD_CHECK_SAME(y_, fy_);
  const auto out = out_.contiguous(), y = y_.contiguous(), fy = fy_.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), HH = H / 2, WH = W / 2;
  TORCH_CHECK(out.size(0) == B && out.size(1) == C && out.size(2) == HH && out.size(3) == WH,
              "out must have shape (B, C, H//2, W//2)");
  const int64_t N = out.numel();
  auto grad = compute_grad ? at::empty_like(out) : at::empty({0}, out.options());
  std::vector<acc_t> part(B * HH, 0.0), part2(B * HH, 0.0);
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "nb2nb_loss_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* fp = fy.data_ptr<scalar_t>();
    scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
    const opmath a1 = static_cast<opmath>(w1), a2 = static_cast<opmath>(w2), scale = static_cast<opmath>(2.0 / N);
    at::parallel_for(0, B * HH, grain_for(C * WH), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> o1(WH), o2(WH);
      std::vector<int8_t> p1(WH), p2(WH);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / HH, i = row % HH;
        row_pairs(s, row, WH, W, o1.data(), o2.data(), p1.data(), p2.data());
        acc_t acc = 0, acc2 = 0;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t src = ((bi * C + c) * H + 2 * i) * W;
          const int64_t o = ((bi * C + c) * HH + i) * WH;
          opmath racc = 0, racc2 = 0;
          for (int64_t j = 0; j < WH; ++j) {
            const opmath d = static_cast<opmath>(op[o + j]) - static_cast<opmath>(yp[src + o2[j]]);
            const opmath r = d - (static_cast<opmath>(fp[src + o1[j]]) - static_cast<opmath>(fp[src + o2[j]]));
            racc += d * d;
            racc2 += r * r;
            if (gp) gp[o + j] = static_cast<scalar_t>(scale * (a1 * d + a2 * r));
          }
          acc += racc;
          acc2 += racc2;
        }
        part[row] = acc;
        part2[row] = acc2;
      }
    });
  });
  acc_t total = 0, total2 = 0;
  for (auto v : part) total += v;  // fixed order: the result does not depend on the thread count
  for (auto v : part2) total2 += v;
  const auto ldt = at::promote_types(out.scalar_type(), at::kFloat);
  const std::vector<double> mean{static_cast<double>(total) / N, static_cast<double>(total2) / N};
  return {at::tensor(mean, at::TensorOptions().dtype(at::kDouble)).to(ldt), grad};
}

void register_neighbor(pybind11::module_& m) {
  m.def("neighbor_subsample_fwd", &neighbor_subsample_fwd_cpu, "Nb2Nb sub-sampler forward (CPU)");
  m.def("neighbor_subsample_bwd", &neighbor_subsample_bwd_cpu, "Nb2Nb sub-sampler backward (CPU)");
  m.def("nb2nb_loss_fwd", &nb2nb_loss_fwd_cpu, "Nb2Nb fused loss value and gradient (CPU)");
}

}  // namespace fastdenoise
