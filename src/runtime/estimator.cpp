// Registry, build context and the state-reading helpers of estimator.hpp.
#include "runtime/estimator.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <cstring>
#include <mutex>

namespace vitrify::runtime {

using pyobj::node;

// ---- errors ----

std::string_view short_name(std::string_view t) noexcept {
  auto p = t.rfind('.');
  return p == std::string_view::npos ? t : t.substr(p + 1);
}

error state_error(std::string_view who, std::string_view what) {
  return fail(errc::bad_state, std::string(who) + ": " + std::string(what));
}

error unsupported_error(std::string_view who, std::string_view what) {
  return fail(errc::unsupported_model, std::string(who) + ": " + std::string(what));
}

// ---- estimator defaults ----

result<void> estimator::run_row(method m, std::span<const double> row, std::span<double> out) const {
  auto r = run(m, input(matrix_view(row.data(), 1, row.size())));
  if (!r) return std::move(r).err();
  if (r->v.size() != out.size())
    return fail(errc::invalid_argument, type + ": output has " + std::to_string(r->v.size()) + " values, buffer " + std::to_string(out.size()));
  std::memcpy(out.data(), r->v.data(), out.size() * sizeof(double));
  return {};
}

result<matrix_view> input::numeric(dense& storage, std::string_view who) const {
  if (!t_) return m_;
  storage = dense(t_->rows(), t_->cols());
  for (std::size_t c = 0; c < t_->cols(); ++c) {
    const auto& col = t_->col(c);
    if (col.is_text)
      return fail(errc::invalid_argument, std::string(who) + " needs numbers, but column '" + col.name + "' holds text");
    for (std::size_t r = 0; r < t_->rows(); ++r) storage(r, c) = col.numbers[r];
  }
  return storage.view();
}

// ---- registry ----

void registry::add(std::string type_name, builder_fn fn) { map_[std::move(type_name)] = std::move(fn); }

const builder_fn* registry::find(std::string_view type_name) const {
  auto it = map_.find(std::string(type_name));
  return it == map_.end() ? nullptr : &it->second;
}

std::vector<std::string> registry::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : map_) out.push_back(k);
  std::sort(out.begin(), out.end());
  return out;
}

const registry& registry::instance() {
  static const registry r = [] {
    registry x;
    register_linear(x);
    register_svm(x);
    register_naive_bayes(x);
    register_neighbors(x);
    register_neural(x);
    register_cluster(x);
    register_tree(x);
    register_ensemble(x);
    register_preprocessing(x);
    register_decomposition(x);
    register_compose(x);
    return x;
  }();
  return r;
}

result<estimator_ptr> build_context::build(const node& n) {
  if (n.k != node::kind::object || !n.obj)
    return fail(errc::unsupported_model, "expected an estimator object, found a plain value");
  if (depth_ > 64) return fail(errc::limit_exceeded, "estimators nested more than 64 deep");
  const builder_fn* fn = reg_.find(n.obj->type);
  if (!fn) return fail(errc::unsupported_model, "the C++ runtime does not implement " + n.obj->type);
  ++depth_;
  auto r = (*fn)(n, *this);
  --depth_;
  if (r && (*r)->type.empty()) {
    // Builders may leave the type to us.
    auto e = std::const_pointer_cast<estimator>(*r);
    e->type = n.obj->type;
  }
  return r;
}

// ---- attributes ----

result<const node*> need_attr(const node& obj, std::string_view key) {
  const node* a = obj.attr(key);
  if (!a) return state_error(short_name(obj.type_name()), "missing attribute " + std::string(key));
  return a;
}

const node* opt_attr(const node& obj, std::string_view key) noexcept {
  const node* a = obj.attr(key);
  return (a && a->k != node::kind::none) ? a : nullptr;
}

