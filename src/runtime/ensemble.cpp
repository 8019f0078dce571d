// src/runtime/ensemble.cpp - tree ensembles: RandomForest*/ExtraTrees* (through the tree model
// of tree.cpp), GradientBoosting*, HistGradientBoosting* (missing values, categorical features
// with the `_preprocessor` OrdinalEncoder of sklearn >= 1.4) and IsolationForest.
// The arithmetic follows scikit-learn 1.9 (see tree_walk.hpp for the shared contract).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "runtime/estimator.hpp"
#include "runtime/tree_walk.hpp"

namespace vitrify::runtime {

using pyobj::node;
using namespace trees;

namespace {

// ---------------------------------------------------------------------------------------------
// Links (sklearn._loss.link) and the scalar functions they use.
// ---------------------------------------------------------------------------------------------

enum class link_kind { identity, log, logit, half_logit, multinomial };

/// scipy.special.expit (xsf): 1 / (1 + exp(-x)) with the C library's exp.
inline double expit(double x) noexcept { return 1.0 / (1.0 + std::exp(-x)); }

/// scipy.special.logit (xsf >= SciPy 1.15): log1p form around 0.5 for precision.
inline double logit(double x) noexcept {
  if (x < 0.3 || x > 0.65) return std::log(x / (1 - x));
  const double s = 2 * (x - 0.5);
  return std::log1p(s) - std::log1p(-s);
}

/// sklearn.utils.extmath.softmax on one row: subtract the max, exp, divide by the row sum.
/// `pairwise`: numpy sums a C-ordered row pairwise; an F-ordered array (HGB's raw predictions)
/// is reduced column by column, i.e. sequentially.
void softmax_row(double* x, std::size_t k, bool pairwise) noexcept {
  double m = x[0];
  for (std::size_t j = 1; j < k; ++j) m = std::max(m, x[j]);
  for (std::size_t j = 0; j < k; ++j) x[j] = std::exp(x[j] - m);
  double s;
  if (pairwise) {
    s = np_pairwise_sum(x, k);
  } else {
    s = x[0];
    for (std::size_t j = 1; j < k; ++j) s += x[j];
  }
  for (std::size_t j = 0; j < k; ++j) x[j] /= s;
}

/// The link of a fitted loss object (`_loss`): its `link` attribute's class.
result<link_kind> read_link(const node& est, std::string_view who) {
  const node* loss = opt_attr(est, "_loss");
  if (!loss || loss->k != node::kind::object)
    return unsupported_error(who, "_loss is not a sklearn._loss loss object (saved by scikit-learn < 1.4?)");
  const node* link = opt_attr(*loss, "link");
  if (!link || link->k != node::kind::object)
    return unsupported_error(who, "loss " + std::string(loss->type_name()) + " has no link object");
  std::string_view t = link->type_name();
  if (t == "sklearn._loss.link.IdentityLink") return link_kind::identity;
  if (t == "sklearn._loss.link.LogLink") return link_kind::log;
  if (t == "sklearn._loss.link.LogitLink") return link_kind::logit;
  if (t == "sklearn._loss.link.HalfLogitLink") return link_kind::half_logit;
  if (t == "sklearn._loss.link.MultinomialLogit") return link_kind::multinomial;
  return unsupported_error(who, "link " + std::string(t) + " is not supported");
}

std::string idx_name(std::string_view who, std::string_view attr, std::size_t i) {
  return std::string(who) + "." + std::string(attr) + "[" + std::to_string(i) + "]";
}

// ---------------------------------------------------------------------------------------------
// Forests
// ---------------------------------------------------------------------------------------------

result<std::vector<const node*>> estimator_list(const node& obj, std::string_view who) {
  auto es = need_attr(obj, "estimators_");
  if (!es) return std::move(es).err();
  const node& l = **es;
  if (l.k != node::kind::list && l.k != node::kind::tuple) return state_error(who, "estimators_ must be a list");
  return std::vector<const node*>(l.items.begin(), l.items.end());
}

result<estimator_ptr> build_forest(const node& obj, build_context&) {
  const std::string who(short_name(obj.type_name()));
  auto list = estimator_list(obj, who);
  if (!list) return std::move(list).err();
  return build_tree_model(obj, *list, true);
}

// ---------------------------------------------------------------------------------------------
// GradientBoosting
// ---------------------------------------------------------------------------------------------

class gb_model final : public estimator {
 public:
  packed_trees pt;           // stage-major: tree t adds to raw[t % k]; leaf values = lr * value
  std::size_t k = 1;         // trees per stage
  std::vector<double> init;  // raw prediction of init_ (constant per row), size k
  link_kind link = link_kind::identity;

  [[nodiscard]] std::size_t width(method m) const override {
    if (m == method::predict) return 1;
    if (m == method::predict_proba) return classes.size();
    return k;
  }

  template <class Row>
  void raw_row(const Row& row, double* raw) const noexcept {
    for (std::size_t j = 0; j < k; ++j) raw[j] = init[j];
    for (std::size_t t = 0; t < pt.roots.size(); ++t) raw[t % k] += *walk(pt, pt.roots[t], row);
  }

