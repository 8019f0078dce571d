// vitrify.dump's object walker: live Python objects -> the object encoding, through the one
// emitter (src/objects/encode.hpp). It walks the graph the way pickle's C accelerator (_pickle.c
// save()) does: exact-type fast paths for the built-in kinds and numpy, copyreg.dispatch_table,
// then __reduce_ex__(4) with __newobj__ / __newobj_ex__ / _reconstructor recognised; a memo by
// identity gives shared references and cycles; every object met (and every reduce result) is
// kept alive until the end, so identities stay unique.
//
// What a value becomes is decided here; how it is written, and every layout rule (pool, keysets,
// dtype table, $shared/$ref), is the emitter's.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common.hpp"
#include "format/internal.hpp"
#include "objects/encode.hpp"
#include "vitrify/vitrify.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace vitrify_py {

namespace {

namespace ob = vitrify::objects;

// Thrown when a state dict written as a keyset turns out to be referenced again: the walk is
// redone with plain dicts (model.py's _KeysetConflict).
struct keyset_conflict {};

[[noreturn]] void throw_current() { throw nb::python_error(); }

PyObject* check(PyObject* p) {
  if (!p) throw_current();
  return p;
}

nb::object steal_checked(PyObject* p) { return nb::steal(check(p)); }

nb::object attr(PyObject* o, const char* name) { return steal_checked(PyObject_GetAttrString(o, name)); }

std::string_view utf8(PyObject* s) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(s, &n);
  if (!p) throw_current();
  return {p, static_cast<std::size_t>(n)};
}

std::string str_of(PyObject* o) {
  nb::object s = steal_checked(PyObject_Str(o));
  return std::string(utf8(s.ptr()));
}

// str() of the exception being raised (cleared): what an f-string "{e}" shows.
std::string take_error_text() {
  nb::python_error err;
  nb::object msg = nb::steal(PyObject_Str(err.value().ptr()));
  if (!msg.is_valid()) {
    PyErr_Clear();
    return "?";
  }
  return std::string(utf8(msg.ptr()));
}

std::int64_t as_int(PyObject* o) {
  long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) throw_current();
  return v;
}

// Module-level objects the walker compares against, looked up once (they live as long as the
// interpreter; deliberately never released).
struct py_names {
  PyObject *ndarray, *memmap, *masked, *generic, *np_dtype, *random_state, *generator, *ufunc;
  PyObject *function_type, *builtin_function_type;
  PyObject *dispatch_table, *newobj, *newobj_ex, *reconstructor, *object_type;
  PyObject *ascontiguousarray, *uint8, *ma_getdata, *ma_getmaskarray, *sorted, *repr;
  PyObject *s_reduce_ex, *s_dtype, *s_ravel, *s_tolist, *s_reshape, *s_view;

  static const py_names& get() {
    static py_names* n = [] {
      auto* p = new py_names();
      auto imp = [](const char* m) { return check(PyImport_ImportModule(m)); };
      PyObject* np = imp("numpy");
      PyObject* ma = imp("numpy.ma");
      PyObject* rnd = imp("numpy.random");
      PyObject* copyreg = imp("copyreg");
      PyObject* types = imp("types");
      PyObject* builtins = imp("builtins");
      auto get = [](PyObject* m, const char* a) { return check(PyObject_GetAttrString(m, a)); };
      p->ndarray = get(np, "ndarray");
      p->memmap = get(np, "memmap");
      p->masked = get(ma, "MaskedArray");
      p->generic = get(np, "generic");
      p->np_dtype = get(np, "dtype");
      p->random_state = get(rnd, "RandomState");
      p->generator = get(rnd, "Generator");
      p->ufunc = get(np, "ufunc");
      p->function_type = get(types, "FunctionType");
      p->builtin_function_type = get(types, "BuiltinFunctionType");
      p->dispatch_table = get(copyreg, "dispatch_table");
      p->newobj = get(copyreg, "__newobj__");
      p->newobj_ex = get(copyreg, "__newobj_ex__");
      p->reconstructor = get(copyreg, "_reconstructor");
      p->object_type = reinterpret_cast<PyObject*>(&PyBaseObject_Type);
      p->ascontiguousarray = get(np, "ascontiguousarray");
      p->uint8 = get(np, "uint8");
      p->ma_getdata = get(ma, "getdata");
      p->ma_getmaskarray = get(ma, "getmaskarray");
      p->sorted = get(builtins, "sorted");
      p->repr = get(builtins, "repr");
      p->s_reduce_ex = PyUnicode_InternFromString("__reduce_ex__");
      p->s_dtype = PyUnicode_InternFromString("dtype");
      p->s_ravel = PyUnicode_InternFromString("ravel");
      p->s_tolist = PyUnicode_InternFromString("tolist");
      p->s_reshape = PyUnicode_InternFromString("reshape");
      p->s_view = PyUnicode_InternFromString("view");
      for (PyObject* m : {np, ma, rnd, copyreg, types, builtins}) Py_DECREF(m);
      return p;
    }();
    return *n;
  }
};

