// src/runtime/steps.hpp - what the composition estimators (Pipeline, ColumnTransformer,
// FeatureUnion in compose.cpp) need to know about the transformers of preprocessing*.cpp and
// decomposition.cpp beyond the plain estimator interface:
//
// * scikit-learn keeps float32 data float32 through most transformers (a float32 X gives a
//   float32 result computed in float32 or rounded to float32 after each operation). A step
//   whose `keeps_float32` is true computes that way when it is given a float32 view, and the
//   compositions hand the next step a float32 view of its result, so a chain of such steps
//   rounds exactly like scikit-learn.
// * Some steps map text to text (SimpleImputer fitted on object data, the identity
//   FunctionTransformer that 'passthrough' stands for): `run_table` gives their output as a
//   table, so that Pipeline([SimpleImputer(strategy="most_frequent"), OneHotEncoder()]) can
//   impute strings before they are encoded.
#pragma once

#include "runtime/estimator.hpp"

namespace vitrify::runtime {

class step_estimator : public estimator {
 public:
  /// float32 in -> float32 out (see above).
  bool keeps_float32 = false;
  /// run_table is implemented (table in, table out, text columns kept).
  bool maps_tables = false;
  virtual result<table> run_table(const table& t) const {
    (void)t;
    return fail(errc::unsupported_model, type + " cannot pass text through");
  }
};

/// Whether `e` keeps float32 data float32 (false for estimators outside these families).
inline bool keeps_float32(const estimator& e) noexcept {
  const auto* s = dynamic_cast<const step_estimator*>(&e);
  return s && s->keeps_float32;
}

/// `e` as a text-to-text step, or nullptr.
inline const step_estimator* table_step(const estimator& e) noexcept {
  const auto* s = dynamic_cast<const step_estimator*>(&e);
  return s && s->maps_tables ? s : nullptr;
}

/// A table whose columns are all numeric as a dense matrix; errc::unsupported_model naming
/// the first text column (the runtime returns numbers only).
result<dense> table_to_dense(const table& t, std::string_view who);

/// double -> float32 with IEEE rounding, also beyond float's range (where a plain cast is
/// undefined behaviour; crafted files can hold such constants).
float to_f32(double d) noexcept;

/// Values of a dense result rounded to float32 (they are exact float32 values already when the
/// step keeps float32; the copy gives the next step a float32 view).
std::vector<float> to_float32(const dense& d);

}  // namespace vitrify::runtime
