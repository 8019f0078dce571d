// test_reader.cpp - the reader rejects every malformed file with the documented error code,
// using hand-made images (see test_support.hpp) so any header text can be tried.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>

#include <cstring>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace vitrify;
using vt::bytes;
using vt::image_spec;
using vt::raw_array;

namespace {

bytes string_payload(const std::vector<std::uint64_t>& offsets, std::string_view text) {
  bytes b(offsets.size() * 8 + text.size());
  std::memcpy(b.data(), offsets.data(), offsets.size() * 8);
  if (!text.empty()) std::memcpy(b.data() + offsets.size() * 8, text.data(), text.size());
  return b;
}

raw_array arr(std::string name, std::string dtype, std::vector<std::uint64_t> shape, bytes stored) {
  raw_array a;
  a.name = std::move(name);
  a.dtype = std::move(dtype);
  a.shape = std::move(shape);
  a.stored = std::move(stored);
  return a;
}

/// A small valid file: float32[4], uint8[3] (unaligned end), string[2], zstd uint8[64].
image_spec base_spec() {
  image_spec s;
  s.arrays.push_back(arr("a", "float32", {4}, vt::pattern_bytes(16, 1)));
  s.arrays.push_back(arr("b", "uint8", {3}, vt::pattern_bytes(3, 2)));
  s.arrays.push_back(arr("s", "string", {2}, string_payload({0, 3, 5}, "héé")));
  bytes plain(64, std::byte{'z'});
  auto z = arr("z", "uint8", {64}, vt::zstd_compress(plain, 3));
  z.codec = "zstd";
  z.decoded_length = 64;
  z.extra = ",\"level\":3";
  s.arrays.push_back(z);
  return s;
}

bytes base_image() { return vt::build_image(base_spec()).data; }

/// Image of base_spec with the header text edited by one replacement.
bytes edited(std::string_view from, std::string_view to) {
  auto img = vt::build_image(base_spec());
  return vt::with_header(img.data, vt::replace_once(img.header, from, to));
}

/// Image with one array whose entry members are given verbatim (offset 64, 4 stored bytes).
bytes single_entry(std::string_view entry_json, bytes stored = vt::pattern_bytes(4)) {
  image_spec s;
  s.arrays.push_back(arr("x", "uint8", {4}, stored));
  auto img = vt::build_image(s);
  std::string h = "{\"format\":\"vitrify\",\"arrays\":[{" + std::string(entry_json) + "}]}";
  return vt::with_header(img.data, h);
}

std::string good_entry_members(bytes stored = vt::pattern_bytes(4)) {
  return "\"name\":\"x\",\"dtype\":\"uint8\",\"shape\":[4],\"offset\":64,\"length\":4,\"codec\":\"raw\","
         "\"decoded_length\":4,\"xxh3\":\"" + vt::hex16(vt::xxh3(stored)) + "\"";
}

}  // namespace

// ---------------------------------------------------------------- sanity of the image builder

TEST(ImageBuilder, BaseImageIsValidAndMatchesTheWriterLayout) {
  auto img = base_image();
  auto f = vt::open_image(img);
  ASSERT_OK(f);
  ASSERT_EQ(f->arrays().size(), 4u);
  EXPECT_OK(f->verify());
  EXPECT_EQ(f->arrays()[0].offset, 64u);
  EXPECT_EQ(f->arrays()[1].offset, 128u);
  EXPECT_EQ(f->arrays()[2].offset, 192u);
  EXPECT_EQ(*f->read_strings(2), (std::vector<std::string>{"hé", "é"}));
  bytes z(64);
  ASSERT_OK(f->read_into(3, z));
  EXPECT_TRUE(z == bytes(64, std::byte{'z'}));
  EXPECT_EQ(f->arrays()[3].level, 3);

  // The writer lays the same arrays out identically (only the header text may differ).
  writer_options o;
  o.durable = false;
  auto w = writer::create_in_memory(o);
  ASSERT_OK(w);
  auto spec = base_spec();
  const std::uint64_t s4[] = {4}, s3[] = {3}, s2[] = {2};
  ASSERT_OK(w->add_array("a", dtype::float32, s4, spec.arrays[0].stored));
  ASSERT_OK(w->add_array("b", dtype::uint8, s3, spec.arrays[1].stored));
  std::vector<std::uint64_t> offs = {0, 3, 5};
  ASSERT_OK(w->add_string_array("s", s2, offs, vt::to_bytes("héé")));
  ASSERT_OK(w->commit());
  auto wimg = w->take_bytes();
  auto hdr = vt::get_u64(wimg, 24);
  ASSERT_GE(img.size(), hdr);
  EXPECT_TRUE(std::equal(wimg.begin(), wimg.begin() + 24, img.begin()));
  EXPECT_TRUE(std::equal(wimg.begin() + 64, wimg.begin() + static_cast<std::ptrdiff_t>(hdr), img.begin() + 64));
}

TEST(ImageBuilder, EmptyArrayTableIsValid) {
  image_spec s;
  auto img = vt::build_image(s);
  auto f = vt::open_image(img.data);
  ASSERT_OK(f);
  EXPECT_TRUE(f->arrays().empty());
  EXPECT_EQ(img.header_offset, 64u);
}

// ---------------------------------------------------------------- size and preamble

TEST(Reader, EmptyFileIsTruncated) {
  EXPECT_EQ(vt::open_code({}), errc::truncated);
  vt::temp_dir dir;
  vt::write_bytes(dir / "empty.vit", {});
  EXPECT_CODE(file::open(dir / "empty.vit"), errc::truncated);
}

TEST(Reader, MissingFileAndFolderAreIoErrors) {
  vt::temp_dir dir;
  EXPECT_CODE(file::open(dir / "absent.vit"), errc::io_error);
  EXPECT_CODE(file::open(dir.path()), errc::io_error);
  EXPECT_CODE(file::open("/dev/null"), errc::io_error);  // not a regular file
}

