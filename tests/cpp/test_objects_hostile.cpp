// test_objects_hostile.cpp - hostile inputs of the object layer in C++: object trees that break
// every limit of decode_limits, every size computation and every kind of reference, and broken
// fitted states for every runtime builder (each must end in an error value, never a crash: the
// suite runs under ASan + UBSan in `make test-asan`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/estimator.hpp"
#include "test_support.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/vitrify.hpp"

namespace {

using namespace vitrify;
using pyobj::node;
using runtime::matrix_view;
using runtime::method;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Hand-made files of the object encoding (version 3: a packed JSON tree and an array pool).
// ---------------------------------------------------------------------------------------------

struct object_file {
  std::vector<std::byte> image;
  file f;
};

std::vector<std::byte> object_image(const std::string& body, const std::vector<std::byte>& pool, bool with_pool = true) {
  auto w = writer::create_in_memory();
  EXPECT_TRUE(w.ok());
  std::span<const std::byte> b = std::as_bytes(std::span<const char>(body.data(), body.size()));
  std::span<const std::byte> pieces[1] = {b};
  EXPECT_TRUE(w->add_bytes("tree", pieces).ok());
  std::string content = R"({"kind":"vitrify.python-object","version":3,"packed":{"$array":"tree"})";
  if (with_pool) {
    std::span<const std::byte> pp[1] = {std::span<const std::byte>(pool)};
    EXPECT_TRUE(w->add_bytes("pool", pp).ok());
    content += R"(,"pool":{"$array":"pool"})";
  }
  content += "}";
  auto c = parse_value(content);
  EXPECT_TRUE(c.ok());
  w->set_content(std::move(c).value());
  EXPECT_TRUE(w->commit().ok());
  return w->take_bytes();
}

// Decode `body` (the packed tree) with `pool`; the error code, errc::ok on success.
errc decode_code(const std::string& body, const pyobj::decode_limits& lim = {}, std::vector<std::byte> pool = std::vector<std::byte>(64),
                 bool with_pool = true) {
  auto img = object_image(body, pool, with_pool);
  auto f = file::from_bytes(img);
  if (!f) return f.code();
  auto g = pyobj::decode_objects(*f, lim);
  return g.code();
}

std::string tree(const std::string& root, const std::string& tables = "") { return R"({"root":)" + root + tables + "}"; }
std::string ndarray(const std::string& state) { return R"({"$object":{"type":"numpy.ndarray","version":1,"state":)" + state + "}}"; }
std::string nested_lists(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "[";
  s += "1";
  for (int i = 0; i < depth; ++i) s += "]";
  return s;
}

TEST(ObjectLimits, DepthIsOneDocumentedValue) {
  pyobj::decode_limits lim;
  EXPECT_EQ(lim.max_depth, 256u);
  EXPECT_EQ(lim.json_depth(), 256u * 4 + 16);
  EXPECT_EQ(decode_code(tree(nested_lists(250))), errc::ok);
  EXPECT_EQ(decode_code(tree(nested_lists(300))), errc::limit_exceeded);
  // Deeper than the JSON parser accepts: refused before any node is built.
  EXPECT_EQ(decode_code(tree(nested_lists(1100))), errc::limit_exceeded);
  lim.max_depth = 10;
  EXPECT_EQ(decode_code(tree(nested_lists(11)), lim), errc::limit_exceeded);
  EXPECT_EQ(decode_code(tree(nested_lists(9)), lim), errc::ok);
}

TEST(ObjectLimits, NodeCount) {
  std::string many = "[";
  for (int i = 0; i < 500; ++i) many += (i ? ",1" : "1");
  many += "]";
  pyobj::decode_limits lim;
  lim.max_nodes = 100;
  EXPECT_EQ(decode_code(tree(many), lim), errc::limit_exceeded);
  lim.max_nodes = 1000;
  EXPECT_EQ(decode_code(tree(many), lim), errc::ok);
  // $ref nodes point at existing nodes but state dicts made from keysets are counted too.
  lim.max_nodes = 5;
  const std::string keyed = R"({"$object":{"type":"x.Y","version":1,"state":{"k":0,"s":[1,2,3,4]}}})";
  EXPECT_EQ(decode_code(tree(keyed, R"(,"keys":[["a","b","c","d"]])"), lim), errc::limit_exceeded);
}

TEST(ObjectLimits, ByteBudgetTiedToFileSize) {
  pyobj::decode_limits lim;
  EXPECT_EQ(lim.byte_budget(0), lim.extra_bytes);
  EXPECT_EQ(lim.byte_budget(1000), 1000 * lim.bytes_per_file_byte + lim.extra_bytes);
  EXPECT_EQ(lim.byte_budget(UINT64_MAX), UINT64_MAX);  // saturates
  // 2^30 doubles declared by a file of a few hundred bytes: over the default budget, refused as
  // a limit before the pool is even looked at.
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,8589934592],"t":"<f8","s":[1073741824]})"))), errc::limit_exceeded);
  // The explicit cap can be lowered (or raised): a 64-byte pooled array within a 0-byte
  // allowance and 0 bytes per file byte is over budget.
  const std::string small = tree(ndarray(R"({"p":[0,64],"t":"<f8","s":[8]})"));
  EXPECT_EQ(decode_code(small), errc::ok);
  lim.bytes_per_file_byte = 0;
  lim.extra_bytes = 0;
  EXPECT_EQ(decode_code(small, lim), errc::limit_exceeded);
  lim.extra_bytes = 1 << 20;
  EXPECT_EQ(decode_code(small, lim), errc::ok);
}

