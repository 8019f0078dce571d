// test_roundtrip.cpp - writer -> reader round trips: every dtype, codec, shape, alignment,
// names, large arrays, determinism, header sections.
#include <gtest/gtest.h>
#include <zstd.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace vitrify;
using vt::bytes;

namespace {

constexpr std::array<dtype, 15> fixed_dtypes = {
    dtype::bool_,   dtype::int8,    dtype::int16,    dtype::int32,   dtype::int64,
    dtype::uint8,   dtype::uint16,  dtype::uint32,   dtype::uint64,  dtype::float16,
    dtype::bfloat16, dtype::float32, dtype::float64, dtype::complex64, dtype::complex128};

writer_options fast(std::uint32_t alignment = 64) {
  writer_options o;
  o.alignment = alignment;
  o.durable = false;
  return o;
}

/// Valid payload bytes for a fixed-size dtype (bool: only 0/1).
bytes payload(dtype t, std::uint64_t count, std::uint64_t seed = 7) {
  auto b = vt::pattern_bytes(static_cast<std::size_t>(count * dtype_size(t)), seed);
  if (t == dtype::bool_)
    for (auto& x : b) x = static_cast<std::byte>(static_cast<unsigned>(x) & 1u);
  return b;
}

std::uint64_t product(std::span<const std::uint64_t> shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

/// Commit an in-memory writer and reopen its bytes.
file reopen(writer& w, bytes* image_out = nullptr) {
  auto c = w.commit();
  EXPECT_TRUE(c.ok()) << c.err().what();
  auto img = w.take_bytes();
  auto f = file::from_bytes(img);
  EXPECT_TRUE(f.ok()) << f.err().what();
  if (image_out) *image_out = img;
  return std::move(f).value();
}

void check_array_bytes(const file& f, std::string_view name, dtype t, std::span<const std::uint64_t> shape,
                       const bytes& data, codec c) {
  SCOPED_TRACE(std::string(name));
  auto idx = f.find(name);
  ASSERT_OK(idx);
  const auto& a = f.arrays()[*idx];
  EXPECT_EQ(a.name, name);
  EXPECT_EQ(a.type, t);
  EXPECT_EQ(std::vector<std::uint64_t>(shape.begin(), shape.end()), a.shape);
  EXPECT_EQ(a.count, product(shape));
  EXPECT_EQ(a.decoded_length, data.size());
  EXPECT_EQ(a.codec, c);
  EXPECT_EQ(a.offset % f.alignment(), 0u);
  EXPECT_EQ(a.xxh3, vt::xxh3(f.stored_bytes(*idx)));
  EXPECT_EQ(f.stored_bytes(*idx).size(), a.stored_length);
  EXPECT_OK(f.verify_array(*idx));
  bytes out(data.size());
  ASSERT_OK(f.read_into(*idx, out));
  EXPECT_TRUE(out == data);
  if (c == codec::raw) {
    EXPECT_EQ(a.stored_length, a.decoded_length);
    auto v = f.view(*idx, true);
    ASSERT_OK(v);
    ASSERT_EQ(v->size(), data.size());
    EXPECT_TRUE(std::equal(v->begin(), v->end(), data.begin()));
  } else {
    EXPECT_CODE(f.view(*idx), errc::not_raw);
  }
}

}  // namespace

TEST(Dtype, NamesSizesAndCodecs) {
  const std::pair<dtype, std::pair<const char*, std::size_t>> table[] = {
      {dtype::bool_, {"bool", 1}},         {dtype::int8, {"int8", 1}},
      {dtype::int16, {"int16", 2}},        {dtype::int32, {"int32", 4}},
      {dtype::int64, {"int64", 8}},        {dtype::uint8, {"uint8", 1}},
      {dtype::uint16, {"uint16", 2}},      {dtype::uint32, {"uint32", 4}},
      {dtype::uint64, {"uint64", 8}},      {dtype::float16, {"float16", 2}},
      {dtype::bfloat16, {"bfloat16", 2}},  {dtype::float32, {"float32", 4}},
      {dtype::float64, {"float64", 8}},    {dtype::complex64, {"complex64", 8}},
      {dtype::complex128, {"complex128", 16}}, {dtype::string, {"string", 0}},
      {dtype::float8_e4m3fn, {"float8_e4m3fn", 1}}, {dtype::float8_e5m2, {"float8_e5m2", 1}},
  };
  static_assert(std::size(table) == dtype_count);
  for (const auto& [t, ns] : table) {
    EXPECT_EQ(dtype_name(t), ns.first);
    EXPECT_EQ(dtype_size(t), ns.second) << ns.first;
    EXPECT_EQ(dtype_from_name(ns.first), t);
  }
  EXPECT_EQ(dtype_from_name("float128"), std::nullopt);
  EXPECT_EQ(dtype_from_name(""), std::nullopt);
  EXPECT_EQ(dtype_from_name("Float32"), std::nullopt);
  EXPECT_EQ(codec_name(codec::raw), "raw");
  EXPECT_EQ(codec_name(codec::zstd), "zstd");
  EXPECT_EQ(codec_from_name("raw"), codec::raw);
  EXPECT_EQ(codec_from_name("zstd"), codec::zstd);
  EXPECT_EQ(codec_from_name("gzip"), std::nullopt);
  EXPECT_EQ(errc_name(errc::checksum_mismatch), "checksum_mismatch");
  EXPECT_EQ(static_cast<int>(errc::not_raw), 22);
  error e{errc::checksum_mismatch, "boom"};
  EXPECT_EQ(e.what(), "vitrify error 7 (checksum_mismatch): boom");
  EXPECT_NE(std::string(library_version()), "");
}

TEST(RoundTrip, EveryDtypeRawAndZstdInMemory) {
  for (codec c : {codec::raw, codec::zstd}) {
    auto w = writer::create_in_memory(fast());
    ASSERT_OK(w);
    const std::uint64_t shape[] = {3, 5};
    for (dtype t : fixed_dtypes) {
      auto d = payload(t, 15, static_cast<std::uint64_t>(t) + 1);
      ASSERT_OK(w->add_array(std::string(dtype_name(t)), t, shape, d, {c, 3}));
    }
    EXPECT_EQ(w->array_count(), fixed_dtypes.size());
    auto f = reopen(*w);
    EXPECT_EQ(f.version_major(), format_major);
    EXPECT_EQ(f.version_minor(), format_minor);
    ASSERT_EQ(f.arrays().size(), fixed_dtypes.size());
    for (std::size_t i = 0; i < fixed_dtypes.size(); ++i) {
      dtype t = fixed_dtypes[i];
      EXPECT_EQ(f.arrays()[i].name, dtype_name(t));  // table order is insertion order
      check_array_bytes(f, dtype_name(t), t, shape, payload(t, 15, static_cast<std::uint64_t>(t) + 1), c);
    }
    EXPECT_OK(f.verify());
  }
}

TEST(RoundTrip, EveryDtypeThroughAFile) {
  vt::temp_dir dir;
  auto path = dir / "all.vit";
  {
    auto w = writer::create(path, fast());
    ASSERT_OK(w);
    const std::uint64_t shape[] = {7};
    for (dtype t : fixed_dtypes) {
      ASSERT_OK(w->add_array(std::string(dtype_name(t)) + "_raw", t, shape, payload(t, 7)));
      ASSERT_OK(w->add_array(std::string(dtype_name(t)) + "_zstd", t, shape, payload(t, 7), {codec::zstd, 5}));
    }
    std::vector<std::string> strs = {"alpha", "", "γράμμα", "🚀 rocket", std::string("x\ny\0z", 5)};
    const std::uint64_t sshape[] = {5};
    ASSERT_OK(w->add_string_array("strings_raw", sshape, strs));
    ASSERT_OK(w->add_string_array("strings_zstd", sshape, strs, {codec::zstd, 1}));
    ASSERT_OK(w->commit());
  }
  auto f = file::open(path);
  ASSERT_OK(f);
  EXPECT_EQ(f->size(), std::filesystem::file_size(path));
  EXPECT_EQ(f->content_length(), f->size());
  EXPECT_TRUE(f->trailers().empty());
  const std::uint64_t shape[] = {7};
  for (dtype t : fixed_dtypes) {
    check_array_bytes(*f, std::string(dtype_name(t)) + "_raw", t, shape, payload(t, 7), codec::raw);
    check_array_bytes(*f, std::string(dtype_name(t)) + "_zstd", t, shape, payload(t, 7), codec::zstd);
    auto z = f->find(std::string(dtype_name(t)) + "_zstd");
    ASSERT_OK(z);
    EXPECT_EQ(f->arrays()[*z].level, 5);
  }
  const std::vector<std::string> strs_expected = {"alpha", "", "γράμμα", "🚀 rocket", std::string("x\ny\0z", 5)};
  for (const char* n : {"strings_raw", "strings_zstd"}) {
    auto i = f->find(n);
    ASSERT_OK(i);
    EXPECT_EQ(f->arrays()[*i].type, dtype::string);
    auto s = f->read_strings(*i);
    ASSERT_OK(s);
    EXPECT_EQ(*s, strs_expected);
  }
  EXPECT_OK(f->verify());
  EXPECT_CODE(f->find("nope"), errc::not_found);
}

TEST(RoundTrip, StringArraysLayoutAndOffsetsApi) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  std::string text = "héllo" "world" "";
  std::vector<std::uint64_t> offsets = {0, 6, 11, 11};
  const std::uint64_t shape[] = {3};
  ASSERT_OK(w->add_string_array("s", shape, offsets, vt::as_bytes(std::vector<char>(text.begin(), text.end()))));
  const std::uint64_t shape2[] = {2, 2};
  std::vector<std::string> grid = {"a", "bb", "ccc", "dddd"};
  ASSERT_OK(w->add_string_array("grid", shape2, grid, {codec::zstd, 3}));
  const std::uint64_t scalar[] = {0};
  std::vector<std::string> one = {"only"};
  ASSERT_OK(w->add_string_array("scalar", std::span<const std::uint64_t>(scalar, 0), one));
  std::vector<std::string> none;
  ASSERT_OK(w->add_string_array("empty", scalar, none));
  auto f = reopen(*w);
  auto i = f.find("s");
  ASSERT_OK(i);
  const auto& a = f.arrays()[*i];
  EXPECT_EQ(a.count, 3u);
  EXPECT_EQ(a.decoded_length, 8 * 4 + text.size());
  auto v = f.view(*i);
  ASSERT_OK(v);
  ASSERT_EQ(v->size(), a.decoded_length);
  std::uint64_t stored_offsets[4];
  std::memcpy(stored_offsets, v->data(), sizeof stored_offsets);
  EXPECT_EQ(std::vector<std::uint64_t>(stored_offsets, stored_offsets + 4), offsets);
  EXPECT_EQ(vt::to_string(v->subspan(32)), text);
  EXPECT_EQ(*f.read_strings(*i), (std::vector<std::string>{"héllo", "world", ""}));
  EXPECT_EQ(*f.read_strings(*f.find("grid")), grid);
  auto si = f.find("scalar");
  ASSERT_OK(si);
  EXPECT_TRUE(f.arrays()[*si].shape.empty());
  EXPECT_EQ(f.arrays()[*si].count, 1u);
  EXPECT_EQ(*f.read_strings(*si), one);
  auto ei = f.find("empty");
  ASSERT_OK(ei);
  EXPECT_EQ(f.arrays()[*ei].decoded_length, 8u);
  EXPECT_TRUE(f.read_strings(*ei)->empty());
  EXPECT_OK(f.verify());
}

