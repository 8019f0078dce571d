// How calls become inert nodes: GLOBAL/REDUCE/NEWOBJ/INST/OBJ calls to known constructors
// (copyreg, set/complex/slice/bytes, numpy arrays, dtypes, scalars and random states, the torch
// rebuild names) are replaced by the node they would produce; any other call becomes an object
// node recording (callee, args) in read_result::calls. BUILD fills the state of what the calls made
// (numpy array, dtype and masked-array states included).
#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/checked.hpp"
#include "legacy/pickle_internal.hpp"

namespace vitrify::legacy::detail::pickle {

namespace {

// count * itemsize == size without wrapping: a shape of 2^62 items of 8 bytes is not 0 bytes.
bool sizes_match(std::uint64_t size, std::uint64_t count, std::uint64_t itemsize) {
  auto n = vitrify::detail::byte_count(count, itemsize);
  return n.ok() && *n == size;
}

// UTF-8 text whose code points are all below 256 -> those bytes (Python's str.encode('latin1')).
bool utf8_to_latin1(std::string_view s, std::string& out) {
  out.clear();
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      std::uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      if (cp > 0xFF) return false;
      out += static_cast<char>(cp);
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

std::string strip_core(std::string_view fixed) {
  // numpy 2 moved numpy.core to numpy._core; both spellings name the same functions.
  if (fixed.rfind("numpy.core.", 0) == 0) return "numpy._core." + std::string(fixed.substr(11));
  return std::string(fixed);
}

}  // namespace

void machine::record_call(node_ptr callee, node_ptr args, const char* opcode, bool handled, std::string extra_args) {
  call c;
  c.callee = callee_of(callee);
  if (args && args->k == K::tuple) {  // rendered as an argument list: f(a, b)
    c.args = "(";
    for (std::size_t i = 0; i < args->items.size() && c.args.size() < 200; ++i)
      c.args += (i ? ", " : "") + render(args->items[i], 120);
    c.args += ")";
  } else {
    c.args = args ? render(args) : extra_args;
  }
  c.opcode = opcode;
  std::string f = fixed_of(callee);
  c.handled = handled || (!f.empty() && classify_call(f) == name_class::safe);
  st_.out.calls.push_back(std::move(c));
}

node_ptr machine::make_object(const std::string& type, bool newobj, std::vector<node_ptr> args) {
  node_ptr n = mk(K::object);
  n->obj = std::make_shared<pyobj::object>();
  n->obj->type = type;
  n->obj->newobj = newobj;
  n->obj->args = std::move(args);
  return n;
}

std::string machine::type_of_class(node_ptr cls) {
  const global_info* g = gl(cls);
  if (g) return canon(g->fixed);
  return "?";
}

node_ptr machine::generic_call(node_ptr f, node_ptr args, const char* opname) {
  bool ok;
  auto a = seq_items(args, ok);
  if (!charge(a.size())) return nullptr;
  if (!ok) {
    problem(std::string(opname) + " arguments are not a tuple");
    a = {args};
  }
  record_call(f, args, opname, false);
  node_ptr o = make_object(gl(f) ? type_of_class(f) : "?", false, std::move(a));
  return o;
}

node_ptr machine::reduce(node_ptr f, node_ptr args, const char* opname) {
  std::string fixed = strip_core(fixed_of(f));
  if (!fixed.empty()) {
    bool matched = false;
    node_ptr r = known_call(fixed, f, args, matched);
    if (r) {
      record_call(f, args, opname, true);
      return r;
    }
    if (!fatal_.empty()) return nullptr;
    if (matched) problem("unexpected arguments for " + fixed + ": " + render(args));
  } else {
    problem(std::string(opname) + " calls a value that is not a named global: " + render(f, 80));
  }
  return generic_call(f, args, opname);
}

// Known callables -> inert nodes. Returns null (and sets `matched` when the name was known
// but the arguments were not what the handler expects).
node_ptr machine::known_call(const std::string& fixed, node_ptr f, node_ptr args, bool& matched) {
  bool ok;
  auto a = seq_items(args, ok);
  if (!ok) return nullptr;
  if (!charge(a.size())) return nullptr;
  auto arg = [&](std::size_t i) -> node_ptr { return i < a.size() ? a[i] : nullptr; };
  if (fixed == "numpy._core.multiarray._reconstruct") {
    matched = true;
    std::string cls = fixed_of(arg(0));
    if (a.size() != 3 || (cls != "numpy.ndarray" && cls != "numpy.matrix")) return nullptr;
    node_ptr n = mk(K::array);
    n->arr = std::make_shared<pyobj::ndarray>();
    n->arr->dtype = "|i1";
    n->arr->itemsize = 1;
    n->arr->shape = {0};
    pending_arrays_.insert(n);
    return n;
  }
  if (fixed == "numpy.ma.core._mareconstruct") {
    matched = true;
    std::string sub = fixed_of(a[0]);
    if (a.size() != 4 || (sub != "numpy.ma.core.MaskedArray" && sub != "numpy.ma.MaskedArray") || fixed_of(a[1]) != "numpy.ndarray") return nullptr;
    node_ptr o = make_object("numpy.ma.MaskedArray", false, {});
    masked_.insert(o);
    return o;
  }
  if (fixed == "numpy._core.numeric._frombuffer") {
    matched = true;
    return frombuffer(a);
  }
  if (fixed == "numpy.dtype") {
    matched = true;
    if (a.empty() || !is_str(a[0])) return nullptr;
    std::string ts = a[0]->text;
    // The reduce gives the type without byte order; BUILD's state says the order.
    auto dt = parse_typestr(ts == "O8" || ts == "O4" ? "|O" : "<" + ts);
    if (!dt) {
      problem("unsupported numpy dtype '" + ts + "'");
      dt = dtype_info{std::string(1, '?'), 0, 0, false, {}, false};
    }
    node_ptr n = mk(K::dtype);
    set_dtype(n, *dt);
    dtype_base_[n] = ts;
    return n;
  }
  if (fixed == "numpy._core.multiarray.scalar") {
    matched = true;
    if (a.size() != 2 || !a[0] || a[0]->k != K::dtype) return nullptr;
    auto it = dtypes_.find(a[0]);
    if (it == dtypes_.end()) return nullptr;
    const dtype_info& dt = it->second;
    if (dt.has_object) return a[1];  // object scalars pickle the object itself
    std::span<const std::byte> b;
    if (!bytes_of(a[1], b)) {
      std::string tmp;
      if (!is_str(a[1]) || !utf8_to_latin1(a[1]->text, tmp)) return nullptr;
      node_ptr bn = mk(K::bytes);
      bn->text = std::move(tmp);
      bytes_of(bn, b);
    }
    if (b.size() != dt.itemsize) return nullptr;
    node_ptr n = mk(K::scalar);
    n->arr = std::make_shared<pyobj::ndarray>();
    auto r = fill_array(*n->arr, dt, {}, false, b, keep_of(a[1]), true);
    if (!r) {
      problem(r.err().message);
      return nullptr;
    }
    if (lazy_.count(a[1])) consumed_.insert(a[1]);
    return n;
  }
  if (fixed == "copyreg._reconstructor") {
    matched = true;
    if (a.size() != 3 || !gl(a[0])) return nullptr;
    std::string basecls = fixed_of(a[1]);
    if (basecls == "builtins.object" && a[2]->k == K::none) return make_object(type_of_class(a[0]), true, {});
    return nullptr;
  }
  if (fixed == "copyreg.__newobj__") {
    matched = true;
    if (a.empty() || !gl(a[0])) return nullptr;
    return make_object(type_of_class(a[0]), true, std::vector<node_ptr>(a.begin() + 1, a.end()));
  }
  if (fixed == "copyreg.__newobj_ex__") {
    matched = true;
    if (a.size() != 3 || !gl(a[0]) || !a[1] || a[1]->k != K::tuple || !a[2] || a[2]->k != K::dict) return nullptr;
    node_ptr o = make_object(type_of_class(a[0]), true, a[1]->items);
    o->obj->kwargs = a[2];
    return o;
  }
  if (fixed == "builtins.set" || fixed == "builtins.frozenset") {
    matched = true;
    node_ptr n = mk(fixed == "builtins.set" ? K::set : K::frozenset);
    if (a.empty()) return n;
    if (a.size() != 1 || !a[0] || (a[0]->k != K::list && a[0]->k != K::tuple && a[0]->k != K::set && a[0]->k != K::frozenset))
      return nullptr;
    if (!charge(a[0]->items.size())) return nullptr;
    n->items = a[0]->items;
    return n;
  }
  if (fixed == "builtins.complex") {
    matched = true;
    auto num = [&](node_ptr x, double& d) {
      if (!x) return false;
      if (x->k == K::floating) d = x->d;
      else if (x->k == K::integer) d = static_cast<double>(x->i);
      else if (x->k == K::boolean) d = x->b;
      else return false;
      return true;
    };
    double re = 0, im = 0;
    if (a.empty() || a.size() > 2 || !num(a[0], re) || (a.size() == 2 && !num(a[1], im))) return nullptr;
    node_ptr n = mk(K::complex);
    n->d = re;
    n->imag = im;
    return n;
  }
  if (fixed == "builtins.slice" || fixed == "builtins.range") {
    matched = true;
    if (a.empty() || a.size() > 3) return nullptr;
    for (auto x : a)
      if (!x || (x->k != K::integer && x->k != K::none && x->k != K::big_integer)) return nullptr;
    // vitrify.dump's convention: state = [start, stop, step]
    node_ptr st = mk(K::list);
    node_ptr none = mk(K::none);
    if (fixed == "builtins.slice") {
      if (a.size() == 1) st->items = {none, a[0], none};
      else st->items = {a[0], a[1], a.size() == 3 ? a[2] : none};
    } else {
      if (a.size() == 1) st->items = {mk_int(0), a[0], mk_int(1)};
      else st->items = {a[0], a[1], a.size() == 3 ? a[2] : mk_int(1)};
    }
    node_ptr o = make_object(fixed, false, {});
    o->obj->state = st;
    return o;
  }
  if (fixed == "builtins.bytearray" || fixed == "builtins.bytes") {
    matched = true;
    node_ptr b = mk(K::bytes);
    if (a.size() == 1) {
      std::span<const std::byte> v;
      if (bytes_of(a[0], v)) b->text.assign(reinterpret_cast<const char*>(v.data()), v.size());
      else if (a[0] && a[0]->k == K::list) {
        for (auto x : a[0]->items) {
          if (!x || x->k != K::integer || x->i < 0 || x->i > 255) return nullptr;
          b->text += static_cast<char>(x->i);
        }
      } else return nullptr;
    } else if (a.size() == 2 && is_str(a[0]) && is_str(a[1]) && (a[1]->text == "latin-1" || a[1]->text == "latin1")) {
      if (!utf8_to_latin1(a[0]->text, b->text)) return nullptr;
    } else if (!a.empty()) {
      return nullptr;
    }
    if (fixed == "builtins.bytes") return b;
    node_ptr o = make_object("builtins.bytearray", false, {});
    o->obj->state = b;
    return o;
  }
  if (fixed == "_codecs.encode") {
    matched = true;
    if (a.size() != 2 || !is_str(a[0]) || !is_str(a[1])) return nullptr;
    const std::string& enc = a[1]->text;
    node_ptr b = mk(K::bytes);
    if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1") {
      if (!utf8_to_latin1(a[0]->text, b->text)) return nullptr;
    } else if (enc == "utf-8" || enc == "utf8" || enc == "ascii") {
      b->text = a[0]->text;
    } else {
      return nullptr;
    }
    return b;
  }
  if (fixed == "numpy.random._pickle.__randomstate_ctor") {
    matched = true;
    node_ptr o = make_object("numpy.random.RandomState", false, {});
    random_states_.insert(o);
    return o;
  }
  if (fixed == "numpy.random._pickle.__generator_ctor") {
    matched = true;
    node_ptr o = make_object("numpy.random.Generator", false, {});
    node_ptr st = mk(K::dict);
    std::string bg = "numpy.random.PCG64";
    node_ptr inner = mk(K::none);
    if (!a.empty() && is_str(a[0])) {
      bg = "numpy.random." + a[0]->text;
    } else if (!a.empty() && a[0] && a[0]->k == K::object) {
      bg = a[0]->obj->type;
      node_ptr s = a[0]->obj->state;
      if (s && s->k == K::tuple && !s->items.empty()) s = s->items[0];
      if (s) inner = s;
    }
    st->entries.emplace_back(mk_str("bit_generator"), mk_str(bg));
    st->entries.emplace_back(mk_str("state"), inner);
    o->obj->state = st;
    generators_.insert(o);
    return o;
  }
  if (fixed == "numpy.random._pickle.__bit_generator_ctor") {
    matched = true;
    std::string t = "numpy.random.MT19937";
    if (!a.empty() && is_str(a[0])) t = "numpy.random." + a[0]->text;
    else if (!a.empty() && gl(a[0])) t = type_of_class(a[0]);
    else if (!a.empty()) return nullptr;
    return make_object(t, false, {});
  }
  if (fixed == "torch._utils._rebuild_tensor_v2" || fixed == "torch._utils._rebuild_tensor" ||
      fixed == "torch._utils._rebuild_tensor_v3") {
    matched = true;
    return torch_tensor(fixed, a);
  }
  if (fixed == "torch._utils._rebuild_parameter" || fixed == "torch._utils._rebuild_parameter_with_state") {
    matched = true;
    if (a.empty() || !a[0] || a[0]->k != K::array) return nullptr;
    return a[0];
  }
  (void)f;
  return nullptr;
}

void machine::set_dtype(node_ptr n, const dtype_info& dt) {
  n->text = dt.str;
  n->arr = std::make_shared<pyobj::ndarray>();
  n->arr->dtype = dt.str;
  n->arr->itemsize = dt.has_object ? 0 : dt.itemsize;
  n->arr->fields = dt.fields;
  dtypes_[n] = dt;
}

bool machine::shape_of(node_ptr s, std::vector<std::int64_t>& shape) {
  if (!s) return false;
  if (s->k == K::integer) {
    if (s->i < 0) return false;
    shape = {s->i};
    return true;
  }
  if (s->k != K::tuple && s->k != K::list) return false;
  if (s->items.size() > 64) return false;
  shape.clear();
  std::uint64_t n = 1;
  for (auto x : s->items) {
    std::int64_t v;
    if (!as_int(x, v) || v < 0) return false;
    shape.push_back(v);
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(v), &n) || n > (1ull << 62)) return false;
  }
  return true;
}