TEST(ObjectOverflow, ShapeProduct) {
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[4294967296,4294967296]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[9223372036854775807,2]})"))), errc::bad_value);
  // A zero dimension does not hide the others (numpy could not represent the shape).
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[0,4294967296,4294967296]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[0,3]})"))), errc::ok);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[-1]})"))), errc::bad_value);
  std::string rank65 = "[";
  for (int i = 0; i < 65; ++i) rank65 += (i ? ",1" : "1");
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,8],"t":"<f8","s":)" + rank65 + "]}"))), errc::limit_exceeded);  // OBJECTS.md section 8
}

TEST(ObjectOverflow, ShapeTimesItemsize) {
  // 2^40 elements of 2^24 bytes: the product overflows 64 bits.
  // 2^40 records of 2^20 bytes fit in 64 bits but not in the budget; 2^44 of them overflow.
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":{"fields":[["a","<f8",0]],"itemsize":1048576},"s":[1099511627776]})"))),
            errc::limit_exceeded);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":{"fields":[["a","<f8",0]],"itemsize":1048576},"s":[17592186044416]})"))),
            errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,0],"t":"<f8","s":[2305843009213693952]})"))), errc::bad_value);
  // Inline data: the declared size is checked before the base64 text is decoded.
  EXPECT_EQ(decode_code(tree(ndarray(R"({"b":"AAAAAAAAAAA=","t":"<f8","s":[1000]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"b":"AAAAAAAAAAA=","t":"<f8","s":[1]})"))), errc::ok);
}

TEST(ObjectOverflow, ItemSizesOfBytesAndVoidDtypes) {
  for (const char* t : {"|S16777217", "|V16777217", "|S999999999", "V0", "|S0", "<U4194305", "<U999999999", "<f3", "<i16", "|b2",
                        "<f8[ns]", "<X8", "", "<", "|S1x", "<M8[ns"}) {
    SCOPED_TRACE(t);
    const std::string scalar = R"({"$object":{"type":"numpy.generic","version":1,"state":{"t":")" + std::string(t) + R"(","b":"AA=="}}})";
    EXPECT_EQ(decode_code(tree(scalar)), errc::bad_value);
  }
  // The bound itself is accepted (a one-element raw array of it would be 16 MiB).
  const std::string big = R"({"$object":{"type":"numpy.dtype","version":1,"state":"|S16777216"}})";
  EXPECT_EQ(decode_code(tree(big)), errc::ok);
  // A structured dtype whose field lies outside its record, or whose itemsize is absurd.
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,8],"t":{"fields":[["a","<f8",4]],"itemsize":8},"s":[1]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,8],"t":{"fields":[["a","<f8",9223372036854775807]],"itemsize":8},"s":[1]})"))),
            errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,8],"t":{"fields":[],"itemsize":4294967296},"s":[1]})"))), errc::bad_value);
}

TEST(ObjectOverflow, PoolOffsetAndLength) {
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[48,16],"t":"<f8","s":[2]})"))), errc::ok);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[64,16],"t":"<f8","s":[2]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[9223372036854775792,16],"t":"<f8","s":[2]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[-16,16],"t":"<f8","s":[2]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,-16],"t":"<f8","s":[2]})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,24],"t":"<f8","s":[2]})"))), errc::bad_value);  // length != shape x itemsize
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[8,16],"t":"<f8","s":[2]})"))), errc::bad_value);  // misaligned
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0],"t":"<f8","s":[2]})"))), errc::bad_value);
  // Pooled arrays in a file without a pool.
  EXPECT_EQ(decode_code(tree(ndarray(R"({"p":[0,16],"t":"<f8","s":[2]})")), {}, {}, false), errc::bad_value);
}

