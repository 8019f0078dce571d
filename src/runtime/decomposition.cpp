// src/runtime/decomposition.cpp - PCA and TruncatedSVD transforms.
//
// scikit-learn 1.9 computes PCA.transform as `X @ components_.T - mean_ @ components_.T`
// (project, then subtract the projected mean; `_BasePCA._transform`), then divides by
// sqrt(explained_variance_) (clipped below at eps) when whitening; TruncatedSVD is
// `X @ components_.T`. The products go through BLAS there (SIMD partial sums, FMA), here through
// plain dot products in float64: results agree to rounding (relative ~1e-15 of the terms), not
// bit for bit. float32 input is computed in float64 (scikit-learn computes in float32 when the
// model was fitted on float32, in float64 otherwise).
#include <cmath>
#include <limits>

#include "runtime/estimator.hpp"
#include "runtime/steps.hpp"

namespace vitrify::runtime {

using pyobj::node;

namespace {

class projection final : public step_estimator {
 public:
  std::size_t k = 0, n = 0;
  std::vector<double> comp;         // k x n, row-major
  bool center = false;
  std::vector<double> mean_proj;    // k: mean_ @ components_.T
  bool whiten = false;
  std::vector<double> scale;        // k: sqrt(explained_variance_), clipped at eps

  std::size_t width(method) const override { return k; }

  template <class T>
  void row(const T* x, double* out) const {
    for (std::size_t j = 0; j < k; ++j) {
      const double* c = comp.data() + j * n;
      // Four partial sums: the summation order differs from BLAS anyway.
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      std::size_t f = 0;
      for (; f + 4 <= n; f += 4) {
        s0 += static_cast<double>(x[f]) * c[f];
        s1 += static_cast<double>(x[f + 1]) * c[f + 1];
        s2 += static_cast<double>(x[f + 2]) * c[f + 2];
        s3 += static_cast<double>(x[f + 3]) * c[f + 3];
      }
      for (; f < n; ++f) s0 += static_cast<double>(x[f]) * c[f];
      double y = (s0 + s1) + (s2 + s3);
      if (center) y -= mean_proj[j];
      if (whiten) y /= scale[j];
      out[j] = y;
    }
  }

  result<dense> run(method, const input& x) const override {
    dense st;
    auto v = x.numeric(st, short_name(type));
    if (!v) return std::move(v).err();
    if (v->cols() != n) return fail(errc::invalid_argument, std::string(short_name(type)) + ": wrong number of columns");
    // check_array(ensure_all_finite=True)
    for (std::size_t r = 0; r < v->rows(); ++r)
      for (std::size_t c = 0; c < n; ++c) {
        const double a = v->at(r, c);
        if (a - a != 0)
          return fail(errc::invalid_argument, std::string(short_name(type)) +
                                                  (a != a ? ": Input X contains NaN." : ": Input X contains infinity or a value too large."));
      }
    dense out(v->rows(), k);
    for (std::size_t r = 0; r < v->rows(); ++r) {
      if (v->is_float32()) row(v->f32() + r * v->row_stride(), out.row(r));
      else row(v->f64() + r * v->row_stride(), out.row(r));
    }
    return out;
  }

  result<void> run_row(method, std::span<const double> r, std::span<double> out) const override {
    if (r.size() != n || out.size() != k) return fail(errc::invalid_argument, std::string(short_name(type)) + ": wrong number of columns");
    for (double a : r)
      if (a - a != 0) return fail(errc::invalid_argument, std::string(short_name(type)) + ": Input X contains NaN or infinity.");
    row(r.data(), out.data());
    return {};
  }
};

result<std::shared_ptr<projection>> read_components(const node& obj) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<projection>();
  e->methods = method_bit(method::transform);
  VITRIFY_TRY(read_feature_info(obj, *e));
  auto c = attr_tensor<double>(obj, "components_", 2);
  if (!c) return std::move(c).err();
  e->k = c->dim(0);
  e->n = c->dim(1);
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != e->n)
    return state_error(who, "components_ has " + std::to_string(e->n) + " columns for " + std::to_string(e->n_features) + " features");
  e->n_features = static_cast<std::int64_t>(e->n);
  e->comp.assign(c->p, c->p + c->size());
  return e;
}

result<estimator_ptr> build_pca(const node& obj, build_context&) {
  auto r = read_components(obj);
  if (!r) return std::move(r).err();
  auto e = std::move(r).value();
  auto mean = attr_tensor<double>(obj, "mean_", 1);
  if (!mean) return std::move(mean).err();
  if (mean->size() != e->n) return state_error("PCA", "mean_ does not match components_");
  // mean_ @ components_.T, once.
  e->center = true;
  e->mean_proj.assign(e->k, 0.0);
  for (std::size_t j = 0; j < e->k; ++j) {
    double s = 0;
    for (std::size_t f = 0; f < e->n; ++f) s += (*mean)[f] * e->comp[j * e->n + f];
    e->mean_proj[j] = s;
  }
  auto wh = get_bool(obj, "whiten");
  if (!wh) return std::move(wh).err();
  e->whiten = *wh;
  if (e->whiten) {
    auto ev = attr_tensor<double>(obj, "explained_variance_", 1);
    if (!ev) return std::move(ev).err();
    if (ev->size() != e->k) return state_error("PCA", "explained_variance_ does not match components_");
    const node* evn = obj.attr("explained_variance_");
    const bool f32 = evn && evn->arr && evn->arr->dtype == "<f4";
    const double eps = f32 ? static_cast<double>(std::numeric_limits<float>::epsilon()) : std::numeric_limits<double>::epsilon();
    for (std::size_t j = 0; j < e->k; ++j) {
      double s = std::sqrt((*ev)[j]);
      if (s < eps) s = eps;
      e->scale.push_back(s);
    }
  }
  return estimator_ptr(e);
}

result<estimator_ptr> build_truncated_svd(const node& obj, build_context&) {
  auto r = read_components(obj);
  if (!r) return std::move(r).err();
  return estimator_ptr(std::move(r).value());
}

}  // namespace

void register_decomposition(registry& r) {
  r.add("sklearn.decomposition.PCA", build_pca);
  r.add("sklearn.decomposition.TruncatedSVD", build_truncated_svd);
}

}  // namespace vitrify::runtime
