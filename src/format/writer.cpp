#include "vitrify/writer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <thread>
#include <unordered_set>

#include "format/internal.hpp"
#include "vitrify/reader.hpp"

namespace vitrify {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

/// An io_error carrying errno (read before anything else can change it).
error sys_fail(const std::string& what, int e) { return error{errc::io_error, what + ": " + errno_text(e), e}; }

constexpr std::size_t buffer_capacity = 1u << 20;  // staging buffer for small writes

struct entry {
  std::string name;
  dtype type;
  std::vector<std::uint64_t> shape;
  std::uint64_t offset, length, decoded_length;
  codec how;
  int level;
  std::uint64_t xxh3;
  value attrs;
};

void collect_refs(const value& v, std::vector<const std::string*>& out) {
  if (v.is(value::kind::array_ref)) out.push_back(&v.as_string());
  for (const value& c : v.items()) collect_refs(c, out);
}

}  // namespace

struct writer::impl {
  writer_options opt;
  bool in_memory = false;
  int fd = -1;
  std::string target, tmp, dir;
  bool committed = false;
  error failed;  // sticky: once a write fails the writer refuses further work

  std::vector<std::byte> mem;  // in-memory destination
  std::vector<std::byte> buf;  // staging buffer (file destination)
  std::uint64_t pos = 0;       // bytes emitted so far

  std::vector<entry> entries;
  std::unordered_set<std::string> names;
  value sections[4];

  ZSTD_CCtx* cctx = nullptr;
  std::vector<std::byte> zout;

  ~impl() {
    if (cctx) ZSTD_freeCCtx(cctx);
    if (fd >= 0) ::close(fd);
    if (!committed && !tmp.empty()) ::unlink(tmp.c_str());
  }

  result<void> check_ok() const {
    if (failed.code != errc::ok) return failed;
    if (committed) return fail(errc::invalid_argument, "writer already committed");
    return {};
  }

