// cmd_env.cpp - `vitrify env FILE`: the saving environment as a requirements.txt.
#include <iostream>
#include <string>

#include "commands.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

std::string text_of(const value* v) {
  if (v == nullptr) return "";
  if (v->is(value::kind::string)) return v->as_string();
  return to_json(*v);
}

class env_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "env"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Print the environment a file was saved in, as a requirements.txt";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("file", path_, "A vitrify file")->required();
  }
  int run() override {
    auto f = file::open(path_);
    if (!f) {
      print_error(f.err());
      return exit_failure;
    }
    const value& env = f->environment();
    if (!env.is(value::kind::dict)) {
      print_error(errc::not_found, path_ + ": the file records no saving environment");
      return exit_failure;
    }
    std::string out = "# Environment that saved " + path_ + "\n";
    if (const value* py = env.get("python")) out += "# python " + text_of(py) + " (" + text_of(env.get("implementation")) + ")\n";
    if (const value* pl = env.get("platform")) out += "# platform " + text_of(pl) + ", " + text_of(env.get("byteorder")) + "-endian\n";
    if (const value* c = env.get("created")) out += "# created " + text_of(c) + "\n";
    if (const value* v = env.get("vitrify")) out += "# vitrify " + text_of(v) + "\n";
    if (const value* pk = env.get("packages"); pk && pk->is(value::kind::dict)) {
      for (std::size_t i = 0; i < pk->dict_size(); ++i) {
        const value& k = pk->dict_key(i);
        const value& v = pk->dict_value(i);
        if (!k.is(value::kind::string) || !v.is(value::kind::string)) continue;
        out += k.as_string() + "==" + v.as_string() + "\n";
      }
    }
    std::cout << out;
    return exit_ok;
  }

 private:
  std::string path_;
};

}  // namespace
VITRIFY_REGISTER_COMMAND(env_command);
}  // namespace vitrify::cli
