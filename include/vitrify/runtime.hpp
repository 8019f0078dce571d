// vitrify/runtime.hpp - load a model saved by vitrify.dump and predict in C++, without Python.
//
//   auto m = vitrify::runtime::model::load("model.vit");          // result<model>
//   if (!m) { std::cerr << m.error().message() << "\n"; return 1; }
//   auto p = m->predict_proba(vitrify::runtime::matrix_view(xs.data(), rows, cols));
//
// Models are immutable after load and safe to call from many threads at once. Estimators the
// runtime does not implement are an error naming them (errc::unsupported), never a wrong answer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/error.hpp"
#include "vitrify/reader.hpp"

namespace vitrify::pyobj {
struct node;
}

namespace vitrify::runtime {

/// A dense, row-major matrix of float64 or float32 owned by the caller (never copied).
/// `row_stride` is in elements (>= cols); 0 means cols.
class matrix_view {
 public:
  matrix_view() = default;
  matrix_view(const double* data, std::size_t rows, std::size_t cols, std::size_t row_stride = 0) noexcept
      : d_(data), rows_(rows), cols_(cols), stride_(row_stride ? row_stride : cols) {}
  matrix_view(const float* data, std::size_t rows, std::size_t cols, std::size_t row_stride = 0) noexcept
      : f_(data), rows_(rows), cols_(cols), stride_(row_stride ? row_stride : cols) {}

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  [[nodiscard]] std::size_t row_stride() const noexcept { return stride_; }
  [[nodiscard]] bool is_float32() const noexcept { return f_ != nullptr; }
  [[nodiscard]] const double* f64() const noexcept { return d_; }
  [[nodiscard]] const float* f32() const noexcept { return f_; }
  /// Element (r, c) as float64 (float32 data is widened exactly).
  [[nodiscard]] double at(std::size_t r, std::size_t c) const noexcept {
    return f_ ? static_cast<double>(f_[r * stride_ + c]) : d_[r * stride_ + c];
  }
  /// Rows [begin, begin + n) as a view.
  [[nodiscard]] matrix_view slice_rows(std::size_t begin, std::size_t n) const noexcept {
    matrix_view v = *this;
    if (d_) v.d_ = d_ + begin * stride_;
    if (f_) v.f_ = f_ + begin * stride_;
    v.rows_ = n;
    return v;
  }

 private:
  const double* d_ = nullptr;
  const float* f_ = nullptr;
  std::size_t rows_ = 0, cols_ = 0, stride_ = 0;
};

/// A table with named columns, each numeric or text: the input of models that encode strings
/// (OneHotEncoder / OrdinalEncoder on string categories, ColumnTransformer by column name).
/// Missing numeric values are NaN; a missing text value is `is_missing` true.
class table {
 public:
  struct column {
    std::string name;
    bool is_text = false;
    std::vector<double> numbers;        ///< numeric columns
    std::vector<std::string> texts;     ///< text columns
    std::vector<bool> missing;          ///< text columns: true where the cell is missing (None/NaN)
  };
  table() = default;
  explicit table(std::size_t rows) : rows_(rows) {}
  /// Columns must all have `rows()` values.
  result<void> add_numeric(std::string name, std::vector<double> values);
  result<void> add_text(std::string name, std::vector<std::string> values, std::vector<bool> missing = {});
  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_.size(); }
  [[nodiscard]] const column& col(std::size_t c) const noexcept { return cols_[c]; }
  /// Index of the column called `name`, or -1.
  [[nodiscard]] std::ptrdiff_t find(std::string_view name) const noexcept;

 private:
  std::size_t rows_ = 0;
  std::vector<column> cols_;
};

/// A prediction or transformation result: a rows x cols matrix of numbers, or (predict of a
/// classifier whose classes are strings) of labels.
struct output {
  std::size_t rows = 0, cols = 0;
  std::vector<double> values;          ///< row-major numbers (empty when `labels` is used)
  std::vector<std::string> labels;     ///< row-major string labels
  [[nodiscard]] bool is_labels() const noexcept { return !labels.empty() || (rows * cols > 0 && values.empty()); }
};

enum class method : std::uint8_t { predict, predict_proba, decision_function, transform, score_samples };
std::string_view method_name(method m) noexcept;

struct load_options {
  open_options open{};
  /// Verify every array's checksum at load (touches all pages). Off: arrays are verified by
  /// `vitrify verify`, and the structure of every array the model uses is checked regardless.
  bool verify_arrays = true;
};

/// Canonical type names of every estimator the runtime implements, sorted.
std::vector<std::string> supported_types();

class estimator;   // the internal interface (src/runtime/estimator.hpp)

/// A model ready to predict. Cheap to copy (shares the immutable estimator and the mapping).
class model {
 public:
  static result<model> load(const std::filesystem::path& path, const load_options& opt = {});
  static result<model> from_file(const file& f, const load_options& opt = {});

  /// Canonical type name of the top-level estimator ("sklearn.pipeline.Pipeline").
  [[nodiscard]] std::string_view type_name() const noexcept;
  [[nodiscard]] bool supports(method m) const noexcept;
  /// Number of input features (columns) the model expects; feature names when it was fitted on
  /// a DataFrame (empty otherwise).
  [[nodiscard]] std::size_t n_features() const noexcept;
  [[nodiscard]] const std::vector<std::string>& feature_names() const noexcept;
  /// Classes of a classifier (as text; numeric labels are formatted like Python's repr), else empty.
  [[nodiscard]] const std::vector<std::string>& classes() const noexcept;
  /// Whether the model needs text input (use the `table` overloads).
  [[nodiscard]] bool needs_table() const noexcept;

  result<output> predict(const matrix_view& x) const;
  result<output> predict_proba(const matrix_view& x) const;
  result<output> decision_function(const matrix_view& x) const;
  result<output> transform(const matrix_view& x) const;
  result<output> score_samples(const matrix_view& x) const;
  result<output> run(method m, const matrix_view& x) const;
  result<output> run(method m, const table& x) const;

  /// Single-row fast path: `out` must have room for the method's output width
  /// (`output_width(m)`); no allocation for estimators that support it. For predict of a
  /// classifier, out[0] receives the index of the class in classes().
  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const;
  [[nodiscard]] std::size_t output_width(method m) const noexcept;

 private:
  std::shared_ptr<const estimator> est_;
  std::shared_ptr<const void> keep_;   // the file mapping / decoded graph the estimator views
};

}  // namespace vitrify::runtime