TEST(RoundTrip, ZeroDimensionalAndEmptyArrays) {
  for (codec c : {codec::raw, codec::zstd}) {
    SCOPED_TRACE(std::string(codec_name(c)));
    auto w = writer::create_in_memory(fast());
    ASSERT_OK(w);
    double pi = 3.141592653589793;
    bytes scalar(8);
    std::memcpy(scalar.data(), &pi, 8);
    ASSERT_OK(w->add_array("scalar", dtype::float64, {}, scalar, {c, 3}));
    const std::uint64_t s0[] = {0};
    const std::uint64_t s30[] = {3, 0};
    const std::uint64_t s0x5[] = {0, 5, 1000000};
    ASSERT_OK(w->add_array("empty0", dtype::float32, s0, {}, {c, 3}));
    ASSERT_OK(w->add_array("empty30", dtype::int64, s30, {}, {c, 3}));
    ASSERT_OK(w->add_array("empty0x5", dtype::complex128, s0x5, {}, {c, 3}));
    ASSERT_OK(w->add_array("after", dtype::uint8, s0, {}, {c, 3}));
    auto f = reopen(*w);
    check_array_bytes(f, "scalar", dtype::float64, {}, scalar, c);
    EXPECT_EQ(f.arrays()[0].count, 1u);
    check_array_bytes(f, "empty0", dtype::float32, s0, {}, c);
    check_array_bytes(f, "empty30", dtype::int64, s30, {}, c);
    check_array_bytes(f, "empty0x5", dtype::complex128, s0x5, {}, c);
    for (const auto& a : f.arrays()) {
      if (a.name != "scalar") {
        EXPECT_EQ(a.count, 0u) << a.name;
      }
      if (c == codec::raw && a.name != "scalar") {
        EXPECT_EQ(a.stored_length, 0u) << a.name;
      }
    }
    EXPECT_OK(f.verify());
  }
}

