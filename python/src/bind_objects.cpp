// vitrify._core.ObjectGraph: vitrify.load's builder of Python objects.
//
// The object encoding has one decoder, in C++: vitrify::pyobj::decode_objects (src/objects/decode.cpp)
// turns a file into an inert, checked graph (every reference, dtype, shape, size and limit of
// docs/OBJECTS.md). This file only walks that graph and makes Python objects; it reads nothing
// from the file itself. Everything that needs Python's judgement is passed in through the build
// context (vitrify.model._BuildContext): the trusted names already resolved (the trust check and
// the call rule run on names() and uses() BEFORE build() is called), the builders of special
// types, the call rule (vitrify._reconstructors: the only calls made are cls.__new__(cls) and the
// checked reconstructors) and the checks of built objects, chosen by the type of the built
// object (vitrify._validators).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.hpp"
#include "vitrify/pyobj.hpp"

namespace vitrify_py {

using namespace nb::literals;
namespace po = vitrify::pyobj;
using NK = po::node::kind;

namespace {

[[noreturn]] void bad(const std::string& msg) { raise(vitrify::errc::bad_value, msg); }

nb::object check(PyObject* p) {
  if (!p) throw nb::python_error();
  return nb::steal(p);
}

class object_graph {
 public:
  object_graph(const File& fh, std::optional<std::uint64_t> extra_bytes) : writable_(fh.writable) {
    po::decode_limits lim;
    if (extra_bytes) lim.extra_bytes = *extra_bytes;
    std::shared_ptr<po::graph> g;
    {
      nb::gil_scoped_release release;
      auto r = po::decode_objects(fh.f, lim);
      if (!r) raise(std::move(r).err());
      g = std::move(r).value();
    }
    g_ = std::move(g);
    file_ = fh.f.bytes();
    g = nullptr;
  }

  // Every type and function name build() may resolve: object types (but the special types the
  // builder makes from their state), globals, and a Generator's bit generator when it is not one
  // of numpy's own. Every node the graph owns is reachable from its root (the decoder attaches
  // each node it makes), so one pass over the graph's storage sees them all.
  std::vector<std::string> names(const std::vector<std::string>& special, const std::vector<std::string>& bit_generators) const {
    std::set<std::string, std::less<>> sp(special.begin(), special.end());
    std::set<std::string, std::less<>> bg(bit_generators.begin(), bit_generators.end());
    std::set<std::string, std::less<>> out;
    g_->each_node([&](const po::node& n) {
      if (n.k == NK::global) {
        if (!out.count(n.text)) out.insert(n.text);
      } else if (n.k == NK::object && n.obj) {
        if (out.count(n.obj->type)) return;
        if (!sp.count(n.obj->type)) {
          out.insert(n.obj->type);
        } else if (n.obj->type == "numpy.random.Generator" && n.obj->state) {
          const po::node* b = n.obj->state->get("bit_generator");
          if (b && b->k == NK::string && !bg.count(b->text)) out.insert(b->text);
        }
      }
    });
    return {out.begin(), out.end()};
  }

  // How each type name is used (vitrify._reconstructors.USE_*): "global" (a reference), "new"
  // (cls.__new__(cls)), "new_args" (__new__ with arguments) or "call" (target(*args)).
  std::vector<std::pair<std::string, std::string>> uses(const std::vector<std::string>& special) const {
    std::set<std::string, std::less<>> sp(special.begin(), special.end());
    std::set<std::pair<std::string, std::string>> out;
    g_->each_node([&](const po::node& n) {
      if (n.k == NK::global) {
        out.emplace(n.text, "global");
      } else if (n.k == NK::object && n.obj && !sp.count(n.obj->type)) {
        const bool has_args = n.obj->kwargs || !n.obj->args.empty();
        out.emplace(n.obj->type, !n.obj->newobj ? "call" : has_args ? "new_args" : "new");
      }
    });
    return {out.begin(), out.end()};
  }