node_ptr machine::frombuffer(const std::vector<node_ptr>& a) {
  if (a.size() < 4 || a.size() > 5 || !a[1] || a[1]->k != K::dtype || !is_str(a[3])) return nullptr;
  auto it = dtypes_.find(a[1]);
  if (it == dtypes_.end() || it->second.has_object) return nullptr;
  const dtype_info& dt = it->second;
  std::vector<std::int64_t> shape;
  if (!shape_of(a[2], shape)) return nullptr;
  std::span<const std::byte> b;
  bool oob = oob_.count(a[0]) > 0;
  if (!oob && !bytes_of(a[0], b)) return nullptr;
  std::uint64_t count = 1;
  for (auto x : shape) count *= static_cast<std::uint64_t>(x);
  node_ptr n = mk(K::array);
  n->arr = std::make_shared<pyobj::ndarray>();
  const std::string& order = a[3]->text;
  if (oob) {  // data out of band: keep dtype and shape only
    n->arr->dtype = dt.str;
    n->arr->itemsize = dt.itemsize;
    n->arr->shape = shape;
    return n;
  }
  if (dt.itemsize == 0 || !sizes_match(b.size(), count, dt.itemsize)) {
    problem("_frombuffer: " + std::to_string(b.size()) + " bytes for " + std::to_string(count) + " items of " + dt.str);
    return nullptr;
  }
  bool fortran = order == "F";
  std::vector<std::int64_t> perm;
  if (order == "K" && a.size() == 5 && a[4] && a[4]->k != K::none) {
    // numpy >= 2.3: the buffer holds the C-ordered data of shape `shape`, transposed by axis_order
    bool okp;
    auto ax = seq_items(a[4], okp);
    if (!okp || ax.size() != shape.size()) return nullptr;
    std::vector<bool> seen(shape.size(), false);
    for (auto x : ax) {
      std::int64_t v;
      if (!as_int(x, v) || v < 0 || static_cast<std::size_t>(v) >= shape.size() || seen[static_cast<std::size_t>(v)]) return nullptr;
      seen[static_cast<std::size_t>(v)] = true;
      perm.push_back(v);
    }
  } else if (order != "C" && order != "F" && order != "K" && order != "A") {
    return nullptr;
  }
  std::shared_ptr<const void> owner = keep_of(a[0]);
  if (!perm.empty()) {
    bool identity = true, reversed = true;
    for (std::size_t i = 0; i < perm.size(); ++i) {
      identity = identity && perm[i] == static_cast<std::int64_t>(i);
      reversed = reversed && perm[i] == static_cast<std::int64_t>(perm.size() - 1 - i);
    }
    std::vector<std::int64_t> logical(shape.size());
    for (std::size_t i = 0; i < perm.size(); ++i) logical[i] = shape[static_cast<std::size_t>(perm[i])];
    if (identity) {
      // plain C order
    } else if (reversed) {
      fortran = true;
      shape = logical;
    } else {
      // A general permutation: copy into C order.
      std::vector<std::int64_t> cstride(shape.size());
      std::int64_t s = 1;
      for (std::size_t i = shape.size(); i-- > 0;) {
        cstride[i] = s;
        s *= std::max<std::int64_t>(shape[i], 1);
      }
      std::vector<std::int64_t> strides(perm.size());
      for (std::size_t i = 0; i < perm.size(); ++i) strides[i] = cstride[static_cast<std::size_t>(perm[i])];
      if (st_.opt.array_data) {
        auto buf = gather(b, dt.itemsize, logical, strides, 0);
        b = std::span<const std::byte>(buf->data(), buf->size());
        owner = buf;
      }
      shape = logical;
    }
  }
  auto r = fill_array(*n->arr, dt, shape, fortran && shape.size() > 1, b, owner, st_.opt.array_data);
  if (!r) {
    problem(r.err().message);
    return nullptr;
  }
  if (lazy_.count(a[0])) consumed_.insert(a[0]);
  return n;
}

