// src/runtime/tree.cpp - estimators of the tree family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_tree(registry& r) { (void)r; }

}  // namespace vitrify::runtime
