// sign.cpp - Ed25519 signatures in a VITSIG01 trailer block (docs/FORMAT.md, section 12.1).
#include "vitrify/sign.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "format/internal.hpp"

namespace vitrify {

namespace {

using detail::load_u16;
using detail::load_u64;

constexpr std::uint64_t max_key_file_bytes = 64 * 1024;

std::string errno_text(int e) { return std::strerror(e); }
error sys_fail(const std::string& what, int e) { return error{errc::io_error, what + ": " + errno_text(e), e}; }

/// The most recent OpenSSL error as text; clears OpenSSL's error queue.
std::string ssl_error() {
  unsigned long code = ERR_peek_last_error();
  std::string s;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    s = buf;
  } else {
    s = "unknown OpenSSL error";
  }
  ERR_clear_error();
  return s;
}

struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct pkey_ctx_free {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct bio_free {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;
using pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_free>;
using bio_ptr = std::unique_ptr<BIO, bio_free>;

const unsigned char* uc(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* uc(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

/// Passphrase callback that refuses: encrypted PEM keys fail instead of prompting on a terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

result<pkey_ptr> make_private(const private_key& k) {
  pkey_ptr p(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, uc(k.seed().data()), 32));
  if (!p) return fail(errc::key_error, "cannot load the Ed25519 private key: " + ssl_error());
  return p;
}

result<pkey_ptr> make_public(const public_key& k) {
  pkey_ptr p(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, uc(k.bytes.data()), 32));
  if (!p) return fail(errc::key_error, "cannot load the Ed25519 public key: " + ssl_error());
  return p;
}

result<public_key> raw_public(EVP_PKEY* p) {
  public_key out;
  std::size_t n = out.bytes.size();
  if (EVP_PKEY_get_raw_public_key(p, uc(out.bytes.data()), &n) != 1 || n != out.bytes.size())
    return fail(errc::key_error, "cannot extract the Ed25519 public key: " + ssl_error());
  return out;
}

result<private_key> raw_private(EVP_PKEY* p) {
  std::array<std::byte, 32> seed{};
  std::size_t n = seed.size();
  if (EVP_PKEY_get_raw_private_key(p, uc(seed.data()), &n) != 1 || n != seed.size()) {
    OPENSSL_cleanse(seed.data(), seed.size());
    return fail(errc::key_error, "cannot extract the Ed25519 private key: " + ssl_error());
  }
  private_key k{std::span<const std::byte, 32>(seed)};
  OPENSSL_cleanse(seed.data(), seed.size());
  return k;
}

/// Read a small regular file (a key) completely.
result<std::vector<std::byte>> read_small_file(const std::filesystem::path& path, const char* what) {
  const std::string p = path.string();
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return sys_fail(p + ": cannot open " + what, e);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return sys_fail(p + ": cannot stat " + what, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(errc::key_error, p + ": " + what + " is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_key_file_bytes) {
    ::close(fd);
    return fail(errc::key_error, p + ": " + what + " is " + std::to_string(st.st_size) + " bytes; a key file is at most " +
                                     std::to_string(max_key_file_bytes));
  }
  std::vector<std::byte> buf(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t got = 0;
  while (got < buf.size()) {
    ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      OPENSSL_cleanse(buf.data(), buf.size());
      return sys_fail(p + ": cannot read " + what, e);
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  if (got > max_key_file_bytes) {
    OPENSSL_cleanse(buf.data(), buf.size());
    return fail(errc::key_error, p + ": " + what + " is larger than " + std::to_string(max_key_file_bytes) + " bytes");
  }
  buf.resize(got);
  return buf;
}

bool looks_like_pem(std::span<const std::byte> d) {
  std::string_view s(reinterpret_cast<const char*>(d.data()), d.size());
  std::size_t i = s.find_first_not_of(" \t\r\n");
  return i != std::string_view::npos && s.substr(i, 11) == "-----BEGIN ";
}

/// Write all of `data` to fd.
result<void> write_all(int fd, const std::byte* p, std::size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return sys_fail(what + ": write failed", errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

/// Create `path` exclusively (never following a symbolic link) with `mode`, write `data`, fsync.
result<void> create_exclusive(const std::string& path, std::string_view data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST) return error{errc::io_error, path + ": already exists; refusing to overwrite a key file", e};
    return sys_fail(path + ": cannot create", e);
  }
  auto r = write_all(fd, reinterpret_cast<const std::byte*>(data.data()), data.size(), path);
  if (r && ::fsync(fd) != 0) r = sys_fail(path + ": fsync failed", errno);
  if (::close(fd) != 0 && r) r = sys_fail(path + ": close failed", errno);
  if (!r) ::unlink(path.c_str());
  return r;
}

void fsync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

/// The signature block (16-byte head + 100-byte body) over `digest`.
result<std::vector<std::byte>> make_block(std::span<const std::byte, 32> digest, const private_key& key) {
  auto pk = make_private(key);
  if (!pk) return std::move(pk).err();
  auto pub = raw_public(pk->get());
  if (!pub) return std::move(pub).err();
  auto msg = signed_message(digest);
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx) return fail(errc::io_error, "out of memory (EVP_MD_CTX_new)");
  std::array<std::byte, 64> sig{};
  std::size_t siglen = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pk->get()) != 1 ||
      EVP_DigestSign(ctx.get(), uc(sig.data()), &siglen, uc(msg.data()), msg.size()) != 1 || siglen != sig.size())
    return fail(errc::key_error, "Ed25519 signing failed: " + ssl_error());
  std::vector<std::byte> block(16 + signature_body_size);
  std::memcpy(block.data(), signature_tag.data(), 8);
  detail::store_u64(block.data() + 8, signature_body_size);
  std::byte* body = block.data() + 16;
  detail::store_u16(body, signature_algorithm_ed25519);
  detail::store_u16(body + 2, 0);
  std::memcpy(body + 4, pub->bytes.data(), 32);
  std::memcpy(body + 36, sig.data(), 64);
  return block;
}

/// The bytes after the content of a signed copy of `f`: every trailer block except VITSIG01
/// ones, in their order, then the new signature block.
result<std::vector<std::byte>> new_trailer(const file& f, const private_key& key) {
  auto digest = content_digest(f);
  if (!digest) return std::move(digest).err();
  auto block = make_block(*digest, key);
  if (!block) return std::move(block).err();
  std::vector<std::byte> out;
  for (const auto& t : f.trailers()) {
    if (t.tag == signature_tag) continue;
    std::size_t at = out.size();
    out.resize(at + 16 + t.body.size());
    std::memcpy(out.data() + at, t.tag.data(), 8);
    detail::store_u64(out.data() + at + 8, t.body.size());
    if (!t.body.empty()) std::memcpy(out.data() + at + 16, t.body.data(), t.body.size());
  }
  out.insert(out.end(), block->begin(), block->end());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

std::string public_key::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(64);
  for (std::byte b : bytes) {
    s += digits[static_cast<unsigned>(b) >> 4];
    s += digits[static_cast<unsigned>(b) & 15];
  }
  return s;
}

private_key::private_key(std::span<const std::byte, 32> seed) noexcept {
  std::memcpy(seed_.data(), seed.data(), 32);
}

private_key::~private_key() { OPENSSL_cleanse(seed_.data(), seed_.size()); }

result<public_key> private_key::public_key() const {
  auto pk = make_private(*this);
  if (!pk) return std::move(pk).err();
  return raw_public(pk->get());
}

result<private_key> generate_key() {
  pkey_ctx_ptr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    return fail(errc::key_error, "Ed25519 key generation failed: " + ssl_error());
  pkey_ptr p(raw);
  return raw_private(p.get());
}

result<std::string> public_key_pem(const public_key& key) {
  auto pk = make_public(key);
  if (!pk) return std::move(pk).err();
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pk->get()) != 1)
    return fail(errc::key_error, "cannot encode the public key as PEM: " + ssl_error());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

result<void> write_key_files(const private_key& key, const std::filesystem::path& private_path,
                             const std::filesystem::path& public_path) {
  const std::string priv = private_path.string(), pub = public_path.string();
  if (priv.empty() || pub.empty()) return fail(errc::invalid_argument, "empty key file path");
  if (private_path == public_path) return fail(errc::invalid_argument, priv + ": private and public key paths are the same");
  struct stat st {};
  if (::lstat(priv.c_str(), &st) == 0)
    return error{errc::io_error, priv + ": already exists; refusing to overwrite a key file", EEXIST};
  if (::lstat(pub.c_str(), &st) == 0)
    return error{errc::io_error, pub + ": already exists; refusing to overwrite a key file", EEXIST};

  auto pk = make_private(key);
  if (!pk) return std::move(pk).err();
  auto pubkey = raw_public(pk->get());
  if (!pubkey) return std::move(pubkey).err();
  auto pub_pem = public_key_pem(*pubkey);
  if (!pub_pem) return std::move(pub_pem).err();

  std::string priv_pem;
  {
    bio_ptr bio(BIO_new(BIO_s_secmem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), pk->get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
      return fail(errc::key_error, "cannot encode the private key as PEM: " + ssl_error());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    priv_pem.assign(data, static_cast<std::size_t>(n));
  }
  auto r = create_exclusive(priv, priv_pem, 0600);
  OPENSSL_cleanse(priv_pem.data(), priv_pem.size());
  if (!r) return r;
  // The private key must not be readable by others whatever the umask.
  if (::chmod(priv.c_str(), 0600) != 0) {
    int e = errno;
    ::unlink(priv.c_str());
    return sys_fail(priv + ": chmod 0600 failed", e);
  }
  auto r2 = create_exclusive(pub, *pub_pem, 0644);
  if (!r2) {
    ::unlink(priv.c_str());
    return r2;
  }
  std::filesystem::path d1 = private_path.parent_path(), d2 = public_path.parent_path();
  fsync_dir(d1.empty() ? "." : d1.string());
  if (d2 != d1) fsync_dir(d2.empty() ? "." : d2.string());
  return {};
}

result<private_key> parse_private_key(std::span<const std::byte> pem) {
  if (pem.size() > max_key_file_bytes) return fail(errc::key_error, "a private key is at most 64 KiB of PEM text");
  if (!looks_like_pem(pem))
    return fail(errc::key_error, "a private key must be a PEM file (-----BEGIN PRIVATE KEY-----), as written by `vitrify keygen`");
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail(errc::io_error, "out of memory (BIO_new_mem_buf)");
  pkey_ptr p(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!p) return fail(errc::key_error, "not a readable unencrypted PEM private key: " + ssl_error());
  if (EVP_PKEY_id(p.get()) != EVP_PKEY_ED25519) return fail(errc::key_error, "the private key is not an Ed25519 key");
  return raw_private(p.get());
}

result<private_key> read_private_key(const std::filesystem::path& path) {
  auto data = read_small_file(path, "private key file");
  if (!data) return std::move(data).err();
  auto k = parse_private_key(*data);
  OPENSSL_cleanse(data->data(), data->size());
  if (!k) return fail(k.code(), path.string() + ": " + k.err().message);
  return k;
}

result<public_key> parse_public_key(std::span<const std::byte> data) {
  if (data.size() == 32) {
    public_key k;
    std::memcpy(k.bytes.data(), data.data(), 32);
    // Reject byte strings that are not a valid curve point encoding early.
    auto p = make_public(k);
    if (!p) return std::move(p).err();
    return k;
  }
  if (data.size() > max_key_file_bytes) return fail(errc::key_error, "a public key is at most 64 KiB of PEM text");
  if (!looks_like_pem(data))
    return fail(errc::key_error, "a public key must be a PEM public key (-----BEGIN PUBLIC KEY-----) or exactly 32 raw bytes, got " +
                                     std::to_string(data.size()) + " bytes of something else");
  bio_ptr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return fail(errc::io_error, "out of memory (BIO_new_mem_buf)");
  pkey_ptr p(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  if (!p) return fail(errc::key_error, "not a readable PEM public key: " + ssl_error());
  if (EVP_PKEY_id(p.get()) != EVP_PKEY_ED25519) return fail(errc::key_error, "the public key is not an Ed25519 key");
  return raw_public(p.get());
}

result<public_key> read_public_key(const std::filesystem::path& path) {
  auto data = read_small_file(path, "public key file");
  if (!data) return std::move(data).err();
  auto k = parse_public_key(*data);
  if (!k) return fail(k.code(), path.string() + ": " + k.err().message);
  return k;
}

// ---------------------------------------------------------------------------------------------
// Digest, signature block, verification
// ---------------------------------------------------------------------------------------------

result<std::array<std::byte, 32>> content_digest(const file& f) {
  auto all = f.bytes();
  std::array<std::byte, 32> out{};
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return fail(errc::io_error, "cannot initialise SHA-256: " + ssl_error());
  // Hash in slices of at most 1 GiB (any size_t would do; this keeps single calls bounded).
  const std::byte* p = all.data();
  std::uint64_t left = f.content_length();
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, 1ull << 30));
    if (EVP_DigestUpdate(ctx.get(), p, n) != 1) return fail(errc::io_error, "SHA-256 failed: " + ssl_error());
    p += n;
    left -= n;
  }
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), uc(out.data()), &len) != 1 || len != 32)
    return fail(errc::io_error, "SHA-256 failed: " + ssl_error());
  return out;
}

