// src/runtime/neural.cpp - estimators of the neural family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_neural(registry& r) { (void)r; }

}  // namespace vitrify::runtime
