// render.cpp - text and JSON rendering helpers shared by the tool's commands.
#include "render.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace vitrify::cli {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::string json_string(std::string_view s) {
  const bool utf8 = valid_utf8(s);
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string format_double(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, ec == std::errc() ? end : buf);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string human_size(std::uint64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_shape(std::span<const std::uint64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ',';
  s += ')';
  return s;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

namespace {
bool is_wide(std::uint32_t cp) {
  return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
         (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
         (cp >= 0xFF00 && cp <= 0xFF60) || (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
         (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD);
}
}  // namespace

std::size_t display_width(std::string_view s) {
  std::size_t w = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    unsigned c = p[i];
    std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    // Combining marks take no column.
    bool combining = (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0xFE00 && cp <= 0xFE0F);
    w += combining ? 0 : is_wide(cp) ? 2 : 1;
    i += len;
  }
  return w;
}

namespace {

using kind = value::kind;

/// Cut a string to at most `max` bytes on a UTF-8 boundary.
std::string_view cut_utf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

constexpr std::size_t max_string_shown = 160;
constexpr std::size_t max_bytes_shown = 16;
constexpr std::size_t max_inline_len = 72;
constexpr std::size_t max_inline_items = 16;

std::string scalar_text(const value& v) {
  switch (v.type()) {
    case kind::null: return "null";
    case kind::boolean: return v.as_bool() ? "true" : "false";
    case kind::integer: return std::to_string(v.as_int());
    case kind::big_integer: return v.as_string();
    case kind::floating: return format_double(v.as_double());
    case kind::string: {
      const auto& s = v.as_string();
      if (s.size() <= max_string_shown) return json_string(s);
      return json_string(cut_utf8(s, max_string_shown)) + "... (" + std::to_string(s.size()) +
             " bytes)";
    }
    case kind::bytes: {
      const auto& b = v.as_string();
      std::string out = "<" + std::to_string(b.size()) + " bytes";
      if (!b.empty()) {
        out += ": ";
        char buf[4];
        for (std::size_t i = 0; i < b.size() && i < max_bytes_shown; ++i) {
          std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(b[i]));
          out += buf;
        }
        if (b.size() > max_bytes_shown) out += "...";
      }
      return out + ">";
    }
    case kind::array_ref: return "<array " + json_string(v.as_string()) + ">";
    case kind::ref: return "<ref #" + std::to_string(v.as_int()) + ">";
    default: return {};
  }
}

bool is_scalar(const value& v) {
  switch (v.type()) {
    case kind::list:
    case kind::tuple:
    case kind::dict:
    case kind::object:
    case kind::shared: return false;
    default: return true;
  }
}

bool is_container_empty(const value& v) {
  return (v.is(kind::list) || v.is(kind::tuple) || v.is(kind::dict)) && v.items().empty();
}

std::string dict_key_text(const value& k) {
  if (k.is(kind::string)) {
    const auto& s = k.as_string();
    bool plain = !s.empty() && s.size() <= 64;
    for (char ch : s) {
      auto c = static_cast<unsigned char>(ch);
      if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/' || c >= 0x80)) {
        plain = false;
        break;
      }
    }
    if (plain) return s;
  }
  return inline_value(k, max_inline_len);
}

/// Lines for `prefix value` at `indent`, where prefix is e.g. "key: " or "- ".
void render_entry(std::string& out, const std::string& prefix, const value& v, int indent) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::string one = inline_value(v, max_inline_len + 1);
  const bool small_container = (v.is(kind::list) || v.is(kind::tuple)) ? v.items().size() <= max_inline_items
                               : v.is(kind::dict)                     ? v.dict_size() <= max_inline_items / 2
                                                                      : true;
  if (is_scalar(v) || is_container_empty(v) || (small_container && one.size() <= max_inline_len)) {
    if (is_scalar(v)) one = inline_value(v);
    out += pad + prefix + one + "\n";
    return;
  }
  std::string head = prefix;
  while (!head.empty() && head.back() == ' ') head.pop_back();
  switch (v.type()) {
    case kind::list:
    case kind::tuple:
      out += pad + head + (v.is(kind::tuple) ? " (tuple)" : "") + "\n";
      for (const auto& item : v.items()) render_entry(out, "- ", item, indent + 2);
      break;
    case kind::dict:
      out += pad + head + "\n";
      for (std::size_t i = 0; i < v.dict_size(); ++i)
        render_entry(out, dict_key_text(v.dict_key(i)) + ": ", v.dict_value(i), indent + 2);
      break;
    case kind::object:
      out += pad + head + (head.empty() ? "" : " ") + "<object " + json_string(v.as_string()) +
             " v" + std::to_string(v.as_int()) + ">\n";
      if (!v.items().empty()) render_entry(out, "state: ", v.inner(), indent + 2);
      break;
    case kind::shared:
      if (!v.items().empty())
        render_entry(out, prefix + "&" + std::to_string(v.as_int()) + " ", v.inner(), indent);
      else
        out += pad + prefix + "&" + std::to_string(v.as_int()) + "\n";
      break;
    default: out += pad + prefix + one + "\n";
  }
}

}  // namespace

