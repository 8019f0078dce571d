// src/runtime/tree_walk.hpp - (private) the flattened tree layout shared by tree.cpp and
// ensemble.cpp: sklearn `Tree` objects and HistGradientBoosting `TreePredictor`s are read once,
// checked (children in range and strictly after their parent, so every walk ends; features in
// range; value shapes) and copied into compact node arrays that the hot loops walk.
//
// Arithmetic contract (what makes results bit-exact with scikit-learn):
//  * sklearn trees compare `(double)(float)x <= threshold`: X is converted to float32 by
//    validate_data(dtype=float32) before the Cython walk, so the walkers take a float (and
//    compare it with an equivalent float32 threshold, see tree_node).
//  * HistGradientBoosting predictors compare the float64 value with `num_threshold`.
//  * Ensembles add per-tree contributions to each output cell in tree order, as sklearn does;
//    the batch drivers loop trees-outer over blocks of rows, which keeps that order per row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/estimator.hpp"

namespace vitrify::runtime::trees {

/// A node of a sklearn Tree as read from the file (ids relative to the tree; leaves have
/// feature == -1 and left == right == their own id).
struct sk_node {
  double threshold = 0.0;
  std::int32_t feature = -1;
  std::uint32_t left = 0, right = 0;
  std::uint8_t missing_left = 0;
};

/// One node of the packed layout the hot loops walk (16 bytes: four per cache line).
/// The float64 threshold is stored as the largest float32 <= it: for a float32 input v,
/// `(double)v <= t` and `v <= largest_float_le(t)` are the same test, so the walk compares
/// floats without changing any result. Leaves point to themselves (both children), so a walk
/// can take a fixed step without testing for leaves, and keep the offset of their values in
/// the threshold's bits (see leaf_offset).
struct tree_node {
  float threshold = 0.0f;
  std::uint32_t feature = 0;      ///< input column | missing_left_bit (0 for leaves)
  std::uint32_t child[2] = {0, 0};
};
inline constexpr std::uint32_t missing_left_bit = 0x80000000u;

/// The largest float32 <= t (NaN stays NaN).
inline float largest_float_le(double t) noexcept {
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

inline float leaf_bits(std::uint32_t offset) noexcept {
  float d;
  std::memcpy(&d, &offset, sizeof d);
  return d;
}
inline std::uint32_t leaf_offset(const tree_node& n) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &n.threshold, sizeof u);
  return u;
}

/// A structured numpy array (sklearn node records) read field by field, by name.
struct records {
  struct field_ref {
    std::uint64_t offset = 0;
    char code = 0;   ///< 'q' int64, 'i' int32, 'Q' uint64, 'I' uint32, 'B' uint8, 'd' float64
  };
  const std::byte* data = nullptr;
  std::size_t count = 0, itemsize = 0;
  const std::vector<pyobj::field>* fields = nullptr;
  /// Field `name`: integral (want_float false) or float64; absent -> error, or code 0 when
  /// !required.
  result<field_ref> field(std::string_view name, bool want_float, std::string_view who, bool required = true) const;
  [[nodiscard]] std::int64_t integer(std::size_t i, field_ref f) const noexcept {
    const std::byte* p = data + i * itemsize + f.offset;
    switch (f.code) {
      case 'q': { std::int64_t v; std::memcpy(&v, p, 8); return v; }
      case 'i': { std::int32_t v; std::memcpy(&v, p, 4); return v; }
      case 'Q': { std::uint64_t v; std::memcpy(&v, p, 8); return v > INT64_MAX ? -1 : static_cast<std::int64_t>(v); }
      case 'I': { std::uint32_t v; std::memcpy(&v, p, 4); return v; }
      case 'B': return static_cast<std::int64_t>(std::to_integer<std::uint8_t>(*p));
      default: return 0;
    }
  }
  [[nodiscard]] double real(std::size_t i, field_ref f) const noexcept {
    double v;
    std::memcpy(&v, data + i * itemsize + f.offset, 8);
    return v;
  }
};
/// A 1-d structured array node as records (errc::bad_state if it is anything else).
result<records> read_records(const pyobj::node& arr, std::string_view who);