TEST(RoundTrip, UnicodeAndEdgeNames) {
  const std::vector<std::string> names = {
      "权重/層.0", "émoji 🚀", "a b", "\"quoted\"", "back\\slash", "$dollar", "tab-free_ünïcödé",
      std::string(4096, 'n'), "x"};
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  bytes one = {std::byte{1}};
  const std::uint64_t shape[] = {1};
  for (const auto& n : names) ASSERT_OK(w->add_array(n, dtype::uint8, shape, one));
  auto f = reopen(*w);
  ASSERT_EQ(f.arrays().size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(f.arrays()[i].name, names[i]);
    auto idx = f.find(names[i]);
    ASSERT_OK(idx);
    EXPECT_EQ(*idx, i);
  }
}

TEST(RoundTrip, ZstdLevels) {
  bytes data(1 << 20);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>((i / 64) % 251);
  for (int level : {-5, -1, 1, 3, 9, 19, 22}) {
    SCOPED_TRACE(level);
    auto w = writer::create_in_memory(fast());
    ASSERT_OK(w);
    const std::uint64_t shape[] = {data.size() / 4};
    ASSERT_OK(w->add_array("w", dtype::float32, shape, data, {codec::zstd, level}));
    auto f = reopen(*w);
    const auto& a = f.arrays()[0];
    EXPECT_EQ(a.codec, codec::zstd);
    EXPECT_EQ(a.level, level);
    EXPECT_LT(a.stored_length, a.decoded_length / 4);  // it really compressed
    // The stored bytes are real zstd frames decoding to the data.
    auto stored = f.stored_bytes(0);
    bytes back(data.size());
    auto n = ZSTD_decompress(back.data(), back.size(), stored.data(), stored.size());
    ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
    EXPECT_EQ(n, data.size());
    EXPECT_TRUE(back == data);
    check_array_bytes(f, "w", dtype::float32, shape, data, codec::zstd);
  }
}

