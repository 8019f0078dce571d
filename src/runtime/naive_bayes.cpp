// src/runtime/naive_bayes.cpp - estimators of the naive_bayes family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_naive_bayes(registry& r) { (void)r; }

}  // namespace vitrify::runtime
