// src/objects/decode.cpp - the one decoder of the object encoding (docs/OBJECTS.md): a file
// written by vitrify.dump (versions 1 to 3) into an inert pyobj graph, every reference, dtype,
// shape, size and limit checked. Nothing here imports or calls anything. Its consumers:
// vitrify.load (python/src/bind_objects.cpp builds the Python objects), the C++ runtime,
// convert, inspect and scan. Version 1 (long member names, logical Fortran shapes) is read by
// the same code: the `v1_` switches are the only compatibility path.
#include "vitrify/pyobj.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <unordered_map>

#include "core/checked.hpp"
#include "core/numpy_dtype.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/value.hpp"
#include "core/value_json.hpp"

namespace vitrify::pyobj {

namespace {

error bad(std::string msg) { return fail(errc::bad_value, "object tree: " + std::move(msg)); }

// Inline array and scalar bytes: padded base64, decoded strictly (value.cpp).
result<std::vector<std::byte>> b64_decode(std::string_view s) {
  std::string raw;
  if (!detail::base64_decode(s, &raw)) return bad("invalid base64 data");
  std::vector<std::byte> out(raw.size());
  if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());  // empty: data() may be null
  return out;
}

// ---- numpy dtypes (OBJECTS.md section 7) ----
using spec_ptr = std::shared_ptr<const dtype_spec>;

result<spec_ptr> parse_dtype_str(std::string_view s) {
  auto p = detail::parse_numpy_dtype(s);
  if (!p) return bad(std::move(p).err().message);
  auto d = std::make_shared<dtype_spec>();
  d->str = std::move(p->str);
  d->itemsize = p->itemsize;
  d->kind = p->kind;
  d->big_endian = p->big_endian && p->itemsize > 1;
  return spec_ptr(std::move(d));
}

bool plain_numeric(const dtype_spec& d) {
  return d.fields.empty() && !d.base && std::string_view("biufcmM").find(d.kind) != std::string_view::npos;
}

// A structured field: fixed-size numeric, a structure of such fields, or a sub-array of them
// (raw bytes of object, S, U or V fields could become pointers or unchecked text).
bool field_ok(const dtype_spec& d) {
  if (d.base) return field_ok(*d.base);
  if (!d.fields.empty()) return true;  // its own fields were checked when it was built
  return plain_numeric(d);
}

// Elements built from bytes (b, p, r) and entries of the dtypes table: numeric, datetime, or a
// structure of such fields. A sub-array dtype is refused here (numpy would add dimensions).
bool fixed_size_ok(const dtype_spec& d) { return !d.base && (!d.fields.empty() || plain_numeric(d)); }

// The dtype string a field records: consumers that only handle flat little-endian fields see a
// big-endian one as ">..." and a nested structure or sub-array as "V<n>", and refuse them.
std::string field_dtype_string(const dtype_spec& d) {
  if (d.big_endian && !d.str.empty() && (d.str[0] == '<' || d.str[0] == '|')) return ">" + d.str.substr(1);
  return d.str;
}

// A byte buffer aligned to 64 bytes (decoded arrays and pools).
template <class T>
struct align64_allocator {
  using value_type = T;
  align64_allocator() = default;
  template <class U>
  align64_allocator(const align64_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const align64_allocator<U>&) const noexcept { return true; }
};
using aligned_bytes = std::vector<std::byte, align64_allocator<std::byte>>;

const value* dget(const value& v, std::string_view k) { return v.is(value::kind::dict) ? v.get(k) : nullptr; }

bool as_i64(const value* v, std::int64_t& out) {
  if (!v || !v->is(value::kind::integer)) return false;
  out = v->as_int();
  return true;
}

void byteswap_inplace(std::byte* p, std::uint64_t count, std::uint64_t width) {
  for (std::uint64_t i = 0; i < count; ++i) std::reverse(p + i * width, p + (i + 1) * width);
}

// The special types of OBJECTS.md 5.3 / 5.4: built by the reader from their state, which exists
// before they do (so no $ref inside that state may name them).
bool is_special_type(std::string_view t) {
  static const std::set<std::string, std::less<>> names = {
      "numpy.ndarray", "numpy.generic", "numpy.dtype", "numpy.random.RandomState", "numpy.random.Generator",
      "numpy.ma.MaskedArray", "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.slice",
      "builtins.range", "builtins.bytearray", "vitrify.global"};
  return names.count(t) != 0;
}

class decoder {
 public:
  decoder(graph& g, const file& f, const decode_limits& lim, std::shared_ptr<const void> keep, bool v1, std::string packed)
      : g_(g), f_(f), lim_(lim), keep_(std::move(keep)), v1_(v1), packed_(std::move(packed)), budget_(lim.byte_budget(f.size())) {}

  // Count `n` bytes against the file's budget before they are allocated or handed on.
  result<void> charge(std::uint64_t n) {
    if (n > budget_) return fail(errc::limit_exceeded, "object tree declares more than " + std::to_string(lim_.byte_budget(f_.size())) +
                                                           " bytes (decode_limits: the file's budget)");
    budget_ -= n;
    return {};
  }
  // A new node, counted against max_nodes and the byte budget.
  result<node_ptr> make() {
    if (++nodes_ > lim_.max_nodes) return fail(errc::limit_exceeded, "object tree has more than " + std::to_string(lim_.max_nodes) + " nodes");
    VITRIFY_TRY(charge(sizeof(node)));
    return g_.make();
  }

  // Version 3: the uint8 array holding the pooled arrays.
  result<void> set_pool(std::size_t i) {
    pool_name_ = f_.arrays()[i].name;
    auto b = array_bytes(i);
    if (!b) return std::move(b).err();
    pool_ = b->first;
    pool_owner_ = b->second;
    have_pool_ = true;
    return {};
  }