TEST(ObjectReferences, SharedAndRefIds) {
  // A value that contains a reference to itself is a cycle, which Python objects may have.
  auto img = object_image(tree(R"({"$shared":{"id":1,"value":[{"$ref":1}]}})"), std::vector<std::byte>(64));
  auto f = file::from_bytes(img);
  ASSERT_TRUE(f.ok());
  auto g = pyobj::decode_objects(*f);
  ASSERT_TRUE(g.ok()) << g.err().what();
  const node* root = (*g)->root;
  ASSERT_EQ(root->items.size(), 1u);
  EXPECT_EQ(root->items[0], root);
  // A second reference to an earlier value is the same node.
  img = object_image(tree(R"([{"$shared":{"id":7,"value":[1]}},{"$ref":7}])"), std::vector<std::byte>(64));
  f = file::from_bytes(img);
  g = pyobj::decode_objects(*f);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)->root->items[0], (*g)->root->items[1]);

  EXPECT_EQ(decode_code(tree(R"({"$ref":1})")), errc::bad_value);                                      // unknown id
  EXPECT_EQ(decode_code(tree(R"([{"$ref":2},{"$shared":{"id":2,"value":1}}])")), errc::bad_value);  // forward
  EXPECT_EQ(decode_code(tree(R"([{"$shared":{"id":3,"value":1}},{"$shared":{"id":3,"value":2}}])")), errc::bad_value);
  EXPECT_EQ(decode_code(tree(R"({"$ref":-9223372036854775807})")), errc::bad_value);
}

TEST(ObjectReferences, KeysetIds) {
  const std::string keys = R"(,"keys":[["a","b"],["a",1]])";
  auto obj = [](const std::string& k, const std::string& s) {
    return R"({"$object":{"type":"x.Y","version":1,"state":{"k":)" + k + R"(,"s":)" + s + "}}}";
  };
  EXPECT_EQ(decode_code(tree(obj("0", "[1,2]"), keys)), errc::ok);
  EXPECT_EQ(decode_code(tree(obj("2", "[1,2]"), keys)), errc::bad_value);   // out of range
  EXPECT_EQ(decode_code(tree(obj("-1", "[1,2]"), keys)), errc::bad_value);
  EXPECT_EQ(decode_code(tree(obj("\"0\"", "[1,2]"), keys)), errc::bad_value);
  EXPECT_EQ(decode_code(tree(obj("0", "[1]"), keys)), errc::bad_value);     // length differs
  EXPECT_EQ(decode_code(tree(obj("1", "[1,2]"), keys)), errc::bad_value);   // a key that is no string
  EXPECT_EQ(decode_code(tree(obj("0", "[1,2]"))), errc::bad_value);         // no key table at all
  EXPECT_EQ(decode_code(tree(obj("0", "[1,2]"), R"(,"keys":{"a":1})")), errc::bad_value);
}

TEST(ObjectReferences, DtypeTableIds) {
  const std::string dtypes = R"(,"dtypes":["<f8",1,{"fields":[["a",0,0]],"itemsize":8},2])";
  auto arr = [](const std::string& t) { return ndarray(R"({"p":[0,8],"t":)" + t + R"(,"s":[1]})"); };
  EXPECT_EQ(decode_code(tree(arr("0"), dtypes)), errc::ok);
  EXPECT_EQ(decode_code(tree(arr("2"), dtypes)), errc::ok);            // a field refers to entry 0
  EXPECT_EQ(decode_code(tree(arr("4"), dtypes)), errc::bad_value);     // out of range
  EXPECT_EQ(decode_code(tree(arr("-1"), dtypes)), errc::bad_value);
  EXPECT_EQ(decode_code(tree(arr("1"), dtypes)), errc::bad_value);     // refers to itself
  EXPECT_EQ(decode_code(tree(arr("3"), dtypes)), errc::bad_value);     // an entry is not itself an index (OBJECTS.md 7.2)
  EXPECT_EQ(decode_code(tree(arr("0"))), errc::bad_value);             // no table
}

// The graph keeps what a dtype description says (docs/OBJECTS.md 7.2, section 12): nested and
// sub-array fields, big-endian fields (spelled ">..." so flat consumers refuse them), the align
// flag; and refuses the dtypes a byte form cannot have.
TEST(ObjectDtypes, DescriptionsKeptInTheGraph) {
  auto decode = [](const std::string& body) -> std::shared_ptr<pyobj::graph> {
    static std::vector<std::vector<std::byte>> images;  // the graph views its file image
    images.push_back(object_image(body, std::vector<std::byte>(64)));
    auto f = file::from_bytes(images.back());
    EXPECT_TRUE(f.ok());
    auto g = pyobj::decode_objects(*f);
    EXPECT_TRUE(g.ok()) << g.err().message;
    return g.ok() ? *g : nullptr;
  };
  const std::string nested =
      R"({"fields":[["a",">i4",0],["b",{"fields":[["x","<f8",0]],"itemsize":8},8],["c",{"base":"<f4","shape":[2,3]},16]],"itemsize":40,"aligned":true})";
  auto g = decode(tree(ndarray(R"({"p":[0,40],"t":)" + nested + R"(,"s":[1]})")));
  ASSERT_TRUE(g);
  const auto& a = *g->root->arr;
  ASSERT_TRUE(a.spec);
  EXPECT_TRUE(a.spec->aligned);
  ASSERT_EQ(a.fields.size(), 3u);
  EXPECT_EQ(a.fields[0].dtype, ">i4");
  EXPECT_TRUE(a.fields[0].spec->big_endian);
  EXPECT_EQ(a.fields[1].dtype, "V8");
  EXPECT_EQ(a.fields[1].spec->fields.size(), 1u);
  EXPECT_EQ(a.fields[2].dtype, "V24");
  ASSERT_TRUE(a.fields[2].spec->base);
  EXPECT_EQ(a.fields[2].spec->subshape, (std::vector<std::int64_t>{2, 3}));
  // A big-endian numeric array: little-endian data, the file's byte order in spec.
  auto be = decode(tree(ndarray(R"({"b":"AAAAAAAA8D8=","t":">f8","s":[1]})")));
  ASSERT_TRUE(be);
  EXPECT_EQ(be->root->arr->dtype, "<f8");
  EXPECT_TRUE(be->root->arr->spec->big_endian);
  // A numpy.dtype node of a sub-array description.
  auto sub = decode(tree(R"({"$object":{"type":"numpy.dtype","version":1,"state":{"base":"<f8","shape":[2]}}})"));
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->root->k, node::kind::dtype);
  EXPECT_EQ(sub->root->arr->spec->itemsize, 16u);

  // Refused: S / U / O / V fields, a sub-array as an array's own dtype, r with S, y without S,
  // a sub-array itemsize over 2^31 - 1.
  for (const char* t : {R"({"fields":[["a","|S4",0]],"itemsize":4})", R"({"fields":[["a","<U1",0]],"itemsize":4})",
                        R"({"fields":[["a","V4",0]],"itemsize":4})", R"({"base":"<f8","shape":[1]})"})
    EXPECT_EQ(decode_code(tree(ndarray(std::string(R"({"p":[0,8],"t":)") + t + R"(,"s":[1]})"))), errc::bad_value) << t;
  EXPECT_EQ(decode_code(tree(R"({"$object":{"type":"numpy.dtype","version":1,"state":{"base":"<f8","shape":[1073741824]}}})")),
            errc::bad_value);
}

