// src/runtime/preprocessing.cpp - scalers, Normalizer, Binarizer, SimpleImputer, OneHotEncoder,
// OrdinalEncoder, LabelEncoder, PolynomialFeatures and the identity FunctionTransformer.
//
// The arithmetic is scikit-learn 1.9's, operation by operation, so that float64 results are
// bit-exact: StandardScaler subtracts then divides, MinMaxScaler multiplies then adds, monomials
// of PolynomialFeatures multiply in sklearn's order, Normalizer(l1) sums like numpy's pairwise
// sum. float32 input is computed as scikit-learn computes it (float32 constants and float32
// operations where sklearn casts its fitted arrays to X's dtype, float64 operations rounded to
// float32 after each step where it applies float64 arrays in place) and the float32 result is
// returned widened to float64. Only Normalizer(l2) differs by rounding (numpy's einsum sums the
// squares with SIMD partial sums).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "runtime/estimator.hpp"
#include "runtime/steps.hpp"

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

namespace {

// ---- small helpers ----

bool is_nan_node(const node& n) {
  if (n.k == node::kind::floating) return n.d != n.d;
  if (n.k == node::kind::scalar && n.arr && n.arr->kind() == 'f') {
    auto d = as_number(n, "");
    return d && *d != *d;
  }
  return false;
}

/// A 1-d float64 attribute of exactly n values.
result<std::vector<double>> vec_attr(const node& obj, std::string_view key, std::size_t n) {
  auto t = attr_tensor<double>(obj, key, 1);
  if (!t) return std::move(t).err();
  if (t->size() != n)
    return state_error(short_name(obj.type_name()), std::string(key) + " has " + std::to_string(t->size()) +
                                                        " values for " + std::to_string(n) + " features");
  return std::vector<double>(t->p, t->p + n);
}

/// Common start of every builder: n_features_in_ (required here) and feature names.
result<std::size_t> read_info(const node& obj, estimator& e) {
  VITRIFY_TRY(read_feature_info(obj, e));
  if (e.n_features < 0) return state_error(short_name(obj.type_name()), "missing n_features_in_");
  return static_cast<std::size_t>(e.n_features);
}

error bad_input(std::string_view who, std::string_view what) {
  return fail(errc::invalid_argument, std::string(who) + ": " + std::string(what));
}

/// scikit-learn's check_array(ensure_all_finite=...): infinity is always refused, NaN unless
/// allowed. Same wording as scikit-learn.
result<void> check_finite(const matrix_view& v, std::string_view who, bool allow_nan, std::int64_t cols = -1) {
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

result<void> check_finite_row(std::span<const double> row, std::string_view who, bool allow_nan, std::int64_t cols = -1) {
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

// ==========================================================================================
// Column-wise affine scalers: StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler.
// ==========================================================================================

struct col_op {
  enum kind : std::uint8_t { sub, div, mul, add } k;
  std::vector<double> v;
  std::vector<float> vf;  // v rounded to float32 (StandardScaler casts its arrays to X's dtype)
};

class scaler final : public step_estimator {
 public:
  std::vector<col_op> ops;
  bool f32_constants = false;  // float32 X: constants cast to float32, float32 arithmetic
  bool clip = false;
  double lo = 0, hi = 0;

  std::size_t width(method) const override { return static_cast<std::size_t>(n_features); }

  template <class T>
  static T apply(col_op::kind k, T x, T c) {
    switch (k) {
      case col_op::sub: return x - c;
      case col_op::div: return x / c;
      case col_op::mul: return x * c;
      case col_op::add: return x + c;
    }
    return x;
  }

  static double clip_to(double y, double l, double h) {
    // np.clip = minimum(maximum(x, lo), hi), NaN propagating.
    if (y != y) return y;
    if (y < l) y = l;
    if (y > h) y = h;
    return y;
  }

  void row64(const double* in, double* out) const {
    const std::size_t n = static_cast<std::size_t>(n_features);
    for (std::size_t c = 0; c < n; ++c) out[c] = in[c];
    for (const auto& op : ops) {
      const double* v = op.v.data();
      switch (op.k) {
        case col_op::sub: for (std::size_t c = 0; c < n; ++c) out[c] = out[c] - v[c]; break;
        case col_op::div: for (std::size_t c = 0; c < n; ++c) out[c] = out[c] / v[c]; break;
        case col_op::mul: for (std::size_t c = 0; c < n; ++c) out[c] = out[c] * v[c]; break;
        case col_op::add: for (std::size_t c = 0; c < n; ++c) out[c] = out[c] + v[c]; break;
      }
    }
    if (clip)
      for (std::size_t c = 0; c < n; ++c) out[c] = clip_to(out[c], lo, hi);
  }

  void row32(const float* in, double* out) const {
    const std::size_t n = static_cast<std::size_t>(n_features);
    for (std::size_t c = 0; c < n; ++c) {
      float y = in[c];
      for (const auto& op : ops) {
        if (f32_constants) y = apply<float>(op.k, y, op.vf[c]);
        else y = to_f32(apply<double>(op.k, static_cast<double>(y), op.v[c]));
      }
      if (clip) y = static_cast<float>(clip_to(y, to_f32(lo), to_f32(hi)));
      out[c] = y;
    }
  }

  result<dense> run(method, const input& x) const override {
    dense st;
    auto v = x.numeric(st, short_name(type));
    if (!v) return std::move(v).err();
    VITRIFY_TRY(check_finite(*v, short_name(type), true, n_features));
    return map_rows(*v, v->cols(), [&](const double* i, double* o) { row64(i, o); },
                    [&](const float* i, double* o) { row32(i, o); });
  }

  result<void> run_row(method, std::span<const double> row, std::span<double> out) const override {
    VITRIFY_TRY(check_finite_row(row, short_name(type), true, n_features));
    row64(row.data(), out.data());
    return {};
  }
};

/// A per-feature array attribute that may be None when `needed` is false.
result<void> add_op(scaler& s, const node& obj, std::string_view key, col_op::kind k, std::size_t n) {
  auto v = vec_attr(obj, key, n);
  if (!v) return std::move(v).err();
  col_op op{k, std::move(v).value(), {}};
  op.vf.reserve(n);
  for (double d : op.v) op.vf.push_back(to_f32(d));
  s.ops.push_back(std::move(op));
  return {};
}

std::shared_ptr<scaler> new_scaler(const node& obj) {
  auto s = std::make_shared<scaler>();
  s->methods = method_bit(method::transform);
  s->keeps_float32 = true;
  s->type = obj.obj->type;
  return s;
}

result<estimator_ptr> build_standard_scaler(const node& obj, build_context&) {
  auto s = new_scaler(obj);
  auto n = read_info(obj, *s);
  if (!n) return std::move(n).err();
  auto wm = get_bool(obj, "with_mean");
  if (!wm) return std::move(wm).err();
  auto ws = get_bool(obj, "with_std");
  if (!ws) return std::move(ws).err();
  if (*wm) VITRIFY_TRY(add_op(*s, obj, "mean_", col_op::sub, *n));
  if (*ws) VITRIFY_TRY(add_op(*s, obj, "scale_", col_op::div, *n));
  s->f32_constants = true;  // sklearn >= 1.8: X -= mean_.astype(X.dtype); X /= scale_.astype(X.dtype)
  return estimator_ptr(s);
}

result<std::pair<double, double>> number_pair(const node& obj, std::string_view key) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  const node& t = **a;
  std::string who = std::string(short_name(obj.type_name())) + "." + std::string(key);
  if ((t.k != node::kind::tuple && t.k != node::kind::list) || t.items.size() != 2)
    return state_error(who, "expected a pair of numbers");
  auto x = as_number(*t.items[0], who);
  if (!x) return std::move(x).err();
  auto y = as_number(*t.items[1], who);
  if (!y) return std::move(y).err();
  return std::pair<double, double>(*x, *y);
}

result<bool> opt_bool(const node& obj, std::string_view key, bool dflt) {
  if (!opt_attr(obj, key)) return dflt;
  return get_bool(obj, key);
}

result<estimator_ptr> build_minmax_scaler(const node& obj, build_context&) {
  auto s = new_scaler(obj);
  auto n = read_info(obj, *s);
  if (!n) return std::move(n).err();
  VITRIFY_TRY(add_op(*s, obj, "scale_", col_op::mul, *n));
  VITRIFY_TRY(add_op(*s, obj, "min_", col_op::add, *n));
  auto clip = opt_bool(obj, "clip", false);
  if (!clip) return std::move(clip).err();
  if (*clip) {
    auto fr = number_pair(obj, "feature_range");
    if (!fr) return std::move(fr).err();
    s->clip = true;
    s->lo = fr->first;
    s->hi = fr->second;
  }
  return estimator_ptr(s);
}

result<estimator_ptr> build_maxabs_scaler(const node& obj, build_context&) {
  auto s = new_scaler(obj);
  auto n = read_info(obj, *s);
  if (!n) return std::move(n).err();
  VITRIFY_TRY(add_op(*s, obj, "scale_", col_op::div, *n));
  auto clip = opt_bool(obj, "clip", false);
  if (!clip) return std::move(clip).err();
  if (*clip) {
    s->clip = true;
    s->lo = -1.0;
    s->hi = 1.0;
  }
  return estimator_ptr(s);
}

result<estimator_ptr> build_robust_scaler(const node& obj, build_context&) {
  auto s = new_scaler(obj);
  auto n = read_info(obj, *s);
  if (!n) return std::move(n).err();
  auto wc = get_bool(obj, "with_centering");
  if (!wc) return std::move(wc).err();
  auto ws = get_bool(obj, "with_scaling");
  if (!ws) return std::move(ws).err();
  if (*wc) VITRIFY_TRY(add_op(*s, obj, "center_", col_op::sub, *n));
  if (*ws) VITRIFY_TRY(add_op(*s, obj, "scale_", col_op::div, *n));
  return estimator_ptr(s);
}

// ==========================================================================================
// Normalizer, Binarizer, identity FunctionTransformer
// ==========================================================================================

class normalizer final : public step_estimator {
 public:
  enum class norm_kind { l1, l2, max } norm = norm_kind::l2;

  std::size_t width(method) const override { return static_cast<std::size_t>(n_features); }

  template <class T>
  void row(const T* in, std::size_t n, double* out) const {
    T s = 0;
    switch (norm) {
      case norm_kind::l1: {
        // np.sum(np.abs(X), axis=1): pairwise sum of the row's absolute values.
        T buf[256];
        if (n <= 256) {
          for (std::size_t c = 0; c < n; ++c) buf[c] = std::abs(in[c]);
          s = pairwise_sum(buf, n, 1);
        } else {
          std::vector<T> tmp(n);
          for (std::size_t c = 0; c < n; ++c) tmp[c] = std::abs(in[c]);
          s = pairwise_sum(tmp.data(), n, 1);
        }
        break;
      }
      case norm_kind::l2: {
        // sqrt(einsum('ij,ij->i')): numpy sums with SIMD partial sums; this is a plain
        // left-to-right sum (differs by rounding only).
        T acc = 0;
        for (std::size_t c = 0; c < n; ++c) acc += in[c] * in[c];
        s = std::sqrt(acc);
        break;
      }
      case norm_kind::max: {
        T m = n ? std::abs(in[0]) : T(0);
        for (std::size_t c = 1; c < n; ++c) m = std::max(m, static_cast<T>(std::abs(in[c])));
        s = m;
        break;
      }
    }
    // _handle_zeros_in_scale: norms below 10 * eps leave the row unscaled.
    if (s < T(10) * std::numeric_limits<T>::epsilon()) s = 1;
    for (std::size_t c = 0; c < n; ++c) out[c] = static_cast<T>(in[c] / s);
  }

  result<dense> run(method, const input& x) const override {
    dense st;
    auto v = x.numeric(st, "Normalizer");
    if (!v) return std::move(v).err();
    VITRIFY_TRY(check_finite(*v, "Normalizer", false, n_features));
    const std::size_t n = v->cols();
    return map_rows(*v, n, [&](const double* i, double* o) { row(i, n, o); },
                    [&](const float* i, double* o) { row(i, n, o); });
  }

  result<void> run_row(method, std::span<const double> r, std::span<double> out) const override {
    VITRIFY_TRY(check_finite_row(r, "Normalizer", false, n_features));
    row(r.data(), r.size(), out.data());
    return {};
  }
};

result<estimator_ptr> build_normalizer(const node& obj, build_context&) {
  auto e = std::make_shared<normalizer>();
  e->methods = method_bit(method::transform);
  e->keeps_float32 = true;
  auto n = read_info(obj, *e);
  if (!n) return std::move(n).err();
  auto norm = get_str(obj, "norm");
  if (!norm) return std::move(norm).err();
  if (*norm == "l1") e->norm = normalizer::norm_kind::l1;
  else if (*norm == "l2") e->norm = normalizer::norm_kind::l2;
  else if (*norm == "max") e->norm = normalizer::norm_kind::max;
  else return unsupported_error("Normalizer", "norm '" + *norm + "'");
  return estimator_ptr(e);
}

class binarizer final : public step_estimator {
 public:
  double threshold = 0;
  bool weak_threshold = true;  // a Python number: compared in float32 with float32 X (NEP 50)

  std::size_t width(method) const override { return static_cast<std::size_t>(n_features); }

  result<dense> run(method, const input& x) const override {
    dense st;
    auto v = x.numeric(st, "Binarizer");
    if (!v) return std::move(v).err();
    VITRIFY_TRY(check_finite(*v, "Binarizer", false, n_features));
    const std::size_t n = v->cols();
    const float tf = to_f32(threshold);
    return map_rows(
        *v, n,
        [&](const double* i, double* o) {
          for (std::size_t c = 0; c < n; ++c) o[c] = i[c] > threshold ? 1.0 : 0.0;
        },
        [&](const float* i, double* o) {
          for (std::size_t c = 0; c < n; ++c)
            o[c] = (weak_threshold ? i[c] > tf : static_cast<double>(i[c]) > threshold) ? 1.0 : 0.0;
        });
  }

  result<void> run_row(method, std::span<const double> r, std::span<double> out) const override {
    VITRIFY_TRY(check_finite_row(r, "Binarizer", false, n_features));
    for (std::size_t c = 0; c < r.size(); ++c) out[c] = r[c] > threshold ? 1.0 : 0.0;
    return {};
  }
};

result<estimator_ptr> build_binarizer(const node& obj, build_context&) {
  auto e = std::make_shared<binarizer>();
  e->methods = method_bit(method::transform);
  e->keeps_float32 = true;
  auto n = read_info(obj, *e);
  if (!n) return std::move(n).err();
  auto t = need_attr(obj, "threshold");
  if (!t) return std::move(t).err();
  auto d = as_number(**t, "Binarizer.threshold");
  if (!d) return std::move(d).err();
  e->threshold = *d;
  e->weak_threshold = (*t)->k != node::kind::scalar;
  return estimator_ptr(e);
}

/// FunctionTransformer(func=None): the identity ('passthrough' in ColumnTransformer and
/// FeatureUnion is stored as one since scikit-learn 1.4).
class identity final : public step_estimator {
 public:
  bool validate = false;

  std::size_t width(method) const override { return n_features >= 0 ? static_cast<std::size_t>(n_features) : 0; }

  result<dense> run(method, const input& x) const override {
    if (x.is_table()) {
      auto d = table_to_dense(x.tbl(), "FunctionTransformer");
      if (!d) return std::move(d).err();
      if (validate) VITRIFY_TRY(check_finite(d->view(), "FunctionTransformer", false));
      return d;
    }
    const matrix_view& v = x.matrix();
    if (validate) VITRIFY_TRY(check_finite(v, "FunctionTransformer", false));
    dense out(v.rows(), v.cols());
    for (std::size_t r = 0; r < v.rows(); ++r)
      for (std::size_t c = 0; c < v.cols(); ++c) out(r, c) = v.at(r, c);
    return out;
  }

  result<table> run_table(const table& t) const override {
    if (validate) {
      auto d = table_to_dense(t, "FunctionTransformer");
      if (!d) return std::move(d).err();
      VITRIFY_TRY(check_finite(d->view(), "FunctionTransformer", false));
    }
    return t;
  }

  result<void> run_row(method, std::span<const double> r, std::span<double> out) const override {
    if (validate) VITRIFY_TRY(check_finite_row(r, "FunctionTransformer", false));
    if (r.size() != out.size()) return bad_input("FunctionTransformer", "output buffer has the wrong size");
    std::copy(r.begin(), r.end(), out.begin());
    return {};
  }
};

result<estimator_ptr> build_function_transformer(const node& obj, build_context&) {
  auto e = std::make_shared<identity>();
  e->methods = method_bit(method::transform);
  e->keeps_float32 = true;
  e->maps_tables = true;
  VITRIFY_TRY(read_feature_info(obj, *e));
  // A fitted FunctionTransformer records func even when None; a state without it is no
  // FunctionTransformer scikit-learn could run.
  auto func = need_attr(obj, "func");
  if (!func) return std::move(func).err();
  if ((*func)->k != node::kind::none)
    return unsupported_error("FunctionTransformer", "only func=None (the identity) is supported");
  if (opt_attr(obj, "validate")) {
    auto v = get_bool(obj, "validate");
    if (!v) return std::move(v).err();
    e->validate = *v;
  }
  return estimator_ptr(e);
}

// ==========================================================================================
// Categories (encoders, LabelEncoder): numeric (sorted, NaN last) or text (str, then None / NaN)
// ==========================================================================================

struct categories {
  bool text = false;
  std::vector<double> nums;                          // numeric: sorted; a NaN may end them
  std::vector<std::string> strs;                     // text: the str categories (any order)
  std::unordered_map<std::string, std::int64_t> index;
  std::int64_t none_idx = -1, nan_idx = -1;          // positions of None / NaN, or -1
  bool integer_kind = false;                         // numeric categories of an integer dtype
  std::size_t size() const { return text ? strs.size() + (none_idx >= 0) + (nan_idx >= 0) : nums.size(); }
  /// A missing text cell (None or NaN: the table does not tell them apart) matches NaN, else None.
  std::int64_t missing() const { return nan_idx >= 0 ? nan_idx : none_idx; }

  std::int64_t find_number(double v) const {
    if (text) return v != v ? missing() : -1;
    if (v != v) return (!nums.empty() && nums.back() != nums.back()) ? static_cast<std::int64_t>(nums.size() - 1) : -1;
    // np.searchsorted on the sorted categories after a membership test.
    std::size_t end = nums.size();
    if (end && nums.back() != nums.back()) --end;
    auto it = std::lower_bound(nums.begin(), nums.begin() + static_cast<std::ptrdiff_t>(end), v);
    if (it != nums.begin() + static_cast<std::ptrdiff_t>(end) && *it == v) return it - nums.begin();
    return -1;
  }
};

result<categories> read_categories(const node& n, std::string_view who) {
  categories c;
  if (n.k != node::kind::array || !n.arr) return state_error(who, "categories must be arrays");
  const auto& a = *n.arr;
  if (a.shape.size() != 1) return state_error(who, "categories must be 1-d");
  const char k = a.kind();
  if (k == 'U' || k == 'O') {
    c.text = true;
    if (a.items.empty()) {
      if (a.strings.size() != a.count()) return state_error(who, "categories hold values that are not str");
      c.strs = a.strings;
    } else {
      // An object array that is not all str: str, then None and/or NaN at the end.
      for (const node* it : a.items) {
        if (c.none_idx >= 0 || c.nan_idx >= 0) {
          if (!(it->k == node::kind::none && c.none_idx < 0) && !(is_nan_node(*it) && c.nan_idx < 0))
            return state_error(who, "missing-value categories must come last");
        }
        const std::int64_t pos = static_cast<std::int64_t>(c.strs.size()) + (c.none_idx >= 0) + (c.nan_idx >= 0);
        if (it->k == node::kind::string) c.strs.push_back(it->text);
        else if (it->k == node::kind::none) c.none_idx = pos;
        else if (is_nan_node(*it)) c.nan_idx = pos;
        else return unsupported_error(who, "categories mixing text and numbers (only str, None and NaN are supported)");
      }
    }
    for (std::size_t i = 0; i < c.strs.size(); ++i)
      if (!c.index.emplace(c.strs[i], static_cast<std::int64_t>(i)).second)
        return state_error(who, "duplicate category '" + c.strs[i] + "'");
    return c;
  }
  if (k == 'S') return unsupported_error(who, "bytes categories");
  auto t = as_tensor<double>(n, who, 1);
  if (!t) return std::move(t).err();
  c.nums.assign(t->p, t->p + t->size());
  c.integer_kind = k == 'i' || k == 'u' || k == 'b';
  if (c.integer_kind) {
    // int64 categories beyond 2^53 would not survive the comparison with float64 input.
    auto iv = as_tensor<std::int64_t>(n, who, 1);
    if (!iv) return std::move(iv).err();
    for (std::size_t i = 0; i < iv->size(); ++i)
      if ((*iv)[i] > (1ll << 53) || (*iv)[i] < -(1ll << 53)) return unsupported_error(who, "integer categories beyond 2^53");
  }
  // searchsorted needs them sorted, strictly (unique), NaN only last.
  for (std::size_t i = 0; i < c.nums.size(); ++i) {
    const double v = c.nums[i];
    if (v != v && i + 1 != c.nums.size()) return state_error(who, "NaN must be the last category");
    if (i > 0 && v == v && !(c.nums[i - 1] < v)) return state_error(who, "numeric categories must be sorted and unique");
  }
  return c;
}

/// One cell of the input, as the encoders see it.
struct cell_ref {
  bool is_text = false, missing = false;
  double num = 0;
  const std::string* text = nullptr;
};

cell_ref get_cell(const input& x, std::size_t r, std::size_t c) {
  cell_ref k;
  if (x.is_table()) {
    const auto& col = x.tbl().col(c);
    if (col.is_text) {
      k.is_text = true;
      k.missing = col.missing[r];
      k.text = &col.texts[r];
      return k;
    }
    k.num = col.numbers[r];
    return k;
  }
  k.num = x.matrix().at(r, c);
  return k;
}

/// Index of the cell among the categories, -1 when unknown; an error for input that can never
/// match (text for numeric categories, infinity).
result<std::int64_t> lookup(const categories& cats, const cell_ref& k, std::string_view who, std::size_t col) {
  if (k.is_text) {
    if (k.missing) return cats.text ? cats.missing() : cats.find_number(std::nan(""));
    if (!cats.text)
      return bad_input(who, "column " + std::to_string(col) + " holds text, but the encoder was fitted on numbers");
    auto it = cats.index.find(*k.text);
    return it == cats.index.end() ? std::int64_t(-1) : it->second;
  }
  if (std::isinf(k.num)) return bad_input(who, "Input X contains infinity or a value too large.");
  return cats.find_number(k.num);
}

std::string cell_text(const cell_ref& k) {
  if (k.is_text) return k.missing ? "nan" : "'" + *k.text + "'";
  return py_float_repr(k.num);
}

/// A list of per-feature values that are None or an integer (drop_idx_, infrequent indices...).
result<std::vector<std::int64_t>> optional_ints(const node& n, std::string_view who, std::size_t expect) {
  std::vector<std::int64_t> out;
  if (n.k == node::kind::list || n.k == node::kind::tuple) {
    for (const node* it : n.items) {
      if (it->k == node::kind::none) { out.push_back(-1); continue; }
      auto v = as_integer(*it, who);
      if (!v) return std::move(v).err();
      if (*v < 0) return state_error(who, "negative index");
      out.push_back(*v);
    }
  } else if (n.k == node::kind::array && n.arr && n.arr->kind() == 'O') {
    if (n.arr->shape.size() != 1) return state_error(who, "expected a 1-d array");
    for (const node* it : n.arr->items) {
      if (it->k == node::kind::none) { out.push_back(-1); continue; }
      auto v = as_integer(*it, who);
      if (!v) return std::move(v).err();
      if (*v < 0) return state_error(who, "negative index");
      out.push_back(*v);
    }
    if (n.arr->items.empty() && n.arr->count() != 0) return state_error(who, "expected integers");
  } else {
    auto t = as_tensor<std::int64_t>(n, who, 1);
    if (!t) return std::move(t).err();
    for (std::size_t i = 0; i < t->size(); ++i) {
      if ((*t)[i] < 0) return state_error(who, "negative index");
      out.push_back((*t)[i]);
    }
  }
  if (out.size() != expect)
    return state_error(who, "has " + std::to_string(out.size()) + " entries for " + std::to_string(expect) + " features");
  return out;
}

/// Per-feature infrequent-category grouping (scikit-learn >= 1.1).
struct infrequent {
  bool enabled = false;
  std::vector<std::int64_t> first;                   // per feature: infrequent_idx[0], or -1
  std::vector<std::vector<std::int64_t>> mapping;    // per feature: default -> grouped code (empty: none)
};

result<infrequent> read_infrequent(const node& obj, const std::vector<categories>& cats,
                                   const std::vector<std::int64_t>& missing_idx, std::string_view who) {
  infrequent inf;
  const std::size_t nf = cats.size();
  inf.first.assign(nf, -1);
  inf.mapping.assign(nf, {});
  if (!opt_attr(obj, "_infrequent_enabled")) return inf;
  auto en = get_bool(obj, "_infrequent_enabled");
  if (!en) return std::move(en).err();
  if (!*en) return inf;
  inf.enabled = true;
  auto ii = need_attr(obj, "_infrequent_indices");
  if (!ii) return std::move(ii).err();
  auto mp = need_attr(obj, "_default_to_infrequent_mappings");
  if (!mp) return std::move(mp).err();
  const node& il = **ii;
  const node& ml = **mp;
  if ((il.k != node::kind::list && il.k != node::kind::tuple) || il.items.size() != nf ||
      (ml.k != node::kind::list && ml.k != node::kind::tuple) || ml.items.size() != nf)
    return state_error(who, "infrequent-category state does not match the features");
  for (std::size_t f = 0; f < nf; ++f) {
    const node& a = *il.items[f];
    const node& m = *ml.items[f];
    if ((a.k == node::kind::none) != (m.k == node::kind::none))
      return state_error(who, "_infrequent_indices and _default_to_infrequent_mappings disagree");
    if (a.k == node::kind::none) continue;
    // The missing category (OrdinalEncoder) is left out of the grouping.
    const std::size_t n_cats = cats[f].size() - (missing_idx[f] >= 0 ? 1 : 0);
    auto idx = as_tensor<std::int64_t>(a, std::string(who) + "._infrequent_indices", 1);
    if (!idx) return std::move(idx).err();
    auto map = as_tensor<std::int64_t>(m, std::string(who) + "._default_to_infrequent_mappings", 1);
    if (!map) return std::move(map).err();
    if (idx->size() == 0 || map->size() != n_cats) return state_error(who, "infrequent mapping has the wrong size");
    if ((*idx)[0] < 0 || static_cast<std::size_t>((*idx)[0]) >= n_cats) return state_error(who, "infrequent index out of range");
    inf.first[f] = (*idx)[0];
    inf.mapping[f].assign(map->p, map->p + map->size());
    for (auto v : inf.mapping[f])
      if (v < 0 || static_cast<std::size_t>(v) >= n_cats) return state_error(who, "infrequent mapping out of range");
  }
  return inf;
}

result<std::vector<categories>> read_category_list(const node& obj, std::size_t nf, std::string_view who) {
  auto cl = need_attr(obj, "categories_");
  if (!cl) return std::move(cl).err();
  const node& l = **cl;
  if ((l.k != node::kind::list && l.k != node::kind::tuple) || l.items.size() != nf)
    return state_error(who, "categories_ must hold one array per feature");
  std::vector<categories> out;
  for (std::size_t f = 0; f < nf; ++f) {
    auto c = read_categories(*l.items[f], std::string(who) + ".categories_");
    if (!c) return std::move(c).err();
    if (c->size() == 0) return state_error(who, "a feature has no categories");
    out.push_back(std::move(c).value());
  }
  return out;
}

/// Output dtype of the encoders: any numeric numpy type; float32 / float16 round the codes.
result<int> read_out_dtype(const node& obj, std::string_view who) {
  const node* d = opt_attr(obj, "dtype");
  if (!d) return 64;
  std::string name = d->k == node::kind::global ? d->text : d->k == node::kind::dtype ? d->text : std::string();
  if (name == "numpy.float32" || name == "<f4") return 32;
  if (name == "numpy.float16" || name == "<f2" || name == "numpy.longdouble" || name == "numpy.complex128")
    return unsupported_error(who, "output dtype " + name);
  return 64;
}

// ==========================================================================================
// OneHotEncoder
// ==========================================================================================

class one_hot final : public step_estimator {
 public:
  enum class unknown_mode { error, ignore, infrequent } unknown = unknown_mode::error;
  std::vector<categories> cats;
  infrequent inf;
  std::vector<std::int64_t> drop;     // per feature, after grouping; -1 = none
  std::vector<std::size_t> offset;    // first output column of each feature
  std::size_t out_cols = 0;

  std::size_t width(method) const override { return out_cols; }

  result<dense> run(method, const input& x) const override {
    const std::size_t nf = cats.size();
    if (x.cols() != nf) return bad_input("OneHotEncoder", "wrong number of columns");
    dense out(x.rows(), out_cols, 0.0);
    for (std::size_t f = 0; f < nf; ++f) {
      for (std::size_t r = 0; r < x.rows(); ++r) {
        const cell_ref k = get_cell(x, r, f);
        auto code = lookup(cats[f], k, "OneHotEncoder", f);
        if (!code) return std::move(code).err();
        std::int64_t c = *code;
        bool keep = c >= 0;
        if (!keep) {
          if (unknown == unknown_mode::error)
            return bad_input("OneHotEncoder", "Found unknown categories [" + cell_text(k) + "] in column " +
                                                  std::to_string(f) + " during transform");
          c = 0;
        }
        if (inf.enabled && inf.first[f] >= 0) {
          if (!keep) {
            c = inf.first[f];
            if (unknown == unknown_mode::infrequent) keep = true;
          }
          c = inf.mapping[f][static_cast<std::size_t>(c)];
        }
        if (drop[f] >= 0) {
          if (c == drop[f]) keep = false;
          else if (c > drop[f]) --c;
        }
        if (keep) out(r, offset[f] + static_cast<std::size_t>(c)) = 1.0;
      }
    }
    return out;
  }
};

result<estimator_ptr> build_one_hot(const node& obj, build_context&) {
  constexpr std::string_view who = "OneHotEncoder";
  auto e = std::make_shared<one_hot>();
  e->methods = method_bit(method::transform);
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  // sparse_output (`sparse` before 1.2) only changes the container scikit-learn returns: the
  // runtime computes the same values densely (docs/RUNTIME.md, "Sparse outputs").
  auto hu = get_str(obj, "handle_unknown");
  if (!hu) return std::move(hu).err();
  if (*hu == "error") e->unknown = one_hot::unknown_mode::error;
  else if (*hu == "ignore") e->unknown = one_hot::unknown_mode::ignore;
  else if (*hu == "infrequent_if_exist" || *hu == "warn") e->unknown = one_hot::unknown_mode::infrequent;
  else return unsupported_error(who, "handle_unknown='" + *hu + "'");
  auto od = read_out_dtype(obj, who);
  if (!od) return std::move(od).err();
  auto cats = read_category_list(obj, *nf, who);
  if (!cats) return std::move(cats).err();
  e->cats = std::move(cats).value();
  for (const auto& c : e->cats) e->needs_table = e->needs_table || c.text;
  auto inf = read_infrequent(obj, e->cats, std::vector<std::int64_t>(*nf, -1), who);
  if (!inf) return std::move(inf).err();
  e->inf = std::move(inf).value();
  // Grouped cardinality of each feature.
  std::vector<std::size_t> grouped(*nf);
  for (std::size_t f = 0; f < *nf; ++f) {
    grouped[f] = e->cats[f].size();
    if (e->inf.enabled && e->inf.first[f] >= 0) {
      std::int64_t mx = 0;
      for (auto v : e->inf.mapping[f]) mx = std::max(mx, v);
      grouped[f] = static_cast<std::size_t>(mx) + 1;
    }
  }
  e->drop.assign(*nf, -1);
  // _drop_idx_after_grouping (1.2.2+) indexes the grouped categories; older files only have
  // drop_idx_ (the same thing when nothing is grouped).
  const node* dn = obj.attr("_drop_idx_after_grouping") ? opt_attr(obj, "_drop_idx_after_grouping")
                                                         : opt_attr(obj, "drop_idx_");
  if (dn) {
    auto d = optional_ints(*dn, "OneHotEncoder._drop_idx_after_grouping", *nf);
    if (!d) return std::move(d).err();
    e->drop = std::move(d).value();
    for (std::size_t f = 0; f < *nf; ++f)
      if (e->drop[f] >= 0 && static_cast<std::size_t>(e->drop[f]) >= grouped[f])
        return state_error(who, "dropped category index out of range");
  }
  std::vector<std::size_t> outs(*nf);
  for (std::size_t f = 0; f < *nf; ++f) outs[f] = grouped[f] - (e->drop[f] >= 0 ? 1 : 0);
  if (const node* no = opt_attr(obj, "_n_features_outs")) {
    auto v = as_float_list(*no, "OneHotEncoder._n_features_outs");
    if (!v) return std::move(v).err();
    if (v->size() != *nf) return state_error(who, "_n_features_outs does not match the features");
    for (std::size_t f = 0; f < *nf; ++f)
      if ((*v)[f] != static_cast<double>(outs[f])) return state_error(who, "_n_features_outs disagrees with the categories");
  }
  for (std::size_t f = 0; f < *nf; ++f) {
    e->offset.push_back(e->out_cols);
    e->out_cols += outs[f];
  }
  return estimator_ptr(e);
}

// ==========================================================================================
// OrdinalEncoder
// ==========================================================================================

class ordinal final : public step_estimator {
 public:
  std::vector<categories> cats;
  infrequent inf;
  std::vector<std::int64_t> missing_idx;  // per feature: the NaN category's index, or -1
  bool use_encoded = false;
  double unknown_value = 0, encoded_missing = std::nan("");
  bool f32 = false;

  std::size_t width(method) const override { return cats.size(); }

  result<dense> run(method, const input& x) const override {
    const std::size_t nf = cats.size();
    if (x.cols() != nf) return bad_input("OrdinalEncoder", "wrong number of columns");
    dense out(x.rows(), nf);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      for (std::size_t f = 0; f < nf; ++f) {
        const cell_ref k = get_cell(x, r, f);
        auto code = lookup(cats[f], k, "OrdinalEncoder", f);
        if (!code) return std::move(code).err();
        std::int64_t c = *code;
        const bool valid = c >= 0;
        if (!valid) {
          if (!use_encoded)
            return bad_input("OrdinalEncoder", "Found unknown categories [" + cell_text(k) + "] in column " +
                                                   std::to_string(f) + " during transform");
          c = 0;
        }
        if (inf.enabled && inf.first[f] >= 0) {
          if (!valid) c = inf.first[f];
          if (c != missing_idx[f]) c = inf.mapping[f][static_cast<std::size_t>(c)];
        }
        double y = static_cast<double>(c);
        if (missing_idx[f] >= 0 && c == missing_idx[f]) y = encoded_missing;
        if (!valid) y = unknown_value;
        out(r, f) = f32 ? static_cast<double>(to_f32(y)) : y;
      }
    }
    return out;
  }
};

result<estimator_ptr> build_ordinal(const node& obj, build_context&) {
  constexpr std::string_view who = "OrdinalEncoder";
  auto e = std::make_shared<ordinal>();
  e->methods = method_bit(method::transform);
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  auto hu = get_str(obj, "handle_unknown");
  if (!hu) return std::move(hu).err();
  if (*hu == "use_encoded_value") {
    e->use_encoded = true;
    auto uv = get_float(obj, "unknown_value");
    if (!uv) return std::move(uv).err();
    e->unknown_value = *uv;
  } else if (*hu != "error") {
    return unsupported_error(who, "handle_unknown='" + *hu + "'");
  }
  if (const node* em = opt_attr(obj, "encoded_missing_value")) {
    auto v = as_number(*em, "OrdinalEncoder.encoded_missing_value");
    if (!v) return std::move(v).err();
    e->encoded_missing = *v;
  }
  auto od = read_out_dtype(obj, who);
  if (!od) return std::move(od).err();
  e->f32 = *od == 32;
  auto cats = read_category_list(obj, *nf, who);
  if (!cats) return std::move(cats).err();
  e->cats = std::move(cats).value();
  for (const auto& c : e->cats) e->needs_table = e->needs_table || c.text;
  e->missing_idx.assign(*nf, -1);
  if (const node* mi = opt_attr(obj, "_missing_indices")) {
    if (mi->k != node::kind::dict) return state_error(who, "_missing_indices must be a dict");
    for (const auto& [k, v] : mi->entries) {
      auto f = as_integer(*k, "OrdinalEncoder._missing_indices");
      if (!f) return std::move(f).err();
      auto i = as_integer(*v, "OrdinalEncoder._missing_indices");
      if (!i) return std::move(i).err();
      if (*f < 0 || static_cast<std::size_t>(*f) >= *nf) return state_error(who, "_missing_indices names a feature out of range");
      // scikit-learn records the index of the NaN category, always the last one.
      if (*i < 0 || static_cast<std::size_t>(*i) + 1 != e->cats[static_cast<std::size_t>(*f)].size())
        return state_error(who, "_missing_indices must point at the last category");
      e->missing_idx[static_cast<std::size_t>(*f)] = *i;
    }
  }
  auto inf = read_infrequent(obj, e->cats, e->missing_idx, who);
  if (!inf) return std::move(inf).err();
  e->inf = std::move(inf).value();
  return estimator_ptr(e);
}

// ==========================================================================================
// LabelEncoder: transform of one column of labels into their index in classes_.
// ==========================================================================================

class label_encoder final : public step_estimator {
 public:
  categories cats;

