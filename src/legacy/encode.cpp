// `vitrify convert`'s front-end of the object encoder: walks an inert graph (pyobj, from the
// non-executing pickle reader or decode_objects) onto the one emitter of the object encoding
// (src/objects/encode.hpp), which vitrify.dump's walker of live Python objects drives too. So a
// converted pickle is written exactly as vitrify.dump writes the same object: Python's decoder
// (`vitrify.load`) and the C++ one (pyobj::decode_objects) read it like a dump.
//
// What each pyobj node is decides how it is written; the layout (pool, keysets, dtype table,
// inline arrays, $shared/$ref for nodes reachable twice) is the emitter's.
#include <algorithm>
#include <array>
#include <cstring>
#include <cmath>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "vitrify/convert.hpp"
#include "format/internal.hpp"
#include "objects/encode.hpp"
#include "core/value_json.hpp"

namespace vitrify::legacy {

namespace {

using pyobj::node;
using nk = node::kind;

error bad(std::string msg) { return fail(errc::bad_state, "convert: " + std::move(msg)); }

// Python's json module and simdjson both reject invalid UTF-8 (and encoded surrogates), which
// a pickle's str may carry (pickle writes them with 'surrogatepass').
bool valid_utf8(std::string_view s) { return vitrify::detail::valid_utf8(s.data(), s.size()); }

// Names the format accepts for $object types (src/core/value.cpp valid_type_name).
bool valid_type_name(std::string_view s) {
  if (s.empty() || s.size() > 512 || s.front() == '.' || s.back() == '.') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) return false;
  }
  return s.find("..") == std::string_view::npos;
}

// ---- dtypes ----

struct dt_desc {
  char kind = '?';
  std::uint64_t itemsize = 0;
  std::string str;                 // numpy .str of the little-endian dtype ("<f8", "|b1", "<M8[ns]")
  std::optional<vitrify::dtype> vdt;  // the array-table dtype, when there is one
};

// A pyobj dtype string (always little-endian for numeric data, see pyobj.hpp).
result<dt_desc> parse_dtype(std::string_view s) {
  dt_desc d;
  if (s == "O" || s == "|O") {
    d.kind = 'O';
    d.str = "|O";
    return d;
  }
  // ml_dtypes' types, by name (numpy has no type code for them).
  if (s == "bfloat16" || s == "float8_e4m3fn" || s == "float8_e5m2") {
    d.kind = 'f';
    d.itemsize = s == "bfloat16" ? 2 : 1;
    d.str = std::string(s);
    d.vdt = s == "bfloat16" ? dtype::bfloat16 : s == "float8_e4m3fn" ? dtype::float8_e4m3fn : dtype::float8_e5m2;
    return d;
  }
  std::size_t i = 0;
  char order = '|';
  if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) order = s[i++];
  if (i >= s.size()) return bad("unsupported dtype '" + std::string(s) + "'");
  char kind = s[i++];
  std::string_view rest = s.substr(i), unit;
  if (auto br = rest.find('['); br != std::string_view::npos) {
    unit = rest.substr(br);
    rest = rest.substr(0, br);
  }
  if (rest.empty() || rest.size() > 9 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad("unsupported dtype '" + std::string(s) + "'");
  std::uint64_t n = 0;
  for (char c : rest) n = n * 10 + static_cast<std::uint64_t>(c - '0');
  if (kind == '?') kind = 'b';
  d.kind = kind;
  switch (kind) {
    case 'b': if (n != 1) return bad("unsupported dtype '" + std::string(s) + "'"); d.vdt = dtype::bool_; break;
    case 'i': case 'u': {
      static constexpr dtype si[] = {dtype::int8, dtype::int16, dtype::int32, dtype::int64};
      static constexpr dtype ui[] = {dtype::uint8, dtype::uint16, dtype::uint32, dtype::uint64};
      int k = n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : n == 8 ? 3 : -1;
      if (k < 0) return bad("unsupported dtype '" + std::string(s) + "'");
      d.vdt = kind == 'i' ? si[k] : ui[k];
      break;
    }
    case 'f':
      if (n == 2) d.vdt = dtype::float16;
      else if (n == 4) d.vdt = dtype::float32;
      else if (n == 8) d.vdt = dtype::float64;
      else return bad("unsupported dtype '" + std::string(s) + "'");
      break;
    case 'c':
      if (n == 8) d.vdt = dtype::complex64;
      else if (n == 16) d.vdt = dtype::complex128;
      else return bad("unsupported dtype '" + std::string(s) + "'");
      break;
    case 'M': case 'm': if (n != 8) return bad("unsupported dtype '" + std::string(s) + "'"); break;
    case 'U': case 'S': case 'V': break;
    default: return bad("unsupported dtype '" + std::string(s) + "'");
  }
  if (order == '>' && n > 1 && kind != 'U' && kind != 'S' && kind != 'V')
    return bad("big-endian array data in the graph (the reader must convert it): '" + std::string(s) + "'");
  d.itemsize = kind == 'U' ? n * 4 : n;
  if (kind == 'b') d.str = "|b1";
  else if (n == 1 || kind == 'S' || kind == 'V') d.str = "|" + std::string(1, kind) + std::string(rest);
  else d.str = "<" + std::string(1, kind) + std::string(rest) + std::string(unit);
  return d;
}

