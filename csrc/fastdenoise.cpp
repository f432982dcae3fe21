// The pybind11 module fastdenoise._C: plain functions called by the ops' CPU impls (the schemas
// live in Python, see fastdenoise/_library.py). Each csrc/cpu/<op>.cpp provides register_<op>.
#include <torch/extension.h>

#include <vector>

#include "philox.h"

namespace fastdenoise {
void register_neighbor(pybind11::module_& m);
void register_blind2grad(pybind11::module_& m);
void register_blindspot(pybind11::module_& m);
void register_p2n(pybind11::module_& m);
void register_recharge(pybind11::module_& m);
void register_apr(pybind11::module_& m);
void register_noise2same(pybind11::module_& m);
void register_zsn2n(pybind11::module_& m);
}  // namespace fastdenoise

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastdenoise C++ CPU kernels";
  m.def(
      "philox",
      [](int64_t seed, const at::Tensor& counter, int64_t stream) {
        TORCH_CHECK(counter.scalar_type() == at::kLong && counter.is_cpu(), "counter must be a CPU int64 tensor");
        auto c = counter.contiguous();
        auto out = at::empty_like(c);
        const fastdenoise::Seed s(seed);
        const int64_t* cp = c.data_ptr<int64_t>();
        int64_t* op = out.data_ptr<int64_t>();
        // Runs of consecutive counters go through the vectorised philox_run (checked against the scalar one).
        std::vector<uint32_t> w;
        int64_t i = 0;
        while (i < c.numel()) {
          int64_t j = i + 1;
          while (j < c.numel() && cp[j] == cp[j - 1] + 1) ++j;
          w.resize(j - i);
          fastdenoise::philox_run(s, static_cast<uint64_t>(cp[i]), j - i, w.data(), static_cast<uint32_t>(stream));
          for (int64_t t = i; t < j; ++t) op[t] = w[t - i];
          i = j;
        }
        return out;
      },
      "Philox4x32-10 first word per counter (for tests)");
  m.def(
      "philox_packed",
      [](int64_t seed, int64_t start, int64_t n, int64_t stream) {
        TORCH_CHECK(start >= 0 && n >= 0, "start and n must be non-negative");
        auto out = at::empty({n}, at::kLong);
        std::vector<uint32_t> w(n);
        fastdenoise::packed_run(fastdenoise::Seed(seed), static_cast<uint64_t>(start), n, w.data(),
                                static_cast<uint32_t>(stream));
        int64_t* op = out.data_ptr<int64_t>();
        for (int64_t i = 0; i < n; ++i) op[i] = w[i];
        return out;
      },
      "Packed Philox words start .. start + n - 1 (for tests)");
  fastdenoise::register_neighbor(m);
  fastdenoise::register_blind2grad(m);
  fastdenoise::register_blindspot(m);
  fastdenoise::register_p2n(m);
  fastdenoise::register_recharge(m);
  fastdenoise::register_apr(m);
  fastdenoise::register_noise2same(m);
  fastdenoise::register_zsn2n(m);
}
