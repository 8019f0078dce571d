// cmd_inspect.cpp - `vitrify inspect FILE [--json]`: summary of a file's structure and header.
#include <iostream>
#include <string>

#include "commands.hpp"
#include "render.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

std::string trailer_tag_text(const std::string& tag) {
  bool printable = true;
  for (char ch : tag) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7F) printable = false;
  }
  if (printable) return tag;
  std::string hex = "0x";
  char buf[4];
  for (char ch : tag) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned char>(ch));
    hex += buf;
  }
  return hex;
}

std::string codec_text(const array_info& a) {
  std::string s(codec_name(a.codec));
  if (a.codec != codec::raw) s += ":" + std::to_string(a.level);
  return s;
}

/// One estimator of the schema tree: type, non-default parameters, fitted arrays, children.
void draw_estimator(std::string& out, const value& node, int indent) {
  if (indent > 80) return;
  std::string pad(static_cast<std::size_t>(indent), ' ');
  const value* type = node.get("type");
  std::string head;
  if (const value* p = node.get("param")) {
    head += p->is(value::kind::string) ? p->as_string() : inline_value(*p, 30);
    if (const value* n = node.get("name")) head += "['" + (n->is(value::kind::string) ? n->as_string() : inline_value(*n, 30)) + "']";
    head += ": ";
  }
  head += type && type->is(value::kind::string) ? type->as_string() : "?";
  out += pad + head + '\n';
  auto kv = [&](const char* title, const value* d) {
    if (!d || !d->is(value::kind::dict) || d->dict_size() == 0) return;
    std::string line;
    for (std::size_t i = 0; i < d->dict_size(); ++i) {
      const value& k = d->dict_key(i);
      const value& v = d->dict_value(i);
      line += (i ? ", " : "") + (k.is(value::kind::string) ? k.as_string() : inline_value(k, 20)) + "=" +
              (v.is(value::kind::string) ? v.as_string() : inline_value(v, 40));
    }
    out += pad + "  " + title + ": " + line + '\n';
  };
  kv("params", node.get("params"));
  kv("fitted", node.get("fitted"));
  if (const value* ch = node.get("children"); ch && ch->is(value::kind::list))
    for (const value& c : ch->items())
      if (c.is(value::kind::dict)) draw_estimator(out, c, indent + 2);
}

void print_text(const file& f, const std::string& path) {
  std::uint64_t stored = 0, decoded = 0;
  for (const auto& a : f.arrays()) {
    stored += a.stored_length;
    decoded += a.decoded_length;
  }
  std::string out;
  auto field = [&out](std::string_view k, const std::string& v) {
    out += std::string(k);
    out += ':';
    out.append(k.size() < 12 ? 12 - k.size() : 1, ' ');
    out += v;
    out += '\n';
  };
  field("file", path);
  field("format", "vitrify " + std::to_string(f.version_major()) + "." + std::to_string(f.version_minor()));
  field("alignment", std::to_string(f.alignment()));
  field("size", std::to_string(f.size()) + " bytes (" + human_size(f.size()) + ")");
  field("header", std::to_string(f.header_json().size()) + " bytes of JSON");
  field("arrays", std::to_string(f.arrays().size()) + " (stored " + human_size(stored) + ", decoded " +
                      human_size(decoded) + ")");
  std::string feats;
  for (const auto& s : f.required_features()) feats += (feats.empty() ? "" : ", ") + s;
  field("features", feats.empty() ? "none" : feats);
  std::string trailers;
  for (const auto& t : f.trailers())
    trailers += (trailers.empty() ? "" : ", ") + trailer_tag_text(t.tag) + " (" +
                std::to_string(t.body.size()) + " bytes)";
  field("trailers", trailers.empty() ? "none" : trailers);

  auto section = [&out](std::string_view title, const value& v) {
    out += '\n';
    out += title;
    out += ":\n";
    out += pretty_value(v, 2);
  };
  section("metadata", f.metadata());
  if (!f.environment().is(value::kind::null)) section("environment", f.environment());
  if (!f.provenance().is(value::kind::null)) section("provenance", f.provenance());
  if (!f.content().is(value::kind::null)) {
    const value* schema = f.content().get("schema");
    const value* est = schema ? schema->get("estimator") : nullptr;
    if (est != nullptr && est->is(value::kind::dict)) {
      out += "\nmodel:\n";
      for (const char* k : {"n_features_in_", "feature_names_in_", "classes_", "n_outputs_"})
        if (const value* v = schema->get(k)) out += "  " + std::string(k) + ": " + inline_value(*v, 90) + '\n';
      out += "  estimator tree:\n";
      draw_estimator(out, *est, 4);
      out += "  (" + std::to_string(count_nodes(f.content())) + " content nodes)\n";
    } else {
      out += "\ncontent: " + inline_value(f.content(), 72) + " (" + std::to_string(count_nodes(f.content())) +
             " nodes)\n";
    }
    // The object graph, through the one object decoder (docs/OBJECTS.md): its size and every
    // type and function name it refers to, or why the decoder refuses it. Nothing is built.
    const value* kind = f.content().get("kind");
    if (kind && kind->is(value::kind::string) && kind->as_string() == "vitrify.python-object") {
      auto g = pyobj::decode_objects(f);
      if (!g) {
        out += "objects: refused by the object decoder (" + std::string(errc_name(g.code())) + "): " + g.err().message + '\n';
      } else {
        const auto names = pyobj::referenced_names(*(*g)->root);
        out += "objects: " + std::to_string((*g)->size()) + " nodes, " + std::to_string(names.size()) + " type and function names\n";
        for (const auto& n : names) out += "  " + n + '\n';
      }
    }
  }

  out += '\n';
  if (f.arrays().empty()) {
    out += "no arrays\n";
  } else {
    table t({"#", "name", "dtype", "shape", "stored", "decoded", "codec", "offset"},
            {true, false, false, false, true, true, false, true});
    std::size_t i = 0;
    for (const auto& a : f.arrays()) {
      t.add_row({std::to_string(i++), a.name, std::string(dtype_name(a.type)), format_shape(a.shape),
                 human_size(a.stored_length), human_size(a.decoded_length), codec_text(a),
                 std::to_string(a.offset)});
    }
    out += t.str();
    bool any_attrs = false;
    for (const auto& a : f.arrays()) {
      if (a.attrs.is(value::kind::null) || (a.attrs.is(value::kind::dict) && a.attrs.items().empty()))
        continue;
      if (!any_attrs) out += "\nattrs:\n";
      any_attrs = true;
      out += "  " + a.name + ": " + inline_value(a.attrs, 100) + '\n';
    }
  }
  std::cout << out;
}

