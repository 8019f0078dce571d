// src/runtime/svm.cpp - estimators of the svm family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_svm(registry& r) { (void)r; }

}  // namespace vitrify::runtime
