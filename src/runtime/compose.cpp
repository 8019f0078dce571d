// src/runtime/compose.cpp - estimators of the compose family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_compose(registry& r) { (void)r; }

}  // namespace vitrify::runtime