TEST(Reader, EveryTruncationFailsCleanly) {
  auto img = base_image();
  for (std::size_t n = 0; n < img.size(); ++n) {
    auto code = vt::open_code(std::span(img).first(n));
    EXPECT_EQ(code, errc::truncated) << "prefix of " << n << " of " << img.size() << " bytes";
  }
  // And through real (mapped) files, for a sample of lengths.
  vt::temp_dir dir;
  for (std::size_t n : {std::size_t{1}, std::size_t{63}, std::size_t{64}, std::size_t{65}, std::size_t{100},
                        img.size() / 2, img.size() - 1}) {
    auto p = dir / ("t" + std::to_string(n));
    vt::write_bytes(p, std::span(img).first(n));
    EXPECT_CODE(file::open(p), errc::truncated);
  }
}

TEST(Reader, BadMagic) {
  auto img = base_image();
  for (int i = 0; i < 8; ++i) {
    auto b = img;
    b[i] ^= std::byte{0x20};
    vt::reseal_preamble(b);
    EXPECT_EQ(vt::open_code(b), errc::bad_magic) << "byte " << i;
  }
  EXPECT_EQ(vt::open_code(bytes(64)), errc::bad_magic);
  EXPECT_EQ(vt::open_code(vt::to_bytes(std::string(200, 'P'))), errc::bad_magic);
  auto pk = vt::to_bytes(std::string("PK\x03\x04", 4) + std::string(100, '\0'));
  EXPECT_EQ(vt::open_code(pk), errc::bad_magic);
}

TEST(Reader, PreambleChecksum) {
  auto img = base_image();
  for (std::size_t i : {8u, 10u, 12u, 16u, 20u, 24u, 32u, 40u, 48u, 56u, 63u}) {
    auto b = img;
    b[i] ^= std::byte{1};
    EXPECT_EQ(vt::open_code(b), errc::checksum_mismatch) << "byte " << i;
  }
}

TEST(Reader, MajorVersion) {
  auto img = base_image();
  for (std::uint16_t major : {0, 2, 3, 0xFFFF}) {
    auto b = img;
    vt::put_u16(b, 8, major);
    EXPECT_EQ(vt::open_code(b), errc::checksum_mismatch) << "not resealed, major " << major;
    vt::reseal_preamble(b);
    EXPECT_EQ(vt::open_code(b), errc::unsupported_version) << "major " << major;
  }
}

TEST(Reader, AnyMinorOfAKnownMajorIsAccepted) {
  auto img = base_image();
  for (std::uint16_t minor : {1, 7, 0xFFFF}) {
    auto b = img;
    vt::put_u16(b, 10, minor);
    vt::reseal_preamble(b);
    auto f = vt::open_image(b);
    ASSERT_OK(f);
    EXPECT_EQ(f->version_minor(), minor);
    EXPECT_OK(f->verify());
  }
}

TEST(Reader, NonzeroFlagsOrReserved) {
  auto img = base_image();
  for (std::uint32_t v : {1u, 2u, 0x80000000u}) {
    auto b = img;
    vt::put_u32(b, 12, v);
    vt::reseal_preamble(b);
    EXPECT_EQ(vt::open_code(b), errc::bad_preamble) << "flags " << v;
    b = img;
    vt::put_u32(b, 20, v);
    vt::reseal_preamble(b);
    EXPECT_EQ(vt::open_code(b), errc::bad_preamble) << "reserved " << v;
  }
}

TEST(Reader, BadAlignment) {
  auto img = base_image();
  for (std::uint32_t al : {0u, 1u, 2u, 8u, 32u, 63u, 65u, 96u, 100u, 8192u, 0x80000000u, 0xFFFFFFFFu}) {
    auto b = img;
    vt::put_u32(b, 16, al);
    vt::reseal_preamble(b);
    EXPECT_EQ(vt::open_code(b), errc::bad_preamble) << "alignment " << al;
  }
}

TEST(Reader, HeaderLengthAndBounds) {
  auto img = base_image();
  const auto hoff = vt::get_u64(img, 24), hlen = vt::get_u64(img, 32);
  auto patch = [&](std::uint64_t off, std::uint64_t len, std::uint64_t content) {
    auto b = img;
    vt::put_u64(b, 24, off);
    vt::put_u64(b, 32, len);
    vt::put_u64(b, 40, content);
    vt::reseal_preamble(b);
    return b;
  };
  // header_length 2^64-1: far over the limit.
  EXPECT_EQ(vt::open_code(patch(hoff, ~0ull, hoff + hlen)), errc::limit_exceeded);
  EXPECT_EQ(vt::open_code(patch(hoff, ~0ull, ~0ull)), errc::limit_exceeded);
  // Over the default limit (64 MiB) and over a configured one.
  EXPECT_EQ(vt::open_code(patch(hoff, (64ull << 20) + 1, hoff + (64ull << 20) + 1)), errc::limit_exceeded);
  open_options small;
  small.lim.max_header_bytes = hlen - 1;
  EXPECT_EQ(vt::open_code(img, small), errc::limit_exceeded);
  small.lim.max_header_bytes = hlen;
  EXPECT_EQ(vt::open_code(img, small), errc::ok);
  // One byte more than the file holds.
  EXPECT_EQ(vt::open_code(patch(hoff, hlen + 1, hoff + hlen + 1)), errc::truncated);
  // Header offset past the end of the file.
  const auto past = vt::align_up(img.size(), 8) + 8;
  EXPECT_EQ(vt::open_code(patch(past, hlen, past + hlen)), errc::truncated);
  // Header offset not a multiple of 8, or inside the preamble.
  EXPECT_EQ(vt::open_code(patch(hoff + 1, hlen - 1, hoff + hlen)), errc::bad_preamble);
  EXPECT_EQ(vt::open_code(patch(8, hlen, 8 + hlen)), errc::bad_preamble);
  // content_length inconsistent with header_offset + header_length.
  EXPECT_EQ(vt::open_code(patch(hoff, hlen, hoff + hlen - 1)), errc::bad_preamble);
  // Overflowing header_offset + header_length never succeeds.
  EXPECT_NE(vt::open_code(patch(~0ull - 7, hlen, hlen - 8)), errc::ok);
  // Header too short to be an object.
  for (std::uint64_t len : {0ull, 1ull}) {
    auto code = vt::open_code(patch(hoff, len, hoff + len));
    EXPECT_NE(code, errc::ok) << "header_length " << len;
  }
}

