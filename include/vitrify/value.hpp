// vitrify/value.hpp - the inert typed value tree stored in the header (metadata, content, ...).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/error.hpp"

namespace vitrify {

/// A node of the typed value tree. Nothing in it is executable: it is data only.
/// The JSON encoding of every kind is normative: see docs/FORMAT.md, "Typed values".
class value {
 public:
  enum class kind : std::uint8_t {
    null,
    boolean,
    integer,    ///< int64
    big_integer,///< decimal text outside int64 ("$int")
    floating,   ///< float64, NaN and infinities included, exact round trip
    string,     ///< UTF-8 text
    bytes,      ///< raw bytes ("$bytes", base64)
    list,
    tuple,      ///< "$tuple"
    dict,       ///< keys of any kind; string-keyed dicts encode as JSON objects
    array_ref,  ///< "$array": name of an entry in the array table
    object,     ///< "$object": canonical type name, schema version, state
    shared,     ///< "$shared": defines an id for a value referenced elsewhere
    ref,        ///< "$ref": refers to a "$shared" id
  };

  value() = default;
  static value null() { return value(); }
  static value boolean(bool b);
  static value integer(std::int64_t i);
  static value big_integer(std::string decimal);
  static value floating(double d);
  static value string(std::string s);
  static value bytes(std::string raw);
  static value list(std::vector<value> items = {});
  static value tuple(std::vector<value> items = {});
  static value dict();
  static value array_ref(std::string name);
  static value object(std::string type, std::int64_t version, value state);
  static value shared(std::int64_t id, value inner);
  static value ref(std::int64_t id);

  [[nodiscard]] kind type() const noexcept { return kind_; }
  [[nodiscard]] bool is(kind k) const noexcept { return kind_ == k; }

  bool as_bool() const noexcept { return int_ != 0; }
  std::int64_t as_int() const noexcept { return int_; }   ///< integer; version (object); id (shared, ref)
  double as_double() const noexcept { return dbl_; }
  /// string, bytes, big_integer (decimal), array_ref (name), object (type name)
  const std::string& as_string() const noexcept { return str_; }
  /// list / tuple items; for dict keys and values interleaved; for object/shared the one child
  const std::vector<value>& items() const noexcept { return items_; }
  std::vector<value>& items() noexcept { return items_; }

  /// dict helpers
  std::size_t dict_size() const noexcept { return items_.size() / 2; }
  const value& dict_key(std::size_t i) const { return items_[2 * i]; }
  const value& dict_value(std::size_t i) const { return items_[2 * i + 1]; }
  void dict_set(value key, value v);
  /// First entry whose key is the string `key`; nullptr if absent or not a dict.
  const value* get(std::string_view key) const noexcept;

  /// object / shared child
  const value& inner() const { return items_.at(0); }

  friend bool operator==(const value& a, const value& b) noexcept;

 private:
  kind kind_ = kind::null;
  std::int64_t int_ = 0;
  double dbl_ = 0.0;
  std::string str_;
  std::vector<value> items_;
};

struct value_limits {
  std::uint32_t max_depth = 256;           ///< nesting of lists/dicts/objects
  std::uint64_t max_nodes = 10'000'000;    ///< total nodes in one tree
};

/// Parse the JSON encoding of a typed value (a whole document), validating it fully.
result<value> parse_value(std::string_view json, const value_limits& lim = {});

/// Canonical JSON encoding: deterministic, shortest round-trip floats, no whitespace.
std::string to_json(const value& v);
/// Append the canonical JSON encoding of v to out.
void append_json(std::string& out, const value& v);

}  // namespace vitrify
