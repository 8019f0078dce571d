#include "vitrify/reader.hpp"

#include <simdjson.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "format/internal.hpp"
#include "core/value_json.hpp"

namespace vitrify {

using detail::load_u16;
using detail::load_u32;
using detail::load_u64;

namespace {

std::string num(std::uint64_t v) { return std::to_string(v); }

struct header_ctx {
  const std::string& file;
  std::string at(const std::string& what) const { return file + ": " + what; }
};

result<std::uint64_t> get_u64(simdjson::dom::element e, const std::string& where) {
  using et = simdjson::dom::element_type;
  if (e.type() == et::INT64) {
    std::int64_t v = e.get_int64().value_unsafe();
    if (v < 0) return fail(errc::bad_header, where + " is negative");
    return static_cast<std::uint64_t>(v);
  }
  if (e.type() == et::UINT64) return e.get_uint64().value_unsafe();
  return fail(errc::bad_header, where + " must be a non-negative integer");
}

result<std::string_view> get_str(simdjson::dom::element e, const std::string& where) {
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return fail(errc::bad_header, where + " must be a string");
  return s;
}

/// Collect the members of a JSON object, refusing duplicate keys.
result<std::vector<std::pair<std::string_view, simdjson::dom::element>>> members(simdjson::dom::element e,
                                                                                  const std::string& where) {
  simdjson::dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return fail(errc::bad_header, where + " must be a JSON object");
  std::vector<std::pair<std::string_view, simdjson::dom::element>> out;
  out.reserve(o.size());
  for (auto f : o) {
    for (auto& [k, _] : out)
      if (k == f.key) return fail(errc::duplicate_name, where + " has duplicate key \"" + std::string(f.key) + "\"");
    out.emplace_back(f.key, f.value);
  }
  return out;
}

/// Keys are unique in every object of the header, members this reader ignores included
/// (readers that do understand them must not disagree on which duplicate wins).
result<void> check_unique_keys(simdjson::dom::element e, const std::string& where) {
  using et = simdjson::dom::element_type;
  if (e.type() == et::ARRAY) {
    simdjson::dom::array a = e.get_array().value_unsafe();
    for (simdjson::dom::element x : a) VITRIFY_TRY(check_unique_keys(x, where));
  } else if (e.type() == et::OBJECT) {
    simdjson::dom::object o = e.get_object().value_unsafe();
    std::unordered_set<std::string_view> seen;
    for (auto f : o) {
      if (!seen.insert(f.key).second)
        return fail(errc::duplicate_name, where + " has duplicate key \"" + std::string(f.key) + "\"");
      VITRIFY_TRY(check_unique_keys(f.value, where));
    }
  }
  return {};
}

void collect_refs(const value& v, std::vector<const std::string*>& out) {
  if (v.is(value::kind::array_ref)) out.push_back(&v.as_string());
  for (const value& c : v.items()) collect_refs(c, out);
}

}  // namespace

std::uint64_t file::size() const noexcept { return storage_->size(); }

std::span<const std::byte> file::bytes() const noexcept {
  return {storage_->data(), static_cast<std::size_t>(storage_->size())};
}

std::string_view file::header_json() const noexcept {
  return {reinterpret_cast<const char*>(storage_->data() + header_offset_), static_cast<std::size_t>(header_length_)};
}

result<file> file::open(const std::filesystem::path& path, const open_options& opt) {
  auto st = detail::map_file(path.string(), opt.copy_on_write);
  if (!st) return std::move(st).err();
  return parse(std::move(st).value(), opt, path.string());
}

result<file> file::from_bytes(std::span<const std::byte> bytes, const open_options& opt, std::string display_name) {
  if (bytes.empty()) return fail(errc::truncated, display_name + ": empty input (a vitrify file has at least a 64-byte preamble)");
  return parse(detail::copy_to_storage(bytes.data(), bytes.size()), opt, std::move(display_name));
}

result<file> file::parse(std::shared_ptr<storage> st, const open_options& opt, std::string name) {
  const limits& lim = opt.lim;
  const std::byte* base = st->data();
  const std::uint64_t size = st->size();
  header_ctx hc{name};

  // --- Preamble -------------------------------------------------------------------------------
  if (size < preamble_size)
    return fail(errc::truncated, hc.at("file is " + num(size) + " bytes, shorter than the 64-byte preamble"));
  if (std::memcmp(base, magic, sizeof magic) != 0) return fail(errc::bad_magic, hc.at("not a vitrify file (bad magic bytes)"));
  if (XXH3_64bits(base, detail::preamble_checked_bytes) != load_u64(base + 56))
    return fail(errc::checksum_mismatch, hc.at("preamble checksum mismatch (section: preamble)"));
  file f;
  f.name_ = name;
  f.major_ = load_u16(base + 8);
  f.minor_ = load_u16(base + 10);
  if (f.major_ != format_major)
    return fail(errc::unsupported_version, hc.at("format version " + num(f.major_) + "." + num(f.minor_) +
                                                  " is not readable by this reader (major " + num(format_major) + ")"));
  const std::uint32_t flags = load_u32(base + 12);
  if (flags != 0) return fail(errc::bad_preamble, hc.at("reserved preamble flags are set"));
  f.alignment_ = load_u32(base + 16);
  if (f.alignment_ < 64 || f.alignment_ > 4096 || (f.alignment_ & (f.alignment_ - 1)) != 0)
    return fail(errc::bad_preamble, hc.at("alignment " + num(f.alignment_) + " is not a power of two in [64, 4096]"));
  if (load_u32(base + 20) != 0) return fail(errc::bad_preamble, hc.at("reserved preamble field is not zero"));
  f.header_offset_ = load_u64(base + 24);
  f.header_length_ = load_u64(base + 32);
  f.content_length_ = load_u64(base + 40);
  const std::uint64_t header_xxh3 = load_u64(base + 48);

  if (f.header_length_ > lim.max_header_bytes)
    return fail(errc::limit_exceeded, hc.at("header is " + num(f.header_length_) + " bytes, limit " + num(lim.max_header_bytes)));
  if (f.header_length_ < 2) return fail(errc::bad_preamble, hc.at("header length " + num(f.header_length_) + " is too small"));
  if (f.header_offset_ < preamble_size || f.header_offset_ % 8 != 0)
    return fail(errc::bad_preamble, hc.at("header offset " + num(f.header_offset_) + " is invalid"));
  std::uint64_t header_end;
  if (detail::add_overflow(f.header_offset_, f.header_length_, &header_end) || header_end != f.content_length_)
    return fail(errc::bad_preamble, hc.at("content length does not equal header offset + header length"));
  if (f.content_length_ > size)
    return fail(errc::truncated, hc.at("file is " + num(size) + " bytes but declares " + num(f.content_length_)));

  const char* hdr = reinterpret_cast<const char*>(base + f.header_offset_);
  if (XXH3_64bits(hdr, f.header_length_) != header_xxh3)
    return fail(errc::checksum_mismatch, hc.at("header checksum mismatch (section: header)"));

  // --- Trailer blocks -------------------------------------------------------------------------
  for (std::uint64_t pos = f.content_length_; pos < size;) {
    if (size - pos < 16) return fail(errc::bad_trailer, hc.at("trailing bytes at offset " + num(pos) + " are not a trailer block"));
    std::uint64_t len = load_u64(base + pos + 8);
    if (len > size - pos - 16)
      return fail(errc::bad_trailer, hc.at("trailer block at offset " + num(pos) + " runs past the end of the file"));
    trailer_block tb;
    tb.tag.assign(reinterpret_cast<const char*>(base + pos), 8);
    for (char c : tb.tag)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
        return fail(errc::bad_trailer, hc.at("trailer block at offset " + num(pos) + " has a non-printable tag"));
    tb.body = {base + pos + 16, static_cast<std::size_t>(len)};
    f.trailers_.push_back(std::move(tb));
    pos += 16 + len;
  }

  // --- Header JSON ----------------------------------------------------------------------------
  VITRIFY_TRY(detail::check_json_text(std::string_view(hdr, f.header_length_), name + ": header"));
  simdjson::dom::parser parser;
  if (auto ec = parser.allocate(f.header_length_ + 64, 3 * static_cast<std::size_t>(lim.max_depth) + 16))
    return detail::json_error(ec, name + ": header");
  simdjson::dom::element root;
  // realloc_if_needed: the mapping has no SIMDJSON_PADDING after the header, so let simdjson copy.
  if (auto ec = parser.parse(hdr, f.header_length_, true).get(root)) return detail::json_error(ec, name + ": header");

  auto top = members(root, name + ": header");
  if (!top) return std::move(top).err();
  std::optional<simdjson::dom::element> j_format, j_features, j_arrays, j_sections[4];
  static constexpr const char* section_names[4] = {"metadata", "environment", "provenance", "content"};
  for (auto& [k, v] : *top) {
    if (k == "format") j_format = v;
    else if (k == "required_features") j_features = v;
    else if (k == "arrays") j_arrays = v;
    else {
      bool known = false;
      for (int s = 0; s < 4; ++s)
        if (k == section_names[s]) {
          j_sections[s] = v;
          known = true;
        }
      // Unknown members are may-ignore by the compatibility rules, but must still be well formed.
      if (!known) VITRIFY_TRY(check_unique_keys(v, name + ": header member \"" + std::string(k) + "\""));
    }
  }
  if (!j_format) return fail(errc::bad_header, hc.at("header has no \"format\" member"));
  {
    auto s = get_str(*j_format, hc.at("header \"format\""));
    if (!s) return std::move(s).err();
    if (*s != "vitrify") return fail(errc::bad_header, hc.at("header \"format\" is not \"vitrify\""));
  }
  if (j_features) {
    simdjson::dom::array fa;
    if (j_features->get_array().get(fa) != simdjson::SUCCESS)
      return fail(errc::bad_header, hc.at("\"required_features\" must be an array of strings"));
    for (auto fe : fa) {
      auto s = get_str(fe, hc.at("required feature"));
      if (!s) return std::move(s).err();
      f.features_.emplace_back(*s);
    }
    // Must-understand extensions (FORMAT.md section 5): 1.1 defines "dtype_float8" only.
    for (const std::string& feat : f.features_)
      if (feat != feature_dtype_float8)
        return fail(errc::unsupported_feature, hc.at("file requires feature \"" + feat + "\" which this reader does not implement"));
  }
  if (!j_arrays) return fail(errc::bad_header, hc.at("header has no \"arrays\" member"));
  simdjson::dom::array arr;
  if (j_arrays->get_array().get(arr) != simdjson::SUCCESS) return fail(errc::bad_header, hc.at("\"arrays\" must be an array"));
  if (arr.size() > lim.max_arrays)
    return fail(errc::limit_exceeded, hc.at("array table has " + num(arr.size()) + " entries, limit " + num(lim.max_arrays)));

  detail::value_parse_ctx vctx;
  vctx.lim.max_depth = lim.max_depth;
  vctx.lim.max_nodes = lim.max_nodes;

  f.arrays_.reserve(arr.size());
  std::unordered_set<std::string> names;
  names.reserve(arr.size());
  std::uint64_t prev_end = preamble_size;
  std::size_t idx = 0;
  for (simdjson::dom::element entry : arr) {
    const std::string where = hc.at("array #" + num(idx));
    auto mem = members(entry, where);
    if (!mem) return std::move(mem).err();
    std::optional<simdjson::dom::element> e_name, e_dtype, e_shape, e_offset, e_length, e_decoded, e_codec, e_xxh3, e_level, e_attrs;
    for (auto& [k, v] : *mem) {
      if (k == "name") e_name = v;
      else if (k == "dtype") e_dtype = v;
      else if (k == "shape") e_shape = v;
      else if (k == "offset") e_offset = v;
      else if (k == "length") e_length = v;
      else if (k == "decoded_length") e_decoded = v;
      else if (k == "codec") e_codec = v;
      else if (k == "xxh3") e_xxh3 = v;
      else if (k == "level") e_level = v;
      else if (k == "attrs") e_attrs = v;
      else VITRIFY_TRY(check_unique_keys(v, where + " member \"" + std::string(k) + "\""));
    }
    if (!e_name || !e_dtype || !e_shape || !e_offset || !e_length || !e_decoded || !e_codec || !e_xxh3)
      return fail(errc::bad_header, where + " lacks a required member (name, dtype, shape, offset, length, decoded_length, codec, xxh3)");
    array_info a;
    {
      auto s = get_str(*e_name, where + " name");
      if (!s) return std::move(s).err();
      auto ok = detail::check_name(*s, lim.max_name_bytes);
      if (!ok) return fail(ok.code(), where + ": " + ok.err().message);
      a.name = std::string(*s);
    }
    const std::string wa = name + ": array \"" + a.name + "\"";
    {
      auto s = get_str(*e_dtype, wa + " dtype");
      if (!s) return std::move(s).err();
      auto t = dtype_from_name(*s);
      if (!t) return fail(errc::unknown_dtype, wa + ": unknown dtype \"" + std::string(*s) + "\"");
      // A dtype added by a required feature exists only in files that list the feature: an
      // older reader rejects such a file as a whole, so this one must not read it either.
      if (std::string_view feat = dtype_feature(*t);
          !feat.empty() && std::find(f.features_.begin(), f.features_.end(), feat) == f.features_.end())
        return fail(errc::unknown_dtype, wa + ": dtype \"" + std::string(*s) + "\" needs the required feature \"" +
                                             std::string(feat) + "\", which the file does not list");
      a.type = *t;
    }
    {
      auto s = get_str(*e_codec, wa + " codec");
      if (!s) return std::move(s).err();
      auto c = codec_from_name(*s);
      if (!c) return fail(errc::unknown_codec, wa + ": unknown codec \"" + std::string(*s) + "\"");
      a.codec = *c;
    }
    {
      simdjson::dom::array sh;
      if (e_shape->get_array().get(sh) != simdjson::SUCCESS) return fail(errc::bad_header, wa + ": shape must be an array");
      if (sh.size() > lim.max_rank)
        return fail(errc::limit_exceeded, wa + ": rank " + num(sh.size()) + " exceeds the limit " + num(lim.max_rank));
      for (auto d : sh) {
        auto dv = get_u64(d, wa + " shape entry");
        if (!dv) return std::move(dv).err();
        a.shape.push_back(*dv);
      }
      auto count = detail::element_count(a.shape);
      if (!count) return fail(errc::bad_array, wa + ": " + count.err().message);
      a.count = *count;
    }
    auto off = get_u64(*e_offset, wa + " offset");
    if (!off) return std::move(off).err();
    auto len = get_u64(*e_length, wa + " length");
    if (!len) return std::move(len).err();
    auto dec = get_u64(*e_decoded, wa + " decoded_length");
    if (!dec) return std::move(dec).err();
    a.offset = *off;
    a.stored_length = *len;
    a.decoded_length = *dec;
    {
      auto s = get_str(*e_xxh3, wa + " xxh3");
      if (!s) return std::move(s).err();
      if (!detail::parse_hex64(*s, &a.xxh3)) return fail(errc::bad_header, wa + ": xxh3 must be 16 lowercase hex digits");
    }
    if (e_level) {
      std::int64_t lv;
      if (e_level->get_int64().get(lv) != simdjson::SUCCESS || lv < -(1 << 17) || lv > 22)
        return fail(errc::bad_header, wa + ": level must be a zstd level");
      a.level = static_cast<std::int32_t>(lv);
    }
    if (e_attrs) {
      auto v = detail::value_from_element(*e_attrs, vctx, 0, wa + " attrs");
      if (!v) return std::move(v).err();
      a.attrs = std::move(v).value();
    }
    // Sizes.
    if (a.decoded_length > lim.max_decoded_bytes)
      return fail(errc::limit_exceeded, wa + ": decoded size " + num(a.decoded_length) + " exceeds the limit " + num(lim.max_decoded_bytes));
    if (a.type == dtype::string) {
      std::uint64_t need;
      if (detail::add_overflow(a.count, 1, &need) || detail::mul_overflow(need, 8, &need) || a.decoded_length < need)
        return fail(errc::bad_array, wa + ": decoded_length is smaller than its string offsets table");
    } else {
      std::uint64_t need;
      if (detail::mul_overflow(a.count, dtype_size(a.type), &need))
        return fail(errc::bad_array, wa + ": byte size overflows 64 bits");
      if (a.decoded_length != need)
        return fail(errc::bad_array, wa + ": decoded_length " + num(a.decoded_length) + " != " + num(a.count) + " x " +
                                         num(dtype_size(a.type)) + " bytes");
    }
    if (a.codec == codec::raw && a.stored_length != a.decoded_length)
      return fail(errc::bad_array, wa + ": raw array with length != decoded_length");
    // Layout: exactly at the next aligned position, inside [64, header_offset).
    std::uint64_t expect = 0;
    if (!detail::align_up(prev_end, f.alignment_, &expect) || a.offset != expect)
      return fail(errc::bad_layout, wa + ": offset " + num(a.offset) + " should be " + num(expect) +
                                        " (arrays follow each other at the alignment, no overlap or hole)");
    std::uint64_t end;
    if (detail::add_overflow(a.offset, a.stored_length, &end) || end > f.header_offset_)
      return fail(end > size ? errc::truncated : errc::bad_layout, wa + ": data runs past the header offset");
    if (!names.insert(a.name).second) return fail(errc::duplicate_name, wa + ": duplicate array name");
    prev_end = end;
    f.arrays_.push_back(std::move(a));
    ++idx;
  }
  {
    std::uint64_t expect = 0;
    if (!detail::align_up(prev_end, 8, &expect) || expect != f.header_offset_)
      return fail(errc::bad_layout, hc.at("header offset " + num(f.header_offset_) + " should be " + num(expect) +
                                          " (unaccounted bytes between the last array and the header)"));
  }
  // Padding must be zero: no room for hidden content.
  {
    std::uint64_t pos = preamble_size;
    auto check_zero = [&](std::uint64_t from, std::uint64_t to) -> bool {
      for (std::uint64_t p = from; p < to; ++p)
        if (base[p] != std::byte{0}) return false;
      return true;
    };
    for (const auto& a : f.arrays_) {
      if (!check_zero(pos, a.offset)) return fail(errc::bad_layout, hc.at("non-zero padding before array \"" + a.name + "\""));
      pos = a.offset + a.stored_length;
    }
    if (!check_zero(pos, f.header_offset_)) return fail(errc::bad_layout, hc.at("non-zero padding before the header"));
  }
  // Sections.
  for (int s = 0; s < 4; ++s) {
    if (!j_sections[s]) continue;
    auto v = detail::value_from_element(*j_sections[s], vctx, 0, name + ": " + section_names[s]);
    if (!v) return std::move(v).err();
    value* dst[4] = {&f.metadata_, &f.environment_, &f.provenance_, &f.content_};
    *dst[s] = std::move(v).value();
  }
  VITRIFY_TRY(detail::check_refs(vctx, name + ": header"));
  for (const auto& r : vctx.array_refs)
    if (!names.count(r))
      return fail(errc::bad_value, hc.at("$array reference \"" + r + "\" names no array of this file"));

  f.storage_ = std::move(st);
  return f;
}

result<std::size_t> file::find(std::string_view name) const {
  for (std::size_t i = 0; i < arrays_.size(); ++i)
    if (arrays_[i].name == name) return i;
  return fail(errc::not_found, name_ + ": no array named \"" + std::string(name) + "\"");
}

std::span<const std::byte> file::stored_bytes(std::size_t i) const noexcept {
  const auto& a = arrays_[i];
  return {storage_->data() + a.offset, static_cast<std::size_t>(a.stored_length)};
}

namespace {
result<void> check_index(const std::vector<array_info>& arrays, std::size_t i, const std::string& name) {
  if (i >= arrays.size())
    return fail(errc::invalid_argument, name + ": array index " + std::to_string(i) + " out of range (" +
                                            std::to_string(arrays.size()) + " arrays)");
  return {};
}
}  // namespace

static result<void> check_sum(const file& f, std::size_t i) {
  const auto& a = f.arrays()[i];
  auto b = f.stored_bytes(i);
  if (XXH3_64bits(b.data(), b.size()) != a.xxh3)
    return fail(errc::checksum_mismatch, f.name() + ": checksum mismatch in array \"" + a.name + "\" (section: array)");
  return {};
}

/// Walks one zstd frame's header and block headers (RFC 8878 section 3.1.1) without decoding,
/// and returns its size in bytes. The frame rules are checked here, by the format, rather than
/// left to whichever libzstd is installed: libzstd releases differ in what they tolerate (1.5.4
/// refuses a block larger than the window that 1.5.7 accepts), and a file must mean the same
/// thing everywhere. See docs/FORMAT.md section 10.
static result<std::size_t> walk_frame(std::span<const std::byte> in, const std::string& wa) {
  auto bad = [&](const std::string& why) { return fail(errc::decompress_error, wa + ": zstd frame: " + why); };
  if (in.size() < 4) return bad("truncated frame header");
  const std::uint32_t magic = load_u32(in.data());
  if ((magic & 0xFFFFFFF0u) == 0x184D2A50u) return bad("skippable frame (hidden bytes are not allowed)");
  if (magic != 0xFD2FB528u) return bad("not a zstd frame (bad magic number)");
  std::size_t pos = 4;
  if (pos >= in.size()) return bad("truncated frame header");
  const unsigned fhd = std::to_integer<unsigned>(in[pos++]);
  const unsigned fcs_flag = fhd >> 6, single_segment = (fhd >> 5) & 1, reserved = (fhd >> 3) & 1;
  const unsigned checksum = (fhd >> 2) & 1, dict_flag = fhd & 3;
  if (reserved) return bad("reserved bit of the frame header descriptor is set");
  std::uint64_t window = 0;
  if (!single_segment) {
    if (pos >= in.size()) return bad("truncated frame header");
    const unsigned wd = std::to_integer<unsigned>(in[pos++]);
    const unsigned exponent = wd >> 3, mantissa = wd & 7;
    if (exponent > 17)  // windowLog 27: the format's window limit
      return bad("window of 2^" + std::to_string(10 + exponent) + " bytes or more exceeds the 2^27 limit");
    const std::uint64_t base = std::uint64_t{1} << (10 + exponent);
    window = base + (base / 8) * mantissa;
    if (window > (std::uint64_t{1} << 27)) return bad("window exceeds the 2^27 limit");
  }
  static constexpr unsigned dict_bytes[4] = {0, 1, 2, 4};
  if (dict_flag != 0) {
    if (in.size() - pos < dict_bytes[dict_flag]) return bad("truncated frame header");
    std::uint32_t id = 0;
    for (unsigned k = 0; k < dict_bytes[dict_flag]; ++k) id |= std::to_integer<std::uint32_t>(in[pos + k]) << (8 * k);
    pos += dict_bytes[dict_flag];
    if (id != 0) return bad("needs dictionary " + std::to_string(id) + " (dictionaries are not part of the format)");
  }
  static constexpr unsigned fcs_bytes[4] = {0, 2, 4, 8};
  const unsigned nfcs = fcs_flag == 0 ? (single_segment ? 1 : 0) : fcs_bytes[fcs_flag];
  if (in.size() - pos < nfcs) return bad("truncated frame header");
  std::uint64_t fcs = 0;
  for (unsigned k = 0; k < nfcs; ++k) fcs |= std::to_integer<std::uint64_t>(in[pos + k]) << (8 * k);
  if (nfcs == 2) fcs += 256;
  pos += nfcs;
  if (single_segment) {
    if (fcs > (std::uint64_t{1} << 27)) return bad("single-segment frame of " + std::to_string(fcs) + " bytes exceeds the 2^27 window limit");
    window = fcs;
  }
  const std::uint64_t block_max = std::min<std::uint64_t>(window, 128 * 1024);
  for (;;) {
    if (in.size() - pos < 3) return bad("truncated block header");
    const std::uint32_t bh = std::to_integer<std::uint32_t>(in[pos]) | std::to_integer<std::uint32_t>(in[pos + 1]) << 8 |
                             std::to_integer<std::uint32_t>(in[pos + 2]) << 16;
    pos += 3;
    const bool last = bh & 1;
    const unsigned type = (bh >> 1) & 3;
    const std::uint32_t size = bh >> 3;
    if (type == 3) return bad("reserved block type");
    // Block_Size is the stored size of raw and compressed blocks and the regenerated size of an
    // RLE block; all three must fit Block_Maximum_Size = min(Window_Size, 128 KiB).
    if (size > block_max)
      return bad("block of " + std::to_string(size) + " bytes exceeds the block maximum " + std::to_string(block_max) +
                 " (min(window " + std::to_string(window) + ", 128 KiB))");
    const std::size_t stored = type == 1 ? 1 : size;
    if (in.size() - pos < stored) return bad("truncated block");
    pos += stored;
    if (last) break;
  }
  if (checksum) {
    if (in.size() - pos < 4) return bad("truncated content checksum");
    pos += 4;
  }
  return pos;
}

/// The stored bytes of a zstd array must be ordinary zstd frames end to end, each within the
/// frame rules of docs/FORMAT.md section 10 (checked by walk_frame, before libzstd sees them).
static result<void> check_frames(const file& f, std::size_t i) {
  const auto& a = f.arrays()[i];
  auto in = f.stored_bytes(i);
  const std::string wa = f.name() + ": array \"" + a.name + "\"";
  if (in.empty()) return fail(errc::decompress_error, wa + ": empty zstd stream");
  std::size_t pos = 0;
  while (pos < in.size()) {
    auto n = walk_frame(in.subspan(pos), wa);
    if (!n) return std::move(n).err();
    pos += *n;
  }
  return {};
}

/// Bool arrays hold only 0 and 1: any other byte is refused when the array is decoded.
static result<void> check_bool_values(const file& f, std::size_t i, std::span<const std::byte> dec) {
  const auto& a = f.arrays()[i];
  if (a.type != dtype::bool_) return {};
  for (std::size_t k = 0; k < dec.size(); ++k)
    if (static_cast<unsigned char>(dec[k]) > 1)
      return fail(errc::bad_array, f.name() + ": bool array \"" + a.name + "\" holds a byte other than 0 or 1 at element " + std::to_string(k));
  return {};
}

result<std::span<const std::byte>> file::view(std::size_t i, bool check) const {
  VITRIFY_TRY(check_index(arrays_, i, name_));
  const auto& a = arrays_[i];
  if (a.codec != codec::raw)
    return fail(errc::not_raw, name_ + ": array \"" + a.name + "\" is compressed (" + std::string(codec_name(a.codec)) +
                                   "); use read_into");
  if (check) VITRIFY_TRY(check_sum(*this, i));
  return stored_bytes(i);
}

result<void> file::read_into(std::size_t i, std::span<std::byte> out, bool check) const {
  VITRIFY_TRY(check_index(arrays_, i, name_));
  const auto& a = arrays_[i];
  if (out.size() != a.decoded_length)
    return fail(errc::invalid_argument, name_ + ": array \"" + a.name + "\" decodes to " + std::to_string(a.decoded_length) +
                                            " bytes, output buffer has " + std::to_string(out.size()));
  if (check) VITRIFY_TRY(check_sum(*this, i));
  auto in = stored_bytes(i);
  if (a.codec == codec::raw) {
    if (!in.empty()) std::memcpy(out.data(), in.data(), in.size());
    return check_bool_values(*this, i, out);
  }
  const std::string wa = name_ + ": array \"" + a.name + "\"";
  VITRIFY_TRY(check_frames(*this, i));
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return fail(errc::io_error, wa + ": cannot allocate a zstd context");
  // Bound decoder memory: windows larger than 128 MiB (2^27) are refused.
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  std::size_t ret = 1;
  while (true) {
    ret = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(ret))
      return fail(errc::decompress_error, wa + ": corrupt zstd data: " + ZSTD_getErrorName(ret));
    if (ib.pos == ib.size && ret == 0) break;  // all input consumed at a frame boundary
    if (ob.pos == ob.size) {
      // Output is full: any further byte means the array inflates past its declared size.
      std::byte scratch[1];
      ZSTD_outBuffer sb{scratch, 1, 0};
      std::size_t r2 = ZSTD_decompressStream(dctx.get(), &sb, &ib);
      if (ZSTD_isError(r2)) return fail(errc::decompress_error, wa + ": corrupt zstd data: " + ZSTD_getErrorName(r2));
      if (sb.pos != 0)
        return fail(errc::decompress_error, wa + ": data inflates past its declared size " + std::to_string(a.decoded_length));
      if (ib.pos == ib.size && r2 == 0) break;
      if (ib.pos == ib.size) return fail(errc::decompress_error, wa + ": zstd stream ends mid-frame");
      ret = r2;
      continue;
    }
    if (ib.pos == ib.size) return fail(errc::decompress_error, wa + ": zstd stream ends mid-frame");
  }
  if (ob.pos != ob.size)
    return fail(errc::decompress_error, wa + ": decodes to " + std::to_string(ob.pos) + " bytes, declared " +
                                            std::to_string(a.decoded_length));
  return check_bool_values(*this, i, out);
}