enum class cat : std::uint8_t {
  ndarray, masked, generic, dtype, set, frozenset, complex, slice, range, bytearray, random_state, generator, global, reduce
};

// What the walker needs to know of a numpy dtype, computed once per dtype object and walk.
struct dt_info {
  char kind = '?';
  std::string str;            // dtype.str
  std::int64_t itemsize = 0;
  bool hasobject = false, has_fields = false, simple = true, structured_ok = true;
  std::string desc;           // JSON description (model.py _dtype_state), structured only
  std::optional<vitrify::dtype> named;  // ml_dtypes' types: the array-table dtype
  bool unsupported = false;   // simple, not numeric, not an ml_dtypes type
};

bool is_true(PyObject* o) {
  int r = PyObject_IsTrue(o);
  if (r < 0) throw_current();
  return r != 0;
}

// model.py _structured_descr_ok: only plain numeric fields, so raw bytes never become pointers.
bool structured_ok(PyObject* dt) {
  nb::object fields = attr(dt, "fields");
  if (fields.is_none()) {
    char k = utf8(attr(dt, "kind").ptr())[0];
    return std::string_view("biufcmM").find(k) != std::string_view::npos && !is_true(attr(dt, "hasobject").ptr());
  }
  // dtype.fields is a mappingproxy (title aliases included, as model.py iterated it).
  nb::object specs = steal_checked(PyMapping_Values(fields.ptr()));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(specs.ptr()); ++i) {
    PyObject* sub = PyTuple_GetItem(PyList_GET_ITEM(specs.ptr(), i), 0);
    if (!sub) throw_current();
    nb::object subd = attr(sub, "subdtype");
    if (!subd.is_none()) {
      if (!structured_ok(check(PyTuple_GetItem(subd.ptr(), 0)))) return false;
    } else if (!structured_ok(sub)) {
      return false;
    }
  }
  return !is_true(attr(dt, "hasobject").ptr());
}

// model.py _dtype_state, as JSON text: a dtype string, or the fields / sub-array description.
void dtype_json(std::string& out, PyObject* dt, int depth) {
  if (depth > 32) {
    PyErr_SetString(PyExc_RecursionError, "numpy dtype nested too deeply to save");
    throw_current();
  }
  nb::object fields = attr(dt, "fields");
  if (!fields.is_none()) {
    nb::object names = attr(dt, "names");
    out += R"({"fields":[)";
    Py_ssize_t n = PyTuple_Size(names.ptr());
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* name = PyTuple_GET_ITEM(names.ptr(), i);
      nb::object specobj = steal_checked(PyObject_GetItem(fields.ptr(), name));
      PyObject* spec = specobj.ptr();
      if (i) out.push_back(',');
      out.push_back('[');
      vitrify::detail::append_json_string(out, utf8(name));
      out.push_back(',');
      dtype_json(out, PyTuple_GET_ITEM(spec, 0), depth + 1);
      out.push_back(',');
      out += std::to_string(as_int(PyTuple_GET_ITEM(spec, 1)));
      out.push_back(']');
    }
    out += R"(],"itemsize":)";
    out += std::to_string(as_int(attr(dt, "itemsize").ptr()));
    out += R"(,"aligned":)";
    out += is_true(attr(dt, "isalignedstruct").ptr()) ? "true" : "false";
    out.push_back('}');
    return;
  }
  nb::object subd = attr(dt, "subdtype");
  if (!subd.is_none()) {
    out += R"({"base":)";
    dtype_json(out, PyTuple_GET_ITEM(subd.ptr(), 0), depth + 1);
    out += R"(,"shape":[)";
    PyObject* shape = PyTuple_GET_ITEM(subd.ptr(), 1);
    for (Py_ssize_t i = 0; i < PyTuple_Size(shape); ++i) {
      if (i) out.push_back(',');
      out += std::to_string(as_int(PyTuple_GET_ITEM(shape, i)));
    }
    out += "]}";
    return;
  }
  vitrify::detail::append_json_string(out, utf8(attr(dt, "str").ptr()));
}

// A held buffer view: the emitter refers to its bytes until finish().
struct held_buffer {
  Py_buffer view{};
  bool held = false;
  held_buffer() = default;
  held_buffer(const held_buffer&) = delete;
  held_buffer& operator=(const held_buffer&) = delete;
  ~held_buffer() {
    if (held) PyBuffer_Release(&view);
  }
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)}; }
};

// Nesting is bounded by Python's recursion limit, and by max_nesting whatever that limit is set
// to: the walk recurses on the C stack.
constexpr int max_nesting = 3000;