TEST(RoundTrip, Large100MiBRawAndZstdFile) {
  vt::temp_dir dir;
  auto path = dir / "large.vit";
  const std::size_t n = 100u << 20;
  bytes big(n);
  for (std::size_t i = 0; i < n; i += 4) {
    auto v = static_cast<float>(i % 1000) * 0.5f;
    std::memcpy(big.data() + i, &v, 4);
  }
  const std::uint64_t shape[] = {n / 4 / 1024, 1024};
  {
    auto w = writer::create(path, fast(4096));
    ASSERT_OK(w);
    ASSERT_OK(w->add_array("big_raw", dtype::float32, shape, big));
    ASSERT_OK(w->add_array("big_zstd", dtype::float32, shape, big, {codec::zstd, 1}));
    ASSERT_OK(w->commit());
  }
  auto f = file::open(path);
  ASSERT_OK(f);
  EXPECT_GT(f->size(), n);
  EXPECT_OK(f->verify());
  auto v = f->view(0, true);
  ASSERT_OK(v);
  ASSERT_EQ(v->size(), n);
  EXPECT_EQ(std::memcmp(v->data(), big.data(), n), 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v->data()) % 4096, 0u);
  bytes out(n);
  ASSERT_OK(f->read_into(1, out));
  EXPECT_TRUE(out == big);
  EXPECT_LT(f->arrays()[1].stored_length, n / 10);
  // A wrongly sized output buffer is the caller's mistake.
  bytes small(n - 1);
  EXPECT_CODE(f->read_into(1, small), errc::invalid_argument);
}

TEST(RoundTrip, AlignmentOfOffsetsAndViews) {
  vt::temp_dir dir;
  for (std::uint32_t al : {64u, 128u, 256u, 512u, 1024u, 2048u, 4096u}) {
    SCOPED_TRACE(al);
    auto make = [&](writer& w) {
      const std::uint64_t sizes[] = {1, 3, 100, 0, 4097, 64, 7};
      int k = 0;
      for (auto sz : sizes) {
        const std::uint64_t shape[] = {sz};
        auto d = vt::pattern_bytes(sz, k + 1);
        array_codec how{k == 2 ? codec::zstd : codec::raw, 3};
        ASSERT_OK(w.add_array("a" + std::to_string(k++), dtype::uint8, shape, d, how));
      }
      ASSERT_OK(w.commit());
    };
    auto path = dir / ("al" + std::to_string(al) + ".vit");
    {
      auto w = writer::create(path, fast(al));
      ASSERT_OK(w);
      make(*w);
    }
    auto wm = writer::create_in_memory(fast(al));
    ASSERT_OK(wm);
    make(*wm);
    auto img = wm->take_bytes();
    EXPECT_TRUE(img == vt::read_bytes(path)) << "file and memory writers differ";

    auto by_file = file::open(path);
    ASSERT_OK(by_file);
    auto by_mem = file::from_bytes(img);
    ASSERT_OK(by_mem);
    for (const file* f : {&*by_file, &*by_mem}) {
      EXPECT_EQ(f->alignment(), al);
      std::uint64_t prev_end = 64;
      for (std::size_t i = 0; i < f->arrays().size(); ++i) {
        const auto& a = f->arrays()[i];
        EXPECT_EQ(a.offset % al, 0u) << a.name;
        EXPECT_EQ(a.offset, vt::align_up(prev_end, al)) << a.name;
        // Padding before the array is zero.
        for (auto p = prev_end; p < a.offset; ++p) ASSERT_EQ(f->bytes()[p], std::byte{0}) << a.name << " @" << p;
        prev_end = a.offset + a.stored_length;
        if (a.codec == codec::raw && a.stored_length > 0) {
          auto v = f->view(i);
          ASSERT_OK(v);
          EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v->data()) % al, 0u) << a.name;
        }
      }
      // Header right after the arrays, 8-aligned.
      auto hdr_off = vt::get_u64(f->bytes(), 24);
      EXPECT_EQ(hdr_off, vt::align_up(prev_end, 8));
      EXPECT_EQ(vt::get_u64(f->bytes(), 32), f->header_json().size());
      EXPECT_EQ(vt::get_u64(f->bytes(), 40), f->content_length());
      EXPECT_EQ(f->content_length(), f->size());
      EXPECT_EQ(f->header_json(), vt::header_of(f->bytes()));
      EXPECT_OK(f->verify());
    }
  }
}

