// src/runtime/ensemble.cpp - estimators of the ensemble family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_ensemble(registry& r) { (void)r; }

}  // namespace vitrify::runtime