  // The key nodes of keyset `i`, checked and made on its first use (keysets are checked where
  // they are used, as the dtype table is: an unused entry means nothing). Every dict made from
  // the keyset points at the same key nodes (plain strings, never `shared`).
  result<const std::vector<node_ptr>*> keyset(std::int64_t i, const value& names) {
    auto it = keysets_.find(i);
    if (it != keysets_.end()) return &it->second;
    std::vector<node_ptr> keys;
    keys.reserve(names.items().size());
    std::set<std::string_view> seen;
    for (const auto& n : names.items()) {
      if (!n.is(value::kind::string)) return bad("invalid keyset");
      if (!seen.insert(n.as_string()).second)
        return fail(errc::duplicate_name, "object tree: keyset " + std::to_string(i) + " names '" + n.as_string() + "' twice");
      auto kn = make();
      if (!kn) return std::move(kn).err();
      (*kn)->k = node::kind::string;
      (*kn)->text = n.as_string();
      keys.push_back(*kn);
    }
    return &keysets_.emplace(i, std::move(keys)).first->second;
  }

  result<void> set_tables(const value* keys, const value* dtypes) {
    if (keys) {
      if (!keys->is(value::kind::list)) return bad("keys must be a list");
      keys_ = keys;
    }
    if (dtypes) {
      if (!dtypes->is(value::kind::list)) return bad("dtypes must be a list");
      dtypes_ = dtypes;
    }
    return {};
  }

  result<node_ptr> dec(const value& v, std::uint32_t depth) {
    if (depth > lim_.max_depth) return fail(errc::limit_exceeded, "object tree nested deeper than " + std::to_string(lim_.max_depth));
    if (v.is(value::kind::ref)) {
      // A $ref names a value whose decoding has started: an ancestor (a cycle) or an earlier
      // sibling; a forward or unknown id is refused.
      auto it = shared_.find(v.as_int());
      if (it == shared_.end())
        return bad("$ref " + std::to_string(v.as_int()) + " before its $shared value, or inside a value that cannot hold itself");
      return it->second;
    }
    auto n = make();
    if (!n) return std::move(n).err();
    VITRIFY_TRY(fill(**n, v, depth, *n));
    return *n;
  }

 private:
  // Fill `out` from `v`. `self` is `out`'s owning pointer (registered first for $shared).
  result<void> fill(node& out, const value& v, std::uint32_t depth, const node_ptr& self) {
    using K = value::kind;
    switch (v.type()) {
      case K::null: out.k = node::kind::none; return {};
      case K::boolean: out.k = node::kind::boolean; out.b = v.as_bool(); return {};
      case K::integer: out.k = node::kind::integer; out.i = v.as_int(); return {};
      case K::big_integer: out.k = node::kind::big_integer; out.text = v.as_string(); return {};
      case K::floating: out.k = node::kind::floating; out.d = v.as_double(); return {};
      case K::string: out.k = node::kind::string; out.text = v.as_string(); return {};
      case K::bytes: out.k = node::kind::bytes; out.text = v.as_string(); return {};
      case K::list:
      case K::tuple: {
        out.k = v.is(K::list) ? node::kind::list : node::kind::tuple;
        out.items.reserve(v.items().size());
        for (const auto& x : v.items()) {
          auto c = dec(x, depth + 1);
          if (!c) return std::move(c).err();
          out.items.push_back(std::move(c).value());
        }
        return {};
      }
      case K::dict: {
        out.k = node::kind::dict;
        out.entries.reserve(v.dict_size());
        for (std::size_t i = 0; i < v.dict_size(); ++i) {
          auto key = dec(v.dict_key(i), depth + 1);
          if (!key) return std::move(key).err();
          auto val = dec(v.dict_value(i), depth + 1);
          if (!val) return std::move(val).err();
          out.entries.emplace_back(std::move(key).value(), std::move(val).value());
        }
        return {};
      }
      case K::array_ref: {
        VITRIFY_TRY(array_node(out, v.as_string()));
        return {};
      }
      case K::shared: {
        if (shared_.count(v.as_int())) return bad("duplicate $shared id " + std::to_string(v.as_int()));
        // Lists, dicts and reduce objects exist before their contents, so a $ref inside them may
        // name them (a cycle); anything else is registered only once built (OBJECTS.md 5.2).
        const value& in = v.inner();
        const bool early = in.is(K::list) || in.is(K::dict) || (in.is(K::object) && !is_special_type(in.as_string()));
        out.shared = true;
        if (early) shared_[v.as_int()] = self;
        VITRIFY_TRY(fill(out, in, depth + 1, self));
        out.shared = true;  // fill() may have replaced the node's contents
        if (!early) shared_[v.as_int()] = self;
        return {};
      }
      case K::ref: return bad("unexpected $ref");
      case K::object: return object_node(out, v.as_string(), v.inner(), depth + 1);
    }
    return bad("unknown value kind");
  }

  result<std::pair<std::size_t, const array_info*>> find_array(const value& ref) {
    if (!ref.is(value::kind::array_ref)) return bad("expected an array reference");
    const std::string& name = ref.as_string();
    if (name == packed_) return bad("the object tree refers to its own packed array");
    if (have_pool_ && name == pool_name_) return bad("the object tree refers to the array pool as an array");
    auto i = f_.find(name);
    if (!i) return bad("array '" + name + "' is not in the file");
    return std::pair<std::size_t, const array_info*>{*i, &f_.arrays()[*i]};
  }

  // Bytes of array i: a view of the mapping when raw, else a decoded private buffer.
  result<std::pair<std::span<const std::byte>, std::shared_ptr<const void>>> array_bytes(std::size_t i) {
    const array_info& info = f_.arrays()[i];
    if (info.codec == codec::raw) {
      auto v = f_.view(i, false);
      if (!v) return std::move(v).err();
      return std::pair{*v, keep_};
    }
    VITRIFY_TRY(charge(info.decoded_length));
    // Aligned like the arrays of a file image (64 bytes), so that views of a decoded pool keep
    // the alignment the writer gave them.
    auto buf = std::make_shared<aligned_bytes>(info.decoded_length);
    VITRIFY_TRY(f_.read_into(i, std::span<std::byte>(buf->data(), buf->size()), true));
    std::span<const std::byte> s(buf->data(), buf->size());
    return std::pair{s, std::shared_ptr<const void>(buf)};
  }

