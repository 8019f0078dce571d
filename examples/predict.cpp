// predict.cpp - load a model saved by Python's vitrify.dump and predict in C++, without Python.
//   predict MODEL.vit            (prints predict_proba / predict for a few rows of zeros and ones)
#include <cstdio>
#include <vector>

#include "vitrify/runtime.hpp"

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: %s MODEL.vit\n", argv[0]), 2;
  // Maps the file, verifies it, builds the estimator (an error names anything unsupported).
  auto m = vitrify::runtime::model::load(argv[1]);
  if (!m) return std::fprintf(stderr, "%s\n", m.err().what().c_str()), 1;
  const std::size_t cols = m->n_features(), rows = 3;
  std::printf("%.*s: %zu features, %zu classes\n", static_cast<int>(m->type_name().size()),
              m->type_name().data(), cols, m->classes().size());

  std::vector<double> x(rows * cols);  // the caller's row-major data: never copied
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i % 2);
  vitrify::runtime::matrix_view view(x.data(), rows, cols);

  using vitrify::runtime::method;
  for (method meth : {method::predict_proba, method::decision_function, method::predict}) {
    if (!m->supports(meth)) continue;
    auto out = m->run(meth, view);  // immutable model: safe to call from many threads
    if (!out) return std::fprintf(stderr, "%s\n", out.err().what().c_str()), 1;
    const auto name = vitrify::runtime::method_name(meth);
    std::printf("%.*s:", static_cast<int>(name.size()), name.data());
    for (std::size_t r = 0; r < out->rows; ++r)
      for (std::size_t c = 0; c < out->cols; ++c) {
        if (out->is_labels()) std::printf(" %s", out->labels[r * out->cols + c].c_str());
        else std::printf(" %.6g", out->values[r * out->cols + c]);
      }
    std::printf("\n");
  }

  // The latency path: one row into a caller-owned buffer, no allocation.
  if (m->supports(method::predict_proba)) {
    std::vector<double> proba(m->output_width(method::predict_proba));
    auto r = m->run_row(method::predict_proba, std::span<const double>(x.data(), cols), proba);
    if (!r) return std::fprintf(stderr, "%s\n", r.err().what().c_str()), 1;
  }
  return 0;
}
