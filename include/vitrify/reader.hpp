// vitrify/reader.hpp - open and verify a vitrify file, then read it without further checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/dtype.hpp"
#include "vitrify/error.hpp"
#include "vitrify/value.hpp"

namespace vitrify {

/// Format version written by this library.
inline constexpr std::uint16_t format_major = 1;
inline constexpr std::uint16_t format_minor = 0;
/// Size of the fixed preamble at offset 0.
inline constexpr std::size_t preamble_size = 64;
/// Magic bytes: "\x89VIT\r\n\x1a\n".
inline constexpr unsigned char magic[8] = {0x89, 'V', 'I', 'T', '\r', '\n', 0x1a, '\n'};

/// Limits a reader enforces. Defaults are documented in docs/FORMAT.md, "Reader limits".
struct limits {
  std::uint64_t max_header_bytes = 64ull << 20;   ///< JSON header; bounds parse memory
  std::uint64_t max_arrays = 1ull << 20;          ///< entries in the array table
  std::uint32_t max_rank = 64;                    ///< dimensions per array (numpy's own cap)
  std::uint32_t max_depth = 256;                  ///< nesting of typed values
  std::uint64_t max_nodes = 10'000'000;           ///< typed value nodes in the whole header
  std::uint64_t max_decoded_bytes = 1ull << 40;   ///< decoded size of one array (1 TiB)
  std::uint64_t max_name_bytes = 4096;            ///< UTF-8 bytes of an array name
};

struct open_options {
  limits lim{};
  /// Map the file writable copy-on-write (MAP_PRIVATE + PROT_WRITE): callers may then modify
  /// their views without touching the file. Default: read-only mapping.
  bool copy_on_write = false;
};

/// One entry of the array table, as verified at open.
struct array_info {
  std::string name;
  vitrify::dtype type = dtype::uint8;
  std::vector<std::uint64_t> shape;
  std::uint64_t count = 0;           ///< product of shape (1 for rank 0)
  std::uint64_t offset = 0;          ///< from the start of the file
  std::uint64_t stored_length = 0;   ///< bytes in the file
  std::uint64_t decoded_length = 0;  ///< bytes after decoding (== stored_length for raw)
  vitrify::codec codec = codec::raw;
  std::int32_t level = 0;            ///< zstd level used (informational)
  std::uint64_t xxh3 = 0;            ///< XXH3-64 of the stored bytes
  value attrs;                       ///< per-array typed attributes (dict or null)
};

/// The owner of a file's bytes (a memory map, or a private aligned copy).
class storage;

/// A verified, immutable vitrify file. Construction checks every structural fact (magic,
/// versions, header checksum, header schema, every offset and length, no overlap or hole,
/// limits); accessors afterwards need no checks. Array checksums are checked on demand.
/// Copies share the underlying mapping; safe to read from many threads at once.
class file {
 public:
  /// Memory-map and verify the file at `path`.
  static result<file> open(const std::filesystem::path& path, const open_options& opt = {});
  /// Verify an in-memory image (copied into an aligned private buffer first).
  static result<file> from_bytes(std::span<const std::byte> bytes, const open_options& opt = {},
                                 std::string display_name = "<memory>");

  [[nodiscard]] std::uint16_t version_major() const noexcept { return major_; }
  [[nodiscard]] std::uint16_t version_minor() const noexcept { return minor_; }
  [[nodiscard]] std::uint32_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::uint64_t size() const noexcept;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] std::span<const std::string> required_features() const noexcept { return features_; }

  [[nodiscard]] std::span<const array_info> arrays() const noexcept { return arrays_; }
  /// Index of the array named `name`, or errc::not_found.
  result<std::size_t> find(std::string_view name) const;

  /// The stored bytes of array i (compressed or not), inside the mapping. i must be < arrays().size().
  [[nodiscard]] std::span<const std::byte> stored_bytes(std::size_t i) const noexcept;
  /// Zero-copy view of a raw array's decoded bytes; errc::not_raw for compressed arrays.
  /// With `check` the XXH3 checksum is verified first (touches every byte).
  result<std::span<const std::byte>> view(std::size_t i, bool check = false) const;
  /// Decode array i into `out` (out.size() must equal decoded_length), verifying its checksum.
  result<void> read_into(std::size_t i, std::span<std::byte> out, bool check = true) const;
  /// Decode a string array into a vector of UTF-8 strings (validates offsets and UTF-8).
  result<std::vector<std::string>> read_strings(std::size_t i, bool check = true) const;
  /// Verify one array's checksum (and for string arrays, offsets and UTF-8; for compressed
  /// arrays, that the stream decodes to exactly the declared length).
  result<void> verify_array(std::size_t i) const;
  /// Verify everything: every array as above, bool values 0/1.
  result<void> verify() const;

  /// Typed sections of the header (null when absent).
  [[nodiscard]] const value& metadata() const noexcept { return metadata_; }
  [[nodiscard]] const value& environment() const noexcept { return environment_; }
  [[nodiscard]] const value& provenance() const noexcept { return provenance_; }
  [[nodiscard]] const value& content() const noexcept { return content_; }
  /// The header JSON text exactly as stored.
  [[nodiscard]] std::string_view header_json() const noexcept;
  /// Bytes [0, content_end): preamble, arrays and header. Trailer blocks follow.
  [[nodiscard]] std::uint64_t content_length() const noexcept { return content_length_; }
  /// Trailer blocks after the header: (tag, body) pairs, verified to tile the file's end.
  struct trailer_block {
    std::string tag;
    std::span<const std::byte> body;
  };
  [[nodiscard]] std::span<const trailer_block> trailers() const noexcept { return trailers_; }
  /// The whole file image.
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept;

 private:
  static result<file> parse(std::shared_ptr<storage> st, const open_options& opt, std::string name);
  result<void> check_string_offsets(std::size_t i, std::span<const std::byte> decoded) const;
  result<void> stream_check(std::size_t i) const;

  std::shared_ptr<storage> storage_;
  std::string name_;
  std::uint16_t major_ = 0, minor_ = 0;
  std::uint32_t alignment_ = 0;
  std::uint64_t header_offset_ = 0, header_length_ = 0, content_length_ = 0;
  std::vector<std::string> features_;
  std::vector<array_info> arrays_;
  std::vector<trailer_block> trailers_;
  value metadata_, environment_, provenance_, content_;
};

}  // namespace vitrify