TEST(RoundTrip, BadWriterAlignmentIsInvalidArgument) {
  vt::temp_dir dir;
  for (std::uint32_t al : {0u, 1u, 8u, 32u, 63u, 96u, 8192u, 65536u}) {
    SCOPED_TRACE(al);
    EXPECT_CODE(writer::create_in_memory(fast(al)), errc::invalid_argument);
    EXPECT_CODE(writer::create(dir / "x.vit", fast(al)), errc::invalid_argument);
  }
  EXPECT_TRUE(dir.entries().empty());
}

namespace {
bytes build_rich(writer& w) {
  const std::uint64_t shape[] = {4, 8};
  EXPECT_OK(w.add_array("w", dtype::float32, shape, vt::pattern_bytes(128, 3), {codec::zstd, 7}));
  EXPECT_OK(w.add_array("b", dtype::float16, shape, vt::pattern_bytes(64, 4)));
  std::vector<std::string> s = {"x", "yy"};
  const std::uint64_t sshape[] = {2};
  EXPECT_OK(w.add_string_array("labels", sshape, s));
  value md = value::dict();
  md.dict_set(value::string("lr"), value::floating(0.1));
  md.dict_set(value::string("epochs"), value::integer(10));
  md.dict_set(value::integer(3), value::tuple({value::string("a"), value::null()}));
  md.dict_set(value::string("weights"), value::array_ref("w"));
  w.set_metadata(md);
  w.set_provenance(value::list({value::string("p")}));
  EXPECT_OK(w.commit());
  return w.take_bytes();
}
}  // namespace

TEST(RoundTrip, DeterministicOutput) {
  auto w1 = writer::create_in_memory(fast());
  auto w2 = writer::create_in_memory(fast());
  ASSERT_OK(w1);
  ASSERT_OK(w2);
  auto a = build_rich(*w1);
  auto b = build_rich(*w2);
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b);
  vt::temp_dir dir;
  for (const char* n : {"one.vit", "two.vit"}) {
    auto w = writer::create(dir / n, fast());
    ASSERT_OK(w);
    const std::uint64_t shape[] = {4, 8};
    ASSERT_OK(w->add_array("w", dtype::float32, shape, vt::pattern_bytes(128, 3), {codec::zstd, 7}));
    ASSERT_OK(w->add_array("b", dtype::float16, shape, vt::pattern_bytes(64, 4)));
    std::vector<std::string> s = {"x", "yy"};
    const std::uint64_t sshape[] = {2};
    ASSERT_OK(w->add_string_array("labels", sshape, s));
    value md = value::dict();
    md.dict_set(value::string("lr"), value::floating(0.1));
    md.dict_set(value::string("epochs"), value::integer(10));
    md.dict_set(value::integer(3), value::tuple({value::string("a"), value::null()}));
    md.dict_set(value::string("weights"), value::array_ref("w"));
    w->set_metadata(md);
    w->set_provenance(value::list({value::string("p")}));
    ASSERT_OK(w->commit());
  }
  auto f1 = vt::read_bytes(dir / "one.vit");
  EXPECT_TRUE(f1 == vt::read_bytes(dir / "two.vit"));
  EXPECT_TRUE(f1 == a) << "file writer and in-memory writer differ";
}

TEST(RoundTrip, HeaderSectionsAndAttrs) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  value attrs = value::dict();
  attrs.dict_set(value::string("numpy"), value::string("<f4"));
  attrs.dict_set(value::string("scale"), value::floating(-0.0));
  const std::uint64_t shape[] = {2};
  ASSERT_OK(w->add_array("w", dtype::float32, shape, vt::pattern_bytes(8), {}, attrs));
  ASSERT_OK(w->add_array("plain", dtype::uint8, shape, vt::pattern_bytes(2)));

  value md = value::dict();
  md.dict_set(value::string("name"), value::string("model ü"));
  md.dict_set(value::string("nan"), value::floating(std::numeric_limits<double>::quiet_NaN()));
  md.dict_set(value::string("big"), value::big_integer("-123456789012345678901234567890"));
  md.dict_set(value::string("blob"), value::bytes(std::string("\0\xff\x10", 3)));
  md.dict_set(value::string("w"), value::array_ref("w"));
  md.dict_set(value::string("obj"),
              value::object("sklearn.linear_model.LogisticRegression", 2, value::list({value::integer(1)})));
  md.dict_set(value::string("shared"), value::list({value::shared(0, value::string("s")), value::ref(0)}));
  value env = value::dict();
  env.dict_set(value::string("python"), value::string("3.11"));
  value prov = value::dict();
  prov.dict_set(value::string("git"), value::string("abc"));
  value content = value::object("tree", 1, value::array_ref("plain"));
  w->set_metadata(md);
  w->set_environment(env);
  w->set_provenance(prov);
  w->set_content(content);
  auto f = reopen(*w);
  EXPECT_EQ(vitrify::to_json(f.metadata()), vitrify::to_json(md));
  EXPECT_EQ(f.environment(), env);
  EXPECT_EQ(f.provenance(), prov);
  EXPECT_EQ(f.content(), content);
  EXPECT_EQ(f.arrays()[0].attrs, attrs);
  EXPECT_TRUE(f.arrays()[1].attrs.is(value::kind::null) ||
              (f.arrays()[1].attrs.is(value::kind::dict) && f.arrays()[1].attrs.dict_size() == 0));
  EXPECT_TRUE(std::isnan(f.metadata().get("nan")->as_double()));
  EXPECT_EQ(f.metadata().get("blob")->as_string(), std::string("\0\xff\x10", 3));
  // The header is valid JSON text containing our tags.
  auto h = std::string(f.header_json());
  EXPECT_NE(h.find("\"format\":\"vitrify\""), std::string::npos) << h;
  EXPECT_NE(h.find("$array"), std::string::npos);

  // Absent sections are null.
  auto w2 = writer::create_in_memory(fast());
  ASSERT_OK(w2);
  auto f2 = reopen(*w2);
  EXPECT_TRUE(f2.metadata().is(value::kind::null));
  EXPECT_TRUE(f2.environment().is(value::kind::null));
  EXPECT_TRUE(f2.provenance().is(value::kind::null));
  EXPECT_TRUE(f2.content().is(value::kind::null));
  EXPECT_TRUE(f2.arrays().empty());
  EXPECT_EQ(vt::get_u64(f2.bytes(), 24), 64u);  // header right after the preamble
  EXPECT_OK(f2.verify());
}

