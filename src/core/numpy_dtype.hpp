// src/core/numpy_dtype.hpp - (private) the one parser of numpy dtype strings ("<f8", "|S3",
// "<U7", "V16", "<M8[ns]", "|O"), used by every C++ reader: the object decoder (pyobj.cpp) and
// the legacy pickle / .npy readers. Item sizes are bounded, so `count * itemsize` stays checkable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vitrify/error.hpp"

namespace vitrify::detail {

/// Largest item of a bytes ('S') or void ('V') dtype: 16 MiB. numpy allows more, but no model
/// state stores records or fixed-width strings that large, and a bound keeps a one-byte shape
/// from declaring gigabytes.
inline constexpr std::uint64_t max_numpy_itemsize = std::uint64_t{1} << 24;
/// Largest unicode ('U') dtype in characters (4 bytes each): the same byte bound.
inline constexpr std::uint64_t max_numpy_unicode_chars = max_numpy_itemsize / 4;

/// A parsed numpy dtype string.
struct numpy_dtype {
  std::string str;              ///< canonical little-endian string: "<f8", "|b1", "|S3", "<U7", "|V16", "O"
  char kind = 0;                ///< 'b','i','u','f','c','M','m','S','U','V','O'
  std::uint64_t itemsize = 0;   ///< bytes per element (0 for 'O')
  bool big_endian = false;      ///< the string said '>' and the order matters (multi-byte numbers, 'U')
};

/// Parse numpy's array-protocol type string. Accepts an optional byte order ('<', '>', '|',
/// '='), a kind and a decimal size of at most 9 digits, a datetime unit ("[ns]") for 'M'/'m'
/// only, "?" for bool and "O", "O4", "O8" for objects. errc::bad_value names the string.
result<numpy_dtype> parse_numpy_dtype(std::string_view s);

}  // namespace vitrify::detail
