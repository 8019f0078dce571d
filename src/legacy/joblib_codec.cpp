// Inputs of the legacy readers: memory-mapped files, and joblib's whole-file compression
// (zlib, gzip, bz2, xz/lzma, lz4, and joblib < 0.10's "ZF" files), decoded with the codecs'
// own libraries.
#include <bzlib.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <lzma.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy::detail {

namespace {
struct mapping {
  void* addr = nullptr;
  std::size_t len = 0;
  ~mapping() {
    if (addr && len) ::munmap(addr, len);
  }
};

error too_big(std::uint64_t max) {
  return fail(errc::limit_exceeded, "decompressed data exceeds the limit of " + std::to_string(max) + " bytes");
}

// Grow `out` for more output, bounded by `max`.
bool grow(std::vector<std::byte>& out, std::size_t used, std::uint64_t max) {
  if (used < out.size()) return true;
  if (out.size() >= max) return false;
  std::uint64_t next = std::max<std::uint64_t>(out.size() * 2, 1 << 16);
  out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(next, max)));
  return true;
}

result<std::vector<std::byte>> inflate_all(std::span<const std::byte> in, int window_bits, std::uint64_t max, bool multi_member) {
  std::vector<std::byte> out;
  std::size_t used = 0;
  std::size_t pos = 0;
  for (;;) {
    z_stream z{};
    if (inflateInit2(&z, window_bits) != Z_OK) return fail(errc::decompress_error, "zlib initialisation failed");
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      if (!grow(out, used, max)) {
        inflateEnd(&z);
        return too_big(max);
      }
      std::size_t in_chunk = std::min<std::size_t>(in.size() - pos, 1u << 30);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data() + pos));
      z.avail_in = static_cast<uInt>(in_chunk);
      std::size_t out_chunk = std::min<std::size_t>(out.size() - used, 1u << 30);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
      z.avail_out = static_cast<uInt>(out_chunk);
      rc = inflate(&z, Z_NO_FLUSH);
      pos += in_chunk - z.avail_in;
      used += out_chunk - z.avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_BUF_ERROR && z.avail_in == 0 && pos >= in.size()) {
        inflateEnd(&z);
        return fail(errc::truncated, "compressed stream is truncated");
      }
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        inflateEnd(&z);
        return fail(errc::decompress_error, std::string("corrupt compressed stream: ") + (z.msg ? z.msg : "zlib error"));
      }
    }
    inflateEnd(&z);
    if (pos == in.size()) break;
    if (multi_member && in.size() - pos >= 2 && in[pos] == std::byte{0x1f} && in[pos + 1] == std::byte{0x8b}) continue;
    return fail(errc::unsupported_feature, std::to_string(in.size() - pos) + " bytes after the end of the compressed stream");
  }
  out.resize(used);
  return out;
}

result<std::vector<std::byte>> bunzip_all(std::span<const std::byte> in, std::uint64_t max) {
  std::vector<std::byte> out;
  std::size_t used = 0, pos = 0;
  while (pos < in.size()) {
    bz_stream z{};
    if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK) return fail(errc::decompress_error, "bz2 initialisation failed");
    int rc = BZ_OK;
    while (rc != BZ_STREAM_END) {
      if (!grow(out, used, max)) {
        BZ2_bzDecompressEnd(&z);
        return too_big(max);
      }
      unsigned in_chunk = static_cast<unsigned>(std::min<std::size_t>(in.size() - pos, 1u << 30));
      unsigned out_chunk = static_cast<unsigned>(std::min<std::size_t>(out.size() - used, 1u << 30));
      z.next_in = reinterpret_cast<char*>(const_cast<std::byte*>(in.data() + pos));
      z.avail_in = in_chunk;
      z.next_out = reinterpret_cast<char*>(out.data() + used);
      z.avail_out = out_chunk;
      rc = BZ2_bzDecompress(&z);
      pos += in_chunk - z.avail_in;
      used += out_chunk - z.avail_out;
      if (rc != BZ_OK && rc != BZ_STREAM_END) {
        BZ2_bzDecompressEnd(&z);
        return fail(errc::decompress_error, "corrupt bz2 stream");
      }
      if (rc == BZ_OK && pos >= in.size() && z.avail_out != 0) {
        BZ2_bzDecompressEnd(&z);
        return fail(errc::truncated, "bz2 stream is truncated");
      }
    }
    BZ2_bzDecompressEnd(&z);
  }
  out.resize(used);
  return out;
}

