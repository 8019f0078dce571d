// Names (canonical public names, Python 2 renames, the trusted table, the dangerous list) and
// the scanner: every global a file references and every call it would make, judged into a
// verdict. The scanner uses the same reader as conversion, so they cannot disagree.
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <new>
#include <set>

#include "legacy/legacy_internal.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/reader.hpp"

namespace vitrify::legacy {

namespace {
#include "legacy/pickle_names.inc"

template <std::size_t N>
std::string_view lookup(const std::pair<std::string_view, std::string_view> (&table)[N], std::string_view key) {
  auto it = std::lower_bound(std::begin(table), std::end(table), key, [](const auto& e, std::string_view k) { return e.first < k; });
  return it != std::end(table) && it->first == key ? it->second : std::string_view();
}

// Modules whose every member is dangerous to call or reach (prefix match on dotted names).
constexpr std::string_view k_dangerous_modules[] = {
    "os", "posix", "nt", "subprocess", "sys", "socket", "socketserver", "shutil", "importlib", "runpy", "pickle",
    "_pickle", "cPickle", "marshal", "types", "code", "codeop", "ctypes", "_ctypes", "pty", "pdb", "bdb", "asyncio",
    "multiprocessing", "concurrent", "webbrowser", "http", "urllib", "urllib2", "urllib3", "requests", "httplib",
    "httpx", "aiohttp", "ftplib", "smtplib", "telnetlib", "imaplib", "poplib", "nntplib", "xmlrpc", "io", "_io",
    "tempfile", "glob", "pathlib", "fileinput", "zipimport", "pkgutil", "site", "sysconfig", "pip", "setuptools",
    "distutils", "ensurepip", "venv", "pydoc", "timeit", "cProfile", "profile", "trace", "doctest", "_posixsubprocess",
    "_winapi", "msvcrt", "winreg", "signal", "resource", "_thread", "threading", "uuid", "platform", "_osx_support",
    "_aix_support", "_pyrepl", "test", "idlelib", "lib2to3", "dill", "cloudpickle", "sqlite3", "_sqlite3", "commands",
    "popen2", "inspect", "gc", "ctypes", "builtins.eval", "operator.attrgetter", "operator.methodcaller",
    "operator.itemgetter", "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio",
    "numpy.lib._npyio_impl", "numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "numpy.save",
    "numpy.savez", "numpy.savetxt", "numpy.tofile", "torch.load", "torch.save", "torch.serialization", "torch.hub",
    "torch._inductor", "torch.utils.collect_env", "torch.jit", "torch._dynamo", "torch.package", "torch.utils.cpp_extension",
    "torch._C", "torch.ops", "torch.library", "joblib.load", "joblib.dump", "joblib.numpy_pickle.load",
    "joblib.numpy_pickle.NumpyUnpickler", "joblib.parallel", "joblib.Parallel", "pandas.read_pickle", "pandas.io",
    "pandas.read_csv", "pandas.read_json", "pandas.read_sql", "pandas.eval", "keras", "tensorflow.io", "mlflow",
    "logging.FileHandler", "logging.config", "zipfile", "tarfile", "ssl", "smtpd", "mailcap", "antigravity",
    "sklearn.utils._testing", "sklearn.externals", "__main__",
};

// Single builtins (after Python 2 renames) that run code or reach arbitrary attributes.
constexpr std::string_view k_dangerous_builtins[] = {
    "eval", "exec", "execfile", "compile", "open", "file", "__import__", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "input", "raw_input", "breakpoint", "help", "exit", "quit", "reload", "apply", "__build_class__",
    "memoryview", "super", "type", "classmethod", "staticmethod", "property",
};

// Attribute names whose appearance inside a dotted global name means an attribute walk towards
// code (protocol 4 resolves "a.b.c" names with getattr).
constexpr std::string_view k_dangerous_segments[] = {
    "os", "sys", "subprocess", "posix", "nt", "builtins", "__builtin__", "importlib", "runpy", "pickle", "cPickle",
    "marshal", "shutil", "socket", "ctypes", "pty", "eval", "exec", "execfile", "compile", "getattr", "setattr",
    "__import__", "system", "popen", "spawn", "spawnv", "execv", "execve", "execvp", "runstring", "load_module",
    "import_module", "loads", "load",
};

bool has_prefix_module(std::string_view name, std::string_view mod) {
  return name == mod || (name.size() > mod.size() && name.substr(0, mod.size()) == mod && name[mod.size()] == '.');
}

std::string fix_raw(std::string_view raw) {
  std::string_view mapped = lookup(k_py2_names, raw);
  if (!mapped.empty()) return std::string(mapped);
  // Longest module prefix with a Python 3 name.
  for (std::size_t dot = raw.rfind('.'); dot != std::string_view::npos && dot > 0; dot = raw.rfind('.', dot - 1)) {
    std::string_view m = lookup(k_py2_modules, raw.substr(0, dot));
    if (!m.empty()) return std::string(m) + std::string(raw.substr(dot));
    if (dot == 0) break;
  }
  return std::string(raw);
}

}  // namespace

std::string canonical_name(std::string_view name) {
  std::string_view c = lookup(k_canonical_names, name);
  return std::string(c.empty() ? name : c);
}

namespace detail {
std::string fix_py2_name(std::string_view module, std::string_view name) {
  std::string raw = std::string(module) + "." + std::string(name);
  std::string_view mapped = lookup(k_py2_names, raw);
  if (!mapped.empty()) return std::string(mapped);
  std::string_view m = lookup(k_py2_modules, module);
  if (!m.empty()) return std::string(m) + "." + std::string(name);
  return raw;
}
bool is_trusted_name(std::string_view canonical) {
  return std::binary_search(std::begin(k_trusted_names), std::end(k_trusted_names), canonical);
}
bool is_reference_only(std::string_view canonical) {
  return std::binary_search(std::begin(k_reference_only), std::end(k_reference_only), canonical);
}
bool is_reconstructor(std::string_view canonical) {
  return std::binary_search(std::begin(k_reconstructors), std::end(k_reconstructors), canonical);
}
}  // namespace detail

bool load_denies(std::string_view name) noexcept {
  for (std::string_view n : k_load_deny_names)
    if (name == n) return true;
  for (std::string_view p : k_load_deny_prefixes)
    if (has_prefix_module(name, p)) return true;
  return false;
}

name_class classify_name(std::string_view raw_name) {
  std::string fixed = fix_raw(raw_name);
  if (fixed.rfind("numpy.core.", 0) == 0) fixed = "numpy._core." + fixed.substr(11);
  for (const std::string& n : {std::string(raw_name), fixed}) {
    for (auto m : k_dangerous_modules)
      if (has_prefix_module(n, m)) return name_class::dangerous;
    for (auto b : k_dangerous_builtins)
      if (n == "builtins." + std::string(b) || n == "__builtin__." + std::string(b)) return name_class::dangerous;
    if (n == "copyreg.__newobj__" || n == "copyreg.__newobj_ex__") continue;
    // Segments after the first: dunder attributes and names of dangerous modules/functions.
    std::size_t start = n.find('.');
    while (start != std::string::npos) {
      std::size_t next = n.find('.', start + 1);
      std::string_view seg = std::string_view(n).substr(start + 1, next == std::string::npos ? std::string::npos : next - start - 1);
      bool last = next == std::string::npos;
      if (seg.size() > 4 && seg.substr(0, 2) == "__" && seg.substr(seg.size() - 2) == "__" && !last) return name_class::dangerous;
      if (seg == "__builtins__" || seg == "__globals__" || seg == "__subclasses__" || seg == "__code__") return name_class::dangerous;
      if (!last || n.find('.') != start)  // a dotted attribute path, not "module.name"
        for (auto d : k_dangerous_segments)
          if (seg == d) return name_class::dangerous;
      start = next;
    }
  }
  if (detail::is_trusted_name(fixed) || detail::is_trusted_name(canonical_name(fixed))) return name_class::safe;
  return name_class::unknown;
}

name_class classify_call(std::string_view raw_name) {
  const name_class c = classify_name(raw_name);
  if (c != name_class::safe) return c;
  std::string fixed = fix_raw(raw_name);
  if (fixed.rfind("numpy.core.", 0) == 0) fixed = "numpy._core." + fixed.substr(11);
  if (detail::is_reference_only(fixed) || detail::is_reference_only(canonical_name(fixed))) return name_class::unknown;
  return name_class::safe;
}

std::string_view verdict_name(verdict v) noexcept {
  switch (v) {
    case verdict::clean: return "clean";
    case verdict::suspicious: return "suspicious";
    case verdict::malicious: return "malicious";
    case verdict::inconclusive: return "inconclusive";
  }
  return "inconclusive";
}

int exit_status(std::span<const scan_report> reports) noexcept {
  bool mal = false, inc = false, sus = false;
  for (const auto& r : reports) {
    mal = mal || r.result == verdict::malicious;
    inc = inc || r.result == verdict::inconclusive;
    sus = sus || r.result == verdict::suspicious;
  }
  return mal ? 4 : inc ? 3 : sus ? 1 : 0;
}

namespace {

void judge(scan_report& r) {
  std::vector<std::string> seen_unknown;
  for (const auto& g : r.globals) {
    switch (classify_name(g)) {
      case name_class::dangerous: r.dangerous.push_back(g); break;
      case name_class::unknown: r.unknown.push_back(g); break;
      case name_class::safe: break;
    }
  }
  // A call whose callee is not a named global (the result of another call, a persistent
  // object...) cannot be judged by name. A named callee that is trusted as a name but that
  // load only ever keeps as a reference (a compute kernel, a ufunc) is a refused call.
  for (const auto& c : r.calls) {
    if (c.handled || c.callee.empty()) continue;
    if (c.callee[0] == '?') {
      if (std::find(r.unknown.begin(), r.unknown.end(), c.callee) == r.unknown.end()) r.unknown.push_back(c.callee);
    } else if (classify_name(c.callee) == name_class::safe && classify_call(c.callee) != name_class::safe &&
               std::find(r.refused_calls.begin(), r.refused_calls.end(), c.callee) == r.refused_calls.end()) {
      r.refused_calls.push_back(c.callee);
    }
  }
  if (!r.dangerous.empty()) r.result = verdict::malicious;
  else if (!r.complete) r.result = verdict::inconclusive;
  else if (!r.unknown.empty() || !r.refused_calls.empty()) r.result = verdict::suspicious;
  else r.result = verdict::clean;
}

// Keep every unhandled call; fold repeated handled calls (numpy array rebuilds, estimator
// constructions) into one entry per callee and opcode with a count in `args`.
std::vector<call> fold_calls(std::vector<call>&& calls) {
  std::vector<call> out;
  std::map<std::pair<std::string, std::string>, std::pair<std::size_t, std::uint64_t>> handled;
  for (auto& c : calls) {
    if (!c.handled) {
      if (out.size() < 100000) out.push_back(std::move(c));
      continue;
    }
    auto key = std::make_pair(c.callee, c.opcode);
    auto it = handled.find(key);
    if (it == handled.end()) {
      handled[key] = {out.size(), 1};
      out.push_back(std::move(c));
    } else {
      ++it->second.second;
    }
  }
  for (auto& [k, v] : handled) out[v.first].count = v.second;
  return out;
}

void scan_safetensors(scan_report& r, std::span<const std::byte> b) {
  r.streams.push_back("header");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(b[static_cast<std::size_t>(i)]);
  if (n > b.size() - 8 || n > (100u << 20)) {
    r.problems.push_back("safetensors header length " + std::to_string(n) + " exceeds the file");
    return;
  }
  std::uint64_t data_len = b.size() - 8 - n;
  simdjson::dom::parser parser;
  simdjson::padded_string text(reinterpret_cast<const char*>(b.data() + 8), n);
  simdjson::dom::element doc;
  if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
    r.problems.push_back("safetensors header is not valid JSON");
    return;
  }
  simdjson::dom::object obj;
  if (doc.get(obj) != simdjson::SUCCESS) {
    r.problems.push_back("safetensors header is not a JSON object");
    return;
  }
  for (auto field : obj) {
    if (field.key == "__metadata__") continue;
    simdjson::dom::array offs;
    std::string_view dt;
    if (field.value["dtype"].get(dt) != simdjson::SUCCESS || field.value["data_offsets"].get(offs) != simdjson::SUCCESS ||
        offs.size() != 2) {
      r.problems.push_back("safetensors tensor '" + std::string(field.key) + "' lacks dtype or data_offsets");
      continue;
    }
    std::uint64_t a = 0, e = 0;
    if (offs.at(0).get(a) != simdjson::SUCCESS || offs.at(1).get(e) != simdjson::SUCCESS || a > e || e > data_len)
      r.problems.push_back("safetensors tensor '" + std::string(field.key) + "' has data outside the file");
  }
}

// The load-time call rule on a .vit graph (docs/LOAD_RULES.md): an object node either names a
// class built by __new__ without arguments, or calls one of the rebuild functions vitrify.load
// knows; the special types (RandomState, slices, ...) are built from their state. Anything else
// is a call load refuses before building.
void vit_calls(pyobj::node_ptr root, std::vector<std::string>& refused) {
  using K = pyobj::node::kind;
  static const std::set<std::string, std::less<>> special = {
      "numpy.random.RandomState", "numpy.random.Generator", "numpy.ma.MaskedArray",
      "builtins.slice", "builtins.range", "builtins.bytearray"};
  auto add = [&](std::string s) {
    if (std::find(refused.begin(), refused.end(), s) == refused.end()) refused.push_back(std::move(s));
  };
  std::vector<const pyobj::node*> stack{root};
  std::set<const pyobj::node*> seen;
  while (!stack.empty()) {
    const pyobj::node* n = stack.back();
    stack.pop_back();
    if (!n || !seen.insert(n).second) continue;
    if (n->k == K::object && n->obj) {
      const auto& o = *n->obj;
      if (o.newobj) {
        if (!o.args.empty() || (o.kwargs && !o.kwargs->is(K::none))) add(o.type + ".__new__ with arguments");
        else if (detail::is_reference_only(o.type)) add(o.type + " (a function, built as a class)");
      } else if (!special.count(o.type) && !detail::is_reconstructor(o.type) &&
                 classify_name(o.type) == name_class::safe) {
        add(o.type);
      }
      for (auto a : o.args) stack.push_back(a);
      stack.push_back(o.kwargs);
      stack.push_back(o.state);
      for (auto a : o.listitems) stack.push_back(a);
      for (auto& [k, v] : o.dictitems) stack.push_back(k), stack.push_back(v);
    }
    for (auto x : n->items) stack.push_back(x);
    for (auto& [k, v] : n->entries) stack.push_back(k), stack.push_back(v);
    if (n->arr)
      for (auto x : n->arr->items) stack.push_back(x);
  }
}

void scan_vitrify(scan_report& r, result<file> f) {
  r.streams.push_back("header");
  if (!f) {
    r.problems.push_back(f.err().message);
    return;
  }
  if (auto v = f->verify(); !v) {
    r.problems.push_back(v.err().message);
    return;
  }
  const value* kind = f->content().get("kind");
  if (kind && kind->is(value::kind::string) && kind->as_string() == "vitrify.python-object") {
    auto g = pyobj::decode_objects(*f);
    if (!g) {
      r.problems.push_back(g.err().message);
      return;
    }
    if ((*g)->root) {
      for (auto& n : pyobj::referenced_names(*(*g)->root)) r.globals.push_back(n);
      vit_calls((*g)->root, r.refused_calls);
    }
  }
}

scan_report scan_mapped(const detail::bytes_ref& data, std::string name, const std::filesystem::path& side_dir,
                        const scan_options& opt, bool from_path, const std::filesystem::path& path) {
  scan_report r;
  r.path = std::move(name);
  std::span<const std::byte> head = data.bytes.subspan(0, std::min<std::size_t>(data.bytes.size(), 65536));
  r.format = detect_format(head);
  if (r.format == file_format::vitrify) {
    scan_vitrify(r, from_path ? file::open(path) : file::from_bytes(data.bytes));
  } else if (r.format == file_format::safetensors) {
    scan_safetensors(r, data.bytes);
  } else if (r.format == file_format::unknown) {
    r.problems.push_back("the content is not in a format vitrify recognises");
  } else {
    read_options ro = opt.read;
    ro.array_data = false;
    read_result rr;
    try {
      detail::read_into(rr, data, side_dir, ro);
    } catch (const std::bad_alloc&) {
      rr.problems.push_back("out of memory while reading (a limit in read_options is too high for this machine)");
      rr.complete = false;
    }
    r.format = rr.format;
    r.globals = std::move(rr.globals);
    r.calls = fold_calls(std::move(rr.calls));
    r.problems = std::move(rr.problems);
    r.streams = std::move(rr.streams);
    r.complete = rr.complete;
    judge(r);
    return r;
  }
  r.complete = r.problems.empty();
  judge(r);
  return r;
}

}  // namespace

scan_report scan_file(const std::filesystem::path& path, const scan_options& opt) {
  auto m = detail::map_file(path);
  if (!m) {
    scan_report r;
    r.path = path.string();
    r.problems.push_back(m.err().message);
    judge(r);
    return r;
  }
  return scan_mapped(*m, path.string(), path.parent_path(), opt, true, path);
}

scan_report scan_bytes(std::span<const std::byte> data, const scan_options& opt, std::string display_name) {
  return scan_mapped(detail::copy_bytes(data), std::move(display_name), {}, opt, false, {});
}

}  // namespace vitrify::legacy
