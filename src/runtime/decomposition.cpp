// src/runtime/decomposition.cpp - estimators of the decomposition family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_decomposition(registry& r) { (void)r; }

}  // namespace vitrify::runtime
