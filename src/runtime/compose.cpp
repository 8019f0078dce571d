// src/runtime/compose.cpp - Pipeline, ColumnTransformer and FeatureUnion.
//
// They only route data: every number comes from the steps, so a composition is bit-exact
// whenever its steps are. Between steps data flows as float64 (`dense`), as float32 when the
// input was float32 and every step so far keeps float32 like scikit-learn (steps.hpp), or as a
// table while text flows (a SimpleImputer on strings before an encoder).
#include <algorithm>
#include <unordered_map>

#include "runtime/estimator.hpp"
#include "runtime/steps.hpp"

namespace vitrify::runtime {

using pyobj::node;

namespace {

bool is_str(const node& n, std::string_view s) { return n.k == node::kind::string && n.text == s; }

/// (name, value...) tuple items, with the name a str.
result<std::vector<const node*>> named_tuple(const node& n, std::size_t arity, std::string_view who) {
  if ((n.k != node::kind::tuple && n.k != node::kind::list) || n.items.size() != arity || n.items[0]->k != node::kind::string)
    return state_error(who, "expected (name, ...) tuples of " + std::to_string(arity) + " items");
  return std::vector<const node*>(n.items.begin(), n.items.end());
}

result<std::unordered_map<std::string, double>> read_weights(const node& obj, std::string_view who) {
  std::unordered_map<std::string, double> w;
  const node* tw = opt_attr(obj, "transformer_weights");
  if (!tw) return w;
  if (tw->k != node::kind::dict) return state_error(who, "transformer_weights must be a dict");
  for (const auto& [k, v] : tw->entries) {
    if (k->k != node::kind::string) return state_error(who, "transformer_weights keys must be names");
    auto d = as_number(*v, std::string(who) + ".transformer_weights");
    if (!d) return std::move(d).err();
    w[k->text] = *d;
  }
  return w;
}

/// Data between steps: a view of the caller's input, or owned float64 / float32 / table data.
struct flow {
  input cur;
  dense d;
  std::vector<float> f;
  table t;
  explicit flow(const input& x) : cur(x) {}

  /// Replace the current data by a step's output.
  void take(dense&& out, bool as_float32) {
    d = std::move(out);
    if (as_float32) {
      f = to_float32(d);
      cur = input(matrix_view(f.data(), d.rows, d.cols));
    } else {
      cur = input(d.view());
    }
  }
  void take(table&& out) {
    t = std::move(out);
    cur = input(t);
  }
  bool float32() const { return !cur.is_table() && cur.matrix().is_float32(); }
};

/// Run transformer `e` on the flow's data and make its output the new data.
result<void> advance(flow& fl, const estimator& e) {
  if (fl.cur.is_table()) {
    if (const step_estimator* ts = table_step(e)) {
      auto t = ts->run_table(fl.cur.tbl());
      if (!t) return std::move(t).err();
      fl.take(std::move(t).value());
      return {};
    }
  }
  const bool in32 = fl.float32();
  auto r = e.run(method::transform, fl.cur);
  if (!r) return std::move(r).err();
  fl.take(std::move(r).value(), in32 && keeps_float32(e));
  return {};
}

/// The flow's current data as an owned float64 matrix.
result<dense> materialize(flow& fl, std::string_view who) {
  if (fl.cur.is_table()) return table_to_dense(fl.cur.tbl(), who);
  const matrix_view& v = fl.cur.matrix();
  if (!v.is_float32() && v.f64() == fl.d.v.data() && v.rows() == fl.d.rows && v.cols() == fl.d.cols) return std::move(fl.d);
  dense out(v.rows(), v.cols());
  for (std::size_t r = 0; r < v.rows(); ++r)
    for (std::size_t c = 0; c < v.cols(); ++c) out(r, c) = v.at(r, c);
  return out;
}

// Row buffers of the allocation-free run_row paths (on the stack).
constexpr std::size_t row_buffer = 512;

// ==========================================================================================
// Pipeline
// ==========================================================================================

class pipeline final : public step_estimator {
 public:
  std::vector<estimator_ptr> transforms;  // every step but the last, without passthrough / None
  estimator_ptr last;                     // null when the last step is passthrough / None

