// src/runtime/estimator.hpp - the internal estimator interface, the registry and helpers that
// read fitted state out of a pyobj graph with every shape and index checked.
//
// Adding an estimator: write `build_xxx(const pyobj::node&, build_context&)` in the family's
// file, register it in that family's `register_xxx(registry&)`, and add a parity test in
// tests/python/test_native_*.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vitrify/error.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/runtime.hpp"

namespace vitrify::runtime {

/// A row-major matrix of float64 owned by the runtime (results and intermediate steps).
struct dense {
  std::size_t rows = 0, cols = 0;
  std::vector<double> v;
  dense() = default;
  dense(std::size_t r, std::size_t c, double fill = 0.0) : rows(r), cols(c), v(r * c, fill) {}
  double& operator()(std::size_t r, std::size_t c) noexcept { return v[r * cols + c]; }
  double operator()(std::size_t r, std::size_t c) const noexcept { return v[r * cols + c]; }
  double* row(std::size_t r) noexcept { return v.data() + r * cols; }
  const double* row(std::size_t r) const noexcept { return v.data() + r * cols; }
  [[nodiscard]] matrix_view view() const noexcept { return matrix_view(v.data(), rows, cols); }
};

/// What flows into an estimator: a numeric matrix view, or a table (text columns, names).
class input {
 public:
  input(const matrix_view& m) noexcept : m_(m) {}  // NOLINT: implicit on purpose
  input(const table& t) noexcept : t_(&t) {}       // NOLINT
  [[nodiscard]] bool is_table() const noexcept { return t_ != nullptr; }
  [[nodiscard]] const table& tbl() const noexcept { return *t_; }
  [[nodiscard]] const matrix_view& matrix() const noexcept { return m_; }
  [[nodiscard]] std::size_t rows() const noexcept { return t_ ? t_->rows() : m_.rows(); }
  [[nodiscard]] std::size_t cols() const noexcept { return t_ ? t_->cols() : m_.cols(); }
  [[nodiscard]] bool is_text(std::size_t c) const noexcept { return t_ && t_->col(c).is_text; }
  /// Numeric cell; for text columns NaN.
  [[nodiscard]] double number(std::size_t r, std::size_t c) const noexcept {
    if (!t_) return m_.at(r, c);
    const auto& col = t_->col(c);
    return col.is_text ? std::nan("") : col.numbers[r];
  }
  /// The whole input as numbers: the view itself for matrices (no copy), else the table's
  /// numeric columns copied into `storage`; errc::invalid_argument naming a text column.
  result<matrix_view> numeric(dense& storage, std::string_view who) const;

 private:
  matrix_view m_{};
  const table* t_ = nullptr;
};

inline unsigned method_bit(method m) noexcept { return 1u << static_cast<unsigned>(m); }

/// An immutable fitted estimator. `run` for predict of a classifier returns, in one column,
/// the index into `classes` of each row's class (the model maps indices to labels).
class estimator {
 public:
  virtual ~estimator() = default;

  std::string type;                         ///< canonical type name
  unsigned methods = 0;                     ///< method_bit(...) of supported methods
  std::int64_t n_features = -1;             ///< n_features_in_ (-1: not recorded)
  std::vector<std::string> feature_names;   ///< feature_names_in_, if fitted on a DataFrame
  bool is_classifier = false;
  std::vector<std::string> classes;         ///< class labels as text (for display and output)
  bool string_classes = false;              ///< classes_ held Python strings
  std::vector<double> class_values;         ///< numeric classes_ (when !string_classes)
  bool needs_table = false;                 ///< some step needs text input

  [[nodiscard]] bool supports(method m) const noexcept { return (methods & method_bit(m)) != 0; }
  /// Number of output columns of method m for one row (0 if unknown before running).
  [[nodiscard]] virtual std::size_t width(method m) const = 0;
  /// Run method m on every row of x. Called only for supported methods.
  virtual result<dense> run(method m, const input& x) const = 0;
  /// One row into out (out.size() == width(m)); the default goes through run().
  virtual result<void> run_row(method m, std::span<const double> row, std::span<double> out) const;
};

using estimator_ptr = std::shared_ptr<const estimator>;

class registry;

/// Passed to builders: recursion for meta-estimators (pipelines, column transformers...).
class build_context {
 public:
  explicit build_context(const registry& r) : reg_(r) {}
  /// Build the estimator described by object node `n` (errc::unsupported naming its type).
  result<estimator_ptr> build(const pyobj::node& n);
  /// Nesting of build() calls so far.
  [[nodiscard]] int depth() const noexcept { return depth_; }

 private:
  const registry& reg_;
  int depth_ = 0;
};

using builder_fn = std::function<result<estimator_ptr>(const pyobj::node& obj, build_context& ctx)>;

class registry {
 public:
  /// The registry with every estimator the runtime implements.
  static const registry& instance();
  void add(std::string type_name, builder_fn fn);
  [[nodiscard]] const builder_fn* find(std::string_view type_name) const;
  [[nodiscard]] std::vector<std::string> names() const;

