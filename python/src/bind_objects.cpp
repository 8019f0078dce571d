// vitrify._core.ObjectTree: the object decoder of vitrify.load (python/vitrify/model.py), in C++.
//
// It is a port of model.py's _Decoder for packed trees (versions 2 and 3), so that loading a
// forest does not pay Python's per-node interpretation cost: the packed JSON is parsed and
// validated by the C++ typed-value parser (vitrify::parse_value), then walked here, creating
// Python objects directly. Everything that needs Python's judgement stays in Python and is
// passed in through the build context: the trusted names already resolved (the trust check and
// the call rule run on names() and uses() BEFORE build() is called), array loading, dtype
// descriptions, the builders of special types, the call rule (vitrify._reconstructors: the only
// calls made are cls.__new__(cls) and the checked reconstructors) and the checks of built
// objects, chosen by the type of the built object (vitrify._validators).
#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.hpp"
#include "tree/value_json.hpp"
#include "vitrify/value.hpp"

namespace vitrify_py {

using namespace nb::literals;
using vitrify::value;
using K = vitrify::value::kind;

namespace {

[[noreturn]] void bad(const std::string& msg) { raise(vitrify::errc::bad_value, msg); }

nb::object check(PyObject* p) {
  if (!p) throw nb::python_error();
  return nb::steal(p);
}

// Strict base64 (the library's own decoder, as for "$bytes") into a new bytearray.
nb::object b64_bytearray(std::string_view s) {
  std::string out;
  if (!vitrify::detail::base64_decode(s, &out)) bad("invalid base64 data");
  return check(PyByteArray_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size())));
}

const value* dget(const value& v, std::string_view k) { return v.is(K::dict) ? v.get(k) : nullptr; }

class builder;

class object_tree {
 public:
  explicit object_tree(nb::bytes body) {
    std::string_view text(body.c_str(), body.size());
    vitrify::value_limits lim;
    // docs/OBJECTS.md section 8: the tree's typed-value depth is at most 256 with its root at 0;
    // the root is a member of the body dict, one level deeper.
    lim.max_depth = 256 + 1;
    auto v = vitrify::parse_value(text, lim);
    if (!v) raise(std::move(v).err());
    body_ = std::move(v).value();
    if (!body_.is(K::dict)) bad("the packed object tree is not a JSON object");
    root_ = body_.get("root");
    if (!root_) bad("the packed object tree has no root");
    keys_ = body_.get("keys");
    dtypes_ = body_.get("dtypes");
    if ((keys_ && !keys_->is(K::list)) || (dtypes_ && !dtypes_->is(K::list))) bad("invalid keys or dtypes table");
  }

  // Every type and function name build() may resolve (mirrors model.py _collect_types).
  std::vector<std::string> names(const std::vector<std::string>& special, const std::vector<std::string>& bit_generators) const {
    std::set<std::string, std::less<>> sp(special.begin(), special.end());
    std::set<std::string, std::less<>> bg(bit_generators.begin(), bit_generators.end());
    std::set<std::string> out;
    each_object([&](const std::string& tn, const value& st) {
      if (tn == "vitrify.global") {
        if (!st.is(K::string)) bad("vitrify.global state must be a name");
        out.insert(st.as_string());
      } else if (!sp.count(tn)) {
        out.insert(tn);
      } else if (tn == "numpy.random.Generator") {
        const value* b = dget(st, "bit_generator");
        if (b && b->is(K::string) && !bg.count(b->as_string())) out.insert(b->as_string());
      }
    });
    return {out.begin(), out.end()};
  }

  // How each type name is used (model.py _collect_uses): "global" (a reference), "new"
  // (cls.__new__(cls)), "new_args" (__new__ with arguments) or "call" (target(*args)).
  std::vector<std::pair<std::string, std::string>> uses(const std::vector<std::string>& special) const {
    std::set<std::string, std::less<>> sp(special.begin(), special.end());
    std::set<std::pair<std::string, std::string>> out;
    each_object([&](const std::string& tn, const value& st) {
      if (tn == "vitrify.global") {
        if (st.is(K::string)) out.emplace(st.as_string(), "global");
      } else if (!sp.count(tn)) {
        const value* n = dget(st, "n");
        const bool is_new = n && n->is(K::boolean) && n->as_bool();
        const value* a = dget(st, "a");
        const bool has_args = dget(st, "kw") || (a && !(a->is(K::list) && a->items().empty()));
        out.emplace(tn, !is_new ? "call" : has_args ? "new_args" : "new");
      }
    });
    return {out.begin(), out.end()};
  }

  nb::object build(nb::dict resolved, nb::object ctx);

  const value* root_ = nullptr;
  const value* keys_ = nullptr;
  const value* dtypes_ = nullptr;

