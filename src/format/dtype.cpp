#include "vitrify/dtype.hpp"

#include <array>

namespace vitrify {
namespace {
struct dtype_row {
  std::string_view name;
  std::size_t size;
  std::string_view feature;  // required feature that enables the dtype ("" in 1.0)
  std::uint16_t minor;       // first format minor defining it
};
// Order matches enum dtype; names are part of the format.
constexpr std::array<dtype_row, dtype_count> dtype_table{{
    {"bool", 1, {}, 0},
    {"int8", 1, {}, 0},
    {"int16", 2, {}, 0},
    {"int32", 4, {}, 0},
    {"int64", 8, {}, 0},
    {"uint8", 1, {}, 0},
    {"uint16", 2, {}, 0},
    {"uint32", 4, {}, 0},
    {"uint64", 8, {}, 0},
    {"float16", 2, {}, 0},
    {"bfloat16", 2, {}, 0},
    {"float32", 4, {}, 0},
    {"float64", 8, {}, 0},
    {"complex64", 8, {}, 0},
    {"complex128", 16, {}, 0},
    {"string", 0, {}, 0},
    {"float8_e4m3fn", 1, feature_dtype_float8, 1},
    {"float8_e5m2", 1, feature_dtype_float8, 1},
}};
}  // namespace

std::size_t dtype_size(dtype t) noexcept {
  auto i = static_cast<std::size_t>(t);
  return i < dtype_table.size() ? dtype_table[i].size : 0;
}

std::string_view dtype_name(dtype t) noexcept {
  auto i = static_cast<std::size_t>(t);
  return i < dtype_table.size() ? dtype_table[i].name : std::string_view{"?"};
}

std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < dtype_table.size(); ++i)
    if (dtype_table[i].name == name) return static_cast<dtype>(i);
  return std::nullopt;
}

std::string_view dtype_feature(dtype t) noexcept {
  auto i = static_cast<std::size_t>(t);
  return i < dtype_table.size() ? dtype_table[i].feature : std::string_view{};
}

std::uint16_t dtype_minor(dtype t) noexcept {
  auto i = static_cast<std::size_t>(t);
  return i < dtype_table.size() ? dtype_table[i].minor : std::uint16_t{0};
}

std::string_view codec_name(codec c) noexcept {
  switch (c) {
    case codec::raw: return "raw";
    case codec::zstd: return "zstd";
  }
  return "?";
}

std::optional<codec> codec_from_name(std::string_view name) noexcept {
  if (name == "raw") return codec::raw;
  if (name == "zstd") return codec::zstd;
  return std::nullopt;
}

}  // namespace vitrify
