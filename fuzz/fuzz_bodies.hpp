// fuzz_bodies.hpp - the bodies of the libFuzzer targets, shared by the fuzzers (clang,
// -fsanitize=fuzzer) and by the corpus replay test (tests/cpp/test_fuzz_replay.cpp, any
// compiler, no libFuzzer). Each body must never crash, whatever the input; a broken invariant
// aborts with a message (libFuzzer then records the input as a crash).
#pragma once

#include <xxhash.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/vitrify.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/runtime.hpp"
#include "vitrify/legacy.hpp"

namespace vitrify_fuzz {

[[noreturn]] inline void fuzz_fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}
#define VITRIFY_FUZZ_CHECK(cond, ...) \
  do {                                \
    if (!(cond)) ::vitrify_fuzz::fuzz_fail(#cond, ##__VA_ARGS__); \
  } while (0)

/// Limits used by the fuzzers: the defaults, except decoded sizes (a few KiB of zstd may
/// honestly inflate to gigabytes, which is a cost, not a bug).
inline vitrify::open_options fuzz_open_options() {
  vitrify::open_options o;
  o.lim.max_decoded_bytes = 16u << 20;
  return o;
}

/// Open + verify + read every array every way. Errors are fine; crashes, leaks, UB are not.
inline void exercise_file(std::span<const std::byte> img) {
  using namespace vitrify;
  auto f = file::from_bytes(img, fuzz_open_options(), "fuzz");
  if (!f) {
    VITRIFY_FUZZ_CHECK(f.code() != errc::ok);
    return;
  }
  (void)f->header_json().size();
  (void)to_json(f->metadata());
  (void)to_json(f->content());
  for (const auto& t : f->trailers()) (void)t.body.size();
  const bool verified = f->verify().ok();
  for (std::size_t i = 0; i < f->arrays().size(); ++i) {
    const array_info& a = f->arrays()[i];
    auto found = f->find(a.name);
    VITRIFY_FUZZ_CHECK(found.ok() && *found == i, a.name);
    const bool ok_i = f->verify_array(i).ok();
    VITRIFY_FUZZ_CHECK(!verified || ok_i, a.name);
    auto v = f->view(i, true);
    if (a.codec == codec::raw) VITRIFY_FUZZ_CHECK(!ok_i || (v.ok() && v->size() == a.decoded_length), a.name);
    (void)f->view(i, false);
    // read_into without the checksum check reaches the decoders with arbitrary bytes.
    std::vector<std::byte> out(static_cast<std::size_t>(a.decoded_length));
    auto r1 = f->read_into(i, out, false);
    auto r2 = f->read_into(i, out, true);
    VITRIFY_FUZZ_CHECK(!ok_i || (r1.ok() && r2.ok()), a.name);
    if (a.type == dtype::string) {
      auto s1 = f->read_strings(i, false);
      auto s2 = f->read_strings(i, true);
      VITRIFY_FUZZ_CHECK(!ok_i || (s1.ok() && s2.ok() && s1->size() == a.count), a.name);
    }
  }
  (void)f->read_into(f->arrays().size(), {}, false);  // out of range index: an error
}

/// Recompute the preamble and header checksums of an image (when the declared header lies
/// inside it) so that mutations get past the checksums to the parsers behind them.
inline std::vector<std::byte> resealed(std::span<const std::byte> in) {
  std::vector<std::byte> b(in.begin(), in.end());
  if (b.size() < vitrify::preamble_size) return b;
  auto u64 = [&](std::size_t off) {
    std::uint64_t v;
    std::memcpy(&v, b.data() + off, 8);
    return v;  // little-endian host (x86-64, aarch64)
  };
  auto put = [&](std::size_t off, std::uint64_t v) { std::memcpy(b.data() + off, &v, 8); };
  const std::uint64_t hoff = u64(24), hlen = u64(32);
  if (hoff <= b.size() && hlen <= b.size() - hoff) put(48, XXH3_64bits(b.data() + hoff, static_cast<std::size_t>(hlen)));
  put(56, XXH3_64bits(b.data(), 56));
  return b;
}

/// The input with every checksum recomputed, the array table's included, so that mutations of
/// array bytes (a model's packed object tree, its array pool) reach the object decoder and the
/// runtime builders instead of stopping at a checksum.
inline std::vector<std::byte> resealed_arrays(std::span<const std::byte> in) {
  std::vector<std::byte> b = resealed(in);
  auto f = vitrify::file::from_bytes(b, fuzz_open_options(), "fuzz");
  if (!f) return b;
  std::uint64_t hoff, hlen;
  std::memcpy(&hoff, b.data() + 24, 8);
  std::memcpy(&hlen, b.data() + 32, 8);
  char* header = reinterpret_cast<char*>(b.data() + hoff);  // the open checked it lies inside b
  std::string_view text(header, static_cast<std::size_t>(hlen));
  for (const auto& a : f->arrays()) {
    char was[17], now[17];
    std::snprintf(was, sizeof was, "%016llx", static_cast<unsigned long long>(a.xxh3));
    std::snprintf(now, sizeof now, "%016llx", static_cast<unsigned long long>(XXH3_64bits(b.data() + a.offset, a.stored_length)));
    if (auto pos = text.find(was); pos != std::string_view::npos) std::memcpy(header + pos, now, 16);
  }
  return resealed(b);
}

/// Target (a): the container reader, on the input as is and on the input with its checksums
/// recomputed.
inline int fuzz_reader(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  exercise_file(in);
  if (size >= vitrify::preamble_size) exercise_file(resealed(in));
  return 0;
}

/// Target (b): typed value decoding. Whatever parses must encode canonically and re-parse to
/// an equal value whose encoding is the same text.
inline int fuzz_value(const std::uint8_t* data, std::size_t size) {
  using namespace vitrify;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  value_limits lim;
  lim.max_depth = 64;
  auto v = parse_value(json, lim);
  if (!v) return 0;
  std::string j = to_json(*v);
  auto v2 = parse_value(j, lim);
  VITRIFY_FUZZ_CHECK(v2.ok(), "canonical text does not re-parse: " + j + (v2.ok() ? "" : " -> " + v2.err().what()));
  VITRIFY_FUZZ_CHECK(*v2 == *v, j);
  VITRIFY_FUZZ_CHECK(to_json(*v2) == j, j);
  return 0;
}

/// Reads small numbers and byte runs from the fuzz input; zeros once it is used up.
class input_reader {
 public:
  input_reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  std::uint8_t byte() { return pos_ < n_ ? d_[pos_++] : 0; }
  std::vector<std::byte> take(std::size_t n) {
    std::vector<std::byte> out(n);
    for (auto& b : out) b = std::byte{byte()};
    return out;
  }
  std::string_view rest() {
    std::string_view s(reinterpret_cast<const char*>(d_ + pos_), n_ - pos_);
    pos_ = n_;
    return s;
  }
  [[nodiscard]] bool empty() const { return pos_ >= n_; }

 private:
  const std::uint8_t* d_;
  std::size_t n_, pos_ = 0;
};

/// Target (c): round trip. Arrays and metadata derived from the input -> writer (in memory) ->
/// reader: equal bytes, equal metadata, and writing twice gives the same file.
inline int fuzz_roundtrip(const std::uint8_t* data, std::size_t size) {
  using namespace vitrify;
  struct arr {
    std::string name;
    dtype type;
    std::vector<std::uint64_t> shape;
    std::vector<std::byte> bytes;             // fixed-size payload
    std::vector<std::string> strings;         // for dtype::string
    array_codec how;
    value attrs;
  };
  input_reader in(data, size);
  const std::uint32_t alignment = 64u << (in.byte() % 7);  // 64..4096
  const std::size_t n_arrays = in.byte() % 6;
  std::vector<arr> arrays;
  for (std::size_t k = 0; k < n_arrays; ++k) {
    arr a;
    const std::uint8_t sel = in.byte();
    a.type = static_cast<dtype>(sel % dtype_count);
    a.how.codec = (sel & 0x10) ? codec::zstd : codec::raw;
    a.how.level = static_cast<int>(in.byte() % 25) - 5;  // -5..19 (negative: fast modes)
    if (sel & 0x20) {  // a name taken from the input: may be invalid, then the writer refuses it
      const std::size_t len = in.byte() % 12;
      auto b = in.take(len);
      a.name.assign(reinterpret_cast<const char*>(b.data()), b.size());
    } else {
      a.name = "a" + std::to_string(k);
    }
    if (sel & 0x40) {
      a.attrs = value::dict();
      a.attrs.dict_set(value::string("k"), value::integer(in.byte()));
    }
    const std::size_t rank = in.byte() % 4;
    std::uint64_t count = 1;
    for (std::size_t d = 0; d < rank; ++d) {
      a.shape.push_back(in.byte() % 6);
      count *= a.shape.back();
    }
    if (a.type == dtype::string) {
      for (std::uint64_t e = 0; e < count; ++e) {
        auto b = in.take(in.byte() % 8);
        a.strings.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
      }
    } else {
      a.bytes = in.take(static_cast<std::size_t>(count * dtype_size(a.type)));
      if (a.type == dtype::bool_)
        for (auto& b : a.bytes) b = std::byte{static_cast<unsigned char>(static_cast<unsigned char>(b) & 1)};
    }
    arrays.push_back(std::move(a));
  }
  // Metadata: the rest of the input as typed-value JSON when it parses, else a small dict.
  value meta;
  {
    std::string_view rest = in.rest();
    auto v = parse_value(rest);
    if (v) {
      meta = std::move(v).value();
    } else {
      meta = value::dict();
      meta.dict_set(value::string("n"), value::integer(static_cast<std::int64_t>(rest.size())));
      meta.dict_set(value::string("s"), value::string(std::string(rest.substr(0, 16))));  // maybe not UTF-8
    }
  }

  // Write; returns the image, or empty when the writer refused the input (its right).
  auto write = [&](bool* refused) -> std::vector<std::byte> {
    *refused = true;
    writer_options wo;
    wo.alignment = alignment;
    wo.durable = false;
    wo.compression_threads = 1;
    auto w = writer::create_in_memory(wo);
    VITRIFY_FUZZ_CHECK(w.ok());
    for (const auto& a : arrays) {
      result<void> r = a.type == dtype::string ? w->add_string_array(a.name, a.shape, std::span(a.strings), a.how, a.attrs)
                                               : w->add_array(a.name, a.type, a.shape, a.bytes, a.how, a.attrs);
      if (!r) return {};
    }
    w->set_metadata(meta);
    if (!w->commit()) return {};
    *refused = false;
    return w->take_bytes();
  };
  bool refused = false;
  std::vector<std::byte> img = write(&refused);
  if (refused) return 0;

  auto f = file::from_bytes(img);
  VITRIFY_FUZZ_CHECK(f.ok(), f.ok() ? "" : f.err().what());
  VITRIFY_FUZZ_CHECK(f->verify().ok(), f->verify().ok() ? "" : f->verify().err().what());
  VITRIFY_FUZZ_CHECK(f->alignment() == alignment);
  VITRIFY_FUZZ_CHECK(f->arrays().size() == arrays.size());
  VITRIFY_FUZZ_CHECK(f->metadata() == meta, to_json(f->metadata()) + " != " + to_json(meta));
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const arr& a = arrays[i];
    const array_info& ai = f->arrays()[i];
    VITRIFY_FUZZ_CHECK(ai.name == a.name && ai.type == a.type && ai.shape == a.shape && ai.codec == a.how.codec, a.name);
    VITRIFY_FUZZ_CHECK(ai.offset % alignment == 0, a.name);
    VITRIFY_FUZZ_CHECK(ai.attrs == a.attrs, a.name);
    if (a.type == dtype::string) {
      auto s = f->read_strings(i);
      VITRIFY_FUZZ_CHECK(s.ok() && *s == a.strings, a.name);
    } else {
      std::vector<std::byte> out(static_cast<std::size_t>(ai.decoded_length));
      VITRIFY_FUZZ_CHECK(out.size() == a.bytes.size(), a.name);
      VITRIFY_FUZZ_CHECK(f->read_into(i, out).ok(), a.name);
      VITRIFY_FUZZ_CHECK(out == a.bytes, a.name);
      if (a.how.codec == codec::raw) {
        auto v = f->view(i, true);
        VITRIFY_FUZZ_CHECK(v.ok() && std::equal(v->begin(), v->end(), a.bytes.begin(), a.bytes.end()), a.name);
      }
    }
  }
  // Deterministic output: the same calls give the same bytes.
  bool refused2 = false;
  VITRIFY_FUZZ_CHECK(write(&refused2) == img && !refused2);
  return 0;
}