TEST(RoundTrip, CopyOnWriteMapping) {
  vt::temp_dir dir;
  auto path = dir / "cow.vit";
  vt::write_simple_file(path, "a", vt::pattern_bytes(100));
  auto before = vt::read_bytes(path);
  open_options o;
  o.copy_on_write = true;
  auto f = file::open(path, o);
  ASSERT_OK(f);
  auto v = f->view(0);
  ASSERT_OK(v);
  auto* p = const_cast<std::byte*>(v->data());
  p[0] = ~p[0];  // allowed with copy_on_write; must not reach the file
  EXPECT_TRUE(vt::read_bytes(path) == before);
  // Copies share the mapping.
  file g = *f;
  EXPECT_EQ(g.view(0)->data(), v->data());
}

TEST(WriterApi, RejectsMisuse) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {4};
  auto d = vt::pattern_bytes(16);
  EXPECT_CODE(w->add_array("short", dtype::float32, shape, std::span(d).first(15)), errc::invalid_argument);
  EXPECT_CODE(w->add_array("long", dtype::float32, shape, vt::pattern_bytes(17)), errc::invalid_argument);
  EXPECT_CODE(w->add_array("str", dtype::string, shape, d), errc::invalid_argument);
  ASSERT_OK(w->add_array("ok", dtype::float32, shape, d));
  EXPECT_CODE(w->add_array("ok", dtype::float32, shape, d), errc::duplicate_name);
  EXPECT_CODE(w->add_array("", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("ctl\x01", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("nl\n", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("del\x7f", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("bad\xff utf8", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("overlong\xc0\xaf", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("surrogate\xed\xa0\x80", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array("cut\xe2\x82", dtype::float32, shape, d), errc::bad_name);
  EXPECT_CODE(w->add_array(std::string(4097, 'n'), dtype::float32, shape, d), errc::bad_name);
  const std::uint64_t huge[] = {1ull << 62, 8};
  EXPECT_FALSE(w->add_array("overflow", dtype::float32, huge, d).ok());
  EXPECT_CODE(w->add_array("codec9", dtype::float32, shape, d, {static_cast<codec>(9), 0}), errc::unknown_codec);
  EXPECT_CODE(w->add_array("dtype99", static_cast<dtype>(99), shape, d), errc::invalid_argument);
  // A failed add leaves nothing behind.
  EXPECT_EQ(w->array_count(), 1u);
  auto f = reopen(*w);
  EXPECT_EQ(f.arrays().size(), 1u);
  EXPECT_OK(f.verify());
}

TEST(WriterApi, RejectsBadStringArrays) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {2};
  auto text = vt::to_bytes("abcd");
  auto bad = [&](std::vector<std::uint64_t> offs, const bytes& t, const char* why) {
    auto r = w->add_string_array(why, shape, offs, t);
    EXPECT_FALSE(r.ok()) << why;
    if (!r.ok()) {
      EXPECT_TRUE(r.code() == errc::bad_string_array || r.code() == errc::invalid_argument) << r.err().what();
    }
  };
  bad({1, 2, 4}, text, "first_not_zero");
  bad({0, 3, 2}, text, "decreasing");
  bad({0, 2, 3}, text, "last_short");
  bad({0, 2, 5}, text, "last_past_end");
  bad({0, 4}, text, "too_few_offsets");
  bad({0, 1, 2, 4}, text, "too_many_offsets");
  bad({0, 1, 2}, vt::to_bytes("a\xff"), "invalid_utf8");
  bad({0, 2, 3}, vt::to_bytes("a\xc3\xa9"), "split_inside_a_character");
  std::vector<std::string> one = {"x"};
  EXPECT_FALSE(w->add_string_array("count_mismatch", shape, one).ok());
  EXPECT_EQ(w->array_count(), 0u);
}

TEST(WriterApi, ValidOffsetsSplitAtCharacterBoundary) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {2};
  std::vector<std::uint64_t> offs = {0, 1, 3};
  ASSERT_OK(w->add_string_array("s", shape, offs, vt::to_bytes("a\xc3\xa9")));
  auto f = reopen(*w);
  EXPECT_EQ(*f.read_strings(0), (std::vector<std::string>{"a", "\xc3\xa9"}));
}

TEST(WriterApi, BoolValuesOtherThanZeroOrOneNeverMakeAnUnverifiableFile) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {3};
  bytes d = {std::byte{0}, std::byte{1}, std::byte{2}};
  auto r = w->add_array("flags", dtype::bool_, shape, d);
  if (!r.ok()) {
    EXPECT_EQ(r.code(), errc::invalid_argument) << r.err().what();
    return;
  }
  auto f = reopen(*w);
  auto v = f.verify();
  EXPECT_TRUE(v.ok()) << "the writer accepted a bool 2 and wrote a file that fails verify(): " << v.err().what();
}

TEST(WriterApi, DanglingArrayReferenceFailsAtCommit) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {1};
  ASSERT_OK(w->add_array("real", dtype::uint8, shape, vt::pattern_bytes(1)));
  value md = value::dict();
  md.dict_set(value::string("x"), value::list({value::array_ref("real"), value::array_ref("ghost")}));
  w->set_metadata(md);
  // FORMAT-draft: a dangling $array is bad_value; for the writer it is the caller's mistake, so
  // invalid_argument is accepted as well.
  auto dangling = [](result<void> r) {
    EXPECT_FALSE(r.ok());
    if (!r.ok()) {
      EXPECT_TRUE(r.code() == errc::bad_value || r.code() == errc::invalid_argument) << r.err().what();
    }
  };
  dangling(w->commit());

  auto w2 = writer::create_in_memory(fast());
  ASSERT_OK(w2);
  ASSERT_OK(w2->add_array("real", dtype::uint8, shape, vt::pattern_bytes(1)));
  w2->set_content(value::object("t", 1, value::array_ref("ghost")));
  dangling(w2->commit());

  auto w3 = writer::create_in_memory(fast());
  ASSERT_OK(w3);
  value attrs = value::dict();
  attrs.dict_set(value::string("see"), value::array_ref("ghost"));
  auto added = w3->add_array("real", dtype::uint8, shape, vt::pattern_bytes(1), {}, attrs);
  if (added.ok()) {
    dangling(w3->commit());
  } else {
    EXPECT_TRUE(added.code() == errc::bad_value || added.code() == errc::invalid_argument) << added.err().what();
  }
}

// Whatever the writer commits, its reader must open: values the reader would reject must be
// refused by commit() (bad_value / invalid_argument / limit_exceeded), never written.
TEST(WriterApi, InvalidValuesNeverMakeAnUnreadableFile) {
  value deep = value::integer(1);
  for (int i = 0; i < 300; ++i) deep = value::list({deep});
  value dup_keys = value::dict();
  dup_keys.items().push_back(value::string("k"));
  dup_keys.items().push_back(value::integer(1));
  dup_keys.items().push_back(value::string("k"));
  dup_keys.items().push_back(value::integer(2));
  const std::pair<const char*, value> cases[] = {
      {"dangling $ref", value::list({value::ref(5)})},
      {"duplicate $shared id", value::list({value::shared(1, value::integer(1)), value::shared(1, value::integer(2))})},
      {"negative $shared id", value::shared(-1, value::null())},
      {"$int not decimal", value::big_integer("12abc")},
      {"$int empty", value::big_integer("")},
      {"$object type with a space", value::object("bad type!", 1, value::null())},
      {"$object empty type", value::object("", 1, value::null())},
      {"nesting deeper than the reader's limit", deep},
      {"dict with a duplicate key", dup_keys},
      {"string not UTF-8", value::string("\xff")},
  };
  for (const auto& [what, md] : cases) {
    SCOPED_TRACE(what);
    auto w = writer::create_in_memory(fast());
    ASSERT_OK(w);
    w->set_metadata(md);
    auto c = w->commit();
    if (!c.ok()) {
      EXPECT_TRUE(c.code() == errc::bad_value || c.code() == errc::invalid_argument ||
                  c.code() == errc::limit_exceeded || c.code() == errc::duplicate_name)
          << c.err().what();
      continue;
    }
    auto img = w->take_bytes();
    auto f = file::from_bytes(img);
    EXPECT_TRUE(f.ok()) << "writer committed a file its own reader rejects: " << f.err().what();
  }
}

TEST(WriterApi, OutOfRangeZstdLevelNeverMakesAnUnreadableFile) {
  for (int level : {23, 100, -200000}) {
    SCOPED_TRACE(level);
    auto w = writer::create_in_memory(fast());
    ASSERT_OK(w);
    const std::uint64_t shape[] = {64};
    auto a = w->add_array("z", dtype::uint8, shape, vt::pattern_bytes(64), {codec::zstd, level});
    if (!a.ok()) {
      EXPECT_EQ(a.code(), errc::invalid_argument) << a.err().what();
      continue;
    }
    ASSERT_OK(w->commit());
    auto img = w->take_bytes();
    auto f = file::from_bytes(img);
    EXPECT_TRUE(f.ok()) << "writer committed a file its own reader rejects: " << f.err().what();
  }
}

// add_string_array must check every offset against the text before reading a slice.
TEST(WriterApi, StringOffsetsPastTheTextAreNotRead) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {2};
  auto text = std::make_unique<std::byte[]>(4);
  std::memcpy(text.get(), "abcd", 4);
  std::vector<std::uint64_t> offs = {0, 1u << 20, 4};  // element 0 claims 1 MiB of a 4-byte text
  auto r = w->add_string_array("s", shape, offs, std::span<const std::byte>(text.get(), 4));
  EXPECT_FALSE(r.ok());
}

TEST(WriterApi, StringArrayWithWrappingCountFailsCleanly) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {~0ull};  // count + 1 wraps to 0 == offsets.size()
  std::span<const std::uint64_t> no_offsets;
  auto r = w->add_string_array("s", shape, no_offsets, {});
  EXPECT_FALSE(r.ok());
}