// Copy a strided view (strides in elements) into a fresh C-ordered buffer. The caller checked
// that every index stays inside `src`.
std::shared_ptr<std::vector<std::byte>> machine::gather(std::span<const std::byte> src, std::uint64_t itemsize,
                                                        const std::vector<std::int64_t>& shape,
                                                        const std::vector<std::int64_t>& strides, std::uint64_t offset) {
  std::uint64_t count = 1;
  for (auto x : shape) count *= static_cast<std::uint64_t>(x);
  auto out = std::make_shared<std::vector<std::byte>>(count * itemsize);
  if (count == 0) return out;
  std::vector<std::int64_t> idx(shape.size(), 0);
  for (std::uint64_t k = 0; k < count; ++k) {
    std::uint64_t e = offset;
    for (std::size_t d = 0; d < shape.size(); ++d) e += static_cast<std::uint64_t>(idx[d] * strides[d]);
    std::memcpy(out->data() + k * itemsize, src.data() + e * itemsize, itemsize);
    for (std::size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

bool machine::instantiate(node_ptr cls, std::vector<node_ptr> args, const char* opname) {
  // INST/OBJ: cls(*args), or cls.__new__(cls) when there are no arguments (pickle's
  // _instantiate for classes without __getinitargs__).
  node_ptr t = mk(K::tuple);
  t->items = args;
  std::string fixed = strip_core(fixed_of(cls));
  if (!fixed.empty()) {
    bool matched = false;
    node_ptr r = known_call(fixed, cls, t, matched);
    if (r) {
      record_call(cls, t, opname, true);
      return push(r);
    }
    if (!fatal_.empty()) return false;
  }
  record_call(cls, t, opname, false);
  node_ptr o = make_object(type_of_class(cls), args.empty(), std::move(args));
  return push(o);
}

node_ptr machine::newobj(node_ptr cls, std::vector<node_ptr> args, node_ptr kw, const char* opname, node_ptr args_node) {
  record_call(cls, args_node, opname, false);
  if (!gl(cls)) problem(std::string(opname) + " on a value that is not a named class: " + render(cls, 80));
  node_ptr o = make_object(type_of_class(cls), true, std::move(args));
  if (kw) o->obj->kwargs = kw;
  if (gl(cls)) newobj_raw_[o] = globals_[cls].fixed;
  return o;
}

// ---- BUILD ----
bool machine::build(node_ptr target, node_ptr state) {
  if (pending_arrays_.count(target)) {
    pending_arrays_.erase(target);
    if (!array_setstate(target, state)) {
      if (!fatal_.empty()) return false;
      problem("invalid numpy array state: " + render(state));
    }
    return true;
  }
  if (target->k == K::dtype && dtypes_.count(target) && !built_dtypes_.count(target)) {
    built_dtypes_.insert(target);
    if (!dtype_setstate(target, state)) problem("invalid numpy dtype state: " + render(state));
    return true;
  }
  if (target->k == K::object && target->obj) {
    auto raw = newobj_raw_.find(target);
    if (raw != newobj_raw_.end() && so_.joblib) {
      if (raw->second == "joblib.numpy_pickle.NumpyArrayWrapper") return joblib_array(target, state);
      if (raw->second == "joblib.numpy_pickle.NDArrayWrapper" || raw->second == "joblib.numpy_pickle.ZNDArrayWrapper" ||
          raw->second == "joblib.numpy_pickle_compat.NDArrayWrapper" || raw->second == "joblib.numpy_pickle_compat.ZNDArrayWrapper")
        return joblib_side_array(target, state, raw->second);
    }
    if (masked_.count(target)) {
      masked_.erase(target);
      if (!masked_setstate(target, state)) problem("invalid numpy masked array state: " + render(state));
      return true;
    }
    if (random_states_.count(target)) {
      target->obj->state = legacy_random_state(state);
      return true;
    }
    if (generators_.count(target)) {
      if (state->k != K::none && target->obj->state) {  // numpy 1.x: the bit generator's state
        for (auto& [k, v] : target->obj->state->entries)
          if (k->text == "state") v = state;
      }
      return true;
    }
    if (target->obj->state) {
      problem("second BUILD on an object of " + target->obj->type);
      // keep the first state: CPython would update it; record the second as another call
      record_call(target, state, "BUILD", false);
    } else {
      target->obj->state = state;
    }
    return true;
  }
  // BUILD on a global, a container, an array...: sets attributes or calls __setstate__ on
  // something that is not an instance being built.
  problem("BUILD on a " + kind_text(target) + " (would set its attributes)");
  record_call(target, state, "BUILD", false);
  return true;
}

// MaskedArray.__reduce__ state: (1, shape, dtype, is_fortran, data bytes, mask bytes,
// fill_value as a 0-d array). vitrify.dump records {data, mask, fill_value (a scalar)}.
bool machine::masked_setstate(node_ptr target, node_ptr state) {
  if (!state || state->k != K::tuple || state->items.size() != 7) return false;
  auto& it = state->items;
  node_ptr data = mk(K::array);
  data->arr = std::make_shared<pyobj::ndarray>();
  node_ptr t = mk(K::tuple);
  t->items = {it[1], it[2], it[3], it[4]};
  if (!array_setstate(data, t) || !fatal_.empty() || data->arr->kind() == 'O') return false;
  std::span<const std::byte> mb;
  if (!bytes_of(it[5], mb)) return false;
  auto bdt = parse_typestr("|b1");
  node_ptr mask = mk(K::array);
  mask->arr = std::make_shared<pyobj::ndarray>();
  auto r = fill_array(*mask->arr, *bdt, data->arr->shape, data->arr->fortran, mb, keep_of(it[5]), st_.opt.array_data);
  if (!r) return false;
  if (lazy_.count(it[5])) consumed_.insert(it[5]);
  node_ptr fill = it[6];
  if (fill && fill->k == K::array && fill->arr && fill->arr->shape.empty() && fill->arr->kind() != 'O') {
    node_ptr sc = mk(K::scalar);
    sc->arr = fill->arr;
    fill = sc;
  }
  node_ptr d = mk(K::dict);
  d->entries.emplace_back(mk_str("data"), data);
  d->entries.emplace_back(mk_str("mask"), mask);
  d->entries.emplace_back(mk_str("fill_value"), fill);
  target->obj->state = d;
  return true;
}

node_ptr machine::legacy_random_state(node_ptr state) {
  // RandomState.__getstate__ is get_state(legacy=False); vitrify.dump records the legacy
  // tuple ('MT19937', key, pos, has_gauss, gauss).
  if (!state || state->k != K::dict) return state;
  const node* name = state->get("bit_generator");
  const node* inner = state->get("state");
  const node* hg = state->get("has_gauss");
  const node* ga = state->get("gauss");
  if (!name || !inner || !hg || !ga || inner->k != K::dict) return state;
  const node* key = inner->get("key");
  const node* pos = inner->get("pos");
  if (!key || !pos) return state;
  node_ptr t = mk(K::tuple);
  t->items = {const_cast<node_ptr>(name), const_cast<node_ptr>(key), const_cast<node_ptr>(pos), const_cast<node_ptr>(hg),
              const_cast<node_ptr>(ga)};
  return t;
}

bool machine::dtype_setstate(node_ptr n, node_ptr state) {
  if (!state || state->k != K::tuple || state->items.size() < 8) return false;
  auto& it = state->items;
  std::int64_t version;
  if (!as_int(it[0], version) || version < 0 || version > 4) return false;
  if (!is_str(it[1])) return false;
  std::string endian = it[1]->text;
  dtype_info dt = dtypes_[n];
  std::string base = dtype_base_[n];
  if (it[2] && it[2]->k != K::none) {
    problem("sub-array dtypes are not supported");
    return true;
  }
  bool structured = it[3] && it[3]->k == K::tuple;
  if (structured) {
    if (!it[4] || it[4]->k != K::dict) return false;
    std::int64_t elsize;
    if (!as_int(it[5], elsize) || elsize <= 0 || elsize > (1 << 24)) return false;
    dtype_info s;
    s.kind = 'V';
    s.itemsize = static_cast<std::uint64_t>(elsize);
    s.str = "V" + std::to_string(elsize);
    for (auto nm : it[3]->items) {
      if (!is_str(nm)) return false;
      const node* f = it[4]->get(nm->text);
      if (!f || f->k != K::tuple || f->items.size() < 2 || !f->items[0] || f->items[0]->k != K::dtype) return false;
      auto fd = dtypes_.find(f->items[0]);
      std::int64_t off;
      if (fd == dtypes_.end() || !as_int(f->items[1], off) || off < 0) return false;
      if (fd->second.has_object) {
        s.has_object = true;
        continue;
      }
      if (fd->second.kind == 'V' || fd->second.kind == 'U' || fd->second.kind == 'S' || fd->second.big_endian ||
          static_cast<std::uint64_t>(off) + fd->second.itemsize > s.itemsize) {
        problem("unsupported structured dtype field '" + nm->text + "'");
        return true;
      }
      s.fields.push_back(pyobj::field{nm->text, fd->second.str, static_cast<std::uint64_t>(off), {}});
    }
    set_dtype(n, s);
    return true;
  }
  std::string unit;
  if (state->items.size() >= 9 && it[8] && it[8]->k == K::tuple && it[8]->items.size() >= 2) {
    // datetime metadata: (unit, num, den, events)
    std::span<const std::byte> ub;
    std::string u;
    if (bytes_of(it[8]->items[0], ub)) u.assign(reinterpret_cast<const char*>(ub.data()), ub.size());
    else if (is_str(it[8]->items[0])) u = it[8]->items[0]->text;
    std::int64_t num = 1;
    as_int(it[8]->items[1], num);
    if (!u.empty() && u.size() < 8 && std::all_of(u.begin(), u.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }))
      unit = "[" + (num > 1 ? std::to_string(num) : std::string()) + u + "]";
  }
  char order = endian.empty() ? '=' : endian[0];
  if (order == '=') order = '<';
  if (base == "O8" || base == "O4" || base == "O") return true;
  if (base.find('[') == std::string::npos) base += unit;
  if (order != '<' && order != '>' && order != '|') return false;
  auto d2 = parse_typestr(std::string(1, order) + base);
  if (!d2) {
    problem("unsupported numpy dtype '" + std::string(1, order) + base + "'");
    return true;
  }
  set_dtype(n, *d2);
  return true;
}

bool machine::array_setstate(node_ptr n, node_ptr state) {
  if (!state || state->k != K::tuple) return false;
  auto it = state->items;
  if (it.size() == 5) it.erase(it.begin());
  if (it.size() != 4) return false;
  std::vector<std::int64_t> shape;
  if (!shape_of(it[0], shape)) return false;
  if (!it[1] || it[1]->k != K::dtype) return false;
  auto dti = dtypes_.find(it[1]);
  if (dti == dtypes_.end()) return false;
  const dtype_info& dt = dti->second;
  bool fortran = truthy(it[2]);
  std::uint64_t count = 1;
  for (auto x : shape) count *= static_cast<std::uint64_t>(x);
  pyobj::ndarray& a = *n->arr;
  if (dt.has_object) {
    if (dt.kind == 'V') {
      problem("structured arrays with object fields are not supported");
      return true;
    }
    if (!it[3] || it[3]->k != K::list || it[3]->items.size() != count) return false;
    if (!charge(count)) return false;
    object_array(a, shape, it[3]->items);
    return true;
  }
  std::span<const std::byte> b;
  std::shared_ptr<const void> owner;
  if (bytes_of(it[3], b)) {
    owner = keep_of(it[3]);
    if (lazy_.count(it[3])) consumed_.insert(it[3]);
  } else if (is_str(it[3])) {  // Python 2 str data decoded as Latin-1
    auto buf = std::make_shared<std::string>();
    if (!utf8_to_latin1(it[3]->text, *buf)) return false;
    b = std::as_bytes(std::span<const char>(buf->data(), buf->size()));
    owner = buf;
  } else {
    return false;
  }
  if (dt.itemsize == 0 || !sizes_match(b.size(), count, dt.itemsize)) {
    problem("array data of " + std::to_string(b.size()) + " bytes for shape " + render(it[0]) + " of " + dt.str);
    return true;
  }
  auto r = fill_array(a, dt, shape, fortran && shape.size() > 1, b, owner, st_.opt.array_data);
  if (!r) problem(r.err().message);
  return true;
}

void machine::object_array(pyobj::ndarray& a, std::vector<std::int64_t> shape, const std::vector<node_ptr>& items) {
  a.dtype = "O";
  a.itemsize = 0;
  a.shape = std::move(shape);
  a.fortran = false;
  bool all_str = !items.empty();
  for (auto x : items)
    if (!is_str(x)) all_str = false;
  if (all_str) {
    for (auto x : items) a.strings.push_back(x->text);
    a.strings_are_objects = true;
  } else {
    a.items = items;
  }
}

}  // namespace vitrify::legacy::detail::pickle
