// src/runtime/preprocessing_encoders.cpp - categories (numeric: sorted, NaN last; text: str, then None / NaN) and the
// encoders reading them: OneHotEncoder, OrdinalEncoder, LabelEncoder
// (see preprocessing_internal.hpp for what the families share and the fidelity rules).
#include "runtime/preprocessing_internal.hpp"

namespace vitrify::runtime::prep {

namespace {

// ==========================================================================================
// Categories (encoders, LabelEncoder): numeric (sorted, NaN last) or text (str, then None / NaN)
// ==========================================================================================

struct categories {
  bool text = false;
  std::vector<double> nums;                          // numeric: sorted; a NaN may end them
  std::vector<std::string> strs;                     // text: the str categories (any order)
  std::unordered_map<std::string, std::int64_t> index;
  std::int64_t none_idx = -1, nan_idx = -1;          // positions of None / NaN, or -1
  bool integer_kind = false;                         // numeric categories of an integer dtype
  std::size_t size() const { return text ? strs.size() + (none_idx >= 0) + (nan_idx >= 0) : nums.size(); }
  /// A missing text cell (None or NaN: the table does not tell them apart) matches NaN, else None.
  std::int64_t missing() const { return nan_idx >= 0 ? nan_idx : none_idx; }

  std::int64_t find_number(double v) const {
    if (text) return v != v ? missing() : -1;
    if (v != v) return (!nums.empty() && nums.back() != nums.back()) ? static_cast<std::int64_t>(nums.size() - 1) : -1;
    // np.searchsorted on the sorted categories after a membership test.
    std::size_t end = nums.size();
    if (end && nums.back() != nums.back()) --end;
    auto it = std::lower_bound(nums.begin(), nums.begin() + static_cast<std::ptrdiff_t>(end), v);
    if (it != nums.begin() + static_cast<std::ptrdiff_t>(end) && *it == v) return it - nums.begin();
    return -1;
  }
};

result<categories> read_categories(const node& n, std::string_view who) {
  categories c;
  if (n.k != node::kind::array || !n.arr) return state_error(who, "categories must be arrays");
  const auto& a = *n.arr;
  if (a.shape.size() != 1) return state_error(who, "categories must be 1-d");
  const char k = a.kind();
  if (k == 'U' || k == 'O') {
    c.text = true;
    if (a.items.empty()) {
      if (a.strings.size() != a.count()) return state_error(who, "categories hold values that are not str");
      c.strs = a.strings;
    } else {
      // An object array that is not all str: str, then None and/or NaN at the end.
      for (const node* it : a.items) {
        if (c.none_idx >= 0 || c.nan_idx >= 0) {
          if (!(it->k == node::kind::none && c.none_idx < 0) && !(is_nan_node(*it) && c.nan_idx < 0))
            return state_error(who, "missing-value categories must come last");
        }
        const std::int64_t pos = static_cast<std::int64_t>(c.strs.size()) + (c.none_idx >= 0) + (c.nan_idx >= 0);
        if (it->k == node::kind::string) c.strs.push_back(it->text);
        else if (it->k == node::kind::none) c.none_idx = pos;
        else if (is_nan_node(*it)) c.nan_idx = pos;
        else return unsupported_error(who, "categories mixing text and numbers (only str, None and NaN are supported)");
      }
    }
    for (std::size_t i = 0; i < c.strs.size(); ++i)
      if (!c.index.emplace(c.strs[i], static_cast<std::int64_t>(i)).second)
        return state_error(who, "duplicate category '" + c.strs[i] + "'");
    return c;
  }
  if (k == 'S') return unsupported_error(who, "bytes categories");
  auto t = as_tensor<double>(n, who, 1);
  if (!t) return std::move(t).err();
  c.nums.assign(t->p, t->p + t->size());
  c.integer_kind = k == 'i' || k == 'u' || k == 'b';
  if (c.integer_kind) {
    // int64 categories beyond 2^53 would not survive the comparison with float64 input.
    auto iv = as_tensor<std::int64_t>(n, who, 1);
    if (!iv) return std::move(iv).err();
    for (std::size_t i = 0; i < iv->size(); ++i)
      if ((*iv)[i] > (1ll << 53) || (*iv)[i] < -(1ll << 53)) return unsupported_error(who, "integer categories beyond 2^53");
  }
  // searchsorted needs them sorted, strictly (unique), NaN only last.
  for (std::size_t i = 0; i < c.nums.size(); ++i) {
    const double v = c.nums[i];
    if (v != v && i + 1 != c.nums.size()) return state_error(who, "NaN must be the last category");
    if (i > 0 && v == v && !(c.nums[i - 1] < v)) return state_error(who, "numeric categories must be sorted and unique");
  }
  return c;
}

/// One cell of the input, as the encoders see it.
struct cell_ref {
  bool is_text = false, missing = false;
  double num = 0;
  const std::string* text = nullptr;
};

cell_ref get_cell(const input& x, std::size_t r, std::size_t c) {
  cell_ref k;
  if (x.is_table()) {
    const auto& col = x.tbl().col(c);
    if (col.is_text) {
      k.is_text = true;
      k.missing = col.missing[r];
      k.text = &col.texts[r];
      return k;
    }
    k.num = col.numbers[r];
    return k;
  }
  k.num = x.matrix().at(r, c);
  return k;
}

/// Index of the cell among the categories, -1 when unknown; an error for input that can never
/// match (text for numeric categories, infinity).
result<std::int64_t> lookup(const categories& cats, const cell_ref& k, std::string_view who, std::size_t col) {
  if (k.is_text) {
    if (k.missing) return cats.text ? cats.missing() : cats.find_number(std::nan(""));
    if (!cats.text)
      return bad_input(who, "column " + std::to_string(col) + " holds text, but the encoder was fitted on numbers");
    auto it = cats.index.find(*k.text);
    return it == cats.index.end() ? std::int64_t(-1) : it->second;
  }
  if (std::isinf(k.num)) return bad_input(who, "Input X contains infinity or a value too large.");
  return cats.find_number(k.num);
}

std::string cell_text(const cell_ref& k) {
  if (k.is_text) return k.missing ? "nan" : "'" + *k.text + "'";
  return py_float_repr(k.num);
}

/// A list of per-feature values that are None or an integer (drop_idx_, infrequent indices...).
result<std::vector<std::int64_t>> optional_ints(const node& n, std::string_view who, std::size_t expect) {
  std::vector<std::int64_t> out;
  if (n.k == node::kind::list || n.k == node::kind::tuple) {
    for (const node* it : n.items) {
      if (it->k == node::kind::none) { out.push_back(-1); continue; }
      auto v = as_integer(*it, who);
      if (!v) return std::move(v).err();
      if (*v < 0) return state_error(who, "negative index");
      out.push_back(*v);
    }
  } else if (n.k == node::kind::array && n.arr && n.arr->kind() == 'O') {
    if (n.arr->shape.size() != 1) return state_error(who, "expected a 1-d array");
    for (const node* it : n.arr->items) {
      if (it->k == node::kind::none) { out.push_back(-1); continue; }
      auto v = as_integer(*it, who);
      if (!v) return std::move(v).err();
      if (*v < 0) return state_error(who, "negative index");
      out.push_back(*v);
    }
    if (n.arr->items.empty() && n.arr->count() != 0) return state_error(who, "expected integers");
  } else {
    auto t = as_tensor<std::int64_t>(n, who, 1);
    if (!t) return std::move(t).err();
    for (std::size_t i = 0; i < t->size(); ++i) {
      if ((*t)[i] < 0) return state_error(who, "negative index");
      out.push_back((*t)[i]);
    }
  }
  if (out.size() != expect)
    return state_error(who, "has " + std::to_string(out.size()) + " entries for " + std::to_string(expect) + " features");
  return out;
}

/// Per-feature infrequent-category grouping (scikit-learn >= 1.1).
struct infrequent {
  bool enabled = false;
  std::vector<std::int64_t> first;                   // per feature: infrequent_idx[0], or -1
  std::vector<std::vector<std::int64_t>> mapping;    // per feature: default -> grouped code (empty: none)
};

result<infrequent> read_infrequent(const node& obj, const std::vector<categories>& cats,
                                   const std::vector<std::int64_t>& missing_idx, std::string_view who) {
  infrequent inf;
  const std::size_t nf = cats.size();
  inf.first.assign(nf, -1);
  inf.mapping.assign(nf, {});
  if (!opt_attr(obj, "_infrequent_enabled")) return inf;
  auto en = get_bool(obj, "_infrequent_enabled");
  if (!en) return std::move(en).err();
  if (!*en) return inf;
  inf.enabled = true;
  auto ii = need_attr(obj, "_infrequent_indices");
  if (!ii) return std::move(ii).err();
  auto mp = need_attr(obj, "_default_to_infrequent_mappings");
  if (!mp) return std::move(mp).err();
  const node& il = **ii;
  const node& ml = **mp;
  if ((il.k != node::kind::list && il.k != node::kind::tuple) || il.items.size() != nf ||
      (ml.k != node::kind::list && ml.k != node::kind::tuple) || ml.items.size() != nf)
    return state_error(who, "infrequent-category state does not match the features");
  for (std::size_t f = 0; f < nf; ++f) {
    const node& a = *il.items[f];
    const node& m = *ml.items[f];
    if ((a.k == node::kind::none) != (m.k == node::kind::none))
      return state_error(who, "_infrequent_indices and _default_to_infrequent_mappings disagree");
    if (a.k == node::kind::none) continue;
    // The missing category (OrdinalEncoder) is left out of the grouping.
    const std::size_t n_cats = cats[f].size() - (missing_idx[f] >= 0 ? 1 : 0);
    auto idx = as_tensor<std::int64_t>(a, std::string(who) + "._infrequent_indices", 1);
    if (!idx) return std::move(idx).err();
    auto map = as_tensor<std::int64_t>(m, std::string(who) + "._default_to_infrequent_mappings", 1);
    if (!map) return std::move(map).err();
    if (idx->size() == 0 || map->size() != n_cats) return state_error(who, "infrequent mapping has the wrong size");
    if ((*idx)[0] < 0 || static_cast<std::size_t>((*idx)[0]) >= n_cats) return state_error(who, "infrequent index out of range");
    inf.first[f] = (*idx)[0];
    inf.mapping[f].assign(map->p, map->p + map->size());
    for (auto v : inf.mapping[f])
      if (v < 0 || static_cast<std::size_t>(v) >= n_cats) return state_error(who, "infrequent mapping out of range");
  }
  return inf;
}

result<std::vector<categories>> read_category_list(const node& obj, std::size_t nf, std::string_view who) {
  auto cl = need_attr(obj, "categories_");
  if (!cl) return std::move(cl).err();
  const node& l = **cl;
  if ((l.k != node::kind::list && l.k != node::kind::tuple) || l.items.size() != nf)
    return state_error(who, "categories_ must hold one array per feature");
  std::vector<categories> out;
  for (std::size_t f = 0; f < nf; ++f) {
    auto c = read_categories(*l.items[f], std::string(who) + ".categories_");
    if (!c) return std::move(c).err();
    if (c->size() == 0) return state_error(who, "a feature has no categories");
    out.push_back(std::move(c).value());
  }
  return out;
}

/// Output dtype of the encoders: any numeric numpy type; float32 / float16 round the codes.
result<int> read_out_dtype(const node& obj, std::string_view who) {
  const node* d = opt_attr(obj, "dtype");
  if (!d) return 64;
  std::string name = d->k == node::kind::global ? d->text : d->k == node::kind::dtype ? d->text : std::string();
  if (name == "numpy.float32" || name == "<f4") return 32;
  if (name == "numpy.float16" || name == "<f2" || name == "numpy.longdouble" || name == "numpy.complex128")
    return unsupported_error(who, "output dtype " + name);
  return 64;
}

// ==========================================================================================
// OneHotEncoder
// ==========================================================================================

class one_hot final : public step_estimator {
 public:
  enum class unknown_mode { error, ignore, infrequent } unknown = unknown_mode::error;
  std::vector<categories> cats;
  infrequent inf;
  std::vector<std::int64_t> drop;     // per feature, after grouping; -1 = none
  std::vector<std::size_t> offset;    // first output column of each feature
  std::size_t out_cols = 0;