result<void> file::check_string_offsets(std::size_t i, std::span<const std::byte> decoded) const {
  const auto& a = arrays_[i];
  const std::string wa = name_ + ": string array \"" + a.name + "\"";
  const std::uint64_t n = a.count;
  const std::uint64_t table = (n + 1) * 8;  // checked at open
  const std::uint64_t text = decoded.size() - table;
  const std::byte* p = decoded.data();
  std::uint64_t prev = load_u64(p);
  if (prev != 0) return fail(errc::bad_string_array, wa + ": first offset is not 0");
  for (std::uint64_t k = 1; k <= n; ++k) {
    std::uint64_t o = load_u64(p + 8 * k);
    if (o < prev || o > text)
      return fail(errc::bad_string_array, wa + ": offset " + std::to_string(k) + " is out of order or out of range");
    prev = o;
  }
  if (prev != text) return fail(errc::bad_string_array, wa + ": last offset does not end the text");
  const char* t = reinterpret_cast<const char*>(p + table);
  // Each string must be valid UTF-8 on its own (a split code point is invalid).
  prev = 0;
  for (std::uint64_t k = 1; k <= n; ++k) {
    std::uint64_t o = load_u64(p + 8 * k);
    if (!simdjson::validate_utf8(t + prev, o - prev))
      return fail(errc::bad_string_array, wa + ": element " + std::to_string(k - 1) + " is not valid UTF-8");
    prev = o;
  }
  return {};
}

