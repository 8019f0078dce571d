// The emitter of the object encoding: see encode.hpp.
#include "objects/encode.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "format/internal.hpp"
#include "core/value_json.hpp"

namespace vitrify::objects {

namespace {

constexpr std::byte pool_zeros[64] = {};

void append_base64(std::string& out, std::span<const std::byte> raw) {
  static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  std::size_t n = raw.size(), i = 0;
  std::size_t at = out.size();
  out.resize(at + 4 * ((n + 2) / 3));
  char* o = out.data() + at;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = tbl[(v >> 6) & 63];
    *o++ = tbl[v & 63];
  }
  if (n - i == 1) {
    unsigned v = p[i] << 16;
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = '=';
    *o++ = '=';
  } else if (n - i == 2) {
    unsigned v = (p[i] << 16) | (p[i + 1] << 8);
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = tbl[(v >> 6) & 63];
    *o++ = '=';
  }
}

void append_int(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

void append_float_repr(std::string& out, double d) {
  // Shortest round-trip digits in scientific form ("-1.2345e+02"), laid out as Python's
  // float_repr_style 'short' does: positional when -4 < decpt <= 16, else d.ddde[+-]XX.
  char buf[40];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  if (!s.empty() && s.front() == '-') {
    out.push_back('-');
    s.remove_prefix(1);
  }
  const std::size_t e = s.find('e');
  std::string_view mant = s.substr(0, e);
  int exp = 0;
  std::from_chars(s.data() + e + 1 + (s[e + 1] == '+'), s.data() + s.size(), exp);
  char digits[24];
  std::size_t nd = 0;
  for (char c : mant)
    if (c != '.') digits[nd++] = c;
  const int decpt = exp + 1;
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-decpt), '0');
      out.append(digits, nd);
    } else if (static_cast<std::size_t>(decpt) >= nd) {
      out.append(digits, nd);
      out.append(static_cast<std::size_t>(decpt) - nd, '0');
      out += ".0";
    } else {
      out.append(digits, static_cast<std::size_t>(decpt));
      out.push_back('.');
      out.append(digits + decpt, nd - static_cast<std::size_t>(decpt));
    }
    return;
  }
  out.push_back(digits[0]);
  if (nd > 1) {
    out.push_back('.');
    out.append(digits + 1, nd - 1);
  }
  out.push_back('e');
  out.push_back(exp < 0 ? '-' : '+');
  const unsigned ax = static_cast<unsigned>(exp < 0 ? -exp : exp);
  if (ax < 10) out.push_back('0');
  append_int(out, ax);
}

emitter::emitter(const emit_options& o) : o_(o) { out_.reserve(1 << 16); }

void emitter::null() {
  sep();
  out_ += "null";
  done();
}

void emitter::boolean(bool b) {
  sep();
  out_ += b ? "true" : "false";
  done();
}

void emitter::integer(std::int64_t i) {
  sep();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, i);
  out_.append(buf, r.ptr);
  done();
}

void emitter::big_integer(std::string_view decimal) {
  sep();
  out_ += R"({"$int":")";
  out_ += decimal;
  out_ += "\"}";
  done();
}

void emitter::floating(double d) {
  sep();
  if (std::isnan(d)) out_ += R"({"$float":"nan"})";
  else if (std::isinf(d)) out_ += d > 0 ? R"({"$float":"inf"})" : R"({"$float":"-inf"})";
  else append_float_repr(out_, d);
  done();
}

void emitter::string(std::string_view utf8) {
  sep();
  detail::append_json_string(out_, utf8);
  done();
}

void emitter::bytes(std::span<const std::byte> raw) {
  sep();
  out_ += R"({"$bytes":")";
  append_base64(out_, raw);
  out_ += "\"}";
  done();
}

void emitter::base64_text(std::span<const std::byte> raw) {
  sep();
  out_.push_back('"');
  append_base64(out_, raw);
  out_.push_back('"');
  done();
}

