#include <string>

#include "vitrify/error.hpp"

namespace vitrify {

std::string_view errc_name(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::io_error: return "io_error";
    case errc::truncated: return "truncated";
    case errc::bad_magic: return "bad_magic";
    case errc::unsupported_version: return "unsupported_version";
    case errc::unsupported_feature: return "unsupported_feature";
    case errc::bad_preamble: return "bad_preamble";
    case errc::checksum_mismatch: return "checksum_mismatch";
    case errc::bad_header: return "bad_header";
    case errc::limit_exceeded: return "limit_exceeded";
    case errc::bad_array: return "bad_array";
    case errc::bad_layout: return "bad_layout";
    case errc::unknown_dtype: return "unknown_dtype";
    case errc::unknown_codec: return "unknown_codec";
    case errc::decompress_error: return "decompress_error";
    case errc::duplicate_name: return "duplicate_name";
    case errc::bad_name: return "bad_name";
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_found: return "not_found";
    case errc::bad_string_array: return "bad_string_array";
    case errc::bad_value: return "bad_value";
    case errc::bad_trailer: return "bad_trailer";
    case errc::not_raw: return "not_raw";
    case errc::signature_missing: return "signature_missing";
    case errc::signature_invalid: return "signature_invalid";
    case errc::key_error: return "key_error";
    case errc::unsupported_model: return "unsupported_model";
    case errc::bad_state: return "bad_state";
    case errc::bad_pickle: return "bad_pickle";
    case errc::unknown_format: return "unknown_format";
  }
  return "unknown_error";
}

std::string error::what() const {
  std::string s = "vitrify error ";
  s += std::to_string(static_cast<unsigned>(code));
  s += " (";
  s += errc_name(code);
  s += "): ";
  s += message;
  return s;
}

}  // namespace vitrify