// numpy's dtype.name, for the schema's summaries.
std::string numpy_name(const dt_desc& d) {
  if (d.vdt) {
    if (*d.vdt == dtype::bool_) return "bool";
    return std::string(dtype_name(*d.vdt));
  }
  switch (d.kind) {
    case 'O': return "object";
    case 'U': return "str" + std::to_string(d.itemsize * 8);
    case 'S': return "bytes" + std::to_string(d.itemsize * 8);
    case 'V': return "void" + std::to_string(d.itemsize * 8);
    case 'M': return "datetime64" + d.str.substr(3);
    case 'm': return "timedelta64" + d.str.substr(3);
    default: return d.str;
  }
}

bool is_special(std::string_view t) {
  // Python's _SPECIAL_DECODERS that pyobj keeps as object nodes: their state is the raw value.
  return t == "numpy.random.RandomState" || t == "numpy.random.Generator" || t == "numpy.ma.MaskedArray" ||
         t == "builtins.slice" || t == "builtins.range" || t == "builtins.bytearray";
}

class walker {
 public:
  walker(objects::emitter& e, const encode_options& o) : e_(e), o_(o) {}

  // Bytes of bytes ('S') arrays, which the graph holds as strings: the emitter refers to them
  // until finish().
  std::deque<std::vector<std::byte>> owned;
  /// A state dict written as a keyset was met again: the walk must be redone with plain dicts,
  /// as vitrify.dump does.
  bool conflict = false;

  result<void> enc(const node* n, std::uint32_t depth) {
    if (!n) return bad("null node in the object graph");
    if (depth > o_.max_depth) return fail(errc::limit_exceeded, "convert: object graph nested deeper than " + std::to_string(o_.max_depth));
    switch (n->k) {
      case nk::none: e_.null(); return {};
      case nk::boolean: e_.boolean(n->b); return {};
      case nk::integer: e_.integer(n->i); return {};
      case nk::big_integer: e_.big_integer(n->text); return {};
      case nk::floating: e_.floating(n->d); return {};
      case nk::string:
        if (!valid_utf8(n->text)) return bad("a str in the object graph is not valid UTF-8");
        e_.string(n->text);
        return {};
      case nk::bytes: e_.bytes(std::as_bytes(std::span<const char>(n->text.data(), n->text.size()))); return {};
      default: break;
    }
    if (auto it = memo_.find(n); it != memo_.end()) {
      if (it->second == keyset_marker) {
        conflict = true;
        return bad("keyset conflict");
      }
      e_.ref(it->second);
      return {};
    }
    const auto s = e_.open_node();
    memo_.emplace(n, s);
    VITRIFY_TRY(inner(*n, depth));
    e_.close_node(s);
    return {};
  }