// OBJECTS.md 5.4: the RandomState tuple is checked by the decoder, before numpy sees it.
TEST(ObjectSpecialTypes, RandomStateTuple) {
  const std::vector<std::byte> pool(624 * 4);
  auto rs = [](const std::string& name, const std::string& keys, const std::string& pos, const std::string& gauss,
               const std::string& cached) {
    return tree(R"({"$object":{"type":"numpy.random.RandomState","version":1,"state":{"$tuple":[)" + name + "," + keys + "," + pos +
                "," + gauss + "," + cached + "]}}}");
  };
  const std::string keys = ndarray(R"({"p":[0,2496],"t":"<u4","s":[624]})");
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "0", "0", "0.0"), {}, pool), errc::ok);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "624", "1", "1.5"), {}, pool), errc::ok);
  EXPECT_EQ(decode_code(rs(R"("PCG64")", keys, "0", "0", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", ndarray(R"({"p":[0,2492],"t":"<u4","s":[623]})"), "0", "0", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", ndarray(R"({"p":[0,2496],"t":"<i4","s":[624]})"), "0", "0", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "625", "0", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "-1", "0", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "0", "2", "0.0"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(rs(R"("MT19937")", keys, "0", "0", R"("x")"), {}, pool), errc::bad_value);
  EXPECT_EQ(decode_code(tree(R"({"$object":{"type":"numpy.random.RandomState","version":1,"state":[1,2]}})"), {}, pool), errc::bad_value);
}

TEST(ObjectReferences, ArrayAndPoolReferences) {
  EXPECT_EQ(decode_code(tree(R"({"$array":"missing"})")), errc::bad_value);
  EXPECT_EQ(decode_code(tree(R"({"$array":"tree"})")), errc::bad_value);  // the packed tree itself
  EXPECT_EQ(decode_code(tree(R"({"$array":"pool"})")), errc::bad_value);  // the pool as an array
  EXPECT_EQ(decode_code(tree(ndarray(R"({"d":{"$array":"tree"}})"))), errc::bad_value);
  EXPECT_EQ(decode_code(tree(ndarray(R"({"r":{"$array":"pool"},"t":"<f8","s":[8]})"))), errc::bad_value);
}

// ---------------------------------------------------------------------------------------------
// Runtime builders: valid model files with one field broken.
// ---------------------------------------------------------------------------------------------

fs::path vectors_dir() { return fs::path(VITRIFY_SOURCE_DIR) / "tests" / "vectors" / "models" / "content_v3"; }

struct loaded {
  file f;
  std::shared_ptr<pyobj::graph> g;
};

loaded load_graph(const std::string& name) {
  auto f = file::open(vectors_dir() / name);
  EXPECT_TRUE(f.ok()) << name;
  auto g = pyobj::decode_objects(*f);
  EXPECT_TRUE(g.ok()) << name << ": " << g.err().what();
  return {std::move(f).value(), std::move(g).value()};
}

// Build the estimator at `root` and run every method it supports on a few rows; the build
// error code (errc::ok when it built). Run errors are allowed (X may be refused), crashes not.
errc build_and_run(const node& root) {
  runtime::build_context ctx(runtime::registry::instance());
  auto est = ctx.build(root);
  if (!est) return est.code();
  const auto& e = **est;
  if (e.needs_table) return errc::ok;
  const std::size_t cols = e.n_features > 0 && e.n_features < 1000 ? static_cast<std::size_t>(e.n_features) : 4;
  std::vector<double> x(5 * cols);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i % 7) - 2.5;
  const matrix_view mv(x.data(), 5, cols);
  for (method m : {method::predict, method::predict_proba, method::decision_function, method::transform, method::score_samples}) {
    if (!e.supports(m)) continue;
    auto r = e.run(m, runtime::input(mv));
    (void)r;
    if (e.width(m) > 0 && e.width(m) < 1'000'000) {
      std::vector<double> out(e.width(m));
      (void)e.run_row(m, std::span<const double>(x.data(), cols), out);
    }
  }
  return errc::ok;
}

