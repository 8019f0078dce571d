// src/runtime/naive_bayes.cpp - GaussianNB, MultinomialNB, BernoulliNB (sklearn/naive_bayes.py).
//
// All three compute a joint log likelihood `jll` (rows × classes); predict is the first argmax,
// predict_proba is exp(jll - logsumexp(jll)) with scikit-learn's own logsumexp
// (sklearn.utils._array_api._logsumexp, ≥ 1.8): the maxima are masked out, s = Σ exp(a - max)
// divided by the number of maxima, lse = log1p(s) + log(count) + max.
// Terms that depend only on the fitted state (GaussianNB's Σ log(2π var), BernoulliNB's
// log(1 - exp(feature_log_prob_))) are computed once at build time in the same order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "runtime/estimator.hpp"
#include "runtime/linalg.hpp"

namespace vitrify::runtime {
namespace {

using pyobj::node;

error nonfinite_input(const std::string& type) {
  return fail(errc::invalid_argument,
              std::string(short_name(type)) + ": input contains NaN or infinity (scikit-learn rejects such input)");
}

bool finite_row(const matrix_view& x, std::size_t r) noexcept {
  for (std::size_t c = 0; c < x.cols(); ++c)
    if (!std::isfinite(x.at(r, c))) return false;
  return true;
}

class nb_base : public estimator {
 public:
  [[nodiscard]] std::size_t width(method m) const override {
    return m == method::predict ? 1 : m == method::predict_proba ? classes.size() : 0;
  }

  // jll (nc values) → output of m.
  void finish(method m, double* jll, double* out) const noexcept {
    const std::size_t nc = classes.size();
    if (m == method::predict) {
      std::size_t best = 0;
      for (std::size_t j = 1; j < nc; ++j)
        if (jll[j] > jll[best] || (std::isnan(jll[j]) && !std::isnan(jll[best]))) best = j;
      out[0] = static_cast<double>(best);
      return;
    }
    // _logsumexp over the row.
    double amax = jll[0];
    for (std::size_t j = 1; j < nc; ++j) amax = std::max(amax, jll[j]);
    double count = 0;
    for (std::size_t j = 0; j < nc; ++j) count += jll[j] == amax ? 1.0 : 0.0;
    const double shift = std::isfinite(amax) ? amax : 0.0;
    for (std::size_t j = 0; j < nc; ++j) out[j] = jll[j] == amax ? 0.0 : std::exp(jll[j] - shift);
    double s = linalg::pairwise_sum(out, nc);
    if (s != 0) s = s / count;
    const double lse = std::log1p(s) + std::log(count) + amax;
    for (std::size_t j = 0; j < nc; ++j) out[j] = std::exp(jll[j] - lse);
  }

  /// Joint log likelihood of row r of x into jll; `tmp` has n_features values of scratch.
  virtual void jll_row(const matrix_view& x, std::size_t r, double* jll, double* tmp) const = 0;
  /// Batch jll (rows × classes); the default goes row by row.
  virtual void jll_all(const matrix_view& x, double* jll) const {
    std::vector<double> tmp(static_cast<std::size_t>(n_features));
    for (std::size_t r = 0; r < x.rows(); ++r) jll_row(x, r, jll + r * classes.size(), tmp.data());
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, type);
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    for (std::size_t r = 0; r < x.rows(); ++r)
      if (!finite_row(x, r)) return nonfinite_input(type);
    const std::size_t nc = classes.size();
    std::vector<double> jll(x.rows() * nc);
    jll_all(x, jll.data());
    dense out(x.rows(), width(m));
    for (std::size_t r = 0; r < x.rows(); ++r) finish(m, jll.data() + r * nc, out.row(r));
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    const matrix_view x(row.data(), 1, row.size());
    if (!finite_row(x, 0)) return nonfinite_input(type);
    if (classes.size() > 256 || row.size() > 4096) return estimator::run_row(m, row, out);
    double jll[256];
    double tmp[4096];
    jll_row(x, 0, jll, tmp);
    finish(m, jll, out.data());
    return {};
  }
};

// ---- GaussianNB ----
// jll[:, i] = log(class_prior_[i]) + (-0.5 * Σ log(2π var_[i]) - 0.5 * Σ ((x - θ_i)² / var_[i]))

class gaussian_nb final : public nb_base {
 public:
  std::size_t f = 0;
  std::vector<double> theta, var, log_prior, n0;

