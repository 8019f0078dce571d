// vitrify/tensors.hpp - dicts of framework tensors (a PyTorch state_dict, a safetensors file)
// stored as vitrify files; safetensors import and export, and import of `torch.save` zip files
// without PyTorch and without executing anything.
//
// A *tensors file* is an ordinary vitrify file: one raw array per distinct tensor, named after
// it, in the order given, and a `content` section
//   {"kind": "vitrify.tensors", "version": 1, "source": "torch",
//    "aliases": {"lm_head.weight": {"$array": "embed.weight"}}}
// whose optional `aliases` map names of tied tensors (same memory in the saving framework) to
// the array that holds their data. The `metadata` section holds the user's metadata (for files
// imported from safetensors: the `__metadata__` string map). See docs/TENSORS.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitrify/dtype.hpp"
#include "vitrify/error.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/value.hpp"
#include "vitrify/writer.hpp"

namespace vitrify::tensors {

/// `content.kind` of a tensors file.
inline constexpr std::string_view content_kind = "vitrify.tensors";
/// `content.version` written; readers accept versions up to this one.
inline constexpr std::int64_t content_version = 1;

// ---- dtypes ----------------------------------------------------------------------------------

/// The vitrify dtype of a safetensors dtype name ("F32", "BF16", "F8_E4M3", ...); nullopt for
/// names vitrify has no dtype for (or that are not safetensors names).
std::optional<dtype> dtype_from_safetensors(std::string_view name) noexcept;
/// The safetensors name of a vitrify dtype; "" when safetensors has none (complex, string).
std::string_view safetensors_dtype_name(dtype t) noexcept;

// ---- safetensors -------------------------------------------------------------------------------

/// Limits applied to an untrusted safetensors file.
struct safetensors_limits {
  std::uint64_t max_header_bytes = 100'000'000;  ///< safetensors' own cap on the JSON header
  std::uint64_t max_tensors = 1ull << 20;        ///< entries in the header (as vitrify's max_arrays)
  std::uint32_t max_rank = 64;                   ///< dimensions per tensor (as vitrify's max_rank)
  std::uint64_t max_name_bytes = 4096;           ///< a tensor name must also be a valid vitrify array name
  std::uint64_t max_metadata_entries = 1ull << 20;  ///< `__metadata__` entries
};

/// One tensor of a parsed safetensors file.
struct safetensors_tensor {
  std::string name;
  vitrify::dtype type = dtype::uint8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;   ///< data_offsets, relative to the start of the data section
  std::span<const std::byte> data;    ///< the tensor's bytes inside the parsed image
};

/// A verified safetensors image: every tensor's bytes are in range, they tile the data section
/// exactly (no hole, no overlap, nothing after the last tensor), and dtype x shape matches.
struct safetensors_view {
  std::vector<safetensors_tensor> tensors;   ///< in data order (by offset, then by name)
  bool has_metadata = false;                 ///< the header has a `__metadata__` object
  std::vector<std::pair<std::string, std::string>> metadata;  ///< `__metadata__`, in file order
  std::uint64_t header_length = 0;           ///< N, the u64 at offset 0
  std::uint64_t data_offset = 0;             ///< 8 + N
};

/// Parse and verify a complete safetensors image; spans in the result view `image`.
/// Errors: truncated, limit_exceeded, bad_header (JSON, schema, duplicate or invalid names:
/// bad_name / duplicate_name), unknown_dtype, bad_array (shape x dtype != byte length, overflow),
/// bad_layout (offsets out of range, holes, overlaps, trailing bytes).
result<safetensors_view> parse_safetensors(std::span<const std::byte> image, const safetensors_limits& lim = {});

/// The safetensors image of `tensors` (name, dtype, shape, bytes) and optional `__metadata__`,
/// laid out exactly as the safetensors library writes it: tensors sorted by descending dtype
/// (safetensors' alignment order) then by name, the header padded with spaces to a multiple of
/// 8 bytes, `__metadata__` first with its keys sorted (safetensors itself writes them in hash
/// order). The same input gives the same bytes as safetensors' `serialize` when the metadata
/// has at most one entry.
struct tensor_ref {
  std::string name;
  vitrify::dtype type = dtype::uint8;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> data;   ///< C order, little-endian, dtype_size(type) * count bytes
};
result<std::vector<std::byte>> safetensors_bytes(std::span<const tensor_ref> tensors,
                                                 const std::optional<std::vector<std::pair<std::string, std::string>>>& metadata);

// ---- tensors files ---------------------------------------------------------------------------

/// How converters write their output.
struct write_options {
  writer_options writer{};
  array_codec how{};                 ///< raw by default (memory-mappable, zero-copy loads)
};

/// Write a tensors file at `out` (atomically): `tensors` as raw (or `how`) arrays in order,
/// `aliases` (name -> name of an entry of `tensors`) in the content section, `metadata` as the
/// metadata section, `source` recorded in the content (where the tensors came from: "torch",
/// "numpy", "safetensors", "torch.save").
result<void> write_tensors_file(const std::filesystem::path& out, std::span<const tensor_ref> tensors,
                                std::span<const std::pair<std::string, std::string>> aliases, const value& metadata,
                                std::string_view source, const write_options& opt = {});

/// One name of a tensors file and the array that holds its data.
struct tensor_entry {
  std::string name;
  std::size_t array = 0;   ///< index into file::arrays()
  bool alias = false;      ///< a tied name: `array` is stored under another name
};

/// The tensors of an open vitrify file: every array in table order, then the aliases of the
/// content section. A file with no content (written by save_arrays) is accepted as a plain dict
/// of arrays; a file whose content is of another kind (a dumped model) is not: bad_value.
/// String arrays are refused with unknown_dtype (no framework has string tensors).
result<std::vector<tensor_entry>> tensor_entries(const file& f);

/// What a conversion did.
struct convert_report {
  std::string source_format;      ///< "safetensors", "torch_zip", "vitrify"
  std::size_t tensors = 0;        ///< names written (aliases included)
  std::size_t arrays = 0;         ///< distinct tensors stored
  std::size_t aliases = 0;        ///< tied names recorded as aliases (import) or duplicated (export)
  std::uint64_t bytes = 0;        ///< tensor bytes copied
};

/// safetensors file -> tensors file. Tensor bytes are copied byte for byte from the memory-
/// mapped input; `__metadata__` becomes the metadata section (a dict of strings).
result<convert_report> import_safetensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                          const write_options& opt = {});