TEST(Reader, HeaderChecksum) {
  auto img = base_image();
  const auto hoff = vt::get_u64(img, 24);
  auto b = img;
  b[hoff + 5] ^= std::byte{1};
  EXPECT_EQ(vt::open_code(b), errc::checksum_mismatch);
  b = img;
  vt::put_u64(b, 48, vt::get_u64(b, 48) ^ 1);
  vt::reseal_preamble(b);
  EXPECT_EQ(vt::open_code(b), errc::checksum_mismatch);
}

// ---------------------------------------------------------------- header schema

TEST(Reader, HeaderNotJsonOrWrongSchema) {
  auto img = base_image();
  auto code = [&](std::string_view h) { return vt::open_code(vt::with_header(img, h)); };
  EXPECT_EQ(code("{\"a\""), errc::bad_header);
  EXPECT_EQ(code("{"), errc::bad_preamble);  // header_length < 2
  EXPECT_EQ(code("[]"), errc::bad_header);
  EXPECT_EQ(code("\"vitrify\""), errc::bad_header);
  EXPECT_EQ(code("nu"), errc::bad_header);
  EXPECT_EQ(code("{}"), errc::bad_header);
  EXPECT_EQ(code("{\"format\":\"vitrify\"}"), errc::bad_header);                 // no arrays
  EXPECT_EQ(code("{\"arrays\":[]}"), errc::bad_header);                          // no format
  EXPECT_EQ(code("{\"format\":\"other\",\"arrays\":[]}"), errc::bad_header);
  EXPECT_EQ(code("{\"format\":1,\"arrays\":[]}"), errc::bad_header);
  EXPECT_EQ(code("{\"format\":\"vitrify\",\"arrays\":{}}"), errc::bad_header);
  EXPECT_EQ(code("{\"format\":\"vitrify\",\"arrays\":[1]}"), errc::bad_header);
  EXPECT_EQ(code("\xEF\xBB\xBF{\"format\":\"vitrify\",\"arrays\":[]}"), errc::bad_header);  // BOM
  EXPECT_EQ(code("{\"format\":\"vitrify\",\"arrays\":[]} x"), errc::bad_header);  // trailing text
  EXPECT_EQ(code("{\"format\":\"vitrify\",\"arrays\":[],\"x\":\"\xff\"}"), errc::bad_header);  // not UTF-8
  // Duplicate top-level keys. FORMAT-draft says bad_header for top-level/entry keys, error.hpp
  // says duplicate_name covers "two JSON keys": either is accepted here (see the report).
  for (const char* h : {"{\"format\":\"vitrify\",\"format\":\"vitrify\",\"arrays\":[]}",
                        "{\"format\":\"vitrify\",\"arrays\":[],\"arrays\":[]}"}) {
    auto c = code(h);
    EXPECT_TRUE(c == errc::bad_header || c == errc::duplicate_name) << h << " -> " << errc_name(c);
  }
}

TEST(Reader, UnknownMembersAreIgnored) {
  EXPECT_EQ(vt::open_code(edited("{\"format\":\"vitrify\",", "{\"format\":\"vitrify\",\"x-future\":{\"a\":[1]},")),
            errc::ok);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"a\",", "\"name\":\"a\",\"future\":[1,2],")), errc::ok);
}

TEST(Reader, RequiredFeatures) {
  EXPECT_EQ(vt::open_code(edited("{\"format\":\"vitrify\",", "{\"format\":\"vitrify\",\"required_features\":[],")),
            errc::ok);
  EXPECT_EQ(vt::open_code(edited("{\"format\":\"vitrify\",",
                                 "{\"format\":\"vitrify\",\"required_features\":[\"encryption-v9\"],")),
            errc::unsupported_feature);
  EXPECT_EQ(vt::open_code(edited("{\"format\":\"vitrify\",", "{\"format\":\"vitrify\",\"required_features\":\"x\",")),
            errc::bad_header);
  EXPECT_EQ(vt::open_code(edited("{\"format\":\"vitrify\",", "{\"format\":\"vitrify\",\"required_features\":[1],")),
            errc::bad_header);
}