  nb::object build(nb::dict resolved, nb::object ctx, bool copy_file_arrays);

  std::shared_ptr<const po::graph> g_;
  std::span<const std::byte> file_;  // the file image the graph's raw arrays view
  bool writable_ = false;            // that image may be written (copy-on-write map or private copy)
};

// Keeps a graph buffer alive for as long as a numpy array views it.
struct region_owner {
  std::shared_ptr<const void> owner;
};

class builder {
 public:
  builder(const object_graph& g, nb::dict resolved, nb::object ctx, bool copy_file_arrays)
      : g_(g), resolved_(std::move(resolved)), ctx_(std::move(ctx)), copy_file_(copy_file_arrays) {
    dtype_str_fn_ = ctx_.attr("dtype_from_str");
    special_ = ctx_.attr("special");
    object_array_fn_ = ctx_.attr("object_array");
    strings_fn_ = ctx_.attr("string_array");
    bytes_fn_ = ctx_.attr("bytes_array");
    rules_call_ = ctx_.attr("rules").attr("call");
    rules_new_ = ctx_.attr("rules").attr("new");
    object_check_fn_ = ctx_.attr("object_check");
    state_check_fn_ = ctx_.attr("state_check");
    frombuffer_ = ctx_.attr("frombuffer");
    empty_ = ctx_.attr("empty");
    aligned_copy_ = ctx_.attr("aligned_copy");
    np_dtype_ = ctx_.attr("np_dtype");
    object_setstate_ = nb::getattr(nb::handle(reinterpret_cast<PyObject*>(&PyBaseObject_Type)), "__setstate__", nb::none());
  }

  nb::object dec(const po::node* n) {
    if (!n) bad("object graph: missing value");
    if (n->shared) {
      auto it = memo_.find(n);
      if (it != memo_.end()) {
        if (!it->second.is_valid())
          bad("a $ref refers to a value that cannot be built yet (a cycle through a tuple, a special type or constructor arguments)");
        return it->second;
      }
      memo_.emplace(n, nb::object());  // in progress: containers and objects register themselves early
      nb::object o = make(*n);
      memo_[n] = o;
      return o;
    }
    return make(*n);
  }

 private:
  void reg(const po::node& n, const nb::object& o) {
    if (n.shared) memo_[&n] = o;
  }

  nb::object str(const std::string& s) {
    return check(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass"));
  }

  nb::object make(const po::node& n) {
    switch (n.k) {
      case NK::none: return nb::none();
      case NK::boolean: return nb::bool_(n.b);
      case NK::integer: return check(PyLong_FromLongLong(n.i));
      case NK::big_integer: {
        if (n.text.size() > 100000) bad("invalid $int");
        return check(PyLong_FromString(n.text.c_str(), nullptr, 10));
      }
      case NK::floating: return check(PyFloat_FromDouble(n.d));
      case NK::complex: return check(PyComplex_FromDoubles(n.d, n.imag));
      case NK::string: return str(n.text);
      case NK::bytes: return check(PyBytes_FromStringAndSize(n.text.data(), static_cast<Py_ssize_t>(n.text.size())));
      case NK::list: {
        nb::list out;
        reg(n, out);
        for (auto* x : n.items) out.append(dec(x));
        return out;
      }
      case NK::tuple: {
        nb::object t = check(PyTuple_New(static_cast<Py_ssize_t>(n.items.size())));
        for (std::size_t i = 0; i < n.items.size(); ++i)
          PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), dec(n.items[i]).release().ptr());
        return t;
      }
      case NK::dict: {
        nb::dict d;
        reg(n, d);
        fill_dict(d, n, false);
        return d;
      }
      case NK::set:
      case NK::frozenset: {
        nb::object s = check(n.k == NK::set ? PySet_New(nullptr) : PyFrozenSet_New(nullptr));
        for (auto* x : n.items) {
          nb::object v = dec(x);
          if (PySet_Add(s.ptr(), v.ptr()) != 0) {
            PyErr_Clear();
            bad("unhashable set item");
          }
        }
        return s;
      }
      case NK::array: return array(*n.arr);
      case NK::scalar: return scalar(*n.arr);
      case NK::dtype: return dtype_of(*n.arr);
      case NK::global: {
        PyObject* o = PyDict_GetItemWithError(resolved_.ptr(), str(n.text).ptr());
        if (!o) {
          if (PyErr_Occurred()) throw nb::python_error();
          bad("name " + n.text + " was not resolved");
        }
        return nb::borrow(o);
      }
      case NK::object: return object(n);
    }
    bad("unexpected node kind");
  }

