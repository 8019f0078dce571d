// Internal: typed values from a parsed simdjson DOM, shared by parse_value and the reader.
#pragma once

#include <simdjson.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "vitrify/value.hpp"

namespace vitrify::detail {

struct value_parse_ctx {
  value_limits lim;
  std::uint64_t nodes = 0;
  std::unordered_set<std::int64_t> shared_ids;
  std::vector<std::int64_t> refs;
  std::vector<std::string> array_refs;  ///< names used by "$array" nodes, checked by the caller
};

/// Convert a DOM element to a typed value. `where` names the section for messages.
result<value> value_from_element(simdjson::dom::element e, value_parse_ctx& ctx, std::uint32_t depth,
                                 const std::string& where);
/// Every "$ref" must name a "$shared" id of the same document.
result<void> check_refs(const value_parse_ctx& ctx, const std::string& where);

/// Padded base64 (RFC 4648, OpenSSL), as "$bytes" and Python's b64encode write it.
std::string base64_encode(std::string_view raw);
/// Strict decoding of padded base64: false on any other character, length or padding.
bool base64_decode(std::string_view text, std::string* out);

/// Map a simdjson parse error to a vitrify error.
error json_error(simdjson::error_code ec, const std::string& where);

/// JSON text as the format allows it (RFC 8259 8.1: no byte order mark), checked before simdjson
/// sees it: simdjson 3.0 (Debian 12) rejects a leading UTF-8 BOM, 3.12 (Debian 13) skips it, and
/// a file must mean the same thing whichever a reader links.
result<void> check_json_text(std::string_view text, const std::string& where);

}  // namespace vitrify::detail
