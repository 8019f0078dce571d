#include "vitrify/value.hpp"

#include <openssl/evp.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "format/internal.hpp"
#include "core/value_json.hpp"

namespace vitrify {

value value::boolean(bool b) {
  value v;
  v.kind_ = kind::boolean;
  v.int_ = b ? 1 : 0;
  return v;
}
value value::integer(std::int64_t i) {
  value v;
  v.kind_ = kind::integer;
  v.int_ = i;
  return v;
}
value value::big_integer(std::string decimal) {
  value v;
  v.kind_ = kind::big_integer;
  v.str_ = std::move(decimal);
  return v;
}
value value::floating(double d) {
  value v;
  v.kind_ = kind::floating;
  v.dbl_ = d;
  return v;
}
value value::string(std::string s) {
  value v;
  v.kind_ = kind::string;
  v.str_ = std::move(s);
  return v;
}
value value::bytes(std::string raw) {
  value v;
  v.kind_ = kind::bytes;
  v.str_ = std::move(raw);
  return v;
}
value value::list(std::vector<value> items) {
  value v;
  v.kind_ = kind::list;
  v.items_ = std::move(items);
  return v;
}
value value::tuple(std::vector<value> items) {
  value v;
  v.kind_ = kind::tuple;
  v.items_ = std::move(items);
  return v;
}
value value::dict() {
  value v;
  v.kind_ = kind::dict;
  return v;
}
value value::array_ref(std::string name) {
  value v;
  v.kind_ = kind::array_ref;
  v.str_ = std::move(name);
  return v;
}
value value::object(std::string type, std::int64_t version, value state) {
  value v;
  v.kind_ = kind::object;
  v.str_ = std::move(type);
  v.int_ = version;
  v.items_.push_back(std::move(state));
  return v;
}
value value::shared(std::int64_t id, value inner) {
  value v;
  v.kind_ = kind::shared;
  v.int_ = id;
  v.items_.push_back(std::move(inner));
  return v;
}
value value::ref(std::int64_t id) {
  value v;
  v.kind_ = kind::ref;
  v.int_ = id;
  return v;
}

void value::dict_set(value key, value v) {
  for (std::size_t i = 0; i + 1 < items_.size(); i += 2)
    if (items_[i] == key) {
      items_[i + 1] = std::move(v);
      return;
    }
  items_.push_back(std::move(key));
  items_.push_back(std::move(v));
}

const value* value::get(std::string_view key) const noexcept {
  if (kind_ != kind::dict) return nullptr;
  for (std::size_t i = 0; i + 1 < items_.size(); i += 2)
    if (items_[i].kind_ == kind::string && items_[i].str_ == key) return &items_[i + 1];
  return nullptr;
}

bool operator==(const value& a, const value& b) noexcept {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case value::kind::null: return true;
    case value::kind::boolean:
    case value::kind::integer:
    case value::kind::ref: return a.int_ == b.int_;
    case value::kind::floating:
      // Bitwise: NaN equals the same NaN, -0.0 differs from 0.0 (exact round trip is the point).
      return std::bit_cast<std::uint64_t>(a.dbl_) == std::bit_cast<std::uint64_t>(b.dbl_);
    case value::kind::big_integer:
    case value::kind::string:
    case value::kind::bytes:
    case value::kind::array_ref: return a.str_ == b.str_;
    case value::kind::object: return a.str_ == b.str_ && a.int_ == b.int_ && a.items_ == b.items_;
    case value::kind::shared: return a.int_ == b.int_ && a.items_ == b.items_;
    case value::kind::list:
    case value::kind::tuple:
    case value::kind::dict: return a.items_ == b.items_;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Encoding

namespace {

void append_double(std::string& out, double d) {
  if (std::isnan(d)) {
    out += R"({"$float":"nan"})";
    return;
  }
  if (std::isinf(d)) {
    out += d > 0 ? R"({"$float":"inf"})" : R"({"$float":"-inf"})";
    return;
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  out += s;
  if (s.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void append_int(std::string& out, std::int64_t i) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, i);
  out.append(buf, r.ptr);
}


bool plain_object_dict(const value& v) {
  for (std::size_t i = 0; i < v.dict_size(); ++i) {
    const value& k = v.dict_key(i);
    if (!k.is(value::kind::string)) return false;
    if (!k.as_string().empty() && k.as_string()[0] == '$') return false;
  }
  return true;
}

}  // namespace

void append_json(std::string& out, const value& v) {
  using detail::append_json_string;
  switch (v.type()) {
    case value::kind::null: out += "null"; return;
    case value::kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case value::kind::integer: append_int(out, v.as_int()); return;
    case value::kind::big_integer:
      out += R"({"$int":)";
      append_json_string(out, v.as_string());
      out += '}';
      return;
    case value::kind::floating: append_double(out, v.as_double()); return;
    case value::kind::string: append_json_string(out, v.as_string()); return;
    case value::kind::bytes:
      out += R"({"$bytes":")";
      out += detail::base64_encode(v.as_string());
      out += "\"}";
      return;
    case value::kind::list:
    case value::kind::tuple: {
      if (v.is(value::kind::tuple)) out += R"({"$tuple":)";
      out += '[';
      bool first = true;
      for (const value& x : v.items()) {
        if (!first) out += ',';
        first = false;
        append_json(out, x);
      }
      out += ']';
      if (v.is(value::kind::tuple)) out += '}';
      return;
    }
    case value::kind::dict: {
      if (plain_object_dict(v)) {
        out += '{';
        for (std::size_t i = 0; i < v.dict_size(); ++i) {
          if (i) out += ',';
          append_json_string(out, v.dict_key(i).as_string());
          out += ':';
          append_json(out, v.dict_value(i));
        }
        out += '}';
      } else {
        out += R"({"$dict":[)";
        for (std::size_t i = 0; i < v.dict_size(); ++i) {
          if (i) out += ',';
          out += '[';
          append_json(out, v.dict_key(i));
          out += ',';
          append_json(out, v.dict_value(i));
          out += ']';
        }
        out += "]}";
      }
      return;
    }
    case value::kind::array_ref:
      out += R"({"$array":)";
      append_json_string(out, v.as_string());
      out += '}';
      return;
    case value::kind::object:
      out += R"({"$object":{"type":)";
      append_json_string(out, v.as_string());
      out += R"(,"version":)";
      append_int(out, v.as_int());
      out += R"(,"state":)";
      append_json(out, v.inner());
      out += "}}";
      return;
    case value::kind::shared:
      out += R"({"$shared":{"id":)";
      append_int(out, v.as_int());
      out += R"(,"value":)";
      append_json(out, v.inner());
      out += "}}";
      return;
    case value::kind::ref:
      out += R"({"$ref":)";
      append_int(out, v.as_int());
      out += '}';
      return;
  }
}

std::string to_json(const value& v) {
  std::string out;
  append_json(out, v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

namespace detail {

std::string base64_encode(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

static bool is_b64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool base64_decode(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0) return false;
  std::size_t pad = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '=') {
      if (i < text.size() - 2) return false;
      ++pad;
    } else if (pad != 0 || !is_b64_char(c)) {
      return false;
    }
  }
  if (text.empty()) {
    out->clear();
    return true;
  }
  std::string buf(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buf.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) < pad) return false;
  buf.resize(static_cast<std::size_t>(n) - pad);
  *out = std::move(buf);
  return true;
}


error json_error(simdjson::error_code ec, const std::string& where) {
  if (ec == simdjson::DEPTH_ERROR)
    return fail(errc::limit_exceeded, where + ": JSON nesting exceeds the depth limit");
  if (ec == simdjson::CAPACITY || ec == simdjson::MEMALLOC)
    return fail(errc::limit_exceeded, where + ": JSON document too large");
  return fail(errc::bad_header, where + ": invalid JSON: " + simdjson::error_message(ec));
}

namespace {

bool valid_type_name(std::string_view s) {
  if (s.empty() || s.size() > 512 || s.front() == '.' || s.back() == '.') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) return false;
  }
  return s.find("..") == std::string_view::npos;
}

bool valid_decimal(std::string_view s) {
  std::size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i >= s.size() || s.size() > 100000) return false;
  if (s[i] == '0' && s.size() > i + 1) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

error bad(const std::string& where, const std::string& what) { return fail(errc::bad_value, where + ": " + what); }

result<std::int64_t> get_int(simdjson::dom::element e, const std::string& where, const char* field) {
  std::int64_t i;
  if (e.type() != simdjson::dom::element_type::INT64 || e.get_int64().get(i) != simdjson::SUCCESS)
    return bad(where, std::string("\"") + field + "\" must be an integer");
  return i;
}

}  // namespace