 private:
  static constexpr objects::emitter::slot keyset_marker = UINT32_MAX;

  result<void> items(const std::vector<pyobj::node_ptr>& xs, std::uint32_t depth) {
    e_.begin_list();
    for (const node* x : xs) VITRIFY_TRY(enc(x, depth + 1));
    e_.end_list();
    return {};
  }

  result<void> inner(const node& n, std::uint32_t depth) {
    switch (n.k) {
      case nk::list: return items(n.items, depth);
      case nk::tuple:
        e_.begin_tuple();
        for (const node* x : n.items) VITRIFY_TRY(enc(x, depth + 1));
        e_.end_tuple();
        return {};
      case nk::set:
      case nk::frozenset:
        e_.begin_object(n.k == nk::set ? "builtins.set" : "builtins.frozenset");
        VITRIFY_TRY(items(n.items, depth));
        e_.end_object();
        return {};
      case nk::complex:
        e_.begin_object("builtins.complex");
        e_.begin_list();
        e_.floating(n.d);
        e_.floating(n.imag);
        e_.end_list();
        e_.end_object();
        return {};
      case nk::dict: return enc_dict(n, depth);
      case nk::array:
        if (!n.arr) return bad("array node without data");
        e_.begin_object("numpy.ndarray");
        VITRIFY_TRY(enc_array(*n.arr, depth));
        e_.end_object();
        return {};
      case nk::scalar: {
        if (!n.arr) return bad("numpy scalar without data");
        auto d = parse_dtype(n.arr->dtype);
        if (!d) return std::move(d).err();
        if (d->kind == 'O' || d->kind == 'U' || d->kind == 'S')
          return bad("numpy scalars of dtype " + d->str + " are not supported");
        if (n.arr->data.size() != d->itemsize)
          return bad("numpy scalar of dtype " + d->str + " has " + std::to_string(n.arr->data.size()) + " bytes");
        std::string desc;
        if (d->kind == 'V') VITRIFY_TRY(structured_desc(*n.arr, *d, desc));
        e_.begin_object("numpy.generic");
        e_.begin_dict();
        e_.key("t");
        dtype_ref(*d, desc);
        e_.key("b");
        e_.base64_text(n.arr->data);
        e_.end_dict();
        e_.end_object();
        return {};
      }
      case nk::dtype: {
        std::string desc;
        if (!n.arr) {
          auto d = parse_dtype(n.text);
          if (!d) return std::move(d).err();
          desc = json_string(d->str);
        } else {
          auto d = parse_dtype(n.arr->dtype);
          if (!d) return std::move(d).err();
          if (d->kind != 'V' || n.arr->fields.empty()) desc = json_string(d->str);
          else VITRIFY_TRY(structured_desc(*n.arr, *d, desc));
        }
        e_.begin_object("numpy.dtype");
        e_.raw_json(desc);
        e_.end_object();
        return {};
      }
      case nk::global:
        if (!valid_type_name(n.text)) return bad("invalid global name '" + n.text + "'");
        e_.global(n.text);
        return {};
      case nk::object: return enc_object(n, depth);
      default: return bad("unknown node kind");
    }
  }

  static std::string json_string(std::string_view s) {
    std::string out;
    detail::append_json_string(out, s);
    return out;
  }