/// One field of a record layout the compiled code of scikit-learn expects.
struct layout_field {
  std::string_view name, dtype;
  std::uint64_t offset;
};
/// sklearn.tree._tree.NODE_DTYPE (64 bytes; before sklearn 1.3, 56 bytes without
/// missing_go_to_left).
extern const std::vector<layout_field> sk_node_layout;
/// sklearn.ensemble._hist_gradient_boosting.common.PREDICTOR_RECORD_DTYPE (56 bytes, packed).
extern const std::vector<layout_field> hgb_node_layout;
/// The records must have exactly `layout` (names, order, dtypes, offsets) and `itemsize`:
/// scikit-learn converts node arrays by field position, so a file whose fields are declared in
/// another order would be read one way here and another way by scikit-learn. `optional_tail`
/// trailing fields may be absent (older layouts), the itemsize then being the last offset's end.
result<void> check_layout(const records& r, const std::vector<layout_field>& layout, std::size_t itemsize, std::size_t optional_tail,
                          std::string_view who);

/// A validated sklearn `Tree` (sklearn.tree._tree.Tree) as read from the object graph.
struct sk_tree {
  std::int64_t n_features = 0;
  std::int64_t n_outputs = 0;
  std::int64_t max_n_classes = 0;
  std::vector<std::int64_t> n_classes;          ///< per output
  std::vector<sk_node> nodes;
  std::vector<std::int64_t> n_node_samples;     ///< per node (IsolationForest path lengths)
  tensor<double> values;                        ///< (node_count, n_outputs, max_n_classes)
  [[nodiscard]] const double* value(std::size_t node_id) const noexcept {
    return values.p + node_id * static_cast<std::size_t>(n_outputs * max_n_classes);
  }
};

/// Read and check the Tree object `tree` (errc::bad_state on any broken invariant).
result<sk_tree> read_sk_tree(const pyobj::node& tree, std::string_view who);

/// The `tree_` of a fitted DecisionTree*/ExtraTree* estimator object.
result<sk_tree> read_estimator_tree(const pyobj::node& est, std::string_view who);

/// (major, minor) of the `_sklearn_version` recorded in an estimator's state; (99, 0) when
/// absent (treated as current).
std::pair<int, int> sklearn_version(const pyobj::node& est);

/// numpy's pairwise float64 summation of a contiguous run (np.sum along a contiguous axis).
double np_pairwise_sum(const double* a, std::size_t n) noexcept;

/// Many sklearn trees in one node array (forests, boosting stages), each leaf carrying
/// `width` doubles.
struct packed_trees {
  std::vector<tree_node> nodes;
  std::vector<std::uint32_t> roots;
  std::vector<std::uint32_t> depths;   ///< per tree: edges on its longest root-leaf path
  std::vector<double> values;
  std::size_t width = 0;
  std::int32_t n_features = 0;   ///< every feature index is < n_features

  /// Append tree `t`. `leaf(node_id, out)` writes the `width` values of a leaf.
  /// `feature_map` (optional, size t.n_features) maps the tree's features to input columns.
  template <class LeafFn>
  result<void> append(const sk_tree& t, LeafFn&& leaf, const std::vector<std::int32_t>* feature_map = nullptr);
};

/// One step from node i: the child row `x` goes to (i itself at a leaf).
template <class Row>
inline std::uint32_t step(const tree_node* nodes, std::uint32_t i, const Row& x) noexcept {
  const tree_node& n = nodes[i];
  const float v = x(static_cast<std::int32_t>(n.feature & ~missing_left_bit));
  // Branch-free: v <= threshold, or NaN with missing_go_to_left.
  const bool go_left = (v <= n.threshold) | (std::isnan(v) & ((n.feature & missing_left_bit) != 0));
  return n.child[go_left ? 0 : 1];
}

