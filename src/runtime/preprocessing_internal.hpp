// src/runtime/preprocessing_internal.hpp - what the preprocessing families share (private to
// src/runtime/preprocessing*.cpp): small state readers, scikit-learn's input checks, numpy's
// pairwise sum, the row mapper, and the builders register_preprocessing() installs.
//
// The files, one family each: preprocessing_scalers.cpp (StandardScaler, MinMaxScaler,
// MaxAbsScaler, RobustScaler), preprocessing_transforms.cpp (Normalizer, Binarizer, the identity
// FunctionTransformer, PolynomialFeatures), preprocessing_encoders.cpp (categories,
// OneHotEncoder, OrdinalEncoder, LabelEncoder), preprocessing_imputer.cpp (SimpleImputer and its
// MissingIndicator); preprocessing.cpp registers them and holds what compose.cpp uses.
//
// The arithmetic is scikit-learn 1.9's, operation by operation, so that float64 results are
// bit-exact: StandardScaler subtracts then divides, MinMaxScaler multiplies then adds, monomials
// of PolynomialFeatures multiply in sklearn's order, Normalizer(l1) sums like numpy's pairwise
// sum. float32 input is computed as scikit-learn computes it (float32 constants and float32
// operations where sklearn casts its fitted arrays to X's dtype, float64 operations rounded to
// float32 after each step where it applies float64 arrays in place) and the float32 result is
// returned widened to float64. Only Normalizer(l2) differs by rounding (numpy's einsum sums the
// squares with SIMD partial sums).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "runtime/estimator.hpp"
#include "runtime/steps.hpp"

namespace vitrify::runtime::prep {

using pyobj::node;

// ---- small helpers ----

inline bool is_nan_node(const node& n) {
  if (n.k == node::kind::floating) return n.d != n.d;
  if (n.k == node::kind::scalar && n.arr && n.arr->kind() == 'f') {
    auto d = as_number(n, "");
    return d && *d != *d;
  }
  return false;
}

/// A 1-d float64 attribute of exactly n values.
inline result<std::vector<double>> vec_attr(const node& obj, std::string_view key, std::size_t n) {
  auto t = attr_tensor<double>(obj, key, 1);
  if (!t) return std::move(t).err();
  if (t->size() != n)
    return state_error(short_name(obj.type_name()), std::string(key) + " has " + std::to_string(t->size()) +
                                                        " values for " + std::to_string(n) + " features");
  return std::vector<double>(t->p, t->p + n);
}

/// Common start of every builder: n_features_in_ (required here) and feature names.
inline result<std::size_t> read_info(const node& obj, estimator& e) {
  VITRIFY_TRY(read_feature_info(obj, e));
  if (e.n_features < 0) return state_error(short_name(obj.type_name()), "missing n_features_in_");
  return static_cast<std::size_t>(e.n_features);
}

inline error bad_input(std::string_view who, std::string_view what) {
  return fail(errc::invalid_argument, std::string(who) + ": " + std::string(what));
}

/// scikit-learn's check_array(ensure_all_finite=...): infinity is always refused, NaN unless
/// allowed. Same wording as scikit-learn.
inline result<void> check_finite(const matrix_view& v, std::string_view who, bool allow_nan, std::int64_t cols = -1) {
  // Inside compositions the input width is checked here too (the steps read n_features values).
  if (cols >= 0 && v.cols() != static_cast<std::size_t>(cols))
    return bad_input(who, "X has " + std::to_string(v.cols()) + " features, but the model expects " + std::to_string(cols));
  for (std::size_t r = 0; r < v.rows(); ++r)
    for (std::size_t c = 0; c < v.cols(); ++c) {
      double x = v.at(r, c);
      if (x - x != 0) {  // NaN or infinity
        if (x != x) {
          if (!allow_nan) return bad_input(who, "Input X contains NaN.");
        } else {
          return bad_input(who, "Input X contains infinity or a value too large.");
        }
      }
    }
  return {};
}

inline result<void> check_finite_row(std::span<const double> row, std::string_view who, bool allow_nan, std::int64_t cols = -1) {
  return check_finite(matrix_view(row.data(), 1, row.size()), who, allow_nan, cols);
}

/// numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src) of n values a[i*stride].
template <class T>
T pairwise_sum(const T* a, std::size_t n, std::size_t stride) {
  if (n < 8) {
    T res = -0.0;
    for (std::size_t i = 0; i < n; ++i) res += a[i * stride];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = a[j * stride];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (std::size_t j = 0; j < 8; ++j) r[j] += a[(i + j) * stride];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i * stride];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2, stride) + pairwise_sum(a + n2 * stride, n - n2, stride);
}

/// Output rows x cols; `f(in_row, out_row)` per row, float64 or float32 input.
template <class F64, class F32>
dense map_rows(const matrix_view& v, std::size_t out_cols, F64 f64, F32 f32) {
  dense out(v.rows(), out_cols);
  if (v.rows() * v.cols() == 0) return out;
  for (std::size_t r = 0; r < v.rows(); ++r) {
    if (v.is_float32()) f32(v.f32() + r * v.row_stride(), out.row(r));
    else f64(v.f64() + r * v.row_stride(), out.row(r));
  }
  return out;
}


inline result<bool> opt_bool(const node& obj, std::string_view key, bool dflt) {
  if (!opt_attr(obj, key)) return dflt;
  return get_bool(obj, key);
}

// ---- the builders (one family per file) ----
result<estimator_ptr> build_standard_scaler(const node& obj, build_context&);
result<estimator_ptr> build_minmax_scaler(const node& obj, build_context&);
result<estimator_ptr> build_maxabs_scaler(const node& obj, build_context&);
result<estimator_ptr> build_robust_scaler(const node& obj, build_context&);
result<estimator_ptr> build_normalizer(const node& obj, build_context&);
result<estimator_ptr> build_binarizer(const node& obj, build_context&);
result<estimator_ptr> build_function_transformer(const node& obj, build_context&);
result<estimator_ptr> build_polynomial(const node& obj, build_context&);
result<estimator_ptr> build_one_hot(const node& obj, build_context&);
result<estimator_ptr> build_ordinal(const node& obj, build_context&);
result<estimator_ptr> build_label_encoder(const node& obj, build_context&);
result<estimator_ptr> build_imputer(const node& obj, build_context&);

}  // namespace vitrify::runtime::prep