TEST(WriterApi, AttrsMustBeADictOrNull) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  const std::uint64_t shape[] = {1};
  EXPECT_CODE(w->add_array("a", dtype::uint8, shape, vt::pattern_bytes(1), {}, value::integer(3)), errc::invalid_argument);
  EXPECT_OK(w->add_array("b", dtype::uint8, shape, vt::pattern_bytes(1), {}, value::null()));
  EXPECT_OK(w->add_array("c", dtype::uint8, shape, vt::pattern_bytes(1), {}, value::dict()));
}

TEST(WriterApi, AddAfterCommitIsRejected) {
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  ASSERT_OK(w->commit());
  const std::uint64_t shape[] = {1};
  EXPECT_CODE(w->add_array("late", dtype::uint8, shape, vt::pattern_bytes(1)), errc::invalid_argument);
  EXPECT_CODE(w->commit(), errc::invalid_argument);
}

// Large arrays are compressed by several zstd workers; the bytes must not depend on how many.
TEST(RoundTrip, ZstdOutputDoesNotDependOnThreadCount) {
  std::vector<float> data(3u << 20);  // 12 MiB: above the multi-threading threshold
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>((i * 2654435761u) % 1000) / 100.0f;
  std::uint64_t shape[1] = {data.size()};
  std::vector<std::vector<std::byte>> images;
  for (unsigned threads : {1u, 2u, 3u}) {
    vitrify::writer_options o;
    o.compression_threads = threads;
    auto w = vitrify::writer::create_in_memory(o);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->add_array("a", vitrify::dtype::float32, shape, std::as_bytes(std::span(data)), {vitrify::codec::zstd, 3}).ok());
    ASSERT_TRUE(w->commit().ok());
    images.push_back(w->take_bytes());
  }
  EXPECT_EQ(images[0], images[1]);
  EXPECT_EQ(images[0], images[2]);
  auto f = vitrify::file::from_bytes(images[0]);
  ASSERT_TRUE(f.ok());
  std::vector<float> back(data.size());
  ASSERT_TRUE(f->read_into(0, std::as_writable_bytes(std::span(back))).ok());
  EXPECT_EQ(back, data);
  EXPECT_LT(f->arrays()[0].stored_length, data.size() * sizeof(float) / 2);
}