  std::size_t width(method) const override { return out_cols; }

  result<dense> run(method, const input& x) const override {
    const std::size_t nf = cats.size();
    if (x.cols() != nf) return bad_input("OneHotEncoder", "wrong number of columns");
    dense out(x.rows(), out_cols, 0.0);
    for (std::size_t f = 0; f < nf; ++f) {
      for (std::size_t r = 0; r < x.rows(); ++r) {
        const cell_ref k = get_cell(x, r, f);
        auto code = lookup(cats[f], k, "OneHotEncoder", f);
        if (!code) return std::move(code).err();
        std::int64_t c = *code;
        bool keep = c >= 0;
        if (!keep) {
          if (unknown == unknown_mode::error)
            return bad_input("OneHotEncoder", "Found unknown categories [" + cell_text(k) + "] in column " +
                                                  std::to_string(f) + " during transform");
          c = 0;
        }
        if (inf.enabled && inf.first[f] >= 0) {
          if (!keep) {
            c = inf.first[f];
            if (unknown == unknown_mode::infrequent) keep = true;
          }
          c = inf.mapping[f][static_cast<std::size_t>(c)];
        }
        if (drop[f] >= 0) {
          if (c == drop[f]) keep = false;
          else if (c > drop[f]) --c;
        }
        if (keep) out(r, offset[f] + static_cast<std::size_t>(c)) = 1.0;
      }
    }
    return out;
  }
};


// ==========================================================================================
// OrdinalEncoder
// ==========================================================================================

class ordinal final : public step_estimator {
 public:
  std::vector<categories> cats;
  infrequent inf;
  std::vector<std::int64_t> missing_idx;  // per feature: the NaN category's index, or -1
  bool use_encoded = false;
  double unknown_value = 0, encoded_missing = std::nan("");
  bool f32 = false;