  // raw (k values) -> the method's output (width(m) values).
  void finish(method m, const double* raw, double* out) const noexcept {
    if (m == method::decision_function || !is_classifier) {
      std::memcpy(out, raw, k * sizeof(double));
      return;
    }
    if (m == method::predict) {
      // sklearn: binary -> classes_[raw >= 0]; multiclass -> argmax(raw).
      out[0] = k == 1 ? (raw[0] >= 0 ? 1.0 : 0.0) : static_cast<double>(argmax(raw, k));
      return;
    }
    if (k == 1) {
      const double p1 = link == link_kind::half_logit ? expit(2 * raw[0]) : expit(raw[0]);
      out[1] = p1;
      out[0] = 1 - p1;
      return;
    }
    std::memcpy(out, raw, k * sizeof(double));
    softmax_row(out, k, true);
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, short_name(type));
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    VITRIFY_TRY(check_float32_input(x, false, short_name(type)));
    dense raw(x.rows(), k);
    for (std::size_t r = 0; r < x.rows(); ++r) std::memcpy(raw.row(r), init.data(), k * sizeof(double));
    const std::size_t kk = k;
    for_each_leaf(pt, x, [&](std::size_t r, std::size_t t, const double* v) { raw(r, t % kk) += *v; });
    if (m == method::decision_function || (!is_classifier && m == method::predict)) return raw;
    dense out(x.rows(), width(m));
    for (std::size_t r = 0; r < x.rows(); ++r) finish(m, raw.row(r), out.row(r));
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    VITRIFY_TRY(check_float32_row(row, false, short_name(type)));
    if (k > 256) return estimator::run_row(m, row, out);
    double raw[256];
    raw_row(row_f64{row.data()}, raw);
    finish(m, raw, out.data());
    return {};
  }
};

/// Raw prediction of GradientBoosting's init_ (sklearn _init_raw_predictions): the same for
/// every row with the Dummy estimators sklearn uses by default.
result<std::vector<double>> gb_init(const node& obj, const estimator& e, std::size_t k, link_kind link, std::string_view who) {
  auto init = need_attr(obj, "init_");
  if (!init) return std::move(init).err();
  const node& in = **init;
  if (in.k == node::kind::string) {
    if (in.text != "zero") return state_error(who, "init_ is the unknown string '" + in.text + "'");
    return std::vector<double>(k, 0.0);
  }
  std::string_view t = in.type_name();
  if (!e.is_classifier) {
    if (t != "sklearn.dummy.DummyRegressor")
      return unsupported_error(who, "init_ of type " + std::string(t) + " is not supported (only DummyRegressor and 'zero')");
    auto c = attr_tensor<double>(in, "constant_", -1);
    if (!c) return std::move(c).err();
    if (c->size() != 1) return unsupported_error(who, "a multi-output init_ is not supported");
    if (link != link_kind::identity) return unsupported_error(who, "regression with a non-identity link");
    return std::vector<double>{(*c)[0]};
  }
  if (t != "sklearn.dummy.DummyClassifier")
    return unsupported_error(who, "init_ of type " + std::string(t) + " is not supported (only DummyClassifier and 'zero')");
  auto strategy = get_str(in, "strategy");
  if (!strategy) return std::move(strategy).err();
  if (*strategy != "prior") return unsupported_error(who, "init_ DummyClassifier(strategy='" + *strategy + "') is not supported");
  auto prior = attr_tensor<double>(in, "class_prior_", 1);
  if (!prior) return std::move(prior).err();
  if (prior->size() != e.classes.size()) return state_error(who, "init_.class_prior_ disagrees with classes_");
  static constexpr double eps = std::numeric_limits<double>::epsilon();
  auto clip = [](double p) { return std::min(std::max(p, eps), 1 - eps); };  // np.clip(p, eps, 1 - eps)
  if (k == 1) {
    if (prior->size() != 2) return state_error(who, "binary init_ needs two class priors");
    const double p = clip((*prior)[1]);
    if (link == link_kind::logit) return std::vector<double>{logit(p)};
    if (link == link_kind::half_logit) return std::vector<double>{0.5 * logit(p)};
    return unsupported_error(who, "binary classification with this link is not supported");
  }
  if (link != link_kind::multinomial) return unsupported_error(who, "multiclass classification needs the multinomial link");
  // MultinomialLogit.link: log(p / gmean(p)), gmean = exp(mean(log(p))). numpy's SIMD log/exp
  // may differ from the C library's by one ulp here (documented: not bit-exact).
  std::vector<double> p(k), lp(k), out(k);
  for (std::size_t j = 0; j < k; ++j) {
    p[j] = clip((*prior)[j]);
    lp[j] = std::log(p[j]);
  }
  const double gm = std::exp(np_pairwise_sum(lp.data(), k) / static_cast<double>(k));
  for (std::size_t j = 0; j < k; ++j) out[j] = std::log(p[j] / gm);
  return out;
}

result<estimator_ptr> build_gradient_boosting(const node& obj, build_context&) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<gb_model>();
  VITRIFY_TRY(read_feature_info(obj, *e));
  if (e->n_features < 1 || e->n_features > INT32_MAX) return state_error(who, "n_features_in_ is missing or out of range");
  const node* classes = opt_attr(obj, "classes_");
  if (classes) VITRIFY_TRY(read_classes(*classes, *e, who));
  auto link = read_link(obj, who);
  if (!link) return std::move(link).err();
  e->link = *link;
  auto es = need_attr(obj, "estimators_");
  if (!es) return std::move(es).err();
  const node& arr = **es;
  if (arr.k != node::kind::array || !arr.arr || arr.arr->shape.size() != 2 ||
      arr.arr->items.size() != static_cast<std::size_t>(arr.arr->shape[0] * arr.arr->shape[1]))
    return state_error(who, "estimators_ must be a 2-d object array of trees");
  const std::size_t n_stages = static_cast<std::size_t>(arr.arr->shape[0]);
  e->k = static_cast<std::size_t>(arr.arr->shape[1]);
  if (n_stages == 0 || e->k == 0) return state_error(who, "estimators_ is empty");
  if (const node* ne = opt_attr(obj, "n_estimators_")) {
    auto v = as_integer(*ne, who + ".n_estimators_");
    if (!v) return std::move(v).err();
    if (*v != static_cast<std::int64_t>(n_stages)) return state_error(who, "n_estimators_ disagrees with estimators_");
  }
  if (e->is_classifier) {
    const std::size_t nc = e->classes.size();
    if (nc < 2 || e->k != (nc == 2 ? 1u : nc)) return state_error(who, "estimators_ columns disagree with classes_");
    if ((e->k == 1) != (e->link == link_kind::logit || e->link == link_kind::half_logit))
      return state_error(who, "the loss does not fit the number of classes");
  } else if (e->k != 1) {
    return state_error(who, "a regressor has one tree per stage");
  }
  auto lr = get_float(obj, "learning_rate");
  if (!lr) return std::move(lr).err();
  auto init = gb_init(obj, *e, e->k, e->link, who);
  if (!init) return std::move(init).err();
  e->init = std::move(init).value();
  e->pt.width = 1;
  e->pt.n_features = static_cast<std::int32_t>(e->n_features);
  for (std::size_t i = 0; i < arr.arr->items.size(); ++i) {
    const node& te = *arr.arr->items[i];
    const std::string tw = idx_name(who, "estimators_", i);
    if (te.k != node::kind::object || te.type_name() != "sklearn.tree.DecisionTreeRegressor")
      return state_error(tw, "expected a DecisionTreeRegressor");
    auto t = read_estimator_tree(te, tw);
    if (!t) return std::move(t).err();
    if (t->n_features != e->n_features || t->n_outputs != 1 || t->max_n_classes != 1)
      return state_error(tw, "tree shape disagrees with the ensemble");
    const sk_tree& tr = *t;
    const double scale = *lr;
    // sklearn adds `scale * value` (one rounding for the product, one for the sum).
    VITRIFY_TRY(e->pt.append(tr, [&](std::size_t id, double* out) { out[0] = scale * tr.value(id)[0]; }));
  }
  e->methods = method_bit(method::predict);
  if (e->is_classifier) e->methods |= method_bit(method::predict_proba) | method_bit(method::decision_function);
  return estimator_ptr(std::move(e));
}