result<value> value_from_object(simdjson::dom::object obj, value_parse_ctx& ctx, std::uint32_t depth, const std::string& where);

result<value> value_from_element(simdjson::dom::element e, value_parse_ctx& ctx, std::uint32_t depth,
                                 const std::string& where) {
  using et = simdjson::dom::element_type;
  if (++ctx.nodes > ctx.lim.max_nodes)
    return fail(errc::limit_exceeded, where + ": more than " + std::to_string(ctx.lim.max_nodes) + " value nodes");
  if (depth > ctx.lim.max_depth)
    return fail(errc::limit_exceeded, where + ": values nested deeper than " + std::to_string(ctx.lim.max_depth));
  switch (e.type()) {
    case et::NULL_VALUE: return value::null();
    case et::BOOL: return value::boolean(e.get_bool().value_unsafe());
    case et::INT64: return value::integer(e.get_int64().value_unsafe());
    case et::UINT64: return bad(where, "integer outside the int64 range must be written as {\"$int\": \"...\"}");
    case et::DOUBLE: return value::floating(e.get_double().value_unsafe());
    case et::STRING: return value::string(std::string(e.get_string().value_unsafe()));
    case et::ARRAY: {
      std::vector<value> items;
      simdjson::dom::array ja = e.get_array().value_unsafe();
      items.reserve(ja.size());
      for (simdjson::dom::element x : ja) {
        auto r = value_from_element(x, ctx, depth + 1, where);
        if (!r) return std::move(r).err();
        items.push_back(std::move(r).value());
      }
      return value::list(std::move(items));
    }
    case et::OBJECT: return value_from_object(e.get_object().value_unsafe(), ctx, depth, where);
    default: return bad(where, "unsupported JSON token");
  }
}

