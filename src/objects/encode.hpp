// Internal: THE emitter of the object encoding (content kind "vitrify.python-object", versions 2
// and 3; docs/PYTHON.md "What is stored", docs/OBJECTS.md). Two front-ends drive it: the
// binding's walker of live Python objects (python/src/bind_encode.cpp, behind vitrify.dump) and
// the walker of inert pickle graphs (src/legacy/encode.cpp, behind `vitrify convert`). The
// front-ends decide what a value *is*; every byte of the encoding is written here.
//
// The tree is written as JSON text as it is walked, never built as a value tree first. A node
// met a second time becomes {"$ref": id}; its first occurrence is wrapped in
// {"$shared": {"id": id, "value": ...}} when finish() splices the text, so the walk needs no
// counting pass (the id is given when the first $ref is written, as model.py always did).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vitrify/dtype.hpp"
#include "vitrify/error.hpp"
#include "vitrify/value.hpp"
#include "vitrify/writer.hpp"

namespace vitrify::objects {

inline constexpr std::string_view content_kind = "vitrify.python-object";
/// Version written when some array is pooled; 2 otherwise (no pool reference).
inline constexpr std::int64_t content_version = 3;
inline constexpr std::int64_t object_version = 1;
inline constexpr const char* packed_name = "content";
inline constexpr const char* pool_name = "pool";
/// The packed tree is zstd-compressed (level 1) from this size even when arrays stay raw: it is
/// always parsed in full, never mapped.
inline constexpr std::uint64_t pack_zstd_min = 4096;
/// With zstd, arrays smaller than this stay raw: a frame costs more than it saves.
inline constexpr std::uint64_t zstd_min_bytes = 256;
/// Pool offsets are multiples of pool_align, of pool_align_big for arrays of pool_big bytes or
/// more (so numpy and C++ can view them in place, SIMD loads included).
inline constexpr std::uint64_t pool_align = 16;
inline constexpr std::uint64_t pool_align_big = 64;
inline constexpr std::uint64_t pool_big = 4096;

struct emit_options {
  /// Codec of the arrays (the pool and table arrays of at least zstd_min_bytes).
  array_codec arrays{codec::raw, 0};
  /// Version 3: numeric and plain structured arrays back to back in the uint8 array "pool".
  /// Off: version 2, arrays inline (under inline_max_bytes) or in the array table.
  bool pool = true;
  std::uint64_t inline_max_bytes = 512;
  /// Object state dicts as a shared key list ("keys" table) plus values.
  bool keysets = true;
};

/// A fixed-size array to place (pool, inline or table), as the front-end found it.
struct fixed_array {
  /// How the tree names the dtype: numpy's dtype.str ("<f8", "|b1", "<M8[ns]") or, for
  /// structured dtypes, an index into the dtypes table (see emitter::dtype_index).
  std::string dtype_str;
  std::int64_t dtype_index = -1;
  /// The array-table dtype for plain numeric dtypes (needed for version-2 "d" and named dtypes).
  std::optional<dtype> table_dtype;
  /// ml_dtypes' types (bfloat16, float8): numpy has no type code for them, so they always go
  /// to the array table, which records the dtype.
  bool named_dtype = false;
  std::vector<std::uint64_t> shape;  ///< stored shape (reversed when fortran)
  bool fortran = false;              ///< stored as the C-ordered transpose, "o": "F"
  /// C-ordered bytes of the stored array; must stay valid until finish() returns.
  std::span<const std::byte> data;
};

struct emit_result {
  bool pooled = false;
  std::vector<std::string> types;  ///< every class/function name written, sorted
  std::size_t arrays = 0;          ///< array-table arrays (packed tree and pool excluded)
  std::size_t inline_arrays = 0;
  std::size_t pooled_arrays = 0;
  std::uint64_t array_bytes = 0;
  std::uint64_t tree_bytes = 0;    ///< JSON bytes of the packed tree
  std::size_t shared = 0;          ///< nodes written once and referenced again
};

/// Python's repr() of a finite float (shortest round trip, the same digits and layout), as
/// json.dumps writes it: the tree's bytes do not depend on which front-end wrote them.
void append_float_repr(std::string& out, double d);

class emitter {
 public:
  explicit emitter(const emit_options& o = {});

  [[nodiscard]] const emit_options& options() const noexcept { return o_; }

  // ---- values (each call writes one complete value at the current position) ----
  void null();
  void boolean(bool b);
  void integer(std::int64_t i);
  /// An integer outside int64, as decimal text: {"$int": "..."}.
  void big_integer(std::string_view decimal);
  /// NaN and infinities as {"$float": "nan" | "inf" | "-inf"}.
  void floating(double d);
  /// `utf8` must be valid UTF-8 (the front-end checks or gets it from Python).
  void string(std::string_view utf8);
  void bytes(std::span<const std::byte> raw);   ///< {"$bytes": base64}
  void base64_text(std::span<const std::byte> raw);  ///< a plain string holding base64
  /// Verbatim JSON text of one complete value (a dtype description built by dtype_json()).
  void raw_json(std::string_view json);