  std::size_t width(method) const override { return 1; }

  result<dense> run(method, const input& x) const override {
    if (x.cols() != 1) return bad_input("LabelEncoder", "expects one column of labels");
    dense out(x.rows(), 1);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      cell_ref k = get_cell(x, r, 0);
      if (!k.is_text && !cats.text && cats.integer_kind) {
        // column_or_1d(y, dtype=classes_.dtype): float labels are cast to the integer dtype.
        if (k.num != k.num) return bad_input("LabelEncoder", "Input y contains NaN.");
        if (std::isinf(k.num) || std::abs(k.num) > 9.2e18) return bad_input("LabelEncoder", "Input y contains infinity or a value too large.");
        k.num = std::trunc(k.num);
      }
      auto code = lookup(cats, k, "LabelEncoder", 0);
      if (!code) return std::move(code).err();
      if (*code < 0) return bad_input("LabelEncoder", "y contains previously unseen labels: [" + cell_text(k) + "]");
      out(r, 0) = static_cast<double>(*code);
    }
    return out;
  }
};

result<estimator_ptr> build_label_encoder(const node& obj, build_context&) {
  auto e = std::make_shared<label_encoder>();
  e->methods = method_bit(method::transform);
  e->n_features = 1;
  auto cl = need_attr(obj, "classes_");
  if (!cl) return std::move(cl).err();
  auto c = read_categories(**cl, "LabelEncoder.classes_");
  if (!c) return std::move(c).err();
  e->cats = std::move(c).value();
  e->needs_table = e->cats.text;
  return estimator_ptr(e);
}

