// src/runtime/tree.cpp - decision trees (DecisionTree*/ExtraTree*), and the shared pieces of
// tree_walk.hpp: reading sklearn `Tree` objects into flat node arrays, input checks, and the
// estimator that forests (ensemble.cpp) reuse.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "runtime/estimator.hpp"
#include "runtime/tree_walk.hpp"

namespace vitrify::runtime {

using pyobj::node;

namespace trees {

// ---- structured arrays ----

result<records> read_records(const node& arr, std::string_view who) {
  if (arr.k != node::kind::array || !arr.arr || arr.arr->fields.empty())
    return state_error(who, "expected a structured array of node records");
  const auto& a = *arr.arr;
  if (a.shape.size() != 1) return state_error(who, "node records must be a 1-d array");
  records r;
  r.count = static_cast<std::size_t>(a.shape[0]);
  r.itemsize = static_cast<std::size_t>(a.itemsize);
  if (r.itemsize == 0 || a.data.size() != r.count * r.itemsize)
    return state_error(who, "node record data size does not match its shape");
  r.data = a.data.data();
  r.fields = &a.fields;
  return r;
}

result<records::field_ref> records::field(std::string_view name, bool want_float, std::string_view who, bool required) const {
  for (const auto& f : *fields) {
    if (f.name != name) continue;
    field_ref ref;
    ref.offset = f.offset;
    std::size_t size = 0;
    if (want_float) {
      if (f.dtype == "<f8") { ref.code = 'd'; size = 8; }
    } else if (f.dtype == "<i8") { ref.code = 'q'; size = 8; }
    else if (f.dtype == "<i4") { ref.code = 'i'; size = 4; }
    else if (f.dtype == "<u8") { ref.code = 'Q'; size = 8; }
    else if (f.dtype == "<u4") { ref.code = 'I'; size = 4; }
    else if (f.dtype == "|u1" || f.dtype == "|b1" || f.dtype == "u1") { ref.code = 'B'; size = 1; }
    if (ref.code == 0)
      return state_error(who, "node field '" + std::string(name) + "' has the unexpected dtype " + f.dtype);
    if (f.offset + size > itemsize) return state_error(who, "node field '" + std::string(name) + "' lies outside its record");
    return ref;
  }
  if (required) return state_error(who, "node records lack the field '" + std::string(name) + "'");
  return field_ref{};
}

const std::vector<layout_field> sk_node_layout = {
    {"left_child", "<i8", 0}, {"right_child", "<i8", 8}, {"feature", "<i8", 16}, {"threshold", "<f8", 24},
    {"impurity", "<f8", 32}, {"n_node_samples", "<i8", 40}, {"weighted_n_node_samples", "<f8", 48},
    {"missing_go_to_left", "|u1", 56}};
const std::vector<layout_field> hgb_node_layout = {
    {"value", "<f8", 0}, {"count", "<u4", 8}, {"feature_idx", "<i8", 12}, {"num_threshold", "<f8", 20},
    {"missing_go_to_left", "|u1", 28}, {"left", "<u4", 29}, {"right", "<u4", 33}, {"gain", "<f8", 37},
    {"depth", "<u4", 45}, {"is_leaf", "|u1", 49}, {"bin_threshold", "|u1", 50}, {"is_categorical", "|u1", 51},
    {"bitset_idx", "<u4", 52}};

result<void> check_layout(const records& r, const std::vector<layout_field>& layout, std::size_t itemsize, std::size_t optional_tail,
                          std::string_view who) {
  const auto& f = *r.fields;
  const std::size_t n = f.size();
  bool ok = n <= layout.size() && n + optional_tail >= layout.size();
  for (std::size_t i = 0; ok && i < n; ++i)
    ok = f[i].name == layout[i].name && f[i].dtype == layout[i].dtype && f[i].offset == layout[i].offset;
  // A shortened (older) layout ends where the record ends, padded to 8 bytes as numpy aligned it.
  const std::size_t want = n == layout.size() ? itemsize : static_cast<std::size_t>(layout[n].offset);
  if (!ok || r.itemsize != want) {
    std::string got;
    for (const auto& x : f) got += (got.empty() ? "" : ", ") + x.name + ":" + x.dtype + "@" + std::to_string(x.offset);
    return state_error(who, "node records do not have scikit-learn's node dtype (got " + got + ", itemsize " + std::to_string(r.itemsize) + ")");
  }
  return {};
}

// ---- sklearn Tree ----

result<sk_tree> read_sk_tree(const node& tn, std::string_view who) {
  if (tn.k != node::kind::object || !tn.obj || tn.obj->type != "sklearn.tree._tree.Tree")
    return state_error(who, "tree_ is not a sklearn.tree._tree.Tree");
  const auto& o = *tn.obj;
  if (o.args.size() == 4)
    return unsupported_error(who, "trees with categorical splits (Tree.n_categories) are not supported");
  if (o.args.size() != 3) return state_error(who, "Tree expects 3 constructor arguments");
  sk_tree t;
  auto nf = as_integer(*o.args[0], std::string(who) + ".tree_.n_features");
  if (!nf) return std::move(nf).err();
  auto no = as_integer(*o.args[2], std::string(who) + ".tree_.n_outputs");
  if (!no) return std::move(no).err();
  if (*nf < 0 || *nf > INT32_MAX) return state_error(who, "Tree.n_features out of range");
  if (*no < 1 || *no > (1 << 20)) return state_error(who, "Tree.n_outputs out of range");
  t.n_features = *nf;
  t.n_outputs = *no;
  auto nc = as_tensor<std::int64_t>(*o.args[1], std::string(who) + ".tree_.n_classes", 1);
  if (!nc) return std::move(nc).err();
  if (static_cast<std::int64_t>(nc->size()) != t.n_outputs) return state_error(who, "Tree.n_classes has not n_outputs entries");
  for (std::size_t k = 0; k < nc->size(); ++k) {
    if ((*nc)[k] < 1 || (*nc)[k] > (1 << 24)) return state_error(who, "Tree.n_classes out of range");
    t.n_classes.push_back((*nc)[k]);
    t.max_n_classes = std::max(t.max_n_classes, (*nc)[k]);
  }
  const node* nodes = tn.attr("nodes");
  if (!nodes) return state_error(who, "Tree state lacks 'nodes'");
  auto rec = read_records(*nodes, std::string(who) + ".tree_.nodes");
  if (!rec) return std::move(rec).err();
  const std::size_t count = rec->count;
  if (count == 0) return state_error(who, "Tree has no nodes");
  if (count >= UINT32_MAX) return fail(errc::limit_exceeded, std::string(who) + ": tree has too many nodes");
  if (const node* nc_attr = opt_attr(tn, "node_count")) {
    auto v = as_integer(*nc_attr, std::string(who) + ".tree_.node_count");
    if (!v) return std::move(v).err();
    if (*v != static_cast<std::int64_t>(count)) return state_error(who, "Tree.node_count disagrees with the node array");
  }
  const std::string nw = std::string(who) + ".tree_.nodes";
  VITRIFY_TRY(check_layout(*rec, sk_node_layout, 64, 1, nw));
  auto f_left = rec->field("left_child", false, nw);
  if (!f_left) return std::move(f_left).err();
  auto f_right = rec->field("right_child", false, nw);
  if (!f_right) return std::move(f_right).err();
  auto f_feat = rec->field("feature", false, nw);
  if (!f_feat) return std::move(f_feat).err();
  auto f_thr = rec->field("threshold", true, nw);
  if (!f_thr) return std::move(f_thr).err();
  auto f_ns = rec->field("n_node_samples", false, nw);
  if (!f_ns) return std::move(f_ns).err();
  auto f_miss = rec->field("missing_go_to_left", false, nw, false);  // absent before sklearn 1.3
  if (!f_miss) return std::move(f_miss).err();
  t.nodes.resize(count);
  t.n_node_samples.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t l = rec->integer(i, *f_left), r = rec->integer(i, *f_right);
    sk_node& n = t.nodes[i];
    t.n_node_samples[i] = rec->integer(i, *f_ns);
    if (l == -1 || r == -1) {
      if (l != r) return state_error(who, "tree node " + std::to_string(i) + " has only one child");
      n.feature = -1;
      n.left = n.right = static_cast<std::uint32_t>(i);
      continue;
    }
    // Children strictly after their parent: every walk moves forward, so it ends.
    if (l <= static_cast<std::int64_t>(i) || r <= static_cast<std::int64_t>(i) ||
        l >= static_cast<std::int64_t>(count) || r >= static_cast<std::int64_t>(count))
      return state_error(who, "tree node " + std::to_string(i) + " has a child index out of range");
    const std::int64_t f = rec->integer(i, *f_feat);
    if (f < 0 || f >= t.n_features) return state_error(who, "tree node " + std::to_string(i) + " splits on feature " + std::to_string(f) + ", out of range");
    n.feature = static_cast<std::int32_t>(f);
    n.threshold = rec->real(i, *f_thr);
    n.left = static_cast<std::uint32_t>(l);
    n.right = static_cast<std::uint32_t>(r);
    n.missing_left = f_miss->code ? static_cast<std::uint8_t>(rec->integer(i, *f_miss) != 0) : 0;
  }
  // Every node but the root has exactly one parent (a tree, not a graph), and max_depth is the
  // real depth: scikit-learn sizes decision_path's buffers from it.
  {
    std::vector<std::uint32_t> depth(count, 0), parents(count, 0);
    std::uint32_t real_depth = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const sk_node& n = t.nodes[i];
      if (n.feature < 0) continue;
      for (std::uint32_t c : {n.left, n.right}) {
        if (++parents[c] > 1) return state_error(who, "tree node " + std::to_string(c) + " has two parents");
        depth[c] = depth[i] + 1;
        real_depth = std::max(real_depth, depth[c]);
      }
    }
    for (std::size_t i = 1; i < count; ++i)
      if (parents[i] != 1) return state_error(who, "tree node " + std::to_string(i) + " is not reachable from the root");
    if (const node* md = opt_attr(tn, "max_depth")) {
      auto v = as_integer(*md, std::string(who) + ".tree_.max_depth");
      if (!v) return std::move(v).err();
      if (*v != static_cast<std::int64_t>(real_depth))
        return state_error(who, "Tree.max_depth " + std::to_string(*v) + " disagrees with the tree's depth " + std::to_string(real_depth));
    }
  }
  const node* values = tn.attr("values");
  if (!values) return state_error(who, "Tree state lacks 'values'");
  auto v = as_tensor<double>(*values, std::string(who) + ".tree_.values", 3);
  if (!v) return std::move(v).err();
  if (v->dim(0) != count || static_cast<std::int64_t>(v->dim(1)) != t.n_outputs ||
      static_cast<std::int64_t>(v->dim(2)) != t.max_n_classes)
    return state_error(who, "Tree.values shape disagrees with (node_count, n_outputs, max_n_classes)");
  t.values = std::move(v).value();
  return t;
}

