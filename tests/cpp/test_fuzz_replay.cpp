// test_fuzz_replay.cpp - replays every fuzz corpus file (fuzz/corpus/<target>/) and every golden
// vector (tests/vectors/) through the fuzz target bodies (fuzz/fuzz_bodies.hpp), so that `make
// test` re-checks every input the fuzzers ever found interesting - crash reproducers included -
// without libFuzzer or clang. A broken invariant aborts the test process with the file's name
// printed just before.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../../fuzz/fuzz_bodies.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

/// Repository root, from this file's path (CMake passes absolute source paths).
fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

/// Every regular file under the given folders (recursively), sorted.
std::vector<fs::path> files_under(std::initializer_list<fs::path> dirs) {
  std::vector<fs::path> out;
  for (const auto& d : dirs) {
    if (!fs::is_directory(d)) continue;
    for (const auto& e : fs::recursive_directory_iterator(d))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t replay(const std::vector<fs::path>& files, int (*body)(const std::uint8_t*, std::size_t)) {
  for (const auto& p : files) {
    std::fprintf(stderr, "replaying %s\n", p.c_str());
    auto b = vt::read_bytes(p);
    body(reinterpret_cast<const std::uint8_t*>(b.data()), b.size());
  }
  return files.size();
}

}  // namespace

TEST(FuzzReplay, ReaderCorpusAndGoldenVectors) {
  const auto root = repo_root();
  auto files = files_under({root / "fuzz/corpus/reader", root / "tests/vectors/valid", root / "tests/vectors/invalid"});
  EXPECT_GE(files.size(), 100u) << "golden vectors not found under " << root;
  replay(files, vitrify_fuzz::fuzz_reader);
}

TEST(FuzzReplay, ValueCorpus) {
  auto files = files_under({repo_root() / "fuzz/corpus/value"});
  EXPECT_GE(files.size(), 50u);
  replay(files, vitrify_fuzz::fuzz_value);
}

TEST(FuzzReplay, RoundTripCorpus) {
  auto files = files_under({repo_root() / "fuzz/corpus/roundtrip"});
  EXPECT_GE(files.size(), 50u);
  replay(files, vitrify_fuzz::fuzz_roundtrip);
  replay(files, vitrify_fuzz::fuzz_model);
  replay(files, vitrify_fuzz::fuzz_pickle);
}

TEST(FuzzReplay, ModelCorpus) {
  auto files = files_under({repo_root() / "fuzz/corpus/model"});
  EXPECT_GE(files.size(), 20u);
  replay(files, vitrify_fuzz::fuzz_model);
}

TEST(FuzzReplay, PickleCorpus) {
  auto files = files_under({repo_root() / "fuzz/corpus/pickle"});
  EXPECT_GE(files.size(), 20u);
  replay(files, vitrify_fuzz::fuzz_pickle);
}

// Each body on every other corpus too: inputs meant for one parser are odd inputs for another.
TEST(FuzzReplay, EveryBodyOnEveryCorpus) {
  const auto root = repo_root();
  auto files = files_under({root / "fuzz/corpus", root / "tests/vectors/valid", root / "tests/vectors/invalid"});
  replay(files, vitrify_fuzz::fuzz_reader);
  replay(files, vitrify_fuzz::fuzz_value);
  replay(files, vitrify_fuzz::fuzz_roundtrip);
  replay(files, vitrify_fuzz::fuzz_model);
}
