#include "core/numpy_dtype.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace vitrify::detail {

namespace {

// A decimal of 1 to max_digits digits, at most `bound`; false for anything else.
bool parse_decimal(std::string_view s, std::size_t max_digits, std::uint64_t bound, std::uint64_t& out) {
  if (s.empty() || s.size() > max_digits || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  out = 0;
  std::from_chars(s.data(), s.data() + s.size(), out);  // <= 10 digits: no overflow
  return out <= bound;
}

// "[<multiplier><unit>]" of a datetime64 / timedelta64 dtype.
bool valid_datetime_unit(std::string_view u) {
  static constexpr std::array<std::string_view, 13> units = {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as"};
  if (u.size() < 3 || u.front() != '[' || u.back() != ']') return false;
  u = u.substr(1, u.size() - 2);
  const auto digits = static_cast<std::size_t>(std::find_if(u.begin(), u.end(), [](char c) { return c < '0' || c > '9'; }) - u.begin());
  std::uint64_t mult = 0;
  if (digits > 0 && !parse_decimal(u.substr(0, digits), 10, max_numpy_datetime_multiplier, mult)) return false;
  return std::find(units.begin(), units.end(), u.substr(digits)) != units.end();
}

}  // namespace

result<numpy_dtype> parse_numpy_dtype(std::string_view s) {
  const std::string_view orig = s;
  auto invalid = [&] { return fail(errc::bad_value, "invalid numpy dtype '" + std::string(orig.substr(0, 64)) + "'"); };
  numpy_dtype d;
  if (s == "O" || s == "|O") {
    d.kind = 'O';
    d.str = "O";
    return d;
  }
  char order = '=';
  if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
    order = s[0];
    s.remove_prefix(1);
  }
  if (s.empty()) return invalid();
  char kind = s[0] == '?' ? 'b' : s[0];
  s.remove_prefix(1);
  std::string_view unit;
  if (auto br = s.find('['); br != std::string_view::npos) {
    if ((kind != 'M' && kind != 'm') || !valid_datetime_unit(s.substr(br))) return invalid();
    unit = s.substr(br);
    s = s.substr(0, br);
  }
  // Digits of each kind's largest size: a longer number is refused unread.
  std::uint64_t n = 0;
  std::uint64_t bytes = 0;
  switch (kind) {
    case 'b': case 'i': case 'u': case 'f': case 'c': case 'M': case 'm': {
      if (!parse_decimal(s, 2, 16, n)) return invalid();
      const bool ok = kind == 'b'                ? n == 1
                      : kind == 'i' || kind == 'u' ? (n == 1 || n == 2 || n == 4 || n == 8)
                      : kind == 'f'                ? (n == 2 || n == 4 || n == 8)
                      : kind == 'c'                ? (n == 8 || n == 16)
                                                   : n == 8;
      if (!ok) return invalid();
      bytes = n;
      break;
    }
    case 'S': case 'V':
      if (!parse_decimal(s, 10, max_numpy_itemsize, n) || n == 0) return invalid();
      bytes = n;
      break;
    case 'U':
      if (!parse_decimal(s, 9, max_numpy_unicode_chars, n) || n == 0) return invalid();
      bytes = 4 * n;
      break;
    default: return invalid();
  }
  d.kind = kind;
  d.itemsize = bytes;
  d.big_endian = order == '>' && bytes > 1 && kind != 'S' && kind != 'V';
  if (kind == 'b') d.str = "|b1";
  else if (bytes == 1 || kind == 'S' || kind == 'V') d.str = "|" + std::string(1, kind) + std::to_string(n);
  else d.str = "<" + std::string(1, kind) + std::to_string(n) + std::string(unit);
  return d;
}

}  // namespace vitrify::detail