 private:
  // fn(type name, state) for every $object node, in any order, without recursion.
  template <class F>
  void each_object(F&& fn) const {
    std::vector<const value*> stack{root_};
    while (!stack.empty()) {
      const value* x = stack.back();
      stack.pop_back();
      switch (x->type()) {
        case K::list:
        case K::tuple:
          for (const auto& e : x->items()) stack.push_back(&e);
          break;
        case K::dict:
          for (std::size_t i = 0; i < x->dict_size(); ++i) {
            stack.push_back(&x->dict_key(i));
            stack.push_back(&x->dict_value(i));
          }
          break;
        case K::shared: stack.push_back(&x->inner()); break;
        case K::object:
          fn(x->as_string(), x->inner());
          stack.push_back(&x->inner());
          break;
        default: break;
      }
    }
  }

  value body_;
};

class builder {
 public:
  builder(const object_tree& t, nb::dict resolved, nb::object ctx)
      : t_(t), resolved_(std::move(resolved)), ctx_(std::move(ctx)) {
    array_fn_ = ctx_.attr("array");
    dtype_fn_ = ctx_.attr("dtype_from_state");
    dtype_str_fn_ = ctx_.attr("dtype_from_str");
    special_ = ctx_.attr("special");
    object_array_fn_ = ctx_.attr("object_array");
    rules_call_ = ctx_.attr("rules").attr("call");
    rules_new_ = ctx_.attr("rules").attr("new");
    object_check_fn_ = ctx_.attr("object_check");
    state_check_fn_ = ctx_.attr("state_check");
    frombuffer_ = ctx_.attr("frombuffer");
    placeholder_ = ctx_.attr("placeholder");
    pool_ = nb::getattr(ctx_, "pool", nb::none());
    if (!pool_.is_none()) {
      if (PyObject_GetBuffer(pool_.ptr(), &pool_view_, PyBUF_C_CONTIGUOUS) != 0) {
        PyErr_Clear();
        bad("the array pool is not a contiguous buffer");
      }
      pool_held_ = true;
    }
    object_setstate_ = nb::getattr(nb::handle(reinterpret_cast<PyObject*>(&PyBaseObject_Type)), "__setstate__", nb::none());
  }

  builder(const builder&) = delete;
  builder& operator=(const builder&) = delete;
  ~builder() {
    if (pool_held_) PyBuffer_Release(&pool_view_);
  }