  result<void> raw_write(const std::byte* p, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return sys_fail(target + ": write failed", errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return {};
  }

  result<void> flush() {
    if (in_memory || buf.empty()) return {};
    auto r = raw_write(buf.data(), buf.size());
    buf.clear();
    return r;
  }

  result<void> emit(const std::byte* p, std::size_t n) {
    if (n == 0) return {};
    pos += n;
    if (in_memory) {
      mem.insert(mem.end(), p, p + n);
      return {};
    }
    if (n < (64u << 10) && buf.size() + n <= buffer_capacity) {
      buf.insert(buf.end(), p, p + n);
      return {};
    }
    VITRIFY_TRY(flush());
    if (n >= (64u << 10)) return raw_write(p, n);  // large: straight from the caller's memory
    buf.insert(buf.end(), p, p + n);
    return {};
  }

  result<void> pad_to(std::uint64_t alignment) {
    std::uint64_t target_pos;
    if (!detail::align_up(pos, alignment, &target_pos)) return fail(errc::invalid_argument, "file too large");
    static constexpr std::byte zeros[4096] = {};
    while (pos < target_pos) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(target_pos - pos, sizeof zeros));
      VITRIFY_TRY(emit(zeros, n));
    }
    return {};
  }

  /// Write one array's decoded bytes (given as consecutive pieces), raw or compressed.
  result<void> write_payload(std::span<const std::span<const std::byte>> pieces, std::uint64_t decoded, array_codec how,
                             std::uint64_t* stored, std::uint64_t* sum) {
    XXH3_state_t* st = XXH3_createState();
    if (!st) return fail(errc::io_error, "out of memory");
    std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> guard(st, XXH3_freeState);
    XXH3_64bits_reset(st);
    std::uint64_t start = pos;
    if (how.codec == codec::raw) {
      if (in_memory && mem.capacity() - mem.size() < decoded) {
        std::uint64_t want = 0;
        if (!detail::add_overflow(static_cast<std::uint64_t>(mem.size()), decoded, &want))
          mem.reserve(static_cast<std::size_t>(std::max<std::uint64_t>(want, 2 * static_cast<std::uint64_t>(mem.capacity()))));
      }
      // Hash and write in chunks that stay in the CPU cache between the two passes.
      constexpr std::size_t chunk = 256u << 10;
      for (auto p : pieces) {
        for (std::size_t off = 0; off < p.size(); off += chunk) {
          const std::size_t n = std::min(chunk, p.size() - off);
          XXH3_64bits_update(st, p.data() + off, n);
          VITRIFY_TRY(emit(p.data() + off, n));
        }
      }
    } else {
      if (!cctx) cctx = ZSTD_createCCtx();
      if (!cctx) return fail(errc::io_error, "cannot allocate a zstd context");
      ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
      std::size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, how.level);
      if (ZSTD_isError(r)) return fail(errc::invalid_argument, std::string("bad zstd level: ") + ZSTD_getErrorName(r));
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);  // XXH3 over the stored bytes covers it
      if (decoded >= (4u << 20)) {
        unsigned threads = opt.compression_threads ? opt.compression_threads : std::thread::hardware_concurrency();
        // Ignored (single-threaded) when libzstd was built without threads.
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, static_cast<int>(std::max(1u, std::min(threads, 64u))));
      }
      ZSTD_CCtx_setPledgedSrcSize(cctx, decoded);
      zout.resize(ZSTD_CStreamOutSize());
      auto drain = [&](ZSTD_outBuffer& ob) -> result<void> {
        XXH3_64bits_update(st, zout.data(), ob.pos);
        auto w = emit(zout.data(), ob.pos);
        ob.pos = 0;
        return w;
      };
      for (std::size_t k = 0; k < pieces.size(); ++k) {
        auto p = pieces[k];
        // Feed in slices so that the input is never copied as a whole.
        std::size_t off = 0;
        do {
          std::size_t chunk = std::min<std::size_t>(p.size() - off, 4u << 20);
          ZSTD_inBuffer ib{p.data() + off, chunk, 0};
          bool last = (k + 1 == pieces.size()) && (off + chunk == p.size());
          ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
          while (true) {
            ZSTD_outBuffer ob{zout.data(), zout.size(), 0};
            std::size_t rem = ZSTD_compressStream2(cctx, &ob, &ib, mode);
            if (ZSTD_isError(rem)) return fail(errc::io_error, std::string("zstd: ") + ZSTD_getErrorName(rem));
            VITRIFY_TRY(drain(ob));
            if (last ? rem == 0 : ib.pos == ib.size) break;
          }
          off += chunk;
        } while (off < p.size());
      }
      if (pieces.empty()) {
        ZSTD_inBuffer ib{nullptr, 0, 0};
        while (true) {
          ZSTD_outBuffer ob{zout.data(), zout.size(), 0};
          std::size_t rem = ZSTD_compressStream2(cctx, &ob, &ib, ZSTD_e_end);
          if (ZSTD_isError(rem)) return fail(errc::io_error, std::string("zstd: ") + ZSTD_getErrorName(rem));
          VITRIFY_TRY(drain(ob));
          if (rem == 0) break;
        }
      }
    }
    *stored = pos - start;
    *sum = XXH3_64bits_digest(st);
    return {};
  }

  result<void> add(std::string_view name, dtype type, std::span<const std::uint64_t> shape, std::uint64_t decoded,
                   std::span<const std::span<const std::byte>> pieces, array_codec how, value attrs) {
    VITRIFY_TRY(check_ok());
    VITRIFY_TRY(detail::check_name(name, limits{}.max_name_bytes));
    if (names.count(std::string(name))) return fail(errc::duplicate_name, "array \"" + std::string(name) + "\" added twice");
    if (shape.size() > limits{}.max_rank) return fail(errc::limit_exceeded, "array \"" + std::string(name) + "\": rank too large");
    if (how.codec != codec::raw && how.codec != codec::zstd) return fail(errc::unknown_codec, "unknown codec");
    if (how.codec == codec::zstd && (how.level < ZSTD_minCLevel() || how.level > ZSTD_maxCLevel()))
      return fail(errc::invalid_argument, "array \"" + std::string(name) + "\": zstd level " + std::to_string(how.level) +
                                              " outside [" + std::to_string(ZSTD_minCLevel()) + ", " + std::to_string(ZSTD_maxCLevel()) + "]");
    if (!attrs.is(value::kind::null) && !attrs.is(value::kind::dict))
      return fail(errc::invalid_argument, "array \"" + std::string(name) + "\": attrs must be a dict");
    auto r = pad_to(opt.alignment);
    if (!r) {
      failed = r.err();
      return r;
    }
    entry e{std::string(name), type, {shape.begin(), shape.end()}, pos, 0, decoded, how.codec,
            how.codec == codec::zstd ? how.level : 0, 0, std::move(attrs)};
    r = write_payload(pieces, decoded, how, &e.length, &e.xxh3);
    if (!r) {
      failed = r.err();
      return r;
    }
    names.insert(e.name);
    entries.push_back(std::move(e));
    return {};
  }

  /// Required features the arrays use, in a fixed order (FORMAT.md section 5: list a feature
  /// only when the file uses it).
  std::vector<std::string_view> features() const {
    std::vector<std::string_view> out;
    for (const auto& e : entries) {
      std::string_view feat = dtype_feature(e.type);
      if (!feat.empty() && std::find(out.begin(), out.end(), feat) == out.end()) out.push_back(feat);
    }
    return out;
  }

  /// The lowest minor version that describes everything the file uses.
  std::uint16_t minor_version() const {
    std::uint16_t m = format_minor;
    for (const auto& e : entries) m = std::max(m, dtype_minor(e.type));
    return m;
  }

  std::string header_json() const {
    std::string h;
    h.reserve(256 + entries.size() * 200);
    h += R"({"format":"vitrify","required_features":[)";
    bool any_feature = false;
    for (std::string_view feat : features()) {
      if (any_feature) h += ',';
      any_feature = true;
      detail::append_json_string(h, feat);
    }
    h += R"(],"arrays":[)";
    bool first = true;
    for (const auto& e : entries) {
      if (!first) h += ',';
      first = false;
      h += R"({"name":)";
      detail::append_json_string(h, e.name);
      h += R"(,"dtype":")";
      h += dtype_name(e.type);
      h += R"(","shape":[)";
      for (std::size_t k = 0; k < e.shape.size(); ++k) {
        if (k) h += ',';
        h += std::to_string(e.shape[k]);
      }
      h += R"(],"offset":)" + std::to_string(e.offset);
      h += R"(,"length":)" + std::to_string(e.length);
      h += R"(,"decoded_length":)" + std::to_string(e.decoded_length);
      h += R"(,"codec":")";
      h += codec_name(e.how);
      h += '"';
      if (e.how == codec::zstd) h += R"(,"level":)" + std::to_string(e.level);
      h += R"(,"xxh3":")" + detail::hex64(e.xxh3) + '"';
      if (!e.attrs.is(value::kind::null)) {
        h += R"(,"attrs":)";
        append_json(h, e.attrs);
      }
      h += '}';
    }
    h += ']';
    static constexpr const char* section_names[4] = {"metadata", "environment", "provenance", "content"};
    for (int s = 0; s < 4; ++s) {
      if (sections[s].is(value::kind::null)) continue;
      h += ",\"";
      h += section_names[s];
      h += "\":";
      append_json(h, sections[s]);
    }
    h += '}';
    return h;
  }

  result<void> commit() {
    VITRIFY_TRY(check_ok());
    // Every "$array" reference must name an array of this file.
    std::vector<const std::string*> refs;
    for (const auto& s : sections) collect_refs(s, refs);
    for (const auto& e : entries) collect_refs(e.attrs, refs);
    for (const std::string* r : refs)
      if (!names.count(*r)) return fail(errc::invalid_argument, "$array reference \"" + *r + "\" names no array added to this writer");
    // Every typed value must read back: re-parse all sections and attributes together with the
    // reader's own rules ($shared ids are unique across the whole header), so that a writer never
    // produces a file its readers reject.
    {
      std::vector<value> all;
      for (const auto& sec : sections) all.push_back(sec);
      for (const auto& e : entries) all.push_back(e.attrs);
      auto r = parse_value(to_json(value::list(std::move(all))));
      if (!r) return fail(errc::invalid_argument, "header values: " + r.err().message);
    }
    std::string h = header_json();
    // Readers reject a header that is not UTF-8: never emit one (strings in values come from callers).
    if (!detail::valid_utf8(h.data(), h.size()))
      return fail(errc::invalid_argument, "a string in the metadata or attributes is not valid UTF-8");
    if (h.size() > limits{}.max_header_bytes)
      return fail(errc::limit_exceeded, "header would be " + std::to_string(h.size()) + " bytes, over the reader limit");
    VITRIFY_TRY(pad_to(8));
    std::uint64_t header_offset = pos;
    VITRIFY_TRY(emit(reinterpret_cast<const std::byte*>(h.data()), h.size()));
    VITRIFY_TRY(flush());

    std::byte pre[preamble_size] = {};
    std::memcpy(pre, magic, sizeof magic);
    detail::store_u16(pre + 8, format_major);
    detail::store_u16(pre + 10, minor_version());
    detail::store_u32(pre + 12, 0);
    detail::store_u32(pre + 16, opt.alignment);
    detail::store_u32(pre + 20, 0);
    detail::store_u64(pre + 24, header_offset);
    detail::store_u64(pre + 32, h.size());
    detail::store_u64(pre + 40, header_offset + h.size());
    detail::store_u64(pre + 48, XXH3_64bits(h.data(), h.size()));
    detail::store_u64(pre + 56, XXH3_64bits(pre, detail::preamble_checked_bytes));

    if (in_memory) {
      std::memcpy(mem.data(), pre, preamble_size);
      committed = true;
      return {};
    }
    std::size_t done = 0;
    while (done < preamble_size) {
      ssize_t w = ::pwrite(fd, pre + done, preamble_size - done, static_cast<off_t>(done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return sys_fail(target + ": write failed", errno);
      }
      done += static_cast<std::size_t>(w);
    }
    if (opt.durable && ::fsync(fd) != 0) return sys_fail(target + ": fsync failed", errno);
    if (::close(fd) != 0) {
      fd = -1;
      return sys_fail(target + ": close failed", errno);
    }
    fd = -1;
    struct stat lst {};
    if (::lstat(target.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
      return fail(errc::invalid_argument, target + ": target is a symbolic link; refusing to replace it");
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      return sys_fail(target + ": rename failed", errno);
    committed = true;
    if (opt.durable) {
      int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        int rc = ::fsync(dfd);
        int e = errno;
        ::close(dfd);
        if (rc != 0) return sys_fail(dir + ": fsync of folder failed", e);
      }
    }
    return {};
  }
};

writer::writer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
writer::writer(writer&&) noexcept = default;
writer& writer::operator=(writer&&) noexcept = default;
writer::~writer() = default;

/// Remove `dir/prefix*` files that no live writer holds a lock on (see writer::create).
static void remove_stale_temporaries(const std::string& dir, const std::string& prefix, const std::string& mine) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n.size() != prefix.size() + 6 || n.substr(0, prefix.size()) != prefix) continue;
    if (n == mine) continue;
    std::string path = dir + "/" + std::string(n);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    // A writer locks its file before writing its first byte, so an empty file may belong to a
    // writer that has not locked it yet: only non-empty, unlocked files are stale.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0)
      ::unlink(path.c_str());
    ::close(fd);
  }
  ::closedir(d);
}

