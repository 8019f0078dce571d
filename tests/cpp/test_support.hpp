// test_support.hpp - helpers shared by the C++ tests: temp folders, byte helpers, and a
// hand-made file image builder that lets a test put any JSON into a header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/vitrify.hpp"

namespace vt {

namespace fs = std::filesystem;
using bytes = std::vector<std::byte>;

/// A fresh folder under the system temp folder, removed (recursively) on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] fs::path operator/(std::string_view name) const { return path_ / fs::path(std::string(name)); }
  /// Names of every entry in the folder, sorted.
  [[nodiscard]] std::vector<std::string> entries() const;

 private:
  fs::path path_;
};

bytes read_bytes(const fs::path& p);
void write_bytes(const fs::path& p, std::span<const std::byte> b);

template <class T>
std::span<const std::byte> as_bytes(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}
inline bytes to_bytes(std::string_view s) {
  bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}
inline std::string to_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
/// Deterministic pseudo-random bytes.
bytes pattern_bytes(std::size_t n, std::uint64_t seed = 1);

std::uint64_t xxh3(std::span<const std::byte> b);
std::string hex16(std::uint64_t v);
bytes zstd_compress(std::span<const std::byte> b, int level = 3);

inline std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

void put_u16(bytes& b, std::size_t off, std::uint16_t v);
void put_u32(bytes& b, std::size_t off, std::uint32_t v);
void put_u64(bytes& b, std::size_t off, std::uint64_t v);
std::uint64_t get_u64(std::span<const std::byte> b, std::size_t off);
/// Recompute the preamble checksum (bytes 56..64 = XXH3 of bytes 0..56).
void reseal_preamble(bytes& b);
/// Replace the header JSON of a well-formed image (dropping any trailer blocks) and fix the
/// preamble (header_length, content_length, header_xxh3, preamble_xxh3).
bytes with_header(std::span<const std::byte> image, std::string_view header_json);
/// The header JSON text of a well-formed image.
std::string header_of(std::span<const std::byte> image);
/// Replace the first occurrence of `from` by `to` in s; fails the test (ADD_FAILURE) when absent.
std::string replace_once(std::string s, std::string_view from, std::string_view to);

/// JSON string literal: escapes '"', '\\' and bytes < 0x20; everything else is copied as is.
std::string json_quote(std::string_view s);

/// One array of a hand-made image.
struct raw_array {
  std::string name = "a";
  std::string dtype = "uint8";
  std::vector<std::uint64_t> shape;
  bytes stored;                               ///< bytes placed in the file
  std::string codec = "raw";
  std::optional<std::uint64_t> decoded_length;///< default: stored.size()
  std::optional<std::uint64_t> offset;        ///< default: align_up(previous end, alignment)
  std::optional<std::uint64_t> length;        ///< default: stored.size()
  std::optional<std::string> xxh3;            ///< default: hex of XXH3(stored)
  std::optional<std::string> name_json;       ///< raw JSON for "name" (default: quoted name)
  std::optional<std::string> shape_json;      ///< raw JSON for "shape"
  std::string extra;                          ///< appended members: ",\"level\":3"
};

struct image_spec {
  std::uint32_t alignment = 64;
  std::uint16_t major = 1, minor = 0;
  std::uint32_t flags = 0, reserved = 0;
  std::vector<raw_array> arrays;
  std::string top_extra;                      ///< appended top-level members: ",\"metadata\":1"
  std::optional<std::string> header;          ///< the whole header text, verbatim
  std::optional<std::uint64_t> header_offset; ///< default: align_up(end of arrays, 8)
  std::byte pad = std::byte{0};               ///< fill of padding and holes
  bytes trailer;                              ///< bytes after the header
};

struct image {
  bytes data;
  std::string header;
  std::uint64_t header_offset = 0;
};

/// Build a file image from the spec: preamble with correct checksums, arrays, header, trailer.
image build_image(const image_spec& spec);
/// The header text build_image would write for `spec` (arrays at their default offsets).
std::string default_header(const image_spec& spec);

/// Open an in-memory image.
vitrify::result<vitrify::file> open_image(std::span<const std::byte> b, const vitrify::open_options& opt = {});
/// Error code of opening an image (errc::ok when it opens).
vitrify::errc open_code(std::span<const std::byte> b, const vitrify::open_options& opt = {});

/// Write `path` with the given arrays via the writer (durable=false). Each entry is a uint8 array.
void write_simple_file(const fs::path& path, std::string_view array_name, std::span<const std::byte> data);

}  // namespace vt

/// gtest-friendly printing of error codes.
namespace vitrify {
inline void PrintTo(errc c, std::ostream* os) { *os << errc_name(c); }
}  // namespace vitrify

#define EXPECT_CODE(expr, expected_code)                                                 \
  do {                                                                                   \
    auto&& vt_r_ = (expr);                                                               \
    EXPECT_EQ(vt_r_.code(), (expected_code))                                             \
        << (vt_r_.ok() ? std::string("(succeeded)") : vt_r_.err().what());               \
  } while (0)

#define ASSERT_OK(expr)                                                      \
  do {                                                                       \
    auto&& vt_r_ = (expr);                                                   \
    ASSERT_TRUE(vt_r_.ok()) << vt_r_.err().what();                           \
  } while (0)

#define EXPECT_OK(expr)                                                      \
  do {                                                                       \
    auto&& vt_r_ = (expr);                                                   \
    EXPECT_TRUE(vt_r_.ok()) << vt_r_.err().what();                           \
  } while (0)
