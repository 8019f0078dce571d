// src/runtime/linear.cpp - estimators of the linear family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_linear(registry& r) { (void)r; }

}  // namespace vitrify::runtime
