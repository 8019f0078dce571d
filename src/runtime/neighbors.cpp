// src/runtime/neighbors.cpp - KNeighborsClassifier and KNeighborsRegressor, brute force over the
// fitted training matrix `_fit_X` whatever `_fit_method` was (the dumped KDTree/BallTree is not
// needed: a tree only prunes, it finds the same neighbours).
//
// Distances are scikit-learn's DistanceMetric formulas (sklearn/metrics/_dist_metrics.pyx):
// euclidean Σ (x-y)² in feature order then sqrt, manhattan Σ |x-y|, chebyshev max |x-y|,
// minkowski Σ |x-y|^p then ^(1/p). Neighbours are ranked by the reduced distance (the sum before
// the root), like the trees; the k nearest are kept sorted by (distance, training index).
//
// Where scikit-learn differs:
//   * Exact ties at the k-th distance: scikit-learn keeps whichever tied point its kd-tree /
//     ball-tree traversal or its ArgKmin chunking pushed first onto the heap and orders equal
//     distances with an unstable sort; vitrify keeps and orders them by training index. With
//     uniform weights only the tied points' labels can differ; the result differs only when those
//     labels decide the vote.
//   * _fit_method "brute" with the euclidean metric: scikit-learn ranks by ‖x‖² - 2x·y + ‖y‖²
//     computed with BLAS and returns sqrt of that; vitrify uses the exact Σ (x-y)². Distances
//     agree to rounding (relative ~1e-16 · ‖x‖²/d²); near-ties may rank differently.
//
// predict / predict_proba follow sklearn/neighbors/_classification.py and _regression.py:
//   classifier uniform: the most frequent class (smallest class index on ties);
//   classifier distance: weighted_mode — per class the pairwise sum over the k neighbours of
//     (w if the neighbour has that class else 0), first class with the strictly largest sum;
//   predict_proba: proba[class of neighbour i] += w_i in neighbour order, divided by the
//     pairwise row sum (a zero sum counts as 1);
//   regressor: uniform mean (pairwise sum / k); distance Σ y·w / Σ w (pairwise sums).
//   w = 1/dist; a row with a zero distance gets weight 1 on those neighbours and 0 elsewhere.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "runtime/estimator.hpp"
#include "runtime/linalg.hpp"
#include "runtime/tree_walk.hpp"

namespace vitrify::runtime {
namespace {

using pyobj::node;

enum class metric_kind : std::uint8_t { euclidean, manhattan, chebyshev, minkowski };

class knn final : public estimator {
 public:
  std::size_t n_train = 0, f = 0, k = 0, n_out = 1;
  std::vector<double> fit_x;     // n_train × f
  std::vector<std::int64_t> yi;  // classifier: class index per training row
  std::vector<double> yv;        // regressor: n_train × n_out targets
  bool distance_weights = false;
  metric_kind metric = metric_kind::euclidean;
  double p = 2.0;
  bool ravel = true;             // regressor fitted on a 1-d y

  [[nodiscard]] std::size_t width(method m) const override {
    if (m == method::predict) return is_classifier ? 1 : n_out;
    if (m == method::predict_proba) return classes.size();
    return 0;
  }

  [[nodiscard]] double reduced(const double* a, const double* b) const noexcept {
    double d = 0;
    switch (metric) {
      case metric_kind::euclidean:
        for (std::size_t j = 0; j < f; ++j) {
          const double t = a[j] - b[j];
          d += t * t;
        }
        return d;
      case metric_kind::manhattan:
        for (std::size_t j = 0; j < f; ++j) d += std::fabs(a[j] - b[j]);
        return d;
      case metric_kind::chebyshev:
        for (std::size_t j = 0; j < f; ++j) d = std::fmax(d, std::fabs(a[j] - b[j]));
        return d;
      case metric_kind::minkowski:
        for (std::size_t j = 0; j < f; ++j) d += std::pow(std::fabs(a[j] - b[j]), p);
        return d;
    }
    return d;
  }