  result<void> array_node(node& out, const std::string& name) {
    auto fa = find_array(value::array_ref(name));
    if (!fa) return std::move(fa).err();
    auto [i, info] = *fa;
    out.k = node::kind::array;
    out.arr = std::make_shared<ndarray>();
    ndarray& a = *out.arr;
    for (auto s : info->shape) a.shape.push_back(static_cast<std::int64_t>(s));
    if (info->type == dtype::string) {
      VITRIFY_TRY(charge(info->decoded_length));
      auto strs = f_.read_strings(i, true);
      if (!strs) return std::move(strs).err();
      a.strings = std::move(strs).value();
      // attrs.numpy_dtype: "object" for a numpy object array of str, "<U n" for unicode (never
      // narrower than the longest item); anything else, or none, is unicode as wide as the
      // longest item ("U").
      a.dtype = "U";
      const value* hint = dget(info->attrs, "numpy_dtype");
      if (hint && hint->is(value::kind::string)) {
        if (hint->as_string() == "object") {
          a.dtype = "O";
          a.strings_are_objects = true;
        } else if (auto p = detail::parse_numpy_dtype(hint->as_string()); p && p->kind == 'U') {
          a.dtype = p->str;
        }
      }
      return {};
    }
    VITRIFY_TRY(numeric_from_table(a, i, *info));
    return {};
  }

  result<void> numeric_from_table(ndarray& a, std::size_t i, const array_info& info) {
    static const std::unordered_map<dtype, std::string> names = {
        {dtype::bool_, "|b1"}, {dtype::int8, "|i1"}, {dtype::int16, "<i2"}, {dtype::int32, "<i4"},
        {dtype::int64, "<i8"}, {dtype::uint8, "|u1"}, {dtype::uint16, "<u2"}, {dtype::uint32, "<u4"},
        {dtype::uint64, "<u8"}, {dtype::float16, "<f2"}, {dtype::bfloat16, "bfloat16"}, {dtype::float32, "<f4"},
        {dtype::float64, "<f8"}, {dtype::complex64, "<c8"}, {dtype::complex128, "<c16"},
        {dtype::float8_e4m3fn, "float8_e4m3fn"}, {dtype::float8_e5m2, "float8_e5m2"}};
    auto it = names.find(info.type);
    if (it == names.end()) return bad("array '" + info.name + "' has no numpy equivalent");
    a.dtype = it->second;
    a.itemsize = dtype_size(info.type);
    // Compressed arrays are charged by array_bytes when decoded; views of the mapping here.
    if (info.codec == codec::raw) VITRIFY_TRY(charge(info.decoded_length));
    auto b = array_bytes(i);
    if (!b) return std::move(b).err();
    a.data = b->first;
    a.owner = b->second;
    set_region(a);
    if (info.type == dtype::bool_) {
      for (std::byte x : a.data)
        if (static_cast<unsigned>(x) > 1) return bad("bool array '" + info.name + "' holds a byte other than 0 or 1");
    }
    return {};
  }

  result<spec_ptr> dtype_of(const value& t, int depth = 0) {
    if (depth > 8) return bad("dtype description nested too deeply");
    if (t.is(value::kind::string)) {
      auto it = str_cache_.find(t.as_string());
      if (it != str_cache_.end()) return it->second;
      auto d = parse_dtype_str(t.as_string());
      if (!d) return std::move(d).err();
      if (str_cache_.size() < 4096) str_cache_.emplace(t.as_string(), *d);
      return *d;
    }
    if (t.is(value::kind::integer)) {
      if (!dtypes_ || t.as_int() < 0 || static_cast<std::uint64_t>(t.as_int()) >= dtypes_->items().size())
        return bad("invalid dtype index " + std::to_string(t.as_int()));
      auto it = table_cache_.find(t.as_int());
      if (it != table_cache_.end()) return it->second;
      const value& entry = dtypes_->items()[static_cast<std::size_t>(t.as_int())];
      if (entry.is(value::kind::integer)) return bad("a dtypes table entry cannot be a table index");
      auto d = dtype_of(entry, depth + 1);
      if (!d) return std::move(d).err();
      if (!fixed_size_ok(**d)) return bad("dtypes table entry " + std::to_string(t.as_int()) + " is not a numeric or plain structured dtype");
      table_cache_.emplace(t.as_int(), *d);
      return *d;
    }
    if (const value* flds = dget(t, "fields")) {
      if (!flds->is(value::kind::list)) return bad("structured dtype fields must be a list");
      auto d = std::make_shared<dtype_spec>();
      std::int64_t itemsize = 0;
      if (!as_i64(dget(t, "itemsize"), itemsize) || itemsize <= 0 || static_cast<std::uint64_t>(itemsize) > detail::max_numpy_itemsize)
        return bad("invalid structured dtype itemsize");
      if (const value* al = dget(t, "aligned")) {
        if (!al->is(value::kind::boolean)) return bad("structured dtype 'aligned' must be a boolean");
        d->aligned = al->as_bool();
      }
      std::set<std::string_view> names;
      d->itemsize = static_cast<std::uint64_t>(itemsize);
      d->kind = 'V';
      d->str = "V" + std::to_string(itemsize);
      for (const auto& item : flds->items()) {
        if (!item.is(value::kind::list) || item.items().size() != 3 || !item.items()[0].is(value::kind::string) ||
            !item.items()[2].is(value::kind::integer))
          return bad("invalid structured dtype field (must be [name, dtype, offset])");
        if (!names.insert(item.items()[0].as_string()).second)
          return fail(errc::duplicate_name, "object tree: structured dtype names field '" + item.items()[0].as_string() + "' twice");
        auto sub = dtype_of(item.items()[1], depth + 1);
        if (!sub) return std::move(sub).err();
        if (!field_ok(**sub)) return bad("structured dtypes may only have plain numeric fields");
        std::int64_t off = item.items()[2].as_int();
        if (off < 0 || static_cast<std::uint64_t>(off) > d->itemsize || (*sub)->itemsize > d->itemsize - static_cast<std::uint64_t>(off))
          return bad("structured dtype field outside its record");
        d->fields.push_back(field{item.items()[0].as_string(), field_dtype_string(**sub), static_cast<std::uint64_t>(off), *sub});
      }
      return spec_ptr(std::move(d));
    }
    if (const value* b = dget(t, "base")) {
      // A sub-array description: numpy's (base, shape).
      auto base = dtype_of(*b, depth + 1);
      if (!base) return std::move(base).err();
      auto shape = shape_of(dget(t, "shape"));
      if (!shape) return std::move(shape).err();
      auto cnt = detail::element_count(std::span<const std::int64_t>(*shape));
      if (!cnt) return bad("sub-array dtype too large");
      auto n = detail::byte_count(*cnt, (*base)->itemsize);
      if (!n || *n > detail::max_numpy_itemsize) return bad("sub-array dtype too large");
      auto d = std::make_shared<dtype_spec>();
      d->itemsize = *n;
      d->kind = 'V';
      d->str = "V" + std::to_string(*n);
      d->base = *base;
      d->subshape = std::move(shape).value();
      return spec_ptr(std::move(d));
    }
    return bad("invalid dtype description");
  }


