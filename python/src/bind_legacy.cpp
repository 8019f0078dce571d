// vitrify._core bindings: scan, non-executing pickle reader (names only; the converter and the
// tensor importers bind their own results).
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <filesystem>
#include <span>
#include <string>

#include "common.hpp"
#include "vitrify/legacy.hpp"
#include "vitrify/reader.hpp"

namespace vitrify_py {

namespace {

namespace lg = vitrify::legacy;
using namespace nb::literals;

nb::list str_list(const std::vector<std::string>& v) {
  nb::list l;
  for (const auto& s : v) {
    // Names and problems may quote bytes of the file that are not UTF-8: never fail on them.
    nb::object o = nb::steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace"));
    if (!o.is_valid()) throw nb::python_error();
    l.append(o);
  }
  return l;
}

nb::str safe_str(const std::string& s) {
  nb::object o = nb::steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace"));
  if (!o.is_valid()) throw nb::python_error();
  return nb::borrow<nb::str>(o);
}

nb::list call_list(const std::vector<lg::call>& calls) {
  nb::list l;
  for (const auto& c : calls) {
    nb::dict d;
    d["callee"] = safe_str(c.callee);
    d["args"] = safe_str(c.args);
    d["opcode"] = c.opcode;
    d["handled"] = c.handled;
    d["count"] = c.count;
    l.append(d);
  }
  return l;
}

nb::dict report_dict(const lg::scan_report& r) {
  nb::dict d;
  d["path"] = safe_str(r.path);
  d["format"] = std::string(lg::format_name(r.format));
  d["verdict"] = std::string(lg::verdict_name(r.result));
  d["complete"] = r.complete;
  d["globals"] = str_list(r.globals);
  d["dangerous"] = str_list(r.dangerous);
  d["unknown"] = str_list(r.unknown);
  d["refused_calls"] = str_list(r.refused_calls);
  d["calls"] = call_list(r.calls);
  d["problems"] = str_list(r.problems);
  d["streams"] = str_list(r.streams);
  return d;
}

// A pyobj graph as plain Python values, for tests comparing the pickle reader's graph with the
// one decoded from a vitrify file (same conventions). Shared nodes are rendered again; a node
// on the current path is rendered as "<cycle>".
struct graph_renderer {
  std::vector<const vitrify::pyobj::node*> path;
  nb::object go(const vitrify::pyobj::node* n) {
    using K = vitrify::pyobj::node::kind;
    if (!n) return nb::none();
    for (auto p : path)
      if (p == n) return nb::str("<cycle>");
    if (path.size() > 200) return nb::str("<deep>");
    path.push_back(n);
    nb::object out = render(*n);
    path.pop_back();
    (void)K::none;
    return out;
  }
  nb::list seq(const std::vector<vitrify::pyobj::node_ptr>& v) {
    nb::list l;
    for (auto x : v) l.append(go(x));
    return l;
  }
  nb::list pairs(const std::vector<std::pair<vitrify::pyobj::node_ptr, vitrify::pyobj::node_ptr>>& v) {
    nb::list l;
    for (auto& [k, x] : v) l.append(nb::make_tuple(go(k), go(x)));
    return l;
  }
  nb::object arr(const vitrify::pyobj::ndarray& a, const char* tag) {
    nb::dict d;
    d[tag] = a.dtype;
    nb::list shape;
    for (auto s : a.shape) shape.append(s);
    d["shape"] = nb::tuple(shape);
    d["fortran"] = a.fortran;
    if (!a.fields.empty()) {
      nb::list f;
      for (auto& x : a.fields) f.append(nb::make_tuple(x.name, x.dtype, x.offset));
      d["fields"] = f;
    }
    if (!a.strings.empty()) d["strings"] = str_list(a.strings);
    if (!a.items.empty()) d["items"] = seq(a.items);
    if (!a.data.empty()) d["data"] = nb::bytes(reinterpret_cast<const char*>(a.data.data()), a.data.size());
    return d;
  }
  nb::object render(const vitrify::pyobj::node& n) {
    using K = vitrify::pyobj::node::kind;
    switch (n.k) {
      case K::none: return nb::none();
      case K::boolean: return nb::bool_(n.b);
      case K::integer: return nb::int_(n.i);
      case K::big_integer: return nb::module_::import_("builtins").attr("int")(n.text);
      case K::floating: return nb::float_(n.d);
      case K::complex: return nb::module_::import_("builtins").attr("complex")(n.d, n.imag);
      case K::string: return safe_str(n.text);
      case K::bytes: return nb::bytes(n.text.data(), n.text.size());
      case K::list: return seq(n.items);
      case K::tuple: return nb::tuple(seq(n.items));
      case K::set:
      case K::frozenset: {
        nb::dict d;
        d[n.k == K::set ? "set" : "frozenset"] = seq(n.items);
        return d;
      }
      case K::dict: {
        nb::dict d;
        d["dict"] = pairs(n.entries);
        return d;
      }
      case K::array: return arr(*n.arr, "array");
      case K::scalar: return arr(*n.arr, "scalar");
      case K::dtype: {
        nb::dict d;
        d["dtype"] = n.text;
        if (n.arr && !n.arr->fields.empty()) {
          nb::list f;
          for (auto& x : n.arr->fields) f.append(nb::make_tuple(x.name, x.dtype, x.offset));
          d["fields"] = f;
        }
        return d;
      }
      case K::global: {
        nb::dict d;
        d["global"] = safe_str(n.text);
        return d;
      }
      case K::object: {
        nb::dict d;
        d["object"] = safe_str(n.obj->type);
        d["newobj"] = n.obj->newobj;
        d["args"] = seq(n.obj->args);
        d["kwargs"] = go(n.obj->kwargs);
        d["state"] = go(n.obj->state);
        d["listitems"] = seq(n.obj->listitems);
        d["dictitems"] = pairs(n.obj->dictitems);
        return d;
      }
    }
    return nb::none();
  }
};

}  // namespace

void bind_legacy(nb::module_& m) {
  m.def(
      "scan",
      [](const std::filesystem::path& path) {
        lg::scan_report r;
        {
          nb::gil_scoped_release nogil;
          r = lg::scan_file(path);
        }
        return report_dict(r);
      },
      "path"_a, "Scan one file without executing it: format, globals, calls, verdict (a dict).");
  m.def(
      "scan_bytes",
      [](nb::bytes data, std::string name) {
        std::span<const std::byte> b(static_cast<const std::byte*>(data.data()), data.size());
        lg::scan_report r;
        {
          nb::gil_scoped_release nogil;
          r = lg::scan_bytes(b, {}, std::move(name));
        }
        return report_dict(r);
      },
      "data"_a, "name"_a = "<memory>", "Scan bytes in memory (format detected from them).");
  m.def(
      "detect_format",
      [](nb::bytes head) {
        std::span<const std::byte> b(static_cast<const std::byte*>(head.data()), head.size());
        return std::string(lg::format_name(lg::detect_format(b)));
      },
      "head"_a, "Format of a file judged by its first bytes.");
  m.def(
      "read_legacy_names",
      [](const std::filesystem::path& path) {
        vitrify::result<lg::read_result> r = vitrify::error{};
        {
          nb::gil_scoped_release nogil;
          lg::read_options opt;
          opt.array_data = false;
          r = lg::read_file(path, opt);
        }
        lg::read_result rr = unwrap(std::move(r));
        nb::dict d;
        d["format"] = std::string(lg::format_name(rr.format));
        d["globals"] = str_list(rr.globals);
        d["calls"] = call_list(rr.calls);
        d["complete"] = rr.complete;
        d["problems"] = str_list(rr.problems);
        d["root_type"] = rr.graph && rr.graph->root ? safe_str(std::string(rr.graph->root->type_name())) : safe_str("");
        return d;
      },
      "path"_a, "Read a pickle/joblib/PyTorch/numpy file without executing it; its names and calls.");
  m.def(
      "classify_name", [](std::string_view name) {
        switch (lg::classify_name(name)) {
          case lg::name_class::safe: return "safe";
          case lg::name_class::dangerous: return "dangerous";
          default: return "unknown";
        }
      },
      "name"_a, "How the scanner judges a global name: 'safe', 'unknown' or 'dangerous'.");
  m.def(
      "_legacy_graph",
      [](const std::filesystem::path& path) {
        vitrify::result<lg::read_result> r = vitrify::error{};
        {
          nb::gil_scoped_release nogil;
          r = lg::read_file(path);
        }
        lg::read_result rr = unwrap(std::move(r));
        nb::dict d;
        d["format"] = std::string(lg::format_name(rr.format));
        d["complete"] = rr.complete;
        d["problems"] = str_list(rr.problems);
        d["root"] = graph_renderer{}.go(rr.graph ? rr.graph->root : nullptr);
        return d;
      },
      "path"_a, "Testing aid: the reader's object graph as plain Python values.");
  m.def(
      "_vitrify_graph",
      [](const std::filesystem::path& path) {
        auto f = unwrap(vitrify::file::open(path));
        auto g = unwrap(vitrify::pyobj::decode_objects(f));
        return graph_renderer{}.go(g->root);
      },
      "path"_a, "Testing aid: the object graph decoded from a vitrify.dump file, as plain Python values.");
}

}  // namespace vitrify_py
