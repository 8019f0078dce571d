// main.cpp - entry point of the `vitrify` tool: builds the CLI from the command registry.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {

std::vector<command_factory>& command_registry() {
  static std::vector<command_factory> registry;
  return registry;
}

void print_error(const vitrify::error& e) { print_error(e.code, e.message); }

void print_error(vitrify::errc code, std::string_view message) {
  std::cerr << "vitrify: " << vitrify::errc_name(code) << ": " << message << '\n';
}

}  // namespace vitrify::cli

int main(int argc, char** argv) {
  using namespace vitrify::cli;

  CLI::App app{"vitrify - safe, memory-mapped model files", "vitrify"};
  app.set_version_flag("--version",
                       std::string("vitrify ") + vitrify::library_version() + " (format " +
                           std::to_string(vitrify::format_major) + "." +
                           std::to_string(vitrify::format_minor) + ")",
                       "Print the version and exit");
  app.require_subcommand(1);
  app.footer("Exit status: 0 success, 1 a file is bad or an operation failed, 2 usage error.\n"
             "Run `vitrify COMMAND --help` for the options of one command.\n");

  std::vector<std::unique_ptr<command>> commands;
  for (auto factory : command_registry()) commands.push_back(factory());
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });

  std::vector<std::pair<CLI::App*, command*>> subs;
  for (auto& c : commands) {
    CLI::App* sub = app.add_subcommand(std::string(c->name()), std::string(c->summary()));
    c->configure(*sub);
    subs.emplace_back(sub, c.get());
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help / version / the parse error
    return rc == 0 ? exit_ok : exit_usage;
  }

  for (auto& [sub, cmd] : subs) {
    if (sub->parsed()) {
      try {
        return cmd->run();
      } catch (const std::exception& e) {
        print_error(vitrify::errc::io_error, std::string("unexpected failure: ") + e.what());
        return exit_failure;
      }
    }
  }
  std::cerr << app.help();
  return exit_usage;
}