TEST(Reader, EntryMissingOrMistypedMembers) {
  auto stored = vt::pattern_bytes(4);
  ASSERT_EQ(vt::open_code(single_entry(good_entry_members(stored), stored)), errc::ok);
  const std::string good = good_entry_members(stored);
  const char* members[] = {"\"name\":\"x\",", "\"dtype\":\"uint8\",", "\"shape\":[4],", "\"offset\":64,",
                           "\"length\":4,", "\"codec\":\"raw\",", "\"decoded_length\":4,"};
  for (const char* m : members) {
    EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, m, ""), stored)), errc::bad_header) << "without " << m;
  }
  auto xx = good.substr(good.find(",\"xxh3\""));
  EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, xx, ""), stored)), errc::bad_header) << "without xxh3";
  const std::pair<const char*, const char*> mistyped[] = {
      {"\"name\":\"x\"", "\"name\":5"},
      {"\"dtype\":\"uint8\"", "\"dtype\":5"},
      {"\"shape\":[4]", "\"shape\":4"},
      {"\"shape\":[4]", "\"shape\":[-4]"},
      {"\"shape\":[4]", "\"shape\":[4.0]"},
      {"\"shape\":[4]", "\"shape\":[\"4\"]"},
      {"\"offset\":64", "\"offset\":\"64\""},
      {"\"offset\":64", "\"offset\":-64"},
      {"\"offset\":64", "\"offset\":64.0"},
      {"\"length\":4", "\"length\":null"},
      {"\"codec\":\"raw\"", "\"codec\":0"},
      {"\"decoded_length\":4", "\"decoded_length\":true"},
      {"\"offset\":64", "\"offset\":18446744073709551616"},  // 2^64
  };
  for (auto [from, to] : mistyped)
    EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, from, to), stored)), errc::bad_header) << to;
  // Duplicate member inside an entry (bad_header per FORMAT-draft; duplicate_name per error.hpp).
  {
    auto c = vt::open_code(single_entry(good + ",\"offset\":64", stored));
    EXPECT_TRUE(c == errc::bad_header || c == errc::duplicate_name) << errc_name(c);
  }
  // Malformed checksum text.
  auto hex = vt::hex16(vt::xxh3(stored));
  std::string upper = hex;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper != hex) {
    EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, hex, upper), stored)), errc::bad_header) << upper;
  }
  for (std::string bad : {hex.substr(1), hex + "0", std::string("0x") + hex.substr(2), std::string(16, 'g')})
    EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, hex, bad), stored)), errc::bad_header) << bad;
  EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, "\"" + hex + "\"", "12345"), stored)), errc::bad_header);
}

TEST(Reader, UnknownDtypeAndCodec) {
  EXPECT_EQ(vt::open_code(edited("\"dtype\":\"uint8\"", "\"dtype\":\"float128\"")), errc::unknown_dtype);
  EXPECT_EQ(vt::open_code(edited("\"dtype\":\"uint8\"", "\"dtype\":\"UINT8\"")), errc::unknown_dtype);
  EXPECT_EQ(vt::open_code(edited("\"dtype\":\"uint8\"", "\"dtype\":\"\"")), errc::unknown_dtype);
  EXPECT_EQ(vt::open_code(edited("\"codec\":\"raw\"", "\"codec\":\"gzip\"")), errc::unknown_codec);
  EXPECT_EQ(vt::open_code(edited("\"codec\":\"zstd\"", "\"codec\":\"lz4\"")), errc::unknown_codec);
}

// ---------------------------------------------------------------- names

TEST(Reader, DuplicateArrayNames) {
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"a\"")), errc::duplicate_name);
}

TEST(Reader, BadNames) {
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"b\\u0001\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"b\\n\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"b\\u0000\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"b\\u007f\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"b\x7f\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"" + std::string(4097, 'n') + "\"")), errc::bad_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"" + std::string(4096, 'n') + "\"")), errc::ok);
  open_options o;
  o.lim.max_name_bytes = 3;
  EXPECT_EQ(vt::open_code(edited("\"name\":\"b\"", "\"name\":\"abcd\""), o), errc::bad_name);
  // Invalid UTF-8: a raw byte makes the whole header invalid UTF-8 text; an escaped lone
  // surrogate is valid JSON syntax but not UTF-8.
  for (const char* n : {"\"b\xff\"", "\"b\xc0\xaf\"", "\"b\xed\xa0\x80\"", "\"b\\ud800\"", "\"b\\udc00x\""}) {
    auto code = vt::open_code(edited("\"name\":\"b\"", std::string("\"name\":") + n));
    EXPECT_TRUE(code == errc::bad_name || code == errc::bad_header) << n << " -> " << errc_name(code);
  }
}

// ---------------------------------------------------------------- arrays and layout

TEST(Reader, ShapeOverflowAndMismatch) {
  // Element count overflows.
  EXPECT_EQ(vt::open_code(edited("\"shape\":[3]", "\"shape\":[4294967296,4294967296]")), errc::bad_array);
  EXPECT_EQ(vt::open_code(edited("\"shape\":[3]", "\"shape\":[18446744073709551615,2]")), errc::bad_array);
  // Count fits, byte size (count * 4) overflows.
  EXPECT_EQ(vt::open_code(edited("\"shape\":[4]", "\"shape\":[4611686018427387905]")), errc::bad_array);
  EXPECT_EQ(vt::open_code(edited("\"shape\":[4]", "\"shape\":[2305843009213693952,2]")), errc::bad_array);
  // Consistent sizes but wrong shape.
  EXPECT_EQ(vt::open_code(edited("\"shape\":[4]", "\"shape\":[5]")), errc::bad_array);
  EXPECT_EQ(vt::open_code(edited("\"shape\":[4]", "\"shape\":[]")), errc::bad_array);
  EXPECT_EQ(vt::open_code(edited("\"shape\":[4]", "\"shape\":[2,2]")), errc::ok);
  // Raw: decoded_length must equal length.
  auto stored = vt::pattern_bytes(4);
  auto good = good_entry_members(stored);
  EXPECT_EQ(vt::open_code(single_entry(vt::replace_once(good, "\"decoded_length\":4", "\"decoded_length\":5"), stored)),
            errc::bad_array);
  // String arrays need room for the offsets.
  EXPECT_EQ(vt::open_code(edited("\"shape\":[2]", "\"shape\":[4]")), errc::bad_array);
}

