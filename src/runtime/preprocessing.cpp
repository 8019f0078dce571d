// src/runtime/preprocessing.cpp - registers the preprocessing families (scalers, transforms,
// encoders, imputer: preprocessing_*.cpp, see preprocessing_internal.hpp) and holds what the
// compositions of compose.cpp use (steps.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "runtime/preprocessing_internal.hpp"

namespace vitrify::runtime {

using pyobj::node;

// ---- shared with compose.cpp (declared in steps.hpp) ----

result<dense> table_to_dense(const table& t, std::string_view who) {
  dense d(t.rows(), t.cols());
  for (std::size_t c = 0; c < t.cols(); ++c) {
    const auto& col = t.col(c);
    if (col.is_text)
      return fail(errc::unsupported_model, std::string(who) + ": output column '" + col.name +
                                               "' holds text; the runtime returns numbers only");
    for (std::size_t r = 0; r < t.rows(); ++r) d(r, c) = col.numbers[r];
  }
  return d;
}

float to_f32(double d) noexcept {
  constexpr double max = static_cast<double>(std::numeric_limits<float>::max());
  if (d != d || std::abs(d) <= max) return static_cast<float>(d);
  // Halfway between FLT_MAX and the next power of two rounds to infinity (ties to even).
  const float big = std::abs(d) < 0x1.ffffffp+127 ? std::numeric_limits<float>::max() : std::numeric_limits<float>::infinity();
  return d < 0 ? -big : big;
}

std::vector<float> to_float32(const dense& d) {
  std::vector<float> f(d.v.size());
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = to_f32(d.v[i]);
  return f;
}

void register_preprocessing(registry& r) {
  using namespace prep;
  r.add("sklearn.preprocessing.StandardScaler", build_standard_scaler);
  r.add("sklearn.preprocessing.MinMaxScaler", build_minmax_scaler);
  r.add("sklearn.preprocessing.MaxAbsScaler", build_maxabs_scaler);
  r.add("sklearn.preprocessing.RobustScaler", build_robust_scaler);
  r.add("sklearn.preprocessing.Normalizer", build_normalizer);
  r.add("sklearn.preprocessing.Binarizer", build_binarizer);
  r.add("sklearn.preprocessing.FunctionTransformer", build_function_transformer);
  r.add("sklearn.preprocessing.OneHotEncoder", build_one_hot);
  r.add("sklearn.preprocessing.OrdinalEncoder", build_ordinal);
  r.add("sklearn.preprocessing.LabelEncoder", build_label_encoder);
  r.add("sklearn.preprocessing.PolynomialFeatures", build_polynomial);
  r.add("sklearn.impute.SimpleImputer", build_imputer);
}

}  // namespace vitrify::runtime
