// Zip archives (PyTorch checkpoints, .npz) read with minizip over memory: the central directory
// gives the members; stored members are views of the mapped archive (torch writes its storages
// uncompressed and 64-byte aligned), deflated ones are decoded into a buffer.
#include <minizip/unzip.h>

#include <cstring>
#include <set>

#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy::detail {

namespace {

struct mem_file {
  std::span<const std::byte> data;
  std::uint64_t pos = 0;
};

voidpf ZCALLBACK mem_open(voidpf opaque, const void*, int mode) {
  if (mode & ZLIB_FILEFUNC_MODE_WRITE) return nullptr;
  auto* src = static_cast<const std::span<const std::byte>*>(opaque);
  return new mem_file{*src, 0};
}
uLong ZCALLBACK mem_read(voidpf, voidpf stream, void* buf, uLong size) {
  auto* f = static_cast<mem_file*>(stream);
  std::uint64_t n = std::min<std::uint64_t>(size, f->pos < f->data.size() ? f->data.size() - f->pos : 0);
  if (n) std::memcpy(buf, f->data.data() + f->pos, n);
  f->pos += n;
  return static_cast<uLong>(n);
}
uLong ZCALLBACK mem_write(voidpf, voidpf, const void*, uLong) { return 0; }
ZPOS64_T ZCALLBACK mem_tell(voidpf, voidpf stream) { return static_cast<mem_file*>(stream)->pos; }
long ZCALLBACK mem_seek(voidpf, voidpf stream, ZPOS64_T offset, int origin) {
  auto* f = static_cast<mem_file*>(stream);
  std::uint64_t base;
  switch (origin) {
    case ZLIB_FILEFUNC_SEEK_SET: base = 0; break;
    case ZLIB_FILEFUNC_SEEK_CUR: base = f->pos; break;
    case ZLIB_FILEFUNC_SEEK_END: base = f->data.size(); break;
    default: return -1;
  }
  if (offset > f->data.size() || base > f->data.size() - offset) return -1;
  f->pos = base + offset;
  return 0;
}
int ZCALLBACK mem_close(voidpf, voidpf stream) {
  delete static_cast<mem_file*>(stream);
  return 0;
}
int ZCALLBACK mem_error(voidpf, voidpf) { return 0; }

struct unz_closer {
  unzFile f = nullptr;
  ~unz_closer() {
    if (f) unzClose(f);
  }
};

unzFile open_mem(std::span<const std::byte>* src) {
  zlib_filefunc64_def ff{};
  ff.zopen64_file = mem_open;
  ff.zread_file = mem_read;
  ff.zwrite_file = mem_write;
  ff.ztell64_file = mem_tell;
  ff.zseek64_file = mem_seek;
  ff.zclose_file = mem_close;
  ff.zerror_file = mem_error;
  ff.opaque = src;
  return unzOpen2_64("memory", &ff);
}

}  // namespace