  void fill_dict(nb::dict& d, const po::node& n, bool intern_keys) {
    for (const auto& [k, v] : n.entries) {
      nb::object key;
      if (intern_keys && k && k->k == NK::string && !k->shared) {
        // Attribute names: one interned str per distinct name and build, as Python's own (the
        // states made from one keyset share their key nodes: looked up by node first).
        auto kt = key_node_cache_.find(k);
        if (kt != key_node_cache_.end()) {
          key = kt->second;
        } else {
          auto it = key_cache_.find(k->text);
          if (it == key_cache_.end()) {
            nb::object s = str(k->text);
            PyUnicode_InternInPlace(reinterpret_cast<PyObject**>(&s));
            it = key_cache_.emplace(k->text, std::move(s)).first;
          }
          key = it->second;
          key_node_cache_.emplace(k, key);
        }
      } else {
        key = dec(k);
      }
      nb::object val = dec(v);
      if (PyDict_SetItem(d.ptr(), key.ptr(), val.ptr()) != 0) {
        PyErr_Clear();
        bad("unhashable dict key");
      }
    }
  }

  // ---- dtypes ----
  nb::object dtype_str(const std::string& s) {
    auto it = dtype_str_cache_.find(s);
    if (it != dtype_str_cache_.end()) return it->second;
    nb::object dt = dtype_str_fn_(s);
    dtype_str_cache_.emplace(s, dt);
    return dt;
  }

  // The numpy dtype the file described (byte order, alignment, nested fields, sub-arrays).
  nb::object dtype_spec(const po::dtype_spec& s) {
    auto it = dtype_spec_cache_.find(&s);
    if (it != dtype_spec_cache_.end()) return it->second;
    nb::object dt;
    if (s.base) {
      nb::object shp = check(PyTuple_New(static_cast<Py_ssize_t>(s.subshape.size())));
      for (std::size_t i = 0; i < s.subshape.size(); ++i)
        PyTuple_SET_ITEM(shp.ptr(), static_cast<Py_ssize_t>(i), check(PyLong_FromLongLong(s.subshape[i])).release().ptr());
      dt = np_dtype_(nb::make_tuple(dtype_spec(*s.base), shp));
    } else if (!s.fields.empty()) {
      nb::list names, formats, offsets;
      for (const auto& f : s.fields) {
        names.append(str(f.name));
        formats.append(f.spec ? dtype_spec(*f.spec) : dtype_str(f.dtype));
        offsets.append(nb::int_(f.offset));
      }
      nb::dict d;
      d["names"] = names;
      d["formats"] = formats;
      d["offsets"] = offsets;
      d["itemsize"] = nb::int_(s.itemsize);
      d["aligned"] = nb::bool_(s.aligned);
      dt = np_dtype_(d);
    } else {
      dt = dtype_str(s.str);
      if (s.big_endian) dt = dt.attr("newbyteorder")(">");
    }
    dtype_spec_cache_.emplace(&s, dt);
    return dt;
  }

  nb::object dtype_of(const po::ndarray& a) {
    if (a.spec) return dtype_spec(*a.spec);
    return dtype_str(a.dtype);
  }