std::array<std::byte, signed_message_size> signed_message(std::span<const std::byte, 32> digest) {
  std::array<std::byte, signed_message_size> m{};
  std::memcpy(m.data(), signature_domain.data(), signature_domain.size());
  std::memcpy(m.data() + signature_domain.size(), digest.data(), 32);
  return m;
}

result<signature_block> read_signature(const file& f) {
  const file::trailer_block* found = nullptr;
  std::size_t count = 0;
  for (const auto& t : f.trailers()) {
    if (t.tag != signature_tag) continue;
    ++count;
    if (!found) found = &t;
  }
  if (count == 0) return fail(errc::signature_missing, f.name() + ": the file is not signed (no VITSIG01 trailer block)");
  if (count > 1)
    return fail(errc::signature_invalid, f.name() + ": the file holds " + std::to_string(count) +
                                             " VITSIG01 signature blocks; exactly one is allowed");
  if (found->body.size() != signature_body_size)
    return fail(errc::signature_invalid, f.name() + ": the VITSIG01 block body is " + std::to_string(found->body.size()) +
                                             " bytes, not " + std::to_string(signature_body_size));
  signature_block b;
  const std::byte* p = found->body.data();
  b.algorithm = load_u16(p);
  b.reserved = load_u16(p + 2);
  if (b.algorithm != signature_algorithm_ed25519)
    return fail(errc::signature_invalid, f.name() + ": unknown signature algorithm " + std::to_string(b.algorithm) +
                                             " (this reader knows 1 = Ed25519)");
  if (b.reserved != 0) return fail(errc::signature_invalid, f.name() + ": the signature block's reserved field is not zero");
  std::memcpy(b.key.bytes.data(), p + 4, 32);
  std::memcpy(b.signature.data(), p + 36, 64);
  return b;
}