TEST(Reader, RankLimit) {
  std::string ones = "[1";
  for (int i = 1; i < 64; ++i) ones += ",1";
  ones += "]";
  auto stored = vt::pattern_bytes(1);
  auto entry = [&](std::string shape) {
    return "\"name\":\"x\",\"dtype\":\"uint8\",\"shape\":" + shape +
           ",\"offset\":64,\"length\":1,\"codec\":\"raw\",\"decoded_length\":1,\"xxh3\":\"" +
           vt::hex16(vt::xxh3(stored)) + "\"";
  };
  EXPECT_EQ(vt::open_code(single_entry(entry(ones), stored)), errc::ok);  // rank 64
  std::string over = ones;
  over.insert(1, "1,");
  EXPECT_EQ(vt::open_code(single_entry(entry(over), stored)), errc::limit_exceeded);  // rank 65
  std::string huge = "[1";
  for (int i = 1; i < 100000; ++i) huge += ",1";
  huge += "]";
  EXPECT_EQ(vt::open_code(single_entry(entry(huge), stored)), errc::limit_exceeded);
  open_options o;
  o.lim.max_rank = 2;
  EXPECT_EQ(vt::open_code(single_entry(entry("[1,1,1]"), stored), o), errc::limit_exceeded);
  EXPECT_EQ(vt::open_code(single_entry(entry("[1,1]"), stored), o), errc::ok);
}

TEST(Reader, OtherLimits) {
  auto img = base_image();
  open_options o;
  o.lim.max_arrays = 3;
  EXPECT_EQ(vt::open_code(img, o), errc::limit_exceeded);
  o.lim.max_arrays = 4;
  EXPECT_EQ(vt::open_code(img, o), errc::ok);
  o = {};
  o.lim.max_decoded_bytes = 63;  // "z" decodes to 64 bytes
  EXPECT_EQ(vt::open_code(img, o), errc::limit_exceeded);
  o.lim.max_decoded_bytes = 64;
  EXPECT_EQ(vt::open_code(img, o), errc::ok);
}

TEST(Reader, LayoutHolesOverlapsAndMisalignment) {
  auto layout = [](auto mutate) {
    auto s = base_spec();
    mutate(s);
    return vt::open_code(vt::build_image(s).data);
  };
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[0].offset = 128; }), errc::bad_layout);      // hole before first
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[1].offset = 192; }), errc::bad_layout);      // hole
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[1].offset = 80; }), errc::bad_layout);       // packed, misaligned
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[1].offset = 64; }), errc::bad_layout);       // overlap
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[1].offset = 72; }), errc::bad_layout);       // overlap, misaligned
  EXPECT_EQ(layout([](image_spec& s) { s.arrays[2].offset = 128; }), errc::bad_layout);      // overlap previous
  EXPECT_EQ(layout([](image_spec& s) { std::swap(s.arrays[0], s.arrays[1]); s.arrays[0].offset = 128; s.arrays[1].offset = 64; }),
            errc::bad_layout);  // table order differs from file order
  // An array running into the header.
  EXPECT_EQ(layout([](image_spec& s) { s.header_offset = 256 + 8; }), errc::bad_layout);
  // Gap before the header.
  EXPECT_EQ(layout([](image_spec& s) { s.header_offset = 512; }), errc::bad_layout);
  // Non-zero padding between arrays and before the header.
  EXPECT_EQ(layout([](image_spec& s) { s.pad = std::byte{0xAA}; }), errc::bad_layout);
  // Flip single padding bytes: after array "a" (ends at 80, next at 128) and between the
  // last array (3 bytes, so 5 bytes of padding follow) and the header.
  auto spec = base_spec();
  spec.arrays.push_back(arr("tail", "uint8", {3}, vt::pattern_bytes(3, 5)));
  auto img = vt::build_image(spec);
  ASSERT_EQ(vt::open_code(img.data), errc::ok);
  auto b = img.data;
  b[80] = std::byte{1};
  EXPECT_EQ(vt::open_code(b), errc::bad_layout) << "padding after array a";
  b = img.data;
  b[img.header_offset - 1] = std::byte{1};
  EXPECT_EQ(vt::open_code(b), errc::bad_layout) << "padding before the header";
}

TEST(Reader, OffsetsAndLengthsOutOfBounds) {
  const std::pair<const char*, const char*> edits[] = {
      {"\"offset\":64,", "\"offset\":9223372036854775808,"},
      {"\"offset\":64,", "\"offset\":18446744073709551552,"},  // 2^64 - 64: offset + length overflows
      {"\"length\":16,", "\"length\":18446744073709551615,"},
      {"\"length\":16,", "\"length\":100000,"},
  };
  for (auto [from, to] : edits) {
    auto code = vt::open_code(edited(from, to));
    EXPECT_TRUE(code == errc::bad_layout || code == errc::truncated || code == errc::bad_array) << to << " -> "
                                                                                              << errc_name(code);
  }
}

TEST(Reader, FlippedBitInEachArrayIsFoundByVerifyArray) {
  auto spec = base_spec();
  auto img = vt::build_image(spec);
  auto good = vt::open_image(img.data);
  ASSERT_OK(good);
  for (std::size_t i = 0; i < spec.arrays.size(); ++i) {
    SCOPED_TRACE(spec.arrays[i].name);
    const auto& info = good->arrays()[i];
    for (std::uint64_t pos : {std::uint64_t{0}, info.stored_length / 2, info.stored_length - 1}) {
      auto b = img.data;
      b[info.offset + pos] ^= std::byte{0x10};
      auto f = vt::open_image(b);
      ASSERT_OK(f);  // array checksums are checked on demand, not at open
      auto r = f->verify_array(i);
      EXPECT_EQ(r.code(), errc::checksum_mismatch);
      if (!r.ok()) {
        EXPECT_NE(r.err().message.find(spec.arrays[i].name), std::string::npos) << r.err().message;
      }
      for (std::size_t j = 0; j < spec.arrays.size(); ++j)
        if (j != i) {
          EXPECT_OK(f->verify_array(j));
        }
      EXPECT_CODE(f->verify(), errc::checksum_mismatch);
      bytes out(info.decoded_length);
      EXPECT_CODE(f->read_into(i, out), errc::checksum_mismatch);
      if (info.codec == codec::raw) {
        EXPECT_CODE(f->view(i, true), errc::checksum_mismatch);
        EXPECT_OK(f->view(i, false));
        EXPECT_OK(f->read_into(i, out, false));
      }
      if (info.type == dtype::string) {
        EXPECT_CODE(f->read_strings(i), errc::checksum_mismatch);
      }
    }
  }
}