  std::size_t width(method m) const override {
    if (last) return last->width(m);
    if (!transforms.empty()) return transforms.back()->width(method::transform);
    return n_features >= 0 ? static_cast<std::size_t>(n_features) : 0;
  }

  result<dense> run(method m, const input& x) const override {
    flow fl(x);
    for (const auto& s : transforms) VITRIFY_TRY(advance(fl, *s));
    if (last) {
      if (m == method::transform) {
        VITRIFY_TRY(advance(fl, *last));
        return materialize(fl, "Pipeline");
      }
      return last->run(m, fl.cur);
    }
    return materialize(fl, "Pipeline");
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    double buf[2][row_buffer];
    std::span<const double> in = row;
    for (std::size_t i = 0; i < transforms.size(); ++i) {
      const std::size_t w = transforms[i]->width(method::transform);
      if (w == 0 || w > row_buffer) return estimator::run_row(m, row, out);
    }
    for (std::size_t i = 0; i < transforms.size(); ++i) {
      const std::size_t w = transforms[i]->width(method::transform);
      std::span<double> o(buf[i % 2], w);
      VITRIFY_TRY(transforms[i]->run_row(method::transform, in, o));
      in = o;
    }
    if (last) return last->run_row(m, in, out);
    if (in.size() != out.size()) return fail(errc::invalid_argument, "Pipeline: output buffer has the wrong size");
    std::copy(in.begin(), in.end(), out.begin());
    return {};
  }
};

result<estimator_ptr> build_pipeline(const node& obj, build_context& ctx) {
  constexpr std::string_view who = "Pipeline";
  auto e = std::make_shared<pipeline>();
  auto st = need_attr(obj, "steps");
  if (!st) return std::move(st).err();
  const node& steps = **st;
  if ((steps.k != node::kind::list && steps.k != node::kind::tuple) || steps.items.empty())
    return state_error(who, "steps must be a non-empty list");
  const estimator* first = nullptr;
  bool all_f32 = true;
  for (std::size_t i = 0; i < steps.items.size(); ++i) {
    auto t = named_tuple(*steps.items[i], 2, who);
    if (!t) return std::move(t).err();
    const node& s = *(*t)[1];
    const bool is_last = i + 1 == steps.items.size();
    if (s.k == node::kind::none || is_str(s, "passthrough")) continue;
    auto b = ctx.build(s);
    if (!b) return std::move(b).err();
    estimator_ptr p = std::move(b).value();
    if (!first) first = p.get();
    e->needs_table = e->needs_table || p->needs_table;
    all_f32 = all_f32 && keeps_float32(*p);
    if (is_last) {
      e->last = std::move(p);
    } else {
      if (!p->supports(method::transform))
        return state_error(who, "step '" + (*t)[0]->text + "' (" + std::string(short_name(p->type)) + ") has no transform");
      e->transforms.push_back(std::move(p));
    }
  }
  if (e->last) {
    e->methods = e->last->methods;
    if (e->last->supports(method::transform)) e->methods |= method_bit(method::transform);
    e->is_classifier = e->last->is_classifier;
    e->classes = e->last->classes;
    e->string_classes = e->last->string_classes;
    e->class_values = e->last->class_values;
  } else {
    e->methods = method_bit(method::transform);
  }
  e->keeps_float32 = all_f32 && (!e->last || e->last->supports(method::transform));
  if (first) {
    e->n_features = first->n_features;
    e->feature_names = first->feature_names;
  }
  // Each step must accept what the previous one gives (when both widths are known).
  const estimator* prev = nullptr;
  auto check = [&](const estimator& s) -> result<void> {
    if (prev) {
      const std::size_t w = prev->width(method::transform);
      if (w != 0 && s.n_features >= 0 && static_cast<std::size_t>(s.n_features) != w)
        return state_error(who, std::string(short_name(s.type)) + " expects " + std::to_string(s.n_features) +
                                    " features but the previous step gives " + std::to_string(w));
    }
    prev = &s;
    return {};
  };
  for (const auto& s : e->transforms) VITRIFY_TRY(check(*s));
  if (e->last) VITRIFY_TRY(check(*e->last));
  return estimator_ptr(e);
}

// ==========================================================================================
// ColumnTransformer and FeatureUnion: blocks of output columns side by side.
// ==========================================================================================

struct block {
  std::string name;
  estimator_ptr est;                // null: passthrough of the selected columns
  bool all_columns = false;         // FeatureUnion: the whole input
  std::vector<std::size_t> cols;    // ColumnTransformer: selected input columns
  bool weighted = false;
  double weight = 1.0;
  std::size_t width = 0;            // output columns (0 = known only when run)
};

class stacker final : public step_estimator {
 public:
  std::vector<block> blocks;
  std::string who;