/// The value row of the leaf that row `x` reaches from `root`. Row accessors return the
/// feature as float (sklearn's float32 input). Ends: inner nodes only lead forward.
template <class Row>
inline const double* walk(const packed_trees& pt, std::uint32_t root, const Row& x) noexcept {
  const tree_node* nodes = pt.nodes.data();
  std::uint32_t i = root;
  for (;;) {
    const std::uint32_t next = step(nodes, i, x);
    if (next == i) return pt.values.data() + leaf_offset(nodes[i]);
    i = next;
  }
}

/// Row accessors converting to float32 as numpy's astype(float32) does (round to nearest).
struct row_f64 {
  const double* p;
  float operator()(std::int32_t f) const noexcept { return static_cast<float>(p[f]); }
};
struct row_f32 {
  const float* p;
  float operator()(std::int32_t f) const noexcept { return p[f]; }
};

/// Reject what sklearn's validate_data(dtype=float32, ensure_all_finite=...) rejects:
/// infinity (or a float64 too large for float32) always, NaN unless allow_nan.
result<void> check_float32_input(const matrix_view& x, bool allow_nan, std::string_view who);
result<void> check_float32_row(std::span<const double> row, bool allow_nan, std::string_view who);

/// Rows per block of the trees-outer batch loops: the block's rows (as float32) stay in the
/// L2 cache while every tree walks them; a multiple of the walk group.
inline std::size_t block_rows_for(std::size_t n_features) noexcept {
  std::size_t b = (32768 / std::max<std::size_t>(n_features, 1)) & ~std::size_t{7};
  return std::clamp<std::size_t>(b, 8, 2048);
}

/// Walks rows in groups of this many at once: independent walks overlap their memory latency.
inline constexpr std::size_t walk_group = 8;

/// Calls add(row, tree_index, leaf_values) for every tree in order and every row, trees-outer
/// over blocks of rows: per row the calls come in tree order, as sklearn adds them.
template <class Add>
void for_each_leaf(const packed_trees& pt, const matrix_view& x, Add&& add) {
  const std::size_t n = x.rows(), nf = x.cols(), stride = x.row_stride();
  const std::size_t block = block_rows_for(nf);
  std::vector<float> buf(std::min(n, block) * std::max<std::size_t>(nf, 1));
  const tree_node* nodes = pt.nodes.data();
  const double* values = pt.values.data();
  for (std::size_t r0 = 0; r0 < n; r0 += block) {
    const std::size_t r1 = std::min(n, r0 + block);
    for (std::size_t r = r0; r < r1; ++r) {
      float* dst = buf.data() + (r - r0) * nf;
      if (x.is_float32()) std::memcpy(dst, x.f32() + r * stride, nf * sizeof(float));
      else for (std::size_t c = 0; c < nf; ++c) dst[c] = static_cast<float>(x.f64()[r * stride + c]);
    }
    for (std::size_t t = 0; t < pt.roots.size(); ++t) {
      const std::uint32_t root = pt.roots[t];
      // walk_group walks in lockstep (leaves step to themselves): their memory latencies
      // overlap. (Handing a finished walk's slot to the next row measured slower.)
      std::size_t r = r0;
      for (; r + walk_group <= r1; r += walk_group) {
        std::uint32_t idx[walk_group];
        const float* rows[walk_group];
        for (std::size_t j = 0; j < walk_group; ++j) {
          idx[j] = root;
          rows[j] = buf.data() + (r + j - r0) * nf;
        }
        if (pt.depths[t] <= 8) {
          // Shallow trees (boosting): a fixed number of steps, no test for the end.
          for (std::uint32_t d = 0; d < pt.depths[t]; ++d)
            for (std::size_t j = 0; j < walk_group; ++j) idx[j] = step(nodes, idx[j], row_f32{rows[j]});
        } else {
          for (;;) {
            bool moved = false;
            for (std::size_t j = 0; j < walk_group; ++j) {
              const std::uint32_t next = step(nodes, idx[j], row_f32{rows[j]});
              moved |= next != idx[j];
              idx[j] = next;
            }
            if (!moved) break;
          }
        }
        for (std::size_t j = 0; j < walk_group; ++j) add(r + j, t, values + leaf_offset(nodes[idx[j]]));
      }
      for (; r < r1; ++r) add(r, t, walk(pt, root, row_f32{buf.data() + (r - r0) * nf}));
    }
  }
}