TEST(Reader, WrongRecordedChecksum) {
  auto spec = base_spec();
  spec.arrays[1].xxh3 = vt::hex16(vt::xxh3(spec.arrays[1].stored) ^ 0x8000000000000000ull);
  auto f = vt::open_image(vt::build_image(spec).data);
  ASSERT_OK(f);
  EXPECT_CODE(f->verify_array(1), errc::checksum_mismatch);
  EXPECT_OK(f->verify_array(0));
}

TEST(Reader, Trailers) {
  auto spec = base_spec();
  auto block = [](std::string_view tag, std::string_view body) {
    bytes b(16 + body.size());
    std::memcpy(b.data(), tag.data(), 8);
    std::uint64_t n = body.size();
    std::memcpy(b.data() + 8, &n, 8);
    if (!body.empty()) std::memcpy(b.data() + 16, body.data(), body.size());
    return b;
  };
  // Valid blocks (unknown tags are ignored).
  auto b1 = block("TESTTAG1", "hello");
  auto b2 = block("VITSIG01", "");
  spec.trailer = b1;
  spec.trailer.insert(spec.trailer.end(), b2.begin(), b2.end());
  auto img = vt::build_image(spec);
  auto f = vt::open_image(img.data);
  ASSERT_OK(f);
  ASSERT_EQ(f->trailers().size(), 2u);
  EXPECT_EQ(f->trailers()[0].tag, "TESTTAG1");
  EXPECT_EQ(vt::to_string(f->trailers()[0].body), "hello");
  EXPECT_EQ(f->trailers()[1].tag, "VITSIG01");
  EXPECT_TRUE(f->trailers()[1].body.empty());
  EXPECT_EQ(f->content_length(), img.header_offset + img.header.size());
  EXPECT_EQ(f->size(), img.data.size());
  EXPECT_OK(f->verify());

  auto code_with = [&](bytes trailer) {
    auto s = base_spec();
    s.trailer = std::move(trailer);
    return vt::open_code(vt::build_image(s).data);
  };
  EXPECT_EQ(code_with(vt::to_bytes("garbage")), errc::bad_trailer);
  EXPECT_EQ(code_with(bytes(1)), errc::bad_trailer);
  EXPECT_EQ(code_with(bytes(15)), errc::bad_trailer);
  auto long_body = block("TESTTAG1", "hello");
  vt::put_u64(long_body, 8, 6);
  EXPECT_EQ(code_with(long_body), errc::bad_trailer);
  auto short_body = block("TESTTAG1", "hello");
  vt::put_u64(short_body, 8, 4);
  EXPECT_EQ(code_with(short_body), errc::bad_trailer);
  auto huge = block("TESTTAG1", "hello");
  vt::put_u64(huge, 8, ~0ull);
  EXPECT_EQ(code_with(huge), errc::bad_trailer);
  vt::put_u64(huge, 8, ~0ull - 10);
  EXPECT_EQ(code_with(huge), errc::bad_trailer);
  auto ok_then_junk = block("TESTTAG1", "hello");
  ok_then_junk.push_back(std::byte{0});
  EXPECT_EQ(code_with(ok_then_junk), errc::bad_trailer);
}

// ---------------------------------------------------------------- codecs

TEST(Reader, ZstdDecodedLengthMustMatch) {
  auto make = [](std::size_t actual, std::uint64_t declared) {
    image_spec s;
    auto a = arr("z", "uint8", {declared}, vt::zstd_compress(bytes(actual, std::byte{7})));
    a.codec = "zstd";
    a.decoded_length = declared;
    s.arrays.push_back(a);
    return vt::build_image(s).data;
  };
  for (auto [actual, declared] : {std::pair<std::size_t, std::uint64_t>{200, 100}, {101, 100}, {50, 100}, {0, 1}}) {
    SCOPED_TRACE(std::to_string(actual) + " decoded, " + std::to_string(declared) + " declared");
    auto f = vt::open_image(make(actual, declared));
    if (!f.ok()) {  // a reader may see the frame's content size at open
      EXPECT_EQ(f.code(), errc::decompress_error) << f.err().what();
      continue;
    }
    EXPECT_CODE(f->verify_array(0), errc::decompress_error);
    EXPECT_CODE(f->verify(), errc::decompress_error);
    bytes out(declared);
    EXPECT_CODE(f->read_into(0, out), errc::decompress_error);
  }
  ASSERT_OK(vt::open_image(make(100, 100)));
  EXPECT_OK(vt::open_image(make(100, 100))->verify());
}