// ---------------------------------------------------------------------------------------------
// HistGradientBoosting
// ---------------------------------------------------------------------------------------------

/// A TreePredictor node, packed in 24 bytes. Leaves point to themselves (both children) and
/// read column 0, so walks take a fixed step without testing for leaves. Categorical splits
/// keep, in the bits of `value`, the rows of `left_bitsets` and `known_bitsets` they use.
struct hgb_node {
  double value = 0.0;          ///< leaf value, or num_threshold of a numeric split
  std::int32_t feature = 0;
  std::uint32_t child[2] = {0, 0};
  std::uint8_t missing_left = 0, categorical = 0;
};

inline void set_cat_rows(hgb_node& n, std::uint32_t bitset, std::uint32_t known) noexcept {
  const std::uint32_t w[2] = {bitset, known};
  std::memcpy(&n.value, w, sizeof w);
}

inline bool in_bitset(const std::uint32_t* b, std::uint32_t c) noexcept { return (b[c >> 5] >> (c & 31)) & 1u; }

/// One categorical input column encoded by the `_preprocessor`'s OrdinalEncoder.
struct cat_encoder {
  bool text = false;
  std::unordered_map<std::string, double> text_codes;
  std::vector<double> numbers;   ///< sorted known numeric categories (code = position)
  std::size_t column = 0;        ///< input column
};

class hgb_model final : public estimator {
 public:
  std::vector<hgb_node> nodes;
  std::vector<std::uint32_t> roots;          // iteration-major: tree t adds to raw[t % k]
  std::vector<std::uint32_t> left_bitsets;   // 8 words per raw_left_cat_bitsets row
  std::vector<std::uint32_t> known_bitsets;  // 8 words per categorical feature
  bool has_categorical = false;              // some node splits on categories
  std::size_t k = 1;
  std::vector<double> baseline;
  link_kind link = link_kind::identity;
  // Input mapping: empty `cats` -> X used as is. Otherwise model feature j < cats.size() is
  // cats[j] encoded, and j >= cats.size() is input column numeric_cols[j - cats.size()].
  std::vector<cat_encoder> cats;
  std::vector<std::size_t> numeric_cols;

  [[nodiscard]] std::size_t width(method m) const override {
    if (m == method::predict) return 1;
    if (m == method::predict_proba) return classes.size();
    return k;
  }

  [[nodiscard]] bool categorical_left(const hgb_node& n, double v) const noexcept {
    // sklearn: negative values and unknown categories follow the missing-value rule. Values
    // >= 256 cannot come out of the preprocessor (sklearn's uint8 cast of them is undefined
    // behaviour); they are treated as unknown.
    if (v < 0 || v >= 256.0) return n.missing_left;
    const auto c = static_cast<std::uint32_t>(static_cast<std::uint8_t>(v));
    std::uint32_t w[2];   // rows of left_bitsets and known_bitsets (set_cat_rows)
    std::memcpy(w, &n.value, sizeof w);
    if (in_bitset(left_bitsets.data() + 8 * static_cast<std::size_t>(w[0]), c)) return true;
    if (in_bitset(known_bitsets.data() + 8 * static_cast<std::size_t>(w[1]), c)) return false;
    return n.missing_left;
  }

  /// `Cat` false: the model has no categorical split (the common case, no branch for them).
  template <bool Cat = true>
  [[nodiscard]] std::uint32_t step(std::uint32_t i, const double* x) const noexcept {
    const hgb_node& n = nodes[i];
    const double v = x[n.feature];
    bool go_left;
    if (Cat && n.categorical && !std::isnan(v)) go_left = categorical_left(n, v);
    else go_left = (v <= n.value) | (std::isnan(v) & (n.missing_left != 0));
    return n.child[go_left ? 0 : 1];
  }

  /// raw(r, t % k) += tree t's value, for rows [r0, r1) held in buf, trees in order.
  template <bool Cat>
  void add_trees(dense& raw, const double* buf, std::size_t nf, std::size_t r0, std::size_t r1) const noexcept {
    for (std::size_t t = 0; t < roots.size(); ++t) {
      const std::size_t j = t % k;
      const std::uint32_t root = roots[t];
      std::size_t r = r0;
      for (; r + walk_group <= r1; r += walk_group) {
        std::uint32_t idx[walk_group];
        for (std::size_t g = 0; g < walk_group; ++g) idx[g] = root;
        for (;;) {
          bool moved = false;
          for (std::size_t g = 0; g < walk_group; ++g) {
            const std::uint32_t next = step<Cat>(idx[g], buf + (r + g - r0) * nf);
            moved |= next != idx[g];
            idx[g] = next;
          }
          if (!moved) break;
        }
        for (std::size_t g = 0; g < walk_group; ++g) raw(r + g, j) += nodes[idx[g]].value;
      }
      for (; r < r1; ++r) raw(r, j) += tree_value(root, buf + (r - r0) * nf);
    }
  }