  result<std::vector<std::int64_t>> shape_of(const value* s) {
    if (!s || !s->is(value::kind::list)) return bad("array shape must be a list");
    if (s->items().size() > 64) return fail(errc::limit_exceeded, "object tree: array rank above 64");
    std::vector<std::int64_t> shape;
    for (const auto& x : s->items()) {
      if (!x.is(value::kind::integer) || x.as_int() < 0) return bad("invalid array shape");
      shape.push_back(x.as_int());
    }
    auto n = detail::element_count(std::span<const std::int64_t>(shape));
    if (!n) return bad("array shape too large: " + n.err().message);
    return shape;
  }

  static std::uint64_t product(const std::vector<std::int64_t>& s) {
    auto n = detail::element_count(std::span<const std::int64_t>(s));
    return n ? *n : UINT64_MAX;  // shape_of() checked it already
  }

  // Bytes of an array of `shape` and `itemsize`, checked for overflow and charged to the budget
  // (before anything checks that the bytes exist: a declared size over the budget is
  // limit_exceeded whatever else is wrong).
  result<std::uint64_t> array_size(const std::vector<std::int64_t>& shape, std::uint64_t itemsize) {
    auto cnt = detail::element_count(std::span<const std::int64_t>(shape));
    if (!cnt) return bad(std::move(cnt).err().message);
    auto n = detail::byte_count(*cnt, itemsize);
    if (!n) return bad(std::move(n).err().message);
    VITRIFY_TRY(charge(*n));
    return *n;
  }

  // A numeric or plain structured array from its stored bytes (inline, pooled or raw, C order
  // of the stored shape): bool bytes checked, big-endian numeric data swapped into a private
  // copy (structured records keep their bytes; `spec` says what each field is).
  result<void> fixed_size(ndarray& a, const spec_ptr& dt, std::vector<std::int64_t> shape, std::span<const std::byte> bytes,
                          std::shared_ptr<const void> owner, bool fortran) {
    if (dt->kind == 'b')
      for (std::byte x : bytes)
        if (static_cast<unsigned>(x) > 1) return bad("bool array holds a byte other than 0 or 1");
    a.dtype = dt->str;
    a.itemsize = dt->itemsize;
    a.fields = dt->fields;
    a.spec = dt;
    a.shape = std::move(shape);
    a.data = bytes;
    a.owner = std::move(owner);
    if (dt->big_endian) {
      VITRIFY_TRY(charge(bytes.size()));
      auto buf = std::make_shared<std::vector<std::byte>>(bytes.begin(), bytes.end());
      byteswap_inplace(buf->data(), a.count(), dt->kind == 'c' ? dt->itemsize / 2 : dt->itemsize);
      a.data = std::span<const std::byte>(buf->data(), buf->size());
      a.owner = buf;
    }
    set_region(a);
    if (fortran) {
      std::reverse(a.shape.begin(), a.shape.end());
      a.fortran = true;
    }
    return {};
  }

  // The buffer a.owner keeps alive: the file image, the pool, or exactly a.data.
  void set_region(ndarray& a) const {
    if (a.owner && a.owner == keep_) a.region = f_.bytes();
    else if (have_pool_ && a.owner && a.owner == pool_owner_) a.region = pool_;
    else a.region = a.data;
  }

