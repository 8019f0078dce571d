// cmd_sign.cpp - `vitrify sign FILE... --key KEY`: add (or replace) an Ed25519 signature block.
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "commands.hpp"
#include "vitrify/sign.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

class sign_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "sign"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Sign files with an Ed25519 private key (a VITSIG01 trailer block)";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("FILE", paths_, "vitrify files to sign (each is verified in full first)")->required();
    sub.add_option("-k,--key", key_path_, "Private key (PEM, from `vitrify keygen`)")->required();
    sub.add_flag("--no-fsync", no_fsync_, "Skip fsync of the signed file and its folder");
    sub.footer("The signature covers the preamble, the header and every array (the file's bytes before its\n"
               "trailer blocks), which do not change; a previous signature is replaced. Each file is\n"
               "replaced atomically (temporary file + rename). Prints `SIGNED FILE` for each file.\n"
               "Exit status: 0 all files signed, 1 any failure, 2 usage error.\n");
  }
  int run() override {
    auto key = read_private_key(key_path_);
    if (!key) {
      print_error(key.err());
      return exit_failure;
    }
    auto pk = key->public_key();
    bool all_ok = true;
    for (const auto& p : paths_) {
      result<void> r;
      try {
        r = sign_file(p, *key, sign_options{!no_fsync_});
      } catch (const std::bad_alloc&) {
        r = result<void>(errc::io_error, p + ": out of memory while signing");
      }
      if (r) {
        std::cout << "SIGNED " << p << (pk ? " (key " + pk->hex() + ")" : std::string()) << '\n' << std::flush;
      } else {
        all_ok = false;
        print_error(r.err());
      }
    }
    return all_ok ? exit_ok : exit_failure;
  }

 private:
  std::vector<std::string> paths_;
  std::string key_path_;
  bool no_fsync_ = false;
};

}  // namespace
VITRIFY_REGISTER_COMMAND(sign_command);
}  // namespace vitrify::cli
