// Shifted 2x2 max-pool (AT-BSN / Laine19 blind-spot pool) forward/backward on the CPU.
// Window of output (i, j): rows 2i+ro, 2i+ro+1 and columns 2j+co, 2j+co+1, positions outside the
// image read as 0 (the upstream zero row/column). (ro, co) per direction: see reference.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cmath>

#include "../checks.h"

namespace fastdenoise {
namespace {

constexpr int64_t kRowOff[4] = {-1, 0, 1, 0};
constexpr int64_t kColOff[4] = {0, 1, 0, -1};

// floor((v) / 2) and v - 2 * floor(v / 2) for v >= -2.
inline int64_t half_floor(int64_t v) { return (v + 2) / 2 - 1; }

}  // namespace

// Returns (y, idx): y = window max, idx (int8) = argmax position 2a+b in raster order (strict >,
// the first NaN wins, as torch's max_pool2d).
std::vector<at::Tensor> shifted_max_pool2d_fwd_cpu(const at::Tensor& x_, int64_t direction) {
  FD_CHECK_IMAGE(x_);
  TORCH_CHECK(direction >= 0 && direction < 4, "direction must be in 0..3, got ", direction);
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), HO = H / 2, WO = W / 2;
  auto y = at::empty({B, C, HO, WO}, x.options());
  auto idx = at::empty({B, C, HO, WO}, x.options().dtype(at::kChar));
  if (y.numel() == 0) return {y, idx};
  const int64_t ro = kRowOff[direction], co = kColOff[direction];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shifted_max_pool2d_fwd", [&] {
    using opmath = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    int8_t* ip = idx.data_ptr<int8_t>();
    at::parallel_for(0, B * C * HO, grain_for(2 * W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t plane = row / HO, i = row % HO;
        const int64_t r0 = 2 * i + ro;
        const scalar_t* rows[2];
        for (int a = 0; a < 2; ++a) {
          const int64_t r = r0 + a;
          rows[a] = (r >= 0 && r < H) ? xp + (plane * H + r) * W : nullptr;
        }
        scalar_t* yo = yp + row * WO;
        int8_t* io = ip + row * WO;
        for (int64_t j = 0; j < WO; ++j) {
          const int64_t c0 = 2 * j + co;
          opmath best = 0;
          int8_t k = 0;
          for (int a = 0; a < 2; ++a) {
            for (int b = 0; b < 2; ++b) {
              const int64_t c = c0 + b;
              const opmath v = (rows[a] && c >= 0 && c < W) ? static_cast<opmath>(rows[a][c]) : opmath(0);
              if ((a | b) == 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                k = static_cast<int8_t>(2 * a + b);
              }
            }
          }
          yo[j] = static_cast<scalar_t>(best);
          io[j] = k;
        }
      }
    });
  });
  return {y, idx};
}

// Gather form: every input element reads its window's gradient if it is the saved argmax, else 0.
// Elements outside every window (a trailing odd row/column) get 0; the zero row gets nothing.
at::Tensor shifted_max_pool2d_bwd_cpu(const at::Tensor& dy_, const at::Tensor& idx_, int64_t direction, int64_t H,
                                      int64_t W) {
  FD_CHECK_IMAGE(dy_);
  TORCH_CHECK(idx_.scalar_type() == at::kChar && idx_.sizes() == dy_.sizes(), "idx must be int8 shaped like dy");
  TORCH_CHECK(direction >= 0 && direction < 4, "direction must be in 0..3, got ", direction);
  const auto dy = dy_.contiguous();
  const auto idx = idx_.contiguous();
  const int64_t B = dy.size(0), C = dy.size(1), HO = dy.size(2), WO = dy.size(3);
  TORCH_CHECK(HO == H / 2 && WO == W / 2, "gradient shape does not match the input size");
  auto dx = at::empty({B, C, H, W}, dy.options());
  if (dx.numel() == 0) return dx;
  const int64_t ro = kRowOff[direction], co = kColOff[direction];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dy.scalar_type(), "shifted_max_pool2d_bwd", [&] {
    const scalar_t* gp = dy.data_ptr<scalar_t>();
    const int8_t* ip = idx.data_ptr<int8_t>();
    scalar_t* dp = dx.data_ptr<scalar_t>();
    at::parallel_for(0, B * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t plane = row / H, r = row % H;
        scalar_t* out = dp + row * W;
        const int64_t i = half_floor(r - ro), a = r - ro - 2 * i;
        if (i < 0 || i >= HO) {
          for (int64_t c = 0; c < W; ++c) out[c] = scalar_t(0);
          continue;
        }
        const scalar_t* g = gp + (plane * HO + i) * WO;
        const int8_t* k = ip + (plane * HO + i) * WO;
        for (int64_t c = 0; c < W; ++c) {
          const int64_t j = half_floor(c - co), b = c - co - 2 * j;
          out[c] = (j >= 0 && j < WO && k[j] == 2 * a + b) ? g[j] : scalar_t(0);
        }
      }
    });
  });
  return dx;
}

void register_blindspot(pybind11::module_& m) {
  m.def("shifted_max_pool2d_fwd", &shifted_max_pool2d_fwd_cpu, "Shifted 2x2 max-pool forward (CPU)");
  m.def("shifted_max_pool2d_bwd", &shifted_max_pool2d_bwd_cpu, "Shifted 2x2 max-pool backward (CPU)");
}

}  // namespace fastdenoise
