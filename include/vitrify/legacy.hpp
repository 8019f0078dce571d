// vitrify/legacy.hpp - read pickle, joblib and PyTorch files WITHOUT executing them, detect
// file formats by content, and scan files for the code they would run when unpickled.
//
// The pickle reader interprets the opcode stream itself into an inert pyobj graph: it never
// imports or calls anything, and there is no fallback to a real unpickler. Calls to known
// constructors (numpy arrays and dtypes, copyreg._reconstructor, collections, sklearn's Tree,
// joblib's array wrappers, torch tensor rebuilds and storages) become inert nodes; any other
// call becomes an object node recording (callee, args) and is listed in read_result::calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/error.hpp"
#include "vitrify/pyobj.hpp"

namespace vitrify::legacy {

enum class file_format : std::uint8_t {
  unknown, vitrify, pickle, joblib, torch_zip, torch_tar, npy, npz, safetensors, zip_other
};

/// "unknown", "vitrify", "pickle", "joblib", "torch_zip", "torch_tar", "npy", "npz",
/// "safetensors", "zip_other".
std::string_view format_name(file_format f) noexcept;

/// The format of a file judged by its first bytes only (pass >= 4 KiB when available; fewer
/// bytes give a less certain answer). Never looks at the file name.
/// Compressed joblib files (zlib, gzip, bz2, xz/lzma, lz4) are reported as `joblib`; a plain
/// pickle that mentions joblib's array wrappers in its first bytes too.
file_format detect_format(std::span<const std::byte> head) noexcept;

/// Limits the reader enforces on hostile input; every count and length in a stream is checked
/// against them and against the bytes that remain.
struct read_options {
  std::uint32_t max_depth = 1000;                 ///< nesting of containers in the result graph
  std::uint64_t max_stack = 1ull << 22;           ///< values on the pickle stack (incl. marks)
  std::uint64_t max_memo = 1ull << 22;            ///< memo entries
  std::uint64_t max_nodes = 10'000'000;           ///< graph nodes over the whole file (~200 bytes each)
  std::uint64_t max_string_bytes = 1ull << 32;    ///< one str/bytes value (views: not copied)
  std::uint64_t max_bytes = 1ull << 40;           ///< decoded (decompressed) bytes of one stream
  std::uint32_t max_nested_streams = 10'000;      ///< pickles inside pickles/archives
  /// Build array data (views of the mapped file, or decoded copies). When false, array nodes
  /// carry dtype and shape but no data: enough for scanning, and no array bytes are touched
  /// when the layout allows skipping them (uncompressed joblib, torch zip).
  bool array_data = true;
  /// Map private path -> public name (sklearn.linear_model._logistic.LogisticRegression ->
  /// sklearn.linear_model.LogisticRegression) for object type names. `globals` and `calls`
  /// always keep the raw names as they appear in the stream.
  bool canonical_names = true;
};

/// One call the stream asks the unpickler to make: REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ; BUILD,
/// APPEND(S), SETITEM(S), ADDITEMS on something that is not an instance being built or a
/// container (they would call its methods); BINPERSID/PERSID (persistent_load).
struct call {
  std::string callee;   ///< raw "module.name" as in the stream ("?<value>" when the callee is not a name)
  std::string args;     ///< short, truncated Python-like rendering of the arguments
  std::string opcode;   ///< the opcode that makes the call ("REDUCE", "NEWOBJ", ...)
  bool handled = false; ///< a known name: built inertly by a handler, or in the safe table
  std::uint64_t count = 1; ///< scan reports fold repeated handled calls: how many this entry stands for
};

/// Result of reading a pickle-based file (pickle, joblib, torch zip/tar) WITHOUT executing it.
struct read_result {
  file_format format = file_format::unknown;
  std::shared_ptr<pyobj::graph> graph;   ///< graph->root: the unpickled object as inert pyobj nodes
  std::vector<std::string> globals;      ///< every "module.name" the stream references, in order of first use
  std::vector<call> calls;               ///< every call it would make, in stream order
  bool complete = false;                 ///< every byte/opcode was accounted for
  std::vector<std::string> problems;     ///< why not complete / anomalies
  /// Names of the pickle streams read (torch zip: "archive/data.pkl"; joblib: "" for the main
  /// stream, "array 3 (object)" for object arrays; npz: member names).
  std::vector<std::string> streams;
};

/// Read a file of any pickle-based format (pickle, joblib plain/compressed/old mmap layout with
/// side .npy files, torch zip, legacy torch tar), .npy (root: the array) or .npz (root: dict
/// name -> array). errc::unknown_format for other formats (safetensors, vitrify: use their
/// own readers). The file is memory-mapped; array views keep the mapping alive through the graph.
/// A stream the reader cannot fully account for still yields a result with complete == false
/// and problems listed; only unusable input (unreadable file, unknown format) is an error.
result<read_result> read_file(const std::filesystem::path& path, const read_options& opt = {});

/// Read one pickle stream from memory (the bytes are copied when array views need to outlive them).
result<read_result> read_pickle_bytes(std::span<const std::byte> data, const read_options& opt = {});

/// The canonical public name of a private scikit-learn/numpy path, or `name` unchanged.
/// ("sklearn.ensemble._forest.RandomForestClassifier" -> "sklearn.ensemble.RandomForestClassifier").
std::string canonical_name(std::string_view name);

// ---- scanning ----

enum class verdict : std::uint8_t { clean = 0, suspicious = 1, malicious = 2, inconclusive = 3 };
std::string_view verdict_name(verdict v) noexcept;  ///< "clean", "suspicious", ...

/// How one referenced name is judged.
enum class name_class : std::uint8_t { safe, unknown, dangerous };
/// safe: in the fixed table of handlers / trusted types (numpy, sklearn, scipy, torch rebuild,
/// collections); dangerous: os, subprocess, builtins.eval, ...; unknown: anything else.
name_class classify_name(std::string_view raw_name);
/// How the scanner judges a *call* of a global (REDUCE, NEWOBJ, or a .vit call node): safe only
/// for trusted classes and the rebuild functions vitrify.load calls (docs/LOAD_RULES.md). A
/// trusted function that load keeps only as a reference (a compute kernel, a numpy ufunc,
/// check_array) is `unknown` when called: a file that calls it is not clean.
name_class classify_call(std::string_view raw_name);
/// Whether vitrify.load refuses `name` whatever the caller trusts (python/vitrify/_trust.py's
/// deny list, generated into the same table as the trusted names): convert never writes one.
bool load_denies(std::string_view name) noexcept;

struct scan_report {
  std::string path;
  file_format format = file_format::unknown;
  verdict result = verdict::inconclusive;
  std::vector<std::string> globals;      ///< raw names, first-use order, unique
  std::vector<call> calls;
  std::vector<std::string> dangerous;    ///< globals judged dangerous
  std::vector<std::string> unknown;      ///< globals not in the safe table
  std::vector<std::string> refused_calls; ///< calls load never makes (a trusted function called, __new__ with arguments)
  std::vector<std::string> problems;     ///< parse errors, incomplete streams, buffers
  std::vector<std::string> streams;      ///< pickle streams (or members) examined
  bool complete = false;
};

struct scan_options {
  read_options read{};
};

/// Scan one file: never throws, never fails (unreadable files give an inconclusive report).
scan_report scan_file(const std::filesystem::path& path, const scan_options& opt = {});
/// Scan bytes in memory (format detected from them).
scan_report scan_bytes(std::span<const std::byte> data, const scan_options& opt = {}, std::string display_name = "<memory>");

/// Exit status of `vitrify scan` for a set of reports: 0 all clean, 1 some suspicious,
/// 3 some inconclusive, 4 some malicious (malicious beats inconclusive beats suspicious; 2 is
/// left to the command line's usage errors).
int exit_status(std::span<const scan_report> reports) noexcept;

}  // namespace vitrify::legacy