  std::size_t width(method) const override { return cats.size(); }

  result<dense> run(method, const input& x) const override {
    const std::size_t nf = cats.size();
    if (x.cols() != nf) return bad_input("OrdinalEncoder", "wrong number of columns");
    dense out(x.rows(), nf);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      for (std::size_t f = 0; f < nf; ++f) {
        const cell_ref k = get_cell(x, r, f);
        auto code = lookup(cats[f], k, "OrdinalEncoder", f);
        if (!code) return std::move(code).err();
        std::int64_t c = *code;
        const bool valid = c >= 0;
        if (!valid) {
          if (!use_encoded)
            return bad_input("OrdinalEncoder", "Found unknown categories [" + cell_text(k) + "] in column " +
                                                   std::to_string(f) + " during transform");
          c = 0;
        }
        if (inf.enabled && inf.first[f] >= 0) {
          if (!valid) c = inf.first[f];
          if (c != missing_idx[f]) c = inf.mapping[f][static_cast<std::size_t>(c)];
        }
        double y = static_cast<double>(c);
        if (missing_idx[f] >= 0 && c == missing_idx[f]) y = encoded_missing;
        if (!valid) y = unknown_value;
        out(r, f) = f32 ? static_cast<double>(to_f32(y)) : y;
      }
    }
    return out;
  }
};


// ==========================================================================================
// LabelEncoder: transform of one column of labels into their index in classes_.
// ==========================================================================================

class label_encoder final : public step_estimator {
 public:
  categories cats;