  std::size_t width(method) const override {
    std::size_t w = 0;
    for (const auto& b : blocks) {
      if (b.width == 0) return 0;  // not known before running
      w += b.width;
    }
    return w;
  }

  /// The columns of block b as an input of their own (copied: the sub-estimators are built for
  /// contiguous data). Tables are selected by name when the model knows the names.
  result<void> select(const input& x, const block& b, flow& fl) const {
    if (b.all_columns) return {};
    if (x.is_table()) {
      const table& src = x.tbl();
      table t(src.rows());
      for (std::size_t c : b.cols) {
        std::ptrdiff_t at = static_cast<std::ptrdiff_t>(c);
        if (!feature_names.empty()) {
          at = src.find(feature_names[c]);
          if (at < 0) return fail(errc::invalid_argument, who + ": input has no column '" + feature_names[c] + "'");
        } else if (c >= src.cols()) {
          return fail(errc::invalid_argument, who + ": input has too few columns");
        }
        const auto& col = src.col(static_cast<std::size_t>(at));
        if (col.is_text) VITRIFY_TRY(t.add_text(col.name, col.texts, col.missing));
        else VITRIFY_TRY(t.add_numeric(col.name, col.numbers));
      }
      fl.take(std::move(t));
      return {};
    }
    const matrix_view& v = x.matrix();
    for (std::size_t c : b.cols)
      if (c >= v.cols()) return fail(errc::invalid_argument, who + ": input has too few columns");
    const std::size_t n = b.cols.size();
    dense d(v.rows(), n);
    for (std::size_t r = 0; r < v.rows(); ++r)
      for (std::size_t i = 0; i < n; ++i) d(r, i) = v.at(r, b.cols[i]);
    fl.take(std::move(d), v.is_float32());
    return {};
  }