  // The dtype of the bytes the graph holds: little-endian for plain numeric data (the decoder
  // swapped big-endian data), the file's description for structured records.
  nb::object data_dtype(const po::ndarray& a) {
    if (a.spec && !a.spec->big_endian) return dtype_spec(*a.spec);
    return dtype_str(a.dtype);
  }

  // ---- arrays ----
  nb::object shape_tuple(const std::vector<std::int64_t>& shape, bool reversed) {
    nb::object t = check(PyTuple_New(static_cast<Py_ssize_t>(shape.size())));
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const std::int64_t d = reversed ? shape[shape.size() - 1 - i] : shape[i];
      PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), check(PyLong_FromLongLong(d)).release().ptr());
    }
    return t;
  }

  // One uint8 numpy array per buffer of the graph (the file image, the pool, a decoded
  // buffer), shared by every array inside it.
  nb::object region(const po::ndarray& a) {
    const std::byte* key = a.region.data();
    auto it = regions_.find(key);
    if (it != regions_.end()) return it->second;
    const bool in_file = !g_.file_.empty() && a.region.data() == g_.file_.data();
    auto* keep = new region_owner{a.owner};
    nb::capsule cap(keep, [](void* p) noexcept { delete static_cast<region_owner*>(p); });
    std::size_t shape[1] = {a.region.size()};
    nb::object base;
    if (in_file && copy_file_) {
      // Arrays that must not view the mapping (load(mmap=False)): one aligned private copy of
      // the image, shared by all of them, each array keeping its offset and alignment.
      nb::ndarray<nb::numpy, const std::uint8_t, nb::ndim<1>> arr(a.region.data(), 1, shape, cap);
      base = aligned_copy_(arr.cast());
    } else if (in_file && !g_.writable_) {
      nb::ndarray<nb::numpy, const std::uint8_t, nb::ndim<1>> arr(a.region.data(), 1, shape, cap);
      base = arr.cast();
    } else {
      nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<1>> arr(const_cast<std::byte*>(a.region.data()), 1, shape, cap);
      base = arr.cast();
    }
    regions_.emplace(key, base);
    return base;
  }

  nb::object array(const po::ndarray& a) {
    if (a.dtype == "O" || a.kind() == 'U' || a.kind() == 'S' || !a.strings.empty() || !a.items.empty()) return text_or_objects(a);
    nb::object dt = data_dtype(a);
    nb::object shp = shape_tuple(a.shape, a.fortran);  // the stored (C-order) shape
    const std::uint64_t count = a.count();
    nb::object out;
    if (count == 0 || a.itemsize == 0 || a.data.empty()) {
      out = empty_(shp, dt);
    } else {
      if (a.region.empty() || a.data.data() < a.region.data() ||
          a.data.data() + a.data.size() > a.region.data() + a.region.size())
        bad("object graph: array data outside its buffer");
      nb::object base = region(a);
      const auto off = static_cast<std::int64_t>(a.data.data() - a.region.data());
      nb::object flat = frombuffer_(base, dt, nb::int_(count), nb::int_(off));
      out = check(PyObject_CallMethodOneArg(flat.ptr(), s_reshape_.ptr(), shp.ptr()));
    }
    if (a.fortran) out = out.attr("T");
    if (a.spec && a.spec->big_endian) out = out.attr("astype")(dtype_spec(*a.spec));  // the file's byte order
    return out;
  }

  nb::object text_or_objects(const po::ndarray& a) {
    nb::object shp = shape_tuple(a.shape, false);
    if (a.kind() == 'S') {
      // Fixed-width byte strings ("y"): the graph holds the items, shape logical.
      nb::list items;
      for (const auto& s : a.strings) items.append(check(PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()))));
      nb::object stored = shape_tuple(a.shape, a.fortran);
      nb::object out = bytes_fn_(items, dtype_of(a), stored);
      return a.fortran ? out.attr("T") : out;
    }
    if (!a.items.empty() || (a.strings.empty() && a.dtype == "O" && !a.strings_are_objects)) {
      nb::list items;
      for (auto* x : a.items) items.append(dec(x));
      return object_array_fn_(items, shp);
    }
    nb::list items;
    for (const auto& s : a.strings) items.append(str(s));
    return strings_fn_(items, shp, a.strings_are_objects ? nb::str("object") : nb::str(a.dtype.c_str(), a.dtype.size()));
  }

  nb::object scalar(const po::ndarray& a) {
    nb::object raw = check(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(a.data.data()), static_cast<Py_ssize_t>(a.data.size())));
    return frombuffer_(raw, data_dtype(a))[0];
  }

  // ---- objects ----
  bool default_setstate(nb::handle obj) {
    PyTypeObject* tp = Py_TYPE(obj.ptr());
    auto it = setstate_cache_.find(tp);
    if (it != setstate_cache_.end()) return it->second;
    nb::object fn = nb::getattr(nb::handle(reinterpret_cast<PyObject*>(tp)), "__setstate__", nb::none());
    const bool r = fn.is_none() || (!object_setstate_.is_none() && fn.is(object_setstate_));
    setstate_cache_[tp] = r;
    return r;
  }

  // What object() needs to know about a type name, looked up once per name and build.
  struct type_info {
    PyObject* special = nullptr;  // builder of a special type (borrowed from ctx.special)
    PyObject* target = nullptr;   // the resolved class or function (borrowed from resolved)
  };

  const type_info& info(const std::string& tname) {
    auto it = type_cache_.find(tname);
    if (it != type_cache_.end()) return it->second;
    type_info ti;
    nb::str key(tname.c_str(), tname.size());
    ti.special = PyDict_GetItemWithError(special_.ptr(), key.ptr());
    if (!ti.special && PyErr_Occurred()) throw nb::python_error();
    if (!ti.special) {
      ti.target = PyDict_GetItemWithError(resolved_.ptr(), key.ptr());
      if (!ti.target && PyErr_Occurred()) throw nb::python_error();
    }
    return type_cache_.emplace(tname, ti).first->second;
  }

  nb::object object(const po::node& n) {
    const po::object& o = *n.obj;
    const std::string& tname = o.type;
    const type_info& ti = info(tname);
    if (ti.special) {
      // Built from its state, which exists before it does (the decoder refuses a $ref inside
      // that state to the object itself).
      nb::object st = o.state ? dec(o.state) : nb::none();
      return nb::borrow(ti.special)(st);
    }
    if (!ti.target) bad("type " + tname + " was not resolved");
    nb::handle target(ti.target);
    nb::object args = check(PyTuple_New(static_cast<Py_ssize_t>(o.args.size())));
    for (std::size_t i = 0; i < o.args.size(); ++i)
      PyTuple_SET_ITEM(args.ptr(), static_cast<Py_ssize_t>(i), dec(o.args[i]).release().ptr());
    nb::object obj;
    nb::str key(tname.c_str(), tname.size());
    if (o.newobj) {
      if (!PyType_Check(target.ptr())) bad(tname + " is not a class");
      if (o.args.empty() && !o.kwargs) {
        obj = check(PyObject_CallMethodOneArg(target.ptr(), s_new_.ptr(), target.ptr()));
      } else {
        // __new__ with arguments: only for the caller's own classes (the rule decides).
        obj = rules_new_(key, target, args, o.kwargs ? dec(o.kwargs) : nb::none());
      }
    } else {
      obj = rules_call_(key, target, args);  // a checked reconstructor, or refused
    }
    reg(n, obj);
    if (o.state) {
      nb::object state;
      if (o.state->k == NK::dict && !o.state->shared) {
        nb::dict d;  // attribute names: interned like Python's own
        fill_dict(d, *o.state, true);
        state = std::move(d);
      } else {
        state = dec(o.state);
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
    if (!o.listitems.empty()) {
      nb::list items;
      for (auto* x : o.listitems) items.append(dec(x));
      if (nb::hasattr(obj, "extend")) obj.attr("extend")(items);
      else
        for (nb::handle e : items) obj.attr("append")(e);
    }
    for (const auto& [k, v] : o.dictitems) {
      nb::object key2 = dec(k);
      nb::object val = dec(v);
      if (PyObject_SetItem(obj.ptr(), key2.ptr(), val.ptr()) != 0) throw nb::python_error();
    }
    const checks& c = checks_for(obj);
    if (c.object) nb::handle(c.object)(obj);
    return obj;
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

  const object_graph& g_;
  nb::dict resolved_;
  nb::object ctx_, dtype_str_fn_, special_, object_array_fn_, strings_fn_, bytes_fn_, rules_call_, rules_new_,
      object_check_fn_, state_check_fn_, frombuffer_, empty_, aligned_copy_, np_dtype_, object_setstate_;
  bool copy_file_;
  std::unordered_map<const po::node*, nb::object> memo_;
  std::unordered_map<std::string, nb::object> key_cache_;
  std::unordered_map<const po::node*, nb::object> key_node_cache_;
  std::unordered_map<const std::byte*, nb::object> regions_;
  std::unordered_map<std::string, type_info> type_cache_;
  std::unordered_map<std::string, nb::object> dtype_str_cache_;
  std::unordered_map<const po::dtype_spec*, nb::object> dtype_spec_cache_;
  nb::object s_setstate_ = nb::steal(PyUnicode_InternFromString("__setstate__"));
  nb::object s_new_ = nb::steal(PyUnicode_InternFromString("__new__"));
  nb::object s_reshape_ = nb::steal(PyUnicode_InternFromString("reshape"));
  std::unordered_map<PyTypeObject*, bool> setstate_cache_;
  std::unordered_map<PyTypeObject*, checks> checks_cache_;
  std::vector<nb::object> types_held_;
};

nb::object object_graph::build(nb::dict resolved, nb::object ctx, bool copy_file_arrays) {
  builder b(*this, std::move(resolved), std::move(ctx), copy_file_arrays);
  return b.dec(g_->root);
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
  nb::class_<object_graph>(m, "ObjectGraph",
                           "The inert object graph of a vitrify.dump file, decoded and checked by the C++ object\n"
                           "decoder (vitrify::pyobj::decode_objects, docs/OBJECTS.md); build() makes the Python objects.")
      .def(nb::init<const File&, std::optional<std::uint64_t>>(), "file"_a, "extra_bytes"_a = nb::none(),
           "Decode the object graph of `file` under the decoder's limits; `extra_bytes` raises the\n"
           "byte budget's fixed allowance (decode_limits::extra_bytes).")
      .def("names", &object_graph::names, "special"_a, "bit_generators"_a,
           "Every type and function name build() would resolve, sorted.")
      .def("uses", &object_graph::uses, "special"_a,
           "(name, use) for every object node: use is 'global', 'new', 'new_args' or 'call'.")
      .def_prop_ro("node_count", [](const object_graph& g) { return g.g_->size(); })
      .def("build", &object_graph::build, "resolved"_a, "ctx"_a, "copy_file_arrays"_a,
           "Build the Python objects (see vitrify.model._BuildContext).");
  m.def("check_tree_nodes", &check_tree_nodes, "nodes"_a, "off_left"_a, "off_right"_a, "off_feature"_a, "n_features"_a,
        "Check a built sklearn Tree's node array (vitrify._validators); returns its depth.");
  m.def("check_predictor_nodes", &check_predictor_nodes, "nodes"_a, "offsets"_a, "n_bitsets"_a, "n_features"_a,
        "categorical"_a.none(), "Check a HistGradientBoosting TreePredictor's node array (vitrify._validators).");
}

}  // namespace vitrify_py