// verify() on an untrusted file must stay bounded: a tiny zstd stream declaring a huge decoded
// size (within max_decoded_bytes) must fail cleanly, not allocate the declared size up front.
TEST(Reader, VerifyOfHugeDeclaredZstdArrayStaysBounded) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan maps huge allocations with MAP_NORESERVE; the zero-fill could exhaust the host";
#else
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_AS, &old), 0);
  struct rlimit capped = old;
  capped.rlim_cur = std::min<rlim_t>(old.rlim_cur, rlim_t{6} << 30);  // fail fast instead of OOM
  ASSERT_EQ(::setrlimit(RLIMIT_AS, &capped), 0);
  const std::uint64_t declared = 1ull << 39;  // 512 GiB, under the 1 TiB default limit
  image_spec s;
  auto a = arr("z", "uint8", {declared}, vt::zstd_compress(bytes(100, std::byte{1})));
  a.codec = "zstd";
  a.decoded_length = declared;
  s.arrays.push_back(a);
  auto f = vt::open_image(vt::build_image(s).data);
  if (f.ok()) {
    try {
      auto r = f->verify();
      EXPECT_FALSE(r.ok());
      if (!r.ok()) {
        EXPECT_EQ(r.code(), errc::decompress_error) << r.err().what();
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "verify() threw " << e.what() << " instead of returning decompress_error";
    }
  } else {
    EXPECT_EQ(f.code(), errc::decompress_error) << f.err().what();
  }
  ::setrlimit(RLIMIT_AS, &old);
#endif
}

TEST(Reader, ZstdMultipleFramesAndGarbage) {
  auto f1 = vt::zstd_compress(bytes(30, std::byte{1}));
  auto f2 = vt::zstd_compress(bytes(34, std::byte{2}));
  bytes both = f1;
  both.insert(both.end(), f2.begin(), f2.end());
  auto make = [](bytes stored, std::uint64_t declared) {
    image_spec s;
    auto a = arr("z", "uint8", {declared}, std::move(stored));
    a.codec = "zstd";
    a.decoded_length = declared;
    s.arrays.push_back(a);
    return vt::build_image(s).data;
  };
  auto f = vt::open_image(make(both, 64));
  ASSERT_OK(f);
  EXPECT_OK(f->verify());
  bytes out(64);
  ASSERT_OK(f->read_into(0, out));
  EXPECT_EQ(out[29], std::byte{1});
  EXPECT_EQ(out[30], std::byte{2});

  for (auto stored : {vt::pattern_bytes(40, 9), bytes{}, bytes(f1.begin(), f1.end() - 1)}) {
    auto g = vt::open_image(make(stored, 30));
    if (!g.ok()) {
      EXPECT_EQ(g.code(), errc::decompress_error);
      continue;
    }
    EXPECT_CODE(g->verify_array(0), errc::decompress_error);
  }
  bytes junk_after = f1;
  junk_after.push_back(std::byte{0x42});
  auto g = vt::open_image(make(junk_after, 30));
  if (g.ok()) {
    EXPECT_CODE(g->verify_array(0), errc::decompress_error);
  }
}

// ---------------------------------------------------------------- string arrays

TEST(Reader, BadStringArrays) {
  auto check = [](std::vector<std::uint64_t> offsets, std::string text, const char* what, bool zstd = false) {
    SCOPED_TRACE(what);
    image_spec s;
    auto payload = string_payload(offsets, text);
    auto a = arr("s", "string", {offsets.size() - 1}, payload);
    if (zstd) {
      a.stored = vt::zstd_compress(payload);
      a.codec = "zstd";
      a.decoded_length = payload.size();
    }
    s.arrays.push_back(a);
    auto f = vt::open_image(vt::build_image(s).data);
    if (!f.ok()) {  // a reader may check raw string offsets at open already
      EXPECT_EQ(f.code(), errc::bad_string_array) << f.err().what();
      return;
    }
    EXPECT_CODE(f->read_strings(0), errc::bad_string_array);
    EXPECT_CODE(f->verify_array(0), errc::bad_string_array);
    EXPECT_CODE(f->verify(), errc::bad_string_array);
  };
  check({0, 3, 2, 4}, "abcd", "decreasing");
  check({0, 3, 2, 4}, "abcd", "decreasing (zstd)", true);
  check({1, 2, 4}, "abcd", "first offset not zero");
  check({0, 2, 3}, "abcd", "last offset short of the text");
  check({0, 2, 5}, "abcd", "last offset past the text");
  check({0, 2, ~0ull}, "abcd", "offset 2^64-1");
  check({0, 1, 4}, "a\xff\xfe\xfd", "invalid UTF-8");
  check({0, 2, 3}, "a\xc3\xa9", "slice boundary inside a character");
  check({0, 3}, "\xed\xa0\x80", "surrogate");
  // Sanity: the same helper accepts a good one.
  image_spec s;
  s.arrays.push_back(arr("s", "string", {2}, string_payload({0, 1, 3}, "a\xc3\xa9")));
  auto f = vt::open_image(vt::build_image(s).data);
  ASSERT_OK(f);
  EXPECT_OK(f->verify());
}

TEST(Reader, BoolValuesMustBeZeroOrOne) {
  image_spec s;
  s.arrays.push_back(arr("flags", "bool", {3}, bytes{std::byte{0}, std::byte{1}, std::byte{2}}));
  auto f = vt::open_image(vt::build_image(s).data);
  ASSERT_OK(f);
  auto r = f->verify();
  EXPECT_FALSE(r.ok());
  if (!r.ok()) {
    EXPECT_EQ(r.code(), errc::bad_array) << r.err().what();
  }
}

// ---------------------------------------------------------------- typed values in the header

