// vitrify._core bindings: framework tensors, safetensors and PyTorch import/export.
#include <nanobind/nanobind.h>

#include "common.hpp"

namespace vitrify_py {

void bind_tensors(nb::module_& m) { (void)m; }

}  // namespace vitrify_py
