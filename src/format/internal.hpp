// Internal helpers shared by the format layer. Not installed.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <climits>
#include <string>
#include <string_view>

#include "core/checked.hpp"
#include "vitrify/error.hpp"

static_assert(std::endian::native == std::endian::little,
              "vitrify currently supports little-endian hosts only (the format is little-endian)");

namespace vitrify {

/// The owner of a file image: a memory map or an aligned heap copy.
class storage {
 public:
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;
  virtual ~storage() = default;
  [[nodiscard]] const std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }

 protected:
  storage() = default;
  const std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

namespace detail {

/// Map `path` (read-only, or private writable when copy_on_write).
result<std::shared_ptr<storage>> map_file(const std::string& path, bool copy_on_write);
/// Copy bytes into a 4096-aligned private buffer.
std::shared_ptr<storage> copy_to_storage(const std::byte* p, std::size_t n);

inline std::uint16_t load_u16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline std::uint32_t load_u32(const std::byte* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint64_t load_u64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void store_u16(std::byte* p, std::uint16_t v) noexcept { std::memcpy(p, &v, 2); }
inline void store_u32(std::byte* p, std::uint32_t v) noexcept { std::memcpy(p, &v, 4); }
inline void store_u64(std::byte* p, std::uint64_t v) noexcept { std::memcpy(p, &v, 8); }

bool valid_utf8(const char* p, std::size_t n) noexcept;
std::string hex64(std::uint64_t v);

bool parse_hex64(std::string_view s, std::uint64_t* out) noexcept;

/// Array names: 1..max_bytes of UTF-8 without C0 controls or DEL.
result<void> check_name(std::string_view name, std::uint64_t max_bytes);

/// Escape a string as a JSON string literal (with quotes) onto out.
void append_json_string(std::string& out, std::string_view s);

inline constexpr std::size_t preamble_checked_bytes = 56;

}  // namespace detail
}  // namespace vitrify
