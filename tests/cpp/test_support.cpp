// test_support.cpp - helpers shared by the C++ tests.
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace vt {

temp_dir::temp_dir() {
  static std::atomic<int> counter{0};
  std::string test = "x";
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info())
    test = std::string(info->test_suite_name()) + "." + info->name();
  for (auto& c : test)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  if (test.size() > 60) test.resize(60);
  path_ = fs::temp_directory_path() /
          ("vitrify-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + test);
  fs::remove_all(path_);
  fs::create_directories(path_);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  // Restore write permission on anything a test made read-only, then remove.
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
  for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
  }
  fs::remove_all(path_, ec);
}

std::vector<std::string> temp_dir::entries() const {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  in.seekg(0, std::ios::end);
  auto n = static_cast<std::size_t>(in.tellg());
  in.seekg(0);
  bytes b(n);
  in.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(n));
  return b;
}

void write_bytes(const fs::path& p, std::span<const std::byte> b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

bytes pattern_bytes(std::size_t n, std::uint64_t seed) {
  bytes b(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  std::size_t i = 0;
  while (i < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (int k = 0; k < 8 && i < n; ++k, ++i) b[i] = static_cast<std::byte>(x >> (8 * k));
  }
  return b;
}

std::uint64_t xxh3(std::span<const std::byte> b) { return XXH3_64bits(b.data(), b.size()); }

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bytes zstd_compress(std::span<const std::byte> b, int level) {
  bytes out(ZSTD_compressBound(b.size()));
  std::size_t n = ZSTD_compress(out.data(), out.size(), b.data(), b.size(), level);
  if (ZSTD_isError(n)) throw std::runtime_error(ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

void put_u16(bytes& b, std::size_t off, std::uint16_t v) { std::memcpy(b.data() + off, &v, 2); }
void put_u32(bytes& b, std::size_t off, std::uint32_t v) { std::memcpy(b.data() + off, &v, 4); }
void put_u64(bytes& b, std::size_t off, std::uint64_t v) { std::memcpy(b.data() + off, &v, 8); }
std::uint64_t get_u64(std::span<const std::byte> b, std::size_t off) {
  std::uint64_t v;
  std::memcpy(&v, b.data() + off, 8);
  return v;
}

void reseal_preamble(bytes& b) { put_u64(b, 56, XXH3_64bits(b.data(), 56)); }

std::string header_of(std::span<const std::byte> image) {
  auto off = get_u64(image, 24), len = get_u64(image, 32);
  return to_string(image.subspan(off, len));
}

bytes with_header(std::span<const std::byte> image, std::string_view header_json) {
  auto off = get_u64(image, 24);
  bytes b(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(off));
  auto h = to_bytes(header_json);
  b.insert(b.end(), h.begin(), h.end());
  put_u64(b, 32, h.size());
  put_u64(b, 40, off + h.size());
  put_u64(b, 48, xxh3(h));
  reseal_preamble(b);
  return b;
}

std::string replace_once(std::string s, std::string_view from, std::string_view to) {
  auto pos = s.find(from);
  if (pos == std::string::npos) {
    ADD_FAILURE() << "replace_once: '" << from << "' not found in: " << s;
    return s;
  }
  s.replace(pos, from.size(), to);
  return s;
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

namespace {

struct placed {
  std::uint64_t offset, length;
};

std::vector<placed> place(const image_spec& spec) {
  std::vector<placed> out;
  std::uint64_t end = 64;
  for (const auto& a : spec.arrays) {
    std::uint64_t off = a.offset ? *a.offset : align_up(end, spec.alignment);
    out.push_back({off, a.stored.size()});
    end = off + a.stored.size();
  }
  return out;
}

std::string header_for(const image_spec& spec, const std::vector<placed>& where) {
  if (spec.header) return *spec.header;
  std::string h = "{\"format\":\"vitrify\",\"arrays\":[";
  for (std::size_t i = 0; i < spec.arrays.size(); ++i) {
    const auto& a = spec.arrays[i];
    if (i) h += ',';
    h += "{\"name\":" + (a.name_json ? *a.name_json : json_quote(a.name));
    h += ",\"dtype\":" + json_quote(a.dtype);
    if (a.shape_json) {
      h += ",\"shape\":" + *a.shape_json;
    } else {
      h += ",\"shape\":[";
      for (std::size_t k = 0; k < a.shape.size(); ++k) h += (k ? "," : "") + std::to_string(a.shape[k]);
      h += "]";
    }
    h += ",\"offset\":" + std::to_string(where[i].offset);
    h += ",\"length\":" + std::to_string(a.length ? *a.length : a.stored.size());
    h += ",\"codec\":" + json_quote(a.codec);
    h += ",\"decoded_length\":" + std::to_string(a.decoded_length ? *a.decoded_length : a.stored.size());
    h += ",\"xxh3\":" + json_quote(a.xxh3 ? *a.xxh3 : hex16(xxh3(a.stored)));
    h += a.extra;
    h += '}';
  }
  h += "]" + spec.top_extra + "}";
  return h;
}

}  // namespace

std::string default_header(const image_spec& spec) { return header_for(spec, place(spec)); }

image build_image(const image_spec& spec) {
  auto where = place(spec);
  std::uint64_t end = 64;
  for (const auto& p : where) end = std::max(end, p.offset + p.length);
  image img;
  img.header = header_for(spec, where);
  img.header_offset = spec.header_offset ? *spec.header_offset : align_up(end, 8);
  const std::uint64_t header_end = img.header_offset + img.header.size();
  img.data.assign(std::max(end, header_end), spec.pad);
  std::fill(img.data.begin(), img.data.begin() + 64, std::byte{0});
  for (std::size_t i = 0; i < spec.arrays.size(); ++i) {
    const auto& s = spec.arrays[i].stored;
    if (!s.empty()) std::memcpy(img.data.data() + where[i].offset, s.data(), s.size());
  }
  std::memcpy(img.data.data() + img.header_offset, img.header.data(), img.header.size());
  // The file ends with the header (and the trailer), even when the header overlaps arrays.
  img.data.resize(header_end);
  img.data.insert(img.data.end(), spec.trailer.begin(), spec.trailer.end());
  std::memcpy(img.data.data(), vitrify::magic, 8);
  put_u16(img.data, 8, spec.major);
  put_u16(img.data, 10, spec.minor);
  put_u32(img.data, 12, spec.flags);
  put_u32(img.data, 16, spec.alignment);
  put_u32(img.data, 20, spec.reserved);
  put_u64(img.data, 24, img.header_offset);
  put_u64(img.data, 32, img.header.size());
  put_u64(img.data, 40, img.header_offset + img.header.size());
  put_u64(img.data, 48, XXH3_64bits(img.header.data(), img.header.size()));
  reseal_preamble(img.data);
  return img;
}

vitrify::result<vitrify::file> open_image(std::span<const std::byte> b, const vitrify::open_options& opt) {
  return vitrify::file::from_bytes(b, opt, "<test image>");
}

vitrify::errc open_code(std::span<const std::byte> b, const vitrify::open_options& opt) {
  return open_image(b, opt).code();
}

void write_simple_file(const fs::path& path, std::string_view array_name, std::span<const std::byte> data) {
  vitrify::writer_options o;
  o.durable = false;
  auto w = vitrify::writer::create(path, o);
  if (!w) throw std::runtime_error(w.err().what());
  const std::uint64_t shape[] = {data.size()};
  auto r = w->add_array(array_name, vitrify::dtype::uint8, shape, data);
  if (!r) throw std::runtime_error(r.err().what());
  auto c = w->commit();
  if (!c) throw std::runtime_error(c.err().what());
}

}  // namespace vt