  result<void> ndarray_node(node& out, const value& st, std::uint32_t depth) {
    if (!st.is(value::kind::dict)) return bad("invalid numpy.ndarray state");
    auto key = [&](const char* v2, const char* v1) { return dget(st, v1_ ? v1 : v2); };
    out.k = node::kind::array;
    out.arr = std::make_shared<ndarray>();
    ndarray& a = *out.arr;
    const value* order = key("o", "order");
    // Absent (or null) is C order; "F" is the only other order a writer may record.
    if (order && !order->is(value::kind::null) && !(order->is(value::kind::string) && order->as_string() == "F"))
      return bad("invalid array order (only \"F\" may be written)");
    const bool fortran = order && order->is(value::kind::string);
    const value* t = key("t", "dtype");
    auto fixed_dtype = [&](const char* what) -> result<spec_ptr> {
      if (!t) return bad(std::string(what) + " array without dtype");
      auto dt = dtype_of(*t);
      if (!dt) return std::move(dt).err();
      if (!fixed_size_ok(**dt)) return bad(std::string(what) + " arrays cannot have dtype " + (*dt)->str);
      return *dt;
    };
    if (const value* b = dget(st, "b"); b && !v1_) {
      if (!b->is(value::kind::string)) return bad("invalid inline array");
      auto dt = fixed_dtype("inline");
      if (!dt) return std::move(dt).err();
      auto shape = shape_of(dget(st, "s"));
      if (!shape) return std::move(shape).err();
      auto nbytes = array_size(*shape, (*dt)->itemsize);
      if (!nbytes) return std::move(nbytes).err();
      // base64 holds 3 bytes per 4 characters: compare before decoding anything.
      if (b->as_string().size() / 4 * 3 < *nbytes) return bad("inline array size does not match dtype and shape");
      auto raw = b64_decode(b->as_string());
      if (!raw) return std::move(raw).err();
      if (raw->size() != *nbytes) return bad("inline array size does not match dtype and shape");
      auto buf = std::make_shared<std::vector<std::byte>>(std::move(raw).value());
      return fixed_size(a, *dt, std::move(shape).value(), std::span<const std::byte>(buf->data(), buf->size()), buf, fortran);
    }
    if (const value* p = v1_ ? nullptr : dget(st, "p")) {
      // Version 3: {"p": [offset, nbytes], "t": dtype, "s": shape}, bytes in the pool.
      if (!have_pool_) return bad("the file has pooled arrays but no array pool");
      if (!p->is(value::kind::list) || p->items().size() != 2 || !p->items()[0].is(value::kind::integer) ||
          !p->items()[1].is(value::kind::integer))
        return bad("a pooled array reference must be [offset, nbytes]");
      auto dt = fixed_dtype("pooled");
      if (!dt) return std::move(dt).err();
      if ((*dt)->itemsize == 0) return bad("pooled arrays cannot have a zero-size dtype");
      auto shape = shape_of(dget(st, "s"));
      if (!shape) return std::move(shape).err();
      const std::int64_t off = p->items()[0].as_int(), n = p->items()[1].as_int();
      auto nbytes = array_size(*shape, (*dt)->itemsize);
      if (!nbytes) return std::move(nbytes).err();
      if (n < 0 || off < 0 || static_cast<std::uint64_t>(n) != *nbytes) return bad("pooled array size does not match dtype and shape");
      if (!detail::in_range(static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(n), pool_.size()))
        return bad("pooled array lies outside the array pool");
      if (n != 0 && off % 16 != 0) return bad("pooled array offset " + std::to_string(off) + " is not a multiple of 16");
      auto bytes = pool_.subspan(static_cast<std::size_t>(off), static_cast<std::size_t>(n));
      return fixed_size(a, *dt, std::move(shape).value(), bytes, pool_owner_, fortran);
    }
    if (const value* d = key("d", "data")) {
      auto fa = find_array(*d);
      if (!fa) return std::move(fa).err();
      auto [i, info] = *fa;
      if (info->type == dtype::string) return bad("numeric array state refers to a string array");
      for (auto s : info->shape) a.shape.push_back(static_cast<std::int64_t>(s));
      VITRIFY_TRY(numeric_from_table(a, i, *info));
      if (t) {
        auto dt = dtype_of(*t);
        if (!dt) return std::move(dt).err();
        // `t` records a big-endian original; the writer stored the values little-endian.
        if ((*dt)->itemsize != a.itemsize || (*dt)->kind == 'O' || (*dt)->kind == 'V') return bad("array dtype does not match its data");
        a.spec = *dt;
      }
      if (fortran) {
        std::reverse(a.shape.begin(), a.shape.end());
        a.fortran = true;
      }
      return {};
    }
    if (const value* u = key("u", "strings")) {
      auto fa = find_array(*u);
      if (!fa) return std::move(fa).err();
      if (fa->second->type != dtype::string) return bad("string array state refers to a numeric array");
      VITRIFY_TRY(array_node(out, fa->second->name));
      return {};
    }
    if (const value* items = key("i", "items")) {
      auto shape = shape_of(key("s", "shape"));
      if (!shape) return std::move(shape).err();
      if (!items->is(value::kind::list) || items->items().size() != product(*shape))
        return bad("object array item count does not match its shape");
      VITRIFY_TRY(charge(items->items().size() * sizeof(node_ptr)));
      a.dtype = "O";
      a.shape = std::move(shape).value();
      bool all_str = !items->items().empty();
      for (const auto& x : items->items()) {
        auto c = dec(x, depth + 2);
        if (!c) return std::move(c).err();
        if (!(*c)->is(node::kind::string)) all_str = false;
        a.items.push_back(std::move(c).value());
      }
      if (all_str) {
        for (auto& x : a.items) a.strings.push_back(x->text);
        a.items.clear();
        a.strings_are_objects = true;
      }
      return {};
    }
    const value* r = key("r", "raw");
    const value* y = r ? nullptr : key("y", "bytes");
    if (r || y) {
      if (!t) return bad("raw array without dtype");
      auto dtr = dtype_of(*t);
      if (!dtr) return std::move(dtr).err();
      const spec_ptr dt = *dtr;
      // r: numeric, datetime or plain structured; y: fixed-width bytes (OBJECTS.md 6.3).
      if (r ? !fixed_size_ok(*dt) : dt->kind != 'S') return bad(std::string("raw arrays (") + (r ? "r" : "y") + ") cannot have dtype " + dt->str);
      auto fa = find_array(r ? *r : *y);
      if (!fa) return std::move(fa).err();
      auto [i, info] = *fa;
      if (info->type != dtype::uint8 || info->shape.size() != 1) return bad("raw array data must be a 1-d uint8 array");
      auto shape = shape_of(key("s", "shape"));
      if (!shape) return std::move(shape).err();
      auto nbytes = array_size(*shape, dt->itemsize);
      if (!nbytes) return std::move(nbytes).err();
      if (info->count != *nbytes) return bad("raw array size does not match dtype and shape");
      auto bytes = array_bytes(i);
      if (!bytes) return std::move(bytes).err();
      std::vector<std::int64_t> stored = std::move(shape).value();
      // Version 1 recorded the logical shape of a Fortran array, versions 2 and 3 the stored one.
      if (fortran && v1_) std::reverse(stored.begin(), stored.end());
      if (dt->kind == 'S') {
        // Fixed-width byte strings (numpy strips trailing NULs on access).
        a.dtype = dt->str;
        a.spec = dt;
        a.shape = std::move(stored);
        const std::uint64_t count = product(a.shape);
        VITRIFY_TRY(charge(count * sizeof(std::string)));
        a.strings.reserve(count);
        for (std::uint64_t k = 0; k < count; ++k) {
          const char* q = reinterpret_cast<const char*>(bytes->first.data()) + k * dt->itemsize;
          std::size_t len = dt->itemsize;
          while (len && q[len - 1] == '\0') --len;
          a.strings.emplace_back(q, len);
        }
        if (fortran) {
          std::reverse(a.shape.begin(), a.shape.end());
          a.fortran = true;
        }
        return {};
      }
      return fixed_size(a, dt, std::move(stored), bytes->first, bytes->second, fortran);
    }
    return bad("invalid numpy.ndarray state");
  }