static result<void> check_options(const writer_options& opt) {
  if (opt.alignment < 64 || opt.alignment > 4096 || (opt.alignment & (opt.alignment - 1)) != 0)
    return fail(errc::invalid_argument, "alignment " + std::to_string(opt.alignment) + " is not a power of two in [64, 4096]");
  return {};
}

result<writer> writer::create(const std::filesystem::path& path, const writer_options& opt) {
  VITRIFY_TRY(check_options(opt));
  auto p = std::make_unique<impl>();
  p->opt = opt;
  p->target = path.string();
  if (p->target.empty()) return fail(errc::invalid_argument, "empty path");
  struct stat lst {};
  if (::lstat(p->target.c_str(), &lst) == 0) {
    if (S_ISLNK(lst.st_mode))
      return fail(errc::invalid_argument, p->target + ": target is a symbolic link; refusing to replace it");
    if (S_ISDIR(lst.st_mode)) return fail(errc::invalid_argument, p->target + ": target is a folder");
  }
  std::filesystem::path parent = path.parent_path();
  p->dir = parent.empty() ? std::string(".") : parent.string();
  std::string base = path.filename().string();
  p->tmp = (parent.empty() ? std::string() : parent.string() + "/") + "." + base + ".vit-tmp-XXXXXX";
  std::vector<char> tmpl(p->tmp.begin(), p->tmp.end());
  tmpl.push_back('\0');
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    p->tmp.clear();
    return sys_fail(p->target + ": cannot create a temporary file in " + p->dir, e);
  }
  p->tmp.assign(tmpl.data());
  p->fd = fd;
  // The lock marks the temporary file as in use for as long as this process lives (the kernel
  // drops it when the process dies, SIGKILL included). Temporary files of the same target whose
  // lock can be taken belong to writers that died: remove them.
  ::flock(fd, LOCK_EX);
  remove_stale_temporaries(p->dir, "." + base + ".vit-tmp-", std::filesystem::path(p->tmp).filename().string());
  // mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask).
  mode_t um = ::umask(0);
  ::umask(um);
  ::fchmod(fd, 0666 & ~um);
  p->buf.reserve(buffer_capacity);
  static constexpr std::byte zeros[preamble_size] = {};
  auto r = p->emit(zeros, preamble_size);  // placeholder, rewritten by commit()
  if (!r) return std::move(r).err();
  return writer(std::move(p));
}

