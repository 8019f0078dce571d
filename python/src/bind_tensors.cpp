// vitrify._core bindings: framework tensors, safetensors and PyTorch import/export.
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/string.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "common.hpp"
#include "vitrify/tensors.hpp"

namespace vitrify_py {

namespace {

using namespace nb::literals;
namespace vt = vitrify::tensors;

vt::write_options options(const std::string& codec, int level, bool durable) {
  vt::write_options o;
  auto c = vitrify::codec_from_name(codec);
  if (!c) raise(vitrify::errc::invalid_argument, "unknown codec name '" + codec + "'");
  o.how = {*c, level};
  o.writer.durable = durable;
  return o;
}

nb::dict report(const vt::convert_report& r) {
  nb::dict d;
  d["source_format"] = r.source_format;
  d["tensors"] = r.tensors;
  d["arrays"] = r.arrays;
  d["aliases"] = r.aliases;
  d["bytes"] = nb::int_(r.bytes);
  return d;
}

using import_fn = vitrify::result<vt::convert_report> (*)(const std::filesystem::path&, const std::filesystem::path&,
                                                          const vt::write_options&);

template <import_fn F>
nb::dict run_import(const std::filesystem::path& src, const std::filesystem::path& dst, const std::string& codec,
                    int level, bool durable) {
  vt::write_options o = options(codec, level, durable);
  vitrify::result<vt::convert_report> r = [&] {
    nb::gil_scoped_release release;
    return F(src, dst, o);
  }();
  return report(unwrap(std::move(r)));
}

}  // namespace

void bind_tensors(nb::module_& m) {
  m.def("import_safetensors", &run_import<&vt::import_safetensors>, "src"_a, "dst"_a, "codec"_a = "raw",
        "level"_a = 0, "durable"_a = true,
        "safetensors file -> vitrify tensors file (tensor bytes copied exactly). Returns a report dict.");
  m.def("import_torch", &run_import<&vt::import_torch>, "src"_a, "dst"_a, "codec"_a = "raw", "level"_a = 0,
        "durable"_a = true,
        "torch.save state_dict file -> vitrify tensors file, read without PyTorch and without executing it.");
  m.def("import_tensors", &run_import<&vt::import_tensors>, "src"_a, "dst"_a, "codec"_a = "raw", "level"_a = 0,
        "durable"_a = true, "import_safetensors or import_torch, chosen by the input's content.");
  m.def(
      "export_safetensors",
      [](const std::filesystem::path& src, const std::filesystem::path& dst, bool durable) {
        vitrify::result<vt::convert_report> r = [&] {
          nb::gil_scoped_release release;
          return vt::export_safetensors(src, dst, durable);
        }();
        return report(unwrap(std::move(r)));
      },
      "src"_a, "dst"_a, "durable"_a = true, "vitrify tensors file -> safetensors file (tensor bytes copied exactly).");
  m.def(
      "parse_safetensors",
      [](nb::bytes data) {
        std::span<const std::byte> image{static_cast<const std::byte*>(static_cast<const void*>(data.c_str())),
                                         data.size()};
        auto v = unwrap(vt::parse_safetensors(image));
        nb::list tensors;
        for (const auto& t : v.tensors) {
          nb::list shape;
          for (auto s : t.shape) shape.append(nb::int_(s));
          tensors.append(nb::make_tuple(nb::str(t.name.data(), t.name.size()),
                                        std::string(vitrify::dtype_name(t.type)), nb::tuple(shape), nb::int_(t.begin),
                                        nb::int_(t.end)));
        }
        nb::object meta = nb::none();
        if (v.has_metadata) {
          nb::dict d;
          for (const auto& [k, val] : v.metadata) d[nb::str(k.data(), k.size())] = nb::str(val.data(), val.size());
          meta = d;
        }
        return nb::make_tuple(tensors, meta, nb::int_(v.data_offset));
      },
      "data"_a,
      "Verify a safetensors image: ([(name, vitrify dtype, shape, begin, end)] in data order, __metadata__ dict or "
      "None, data offset). Raises a VitrifyError for malformed input.");
}

}  // namespace vitrify_py