  nb::object dec(const value& v) {
    switch (v.type()) {
      case K::null: return nb::none();
      case K::boolean: return nb::bool_(v.as_bool());
      case K::integer: return check(PyLong_FromLongLong(v.as_int()));
      case K::big_integer: {
        if (v.as_string().size() > 100000) bad("invalid $int");
        return check(PyLong_FromString(v.as_string().c_str(), nullptr, 10));
      }
      case K::floating: return check(PyFloat_FromDouble(v.as_double()));
      case K::string: return str(v.as_string());
      case K::bytes: return check(PyBytes_FromStringAndSize(v.as_string().data(), static_cast<Py_ssize_t>(v.as_string().size())));
      case K::list: {
        nb::list out;
        fill_list(out, v);
        return out;
      }
      case K::tuple: {
        const auto& items = v.items();
        nb::object t = check(PyTuple_New(static_cast<Py_ssize_t>(items.size())));
        for (std::size_t i = 0; i < items.size(); ++i) PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), dec(items[i]).release().ptr());
        return t;
      }
      case K::dict: {
        nb::dict d;
        fill_dict(d, v);
        return d;
      }
      case K::array_ref: return array(v.as_string());
      case K::object: return object(v.as_string(), v.inner(), nullptr);
      case K::shared: return shared_def(v);
      case K::ref: {
        auto it = shared_.find(v.as_int());
        if (it == shared_.end() || it->second.is(placeholder_))
          bad("$ref " + std::to_string(v.as_int()) + " refers to a value that cannot be built yet (cycle through a tuple)");
        return it->second;
      }
    }
    bad("unexpected value");
  }

 private:
  nb::object str(const std::string& s) {
    return check(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass"));
  }

  void fill_list(nb::list& out, const value& v) {
    for (const auto& x : v.items()) out.append(dec(x));
  }

  void fill_dict(nb::dict& d, const value& v) {
    for (std::size_t i = 0; i < v.dict_size(); ++i) {
      nb::object key = dec(v.dict_key(i));
      nb::object val = dec(v.dict_value(i));
      if (PyDict_SetItem(d.ptr(), key.ptr(), val.ptr()) != 0) {
        PyErr_Clear();
        bad("unhashable dict key");
      }
    }
  }

  nb::object shared_def(const value& v) {
    const std::int64_t sid = v.as_int();
    if (shared_.count(sid)) bad("invalid or duplicate $shared id " + std::to_string(sid));
    const value& val = v.inner();
    // Containers and objects register themselves (so cycles resolve) before their contents.
    if (val.is(K::object)) return object(val.as_string(), val.inner(), &sid);
    if (val.is(K::list)) {
      nb::list out;
      shared_[sid] = out;
      fill_list(out, val);
      return out;
    }
    if (val.is(K::dict)) {
      nb::dict d;
      shared_[sid] = d;
      fill_dict(d, val);
      return d;
    }
    shared_[sid] = placeholder_;
    nb::object out = dec(val);
    shared_[sid] = out;
    return out;
  }

  nb::object array(const std::string& name) { return array_fn_(name); }

  nb::object dtype(const value& t) {
    if (t.is(K::string)) {
      auto it = dtype_str_cache_.find(t.as_string());
      if (it != dtype_str_cache_.end()) return it->second;
      nb::object dt = dtype_str_fn_(t.as_string());
      dtype_str_cache_.emplace(t.as_string(), dt);
      return dt;
    }
    if (t.is(K::integer)) {
      auto it = dtype_idx_cache_.find(t.as_int());
      if (it != dtype_idx_cache_.end()) return it->second;
      if (!t_.dtypes_ || t.as_int() < 0 || static_cast<std::uint64_t>(t.as_int()) >= t_.dtypes_->items().size())
        bad("invalid dtype index " + std::to_string(t.as_int()));
      nb::object dt = dtype_fn_(dec(t_.dtypes_->items()[static_cast<std::size_t>(t.as_int())]), true);
      dtype_idx_cache_.emplace(t.as_int(), dt);
      return dt;
    }
    return dtype_fn_(dec(t), false);
  }

  // docs/OBJECTS.md section 6, shapes: at most 64 dimensions, each >= 0, the product of the
  // non-zero ones within 2^63 - 1 (so product() below cannot overflow).
  nb::object shape(const value* s) {
    if (!s || !s->is(K::list)) bad("array shape must be a list");
    if (s->items().size() > 64) raise(vitrify::errc::limit_exceeded, "array rank " + std::to_string(s->items().size()) + " exceeds 64");
    nb::object t = check(PyTuple_New(static_cast<Py_ssize_t>(s->items().size())));
    Py_ssize_t i = 0;
    std::uint64_t nonzero = 1;
    for (const auto& x : s->items()) {
      if (!x.is(K::integer) || x.as_int() < 0) bad("invalid array shape");
      if (const auto d = static_cast<std::uint64_t>(x.as_int()); d != 0) {
        if (nonzero > static_cast<std::uint64_t>(INT64_MAX) / d) bad("array shape too large");
        nonzero *= d;
      }
      PyTuple_SET_ITEM(t.ptr(), i++, check(PyLong_FromLongLong(x.as_int())).release().ptr());
    }
    return t;
  }

  // Element count of a shape already checked by shape().
  static std::uint64_t product(const value* s) {
    std::uint64_t n = 1;
    for (const auto& x : s->items()) n *= static_cast<std::uint64_t>(x.as_int());
    return n;
  }

  // count x itemsize of a shape already checked by shape(), within 2^63 - 1.
  static std::uint64_t nbytes(const value* s, std::uint64_t itemsize) {
    const std::uint64_t n = product(s);
    if (itemsize != 0 && n > static_cast<std::uint64_t>(INT64_MAX) / itemsize) bad("array size (count x itemsize) too large");
    return n * itemsize;
  }

  nb::object ndarray(const value& st) {
    if (!st.is(K::dict)) bad("invalid numpy.ndarray state");
    const value* order = st.get("o");
    if (order && !(order->is(K::string) && order->as_string() == "F")) bad("invalid array order (only \"F\" may be written)");
    const bool fortran = order != nullptr;
    const value* t = st.get("t");
    if (const value* b = st.get("b"); b && b->is(K::string)) {
      if (!t) bad("inline array without dtype");
      nb::object dt = dtype(*t);
      const dtype_info& di = describe(dt);
      if (!di.ok) bad("inline arrays cannot have dtype " + di.str);
      const value* s = st.get("s");
      nb::object shp = shape(s);
      nb::object raw = b64_bytearray(b->as_string());
      const std::uint64_t n = nbytes(s, di.itemsize);
      const auto len = static_cast<std::uint64_t>(PyByteArray_GET_SIZE(raw.ptr()));
      if (len != n) bad("inline array size does not match dtype and shape");
      if (di.is_bool) {
        const char* p = PyByteArray_AS_STRING(raw.ptr());
        for (std::uint64_t i = 0; i < len; ++i)
          if (static_cast<unsigned char>(p[i]) > 1) bad("bool array holds a byte other than 0 or 1");
      }
      nb::object a = frombuffer_(raw, dt).attr("reshape")(shp);
      return fortran ? a.attr("T") : a;
    }
    if (const value* p = st.get("p")) return pooled(*p, t, st.get("s"), fortran);
    if (const value* d = st.get("d")) {
      if (!d->is(K::array_ref)) bad("expected an array reference");
      nb::object a = array_fn_(d->as_string(), "numeric");
      if (t) {
        // Only a reinterpretation of the stored item (bfloat16, byte order): astype to a wider
        // dtype would allocate what the file asks; no object or structured dtype.
        nb::object dt = dtype(*t);
        if (nb::cast<bool>(dt.attr("hasobject")) || !dt.attr("fields").is_none() ||
            nb::cast<std::uint64_t>(dt.attr("itemsize")) != nb::cast<std::uint64_t>(a.attr("dtype").attr("itemsize")))
          bad("array dtype does not match its data (same item size, no object or structured dtype)");
        a = a.attr("astype")(dt);
      }
      return fortran ? a.attr("T") : a;
    }
    if (const value* u = st.get("u")) {
      if (!u->is(K::array_ref)) bad("expected an array reference");
      return array_fn_(u->as_string(), "string");
    }
    if (const value* items = st.get("i")) {
      const value* s = st.get("s");
      nb::object shp = shape(s);
      if (!items->is(K::list)) bad("object array items must be a list");
      if (static_cast<std::uint64_t>(items->items().size()) != product(s)) bad("object array item count does not match its shape");
      nb::list out;
      fill_list(out, *items);
      return object_array_fn_(out, shp);
    }
    const value* r = st.get("r");
    const bool bytes_form = !r;
    if (!r) r = st.get("y");
    if (r) {
      if (!t) bad("raw array without dtype");
      nb::object dt = dtype(*t);
      // r: numeric, datetime or plain structured; y: fixed-width bytes (docs/OBJECTS.md 6.3).
      const bool ok = bytes_form ? describe(dt).kind == "S" : describe(dt).ok;
      if (!ok) bad("raw arrays cannot have dtype " + describe(dt).str);
      if (!r->is(K::array_ref)) bad("expected an array reference");
      nb::object raw = array(r->as_string());
      const value* s = st.get("s");
      nb::object shp = shape(s);
      const std::uint64_t n = nbytes(s, nb::cast<std::uint64_t>(dt.attr("itemsize")));
      if (nb::cast<std::string>(raw.attr("dtype").attr("str")) != "|u1" || nb::cast<int>(raw.attr("ndim")) != 1 ||
          nb::cast<std::uint64_t>(raw.attr("size")) != n)
        bad("raw array size does not match dtype and shape");
      nb::object a = raw.attr("view")(dt).attr("reshape")(shp);
      return fortran ? a.attr("T") : a;
    }
    bad("invalid numpy.ndarray state");
  }

  struct dtype_info {
    bool ok = false;              // numeric, datetime or plain structured: may come from bytes
    bool is_bool = false;
    std::string kind;
    std::uint64_t itemsize = 0;
    std::string str;              // for messages
  };

  // An array stored in the pool (version 3): {"p": [offset, nbytes], "t": dtype, "s": shape}.
  nb::object pooled(const value& p, const value* t, const value* s, bool fortran) {
    if (!pool_held_) bad("the file has pooled arrays but no array pool");
    if (!p.is(K::list) || p.items().size() != 2 || !p.items()[0].is(K::integer) || !p.items()[1].is(K::integer))
      bad("a pooled array reference must be [offset, nbytes]");
    if (!t) bad("pooled array without dtype");
    const std::int64_t off = p.items()[0].as_int(), n = p.items()[1].as_int();
    nb::object dt = dtype(*t);
    const dtype_info& di = describe(dt);
    if (!di.ok) bad("pooled arrays cannot have dtype " + di.str);
    nb::object shp = shape(s);
    const std::uint64_t itemsize = di.itemsize;
    if (n < 0 || off < 0 || static_cast<std::uint64_t>(n) != nbytes(s, itemsize))
      bad("pooled array size does not match dtype and shape");
    const auto size = static_cast<std::uint64_t>(pool_view_.len);
    if (static_cast<std::uint64_t>(off) > size || static_cast<std::uint64_t>(n) > size - static_cast<std::uint64_t>(off))
      bad("pooled array lies outside the array pool");
    if (n != 0 && off % 16 != 0) bad("pooled array offset " + std::to_string(off) + " is not a multiple of 16");
    if (di.is_bool) {
      const auto* q = static_cast<const unsigned char*>(pool_view_.buf) + off;
      for (std::int64_t i = 0; i < n; ++i)
        if (q[i] > 1) bad("bool array holds a byte other than 0 or 1");
    }
    if (itemsize == 0) bad("pooled arrays cannot have a zero-size dtype");
    nb::object flat = frombuffer_(pool_, dt, nb::int_(n / static_cast<std::int64_t>(itemsize)), nb::int_(off));
    nb::object a = check(PyObject_CallMethodOneArg(flat.ptr(), s_reshape_.ptr(), shp.ptr()));
    return fortran ? a.attr("T") : a;
  }

  // Facts about a dtype object (the dtype caches keep them alive for the whole build).
  const dtype_info& describe(const nb::object& dt) {
    auto it = dtype_info_cache_.find(dt.ptr());
    if (it != dtype_info_cache_.end() && it->second.first.is(dt)) return it->second.second;
    dtype_info di;
    const bool hasobject = nb::cast<bool>(dt.attr("hasobject"));
    const std::string kind = nb::cast<std::string>(dt.attr("kind"));
    const bool plain = dt.attr("fields").is_none();
    di.ok = !hasobject && !(plain && std::string("biufcmM").find(kind) == std::string::npos);
    di.is_bool = kind == "b";
    di.kind = kind;
    di.itemsize = nb::cast<std::uint64_t>(dt.attr("itemsize"));
    di.str = nb::cast<std::string>(nb::str(dt));
    return dtype_info_cache_.insert_or_assign(dt.ptr(), std::make_pair(dt, di)).first->second.second;
  }

  nb::object scalar(const value& st) {
    const value* t = dget(st, "t");
    const value* b = dget(st, "b");
    if (!t || !b || !b->is(K::string)) bad("invalid numpy scalar");
    nb::object dt = dtype(*t);
    if (nb::cast<bool>(dt.attr("hasobject"))) bad("object scalars are not allowed");
    nb::object raw = b64_bytearray(b->as_string());
    if (static_cast<std::uint64_t>(PyByteArray_GET_SIZE(raw.ptr())) != nb::cast<std::uint64_t>(dt.attr("itemsize")))
      bad("numpy scalar has the wrong number of bytes");
    return frombuffer_(raw, dt)[0];
  }

  const std::vector<nb::object>& keyset(const value* k) {
    if (!k || !k->is(K::integer) || !t_.keys_ || k->as_int() < 0 || static_cast<std::uint64_t>(k->as_int()) >= t_.keys_->items().size())
      bad("invalid keyset index");
    auto it = keysets_.find(k->as_int());
    if (it != keysets_.end()) return it->second;
    const value& raw = t_.keys_->items()[static_cast<std::size_t>(k->as_int())];
    if (!raw.is(K::list)) bad("invalid keyset");
    std::vector<nb::object> names;
    std::set<std::string_view> seen;
    for (const auto& s : raw.items()) {
      if (!s.is(K::string)) bad("invalid keyset");
      if (!seen.insert(s.as_string()).second)
        raise(vitrify::errc::duplicate_name, "keyset " + std::to_string(k->as_int()) + " names the key '" + s.as_string() + "' twice");
      nb::object o = str(s.as_string());
      PyUnicode_InternInPlace(reinterpret_cast<PyObject**>(&o));  // attribute names: interned like Python's
      names.push_back(o);
    }
    return keysets_.emplace(k->as_int(), std::move(names)).first->second;
  }

  bool default_setstate(nb::handle obj) {
    PyTypeObject* tp = Py_TYPE(obj.ptr());
    auto it = setstate_cache_.find(tp);
    if (it != setstate_cache_.end()) return it->second;
    nb::object fn = nb::getattr(nb::handle(reinterpret_cast<PyObject*>(tp)), "__setstate__", nb::none());
    const bool r = fn.is_none() || (!object_setstate_.is_none() && fn.is(object_setstate_));
    setstate_cache_[tp] = r;
    return r;
  }

  nb::object object(const std::string& tname, const value& st, const std::int64_t* sid) {
    auto reg = [&](const nb::object& o) {
      if (sid) shared_[*sid] = o;
    };
    const type_info& ti = info(tname);
    if (ti.kind == type_info::ndarray) {
      nb::object o = ndarray(st);
      reg(o);
      return o;
    }
    if (ti.kind == type_info::scalar) {
      nb::object o = scalar(st);
      reg(o);
      return o;
    }
    if (ti.kind == type_info::dtype_) {  // a string, a description or a dtypes table index
      nb::object o = dtype(st);
      reg(o);
      return o;
    }
    if (ti.kind == type_info::global) {
      if (!st.is(K::string)) bad("vitrify.global state must be a name");
      nb::object o = resolved_[nb::str(st.as_string().c_str())];
      reg(o);
      return o;
    }
    if (ti.special) {
      nb::object o = nb::borrow(ti.special)(dec(st));
      reg(o);
      return o;
    }
    if (!ti.target) bad("type " + tname + " was not resolved");
    nb::handle target(ti.target);
    if (!st.is(K::dict)) bad("object state of " + tname + " must be a dict");
    nb::object args;
    if (const value* a = st.get("a")) {
      if (!a->is(K::list)) bad("args of " + tname + " must be a list");
      args = check(PyTuple_New(static_cast<Py_ssize_t>(a->items().size())));
      for (std::size_t i = 0; i < a->items().size(); ++i)
        PyTuple_SET_ITEM(args.ptr(), static_cast<Py_ssize_t>(i), dec(a->items()[i]).release().ptr());
    } else {
      args = check(PyTuple_New(0));
    }
    nb::object obj;
    const value* n = st.get("n");
    const value* kw = st.get("kw");
    nb::str key(tname.c_str(), tname.size());
    if (n && n->is(K::boolean) && n->as_bool()) {
      if (!PyType_Check(target.ptr())) bad(tname + " is not a class");
      if (PyTuple_GET_SIZE(args.ptr()) == 0 && !kw) {
        obj = check(PyObject_CallMethodOneArg(target.ptr(), s_new_.ptr(), target.ptr()));
      } else {
        // __new__ with arguments: only for the caller's own classes (the rule decides).
        obj = rules_new_(key, target, args, kw ? dec(*kw) : nb::none());
      }
    } else {
      obj = rules_call_(key, target, args);  // a checked reconstructor, or refused
    }
    reg(obj);
    if (const value* s = st.get("s")) {
      nb::object state;
      if (const value* k = st.get("k")) {
        const auto& keys = keyset(k);
        if (!s->is(K::list) || s->items().size() != keys.size()) bad("state of " + tname + " does not match its keys");
        nb::dict d;
        for (std::size_t i = 0; i < keys.size(); ++i) {
          nb::object v = dec(s->items()[i]);
          PyDict_SetItem(d.ptr(), keys[i].ptr(), v.ptr());
        }
        state = std::move(d);
      } else {
        state = dec(*s);
      }
      const checks& c = checks_for(obj);
      if (c.state) nb::handle(c.state)(obj, state);
      if (!default_setstate(obj)) {
        check(PyObject_CallMethodOneArg(obj.ptr(), s_setstate_.ptr(), state.ptr()));
      } else {
        nb::object slotstate;
        if (PyTuple_Check(state.ptr()) && PyTuple_GET_SIZE(state.ptr()) == 2) {
          slotstate = nb::borrow(PyTuple_GET_ITEM(state.ptr(), 1));
          state = nb::borrow(PyTuple_GET_ITEM(state.ptr(), 0));
        }
        if (PyObject_IsTrue(state.ptr()) == 1) obj.attr("__dict__").attr("update")(state);
        if (slotstate.is_valid() && PyObject_IsTrue(slotstate.ptr()) == 1) {
          nb::object items = slotstate.attr("items")();
          for (nb::handle kv : items) {
            nb::object k = kv[0], v = kv[1];
            if (PyObject_SetAttr(obj.ptr(), k.ptr(), v.ptr()) != 0) throw nb::python_error();
          }
        }
      }
    }
    if (const value* li = st.get("li")) {
      if (!li->is(K::list)) bad("listitems must be a list");
      nb::list items;
      fill_list(items, *li);
      if (nb::hasattr(obj, "extend")) obj.attr("extend")(items);
      else
        for (nb::handle e : items) obj.attr("append")(e);
    }
    if (const value* di = st.get("di")) {
      if (!di->is(K::list)) bad("dictitems must be a list");
      for (const auto& kv : di->items()) {
        if (!kv.is(K::list) || kv.items().size() != 2) bad("dictitems entries must be pairs");
        nb::object key2 = dec(kv.items()[0]);
        nb::object val = dec(kv.items()[1]);
        if (PyObject_SetItem(obj.ptr(), key2.ptr(), val.ptr()) != 0) throw nb::python_error();
      }
    }
    const checks& c = checks_for(obj);
    if (c.object) nb::handle(c.object)(obj);
    return obj;
  }

  // What object() needs to know about a type name, looked up once per name and build.
  struct type_info {
    enum kind_t { generic, ndarray, scalar, dtype_, global } kind = generic;
    PyObject* special = nullptr;  // builder of a special type (borrowed from ctx.special)
    PyObject* target = nullptr;   // the resolved class or function (borrowed from resolved)
  };

  const type_info& info(const std::string& tname) {
    auto it = type_cache_.find(tname);
    if (it != type_cache_.end()) return it->second;
    type_info ti;
    if (tname == "numpy.ndarray") ti.kind = type_info::ndarray;
    else if (tname == "numpy.generic") ti.kind = type_info::scalar;
    else if (tname == "numpy.dtype") ti.kind = type_info::dtype_;
    else if (tname == "vitrify.global") ti.kind = type_info::global;
    else {
      nb::str key(tname.c_str(), tname.size());
      ti.special = PyDict_GetItemWithError(special_.ptr(), key.ptr());
      if (!ti.special && PyErr_Occurred()) throw nb::python_error();
      ti.target = PyDict_GetItemWithError(resolved_.ptr(), key.ptr());
      if (!ti.target && PyErr_Occurred()) throw nb::python_error();
    }
    return type_cache_.emplace(tname, ti).first->second;
  }

  // The checks of built objects of one type (vitrify._validators), chosen by the type of the
  // built object, never by the name in the file. Null: nothing compiled trusts its state.
  struct checks {
    nb::object state_holder, object_holder;
    PyObject* state = nullptr;
    PyObject* object = nullptr;
  };

  const checks& checks_for(const nb::object& obj) {
    PyTypeObject* tp = Py_TYPE(obj.ptr());
    auto it = checks_cache_.find(tp);
    if (it != checks_cache_.end()) return it->second;
    nb::handle th(reinterpret_cast<PyObject*>(tp));
    checks c;
    c.state_holder = state_check_fn_(th);
    c.object_holder = object_check_fn_(th);
    if (!c.state_holder.is_none()) c.state = c.state_holder.ptr();
    if (!c.object_holder.is_none()) c.object = c.object_holder.ptr();
    types_held_.push_back(nb::borrow(th));  // the cache is keyed by the type's address
    return checks_cache_.emplace(tp, std::move(c)).first->second;
  }

  const object_tree& t_;
  nb::dict resolved_;
  nb::object ctx_, array_fn_, dtype_fn_, dtype_str_fn_, special_, object_array_fn_, rules_call_, rules_new_,
      object_check_fn_, state_check_fn_, frombuffer_, placeholder_, object_setstate_, pool_;
  Py_buffer pool_view_{};
  bool pool_held_ = false;
  std::unordered_map<std::string, type_info> type_cache_;
  std::unordered_map<PyObject*, std::pair<nb::object, dtype_info>> dtype_info_cache_;
  nb::object s_setstate_ = nb::steal(PyUnicode_InternFromString("__setstate__"));
  nb::object s_new_ = nb::steal(PyUnicode_InternFromString("__new__"));
  nb::object s_reshape_ = nb::steal(PyUnicode_InternFromString("reshape"));
  std::unordered_map<std::int64_t, nb::object> shared_;
  std::unordered_map<std::string, nb::object> dtype_str_cache_;
  std::unordered_map<std::int64_t, nb::object> dtype_idx_cache_;
  std::unordered_map<std::int64_t, std::vector<nb::object>> keysets_;
  std::unordered_map<PyTypeObject*, bool> setstate_cache_;
  std::unordered_map<PyTypeObject*, checks> checks_cache_;
  std::vector<nb::object> types_held_;
};

