// RD (APR-RD) recharged multi-target L1 loss on the CPU: value and gradient in one pass, no target
// materialised.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cmath>

#include "../checks.h"
#include "../philox.h"

namespace fastdenoise {

// Returns (loss, grad): loss = sum_j mean|s - t_j| with t_j = y at pixels whose draw
// k = choice(philox(seed, (b H + r) W + c), J) equals j, else teachers[j]; grad = sum_j sign(s - t_j) / N.
std::vector<at::Tensor> recharge_l1_fwd_cpu(const at::Tensor& s_, const at::Tensor& y_, const at::Tensor& t_,
                                            int64_t seed, bool compute_grad) {
  FD_CHECK_IMAGE(s_);
  FD_CHECK_SAME(s_, y_);
  FD_CHECK_CPU(t_);
  FD_CHECK_DIM(t_, 5);
  TORCH_CHECK(t_.scalar_type() == s_.scalar_type(), "teachers must have the student's dtype");
  TORCH_CHECK(t_.size(0) >= 1 && t_.sizes().slice(1) == s_.sizes(), "teachers must have shape (J, B, C, H, W)");
  const auto s = s_.contiguous(), y = y_.contiguous(), t = t_.contiguous();
  const int64_t J = t.size(0), B = s.size(0), C = s.size(1), H = s.size(2), W = s.size(3), N = s.numel();
  const int64_t plane = H * W;
  auto grad = compute_grad ? at::empty_like(s) : at::empty({0}, s.options());
  std::vector<acc_t> part(B * H, 0.0);
  const Seed sd(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "recharge_l1_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* tp = t.data_ptr<scalar_t>();
    scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
    const opmath inv_n = static_cast<opmath>(1.0 / static_cast<double>(N));
    at::parallel_for(0, B * H, grain_for(C * W * J), [&](int64_t begin, int64_t end) {
      std::vector<int32_t> k(W);
      std::vector<uint32_t> words(W);
      std::vector<opmath> sv(W), gs(W), ad(W);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H, r = row % H;
        philox_run(sd, static_cast<uint64_t>(row * W), W, words.data());
        for (int64_t c = 0; c < W; ++c) k[c] = static_cast<int32_t>(choice(words[c], static_cast<uint32_t>(J)));
        acc_t acc = 0;
        for (int64_t ch = 0; ch < C; ++ch) {
          const int64_t o = (bi * C + ch) * plane + r * W;
          for (int64_t c = 0; c < W; ++c) {
            sv[c] = static_cast<opmath>(sp[o + c]);
            gs[c] = opmath(0);
            ad[c] = opmath(0);
          }
          for (int64_t j = 0; j < J; ++j) {
            const scalar_t* tr = tp + j * N + o;
            const scalar_t* yr = yp + o;
            const int32_t jj = static_cast<int32_t>(j);
            for (int64_t c = 0; c < W; ++c) {
              const opmath tv = static_cast<opmath>(k[c] == jj ? yr[c] : tr[c]);
              const opmath d = sv[c] - tv;
              ad[c] += std::abs(d);
              gs[c] += static_cast<opmath>((d > opmath(0)) - (d < opmath(0)));
            }
          }
          opmath racc = 0;
          for (int64_t c = 0; c < W; ++c) racc += ad[c];
          acc += static_cast<acc_t>(racc);
          if (gp)
            for (int64_t c = 0; c < W; ++c) gp[o + c] = static_cast<scalar_t>(gs[c] * inv_n);
        }
        part[row] = acc;
      }
    });
  });
  acc_t total = 0;
  for (auto v : part) total += v;  // fixed order: the result does not depend on the thread count
  const auto ldt = at::promote_types(s.scalar_type(), at::kFloat);
  return {at::scalar_tensor(N ? total / N : std::nan(""), s.options().dtype(ldt)), grad};
}

void register_recharge(pybind11::module_& m) {
  m.def("recharge_l1_fwd", &recharge_l1_fwd_cpu, "RD recharged multi-target L1 loss value and gradient (CPU)");
}

}  // namespace fastdenoise