  void jll_row(const matrix_view& x, std::size_t r, double* jll, double* tmp) const override {
    for (std::size_t i = 0; i < classes.size(); ++i) {
      const double* th = theta.data() + i * f;
      const double* va = var.data() + i * f;
      for (std::size_t c = 0; c < f; ++c) {
        const double d = x.at(r, c) - th[c];
        tmp[c] = (d * d) / va[c];
      }
      const double n_ij = n0[i] - 0.5 * linalg::pairwise_sum(tmp, f);
      jll[i] = log_prior[i] + n_ij;
    }
  }
};

result<estimator_ptr> build_gaussian_nb(const node& obj, build_context&) {
  auto e = std::make_shared<gaussian_nb>();
  e->type = obj.type_name();
  const std::string who(short_name(e->type));
  VITRIFY_TRY(read_feature_info(obj, *e));
  auto cls = need_attr(obj, "classes_");
  if (!cls) return std::move(cls).err();
  VITRIFY_TRY(read_classes(**cls, *e, who));
  auto theta = attr_tensor<double>(obj, "theta_", 2);
  if (!theta) return std::move(theta).err();
  // var_ (≥ 1.0); sigma_ in older pickles.
  auto var = opt_attr(obj, "var_") ? attr_tensor<double>(obj, "var_", 2) : attr_tensor<double>(obj, "sigma_", 2);
  if (!var) return std::move(var).err();
  auto prior = attr_tensor<double>(obj, "class_prior_", 1);
  if (!prior) return std::move(prior).err();
  const std::size_t nc = e->classes.size();
  const std::size_t f = theta->dim(1);
  if (theta->dim(0) != nc || var->dim(0) != nc || var->dim(1) != f || prior->size() != nc)
    return state_error(who, "theta_, var_, class_prior_ and classes_ disagree in shape");
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != f)
    return state_error(who, "theta_ has " + std::to_string(f) + " columns but n_features_in_ is " + std::to_string(e->n_features));
  e->n_features = static_cast<std::int64_t>(f);
  e->f = f;
  e->theta.assign(theta->p, theta->p + nc * f);
  e->var.assign(var->p, var->p + nc * f);
  std::vector<double> tmp(f);
  for (std::size_t i = 0; i < nc; ++i) {
    e->log_prior.push_back(std::log((*prior)[i]));
    for (std::size_t c = 0; c < f; ++c) tmp[c] = std::log(2.0 * std::numbers::pi * e->var[i * f + c]);
    e->n0.push_back(-0.5 * linalg::pairwise_sum(tmp.data(), f));
  }
  e->methods = method_bit(method::predict) | method_bit(method::predict_proba);
  return estimator_ptr(std::move(e));
}

// ---- MultinomialNB / BernoulliNB ----
// Multinomial: jll = X @ feature_log_prob_.T + class_log_prior_
// Bernoulli:   jll = binarize(X) @ (flp - neg).T, then += (class_log_prior_ + Σ_f neg), with
//              neg = log(1 - exp(flp)).

class discrete_nb final : public nb_base {
 public:
  linalg::dense_map map;
  std::vector<double> add;    // per class, added after the product
  bool bernoulli = false;
  bool binarize = false;
  double threshold = 0.0;

  void jll_row(const matrix_view& x, std::size_t r, double* jll, double* tmp) const override {
    const std::size_t f = map.inputs();
    for (std::size_t c = 0; c < f; ++c) {
      const double v = x.at(r, c);
      tmp[c] = binarize ? (v > threshold ? 1.0 : 0.0) : v;
    }
    map.apply_row(tmp, jll);
    for (std::size_t i = 0; i < classes.size(); ++i) jll[i] += add[i];
  }

  void jll_all(const matrix_view& x, double* jll) const override {
    const std::size_t nc = classes.size();
    if (binarize) {
      dense xb(x.rows(), x.cols());
      for (std::size_t r = 0; r < x.rows(); ++r)
        for (std::size_t c = 0; c < x.cols(); ++c) xb(r, c) = x.at(r, c) > threshold ? 1.0 : 0.0;
      map.apply(xb.view(), jll, nc);
    } else {
      map.apply(x, jll, nc);
    }
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t i = 0; i < nc; ++i) jll[r * nc + i] += add[i];
  }
};

result<estimator_ptr> build_discrete_nb(const node& obj, build_context&, bool bernoulli) {
  auto e = std::make_shared<discrete_nb>();
  e->type = obj.type_name();
  e->bernoulli = bernoulli;
  const std::string who(short_name(e->type));
  VITRIFY_TRY(read_feature_info(obj, *e));
  auto cls = need_attr(obj, "classes_");
  if (!cls) return std::move(cls).err();
  VITRIFY_TRY(read_classes(**cls, *e, who));
  auto flp = attr_tensor<double>(obj, "feature_log_prob_", 2);
  if (!flp) return std::move(flp).err();
  auto clp = attr_tensor<double>(obj, "class_log_prior_", 1);
  if (!clp) return std::move(clp).err();
  const std::size_t nc = e->classes.size();
  const std::size_t f = flp->dim(1);
  if (flp->dim(0) != nc || clp->size() != nc)
    return state_error(who, "feature_log_prob_, class_log_prior_ and classes_ disagree in shape");
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != f)
    return state_error(who, "feature_log_prob_ has " + std::to_string(f) + " columns but n_features_in_ is " + std::to_string(e->n_features));
  e->n_features = static_cast<std::int64_t>(f);
  if (!bernoulli) {
    e->map = linalg::dense_map(flp->p, nc, f);
    e->add.assign(clp->p, clp->p + nc);
  } else {
    if (const node* b = opt_attr(obj, "binarize")) {
      auto t = as_number(*b, who + ".binarize");
      if (!t) return std::move(t).err();
      e->binarize = true;
      e->threshold = *t;
    }
    std::vector<double> w(nc * f), neg(f);
    for (std::size_t i = 0; i < nc; ++i) {
      for (std::size_t c = 0; c < f; ++c) {
        const double v = (*flp)[i * f + c];
        neg[c] = std::log(1.0 - std::exp(v));
        w[i * f + c] = v - neg[c];
      }
      e->add.push_back((*clp)[i] + linalg::pairwise_sum(neg.data(), f));
    }
    e->map = linalg::dense_map(w.data(), nc, f);
  }
  e->methods = method_bit(method::predict) | method_bit(method::predict_proba);
  return estimator_ptr(std::move(e));
}

}  // namespace

void register_naive_bayes(registry& r) {
  r.add("sklearn.naive_bayes.GaussianNB", build_gaussian_nb);
  r.add("sklearn.naive_bayes.MultinomialNB",
        [](const node& o, build_context& c) { return build_discrete_nb(o, c, false); });
  r.add("sklearn.naive_bayes.BernoulliNB",
        [](const node& o, build_context& c) { return build_discrete_nb(o, c, true); });
}

}  // namespace vitrify::runtime