result<std::vector<std::string>> file::read_strings(std::size_t i, bool check) const {
  VITRIFY_TRY(check_index(arrays_, i, name_));
  const auto& a = arrays_[i];
  if (a.type != dtype::string)
    return fail(errc::invalid_argument, name_ + ": array \"" + a.name + "\" is " + std::string(dtype_name(a.type)) + ", not string");
  std::vector<std::byte> owned;
  std::span<const std::byte> dec;
  if (a.codec == codec::raw) {
    if (check) VITRIFY_TRY(check_sum(*this, i));
    dec = stored_bytes(i);
  } else {
    owned.resize(a.decoded_length);
    VITRIFY_TRY(read_into(i, owned, check));
    dec = owned;
  }
  VITRIFY_TRY(check_string_offsets(i, dec));
  std::vector<std::string> out;
  out.reserve(a.count);
  const char* t = reinterpret_cast<const char*>(dec.data() + (a.count + 1) * 8);
  for (std::uint64_t k = 0; k < a.count; ++k) {
    std::uint64_t b = load_u64(dec.data() + 8 * k), e = load_u64(dec.data() + 8 * (k + 1));
    out.emplace_back(t + b, e - b);
  }
  return out;
}

result<void> file::verify_array(std::size_t i) const {
  VITRIFY_TRY(check_index(arrays_, i, name_));
  VITRIFY_TRY(check_sum(*this, i));
  const auto& a = arrays_[i];
  if (a.codec == codec::raw) {
    auto dec = stored_bytes(i);
    if (a.type == dtype::string) VITRIFY_TRY(check_string_offsets(i, dec));
    return check_bool_values(*this, i, dec);
  }
  // Decode in bounded memory first: a small stream declaring a huge size (a decompression
  // bomb, or a lie) is caught here without allocating what it declares.
  VITRIFY_TRY(stream_check(i));
  if (a.type == dtype::string || a.type == dtype::bool_) {
    std::vector<std::byte> owned(a.decoded_length);
    VITRIFY_TRY(read_into(i, owned, false));
    if (a.type == dtype::string) VITRIFY_TRY(check_string_offsets(i, owned));
  }
  return {};
}

