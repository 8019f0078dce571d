// cmd_keygen.cpp - `vitrify keygen --out KEY`: a new Ed25519 key pair for `vitrify sign`.
#include <iostream>
#include <string>

#include "commands.hpp"
#include "vitrify/sign.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

class keygen_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "keygen"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Create an Ed25519 key pair for signing files (KEY and KEY.pub)";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("-o,--out", out_, "Private key file to create (PEM, mode 0600)")->required();
    sub.add_option("--pub", pub_, "Public key file to create (default: the private key's path + .pub)");
    sub.footer("Writes an unencrypted PKCS#8 PEM private key readable only by its owner, and the matching\n"
               "public key as PEM. Existing files are never overwritten. Keep the private key secret;\n"
               "give the public key to the people who verify your files (`vitrify verify FILE --pubkey`).\n"
               "Exit status: 0 keys written, 1 failure, 2 usage error.\n");
  }
  int run() override {
    std::string pub = pub_.empty() ? out_ + ".pub" : pub_;
    auto key = generate_key();
    if (!key) {
      print_error(key.err());
      return exit_failure;
    }
    auto r = write_key_files(*key, out_, pub);
    if (!r) {
      print_error(r.err());
      return exit_failure;
    }
    auto pk = key->public_key();
    std::cout << "private key: " << out_ << "\npublic key:  " << pub << "\nkey id:      " << (pk ? pk->hex() : "?")
              << '\n';
    return exit_ok;
  }

 private:
  std::string out_, pub_;
};

}  // namespace
VITRIFY_REGISTER_COMMAND(keygen_command);
}  // namespace vitrify::cli