void print_json(const file& f, const std::string& path) {
  std::string o;
  o += "{\"file\":" + json_string(path);
  o += ",\"format\":\"vitrify\"";
  o += ",\"version\":{\"major\":" + std::to_string(f.version_major()) +
       ",\"minor\":" + std::to_string(f.version_minor()) + "}";
  o += ",\"alignment\":" + std::to_string(f.alignment());
  o += ",\"size\":" + std::to_string(f.size());
  o += ",\"content_length\":" + std::to_string(f.content_length());
  o += ",\"header_length\":" + std::to_string(f.header_json().size());
  o += ",\"required_features\":[";
  bool first = true;
  for (const auto& s : f.required_features()) {
    if (!first) o += ',';
    first = false;
    o += json_string(s);
  }
  o += "],\"arrays\":[";
  first = true;
  for (const auto& a : f.arrays()) {
    if (!first) o += ',';
    first = false;
    o += "{\"name\":" + json_string(a.name);
    o += ",\"dtype\":" + json_string(dtype_name(a.type));
    o += ",\"shape\":[";
    for (std::size_t k = 0; k < a.shape.size(); ++k) o += (k ? "," : "") + std::to_string(a.shape[k]);
    o += "],\"count\":" + std::to_string(a.count);
    o += ",\"offset\":" + std::to_string(a.offset);
    o += ",\"length\":" + std::to_string(a.stored_length);
    o += ",\"decoded_length\":" + std::to_string(a.decoded_length);
    o += ",\"codec\":" + json_string(codec_name(a.codec));
    o += ",\"level\":" + std::to_string(a.level);
    o += ",\"xxh3\":\"" + hex64(a.xxh3) + "\"";
    o += ",\"attrs\":" + to_json(a.attrs);
    o += '}';
  }
  o += "],\"metadata\":" + to_json(f.metadata());
  o += ",\"environment\":" + to_json(f.environment());
  o += ",\"provenance\":" + to_json(f.provenance());
  o += ",\"content\":" + to_json(f.content());
  o += ",\"trailers\":[";
  first = true;
  for (const auto& t : f.trailers()) {
    if (!first) o += ',';
    first = false;
    o += "{\"tag\":" + json_string(t.tag) + ",\"length\":" + std::to_string(t.body.size()) + "}";
  }
  o += "]}\n";
  std::cout << o;
}

class inspect_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "inspect"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Show a file's version, layout, metadata and array table";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("FILE", path_, "vitrify file to inspect")->required();
    sub.footer("The file's structure is verified when it is opened; array checksums are not read\n"
               "(use `vitrify verify` for that). Exit status: 0 shown, 1 the file cannot be opened,\n"
               "2 usage error.\n");
    sub.add_flag("--json", json_, "Print one JSON document (typed values in their canonical JSON)");
  }
  int run() override {
    auto f = file::open(path_);
    if (!f) {
      print_error(f.err());
      return exit_failure;
    }
    if (json_)
      print_json(*f, path_);
    else
      print_text(*f, path_);
    std::cout.flush();
    return std::cout.good() ? exit_ok : exit_failure;
  }

 private:
  std::string path_;
  bool json_ = false;
};

}  // namespace
}  // namespace vitrify::cli

VITRIFY_REGISTER_COMMAND(vitrify::cli::inspect_command);
