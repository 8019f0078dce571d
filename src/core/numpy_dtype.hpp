// src/core/numpy_dtype.hpp - (private) the one parser of numpy dtype strings ("<f8", "|S3",
// "<U7", "V16", "<M8[ns]", "|O"), used by every C++ reader: the object decoder (pyobj.cpp) and
// the legacy pickle / .npy readers. It implements docs/OBJECTS.md section 7.1 exactly, so the
// runtime and the Python decoder accept the same strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vitrify/error.hpp"

namespace vitrify::detail {

/// Largest item of any dtype: numpy's own maximum (2^31 - 1 bytes). A bound keeps
/// `count * itemsize` checkable; the bytes must still exist in the file (every reader compares
/// the product with the data it holds), so a large item never allocates by itself.
inline constexpr std::uint64_t max_numpy_itemsize = (std::uint64_t{1} << 31) - 1;
/// Largest unicode ('U') dtype in characters (4 bytes each): the same byte bound.
inline constexpr std::uint64_t max_numpy_unicode_chars = max_numpy_itemsize / 4;
/// Largest datetime unit multiplier ("<M8[25us]"): numpy stores it in a C int.
inline constexpr std::uint64_t max_numpy_datetime_multiplier = max_numpy_itemsize;

/// A parsed numpy dtype string.
struct numpy_dtype {
  std::string str;              ///< canonical little-endian string: "<f8", "|b1", "|S3", "<U7", "|V16", "O"
  char kind = 0;                ///< 'b','i','u','f','c','M','m','S','U','V','O'
  std::uint64_t itemsize = 0;   ///< bytes per element (0 for 'O')
  bool big_endian = false;      ///< the string said '>' and the order matters (multi-byte numbers, 'U')
};

/// Parse numpy's array-protocol type string (docs/OBJECTS.md section 7.1): "O" or "|O", or an
/// optional byte order ('<', '>', '|', '='), a kind ('?' for 'b') and a decimal size valid for
/// that kind, then for 'M'/'m' only an optional "[<multiplier><unit>]". Sizes with more digits
/// than their bound are refused before any arithmetic. errc::bad_value names the string.
result<numpy_dtype> parse_numpy_dtype(std::string_view s);

}  // namespace vitrify::detail
