// The C++ encoder of inert object graphs (pyobj) into the object encoding of `vitrify.dump`
// (python/vitrify/model.py, _Encoder; docs/PYTHON.md "What is stored"). Python's decoder
// (`vitrify.load`) and the C++ one (pyobj::decode_objects) read its output like a dump.
//
// The layout mirrors the Python encoder choice for choice, so a graph decoded from a dump and
// encoded again loads to the same object: small numeric arrays inline (base64), larger ones in
// the array table, str arrays as string arrays, structured and datetime arrays as raw bytes
// plus a checked dtype description, state dicts as keysets, and a node reachable twice written
// once as $shared and then as $ref.
#include <algorithm>
#include <array>
#include <cstring>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "vitrify/convert.hpp"
#include "tree/value_json.hpp"

namespace vitrify::legacy {

namespace {

using pyobj::node;
using nk = node::kind;

error bad(std::string msg) { return fail(errc::bad_state, "convert: " + std::move(msg)); }

constexpr std::uint64_t pack_zstd_min = 4096;   // model.py _PACK_ZSTD_MIN
constexpr std::uint64_t zstd_min_bytes = 256;   // model.py _compress_policy: smaller stay raw
constexpr const char* packed_name = "content";
constexpr const char* pool_name = "pool";

std::string base64(std::span<const std::byte> d) {
  return vitrify::detail::base64_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// Python's json module and simdjson both reject invalid UTF-8 (and encoded surrogates), which
// a pickle's str may carry (pickle writes them with 'surrogatepass').
bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Names the format accepts for $object types (src/tree/value.cpp valid_type_name).
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

class encoder {
 public:
  encoder(writer& w, const encode_options& o) : w_(w), o_(o) {}

  // Version 3: the pooled arrays' bytes (views of the graph's arrays) and zero padding.
  static constexpr std::byte pool_zeros[64] = {};
  std::vector<std::span<const std::byte>> pool_parts_;
  std::uint64_t pool_size_ = 0;
  bool pooled_ = false;

  // Pass 1: how many edges lead to each container node (a node reached twice is shared).
  result<void> count(const node* n, std::uint32_t depth) {
    if (!n) return bad("null node in the object graph");
    if (depth > o_.max_depth) return fail(errc::limit_exceeded, "convert: object graph nested deeper than " + std::to_string(o_.max_depth));
    if (!shareable(*n)) return {};
    if (++refs_[n] > 1) return {};
    return count_children(*n, depth);
  }

  result<value> root(const node& n) { return enc(&n, 0); }

  value body(value root) {
    value b = value::dict();
    b.items().push_back(value::string("root"));
    b.items().push_back(std::move(root));
    if (!keyset_list_.empty()) {
      value ks = value::list();
      for (const auto& k : keyset_list_) {
        value l = value::list();
        for (const auto& s : k) l.items().push_back(value::string(s));
        ks.items().push_back(std::move(l));
      }
      b.items().push_back(value::string("keys"));
      b.items().push_back(std::move(ks));
    }
    if (!dtype_list_.empty()) {
      value dl = value::list(dtype_list_);
      b.items().push_back(value::string("dtypes"));
      b.items().push_back(std::move(dl));
    }
    return b;
  }

  encode_info info;
  std::set<std::string> types;

 private:
  static bool shareable(const node& n) {
    switch (n.k) {
      case nk::none: case nk::boolean: case nk::integer: case nk::big_integer: case nk::floating:
      case nk::string: case nk::bytes: return false;
      default: return true;
    }
  }

  result<void> count_children(const node& n, std::uint32_t depth) {
    for (const node* x : n.items) VITRIFY_TRY(count(x, depth + 1));
    for (const auto& [k, v] : n.entries) {
      VITRIFY_TRY(count(k, depth + 1));
      VITRIFY_TRY(count(v, depth + 1));
    }
    if (n.arr)
      for (const node* x : n.arr->items) VITRIFY_TRY(count(x, depth + 1));
    if (n.k == nk::object && n.obj) {
      const pyobj::object& o = *n.obj;
      for (const node* x : o.args) VITRIFY_TRY(count(x, depth + 1));
      if (o.kwargs) VITRIFY_TRY(count(o.kwargs, depth + 1));
      if (o.state) {
        // The state of a special object is written in place (its decoder reads it directly),
        // so it is not an edge of its own: only its contents are counted.
        if (is_special(o.type)) {
          if (shareable(*o.state)) VITRIFY_TRY(count_children(*o.state, depth + 1));
        } else {
          VITRIFY_TRY(count(o.state, depth + 1));
        }
      }
      for (const node* x : o.listitems) VITRIFY_TRY(count(x, depth + 1));
      for (const auto& [k, v] : o.dictitems) {
        VITRIFY_TRY(count(k, depth + 1));
        VITRIFY_TRY(count(v, depth + 1));
      }
    }
    return {};
  }

  result<value> enc(const node* n, std::uint32_t depth) {
    if (!n) return bad("null node in the object graph");
    if (depth > o_.max_depth) return fail(errc::limit_exceeded, "convert: object graph nested deeper than " + std::to_string(o_.max_depth));
    if (shareable(*n)) {
      if (auto it = sids_.find(n); it != sids_.end()) return value::ref(it->second);
      auto rc = refs_.find(n);
      if (rc != refs_.end() && rc->second > 1) {
        std::int64_t sid = next_sid_++;
        sids_.emplace(n, sid);  // before the contents: cycles refer back to it
        ++info.shared;
        auto inner = enc_inner(*n, depth);
        if (!inner) return std::move(inner).err();
        return value::shared(sid, std::move(inner).value());
      }
    }
    return enc_inner(*n, depth);
  }

  result<value> enc_list(const std::vector<pyobj::node_ptr>& xs, std::uint32_t depth, value out) {
    out.items().reserve(xs.size());
    for (const node* x : xs) {
      auto v = enc(x, depth + 1);
      if (!v) return std::move(v).err();
      out.items().push_back(std::move(v).value());
    }
    return out;
  }

  result<value> enc_inner(const node& n, std::uint32_t depth) {
    switch (n.k) {
      case nk::none: return value::null();
      case nk::boolean: return value::boolean(n.b);
      case nk::integer: return value::integer(n.i);
      case nk::big_integer: return value::big_integer(n.text);
      case nk::floating: return value::floating(n.d);
      case nk::string:
        if (!valid_utf8(n.text)) return bad("a str in the object graph is not valid UTF-8");
        return value::string(n.text);
      case nk::bytes: return value::bytes(n.text);
      case nk::list: return enc_list(n.items, depth, value::list());
      case nk::tuple: return enc_list(n.items, depth, value::tuple());
      case nk::set:
      case nk::frozenset: {
        auto items = enc_list(n.items, depth, value::list());
        if (!items) return std::move(items).err();
        return value::object(n.k == nk::set ? "builtins.set" : "builtins.frozenset", 1, std::move(items).value());
      }
      case nk::complex: {
        value st = value::list();
        st.items().push_back(value::floating(n.d));
        st.items().push_back(value::floating(n.imag));
        return value::object("builtins.complex", 1, std::move(st));
      }
      case nk::dict: return enc_dict(n, depth);
      case nk::array: {
        if (!n.arr) return bad("array node without data");
        auto st = enc_array(*n.arr, depth);
        if (!st) return std::move(st).err();
        return value::object("numpy.ndarray", 1, std::move(st).value());
      }
      case nk::scalar: {
        if (!n.arr) return bad("numpy scalar without data");
        auto dt = dtype_of(*n.arr);
        if (!dt) return std::move(dt).err();
        if (dt->first.kind == 'O' || dt->first.kind == 'U' || dt->first.kind == 'S')
          return bad("numpy scalars of dtype " + dt->first.str + " are not supported");
        if (n.arr->data.size() != dt->first.itemsize) return bad("numpy scalar of dtype " + dt->first.str + " has " + std::to_string(n.arr->data.size()) + " bytes");
        value st = value::dict();
        st.items().push_back(value::string("t"));
        st.items().push_back(std::move(dt->second));
        st.items().push_back(value::string("b"));
        st.items().push_back(value::string(base64(n.arr->data)));
        return value::object("numpy.generic", 1, std::move(st));
      }
      case nk::dtype: {
        if (!n.arr) {
          auto d = parse_dtype(n.text);
          if (!d) return std::move(d).err();
          return value::object("numpy.dtype", 1, value::string(d->str));
        }
        auto st = dtype_state(*n.arr);
        if (!st) return std::move(st).err();
        return value::object("numpy.dtype", 1, std::move(st).value());
      }
      case nk::global: {
        if (!valid_type_name(n.text)) return bad("invalid global name '" + n.text + "'");
        types.insert(n.text);
        return value::object("vitrify.global", 1, value::string(n.text));
      }
      case nk::object: return enc_object(n, depth);
    }
    return bad("unknown node kind");
  }

  result<value> enc_dict(const node& n, std::uint32_t depth) {
    value out = value::dict();
    // A pickle may set one key twice; Python keeps the first position and the last value.
    std::unordered_map<std::string, std::size_t> str_pos;
    std::unordered_map<std::int64_t, std::size_t> int_pos;
    out.items().reserve(2 * n.entries.size());
    for (const auto& [k, v] : n.entries) {
      if (!k) return bad("null dict key");
      std::size_t* slot = nullptr;
      std::size_t here = out.items().size() / 2;
      if (k->k == nk::string) {
        auto [it, fresh] = str_pos.emplace(k->text, here);
        if (!fresh) slot = &it->second;
      } else if (k->k == nk::integer) {
        auto [it, fresh] = int_pos.emplace(k->i, here);
        if (!fresh) slot = &it->second;
      }
      auto vv = enc(v, depth + 1);
      if (!vv) return std::move(vv).err();
      if (slot) {
        out.items()[2 * *slot + 1] = std::move(vv).value();
        continue;
      }
      auto kk = enc(k, depth + 1);
      if (!kk) return std::move(kk).err();
      out.items().push_back(std::move(kk).value());
      out.items().push_back(std::move(vv).value());
    }
    return out;
  }

  // ---- numpy ----

  // The dtype of an array or scalar, and how the tree refers to it ("<f8", or an index into
  // the dtypes table for structured dtypes).
  result<std::pair<dt_desc, value>> dtype_of(const pyobj::ndarray& a) {
    auto d = parse_dtype(a.dtype);
    if (!d) return std::move(d).err();
    if (d->kind != 'V') return std::pair{*d, value::string(d->str)};
    if (a.fields.empty()) return bad("unstructured void arrays ('" + a.dtype + "') cannot be stored");
    auto st = dtype_state(a);
    if (!st) return std::move(st).err();
    std::string key = to_json(*st);
    auto it = dtypes_.find(key);
    if (it == dtypes_.end()) {
      it = dtypes_.emplace(key, static_cast<std::int64_t>(dtype_list_.size())).first;
      dtype_list_.push_back(std::move(st).value());
    }
    return std::pair{*d, value::integer(it->second)};
  }

  // model.py _dtype_state. Field layouts are kept exactly; numpy's "aligned" flag is not part
  // of the graph and is written false (the dtypes scikit-learn stores are not aligned structs,
  // and numpy compares dtypes by their fields, offsets and itemsize).
  result<value> dtype_state(const pyobj::ndarray& a) {
    auto d = parse_dtype(a.dtype);
    if (!d) return std::move(d).err();
    if (d->kind != 'V' || a.fields.empty()) return value::string(d->str);
    if (d->itemsize == 0) return bad("structured dtype with itemsize 0");
    value fl = value::list();
    for (const auto& f : a.fields) {
      auto fd = parse_dtype(f.dtype);
      if (!fd) return std::move(fd).err();
      if (fd->kind == 'O' || fd->kind == 'U' || fd->kind == 'S' || fd->kind == 'V')
        return bad("structured dtypes may only have plain numeric fields (field '" + f.name + "' is " + f.dtype + ")");
      if (f.offset > d->itemsize || fd->itemsize > d->itemsize - f.offset) return bad("structured dtype field '" + f.name + "' lies outside its record");
      if (!valid_utf8(f.name)) return bad("structured dtype field name is not valid UTF-8");
      value item = value::list();
      item.items().push_back(value::string(f.name));
      item.items().push_back(value::string(fd->str));
      item.items().push_back(value::integer(static_cast<std::int64_t>(f.offset)));
      fl.items().push_back(std::move(item));
    }
    value st = value::dict();
    st.items().push_back(value::string("fields"));
    st.items().push_back(std::move(fl));
    st.items().push_back(value::string("itemsize"));
    st.items().push_back(value::integer(static_cast<std::int64_t>(d->itemsize)));
    st.items().push_back(value::string("aligned"));
    st.items().push_back(value::boolean(false));
    return st;
  }

  static value shape_value(const std::vector<std::uint64_t>& s) {
    value l = value::list();
    for (auto x : s) l.items().push_back(value::integer(static_cast<std::int64_t>(x)));
    return l;
  }

  static void put(value& d, const char* k, value v) {
    d.items().push_back(value::string(k));
    d.items().push_back(std::move(v));
  }

  array_codec codec_for(std::uint64_t bytes) const {
    if (o_.arrays.codec != codec::raw && bytes >= zstd_min_bytes) return o_.arrays;
    return array_codec{codec::raw, 0};
  }

  std::string next_name() { return std::to_string(next_array_++); }

  result<value> enc_array(const pyobj::ndarray& a, std::uint32_t depth) {
    auto dt = dtype_of(a);
    if (!dt) return std::move(dt).err();
    const dt_desc& d = dt->first;
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
    value st = value::dict();

    if (d.kind == 'O') {
      if (!a.items.empty() || a.strings.empty()) {
        if (a.items.size() != n) return bad("object array item count does not match its shape");
        put(st, "s", shape_value(shape));
        put(st, "t", value::string("O"));
        auto items = enc_list(a.items, depth, value::list());
        if (!items) return std::move(items).err();
        put(st, "i", std::move(items).value());
        return st;
      }
      return string_array(a, shape, n, "object", value::string("O"));
    }
    if (d.kind == 'U') {
      std::string hint = "<U" + std::to_string(d.itemsize / 4);
      return string_array(a, shape, n, hint, value::string(hint));
    }
    if (d.kind == 'S') {
      if (a.strings.size() != n) return bad("bytes array item count does not match its shape");
      std::vector<std::byte> raw(static_cast<std::size_t>(n * d.itemsize), std::byte{0});
      for (std::uint64_t i = 0; i < n; ++i) {
        const std::string& s = a.strings[i];
        if (s.size() > d.itemsize) return bad("bytes array item longer than its dtype " + d.str);
        std::memcpy(raw.data() + i * d.itemsize, s.data(), s.size());
      }
      std::string name = next_name();
      std::uint64_t len = raw.size();
      VITRIFY_TRY(w_.add_array(name, dtype::uint8, std::span<const std::uint64_t>(&len, 1), raw, codec_for(len)));
      ++info.arrays;
      info.array_bytes += len;
      put(st, "y", value::array_ref(name));
      put(st, "s", shape_value(shape));
      put(st, "t", value::string(d.str));
      return st;
    }

    // Fixed-size data.
    if (d.itemsize == 0 || n > UINT64_MAX / d.itemsize || a.data.size() != n * d.itemsize)
      return bad("array data (" + std::to_string(a.data.size()) + " bytes) does not match dtype " + d.str + " and its shape");
    if (d.kind == 'b')
      for (std::byte x : a.data)
        if (static_cast<unsigned>(x) > 1) return bad("bool array holds a byte other than 0 or 1");
    // Fortran-ordered data is stored as the C-ordered transpose (model.py: `a.T`), the
    // stored shape reversed, with "o": "F".
    bool fortran = a.fortran && shape.size() > 1;
    std::vector<std::uint64_t> stored = shape;
    if (fortran) std::reverse(stored.begin(), stored.end());
    bool simple = d.kind != 'V';
    // ml_dtypes arrays always go to the table (vitrify.dump does the same: inline dtypes are
    // numpy type codes).
    bool named_dtype = d.str.front() != '<' && d.str.front() != '|';
    if (o_.pool && !named_dtype) {
      // Version 3: the bytes go to the pool, 16-byte aligned (64 from 4 KiB), as model.py's _pool.
      pooled_ = true;
      std::uint64_t off = 0, len = a.data.size();
      if (len != 0) {
        const std::uint64_t align = len >= 4096 ? 64 : 16;
        const std::uint64_t pad = (align - pool_size_ % align) % align;
        if (pad) pool_parts_.emplace_back(pool_zeros, static_cast<std::size_t>(pad));
        pool_size_ += pad;
        off = pool_size_;
        pool_parts_.push_back(a.data);
        pool_size_ += len;
      }
      value ref = value::list();
      ref.items().push_back(value::integer(static_cast<std::int64_t>(off)));
      ref.items().push_back(value::integer(static_cast<std::int64_t>(len)));
      put(st, "p", std::move(ref));
      put(st, "t", std::move(dt->second));
      put(st, "s", shape_value(stored));
      if (fortran) put(st, "o", value::string("F"));
      ++info.pooled_arrays;
      info.array_bytes += len;
      return st;
    }
    if (a.data.size() < o_.inline_max_bytes && !named_dtype) {
      put(st, "b", value::string(base64(a.data)));
      put(st, "t", std::move(dt->second));
      put(st, "s", shape_value(stored));
      if (fortran) put(st, "o", value::string("F"));
      ++info.inline_arrays;
      info.array_bytes += a.data.size();
      return st;
    }
    std::string name = next_name();
    if (simple && d.vdt) {
      VITRIFY_TRY(w_.add_array(name, *d.vdt, stored, a.data, codec_for(a.data.size())));
      put(st, "d", value::array_ref(name));
    } else {
      // Structured and datetime dtypes: the raw bytes plus the checked description.
      std::uint64_t len = a.data.size();
      VITRIFY_TRY(w_.add_array(name, dtype::uint8, std::span<const std::uint64_t>(&len, 1), a.data, codec_for(len)));
      put(st, "r", value::array_ref(name));
      put(st, "s", shape_value(stored));
      put(st, "t", std::move(dt->second));
    }
    ++info.arrays;
    info.array_bytes += a.data.size();
    if (fortran) put(st, "o", value::string("F"));
    return st;
  }

  result<value> string_array(const pyobj::ndarray& a, const std::vector<std::uint64_t>& shape, std::uint64_t n,
                             const std::string& hint, value t) {
    if (a.strings.size() != n) return bad("string array item count does not match its shape");
    std::uint64_t text = 0;
    for (const auto& s : a.strings) {
      if (!valid_utf8(s)) return bad("a string array item is not valid UTF-8");
      text += s.size();
    }
    std::string name = next_name();
    value attrs = value::dict();
    put(attrs, "numpy_dtype", value::string(hint));
    VITRIFY_TRY(w_.add_string_array(name, shape, std::span<const std::string>(a.strings), codec_for(text + 8 * (n + 1)), std::move(attrs)));
    ++info.arrays;
    info.array_bytes += text;
    value st = value::dict();
    put(st, "u", value::array_ref(name));
    put(st, "t", std::move(t));
    return st;
  }

  // ---- objects ----

  result<value> enc_object(const node& n, std::uint32_t depth) {
    if (!n.obj) return bad("object node without its description");
    const pyobj::object& o = *n.obj;
    if (!valid_type_name(o.type)) return bad("invalid type name '" + o.type + "'");
    if (o.type == "numpy.ndarray" || o.type == "numpy.generic" || o.type == "numpy.dtype" || o.type == "vitrify.global")
      return bad(o.type + " object node where the graph should hold an array, scalar, dtype or global");
    if (is_special(o.type)) {
      value st;
      if (o.state) {
        auto s = shareable(*o.state) ? enc_inner(*o.state, depth + 1) : enc(o.state, depth + 1);
        if (!s) return std::move(s).err();
        st = std::move(s).value();
      }
      return value::object(o.type, 1, std::move(st));
    }
    types.insert(o.type);
    value st = value::dict();
    if (o.newobj) put(st, "n", value::boolean(true));
    if (!o.newobj || !o.args.empty()) {
      auto args = enc_list(o.args, depth, value::list());
      if (!args) return std::move(args).err();
      put(st, "a", std::move(args).value());
    }
    if (o.kwargs) {
      auto kw = enc(o.kwargs, depth + 1);
      if (!kw) return std::move(kw).err();
      put(st, "kw", std::move(kw).value());
    }
    if (o.state) {
      if (auto ks = keyset_of(*o.state)) {
        // Mark the dict as written (it has no node of its own in keyset form).
        value vals = value::list();
        for (const auto& [k, v] : o.state->entries) {
          auto vv = enc(v, depth + 1);
          if (!vv) return std::move(vv).err();
          vals.items().push_back(std::move(vv).value());
        }
        put(st, "k", value::integer(*ks));
        put(st, "s", std::move(vals));
      } else {
        auto s = enc(o.state, depth + 1);
        if (!s) return std::move(s).err();
        put(st, "s", std::move(s).value());
      }
    }
    if (!o.listitems.empty()) {
      auto li = enc_list(o.listitems, depth, value::list());
      if (!li) return std::move(li).err();
      put(st, "li", std::move(li).value());
    }
    if (!o.dictitems.empty()) {
      value di = value::list();
      for (const auto& [k, v] : o.dictitems) {
        auto kk = enc(k, depth + 1);
        if (!kk) return std::move(kk).err();
        auto vv = enc(v, depth + 1);
        if (!vv) return std::move(vv).err();
        value pair = value::list();
        pair.items().push_back(std::move(kk).value());
        pair.items().push_back(std::move(vv).value());
        di.items().push_back(std::move(pair));
      }
      put(st, "di", std::move(di));
    }
    return value::object(o.type, 1, std::move(st));
  }

  // The keyset index for a state dict that can be written as keys + values: referenced only
  // by this object, non-empty, str keys only, each once.
  std::optional<std::int64_t> keyset_of(const node& s) {
    if (!o_.keysets || s.k != nk::dict || s.entries.empty()) return std::nullopt;
    auto rc = refs_.find(&s);
    if (rc == refs_.end() || rc->second != 1) return std::nullopt;
    std::vector<std::string> keys;
    keys.reserve(s.entries.size());
    std::set<std::string_view> seen;
    for (const auto& [k, v] : s.entries) {
      if (!k || k->k != nk::string || !valid_utf8(k->text) || !seen.insert(k->text).second) return std::nullopt;
      keys.push_back(k->text);
    }
    auto it = keysets_.find(keys);
    if (it == keysets_.end()) {
      it = keysets_.emplace(keys, static_cast<std::int64_t>(keyset_list_.size())).first;
      keyset_list_.push_back(std::move(keys));
    }
    return it->second;
  }

  writer& w_;
  const encode_options& o_;
  std::unordered_map<const node*, std::uint32_t> refs_;
  std::unordered_map<const node*, std::int64_t> sids_;
  std::int64_t next_sid_ = 0;
  std::map<std::vector<std::string>, std::int64_t> keysets_;
  std::vector<std::vector<std::string>> keyset_list_;
  std::map<std::string, std::int64_t> dtypes_;
  std::vector<value> dtype_list_;
  std::size_t next_array_ = 0;
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
  encoder e(w, opt);
  VITRIFY_TRY(e.count(&root, 0));
  auto tree = e.root(root);
  if (!tree) return std::move(tree).err();
  std::string text = to_json(e.body(std::move(tree).value()));
  encode_info info = std::move(e.info);
  info.tree_bytes = text.size();
  info.root_type = std::string(root.type_name());
  info.types.assign(e.types.begin(), e.types.end());
  // The tree is parsed in full on every load (never mapped), so it is compressed even when the
  // arrays stay raw, once it is big enough for zstd to gain anything (as vitrify.dump does).
  if (e.pooled_) VITRIFY_TRY(w.add_bytes(pool_name, e.pool_parts_, opt.arrays));
  array_codec how{codec::raw, 0};
  if (opt.arrays.codec != codec::raw) how = opt.arrays;
  else if (text.size() >= pack_zstd_min) how = array_codec{codec::zstd, 1};
  std::uint64_t len = text.size();
  VITRIFY_TRY(w.add_array(packed_name, dtype::uint8, std::span<const std::uint64_t>(&len, 1),
                          std::as_bytes(std::span<const char>(text.data(), text.size())), how));
  value content = value::dict();
  put(content, "kind", value::string("vitrify.python-object"));
  put(content, "version", value::integer(e.pooled_ ? 3 : 2));
  put(content, "packed", value::array_ref(packed_name));
  if (e.pooled_) put(content, "pool", value::array_ref(pool_name));
  value types = value::list();
  for (const auto& t : info.types) types.items().push_back(value::string(t));
  put(content, "types", std::move(types));
  if (opt.schema && root.k == nk::object) put(content, "schema", schema(root));
  w.set_content(std::move(content));
  if (!opt.environment.is(value::kind::null)) w.set_environment(opt.environment);
  if (!opt.provenance.is(value::kind::null)) w.set_provenance(opt.provenance);
  if (!opt.metadata.is(value::kind::null)) w.set_metadata(opt.metadata);
  return info;
}

}  // namespace vitrify::legacy