struct recursion_guard {
  explicit recursion_guard(int& depth) : depth_(depth) {
    if (++depth_ > max_nesting) {
      --depth_;
      PyErr_SetString(PyExc_RecursionError, "object graph nested more than 3000 levels deep: cannot save it");
      throw_current();
    }
    if (Py_EnterRecursiveCall(" while saving an object")) {
      --depth_;
      throw_current();
    }
  }
  ~recursion_guard() {
    Py_LeaveRecursiveCall();
    --depth_;
  }
  int& depth_;
  recursion_guard(const recursion_guard&) = delete;
  recursion_guard& operator=(const recursion_guard&) = delete;
};

class py_encoder {
 public:
  py_encoder(ob::emitter& e, PyObject* canonical_name, PyObject* numpy_to_dtype, PyObject* argument_error)
      : e_(e), n_(py_names::get()), canonical_(canonical_name), numpy_to_dtype_(numpy_to_dtype), argument_error_(argument_error) {}

  void enc(PyObject* o) {
    PyTypeObject* t = Py_TYPE(o);
    if (t == &PyUnicode_Type) return e_.string(utf8(o));
    if (o == Py_None) return e_.null();
    if (t == &PyBool_Type) return e_.boolean(o == Py_True);
    if (t == &PyLong_Type) {
      int overflow = 0;
      long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
      if (v == -1 && PyErr_Occurred()) throw_current();
      if (overflow) return e_.big_integer(str_of(o));
      return e_.integer(v);
    }
    if (t == &PyFloat_Type) return e_.floating(PyFloat_AS_DOUBLE(o));
    if (t == &PyBytes_Type)
      return e_.bytes({reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(o)), static_cast<std::size_t>(PyBytes_GET_SIZE(o))});
    if (auto it = memo_.find(o); it != memo_.end()) {
      if (it->second == keyset_marker) throw keyset_conflict{};
      return e_.ref(it->second);
    }
    recursion_guard guard(depth_);
    const ob::emitter::slot s = e_.open_node();
    remember(o, s);
    if (t == &PyList_Type) {
      e_.begin_list();
      for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); ++i) {
        nb::object x = nb::borrow(PyList_GET_ITEM(o, i));
        enc(x.ptr());
      }
      e_.end_list();
    } else if (t == &PyDict_Type) {
      enc_dict(o);
    } else if (t == &PyTuple_Type) {
      e_.begin_tuple();
      for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); ++i) enc(PyTuple_GET_ITEM(o, i));
      e_.end_tuple();
    } else {
      enc_object(o, t);
    }
    e_.close_node(s);
  }

  std::vector<nb::object> keep;                       // memoised objects, reduce results, copies
  std::vector<std::unique_ptr<held_buffer>> buffers;  // array bytes the emitter refers to

 private:
  static constexpr ob::emitter::slot keyset_marker = UINT32_MAX;

  void remember(PyObject* o, ob::emitter::slot s) {
    memo_.emplace(o, s);
    keep.push_back(nb::borrow(o));
  }

  [[noreturn]] void argument_error(const std::string& msg) {
    PyErr_SetString(argument_error_, msg.c_str());
    throw_current();
  }

  std::string qualname(PyTypeObject* t) { return str_of(attr(reinterpret_cast<PyObject*>(t), "__qualname__").ptr()); }

  const std::string& canonical(PyObject* o) {
    if (auto it = names_.find(o); it != names_.end()) return it->second;
    nb::object r = steal_checked(PyObject_CallOneArg(canonical_, o));
    keep.push_back(nb::borrow(o));
    return names_.emplace(o, std::string(utf8(r.ptr()))).first->second;
  }

  // Iterate a dict the way pickle's batch_dict_exact does: items held while encoded, a size
  // change (by code a reduce ran) is an error rather than a stale read.
  template <class F>
  void each_item(PyObject* d, F&& f) {
    const Py_ssize_t size = PyDict_GET_SIZE(d);
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
      nb::object kk = nb::borrow(k), vv = nb::borrow(v);
      f(kk.ptr(), vv.ptr());
      if (PyDict_GET_SIZE(d) != size) {
        PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
        throw_current();
      }
    }
  }

  void enc_dict(PyObject* d) {
    bool plain = true;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
      if (Py_TYPE(k) != &PyUnicode_Type || (PyUnicode_GET_LENGTH(k) > 0 && PyUnicode_READ_CHAR(k, 0) == '$')) {
        plain = false;
        break;
      }
    }
    if (plain) {
      e_.begin_dict();
      each_item(d, [&](PyObject* kk, PyObject* vv) {
        e_.key(utf8(kk));
        enc(vv);
      });
      e_.end_dict();
    } else {
      e_.begin_pair_dict();
      each_item(d, [&](PyObject* kk, PyObject* vv) {
        e_.begin_list();
        enc(kk);
        enc(vv);
        e_.end_list();
      });
      e_.end_pair_dict();
    }
  }

  bool is_sub(PyTypeObject* t, PyObject* base) { return PyType_IsSubtype(t, reinterpret_cast<PyTypeObject*>(base)); }

  cat classify(PyTypeObject* t) {
    if (auto it = cats_.find(t); it != cats_.end()) return it->second;
    auto to = [&](PyObject* x) { return reinterpret_cast<PyObject*>(t) == x; };
    cat c;
    if (to(n_.ndarray) || to(n_.memmap)) c = cat::ndarray;
    else if (to(n_.masked)) c = cat::masked;
    else if (is_sub(t, n_.generic)) c = cat::generic;
    else if (is_sub(t, n_.np_dtype)) c = cat::dtype;
    else if (t == &PySet_Type) c = cat::set;
    else if (t == &PyFrozenSet_Type) c = cat::frozenset;
    else if (t == &PyComplex_Type) c = cat::complex;
    else if (t == &PySlice_Type) c = cat::slice;
    else if (t == &PyRange_Type) c = cat::range;
    else if (t == &PyByteArray_Type) c = cat::bytearray;
    else if (to(n_.random_state)) c = cat::random_state;
    else if (to(n_.generator)) c = cat::generator;
    else if (PyType_IsSubtype(t, &PyType_Type) || is_sub(t, n_.function_type) || is_sub(t, n_.builtin_function_type) ||
             is_sub(t, n_.ufunc))
      c = cat::global;
    else c = cat::reduce;
    keep.push_back(nb::borrow(reinterpret_cast<PyObject*>(t)));
    cats_.emplace(t, c);
    return c;
  }

  const dt_info& dtype_of(PyObject* dt) {
    if (auto it = dtypes_.find(dt); it != dtypes_.end()) return it->second;
    dt_info d;
    d.kind = utf8(attr(dt, "kind").ptr())[0];
    d.str = utf8(attr(dt, "str").ptr());
    d.itemsize = as_int(attr(dt, "itemsize").ptr());
    d.hasobject = is_true(attr(dt, "hasobject").ptr());
    d.has_fields = !attr(dt, "fields").is_none();
    d.simple = !d.has_fields && attr(dt, "subdtype").is_none();
    const bool numeric = std::string_view("biufcmM").find(d.kind) != std::string_view::npos;
    if (d.simple && !numeric) {
      nb::object v = steal_checked(PyObject_CallOneArg(numpy_to_dtype_, dt));
      if (v.is_none()) d.unsupported = true;
      else if (auto t = vitrify::dtype_from_name(utf8(v.ptr()))) d.named = *t;
      else d.unsupported = true;
    } else if (!d.hasobject) {
      d.structured_ok = structured_ok(dt);
    }
    if (!d.simple) dtype_json(d.desc, dt, 0);
    keep.push_back(nb::borrow(dt));
    return dtypes_.emplace(dt, std::move(d)).first->second;
  }

  // How the tree names a dtype: its string, or its index in the dtypes table.
  void dtype_ref(const dt_info& d) {
    if (d.simple) e_.string(d.str);
    else e_.integer(e_.dtype_index(d.desc));
  }

  [[noreturn]] void bad_dtype(PyObject* dt) {
    nb::object r = steal_checked(PyObject_Repr(dt));
    argument_error("cannot save numpy arrays of dtype " + std::string(utf8(r.ptr())));
  }

  void enc_object(PyObject* o, PyTypeObject* t) {
    switch (classify(t)) {
      case cat::ndarray:
        e_.begin_object("numpy.ndarray");
        enc_array(o);
        e_.end_object();
        return;
      case cat::masked: {
        e_.begin_object("numpy.ma.MaskedArray");
        e_.begin_dict();
        e_.key("data");
        enc(hold(PyObject_CallOneArg(n_.ma_getdata, o)));
        e_.key("mask");
        enc(hold(PyObject_CallOneArg(n_.ma_getmaskarray, o)));
        e_.key("fill_value");
        enc(hold(PyObject_GetAttrString(o, "fill_value")));
        e_.end_dict();
        e_.end_object();
        return;
      }
      case cat::generic: return enc_scalar(o);
      case cat::dtype: {
        std::string desc;
        dtype_json(desc, o, 0);
        e_.begin_object("numpy.dtype");
        e_.raw_json(desc);
        e_.end_object();
        return;
      }
      case cat::set:
      case cat::frozenset: {
        nb::object items = stable_order(o);
        e_.begin_object(t == &PySet_Type ? "builtins.set" : "builtins.frozenset");
        e_.begin_list();
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items.ptr()); ++i) enc(PyList_GET_ITEM(items.ptr(), i));
        e_.end_list();
        e_.end_object();
        return;
      }
      case cat::complex:
        e_.begin_object("builtins.complex");
        e_.begin_list();
        e_.floating(PyComplex_RealAsDouble(o));
        e_.floating(PyComplex_ImagAsDouble(o));
        e_.end_list();
        e_.end_object();
        return;
      case cat::slice:
      case cat::range: {
        e_.begin_object(t == &PySlice_Type ? "builtins.slice" : "builtins.range");
        e_.begin_list();
        for (const char* a : {"start", "stop", "step"}) enc(hold(PyObject_GetAttrString(o, a)));
        e_.end_list();
        e_.end_object();
        return;
      }
      case cat::bytearray:
        e_.begin_object("builtins.bytearray");
        e_.bytes({reinterpret_cast<const std::byte*>(PyByteArray_AS_STRING(o)), static_cast<std::size_t>(PyByteArray_GET_SIZE(o))});
        e_.end_object();
        return;
      case cat::random_state: {
        nb::object get = attr(o, "get_state");
        nb::dict kw;
        kw["legacy"] = true;
        PyObject* st = PyObject_Call(get.ptr(), nb::tuple().ptr(), kw.ptr());
        e_.begin_object("numpy.random.RandomState");
        enc(hold(st));
        e_.end_object();
        return;
      }
      case cat::generator: {
        nb::object bg = attr(o, "bit_generator");
        std::string name = canonical(reinterpret_cast<PyObject*>(Py_TYPE(bg.ptr())));
        PyObject* st = hold(PyObject_GetAttrString(bg.ptr(), "state"));
        e_.begin_object("numpy.random.Generator");
        e_.begin_dict();
        e_.key("bit_generator");
        e_.string(name);
        e_.key("state");
        enc(st);
        e_.end_dict();
        e_.end_object();
        return;
      }
      case cat::global: {
        std::string name = canonical(o);
        e_.global(name);
        return;
      }
      case cat::reduce: return enc_reduce(o, t);
    }
  }

  // Keep a new reference alive until the end of the walk; return it borrowed.
  PyObject* hold(PyObject* p) {
    keep.push_back(steal_checked(p));
    return p;
  }

  // model.py _stable_order: sorted, or sorted by repr when the items do not compare.
  nb::object stable_order(PyObject* s) {
    nb::object items = steal_checked(PySequence_List(s));
    PyObject* r = PyObject_CallOneArg(n_.sorted, items.ptr());
    if (!r) {
      if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw_current();
      PyErr_Clear();
      nb::object kw = nb::dict();
      PyDict_SetItemString(kw.ptr(), "key", n_.repr);
      nb::object args = nb::make_tuple(items);
      r = check(PyObject_Call(n_.sorted, args.ptr(), kw.ptr()));
    }
    return nb::steal(r);
  }

  void enc_scalar(PyObject* o) {
    nb::object dto = attr(o, "dtype");
    const dt_info& d = dtype_of(dto.ptr());
    if (d.hasobject) argument_error("numpy object scalars cannot be saved");
    held_buffer b;
    bool ok = false;
    if (std::string_view("biufc").find(d.kind) != std::string_view::npos) {
      if (PyObject_GetBuffer(o, &b.view, PyBUF_SIMPLE) == 0) {
        b.held = true;
        ok = b.view.len == d.itemsize;
      } else {
        PyErr_Clear();
      }
    }
    nb::object raw;
    std::span<const std::byte> bytes;
    if (ok) {
      bytes = b.bytes();
    } else {
      nb::object np = nb::module_::import_("numpy");
      raw = np.attr("asarray")(nb::handle(o)).attr("tobytes")();
      bytes = {reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(raw.ptr())), static_cast<std::size_t>(PyBytes_GET_SIZE(raw.ptr()))};
    }
    e_.begin_object("numpy.generic");
    e_.begin_dict();
    e_.key("t");
    dtype_ref(d);
    e_.key("b");
    e_.base64_text(bytes);
    e_.end_dict();
    e_.end_object();
  }

  std::vector<std::uint64_t> shape_of(PyObject* a) {
    nb::object sh = attr(a, "shape");
    std::vector<std::uint64_t> s(static_cast<std::size_t>(PyTuple_GET_SIZE(sh.ptr())));
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::uint64_t>(as_int(PyTuple_GET_ITEM(sh.ptr(), i)));
    return s;
  }

  // The items of an array in C order, as tolist() gives them (object arrays: the objects).
  nb::object flat_list(PyObject* a) {
    nb::dict kw;
    kw["order"] = "C";
    nb::object r = steal_checked(PyObject_Call(attr(a, "ravel").ptr(), nb::tuple().ptr(), kw.ptr()));
    return steal_checked(PyObject_CallMethodNoArgs(r.ptr(), n_.s_tolist));
  }

  void enc_strings(PyObject* items, const std::vector<std::uint64_t>& shape, std::string_view hint, std::string_view t,
                   std::uint64_t nbytes) {
    const Py_ssize_t n = PyList_GET_SIZE(items);
    std::vector<std::uint64_t> offsets(static_cast<std::size_t>(n) + 1, 0);
    std::string text;
    for (Py_ssize_t i = 0; i < n; ++i) {
      Py_ssize_t len = 0;
      const char* p = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(items, i), &len);
      if (!p) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeError)) throw_current();
        argument_error("array '" + e_.next_array_name() + "': string is not valid Unicode: " + take_error_text());
      }
      text.append(p, static_cast<std::size_t>(len));
      offsets[static_cast<std::size_t>(i) + 1] = text.size();
    }
    e_.strings(shape, std::move(offsets), std::move(text), hint, t, nbytes);
  }

  // A C-ordered byte view of `stored` (copied when it is not contiguous), held until the end.
  std::span<const std::byte> c_bytes(PyObject* stored) {
    auto b = std::make_unique<held_buffer>();
    if (PyObject_GetBuffer(stored, &b->view, PyBUF_C_CONTIGUOUS) == 0) {
      b->held = true;
    } else {
      PyErr_Clear();
      nb::object c = steal_checked(PyObject_CallOneArg(n_.ascontiguousarray, stored));
      nb::object flat = steal_checked(PyObject_CallMethod(c.ptr(), "reshape", "i", -1));
      nb::object u8 = steal_checked(PyObject_CallMethodOneArg(flat.ptr(), n_.s_view, n_.uint8));
      keep.push_back(u8);
      if (PyObject_GetBuffer(u8.ptr(), &b->view, PyBUF_C_CONTIGUOUS) != 0) throw_current();
      b->held = true;
    }
    auto out = b->bytes();
    buffers.push_back(std::move(b));
    return out;
  }

  void enc_array(PyObject* a) {
    nb::object dto = steal_checked(PyObject_GetAttr(a, n_.s_dtype));
    const dt_info& d = dtype_of(dto.ptr());
    std::vector<std::uint64_t> shape = shape_of(a);
    std::uint64_t size = 1;
    for (auto s : shape) size *= s;
    if (d.hasobject) {
      if (d.has_fields) argument_error("structured arrays with object fields cannot be saved");
      nb::object items = flat_list(a);
      bool all_str = size > 0;
      for (Py_ssize_t i = 0; all_str && i < PyList_GET_SIZE(items.ptr()); ++i)
        all_str = Py_TYPE(PyList_GET_ITEM(items.ptr(), i)) == &PyUnicode_Type;
      if (all_str) return enc_strings(items.ptr(), shape, "object", "O", size * static_cast<std::uint64_t>(d.itemsize));
      keep.push_back(items);
      e_.object_array_head(shape);
      e_.begin_list();
      for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items.ptr()); ++i) enc(PyList_GET_ITEM(items.ptr(), i));
      e_.end_list();
      e_.end_dict();
      return;
    }
    if (d.kind == 'U') {
      nb::object items = flat_list(a);
      std::string hint = "<U" + std::to_string(d.itemsize / 4);
      return enc_strings(items.ptr(), shape, hint, d.str, size * static_cast<std::uint64_t>(d.itemsize));
    }
    if (d.kind == 'S') return e_.byte_strings(shape, c_bytes(a), d.str);
    nb::object flags = attr(a, "flags");
    const bool c_contig = is_true(attr(flags.ptr(), "c_contiguous").ptr());
    const bool fortran = shape.size() > 1 && !c_contig && is_true(attr(flags.ptr(), "f_contiguous").ptr());
    if (d.unsupported || (!d.named && !d.structured_ok)) bad_dtype(dto.ptr());
    ob::fixed_array fa;
    fa.named_dtype = d.named.has_value();
    fa.table_dtype = d.named;
    if (d.simple) fa.dtype_str = d.str;
    else fa.dtype_index = e_.dtype_index(d.desc);
    fa.fortran = fortran;
    fa.shape = shape;
    if (fortran) {
      std::reverse(fa.shape.begin(), fa.shape.end());
      nb::object tr = attr(a, "T");
      keep.push_back(tr);
      fa.data = c_bytes(tr.ptr());
    } else {
      fa.data = c_bytes(a);
    }
    if (auto r = e_.fixed(fa); !r) raise(std::move(r).err());
  }

  void enc_reduce(PyObject* o, PyTypeObject* t) {
    PyObject* red = PyDict_GetItemWithError(n_.dispatch_table, reinterpret_cast<PyObject*>(t));
    if (!red && PyErr_Occurred()) throw_current();
    PyObject* rvp;
    if (red) {
      rvp = PyObject_CallOneArg(red, o);
    } else {
      nb::object four = nb::int_(4);
      rvp = PyObject_CallMethodOneArg(o, n_.s_reduce_ex, four.ptr());
    }
    if (!rvp) {
      if (!PyErr_ExceptionMatches(PyExc_Exception)) throw_current();
      argument_error("cannot save " + qualname(t) + " object: " + take_error_text());
    }
    PyObject* rv = hold(rvp);  // kept: ids met inside stay unique
    if (PyUnicode_Check(rv)) {
      // A global reference (a module-level singleton such as a function object).
      PyObject* mod = PyObject_GetAttrString(o, "__module__");
      if (!mod) PyErr_Clear();
      nb::object m = mod ? nb::steal(mod) : nb::none();
      std::string name = std::string(utf8(rv));
      if (!m.is_none() && is_true(m.ptr())) name = str_of(m.ptr()) + "." + name;
      return e_.global(name);
    }
    if (!PyTuple_Check(rv))
      argument_error("cannot save " + qualname(t) + ": __reduce_ex__ returned " + std::string(Py_TYPE(rv)->tp_name));
    const Py_ssize_t n = PyTuple_GET_SIZE(rv);
    if (n < 2 || n > 6)
      argument_error("cannot save " + qualname(t) + ": __reduce_ex__ returned a tuple of " + std::to_string(n) + " items");
    PyObject* func = PyTuple_GET_ITEM(rv, 0);
    PyObject* args = PyTuple_GET_ITEM(rv, 1);
    PyObject* state = n > 2 ? PyTuple_GET_ITEM(rv, 2) : Py_None;
    PyObject* listitems = n > 3 ? PyTuple_GET_ITEM(rv, 3) : Py_None;
    PyObject* dictitems = n > 4 ? PyTuple_GET_ITEM(rv, 4) : Py_None;
    if (func == n_.newobj) {
      nb::object cls = steal_checked(PySequence_GetItem(args, 0));
      e_.begin_typed_object(canonical(cls.ptr()));
      e_.begin_dict();
      e_.key("n");
      e_.boolean(true);
      const Py_ssize_t na = PySequence_Size(args);
      if (na < 0) throw_current();
      if (na > 1) {
        e_.key("a");
        e_.begin_list();
        for (Py_ssize_t i = 1; i < na; ++i) enc(hold(PySequence_GetItem(args, i)));
        e_.end_list();
      }
    } else if (func == n_.newobj_ex) {
      nb::object seq = steal_checked(PySequence_Tuple(args));
      if (PyTuple_GET_SIZE(seq.ptr()) != 3) argument_error("cannot save " + qualname(t) + ": __newobj_ex__ takes (cls, args, kwargs)");
      e_.begin_typed_object(canonical(PyTuple_GET_ITEM(seq.ptr(), 0)));
      e_.begin_dict();
      e_.key("n");
      e_.boolean(true);
      e_.key("a");
      iterate(PyTuple_GET_ITEM(seq.ptr(), 1));
      e_.key("kw");
      enc(hold(PyObject_CallOneArg(reinterpret_cast<PyObject*>(&PyDict_Type), PyTuple_GET_ITEM(seq.ptr(), 2))));
    } else if (func == n_.reconstructor) {
      nb::object seq = steal_checked(PySequence_Tuple(args));
      if (PyTuple_GET_SIZE(seq.ptr()) != 3) argument_error("cannot save " + qualname(t) + ": _reconstructor takes (cls, base, state)");
      std::string tname = canonical(PyTuple_GET_ITEM(seq.ptr(), 0));
      if (PyTuple_GET_ITEM(seq.ptr(), 1) != n_.object_type || PyTuple_GET_ITEM(seq.ptr(), 2) != Py_None)
        argument_error("cannot save " + tname + ": unsupported copyreg reconstruction");
      e_.begin_typed_object(tname);
      e_.begin_dict();
      e_.key("n");
      e_.boolean(true);
    } else {
      e_.begin_typed_object(canonical(func));
      e_.begin_dict();
      e_.key("a");
      if (args == Py_None || !is_true(args)) {
        e_.begin_list();
        e_.end_list();
      } else {
        iterate(args);
      }
    }
    if (state != Py_None) enc_state(state);
    if (listitems != Py_None) {
      e_.key("li");
      iterate(listitems);
    }
    if (dictitems != Py_None) {
      e_.key("di");
      e_.begin_list();
      nb::object it = steal_checked(PyObject_GetIter(dictitems));
      while (PyObject* item = PyIter_Next(it.ptr())) {
        nb::object pair = steal_checked(PySequence_Tuple(hold(item)));
        if (PyTuple_GET_SIZE(pair.ptr()) != 2) argument_error("cannot save " + qualname(t) + ": dict items must be pairs");
        e_.begin_list();
        enc(PyTuple_GET_ITEM(pair.ptr(), 0));
        enc(PyTuple_GET_ITEM(pair.ptr(), 1));
        e_.end_list();
      }
      if (PyErr_Occurred()) throw_current();
      e_.end_list();
    }
    e_.end_dict();
    e_.end_object();
  }

  // [enc(x) for x in it]; the items are kept (an iterator may make them on the fly).
  void iterate(PyObject* iterable) {
    nb::object it = steal_checked(PyObject_GetIter(iterable));
    e_.begin_list();
    while (PyObject* x = PyIter_Next(it.ptr())) enc(hold(x));
    if (PyErr_Occurred()) throw_current();
    e_.end_list();
  }

  void enc_state(PyObject* state) {
    if (e_.options().keysets && Py_TYPE(state) == &PyDict_Type && PyDict_GET_SIZE(state) > 0 && !memo_.count(state)) {
      // A dict state as a shared key list + its values (the estimators of a forest all have
      // the same keys).
      std::vector<std::string_view> keys;
      keys.reserve(static_cast<std::size_t>(PyDict_GET_SIZE(state)));
      PyObject *k, *v;
      Py_ssize_t pos = 0;
      bool all_str = true;
      while (PyDict_Next(state, &pos, &k, &v)) {
        if (Py_TYPE(k) != &PyUnicode_Type) {
          all_str = false;
          break;
        }
        keys.push_back(utf8(k));
      }
      if (all_str) {
        memo_.emplace(state, keyset_marker);
        keep.push_back(nb::borrow(state));
        e_.key("k");
        e_.integer(e_.keyset(keys));
        e_.key("s");
        e_.begin_list();
        each_item(state, [&](PyObject*, PyObject* vv) { enc(vv); });
        e_.end_list();
        return;
      }
    }
    e_.key("s");
    enc(state);
  }

  ob::emitter& e_;
  const py_names& n_;
  PyObject* canonical_;
  PyObject* numpy_to_dtype_;
  PyObject* argument_error_;
  int depth_ = 0;
  std::unordered_map<PyObject*, ob::emitter::slot> memo_;
  std::unordered_map<PyTypeObject*, cat> cats_;
  std::unordered_map<PyObject*, dt_info> dtypes_;
  std::unordered_map<PyObject*, std::string> names_;
};

