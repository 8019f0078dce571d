// vitrify._core.ObjectTree: the object decoder of vitrify.load (python/vitrify/model.py), in C++.
//
// It is a line-by-line port of model.py's _Decoder for version-2 packed trees, so that loading a
// forest does not pay Python's per-node interpretation cost: the packed JSON is parsed and
// validated by the C++ typed-value parser (vitrify::parse_value), then walked here, creating
// Python objects directly. Everything that needs Python's judgement stays in Python and is
// passed in: the trusted names already resolved (the trust check runs on names() BEFORE
// build() is called), array loading, dtype descriptions, the builders of special types and the
// object validators. Tree node validation, which dominated forest loads, runs here on the node
// buffer.
#include <nanobind/nanobind.h>
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

struct tree_fields {
  Py_ssize_t left = -1, right = -1, feature = -1;  // byte offsets of int64 fields, or -1
};

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
        case K::object: {
          const std::string& tn = x->as_string();
          const value& st = x->inner();
          if (tn == "vitrify.global") {
            if (!st.is(K::string)) bad("vitrify.global state must be a name");
            out.insert(st.as_string());
          } else if (!sp.count(tn)) {
            out.insert(tn);
          } else if (tn == "numpy.random.Generator") {
            const value* b = dget(st, "bit_generator");
            if (b && b->is(K::string) && !bg.count(b->as_string())) out.insert(b->as_string());
          }
          if (st.is(K::dict) || st.is(K::list) || st.is(K::tuple) || st.is(K::object) || st.is(K::shared)) stack.push_back(&st);
          break;
        }
        default: break;
      }
    }
    return {out.begin(), out.end()};
  }

  nb::object build(nb::dict resolved, nb::object ctx);

  const value* root_ = nullptr;
  const value* keys_ = nullptr;
  const value* dtypes_ = nullptr;

 private:
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
    validate_object_fn_ = ctx_.attr("validate_object");
    validated_ = ctx_.attr("validated_types");
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
        // Only a byte-order record (big-endian original): same item size, no object or fields.
        nb::object dt = dtype(*t);
        if (nb::cast<bool>(dt.attr("hasobject")) || !dt.attr("fields").is_none() ||
            nb::cast<std::uint64_t>(dt.attr("itemsize")) != nb::cast<std::uint64_t>(a.attr("dtype").attr("itemsize")))
          bad("array dtype does not match its data");
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
    if (n && n->is(K::boolean) && n->as_bool()) {
      if (!PyType_Check(target.ptr())) bad(tname + " is not a class");
      nb::object newargs = check(PyTuple_New(PyTuple_GET_SIZE(args.ptr()) + 1));
      PyTuple_SET_ITEM(newargs.ptr(), 0, nb::borrow(target).release().ptr());
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args.ptr()); ++i)
        PyTuple_SET_ITEM(newargs.ptr(), i + 1, nb::borrow(PyTuple_GET_ITEM(args.ptr(), i)).release().ptr());
      nb::object kwargs;
      if (const value* kw = st.get("kw")) {
        kwargs = dec(*kw);
        if (!PyDict_CheckExact(kwargs.ptr())) bad("kwargs must be a dict");
      }
      nb::object new_fn = target.attr("__new__");
      obj = check(PyObject_Call(new_fn.ptr(), newargs.ptr(), kwargs.is_valid() ? kwargs.ptr() : nullptr));
    } else {
      obj = check(PyObject_Call(target.ptr(), args.ptr(), nullptr));
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
      if (ti.kind == type_info::tree) validate_tree_state(state, args);
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
        nb::object key = dec(kv.items()[0]);
        nb::object val = dec(kv.items()[1]);
        if (PyObject_SetItem(obj.ptr(), key.ptr(), val.ptr()) != 0) throw nb::python_error();
      }
    }
    if (ti.kind == type_info::predictor) {
      if (!validate_predictor(obj, -1)) validate_object_fn_(tname, obj);
    } else if (ti.kind == type_info::hgb) {
      if (!validate_hgb(obj)) validate_object_fn_(tname, obj);
    } else if (ti.validated) {
      validate_object_fn_(tname, obj);
    }
    return obj;
  }

  // What object() needs to know about a type name, looked up once per name and build.
  struct type_info {
    enum kind_t { generic, ndarray, scalar, dtype_, global, tree, predictor, hgb } kind = generic;
    PyObject* special = nullptr;  // builder of a special type (borrowed from ctx.special)
    PyObject* target = nullptr;   // the resolved class or function (borrowed from resolved)
    bool validated = false;       // a Python validator runs on the built object
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
      if (tname == "sklearn.tree._tree.Tree") ti.kind = type_info::tree;
      else if (tname == kPredictor) ti.kind = type_info::predictor;
      else if (tname == "sklearn.ensemble.HistGradientBoostingClassifier" ||
               tname == "sklearn.ensemble.HistGradientBoostingRegressor")
        ti.kind = type_info::hgb;
      nb::str key(tname.c_str(), tname.size());
      ti.special = PyDict_GetItemWithError(special_.ptr(), key.ptr());
      if (!ti.special && PyErr_Occurred()) throw nb::python_error();
      ti.target = PyDict_GetItemWithError(resolved_.ptr(), key.ptr());
      if (!ti.target && PyErr_Occurred()) throw nb::python_error();
      const int v = PySet_Contains(validated_.ptr(), key.ptr());
      if (v < 0) throw nb::python_error();
      ti.validated = v == 1 || tname.rfind("scipy.sparse.", 0) == 0;
    }
    return type_cache_.emplace(tname, ti).first->second;
  }

  static constexpr const char* kPredictor = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor";

  // A field of a structured dtype readable as an integer: byte offset and element code.
  struct int_field {
    Py_ssize_t off = -1;
    char code = 0;  // 'b' (u1/b1), 'I' (u4), 'i' (i4), 'q' (i8), 'Q' (u8)
  };

  static std::int64_t read_int(const unsigned char* p, const int_field& f) {
    switch (f.code) {
      case 'b': return p[f.off];
      case 'I': { std::uint32_t v; std::memcpy(&v, p + f.off, 4); return v; }
      case 'i': { std::int32_t v; std::memcpy(&v, p + f.off, 4); return v; }
      case 'q': { std::int64_t v; std::memcpy(&v, p + f.off, 8); return v; }
      case 'Q': { std::uint64_t v; std::memcpy(&v, p + f.off, 8); return v > INT64_MAX ? -1 : static_cast<std::int64_t>(v); }
    }
    return -1;
  }

  // Offsets of the named integer fields of a structured dtype (cached per dtype object);
  // false when one is missing or not a plain little-endian integer.
  bool int_fields(const nb::object& dt, const std::vector<const char*>& names, std::vector<int_field>& out) {
    auto it = int_field_cache_.find(dt.ptr());
    if (it != int_field_cache_.end() && it->second.first.is(dt)) {
      out = it->second.second;
      return !out.empty();
    }
    out.clear();
    nb::object fields = dt.attr("fields");
    bool ok = !fields.is_none();
    for (const char* name : names) {
      if (!ok) break;
      PyObject* spec = PyMapping_GetItemString(fields.ptr(), name);
      if (!spec) {
        PyErr_Clear();
        ok = false;
        break;
      }
      nb::object sp = nb::steal(spec);
      const std::string str = nb::cast<std::string>(nb::object(sp[0]).attr("str"));
      int_field f;
      f.off = nb::cast<Py_ssize_t>(sp[1]);
      if (str == "|u1" || str == "|b1") f.code = 'b';
      else if (str == "<u4") f.code = 'I';
      else if (str == "<i4") f.code = 'i';
      else if (str == "<i8") f.code = 'q';
      else if (str == "<u8") f.code = 'Q';
      else ok = false;
      out.push_back(f);
    }
    if (!ok) out.clear();
    int_field_cache_[dt.ptr()] = {dt, out};
    return ok;
  }

  // model.py _validate_tree_predictor (and, with n_features >= 0, _validate_hgb's feature
  // check) on the node buffer. False: layout not recognised, let Python check.
  bool validate_predictor(const nb::object& obj, std::int64_t n_features) {
    nb::object nodes = nb::getattr(obj, "nodes", nb::none());
    if (nodes.is_none() || !nb::hasattr(nodes, "dtype") || nodes.attr("dtype").attr("names").is_none())
      invalid("TreePredictor without nodes");
    nb::object dt = nodes.attr("dtype");
    std::vector<int_field> f;
    if (!int_fields(dt, {"is_leaf", "left", "right", "feature_idx", "is_categorical", "bitset_idx"}, f)) return false;
    if (nb::cast<int>(nodes.attr("ndim")) != 1) return false;
    Py_buffer view;
    if (PyObject_GetBuffer(nodes.ptr(), &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
      PyErr_Clear();
      return false;
    }
    struct releaser {
      Py_buffer* v;
      ~releaser() { PyBuffer_Release(v); }
    } rel{&view};
    const Py_ssize_t isz = nb::cast<Py_ssize_t>(dt.attr("itemsize"));
    const Py_ssize_t n = nb::cast<Py_ssize_t>(nodes.attr("shape")[0]);
    if (view.len != n * isz) return false;
    std::int64_t n_raw = -1, n_binned = -1;
    const auto* base = static_cast<const unsigned char*>(view.buf);
    for (Py_ssize_t i = 0; i < n; ++i) {
      const unsigned char* p = base + i * isz;
      if (read_int(p, f[0]) != 0) continue;  // leaf
      const std::int64_t l = read_int(p, f[1]), r = read_int(p, f[2]);
      if (l < 0 || r < 0 || l >= n || r >= n) invalid("TreePredictor child index out of range");
      if (n_features >= 0) {
        const std::int64_t fi = read_int(p, f[3]);
        if (fi < 0 || fi >= n_features) invalid("HistGradientBoosting: split feature index out of range");
      }
      if (read_int(p, f[4]) != 0) {
        if (n_raw < 0) {
          n_raw = nb::cast<std::int64_t>(obj.attr("raw_left_cat_bitsets").attr("shape")[0]);
          n_binned = nb::cast<std::int64_t>(obj.attr("binned_left_cat_bitsets").attr("shape")[0]);
        }
        const std::int64_t bi = read_int(p, f[5]);
        if (bi < 0 || bi >= n_raw || bi >= n_binned) invalid("TreePredictor bitset index out of range");
      }
    }
    return true;
  }

  bool validate_hgb(const nb::object& obj) {
    nb::object nf = nb::getattr(obj, "n_features_in_", nb::none());
    nb::object preds = nb::getattr(obj, "_predictors", nb::none());
    if (nf.is_none() || preds.is_none()) return false;
    const std::int64_t n_features = nb::cast<std::int64_t>(nb::int_(nf));
    for (nb::handle it : preds)
      for (nb::handle pred : it)
        if (!validate_predictor(nb::borrow(pred), n_features)) return false;
    return true;
  }

  // Raises vitrify.InvalidStateError (through Python, so the class is the decoder's own).
  [[noreturn]] void invalid(const std::string& msg) {
    ctx_.attr("invalid_state")(msg);
    bad(msg);
  }

  // model.py _validate_tree_state, on the node buffer (no numpy temporaries).
  void validate_tree_state(const nb::object& state, const nb::object& args) {
    if (!PyDict_Check(state.ptr())) invalid("Tree state must be a dict");
    PyObject* nodes = PyDict_GetItemString(state.ptr(), "nodes");
    PyObject* values = PyDict_GetItemString(state.ptr(), "values");
    PyObject* node_count = PyDict_GetItemString(state.ptr(), "node_count");
    if (!nodes || !values || !node_count) invalid("Tree state lacks its node and value arrays");
    nb::handle hn(nodes), hv(values);
    if (!nb::hasattr(hn, "dtype") || !nb::hasattr(hv, "ndim") || nb::getattr(hn, "dtype").attr("names").is_none())
      invalid("Tree state lacks its node and value arrays");
    nb::object dt = hn.attr("dtype");
    tree_fields tf;
    auto cached = field_cache_.find(dt.ptr());
    if (cached != field_cache_.end() && cached->second.first.is(dt)) {
      tf = cached->second.second;
    } else {
      nb::object fields = dt.attr("fields");
      for (const char* f : {"left_child", "right_child", "feature"}) {
        PyObject* spec = PyMapping_GetItemString(fields.ptr(), f);  // fields is a mappingproxy
        if (!spec) {
          PyErr_Clear();
          invalid(std::string("Tree nodes lack the field '") + f + "'");
        }
        nb::object sp = nb::steal(spec);
        nb::object fdt = sp[0];
        // Only plain int64 fields are read directly; other layouts fall back to Python.
        Py_ssize_t off = nb::cast<Py_ssize_t>(sp[1]);
        if (nb::cast<std::string>(fdt.attr("str")) != "<i8") off = -1;
        if (std::string(f) == "left_child") tf.left = off;
        else if (std::string(f) == "right_child") tf.right = off;
        else tf.feature = off;
      }
      field_cache_[dt.ptr()] = {dt, tf};
    }
    if (tf.left < 0 || tf.right < 0 || tf.feature < 0) {
      ctx_.attr("validate_tree_state")(state, args);  // unusual layout: the Python checks
      return;
    }
    if (nb::cast<int>(hn.attr("ndim")) != 1) invalid("Tree node_count does not match its node array");
    const Py_ssize_t n = nb::cast<Py_ssize_t>(hn.attr("shape")[0]);
    if (!PyLong_Check(node_count) && !nb::hasattr(nb::handle(node_count), "__index__"))
      invalid("Tree node_count does not match its node array");
    if (nb::cast<Py_ssize_t>(nb::int_(nb::handle(node_count))) != n) invalid("Tree node_count does not match its node array");
    if (nb::cast<int>(hv.attr("ndim")) != 3 || nb::cast<Py_ssize_t>(hv.attr("shape")[0]) != n)
      invalid("Tree values do not have one row per node");
    if (n == 0) return;
    Py_buffer view;
    if (PyObject_GetBuffer(nodes, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
      PyErr_Clear();
      ctx_.attr("validate_tree_state")(state, args);
      return;
    }
    struct releaser {
      Py_buffer* v;
      ~releaser() { PyBuffer_Release(v); }
    } rel{&view};
    const Py_ssize_t isz = nb::cast<Py_ssize_t>(dt.attr("itemsize"));
    if (view.len != n * isz) invalid("Tree node array has an unexpected size");
    std::int64_t n_features = -1;
    const bool have_args = args.is_valid() && PyTuple_Check(args.ptr()) && PyTuple_GET_SIZE(args.ptr()) > 0;
    if (have_args) {
      PyObject* nf = PyTuple_GET_ITEM(args.ptr(), 0);
      if (PyBool_Check(nf) || (!PyLong_Check(nf) && !nb::hasattr(nb::handle(nf), "__index__")))
        invalid("Tree is built without its feature count");
      n_features = nb::cast<std::int64_t>(nb::int_(nb::handle(nf)));
    }
    const auto* base = static_cast<const unsigned char*>(view.buf);
    for (Py_ssize_t i = 0; i < n; ++i) {
      std::int64_t l, r, f;
      std::memcpy(&l, base + i * isz + tf.left, 8);
      std::memcpy(&r, base + i * isz + tf.right, 8);
      std::memcpy(&f, base + i * isz + tf.feature, 8);
      const bool leaf = l == -1;
      if (leaf != (r == -1)) invalid("Tree node has exactly one child");
      if (leaf) continue;
      if (l <= i || r <= i || l >= n || r >= n) invalid("Tree child index out of range (children must follow their parent)");
      if (f < 0) invalid("Tree split feature index is negative");
      if (have_args && f >= n_features) invalid("Tree split feature index is not below n_features");
    }
  }

  const object_tree& t_;
  nb::dict resolved_;
  nb::object ctx_, array_fn_, dtype_fn_, dtype_str_fn_, special_, object_array_fn_, validate_object_fn_, validated_,
      frombuffer_, placeholder_, object_setstate_, pool_;
  Py_buffer pool_view_{};
  bool pool_held_ = false;
  std::unordered_map<std::string, type_info> type_cache_;
  std::unordered_map<PyObject*, std::pair<nb::object, dtype_info>> dtype_info_cache_;
  nb::object s_setstate_ = nb::steal(PyUnicode_InternFromString("__setstate__"));
  nb::object s_reshape_ = nb::steal(PyUnicode_InternFromString("reshape"));
  std::unordered_map<std::int64_t, nb::object> shared_;
  std::unordered_map<std::string, nb::object> dtype_str_cache_;
  std::unordered_map<std::int64_t, nb::object> dtype_idx_cache_;
  std::unordered_map<std::int64_t, std::vector<nb::object>> keysets_;
  std::unordered_map<PyTypeObject*, bool> setstate_cache_;
  std::unordered_map<PyObject*, std::pair<nb::object, tree_fields>> field_cache_;
  std::unordered_map<PyObject*, std::pair<nb::object, std::vector<int_field>>> int_field_cache_;
};

nb::object object_tree::build(nb::dict resolved, nb::object ctx) {
  builder b(*this, std::move(resolved), std::move(ctx));
  return b.dec(*root_);
}

}  // namespace

void bind_objects(nb::module_& m) {
  nb::class_<object_tree>(m, "ObjectTree", "A parsed packed object tree, version 2 or 3 (see vitrify.model).")
      .def(nb::init<nb::bytes>(), "body"_a)
      .def("names", &object_tree::names, "special"_a, "bit_generators"_a)
      .def("build", &object_tree::build, "resolved"_a, "ctx"_a);
}

}  // namespace vitrify_py