// The object node of `type` reachable from `n` (depth first), or nullptr.
node* find_object(node* n, std::string_view type, std::set<node*>& seen) {
  if (!n || !seen.insert(n).second) return nullptr;
  if (n->k == node::kind::object && n->obj) {
    if (n->obj->type == type) return n;
    for (auto* a : n->obj->args)
      if (auto* r = find_object(a, type, seen)) return r;
    if (auto* r = find_object(n->obj->state, type, seen)) return r;
  }
  for (auto* x : n->items)
    if (auto* r = find_object(x, type, seen)) return r;
  for (auto& [k, v] : n->entries)
    if (auto* r = find_object(v, type, seen)) return r;
  return nullptr;
}
node* find_object(const loaded& l, std::string_view type) {
  std::set<node*> seen;
  return find_object(l.g->root, type, seen);
}
node* state_entry(node* obj, std::string_view key) {
  if (!obj || !obj->obj || !obj->obj->state) return nullptr;
  for (auto& [k, v] : obj->obj->state->entries)
    if (k->k == node::kind::string && k->text == key) return v;
  return nullptr;
}

// A private, writable copy of an array node's data.
std::vector<std::byte>& own_data(pyobj::graph& g, node& n) {
  auto copy = std::make_shared<pyobj::ndarray>(*n.arr);
  auto buf = std::make_shared<std::vector<std::byte>>(copy->data.begin(), copy->data.end());
  copy->data = std::span<const std::byte>(buf->data(), buf->size());
  copy->owner = buf;
  g.keep(buf);
  n.arr = copy;
  return *buf;
}
template <class T>
void put(std::vector<std::byte>& b, std::size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

class ModelVector : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelVector, ValidFileBuilds) {
  auto l = load_graph(GetParam());
  EXPECT_EQ(build_and_run(*l.g->root), errc::ok);
}

// Every attribute of every object of the model, replaced in turn by values of the wrong kind,
// shape or range: the build fails with an error value or succeeds, and what it built runs.
TEST_P(ModelVector, EveryAttributeBroken) {
  auto l = load_graph(GetParam());
  std::vector<node*> objects;
  std::set<node*> seen;
  std::function<void(node*)> walk = [&](node* n) {
    if (!n || !seen.insert(n).second) return;
    if (n->k == node::kind::object && n->obj) {
      objects.push_back(n);
      for (auto* a : n->obj->args) walk(a);
      walk(n->obj->state);
    }
    for (auto* x : n->items) walk(x);
    for (auto& [k, v] : n->entries) walk(v);
  };
  walk(l.g->root);
  pyobj::graph& g = *l.g;
  auto make = [&](auto fill) {
    node* n = g.make();
    fill(*n);
    return n;
  };
  std::vector<node*> junk = {
      make([](node& n) { n.k = node::kind::none; }),
      make([](node& n) { n.k = node::kind::integer; n.i = -1; }),
      make([](node& n) { n.k = node::kind::integer; n.i = INT64_MAX; }),
      make([](node& n) { n.k = node::kind::floating; n.d = std::nan(""); }),
      make([](node& n) { n.k = node::kind::string; n.text = "x"; }),
      make([](node& n) { n.k = node::kind::list; }),
      make([](node& n) { n.k = node::kind::dict; }),
  };
  std::size_t tried = 0;
  for (node* obj : objects) {
    node* st = obj->obj->state;
    if (!st || st->k != node::kind::dict) continue;
    for (auto& entry : st->entries) {
      node* orig = entry.second;
      std::vector<node*> variants = junk;
      if (orig && orig->k == node::kind::array && orig->arr && !orig->arr->shape.empty() && orig->arr->itemsize > 0) {
        // One element fewer in the first dimension; every integer at -1 / huge; floats at NaN.
        for (int v = 0; v < 3; ++v) {
          node* n = g.make();
          *n = *orig;
          auto& b = own_data(g, *n);
          auto& a = *n->arr;
          if (v == 0) {
            if (a.shape[0] == 0) continue;
            const std::uint64_t per = a.count() / static_cast<std::uint64_t>(a.shape[0]) * a.itemsize;
            a.shape[0] -= 1;
            a.data = a.data.first(a.data.size() - per);
          } else if (a.fields.empty()) {
            const char k = a.kind();
            for (std::size_t off = 0; off + a.itemsize <= b.size(); off += a.itemsize) {
              if (k == 'f' && a.itemsize == 8) put(b, off, v == 1 ? std::nan("") : 1e308);
              if (k == 'i' && a.itemsize == 8) put<std::int64_t>(b, off, v == 1 ? -7 : INT64_MAX);
              if (k == 'i' && a.itemsize == 4) put<std::int32_t>(b, off, v == 1 ? -7 : INT32_MAX);
            }
          } else {
            // Node records: every 8-byte integer field at -2 or a huge index.
            for (const auto& fl : a.fields)
              if (fl.dtype == "<i8")
                for (std::size_t r = 0; r < static_cast<std::size_t>(a.shape[0]); ++r)
                  put<std::int64_t>(b, r * a.itemsize + fl.offset, v == 1 ? -2 : (std::int64_t{1} << 40));
          }
          variants.push_back(n);
        }
      }
      for (node* v : variants) {
        entry.second = v;
        SCOPED_TRACE(std::string(obj->obj->type) + "." + (entry.first->k == node::kind::string ? entry.first->text : "?"));
        (void)build_and_run(*l.g->root);
        ++tried;
      }
      entry.second = orig;
    }
  }
  EXPECT_GT(tried, 0u);
  EXPECT_EQ(build_and_run(*l.g->root), errc::ok);  // restored
}

