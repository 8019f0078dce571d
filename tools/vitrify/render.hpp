// render.hpp - text and JSON rendering helpers shared by the tool's commands.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/value.hpp"

namespace vitrify::cli {

/// JSON string literal (with quotes). Bytes >= 0x80 pass through when `s` is valid UTF-8;
/// otherwise every non-ASCII byte is written as \u00XX so the output is always valid JSON.
std::string json_string(std::string_view s);
/// Shortest round-trip decimal text of a double; always has '.', 'e', "nan" or "inf".
std::string format_double(double d);
/// "1.5 MiB", "512 B".
std::string human_size(std::uint64_t n);
/// "(2, 3)", "()" for rank 0, "(5,)" for rank 1.
std::string format_shape(std::span<const std::uint64_t> shape);
/// 16 lowercase hex digits.
std::string hex64(std::uint64_t v);
/// Number of terminal columns a UTF-8 string takes (one per code point; good enough).
std::size_t display_width(std::string_view s);
/// True when `s` is well-formed UTF-8.
bool valid_utf8(std::string_view s);

/// Multi-line, indented, human-readable rendering of a typed value (YAML-like). Every line
/// starts with `indent` spaces and ends with '\n'.
std::string pretty_value(const value& v, int indent);
/// One-line rendering of a typed value (for table cells and dict keys).
std::string inline_value(const value& v, std::size_t max_len = 0);
/// Number of nodes in a typed value tree.
std::uint64_t count_nodes(const value& v);

/// Left-aligned text table with a header row.
class table {
 public:
  explicit table(std::vector<std::string> header, std::vector<bool> right_align = {});
  void add_row(std::vector<std::string> row);
  [[nodiscard]] std::string str(int indent = 0) const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<bool> right_;
};

}  // namespace vitrify::cli