result<zip_archive> zip_list(std::span<const std::byte> archive) {
  std::span<const std::byte> src = archive;
  unz_closer u{open_mem(&src)};
  if (!u.f) return fail(errc::unknown_format, "not a readable zip archive (no valid central directory)");
  zip_archive out;
  std::set<std::string> names;
  int rc = unzGoToFirstFile(u.f);
  std::size_t count = 0;
  while (rc == UNZ_OK) {
    if (++count > 1'000'000) return fail(errc::limit_exceeded, "zip archive with more than 1000000 members");
    unz_file_info64 fi{};
    if (unzGetCurrentFileInfo64(u.f, &fi, nullptr, 0, nullptr, 0, nullptr, 0) != UNZ_OK)
      return fail(errc::bad_layout, "unreadable zip central directory entry");
    if (fi.size_filename > 65535) return fail(errc::bad_layout, "zip member name too long");
    std::string name(fi.size_filename, '\0');
    if (unzGetCurrentFileInfo64(u.f, &fi, name.data(), static_cast<uLong>(name.size()), nullptr, 0, nullptr, 0) != UNZ_OK)
      return fail(errc::bad_layout, "unreadable zip central directory entry");
    zip_entry e;
    e.name = name;
    e.compressed_size = fi.compressed_size;
    e.size = fi.uncompressed_size;
    e.method = static_cast<int>(fi.compression_method);
    e.encrypted = (fi.flag & 1) != 0;
    if (!names.insert(name).second) out.problems.push_back("zip member '" + name + "' appears more than once");
    if (e.encrypted) {
      out.problems.push_back("zip member '" + name + "' is encrypted");
    } else if (unzOpenCurrentFile(u.f) == UNZ_OK) {
      e.offset = unzGetCurrentFileZStreamPos64(u.f);
      unzCloseCurrentFile(u.f);
      if (e.offset > archive.size() || e.compressed_size > archive.size() - e.offset) {
        out.problems.push_back("zip member '" + name + "' extends past the end of the archive");
        e.method = -1;
      }
    } else {
      out.problems.push_back("zip member '" + name + "' has an unreadable local header");
      e.method = -1;
    }
    if (e.method == 0 && e.size != e.compressed_size) {
      out.problems.push_back("stored zip member '" + name + "' has inconsistent sizes");
      e.method = -1;
    }
    out.entries.push_back(std::move(e));
    rc = unzGoToNextFile(u.f);
  }
  if (rc != UNZ_END_OF_LIST_OF_FILE) out.problems.push_back("zip central directory ends unexpectedly");
  return out;
}

result<bytes_ref> zip_read(const bytes_ref& archive, const zip_entry& e, std::uint64_t max_bytes) {
  if (e.encrypted) return fail(errc::unsupported_feature, "encrypted zip member '" + e.name + "'");
  if (e.method == 0) return bytes_ref{archive.bytes.subspan(e.offset, e.size), archive.owner};
  if (e.method != 8) return fail(errc::unsupported_feature, "zip member '" + e.name + "' uses compression method " + std::to_string(e.method));
  if (e.size > max_bytes) return fail(errc::limit_exceeded, "zip member '" + e.name + "' is larger than the limit");
  // Deflate cannot compress better than about 1032:1: a larger declared size is a lie, and
  // the buffer is allocated from it.
  if (e.size / 1100 > e.compressed_size + 64)
    return fail(errc::decompress_error, "zip member '" + e.name + "' declares an impossible compression ratio");
  std::span<const std::byte> src = archive.bytes;
  unz_closer u{open_mem(&src)};
  if (!u.f) return fail(errc::unknown_format, "not a readable zip archive");
  // Find the member by its data offset (names may repeat).
  int rc = unzGoToFirstFile(u.f);
  while (rc == UNZ_OK) {
    if (unzOpenCurrentFile(u.f) == UNZ_OK) {
      if (unzGetCurrentFileZStreamPos64(u.f) == e.offset) break;
      unzCloseCurrentFile(u.f);
    }
    rc = unzGoToNextFile(u.f);
  }
  if (rc != UNZ_OK) return fail(errc::not_found, "zip member '" + e.name + "' not found");
  auto buf = std::make_shared<std::vector<std::byte>>(e.size);
  std::uint64_t got = 0;
  while (got < e.size) {
    int n = unzReadCurrentFile(u.f, buf->data() + got, static_cast<unsigned>(std::min<std::uint64_t>(e.size - got, 1u << 30)));
    if (n < 0) {
      unzCloseCurrentFile(u.f);
      return fail(errc::decompress_error, "corrupt zip member '" + e.name + "'");
    }
    if (n == 0) break;
    got += static_cast<std::uint64_t>(n);
  }
  char extra;
  int more = unzReadCurrentFile(u.f, &extra, 1);
  int close_rc = unzCloseCurrentFile(u.f);
  if (got != e.size || more != 0) return fail(errc::decompress_error, "zip member '" + e.name + "' does not decode to its declared size");
  if (close_rc == UNZ_CRCERROR) return fail(errc::checksum_mismatch, "zip member '" + e.name + "' fails its CRC-32 check");
  return bytes_ref{std::span<const std::byte>(buf->data(), buf->size()), buf};
}

}  // namespace vitrify::legacy::detail
