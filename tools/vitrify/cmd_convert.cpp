// cmd_convert.cpp - `vitrify convert IN OUT [--compress zstd[:level]] [--no-check] [--json]`:
// a scikit-learn model saved with pickle or joblib -> a vitrify file, without executing it.
#include <charconv>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "render.hpp"
#include "vitrify/convert.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

class convert_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "convert"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Convert a scikit-learn pickle/joblib file into a vitrify file without executing it";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("IN", in_, "A scikit-learn model saved with pickle (protocol 2-5) or joblib")->required();
    sub.add_option("OUT", out_, "The vitrify file to write (replaced atomically)")->required();
    sub.add_option("--compress", compress_, "Compress arrays: zstd or zstd:LEVEL (default: raw, memory-mappable)");
    sub.add_flag("--no-check", no_check_, "Do not build the converted model with the C++ runtime afterwards");
    sub.add_flag("--no-hash", no_hash_, "Do not record the SHA-256 of IN in the provenance section");
    sub.add_flag("--json", json_, "Print the result as JSON");
    sub.footer(
        "IN is read by vitrify's own pickle interpreter: nothing in it is imported or called.\n"
        "Refused (exit 1, nothing written): files that are not pickle/joblib (unknown_format), streams\n"
        "that cannot be fully accounted for (bad_pickle), and files naming any type or function that\n"
        "is not an estimator the C++ runtime implements or a type such estimators contain\n"
        "(unsupported_model; names that run code, such as os.system, are called out).\n"
        "By default the written model is built with the C++ runtime before it replaces OUT.\n");
  }

  int run() override {
    legacy::convert_options opt;
    opt.check = !no_check_;
    opt.hash_input = !no_hash_;
    if (!compress_.empty() && compress_ != "raw" && compress_ != "none") {
      std::string_view c = compress_;
      int level = 3;
      if (c.substr(0, 4) != "zstd" || (c.size() > 4 && c[4] != ':')) {
        print_error(errc::invalid_argument, "--compress: expected zstd or zstd:LEVEL, got '" + compress_ + "'");
        return exit_usage;
      }
      if (c.size() > 5) {
        auto lv = c.substr(5);
        auto r = std::from_chars(lv.data(), lv.data() + lv.size(), level);
        if (r.ec != std::errc() || r.ptr != lv.data() + lv.size() || level < -7 || level > 22 || level == 0) {
          print_error(errc::invalid_argument, "--compress: invalid zstd level '" + std::string(lv) + "' (1..22, or -7..-1)");
          return exit_usage;
        }
      } else if (c.size() == 5) {
        print_error(errc::invalid_argument, "--compress: missing level after 'zstd:'");
        return exit_usage;
      }
      opt.compress = array_codec{codec::zstd, level};
    }
    auto r = legacy::convert_file(in_, out_, opt);
    if (!r) {
      if (json_) {
        std::cout << "{\"ok\":false,\"input\":" << json_string(in_) << ",\"error\":" << json_string(errc_name(r.code()))
                  << ",\"message\":" << json_string(r.err().message) << "}\n";
      }
      print_error(r.err());
      return exit_failure;
    }
    const legacy::convert_info& i = *r;
    if (json_) {
      std::string types;
      for (const auto& t : i.encoded.types) types += (types.empty() ? "" : ",") + json_string(t);
      std::cout << "{\"ok\":true,\"input\":" << json_string(in_) << ",\"output\":" << json_string(out_)
                << ",\"format\":" << json_string(legacy::format_name(i.format)) << ",\"estimator\":" << json_string(i.estimator)
                << ",\"sklearn_version\":" << (i.sklearn_version.empty() ? "null" : json_string(i.sklearn_version))
                << ",\"input_bytes\":" << i.input_bytes << ",\"output_bytes\":" << i.output_bytes
                << ",\"sha256\":" << (i.sha256.empty() ? "null" : json_string(i.sha256))
                << ",\"checked\":" << (i.checked ? "true" : "false") << ",\"arrays\":" << i.encoded.arrays
                << ",\"inline_arrays\":" << i.encoded.inline_arrays << ",\"pooled_arrays\":" << i.encoded.pooled_arrays
                << ",\"array_bytes\":" << i.encoded.array_bytes
                << ",\"types\":[" << types << "]}\n";
      return exit_ok;
    }
    std::string out;
    out += "converted " + in_ + " -> " + out_ + "\n";
    out += "  format:     " + std::string(legacy::format_name(i.format)) + "\n";
    out += "  estimator:  " + i.estimator + "\n";
    out += "  fitted with scikit-learn " + (i.sklearn_version.empty() ? std::string("(version not recorded)") : i.sklearn_version) + "\n";
    out += "  arrays:     " + std::to_string(i.encoded.pooled_arrays) + " in the pool, " + std::to_string(i.encoded.arrays) +
           " in the array table, " + std::to_string(i.encoded.inline_arrays) + " inline (" +
           human_size(i.encoded.array_bytes) + ")\n";
    out += "  size:       " + human_size(i.input_bytes) + " -> " + human_size(i.output_bytes) + "\n";
    if (!i.sha256.empty()) out += "  sha256:     " + i.sha256 + " (of the input)\n";
    out += std::string("  check:      ") +
           (i.checked ? "the C++ runtime builds the converted model" : "skipped (--no-check)") + "\n";
    std::cout << out;
    return exit_ok;
  }

 private:
  std::string in_, out_, compress_;
  bool no_check_ = false, no_hash_ = false, json_ = false;
};

}  // namespace
VITRIFY_REGISTER_COMMAND(convert_command);
}  // namespace vitrify::cli
