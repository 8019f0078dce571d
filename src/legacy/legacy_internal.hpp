// Private pieces of the legacy readers (src/legacy): memory-mapped inputs, decompression, zip
// members, the pickle machine and the name tables. Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "vitrify/legacy.hpp"

namespace vitrify::legacy::detail {

/// Append code point `cp` (< 0x110000) to `out` as UTF-8 (Python str contents of pickles and
/// .npy headers).
inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Bytes plus whatever keeps them alive (a file mapping or a decoded buffer).
struct bytes_ref {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;
};

/// Memory-map a file read-only (empty files give an empty span).
result<bytes_ref> map_file(const std::filesystem::path& path);

/// Own a copy of `data` in a fresh buffer.
bytes_ref copy_bytes(std::span<const std::byte> data);

// ---- compression (joblib whole-file codecs) ----
enum class codec : std::uint8_t { none, zlib, gzip, bz2, xz, lzma, lz4, joblib_zf };
/// The whole-stream codec a file starts with (by magic bytes), none when uncompressed.
codec sniff_codec(std::span<const std::byte> head) noexcept;
std::string_view codec_name(codec c) noexcept;
/// Decompress a whole stream; errc::limit_exceeded beyond `max_bytes`, errc::decompress_error
/// on corrupt data, errc::unsupported_feature when trailing garbage follows the stream.
result<bytes_ref> decompress(codec c, std::span<const std::byte> data, std::uint64_t max_bytes);

// ---- zip archives (minizip over memory) ----
struct zip_entry {
  std::string name;
  std::uint64_t offset = 0;             ///< of the member's data in the archive (after its local header)
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;
  int method = 0;                       ///< 0 stored, 8 deflated, other: unsupported
  bool encrypted = false;
};
struct zip_archive {
  std::vector<zip_entry> entries;
  std::vector<std::string> problems;    ///< duplicate names, inconsistent sizes, ...
};
result<zip_archive> zip_list(std::span<const std::byte> archive);
/// A member's bytes: a view of `archive` for stored members, a decoded buffer otherwise.
result<bytes_ref> zip_read(const bytes_ref& archive, const zip_entry& e, std::uint64_t max_bytes);

// ---- tar archives (libarchive over memory) ----
struct tar_member {
  std::string name;
  bytes_ref data;
};
result<std::vector<tar_member>> tar_read_all(std::span<const std::byte> archive, std::uint64_t max_bytes);

// ---- numpy .npy ----
struct npy_header {
  std::string descr;        ///< as written ("<f8", "|O", ...)
  bool fortran = false;
  std::vector<std::int64_t> shape;
  std::uint64_t data_offset = 0;   ///< where the data (or the pickle for object arrays) starts
};
result<npy_header> parse_npy_header(std::span<const std::byte> data);

// ---- names ----
/// Python 2 -> 3 name fixes of pickle's fix_imports (_compat_pickle), e.g. __builtin__.set.
std::string fix_py2_name(std::string_view module, std::string_view name);
bool is_trusted_name(std::string_view canonical);
/// Trusted functions that load keeps only as references and never calls.
bool is_reference_only(std::string_view canonical);
/// The rebuild functions vitrify.load calls (python/vitrify/_reconstructors.py RECONSTRUCTORS).
bool is_reconstructor(std::string_view canonical);

// ---- the pickle machine ----
/// A torch storage resolved from a persistent id (its bytes, when the archive holds them).
struct torch_storage {
  std::string dtype;        ///< element type of the storage ("<f4", "bfloat16", "|u1" for untyped)
  std::uint64_t nbytes = 0;
  std::span<const std::byte> data;
  std::shared_ptr<const void> owner;
  bool have_data = false;
};

/// Shared by every stream read from one file: accumulates names, calls and problems.
struct read_state {
  const read_options& opt;
  read_result& out;
  pyobj::graph& g;
  std::unordered_set<std::string> seen_globals;
  std::uint32_t streams = 0;
  /// Resolves persistent ids (torch storages); null: a persistent id is a problem.
  std::function<result<pyobj::node_ptr>(pyobj::node_ptr pid, std::string& problem)> persistent_load;
  /// Directory of the file (joblib's old layout keeps arrays in side .npy files); empty: none.
  std::filesystem::path side_dir;
  bool torch = false;       ///< torch storages expected
  std::unordered_map<const pyobj::node*, torch_storage> storages;
  bool saw_joblib = false;  ///< a NumpyArrayWrapper payload was read
  std::uint64_t copied = 0; ///< values copied into call arguments (bounded by 4 * max_nodes)