  [[nodiscard]] double tree_value(std::uint32_t root, const double* x) const noexcept {
    std::uint32_t i = root;
    for (;;) {
      const std::uint32_t next = step(i, x);
      if (next == i) return nodes[i].value;
      i = next;
    }
  }

  void raw_row(const double* x, double* raw) const noexcept {
    for (std::size_t j = 0; j < k; ++j) raw[j] = 0.0 + baseline[j];  // zeros + baseline
    for (std::size_t t = 0; t < roots.size(); ++t) raw[t % k] += tree_value(roots[t], x);
  }

  void finish(method m, double* raw, double* out) const noexcept {
    if (!is_classifier) {
      out[0] = link == link_kind::log ? std::exp(raw[0]) : raw[0];
      return;
    }
    if (m == method::decision_function) {
      std::memcpy(out, raw, k * sizeof(double));
    } else if (m == method::predict) {
      // sklearn >= 1.5: binary -> classes_[raw > 0]; multiclass -> argmax(raw).
      out[0] = k == 1 ? (raw[0] > 0 ? 1.0 : 0.0) : static_cast<double>(argmax(raw, k));
    } else if (k == 1) {
      const double p1 = expit(raw[0]);
      out[1] = p1;
      out[0] = 1 - p1;
    } else {
      std::memcpy(out, raw, k * sizeof(double));
      softmax_row(out, k, false);
    }
  }

  // Encode input row r (remapped order) into buf.
  result<void> encode_row(const input& in, const matrix_view* mv, std::size_t r, double* buf) const {
    const std::size_t nc = cats.size();
    for (std::size_t j = 0; j < nc; ++j) {
      const cat_encoder& ce = cats[j];
      double code = std::nan("");
      if (in.is_table() && in.is_text(ce.column)) {
        const auto& col = in.tbl().col(ce.column);
        if (!ce.text)
          return fail(errc::invalid_argument, "column '" + col.name + "' holds text, but its categories are numbers");
        if (!col.missing[r]) {
          auto it = ce.text_codes.find(col.texts[r]);
          if (it != ce.text_codes.end()) code = it->second;   // unknown -> NaN (unknown_value)
        }
      } else {
        const double v = mv ? mv->at(r, ce.column) : in.number(r, ce.column);
        if (ce.text) {
          if (!std::isnan(v))
            return fail(errc::invalid_argument, "categorical feature " + std::to_string(ce.column) + " has text categories, but the input holds numbers");
        } else if (!std::isnan(v)) {
          auto it = std::lower_bound(ce.numbers.begin(), ce.numbers.end(), v);
          if (it != ce.numbers.end() && *it == v) code = static_cast<double>(it - ce.numbers.begin());
        }
      }
      buf[j] = code;
    }
    for (std::size_t j = 0; j < numeric_cols.size(); ++j) {
      const std::size_t c = numeric_cols[j];
      if (in.is_table() && in.is_text(c))
        return fail(errc::invalid_argument, "column '" + in.tbl().col(c).name + "' holds text, but the model expects numbers");
      buf[nc + j] = mv ? mv->at(r, c) : in.number(r, c);
    }
    return {};
  }

  result<dense> run(method m, const input& in) const override {
    const std::size_t n = in.rows();
    const std::size_t nf = static_cast<std::size_t>(n_features);
    dense raw(n, k);
    dense storage;
    matrix_view x;
    if (cats.empty()) {
      auto xv = in.numeric(storage, short_name(type));
      if (!xv) return std::move(xv).err();
      x = *xv;
    }
    const matrix_view* mv = in.is_table() ? nullptr : &in.matrix();
    // Blocks of rows as float64 (HGB compares in float64), trees-outer, walk groups.
    const std::size_t block = std::clamp<std::size_t>((16384 / std::max<std::size_t>(nf, 1)) & ~std::size_t{7}, 8, 2048);
    std::vector<double> buf(std::min(n, block) * nf);
    for (std::size_t r0 = 0; r0 < n; r0 += block) {
      const std::size_t r1 = std::min(n, r0 + block);
      for (std::size_t r = r0; r < r1; ++r) {
        double* dst = buf.data() + (r - r0) * nf;
        if (cats.empty()) {
          for (std::size_t c = 0; c < nf; ++c) dst[c] = x.at(r, c);
        } else {
          VITRIFY_TRY(encode_row(in, mv, r, dst));
        }
        for (std::size_t j = 0; j < k; ++j) raw(r, j) = 0.0 + baseline[j];  // zeros + baseline
      }
      if (has_categorical) add_trees<true>(raw, buf.data(), nf, r0, r1);
      else add_trees<false>(raw, buf.data(), nf, r0, r1);
    }
    if (m == method::decision_function) return raw;
    dense out(n, width(m));
    for (std::size_t r = 0; r < n; ++r) finish(m, raw.row(r), out.row(r));
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    if (k > 256 || (!cats.empty() && row.size() > 1024)) return estimator::run_row(m, row, out);
    double raw[256];
    if (cats.empty()) {
      raw_row(row.data(), raw);
    } else {
      double buf[1024];
      const matrix_view mv(row.data(), 1, row.size());
      VITRIFY_TRY(encode_row(input(mv), &mv, 0, buf));
      raw_row(buf, raw);
    }
    finish(m, raw, out.data());
    return {};
  }
};

