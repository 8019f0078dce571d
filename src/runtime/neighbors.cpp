// src/runtime/neighbors.cpp - estimators of the neighbors family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_neighbors(registry& r) { (void)r; }

}  // namespace vitrify::runtime
