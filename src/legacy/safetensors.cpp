// safetensors import and export, and tensors files (see include/vitrify/tensors.hpp).
//
// A safetensors file is `u64 N | N bytes of JSON | data`. The header is parsed with the same
// care as a vitrify header: N bounded before anything is read, JSON through simdjson (UTF-8
// checked, duplicate keys refused), every number an exact u64, every offset checked with
// overflow-checked arithmetic, and the tensors must tile the data section exactly, so that no
// byte of the file is unaccounted for.
#include "vitrify/tensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_set>

#include "format/internal.hpp"
#include "core/value_json.hpp"

namespace vitrify::tensors {

namespace {

// safetensors dtype names in safetensors' own enum order, which is its alignment order: the
// safetensors writer lays tensors out by descending rank here, then by name.
struct st_dtype {
  std::string_view name;
  dtype type;
};
constexpr std::array<st_dtype, 15> st_dtypes{{
    {"BOOL", dtype::bool_},
    {"U8", dtype::uint8},
    {"I8", dtype::int8},
    {"F8_E5M2", dtype::float8_e5m2},
    {"F8_E4M3", dtype::float8_e4m3fn},
    {"I16", dtype::int16},
    {"U16", dtype::uint16},
    {"F16", dtype::float16},
    {"BF16", dtype::bfloat16},
    {"I32", dtype::int32},
    {"U32", dtype::uint32},
    {"F32", dtype::float32},
    {"F64", dtype::float64},
    {"I64", dtype::int64},
    {"U64", dtype::uint64},
}};

std::size_t st_rank(dtype t) noexcept {
  for (std::size_t i = 0; i < st_dtypes.size(); ++i)
    if (st_dtypes[i].type == t) return i;
  return 0;
}

std::string num(std::uint64_t v) { return std::to_string(v); }

result<std::uint64_t> json_u64(simdjson::dom::element e, const std::string& where) {
  using et = simdjson::dom::element_type;
  if (e.type() == et::INT64) {
    std::int64_t v = e.get_int64().value_unsafe();
    if (v < 0) return fail(errc::bad_header, where + " is negative");
    return static_cast<std::uint64_t>(v);
  }
  if (e.type() == et::UINT64) return e.get_uint64().value_unsafe();
  return fail(errc::bad_header, where + " must be a non-negative integer");
}

/// Members of a JSON object in file order, refusing duplicate keys (serde would silently keep
/// the last one; two readers must never disagree on which tensor a name means).
result<std::vector<std::pair<std::string_view, simdjson::dom::element>>> object_members(simdjson::dom::element e,
                                                                                         const std::string& where) {
  simdjson::dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return fail(errc::bad_header, where + " must be a JSON object");
  std::vector<std::pair<std::string_view, simdjson::dom::element>> out;
  out.reserve(o.size());
  std::unordered_set<std::string_view> seen;
  seen.reserve(o.size());
  for (auto f : o) {
    if (!seen.insert(f.key).second)
      return fail(errc::duplicate_name, where + " has the key \"" + std::string(f.key) + "\" twice");
    out.emplace_back(f.key, f.value);
  }
  return out;
}

// ---- output files ------------------------------------------------------------------------------

error sys_fail(const std::string& what, int e) { return error{errc::io_error, what + ": " + std::strerror(e), e}; }

/// A file written to a temporary name in the target's folder and renamed over the target on
/// commit (never observable half-written), like vitrify's own writer.
class atomic_file {
 public:
  ~atomic_file() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  }