/// Tensors file (or a plain file of numeric arrays) -> safetensors file, written atomically.
/// Tensor bytes are copied byte for byte (compressed arrays are decoded, checksums verified);
/// aliases are written as separate tensors (safetensors cannot share data). The metadata section
/// becomes `__metadata__` when it is a dict of strings, is dropped when null, and is refused
/// (invalid_argument) otherwise; complex arrays are refused (unknown_dtype).
result<convert_report> export_safetensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                          bool durable = true);

/// PyTorch `torch.save` zip file holding a state_dict (a possibly nested dict / OrderedDict of
/// name -> tensor) -> tensors file, read with the non-executing pickle reader (no PyTorch, no
/// code run). Nested dicts are flattened with "." (as nn.Module.state_dict names them); tensors
/// sharing one storage with equal offset, shape and strides are stored once and aliased.
/// Anything else in the pickle (a whole nn.Module, optimizer state, plain numbers, a stream the
/// reader cannot fully account for) is refused with unsupported_model / bad_pickle.
result<convert_report> import_torch(const std::filesystem::path& in, const std::filesystem::path& out,
                                    const write_options& opt = {});

/// import_safetensors or import_torch, chosen by the input's content (not its name);
/// unknown_format for anything else.
result<convert_report> import_tensors(const std::filesystem::path& in, const std::filesystem::path& out,
                                      const write_options& opt = {});

}  // namespace vitrify::tensors