inline void check_graph(const vitrify::pyobj::node* root);

/// Target (d): a model file -> object graph -> C++ estimator -> predictions. Whatever builds
/// must predict on any input of the right width without crashing; errors are fine.
inline void exercise_model(std::span<const std::byte> img) {
  using namespace vitrify;
  auto f = file::from_bytes(img, fuzz_open_options(), "fuzz");
  if (!f) return;
  {
    auto g = pyobj::decode_objects(*f);
    if (g) {
      (void)pyobj::referenced_names(*(*g)->root);
      check_graph((*g)->root);  // what the builders (C++ and Python) rely on
    }
  }
  runtime::load_options lo;
  lo.verify_arrays = false;  // reach the builders with arbitrary array bytes
  auto m = runtime::model::from_file(*f, lo);
  if (!m) return;
  const std::size_t cols = m->n_features() ? m->n_features() : 4;
  if (cols > 4096) return;
  std::vector<double> x(3 * cols);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 7 == 3) ? std::nan("") : static_cast<double>(i % 5) - 2.0;
  runtime::matrix_view v(x.data(), 3, cols);
  std::vector<float> xf(x.begin(), x.end());
  runtime::matrix_view vf(xf.data(), 3, cols);
  for (auto meth : {runtime::method::predict, runtime::method::predict_proba, runtime::method::decision_function,
                    runtime::method::transform, runtime::method::score_samples}) {
    if (!m->supports(meth)) continue;
    (void)m->run(meth, v);
    (void)m->run(meth, vf);
    std::vector<double> out(m->output_width(meth));
    (void)m->run_row(meth, std::span<const double>(x.data(), cols), out);
  }
}

