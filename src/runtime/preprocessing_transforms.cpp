// src/runtime/preprocessing_transforms.cpp - Normalizer, Binarizer, the identity FunctionTransformer, PolynomialFeatures
// (see preprocessing_internal.hpp for what the families share and the fidelity rules).
#include "runtime/preprocessing_internal.hpp"

namespace vitrify::runtime::prep {

namespace {

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

}  // namespace

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

}  // namespace vitrify::runtime::prep
