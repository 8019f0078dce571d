// vitrify/error.hpp - error codes and the result type used on every fallible path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace vitrify {

/// Stable, numbered error codes. Numbers are part of the public contract (docs/FORMAT.md,
/// section "Error codes"): never renumber, only append.
enum class errc : std::uint16_t {
  ok = 0,
  io_error = 1,             ///< open/read/write/fsync/rename failed (errno in the message)
  truncated = 2,            ///< the file ends before a structure it declares
  bad_magic = 3,            ///< not a vitrify file
  unsupported_version = 4,  ///< major version this reader does not know
  unsupported_feature = 5,  ///< a required feature this reader does not implement
  bad_preamble = 6,         ///< reserved bits set, bad alignment, inconsistent lengths
  checksum_mismatch = 7,    ///< XXH3 of a section differs from the recorded one
  bad_header = 8,           ///< header is not valid JSON or does not follow the schema
  limit_exceeded = 9,       ///< a size or count exceeds the reader's configured limits
  bad_array = 10,           ///< dtype x shape disagrees with lengths, bad shape
  bad_layout = 11,          ///< out of bounds, overlap, hole, misalignment, non-zero padding
  unknown_dtype = 12,       ///< dtype name not defined by this format version
  unknown_codec = 13,       ///< codec name not defined by this format version
  decompress_error = 14,    ///< corrupt compressed data, or decoded size differs from declared
  duplicate_name = 15,      ///< two arrays (or two JSON keys) share a name
  bad_name = 16,            ///< empty, too long, invalid UTF-8 or control characters
  invalid_argument = 17,    ///< API misuse by the caller (not a file problem)
  not_found = 18,           ///< no array with that name
  bad_string_array = 19,    ///< string array offsets not monotonic or text not UTF-8
  bad_value = 20,           ///< typed value (metadata/content) malformed
  bad_trailer = 21,         ///< trailer blocks after the header do not parse to the end
  not_raw = 22,             ///< zero-copy view requested for a compressed array
  signature_missing = 23,   ///< signature required but the file has no VITSIG01 block
  signature_invalid = 24,   ///< signature block malformed, by another key, or not matching the content
  key_error = 25,           ///< a key file or key bytes cannot be read or are not an Ed25519 key
  unsupported_model = 26,   ///< the C++ runtime does not implement this estimator or option
  bad_state = 27,           ///< a model's fitted state breaks its invariants (shapes, indices)
  bad_pickle = 28,          ///< a pickle stream is malformed or cannot be accounted for
  unknown_format = 29,      ///< the bytes are not in any format this operation understands
};

/// Short stable identifier of an error code ("checksum_mismatch").
std::string_view errc_name(errc code) noexcept;

/// An error: a stable code plus a message naming the file, the field and what is wrong.
struct error {
  errc code = errc::ok;
  std::string message;
  /// For io_error: the operating system's errno (0 when there is none).
  int sys_errno = 0;

  /// "vitrify error 7 (checksum_mismatch): ..."
  [[nodiscard]] std::string what() const;
};

/// A value or an error. Used instead of exceptions on the parse path so that callers must look.
template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}            // NOLINT
  result(error err) : v_(std::in_place_index<1>, std::move(err)) {}            // NOLINT
  result(errc code, std::string msg) : v_(std::in_place_index<1>, error{code, std::move(msg)}) {}

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const error& err() const& { return std::get<1>(v_); }
  error&& err() && { return std::get<1>(std::move(v_)); }
  [[nodiscard]] errc code() const noexcept { return ok() ? errc::ok : std::get<1>(v_).code; }

 private:
  std::variant<T, error> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(error err) : err_(std::move(err)) {}  // NOLINT
  result(errc code, std::string msg) : err_{code, std::move(msg)} {}

  [[nodiscard]] bool ok() const noexcept { return err_.code == errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  const error& err() const& { return err_; }
  error&& err() && { return std::move(err_); }
  [[nodiscard]] errc code() const noexcept { return err_.code; }

 private:
  error err_;
};

/// Convenience for implementations: `return fail(errc::bad_header, "...")`.
inline error fail(errc code, std::string message) { return error{code, std::move(message)}; }

}  // namespace vitrify

/// Propagate an error from a result-returning expression.
#define VITRIFY_TRY(expr)                              \
  do {                                                 \
    auto&& vitrify_try_r_ = (expr);                    \
    if (!vitrify_try_r_.ok()) return std::move(vitrify_try_r_).err(); \
  } while (0)