  result<void> enc_dict(const node& n, std::uint32_t depth) {
    // A pickle may set one key twice; Python keeps the first position and the last value.
    std::vector<std::pair<const node*, const node*>> entries;
    entries.reserve(n.entries.size());
    std::unordered_map<std::string, std::size_t> str_pos;
    std::unordered_map<std::int64_t, std::size_t> int_pos;
    bool plain = true;
    for (const auto& [k, v] : n.entries) {
      if (!k) return bad("null dict key");
      std::size_t* slot = nullptr;
      if (k->k == nk::string) {
        auto [it, fresh] = str_pos.emplace(k->text, entries.size());
        if (!fresh) slot = &it->second;
      } else if (k->k == nk::integer) {
        auto [it, fresh] = int_pos.emplace(k->i, entries.size());
        if (!fresh) slot = &it->second;
      }
      if (slot) {
        entries[*slot].second = v;
        continue;
      }
      if (k->k != nk::string || (!k->text.empty() && k->text.front() == '$')) plain = false;
      entries.emplace_back(k, v);
    }
    if (plain) {
      e_.begin_dict();
      for (const auto& [k, v] : entries) {
        if (!valid_utf8(k->text)) return bad("a str in the object graph is not valid UTF-8");
        e_.key(k->text);
        VITRIFY_TRY(enc(v, depth + 1));
      }
      e_.end_dict();
      return {};
    }
    e_.begin_pair_dict();
    for (const auto& [k, v] : entries) {
      e_.begin_list();
      VITRIFY_TRY(enc(k, depth + 1));
      VITRIFY_TRY(enc(v, depth + 1));
      e_.end_list();
    }
    e_.end_pair_dict();
    return {};
  }

  // ---- numpy ----

  void dtype_ref(const dt_desc& d, const std::string& desc) {
    if (d.kind == 'V') e_.integer(e_.dtype_index(desc));
    else e_.string(d.str);
  }

  // model.py _dtype_state of a structured dtype. Field layouts are kept exactly; numpy's
  // "aligned" flag is not part of the graph and is written false (the dtypes scikit-learn
  // stores are not aligned structs, and numpy compares dtypes by fields, offsets and itemsize).
  result<void> structured_desc(const pyobj::ndarray& a, const dt_desc& d, std::string& out) {
    if (a.fields.empty()) return bad("unstructured void arrays ('" + a.dtype + "') cannot be stored");
    if (d.itemsize == 0) return bad("structured dtype with itemsize 0");
    out += R"({"fields":[)";
    bool first = true;
    for (const auto& f : a.fields) {
      auto fd = parse_dtype(f.dtype);
      if (!fd) return std::move(fd).err();
      if (fd->kind == 'O' || fd->kind == 'U' || fd->kind == 'S' || fd->kind == 'V')
        return bad("structured dtypes may only have plain numeric fields (field '" + f.name + "' is " + f.dtype + ")");
      if (f.offset > d.itemsize || fd->itemsize > d.itemsize - f.offset) return bad("structured dtype field '" + f.name + "' lies outside its record");
      if (!valid_utf8(f.name)) return bad("structured dtype field name is not valid UTF-8");
      if (!first) out.push_back(',');
      first = false;
      out.push_back('[');
      detail::append_json_string(out, f.name);
      out.push_back(',');
      detail::append_json_string(out, fd->str);
      out += ',' + std::to_string(f.offset) + ']';
    }
    out += R"(],"itemsize":)" + std::to_string(d.itemsize) + R"(,"aligned":false})";
    return {};
  }

  result<void> strings(const pyobj::ndarray& a, const std::vector<std::uint64_t>& shape, std::uint64_t n,
                       std::string_view hint, std::uint64_t numpy_nbytes) {
    if (a.strings.size() != n) return bad("string array item count does not match its shape");
    std::vector<std::uint64_t> offsets{0};
    offsets.reserve(a.strings.size() + 1);
    std::string text;
    for (const auto& s : a.strings) {
      if (!valid_utf8(s)) return bad("a string array item is not valid UTF-8");
      text += s;
      offsets.push_back(text.size());
    }
    e_.strings(shape, std::move(offsets), std::move(text), hint, hint == "object" ? "O" : hint, numpy_nbytes);
    return {};
  }