/// Index of the first maximum, as np.argmax (the outputs it is used on hold no NaN).
inline std::size_t argmax(const double* p, std::size_t n) noexcept {
  std::size_t best = 0;
  for (std::size_t i = 1; i < n; ++i)
    if (p[i] > p[best]) best = i;
  return best;
}

/// Whether sklearn 1.9 accepts NaN in X for this fitted tree estimator (DecisionTree*: yes;
/// ExtraTree*: only with splitter='random').
bool tree_allows_nan(const pyobj::node& est);

/// The estimator for DecisionTree* (`trees` = {obj}, forest = false) and RandomForest* /
/// ExtraTrees* (`trees` = estimators_, forest = true: per-tree outputs summed in order, then
/// divided by the number of trees). Multi-output classifiers are unsupported_model.
result<estimator_ptr> build_tree_model(const pyobj::node& obj, const std::vector<const pyobj::node*>& trees, bool forest);

template <class LeafFn>
result<void> packed_trees::append(const sk_tree& t, LeafFn&& leaf, const std::vector<std::int32_t>* feature_map) {
  const std::size_t base = nodes.size();
  if (base + t.nodes.size() >= UINT32_MAX)
    return fail(errc::limit_exceeded, "tree ensemble has more than 2^32 nodes");
  roots.push_back(static_cast<std::uint32_t>(base));
  // Node depths in one forward pass (children come after their parent).
  std::vector<std::uint32_t> depth(t.nodes.size(), 0);
  std::uint32_t max_depth = 0;
  for (std::size_t id = 0; id < t.nodes.size(); ++id) {
    const sk_node& src = t.nodes[id];
    max_depth = std::max(max_depth, depth[id]);
    if (src.feature >= 0) depth[src.left] = depth[src.right] = depth[id] + 1;
  }
  depths.push_back(max_depth);
  for (std::size_t id = 0; id < t.nodes.size(); ++id) {
    const sk_node& src = t.nodes[id];
    tree_node n;
    const auto self = static_cast<std::uint32_t>(base + id);
    if (src.feature < 0) {
      const std::size_t off = values.size();
      if (off + width >= UINT32_MAX) return fail(errc::limit_exceeded, "tree ensemble has more than 2^32 leaf values");
      values.resize(off + width);
      leaf(id, values.data() + off);
      n.feature = 0;
      n.child[0] = n.child[1] = self;
      n.threshold = leaf_bits(static_cast<std::uint32_t>(off));
    } else {
      std::int32_t f = src.feature;
      if (feature_map) {
        if (static_cast<std::size_t>(f) >= feature_map->size())
          return fail(errc::bad_state, "tree feature outside its feature subset");
        f = (*feature_map)[static_cast<std::size_t>(f)];
      }
      if (f < 0 || f >= n_features)
        return fail(errc::bad_state, "tree feature index " + std::to_string(f) + " out of range");
      n.feature = static_cast<std::uint32_t>(f) | (src.missing_left ? missing_left_bit : 0u);
      n.threshold = largest_float_le(src.threshold);
      n.child[0] = static_cast<std::uint32_t>(base + src.left);
      n.child[1] = static_cast<std::uint32_t>(base + src.right);
    }
    nodes.push_back(n);
  }
  return {};
}

}  // namespace vitrify::runtime::trees