// ==========================================================================================
// SimpleImputer (+ its MissingIndicator)
// ==========================================================================================

class imputer final : public step_estimator {
 public:
  // What counts as missing.
  enum class mv_kind { nan, number, text, none } mv = mv_kind::nan;
  double mv_number = 0;
  std::string mv_text;
  bool object_mode = false;              // fitted on object data: table in, table out
  // Per input feature: keep it? and its fill value.
  std::vector<bool> keep;
  std::vector<double> fill;              // numeric fill values (cast to the fill dtype)
  std::vector<float> fill32;             // the same rounded to float32 (float32 X)
  std::vector<bool> fill_is_text;        // object mode: the statistic is a str
  std::vector<std::string> fill_text;
  std::vector<std::size_t> indicator;    // features that get a missing-indicator column
  std::size_t kept = 0;

  std::size_t width(method) const override { return kept + indicator.size(); }

  bool missing_number(double v) const {
    switch (mv) {
      case mv_kind::nan: return v != v;
      case mv_kind::number: return v == mv_number;
      default: return false;
    }
  }

  result<void> check(const matrix_view& v) const {
    // missing_values NaN: check_array(ensure_all_finite="allow-nan"); otherwise all finite.
    return check_finite(v, "SimpleImputer", mv == mv_kind::nan, static_cast<std::int64_t>(keep.size()));
  }