  [[nodiscard]] double to_distance(double r) const noexcept {
    switch (metric) {
      case metric_kind::euclidean: return std::sqrt(r);
      case metric_kind::minkowski: return std::pow(r, 1.0 / p);
      default: return r;
    }
  }

  struct scratch {
    std::vector<double> rd;            // reduced distance to every training row
    std::vector<std::uint32_t> order;  // candidate indices
    std::vector<double> dist, w, tmp;  // k values each
    std::vector<std::uint32_t> ind;
  };

  // The k nearest of row x into s.ind / s.dist (sorted), weights into s.w.
  void neighbours(const double* x, scratch& s) const {
    s.rd.resize(n_train);
    s.order.resize(n_train);
    for (std::size_t i = 0; i < n_train; ++i) s.rd[i] = reduced(x, fit_x.data() + i * f);
    std::iota(s.order.begin(), s.order.end(), 0u);
    auto less = [&](std::uint32_t a, std::uint32_t b) { return s.rd[a] < s.rd[b] || (s.rd[a] == s.rd[b] && a < b); };
    std::partial_sort(s.order.begin(), s.order.begin() + static_cast<std::ptrdiff_t>(k), s.order.end(), less);
    s.ind.assign(s.order.begin(), s.order.begin() + static_cast<std::ptrdiff_t>(k));
    s.dist.resize(k);
    s.w.resize(k);
    s.tmp.resize(k);
    for (std::size_t i = 0; i < k; ++i) s.dist[i] = to_distance(s.rd[s.ind[i]]);
    if (!distance_weights) {
      std::fill(s.w.begin(), s.w.end(), 1.0);
      return;
    }
    bool any_inf = false;
    for (std::size_t i = 0; i < k; ++i) {
      s.w[i] = 1.0 / s.dist[i];
      any_inf = any_inf || std::isinf(s.w[i]);
    }
    if (any_inf)
      for (std::size_t i = 0; i < k; ++i) s.w[i] = std::isinf(s.w[i]) ? 1.0 : 0.0;
  }

  void row_output(method m, const double* x, scratch& s, double* out) const {
    neighbours(x, s);
    if (!is_classifier) {
      for (std::size_t o = 0; o < n_out; ++o) {
        for (std::size_t i = 0; i < k; ++i) s.tmp[i] = yv[s.ind[i] * n_out + o] * (distance_weights ? s.w[i] : 1.0);
        if (!distance_weights) {
          // np.mean over the neighbour axis.
          for (std::size_t i = 0; i < k; ++i) s.tmp[i] = yv[s.ind[i] * n_out + o];
          out[o] = linalg::pairwise_sum(s.tmp.data(), k) / static_cast<double>(k);
        } else {
          out[o] = linalg::pairwise_sum(s.tmp.data(), k) / linalg::pairwise_sum(s.w.data(), k);
        }
      }
      return;
    }
    const std::size_t nc = classes.size();
    if (m == method::predict_proba) {
      for (std::size_t c = 0; c < nc; ++c) out[c] = 0.0;
      for (std::size_t i = 0; i < k; ++i) out[yi[s.ind[i]]] += s.w[i];
      double norm = linalg::pairwise_sum(out, nc);
      if (norm == 0.0) norm = 1.0;
      for (std::size_t c = 0; c < nc; ++c) out[c] /= norm;
      return;
    }
    // predict
    if (!distance_weights) {
      std::size_t best = 0, best_count = 0;
      for (std::size_t c = 0; c < nc; ++c) {
        std::size_t count = 0;
        for (std::size_t i = 0; i < k; ++i) count += yi[s.ind[i]] == static_cast<std::int64_t>(c);
        if (count > best_count) {
          best_count = count;
          best = c;
        }
      }
      out[0] = static_cast<double>(best);
      return;
    }
    // weighted_mode over the classes present among the neighbours, in increasing order.
    double best_sum = 0.0, best = 0.0;
    for (std::size_t c = 0; c < nc; ++c) {
      bool present = false;
      for (std::size_t i = 0; i < k; ++i) {
        const bool hit = yi[s.ind[i]] == static_cast<std::int64_t>(c);
        present = present || hit;
        s.tmp[i] = hit ? s.w[i] : 0.0;
      }
      if (!present) continue;
      const double sum = linalg::pairwise_sum(s.tmp.data(), k);
      if (sum > best_sum) {
        best_sum = sum;
        best = static_cast<double>(c);
      }
    }
    out[0] = best;
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, type);
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    dense out(x.rows(), width(m));
    scratch s;
    std::vector<double> row(f);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      for (std::size_t c = 0; c < f; ++c) {
        row[c] = x.at(r, c);
        if (!std::isfinite(row[c]))
          return fail(errc::invalid_argument, std::string(short_name(type)) + ": input contains NaN or infinity (scikit-learn rejects such input)");
      }
      row_output(m, row.data(), s, out.row(r));
    }
    return out;
  }
};