result<writer> writer::create_in_memory(const writer_options& opt) {
  VITRIFY_TRY(check_options(opt));
  auto p = std::make_unique<impl>();
  p->opt = opt;
  p->in_memory = true;
  p->target = "<memory>";
  static constexpr std::byte zeros[preamble_size] = {};
  auto r = p->emit(zeros, preamble_size);
  if (!r) return std::move(r).err();
  return writer(std::move(p));
}

result<void> writer::add_array(std::string_view name, dtype type, std::span<const std::uint64_t> shape,
                               std::span<const std::byte> data, array_codec how, value attrs) {
  if (type == dtype::string || static_cast<std::size_t>(type) >= dtype_count)
    return fail(errc::invalid_argument, "add_array: use add_string_array for string arrays");
  std::uint64_t bytes = 0;
  auto cnt = detail::element_count(shape);
  if (!cnt) return fail(errc::invalid_argument, "add_array \"" + std::string(name) + "\": " + cnt.err().message);
  std::uint64_t count = *cnt;
  if (detail::mul_overflow(count, dtype_size(type), &bytes)) return fail(errc::invalid_argument, "add_array: size overflows");
  if (bytes != data.size())
    return fail(errc::invalid_argument, "add_array \"" + std::string(name) + "\": data has " + std::to_string(data.size()) +
                                            " bytes, dtype x shape needs " + std::to_string(bytes));
  if (type == dtype::bool_)
    for (std::size_t k = 0; k < data.size(); ++k)
      if (static_cast<unsigned char>(data[k]) > 1)
        return fail(errc::invalid_argument, "add_array \"" + std::string(name) + "\": bool element " + std::to_string(k) +
                                                " is neither 0 nor 1");
  std::span<const std::byte> pieces[1] = {data};
  return impl_->add(name, type, shape, bytes, pieces, how, std::move(attrs));
}