nb::object object_tree::build(nb::dict resolved, nb::object ctx) {
  builder b(*this, std::move(resolved), std::move(ctx));
  return b.dec(*root_);
}

// The node checks of vitrify._validators.tree on the memory a built sklearn Tree owns (its
// NODE_DTYPE array, whose layout the caller has compared with scikit-learn's): leaves have both
// children -1, every other node two children after itself and inside the array, each node but
// the root exactly one parent (so the nodes form one tree), split features in [0, n_features).
// Returns the depth of the deepest leaf, which decision_path trusts as max_depth.
std::int64_t check_tree_nodes(nb::handle nodes, Py_ssize_t off_left, Py_ssize_t off_right, Py_ssize_t off_feature,
                              std::int64_t n_features) {
  Py_buffer view;
  if (PyObject_GetBuffer(nodes.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    bad("Tree: the node array is not contiguous");
  }
  struct releaser {
    Py_buffer* v;
    ~releaser() { PyBuffer_Release(v); }
  } rel{&view};
  const Py_ssize_t n = nb::cast<Py_ssize_t>(nodes.attr("shape")[0]);
  const Py_ssize_t isz = nb::cast<Py_ssize_t>(nodes.attr("dtype").attr("itemsize"));
  constexpr Py_ssize_t w = sizeof(Py_ssize_t);  // NODE_DTYPE's intp fields
  if (n < 1 || isz < 3 * w || view.len != n * isz || off_left < 0 || off_right < 0 || off_feature < 0 ||
      off_left > isz - w || off_right > isz - w || off_feature > isz - w)
    raise(vitrify::errc::bad_value, "Tree: unexpected node array layout");
  const auto* base = static_cast<const unsigned char*>(view.buf);
  std::vector<std::int64_t> depth(static_cast<std::size_t>(n), -1);
  depth[0] = 0;
  std::int64_t max_depth = 0;
  auto fail = [](const char* why) { raise(vitrify::errc::bad_value, std::string("Tree: ") + why); };
  for (Py_ssize_t i = 0; i < n; ++i) {
    Py_ssize_t l, r, f;
    std::memcpy(&l, base + i * isz + off_left, w);
    std::memcpy(&r, base + i * isz + off_right, w);
    std::memcpy(&f, base + i * isz + off_feature, w);
    // Parents come first, so a node without a parent so far has none at all.
    if (depth[static_cast<std::size_t>(i)] < 0) fail("a node is not reachable from the root");
    if (l == -1 && r == -1) continue;
    if (l == -1 || r == -1) fail("a node has exactly one child");
    if (l <= i || r <= i || l >= n || r >= n) fail("child index out of range (children must follow their parent)");
    if (f < 0 || f >= n_features) fail("split feature index is not in [0, n_features)");
    const std::int64_t d = depth[static_cast<std::size_t>(i)] + 1;
    for (Py_ssize_t c : {l, r}) {
      if (depth[static_cast<std::size_t>(c)] >= 0 || l == r) fail("a node has two parents");
      depth[static_cast<std::size_t>(c)] = d;
    }
    if (d > max_depth) max_depth = d;
  }
  return max_depth;
}

// The node checks of vitrify._validators.tree_predictor / hist_gradient_boosting on a
// TreePredictor's node array (PREDICTOR_RECORD_DTYPE, whose layout the caller has compared with
// scikit-learn's; offs = byte offsets of left (u4), right (u4), is_leaf (u1), is_categorical
// (u1), bitset_idx (u4), feature_idx (i8)): internal nodes have both children after themselves
// and inside the array (no loops in _predict_one_from_raw_data), categorical splits a bitset
// index below n_bitsets; with n_features >= 0, split features below it and, with a categorical
// mask (uint8 per feature), categorical splits only on categorical features.
void check_predictor_nodes(nb::handle nodes, const std::vector<Py_ssize_t>& offs, std::int64_t n_bitsets,
                           std::int64_t n_features, nb::handle categorical) {
  auto fail = [](const char* why) { raise(vitrify::errc::bad_value, std::string("TreePredictor: ") + why); };
  Py_buffer view, mask{};
  if (PyObject_GetBuffer(nodes.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    fail("the node array is not contiguous");
  }
  struct releaser {
    Py_buffer* v;
    ~releaser() {
      if (v->obj) PyBuffer_Release(v);
    }
  } rel{&view}, rel_mask{&mask};
  if (!categorical.is_none() && PyObject_GetBuffer(categorical.ptr(), &mask, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    fail("the categorical mask is not contiguous");
  }
  const Py_ssize_t n = nb::cast<Py_ssize_t>(nodes.attr("shape")[0]);
  const Py_ssize_t isz = nb::cast<Py_ssize_t>(nodes.attr("dtype").attr("itemsize"));
  const std::size_t widths[6] = {4, 4, 1, 1, 4, 8};
  if (offs.size() != 6 || n < 1 || view.len != n * isz) fail("unexpected node array layout");
  for (std::size_t k = 0; k < 6; ++k)
    if (offs[k] < 0 || offs[k] > isz - static_cast<Py_ssize_t>(widths[k])) fail("unexpected node array layout");
  const auto* base = static_cast<const unsigned char*>(view.buf);
  const auto* cat_mask = static_cast<const unsigned char*>(mask.buf);
  for (Py_ssize_t i = 0; i < n; ++i) {
    const unsigned char* p = base + i * isz;
    const unsigned char leaf = p[offs[2]];
    if (leaf > 1) fail("is_leaf must be 0 or 1");
    if (leaf) continue;
    std::uint32_t l, r, bi;
    std::int64_t f;
    std::memcpy(&l, p + offs[0], 4);
    std::memcpy(&r, p + offs[1], 4);
    std::memcpy(&bi, p + offs[4], 4);
    std::memcpy(&f, p + offs[5], 8);
    if (l <= i || r <= i || l >= n || r >= n) fail("child index out of range (children must follow their parent)");
    const bool is_cat = p[offs[3]] != 0;
    if (is_cat && bi >= n_bitsets) fail("bitset index out of range");
    if (n_features >= 0) {
      if (f < 0 || f >= n_features) fail("split feature index out of range");
      // known_cat_bitsets has a row per categorical feature only
      if (is_cat && (!cat_mask || static_cast<std::int64_t>(mask.len) != n_features || !cat_mask[f]))
        fail("categorical split on a feature that is not categorical");
    }
  }
}

}  // namespace

void bind_objects(nb::module_& m) {
  nb::class_<object_tree>(m, "ObjectTree", "A parsed packed object tree, version 2 or 3 (see vitrify.model).")
      .def(nb::init<nb::bytes>(), "body"_a)
      .def("names", &object_tree::names, "special"_a, "bit_generators"_a)
      .def("uses", &object_tree::uses, "special"_a)
      .def("build", &object_tree::build, "resolved"_a, "ctx"_a);
  m.def("check_tree_nodes", &check_tree_nodes, "nodes"_a, "off_left"_a, "off_right"_a, "off_feature"_a, "n_features"_a,
        "Check a built sklearn Tree's node array (vitrify._validators); returns its depth.");
  m.def("check_predictor_nodes", &check_predictor_nodes, "nodes"_a, "offsets"_a, "n_bitsets"_a, "n_features"_a,
        "categorical"_a.none(), "Check a HistGradientBoosting TreePredictor's node array (vitrify._validators).");
}

}  // namespace vitrify_py
