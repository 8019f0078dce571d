// vitrify._core bindings: converting legacy model files into vitrify files.
#include <nanobind/nanobind.h>

#include "common.hpp"

namespace vitrify_py {

void bind_convert(nb::module_& m) { (void)m; }

}  // namespace vitrify_py