result<std::vector<std::byte>> unxz_all(std::span<const std::byte> in, std::uint64_t max) {
  lzma_stream z = LZMA_STREAM_INIT;
  if (lzma_auto_decoder(&z, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) return fail(errc::decompress_error, "lzma initialisation failed");
  std::vector<std::byte> out;
  std::size_t used = 0;
  z.next_in = reinterpret_cast<const uint8_t*>(in.data());
  z.avail_in = in.size();
  lzma_action action = LZMA_RUN;
  for (;;) {
    if (!grow(out, used, max)) {
      lzma_end(&z);
      return too_big(max);
    }
    if (z.avail_in == 0) action = LZMA_FINISH;
    z.next_out = reinterpret_cast<uint8_t*>(out.data() + used);
    z.avail_out = out.size() - used;
    std::size_t before = z.avail_out;
    lzma_ret rc = lzma_code(&z, action);
    used += before - z.avail_out;
    if (rc == LZMA_STREAM_END) break;
    if (rc != LZMA_OK) {
      lzma_end(&z);
      return fail(rc == LZMA_BUF_ERROR ? errc::truncated : errc::decompress_error, "corrupt or truncated xz/lzma stream");
    }
  }
  lzma_end(&z);
  out.resize(used);
  return out;
}

result<std::vector<std::byte>> unlz4_all(std::span<const std::byte> in, std::uint64_t max) {
  LZ4F_dctx* ctx = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION))) return fail(errc::decompress_error, "lz4 initialisation failed");
  std::vector<std::byte> out;
  std::size_t used = 0, pos = 0;
  std::size_t hint = 1;
  while (pos < in.size()) {
    if (!grow(out, used, max)) {
      LZ4F_freeDecompressionContext(ctx);
      return too_big(max);
    }
    std::size_t src = in.size() - pos, dst = out.size() - used;
    hint = LZ4F_decompress(ctx, out.data() + used, &dst, in.data() + pos, &src, nullptr);
    if (LZ4F_isError(hint)) {
      LZ4F_freeDecompressionContext(ctx);
      return fail(errc::decompress_error, std::string("corrupt lz4 stream: ") + LZ4F_getErrorName(hint));
    }
    pos += src;
    used += dst;
    if (src == 0 && dst == 0 && used < out.size()) break;
  }
  LZ4F_freeDecompressionContext(ctx);
  if (hint != 0) return fail(errc::truncated, "lz4 stream is truncated");
  out.resize(used);
  return out;
}
}  // namespace

result<bytes_ref> map_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    error err = fail(errc::io_error, "cannot open " + path.string() + ": " + std::strerror(e));
    err.sys_errno = e;
    return err;
  }
  struct stat sb {};
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    return fail(errc::io_error, path.string() + " is not a regular file");
  }
  auto m = std::make_shared<mapping>();
  if (sb.st_size > 0) {
    void* a = ::mmap(nullptr, static_cast<std::size_t>(sb.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return fail(errc::io_error, "cannot map " + path.string() + ": " + std::strerror(e));
    }
    m->addr = a;
    m->len = static_cast<std::size_t>(sb.st_size);
  }
  ::close(fd);
  bytes_ref r;
  r.bytes = std::span<const std::byte>(static_cast<const std::byte*>(m->addr), m->len);
  r.owner = m;
  return r;
}

