// src/runtime/cluster.cpp - estimators of the cluster family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_cluster(registry& r) { (void)r; }

}  // namespace vitrify::runtime