  void begin_list();
  void end_list();
  void begin_tuple();   ///< {"$tuple": [...]}
  void end_tuple();
  /// A str-keyed dict whose keys do not start with '$' (a JSON object); key() before each value.
  void begin_dict();
  void key(std::string_view utf8);
  void end_dict();
  /// Any other dict: {"$dict": [[k, v], ...]}; the front-end writes each pair as a list.
  void begin_pair_dict();
  void end_pair_dict();
  /// {"$object": {"type": type, "version": 1, "state": <one value>}}.
  void begin_object(std::string_view type);
  void end_object();
  /// An object of a reduce-protocol type: also listed in content["types"].
  void begin_typed_object(std::string_view type);
  /// A reference to a class or function by name: vitrify.global, listed in content["types"].
  void global(std::string_view name);
  /// Opens an object array {"s": shape, "t": "O", "i": ...}: the front-end writes the items
  /// list next, then end_dict().
  void object_array_head(std::span<const std::uint64_t> shape);

  // ---- shared nodes ----
  using slot = std::uint32_t;
  /// Call right before writing a node that may be met again; close_node() right after it.
  slot open_node();
  void close_node(slot s);
  /// Write {"$ref": id} for the node of `s` (which becomes $shared).
  void ref(slot s);

  // ---- tables ----
  /// Index of a key list in the "keys" table (added when new). Keys are UTF-8.
  std::int64_t keyset(const std::vector<std::string_view>& keys);
  /// Index of a structured dtype description (its JSON text) in the "dtypes" table.
  std::int64_t dtype_index(const std::string& desc_json);
  void add_type(std::string_view name);

  // ---- arrays (each writes the state dict of a numpy.ndarray node) ----
  /// Numeric / plain structured data: {"p": [off, n], "t", "s"} (pool), {"b", "t", "s"}
  /// (inline), {"d"} (table, plain dtypes) or {"r", "s", "t"} (table, raw bytes); "o": "F".
  result<void> fixed(const fixed_array& a);
  /// A string array (numpy str, or object arrays holding only str): {"u": name, "t": t}.
  /// `hint` is the attribute numpy_dtype ("<U7" or "object"); `numpy_nbytes` the array's
  /// numpy size, which decides its codec.
  void strings(std::span<const std::uint64_t> shape, std::vector<std::uint64_t> offsets, std::string text,
               std::string_view hint, std::string_view t, std::uint64_t numpy_nbytes);
  /// numpy bytes arrays ('S'): {"y": name, "s": shape, "t": dtype_str}; `data` must stay
  /// valid until finish().
  void byte_strings(std::span<const std::uint64_t> shape, std::span<const std::byte> data, std::string_view dtype_str);

  /// Write the table arrays, the pool and the packed tree into `w`; set nothing else.
  result<emit_result> finish(writer& w);
  /// content section of a dump: kind, version, packed, pool, types, and `schema` if not null.
  static value content(const emit_result& r, value schema);

  /// Name the next table array will get ("0", "1", ...), for messages about it.
  [[nodiscard]] std::string next_array_name() const { return std::to_string(arrays_.size()); }

  /// JSON text of the tree so far (tests).
  [[nodiscard]] const std::string& text() const noexcept { return out_; }

 private:
  struct node_span {
    std::size_t begin = 0, end = 0;
    std::int64_t sid = -1;
  };
  struct pending {
    std::string name;
    enum class kind : std::uint8_t { fixed, strings } k = kind::fixed;
    dtype type = dtype::uint8;
    std::vector<std::uint64_t> shape;
    std::span<const std::byte> data;
    std::vector<std::uint64_t> offsets;
    std::string text;
    std::string hint;
    array_codec how;
  };

  void sep() {
    if (comma_) out_.push_back(',');
    comma_ = false;
  }
  void done() { comma_ = true; }
  array_codec codec_for(std::uint64_t bytes) const;
  std::string next_name() const { return next_array_name(); }
  void shape_list(std::span<const std::uint64_t> shape);
  std::string spliced() const;

  emit_options o_;
  std::string out_;
  bool comma_ = false;
  std::vector<node_span> nodes_;
  std::int64_t next_sid_ = 0;
  std::map<std::string, std::int64_t, std::less<>> keysets_;   // keys joined with '\0' + length
  std::vector<std::vector<std::string>> keyset_list_;
  std::map<std::string, std::int64_t, std::less<>> dtypes_;
  std::vector<std::string> dtype_list_;
  std::set<std::string, std::less<>> types_;
  std::vector<pending> arrays_;
  std::vector<std::span<const std::byte>> pool_parts_;
  std::uint64_t pool_size_ = 0;
  bool pooled_ = false;
  emit_result info_;
};

}  // namespace vitrify::objects
