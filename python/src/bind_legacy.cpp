// vitrify._core bindings: scan, non-executing pickle reader, convert.
#include <nanobind/nanobind.h>

#include "common.hpp"

namespace vitrify_py {

void bind_legacy(nb::module_& m) { (void)m; }

}  // namespace vitrify_py