void emitter::raw_json(std::string_view json) {
  sep();
  out_ += json;
  done();
}

void emitter::begin_list() {
  sep();
  out_.push_back('[');
}
void emitter::end_list() {
  out_.push_back(']');
  done();
}
void emitter::begin_tuple() {
  sep();
  out_ += R"({"$tuple":[)";
}
void emitter::end_tuple() {
  out_ += "]}";
  done();
}
void emitter::begin_dict() {
  sep();
  out_.push_back('{');
}
void emitter::key(std::string_view utf8) {
  sep();
  detail::append_json_string(out_, utf8);
  out_.push_back(':');
}
void emitter::end_dict() {
  out_.push_back('}');
  done();
}
void emitter::begin_pair_dict() {
  sep();
  out_ += R"({"$dict":[)";
}
void emitter::end_pair_dict() {
  out_ += "]}";
  done();
}
void emitter::begin_object(std::string_view type) {
  sep();
  out_ += R"({"$object":{"type":)";
  detail::append_json_string(out_, type);
  out_ += R"(,"version":1,"state":)";
}
void emitter::begin_typed_object(std::string_view type) {
  add_type(type);
  begin_object(type);
}
void emitter::end_object() {
  out_ += "}}";
  done();
}

void emitter::global(std::string_view name) {
  add_type(name);
  begin_object("vitrify.global");
  string(name);
  end_object();
}

void emitter::add_type(std::string_view name) {
  if (types_.find(name) == types_.end()) types_.emplace(name);
}

emitter::slot emitter::open_node() {
  sep();
  nodes_.push_back(node_span{out_.size(), 0, -1});
  return static_cast<slot>(nodes_.size() - 1);
}

void emitter::close_node(slot s) { nodes_[s].end = out_.size(); }

void emitter::ref(slot s) {
  node_span& n = nodes_[s];
  if (n.sid < 0) {
    n.sid = next_sid_++;
    ++info_.shared;
  }
  sep();
  out_ += R"({"$ref":)";
  append_int(out_, static_cast<std::uint64_t>(n.sid));
  out_.push_back('}');
  done();
}

std::int64_t emitter::keyset(const std::vector<std::string_view>& keys) {
  std::string k;
  for (auto s : keys) {
    append_int(k, s.size());
    k.push_back(':');
    k += s;
  }
  auto it = keysets_.find(k);
  if (it != keysets_.end()) return it->second;
  const auto i = static_cast<std::int64_t>(keyset_list_.size());
  keysets_.emplace(std::move(k), i);
  keyset_list_.emplace_back(keys.begin(), keys.end());
  return i;
}

std::int64_t emitter::dtype_index(const std::string& desc_json) {
  auto it = dtypes_.find(desc_json);
  if (it != dtypes_.end()) return it->second;
  const auto i = static_cast<std::int64_t>(dtype_list_.size());
  dtypes_.emplace(desc_json, i);
  dtype_list_.push_back(desc_json);
  return i;
}

array_codec emitter::codec_for(std::uint64_t bytes) const {
  if (o_.arrays.codec != codec::raw && bytes >= zstd_min_bytes) return o_.arrays;
  return array_codec{codec::raw, 0};
}

void emitter::object_array_head(std::span<const std::uint64_t> shape) {
  begin_dict();
  key("s");
  shape_list(shape);
  key("t");
  string("O");
  key("i");
}

void emitter::shape_list(std::span<const std::uint64_t> shape) {
  begin_list();
  for (auto s : shape) integer(static_cast<std::int64_t>(s));
  end_list();
}

