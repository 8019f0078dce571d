// cmd_verify.cpp - `vitrify verify FILE... [--pubkey PUB]`: structural checks plus every checksum,
// and with --pubkey a valid Ed25519 signature by that key.
#include <iostream>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "vitrify/sign.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

class verify_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "verify"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Check files completely: structure, header and every array checksum";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("FILE", paths_, "vitrify files to verify")->required();
    sub.add_flag("-q,--quiet", quiet_, "Print nothing for sound files");
    sub.add_option("--pubkey", pubkey_path_,
                   "Also require a valid signature by this public key (PEM or 32 raw bytes)");
    sub.footer("Prints `OK FILE` (stdout) or `FAIL FILE: CODE: MESSAGE` (stderr) for each file, CODE\n"
               "being the stable error code name (checksum_mismatch, truncated, ...).\n"
               "With --pubkey a file is OK only if it carries exactly one signature, made by that key over\n"
               "its current content (signature_missing, signature_invalid otherwise), and every checksum holds.\n"
               "Exit status: 0 all files sound, 1 any file bad or unreadable, 2 usage error.\n");
  }
  int run() override {
    std::optional<public_key> expected;
    if (!pubkey_path_.empty()) {
      auto k = read_public_key(pubkey_path_);
      if (!k) {
        print_error(k.err());
        return exit_failure;
      }
      expected = *k;
    }
    bool all_ok = true;
    for (const auto& p : paths_) {
      result<void> r;
      try {
        auto f = file::open(p);
        if (!f)
          r = result<void>(f.err());
        else
          r = expected ? verify_signature(*f, *expected) : f->verify();
      } catch (const std::bad_alloc&) {
        r = result<void>(errc::io_error, "out of memory while verifying");
      } catch (const std::exception& e) {
        r = result<void>(errc::io_error, std::string("unexpected failure: ") + e.what());
      }
      if (r) {
        if (!quiet_) std::cout << "OK " << p << (expected ? " (signature valid)" : "") << '\n' << std::flush;
      } else {
        all_ok = false;
        std::string_view msg = r.err().message;
        // Library messages usually start with the file name already: don't say it twice.
        if (msg.size() > p.size() + 2 && msg.substr(0, p.size()) == p && msg.substr(p.size(), 2) == ": ")
          msg.remove_prefix(p.size() + 2);
        std::cerr << "FAIL " << p << ": " << errc_name(r.code()) << ": " << msg << '\n' << std::flush;
      }
    }
    return all_ok ? exit_ok : exit_failure;
  }

 private:
  std::vector<std::string> paths_;
  bool quiet_ = false;
  std::string pubkey_path_;
};

}  // namespace
}  // namespace vitrify::cli

VITRIFY_REGISTER_COMMAND(vitrify::cli::verify_command);