  // OBJECTS.md 5.4: ("MT19937", keys: 624 uint32, pos in [0, 624], has_gauss 0 or 1,
  // cached_gaussian a number), checked before numpy's set_state sees it.
  static result<void> check_random_state(const node& st) {
    auto refuse = [] {
      return bad("a numpy.random.RandomState state must be (\"MT19937\", 624 uint32 keys, pos in [0, 624], has_gauss 0 or 1, "
                 "cached_gaussian)");
    };
    if (st.k != node::kind::tuple || st.items.size() != 5) return refuse();
    const node* name = st.items[0];
    const node* keys = st.items[1];
    const node* pos = st.items[2];
    const node* gauss = st.items[3];
    const node* cached = st.items[4];
    if (!name || name->k != node::kind::string || name->text != "MT19937") return refuse();
    if (!keys || keys->k != node::kind::array || !keys->arr || keys->arr->dtype != "<u4" || keys->arr->shape.size() != 1 ||
        keys->arr->shape[0] != 624)
      return refuse();
    if (!pos || pos->k != node::kind::integer || pos->i < 0 || pos->i > 624) return refuse();
    const bool gauss_ok = gauss && ((gauss->k == node::kind::integer && (gauss->i == 0 || gauss->i == 1)) || gauss->k == node::kind::boolean);
    if (!gauss_ok) return refuse();
    if (!cached || (cached->k != node::kind::floating && cached->k != node::kind::integer)) return refuse();
    return {};
  }

