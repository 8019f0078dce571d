// vitrify/sign.hpp - Ed25519 signatures of a file's content, stored in a VITSIG01 trailer block.
//
// The format is specified in docs/FORMAT.md, section 12.1 "Signature block (VITSIG01)". In short:
// the signed message is "vitrify-signature-v1\0" followed by SHA-256 of the file bytes
// [0, content_length) (preamble, arrays and header: everything but the trailer blocks); the
// signature is a trailer block with tag "VITSIG01" and a 100-byte body
// (u16 algorithm = 1, u16 reserved = 0, 32-byte Ed25519 public key, 64-byte signature).
// Signing never changes the signed bytes: the block is appended after them.
//
// A valid signature proves that the holder of the private key signed exactly these bytes. It
// does not prove that the content is benign, nor that the signer deserves trust: deciding which
// public keys to accept, and getting them to readers safely, is the caller's job (see
// docs/SECURITY.md).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vitrify/error.hpp"
#include "vitrify/reader.hpp"

namespace vitrify {

/// Trailer tag of a signature block (8 bytes, no terminator in the file).
inline constexpr std::string_view signature_tag = "VITSIG01";
/// Body length of a signature block: u16 algorithm, u16 reserved, 32-byte key, 64-byte signature.
inline constexpr std::size_t signature_body_size = 100;
/// Algorithm number of Ed25519 (RFC 8032, PureEdDSA) in the signature block.
inline constexpr std::uint16_t signature_algorithm_ed25519 = 1;
/// Domain-separation prefix of the signed message, including its terminating NUL (21 bytes).
inline constexpr std::string_view signature_domain{"vitrify-signature-v1\0", 21};
/// Length of the signed message: the prefix plus a SHA-256 digest.
inline constexpr std::size_t signed_message_size = 21 + 32;

/// An Ed25519 public key: its 32 raw bytes (RFC 8032 encoding).
struct public_key {
  std::array<std::byte, 32> bytes{};
  friend bool operator==(const public_key&, const public_key&) = default;
  /// Lowercase hex of the 32 bytes (64 characters).
  [[nodiscard]] std::string hex() const;
};

/// An Ed25519 private key (its 32-byte seed). The seed is wiped when the object is destroyed.
class private_key {
 public:
  private_key() = default;
  explicit private_key(std::span<const std::byte, 32> seed) noexcept;
  private_key(const private_key&) = default;
  private_key& operator=(const private_key&) = default;
  ~private_key();
  [[nodiscard]] std::span<const std::byte, 32> seed() const noexcept { return seed_; }
  /// The matching public key.
  [[nodiscard]] result<vitrify::public_key> public_key() const;

 private:
  std::array<std::byte, 32> seed_{};
};

/// The parsed body of a VITSIG01 block.
struct signature_block {
  std::uint16_t algorithm = 0;
  std::uint16_t reserved = 0;
  vitrify::public_key key;
  std::array<std::byte, 64> signature{};
};

/// A fresh Ed25519 key pair from the operating system's random source (OpenSSL).
result<private_key> generate_key();

/// Write `key` as an unencrypted PKCS#8 PEM file ("-----BEGIN PRIVATE KEY-----") created with
/// mode 0600, and its public key as a SubjectPublicKeyInfo PEM file ("-----BEGIN PUBLIC KEY-----").
/// Both files must not exist yet (errc::io_error with EEXIST otherwise): keys are never
/// overwritten. On failure nothing is left behind.
result<void> write_key_files(const private_key& key, const std::filesystem::path& private_path,
                             const std::filesystem::path& public_path);

/// Read a private key: an unencrypted PEM file holding an Ed25519 key (errc::key_error otherwise).
result<private_key> read_private_key(const std::filesystem::path& path);
/// Parse a private key from PEM text.
result<private_key> parse_private_key(std::span<const std::byte> pem);
/// Read a public key: a PEM public key ("-----BEGIN PUBLIC KEY-----", Ed25519) or a file of
/// exactly 32 raw bytes (errc::key_error otherwise).
result<public_key> read_public_key(const std::filesystem::path& path);
/// Parse a public key from PEM text or exactly 32 raw bytes.
result<public_key> parse_public_key(std::span<const std::byte> data);
/// PEM text of a public key (SubjectPublicKeyInfo).
result<std::string> public_key_pem(const public_key& key);

/// SHA-256 of the file's content, bytes [0, content_length).
result<std::array<std::byte, 32>> content_digest(const file& f);
/// The signed message for a content digest: signature_domain || digest (53 bytes).
std::array<std::byte, signed_message_size> signed_message(std::span<const std::byte, 32> digest);

/// The file's signature block: errc::signature_missing when it has no VITSIG01 block;
/// errc::signature_invalid when it has more than one, or a body that is not 100 bytes, an
/// unknown algorithm or a non-zero reserved field.
result<signature_block> read_signature(const file& f);

/// Verify `f` against the expected public key: exactly one well-formed VITSIG01 block, made with
/// `expected`, over the file's content; then every array (file::verify()). Errors:
/// signature_missing (unsigned), signature_invalid (wrong key, tampered content, malformed
/// block), or the first failing array check (checksum_mismatch, ...).
result<void> verify_signature(const file& f, const public_key& expected);

/// A signed copy of a file image: bytes [0, content_length) unchanged, then its trailer blocks
/// except any VITSIG01 block, then a new VITSIG01 block. The image is verified in full first
/// (a corrupt file is not signed).
result<std::vector<std::byte>> sign_bytes(std::span<const std::byte> image, const private_key& key);

struct sign_options {
  /// fsync the new file and its folder (see writer_options::durable).
  bool durable = true;
};

/// Sign the file at `path` in place, atomically: the file is verified in full, then a copy with
/// the new signature block (replacing any existing VITSIG01 block; other trailer blocks are kept)
/// is written to a temporary file in the same folder and renamed over `path`. The signed bytes
/// [0, content_length) do not change, nor does the file's mode. Refuses symbolic links.
result<void> sign_file(const std::filesystem::path& path, const private_key& key, const sign_options& opt = {});

}  // namespace vitrify
