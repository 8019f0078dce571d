// test_sign.cpp - Ed25519 signatures (VITSIG01 trailer block): keys, signing, verification,
// tampering, and the `vitrify keygen / sign / verify --pubkey` commands.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "vitrify/sign.hpp"

using namespace vitrify;

namespace {

/// A small file image: a raw float32 array, a zstd array, a string array and metadata.
vt::bytes sample_image() {
  writer_options o;
  o.durable = false;
  auto w = writer::create_in_memory(o);
  EXPECT_TRUE(w.ok());
  std::vector<float> x(100);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f;
  const std::uint64_t sx[] = {10, 10};
  EXPECT_TRUE(w->add_array("weights", dtype::float32, sx, vt::as_bytes(x)).ok());
  auto z = vt::pattern_bytes(5000, 7);
  const std::uint64_t sz[] = {z.size()};
  EXPECT_TRUE(w->add_array("packed", dtype::uint8, sz, z, array_codec{codec::zstd, 3}).ok());
  std::string strs[] = {"alpha", "beta"};
  const std::uint64_t ss[] = {2};
  EXPECT_TRUE(w->add_string_array("labels", ss, std::span<const std::string>(strs)).ok());
  value md = value::dict();
  md.dict_set(value::string("task"), value::string("demo"));
  w->set_metadata(md);
  EXPECT_TRUE(w->commit().ok());
  return w->take_bytes();
}

private_key fresh_key() {
  auto k = generate_key();
  EXPECT_TRUE(k.ok()) << k.err().what();
  return *k;
}

public_key pub_of(const private_key& k) {
  auto p = k.public_key();
  EXPECT_TRUE(p.ok());
  return *p;
}

vt::bytes signed_image(const private_key& k) {
  auto s = sign_bytes(sample_image(), k);
  EXPECT_TRUE(s.ok()) << s.err().what();
  return *s;
}

errc verify_code(std::span<const std::byte> image, const public_key& pk) {
  auto f = vt::open_image(image);
  if (!f) return f.code();
  return verify_signature(*f, pk).code();
}

std::size_t count_sig_blocks(const file& f) {
  std::size_t n = 0;
  for (const auto& t : f.trailers()) n += t.tag == signature_tag;
  return n;
}

/// A block head + body appended to an image.
void append_block(vt::bytes& img, std::string_view tag, const vt::bytes& body) {
  std::size_t at = img.size();
  img.resize(at + 16 + body.size());
  std::memcpy(img.data() + at, tag.data(), 8);
  vt::put_u64(img, at + 8, body.size());
  if (!body.empty()) std::memcpy(img.data() + at + 16, body.data(), body.size());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

TEST(SignKeys, GenerateWriteReadRoundTrip) {
  vt::temp_dir d;
  auto k = fresh_key();
  ASSERT_OK(write_key_files(k, d / "key", d / "key.pub"));
  struct stat st {};
  ASSERT_EQ(::stat((d / "key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "private key must be readable by its owner only";
  auto priv_text = vt::to_string(vt::read_bytes(d / "key"));
  auto pub_text = vt::to_string(vt::read_bytes(d / "key.pub"));
  EXPECT_NE(priv_text.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(pub_text.find("-----BEGIN PUBLIC KEY-----"), std::string::npos);

  auto k2 = read_private_key(d / "key");
  ASSERT_OK(k2);
  EXPECT_TRUE(std::equal(k.seed().begin(), k.seed().end(), k2->seed().begin()));
  auto pk = read_public_key(d / "key.pub");
  ASSERT_OK(pk);
  EXPECT_EQ(*pk, pub_of(k));
  EXPECT_EQ(pk->hex().size(), 64u);

  // Raw 32-byte public key files are accepted too.
  vt::write_bytes(d / "raw.pub", std::span<const std::byte>(pk->bytes));
  auto raw = read_public_key(d / "raw.pub");
  ASSERT_OK(raw);
  EXPECT_EQ(*raw, *pk);
}

TEST(SignKeys, NeverOverwritesKeyFiles) {
  vt::temp_dir d;
  auto k = fresh_key();
  ASSERT_OK(write_key_files(k, d / "key", d / "key.pub"));
  auto before = vt::read_bytes(d / "key");
  auto r = write_key_files(fresh_key(), d / "key", d / "other.pub");
  EXPECT_EQ(r.code(), errc::io_error);
  EXPECT_EQ(r.err().sys_errno, EEXIST);
  EXPECT_EQ(vt::read_bytes(d / "key"), before);
  EXPECT_FALSE(vt::fs::exists(d / "other.pub"));
  // An existing public key file also stops keygen before the private key is written.
  r = write_key_files(fresh_key(), d / "new", d / "key.pub");
  EXPECT_EQ(r.code(), errc::io_error);
  EXPECT_FALSE(vt::fs::exists(d / "new"));
}

TEST(SignKeys, RejectsWhatIsNotAnEd25519Key) {
  vt::temp_dir d;
  // A P-256 public key: valid PEM, wrong algorithm.
  const std::string ec_pub =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+f+pcEJjcpIrJForoBUvxzmX+uvJ\n"
      "MMwkceitGP/8hv/oaUKo5FKqQJkvBYeRDqZv7Z3uFh0Cm2i5B8u61d6bdg==\n"
      "-----END PUBLIC KEY-----\n";
  EXPECT_CODE(parse_public_key(vt::to_bytes(ec_pub)), errc::key_error);
  EXPECT_CODE(parse_public_key(vt::to_bytes("not a key at all")), errc::key_error);
  EXPECT_CODE(parse_public_key(vt::bytes(31)), errc::key_error);
  EXPECT_CODE(parse_public_key(vt::to_bytes("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")),
              errc::key_error);
  // A private key is not accepted where a public key is expected, and vice versa.
  auto k = fresh_key();
  ASSERT_OK(write_key_files(k, d / "key", d / "key.pub"));
  EXPECT_CODE(read_public_key(d / "key"), errc::key_error);
  EXPECT_CODE(read_private_key(d / "key.pub"), errc::key_error);
  EXPECT_CODE(read_private_key(d / "missing"), errc::io_error);
  EXPECT_CODE(read_public_key(d.path()), errc::key_error);  // a folder
  // Huge files are refused before being read.
  vt::write_bytes(d / "big.pub", vt::bytes(100000, std::byte{'A'}));
  EXPECT_CODE(read_public_key(d / "big.pub"), errc::key_error);
}

// ---------------------------------------------------------------------------------------------
// Block layout and the signed message (the spec, checked independently with OpenSSL)
// ---------------------------------------------------------------------------------------------

TEST(Sign, BlockLayoutAndMessageFollowTheSpec) {
  auto k = fresh_key();
  auto img = sample_image();
  auto s = sign_bytes(img, k);
  ASSERT_OK(s);
  // The content is unchanged and exactly one 116-byte block follows it.
  ASSERT_EQ(s->size(), img.size() + 16 + 100);
  EXPECT_TRUE(std::equal(img.begin(), img.end(), s->begin()));
  const std::byte* b = s->data() + img.size();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b), 8), "VITSIG01");
  EXPECT_EQ(vt::get_u64(*s, img.size() + 8), 100u);
  std::uint16_t alg, reserved;
  std::memcpy(&alg, b + 16, 2);
  std::memcpy(&reserved, b + 18, 2);
  EXPECT_EQ(alg, 1);
  EXPECT_EQ(reserved, 0);
  auto pk = pub_of(k);
  EXPECT_EQ(std::memcmp(b + 20, pk.bytes.data(), 32), 0);

  // message = "vitrify-signature-v1\0" || SHA-256(file[0:content_length]), PureEd25519.
  unsigned char digest[32];
  unsigned int dl = 0;
  ASSERT_EQ(EVP_Digest(img.data(), img.size(), digest, &dl, EVP_sha256(), nullptr), 1);
  std::string msg("vitrify-signature-v1", 20);
  msg.push_back('\0');
  msg.append(reinterpret_cast<const char*>(digest), 32);
  ASSERT_EQ(msg.size(), 53u);
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                              reinterpret_cast<const unsigned char*>(pk.bytes.data()), 32);
  ASSERT_NE(key, nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(b + 52), 64,
                             reinterpret_cast<const unsigned char*>(msg.data()), msg.size()),
            1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);

  auto f = vt::open_image(*s);
  ASSERT_OK(f);
  auto dig = content_digest(*f);
  ASSERT_OK(dig);
  EXPECT_EQ(std::memcmp(dig->data(), digest, 32), 0);
}

TEST(Sign, KnownAnswerForTheWorkedExample) {
  // docs/FORMAT.md, section 12.1: the worked example's tiny.vit signed with the key of RFC 8032,
  // test 1. Ed25519 is deterministic, so the block is fixed.
  auto w = writer::create_in_memory();
  ASSERT_OK(w);
  std::int32_t x[3] = {1, 2, 3};
  const std::uint64_t sx[] = {3}, ss[] = {2};
  ASSERT_OK(w->add_array("x", dtype::int32, sx, std::as_bytes(std::span(x))));
  std::string strs[] = {"hi", "vit"};
  ASSERT_OK(w->add_string_array("s", ss, std::span<const std::string>(strs)));
  value m = value::dict();
  m.dict_set(value::string("task"), value::string("demo"));
  w->set_metadata(m);
  ASSERT_OK(w->commit());
  auto img = w->take_bytes();
  ASSERT_EQ(img.size(), 493u);
  auto hex = [](std::span<const std::byte> b) {
    std::string s;
    static constexpr char d[] = "0123456789abcdef";
    for (std::byte c : b) {
      s += d[static_cast<unsigned>(c) >> 4];
      s += d[static_cast<unsigned>(c) & 15];
    }
    return s;
  };
  unsigned char sha[32];
  unsigned int dl = 0;
  ASSERT_EQ(EVP_Digest(img.data(), img.size(), sha, &dl, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(hex(std::as_bytes(std::span(sha))), "fe6da4642a510a1d562f658f35c7857de30c5f7a449836baa9755232f295d235");
  const unsigned char seed[32] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
                                  0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
                                  0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
  private_key k{std::span<const std::byte, 32>(reinterpret_cast<const std::byte*>(seed), 32)};
  auto s = sign_bytes(img, k);
  ASSERT_OK(s);
  EXPECT_EQ(hex(std::span(*s).subspan(493)),
            "5649545349473031640000000000000001000000"
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
            "4a772ba1477009a217bc1ab160d97638379d314197d954d7d19f1274711be1ad"
            "1578c502383df34c81255dad32b8d1522dd9eabb7c093cf08cdc46e670112200");
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

TEST(Sign, ValidSignatureVerifies) {
  auto k = fresh_key();
  auto s = signed_image(k);
  EXPECT_EQ(verify_code(s, pub_of(k)), errc::ok);
  auto f = vt::open_image(s);
  ASSERT_OK(f);
  auto blk = read_signature(*f);
  ASSERT_OK(blk);
  EXPECT_EQ(blk->algorithm, signature_algorithm_ed25519);
  EXPECT_EQ(blk->key, pub_of(k));
}

TEST(Sign, SignedFileStillOpensAndReadsNormally) {
  auto k = fresh_key();
  auto img = sample_image();
  auto s = signed_image(k);
  auto f = vt::open_image(s);
  ASSERT_OK(f);
  EXPECT_OK(f->verify());
  EXPECT_EQ(f->content_length(), img.size());
  ASSERT_EQ(f->trailers().size(), 1u);
  auto plain = vt::open_image(img);
  ASSERT_OK(plain);
  ASSERT_EQ(f->arrays().size(), plain->arrays().size());
  for (std::size_t i = 0; i < f->arrays().size(); ++i) {
    std::vector<std::byte> a(f->arrays()[i].decoded_length), b(a.size());
    ASSERT_OK(f->read_into(i, a));
    ASSERT_OK(plain->read_into(i, b));
    EXPECT_EQ(a, b);
  }
  EXPECT_EQ(f->metadata(), plain->metadata());
}

TEST(Sign, UnsignedFileIsSignatureMissing) {
  auto k = fresh_key();
  EXPECT_EQ(verify_code(sample_image(), pub_of(k)), errc::signature_missing);
}

TEST(Sign, StrippedSignatureIsSignatureMissing) {
  auto k = fresh_key();
  auto s = signed_image(k);
  auto f = vt::open_image(s);
  ASSERT_OK(f);
  s.resize(f->content_length());  // remove the trailer block
  EXPECT_EQ(verify_code(s, pub_of(k)), errc::signature_missing);
}

TEST(Sign, TamperedArrayByteIsSignatureInvalid) {
  auto k = fresh_key();
  auto s = signed_image(k);
  auto f = vt::open_image(s);
  ASSERT_OK(f);
  auto idx = f->find("weights");
  ASSERT_OK(idx);
  std::uint64_t off = f->arrays()[*idx].offset + 17;
  s[off] ^= std::byte{0x01};
  // Structure still verifies (array checksums are checked on demand) ...
  ASSERT_OK(vt::open_image(s));
  // ... but the signature does not.
  EXPECT_EQ(verify_code(s, pub_of(k)), errc::signature_invalid);

  // Same for a compressed array.
  auto s2 = signed_image(k);
  auto f2 = vt::open_image(s2);
  ASSERT_OK(f2);
  auto zi = f2->find("packed");
  ASSERT_OK(zi);
  s2[f2->arrays()[*zi].offset + 3] ^= std::byte{0x80};
  EXPECT_EQ(verify_code(s2, pub_of(k)), errc::signature_invalid);
}

TEST(Sign, TamperedHeaderWithFixedChecksumIsSignatureInvalid) {
  auto k = fresh_key();
  auto s = signed_image(k);
  auto f = vt::open_image(s);
  ASSERT_OK(f);
  const std::uint64_t hoff = vt::get_u64(s, 24), hlen = vt::get_u64(s, 32);
  std::string h = vt::header_of(s);
  auto at = h.find("\"demo\"");
  ASSERT_NE(at, std::string::npos);
  s[hoff + at + 1] = std::byte{'D'};  // "demo" -> "Demo": same length, valid JSON
  // Fix up the header checksum and the preamble checksum, so only the signature notices.
  vt::put_u64(s, 48, XXH3_64bits(s.data() + hoff, hlen));
  vt::reseal_preamble(s);
  auto g = vt::open_image(s);
  ASSERT_OK(g);
  EXPECT_OK(g->verify());
  EXPECT_EQ(verify_code(s, pub_of(k)), errc::signature_invalid);
}

TEST(Sign, SignatureFromAnotherKeyIsSignatureInvalid) {
  auto k1 = fresh_key(), k2 = fresh_key();
  auto s = signed_image(k1);
  EXPECT_EQ(verify_code(s, pub_of(k2)), errc::signature_invalid);

  // An attacker re-signing tampered content with their own key is caught by the key check.
  auto t = sample_image();
  auto f = vt::open_image(t);
  ASSERT_OK(f);
  auto evil = sign_bytes(t, k2);
  ASSERT_OK(evil);
  EXPECT_EQ(verify_code(*evil, pub_of(k1)), errc::signature_invalid);

  // Swapping the embedded public key for the expected one does not help: the signature fails.
  auto forged = *evil;
  auto pk1 = pub_of(k1);
  std::memcpy(forged.data() + t.size() + 16 + 4, pk1.bytes.data(), 32);
  EXPECT_EQ(verify_code(forged, pk1), errc::signature_invalid);
}

TEST(Sign, TamperedSignatureBytesAreSignatureInvalid) {
  auto k = fresh_key();
  auto base = signed_image(k);
  const std::size_t content = sample_image().size();
  for (std::size_t i : {0u, 31u, 63u}) {
    auto s = base;
    s[content + 16 + 36 + i] ^= std::byte{0x40};
    EXPECT_EQ(verify_code(s, pub_of(k)), errc::signature_invalid) << "signature byte " << i;
  }
}

TEST(Sign, MalformedBlocksAreSignatureInvalid) {
  auto k = fresh_key();
  auto pk = pub_of(k);
  const auto content = sample_image();
  auto s = signed_image(k);
  vt::bytes body(s.begin() + static_cast<std::ptrdiff_t>(content.size()) + 16, s.end());
  ASSERT_EQ(body.size(), 100u);

  auto two = s;
  append_block(two, "VITSIG01", body);  // two signature blocks
  EXPECT_EQ(verify_code(two, pk), errc::signature_invalid);

  for (std::size_t len : {0u, 99u, 101u}) {
    auto bad = content;
    vt::bytes b(body);
    b.resize(len, std::byte{0});
    append_block(bad, "VITSIG01", b);
    ASSERT_EQ(vt::open_code(bad), errc::ok) << "readers ignore the block's body";
    EXPECT_EQ(verify_code(bad, pk), errc::signature_invalid) << "body length " << len;
  }
  {
    auto bad = content;
    vt::bytes b(body);
    b[0] = std::byte{2};  // unknown algorithm
    append_block(bad, "VITSIG01", b);
    EXPECT_EQ(verify_code(bad, pk), errc::signature_invalid);
  }
  {
    auto bad = content;
    vt::bytes b(body);
    b[2] = std::byte{1};  // reserved field
    append_block(bad, "VITSIG01", b);
    EXPECT_EQ(verify_code(bad, pk), errc::signature_invalid);
  }
}

TEST(Sign, OtherTrailerBlocksAreKeptAndNotCovered) {
  auto k = fresh_key();
  auto img = sample_image();
  append_block(img, "XTRA0001", vt::to_bytes("hello"));
  auto s = sign_bytes(img, k);
  ASSERT_OK(s);
  auto f = vt::open_image(*s);
  ASSERT_OK(f);
  ASSERT_EQ(f->trailers().size(), 2u);
  EXPECT_EQ(f->trailers()[0].tag, "XTRA0001");
  EXPECT_EQ(f->trailers()[1].tag, "VITSIG01");
  EXPECT_EQ(verify_code(*s, pub_of(k)), errc::ok);
  // Blocks appended after signing do not invalidate it (the signature covers the content only).
  auto more = *s;
  append_block(more, "XTRA0002", vt::to_bytes("later"));
  EXPECT_EQ(verify_code(more, pub_of(k)), errc::ok);
}

TEST(Sign, ResigningReplacesTheSignature) {
  auto k1 = fresh_key(), k2 = fresh_key();
  auto s1 = signed_image(k1);
  auto s2 = sign_bytes(s1, k2);
  ASSERT_OK(s2);
  EXPECT_EQ(s2->size(), s1.size());
  auto f = vt::open_image(*s2);
  ASSERT_OK(f);
  EXPECT_EQ(count_sig_blocks(*f), 1u);
  EXPECT_EQ(verify_code(*s2, pub_of(k2)), errc::ok);
  EXPECT_EQ(verify_code(*s2, pub_of(k1)), errc::signature_invalid);
  // Ed25519 is deterministic: signing the same content again with the same key is a no-op.
  auto s3 = sign_bytes(s1, k1);
  ASSERT_OK(s3);
  EXPECT_EQ(*s3, s1);
}

TEST(Sign, CorruptFilesAreNotSigned) {
  auto k = fresh_key();
  auto img = sample_image();
  auto f = vt::open_image(img);
  ASSERT_OK(f);
  img[f->arrays()[0].offset] ^= std::byte{1};
  EXPECT_CODE(sign_bytes(img, k), errc::checksum_mismatch);
}

TEST(Sign, VerificationAlsoChecksEveryArray) {
  // A signature over content whose array does not match its recorded checksum (only possible if
  // the signer bypassed sign_bytes) still fails verification: the checksums are part of the deal.
  auto k = fresh_key();
  auto img = sample_image();
  auto f0 = vt::open_image(img);
  ASSERT_OK(f0);
  img[f0->arrays()[0].offset] ^= std::byte{1};
  auto f = vt::open_image(img);
  ASSERT_OK(f);
  auto digest = content_digest(*f);
  ASSERT_OK(digest);
  auto msg = signed_message(*digest);
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                               reinterpret_cast<const unsigned char*>(k.seed().data()), 32);
  ASSERT_NE(key, nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  std::size_t sl = sizeof sig;
  ASSERT_EQ(EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key), 1);
  ASSERT_EQ(EVP_DigestSign(ctx, sig, &sl, reinterpret_cast<const unsigned char*>(msg.data()), msg.size()), 1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  vt::bytes body(100);
  vt::put_u16(body, 0, 1);
  auto pk = pub_of(k);
  std::memcpy(body.data() + 4, pk.bytes.data(), 32);
  std::memcpy(body.data() + 36, sig, 64);
  append_block(img, "VITSIG01", body);
  EXPECT_EQ(verify_code(img, pk), errc::checksum_mismatch);
}

// ---------------------------------------------------------------------------------------------
// Signing files on disk
// ---------------------------------------------------------------------------------------------

TEST(SignFile, AtomicInPlaceKeepsContentAndMode) {
  vt::temp_dir d;
  auto img = sample_image();
  auto path = d / "m.vit";
  vt::write_bytes(path, img);
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  auto k = fresh_key();
  ASSERT_OK(sign_file(path, k, sign_options{false}));
  auto after = vt::read_bytes(path);
  ASSERT_EQ(after.size(), img.size() + 116);
  EXPECT_TRUE(std::equal(img.begin(), img.end(), after.begin()));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(d.entries(), std::vector<std::string>{"m.vit"}) << "no temporary file left behind";
  auto f = file::open(path);
  ASSERT_OK(f);
  EXPECT_OK(verify_signature(*f, pub_of(k)));

  // Re-sign (durable) with another key: still one block, same size.
  auto k2 = fresh_key();
  ASSERT_OK(sign_file(path, k2));
  EXPECT_EQ(vt::read_bytes(path).size(), after.size());
  auto g = file::open(path);
  ASSERT_OK(g);
  EXPECT_OK(verify_signature(*g, pub_of(k2)));
  EXPECT_CODE(verify_signature(*g, pub_of(k)), errc::signature_invalid);
}

TEST(SignFile, RefusesSymlinksAndBadFiles) {
  vt::temp_dir d;
  auto img = sample_image();
  vt::write_bytes(d / "real.vit", img);
  vt::fs::create_symlink(d / "real.vit", d / "link.vit");
  auto k = fresh_key();
  EXPECT_CODE(sign_file(d / "link.vit", k), errc::invalid_argument);
  EXPECT_EQ(vt::read_bytes(d / "real.vit"), img);
  EXPECT_CODE(sign_file(d / "missing.vit", k), errc::io_error);
  // A corrupt file is left untouched.
  auto bad = img;
  auto f = vt::open_image(img);
  ASSERT_OK(f);
  bad[f->arrays()[0].offset] ^= std::byte{1};
  vt::write_bytes(d / "bad.vit", bad);
  EXPECT_CODE(sign_file(d / "bad.vit", k), errc::checksum_mismatch);
  EXPECT_EQ(vt::read_bytes(d / "bad.vit"), bad);
  auto names = d.entries();
  EXPECT_EQ(names, (std::vector<std::string>{"bad.vit", "link.vit", "real.vit"}));
}

// ---------------------------------------------------------------------------------------------
// Command-line tool
// ---------------------------------------------------------------------------------------------

#ifdef VITRIFY_CLI_PATH
namespace {

struct run_result {
  int code = -1;
  std::string out, err;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

run_result run_cli(const std::vector<std::string>& args, const vt::temp_dir& dir) {
  std::string cmd = shell_quote(VITRIFY_CLI_PATH);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  auto out = dir / "stdout.txt", err = dir / "stderr.txt";
  cmd += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string()) + " </dev/null";
  int st = std::system(cmd.c_str());
  run_result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  r.out = vt::to_string(vt::read_bytes(out));
  r.err = vt::to_string(vt::read_bytes(err));
  vt::fs::remove(out);
  vt::fs::remove(err);
  return r;
}

bool has(const std::string& s, std::string_view n) { return s.find(n) != std::string::npos; }

}  // namespace

TEST(SignCli, KeygenSignVerify) {
  vt::temp_dir d;
  const std::string file = (d / "m.vit").string(), key = (d / "key").string(), pub = key + ".pub";
  vt::write_bytes(file, sample_image());

  auto r = run_cli({"keygen", "--out", key}, d);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(vt::fs::exists(key));
  EXPECT_TRUE(vt::fs::exists(pub));
  r = run_cli({"keygen", "--out", key}, d);
  EXPECT_EQ(r.code, 1) << "keygen must not overwrite keys";

  r = run_cli({"verify", file, "--pubkey", pub}, d);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "signature_missing")) << r.err;

  r = run_cli({"sign", file, "--key", key}, d);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "SIGNED")) << r.out;

  r = run_cli({"verify", file, "--pubkey", pub}, d);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "OK ")) << r.out;
  r = run_cli({"verify", file}, d);  // plain verify ignores the signature block
  EXPECT_EQ(r.code, 0) << r.err;

  // Another key.
  ASSERT_EQ(run_cli({"keygen", "--out", (d / "other").string()}, d).code, 0);
  r = run_cli({"verify", file, "--pubkey", (d / "other.pub").string()}, d);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "signature_invalid")) << r.err;

  // Tampered array byte.
  auto bytes = vt::read_bytes(file);
  auto f = vt::open_image(bytes);
  ASSERT_OK(f);
  bytes[f->arrays()[0].offset + 1] ^= std::byte{4};
  vt::write_bytes(d / "t.vit", bytes);
  r = run_cli({"verify", (d / "t.vit").string(), "--pubkey", pub}, d);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "signature_invalid")) << r.err;

  // Bad key files and usage.
  r = run_cli({"verify", file, "--pubkey", file}, d);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "key_error")) << r.err;
  r = run_cli({"sign", file, "--key", pub}, d);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(has(r.err, "key_error")) << r.err;
  r = run_cli({"sign", file}, d);
  EXPECT_EQ(r.code, 2);
}
#endif
