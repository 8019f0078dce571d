// vitrify::runtime::model: file -> object graph -> estimator (registry) -> predictions.
#include <cstring>

#include "runtime/estimator.hpp"
#include "vitrify/pyobj.hpp"

namespace vitrify::runtime {

std::string_view method_name(method m) noexcept {
  switch (m) {
    case method::predict: return "predict";
    case method::predict_proba: return "predict_proba";
    case method::decision_function: return "decision_function";
    case method::transform: return "transform";
    case method::score_samples: return "score_samples";
  }
  return "?";
}

std::vector<std::string> supported_types() { return registry::instance().names(); }

// ---- table ----

result<void> table::add_numeric(std::string name, std::vector<double> values) {
  if (values.size() != rows_)
    return fail(errc::invalid_argument, "column '" + name + "' has " + std::to_string(values.size()) + " values, the table " + std::to_string(rows_) + " rows");
  column c;
  c.name = std::move(name);
  c.numbers = std::move(values);
  cols_.push_back(std::move(c));
  return {};
}

result<void> table::add_text(std::string name, std::vector<std::string> values, std::vector<bool> missing) {
  if (values.size() != rows_)
    return fail(errc::invalid_argument, "column '" + name + "' has " + std::to_string(values.size()) + " values, the table " + std::to_string(rows_) + " rows");
  if (!missing.empty() && missing.size() != rows_)
    return fail(errc::invalid_argument, "column '" + name + "': missing-value mask has the wrong length");
  column c;
  c.name = std::move(name);
  c.is_text = true;
  c.texts = std::move(values);
  c.missing = missing.empty() ? std::vector<bool>(rows_, false) : std::move(missing);
  cols_.push_back(std::move(c));
  return {};
}

std::ptrdiff_t table::find(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < cols_.size(); ++i)
    if (cols_[i].name == name) return static_cast<std::ptrdiff_t>(i);
  return -1;
}

// ---- model ----

namespace {
struct holder {
  std::shared_ptr<pyobj::graph> graph;
};
}  // namespace

result<model> model::load(const std::filesystem::path& path, const load_options& opt) {
  auto f = file::open(path, opt.open);
  if (!f) return std::move(f).err();
  return from_file(*f, opt);
}

result<model> model::from_file(const file& f, const load_options& opt) {
  if (opt.verify_arrays) VITRIFY_TRY(f.verify());
  auto g = pyobj::decode_objects(f);
  if (!g) return std::move(g).err();
  const pyobj::node* root = (*g)->root;
  if (!root) return fail(errc::bad_value, "the file holds no object");
  build_context ctx(registry::instance());
  auto est = ctx.build(*root);
  if (!est) return std::move(est).err();
  model m;
  m.est_ = std::move(est).value();
  auto h = std::make_shared<holder>();
  h->graph = std::move(g).value();
  m.keep_ = std::move(h);
  return m;
}

std::string_view model::type_name() const noexcept { return est_ ? std::string_view(est_->type) : std::string_view(); }
bool model::supports(method m) const noexcept { return est_ && est_->supports(m); }
std::size_t model::n_features() const noexcept {
  return est_ && est_->n_features >= 0 ? static_cast<std::size_t>(est_->n_features) : 0;
}
const std::vector<std::string>& model::feature_names() const noexcept {
  static const std::vector<std::string> none;
  return est_ ? est_->feature_names : none;
}
const std::vector<std::string>& model::classes() const noexcept {
  static const std::vector<std::string> none;
  return est_ ? est_->classes : none;
}
bool model::needs_table() const noexcept { return est_ && est_->needs_table; }

std::size_t model::output_width(method m) const noexcept { return est_ ? est_->width(m) : 0; }

namespace {

result<void> check_input(const estimator& e, std::size_t cols) {
  if (e.n_features >= 0 && cols != static_cast<std::size_t>(e.n_features))
    return fail(errc::invalid_argument, "X has " + std::to_string(cols) + " features, but " +
                                            std::string(short_name(e.type)) + " is expecting " +
                                            std::to_string(e.n_features) + " features as input");
  return {};
}

result<output> finish(const estimator& e, method m, dense d) {
  output out;
  out.rows = d.rows;
  out.cols = d.cols;
  if (m == method::predict && e.is_classifier) {
    const std::size_t nc = e.string_classes ? e.classes.size() : e.class_values.size();
    for (double x : d.v) {
      if (!(x >= 0 && x < static_cast<double>(nc)))
        return fail(errc::bad_state, e.type + ": predicted class index out of range");
    }
    if (e.string_classes) {
      out.labels.reserve(d.v.size());
      for (double x : d.v) out.labels.push_back(e.classes[static_cast<std::size_t>(x)]);
      return out;
    }
    for (double& x : d.v) x = e.class_values[static_cast<std::size_t>(x)];
  }
  out.values = std::move(d.v);
  return out;
}

}  // namespace

