// src/core/checked.hpp - (private) checked arithmetic for every number read from a file:
// sizes, offsets, shape products. One copy, used by the format reader, the object decoder, the
// legacy readers and the runtime builders.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "vitrify/error.hpp"

namespace vitrify::detail {

/// a * b, false on overflow.
inline bool mul_overflow(std::uint64_t a, std::uint64_t b, std::uint64_t* out) noexcept {
  return __builtin_mul_overflow(a, b, out);
}
/// a + b, false on overflow.
inline bool add_overflow(std::uint64_t a, std::uint64_t b, std::uint64_t* out) noexcept {
  return __builtin_add_overflow(a, b, out);
}
/// a + b, saturating at UINT64_MAX (budgets: "more than the cap" is all that matters).
inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r;
  return add_overflow(a, b, &r) ? UINT64_MAX : r;
}
/// a * b, saturating at UINT64_MAX.
inline std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r;
  return mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
/// Round v up to a multiple of the power of two `a`; false on overflow.
inline bool align_up(std::uint64_t v, std::uint64_t a, std::uint64_t* out) noexcept {
  std::uint64_t t;
  if (add_overflow(v, a - 1, &t)) return false;
  *out = t & ~(a - 1);
  return true;
}
/// [off, off + len) lies within [0, size): the overflow-free form of `off + len <= size`.
inline bool in_range(std::uint64_t off, std::uint64_t len, std::uint64_t size) noexcept {
  return len <= size && off <= size - len;
}

/// Element count of a shape. The product of the non-zero dimensions must fit in int64 (numpy's
/// index type), whatever their order, so that a shape with a zero dimension cannot hide
/// dimensions no array library can represent.
template <class Int>
inline result<std::uint64_t> element_count_of(std::span<const Int> shape) {
  std::uint64_t nonzero = 1;
  bool empty = false;
  for (Int d : shape) {
    if constexpr (std::is_signed_v<Int>)
      if (d < 0) return error{errc::bad_array, "negative array dimension"};
    if (d == 0) {
      empty = true;
      continue;
    }
    if (mul_overflow(nonzero, static_cast<std::uint64_t>(d), &nonzero) || nonzero > static_cast<std::uint64_t>(INT64_MAX))
      return error{errc::bad_array, "the product of the non-zero dimensions exceeds 2^63 - 1"};
  }
  return empty ? 0 : nonzero;
}
inline result<std::uint64_t> element_count(std::span<const std::uint64_t> shape) { return element_count_of(shape); }
/// Signed shapes (numpy's, as the object graph holds them): a negative dimension is an error.
inline result<std::uint64_t> element_count(std::span<const std::int64_t> shape) { return element_count_of(shape); }

/// count * itemsize, or errc::bad_array when it exceeds 2^63 - 1.
inline result<std::uint64_t> byte_count(std::uint64_t count, std::uint64_t itemsize) {
  std::uint64_t n;
  if (mul_overflow(count, itemsize, &n) || n > static_cast<std::uint64_t>(INT64_MAX))
    return error{errc::bad_array, "array of " + std::to_string(count) + " elements of " + std::to_string(itemsize) + " bytes exceeds 2^63 - 1 bytes"};
  return n;
}

}  // namespace vitrify::detail