  template <class T>
  void row(const T* in, double* out, const T* fills) const {
    const std::size_t n = keep.size();
    std::size_t o = 0;
    for (std::size_t c = 0; c < n; ++c) {
      if (!keep[c]) continue;
      out[o++] = missing_number(in[c]) ? fills[c] : in[c];
    }
    for (std::size_t f : indicator) out[o++] = missing_number(in[f]) ? 1.0 : 0.0;
  }

  result<dense> run(method m, const input& x) const override {
    if (object_mode) {
      if (!x.is_table()) {
        table t(x.rows());
        for (std::size_t c = 0; c < x.cols(); ++c) {
          std::vector<double> col(x.rows());
          for (std::size_t r = 0; r < x.rows(); ++r) col[r] = x.number(r, c);
          VITRIFY_TRY(t.add_numeric(std::to_string(c), std::move(col)));
        }
        auto o = run_table(t);
        if (!o) return std::move(o).err();
        return table_to_dense(*o, "SimpleImputer");
      }
      auto o = run_table(x.tbl());
      if (!o) return std::move(o).err();
      return table_to_dense(*o, "SimpleImputer");
    }
    (void)m;
    dense st;
    auto v = x.numeric(st, "SimpleImputer");
    if (!v) return std::move(v).err();
    if (v->cols() != keep.size()) return bad_input("SimpleImputer", "wrong number of columns");
    VITRIFY_TRY(check(*v));
    return map_rows(*v, width(method::transform), [&](const double* i, double* o) { row(i, o, fill.data()); },
                    [&](const float* i, double* o) { row(i, o, fill32.data()); });
  }

