// src/runtime/cluster.cpp - KMeans and MiniBatchKMeans: predict (nearest center) and transform
// (distances to the centers).
//
// scikit-learn (sklearn/cluster/_k_means_lloyd.pyx, _kmeans.py, metrics/pairwise.py):
//   predict:   per chunk of 256 rows, d[i, j] = ‖c_j‖² + (-2 · X Cᵀ)[i, j] (one BLAS gemm with
//              alpha -2, beta 1 onto the center norms), label = first j with the strictly
//              smallest d; ‖x‖² is left out.
//   transform: euclidean_distances(X, C) = sqrt(max(((-2 · X Cᵀ) + ‖x‖²) + ‖c‖², 0)).
// ‖·‖² is row_norms = np.einsum("ij,ij->i"), which numpy sums in two lanes (even / odd
// features) of unfused multiply-adds, eight features per step in the order 6,4,2,0 (7,5,3,1),
// then the lanes added — reproduced by `einsum_sq_norm`. The products go through
// linalg::dense_map (OpenBLAS's order); -2·dot is exact, so the only rounding that can differ
// from scikit-learn's is the product's.
#include <cmath>

#include "runtime/estimator.hpp"
#include "runtime/linalg.hpp"

namespace vitrify::runtime {
namespace {

using pyobj::node;

// np.einsum("ij,ij->i", x, x) for one row (numpy's sum_of_products_contig_contig_outstride0_two
// with 2-lane vectors and no FMA).
double einsum_sq_norm(const matrix_view& x, std::size_t r) noexcept {
  const std::size_t n = x.cols();
  double l0 = 0, l1 = 0;
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    for (std::size_t b = 4; b-- > 0;) {
      const double a0 = x.at(r, i + 2 * b), a1 = x.at(r, i + 2 * b + 1);
      l0 = a0 * a0 + l0;
      l1 = a1 * a1 + l1;
    }
  }
  for (; i < n; i += 2) {
    const double a0 = x.at(r, i);
    l0 = a0 * a0 + l0;
    if (i + 1 < n) {
      const double a1 = x.at(r, i + 1);
      l1 = a1 * a1 + l1;
    } else {
      l1 = 0.0 * 0.0 + l1;  // the masked load fills zeros
    }
  }
  return 0.0 + (l0 + l1);
}

class kmeans final : public estimator {
 public:
  std::size_t k = 0;
  linalg::dense_map centers;
  std::vector<double> center_norm;

  [[nodiscard]] std::size_t width(method m) const override {
    return m == method::predict ? 1 : m == method::transform ? k : 0;
  }

  static constexpr std::size_t chunk = 256;  // _k_means_lloyd CHUNK_SIZE

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, type);
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t c = 0; c < x.cols(); ++c)
        if (!std::isfinite(x.at(r, c)))
          return fail(errc::invalid_argument, std::string(short_name(type)) + ": input contains NaN or infinity (scikit-learn rejects such input)");
    dense out(x.rows(), width(m));
    std::vector<double> dot(std::min(chunk, x.rows()) * k);
    if (m == method::predict) {
      for (std::size_t r0 = 0; r0 < x.rows(); r0 += chunk) {
        const std::size_t n = std::min(chunk, x.rows() - r0);
        centers.apply(x.slice_rows(r0, n), dot.data(), k);
        for (std::size_t i = 0; i < n; ++i) out(r0 + i, 0) = static_cast<double>(nearest(dot.data() + i * k));
      }
      return out;
    }
    // transform: euclidean_distances computes the whole X Cᵀ product with one matmul.
    std::vector<double> all(x.rows() * k);
    centers.apply(x, all.data(), k);
    for (std::size_t i = 0; i < x.rows(); ++i) {
      const double xx = einsum_sq_norm(x, i);
      for (std::size_t j = 0; j < k; ++j) {
        double d = (-2.0 * all[i * k + j] + xx) + center_norm[j];
        d = d > 0 ? d : 0.0;  // np.maximum(d, 0): d is never NaN here
        out(i, j) = std::sqrt(d);
      }
    }
    return out;
  }

  [[nodiscard]] std::size_t nearest(const double* dot) const noexcept {
    std::size_t label = 0;
    double best = center_norm[0] + -2.0 * dot[0];
    for (std::size_t j = 1; j < k; ++j) {
      const double d = center_norm[j] + -2.0 * dot[j];
      if (d < best) {
        best = d;
        label = j;
      }
    }
    return label;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    if (m != method::predict || k > 256) return estimator::run_row(m, row, out);
    for (double v : row)
      if (!std::isfinite(v)) return fail(errc::invalid_argument, std::string(short_name(type)) + ": input contains NaN or infinity");
    double dot[256];
    centers.apply_row(row.data(), dot);
    out[0] = static_cast<double>(nearest(dot));
    return {};
  }
};

result<estimator_ptr> build_kmeans(const node& obj, build_context&) {
  auto e = std::make_shared<kmeans>();
  e->type = obj.type_name();
  const std::string who(short_name(e->type));
  VITRIFY_TRY(read_feature_info(obj, *e));
  auto c = attr_tensor<double>(obj, "cluster_centers_", 2);
  if (!c) return std::move(c).err();
  const std::size_t k = c->dim(0), f = c->dim(1);
  if (k == 0) return state_error(who, "cluster_centers_ is empty");
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != f)
    return state_error(who, "cluster_centers_ has " + std::to_string(f) + " columns but n_features_in_ is " + std::to_string(e->n_features));
  e->n_features = static_cast<std::int64_t>(f);
  e->k = k;
  e->centers = linalg::dense_map(c->p, k, f);
  const matrix_view cv(c->p, k, f);
  for (std::size_t j = 0; j < k; ++j) e->center_norm.push_back(einsum_sq_norm(cv, j));
  e->methods = method_bit(method::predict) | method_bit(method::transform);
  return estimator_ptr(std::move(e));
}

}  // namespace

void register_cluster(registry& r) {
  r.add("sklearn.cluster.KMeans", build_kmeans);
  r.add("sklearn.cluster.MiniBatchKMeans", build_kmeans);
}

}  // namespace vitrify::runtime