std::vector<std::string> vector_names() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(vectors_dir()))
    if (e.path().extension() == ".vit" && e.path().filename().string().find("-zstd") == std::string::npos)
      out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}
INSTANTIATE_TEST_SUITE_P(ContentV3, ModelVector, ::testing::ValuesIn(vector_names()), [](const auto& info) {
  std::string s = info.param.substr(0, info.param.size() - 4);
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
});

// Every registered builder, given an empty state and then the state of each model vector (the
// wrong estimator's attributes): an error value, never a crash.
class RegisteredBuilder : public ::testing::TestWithParam<std::string> {};

TEST_P(RegisteredBuilder, ForeignAndEmptyStatesAreRefused) {
  const std::string type = GetParam();
  pyobj::graph g;
  node* n = g.make();
  n->k = node::kind::object;
  n->obj = std::make_shared<pyobj::object>();
  n->obj->type = type;
  n->obj->newobj = true;
  node* st = g.make();
  st->k = node::kind::dict;
  n->obj->state = st;
  EXPECT_NE(build_and_run(*n), errc::ok) << type << " built from an empty state";
  n->obj->state = nullptr;
  EXPECT_NE(build_and_run(*n), errc::ok) << type << " built without a state";
  for (const auto& name : vector_names()) {
    auto l = load_graph(name);
    node* root = l.g->root;
    if (root->type_name() == type) continue;
    const std::string orig = root->obj->type;
    root->obj->type = type;
    SCOPED_TRACE(name);
    (void)build_and_run(*root);
    root->obj->type = orig;
  }
}

std::vector<std::string> registered() { return runtime::registry::instance().names(); }
INSTANTIATE_TEST_SUITE_P(All, RegisteredBuilder, ::testing::ValuesIn(registered()), [](const auto& info) {
  std::string s = info.param;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
});

// ---------------------------------------------------------------------------------------------
// Targeted invariants: each broken field refused with errc::bad_state.
// ---------------------------------------------------------------------------------------------

struct tree_fixture {
  loaded l = load_graph("tree.vit");
  node* est = nullptr;
  node* tree_obj = nullptr;
  node* nodes = nullptr;
  tree_fixture() {
    est = l.g->root;
    tree_obj = find_object(l, "sklearn.tree._tree.Tree");
    nodes = state_entry(tree_obj, "nodes");
  }
  std::vector<std::byte>& records() { return own_data(*l.g, *nodes); }
  errc build() { return build_and_run(*est); }
};

TEST(BrokenTree, ValidBaseline) {
  tree_fixture t;
  ASSERT_NE(t.nodes, nullptr);
  EXPECT_EQ(t.build(), errc::ok);
}

TEST(BrokenTree, FieldsInAnotherOrderAreRefusedNotReadByName) {
  tree_fixture t;
  auto& f = t.nodes->arr->fields;
  ASSERT_GE(f.size(), 2u);
  // Same names and dtypes, declared right_child first: scikit-learn would read by position.
  std::swap(f[0].name, f[1].name);
  EXPECT_EQ(t.build(), errc::bad_state);
}

TEST(BrokenTree, WrongItemsizeOrFieldDtype) {
  tree_fixture t;
  t.nodes->arr->fields[2].dtype = "<i4";
  EXPECT_EQ(t.build(), errc::bad_state);
  tree_fixture u;
  u.nodes->arr->fields.pop_back();  // drops missing_go_to_left but keeps itemsize 64
  EXPECT_EQ(u.build(), errc::bad_state);
}