result<void> verify_signature(const file& f, const public_key& expected) {
  auto b = read_signature(f);
  if (!b) return std::move(b).err();
  if (!(b->key == expected))
    return fail(errc::signature_invalid, f.name() + ": signed by another key (" + b->key.hex() + "), not by the expected key (" +
                                             expected.hex() + ")");
  auto digest = content_digest(f);
  if (!digest) return std::move(digest).err();
  auto msg = signed_message(*digest);
  auto pk = make_public(expected);
  if (!pk) return std::move(pk).err();
  md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx) return fail(errc::io_error, "out of memory (EVP_MD_CTX_new)");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pk->get()) != 1)
    return fail(errc::key_error, "cannot initialise Ed25519 verification: " + ssl_error());
  int ok = EVP_DigestVerify(ctx.get(), uc(b->signature.data()), b->signature.size(), uc(msg.data()), msg.size());
  ERR_clear_error();
  if (ok != 1)
    return fail(errc::signature_invalid, f.name() + ": the signature does not match the file's content (the file was changed "
                                             "after it was signed, or the signature is not genuine)");
  // The signature covers the array table's checksums; checking the arrays against them makes
  // the signature cover every array byte for readers that trust checksums from here on.
  return f.verify();
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

result<std::vector<std::byte>> sign_bytes(std::span<const std::byte> image, const private_key& key) {
  auto f = file::from_bytes(image);
  if (!f) return std::move(f).err();
  VITRIFY_TRY(f->verify());
  auto trailer = new_trailer(*f, key);
  if (!trailer) return std::move(trailer).err();
  std::vector<std::byte> out(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(f->content_length()));
  out.insert(out.end(), trailer->begin(), trailer->end());
  return out;
}