  // `depth` is the depth of the state `st` (OBJECTS.md section 8: one below its $object); its
  // members are one deeper, the items of a member list two deeper, as the typed value nests them.
  result<void> object_node(node& out, const std::string& type, const value& st, std::uint32_t depth) {
    if (type == "numpy.ndarray") return ndarray_node(out, st, depth);
    if (type == "vitrify.global") {
      if (!st.is(value::kind::string)) return bad("vitrify.global state must be a name");
      out.k = node::kind::global;
      out.text = st.as_string();
      return {};
    }
    if (type == "numpy.generic") {
      const value* t = dget(st, v1_ ? "dtype" : "t");
      const value* b = dget(st, v1_ ? "bytes" : "b");
      if (!t || !b || !b->is(value::kind::string)) return bad("invalid numpy scalar");
      auto dtr = dtype_of(*t);
      if (!dtr) return std::move(dtr).err();
      const spec_ptr dt = *dtr;
      if (dt->kind == 'O') return bad("object scalars are not allowed");
      auto raw = b64_decode(b->as_string());
      if (!raw) return std::move(raw).err();
      if (raw->size() != dt->itemsize) return bad("numpy scalar has the wrong number of bytes");
      if (dt->big_endian) byteswap_inplace(raw->data(), 1, dt->kind == 'c' ? dt->itemsize / 2 : dt->itemsize);
      auto buf = std::make_shared<std::vector<std::byte>>(std::move(raw).value());
      out.k = node::kind::scalar;
      out.arr = std::make_shared<ndarray>();
      out.arr->dtype = dt->str;
      out.arr->itemsize = dt->itemsize;
      out.arr->fields = dt->fields;
      out.arr->spec = dt;
      out.arr->data = std::span<const std::byte>(buf->data(), buf->size());
      out.arr->owner = buf;
      return {};
    }
    if (type == "numpy.dtype") {
      auto dtr = dtype_of(st);
      if (!dtr) return std::move(dtr).err();
      const spec_ptr dt = *dtr;
      out.k = node::kind::dtype;
      out.text = dt->str;
      out.arr = std::make_shared<ndarray>();
      out.arr->dtype = dt->str;
      out.arr->itemsize = dt->itemsize;
      out.arr->fields = dt->fields;
      out.arr->spec = dt;
      return {};
    }
    if (type == "builtins.set" || type == "builtins.frozenset") {
      if (!st.is(value::kind::list)) return bad(type + " state must be a list");
      out.k = type == "builtins.set" ? node::kind::set : node::kind::frozenset;
      for (const auto& x : st.items()) {
        auto c = dec(x, depth + 1);
        if (!c) return std::move(c).err();
        out.items.push_back(std::move(c).value());
      }
      return {};
    }
    if (type == "builtins.complex") {
      auto is_num = [](const value& v) { return v.is(value::kind::integer) || v.is(value::kind::floating) || v.is(value::kind::big_integer); };
      if (!st.is(value::kind::list) || st.items().size() != 2 || !is_num(st.items()[0]) || !is_num(st.items()[1]))
        return bad("a complex must be a list of two numbers");
      auto num = [](const value& v) {
        if (v.is(value::kind::integer)) return static_cast<double>(v.as_int());
        if (v.is(value::kind::big_integer)) return std::strtod(v.as_string().c_str(), nullptr);  // as Python's float(int): may round
        return v.as_double();
      };
      out.k = node::kind::complex;
      out.d = num(st.items()[0]);
      out.imag = num(st.items()[1]);
      return {};
    }
    // Everything else (numpy.random.*, slices, ranges, user-visible classes): an object node
    // holding the reduce pieces (or, for the special builtins, their state as args).
    out.k = node::kind::object;
    out.obj = std::make_shared<object>();
    object& o = *out.obj;
    o.type = type;
    static const std::set<std::string, std::less<>> special = {
        "numpy.random.RandomState", "numpy.random.Generator", "numpy.ma.MaskedArray",
        "builtins.slice", "builtins.range", "builtins.bytearray"};
    if (special.count(type)) {
      if (type == "numpy.random.Generator") {
        const value* bg = dget(st, "bit_generator");
        const value* bgs = dget(st, "state");
        if (!bg || !bg->is(value::kind::string) || !bgs || !bgs->is(value::kind::dict))
          return bad("a numpy.random.Generator state must be {\"bit_generator\": name, \"state\": dict}");
      }
      auto s = dec(st, depth);
      if (!s) return std::move(s).err();
      o.state = std::move(s).value();
      if (type == "numpy.random.RandomState") VITRIFY_TRY(check_random_state(*o.state));
      return {};
    }
    if (!st.is(value::kind::dict)) return bad("object state of " + type + " must be a dict");
    auto k = [&](const char* v2, const char* v1) { return dget(st, v1_ ? v1 : v2); };
    if (const value* n = k("n", "new")) o.newobj = n->is(value::kind::boolean) && n->as_bool();
    if (const value* a = k("a", "args")) {
      if (!a->is(value::kind::list)) return bad("args of " + type + " must be a list");
      for (const auto& x : a->items()) {
        auto c = dec(x, depth + 2);
        if (!c) return std::move(c).err();
        o.args.push_back(std::move(c).value());
      }
    }
    if (const value* kw = k("kw", "kwargs")) {
      bool ok = kw->is(value::kind::dict);
      for (std::size_t j = 0; ok && j < kw->dict_size(); ++j) ok = kw->dict_key(j).is(value::kind::string);
      if (!ok) return bad("kwargs of " + type + " must be a dict with string keys");
      auto c = dec(*kw, depth + 1);
      if (!c) return std::move(c).err();
      o.kwargs = std::move(c).value();
    }
    if (const value* s = k("s", "state")) {
      const value* ks = v1_ ? nullptr : dget(st, "k");
      if (ks) {
        if (!ks->is(value::kind::integer) || !keys_ || ks->as_int() < 0 ||
            static_cast<std::uint64_t>(ks->as_int()) >= keys_->items().size())
          return bad("invalid keyset index in " + type);
        const value& names = keys_->items()[static_cast<std::size_t>(ks->as_int())];
        if (!names.is(value::kind::list) || !s->is(value::kind::list) || names.items().size() != s->items().size())
          return bad("state of " + type + " does not match its keys");
        auto dn = make();
        if (!dn) return std::move(dn).err();
        node_ptr d = *dn;
        d->k = node::kind::dict;
        auto keys = keyset(ks->as_int(), names);
        if (!keys) return std::move(keys).err();
        d->entries.reserve((*keys)->size());
        for (std::size_t j = 0; j < (*keys)->size(); ++j) {
          auto val = dec(s->items()[j], depth + 2);
          if (!val) return std::move(val).err();
          d->entries.emplace_back((**keys)[j], std::move(val).value());
        }
        o.state = d;
      } else {
        auto c = dec(*s, depth + 1);
        if (!c) return std::move(c).err();
        o.state = std::move(c).value();
      }
    }
    if (const value* li = k("li", "listitems")) {
      if (!li->is(value::kind::list)) return bad("listitems must be a list");
      for (const auto& x : li->items()) {
        auto c = dec(x, depth + 2);
        if (!c) return std::move(c).err();
        o.listitems.push_back(std::move(c).value());
      }
    }
    if (const value* di = k("di", "dictitems")) {
      if (!di->is(value::kind::list)) return bad("dictitems must be a list");
      for (const auto& x : di->items()) {
        if (!x.is(value::kind::list) || x.items().size() != 2) return bad("dictitems entries must be pairs");
        auto kk = dec(x.items()[0], depth + 3);
        if (!kk) return std::move(kk).err();
        auto vv = dec(x.items()[1], depth + 3);
        if (!vv) return std::move(vv).err();
        o.dictitems.emplace_back(std::move(kk).value(), std::move(vv).value());
      }
    }
    return {};
  }

  graph& g_;
  const file& f_;
  decode_limits lim_;
  std::shared_ptr<const void> keep_;
  bool v1_;
  std::string packed_;
  std::string pool_name_;
  std::span<const std::byte> pool_;
  std::shared_ptr<const void> pool_owner_;
  bool have_pool_ = false;
  const value* keys_ = nullptr;
  const value* dtypes_ = nullptr;
  std::uint64_t nodes_ = 0;
  std::uint64_t budget_;  // bytes the graph may still declare
  std::unordered_map<std::int64_t, node_ptr> shared_;
  std::unordered_map<std::string, spec_ptr> str_cache_;     // dtype strings already parsed
  std::unordered_map<std::int64_t, std::vector<node_ptr>> keysets_;  // key nodes of the keysets used
  std::unordered_map<std::int64_t, spec_ptr> table_cache_;  // dtypes table entries already checked
};

}  // namespace

