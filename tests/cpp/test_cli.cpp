// test_cli.cpp - the `vitrify` command-line tool: exit codes, verify output, inspect (text and
// JSON). The tool's path comes from the build (VITRIFY_CLI_PATH).
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/wait.h>

#include <cstdlib>
#include <limits>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

#ifndef VITRIFY_CLI_PATH
#error "VITRIFY_CLI_PATH must be defined by the build"
#endif

using namespace vitrify;

namespace {

struct run_result {
  int code = -1;
  std::string out, err;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

std::string slurp(const vt::fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

run_result run_cli(const std::vector<std::string>& args, const vt::temp_dir& dir) {
  std::string cmd = shell_quote(VITRIFY_CLI_PATH);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  auto out = dir / "stdout.txt", err = dir / "stderr.txt";
  cmd += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string()) + " </dev/null";
  int st = std::system(cmd.c_str());
  run_result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

bool contains(const std::string& hay, std::string_view needle) { return hay.find(needle) != std::string::npos; }

value sample_metadata() {
  value md = value::dict();
  md.dict_set(value::string("name"), value::string("tiny model ü"));
  md.dict_set(value::string("lr"), value::floating(0.001));
  md.dict_set(value::string("nan"), value::floating(std::numeric_limits<double>::quiet_NaN()));
  md.dict_set(value::string("layers"), value::list({value::integer(4), value::integer(8)}));
  md.dict_set(value::string("shape"), value::tuple({value::integer(3), value::integer(4)}));
  md.dict_set(value::integer(7), value::string("int key"));
  md.dict_set(value::string("blob"), value::bytes("\x01\x02\x03"));
  md.dict_set(value::string("weights"), value::array_ref("w"));
  md.dict_set(value::string("huge"), value::big_integer("123456789012345678901234567890"));
  value nested = value::dict();
  nested.dict_set(value::string("deep"), value::list({value::dict(), value::object("x.Y", 2, value::integer(1))}));
  md.dict_set(value::string("nested"), nested);
  return md;
}

void write_sample(const vt::fs::path& path) {
  writer_options o;
  o.durable = false;
  auto w = writer::create(path, o);
  ASSERT_OK(w);
  const std::uint64_t shape[] = {2, 3};
  ASSERT_OK(w->add_array("w", dtype::float32, shape, vt::pattern_bytes(24, 1)));
  value attrs = value::dict();
  attrs.dict_set(value::string("numpy"), value::string("<f2"));
  ASSERT_OK(w->add_array("层/bias \"q\"", dtype::float16, shape, vt::pattern_bytes(12, 2), {codec::zstd, 3}, attrs));
  std::vector<std::string> labels = {"cat", "dog"};
  const std::uint64_t lshape[] = {2};
  ASSERT_OK(w->add_string_array("labels", lshape, labels));
  ASSERT_OK(w->add_array("scalar", dtype::int64, {}, vt::pattern_bytes(8, 3)));
  w->set_metadata(sample_metadata());
  value env = value::dict();
  env.dict_set(value::string("python"), value::string("3.12"));
  w->set_environment(env);
  ASSERT_OK(w->commit());
}

void corrupt_first_array(const vt::fs::path& path) {
  auto b = vt::read_bytes(path);
  auto f = file::from_bytes(b);
  ASSERT_OK(f);
  b[f->arrays()[0].offset + 1] ^= std::byte{0x04};
  vt::write_bytes(path, b);
}

}  // namespace

TEST(Cli, BinaryExists) { EXPECT_TRUE(std::filesystem::exists(VITRIFY_CLI_PATH)) << VITRIFY_CLI_PATH; }

TEST(Cli, VersionAndHelp) {
  vt::temp_dir dir;
  auto v = run_cli({"--version"}, dir);
  EXPECT_EQ(v.code, 0) << v.err;
  EXPECT_TRUE(contains(v.out, library_version())) << v.out;
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"}, {"inspect", "--help"}, {"verify", "--help"}, {"-h"}}) {
    auto r = run_cli(args, dir);
    EXPECT_EQ(r.code, 0) << args[0] << r.err;
    EXPECT_TRUE(contains(r.out, "Usage") || contains(r.out, "usage")) << r.out;
  }
  auto h = run_cli({"--help"}, dir);
  EXPECT_TRUE(contains(h.out, "inspect"));
  EXPECT_TRUE(contains(h.out, "verify"));
}

TEST(Cli, UsageErrorsExitTwo) {
  vt::temp_dir dir;
  for (std::vector<std::string> args : {std::vector<std::string>{}, {"frobnicate"}, {"verify"}, {"inspect"},
                                        {"--bogus"}, {"verify", "--bogus", "x.vit"}, {"inspect", "a", "b"}}) {
    auto r = run_cli(args, dir);
    std::string joined;
    for (auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << "\nstdout: " << r.out << "\nstderr: " << r.err;
    EXPECT_FALSE(r.err.empty()) << joined;
  }
}

TEST(Cli, VerifyGoodAndCorruptFiles) {
  vt::temp_dir dir;
  auto good = dir / "good.vit";
  auto bad = dir / "bad.vit";
  write_sample(good);
  write_sample(bad);
  corrupt_first_array(bad);

  auto r = run_cli({"verify", good.string()}, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "OK " + good.string() + "\n");
  EXPECT_EQ(r.err, "");

  r = run_cli({"verify", bad.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.out + r.err, "FAIL " + bad.string() + ": checksum_mismatch: ")) << r.out << r.err;
  EXPECT_FALSE(contains(r.out, "OK "));

  r = run_cli({"verify", good.string(), bad.string(), good.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "OK " + good.string() + "\nOK " + good.string() + "\n");
  EXPECT_TRUE(contains(r.err, "FAIL " + bad.string() + ": checksum_mismatch: ")) << r.err;

  auto missing = dir / "missing.vit";
  r = run_cli({"verify", missing.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "FAIL " + missing.string() + ": io_error: ")) << r.err;

  auto trunc = dir / "trunc.vit";
  auto b = vt::read_bytes(good);
  b.resize(b.size() - 1);
  vt::write_bytes(trunc, b);
  r = run_cli({"verify", trunc.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, ": truncated: ")) << r.err;

  auto notvit = dir / "notes.txt";
  vt::write_bytes(notvit, vt::to_bytes(std::string(100, 'x')));
  r = run_cli({"verify", notvit.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, ": bad_magic: ")) << r.err;
}

TEST(Cli, InspectText) {
  vt::temp_dir dir;
  auto good = dir / "good.vit";
  write_sample(good);
  auto r = run_cli({"inspect", good.string()}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"vitrify 1.0", "alignment", "float32", "float16", "string", "(2, 3)", "()", "zstd:3",
                        "层/bias", "labels", "tiny model", "lr", "0.001", "nan", "weights", "python", "3.12",
                        "int key", "123456789012345678901234567890", "x.Y"}) {
    EXPECT_TRUE(contains(r.out, s)) << "missing '" << s << "' in:\n" << r.out;
  }
  auto bad = dir / "bad.vit";
  vt::write_bytes(bad, vt::to_bytes("not a vitrify file at all, clearly not. padding padding padding padding"));
  r = run_cli({"inspect", bad.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "bad_magic")) << r.err;
}

TEST(Cli, InspectJson) {
  vt::temp_dir dir;
  auto good = dir / "good.vit";
  write_sample(good);
  auto r = run_cli({"inspect", "--json", good.string()}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  simdjson::dom::parser parser;
  simdjson::padded_string text(r.out);
  simdjson::dom::element doc;
  auto error = parser.parse(text).get(doc);
  ASSERT_EQ(error, simdjson::SUCCESS) << simdjson::error_message(error) << "\n" << r.out;
  auto f = file::open(good);
  ASSERT_OK(f);
  EXPECT_EQ(std::uint64_t(doc["version"]["major"]), 1u);
  EXPECT_EQ(std::uint64_t(doc["version"]["minor"]), 0u);
  EXPECT_EQ(std::uint64_t(doc["alignment"]), 64u);
  EXPECT_EQ(std::uint64_t(doc["size"]), std::filesystem::file_size(good));
  simdjson::dom::array arrays = doc["arrays"];
  ASSERT_EQ(arrays.size(), 4u);
  std::size_t i = 0;
  for (simdjson::dom::element a : arrays) {
    const auto& info = f->arrays()[i++];
    EXPECT_EQ(std::string_view(a["name"]), info.name);
    EXPECT_EQ(std::string_view(a["dtype"]), dtype_name(info.type));
    EXPECT_EQ(std::string_view(a["codec"]), codec_name(info.codec));
    EXPECT_EQ(std::uint64_t(a["offset"]), info.offset);
    EXPECT_EQ(std::uint64_t(a["decoded_length"]), info.decoded_length);
    EXPECT_EQ(std::string_view(a["xxh3"]), vt::hex16(info.xxh3));
    simdjson::dom::array shape = a["shape"];
    EXPECT_EQ(shape.size(), info.shape.size());
  }
  // Typed sections are embedded as their canonical JSON.
  EXPECT_TRUE(contains(r.out, "\"metadata\":" + to_json(f->metadata()))) << r.out;
  EXPECT_TRUE(contains(r.out, "\"environment\":" + to_json(f->environment()))) << r.out;
  EXPECT_TRUE(contains(r.out, "\"provenance\":null")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"content\":null")) << r.out;
}

TEST(Cli, TrailersAreShownAndVerified) {
  vt::temp_dir dir;
  auto path = dir / "signed.vit";
  write_sample(path);
  auto b = vt::read_bytes(path);
  std::string block = "TESTTAG1";
  std::uint64_t n = 5;
  block.append(reinterpret_cast<const char*>(&n), 8);
  block += "hello";
  auto tb = vt::to_bytes(block);
  b.insert(b.end(), tb.begin(), tb.end());
  vt::write_bytes(path, b);
  auto r = run_cli({"verify", path.string()}, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  r = run_cli({"inspect", path.string()}, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "TESTTAG1 (5 bytes)")) << r.out;
  r = run_cli({"inspect", "--json", path.string()}, dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "\"trailers\":[{\"tag\":\"TESTTAG1\",\"length\":5}]")) << r.out;
  b.push_back(std::byte{0});  // no longer tiles the end of the file
  vt::write_bytes(path, b);
  r = run_cli({"verify", path.string()}, dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, ": bad_trailer: ")) << r.err;
}