/// Bool / uint8 mask array as a vector<bool>.
result<std::vector<bool>> read_mask(const node& n, std::string_view who) {
  auto t = as_tensor<std::uint8_t>(n, who, 1);
  if (!t) return std::move(t).err();
  std::vector<bool> out(t->size());
  for (std::size_t i = 0; i < t->size(); ++i) out[i] = (*t)[i] != 0;
  return out;
}

/// The OrdinalEncoder of HGB's `_preprocessor` (ColumnTransformer "encoder" step), checked to be
/// the one sklearn builds: unknown and missing values both become NaN.
result<void> read_preprocessor(const node& pre, const std::vector<bool>& is_cat, hgb_model& e, std::string_view who) {
  const std::string pw = std::string(who) + "._preprocessor";
  if (pre.type_name() != "sklearn.compose.ColumnTransformer") return unsupported_error(pw, "expected a ColumnTransformer");
  auto tr = need_attr(pre, "transformers_");
  if (!tr) return std::move(tr).err();
  const node* encoder = nullptr;
  for (const node* item : (*tr)->items) {
    if ((item->k != node::kind::tuple && item->k != node::kind::list) || item->items.size() < 3) return state_error(pw, "malformed transformers_");
    const node& name = *item->items[0];
    if (name.k != node::kind::string) return state_error(pw, "malformed transformers_");
    if (name.text == "encoder") {
      encoder = item->items[1];
      auto mask = read_mask(*item->items[2], pw + ".encoder columns");
      if (!mask) return std::move(mask).err();
      if (*mask != is_cat) return state_error(pw, "encoder columns disagree with is_categorical_");
    } else if (name.text == "numerical") {
      auto mask = read_mask(*item->items[2], pw + ".numerical columns");
      if (!mask) return std::move(mask).err();
      bool ok = mask->size() == is_cat.size();
      for (std::size_t i = 0; ok && i < mask->size(); ++i) ok = (*mask)[i] != is_cat[i];
      if (!ok) return state_error(pw, "numerical columns disagree with is_categorical_");
    } else if (name.text == "remainder") {
      if (item->items[1]->k != node::kind::string || item->items[1]->text != "drop") return unsupported_error(pw, "a remainder other than 'drop'");
    } else {
      return unsupported_error(pw, "unexpected step '" + name.text + "'");
    }
  }
  if (!encoder || encoder->type_name() != "sklearn.preprocessing.OrdinalEncoder") return unsupported_error(pw, "no OrdinalEncoder step");
  const std::string ew = pw + ".encoder";
  auto hu = get_str(*encoder, "handle_unknown");
  if (!hu) return std::move(hu).err();
  auto uv = get_float(*encoder, "unknown_value");
  if (!uv) return std::move(uv).err();
  auto mv = get_float(*encoder, "encoded_missing_value");
  if (!mv) return std::move(mv).err();
  if (*hu != "use_encoded_value" || !std::isnan(*uv) || !std::isnan(*mv))
    return unsupported_error(ew, "only the encoder HistGradientBoosting builds (unknown and missing -> NaN) is supported");
  if (const node* inf = opt_attr(*encoder, "_infrequent_enabled"); inf && inf->k == node::kind::boolean && inf->b)
    return unsupported_error(ew, "infrequent categories are not supported");
  auto cats = need_attr(*encoder, "categories_");
  if (!cats) return std::move(cats).err();
  std::vector<std::size_t> cat_cols;
  for (std::size_t i = 0; i < is_cat.size(); ++i) {
    if (is_cat[i]) cat_cols.push_back(i);
    else e.numeric_cols.push_back(i);
  }
  if ((*cats)->items.size() != cat_cols.size()) return state_error(ew, "categories_ has not one entry per categorical feature");
  for (std::size_t j = 0; j < cat_cols.size(); ++j) {
    const node& c = *(*cats)->items[j];
    const std::string cw = idx_name(ew, "categories_", j);
    cat_encoder ce;
    ce.column = cat_cols[j];
    if (c.k != node::kind::array || !c.arr || c.arr->shape.size() != 1) return state_error(cw, "expected a 1-d array");
    const auto& a = *c.arr;
    const char kd = a.kind();
    if (kd == 'U' || kd == 'O') {
      ce.text = true;
      std::size_t code = 0;
      if (!a.items.empty()) {
        // Object array of str with NaN (the missing category, always last; it encodes to NaN).
        for (std::size_t i = 0; i < a.items.size(); ++i) {
          const node& it = *a.items[i];
          if (it.k == node::kind::string) {
            ce.text_codes.emplace(it.text, static_cast<double>(code++));
          } else if ((it.k == node::kind::floating && std::isnan(it.d)) || it.k == node::kind::none) {
            if (i + 1 != a.items.size()) return state_error(cw, "the missing category must come last");
          } else {
            return unsupported_error(cw, "categories of mixed types are not supported");
          }
        }
      } else {
        for (const auto& s : a.strings) ce.text_codes.emplace(s, static_cast<double>(code++));
      }
      if (ce.text_codes.size() != code) return state_error(cw, "duplicate categories");
    } else {
      auto v = as_tensor<double>(c, cw, 1);
      if (!v) return std::move(v).err();
      for (std::size_t i = 0; i < v->size(); ++i) {
        const double d = (*v)[i];
        if (std::isnan(d)) {
          if (i + 1 != v->size()) return state_error(cw, "the missing category must come last");
          continue;
        }
        if (!ce.numbers.empty() && !(ce.numbers.back() < d)) return state_error(cw, "categories are not sorted and unique");
        ce.numbers.push_back(d);
      }
    }
    e.cats.push_back(std::move(ce));
  }
  if (auto rm = opt_attr(pre, "sparse_output_"); rm && rm->k == node::kind::boolean && rm->b)
    return unsupported_error(pw, "sparse output");
  e.needs_table = std::any_of(e.cats.begin(), e.cats.end(), [](const cat_encoder& c) { return c.text; });
  return {};
}

