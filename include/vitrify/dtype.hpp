// vitrify/dtype.hpp - element types and codecs of the array table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace vitrify {

/// Element types. All multi-byte types are stored little-endian, C order.
enum class dtype : std::uint8_t {
  bool_ = 0,
  int8,
  int16,
  int32,
  int64,
  uint8,
  uint16,
  uint32,
  uint64,
  float16,
  bfloat16,
  float32,
  float64,
  complex64,
  complex128,
  string,  ///< variable-length UTF-8: (count+1) uint64 offsets, then the text bytes
  // Format 1.1, required feature "dtype_float8" (appended: the numbers above never change).
  float8_e4m3fn,  ///< 1 sign, 4 exponent (bias 7), 3 fraction bits; no infinities, NaN = S.1111.111
  float8_e5m2,    ///< 1 sign, 5 exponent (bias 15), 2 fraction bits; IEEE-like (the top byte of a float16)
};

inline constexpr std::size_t dtype_count = 18;

/// Bytes per element; 0 for `string` (variable length).
std::size_t dtype_size(dtype t) noexcept;
/// Name used in the header ("float32"). Stable: part of the format.
std::string_view dtype_name(dtype t) noexcept;
/// Inverse of dtype_name; nullopt for unknown names.
std::optional<dtype> dtype_from_name(std::string_view name) noexcept;
/// The required feature a file must list to use `t` ("dtype_float8"), or "" for the dtypes of
/// format 1.0. A reader treats a dtype whose feature the file does not list as unknown.
std::string_view dtype_feature(dtype t) noexcept;
/// The lowest format minor version (of major 1) that defines `t`: 0 or 1.
std::uint16_t dtype_minor(dtype t) noexcept;

/// Required feature names this library implements (FORMAT.md section 5).
inline constexpr std::string_view feature_dtype_float8 = "dtype_float8";

/// Per-array codecs.
enum class codec : std::uint8_t {
  raw = 0,   ///< bytes stored as is, memory-mappable
  zstd = 1,  ///< one or more zstd frames decoding to exactly the declared length
};

std::string_view codec_name(codec c) noexcept;
std::optional<codec> codec_from_name(std::string_view name) noexcept;

}  // namespace vitrify