  read_state(const read_options& o, read_result& r, pyobj::graph& gr) : opt(o), out(r), g(gr) {}
  void problem(std::string s) { out.problems.push_back(std::move(s)); }
  void global(const std::string& raw) {
    if (seen_globals.insert(raw).second) out.globals.push_back(raw);
  }
};

struct stream_outcome {
  pyobj::node_ptr root = nullptr;
  std::uint64_t consumed = 0;   ///< bytes up to and including STOP (or where reading stopped)
  bool stopped = false;         ///< reached STOP without a fatal problem
};

struct stream_options {
  bool joblib = true;           ///< read NumpyArrayWrapper payloads that follow their BUILD
  std::string name;             ///< for problems ("archive/data.pkl", "" for the main stream)
};

/// Run one pickle stream starting at data[0]. Problems go to st.out.problems; the stream is
/// complete when the outcome is stopped and no problem was added.
stream_outcome run_pickle(read_state& st, const bytes_ref& data, const stream_options& so);

/// Read `data` as a pickle followed by nothing: data after STOP is read as further streams
/// (their names and calls are reported) and is a problem.
pyobj::node_ptr read_pickle_stream(read_state& st, const bytes_ref& data, const stream_options& so);

/// Read a mapped file of any pickle-based / numpy format into `out` (read_file and the scanner).
void read_into(read_result& out, const bytes_ref& file, const std::filesystem::path& side_dir, const read_options& opt);
/// False when the graph under `root` nests deeper than `max_depth` (consumers recurse).
bool depth_ok(const pyobj::node* root, std::uint32_t max_depth);

/// Render a node as short Python-like text (for call arguments).
std::string render(const pyobj::node* n, std::size_t budget = 160);

/// Read a torch zip archive / legacy tar into `st` (root object of data.pkl).
pyobj::node_ptr read_torch_zip(read_state& st, const bytes_ref& file, const zip_archive& zip);
pyobj::node_ptr read_torch_tar(read_state& st, const bytes_ref& file);
/// .npy bytes -> array node (object arrays: their pickle is read); .npz -> dict of arrays.
pyobj::node_ptr read_npy(read_state& st, const bytes_ref& data, const std::string& name);
pyobj::node_ptr read_npz(read_state& st, const bytes_ref& file, const zip_archive& zip);

/// numpy dtype description ("<f8", "|b1", "V64" + fields, ...) parsed from a typestr.
struct dtype_info {
  std::string str;          ///< canonical little-endian string
  char kind = 0;
  std::uint64_t itemsize = 0;
  bool big_endian = false;
  std::vector<pyobj::field> fields;
  bool has_object = false;  ///< object dtype or a structured dtype with object fields
};
/// Parse numpy's array-protocol typestr ("<f8", "|O", "<U5", "|S3", "<M8[ns]", "|V16").
result<dtype_info> parse_typestr(std::string_view s);
/// Fill an array node from raw element bytes (little-endian conversion, bool check, strings).
/// `data` must hold exactly count*itemsize bytes; kept alive by `owner`.
result<void> fill_array(pyobj::ndarray& a, const dtype_info& dt, std::vector<std::int64_t> shape, bool fortran,
                        std::span<const std::byte> data, std::shared_ptr<const void> owner, bool want_data);

}  // namespace vitrify::legacy::detail