result<estimator_ptr> build_hist_gradient_boosting(const node& obj, build_context&) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<hgb_model>();
  VITRIFY_TRY(read_feature_info(obj, *e));
  if (e->n_features < 1 || e->n_features > INT32_MAX) return state_error(who, "n_features_in_ is missing or out of range");
  const std::size_t nf = static_cast<std::size_t>(e->n_features);
  const node* classes = opt_attr(obj, "classes_");
  if (classes) VITRIFY_TRY(read_classes(*classes, *e, who));
  auto link = read_link(obj, who);
  if (!link) return std::move(link).err();
  e->link = *link;
  auto k = get_int(obj, "n_trees_per_iteration_");
  if (!k) return std::move(k).err();
  if (*k < 1 || *k > (1 << 20)) return state_error(who, "n_trees_per_iteration_ out of range");
  e->k = static_cast<std::size_t>(*k);
  if (e->is_classifier) {
    const std::size_t nc = e->classes.size();
    if (nc < 2 || e->k != (nc == 2 ? 1u : nc)) return state_error(who, "n_trees_per_iteration_ disagrees with classes_");
    if ((e->k == 1 ? link_kind::logit : link_kind::multinomial) != e->link)
      return unsupported_error(who, "this loss is not supported for classification");
  } else {
    if (e->k != 1) return state_error(who, "a regressor has one tree per iteration");
    if (e->link != link_kind::identity && e->link != link_kind::log) return unsupported_error(who, "this regression link is not supported");
  }
  auto base = attr_tensor<double>(obj, "_baseline_prediction", -1);
  if (!base) return std::move(base).err();
  if (base->size() != e->k) return state_error(who, "_baseline_prediction has not n_trees_per_iteration_ values");
  e->baseline.assign(base->p, base->p + base->size());

  // Categorical features: is_categorical_ (input order), the preprocessor, the bin mapper.
  std::vector<bool> is_cat_in(nf, false);
  if (const node* ic = opt_attr(obj, "is_categorical_")) {
    auto m = read_mask(*ic, who + ".is_categorical_");
    if (!m) return std::move(m).err();
    if (m->size() != nf) return state_error(who, "is_categorical_ has not n_features_in_ entries");
    is_cat_in = std::move(m).value();
  }
  const bool any_cat = std::find(is_cat_in.begin(), is_cat_in.end(), true) != is_cat_in.end();
  std::vector<bool> is_cat_model = is_cat_in;   // model (remapped) order
  if (const node* pre = opt_attr(obj, "_preprocessor")) {
    VITRIFY_TRY(read_preprocessor(*pre, is_cat_in, *e, who));
    std::fill(is_cat_model.begin(), is_cat_model.end(), false);
    for (std::size_t j = 0; j < e->cats.size(); ++j) is_cat_model[j] = true;
    if (const node* rm = opt_attr(obj, "_is_categorical_remapped")) {
      auto m = read_mask(*rm, who + "._is_categorical_remapped");
      if (!m) return std::move(m).err();
      if (*m != is_cat_model) return state_error(who, "_is_categorical_remapped does not put the categorical features first");
    }
  } else if (any_cat && sklearn_version(obj) >= std::pair<int, int>{1, 4}) {
    return state_error(who, "categorical features without the _preprocessor that sklearn >= 1.4 fits");
  }
  auto bm = need_attr(obj, "_bin_mapper");
  if (!bm) return std::move(bm).err();
  // known_cat_bitsets (sklearn make_known_categories_bitsets): one per categorical feature.
  std::vector<std::uint32_t> known_row(nf, 0);
  {
    std::vector<bool> bm_cat(nf, false);
    if (const node* bic = opt_attr(**bm, "is_categorical_")) {
      auto m = read_mask(*bic, who + "._bin_mapper.is_categorical_");
      if (!m) return std::move(m).err();
      if (m->size() != nf) return state_error(who, "_bin_mapper.is_categorical_ has not n_features entries");
      bm_cat = std::move(m).value();
    }
    if (bm_cat != is_cat_model) return state_error(who, "_bin_mapper.is_categorical_ disagrees with the categorical features");
    auto thr = need_attr(**bm, "bin_thresholds_");
    if (!thr) return std::move(thr).err();
    if ((*thr)->items.size() != nf) return state_error(who, "_bin_mapper.bin_thresholds_ has not n_features entries");
    std::uint32_t row = 0;
    for (std::size_t f = 0; f < nf; ++f) {
      if (!bm_cat[f]) continue;
      known_row[f] = row++;
      e->known_bitsets.resize(8 * static_cast<std::size_t>(row), 0);
      auto cv = as_tensor<double>(*(*thr)->items[f], idx_name(who, "_bin_mapper.bin_thresholds_", f), 1);
      if (!cv) return std::move(cv).err();
      for (std::size_t i = 0; i < cv->size(); ++i) {
        const double c = (*cv)[i];
        if (!(c >= 0 && c < 256) || c != std::floor(c)) return state_error(who, "a known category outside 0..255");
        const auto b = static_cast<std::uint32_t>(c);
        e->known_bitsets[8 * (row - 1) + (b >> 5)] |= 1u << (b & 31);
      }
    }
  }

  auto preds = need_attr(obj, "_predictors");
  if (!preds) return std::move(preds).err();
  if ((*preds)->k != node::kind::list || (*preds)->items.empty()) return state_error(who, "_predictors must be a non-empty list");
  for (std::size_t it = 0; it < (*preds)->items.size(); ++it) {
    const node& iter = *(*preds)->items[it];
    if ((iter.k != node::kind::list && iter.k != node::kind::tuple) || iter.items.size() != e->k)
      return state_error(who, "_predictors[" + std::to_string(it) + "] has not n_trees_per_iteration_ predictors");
    for (std::size_t j = 0; j < e->k; ++j) {
      const node& p = *iter.items[j];
      const std::string pw = who + "._predictors[" + std::to_string(it) + "][" + std::to_string(j) + "]";
      if (p.type_name() != "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
        return state_error(pw, "expected a TreePredictor");
      auto bits = attr_tensor<std::uint32_t>(p, "raw_left_cat_bitsets", 2);
      if (!bits) return std::move(bits).err();
      if (bits->dim(1) != 8) return state_error(pw, "raw_left_cat_bitsets must have 8 words per row");
      const std::size_t bit_base = e->left_bitsets.size() / 8;
      const std::size_t n_bits = bits->dim(0);
      if (bit_base + n_bits >= UINT32_MAX) return fail(errc::limit_exceeded, who + ": too many categorical splits");
      e->left_bitsets.insert(e->left_bitsets.end(), bits->p, bits->p + bits->size());
      auto nodes_attr = need_attr(p, "nodes");
      if (!nodes_attr) return std::move(nodes_attr).err();
      auto rec = read_records(**nodes_attr, pw + ".nodes");
      if (!rec) return std::move(rec).err();
      const std::string nw = pw + ".nodes";
      VITRIFY_TRY(check_layout(*rec, hgb_node_layout, 56, 0, nw));
      auto f_value = rec->field("value", true, nw);
      auto f_feat = rec->field("feature_idx", false, nw);
      auto f_thr = rec->field("num_threshold", true, nw);
      auto f_miss = rec->field("missing_go_to_left", false, nw);
      auto f_left = rec->field("left", false, nw);
      auto f_right = rec->field("right", false, nw);
      auto f_leaf = rec->field("is_leaf", false, nw);
      auto f_cat = rec->field("is_categorical", false, nw);
      auto f_bits = rec->field("bitset_idx", false, nw);
      for (auto* f : {&f_value, &f_feat, &f_thr, &f_miss, &f_left, &f_right, &f_leaf, &f_cat, &f_bits})
        if (!*f) return std::move(*f).err();
      const std::size_t count = rec->count;
      if (count == 0) return state_error(pw, "predictor has no nodes");
      const std::size_t base_idx = e->nodes.size();
      if (base_idx + count >= UINT32_MAX) return fail(errc::limit_exceeded, who + ": too many nodes");
      e->roots.push_back(static_cast<std::uint32_t>(base_idx));
      for (std::size_t i = 0; i < count; ++i) {
        hgb_node n;
        const auto self = static_cast<std::uint32_t>(base_idx + i);
        if (rec->integer(i, *f_leaf)) {
          n.value = rec->real(i, *f_value);
          n.child[0] = n.child[1] = self;
          e->nodes.push_back(n);
          continue;
        }
        const std::int64_t l = rec->integer(i, *f_left), r = rec->integer(i, *f_right);
        const std::int64_t f = rec->integer(i, *f_feat);
        // Children strictly after their parent (depth-first layout): every walk ends.
        if (l <= static_cast<std::int64_t>(i) || r <= static_cast<std::int64_t>(i) ||
            l >= static_cast<std::int64_t>(count) || r >= static_cast<std::int64_t>(count))
          return state_error(pw, "node " + std::to_string(i) + " has a child index out of range");
        if (f < 0 || f >= static_cast<std::int64_t>(nf)) return state_error(pw, "node " + std::to_string(i) + " splits on a feature out of range");
        n.feature = static_cast<std::int32_t>(f);
        n.child[0] = static_cast<std::uint32_t>(base_idx + static_cast<std::size_t>(l));
        n.child[1] = static_cast<std::uint32_t>(base_idx + static_cast<std::size_t>(r));
        n.missing_left = rec->integer(i, *f_miss) != 0;
        n.categorical = rec->integer(i, *f_cat) != 0;
        e->has_categorical = e->has_categorical || n.categorical;
        if (n.categorical) {
          const std::int64_t b = rec->integer(i, *f_bits);
          if (b < 0 || static_cast<std::size_t>(b) >= n_bits) return state_error(pw, "node " + std::to_string(i) + " has a bitset index out of range");
          if (!is_cat_model[static_cast<std::size_t>(f)]) return state_error(pw, "categorical split on a numeric feature");
          set_cat_rows(n, static_cast<std::uint32_t>(bit_base + static_cast<std::size_t>(b)), known_row[static_cast<std::size_t>(f)]);
        } else {
          n.value = rec->real(i, *f_thr);
        }
        e->nodes.push_back(n);
      }
    }
  }
  if (!e->cats.empty() && e->cats.size() + e->numeric_cols.size() != nf) return state_error(who, "preprocessor columns disagree with n_features_in_");
  e->methods = method_bit(method::predict);
  if (e->is_classifier) e->methods |= method_bit(method::predict_proba) | method_bit(method::decision_function);
  return estimator_ptr(std::move(e));
}