namespace {

// Scalar of a numeric numpy dtype at p, as double / int64.
bool scalar_value(const pyobj::ndarray& a, const std::byte* p, double& d, std::int64_t& i, bool& is_int) {
  const std::string& t = a.dtype;
  auto rd = [&](auto x) {
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  is_int = true;
  if (t == "<f8") { d = rd(double{}); is_int = false; return true; }
  if (t == "<f4") { d = rd(float{}); is_int = false; return true; }
  if (t == "<i8") { i = rd(std::int64_t{}); d = static_cast<double>(i); return true; }
  if (t == "<i4") { i = rd(std::int32_t{}); d = static_cast<double>(i); return true; }
  if (t == "<i2") { i = rd(std::int16_t{}); d = static_cast<double>(i); return true; }
  if (t == "|i1") { i = rd(std::int8_t{}); d = static_cast<double>(i); return true; }
  if (t == "<u8") { auto u = rd(std::uint64_t{}); i = static_cast<std::int64_t>(u); d = static_cast<double>(u); return u <= INT64_MAX; }
  if (t == "<u4") { i = rd(std::uint32_t{}); d = static_cast<double>(i); return true; }
  if (t == "<u2") { i = rd(std::uint16_t{}); d = static_cast<double>(i); return true; }
  if (t == "|u1") { i = rd(std::uint8_t{}); d = static_cast<double>(i); return true; }
  if (t == "|b1") { i = rd(std::uint8_t{}) != 0; d = static_cast<double>(i); return true; }
  return false;
}

std::string describe(const node& n) {
  switch (n.k) {
    case node::kind::none: return "None";
    case node::kind::boolean: return "a bool";
    case node::kind::integer: return "an int";
    case node::kind::floating: return "a float";
    case node::kind::string: return "a str";
    case node::kind::list: return "a list";
    case node::kind::tuple: return "a tuple";
    case node::kind::dict: return "a dict";
    case node::kind::array: {
      std::string s = "a " + std::to_string(n.arr->shape.size()) + "-d " + n.arr->dtype + " array of shape (";
      for (std::size_t i = 0; i < n.arr->shape.size(); ++i) s += (i ? ", " : "") + std::to_string(n.arr->shape[i]);
      return s + ")";
    }
    case node::kind::scalar: return "a numpy " + n.arr->dtype + " scalar";
    case node::kind::object: return "a " + n.obj->type + " object";
    case node::kind::global: return "the global " + n.text;
    default: return "an unexpected value";
  }
}

}  // namespace

result<double> as_number(const node& n, std::string_view who) {
  switch (n.k) {
    case node::kind::boolean: return n.b ? 1.0 : 0.0;
    case node::kind::integer: return static_cast<double>(n.i);
    case node::kind::floating: return n.d;
    case node::kind::scalar:
    case node::kind::array: {
      if (n.arr->count() != 1 || n.arr->data.size() < n.arr->itemsize) break;
      double d;
      std::int64_t i;
      bool is_int;
      if (scalar_value(*n.arr, n.arr->data.data(), d, i, is_int)) return d;
      break;
    }
    default: break;
  }
  return state_error(who, "expected a number, got " + describe(n));
}

result<std::int64_t> as_integer(const node& n, std::string_view who) {
  switch (n.k) {
    case node::kind::boolean: return n.b ? 1 : 0;
    case node::kind::integer: return n.i;
    case node::kind::scalar:
    case node::kind::array: {
      if (n.arr->count() != 1 || n.arr->data.size() < n.arr->itemsize) break;
      double d;
      std::int64_t i;
      bool is_int;
      if (scalar_value(*n.arr, n.arr->data.data(), d, i, is_int) && is_int) return i;
      break;
    }
    default: break;
  }
  return state_error(who, "expected an integer, got " + describe(n));
}

static std::string qual(const node& obj, std::string_view key) {
  return std::string(short_name(obj.type_name())) + "." + std::string(key);
}

result<std::int64_t> get_int(const node& obj, std::string_view key) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  return as_integer(**a, qual(obj, key));
}

result<double> get_float(const node& obj, std::string_view key) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  return as_number(**a, qual(obj, key));
}

result<bool> get_bool(const node& obj, std::string_view key) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  if ((*a)->k == node::kind::boolean) return (*a)->b;
  auto i = as_integer(**a, qual(obj, key));
  if (!i) return std::move(i).err();
  return *i != 0;
}

result<std::string> get_str(const node& obj, std::string_view key) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  if ((*a)->k != node::kind::string) return state_error(qual(obj, key), "expected a str, got " + describe(**a));
  return (*a)->text;
}

// ---- tensors ----

template <class T>
static constexpr const char* dtype_of() {
  if constexpr (std::is_same_v<T, double>) return "<f8";
  else if constexpr (std::is_same_v<T, float>) return "<f4";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "<i8";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "<i4";
  else if constexpr (std::is_same_v<T, std::uint8_t>) return "|u1";
  else if constexpr (std::is_same_v<T, std::uint32_t>) return "<u4";
  else return "?";
}