  std::size_t width(method) const override { return 1; }

  result<dense> run(method, const input& x) const override {
    if (x.cols() != 1) return bad_input("LabelEncoder", "expects one column of labels");
    dense out(x.rows(), 1);
    for (std::size_t r = 0; r < x.rows(); ++r) {
      cell_ref k = get_cell(x, r, 0);
      if (!k.is_text && !cats.text && cats.integer_kind) {
        // column_or_1d(y, dtype=classes_.dtype): float labels are cast to the integer dtype.
        if (k.num != k.num) return bad_input("LabelEncoder", "Input y contains NaN.");
        if (std::isinf(k.num) || std::abs(k.num) > 9.2e18) return bad_input("LabelEncoder", "Input y contains infinity or a value too large.");
        k.num = std::trunc(k.num);
      }
      auto code = lookup(cats, k, "LabelEncoder", 0);
      if (!code) return std::move(code).err();
      if (*code < 0) return bad_input("LabelEncoder", "y contains previously unseen labels: [" + cell_text(k) + "]");
      out(r, 0) = static_cast<double>(*code);
    }
    return out;
  }
};

}  // namespace

result<estimator_ptr> build_one_hot(const node& obj, build_context&) {
  constexpr std::string_view who = "OneHotEncoder";
  auto e = std::make_shared<one_hot>();
  e->methods = method_bit(method::transform);
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  // sparse_output (`sparse` before 1.2) only changes the container scikit-learn returns: the
  // runtime computes the same values densely (docs/RUNTIME.md, "Sparse outputs").
  auto hu = get_str(obj, "handle_unknown");
  if (!hu) return std::move(hu).err();
  if (*hu == "error") e->unknown = one_hot::unknown_mode::error;
  else if (*hu == "ignore") e->unknown = one_hot::unknown_mode::ignore;
  else if (*hu == "infrequent_if_exist" || *hu == "warn") e->unknown = one_hot::unknown_mode::infrequent;
  else return unsupported_error(who, "handle_unknown='" + *hu + "'");
  auto od = read_out_dtype(obj, who);
  if (!od) return std::move(od).err();
  auto cats = read_category_list(obj, *nf, who);
  if (!cats) return std::move(cats).err();
  e->cats = std::move(cats).value();
  for (const auto& c : e->cats) e->needs_table = e->needs_table || c.text;
  auto inf = read_infrequent(obj, e->cats, std::vector<std::int64_t>(*nf, -1), who);
  if (!inf) return std::move(inf).err();
  e->inf = std::move(inf).value();
  // Grouped cardinality of each feature.
  std::vector<std::size_t> grouped(*nf);
  for (std::size_t f = 0; f < *nf; ++f) {
    grouped[f] = e->cats[f].size();
    if (e->inf.enabled && e->inf.first[f] >= 0) {
      std::int64_t mx = 0;
      for (auto v : e->inf.mapping[f]) mx = std::max(mx, v);
      grouped[f] = static_cast<std::size_t>(mx) + 1;
    }
  }
  e->drop.assign(*nf, -1);
  // _drop_idx_after_grouping (1.2.2+) indexes the grouped categories; older files only have
  // drop_idx_ (the same thing when nothing is grouped).
  const node* dn = obj.attr("_drop_idx_after_grouping") ? opt_attr(obj, "_drop_idx_after_grouping")
                                                         : opt_attr(obj, "drop_idx_");
  if (dn) {
    auto d = optional_ints(*dn, "OneHotEncoder._drop_idx_after_grouping", *nf);
    if (!d) return std::move(d).err();
    e->drop = std::move(d).value();
    for (std::size_t f = 0; f < *nf; ++f)
      if (e->drop[f] >= 0 && static_cast<std::size_t>(e->drop[f]) >= grouped[f])
        return state_error(who, "dropped category index out of range");
  }
  std::vector<std::size_t> outs(*nf);
  for (std::size_t f = 0; f < *nf; ++f) outs[f] = grouped[f] - (e->drop[f] >= 0 ? 1 : 0);
  if (const node* no = opt_attr(obj, "_n_features_outs")) {
    auto v = as_float_list(*no, "OneHotEncoder._n_features_outs");
    if (!v) return std::move(v).err();
    if (v->size() != *nf) return state_error(who, "_n_features_outs does not match the features");
    for (std::size_t f = 0; f < *nf; ++f)
      if ((*v)[f] != static_cast<double>(outs[f])) return state_error(who, "_n_features_outs disagrees with the categories");
  }
  for (std::size_t f = 0; f < *nf; ++f) {
    e->offset.push_back(e->out_cols);
    e->out_cols += outs[f];
  }
  return estimator_ptr(e);
}