// Objects (tagged values and dicts) in a frame of their own: the locals they need would
// otherwise make every level of a nested list as large, and a deep but legal tree would run
// out of stack (under the sanitizers first).
[[gnu::noinline]] result<value> value_from_object(simdjson::dom::object obj, value_parse_ctx& ctx, std::uint32_t depth,
                                                  const std::string& where) {
  std::size_t n = obj.size();
  bool tagged = false;
  for (auto field : obj)
    if (!field.key.empty() && field.key[0] == '$') tagged = true;
  if (tagged) {
    if (n != 1) return bad(where, "a tagged value (key starting with '$') must have exactly one member");
    auto field = *obj.begin();
    std::string_view tag = field.key;
    simdjson::dom::element x = field.value;
    if (tag == "$float") {
      std::string_view s;
      if (x.get_string().get(s) != simdjson::SUCCESS) return bad(where, "$float must be a string");
      if (s == "nan") return value::floating(std::nan(""));
      if (s == "inf") return value::floating(HUGE_VAL);
      if (s == "-inf") return value::floating(-HUGE_VAL);
      return bad(where, "$float must be \"nan\", \"inf\" or \"-inf\"");
    }
    if (tag == "$int") {
      std::string_view s;
      if (x.get_string().get(s) != simdjson::SUCCESS || !valid_decimal(s))
        return bad(where, "$int must be a decimal integer string");
      return value::big_integer(std::string(s));
    }
    if (tag == "$bytes") {
      std::string_view s;
      std::string raw;
      if (x.get_string().get(s) != simdjson::SUCCESS || !base64_decode(s, &raw))
        return bad(where, "$bytes must be padded base64 text");
      return value::bytes(std::move(raw));
    }
    if (tag == "$tuple") {
      if (!x.is_array()) return bad(where, "$tuple must be an array");
      auto r = value_from_element(x, ctx, depth, where);
      if (!r) return std::move(r).err();
      value v = value::tuple(std::move(r->items()));
      return v;
    }
    if (tag == "$dict") {
      if (!x.is_array()) return bad(where, "$dict must be an array of [key, value] pairs");
      value d = value::dict();
      std::unordered_set<std::string> seen_keys;
      simdjson::dom::array pairs = x.get_array().value_unsafe();
      for (simdjson::dom::element pair : pairs) {
        simdjson::dom::array pa;
        if (pair.get_array().get(pa) != simdjson::SUCCESS || pa.size() != 2)
          return bad(where, "$dict entries must be [key, value] pairs");
        simdjson::dom::element kv[2];
        std::size_t n_kv = 0;
        for (simdjson::dom::element x2 : pa) kv[n_kv++] = x2;
        auto k = value_from_element(kv[0], ctx, depth + 1, where);
        if (!k) return std::move(k).err();
        auto v = value_from_element(kv[1], ctx, depth + 1, where);
        if (!v) return std::move(v).err();
        // Equal keys would make the dict ambiguous: compare canonical encodings.
        if (!seen_keys.insert(to_json(k.value())).second)
          return fail(errc::duplicate_name, where + ": $dict has a duplicate key " + to_json(k.value()));
        d.items().push_back(std::move(k).value());
        d.items().push_back(std::move(v).value());
      }
      return d;
    }
    if (tag == "$array") {
      std::string_view s;
      if (x.get_string().get(s) != simdjson::SUCCESS) return bad(where, "$array must be an array name");
      ctx.array_refs.emplace_back(s);
      return value::array_ref(std::string(s));
    }
    if (tag == "$object" || tag == "$shared") {
      simdjson::dom::object o;
      if (x.get_object().get(o) != simdjson::SUCCESS) return bad(where, std::string(tag) + " must be an object");
      bool is_object = tag == "$object";
      std::optional<simdjson::dom::element> f_type, f_version, f_state, f_id, f_value;
      for (auto f : o) {
        std::optional<simdjson::dom::element>* slot = nullptr;
        if (is_object && f.key == "type") slot = &f_type;
        else if (is_object && f.key == "version") slot = &f_version;
        else if (is_object && f.key == "state") slot = &f_state;
        else if (!is_object && f.key == "id") slot = &f_id;
        else if (!is_object && f.key == "value") slot = &f_value;
        else return bad(where, std::string(tag) + " has unexpected member \"" + std::string(f.key) + "\"");
        if (slot->has_value()) return bad(where, std::string(tag) + " has duplicate member \"" + std::string(f.key) + "\"");
        *slot = f.value;
      }
      if (is_object) {
        if (!f_type || !f_version || !f_state) return bad(where, "$object needs \"type\", \"version\" and \"state\"");
        std::string_view type;
        if (f_type->get_string().get(type) != simdjson::SUCCESS || !valid_type_name(type))
          return bad(where, "$object type must be a dotted name of [A-Za-z0-9_]");
        auto ver = get_int(*f_version, where, "version");
        if (!ver) return std::move(ver).err();
        auto st = value_from_element(*f_state, ctx, depth + 1, where);
        if (!st) return std::move(st).err();
        return value::object(std::string(type), *ver, std::move(st).value());
      }
      if (!f_id || !f_value) return bad(where, "$shared needs \"id\" and \"value\"");
      auto id = get_int(*f_id, where, "id");
      if (!id) return std::move(id).err();
      if (*id < 0) return bad(where, "$shared id must be >= 0");
      if (!ctx.shared_ids.insert(*id).second) return bad(where, "$shared id " + std::to_string(*id) + " defined twice");
      auto inner = value_from_element(*f_value, ctx, depth + 1, where);
      if (!inner) return std::move(inner).err();
      return value::shared(*id, std::move(inner).value());
    }
    if (tag == "$ref") {
      auto id = get_int(x, where, "$ref");
      if (!id) return std::move(id).err();
      ctx.refs.push_back(*id);
      return value::ref(*id);
    }
    return bad(where, "unknown tag \"" + std::string(tag) + "\"");
  }
  // Plain dict with string keys.
  value d = value::dict();
  d.items().reserve(2 * n);
  std::unordered_set<std::string_view> seen;
  for (auto field : obj) {
    if (!seen.insert(field.key).second)
      return fail(errc::duplicate_name, where + ": duplicate key \"" + std::string(field.key) + "\"");
    auto v = value_from_element(field.value, ctx, depth + 1, where);
    if (!v) return std::move(v).err();
    d.items().push_back(value::string(std::string(field.key)));
    d.items().push_back(std::move(v).value());
  }
  return d;
}

