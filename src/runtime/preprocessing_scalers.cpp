// src/runtime/preprocessing_scalers.cpp - column-wise affine scalers: StandardScaler, MinMaxScaler, MaxAbsScaler,
// RobustScaler
// (see preprocessing_internal.hpp for what the families share and the fidelity rules).
#include "runtime/preprocessing_internal.hpp"

namespace vitrify::runtime::prep {

namespace {

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

}  // namespace

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

}  // namespace vitrify::runtime::prep