result<estimator_ptr> build_ordinal(const node& obj, build_context&) {
  constexpr std::string_view who = "OrdinalEncoder";
  auto e = std::make_shared<ordinal>();
  e->methods = method_bit(method::transform);
  auto nf = read_info(obj, *e);
  if (!nf) return std::move(nf).err();
  auto hu = get_str(obj, "handle_unknown");
  if (!hu) return std::move(hu).err();
  if (*hu == "use_encoded_value") {
    e->use_encoded = true;
    auto uv = get_float(obj, "unknown_value");
    if (!uv) return std::move(uv).err();
    e->unknown_value = *uv;
  } else if (*hu != "error") {
    return unsupported_error(who, "handle_unknown='" + *hu + "'");
  }
  if (const node* em = opt_attr(obj, "encoded_missing_value")) {
    auto v = as_number(*em, "OrdinalEncoder.encoded_missing_value");
    if (!v) return std::move(v).err();
    e->encoded_missing = *v;
  }
  auto od = read_out_dtype(obj, who);
  if (!od) return std::move(od).err();
  e->f32 = *od == 32;
  auto cats = read_category_list(obj, *nf, who);
  if (!cats) return std::move(cats).err();
  e->cats = std::move(cats).value();
  for (const auto& c : e->cats) e->needs_table = e->needs_table || c.text;
  e->missing_idx.assign(*nf, -1);
  if (const node* mi = opt_attr(obj, "_missing_indices")) {
    if (mi->k != node::kind::dict) return state_error(who, "_missing_indices must be a dict");
    for (const auto& [k, v] : mi->entries) {
      auto f = as_integer(*k, "OrdinalEncoder._missing_indices");
      if (!f) return std::move(f).err();
      auto i = as_integer(*v, "OrdinalEncoder._missing_indices");
      if (!i) return std::move(i).err();
      if (*f < 0 || static_cast<std::size_t>(*f) >= *nf) return state_error(who, "_missing_indices names a feature out of range");
      // scikit-learn records the index of the NaN category, always the last one.
      if (*i < 0 || static_cast<std::size_t>(*i) + 1 != e->cats[static_cast<std::size_t>(*f)].size())
        return state_error(who, "_missing_indices must point at the last category");
      e->missing_idx[static_cast<std::size_t>(*f)] = *i;
    }
  }
  auto inf = read_infrequent(obj, e->cats, e->missing_idx, who);
  if (!inf) return std::move(inf).err();
  e->inf = std::move(inf).value();
  return estimator_ptr(e);
}

result<estimator_ptr> build_label_encoder(const node& obj, build_context&) {
  auto e = std::make_shared<label_encoder>();
  e->methods = method_bit(method::transform);
  e->n_features = 1;
  auto cl = need_attr(obj, "classes_");
  if (!cl) return std::move(cl).err();
  auto c = read_categories(**cl, "LabelEncoder.classes_");
  if (!c) return std::move(c).err();
  e->cats = std::move(c).value();
  e->needs_table = e->cats.text;
  return estimator_ptr(e);
}

}  // namespace vitrify::runtime::prep