std::string inline_value(const value& v, std::size_t max_len) {
  std::string out;
  switch (v.type()) {
    case kind::list:
    case kind::tuple: {
      const bool tup = v.is(kind::tuple);
      out += tup ? '(' : '[';
      for (std::size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += ", ";
        out += inline_value(v.items()[i], max_len);
        if (max_len && out.size() > max_len) break;
      }
      if (tup && v.items().size() == 1) out += ',';
      out += tup ? ')' : ']';
      break;
    }
    case kind::dict: {
      out += '{';
      for (std::size_t i = 0; i < v.dict_size(); ++i) {
        if (i) out += ", ";
        out += dict_key_text(v.dict_key(i)) + ": " + inline_value(v.dict_value(i), max_len);
        if (max_len && out.size() > max_len) break;
      }
      out += '}';
      break;
    }
    case kind::object:
      out = "<object " + json_string(v.as_string()) + " v" + std::to_string(v.as_int()) + ">";
      if (!v.items().empty()) out += "(" + inline_value(v.inner(), max_len) + ")";
      break;
    case kind::shared:
      out = "&" + std::to_string(v.as_int());
      if (!v.items().empty()) out += " " + inline_value(v.inner(), max_len);
      break;
    default: out = scalar_text(v);
  }
  if (max_len && out.size() > max_len) out = std::string(cut_utf8(out, max_len)) + "...";
  return out;
}

std::string pretty_value(const value& v, int indent) {
  std::string out;
  if (v.is(kind::dict) && !v.items().empty()) {
    for (std::size_t i = 0; i < v.dict_size(); ++i)
      render_entry(out, dict_key_text(v.dict_key(i)) + ": ", v.dict_value(i), indent);
  } else {
    render_entry(out, "", v, indent);
  }
  return out;
}

std::uint64_t count_nodes(const value& v) {
  std::uint64_t n = 1;
  for (const auto& c : v.items()) n += count_nodes(c);
  return n;
}

table::table(std::vector<std::string> header, std::vector<bool> right_align)
    : right_(std::move(right_align)) {
  right_.resize(header.size(), false);
  rows_.push_back(std::move(header));
}

void table::add_row(std::vector<std::string> row) {
  row.resize(rows_.front().size());
  rows_.push_back(std::move(row));
}

std::string table::str(int indent) const {
  const std::size_t ncol = rows_.front().size();
  std::vector<std::size_t> width(ncol, 0);
  for (const auto& r : rows_)
    for (std::size_t c = 0; c < ncol; ++c) width[c] = std::max(width[c], display_width(r[c]));
  std::string out;
  for (const auto& r : rows_) {
    std::string line(static_cast<std::size_t>(indent), ' ');
    for (std::size_t c = 0; c < ncol; ++c) {
      std::size_t fill = width[c] - display_width(r[c]);
      if (c) line += "  ";
      if (right_[c]) line.append(fill, ' ');
      line += r[c];
      if (!right_[c] && c + 1 < ncol) line.append(fill, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
  }
  return out;
}

}  // namespace vitrify::cli