template <class T>
result<tensor<T>> as_tensor(const node& n, std::string_view who, int rank) {
  tensor<T> t;
  if (n.k == node::kind::integer || n.k == node::kind::floating || n.k == node::kind::boolean) {
    if (rank > 0) return state_error(who, "expected a " + std::to_string(rank) + "-d array, got " + describe(n));
    auto d = as_number(n, who);
    if (!d) return std::move(d).err();
    t.owned.push_back(static_cast<T>(*d));
    if constexpr (std::is_integral_v<T>) {
      if (static_cast<double>(t.owned[0]) != *d) return state_error(who, "value does not fit the expected integer type");
    }
    t.p = t.owned.data();
    return t;
  }
  if ((n.k != node::kind::array && n.k != node::kind::scalar) || !n.arr)
    return state_error(who, "expected a numeric array, got " + describe(n));
  const auto& a = *n.arr;
  if (rank >= 0 && static_cast<int>(a.shape.size()) != rank)
    return state_error(who, "expected a " + std::to_string(rank) + "-d array, got " + describe(n));
  char k = a.kind();
  if (!(k == 'f' || k == 'i' || k == 'u' || k == 'b') || a.dtype == "bfloat16" || a.dtype.rfind("float8_", 0) == 0 || a.dtype == "<f2" ||
      !a.fields.empty())
    return state_error(who, "expected a numeric array, got " + describe(n));
  const std::uint64_t count = a.count();
  if (a.data.size() != count * a.itemsize) return state_error(who, "array data size does not match its shape");
  t.shape = a.shape;
  t.owner = a.owner;
  const bool direct = a.dtype == dtype_of<T>() && !a.fortran &&
                      reinterpret_cast<std::uintptr_t>(a.data.data()) % alignof(T) == 0;
  if (direct) {
    t.p = reinterpret_cast<const T*>(a.data.data());
    return t;
  }
  t.owned.resize(count);
  // Convert (and transpose Fortran data into C order).
  std::vector<std::uint64_t> strides;  // source element stride for each logical dim
  const std::size_t r = a.shape.size();
  if (a.fortran) {
    strides.assign(r, 1);
    for (std::size_t i = 1; i < r; ++i) strides[i] = strides[i - 1] * static_cast<std::uint64_t>(a.shape[i - 1]);
  }
  std::vector<std::int64_t> idx(r, 0);
  for (std::uint64_t j = 0; j < count; ++j) {
    std::uint64_t src = j;
    if (a.fortran) {
      src = 0;
      for (std::size_t i = 0; i < r; ++i) src += static_cast<std::uint64_t>(idx[i]) * strides[i];
      for (std::size_t i = r; i-- > 0;) {
        if (++idx[i] < a.shape[i]) break;
        idx[i] = 0;
      }
    }
    double d;
    std::int64_t iv;
    bool is_int;
    if (!scalar_value(a, a.data.data() + src * a.itemsize, d, iv, is_int))
      return state_error(who, "unsupported array dtype " + a.dtype);
    if constexpr (std::is_integral_v<T>) {
      if (!is_int) {
        if (d != d || d != static_cast<double>(static_cast<std::int64_t>(d)))
          return state_error(who, "expected integers, got a non-integral value");
        iv = static_cast<std::int64_t>(d);
      }
      if (iv < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          (iv > 0 && static_cast<std::uint64_t>(iv) > static_cast<std::uint64_t>(std::numeric_limits<T>::max())))
        return state_error(who, "integer value out of range");
      t.owned[j] = static_cast<T>(iv);
    } else {
      t.owned[j] = is_int ? static_cast<T>(iv) : static_cast<T>(d);
    }
  }
  t.p = t.owned.data();
  return t;
}

template <class T>
result<tensor<T>> attr_tensor(const node& obj, std::string_view key, int rank) {
  auto a = need_attr(obj, key);
  if (!a) return std::move(a).err();
  return as_tensor<T>(**a, qual(obj, key), rank);
}

template result<tensor<double>> as_tensor<double>(const node&, std::string_view, int);
template result<tensor<float>> as_tensor<float>(const node&, std::string_view, int);
template result<tensor<std::int64_t>> as_tensor<std::int64_t>(const node&, std::string_view, int);
template result<tensor<std::int32_t>> as_tensor<std::int32_t>(const node&, std::string_view, int);
template result<tensor<std::uint8_t>> as_tensor<std::uint8_t>(const node&, std::string_view, int);
template result<tensor<std::uint32_t>> as_tensor<std::uint32_t>(const node&, std::string_view, int);
template result<tensor<double>> attr_tensor<double>(const node&, std::string_view, int);
template result<tensor<float>> attr_tensor<float>(const node&, std::string_view, int);
template result<tensor<std::int64_t>> attr_tensor<std::int64_t>(const node&, std::string_view, int);
template result<tensor<std::int32_t>> attr_tensor<std::int32_t>(const node&, std::string_view, int);
template result<tensor<std::uint8_t>> attr_tensor<std::uint8_t>(const node&, std::string_view, int);
template result<tensor<std::uint32_t>> attr_tensor<std::uint32_t>(const node&, std::string_view, int);

