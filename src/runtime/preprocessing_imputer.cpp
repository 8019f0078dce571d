// src/runtime/preprocessing_imputer.cpp - SimpleImputer and its MissingIndicator
// (see preprocessing_internal.hpp for what the families share and the fidelity rules).
#include "runtime/preprocessing_internal.hpp"

namespace vitrify::runtime::prep {

namespace {

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

}  // namespace

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

}  // namespace vitrify::runtime::prep