TEST(BrokenTree, ChildOutOfRangeOrBeforeItsParent) {
  for (std::int64_t bad : {std::int64_t{1} << 40, std::int64_t{0}, std::int64_t{-5}}) {
    tree_fixture t;
    put<std::int64_t>(t.records(), 0, bad);  // left_child of the root
    EXPECT_EQ(t.build(), errc::bad_state) << bad;
  }
}

TEST(BrokenTree, FeatureOutOfRange) {
  tree_fixture t;
  put<std::int64_t>(t.records(), 16, 4);  // n_features is 4
  EXPECT_EQ(t.build(), errc::bad_state);
}

TEST(BrokenTree, TwoParents) {
  tree_fixture t;
  auto& b = t.records();
  std::int64_t l0, r0;
  std::memcpy(&l0, b.data(), 8);
  std::memcpy(&r0, b.data() + 8, 8);
  // Node l0's children, if it has any, become the same as ... the root's right child's left.
  std::int64_t rl;
  std::memcpy(&rl, b.data() + static_cast<std::size_t>(r0) * 64, 8);
  ASSERT_GT(rl, 0);
  put<std::int64_t>(b, static_cast<std::size_t>(l0) * 64, rl);  // (l0 < r0 < rl: still forward)
  std::int64_t l0r;
  std::memcpy(&l0r, b.data() + static_cast<std::size_t>(l0) * 64 + 8, 8);
  if (l0r == -1) put<std::int64_t>(b, static_cast<std::size_t>(l0) * 64 + 8, rl);
  EXPECT_EQ(t.build(), errc::bad_state);
}

TEST(BrokenTree, MaxDepthDisagreesWithTheTree) {
  tree_fixture t;
  node* md = state_entry(t.tree_obj, "max_depth");
  ASSERT_NE(md, nullptr);
  ASSERT_EQ(md->k, node::kind::integer);
  md->i += 1;
  EXPECT_EQ(t.build(), errc::bad_state);
  md->i = 1'000'000'000;
  EXPECT_EQ(t.build(), errc::bad_state);
}

TEST(BrokenTree, NodeCountAndValuesShape) {
  tree_fixture t;
  node* nc = state_entry(t.tree_obj, "node_count");
  ASSERT_NE(nc, nullptr);
  nc->i += 1;
  EXPECT_EQ(t.build(), errc::bad_state);
  tree_fixture u;
  node* v = state_entry(u.tree_obj, "values");
  ASSERT_NE(v, nullptr);
  v->arr = std::make_shared<pyobj::ndarray>(*v->arr);
  v->arr->shape[2] = 1;
  v->arr->data = v->arr->data.first(v->arr->data.size() / 2);
  EXPECT_EQ(u.build(), errc::bad_state);
}

// The seed HGB model's predictors are single leaves (30 samples, min_samples_leaf 20): give the
// first one a root split on feature 0 and two leaves, in scikit-learn's record layout.
node* hgb_split_nodes(loaded& l) {
  node* preds = state_entry(l.g->root, "_predictors");
  if (!preds || preds->items.empty() || preds->items[0]->items.empty()) return nullptr;
  node* nodes = state_entry(preds->items[0]->items[0], "nodes");
  if (!nodes || !nodes->arr || nodes->arr->itemsize != 56) return nullptr;
  auto copy = std::make_shared<pyobj::ndarray>(*nodes->arr);
  auto buf = std::make_shared<std::vector<std::byte>>(3 * 56);
  auto& b = *buf;
  put<std::uint32_t>(b, 29, 1);          // left
  put<std::uint32_t>(b, 33, 2);          // right
  put<double>(b, 20, 0.5);               // num_threshold
  for (std::size_t r : {1u, 2u}) {
    put<double>(b, r * 56, r == 1 ? -1.0 : 1.0);  // value
    put<std::uint32_t>(b, r * 56 + 45, 1);        // depth
    b[r * 56 + 49] = std::byte{1};                // is_leaf
  }
  copy->shape = {3};
  copy->data = std::span<const std::byte>(b.data(), b.size());
  copy->owner = buf;
  l.g->keep(buf);
  nodes->arr = copy;
  return nodes;
}

TEST(BrokenHgb, NodeLayoutAndIndices) {
  {
    auto l = load_graph("hgb.vit");
    ASSERT_NE(hgb_split_nodes(l), nullptr);
    EXPECT_EQ(build_and_run(*l.g->root), errc::ok);  // the hand-made split is valid
  }
  {
    auto l = load_graph("hgb.vit");
    node* nodes = hgb_split_nodes(l);
    ASSERT_NE(nodes, nullptr);
    std::swap(nodes->arr->fields[5].name, nodes->arr->fields[6].name);  // left <-> right
    EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state);
  }
  for (std::size_t field : {5u, 6u, 2u, 12u}) {  // left, right, feature_idx, bitset_idx of the root
    auto l = load_graph("hgb.vit");
    node* nodes = hgb_split_nodes(l);
    ASSERT_NE(nodes, nullptr);
    auto& b = own_data(*l.g, *nodes);
    const auto& fl = nodes->arr->fields[field];
    if (fl.dtype == "<u4") put<std::uint32_t>(b, fl.offset, 0xFFFFFFF0u);
    else put<std::int64_t>(b, fl.offset, 1 << 20);
    if (field == 12) b[51] = std::byte{1};  // is_categorical: the bitset index is used
    EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state) << fl.name;
  }
}

