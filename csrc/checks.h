// Entry checks shared by every C++ kernel. Python validates user input first with clear messages;
// these guard the compiled entry points themselves.
#pragma once
#include <torch/extension.h>

#define FD_CHECK_CPU(x) TORCH_CHECK(!(x).is_cuda() && (x).device().is_cpu(), #x " must be a CPU tensor")
#define FD_CHECK_FLOAT(x) TORCH_CHECK(at::isFloatingType((x).scalar_type()), #x " must be a floating tensor")
#define FD_CHECK_DIM(x, n) TORCH_CHECK((x).dim() == (n), #x " must have " #n " dims, got ", (x).dim())
#define FD_CHECK_IMAGE(x) \
  FD_CHECK_CPU(x);        \
  FD_CHECK_FLOAT(x);      \
  FD_CHECK_DIM(x, 4)
#define FD_CHECK_SAME(a, b)                                                                    \
  TORCH_CHECK((a).sizes() == (b).sizes(), #a " and " #b " must have the same shape, got ", \
              (a).sizes(), " and ", (b).sizes());                                            \
  TORCH_CHECK((a).scalar_type() == (b).scalar_type(), #a " and " #b " must have the same dtype")

namespace fastdenoise {
// Accumulator type for sums: double for every float type (the result is then cast).
using acc_t = double;
// Grain size for at::parallel_for over rows of `row_elems` elements: about 32k elements per task.
inline int64_t grain_for(int64_t row_elems) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_elems));
}
}  // namespace fastdenoise