TEST(Reader, TypedValuesInHeaderAreValidated) {
  auto with_top = [](std::string extra) {
    auto s = base_spec();
    s.top_extra = std::move(extra);
    return vt::open_code(vt::build_image(s).data);
  };
  EXPECT_EQ(with_top(",\"metadata\":{\"w\":{\"$array\":\"a\"}}"), errc::ok);
  EXPECT_EQ(with_top(",\"metadata\":{\"w\":{\"$array\":\"ghost\"}}"), errc::bad_value);
  EXPECT_EQ(with_top(",\"content\":{\"$object\":{\"type\":\"t\",\"version\":1,\"state\":{\"$array\":\"ghost\"}}}"),
            errc::bad_value);
  EXPECT_EQ(with_top(",\"metadata\":{\"$nope\":1}"), errc::bad_value);
  EXPECT_EQ(with_top(",\"environment\":{\"$ref\":1}"), errc::bad_value);
  EXPECT_EQ(with_top(",\"provenance\":{\"$bytes\":\"!!\"}"), errc::bad_value);
  EXPECT_EQ(with_top(",\"metadata\":{\"a\":1,\"a\":2}"), errc::duplicate_name);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"a\",", "\"name\":\"a\",\"attrs\":{\"$array\":\"ghost\"},")), errc::bad_value);
  EXPECT_EQ(vt::open_code(edited("\"name\":\"a\",", "\"name\":\"a\",\"attrs\":{\"$array\":\"b\"},")), errc::ok);

  // Depth and node limits.
  std::string deep;
  for (int i = 0; i < 300; ++i) deep += "[";
  for (int i = 0; i < 300; ++i) deep += "]";
  EXPECT_EQ(with_top(",\"metadata\":" + deep), errc::limit_exceeded);
  auto s = base_spec();
  s.top_extra = ",\"metadata\":[[[[[[1]]]]]]";
  auto img = vt::build_image(s).data;
  open_options o;
  EXPECT_EQ(vt::open_code(img, o), errc::ok);
  o.lim.max_depth = 3;
  EXPECT_EQ(vt::open_code(img, o), errc::limit_exceeded);
  o = {};
  s.top_extra = ",\"metadata\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]";
  img = vt::build_image(s).data;
  o.lim.max_nodes = 10;
  EXPECT_EQ(vt::open_code(img, o), errc::limit_exceeded);
  o.lim.max_nodes = 1000;
  EXPECT_EQ(vt::open_code(img, o), errc::ok);
  // Very deep nesting fails cleanly (no stack overflow).
  std::string very_deep;
  for (int i = 0; i < 200000; ++i) very_deep += "[";
  for (int i = 0; i < 200000; ++i) very_deep += "]";
  auto code = with_top(",\"metadata\":" + very_deep);
  EXPECT_TRUE(code == errc::limit_exceeded || code == errc::bad_header) << errc_name(code);
}

// ---------------------------------------------------------------- robustness

TEST(Reader, EverySingleByteCorruptionFailsCleanlyOrVerifies) {
  auto img = base_image();
  std::size_t opened = 0;
  for (std::size_t i = 0; i < img.size(); ++i) {
    for (std::byte x : {std::byte{0x01}, std::byte{0xFF}}) {
      auto b = img;
      b[i] ^= x;
      auto f = vt::open_image(b);
      if (!f.ok()) continue;
      ++opened;
      // Only array bytes (or padding-free regions the checksums cover) may be corrupted
      // without failing open; verify() must then catch it.
      EXPECT_FALSE(f->verify().ok()) << "corruption at byte " << i << " went unnoticed";
      for (std::size_t k = 0; k < f->arrays().size(); ++k) {
        bytes out(f->arrays()[k].decoded_length);
        (void)f->read_into(k, out);
        if (f->arrays()[k].type == dtype::string) (void)f->read_strings(k);
      }
    }
  }
  EXPECT_GT(opened, 0u);
}

// ---------------------------------------------------------------- accessors and sharing

TEST(Reader, AccessorsRejectBadIndexAndKind) {
  auto f = vt::open_image(base_image());
  ASSERT_OK(f);
  const std::size_t n = f->arrays().size();
  bytes out(16);
  EXPECT_CODE(f->view(n), errc::invalid_argument);
  EXPECT_CODE(f->read_into(n, out), errc::invalid_argument);
  EXPECT_CODE(f->read_strings(n), errc::invalid_argument);
  EXPECT_CODE(f->verify_array(n), errc::invalid_argument);
  EXPECT_CODE(f->read_strings(0), errc::invalid_argument);  // "a" is float32
  EXPECT_CODE(f->view(3), errc::not_raw);                   // "z" is zstd
  bytes wrong(15);
  EXPECT_CODE(f->read_into(0, wrong), errc::invalid_argument);
}

TEST(Reader, CopiesShareTheMappingAndOutliveTheOriginal) {
  vt::temp_dir dir;
  auto path = dir / "f.vit";
  vt::write_bytes(path, base_image());
  std::optional<file> f;
  {
    auto r = file::open(path);
    ASSERT_OK(r);
    f.emplace(std::move(r).value());
  }
  file g = *f;
  auto v1 = f->view(0);
  ASSERT_OK(v1);
  f.reset();
  std::filesystem::remove(path);  // the mapping stays valid after unlink
  auto v2 = g.view(0, true);
  ASSERT_OK(v2);
  EXPECT_EQ(v1->data(), v2->data());
  EXPECT_OK(g.verify());
  EXPECT_EQ(*g.read_strings(2), (std::vector<std::string>{"hé", "é"}));
}

TEST(Reader, ConcurrentReadsAgree) {
  std::vector<std::pair<std::string, bytes>> arrays;
  image_spec s;
  for (int i = 0; i < 8; ++i) {
    auto data = vt::pattern_bytes(100000 + 8 * static_cast<std::size_t>(i), static_cast<std::uint64_t>(i));
    auto a = arr("a" + std::to_string(i), "uint8", {data.size()}, i % 2 ? vt::zstd_compress(data, 1) : data);
    if (i % 2) {
      a.codec = "zstd";
      a.decoded_length = data.size();
    }
    s.arrays.push_back(a);
    arrays.emplace_back(a.name, data);
  }
  auto f = vt::open_image(vt::build_image(s).data);
  ASSERT_OK(f);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (std::size_t k = 0; k < arrays.size(); ++k) {
          std::size_t i = (k + static_cast<std::size_t>(t)) % arrays.size();
          bytes out(arrays[i].second.size());
          if (!f->read_into(i, out).ok() || out != arrays[i].second) ++failures;
          if (!f->verify_array(i).ok()) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}