inline int fuzz_model(const std::uint8_t* data, std::size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  exercise_model(in);
  if (size >= vitrify::preamble_size) exercise_model(resealed_arrays(in));
  return 0;
}

/// Target (e): the non-executing pickle reader and the scanner (format detection, joblib
/// codecs, zip/tar/npy containers). Never a crash; a clean verdict only for complete reads;
/// every array in a graph agrees with its dtype and shape.
inline void check_graph(const vitrify::pyobj::node* root) {
  using vitrify::pyobj::node;
  std::vector<const node*> stack{root};
  std::vector<const node*> seen;
  std::size_t visited = 0;
  while (!stack.empty() && ++visited < 100000) {
    const node* n = stack.back();
    stack.pop_back();
    if (!n) continue;
    if ((n->k == node::kind::array || n->k == node::kind::scalar) && n->arr) {
      const auto& a = *n->arr;
      if (!a.data.empty()) VITRIFY_FUZZ_CHECK(a.data.size() == a.count() * a.itemsize, a.dtype);
      // The Python builder makes one numpy view per region and slices every array out of it.
      if (!a.region.empty())
        VITRIFY_FUZZ_CHECK(a.data.data() >= a.region.data() && a.data.data() + a.data.size() <= a.region.data() + a.region.size(),
                           a.dtype);
      if (!a.strings.empty()) VITRIFY_FUZZ_CHECK(a.strings.size() == a.count(), a.dtype);
      if (!a.items.empty()) VITRIFY_FUZZ_CHECK(a.items.size() == a.count(), a.dtype);
      for (auto x : a.items) stack.push_back(x);
    }
    for (auto x : n->items) stack.push_back(x);
    for (auto& [k, v] : n->entries) {
      stack.push_back(k);
      stack.push_back(v);
    }
    if (n->obj) {
      for (auto x : n->obj->args) stack.push_back(x);
      stack.push_back(n->obj->kwargs);
      stack.push_back(n->obj->state);
    }
  }
}

inline int fuzz_pickle(const std::uint8_t* data, std::size_t size) {
  using namespace vitrify;
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  legacy::read_options o;
  o.max_nodes = 1u << 20;
  o.max_stack = 1u << 16;
  o.max_memo = 1u << 16;
  o.max_bytes = 16u << 20;
  o.max_nested_streams = 64;
  auto r = legacy::read_pickle_bytes(in, o);
  if (r) {
    VITRIFY_FUZZ_CHECK(!r->complete || (r->graph && r->graph->root && r->problems.empty()));
    if (r->graph && r->graph->root) {
      (void)pyobj::referenced_names(*r->graph->root);
      check_graph(r->graph->root);
    }
  }
  legacy::scan_options so;
  so.read = o;
  auto s = legacy::scan_bytes(in, so, "fuzz");
  VITRIFY_FUZZ_CHECK(s.result != legacy::verdict::clean || (s.complete && s.problems.empty() && s.dangerous.empty() && s.unknown.empty()));
  (void)legacy::detect_format(in);
  return 0;
}

}  // namespace vitrify_fuzz
