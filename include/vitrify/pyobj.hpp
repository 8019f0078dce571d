// vitrify/pyobj.hpp - an inert graph of Python objects, as described by a vitrify file's object
// tree or by a pickle stream. Nothing here imports or calls anything: objects are names and data.
//
// Producers: decode_objects() (a file written by vitrify.dump) and the non-executing pickle
// reader (src/legacy). Consumers: the C++ runtime (estimator builders), the converter and the
// scanner. Shared references and cycles are kept: a node may be reachable from several parents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitrify/error.hpp"

namespace vitrify {

class file;

namespace pyobj {

struct node;
/// Nodes are owned by their `graph` and point at each other with plain pointers (cycles are
/// allowed); a node_ptr is valid as long as the graph lives.
using node_ptr = node*;

struct dtype_spec;

/// One field of a structured numpy dtype (e.g. the node records of sklearn's Tree).
struct field {
  std::string name;
  /// numpy dtype string of the field: "<i8", "<f8", "|u1", ...; ">i8" for a big-endian field,
  /// "V<itemsize>" for a nested structure or a sub-array (see `spec`).
  std::string dtype;
  std::uint64_t offset = 0;  ///< bytes from the start of a record
  /// The field's full description, as the file gave it (set by decode_objects; may be null
  /// from other producers). Consumers that only handle flat little-endian fields compare
  /// `dtype` and never need it.
  std::shared_ptr<const dtype_spec> spec;
};

/// A numpy dtype as a file describes it (OBJECTS.md section 7): a dtype string, a structured
/// description (fields), or a sub-array description (base and shape). Nothing here is numpy.
struct dtype_spec {
  std::string str;                 ///< canonical string: "<f8", "|b1", "<U3", "O", "V16" (structured / sub-array)
  std::uint64_t itemsize = 0;
  char kind = 0;                   ///< numpy kind; 'V' for structured and sub-array descriptions
  bool big_endian = false;         ///< the string said '>' (`str` is the little-endian spelling)
  bool aligned = false;            ///< structured: numpy's align flag
  std::vector<field> fields;       ///< structured descriptions
  std::shared_ptr<const dtype_spec> base;  ///< sub-array descriptions: the element dtype ...
  std::vector<std::int64_t> subshape;      ///< ... and the sub-array shape
};

/// A numpy array. Numeric data is a view of memory that `owner` keeps alive (the file mapping,
/// or a decoded buffer); string arrays hold their items in `strings`, object arrays in `items`.
struct ndarray {
  /// numpy dtype string: "<f8", "<i8", "|b1", "|u1", "<U7", "|S3", "O" for object arrays,
  /// "V<itemsize>" for structured arrays (see `fields`), "U" for text as wide as its longest item.
  /// Always little-endian for numeric data
  /// (producers convert big-endian data).
  std::string dtype;
  std::uint64_t itemsize = 0;           ///< bytes per element (0 for object/str arrays)
  std::vector<std::int64_t> shape;
  bool fortran = false;                 ///< data is in Fortran (column-major) order
  std::vector<field> fields;            ///< structured arrays only
  std::span<const std::byte> data;      ///< numeric/structured data (count * itemsize bytes)
  std::shared_ptr<const void> owner;    ///< keeps `data` alive (may be null: the graph does)
  /// The whole buffer `owner` keeps alive, `data` inside it (the file image, the array pool, a
  /// decoded buffer), so that a consumer can share one view of it among many arrays.
  std::span<const std::byte> region;
  std::vector<std::string> strings;     ///< unicode / bytes / object-of-str arrays, C order
  bool strings_are_objects = false;     ///< the numpy dtype was object (items are Python str)
  std::vector<node_ptr> items;          ///< other object arrays, C order
  /// The dtype exactly as the file described it (byte order, alignment, nested fields), set by
  /// decode_objects for arrays, scalars and dtypes; `dtype` and `fields` are what consumers
  /// that compute on the data read (numeric data is little-endian whatever `spec` says).
  std::shared_ptr<const dtype_spec> spec;