bytes_ref copy_bytes(std::span<const std::byte> data) {
  auto buf = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
  return bytes_ref{std::span<const std::byte>(buf->data(), buf->size()), buf};
}

codec sniff_codec(std::span<const std::byte> h) noexcept {
  auto at = [&](std::size_t i) { return i < h.size() ? static_cast<unsigned>(h[i]) : 0x100u; };
  if (at(0) == 'Z' && at(1) == 'F') return codec::joblib_zf;
  if (at(0) == 0x78 && at(1) < 0x100 && ((at(0) << 8) | at(1)) % 31 == 0) return codec::zlib;
  if (at(0) == 0x1f && at(1) == 0x8b) return codec::gzip;
  if (at(0) == 'B' && at(1) == 'Z' && at(2) == 'h') return codec::bz2;
  if (at(0) == 0xFD && at(1) == '7' && at(2) == 'z' && at(3) == 'X' && at(4) == 'Z' && at(5) == 0) return codec::xz;
  if (at(0) == 0x5D && at(1) == 0x00 && at(2) == 0x00) return codec::lzma;
  if (at(0) == 0x04 && at(1) == 0x22 && at(2) == 0x4D && at(3) == 0x18) return codec::lz4;
  return codec::none;
}

std::string_view codec_name(codec c) noexcept {
  switch (c) {
    case codec::none: return "none";
    case codec::zlib: return "zlib";
    case codec::gzip: return "gzip";
    case codec::bz2: return "bz2";
    case codec::xz: return "xz";
    case codec::lzma: return "lzma";
    case codec::lz4: return "lz4";
    case codec::joblib_zf: return "joblib-zfile";
  }
  return "?";
}

result<bytes_ref> decompress(codec c, std::span<const std::byte> data, std::uint64_t max_bytes) {
  result<std::vector<std::byte>> r = std::vector<std::byte>{};
  switch (c) {
    case codec::none: return bytes_ref{data, nullptr};
    case codec::zlib: r = inflate_all(data, 15, max_bytes, false); break;
    case codec::gzip: r = inflate_all(data, 16 + 15, max_bytes, true); break;
    case codec::bz2: r = bunzip_all(data, max_bytes); break;
    case codec::xz:
    case codec::lzma: r = unxz_all(data, max_bytes); break;
    case codec::lz4: r = unlz4_all(data, max_bytes); break;
    case codec::joblib_zf: {
      // joblib < 0.10: "ZF", the uncompressed length as hex text padded to 19 characters
      // (len(hex(2**64))), an optional space, then a zlib stream.
      constexpr std::size_t hdr = 2 + 19;
      if (data.size() < hdr) return fail(errc::truncated, "joblib ZF header truncated");
      std::string_view len_text(reinterpret_cast<const char*>(data.data() + 2), 19);
      while (!len_text.empty() && len_text.back() == ' ') len_text.remove_suffix(1);
      if (len_text.rfind("0x", 0) == 0) len_text.remove_prefix(2);
      if (!len_text.empty() && len_text.back() == 'L') len_text.remove_suffix(1);
      std::uint64_t declared = 0;
      auto pr = std::from_chars(len_text.data(), len_text.data() + len_text.size(), declared, 16);
      if (len_text.empty() || pr.ec != std::errc() || pr.ptr != len_text.data() + len_text.size())
        return fail(errc::decompress_error, "invalid joblib ZF length");
      std::size_t start = hdr;
      if (start < data.size() && data[start] == std::byte{' '}) ++start;
      r = inflate_all(data.subspan(start), 15, max_bytes, false);
      if (r && r->size() != declared) return fail(errc::decompress_error, "joblib ZF length does not match the data");
      break;
    }
  }
  if (!r) return std::move(r).err();
  auto buf = std::make_shared<std::vector<std::byte>>(std::move(r).value());
  return bytes_ref{std::span<const std::byte>(buf->data(), buf->size()), buf};
}

}  // namespace vitrify::legacy::detail