// sklearn.neighbors._binary_tree NodeData.
const std::vector<trees::layout_field> neighbor_node_layout = {
    {"idx_start", "<i8", 0}, {"idx_end", "<i8", 8}, {"is_leaf", "<i8", 16}, {"radius", "<f8", 24}};

/// The KDTree / BallTree the estimator keeps in `_tree` (written through its reconstructor,
/// `sklearn.neighbors._kd_tree.newObj(KDTree)`, with the state tuple of BinaryTree.__getstate__).
/// The runtime searches `_fit_X` itself, but scikit-learn's compiled queries index memory with
/// this state, so a file is refused here when scikit-learn could not use it safely: the same
/// rules as vitrify.load.
result<void> check_neighbor_tree(const node& t, std::size_t n_train, std::size_t n_cols, std::string_view who) {
  const std::string tw = std::string(who) + "._tree";
  if (t.k == node::kind::none) return {};
  if (t.k != node::kind::object || !t.obj) return state_error(tw, "expected a KDTree or a BallTree");
  const auto& o = *t.obj;
  bool kd = false;
  if (o.type == "sklearn.neighbors._kd_tree.newObj" || o.type == "sklearn.neighbors._ball_tree.newObj") {
    if (o.args.size() != 1 || !o.args[0] || o.args[0]->k != node::kind::global) return state_error(tw, "invalid reconstructor arguments");
    const std::string& cls = o.args[0]->text;
    const bool ball = o.type == "sklearn.neighbors._ball_tree.newObj";
    if (cls != (ball ? "sklearn.neighbors.BallTree" : "sklearn.neighbors.KDTree") &&
        cls != (ball ? "sklearn.neighbors._ball_tree.BallTree" : "sklearn.neighbors._kd_tree.KDTree"))
      return state_error(tw, "the reconstructor builds " + cls + ", not its own tree class");
    kd = !ball;
  } else {
    return state_error(tw, "expected a KDTree or a BallTree, got " + o.type);
  }
  const node* st = o.state;
  if (!st || st->k != node::kind::tuple || st->items.size() < 11) return state_error(tw, "the tree state must be BinaryTree's tuple");
  const auto& s = st->items;
  auto data = as_tensor<double>(*s[0], tw + ".data", 2);
  if (!data) return std::move(data).err();
  if (data->dim(0) != n_train || data->dim(1) != n_cols) return state_error(tw, "data does not have the shape of _fit_X");
  auto idx = as_tensor<std::int64_t>(*s[1], tw + ".idx_array", 1);
  if (!idx) return std::move(idx).err();
  if (idx->size() != n_train) return state_error(tw, "idx_array has not one entry per training row");
  std::vector<bool> seen(n_train, false);
  for (std::size_t i = 0; i < n_train; ++i) {
    const std::int64_t v = (*idx)[i];
    if (v < 0 || static_cast<std::uint64_t>(v) >= n_train || seen[static_cast<std::size_t>(v)])
      return state_error(tw, "idx_array is not a permutation of the training rows");
    seen[static_cast<std::size_t>(v)] = true;
  }
  auto rec = trees::read_records(*s[2], tw + ".node_data");
  if (!rec) return std::move(rec).err();
  VITRIFY_TRY(trees::check_layout(*rec, neighbor_node_layout, 32, 0, tw + ".node_data"));
  std::int64_t ints[7];
  for (std::size_t i = 0; i < 7; ++i) {
    auto v = as_integer(*s[4 + i], tw + ".state");
    if (!v) return std::move(v).err();
    ints[i] = *v;
  }
  const std::int64_t leaf_size = ints[0], n_levels = ints[1], n_nodes = ints[2];
  if (leaf_size < 1) return state_error(tw, "leaf_size must be at least 1");
  if (n_levels < 1 || n_levels > 62 || n_nodes != (std::int64_t{1} << n_levels) - 1)
    return state_error(tw, "n_nodes is not 2^n_levels - 1");
  if (rec->count != static_cast<std::size_t>(n_nodes)) return state_error(tw, "node_data has not n_nodes records");
  auto f_start = rec->field("idx_start", false, tw);
  auto f_end = rec->field("idx_end", false, tw);
  if (!f_start || !f_end) return state_error(tw, "node_data lacks idx_start / idx_end");
  for (std::size_t i = 0; i < rec->count; ++i) {
    const std::int64_t a = rec->integer(i, *f_start), b = rec->integer(i, *f_end);
    if (a < 0 || b < a || static_cast<std::uint64_t>(b) > n_train) return state_error(tw, "node " + std::to_string(i) + " covers rows out of range");
  }
  auto bounds = as_tensor<double>(*s[3], tw + ".node_bounds", 3);
  if (!bounds) return std::move(bounds).err();
  if (bounds->dim(0) != (kd ? 2u : 1u) || bounds->dim(1) != static_cast<std::size_t>(n_nodes) || bounds->dim(2) != n_cols)
    return state_error(tw, std::string("node_bounds must have shape (") + (kd ? "2" : "1") + ", n_nodes, n_features)");
  return {};
}