  result<void> run_row(method m, std::span<const double> r, std::span<double> out) const override {
    if (object_mode) return estimator::run_row(m, r, out);
    VITRIFY_TRY(check(matrix_view(r.data(), 1, r.size())));
    row(r.data(), out.data(), fill.data());
    return {};
  }

  result<table> run_table(const table& t) const override {
    if (t.cols() != keep.size()) return bad_input("SimpleImputer", "wrong number of columns");
    table out(t.rows());
    std::vector<std::vector<bool>> masks(t.cols());
    for (std::size_t c = 0; c < t.cols(); ++c) {
      const auto& col = t.col(c);
      auto& mask = masks[c];
      mask.assign(t.rows(), false);
      if (col.is_text) {
        for (std::size_t r = 0; r < t.rows(); ++r)
          mask[r] = col.missing[r] ? (mv == mv_kind::nan || mv == mv_kind::none) : (mv == mv_kind::text && col.texts[r] == mv_text);
      } else {
        for (std::size_t r = 0; r < t.rows(); ++r) {
          const double v = col.numbers[r];
          if (v != v && mv != mv_kind::nan && mv != mv_kind::none)
            return bad_input("SimpleImputer", "Input contains NaN");
          mask[r] = (v != v) ? (mv == mv_kind::nan || mv == mv_kind::none) : missing_number(v);
        }
      }
      if (!keep[c]) continue;
      bool any = false;
      for (bool b : mask) any = any || b;
      if (col.is_text || (any && fill_is_text[c])) {
        // A text column, or a numeric one whose missing cells receive text.
        std::vector<std::string> texts(t.rows());
        std::vector<bool> miss(t.rows(), false);
        for (std::size_t r = 0; r < t.rows(); ++r) {
          if (mask[r]) {
            if (fill_is_text[c]) texts[r] = fill_text[c];
            else return unsupported_error("SimpleImputer", "filling the text column '" + col.name + "' with a number");
          } else if (col.is_text) {
            texts[r] = col.texts[r];
            miss[r] = col.missing[r];
          } else {
            return unsupported_error("SimpleImputer", "column '" + col.name + "' would mix numbers and text");
          }
        }
        VITRIFY_TRY(out.add_text(col.name, std::move(texts), std::move(miss)));
      } else {
        std::vector<double> nums(col.numbers);
        for (std::size_t r = 0; r < t.rows(); ++r)
          if (mask[r]) nums[r] = fill[c];
        VITRIFY_TRY(out.add_numeric(col.name, std::move(nums)));
      }
    }
    for (std::size_t f : indicator) {
      std::vector<double> ind(t.rows());
      for (std::size_t r = 0; r < t.rows(); ++r) ind[r] = masks[f][r] ? 1.0 : 0.0;
      VITRIFY_TRY(out.add_numeric("missingindicator_" + t.col(f).name, std::move(ind)));
    }
    return out;
  }
};