  result<void> open(const std::filesystem::path& target) {
    target_ = target.string();
    struct stat st {};
    if (::lstat(target_.c_str(), &st) == 0 && (S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode)))
      return fail(errc::invalid_argument, target_ + ": target is a symbolic link or a folder; refusing to replace it");
    std::filesystem::path dir = target.parent_path();
    if (dir.empty()) dir = ".";
    dir_ = dir.string();
    std::string tmpl = (dir / ("." + target.filename().string() + ".st-tmp-XXXXXX")).string();
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) return sys_fail(target_ + ": cannot create a temporary file", errno);
    tmp_ = tmpl;
    // mkstemp makes the file 0600; give it the mode a plain creat() would.
    mode_t um = ::umask(0);
    ::umask(um);
    if (::fchmod(fd_, 0666 & ~um) != 0) return sys_fail(target_ + ": chmod failed", errno);
    return {};
  }

  result<void> write(std::span<const std::byte> b) {
    const std::byte* p = b.data();
    std::size_t n = b.size();
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        return sys_fail(target_ + ": write failed", errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return {};
  }

  result<void> commit(bool durable) {
    if (durable && ::fsync(fd_) != 0) return sys_fail(target_ + ": fsync failed", errno);
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return sys_fail(target_ + ": close failed", errno);
    if (::rename(tmp_.c_str(), target_.c_str()) != 0) return sys_fail(target_ + ": rename failed", errno);
    committed_ = true;
    if (durable) {
      int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        int r = ::fsync(dfd);
        int e = errno;
        ::close(dfd);
        if (r != 0) return sys_fail(dir_ + ": fsync of folder failed", e);
      }
    }
    return {};
  }

 private:
  int fd_ = -1;
  bool committed_ = false;
  std::string target_, tmp_, dir_;
};

/// The header and data order of a safetensors image, as the safetensors library lays it out.
struct st_plan {
  std::string header;                    // JSON padded with spaces to a multiple of 8 bytes
  std::vector<const tensor_ref*> order;  // data order
  std::uint64_t data_bytes = 0;
};

result<st_plan> plan_safetensors(std::span<const tensor_ref> tensors,
                                 const std::optional<std::vector<std::pair<std::string, std::string>>>& metadata) {
  st_plan p;
  std::unordered_set<std::string_view> names;
  for (const tensor_ref& t : tensors) {
    if (safetensors_dtype_name(t.type).empty())
      return fail(errc::unknown_dtype, "tensor \"" + t.name + "\": dtype " + std::string(dtype_name(t.type)) +
                                           " has no safetensors equivalent");
    if (t.name == "__metadata__") return fail(errc::bad_name, "a tensor cannot be named \"__metadata__\" in safetensors");
    if (!names.insert(t.name).second) return fail(errc::duplicate_name, "tensor \"" + t.name + "\" given twice");
    auto count = detail::element_count(t.shape);
    if (!count) return fail(errc::invalid_argument, "tensor \"" + t.name + "\": " + count.err().message);
    std::uint64_t need;
    if (detail::mul_overflow(*count, dtype_size(t.type), &need) || need != t.data.size())
      return fail(errc::invalid_argument, "tensor \"" + t.name + "\": " + num(t.data.size()) +
                                              " bytes do not match its dtype and shape");
    p.order.push_back(&t);
  }
  std::sort(p.order.begin(), p.order.end(), [](const tensor_ref* a, const tensor_ref* b) {
    std::size_t ra = st_rank(a->type), rb = st_rank(b->type);
    if (ra != rb) return ra > rb;
    return a->name < b->name;  // byte order, like Rust's String ordering
  });
  std::string& h = p.header;
  h += '{';
  bool first = true;
  if (metadata) {
    std::vector<const std::pair<std::string, std::string>*> kv;
    std::unordered_set<std::string_view> keys;
    for (const auto& e : *metadata) {
      if (!keys.insert(e.first).second) return fail(errc::duplicate_name, "metadata key \"" + e.first + "\" given twice");
      kv.push_back(&e);
    }
    std::sort(kv.begin(), kv.end(), [](auto* a, auto* b) { return a->first < b->first; });
    h += R"("__metadata__":{)";
    for (std::size_t i = 0; i < kv.size(); ++i) {
      if (i) h += ',';
      detail::append_json_string(h, kv[i]->first);
      h += ':';
      detail::append_json_string(h, kv[i]->second);
    }
    h += '}';
    first = false;
  }
  std::uint64_t off = 0;
  for (const tensor_ref* t : p.order) {
    if (!first) h += ',';
    first = false;
    detail::append_json_string(h, t->name);
    h += R"(:{"dtype":")";
    h += safetensors_dtype_name(t->type);
    h += R"(","shape":[)";
    for (std::size_t k = 0; k < t->shape.size(); ++k) {
      if (k) h += ',';
      h += num(t->shape[k]);
    }
    std::uint64_t end;
    if (detail::add_overflow(off, t->data.size(), &end)) return fail(errc::invalid_argument, "tensors too large");
    h += R"(],"data_offsets":[)" + num(off) + ',' + num(end) + "]}";
    off = end;
  }
  h += '}';
  if (!detail::valid_utf8(h.data(), h.size()))
    return fail(errc::invalid_argument, "a tensor name or metadata string is not valid UTF-8");
  h.append((8 - h.size() % 8) % 8, ' ');
  p.data_bytes = off;
  return p;
}

