// src/runtime/preprocessing.cpp - estimators of the preprocessing family (see estimator.hpp for the interface).
#include "runtime/estimator.hpp"

namespace vitrify::runtime {

void register_preprocessing(registry& r) { (void)r; }

}  // namespace vitrify::runtime