result<std::vector<double>> as_float_list(const node& n, std::string_view who) {
  if (n.k == node::kind::list || n.k == node::kind::tuple) {
    std::vector<double> out;
    for (const node* x : n.items) {
      auto d = as_number(*x, who);
      if (!d) return std::move(d).err();
      out.push_back(*d);
    }
    return out;
  }
  auto t = as_tensor<double>(n, who, 1);
  if (!t) return std::move(t).err();
  return std::vector<double>(t->p, t->p + t->size());
}

std::string py_float_repr(double d) {
  if (d != d) return "nan";
  if (d == std::numeric_limits<double>::infinity()) return "inf";
  if (d == -std::numeric_limits<double>::infinity()) return "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, r.ptr);
  // Python writes 1e16 as "1e+16" and integral values with ".0".
  auto e = s.find('e');
  if (e != std::string::npos) {
    if (s[e + 1] != '-' && s[e + 1] != '+') s.insert(e + 1, "+");
    // exponent at least two digits
    auto digits = s.size() - (e + 2);
    if (digits < 2) s.insert(e + 2, "0");
  } else if (s.find('.') == std::string::npos) {
    s += ".0";
  }
  return s;
}

result<void> read_classes(const node& classes, estimator& e, std::string_view who) {
  e.is_classifier = true;
  e.classes.clear();
  e.class_values.clear();
  if ((classes.k == node::kind::array) && classes.arr && (!classes.arr->strings.empty() || classes.arr->kind() == 'U' || classes.arr->kind() == 'O')) {
    if (!classes.arr->items.empty()) return unsupported_error(who, "classes_ of mixed Python objects are not supported");
    if (classes.arr->shape.size() != 1) return state_error(who, "classes_ must be 1-d");
    e.string_classes = true;
    e.classes = classes.arr->strings;
    if (e.classes.empty()) return state_error(who, "classes_ is empty");
    return {};
  }
  auto t = as_tensor<double>(classes, std::string(who) + ".classes_", 1);
  if (!t) return std::move(t).err();
  if (t->size() == 0) return state_error(who, "classes_ is empty");
  e.string_classes = false;
  const bool is_float = classes.arr && classes.arr->kind() == 'f';
  const bool is_bool = classes.arr && classes.arr->kind() == 'b';
  tensor<std::int64_t> ints;
  if (!is_float && !is_bool) {
    auto iv = as_tensor<std::int64_t>(classes, who, 1);
    if (!iv) return std::move(iv).err();
    ints = std::move(iv).value();
  }
  for (std::size_t i = 0; i < t->size(); ++i) {
    double v = (*t)[i];
    e.class_values.push_back(v);
    if (is_bool) e.classes.push_back(v != 0 ? "True" : "False");
    else if (is_float) e.classes.push_back(py_float_repr(v));
    else e.classes.push_back(std::to_string(ints[i]));
  }
  return {};
}

result<void> read_feature_info(const node& obj, estimator& e) {
  if (const node* n = opt_attr(obj, "n_features_in_")) {
    auto v = as_integer(*n, qual(obj, "n_features_in_"));
    if (!v) return std::move(v).err();
    if (*v < 0 || *v > (1ll << 40)) return state_error(short_name(obj.type_name()), "invalid n_features_in_");
    e.n_features = *v;
  }
  if (const node* fn = opt_attr(obj, "feature_names_in_")) {
    if (fn->k != node::kind::array || !fn->arr || !fn->arr->items.empty())
      return state_error(short_name(obj.type_name()), "feature_names_in_ must be an array of str");
    e.feature_names = fn->arr->strings;
    if (e.n_features >= 0 && static_cast<std::int64_t>(e.feature_names.size()) != e.n_features)
      return state_error(short_name(obj.type_name()), "feature_names_in_ and n_features_in_ disagree");
  }
  return {};
}

}  // namespace vitrify::runtime