  /// Product of the shape (1 for rank 0). Producers guarantee it fits and matches the data.
  [[nodiscard]] std::uint64_t count() const noexcept;
  [[nodiscard]] char kind() const noexcept;  ///< numpy kind: 'f','i','u','b','c','U','S','O','V','M','m'
};

/// An instance described by its type name and the pieces pickle's reduce protocol records:
/// built as `type.__new__(type, *args, **kwargs)` when `newobj`, else `type(*args)`, then
/// `__setstate__(state)` (or a __dict__ update), then the list / dict items.
struct object {
  std::string type;                     ///< canonical name: "sklearn.linear_model.LogisticRegression"
  bool newobj = false;
  std::vector<node_ptr> args;
  node_ptr kwargs;                      ///< dict or null
  node_ptr state;                       ///< usually a str-keyed dict (the instance __dict__)
  std::vector<node_ptr> listitems;
  std::vector<std::pair<node_ptr, node_ptr>> dictitems;
};

struct node {
  enum class kind : std::uint8_t {
    none, boolean, integer, big_integer, floating, complex, string, bytes,
    list, tuple, dict, set, frozenset,
    array,      ///< numpy.ndarray
    scalar,     ///< numpy scalar: `arr` holds a rank-0 array of its dtype
    dtype,      ///< numpy.dtype: `text` holds the dtype string, `arr.fields` the fields
    global,     ///< a class or function referenced by name (`text`); never resolved here
    object,     ///< see `obj`
  };
  kind k = kind::none;
  bool b = false;
  /// The file gave this value a `$shared` id: several parents may point at it, and a consumer
  /// that builds objects from the graph must build it once.
  bool shared = false;
  std::int64_t i = 0;
  double d = 0.0, imag = 0.0;
  std::string text;                     ///< string / bytes / big_integer decimal / global / dtype
  std::vector<node_ptr> items;          ///< list, tuple, set, frozenset
  std::vector<std::pair<node_ptr, node_ptr>> entries;  ///< dict (insertion order)
  std::shared_ptr<ndarray> arr;         ///< array, scalar
  std::shared_ptr<object> obj;          ///< object

  [[nodiscard]] bool is(kind x) const noexcept { return k == x; }
  /// Dict entry with the string key `key`; nullptr if absent or this is not a dict.
  [[nodiscard]] const node* get(std::string_view key) const noexcept;
  /// For objects: entry `key` of the state dict (nullptr if absent or the state is no dict).
  [[nodiscard]] const node* attr(std::string_view key) const noexcept;
  [[nodiscard]] std::string_view type_name() const noexcept;  ///< object type or global name
};

/// Owns every node of one object graph, and the memory the arrays view (file mapping, buffers).
class graph {
 public:
  node_ptr make() { return &nodes_.emplace_back(); }
  /// Keep `owner` alive as long as the graph (e.g. a decoded buffer several arrays view).
  void keep(std::shared_ptr<const void> owner) { keep_.push_back(std::move(owner)); }
  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  /// fn(node) for every node the graph owns (each once, in creation order, without recursion).
  template <class F>
  void each_node(F&& fn) const {
    for (const node& n : nodes_) fn(n);
  }
  node_ptr root = nullptr;

 private:
  std::deque<node> nodes_;
  std::vector<std::shared_ptr<const void>> keep_;
};

/// The one set of limits of the object decoder (docs/OBJECTS.md, "Limits"). Every consumer of
/// the object encoding (the runtime, convert, inspect, scan, the Python binding) decodes under
/// these; a caller that trusts a file more raises them explicitly.
struct decode_limits {
  /// Nesting of Python values (containers, objects, arrays of objects). Consumers recurse over
  /// the graph, so this bounds their stack too. The JSON text of the tree nests up to
  /// json_depth(): about four JSON levels per Python level (an object node's state dict, its
  /// entry, the value's own wrapper).
  std::uint32_t max_depth = 256;
  /// Nodes of the graph (each also costs sizeof(node) against the byte budget).
  std::uint64_t max_nodes = 10'000'000;
  /// Bytes the decoded graph may declare (array data, decompressed buffers, nodes), per byte of
  /// the file: compressed arrays legitimately expand, a small file must not ask for gigabytes.
  std::uint64_t bytes_per_file_byte = 64;
  /// ... plus this allowance, the explicit cap a caller raises for a file that decodes larger.
  std::uint64_t extra_bytes = std::uint64_t{256} << 20;

  [[nodiscard]] std::uint32_t json_depth() const noexcept { return max_depth * 4 + 16; }
  /// The byte budget of a file of `file_size` bytes (saturating).
  [[nodiscard]] std::uint64_t byte_budget(std::uint64_t file_size) const noexcept {
    std::uint64_t m, r;
    if (__builtin_mul_overflow(file_size, bytes_per_file_byte, &m) || __builtin_add_overflow(m, extra_bytes, &r)) return UINT64_MAX;
    return r;
  }
};

/// The root of the object graph stored by `vitrify.dump` in `f` (content kind
/// "vitrify.python-object", versions 1 and 2). Arrays are views of `f`'s mapping when raw,
/// decoded copies when compressed; every reference, shape, dtype and size is checked.
/// The graph keeps `f`'s storage alive.
result<std::shared_ptr<graph>> decode_objects(const file& f, const decode_limits& lim = {});

/// Every type and function name the graph refers to (object types and globals), sorted, unique.
std::vector<std::string> referenced_names(const node& root);

}  // namespace pyobj
}  // namespace vitrify