// ---------------------------------------------------------------------------------------------
// IsolationForest
// ---------------------------------------------------------------------------------------------

/// sklearn.ensemble._iforest._average_path_length for one count (np.log: see the docs on
/// bit-exactness).
double average_path_length(double n) noexcept {
  if (n <= 1) return 0.0;
  if (n == 2) return 1.0;
  return 2.0 * (std::log(n - 1.0) + 0.5772156649015329) - 2.0 * (n - 1.0) / n;
}

class iforest_model final : public estimator {
 public:
  packed_trees pt;        // leaf value = decision path length + average path length - 1
  double denominator = 0; // n_estimators * _average_path_length([_max_samples])
  double offset = 0;

  [[nodiscard]] std::size_t width(method) const override { return 1; }

  [[nodiscard]] double finish(method m, double depth) const noexcept {
    const double q = denominator != 0 ? depth / denominator : 1.0;
    const double score = -std::pow(2.0, -q);   // score_samples
    if (m == method::score_samples) return score;
    const double dec = score - offset;
    if (m == method::decision_function) return dec;
    return dec < 0 ? -1.0 : 1.0;
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, short_name(type));
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    // IsolationForest validates with ensure_all_finite=False: NaN and inf are accepted.
    dense out(x.rows(), 1, 0.0);
    for_each_leaf(pt, x, [&](std::size_t r, std::size_t, const double* v) { out.v[r] += *v; });
    for (double& d : out.v) d = finish(m, d);
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    double depth = 0.0;
    for (std::uint32_t root : pt.roots) depth += *walk(pt, root, row_f64{row.data()});
    out[0] = finish(m, depth);
    return {};
  }
};

