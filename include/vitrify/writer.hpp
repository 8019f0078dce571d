// vitrify/writer.hpp - stream arrays into a new vitrify file, atomically.
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

struct writer_options {
  /// Alignment of every array's first byte: a power of two from 64 to 4096.
  std::uint32_t alignment = 64;
  /// fsync the file and its folder before and after the rename (durability). Tests may turn
  /// it off for speed; atomicity (temp file + rename) is kept either way.
  bool durable = true;
  /// Threads for zstd compression of large arrays (at least 4 MiB): 0 means one per hardware
  /// thread. Output bytes do not depend on this number (zstd's multi-threaded mode produces the
  /// same frames for any worker count), so files stay reproducible across machines.
  unsigned compression_threads = 0;
};

/// How one array is stored.
struct array_codec {
  vitrify::codec codec = codec::raw;
  int level = 3;  ///< zstd level (1..22, negative for fast modes)
};

/// Writes a vitrify file. Arrays are streamed to the destination as they are added (the writer
/// never holds a second copy of them); the header goes after the arrays, the preamble is written
/// last. For file destinations the data goes to a temporary file in the target's folder that is
/// renamed over the target by commit(); destroying an uncommitted writer removes it.
/// The same sequence of calls always produces byte-identical output.
class writer {
 public:
  /// Write to `path` atomically. Fails if the target is a symbolic link or a folder.
  static result<writer> create(const std::filesystem::path& path, const writer_options& opt = {});
  /// Write into memory; commit() then returns the bytes via take_bytes().
  static result<writer> create_in_memory(const writer_options& opt = {});

  writer(writer&&) noexcept;
  writer& operator=(writer&&) noexcept;
  ~writer();

  /// Append a fixed-size array. `data` must hold exactly dtype_size(type) * prod(shape) bytes,
  /// little-endian, C order.
  result<void> add_array(std::string_view name, dtype type, std::span<const std::uint64_t> shape,
                         std::span<const std::byte> data, array_codec how = {}, value attrs = {});
  /// Append a 1-D uint8 array whose bytes are the concatenation of `pieces`, written as they
  /// are (a gather write: the pieces are never copied into one buffer first).
  result<void> add_bytes(std::string_view name, std::span<const std::span<const std::byte>> pieces,
                         array_codec how = {}, value attrs = {});
  /// Append a string array from its offsets (count + 1 values, offsets[0] == 0, non-decreasing,
  /// last == text.size()) and concatenated UTF-8 text.
  result<void> add_string_array(std::string_view name, std::span<const std::uint64_t> shape,
                                std::span<const std::uint64_t> offsets, std::span<const std::byte> text,
                                array_codec how = {}, value attrs = {});
  /// Convenience: a string array from a list of strings.
  result<void> add_string_array(std::string_view name, std::span<const std::uint64_t> shape,
                                std::span<const std::string> strings, array_codec how = {}, value attrs = {});

  /// Typed header sections (each optional). Values are validated when the header is written:
  /// every "$array" reference must name an array of this file.
  void set_metadata(value v);
  void set_environment(value v);
  void set_provenance(value v);
  void set_content(value v);

  /// Number of arrays added so far.
  [[nodiscard]] std::size_t array_count() const noexcept;

  /// Write the header and preamble, flush, and (for files) fsync + rename + fsync folder.
  result<void> commit();
  /// For in-memory writers after commit(): the file image.
  std::vector<std::byte> take_bytes();

 private:
  struct impl;
  explicit writer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace vitrify
