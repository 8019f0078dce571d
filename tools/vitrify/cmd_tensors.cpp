// cmd_tensors.cpp - `vitrify import-tensors IN OUT` (safetensors or torch.save zip -> vitrify) and
// `vitrify export-safetensors IN OUT` (vitrify tensors file -> safetensors).
#include <iostream>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "vitrify/tensors.hpp"

namespace vitrify::cli {
namespace {

void print_report(const tensors::convert_report& r, const std::string& in, const std::string& out) {
  std::cout << in << " (" << r.source_format << ") -> " << out << ": " << r.tensors << " tensors, " << r.arrays
            << " stored";
  if (r.aliases) std::cout << ", " << r.aliases << " tied";
  std::cout << ", " << r.bytes << " bytes\n" << std::flush;
}

template <class F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    print_error(errc::io_error, "out of memory");
  } catch (const std::exception& e) {
    print_error(errc::io_error, std::string("unexpected failure: ") + e.what());
  }
  return exit_failure;
}

class import_tensors_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "import-tensors"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Convert a safetensors file or a PyTorch state_dict (torch.save) into a vitrify file, executing nothing";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("IN", in_, "safetensors file, or torch.save zip/tar file holding a state_dict")->required();
    sub.add_option("OUT", out_, "vitrify file to write (replaced atomically)")->required();
    sub.add_option("--zstd", level_, "Compress every tensor with zstd at this level (default: raw, memory-mappable)");
    sub.footer("The input format is detected from its bytes, not its name. PyTorch files are read by vitrify's own\n"
               "pickle reader: nothing is imported or executed, and anything but a (nested) dict of tensors is\n"
               "refused. Tied tensors (one storage under two names) are stored once. Tensor bytes are copied exactly.\n"
               "Exit status: 0 converted, 1 refused or failed, 2 usage error.\n");
  }
  int run() override {
    return guarded([&] {
      tensors::write_options o;
      if (level_) o.how = {codec::zstd, *level_};
      auto r = tensors::import_tensors(in_, out_, o);
      if (!r) {
        print_error(r.err());
        return int{exit_failure};
      }
      print_report(*r, in_, out_);
      return int{exit_ok};
    });
  }

 private:
  std::string in_, out_;
  std::optional<int> level_;
};

class export_safetensors_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "export-safetensors"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Write the tensors of a vitrify file as a safetensors file";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("IN", in_, "vitrify tensors file (or a file of numeric arrays)")->required();
    sub.add_option("OUT", out_, "safetensors file to write (replaced atomically)")->required();
    sub.footer("Tensor bytes are copied exactly (checksums verified). The metadata must be a dict of strings\n"
               "(it becomes __metadata__); tied tensors are written once per name.\n"
               "Exit status: 0 written, 1 refused or failed, 2 usage error.\n");
  }
  int run() override {
    return guarded([&] {
      auto r = tensors::export_safetensors(in_, out_);
      if (!r) {
        print_error(r.err());
        return int{exit_failure};
      }
      print_report(*r, in_, out_);
      return int{exit_ok};
    });
  }

 private:
  std::string in_, out_;
};

}  // namespace
}  // namespace vitrify::cli

VITRIFY_REGISTER_COMMAND(vitrify::cli::import_tensors_command);
VITRIFY_REGISTER_COMMAND(vitrify::cli::export_safetensors_command);
