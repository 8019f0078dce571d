#include <simdjson.h>

#include <cstdio>

#include "format/internal.hpp"

namespace vitrify::detail {

bool valid_utf8(const char* p, std::size_t n) noexcept { return simdjson::validate_utf8(p, n); }

std::string hex64(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = digits[v & 0xf];
    v >>= 4;
  }
  return s;
}

bool parse_hex64(std::string_view s, std::uint64_t* out) noexcept {
  if (s.size() != 16) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else return false;  // lowercase only: one spelling per value keeps files canonical
    v = (v << 4) | d;
  }
  *out = v;
  return true;
}

result<void> check_name(std::string_view name, std::uint64_t max_bytes) {
  if (name.empty()) return fail(errc::bad_name, "array name is empty");
  if (name.size() > max_bytes)
    return fail(errc::bad_name, "array name is " + std::to_string(name.size()) + " bytes, limit " +
                                    std::to_string(max_bytes));
  if (!simdjson::validate_utf8(name.data(), name.size()))
    return fail(errc::bad_name, "array name is not valid UTF-8");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02x", c);
      return fail(errc::bad_name, std::string("array name contains control character ") + buf);
    }
  return {};
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hexd[] = "0123456789abcdef";
  out.push_back('"');
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
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hexd[c >> 4]);
          out.push_back(hexd[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

}  // namespace vitrify::detail