TEST(BrokenSvm, SupportCountsAndCoefficients) {
  {
    auto l = load_graph("svc_rbf.vit");
    node* ns = state_entry(l.g->root, "_n_support");
    ASSERT_NE(ns, nullptr);
    auto& b = own_data(*l.g, *ns);
    put<std::int32_t>(b, 0, 1 << 30);
    EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state);
  }
  {
    auto l = load_graph("svc_rbf.vit");
    node* dc = state_entry(l.g->root, "_dual_coef_");
    ASSERT_NE(dc, nullptr);
    dc->arr = std::make_shared<pyobj::ndarray>(*dc->arr);
    dc->arr->shape[1] -= 1;
    dc->arr->data = dc->arr->data.first(dc->arr->data.size() - 8 * static_cast<std::size_t>(dc->arr->shape[0]));
    EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state);
  }
}

TEST(BrokenKMeans, CentersShape) {
  auto l = load_graph("kmeans.vit");
  node* c = state_entry(l.g->root, "cluster_centers_");
  ASSERT_NE(c, nullptr);
  c->arr = std::make_shared<pyobj::ndarray>(*c->arr);
  c->arr->shape[1] -= 1;
  c->arr->data = c->arr->data.first(c->arr->data.size() - 8 * static_cast<std::size_t>(c->arr->shape[0]));
  EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state);
}

TEST(BrokenNeighbors, LabelsOutOfRange) {
  auto l = load_graph("knn.vit");
  node* y = state_entry(l.g->root, "_y");
  ASSERT_NE(y, nullptr);
  auto& b = own_data(*l.g, *y);
  put<std::int64_t>(b, 0, 99);
  EXPECT_EQ(build_and_run(*l.g->root), errc::bad_state);
}

}  // namespace

namespace {

// The KD-tree of the seed KNeighborsClassifier: its state tuple (data, idx_array, node_data,
// node_bounds, leaf_size, n_levels, n_nodes, ...).
struct knn_tree_fixture {
  loaded l = load_graph("knn.vit");
  node* tree = state_entry(l.g->root, "_tree");
  node* item(std::size_t i) { return tree->obj->state->items[i]; }
  errc build() { return build_and_run(*l.g->root); }
};

TEST(BrokenNeighborTree, ValidBaseline) {
  knn_tree_fixture t;
  ASSERT_NE(t.tree, nullptr);
  ASSERT_EQ(t.tree->type_name(), "sklearn.neighbors._kd_tree.newObj");
  EXPECT_EQ(t.build(), errc::ok);
}

TEST(BrokenNeighborTree, IdxArrayOutOfRangeOrRepeated) {
  for (std::int64_t v : {std::int64_t{30}, std::int64_t{-1}, std::int64_t{1} << 40}) {
    knn_tree_fixture t;
    auto& b = own_data(*t.l.g, *t.item(1));
    put<std::int64_t>(b, 0, v);
    EXPECT_EQ(t.build(), errc::bad_state) << v;
  }
  knn_tree_fixture t;
  auto& b = own_data(*t.l.g, *t.item(1));
  std::memcpy(b.data(), b.data() + 8, 8);
  EXPECT_EQ(t.build(), errc::bad_state);
}

TEST(BrokenNeighborTree, NodeDataRangesAndLayout) {
  {
    knn_tree_fixture t;
    auto& b = own_data(*t.l.g, *t.item(2));
    put<std::int64_t>(b, 8, 31);  // idx_end of the root beyond n_samples
    EXPECT_EQ(t.build(), errc::bad_state);
  }
  {
    knn_tree_fixture t;
    std::swap(t.item(2)->arr->fields[0].name, t.item(2)->arr->fields[1].name);
    EXPECT_EQ(t.build(), errc::bad_state);
  }
  {
    knn_tree_fixture t;
    t.item(6)->i += 2;  // n_nodes
    EXPECT_EQ(t.build(), errc::bad_state);
  }
}

TEST(BrokenNeighborTree, NodeBoundsShapeAndClass) {
  {
    knn_tree_fixture t;
    node* nb = t.item(3);
    nb->arr = std::make_shared<pyobj::ndarray>(*nb->arr);
    nb->arr->shape = {1, nb->arr->shape[1], nb->arr->shape[2]};  // a BallTree's shape in a KDTree
    nb->arr->data = nb->arr->data.first(nb->arr->data.size() / 2);
    EXPECT_EQ(t.build(), errc::bad_state);
  }
  {
    knn_tree_fixture t;
    t.tree->obj->args[0]->text = "sklearn.neighbors.BallTree";  // KD reconstructor, Ball class
    EXPECT_EQ(t.build(), errc::bad_state);
  }
}

}  // namespace