result<estimator_ptr> build_knn(const node& obj, build_context&, bool classifier) {
  auto e = std::make_shared<knn>();
  e->type = obj.type_name();
  const std::string who(short_name(e->type));
  VITRIFY_TRY(read_feature_info(obj, *e));

  auto fx_node = need_attr(obj, "_fit_X");
  if (!fx_node) return std::move(fx_node).err();
  if ((*fx_node)->k == node::kind::object) return unsupported_error(who, "a sparse training matrix is not supported");
  auto fx = as_tensor<double>(**fx_node, who + "._fit_X", 2);
  if (!fx) return std::move(fx).err();
  e->n_train = fx->dim(0);
  e->f = fx->dim(1);
  if (e->n_train == 0) return state_error(who, "_fit_X has no rows");
  if (e->n_train > std::numeric_limits<std::uint32_t>::max()) return unsupported_error(who, "more than 2^32 training rows");
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != e->f)
    return state_error(who, "_fit_X has " + std::to_string(e->f) + " columns but n_features_in_ is " + std::to_string(e->n_features));
  e->n_features = static_cast<std::int64_t>(e->f);
  e->fit_x.assign(fx->p, fx->p + e->n_train * e->f);
  if (const node* t = opt_attr(obj, "_tree")) VITRIFY_TRY(check_neighbor_tree(*t, e->n_train, e->f, who));

  auto k = get_int(obj, "n_neighbors");
  if (!k) return std::move(k).err();
  if (*k < 1 || static_cast<std::uint64_t>(*k) > e->n_train)
    return state_error(who, "n_neighbors must be between 1 and the number of training rows");
  e->k = static_cast<std::size_t>(*k);

  // weights
  const node* wn = opt_attr(obj, "weights");
  if (wn && wn->k != node::kind::string) return unsupported_error(who, "callable weights are not supported");
  const std::string weights = wn ? wn->text : "uniform";
  if (weights == "distance") e->distance_weights = true;
  else if (weights != "uniform") return unsupported_error(who, "weights='" + weights + "' is not supported");

  // metric: effective_metric_ (+ effective_metric_params_) as resolved at fit time.
  auto metric = get_str(obj, "effective_metric_");
  if (!metric) return unsupported_error(who, "only named metrics are supported (effective_metric_ is not a string)");
  const node* params = opt_attr(obj, "effective_metric_params_");
  if (params && params->k == node::kind::dict) {
    for (const auto& [key, value] : params->entries) {
      if (!key || key->k != node::kind::string) return state_error(who, "effective_metric_params_ keys must be str");
      if (key->text == "w" && value && value->k == node::kind::none) continue;  // minkowski without weights
      if (key->text != "p") return unsupported_error(who, "metric parameter '" + key->text + "' is not supported");
    }
  }
  if (*metric == "euclidean") e->metric = metric_kind::euclidean;
  else if (*metric == "manhattan" || *metric == "cityblock" || *metric == "l1") e->metric = metric_kind::manhattan;
  else if (*metric == "chebyshev" || *metric == "infinity") e->metric = metric_kind::chebyshev;
  else if (*metric == "minkowski") {
    e->metric = metric_kind::minkowski;
    const node* pn = params && params->k == node::kind::dict ? params->get("p") : nullptr;
    if (!pn) pn = opt_attr(obj, "p");
    if (!pn) return state_error(who, "minkowski metric without p");
    auto pv = as_number(*pn, who + ".p");
    if (!pv) return std::move(pv).err();
    if (!(*pv >= 1.0) || std::isnan(*pv)) return unsupported_error(who, "minkowski p < 1 is not supported");
    e->p = *pv;
    if (std::isinf(e->p)) e->metric = metric_kind::chebyshev;
  } else {
    return unsupported_error(who, "metric '" + *metric + "' is not supported");
  }

  if (classifier) {
    if (const node* o2 = opt_attr(obj, "outputs_2d_")) {
      auto b = as_integer(*o2, who + ".outputs_2d_");
      if (b && *b != 0) return unsupported_error(who, "multi-output classification is not supported");
    }
    auto cls = need_attr(obj, "classes_");
    if (!cls) return std::move(cls).err();
    VITRIFY_TRY(read_classes(**cls, *e, who));
    auto y = attr_tensor<std::int64_t>(obj, "_y", 1);
    if (!y) return std::move(y).err();
    if (y->size() != e->n_train) return state_error(who, "_y and _fit_X disagree in length");
    const auto nc = static_cast<std::int64_t>(e->classes.size());
    for (std::size_t i = 0; i < y->size(); ++i)
      if ((*y)[i] < 0 || (*y)[i] >= nc) return state_error(who, "_y holds a class index out of range");
    e->yi.assign(y->p, y->p + y->size());
    e->methods = method_bit(method::predict) | method_bit(method::predict_proba);
  } else {
    auto y = attr_tensor<double>(obj, "_y");
    if (!y) return std::move(y).err();
    if (y->rank() != 1 && y->rank() != 2) return state_error(who, "_y must be 1-d or 2-d");
    if (y->dim(0) != e->n_train) return state_error(who, "_y and _fit_X disagree in length");
    e->n_out = y->rank() == 1 ? 1 : y->dim(1);
    if (e->n_out == 0) return state_error(who, "_y has no columns");
    e->ravel = y->rank() == 1;
    e->yv.assign(y->p, y->p + y->size());
    e->methods = method_bit(method::predict);
  }
  return estimator_ptr(std::move(e));
}

}  // namespace

void register_neighbors(registry& r) {
  r.add("sklearn.neighbors.KNeighborsClassifier", [](const node& o, build_context& c) { return build_knn(o, c, true); });
  r.add("sklearn.neighbors.KNeighborsRegressor", [](const node& o, build_context& c) { return build_knn(o, c, false); });
}

}  // namespace vitrify::runtime