  result<void> enc_array(const pyobj::ndarray& a, std::uint32_t depth) {
    auto dr = parse_dtype(a.dtype);
    if (!dr) return std::move(dr).err();
    const dt_desc& d = *dr;
    // Shape checks: every dimension >= 0 and the product fits (producers promise it; the file
    // format checks it again, but the encoder computes sizes from it first).
    std::vector<std::uint64_t> shape;
    std::uint64_t n = 1;
    for (auto s : a.shape) {
      if (s < 0) return bad("negative array dimension");
      shape.push_back(static_cast<std::uint64_t>(s));
      if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(s), &n) || n > (std::uint64_t{1} << 62)) return bad("array too large");
    }
    if (shape.size() > 64) return bad("array rank above 64");
    if (d.kind == 'O') {
      if (!a.items.empty() || a.strings.empty()) {
        if (a.items.size() != n) return bad("object array item count does not match its shape");
        e_.object_array_head(shape);
        VITRIFY_TRY(items(a.items, depth));
        e_.end_dict();
        return {};
      }
      return strings(a, shape, n, "object", 8 * n);
    }
    if (d.kind == 'U') return strings(a, shape, n, "<U" + std::to_string(d.itemsize / 4), n * d.itemsize);
    if (d.kind == 'S') {
      if (a.strings.size() != n) return bad("bytes array item count does not match its shape");
      if (d.itemsize && n > (std::uint64_t{1} << 40) / d.itemsize) return bad("bytes array too large");
      auto& raw = owned.emplace_back(static_cast<std::size_t>(n * d.itemsize), std::byte{0});
      for (std::uint64_t i = 0; i < n; ++i) {
        const std::string& s = a.strings[i];
        if (s.size() > d.itemsize) return bad("bytes array item longer than its dtype " + d.str);
        std::memcpy(raw.data() + i * d.itemsize, s.data(), s.size());
      }
      e_.byte_strings(shape, raw, d.str);
      return {};
    }
    // Fixed-size data.
    if (d.itemsize == 0 || n > UINT64_MAX / d.itemsize || a.data.size() != n * d.itemsize)
      return bad("array data (" + std::to_string(a.data.size()) + " bytes) does not match dtype " + d.str + " and its shape");
    if (d.kind == 'b')
      for (std::byte x : a.data)
        if (static_cast<unsigned>(x) > 1) return bad("bool array holds a byte other than 0 or 1");
    std::string desc;
    if (d.kind == 'V') VITRIFY_TRY(structured_desc(a, d, desc));
    objects::fixed_array fa;
    // Fortran-ordered data is stored as the C-ordered transpose (model.py: `a.T`), the stored
    // shape reversed, with "o": "F".
    fa.fortran = a.fortran && shape.size() > 1;
    fa.shape = shape;
    if (fa.fortran) std::reverse(fa.shape.begin(), fa.shape.end());
    // ml_dtypes arrays always go to the table (numpy has no type code for them).
    fa.named_dtype = d.str.front() != '<' && d.str.front() != '|';
    if (d.kind != 'V') fa.table_dtype = d.vdt;
    if (d.kind == 'V') fa.dtype_index = e_.dtype_index(desc);
    else fa.dtype_str = d.str;
    fa.data = a.data;
    return e_.fixed(fa);
  }

  // ---- objects ----

  result<void> enc_object(const node& n, std::uint32_t depth) {
    if (!n.obj) return bad("object node without its description");
    const pyobj::object& o = *n.obj;
    if (!valid_type_name(o.type)) return bad("invalid type name '" + o.type + "'");
    if (o.type == "numpy.ndarray" || o.type == "numpy.generic" || o.type == "numpy.dtype" || o.type == "vitrify.global")
      return bad(o.type + " object node where the graph should hold an array, scalar, dtype or global");
    if (is_special(o.type)) {
      // Its decoder reads the state directly: written in place, never as a shared node.
      e_.begin_object(o.type);
      if (!o.state) e_.null();
      else if (o.state->k == nk::none || o.state->k == nk::boolean || o.state->k == nk::integer || o.state->k == nk::big_integer ||
               o.state->k == nk::floating || o.state->k == nk::string || o.state->k == nk::bytes)
        VITRIFY_TRY(enc(o.state, depth + 1));
      else
        VITRIFY_TRY(inner(*o.state, depth + 1));
      e_.end_object();
      return {};
    }
    e_.begin_typed_object(o.type);
    e_.begin_dict();
    if (o.newobj) {
      e_.key("n");
      e_.boolean(true);
    }
    if (!o.newobj || !o.args.empty()) {
      e_.key("a");
      VITRIFY_TRY(items(o.args, depth));
    }
    if (o.kwargs) {
      e_.key("kw");
      VITRIFY_TRY(enc(o.kwargs, depth + 1));
    }
    if (o.state) {
      if (auto ks = keyset_of(*o.state)) {
        memo_.emplace(o.state, keyset_marker);
        e_.key("k");
        e_.integer(*ks);
        e_.key("s");
        e_.begin_list();
        for (const auto& kv : o.state->entries) VITRIFY_TRY(enc(kv.second, depth + 1));
        e_.end_list();
      } else {
        e_.key("s");
        VITRIFY_TRY(enc(o.state, depth + 1));
      }
    }
    if (!o.listitems.empty()) {
      e_.key("li");
      VITRIFY_TRY(items(o.listitems, depth));
    }
    if (!o.dictitems.empty()) {
      e_.key("di");
      e_.begin_list();
      for (const auto& [k, v] : o.dictitems) {
        e_.begin_list();
        VITRIFY_TRY(enc(k, depth + 1));
        VITRIFY_TRY(enc(v, depth + 1));
        e_.end_list();
      }
      e_.end_list();
    }
    e_.end_dict();
    e_.end_object();
    return {};
  }

  // The keyset index for a state dict that can be written as keys + values: not met before,
  // non-empty, str keys only, each once.
  std::optional<std::int64_t> keyset_of(const node& s) {
    if (!e_.options().keysets || s.k != nk::dict || s.entries.empty() || memo_.count(&s)) return std::nullopt;
    std::vector<std::string_view> keys;
    keys.reserve(s.entries.size());
    std::set<std::string_view> seen;
    for (const auto& [k, v] : s.entries) {
      if (!k || k->k != nk::string || !valid_utf8(k->text) || !seen.insert(k->text).second) return std::nullopt;
      keys.push_back(k->text);
    }
    return e_.keyset(keys);
  }

  objects::emitter& e_;
  const encode_options& o_;
  std::unordered_map<const node*, objects::emitter::slot> memo_;
};

