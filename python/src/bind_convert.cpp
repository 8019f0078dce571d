// vitrify._core bindings: converting legacy model files into vitrify files (vitrify.convert),
// and re-encoding a vitrify.dump file through the C++ object graph (tests of the encoder).
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <filesystem>
#include <string>

#include "common.hpp"
#include "vitrify/convert.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/value.hpp"
#include "vitrify/writer.hpp"

namespace vitrify_py {

namespace {

using namespace nb::literals;
namespace lg = vitrify::legacy;

vitrify::array_codec codec_of(std::string_view name, int level) {
  auto c = vitrify::codec_from_name(name);
  if (!c) raise(vitrify::errc::invalid_argument, "unknown codec name '" + std::string(name) + "'");
  return vitrify::array_codec{*c, level};
}

nb::dict encode_dict(const lg::encode_info& e) {
  nb::dict d;
  d["root_type"] = e.root_type;
  d["types"] = e.types;
  d["arrays"] = e.arrays;
  d["inline_arrays"] = e.inline_arrays;
  d["pooled_arrays"] = e.pooled_arrays;
  d["array_bytes"] = e.array_bytes;
  d["tree_bytes"] = e.tree_bytes;
  d["shared"] = e.shared;
  return d;
}

}  // namespace

void bind_convert(nb::module_& m) {
  m.def(
      "reencode",
      [](const std::filesystem::path& in, const std::filesystem::path& out, std::string_view codec, int level,
         std::uint64_t inline_max, bool keysets, bool pool) {
        lg::encode_info info;
        {
          nb::gil_scoped_release nogil;
          auto f = unwrap(vitrify::file::open(in));
          auto g = unwrap(vitrify::pyobj::decode_objects(f));
          lg::encode_options opt;
          opt.arrays = codec_of(codec, level);
          opt.inline_max_bytes = inline_max;
          opt.pool = pool;
          opt.keysets = keysets;
          opt.environment = f.environment();
          opt.metadata = f.metadata();
          vitrify::value prov = vitrify::value::dict();
          prov.items().push_back(vitrify::value::string("reencoded_from"));
          prov.items().push_back(vitrify::value::string(in.filename().string()));
          opt.provenance = std::move(prov);
          vitrify::writer_options wo;
          wo.durable = false;
          auto w = unwrap(vitrify::writer::create(out, wo));
          info = unwrap(lg::write_objects(*g->root, w, opt));
          unwrap(w.commit());
        }
        return encode_dict(info);
      },
      "in_path"_a, "out_path"_a, "codec"_a = "raw", "level"_a = 3, "inline_max"_a = 512, "keysets"_a = true, "pool"_a = true,
      "Decode a vitrify.dump file into the C++ object graph and write it again with the C++ encoder.");

  m.def(
      "convert",
      [](const std::filesystem::path& in, const std::filesystem::path& out, std::string_view codec, int level, bool check,
         bool hash_input, bool durable) {
        lg::convert_options opt;
        opt.compress = codec_of(codec, level);
        opt.check = check;
        opt.hash_input = hash_input;
        opt.durable = durable;
        lg::convert_info info;
        {
          nb::gil_scoped_release nogil;
          info = unwrap(lg::convert_file(in, out, opt));
        }
        nb::dict d;
        d["format"] = std::string(lg::format_name(info.format));
        d["estimator"] = info.estimator;
        d["sklearn_version"] = info.sklearn_version.empty() ? nb::object(nb::none()) : nb::object(nb::str(info.sklearn_version.c_str()));
        d["input_bytes"] = info.input_bytes;
        d["output_bytes"] = info.output_bytes;
        d["sha256"] = info.sha256.empty() ? nb::object(nb::none()) : nb::object(nb::str(info.sha256.c_str()));
        d["checked"] = info.checked;
        d["streams"] = info.streams;
        d["encoded"] = encode_dict(info.encoded);
        return d;
      },
      "in_path"_a, "out_path"_a, "codec"_a = "raw", "level"_a = 3, "check"_a = true, "hash_input"_a = true,
      "durable"_a = true, "Convert a pickle/joblib scikit-learn model into a vitrify file without executing it.");

  m.def("convert_component_names", [] { return lg::convert_component_names(); },
        "Types admitted inside converted estimators (besides the estimators the runtime implements).");
  m.def(
      "classify_for_convert",
      [](std::string_view name) -> std::string {
        switch (lg::classify_for_convert(name)) {
          case lg::convert_name::estimator: return "estimator";
          case lg::convert_name::component: return "component";
          case lg::convert_name::dangerous: return "dangerous";
          default: return "unsupported";
        }
      },
      "name"_a, "How vitrify convert judges a canonical type or function name.");
}

}  // namespace vitrify_py