result<void> check_refs(const value_parse_ctx& ctx, const std::string& where) {
  for (std::int64_t r : ctx.refs)
    if (!ctx.shared_ids.count(r)) return bad(where, "$ref " + std::to_string(r) + " names no $shared value");
  return {};
}

}  // namespace detail

namespace detail {
result<void> check_json_text(std::string_view text, const std::string& where) {
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF")
    return fail(errc::bad_header, where + ": JSON text starts with a UTF-8 byte order mark");
  return {};
}
}  // namespace detail

result<value> parse_value(std::string_view json, const value_limits& lim) {
  VITRIFY_TRY(detail::check_json_text(json, "value"));
  simdjson::dom::parser parser;
  if (auto ec = parser.allocate(json.size() + 64, 3 * static_cast<std::size_t>(lim.max_depth) + 16))
    return detail::json_error(ec, "value");
  simdjson::dom::element root;
  if (auto ec = parser.parse(json.empty() ? "" : json.data(), json.size(), true).get(root)) return detail::json_error(ec, "value");
  detail::value_parse_ctx ctx;
  ctx.lim = lim;
  auto v = detail::value_from_element(root, ctx, 0, "value");
  if (!v) return v;
  VITRIFY_TRY(detail::check_refs(ctx, "value"));
  return v;
}

}  // namespace vitrify