/// Kind letter of a numpy dtype node ('f', 'i', 'O'...), or 0.
char dtype_kind(const node* d) {
  if (!d || d->k != node::kind::dtype || d->text.empty()) return 0;
  const std::string& s = d->text;
  const char c = (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=') && s.size() > 1 ? s[1] : s[0];
  return c;
}

result<estimator_ptr> build_imputer(const node& obj, build_context&) {
  constexpr std::string_view who = "SimpleImputer";
  auto e = std::make_shared<imputer>();
  e->methods = method_bit(method::transform);
  e->keeps_float32 = true;
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  // missing_values
  auto mvn = need_attr(obj, "missing_values");
  if (!mvn) return std::move(mvn).err();
  const node& mvv = **mvn;
  if (mvv.k == node::kind::none) e->mv = imputer::mv_kind::none;
  else if (mvv.k == node::kind::string) { e->mv = imputer::mv_kind::text; e->mv_text = mvv.text; }
  else if (is_nan_node(mvv)) e->mv = imputer::mv_kind::nan;
  else if (mvv.k == node::kind::object) return unsupported_error(who, "missing_values of type " + mvv.obj->type);
  else {
    auto d = as_number(mvv, "SimpleImputer.missing_values");
    if (!d) return std::move(d).err();
    e->mv = imputer::mv_kind::number;
    e->mv_number = *d;
  }
  const node* fit_dtype = opt_attr(obj, "_fit_dtype");
  const char fk = dtype_kind(fit_dtype);
  if (fit_dtype && fk == 0) return state_error(who, "_fit_dtype must be a numpy dtype");
  e->object_mode = fk == 'O';
  if (fk != 0 && fk != 'O' && fk != 'f' && fk != 'i' && fk != 'u' && fk != 'b')
    return unsupported_error(who, "data of dtype " + fit_dtype->text);
  if (!e->object_mode && (e->mv == imputer::mv_kind::text || e->mv == imputer::mv_kind::none))
    return state_error(who, "a text missing_values on numeric data");
  e->needs_table = e->object_mode;
  e->maps_tables = e->object_mode;
  e->keeps_float32 = !e->object_mode;
  const node* fill_dtype = opt_attr(obj, "_fill_dtype");
  const char lk = fill_dtype ? dtype_kind(fill_dtype) : fk;
  const bool fill_f32 = fill_dtype && (fill_dtype->text == "<f4");
  bool keep_empty = false;
  if (opt_attr(obj, "keep_empty_features")) {
    auto k = get_bool(obj, "keep_empty_features");
    if (!k) return std::move(k).err();
    keep_empty = *k;
  }
  // statistics_
  auto sn = need_attr(obj, "statistics_");
  if (!sn) return std::move(sn).err();
  const node& s = **sn;
  e->keep.assign(*nf, true);
  e->fill.assign(*nf, 0.0);
  e->fill_is_text.assign(*nf, false);
  e->fill_text.assign(*nf, std::string());
  std::vector<bool> stat_nan(*nf, false);
  if (s.k == node::kind::array && s.arr && (s.arr->kind() == 'O' || s.arr->kind() == 'U')) {
    // Object statistics: str (object data) or numbers (strategy='constant' keeps fill_value's
    // type; they are cast to the fill dtype below).
    if (s.arr->shape.size() != 1 || s.arr->count() != *nf) return state_error(who, "statistics_ does not match the features");
    for (std::size_t f = 0; f < *nf; ++f) {
      const node* it = s.arr->items.empty() ? nullptr : s.arr->items[f];
      if (!it || it->k == node::kind::string) {
        if (!e->object_mode) return state_error(who, "text statistics_ for numeric data");
        e->fill_is_text[f] = true;
        e->fill_text[f] = it ? it->text : s.arr->strings[f];
      } else if (it->k == node::kind::none || is_nan_node(*it)) {
        stat_nan[f] = true;
      } else {
        auto d = as_number(*it, "SimpleImputer.statistics_");
        if (!d) return std::move(d).err();
        e->fill[f] = *d;
      }
    }
  } else {
    auto v = vec_attr(obj, "statistics_", *nf);
    if (!v) return std::move(v).err();
    for (std::size_t f = 0; f < *nf; ++f) {
      e->fill[f] = (*v)[f];
      stat_nan[f] = (*v)[f] != (*v)[f];
    }
  }
  for (std::size_t f = 0; f < *nf; ++f) {
    if (e->fill_is_text[f] || stat_nan[f]) continue;
    double d = e->fill[f];
    if (lk == 'i' || lk == 'u' || lk == 'b') {
      // statistics.astype(_fill_dtype): float -> int truncates.
      if (!(std::abs(d) < 9.2e18)) return state_error(who, "statistic out of the integer range");
      d = std::trunc(d);
      if (lk == 'b') d = d != 0 ? 1.0 : 0.0;
    }
    if (fill_f32) d = to_f32(d);
    e->fill[f] = d;
  }
  for (std::size_t f = 0; f < *nf; ++f) {
    // Columns whose statistic is NaN (never observed) are dropped unless keep_empty_features.
    if (stat_nan[f] && !keep_empty) e->keep[f] = false;
    else if (stat_nan[f]) e->fill[f] = std::nan("");
    e->kept += e->keep[f] ? 1 : 0;
  }
  e->fill32.resize(*nf);
  for (std::size_t f = 0; f < *nf; ++f) e->fill32[f] = to_f32(e->fill[f]);
  // add_indicator
  auto ai = opt_bool(obj, "add_indicator", false);
  if (!ai) return std::move(ai).err();
  if (*ai) {
    auto ind = need_attr(obj, "indicator_");
    if (!ind) return std::move(ind).err();
    const node& in = **ind;
    if (in.k != node::kind::object || in.obj->type != "sklearn.impute.MissingIndicator")
      return state_error(who, "indicator_ must be a MissingIndicator");
    if (const node* sp = opt_attr(in, "sparse"); sp && sp->k == node::kind::boolean && sp->b)
      return unsupported_error(who, "a sparse missing indicator");
    auto feats = attr_tensor<std::int64_t>(in, "features_", 1);
    if (!feats) return std::move(feats).err();
    std::size_t nfe = *nf;
    if (opt_attr(in, "_n_features")) {
      auto n = get_int(in, "_n_features");
      if (!n) return std::move(n).err();
      if (*n != static_cast<std::int64_t>(*nf)) return state_error(who, "indicator_ was fitted on another number of features");
      nfe = static_cast<std::size_t>(*n);
    }
    for (std::size_t i = 0; i < feats->size(); ++i) {
      const auto f = (*feats)[i];
      if (f < 0 || static_cast<std::size_t>(f) >= *nf) return state_error(who, "indicator_.features_ out of range");
    }
    if (feats->size() < nfe) {
      for (std::size_t i = 0; i < feats->size(); ++i) e->indicator.push_back(static_cast<std::size_t>((*feats)[i]));
    } else {
      for (std::size_t f = 0; f < nfe; ++f) e->indicator.push_back(f);
    }
  }
  return estimator_ptr(e);
}

// ==========================================================================================
// PolynomialFeatures
// ==========================================================================================

class polynomial final : public step_estimator {
 public:
  // One output column per step: out[k] = out[src[k]] * x[feat[k]] (bias and degree 1 aside),
  // in scikit-learn's column order and multiplication order.
  bool include_bias = true;
  std::size_t n_in = 0, n_full = 0, n_out = 0, skip = 0;  // columns [skip, n_full) after bias
  std::vector<std::uint32_t> src, feat;                   // for columns >= first product column
  std::size_t first_product = 0;
  int max_degree = 0;

  std::size_t width(method) const override { return n_out; }

  template <class T>
  void row(const T* in, double* out, T* full) const {
    std::size_t col = 0;
    if (include_bias) full[col++] = 1;
    if (max_degree >= 1)
      for (std::size_t f = 0; f < n_in; ++f) full[col++] = in[f];
    for (std::size_t k = first_product; k < n_full; ++k) full[k] = full[src[k - first_product]] * in[feat[k - first_product]];
    // Slice away degrees below min_degree (the bias stays first).
    std::size_t o = 0;
    if (skip > 0) {
      if (include_bias) out[o++] = 1;
      for (std::size_t k = n_full - (n_out - o); k < n_full; ++k) out[o++] = full[k];
    } else {
      for (std::size_t k = 0; k < n_full; ++k) out[k] = full[k];
    }
  }

  result<dense> run(method, const input& x) const override {
    dense st;
    auto v = x.numeric(st, "PolynomialFeatures");
    if (!v) return std::move(v).err();
    VITRIFY_TRY(check_finite(*v, "PolynomialFeatures", false, n_features));
    std::vector<double> full(n_full);
    std::vector<float> full32(n_full);
    return map_rows(*v, n_out, [&](const double* i, double* o) { row(i, o, full.data()); },
                    [&](const float* i, double* o) { row(i, o, full32.data()); });
  }

  result<void> run_row(method m, std::span<const double> r, std::span<double> out) const override {
    VITRIFY_TRY(check_finite_row(r, "PolynomialFeatures", false, n_features));
    if (n_full > 512) return estimator::run_row(m, r, out);
    double full[512];
    row(r.data(), out.data(), full);
    return {};
  }
};

result<estimator_ptr> build_polynomial(const node& obj, build_context&) {
  constexpr std::string_view who = "PolynomialFeatures";
  auto e = std::make_shared<polynomial>();
  e->methods = method_bit(method::transform);
  e->keeps_float32 = true;
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  e->n_in = *nf;
  auto mind = get_int(obj, "_min_degree");
  if (!mind) return std::move(mind).err();
  auto maxd = get_int(obj, "_max_degree");
  if (!maxd) return std::move(maxd).err();
  auto io = get_bool(obj, "interaction_only");
  if (!io) return std::move(io).err();
  auto ib = get_bool(obj, "include_bias");
  if (!ib) return std::move(ib).err();
  auto nout = get_int(obj, "n_output_features_");
  if (!nout) return std::move(nout).err();
  if (*mind < 0 || *maxd < *mind || *maxd > 64) return state_error(who, "invalid degree range");
  e->include_bias = *ib;
  e->max_degree = static_cast<int>(*maxd);
  // Replay sklearn's column loop (PolynomialFeatures.transform, dense branch) to record for
  // each product column which earlier column and which feature it multiplies.
  constexpr std::size_t limit = 1u << 24;  // output columns; far beyond any sane model
  std::size_t current = *ib ? 1 : 0;
  if (*maxd >= 1) {
    std::vector<std::size_t> index;
    for (std::size_t f = 0; f < *nf; ++f) index.push_back(current + f);
    current += *nf;
    index.push_back(current);
    e->first_product = current;
    for (std::int64_t d = 2; d <= *maxd; ++d) {
      std::vector<std::size_t> next;
      const std::size_t end = index.back();
      for (std::size_t f = 0; f < *nf; ++f) {
        std::size_t start = index[f];
        next.push_back(current);
        if (*io) start += index[f + 1] - index[f];
        if (end <= start) break;  // next_col <= current_col
        const std::size_t next_col = current + end - start;
        if (next_col > limit) return fail(errc::limit_exceeded, "PolynomialFeatures: too many output features");
        for (std::size_t k = start; k < end; ++k) {
          e->src.push_back(static_cast<std::uint32_t>(k));
          e->feat.push_back(static_cast<std::uint32_t>(f));
        }
        current = next_col;
      }
      next.push_back(current);
      index = std::move(next);
      // sklearn pads `index` when the loop broke early: later features start at `end`.
      while (index.size() < *nf + 1) index.insert(index.end() - 1, current);
    }
  } else {
    e->first_product = current;
  }
  e->n_full = current;
  if (opt_attr(obj, "_n_out_full")) {
    auto nfull = get_int(obj, "_n_out_full");
    if (!nfull) return std::move(nfull).err();
    if (static_cast<std::size_t>(*nfull) != e->n_full) return state_error(who, "_n_out_full disagrees with the degree and features");
  }
  if (*nout <= 0 || static_cast<std::size_t>(*nout) > e->n_full) return state_error(who, "invalid n_output_features_");
  e->n_out = static_cast<std::size_t>(*nout);
  e->skip = *mind > 1 ? e->n_full - e->n_out : 0;
  if (*mind <= 1 && e->n_out != e->n_full) return state_error(who, "n_output_features_ disagrees with the degree");
  return estimator_ptr(e);
}

}  // namespace

void register_preprocessing(registry& r) {
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