result<void> emitter::fixed(const fixed_array& a) {
  auto dtype_ref = [&] {
    if (a.dtype_index >= 0) integer(a.dtype_index);
    else string(a.dtype_str);
  };
  const std::uint64_t n = a.data.size();
  begin_dict();
  if (a.named_dtype || (!o_.pool && n >= o_.inline_max_bytes && a.table_dtype)) {
    if (!a.table_dtype) return fail(errc::invalid_argument, "array of dtype " + a.dtype_str + " has no array-table dtype");
    std::string name = next_name();
    key("d");
    begin_dict();
    key("$array");
    string(name);
    end_dict();
    arrays_.push_back(pending{std::move(name), pending::kind::fixed, *a.table_dtype, a.shape, a.data, {}, {}, {}, codec_for(n)});
    ++info_.arrays;
  } else if (o_.pool) {
    pooled_ = true;
    std::uint64_t off = 0;
    if (n != 0) {
      const std::uint64_t align = n >= pool_big ? pool_align_big : pool_align;
      const std::uint64_t pad = (align - pool_size_ % align) % align;
      if (pad) pool_parts_.emplace_back(pool_zeros, static_cast<std::size_t>(pad));
      pool_size_ += pad;
      off = pool_size_;
      pool_parts_.push_back(a.data);
      pool_size_ += n;
    }
    key("p");
    begin_list();
    integer(static_cast<std::int64_t>(off));
    integer(static_cast<std::int64_t>(n));
    end_list();
    key("t");
    dtype_ref();
    key("s");
    shape_list(a.shape);
    ++info_.pooled_arrays;
  } else if (n < o_.inline_max_bytes) {
    key("b");
    base64_text(a.data);
    key("t");
    dtype_ref();
    key("s");
    shape_list(a.shape);
    ++info_.inline_arrays;
  } else {
    // Structured and datetime dtypes: the raw bytes plus the checked description.
    std::string name = next_name();
    key("r");
    begin_dict();
    key("$array");
    string(name);
    end_dict();
    key("s");
    shape_list(a.shape);
    key("t");
    dtype_ref();
    std::vector<std::uint64_t> len{n};
    arrays_.push_back(pending{std::move(name), pending::kind::fixed, dtype::uint8, std::move(len), a.data, {}, {}, {}, codec_for(n)});
    ++info_.arrays;
  }
  if (a.fortran) {
    key("o");
    string("F");
  }
  end_dict();
  info_.array_bytes += n;
  return {};
}

void emitter::strings(std::span<const std::uint64_t> shape, std::vector<std::uint64_t> offsets, std::string text,
                      std::string_view hint, std::string_view t, std::uint64_t numpy_nbytes) {
  std::string name = next_name();
  begin_dict();
  key("u");
  begin_dict();
  key("$array");
  string(name);
  end_dict();
  key("t");
  string(t);
  end_dict();
  info_.array_bytes += text.size();
  ++info_.arrays;
  pending p{std::move(name), pending::kind::strings, dtype::string, {shape.begin(), shape.end()}, {}, std::move(offsets),
            std::move(text), std::string(hint), codec_for(numpy_nbytes)};
  arrays_.push_back(std::move(p));
}

void emitter::byte_strings(std::span<const std::uint64_t> shape, std::span<const std::byte> data, std::string_view dtype_str) {
  std::string name = next_name();
  begin_dict();
  key("y");
  begin_dict();
  key("$array");
  string(name);
  end_dict();
  key("s");
  shape_list(shape);
  key("t");
  string(dtype_str);
  end_dict();
  info_.array_bytes += data.size();
  ++info_.arrays;
  arrays_.push_back(pending{std::move(name), pending::kind::fixed, dtype::uint8, {data.size()}, data, {}, {}, {}, codec_for(data.size())});
}