result<void> file::stream_check(std::size_t i) const {
  const auto& a = arrays_[i];
  const std::string wa = name_ + ": array \"" + a.name + "\"";
  VITRIFY_TRY(check_frames(*this, i));
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return fail(errc::io_error, wa + ": cannot allocate a zstd context");
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  auto in = stored_bytes(i);
  std::vector<std::byte> chunk(ZSTD_DStreamOutSize());
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::uint64_t total = 0;
  std::size_t ret = 0;
  while (true) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(ret)) return fail(errc::decompress_error, wa + ": corrupt zstd data: " + ZSTD_getErrorName(ret));
    total += ob.pos;
    if (total > a.decoded_length)
      return fail(errc::decompress_error, wa + ": data inflates past its declared size " + std::to_string(a.decoded_length));
    if (ib.pos == ib.size && ret == 0) break;
    if (ib.pos == ib.size && ob.pos < ob.size) return fail(errc::decompress_error, wa + ": zstd stream ends mid-frame");
  }
  if (total != a.decoded_length)
    return fail(errc::decompress_error, wa + ": decodes to " + std::to_string(total) + " bytes, declared " +
                                            std::to_string(a.decoded_length));
  return {};
}

result<void> file::verify() const {
  for (std::size_t i = 0; i < arrays_.size(); ++i) VITRIFY_TRY(verify_array(i));
  return {};
}

}  // namespace vitrify
