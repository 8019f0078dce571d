// cmd_predict.cpp - `vitrify predict MODEL [INPUT.csv] [--proba] [-o OUT.csv]`: run a model saved
// by vitrify.dump on the rows of a CSV file with the C++ runtime (no Python).
//
// Input: CSV (RFC 4180, read by libcsv in strict mode) with a header row. Columns are matched
// by name to the model's feature names when it was fitted on a DataFrame (in any order; a
// missing or unknown column is an error); otherwise by position, and the column count must
// equal the model's feature count (the header's names are then not used). The input is read
// in chunks of --batch rows, each predicted and written before the next is read, so memory
// stays bounded on inputs of any size.
//
// Output: CSV with a header: `prediction` (predict; `prediction_0..` for several outputs), one
// column per class named by the class label (predict_proba, and decision_function of
// multi-class classifiers), `decision_function` (one column), `x0..` (transform). Numbers in
// the shortest form that reads back to the same double (std::to_chars).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csv.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "commands.hpp"
#include "vitrify/runtime.hpp"
#include "vitrify/vitrify.hpp"

namespace vitrify::cli {
namespace {

using runtime::method;

// ---------------------------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------------------------

/// Cells read as a missing value: the strings pandas.read_csv treats as missing by default, so
/// that a CSV means the same to `vitrify predict` as to a pandas-based scoring script.
bool is_missing_token(std::string_view s) noexcept {
  static constexpr std::array<std::string_view, 19> tokens = {
      "",     "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
      "<NA>", "N/A",  "NA",       "NULL", "NaN",    "None",     "n/a",  "nan",  "null"};
  for (auto t : tokens)
    if (s == t) return true;
  return false;
}

std::string_view trim_blanks(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

enum class cell_status { number, missing, not_a_number };

/// A numeric cell: decimal or scientific notation, `inf`/`nan` in any case, an optional sign;
/// surrounding blanks are ignored. Correctly rounded (std::from_chars), so a value printed with
/// Python's repr or numpy reads back to the same double. Magnitudes beyond float64 become
/// +-inf or 0, as in Python's float().
cell_status parse_cell(std::string_view raw, double& out) {
  std::string_view s = trim_blanks(raw);
  if (is_missing_token(s)) {
    out = std::nan("");
    return cell_status::missing;
  }
  std::string_view body = s;
  if (body.size() > 1 && body.front() == '+' && body[1] != '-' && body[1] != '+') body.remove_prefix(1);
  double v = 0.0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v, std::chars_format::general);
  if (end != body.data() + body.size()) return cell_status::not_a_number;
  if (ec == std::errc::result_out_of_range) {
    // Overflow or underflow of a well-formed number: strtod gives the IEEE result (+-HUGE_VAL
    // or a correctly rounded tiny value), like Python's float(). The process locale is "C".
    std::string z(body);
    v = std::strtod(z.c_str(), nullptr);
  } else if (ec != std::errc()) {
    return cell_status::not_a_number;
  }
  out = v;
  return cell_status::number;
}

/// A cell as it appears in a message: quoted, shortened, control characters escaped.
std::string show_cell(std::string_view s) {
  std::string r = "'";
  std::size_t n = 0;
  for (char ch : s) {
    if (++n > 40) {
      r += "...";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    } else {
      r += ch;
    }
  }
  return r + "'";
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {  // to_chars may print "-nan"; one spelling that every CSV reader knows
    out += "nan";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  if (ec != std::errc()) {
    out += "nan";
    return;
  }
  out.append(buf, end);
}

/// RFC 4180: a field is quoted when it holds a comma, a quote, a line break or leading or
/// trailing blanks (which readers may trim); quotes inside are doubled.
void append_text(std::string& out, std::string_view s) {
  bool quote = !s.empty() && (s.front() == ' ' || s.front() == '\t' || s.back() == ' ' || s.back() == '\t');
  for (char ch : s)
    if (ch == ',' || ch == '"' || ch == '\n' || ch == '\r') quote = true;
  // A label that reads back as a missing value (an empty class name, "NA") is quoted too: the
  // quotes keep it text for readers that honour them.
  if (is_missing_token(s)) quote = true;
  if (!quote) {
    out += s;
    return;
  }
  out += '"';
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
}

/// Buffered output to a FILE*; errors are remembered and reported once. `eager`: every chunk
/// is written out at once (the input is a pipe or a terminal, so whoever feeds it may wait
/// for each answer: `vitrify predict m.vit - --batch 1` works as a co-process).
class sink {
 public:
  sink(std::FILE* f, bool eager) : f_(f), eager_(eager) { buf_.reserve(1 << 20); }
  std::string& buf() noexcept { return buf_; }
  bool end_of_chunk() {
    if (eager_) return flush() && sync();
    return buf_.size() >= (1u << 20) ? flush() : ok_;
  }
  bool flush() {
    if (!buf_.empty() && ok_) {
      if (std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size()) {
        ok_ = false;
        errno_ = errno;
      }
    }
    buf_.clear();
    return ok_;
  }
  bool sync() {
    if (ok_ && std::fflush(f_) != 0) {
      ok_ = false;
      errno_ = errno;
    }
    return ok_;
  }
  bool finish() { return flush() && sync(); }
  [[nodiscard]] int error_number() const noexcept { return errno_; }

 private:
  std::FILE* f_;
  bool eager_;
  std::string buf_;
  bool ok_ = true;
  int errno_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Progress (stderr)
// ---------------------------------------------------------------------------------------------

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else std::snprintf(buf, sizeof buf, "%.0f KiB", b / 1024.0);
  return buf;
}

class progress {
 public:
  using clock = std::chrono::steady_clock;
  /// `mode`: 0 off, 1 on a terminal after one second of work, 2 always (forced).
  progress(int mode, std::uint64_t total_bytes, bool tty)
      : mode_(mode), total_(total_bytes), tty_(tty), start_(clock::now()), last_(start_) {}

  void update(std::uint64_t bytes, std::uint64_t rows, bool final = false) {
    if (mode_ == 0) return;
    auto now = clock::now();
    double since_start = std::chrono::duration<double>(now - start_).count();
    double since_last = std::chrono::duration<double>(now - last_).count();
    if (!final) {
      if (mode_ == 1 && since_start < 1.0) return;          // short jobs print nothing
      if (shown_ && since_last < (tty_ ? 0.2 : 1.0)) return;  // a few updates per second at most
    } else if (!shown_) {
      return;
    }
    last_ = now;
    shown_ = true;
    std::string line = "vitrify predict: " + std::to_string(rows) + " rows, " + human_bytes(static_cast<double>(bytes));
    if (total_ > 0) {
      char pct[16];
      std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * static_cast<double>(bytes) / static_cast<double>(total_));
      line += " of " + human_bytes(static_cast<double>(total_)) + pct;
    }
    char el[32];
    std::snprintf(el, sizeof el, ", %.1f s", since_start);
    line += el;
    if (final) line += ", done";
    if (tty_) {
      std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

 private:
  int mode_;
  std::uint64_t total_;
  bool tty_;
  clock::time_point start_, last_;
  bool shown_ = false;
};

// ---------------------------------------------------------------------------------------------
// The predictor: libcsv callbacks -> chunk of rows -> model -> CSV output
// ---------------------------------------------------------------------------------------------

/// Largest CSV field accepted (a larger one is certainly not a number or a category; without
/// a bound a hostile input could make the parser buffer grow until memory runs out).
constexpr std::size_t max_field_bytes = std::size_t{64} << 20;

void* bounded_realloc(void* p, std::size_t n) {
  if (n > max_field_bytes + 1024) return nullptr;  // libcsv reports CSV_ENOMEM
  return std::realloc(p, n);
}

class predictor {
 public:
  predictor(const runtime::model& m, method meth, std::size_t batch, sink& out, std::string input_name)
      : m_(m), meth_(meth), batch_(batch), out_(out), input_name_(std::move(input_name)) {}

  // libcsv callbacks (static trampolines below).
  void on_field(const char* s, std::size_t len) {
    if (failed_) return;
    if (nfields_ < fields_.size()) {
      fields_[nfields_].assign(s ? s : "", s ? len : 0);
    } else if (in_header_ || nfields_ < header_.size()) {
      fields_.emplace_back(s ? s : "", s ? len : 0);
    }
    // Fields past the header's count are only counted (the row is an error anyway).
    ++nfields_;
  }
  void on_record() {
    if (failed_) return;
    std::size_t n = nfields_;
    nfields_ = 0;
    if (in_header_) {
      in_header_ = false;
      take_header(n);
      return;
    }
    ++data_row_;
    if (n != header_.size()) {
      fail(errc::invalid_argument, where_row() + "has " + std::to_string(n) + " field" + (n == 1 ? "" : "s") +
                                       ", the header has " + std::to_string(header_.size()));
      return;
    }
    if (table_mode_) add_table_row();
    else add_numeric_row();
    if (failed_) return;
    if (++chunk_rows_ >= batch_) flush_chunk();
  }

  /// After each block read from the input: a pipe's pending rows are predicted now rather
  /// than when the chunk fills, so a process feeding rows one at a time gets each answer.
  void end_of_input_block() {
    if (eager_ && !failed_ && chunk_rows_ > 0) flush_chunk();
  }
  void set_eager(bool eager) noexcept { eager_ = eager; }

  /// Called at the end of input.
  void finish() {
    if (failed_) return;
    if (in_header_) {
      fail(errc::invalid_argument, input_name_ + ": the input is empty; a header row naming the columns is required");
      return;
    }
    if (chunk_rows_ > 0) flush_chunk();
    if (!header_written_) write_header(m_.output_width(meth_));  // no data rows: the header alone
  }

  [[nodiscard]] bool failed() const noexcept { return failed_; }
  [[nodiscard]] bool in_header() const noexcept { return in_header_; }
  [[nodiscard]] const error& err() const noexcept { return err_; }
  [[nodiscard]] std::uint64_t rows_done() const noexcept { return data_row_; }
  [[nodiscard]] std::uint64_t data_rows_seen() const noexcept { return data_row_; }
  void fail(errc code, std::string msg) {
    if (failed_) return;
    failed_ = true;
    err_ = error{code, std::move(msg)};
  }

  static void field_cb(void* s, std::size_t len, void* self) {
    static_cast<predictor*>(self)->on_field(static_cast<const char*>(s), len);
  }
  static void record_cb(int, void* self) { static_cast<predictor*>(self)->on_record(); }

 private:
  std::string where_row() const { return input_name_ + ": data row " + std::to_string(data_row_) + " "; }
  std::string where_cell(std::size_t col) const {
    return input_name_ + ": data row " + std::to_string(data_row_) + ", column '" + header_[col] + "' (" +
           std::to_string(col + 1) + "): ";
  }

  void take_header(std::size_t n) {
    header_.assign(fields_.begin(), fields_.begin() + static_cast<std::ptrdiff_t>(n));
    if (!header_.empty() && header_[0].rfind("\xEF\xBB\xBF", 0) == 0) header_[0].erase(0, 3);  // UTF-8 BOM
    std::unordered_map<std::string, std::size_t> seen;
    for (std::size_t j = 0; j < header_.size(); ++j) {
      auto [it, fresh] = seen.emplace(header_[j], j);
      if (!fresh) {
        fail(errc::invalid_argument, input_name_ + ": header: column " + show_cell(header_[j]) + " appears twice (columns " +
                                         std::to_string(it->second + 1) + " and " + std::to_string(j + 1) + ")");
        return;
      }
    }
    table_mode_ = m_.needs_table();
    const auto& names = m_.feature_names();
    if (!names.empty()) {
      // Match by name, any order. Every feature must be there and nothing else (like sklearn,
      // which refuses feature names it did not see at fit time).
      std::unordered_map<std::string_view, std::size_t> feat;
      for (std::size_t i = 0; i < names.size(); ++i) feat.emplace(names[i], i);
      std::vector<std::string> unknown;
      col_to_feat_.assign(header_.size(), 0);
      std::vector<bool> present(names.size(), false);
      for (std::size_t j = 0; j < header_.size(); ++j) {
        auto it = feat.find(header_[j]);
        if (it == feat.end()) {
          unknown.push_back(show_cell(header_[j]) + " (" + std::to_string(j + 1) + ")");
        } else {
          col_to_feat_[j] = it->second;
          present[it->second] = true;
        }
      }
      std::vector<std::string> missing;
      for (std::size_t i = 0; i < names.size(); ++i)
        if (!present[i]) missing.push_back(show_cell(names[i]));
      auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (std::size_t i = 0; i < v.size() && i < 10; ++i) s += (i ? ", " : "") + v[i];
        if (v.size() > 10) s += ", ... (" + std::to_string(v.size()) + " in all)";
        return s;
      };
      if (!missing.empty()) {
        fail(errc::invalid_argument, input_name_ + ": header: missing column" + (missing.size() > 1 ? "s " : " ") +
                                         join(missing) + " (the model was fitted on " + std::to_string(names.size()) +
                                         " named features)");
        return;
      }
      if (!unknown.empty()) {
        fail(errc::invalid_argument, input_name_ + ": header: unknown column" + (unknown.size() > 1 ? "s " : " ") +
                                         join(unknown) + ": not among the model's feature names");
        return;
      }
      width_ = names.size();
    } else {
      // No names recorded: columns by position; the header's names are not used.
      const std::size_t nf = m_.n_features();
      if (nf > 0 && header_.size() != nf) {
        fail(errc::invalid_argument, input_name_ + ": header: " + std::to_string(header_.size()) + " column" +
                                         (header_.size() == 1 ? "" : "s") + ", the model expects " + std::to_string(nf) +
                                         " features (it was fitted without feature names, so columns are taken "
                                         "by position)");
        return;
      }
      width_ = header_.size();
      col_to_feat_.resize(width_);
      for (std::size_t j = 0; j < width_; ++j) col_to_feat_[j] = j;
    }
    if (table_mode_) {
      cells_.assign(header_.size(), {});
      for (auto& c : cells_) c.reserve(std::min<std::size_t>(batch_, 1 << 16));
    } else {
      chunk_.assign(std::min<std::size_t>(batch_, 1 << 16) * width_, 0.0);
    }
  }

  void add_numeric_row() {
    const std::size_t base = chunk_rows_ * width_;
    if (chunk_.size() < base + width_) chunk_.resize(std::min(batch_, 2 * (chunk_rows_ + 1)) * width_);
    for (std::size_t j = 0; j < header_.size(); ++j) {
      double v = 0.0;
      if (parse_cell(fields_[j], v) == cell_status::not_a_number) {
        fail(errc::invalid_argument, where_cell(j) + "cannot read " + show_cell(fields_[j]) + " as a number" +
                                         (table_mode_ ? "" : " (the model takes numbers only)"));
        return;
      }
      chunk_[base + col_to_feat_[j]] = v;
    }
  }

  void add_table_row() {
    for (std::size_t j = 0; j < header_.size(); ++j) cells_[j].push_back(fields_[j]);
  }

  /// The output header for `w` columns: `prediction` (`prediction_0..` for several outputs),
  /// class labels (predict_proba; decision_function of a multi-class classifier),
  /// `decision_function`, `x0..` (transform).
  void write_header(std::size_t w) {
    header_written_ = true;
    if (w == 0) return;
    std::string& o = out_.buf();
    const auto& cls = m_.classes();
    const bool by_class = !cls.empty() && cls.size() == w &&
                          (meth_ == method::predict_proba || (meth_ == method::decision_function && w > 1));
    const char* stem = meth_ == method::predict             ? "prediction"
                       : meth_ == method::predict_proba     ? "proba"
                       : meth_ == method::decision_function ? "decision_function"
                                                            : "x";
    for (std::size_t k = 0; k < w; ++k) {
      if (k) o += ',';
      if (by_class) {
        append_text(o, cls[k]);
      } else if (meth_ == method::transform) {
        o += 'x';
        o += std::to_string(k);
      } else {
        o += stem;
        if (w > 1) o += '_' + std::to_string(k);
      }
    }
    o += '\n';
  }

  void flush_chunk() {
    const std::size_t rows = chunk_rows_;
    const std::uint64_t first = data_row_ - rows + 1;  // 1-based data row of the chunk's first row
    chunk_rows_ = 0;
    result<runtime::output> r = error{};
    if (table_mode_) {
      runtime::table t(rows);
      for (std::size_t j = 0; j < header_.size(); ++j) {
        auto& col = cells_[j];
        // A column is numeric when every cell of the chunk reads as a number or is missing,
        // text otherwise (as pandas.read_csv infers a column's dtype).
        std::vector<double> nums(rows);
        bool numeric = true;
        for (std::size_t i = 0; i < rows && numeric; ++i)
          numeric = parse_cell(col[i], nums[i]) != cell_status::not_a_number;
        result<void> added;
        if (numeric) {
          added = t.add_numeric(header_[j], std::move(nums));
        } else {
          std::vector<bool> miss(rows);
          for (std::size_t i = 0; i < rows; ++i) miss[i] = is_missing_token(col[i]);
          added = t.add_text(header_[j], std::move(col), std::move(miss));
        }
        col.clear();
        if (!added) {
          fail(added.err().code, added.err().message);
          return;
        }
      }
      r = m_.run(meth_, t);
    } else {
      r = m_.run(meth_, runtime::matrix_view(chunk_.data(), rows, width_));
    }
    if (!r) {
      std::string range = rows == 1 ? "data row " + std::to_string(first)
                                    : "data rows " + std::to_string(first) + "-" + std::to_string(first + rows - 1);
      fail(r.err().code, input_name_ + ": " + range + ": " + r.err().message);
      return;
    }
    const runtime::output& o = *r;
    if (o.rows != rows) {
      fail(errc::bad_state, "the model returned " + std::to_string(o.rows) + " rows for " + std::to_string(rows));
      return;
    }
    if (!header_written_) write_header(o.cols);
    std::string& b = out_.buf();
    for (std::size_t i = 0; i < o.rows; ++i) {
      for (std::size_t k = 0; k < o.cols; ++k) {
        if (k) b += ',';
        if (o.is_labels()) append_text(b, o.labels[i * o.cols + k]);
        else append_number(b, o.values[i * o.cols + k]);
      }
      b += '\n';
    }
    if (!out_.end_of_chunk()) fail(errc::io_error, "cannot write the output: " + std::string(std::strerror(out_.error_number())));
  }

  const runtime::model& m_;
  method meth_;
  std::size_t batch_;
  sink& out_;
  std::string input_name_;

  bool eager_ = false;
  bool failed_ = false;
  error err_;
  bool in_header_ = true;
  bool header_written_ = false;
  bool table_mode_ = false;
  std::vector<std::string> header_;
  std::vector<std::string> fields_;      // the record being read (strings reused across rows)
  std::size_t nfields_ = 0;
  std::uint64_t data_row_ = 0;           // data rows read so far (1-based number of the current)
  std::vector<std::size_t> col_to_feat_; // CSV column -> model feature index
  std::size_t width_ = 0;                // model features
  std::vector<double> chunk_;            // row-major rows of the current chunk (numeric models)
  std::vector<std::vector<std::string>> cells_;  // per CSV column, the chunk's raw cells (table models)
  std::size_t chunk_rows_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

class predict_command final : public command {
 public:
  [[nodiscard]] std::string_view name() const override { return "predict"; }
  [[nodiscard]] std::string_view summary() const override {
    return "Predict with a saved scikit-learn model on the rows of a CSV file (C++ runtime)";
  }
  void configure(CLI::App& sub) override {
    sub.add_option("MODEL", model_, "model file written by vitrify.dump")->required();
    sub.add_option("INPUT", input_, "CSV file with a header row; '-' or nothing: standard input");
    sub.add_flag("--proba", proba_, "Class probabilities (same as --method proba)");
    sub.add_option("--method", method_, "predict (default), proba, decision or transform")
        ->check(CLI::IsMember({"predict", "proba", "predict_proba", "decision", "decision_function", "transform"}));
    sub.add_option("-o,--output", output_, "write the CSV here instead of standard output ('-': standard output)");
    sub.add_option("--batch", batch_, "rows per chunk: the input is read, predicted and written chunk by chunk")
        ->check(CLI::Range(1, 10'000'000));
    sub.add_flag("-q,--quiet", quiet_, "never show progress");
    sub.add_flag("--progress", force_progress_, "always show progress on standard error, from the start");
    sub.add_flag("--no-verify", no_verify_,
                 "skip the checksum check of the model's arrays at load (their structure is still checked)");
    sub.footer(
        "Input: RFC 4180 CSV with a header row. When the model was fitted on a DataFrame its columns\n"
        "are matched by name, in any order (a missing or unknown column is an error); otherwise they\n"
        "are taken by position and their number must equal the model's feature count (the header's\n"
        "names are then ignored). Numbers: decimal or scientific notation, inf, nan; missing values:\n"
        "an empty cell, NA, N/A, NaN, nan, NULL, null, None, <NA> and the other strings\n"
        "pandas.read_csv reads as missing by default (they become NaN). Text cells are accepted for\n"
        "models that encode text columns. Blank lines are skipped. Errors name the data row\n"
        "(1-based, not counting the header) and the column.\n"
        "Output: a header (prediction / class labels / decision_function / x0..) and one line per\n"
        "row; numbers in their shortest exact form.\n"
        "Progress is shown on standard error when it is a terminal and the job takes over a second.\n"
        "Exit status: 0 done, 1 the model or the input is bad (nothing more is written; a partial\n"
        "-o file is removed), 2 usage error.\n");
  }

  int run() override {
    method meth = method::predict;
    if (method_ == "proba" || method_ == "predict_proba") meth = method::predict_proba;
    else if (method_ == "decision" || method_ == "decision_function") meth = method::decision_function;
    else if (method_ == "transform") meth = method::transform;
    if (proba_) {
      if (!method_.empty() && meth != method::predict_proba) {
        print_error(errc::invalid_argument, "--proba and --method " + method_ + " disagree");
        return exit_usage;
      }
      meth = method::predict_proba;
    }

    runtime::load_options lo;
    lo.verify_arrays = !no_verify_;
    auto m = runtime::model::load(model_, lo);
    if (!m) {
      print_error(m.err());
      return exit_failure;
    }
    if (!m->supports(meth)) {
      print_error(errc::invalid_argument, model_ + ": " + std::string(m->type_name()) + " has no method " +
                                              std::string(runtime::method_name(meth)));
      return exit_failure;
    }

    // Input.
    const bool from_stdin = input_.empty() || input_ == "-";
    // Read with read(2), not stdio: a pipe's rows are parsed as soon as they arrive.
    int in = STDIN_FILENO;
    std::unique_ptr<int, void (*)(int*)> in_owner(nullptr, [](int* fd) { ::close(*fd); });
    if (!from_stdin) {
      in = ::open(input_.c_str(), O_RDONLY | O_CLOEXEC);
      if (in < 0) {
        error e{errc::io_error, input_ + ": cannot open: " + std::strerror(errno), errno};
        print_error(e);
        return exit_failure;
      }
      in_owner.reset(&in);
    }
    std::uint64_t total = 0;
    bool regular = false;
    struct stat st {};
    if (fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
      regular = true;
      total = static_cast<std::uint64_t>(st.st_size);
    }

    // Output.
    const bool to_stdout = output_.empty() || output_ == "-";
    std::FILE* out = stdout;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out_owner(nullptr, &std::fclose);
    if (!to_stdout) {
      out = std::fopen(output_.c_str(), "wb");
      if (!out) {
        error e{errc::io_error, output_ + ": cannot create: " + std::strerror(errno), errno};
        print_error(e);
        return exit_failure;
      }
      out_owner.reset(out);
    }
    auto fail_out = [&](const error& e) {
      if (!to_stdout) {
        out_owner.reset();
        std::remove(output_.c_str());  // no half-written result file is left behind
      }
      print_error(e);
      return exit_failure;
    };

    sink snk(out, !regular);
    predictor p(*m, meth, batch_, snk, from_stdin ? std::string("<stdin>") : input_);
    p.set_eager(!regular);
    const bool tty = isatty(STDERR_FILENO) != 0;
    progress prog(quiet_ ? 0 : force_progress_ ? 2 : tty ? 1 : 0, total, tty);

    csv_parser parser{};
    if (csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI) != 0)
      return fail_out(error{errc::io_error, "cannot initialise the CSV parser"});
    std::unique_ptr<csv_parser, void (*)(csv_parser*)> parser_owner(&parser, &csv_free);
    csv_set_realloc_func(&parser, &bounded_realloc);
    // RFC 4180 keeps blanks as part of a field: only numbers have them trimmed (parse_cell).
    csv_set_space_func(&parser, [](unsigned char) -> int { return 0; });

    // Not zero-filled: a page of the buffer costs memory only once read() has filled it.
    constexpr std::size_t buf_size = std::size_t{1} << 20;
    std::unique_ptr<char[]> buf(new char[buf_size]);
    std::uint64_t consumed = 0;
    auto csv_failure = [&]() {
      int code = csv_error(&parser);
      std::string what = code == CSV_EPARSE ? "malformed CSV (a quote inside an unquoted field, text after a closing "
                                              "quote, or an unterminated quoted field)"
                         : code == CSV_ENOMEM ? "a field is larger than " + std::to_string(max_field_bytes >> 20) + " MiB"
                                              : std::string(csv_strerror(code));
      std::string where = (from_stdin ? std::string("<stdin>") : input_) + ": ";
      where += p.in_header() ? std::string("header") : "data row " + std::to_string(p.data_rows_seen() + 1);
      return fail_out(error{errc::invalid_argument, where + ": " + what});
    };
    for (;;) {
      ssize_t n = ::read(in, buf.get(), buf_size);
      if (n < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        return fail_out(error{errc::io_error, (from_stdin ? std::string("<stdin>") : input_) + ": read failed: " + std::strerror(e), e});
      }
      if (n == 0) break;
      const auto got = static_cast<std::size_t>(n);
      std::size_t used = csv_parse(&parser, buf.get(), got, &predictor::field_cb, &predictor::record_cb, &p);
      if (p.failed()) return fail_out(p.err());
      if (used != got) return csv_failure();
      consumed += got;
      p.end_of_input_block();
      if (p.failed()) return fail_out(p.err());
      prog.update(consumed, p.rows_done());
    }
    if (csv_fini(&parser, &predictor::field_cb, &predictor::record_cb, &p) != 0 || csv_error(&parser) != CSV_SUCCESS) {
      if (p.failed()) return fail_out(p.err());
      return csv_failure();
    }
    if (p.failed()) return fail_out(p.err());
    p.finish();
    if (p.failed()) return fail_out(p.err());
    if (!snk.finish())
      return fail_out(error{errc::io_error, (to_stdout ? std::string("<stdout>") : output_) + ": write failed: " +
                                                std::strerror(snk.error_number()), snk.error_number()});
    if (!to_stdout) {
      std::FILE* f = out_owner.release();
      if (std::fclose(f) != 0) {
        int e = errno;
        std::remove(output_.c_str());
        print_error(error{errc::io_error, output_ + ": write failed: " + std::strerror(e), e});
        return exit_failure;
      }
    }
    prog.update(consumed, p.rows_done(), true);
    return exit_ok;
  }

 private:
  std::string model_;
  std::string input_;
  std::string output_;
  std::string method_;
  bool proba_ = false;
  std::size_t batch_ = 8192;
  bool quiet_ = false;
  bool force_progress_ = false;
  bool no_verify_ = false;
};

}  // namespace
}  // namespace vitrify::cli

VITRIFY_REGISTER_COMMAND(vitrify::cli::predict_command);