result<sk_tree> read_estimator_tree(const node& est, std::string_view who) {
  auto tr = need_attr(est, "tree_");
  if (!tr) return std::move(tr).err();
  return read_sk_tree(**tr, who);
}

std::pair<int, int> sklearn_version(const node& est) {
  const node* v = opt_attr(est, "_sklearn_version");
  if (!v || v->k != node::kind::string) return {99, 0};
  int major = 0, minor = 0;
  const char* p = v->text.data();
  const char* end = p + v->text.size();
  auto r = std::from_chars(p, end, major);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != '.') return {99, 0};
  r = std::from_chars(r.ptr + 1, end, minor);
  if (r.ec != std::errc()) return {99, 0};
  return {major, minor};
}

double np_pairwise_sum(const double* a, std::size_t n) noexcept {
  // numpy/_core/src/umath/loops_utils.h.src, DOUBLE_pairwise_sum (PW_BLOCKSIZE 128).
  if (n < 8) {
    double res = -0.0;
    for (std::size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

// ---- input checks ----

namespace {
error nonfinite_error(std::string_view who, bool nan) {
  return fail(errc::invalid_argument, nan ? "Input X contains NaN; " + std::string(who) + " does not accept missing values"
                                          : "Input X contains infinity or a value too large for dtype('float32') (" + std::string(who) + ")");
}
}  // namespace

result<void> check_float32_row(std::span<const double> row, bool allow_nan, std::string_view who) {
  for (double d : row) {
    const float f = static_cast<float>(d);
    if (std::isinf(f)) return nonfinite_error(who, false);
    if (!allow_nan && std::isnan(f)) return nonfinite_error(who, true);
  }
  return {};
}

result<void> check_float32_input(const matrix_view& x, bool allow_nan, std::string_view who) {
  const std::size_t n = x.rows(), c = x.cols(), s = x.row_stride();
  for (std::size_t r = 0; r < n; ++r) {
    if (x.is_float32()) {
      const float* p = x.f32() + r * s;
      for (std::size_t j = 0; j < c; ++j) {
        if (std::isinf(p[j])) return nonfinite_error(who, false);
        if (!allow_nan && std::isnan(p[j])) return nonfinite_error(who, true);
      }
    } else {
      VITRIFY_TRY(check_float32_row(std::span<const double>(x.f64() + r * s, c), allow_nan, who));
    }
  }
  return {};
}

bool tree_allows_nan(const node& est) {
  std::string_view t = est.type_name();
  if (t == "sklearn.tree.ExtraTreeClassifier" || t == "sklearn.tree.ExtraTreeRegressor") {
    const node* s = opt_attr(est, "splitter");
    return s && s->k == node::kind::string && s->text == "random";
  }
  return true;
}

// ---- the decision tree / forest estimator ----

namespace {

bool is_tree_type(std::string_view t) {
  return t == "sklearn.tree.DecisionTreeClassifier" || t == "sklearn.tree.DecisionTreeRegressor" ||
         t == "sklearn.tree.ExtraTreeClassifier" || t == "sklearn.tree.ExtraTreeRegressor";
}

class tree_model final : public estimator {
 public:
  packed_trees pt;
  std::size_t n_out = 1;   // values per leaf: n_classes (classifier) or n_outputs (regressor)
  bool forest = false;     // sum per tree in order, then divide by the number of trees
  bool allow_nan = true;

  [[nodiscard]] std::size_t width(method m) const override {
    if (m == method::predict && is_classifier) return 1;
    return n_out;
  }

  // Outputs for `n` rows: per-row `n_out` values into out (row stride n_out).
  template <class Row>
  void one_row(const Row& row, double* out) const noexcept {
    if (!forest) {
      const double* v = walk(pt, pt.roots[0], row);
      std::memcpy(out, v, n_out * sizeof(double));
      return;
    }
    for (std::size_t k = 0; k < n_out; ++k) out[k] = 0.0;
    for (std::uint32_t root : pt.roots) {
      const double* v = walk(pt, root, row);
      for (std::size_t k = 0; k < n_out; ++k) out[k] += v[k];
    }
    const double n_trees = static_cast<double>(pt.roots.size());
    for (std::size_t k = 0; k < n_out; ++k) out[k] /= n_trees;
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, short_name(type));
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    VITRIFY_TRY(check_float32_input(x, allow_nan, short_name(type)));
    dense out(x.rows(), n_out, 0.0);
    const std::size_t w = n_out;
    if (!forest) {
      for_each_leaf(pt, x, [&](std::size_t r, std::size_t, const double* v) { std::memcpy(out.row(r), v, w * sizeof(double)); });
    } else {
      for_each_leaf(pt, x, [&](std::size_t r, std::size_t, const double* v) {
        double* o = out.row(r);
        for (std::size_t k = 0; k < w; ++k) o[k] += v[k];
      });
      const double n_trees = static_cast<double>(pt.roots.size());
      for (double& d : out.v) d /= n_trees;
    }
    if (m == method::predict && is_classifier) {
      dense idx(x.rows(), 1);
      for (std::size_t r = 0; r < x.rows(); ++r) idx(r, 0) = static_cast<double>(argmax(out.row(r), w));
      return idx;
    }
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    VITRIFY_TRY(check_float32_row(row, allow_nan, short_name(type)));
    if (m == method::predict && is_classifier) {
      // The class count is small in practice; larger ones take the allocating path.
      if (n_out > 256) return estimator::run_row(m, row, out);
      double buf[256];
      one_row(row_f64{row.data()}, buf);
      out[0] = static_cast<double>(argmax(buf, n_out));
      return {};
    }
    one_row(row_f64{row.data()}, out.data());
    return {};
  }
};

}  // namespace

result<estimator_ptr> build_tree_model(const node& obj, const std::vector<const node*>& tree_objs, bool forest) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<tree_model>();
  e->forest = forest;
  VITRIFY_TRY(read_feature_info(obj, *e));
  std::int64_t n_outputs = 1;
  if (const node* no = opt_attr(obj, "n_outputs_")) {
    auto v = as_integer(*no, who + ".n_outputs_");
    if (!v) return std::move(v).err();
    n_outputs = *v;
  }
  const node* classes = opt_attr(obj, "classes_");
  const bool classifier = classes != nullptr;
  if (classifier && n_outputs != 1)
    return unsupported_error(who, "multi-output classification (n_outputs_ = " + std::to_string(n_outputs) + ") is not supported");
  if (n_outputs < 1 || n_outputs > (1 << 20)) return state_error(who, "n_outputs_ out of range");
  if (classifier) VITRIFY_TRY(read_classes(*classes, *e, who));
  if (tree_objs.empty()) return state_error(who, "the ensemble has no trees");
  // >= 1: the walkers read column 0 at leaves.
  if (e->n_features < 1) return state_error(who, "n_features_in_ is missing or zero");
  if (e->n_features > INT32_MAX) return state_error(who, "n_features_in_ out of range");
  const std::size_t n_classes = classifier ? e->classes.size() : 0;
  e->n_out = classifier ? n_classes : static_cast<std::size_t>(n_outputs);
  e->pt.width = e->n_out;
  e->pt.n_features = static_cast<std::int32_t>(e->n_features);
  e->allow_nan = tree_allows_nan(*tree_objs[0]);
  for (std::size_t i = 0; i < tree_objs.size(); ++i) {
    const node& te = *tree_objs[i];
    const std::string tw = forest ? who + ".estimators_[" + std::to_string(i) + "]" : who;
    if (te.k != node::kind::object || !is_tree_type(te.type_name()))
      return unsupported_error(tw, "expected a DecisionTree or ExtraTree estimator, found " + std::string(te.type_name()));
    auto t = read_estimator_tree(te, tw);
    if (!t) return std::move(t).err();
    if (t->n_features != e->n_features) return state_error(tw, "tree n_features disagrees with n_features_in_");
    if (t->n_outputs != n_outputs) return state_error(tw, "tree n_outputs disagrees with n_outputs_");
    if (classifier) {
      if (static_cast<std::size_t>(t->n_classes[0]) != n_classes) return state_error(tw, "tree n_classes disagrees with classes_");
      // sklearn < 1.4 stored weighted class counts and normalised them at predict time
      // (tree predict_proba: p / p.sum(axis=1), zero sums left alone); 1.4+ stores fractions.
      const bool counts = sklearn_version(te) < std::pair<int, int>{1, 4};
      const sk_tree& tr = *t;
      VITRIFY_TRY(e->pt.append(tr, [&](std::size_t id, double* out) {
        const double* v = tr.value(id);
        std::memcpy(out, v, n_classes * sizeof(double));
        if (counts) {
          double s = np_pairwise_sum(v, n_classes);
          if (s == 0.0) s = 1.0;
          for (std::size_t k = 0; k < n_classes; ++k) out[k] /= s;
        }
      }));
    } else {
      const sk_tree& tr = *t;
      const std::size_t stride = static_cast<std::size_t>(tr.max_n_classes);
      VITRIFY_TRY(e->pt.append(tr, [&](std::size_t id, double* out) {
        const double* v = tr.value(id);
        for (std::size_t k = 0; k < static_cast<std::size_t>(n_outputs); ++k) out[k] = v[k * stride];
      }));
    }
  }
  e->methods = method_bit(method::predict) | (classifier ? method_bit(method::predict_proba) : 0u);
  return estimator_ptr(std::move(e));
}

}  // namespace trees

namespace {

result<estimator_ptr> build_decision_tree(const node& obj, build_context&) {
  return trees::build_tree_model(obj, {&obj}, false);
}

}  // namespace

void register_tree(registry& r) {
  for (const char* t : {"sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor",
                        "sklearn.tree.ExtraTreeClassifier", "sklearn.tree.ExtraTreeRegressor"})
    r.add(t, build_decision_tree);
}

}  // namespace vitrify::runtime