TEST(WriterApi, AddBytesGathersPiecesLikeOneArray) {
  // add_bytes writes the concatenation of its pieces: the same file as add_array of the joined
  // bytes, raw and zstd.
  const bytes a = vt::pattern_bytes(1000), b = vt::pattern_bytes(37);
  const bytes pad(11, std::byte{0});
  bytes joined = a;
  joined.insert(joined.end(), pad.begin(), pad.end());
  joined.insert(joined.end(), b.begin(), b.end());
  for (array_codec how : {array_codec{codec::raw, 0}, array_codec{codec::zstd, 3}}) {
    auto w1 = writer::create_in_memory(fast());
    auto w2 = writer::create_in_memory(fast());
    ASSERT_OK(w1);
    ASSERT_OK(w2);
    std::span<const std::byte> pieces[] = {a, pad, b, std::span<const std::byte>()};
    ASSERT_OK(w1->add_bytes("pool", pieces, how));
    const std::uint64_t shape[] = {joined.size()};
    ASSERT_OK(w2->add_array("pool", dtype::uint8, shape, joined, how));
    ASSERT_OK(w1->commit());
    ASSERT_OK(w2->commit());
    EXPECT_EQ(w1->take_bytes(), w2->take_bytes());
  }
  auto w = writer::create_in_memory(fast());
  ASSERT_OK(w);
  ASSERT_OK(w->add_bytes("empty", std::span<const std::span<const std::byte>>()));
  auto f = reopen(*w);
  EXPECT_EQ(f.arrays()[0].decoded_length, 0u);
  EXPECT_EQ(f.arrays()[0].type, dtype::uint8);
}