result<output> model::run(method m, const matrix_view& x) const {
  if (!est_) return fail(errc::invalid_argument, "empty model");
  if (!est_->supports(m))
    return fail(errc::invalid_argument, std::string(short_name(est_->type)) + " has no method " + std::string(method_name(m)));
  if (!x.is_float32() && !x.f64() && x.rows() * x.cols() != 0) return fail(errc::invalid_argument, "null input matrix");
  if (est_->needs_table)
    return fail(errc::invalid_argument, std::string(short_name(est_->type)) + " needs a table input (it encodes text columns or selects columns by name)");
  VITRIFY_TRY(check_input(*est_, x.cols()));
  auto r = est_->run(m, input(x));
  if (!r) return std::move(r).err();
  return finish(*est_, m, std::move(r).value());
}

result<output> model::run(method m, const table& x) const {
  if (!est_) return fail(errc::invalid_argument, "empty model");
  if (!est_->supports(m))
    return fail(errc::invalid_argument, std::string(short_name(est_->type)) + " has no method " + std::string(method_name(m)));
  if (!est_->feature_names.empty()) {
    // Columns matched by name: every feature present; extra columns are an error (like sklearn).
    for (const auto& name : est_->feature_names)
      if (x.find(name) < 0) return fail(errc::invalid_argument, "input has no column '" + name + "'");
    if (x.cols() != est_->feature_names.size()) {
      for (std::size_t c = 0; c < x.cols(); ++c) {
        bool known = false;
        for (const auto& name : est_->feature_names) known = known || name == x.col(c).name;
        if (!known) return fail(errc::invalid_argument, "input column '" + x.col(c).name + "' was not seen when the model was fitted");
      }
    }
    // Reorder to the fitted order when needed.
    bool same = x.cols() == est_->feature_names.size();
    for (std::size_t c = 0; same && c < x.cols(); ++c) same = x.col(c).name == est_->feature_names[c];
    if (!same) {
      table t(x.rows());
      for (const auto& name : est_->feature_names) {
        const auto& col = x.col(static_cast<std::size_t>(x.find(name)));
        if (col.is_text) VITRIFY_TRY(t.add_text(col.name, col.texts, col.missing));
        else VITRIFY_TRY(t.add_numeric(col.name, col.numbers));
      }
      return run(m, t);
    }
  }
  VITRIFY_TRY(check_input(*est_, x.cols()));
  auto r = est_->run(m, input(x));
  if (!r) return std::move(r).err();
  return finish(*est_, m, std::move(r).value());
}

result<output> model::predict(const matrix_view& x) const { return run(method::predict, x); }
result<output> model::predict_proba(const matrix_view& x) const { return run(method::predict_proba, x); }
result<output> model::decision_function(const matrix_view& x) const { return run(method::decision_function, x); }
result<output> model::transform(const matrix_view& x) const { return run(method::transform, x); }
result<output> model::score_samples(const matrix_view& x) const { return run(method::score_samples, x); }

result<void> model::run_row(method m, std::span<const double> row, std::span<double> out) const {
  if (!est_) return fail(errc::invalid_argument, "empty model");
  if (!est_->supports(m))
    return fail(errc::invalid_argument, std::string(short_name(est_->type)) + " has no method " + std::string(method_name(m)));
  if (est_->needs_table) return fail(errc::invalid_argument, "this model needs a table input");
  VITRIFY_TRY(check_input(*est_, row.size()));
  if (out.size() != est_->width(m))
    return fail(errc::invalid_argument, "output buffer has " + std::to_string(out.size()) + " values, the method gives " + std::to_string(est_->width(m)));
  return est_->run_row(m, row, out);
}

}  // namespace vitrify::runtime
