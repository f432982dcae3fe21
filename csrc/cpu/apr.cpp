// APR (Adjacent Pixel Replacer) 3x3 pair sampler (forward / gather-form backward) and fused loss on
// the CPU. Table and counter layout: fastdenoise/ops/apr/reference.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>

#include "../checks.h"
#include "../philox.h"

namespace fastdenoise {
namespace {

constexpr uint32_t kNumPairs = 72;

// Pair ids of one image row (flat row index b * H + r), one Philox word per pixel. Kept as a plain
// loop over a contiguous buffer so the compiler can vectorise the rounds.
inline void row_ids(const Seed& s, int64_t flat_row, int64_t W, uint8_t* k) {
  thread_local std::vector<uint32_t> words;
  words.resize(W);
  philox_run(s, static_cast<uint64_t>(flat_row * W), W, words.data());
  for (int64_t j = 0; j < W; ++j) k[j] = static_cast<uint8_t>(choice(words[j], kNumPairs));
}

// Window positions (p, q) of pair id k: p = k / 8, q = k % 8 skipping p.
inline void pair_of(int k, int& p, int& q) {
  p = k >> 3;
  const int j = k & 7;
  q = j + (j >= p);
}

inline int64_t clampi(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

// Source offsets inside the (H, W) plane of h1 and h2 for every pixel of image row r.
inline void row_sources(const Seed& s, int64_t flat_row, int64_t r, int64_t H, int64_t W, uint8_t* k, int64_t* o1,
                        int64_t* o2) {
  row_ids(s, flat_row, W, k);
  for (int64_t j = 0; j < W; ++j) {
    int p, q;
    pair_of(k[j], p, q);
    o1[j] = clampi(r + p / 3 - 1, H - 1) * W + clampi(j + p % 3 - 1, W - 1);
    o2[j] = clampi(r + q / 3 - 1, H - 1) * W + clampi(j + q % 3 - 1, W - 1);
  }
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

std::vector<at::Tensor> apr_sample_fwd_cpu(const at::Tensor& x_, int64_t seed) {
  FD_CHECK_IMAGE(x_);
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h1 = at::empty({B, C, H, W}, x.options());
  auto h2 = at::empty({B, C, H, W}, x.options());
  if (h1.numel() == 0) return {h1, h2};
  const Seed s(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "apr_sample_fwd", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* a = h1.data_ptr<scalar_t>();
    scalar_t* b = h2.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, grain_for(C * W * 2), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> o1(W), o2(W);
      std::vector<uint8_t> k(W);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H, r = row % H;
        row_sources(s, row, r, H, W, k.data(), o1.data(), o2.data());
        for (int64_t c = 0; c < C; ++c) {
          const int64_t plane = (bi * C + c) * H * W;
          const scalar_t* src = xp + plane;
          scalar_t* pa = a + plane + r * W;
          scalar_t* pb = b + plane + r * W;
          for (int64_t j = 0; j < W; ++j) {
            pa[j] = src[o1[j]];
            pb[j] = src[o2[j]];
          }
        }
      }
    });
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
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* fp = fy.data_ptr<scalar_t>();
    scalar_t* gp = compute_grad ? grad.data_ptr<scalar_t>() : nullptr;
    scalar_t* rp = compute_grad_fy ? gr.data_ptr<scalar_t>() : nullptr;
    const opmath l = static_cast<opmath>(lam), scale = static_cast<opmath>(1.0 / static_cast<double>(N));
    const opmath lscale = static_cast<opmath>(lam / static_cast<double>(N));
    at::parallel_for(0, B * H, grain_for(C * W * 4), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> o1(W), o2(W);
      std::vector<uint8_t> k(W);
      for (int64_t row = begin; row < end; ++row) {
        const int64_t bi = row / H, r = row % H;
        row_sources(s, row, r, H, W, k.data(), o1.data(), o2.data());
        acc_t acc = 0;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t plane = (bi * C + c) * H * W;
          const scalar_t* yc = yp + plane;
          const scalar_t* fc = fp + plane;
          const int64_t o = plane + r * W;
          opmath racc = 0;
          for (int64_t j = 0; j < W; ++j) {
            const opmath d = static_cast<opmath>(op[o + j]) - static_cast<opmath>(yc[o2[j]]);
            const opmath e = static_cast<opmath>(fc[o1[j]]) - static_cast<opmath>(fc[o2[j]]);
            const opmath rr = d - e;
            racc += std::abs(d) + l * std::abs(rr);
            if (gp) gp[o + j] = static_cast<scalar_t>(scale * (sgn(d) + l * sgn(rr)));
            if (rp) rp[o + j] = static_cast<scalar_t>(lscale * sgn(rr));
          }
          acc += racc;
        }
        part[row] = acc;
      }
    });
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
