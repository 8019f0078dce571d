// cmd_scan.cpp - `vitrify scan FILE... [--json] [-v] [-q]`: judge pickle, joblib, PyTorch, numpy,
// safetensors and vitrify files without executing them (docs/SCANNING.md).
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "commands.hpp"
#include "vitrify/legacy.hpp"
#include "vitrify/value.hpp"

namespace vitrify::cli {
namespace {

namespace lg = vitrify::legacy;

value str_list(const std::vector<std::string>& v) {
  std::vector<value> items;
  items.reserve(v.size());
  for (const auto& s : v) items.push_back(value::string(s));
  return value::list(std::move(items));
}

// Bytes from the file may not be UTF-8; JSON output must be.
std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && (c >= 0x20 || c == '\t') && c != 0x7f) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
    }
  }
  return out;
}

std::vector<std::string> printable(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(printable(s));
  return out;
}

value report_value(const lg::scan_report& r) {
  value d = value::dict();
  d.dict_set(value::string("path"), value::string(printable(r.path)));
  d.dict_set(value::string("format"), value::string(std::string(lg::format_name(r.format))));
  d.dict_set(value::string("verdict"), value::string(std::string(lg::verdict_name(r.result))));
  d.dict_set(value::string("complete"), value::boolean(r.complete));
  d.dict_set(value::string("globals"), str_list(printable(r.globals)));
  d.dict_set(value::string("dangerous"), str_list(printable(r.dangerous)));
  d.dict_set(value::string("unknown"), str_list(printable(r.unknown)));
  d.dict_set(value::string("refused_calls"), str_list(printable(r.refused_calls)));
  std::vector<value> calls;
  for (const auto& c : r.calls) {
    value cv = value::dict();
    cv.dict_set(value::string("callee"), value::string(printable(c.callee)));
    cv.dict_set(value::string("args"), value::string(printable(c.args)));
    cv.dict_set(value::string("opcode"), value::string(c.opcode));
    cv.dict_set(value::string("handled"), value::boolean(c.handled));
    cv.dict_set(value::string("count"), value::integer(static_cast<std::int64_t>(c.count)));
    calls.push_back(std::move(cv));
  }
  d.dict_set(value::string("calls"), value::list(std::move(calls)));
  d.dict_set(value::string("problems"), str_list(printable(r.problems)));
  d.dict_set(value::string("streams"), str_list(printable(r.streams)));
  return d;
}

class scan_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "scan"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Judge pickle, joblib, PyTorch, numpy, safetensors and vitrify files without executing them";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("FILE", paths_, "files to scan (the format is detected from the content)")->required();
    sub.add_flag("--json", json_, "Print one JSON document with a report per file");
    sub.add_flag("-v,--verbose", verbose_, "List every global and every call, not only the ones that matter");
    sub.add_flag("-q,--quiet", quiet_, "Print nothing for clean files");
    sub.footer(
        "For each file: the detected format, every global the file references and every call it would make\n"
        "when loaded with pickle/joblib/torch, and a verdict:\n"
        "  clean         the whole file was read and every name is in vitrify's table of known-safe names\n"
        "  suspicious    a name outside that table (a class or function vitrify does not know)\n"
        "  malicious     a name known to run code or reach the system (os.system, builtins.eval, ...)\n"
        "  inconclusive  part of the file could not be accounted for (parse error, data after STOP,\n"
        "                out-of-band buffers, unknown format, unreadable file)\n"
        "Nothing is ever imported or called. A clean verdict is not a proof of safety: converting with\n"
        "`vitrify convert` is (docs/SCANNING.md).\n"
        "Exit status: 0 all clean, 1 some suspicious, 3 some inconclusive, 4 some malicious\n"
        "(the highest of malicious > inconclusive > suspicious wins), 2 usage error.\n");
  }
  int run() override {
    std::vector<lg::scan_report> reports;
    for (const auto& p : paths_) {
      try {
        reports.push_back(lg::scan_file(p));
      } catch (const std::bad_alloc&) {
        lg::scan_report r;
        r.path = p;
        r.problems.push_back("out of memory while scanning");
        reports.push_back(std::move(r));
      }
      if (!json_) print_text(reports.back());
    }
    int status = lg::exit_status(reports);
    if (json_) {
      std::vector<value> files;
      for (const auto& r : reports) files.push_back(report_value(r));
      value doc = value::dict();
      doc.dict_set(value::string("files"), value::list(std::move(files)));
      doc.dict_set(value::string("exit_status"), value::integer(status));
      std::cout << to_json(doc) << '\n' << std::flush;
    }
    return status;
  }

 private:
  void print_text(const lg::scan_report& r) const {
    if (quiet_ && r.result == lg::verdict::clean) return;
    std::ostream& os = std::cout;
    os << printable(r.path) << ": " << lg::verdict_name(r.result) << " (" << lg::format_name(r.format) << ", "
       << r.globals.size() << " global" << (r.globals.size() == 1 ? "" : "s") << ", " << r.calls.size() << " call"
       << (r.calls.size() == 1 ? "" : "s") << ")\n";
    for (const auto& g : r.dangerous) os << "  dangerous  " << printable(g) << '\n';
    for (const auto& g : r.unknown) os << "  unknown    " << printable(g) << '\n';
    for (const auto& g : r.refused_calls) os << "  refused    " << printable(g) << " (load never calls it)\n";
    if (verbose_)
      for (const auto& g : r.globals) os << "  global     " << printable(g) << '\n';
    std::size_t shown = 0;
    for (const auto& c : r.calls) {
      if (c.handled && !verbose_) continue;
      if (!verbose_ && ++shown > 20) {
        os << "  ...        (more calls: use --verbose or --json)\n";
        break;
      }
      os << "  call       " << printable(c.callee) << printable(c.args.empty() || c.args[0] == '(' ? c.args : "(" + c.args + ")")
         << "  [" << c.opcode << (c.handled ? ", built inertly" : "")
         << (c.count > 1 ? ", " + std::to_string(c.count) + " calls" : std::string()) << "]\n";
    }
    std::size_t np = 0;
    for (const auto& p : r.problems) {
      if (!verbose_ && ++np > 20) {
        os << "  ...        (" << r.problems.size() - 20 << " more problems)\n";
        break;
      }
      os << "  problem    " << printable(p) << '\n';
    }
    os << std::flush;
  }

  std::vector<std::string> paths_;
  bool json_ = false;
  bool verbose_ = false;
  bool quiet_ = false;
};

VITRIFY_REGISTER_COMMAND(scan_command);

}  // namespace
}  // namespace vitrify::cli
