#include "core/numpy_dtype.hpp"

#include <algorithm>
#include <charconv>

namespace vitrify::detail {

result<numpy_dtype> parse_numpy_dtype(std::string_view s) {
  const std::string_view orig = s;
  auto invalid = [&] { return fail(errc::bad_value, "invalid numpy dtype '" + std::string(orig.substr(0, 64)) + "'"); };
  numpy_dtype d;
  char order = '=';
  if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
    order = s[0];
    s.remove_prefix(1);
  }
  if (s.empty()) return invalid();
  char kind = s[0];
  s.remove_prefix(1);
  if (kind == 'O') {
    if (!s.empty() && s != "8" && s != "4") return invalid();
    d.kind = 'O';
    d.str = "O";
    return d;
  }
  if (kind == '?') {
    kind = 'b';
    if (s.empty()) s = "1";
  }
  std::string unit;
  if (auto br = s.find('['); br != std::string_view::npos) {
    if (s.back() != ']' || (kind != 'M' && kind != 'm')) return invalid();
    unit = std::string(s.substr(br));
    s = s.substr(0, br);
  }
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return invalid();
  std::uint64_t n = 0;
  std::from_chars(s.data(), s.data() + s.size(), n);
  std::uint64_t bytes = n;
  switch (kind) {
    case 'b': if (n != 1) return invalid(); break;
    case 'i': case 'u': if (n != 1 && n != 2 && n != 4 && n != 8) return invalid(); break;
    case 'f': if (n != 2 && n != 4 && n != 8) return invalid(); break;
    case 'c': if (n != 8 && n != 16) return invalid(); break;
    case 'M': case 'm': if (n != 8) return invalid(); break;
    case 'V': case 'S': if (n == 0 || n > max_numpy_itemsize) return invalid(); break;
    case 'U': if (n == 0 || n > max_numpy_unicode_chars) return invalid(); bytes = 4 * n; break;
    default: return fail(errc::bad_value, "unsupported numpy dtype '" + std::string(orig.substr(0, 64)) + "'");
  }
  d.kind = kind;
  d.itemsize = bytes;
  d.big_endian = order == '>' && bytes > 1 && kind != 'S' && kind != 'V';
  if (kind == 'b') d.str = "|b1";
  else if (bytes == 1 || kind == 'S' || kind == 'V') d.str = "|" + std::string(1, kind) + std::to_string(n);
  else d.str = "<" + std::string(1, kind) + std::to_string(n) + unit;
  return d;
}

}  // namespace vitrify::detail