  result<dense> run(method, const input& x) const override {
    std::vector<dense> outs;
    std::vector<bool> out32;
    std::size_t total = 0;
    for (const auto& b : blocks) {
      flow fl(x);
      VITRIFY_TRY(select(x, b, fl));
      bool f32 = fl.float32();
      if (b.est) {
        VITRIFY_TRY(advance(fl, *b.est));
        f32 = fl.float32();
      }
      auto d = materialize(fl, who);
      if (!d) return std::move(d).err();
      if (d->rows != x.rows() || (b.width != 0 && d->cols != b.width))
        return fail(errc::bad_state, who + ": transformer '" + b.name + "' gave an output of an unexpected shape");
      if (b.weighted) {
        // res * weight; a Python float weight keeps float32 data float32 (NEP 50).
        const float wf = to_f32(b.weight);
        for (double& y : d->v) y = f32 ? static_cast<double>(to_f32(y) * wf) : y * b.weight;
      }
      total += d->cols;
      outs.push_back(std::move(d).value());
      out32.push_back(f32);
    }
    // np.hstack: float32 blocks are widened exactly (float64 when any block is float64).
    dense out(x.rows(), total);
    std::size_t at = 0;
    for (const auto& d : outs) {
      for (std::size_t r = 0; r < d.rows; ++r) std::copy(d.row(r), d.row(r) + d.cols, out.row(r) + at);
      at += d.cols;
    }
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    const std::size_t total = width(m);
    if (needs_table || total == 0 || out.size() != total) return estimator::run_row(m, row, out);
    double sub[row_buffer];
    std::size_t at = 0;
    for (const auto& b : blocks) {
      std::span<const double> in = row;
      if (!b.all_columns) {
        if (b.cols.size() > row_buffer) return estimator::run_row(m, row, out);
        for (std::size_t i = 0; i < b.cols.size(); ++i) {
          if (b.cols[i] >= row.size()) return fail(errc::invalid_argument, who + ": input has too few columns");
          sub[i] = row[b.cols[i]];
        }
        in = std::span<const double>(sub, b.cols.size());
      }
      std::span<double> o = out.subspan(at, b.width);
      if (b.est) {
        VITRIFY_TRY(b.est->run_row(method::transform, in, o));
      } else {
        if (in.size() != o.size()) return fail(errc::invalid_argument, who + ": input has the wrong number of columns");
        std::copy(in.begin(), in.end(), o.begin());
      }
      if (b.weighted)
        for (double& y : o) y *= b.weight;
      at += b.width;
    }
    return {};
  }
};

/// Column indices of one ColumnTransformer entry from its column specification (files written
/// before _transformer_to_input_indices existed).
result<std::vector<std::size_t>> columns_of(const node& spec, const estimator& ct, std::string_view who) {
  const std::size_t n = static_cast<std::size_t>(ct.n_features);
  std::vector<std::size_t> out;
  auto by_name = [&](const std::string& s) -> result<std::size_t> {
    for (std::size_t i = 0; i < ct.feature_names.size(); ++i)
      if (ct.feature_names[i] == s) return i;
    return state_error(who, "column '" + s + "' is not among feature_names_in_");
  };
  auto by_int = [&](std::int64_t i) -> result<std::size_t> {
    if (i < 0) i += static_cast<std::int64_t>(n);
    if (i < 0 || static_cast<std::size_t>(i) >= n) return state_error(who, "column index out of range");
    return static_cast<std::size_t>(i);
  };
  if (spec.k == node::kind::list || spec.k == node::kind::tuple) {
    bool bools = !spec.items.empty();
    for (const node* it : spec.items) bools = bools && it->k == node::kind::boolean;
    if (bools) {
      if (spec.items.size() != n) return state_error(who, "boolean column mask of the wrong length");
      for (std::size_t i = 0; i < n; ++i)
        if (spec.items[i]->b) out.push_back(i);
      return out;
    }
    for (const node* it : spec.items) {
      if (it->k == node::kind::string) {
        auto c = by_name(it->text);
        if (!c) return std::move(c).err();
        out.push_back(*c);
      } else {
        auto v = as_integer(*it, who);
        if (!v) return std::move(v).err();
        auto c = by_int(*v);
        if (!c) return std::move(c).err();
        out.push_back(*c);
      }
    }
    return out;
  }
  if (spec.k == node::kind::array && spec.arr) {
    const auto& a = *spec.arr;
    if (a.shape.size() != 1) return state_error(who, "column selection must be 1-d");
    if (a.kind() == 'U' || (a.kind() == 'O' && a.items.empty())) {
      for (const auto& s : a.strings) {
        auto c = by_name(s);
        if (!c) return std::move(c).err();
        out.push_back(*c);
      }
      return out;
    }
    if (a.kind() == 'b') {
      auto t = as_tensor<std::uint8_t>(spec, who, 1);
      if (!t) return std::move(t).err();
      if (t->size() != n) return state_error(who, "boolean column mask of the wrong length");
      for (std::size_t i = 0; i < n; ++i)
        if ((*t)[i]) out.push_back(i);
      return out;
    }
    auto t = as_tensor<std::int64_t>(spec, who, 1);
    if (!t) return std::move(t).err();
    for (std::size_t i = 0; i < t->size(); ++i) {
      auto c = by_int((*t)[i]);
      if (!c) return std::move(c).err();
      out.push_back(*c);
    }
    return out;
  }
  if (spec.k == node::kind::object && spec.obj->type == "builtins.slice") {
    const node* st = spec.obj->state;
    if (!st || st->k != node::kind::list || st->items.size() != 3) return state_error(who, "invalid slice");
    const node* lo = st->items[0];
    const node* hi = st->items[1];
    const node* step = st->items[2];
    if (lo->k == node::kind::string || hi->k == node::kind::string) {
      // Label slices include their end (pandas .loc).
      std::size_t a = 0, b = n ? n - 1 : 0;
      if (lo->k == node::kind::string) {
        auto c = by_name(lo->text);
        if (!c) return std::move(c).err();
        a = *c;
      }
      if (hi->k == node::kind::string) {
        auto c = by_name(hi->text);
        if (!c) return std::move(c).err();
        b = *c;
      }
      if (step->k != node::kind::none) return unsupported_error(who, "label slices with a step");
      for (std::size_t i = a; n && i <= b; ++i) out.push_back(i);
      return out;
    }
    std::int64_t s = 1;
    if (step->k != node::kind::none) {
      auto v = as_integer(*step, who);
      if (!v) return std::move(v).err();
      s = *v;
    }
    if (s <= 0) return unsupported_error(who, "slices with a step below 1");
    const std::int64_t nn = static_cast<std::int64_t>(n);
    auto clampi = [&](const node* x, std::int64_t dflt) -> result<std::int64_t> {
      if (x->k == node::kind::none) return dflt;
      auto v = as_integer(*x, who);
      if (!v) return std::move(v).err();
      std::int64_t i = *v < 0 ? *v + nn : *v;
      return std::clamp<std::int64_t>(i, 0, nn);
    };
    auto a = clampi(lo, 0);
    if (!a) return std::move(a).err();
    auto b = clampi(hi, nn);
    if (!b) return std::move(b).err();
    for (std::int64_t i = *a; i < *b; i += s) out.push_back(static_cast<std::size_t>(i));
    return out;
  }
  return unsupported_error(who, "a column selection of one column (a 1-d input to the transformer) or a callable");
}

result<estimator_ptr> build_column_transformer(const node& obj, build_context& ctx) {
  const std::string who = "ColumnTransformer";
  auto e = std::make_shared<stacker>();
  e->who = who;
  e->methods = method_bit(method::transform);
  VITRIFY_TRY(read_feature_info(obj, *e));
  if (e->n_features < 0) return state_error(who, "missing n_features_in_");
  // sparse_output_ only changes the container scikit-learn returns: the runtime computes the
  // same values densely (docs/RUNTIME.md, "Sparse outputs").
  auto weights = read_weights(obj, who);
  if (!weights) return std::move(weights).err();
  const node* tti = opt_attr(obj, "_transformer_to_input_indices");
  if (tti && tti->k != node::kind::dict) return state_error(who, "_transformer_to_input_indices must be a dict");
  const node* oi = opt_attr(obj, "output_indices_");
  if (oi && oi->k != node::kind::dict) return state_error(who, "output_indices_ must be a dict");
  auto tl = need_attr(obj, "transformers_");
  if (!tl) return std::move(tl).err();
  if ((*tl)->k != node::kind::list && (*tl)->k != node::kind::tuple) return state_error(who, "transformers_ must be a list");
  bool all_f32 = true;
  for (const node* item : (*tl)->items) {
    auto t = named_tuple(*item, 3, who);
    if (!t) return std::move(t).err();
    const std::string& name = (*t)[0]->text;
    const node& trans = *(*t)[1];
    const node& spec = *(*t)[2];
    if (is_str(trans, "drop")) continue;
    block b;
    b.name = name;
    // Columns: the fitted indices when recorded (1.0+), else the specification.
    if (const node* idx = tti ? tti->get(name) : nullptr) {
      if (idx->k != node::kind::list && idx->k != node::kind::tuple && idx->k != node::kind::array)
        return state_error(who, "_transformer_to_input_indices entries must be lists");
      auto v = as_float_list(*idx, "ColumnTransformer._transformer_to_input_indices");
      if (!v) return std::move(v).err();
      for (double d : *v) {
        if (!(d >= 0 && d < static_cast<double>(e->n_features)) || d != static_cast<double>(static_cast<std::size_t>(d)))
          return state_error(who, "column index out of range in _transformer_to_input_indices");
        b.cols.push_back(static_cast<std::size_t>(d));
      }
      if (spec.k == node::kind::string || spec.k == node::kind::integer) {
        if (!b.cols.empty()) return unsupported_error(who, "transformer '" + name + "' takes a single column as a 1-d array");
      }
    } else {
      auto c = columns_of(spec, *e, who);
      if (!c) return std::move(c).err();
      b.cols = std::move(c).value();
    }
    if (b.cols.empty()) continue;  // empty selections are skipped
    if (is_str(trans, "passthrough")) {
      b.width = b.cols.size();
    } else {
      auto p = ctx.build(trans);
      if (!p) return std::move(p).err();
      b.est = std::move(p).value();
      if (b.est->n_features >= 0 && static_cast<std::size_t>(b.est->n_features) != b.cols.size())
        return state_error(who, "transformer '" + name + "' was fitted on " + std::to_string(b.est->n_features) +
                                    " columns but selects " + std::to_string(b.cols.size()));
      if (!b.est->supports(method::transform)) return state_error(who, "transformer '" + name + "' has no transform");
      b.width = b.est->width(method::transform);
      e->needs_table = e->needs_table || b.est->needs_table;
      all_f32 = all_f32 && keeps_float32(*b.est);
    }
    if (auto it = weights->find(name); it != weights->end()) {
      b.weighted = true;
      b.weight = it->second;
    }
    // output_indices_ records each block's output columns: they must agree.
    if (const node* sl = oi ? oi->get(name) : nullptr; sl && b.width != 0) {
      if (sl->k == node::kind::object && sl->obj->type == "builtins.slice" && sl->obj->state &&
          sl->obj->state->k == node::kind::list && sl->obj->state->items.size() == 3) {
        auto a = as_integer(*sl->obj->state->items[0], who);
        auto z = as_integer(*sl->obj->state->items[1], who);
        if (a && z && *z - *a != static_cast<std::int64_t>(b.width))
          return state_error(who, "output_indices_ disagrees with the width of transformer '" + name + "'");
      }
    }
    e->blocks.push_back(std::move(b));
  }
  e->keeps_float32 = all_f32;
  return estimator_ptr(e);
}

result<estimator_ptr> build_feature_union(const node& obj, build_context& ctx) {
  const std::string who = "FeatureUnion";
  auto e = std::make_shared<stacker>();
  e->who = who;
  e->methods = method_bit(method::transform);
  auto weights = read_weights(obj, who);
  if (!weights) return std::move(weights).err();
  auto tl = need_attr(obj, "transformer_list");
  if (!tl) return std::move(tl).err();
  if ((*tl)->k != node::kind::list && (*tl)->k != node::kind::tuple) return state_error(who, "transformer_list must be a list");
  bool all_f32 = true, first = true;
  for (const node* item : (*tl)->items) {
    auto t = named_tuple(*item, 2, who);
    if (!t) return std::move(t).err();
    const std::string& name = (*t)[0]->text;
    const node& trans = *(*t)[1];
    // n_features_in_ is the first transformer's, 'drop' included (FeatureUnion.n_features_in_).
    if (is_str(trans, "drop")) {
      first = false;
      continue;
    }
    block b;
    b.name = name;
    b.all_columns = true;
    if (!is_str(trans, "passthrough")) {
      auto p = ctx.build(trans);
      if (!p) return std::move(p).err();
      b.est = std::move(p).value();
      if (!b.est->supports(method::transform)) return state_error(who, "transformer '" + name + "' has no transform");
      b.width = b.est->width(method::transform);
      e->needs_table = e->needs_table || b.est->needs_table;
      all_f32 = all_f32 && keeps_float32(*b.est);
      if (first) {
        e->n_features = b.est->n_features;
        e->feature_names = b.est->feature_names;
      } else if (e->n_features >= 0 && b.est->n_features >= 0 && b.est->n_features != e->n_features) {
        return state_error(who, "transformers were fitted on different numbers of features");
      }
    }
    first = false;
    if (auto it = weights->find(name); it != weights->end()) {
      b.weighted = true;
      b.weight = it->second;
    }
    e->blocks.push_back(std::move(b));
  }
  // Passthrough blocks are as wide as the input.
  for (auto& b : e->blocks)
    if (!b.est) b.width = e->n_features >= 0 ? static_cast<std::size_t>(e->n_features) : 0;
  e->keeps_float32 = all_f32;
  return estimator_ptr(e);
}

}  // namespace

void register_compose(registry& r) {
  r.add("sklearn.pipeline.Pipeline", build_pipeline);
  r.add("sklearn.compose.ColumnTransformer", build_column_transformer);
  r.add("sklearn.pipeline.FeatureUnion", build_feature_union);
}

}  // namespace vitrify::runtime