result<void> writer::add_bytes(std::string_view name, std::span<const std::span<const std::byte>> pieces,
                               array_codec how, value attrs) {
  std::uint64_t total = 0;
  for (const auto& p : pieces)
    if (detail::add_overflow(total, static_cast<std::uint64_t>(p.size()), &total))
      return fail(errc::invalid_argument, "add_bytes: size overflows");
  const std::uint64_t shape[1] = {total};
  return impl_->add(name, dtype::uint8, shape, total, pieces, how, std::move(attrs));
}

result<void> writer::add_string_array(std::string_view name, std::span<const std::uint64_t> shape,
                                      std::span<const std::uint64_t> offsets, std::span<const std::byte> text,
                                      array_codec how, value attrs) {
  auto cnt = detail::element_count(shape);
  if (!cnt) return fail(errc::invalid_argument, "add_string_array \"" + std::string(name) + "\": " + cnt.err().message);
  std::uint64_t count = *cnt;
  const std::string wa = "add_string_array \"" + std::string(name) + "\"";
  if (count == UINT64_MAX || offsets.empty() || offsets.size() != count + 1)
    return fail(errc::invalid_argument, wa + ": needs count + 1 offsets");
  if (offsets[0] != 0 || offsets.back() != text.size())
    return fail(errc::bad_string_array, wa + ": offsets must start at 0 and end at the text size");
  const char* t = reinterpret_cast<const char*>(text.data());
  for (std::size_t k = 1; k < offsets.size(); ++k) {
    if (offsets[k] < offsets[k - 1]) return fail(errc::bad_string_array, wa + ": offsets decrease");
    if (offsets[k] > text.size()) return fail(errc::bad_string_array, wa + ": offset past the end of the text");
    if (!detail::valid_utf8(t + offsets[k - 1], offsets[k] - offsets[k - 1]))
      return fail(errc::bad_string_array, wa + ": element " + std::to_string(k - 1) + " is not valid UTF-8");
  }
  std::span<const std::byte> pieces[2] = {std::as_bytes(offsets), text};
  return impl_->add(name, dtype::string, shape, offsets.size_bytes() + text.size(), pieces, how, std::move(attrs));
}

result<void> writer::add_string_array(std::string_view name, std::span<const std::uint64_t> shape,
                                      std::span<const std::string> strings, array_codec how, value attrs) {
  std::vector<std::uint64_t> offsets;
  offsets.reserve(strings.size() + 1);
  offsets.push_back(0);
  std::string text;
  for (const auto& s : strings) {
    text += s;
    offsets.push_back(text.size());
  }
  return add_string_array(name, shape, offsets, std::as_bytes(std::span<const char>(text)), how, std::move(attrs));
}

void writer::set_metadata(value v) { impl_->sections[0] = std::move(v); }
void writer::set_environment(value v) { impl_->sections[1] = std::move(v); }
void writer::set_provenance(value v) { impl_->sections[2] = std::move(v); }
void writer::set_content(value v) { impl_->sections[3] = std::move(v); }
std::size_t writer::array_count() const noexcept { return impl_->entries.size(); }

result<void> writer::commit() {
  auto r = impl_->commit();
  if (!r && impl_->failed.code == errc::ok) impl_->failed = r.err();
  return r;
}

std::vector<std::byte> writer::take_bytes() {
  if (!impl_->in_memory || !impl_->committed) return {};
  return std::move(impl_->mem);
}

}  // namespace vitrify