std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

result<std::shared_ptr<storage>> map_input(const std::filesystem::path& in) {
  auto st = detail::map_file(in.string(), false);
  if (!st && st.code() == errc::truncated) return fail(errc::truncated, in.string() + ": file is empty");
  return st;
}

value string_dict(const std::vector<std::pair<std::string, std::string>>& kv) {
  value d = value::dict();
  for (const auto& [k, v] : kv) d.dict_set(value::string(k), value::string(v));
  return d;
}

}  // namespace

// ---- dtypes ------------------------------------------------------------------------------------

std::optional<dtype> dtype_from_safetensors(std::string_view name) noexcept {
  for (const auto& d : st_dtypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

std::string_view safetensors_dtype_name(dtype t) noexcept {
  for (const auto& d : st_dtypes)
    if (d.type == t) return d.name;
  return {};
}

// ---- parsing -----------------------------------------------------------------------------------

result<safetensors_view> parse_safetensors(std::span<const std::byte> image, const safetensors_limits& lim) {
  const std::uint64_t size = image.size();
  if (size < 8) return fail(errc::truncated, "safetensors: " + num(size) + " bytes, shorter than the 8-byte header length");
  safetensors_view v;
  v.header_length = detail::load_u64(image.data());
  if (v.header_length > lim.max_header_bytes)
    return fail(errc::limit_exceeded, "safetensors: header length " + num(v.header_length) + " exceeds the limit " +
                                          num(lim.max_header_bytes));
  if (v.header_length > size - 8)
    return fail(errc::truncated, "safetensors: header length " + num(v.header_length) + " runs past the end of the " +
                                     num(size) + "-byte file");
  if (v.header_length < 2) return fail(errc::bad_header, "safetensors: header of " + num(v.header_length) + " bytes cannot hold a JSON object");
  v.data_offset = 8 + v.header_length;
  const char* hdr = reinterpret_cast<const char*>(image.data() + 8);
  // The reference implementation requires the header to start with '{' (no BOM, no whitespace).
  if (hdr[0] != '{') return fail(errc::bad_header, "safetensors: the header does not start with '{'");

  simdjson::dom::parser parser;
  // A valid header nests 3 levels (root, entry, shape); 16 leaves room and bounds the parser.
  if (auto ec = parser.allocate(v.header_length + 64, 16)) return detail::json_error(ec, "safetensors header");
  simdjson::dom::element root;
  if (auto ec = parser.parse(hdr, v.header_length, true).get(root))
    return detail::json_error(ec, "safetensors header");
  auto top = object_members(root, "safetensors header");
  if (!top) return std::move(top).err();
  if (top->size() > lim.max_tensors + 1)
    return fail(errc::limit_exceeded, "safetensors: " + num(top->size()) + " header entries, limit " + num(lim.max_tensors));

  const std::uint64_t data_len = size - v.data_offset;
  v.tensors.reserve(top->size());
  for (auto& [key, val] : *top) {
    if (key == "__metadata__") {
      if (val.is_null()) continue;  // serde reads null as "no metadata"
      v.has_metadata = true;
      auto mem = object_members(val, "safetensors __metadata__");
      if (!mem) return std::move(mem).err();
      if (mem->size() > lim.max_metadata_entries)
        return fail(errc::limit_exceeded, "safetensors: __metadata__ has " + num(mem->size()) + " entries");
      for (auto& [mk, mv] : *mem) {
        std::string_view s;
        if (mv.get_string().get(s) != simdjson::SUCCESS)
          return fail(errc::bad_header, "safetensors: __metadata__[\"" + std::string(mk) + "\"] is not a string");
        v.metadata.emplace_back(std::string(mk), std::string(s));
      }
      continue;
    }
    const std::string name(key);
    const std::string where = "safetensors: tensor \"" + name + "\"";
    if (auto ok = detail::check_name(name, lim.max_name_bytes); !ok)
      return fail(ok.code(), where + ": " + ok.err().message);
    auto mem = object_members(val, where);
    if (!mem) return std::move(mem).err();
    std::optional<simdjson::dom::element> e_dtype, e_shape, e_offsets;
    for (auto& [k, e] : *mem) {
      if (k == "dtype") e_dtype = e;
      else if (k == "shape") e_shape = e;
      else if (k == "data_offsets") e_offsets = e;
      else return fail(errc::bad_header, where + " has an unknown member \"" + std::string(k) + "\"");
    }
    if (!e_dtype || !e_shape || !e_offsets)
      return fail(errc::bad_header, where + " lacks a required member (dtype, shape, data_offsets)");
    safetensors_tensor t;
    t.name = name;
    {
      std::string_view s;
      if (e_dtype->get_string().get(s) != simdjson::SUCCESS) return fail(errc::bad_header, where + ": dtype must be a string");
      auto d = dtype_from_safetensors(s);
      if (!d) return fail(errc::unknown_dtype, where + ": dtype \"" + std::string(s) + "\" is not one vitrify can store");
      t.type = *d;
    }
    {
      simdjson::dom::array sh;
      if (e_shape->get_array().get(sh) != simdjson::SUCCESS) return fail(errc::bad_header, where + ": shape must be an array");
      if (sh.size() > lim.max_rank)
        return fail(errc::limit_exceeded, where + ": rank " + num(sh.size()) + " exceeds the limit " + num(lim.max_rank));
      for (auto d : sh) {
        auto dv = json_u64(d, where + " shape entry");
        if (!dv) return std::move(dv).err();
        t.shape.push_back(*dv);
      }
    }
    {
      simdjson::dom::array oa;
      if (e_offsets->get_array().get(oa) != simdjson::SUCCESS || oa.size() != 2)
        return fail(errc::bad_header, where + ": data_offsets must be an array of two integers");
      auto b = json_u64(oa.at(0).value_unsafe(), where + " data_offsets[0]");
      if (!b) return std::move(b).err();
      auto e = json_u64(oa.at(1).value_unsafe(), where + " data_offsets[1]");
      if (!e) return std::move(e).err();
      t.begin = *b;
      t.end = *e;
    }
    auto count = detail::element_count(t.shape);
    if (!count) return fail(errc::bad_array, where + ": " + count.err().message);
    std::uint64_t nbytes;
    if (detail::mul_overflow(*count, dtype_size(t.type), &nbytes))
      return fail(errc::bad_array, where + ": byte size overflows 64 bits");
    if (t.end < t.begin) return fail(errc::bad_layout, where + ": data_offsets end before they begin");
    if (t.end > data_len)
      return fail(errc::truncated, where + ": data_offsets [" + num(t.begin) + ", " + num(t.end) + ") run past the " +
                                       num(data_len) + "-byte data section");
    if (t.end - t.begin != nbytes)
      return fail(errc::bad_array, where + ": " + num(t.end - t.begin) + " bytes, but dtype and shape need " + num(nbytes));
    t.data = image.subspan(static_cast<std::size_t>(v.data_offset + t.begin), static_cast<std::size_t>(nbytes));
    v.tensors.push_back(std::move(t));
  }
  // Every data byte belongs to exactly one tensor: in offset order each starts where the
  // previous one ended, and the last one ends at the end of the file.
  std::sort(v.tensors.begin(), v.tensors.end(), [](const safetensors_tensor& a, const safetensors_tensor& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  std::uint64_t pos = 0;
  for (const auto& t : v.tensors) {
    if (t.begin < pos)
      return fail(errc::bad_layout, "safetensors: tensor \"" + t.name + "\" at [" + num(t.begin) + ", " + num(t.end) +
                                        ") overlaps the previous tensor (which ends at " + num(pos) + ")");
    if (t.begin > pos)
      return fail(errc::bad_layout, "safetensors: " + num(t.begin - pos) + " bytes at data offset " + num(pos) +
                                        " belong to no tensor (a hole before \"" + t.name + "\")");
    pos = t.end;
  }
  if (pos != data_len)
    return fail(errc::bad_layout, "safetensors: " + num(data_len - pos) + " bytes after the last tensor belong to no tensor");
  return v;
}

// ---- writing -----------------------------------------------------------------------------------

result<std::vector<std::byte>> safetensors_bytes(std::span<const tensor_ref> tensors,
                                                 const std::optional<std::vector<std::pair<std::string, std::string>>>& metadata) {
  auto p = plan_safetensors(tensors, metadata);
  if (!p) return std::move(p).err();
  std::vector<std::byte> out;
  out.reserve(8 + p->header.size() + p->data_bytes);
  std::byte n[8];
  detail::store_u64(n, p->header.size());
  out.insert(out.end(), n, n + 8);
  auto h = as_bytes(p->header);
  out.insert(out.end(), h.begin(), h.end());
  for (const tensor_ref* t : p->order) out.insert(out.end(), t->data.begin(), t->data.end());
  return out;
}

result<void> write_tensors_file(const std::filesystem::path& out, std::span<const tensor_ref> tensors,
                                std::span<const std::pair<std::string, std::string>> aliases, const value& metadata,
                                std::string_view source, const write_options& opt) {
  std::unordered_set<std::string_view> names;
  for (const auto& t : tensors) names.insert(t.name);
  value alias_map = value::dict();
  for (const auto& alias : aliases) {
    // (named members, not a structured binding: clang 14 cannot capture bindings in lambdas)
    const std::string& name = alias.first;
    const std::string& target = alias.second;
    if (auto ok = detail::check_name(name, limits{}.max_name_bytes); !ok)
      return fail(errc::invalid_argument, "alias \"" + name + "\": " + ok.err().message);
    if (!names.insert(name).second) return fail(errc::duplicate_name, "tensor name \"" + name + "\" used twice");
    if (std::none_of(tensors.begin(), tensors.end(), [&](const tensor_ref& t) { return t.name == target; }))
      return fail(errc::invalid_argument, "alias \"" + name + "\" refers to \"" + target + "\", which is not a stored tensor");
    alias_map.dict_set(value::string(name), value::array_ref(target));
  }
  auto w = writer::create(out, opt.writer);
  if (!w) return std::move(w).err();
  for (const auto& t : tensors) VITRIFY_TRY(w->add_array(t.name, t.type, t.shape, t.data, opt.how));
  value content = value::dict();
  content.dict_set(value::string("kind"), value::string(std::string(content_kind)));
  content.dict_set(value::string("version"), value::integer(content_version));
  content.dict_set(value::string("source"), value::string(std::string(source)));
  if (alias_map.dict_size() > 0) content.dict_set(value::string("aliases"), std::move(alias_map));
  w->set_content(std::move(content));
  w->set_metadata(metadata);
  return w->commit();
}

result<std::vector<tensor_entry>> tensor_entries(const file& f) {
  std::vector<tensor_entry> out;
  const auto arrays = f.arrays();
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    if (arrays[i].type == dtype::string)
      return fail(errc::unknown_dtype, f.name() + ": array \"" + arrays[i].name + "\" holds strings, not a tensor");
    out.push_back({arrays[i].name, i, false});
  }
  const value& c = f.content();
  if (c.is(value::kind::null)) return out;  // a plain dict of arrays (vitrify.save_arrays)
  const value* kind = c.get("kind");
  if (!c.is(value::kind::dict) || !kind || !kind->is(value::kind::string) || kind->as_string() != content_kind)
    return fail(errc::bad_value, f.name() + ": the file's content is not a dict of tensors (content kind \"" +
                                     std::string(kind && kind->is(value::kind::string) ? kind->as_string() : "?") +
                                     "\", expected \"" + std::string(content_kind) + "\")");
  const value* version = c.get("version");
  if (!version || !version->is(value::kind::integer) || version->as_int() < 1)
    return fail(errc::bad_value, f.name() + ": tensors content has no valid version");
  if (version->as_int() > content_version)
    return fail(errc::unsupported_feature, f.name() + ": tensors content version " + std::to_string(version->as_int()) +
                                               " is newer than this library reads (" + std::to_string(content_version) + ")");
  const value* aliases = c.get("aliases");
  if (!aliases || aliases->is(value::kind::null)) return out;
  if (!aliases->is(value::kind::dict)) return fail(errc::bad_value, f.name() + ": tensors content \"aliases\" is not a dict");
  std::unordered_set<std::string_view> names;
  for (const auto& a : arrays) names.insert(a.name);
  for (std::size_t k = 0; k < aliases->dict_size(); ++k) {
    const value& key = aliases->dict_key(k);
    const value& target = aliases->dict_value(k);
    if (!key.is(value::kind::string) || !target.is(value::kind::array_ref))
      return fail(errc::bad_value, f.name() + ": an alias must map a name to {\"$array\": name}");
    if (auto ok = detail::check_name(key.as_string(), limits{}.max_name_bytes); !ok)
      return fail(errc::bad_value, f.name() + ": alias \"" + key.as_string() + "\": " + ok.err().message);
    if (!names.insert(key.as_string()).second)
      return fail(errc::bad_value, f.name() + ": alias \"" + key.as_string() + "\" repeats the name of another tensor");
    auto idx = f.find(target.as_string());
    if (!idx) return fail(errc::bad_value, f.name() + ": alias \"" + key.as_string() + "\" refers to a missing array");
    out.push_back({key.as_string(), *idx, true});
  }
  return out;
}

// ---- conversions -------------------------------------------------------------------------------

result<convert_report> import_safetensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                          const write_options& opt) {
  auto st = map_input(in);
  if (!st) return std::move(st).err();
  std::span<const std::byte> image{(*st)->data(), static_cast<std::size_t>((*st)->size())};
  auto v = parse_safetensors(image);
  if (!v) return error{v.code(), in.string() + ": " + v.err().message};
  std::vector<tensor_ref> refs;
  refs.reserve(v->tensors.size());
  convert_report rep;
  rep.source_format = "safetensors";
  for (auto& t : v->tensors) {
    refs.push_back({t.name, t.type, t.shape, t.data});
    rep.bytes += t.data.size();
  }
  value meta = v->has_metadata ? string_dict(v->metadata) : value::null();
  VITRIFY_TRY(write_tensors_file(out, refs, {}, meta, "safetensors", opt));
  rep.tensors = rep.arrays = refs.size();
  return rep;
}

result<convert_report> export_safetensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                          bool durable) {
  auto f = file::open(in);
  if (!f) return std::move(f).err();
  auto entries = tensor_entries(*f);
  if (!entries) return std::move(entries).err();
  std::optional<std::vector<std::pair<std::string, std::string>>> meta;
  const value& m = f->metadata();
  if (!m.is(value::kind::null)) {
    if (!m.is(value::kind::dict))
      return fail(errc::invalid_argument, f->name() + ": the metadata is not a dict of strings; safetensors can only "
                                                      "store string metadata (__metadata__)");
    meta.emplace();
    for (std::size_t k = 0; k < m.dict_size(); ++k) {
      if (!m.dict_key(k).is(value::kind::string) || !m.dict_value(k).is(value::kind::string))
        return fail(errc::invalid_argument, f->name() + ": metadata entry " + std::to_string(k) +
                                                " is not string -> string; safetensors can only store string metadata");
      meta->emplace_back(m.dict_key(k).as_string(), m.dict_value(k).as_string());
    }
  }
  // Raw arrays are used in place (checksum verified); compressed ones are decoded once each.
  std::vector<std::vector<std::byte>> decoded(f->arrays().size());
  std::vector<std::span<const std::byte>> data(f->arrays().size());
  std::vector<bool> ready(f->arrays().size(), false);
  std::vector<tensor_ref> refs;
  refs.reserve(entries->size());
  convert_report rep;
  rep.source_format = "vitrify";
  for (const auto& e : *entries) {
    const array_info& a = f->arrays()[e.array];
    if (!ready[e.array]) {
      if (a.codec == codec::raw) {
        auto vw = f->view(e.array, true);
        if (!vw) return std::move(vw).err();
        data[e.array] = *vw;
        if (a.type == dtype::bool_) VITRIFY_TRY(f->verify_array(e.array));  // bytes 0/1 only
      } else {
        decoded[e.array].resize(static_cast<std::size_t>(a.decoded_length));
        VITRIFY_TRY(f->read_into(e.array, decoded[e.array], true));
        if (a.type == dtype::bool_)
          for (std::byte b : decoded[e.array])
            if (static_cast<unsigned char>(b) > 1)
              return fail(errc::bad_array, f->name() + ": bool array \"" + a.name + "\" holds a byte other than 0 or 1");
        data[e.array] = decoded[e.array];
      }
      ready[e.array] = true;
      ++rep.arrays;
    }
    if (e.alias) ++rep.aliases;
    refs.push_back({e.name, a.type, a.shape, data[e.array]});
    rep.bytes += data[e.array].size();
  }
  auto p = plan_safetensors(refs, meta);
  if (!p) return error{p.code(), f->name() + ": " + p.err().message};
  atomic_file o;
  VITRIFY_TRY(o.open(out));
  std::byte n[8];
  detail::store_u64(n, p->header.size());
  VITRIFY_TRY(o.write(n));
  VITRIFY_TRY(o.write(as_bytes(p->header)));
  for (const tensor_ref* t : p->order) VITRIFY_TRY(o.write(t->data));
  VITRIFY_TRY(o.commit(durable));
  rep.tensors = refs.size();
  return rep;
}

result<convert_report> import_tensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                      const write_options& opt) {
  auto st = map_input(in);
  if (!st) return std::move(st).err();
  const std::byte* b = (*st)->data();
  const std::uint64_t size = (*st)->size();
  // By content, never by name: a zip (torch.save) starts with a local file header; a
  // safetensors file with a u64 length that fits the file followed by '{'.
  if (size >= 4 && std::memcmp(b, "PK\x03\x04", 4) == 0) {
    st->reset();
    return import_torch(in, out, opt);
  }
  if (size >= 10 && static_cast<char>(b[8]) == '{' && detail::load_u64(b) <= size - 8) {
    st->reset();
    return import_safetensors(in, out, opt);
  }
  return fail(errc::unknown_format, in.string() + ": neither a safetensors file nor a PyTorch (torch.save) zip file");
}

}  // namespace vitrify::tensors