result<estimator_ptr> build_isolation_forest(const node& obj, build_context&) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<iforest_model>();
  VITRIFY_TRY(read_feature_info(obj, *e));
  if (e->n_features < 1 || e->n_features > INT32_MAX) return state_error(who, "n_features_in_ is missing or out of range");
  auto list = estimator_list(obj, who);
  if (!list) return std::move(list).err();
  if (list->empty()) return state_error(who, "estimators_ is empty");
  auto feats = need_attr(obj, "estimators_features_");
  if (!feats) return std::move(feats).err();
  if ((*feats)->items.size() != list->size()) return state_error(who, "estimators_features_ has not one entry per tree");
  auto max_features = get_int(obj, "_max_features");
  if (!max_features) return std::move(max_features).err();
  auto max_samples = get_float(obj, "_max_samples");
  if (!max_samples) return std::move(max_samples).err();
  auto offset = get_float(obj, "offset_");
  if (!offset) return std::move(offset).err();
  e->offset = *offset;
  const bool subsample = *max_features != e->n_features;
  const node* dpl_all = opt_attr(obj, "_decision_path_lengths");
  const node* apl_all = opt_attr(obj, "_average_path_length_per_tree");
  if ((dpl_all && dpl_all->items.size() != list->size()) || (apl_all && apl_all->items.size() != list->size()))
    return state_error(who, "path length arrays have not one entry per tree");
  e->pt.width = 1;
  e->pt.n_features = static_cast<std::int32_t>(e->n_features);
  for (std::size_t i = 0; i < list->size(); ++i) {
    const node& te = *(*list)[i];
    const std::string tw = idx_name(who, "estimators_", i);
    if (te.type_name() != "sklearn.tree.ExtraTreeRegressor") return unsupported_error(tw, "expected an ExtraTreeRegressor");
    auto t = read_estimator_tree(te, tw);
    if (!t) return std::move(t).err();
    if (t->n_outputs != 1 || t->max_n_classes != 1) return state_error(tw, "tree shape disagrees with the ensemble");
    std::vector<std::int32_t> fmap;
    if (subsample) {
      auto f = as_tensor<std::int64_t>(*(*feats)->items[i], idx_name(who, "estimators_features_", i), 1);
      if (!f) return std::move(f).err();
      if (static_cast<std::int64_t>(f->size()) != *max_features || t->n_features != *max_features)
        return state_error(tw, "feature subset size disagrees with _max_features");
      for (std::size_t j = 0; j < f->size(); ++j) {
        if ((*f)[j] < 0 || (*f)[j] >= e->n_features) return state_error(tw, "feature subset index out of range");
        fmap.push_back(static_cast<std::int32_t>((*f)[j]));
      }
    } else if (t->n_features != e->n_features) {
      return state_error(tw, "tree n_features disagrees with n_features_in_");
    }
    const std::size_t count = t->nodes.size();
    std::vector<double> dpl(count), apl(count);
    if (dpl_all && apl_all) {
      auto d = as_tensor<std::int64_t>(*dpl_all->items[i], idx_name(who, "_decision_path_lengths", i), 1);
      if (!d) return std::move(d).err();
      auto a = as_tensor<double>(*apl_all->items[i], idx_name(who, "_average_path_length_per_tree", i), 1);
      if (!a) return std::move(a).err();
      if (d->size() != count || a->size() != count) return state_error(tw, "path length arrays disagree with the node count");
      for (std::size_t j = 0; j < count; ++j) {
        dpl[j] = static_cast<double>((*d)[j]);
        apl[j] = (*a)[j];
      }
    } else {
      // sklearn <= 1.2 computed these at predict time: node depth (root = 1) and the average
      // path length of the node's training sample count.
      std::vector<std::int64_t> depth(count, 0);
      depth[0] = 1;
      for (std::size_t j = 0; j < count; ++j) {
        apl[j] = average_path_length(static_cast<double>(t->n_node_samples[j]));
        if (t->nodes[j].feature >= 0) depth[t->nodes[j].left] = depth[t->nodes[j].right] = depth[j] + 1;
        dpl[j] = static_cast<double>(depth[j]);
      }
    }
    // sklearn: depths += dpl[leaf] + apl[leaf] - 1.0, evaluated left to right.
    VITRIFY_TRY(e->pt.append(*t, [&](std::size_t id, double* out) { out[0] = (dpl[id] + apl[id]) - 1.0; }, subsample ? &fmap : nullptr));
  }
  e->denominator = static_cast<double>(list->size()) * average_path_length(*max_samples);
  e->methods = method_bit(method::predict) | method_bit(method::decision_function) | method_bit(method::score_samples);
  return estimator_ptr(std::move(e));
}

}  // namespace

void register_ensemble(registry& r) {
  for (const char* t : {"sklearn.ensemble.RandomForestClassifier", "sklearn.ensemble.RandomForestRegressor",
                        "sklearn.ensemble.ExtraTreesClassifier", "sklearn.ensemble.ExtraTreesRegressor"})
    r.add(t, build_forest);
  r.add("sklearn.ensemble.GradientBoostingClassifier", build_gradient_boosting);
  r.add("sklearn.ensemble.GradientBoostingRegressor", build_gradient_boosting);
  r.add("sklearn.ensemble.HistGradientBoostingClassifier", build_hist_gradient_boosting);
  r.add("sklearn.ensemble.HistGradientBoostingRegressor", build_hist_gradient_boosting);
  r.add("sklearn.ensemble.IsolationForest", build_isolation_forest);
}

}  // namespace vitrify::runtime