 private:
  std::unordered_map<std::string, builder_fn> map_;
};

// One per family (src/runtime/<family>.cpp).
void register_linear(registry& r);          // linear.cpp
void register_svm(registry& r);             // svm.cpp
void register_naive_bayes(registry& r);     // naive_bayes.cpp
void register_neighbors(registry& r);       // neighbors.cpp
void register_neural(registry& r);          // neural.cpp
void register_cluster(registry& r);         // cluster.cpp
void register_tree(registry& r);            // tree.cpp (decision trees)
void register_ensemble(registry& r);        // ensemble.cpp (forests, GB, HGB, isolation forest)
void register_preprocessing(registry& r);   // preprocessing.cpp (families in preprocessing_*.cpp)
void register_decomposition(registry& r);   // decomposition.cpp
void register_compose(registry& r);         // compose.cpp (Pipeline, ColumnTransformer, FeatureUnion)

// ------------------------------------------------------------------------------------------
// Reading fitted state. Every helper checks kind, dtype and shape and returns an error value
// ("LogisticRegression.coef_: expected a 2-d float64 array, got ...") on mismatch.
// ------------------------------------------------------------------------------------------

/// Error helpers (errc::format for malformed state, errc::unsupported for unimplemented options).
error state_error(std::string_view who, std::string_view what);
error unsupported_error(std::string_view who, std::string_view what);

/// Short name for messages: "sklearn.linear_model.LogisticRegression" -> "LogisticRegression".
std::string_view short_name(std::string_view type_name) noexcept;

/// The state attribute `key` of object `obj`, or an error naming it.
result<const pyobj::node*> need_attr(const pyobj::node& obj, std::string_view key);
/// The attribute, or nullptr when absent or None.
const pyobj::node* opt_attr(const pyobj::node& obj, std::string_view key) noexcept;

result<std::int64_t> get_int(const pyobj::node& obj, std::string_view key);      // int, bool, numpy int scalar
result<double> get_float(const pyobj::node& obj, std::string_view key);          // float, int, numpy scalar
result<bool> get_bool(const pyobj::node& obj, std::string_view key);
result<std::string> get_str(const pyobj::node& obj, std::string_view key);
/// Value of a scalar node (int/float/bool/numpy scalar) as double.
result<double> as_number(const pyobj::node& n, std::string_view who);
result<std::int64_t> as_integer(const pyobj::node& n, std::string_view who);

/// A read-only typed array: a view of the file when the stored dtype matches T, otherwise a
/// converted copy (numeric dtypes only; converting is exact for the cases the runtime uses:
/// ints to int64, float32 to float64...). Always C order (Fortran data is transposed).
template <class T>
struct tensor {
  std::vector<std::int64_t> shape;
  const T* p = nullptr;
  std::vector<T> owned;
  std::shared_ptr<const void> owner;
  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 1;
    for (auto s : shape) n *= static_cast<std::size_t>(s);
    return n;
  }
  [[nodiscard]] std::size_t dim(std::size_t i) const noexcept { return static_cast<std::size_t>(shape[i]); }
  [[nodiscard]] std::size_t rank() const noexcept { return shape.size(); }
  const T& operator[](std::size_t i) const noexcept { return p[i]; }
  [[nodiscard]] std::span<const T> span() const noexcept { return {p, size()}; }
};

/// Read array node `n` as T. `rank` -1 accepts any rank; otherwise the rank must match
/// (a rank-0 array or a Python number is accepted for rank 0).
template <class T>
result<tensor<T>> as_tensor(const pyobj::node& n, std::string_view who, int rank = -1);
/// Attribute shortcut: as_tensor(need_attr(obj, key)).
template <class T>
result<tensor<T>> attr_tensor(const pyobj::node& obj, std::string_view key, int rank = -1);

/// A Python list / tuple of numbers or a 1-d numeric array, as doubles.
result<std::vector<double>> as_float_list(const pyobj::node& n, std::string_view who);

/// classes_ of a classifier: sets `e.classes`, `e.string_classes`, `e.class_values`.
result<void> read_classes(const pyobj::node& classes, estimator& e, std::string_view who);
/// n_features_in_ and feature_names_in_ (when present) into e.
result<void> read_feature_info(const pyobj::node& obj, estimator& e);

/// Python repr of a float as Python prints it (shortest round trip; "1.0", "nan", "inf").
std::string py_float_repr(double d);

extern template result<tensor<double>> as_tensor<double>(const pyobj::node&, std::string_view, int);
extern template result<tensor<float>> as_tensor<float>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::int64_t>> as_tensor<std::int64_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::int32_t>> as_tensor<std::int32_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::uint8_t>> as_tensor<std::uint8_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::uint32_t>> as_tensor<std::uint32_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<double>> attr_tensor<double>(const pyobj::node&, std::string_view, int);
extern template result<tensor<float>> attr_tensor<float>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::int64_t>> attr_tensor<std::int64_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::int32_t>> attr_tensor<std::int32_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::uint8_t>> attr_tensor<std::uint8_t>(const pyobj::node&, std::string_view, int);
extern template result<tensor<std::uint32_t>> attr_tensor<std::uint32_t>(const pyobj::node&, std::string_view, int);

}  // namespace vitrify::runtime