// ---- schema: what `vitrify inspect` draws (model.py _schema / _summary) ----

void put(value& d, std::string k, value v) {
  d.items().push_back(value::string(std::move(k)));
  d.items().push_back(std::move(v));
}

bool is_estimator(const node* n) {
  return n && n->k == nk::object && n->obj && n->obj->state && n->obj->state->k == nk::dict &&
         n->obj->state->get("_sklearn_version") != nullptr;
}

std::string short_type(std::string_view t) {
  auto p = t.rfind('.');
  return std::string(p == std::string_view::npos ? t : t.substr(p + 1));
}

// A numeric element of an array as a value (for classes_ and fitted scalars).
std::optional<value> element(const pyobj::ndarray& a, const dt_desc& d, std::uint64_t i) {
  if (!d.vdt || (i + 1) * d.itemsize > a.data.size()) return std::nullopt;
  const std::byte* p = a.data.data() + i * d.itemsize;
  auto rd = [p](auto x) {
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  switch (*d.vdt) {
    case dtype::bool_: return value::boolean(rd(std::uint8_t{}) != 0);
    case dtype::int8: return value::integer(rd(std::int8_t{}));
    case dtype::int16: return value::integer(rd(std::int16_t{}));
    case dtype::int32: return value::integer(rd(std::int32_t{}));
    case dtype::int64: return value::integer(rd(std::int64_t{}));
    case dtype::uint8: return value::integer(rd(std::uint8_t{}));
    case dtype::uint16: return value::integer(rd(std::uint16_t{}));
    case dtype::uint32: return value::integer(rd(std::uint32_t{}));
    case dtype::uint64: {
      auto u = rd(std::uint64_t{});
      return u > static_cast<std::uint64_t>(INT64_MAX) ? value::big_integer(std::to_string(u)) : value::integer(static_cast<std::int64_t>(u));
    }
    case dtype::float32: return value::floating(rd(float{}));
    case dtype::float64: return value::floating(rd(double{}));
    default: return std::nullopt;
  }
}

// Plain JSON-able view of a small value (schema entries are display data: NaN becomes text).
std::optional<value> plain(const node* n) {
  if (!n) return std::nullopt;
  switch (n->k) {
    case nk::none: return value::null();
    case nk::boolean: return value::boolean(n->b);
    case nk::integer: return value::integer(n->i);
    case nk::floating:
      if (std::isnan(n->d)) return value::string("nan");
      if (std::isinf(n->d)) return value::string(n->d > 0 ? "inf" : "-inf");
      return value::floating(n->d);
    case nk::string: return valid_utf8(n->text) ? std::optional<value>(value::string(n->text)) : std::nullopt;
    case nk::scalar: {
      if (!n->arr) return std::nullopt;
      auto d = parse_dtype(n->arr->dtype);
      if (!d) return std::nullopt;
      auto v = element(*n->arr, *d, 0);
      if (v && v->is(value::kind::floating) && !std::isfinite(v->as_double())) return value::string(std::isnan(v->as_double()) ? "nan" : "inf");
      return v;
    }
    case nk::array: {
      if (!n->arr || n->arr->shape.size() != 1 || n->arr->count() > 10000) return std::nullopt;
      const auto& a = *n->arr;
      value l = value::list();
      if (!a.strings.empty() || (a.kind() == 'U' && a.count() == 0)) {
        for (const auto& s : a.strings) {
          if (!valid_utf8(s)) return std::nullopt;
          l.items().push_back(value::string(s));
        }
        return l;
      }
      if (!a.items.empty()) {
        for (const node* x : a.items) {
          auto v = plain(x);
          if (!v) return std::nullopt;
          l.items().push_back(std::move(*v));
        }
        return l;
      }
      auto d = parse_dtype(a.dtype);
      if (!d) return std::nullopt;
      for (std::uint64_t i = 0; i < a.count(); ++i) {
        auto v = element(a, *d, i);
        if (!v) return std::nullopt;
        if (v->is(value::kind::floating) && !std::isfinite(v->as_double())) v = value::string(std::isnan(v->as_double()) ? "nan" : "inf");
        l.items().push_back(std::move(*v));
      }
      return l;
    }
    default: return std::nullopt;
  }
}

std::optional<value> summary(const node* n, int depth) {
  if (depth > 20 || !is_estimator(n)) return std::nullopt;
  value out = value::dict();
  put(out, "type", value::string(std::string(n->type_name())));
  value params = value::dict(), fitted = value::dict(), children = value::list();
  for (const auto& [k, v] : n->obj->state->entries) {
    if (!k || k->k != nk::string || k->text.empty() || !valid_utf8(k->text)) continue;
    const std::string& key = k->text;
    bool is_param = key.front() != '_' && key.back() != '_';
    bool is_fitted = key.front() != '_' && key.back() == '_';
    if (is_param) {
      if (auto s = summary(v, depth + 1)) {
        value c = value::dict();
        put(c, "param", value::string(key));
        for (std::size_t i = 0; i < s->dict_size(); ++i) c.items().push_back(s->dict_key(i)), c.items().push_back(s->dict_value(i));
        children.items().push_back(std::move(c));
        continue;
      }
      if (v && (v->k == nk::list || v->k == nk::tuple) && !v->items.empty()) {
        bool steps = true;
        for (const node* x : v->items)
          if (!x || (x->k != nk::tuple && x->k != nk::list) || x->items.size() < 2 || !is_estimator(x->items[1])) steps = false;
        if (steps) {
          for (const node* x : v->items) {
            value c = value::dict();
            put(c, "param", value::string(key));
            if (auto nm = plain(x->items[0])) put(c, "name", std::move(*nm));
            if (auto s = summary(x->items[1], depth + 1))
              for (std::size_t i = 0; i < s->dict_size(); ++i) c.items().push_back(s->dict_key(i)), c.items().push_back(s->dict_value(i));
            children.items().push_back(std::move(c));
          }
          continue;
        }
      }
      if (v && (v->k == nk::boolean || v->k == nk::integer || v->k == nk::floating || v->k == nk::string))
        if (auto p = plain(v)) put(params, key, std::move(*p));
    } else if (is_fitted && v) {
      if (v->k == nk::array && v->arr) {
        auto d = parse_dtype(v->arr->dtype);
        std::string text = d ? numpy_name(*d) : v->arr->dtype;
        text += "[";
        for (std::size_t i = 0; i < v->arr->shape.size(); ++i) text += (i ? ", " : "") + std::to_string(v->arr->shape[i]);
        put(fitted, key, value::string(text + "]"));
      } else if (v->k == nk::integer || v->k == nk::floating || v->k == nk::string || v->k == nk::scalar) {
        if (auto p = plain(v)) put(fitted, key, std::move(*p));
      } else if (v->k == nk::list && !v->items.empty() && is_estimator(v->items[0])) {
        put(fitted, key, value::string("list of " + std::to_string(v->items.size()) + " " + short_type(v->items[0]->type_name())));
      }
    }
  }
  if (params.dict_size()) put(out, "params", std::move(params));
  if (fitted.dict_size()) put(out, "fitted", std::move(fitted));
  if (!children.items().empty()) put(out, "children", std::move(children));
  return out;
}

value schema(const node& root) {
  value out = value::dict();
  put(out, "type", value::string(std::string(root.type_name())));
  for (const char* k : {"n_features_in_", "feature_names_in_", "classes_", "n_outputs_"})
    if (auto v = plain(root.attr(k))) put(out, k, std::move(*v));
  if (auto est = summary(&root, 0)) put(out, "estimator", std::move(*est));
  return out;
}

}  // namespace