result<void> sign_file(const std::filesystem::path& path, const private_key& key, const sign_options& opt) {
  const std::string target = path.string();
  if (target.empty()) return fail(errc::invalid_argument, "empty path");
  struct stat lst {};
  if (::lstat(target.c_str(), &lst) != 0) return sys_fail(target + ": cannot stat", errno);
  if (S_ISLNK(lst.st_mode))
    return fail(errc::invalid_argument, target + ": is a symbolic link; sign the file it points to instead");
  auto f = file::open(path);
  if (!f) return std::move(f).err();
  VITRIFY_TRY(f->verify());
  auto trailer = new_trailer(*f, key);
  if (!trailer) return std::move(trailer).err();

  std::filesystem::path parent = path.parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  std::string tmp = (parent.empty() ? std::string() : parent.string() + "/") + "." + path.filename().string() +
                    ".vit-sig-XXXXXX";
  std::vector<char> tmpl(tmp.begin(), tmp.end());
  tmpl.push_back('\0');
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return sys_fail(target + ": cannot create a temporary file in " + dir, errno);
  tmp.assign(tmpl.data());
  auto cleanup = [&](error e) -> result<void> {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  // Same permission bits as the file being replaced.
  if (::fchmod(fd, lst.st_mode & 07777) != 0) return cleanup(sys_fail(tmp + ": chmod failed", errno));
  {
    auto all = f->bytes();
    const std::byte* p = all.data();
    std::uint64_t left = f->content_length();
    while (left > 0) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, 64u << 20));
      auto w = write_all(fd, p, n, tmp);
      if (!w) return cleanup(std::move(w).err());
      p += n;
      left -= n;
    }
    auto w = write_all(fd, trailer->data(), trailer->size(), tmp);
    if (!w) return cleanup(std::move(w).err());
  }
  if (opt.durable && ::fsync(fd) != 0) return cleanup(sys_fail(tmp + ": fsync failed", errno));
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) return cleanup(sys_fail(tmp + ": close failed", errno));
  if (::lstat(target.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
    return cleanup(fail(errc::invalid_argument, target + ": became a symbolic link; refusing to replace it"));
  if (::rename(tmp.c_str(), target.c_str()) != 0) return cleanup(sys_fail(target + ": rename failed", errno));
  if (opt.durable) {
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      int r = ::fsync(dfd);
      int e = errno;
      ::close(dfd);
      if (r != 0) return sys_fail(dir + ": fsync of folder failed", e);
    }
  }
  return {};
}

}  // namespace vitrify