vitrify::array_codec codec_of(std::string_view name, int level) {
  auto c = vitrify::codec_from_name(name);
  if (!c) raise(vitrify::errc::invalid_argument, "unknown codec name '" + std::string(name) + "'");
  return vitrify::array_codec{*c, *c == vitrify::codec::raw ? 0 : level};
}

}  // namespace

void bind_encode(nb::module_& m) {
  m.def(
      "numpy_dtype_state",
      [](nb::handle dt) {
        std::string s;
        dtype_json(s, dt.ptr(), 0);
        return s;
      },
      "dtype"_a, "JSON text of the description the object encoding stores for a numpy dtype.");
  m.def(
      "encode_objects",
      [](Writer& w, nb::handle obj, std::string_view codec, int level, std::optional<std::string> schema_json,
         nb::handle canonical_name, nb::handle numpy_to_dtype, nb::handle argument_error) {
        ob::emit_options opt;
        opt.arrays = codec_of(codec, level);
        vitrify::value schema;
        if (schema_json) {
          auto s = vitrify::parse_value(*schema_json);
          if (!s) raise(std::move(s).err());
          schema = std::move(s).value();
        }
        for (bool keysets : {true, false}) {
          opt.keysets = keysets;
          ob::emitter e(opt);
          py_encoder p(e, canonical_name.ptr(), numpy_to_dtype.ptr(), argument_error.ptr());
          try {
            p.enc(obj.ptr());
          } catch (const keyset_conflict&) {
            continue;  // a state dict written as a keyset is referenced elsewhere too
          }
          ob::emit_result r;
          {
            nb::gil_scoped_release nogil;
            std::lock_guard lock(w.mu);
            vitrify::writer& wr = w.get("encode_objects");
            r = unwrap(e.finish(wr));
            wr.set_content(ob::emitter::content(r, std::move(schema)));
          }
          nb::dict d;
          nb::list types;
          for (const auto& t : r.types) types.append(nb::str(t.data(), t.size()));
          d["types"] = types;
          d["arrays"] = r.arrays;
          d["pooled_arrays"] = r.pooled_arrays;
          d["array_bytes"] = r.array_bytes;
          d["tree_bytes"] = r.tree_bytes;
          d["shared"] = r.shared;
          d["pooled"] = r.pooled;
          return d;
        }
        raise(vitrify::errc::invalid_argument, "encode_objects: keyset conflict without keysets");
      },
      "writer"_a, "obj"_a, "codec"_a, "level"_a, "schema_json"_a.none(), "canonical_name"_a, "numpy_to_dtype"_a,
      "argument_error"_a,
      "Write obj's object graph into writer in the object encoding (arrays, pool, packed tree and the\n"
      "content section; see docs/OBJECTS.md). Classes and functions are named by canonical_name(obj);\n"
      "numpy_to_dtype(dtype) names the array-table dtype of ml_dtypes arrays; refusals raise\n"
      "argument_error(message).");
}

}  // namespace vitrify_py
