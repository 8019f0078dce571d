// vitrify/convert.hpp - turn a scikit-learn model saved with pickle or joblib into a vitrify
// file WITHOUT executing it, and the C++ encoder of inert object graphs behind it.
//
//   auto r = vitrify::legacy::convert_file("model.joblib", "model.vit");   // result<convert_info>
//
// The input is read by the non-executing pickle reader (vitrify/legacy.hpp); every type and
// function it names is checked against a fixed list (estimators the C++ runtime implements and
// the types they contain); the graph is then written in the object encoding `vitrify.dump`
// uses (docs/PYTHON.md, "What is stored"), so `vitrify.load`, `vitrify inspect` and the C++
// runtime read the result like any other vitrify file. Nothing is ever imported or called.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/error.hpp"
#include "vitrify/legacy.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/value.hpp"
#include "vitrify/writer.hpp"

namespace vitrify::legacy {

// ---- encoding an object graph ----

/// How write_objects() lays out a graph; defaults follow `vitrify.dump`.
struct encode_options {
  /// Codec of the model's arrays. With zstd, arrays under 256 bytes stay raw (a frame costs
  /// more than it saves) and the packed object tree uses the same level.
  array_codec arrays{codec::raw, 3};
  /// Store numeric and plain structured arrays back to back in one uint8 array "pool"
  /// (object encoding version 3, as `vitrify.dump` does). Off: version 2, where the arrays
  /// are inline or in the array table according to inline_max_bytes.
  bool pool = true;
  /// Without the pool: numeric arrays with fewer bytes than this are stored inline in the tree
  /// (base64, exact); 0 puts every numeric array in the array table.
  std::uint64_t inline_max_bytes = 512;
  /// Write the state dicts of objects as a shared key list plus values (forests repeat the
  /// same keys once per tree). Off: plain dicts. Both load the same.
  bool keysets = true;
  /// Add content["schema"] (estimator type, classes, features, an estimator tree for
  /// `vitrify inspect`) derived from the graph.
  bool schema = true;
  /// Sections written as they are when not null.
  value environment;
  value provenance;
  value metadata;
  /// Nesting limit of the graph (the encoder recurses).
  std::uint32_t max_depth = 1000;
};

/// What write_objects() wrote.
struct encode_info {
  std::string root_type;             ///< type of the root object ("" when the root is no object)
  std::vector<std::string> types;    ///< content["types"]: every class/function name, sorted
  std::size_t arrays = 0;            ///< model arrays in the array table (packed tree excluded)
  std::size_t inline_arrays = 0;     ///< small arrays stored inline in the tree (version 2)
  std::size_t pooled_arrays = 0;     ///< arrays stored in the pool (version 3)
  std::uint64_t array_bytes = 0;     ///< decoded bytes of the model's arrays (table + inline)
  std::uint64_t tree_bytes = 0;      ///< JSON bytes of the packed object tree (before zstd)
  std::size_t shared = 0;            ///< nodes written once and referenced again ($shared)
};

/// Write the graph under `root` into `w` in the object encoding of `vitrify.dump` (content
/// kind "vitrify.python-object", version 3 — version 2 with `pool` off or when no array is
/// pooled: a packed JSON tree in the uint8 array "content", numeric arrays in the uint8 array
/// "pool" (raw or zstd), string arrays, structured arrays as bytes plus a checked field
/// table, shared nodes and cycles as $shared/$ref). Sets the content section, and the
/// environment / provenance / metadata sections from `opt`; the caller commits `w`.
/// errc::bad_state for nodes the encoding cannot represent (object-dtype fields, sub-array
/// dtypes, invalid UTF-8, array data that does not match its dtype and shape).
result<encode_info> write_objects(const pyobj::node& root, writer& w, const encode_options& opt = {});

// ---- converting legacy files ----

struct convert_options {
  /// Codec of the arrays of the output file (zstd: arrays of at least 256 bytes).
  array_codec compress{codec::raw, 3};
  /// After writing, build the model with the C++ runtime from the written file; a model it
  /// cannot build is an error and no output is left behind.
  bool check = true;
  /// Record the SHA-256 of the input file in the provenance section (reads the file once more).
  bool hash_input = true;
  /// fsync the output (see writer_options::durable).
  bool durable = true;
  /// Limits of the pickle reader.
  read_options read{};
};

struct convert_info {
  file_format format = file_format::unknown;  ///< format of the input
  std::string estimator;                      ///< type of the converted root object
  std::string sklearn_version;                ///< `_sklearn_version` recorded in the input ("" if none)
  std::uint64_t input_bytes = 0;
  std::uint64_t output_bytes = 0;
  std::string sha256;                         ///< of the input, hex ("" when not computed)
  bool checked = false;                       ///< the C++ runtime built the written model
  std::vector<std::string> streams;           ///< pickle streams read (joblib object arrays, ...)
  encode_info encoded;
};

/// Convert a scikit-learn model saved with pickle (protocols 2-5) or joblib (plain,
/// compressed, old multi-file layout) into a vitrify file at `out`, atomically.
/// Refused, with nothing written:
///  - errc::unknown_format: not a pickle or joblib file (tensor files, vitrify files, ...);
///  - errc::bad_pickle: a stream the reader cannot fully account for (truncated, trailing
///    opcodes, out-of-band buffers it cannot resolve);
///  - errc::unsupported_model: the file names a type or function outside the convertible set
///    (the message lists them; names that run code are called out as such);
///  - errors of the check (the written model does not build with the C++ runtime).
result<convert_info> convert_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                  const convert_options& opt = {});

/// Judge one canonical type/function name found in a graph to convert.
enum class convert_name : std::uint8_t {
  estimator,    ///< an estimator the C++ runtime implements
  component,    ///< a type such estimators contain (Tree, losses, numpy scalars, builtins...)
  unsupported,  ///< anything else: refused
  dangerous,    ///< runs code or touches the system: always refused
};
convert_name classify_for_convert(std::string_view canonical_name);

/// The fixed list of component names (sorted): what estimators the runtime implements contain
/// besides themselves, as `vitrify.dump` names them.
std::vector<std::string> convert_component_names();

/// Every problem that stops `graph` (and the raw global names of its stream) from being
/// converted, e.g. "os.system (runs code)", "mymodule.MyClass (not convertible)"; empty if none.
std::vector<std::string> convert_refusals(const pyobj::node& root, const std::vector<std::string>& raw_globals);

}  // namespace vitrify::legacy
