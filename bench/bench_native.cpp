// bench_native.cpp - latency and throughput of the C++ runtime (issue 4), Google Benchmark.
//
//   bench_native --data X.vit --model rf=rf.vit --model lr=lr.vit [--benchmark_* flags]
//
// X.vit is an arrays file (vitrify.save_arrays) holding "X", a 2-d float64 array of test rows;
// each model file is a vitrify.dump of a fitted classifier. For each model it registers:
//   load/NAME   runtime::model::load (warm page cache; checksums verified, as the CLI does)
//   row/NAME    run_row(predict_proba) on one row (rows taken in turn from the first 1024)
//   batch/NAME  predict_proba on every row of X at once (items/s = rows/s)
// bench/bench_native.py writes the files, runs this with --benchmark_format=json and sets the
// numbers beside scikit-learn's.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "vitrify/runtime.hpp"
#include "vitrify/vitrify.hpp"

namespace {

using vitrify::runtime::method;
using vitrify::runtime::model;

struct dataset {
  vitrify::file f;            // keeps the mapping alive
  const double* x = nullptr;
  std::size_t rows = 0, cols = 0;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench_native: %s\n", msg.c_str());
  std::exit(2);
}

dataset load_data(const std::string& path) {
  auto f = vitrify::file::open(path);
  if (!f) die(path + ": " + f.err().message);
  auto idx = f->find("X");
  if (!idx) die(path + ": no array 'X'");
  const auto& info = f->arrays()[*idx];
  if (info.type != vitrify::dtype::float64 || info.shape.size() != 2) die(path + ": X must be a 2-d float64 array");
  auto bytes = f->view(*idx, true);
  if (!bytes) die(path + ": " + bytes.err().message);
  dataset d{std::move(f).value(), nullptr, static_cast<std::size_t>(info.shape[0]), static_cast<std::size_t>(info.shape[1])};
  // The view stays valid: it points into the mapping that `d.f` owns (moved, not copied).
  auto again = d.f.view(*idx);
  d.x = reinterpret_cast<const double*>(again->data());
  return d;
}

void bench_load(benchmark::State& st, std::string path) {
  for (auto _ : st) {
    auto m = model::load(path);
    if (!m) {
      st.SkipWithError(m.err().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(m->n_features());
  }
}

void bench_row(benchmark::State& st, const model* m, const dataset* d) {
  std::vector<double> out(m->output_width(method::predict_proba));
  const std::size_t n = std::min<std::size_t>(d->rows, 1024);
  std::size_t i = 0;
  for (auto _ : st) {
    auto r = m->run_row(method::predict_proba, {d->x + i * d->cols, d->cols}, out);
    if (!r) {
      st.SkipWithError(r.err().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    if (++i == n) i = 0;
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
}

void bench_batch(benchmark::State& st, const model* m, const dataset* d) {
  vitrify::runtime::matrix_view x(d->x, d->rows, d->cols);
  for (auto _ : st) {
    auto r = m->predict_proba(x);
    if (!r) {
      st.SkipWithError(r.err().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(r->values.data());
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * d->rows));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string data_path;
  std::vector<std::pair<std::string, std::string>> specs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) {
      data_path = argv[++i];
    } else if (a == "--model" && i + 1 < argc) {
      std::string s = argv[++i];
      auto eq = s.find('=');
      if (eq == std::string::npos) die("--model takes NAME=PATH");
      specs.emplace_back(s.substr(0, eq), s.substr(eq + 1));
    } else {
      die("unknown argument '" + a + "' (usage: bench_native --data X.vit --model NAME=PATH ... [--benchmark_* flags])");
    }
  }
  if (data_path.empty() || specs.empty()) die("usage: bench_native --data X.vit --model NAME=PATH ...");

  static dataset data = load_data(data_path);
  static std::vector<model> models;
  models.reserve(specs.size());
  for (const auto& [name, path] : specs) {
    auto m = model::load(path);
    if (!m) die(path + ": " + m.err().message);
    if (m->n_features() != data.cols)
      die(path + ": the model takes " + std::to_string(m->n_features()) + " features, X has " + std::to_string(data.cols));
    models.push_back(std::move(m).value());
  }
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const std::string& name = specs[k].first;
    benchmark::RegisterBenchmark(("load/" + name).c_str(), bench_load, specs[k].second)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("row/" + name).c_str(), bench_row, &models[k], &data)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark(("batch/" + name).c_str(), bench_batch, &models[k], &data)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