std::uint64_t ndarray::count() const noexcept {
  std::uint64_t n = 1;
  for (auto s : shape) n *= static_cast<std::uint64_t>(s);
  return n;
}

char ndarray::kind() const noexcept {
  if (dtype == "O") return 'O';
  if (dtype == "U") return 'U';
  if (dtype == "bfloat16" || dtype.rfind("float8_", 0) == 0) return 'f';
  if (dtype.size() >= 2) return (dtype[0] == '<' || dtype[0] == '>' || dtype[0] == '|' || dtype[0] == '=') ? dtype[1] : dtype[0];
  return '?';
}

const node* node::get(std::string_view key) const noexcept {
  if (k != kind::dict) return nullptr;
  for (const auto& [kk, vv] : entries)
    if (kk && kk->k == kind::string && kk->text == key) return vv;
  return nullptr;
}

const node* node::attr(std::string_view key) const noexcept {
  if (k != kind::object || !obj || !obj->state) return nullptr;
  const node* st = obj->state;
  // (dict, slotstate) tuples: look in the dict part
  if (st->k == kind::tuple && st->items.size() == 2 && st->items[0]) st = st->items[0];
  return st->get(key);
}

std::string_view node::type_name() const noexcept {
  if (k == kind::object && obj) return obj->type;
  if (k == kind::global) return text;
  return {};
}

result<std::shared_ptr<graph>> decode_objects(const file& f, const decode_limits& lim) {
  const value& c = f.content();
  const value* kind = dget(c, "kind");
  if (!kind || !kind->is(value::kind::string) || kind->as_string() != "vitrify.python-object")
    return fail(errc::bad_value, "the file's content is not a vitrify Python object (saved with vitrify.dump)");
  std::int64_t version = 0;
  if (!as_i64(dget(c, "version"), version) || version < 1 || version > 3)
    return fail(errc::unsupported_version, "object encoding version " + std::to_string(version) + " is not supported (this vitrify reads 1, 2, 3)");
  // The file must stay mapped while the graph's array views live: share its storage through
  // a copy of the file object (copies share the mapping).
  auto keep = std::make_shared<const file>(f);
  auto g = std::make_shared<graph>();
  g->keep(keep);
  auto finish = [&](result<node_ptr> r) -> result<std::shared_ptr<graph>> {
    if (!r) return std::move(r).err();
    g->root = *r;
    return g;
  };
  if (version == 1) {
    const value* root = dget(c, "root");
    if (!root) return bad("no root");
    decoder d(*g, *keep, lim, keep, true, "");
    return finish(d.dec(*root, 0));
  }
  const value* packed = dget(c, "packed");
  if (!packed || !packed->is(value::kind::array_ref))
    return bad("object encoding version " + std::to_string(version) + " needs a packed tree ({\"$array\": name})");
  const std::string& name = packed->as_string();
  auto idx = f.find(name);
  if (!idx) return bad("the packed object tree '" + name + "' is not in the file");
  const array_info& info = f.arrays()[*idx];
  if (info.type != dtype::uint8 || info.shape.size() != 1) return bad("the packed object tree must be a 1-D uint8 array");
  if (info.decoded_length > lim.byte_budget(f.size()))
    return fail(errc::limit_exceeded, "the packed object tree of " + std::to_string(info.decoded_length) + " bytes exceeds the file's budget");
  std::string text(info.decoded_length, '\0');
  VITRIFY_TRY(f.read_into(*idx, std::as_writable_bytes(std::span<char>(text.data(), text.size())), true));
  auto body = parse_value(text, value_limits{lim.json_depth(), lim.max_nodes});
  if (!body) return std::move(body).err();
  const value* root = dget(*body, "root");
  if (!root) return bad("the packed object tree has no root");
  decoder d(*g, *keep, lim, keep, false, name);
  VITRIFY_TRY(d.set_tables(dget(*body, "keys"), dget(*body, "dtypes")));
  if (const value* pool = version >= 3 ? dget(c, "pool") : nullptr) {
    if (!pool->is(value::kind::array_ref)) return bad("invalid array pool reference");
    if (pool->as_string() == name) return bad("the array pool and the packed object tree are the same array");
    auto pi = f.find(pool->as_string());
    if (!pi) return bad("the array pool '" + pool->as_string() + "' is not in the file");
    const array_info& pinfo = f.arrays()[*pi];
    if (pinfo.type != dtype::uint8 || pinfo.shape.size() != 1) return bad("the array pool must be a 1-D uint8 array");
    VITRIFY_TRY(d.set_pool(*pi));
  }
  return finish(d.dec(*root, 0));
}

namespace {
void collect(const node* n, std::set<std::string>& out, std::set<const node*>& seen) {
  if (!n || !seen.insert(n).second) return;
  if (n->k == node::kind::global) out.insert(n->text);
  if (n->k == node::kind::object && n->obj) {
    out.insert(n->obj->type);
    for (auto& a : n->obj->args) collect(a, out, seen);
    collect(n->obj->kwargs, out, seen);
    collect(n->obj->state, out, seen);
    for (auto& a : n->obj->listitems) collect(a, out, seen);
    for (auto& [k, v] : n->obj->dictitems) {
      collect(k, out, seen);
      collect(v, out, seen);
    }
  }
  for (auto& x : n->items) collect(x, out, seen);
  for (auto& [k, v] : n->entries) {
    collect(k, out, seen);
    collect(v, out, seen);
  }
  if (n->arr)
    for (auto& x : n->arr->items) collect(x, out, seen);
}
}  // namespace

std::vector<std::string> referenced_names(const node& root) {
  std::set<std::string> out;
  std::set<const node*> seen;
  collect(&root, out, seen);
  return {out.begin(), out.end()};
}

}  // namespace vitrify::pyobj