result<encode_info> write_objects(const pyobj::node& root, writer& w, const encode_options& opt) {
  objects::emit_options eo;
  eo.arrays = opt.arrays.codec == codec::raw ? array_codec{codec::raw, 0} : opt.arrays;
  eo.pool = opt.pool;
  eo.inline_max_bytes = opt.inline_max_bytes;
  for (bool keysets : {opt.keysets, false}) {
    eo.keysets = keysets;
    objects::emitter e(eo);
    walker wk(e, opt);
    if (auto r = wk.enc(&root, 0); !r) {
      // A state dict written as a keyset is referenced elsewhere too: write plain dicts.
      if (wk.conflict && keysets) continue;
      return std::move(r).err();
    }
    auto done = e.finish(w);
    if (!done) return std::move(done).err();
    const objects::emit_result& r = *done;
    encode_info info;
    info.root_type = std::string(root.type_name());
    info.types = r.types;
    info.arrays = r.arrays;
    info.inline_arrays = r.inline_arrays;
    info.pooled_arrays = r.pooled_arrays;
    info.array_bytes = r.array_bytes;
    info.tree_bytes = r.tree_bytes;
    info.shared = r.shared;
    w.set_content(objects::emitter::content(r, opt.schema && root.k == nk::object ? schema(root) : value()));
    if (!opt.environment.is(value::kind::null)) w.set_environment(opt.environment);
    if (!opt.provenance.is(value::kind::null)) w.set_provenance(opt.provenance);
    if (!opt.metadata.is(value::kind::null)) w.set_metadata(opt.metadata);
    return info;
  }
  return bad("keyset conflict without keysets");
}

}  // namespace vitrify::legacy