std::string emitter::spliced() const {
  // Wrap the first occurrence of every node referenced again: {"$shared":{"id":N,"value":...}}.
  struct ev {
    std::size_t at;
    int order;        // ends (0) before starts (1) at one offset
    std::size_t rank; // starts: outer (opened first) first; ends: inner first
    std::int64_t sid;
  };
  std::vector<ev> evs;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].sid < 0) continue;
    evs.push_back(ev{nodes_[i].begin, 1, i, nodes_[i].sid});
    evs.push_back(ev{nodes_[i].end, 0, nodes_.size() - i, -1});
  }
  if (evs.empty()) return out_;
  std::sort(evs.begin(), evs.end(), [](const ev& a, const ev& b) {
    if (a.at != b.at) return a.at < b.at;
    if (a.order != b.order) return a.order < b.order;
    return a.rank < b.rank;
  });
  std::string s;
  s.reserve(out_.size() + evs.size() * 16);
  std::size_t pos = 0;
  for (const ev& e : evs) {
    s.append(out_, pos, e.at - pos);
    pos = e.at;
    if (e.order == 1) {
      s += R"({"$shared":{"id":)";
      append_int(s, static_cast<std::uint64_t>(e.sid));
      s += R"(,"value":)";
    } else {
      s += "}}";
    }
  }
  s.append(out_, pos, std::string::npos);
  return s;
}

result<emit_result> emitter::finish(writer& w) {
  emit_result r = info_;
  r.pooled = pooled_;
  r.types.assign(types_.begin(), types_.end());
  for (pending& p : arrays_) {
    if (p.k == pending::kind::fixed) {
      VITRIFY_TRY(w.add_array(p.name, p.type, p.shape, p.data, p.how));
    } else {
      value attrs = value::dict();
      attrs.items().push_back(value::string("numpy_dtype"));
      attrs.items().push_back(value::string(p.hint));
      VITRIFY_TRY(w.add_string_array(p.name, p.shape, p.offsets, std::as_bytes(std::span<const char>(p.text.data(), p.text.size())),
                                     p.how, std::move(attrs)));
    }
  }
  if (pooled_) VITRIFY_TRY(w.add_bytes(pool_name, pool_parts_, o_.arrays));
  std::string text = "{\"root\":";
  text += spliced();
  if (!keyset_list_.empty()) {
    text += ",\"keys\":[";
    for (std::size_t i = 0; i < keyset_list_.size(); ++i) {
      if (i) text.push_back(',');
      text.push_back('[');
      for (std::size_t j = 0; j < keyset_list_[i].size(); ++j) {
        if (j) text.push_back(',');
        detail::append_json_string(text, keyset_list_[i][j]);
      }
      text.push_back(']');
    }
    text.push_back(']');
  }
  if (!dtype_list_.empty()) {
    text += ",\"dtypes\":[";
    for (std::size_t i = 0; i < dtype_list_.size(); ++i) {
      if (i) text.push_back(',');
      text += dtype_list_[i];
    }
    text.push_back(']');
  }
  text.push_back('}');
  r.tree_bytes = text.size();
  array_codec how{codec::raw, 0};
  if (o_.arrays.codec != codec::raw) how = o_.arrays;
  else if (text.size() >= pack_zstd_min) how = array_codec{codec::zstd, 1};
  const std::uint64_t len = text.size();
  VITRIFY_TRY(w.add_array(packed_name, dtype::uint8, std::span<const std::uint64_t>(&len, 1),
                          std::as_bytes(std::span<const char>(text.data(), text.size())), how));
  return r;
}

value emitter::content(const emit_result& r, value schema) {
  value c = value::dict();
  auto put = [&c](const char* k, value v) {
    c.items().push_back(value::string(k));
    c.items().push_back(std::move(v));
  };
  put("kind", value::string(std::string(content_kind)));
  put("version", value::integer(r.pooled ? content_version : 2));
  put("packed", value::array_ref(packed_name));
  value types = value::list();
  for (const auto& t : r.types) types.items().push_back(value::string(t));
  put("types", std::move(types));
  if (r.pooled) put("pool", value::array_ref(pool_name));
  if (!schema.is(value::kind::null)) put("schema", std::move(schema));
  return c;
}

}  // namespace vitrify::objects
