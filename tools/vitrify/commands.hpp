// commands.hpp - the subcommand registry of the `vitrify` tool.
//
// Each subcommand is a class deriving from `command`, defined in its own cmd_<name>.cpp and
// registered there with VITRIFY_REGISTER_COMMAND(class). main.cpp knows no command by name: it
// creates one instance of every registered command, lets each add its CLI11 subcommand and
// options, parses, and runs the one that was selected. To add a command (env, predict, scan,
// convert, sign, ...) write cmd_<name>.cpp and list it in CMakeLists.txt.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "vitrify/error.hpp"

namespace vitrify::cli {

/// Process exit codes shared by every command.
enum exit_code : int {
  exit_ok = 0,       ///< everything checked out
  exit_failure = 1,  ///< a file is bad, unreadable or an operation failed
  exit_usage = 2,    ///< the command line itself is wrong
};

class command {
 public:
  virtual ~command() = default;
  /// Subcommand name as typed on the command line ("inspect").
  [[nodiscard]] virtual std::string_view name() const = 0;
  /// One-line description shown in `vitrify --help`.
  [[nodiscard]] virtual std::string_view summary() const = 0;
  /// Add options and positionals to `sub` (already named and described). Bind them to members.
  virtual void configure(CLI::App& sub) = 0;
  /// Run after a successful parse; returns the process exit code.
  virtual int run() = 0;
};

using command_factory = std::unique_ptr<command> (*)();

/// Every registered command factory (filled by static registrars before main runs).
std::vector<command_factory>& command_registry();

struct command_registrar {
  explicit command_registrar(command_factory f) { command_registry().push_back(f); }
};

/// Print "vitrify: <code name>: <message>" to stderr.
void print_error(const vitrify::error& e);
/// Print "vitrify: <code name>: <message>" to stderr for a plain message.
void print_error(vitrify::errc code, std::string_view message);

}  // namespace vitrify::cli

#define VITRIFY_CLI_CONCAT2_(a, b) a##b
#define VITRIFY_CLI_CONCAT_(a, b) VITRIFY_CLI_CONCAT2_(a, b)
/// Register a command class (default-constructible, derived from vitrify::cli::command).
#define VITRIFY_REGISTER_COMMAND(cls)                                                        \
  static const ::vitrify::cli::command_registrar VITRIFY_CLI_CONCAT_(vitrify_cmd_reg_, __LINE__){ \
      []() -> std::unique_ptr<::vitrify::cli::command> { return std::make_unique<cls>(); }}
