// test_objects_encode.cpp - the one emitter of the object encoding (src/objects/encode.hpp) and
// convert's walker onto it: float text as Python writes it, $shared splicing for shared nodes
// and cycles, keysets, pool alignment, and a keyset conflict redone with plain dicts.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "objects/encode.hpp"
#include "test_support.hpp"
#include "vitrify/convert.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/vitrify.hpp"

using namespace vitrify;
namespace ob = vitrify::objects;

namespace {

struct written {
  std::vector<std::byte> bytes;
  file f;
};

// The packed tree of an in-memory file, after the checks every reader makes.
std::string packed_text(const file& f) {
  auto i = f.find(ob::packed_name);
  EXPECT_TRUE(i.ok());
  const auto& info = f.arrays()[*i];
  std::string s(static_cast<std::size_t>(info.decoded_length), '\0');
  auto r = f.read_into(*i, std::as_writable_bytes(std::span<char>(s.data(), s.size())));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().what());
  return s;
}

written finish(ob::emitter& e, ob::emit_result* out = nullptr) {
  auto w = writer::create_in_memory();
  EXPECT_TRUE(w.ok());
  auto r = e.finish(*w);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().what());
  w->set_content(ob::emitter::content(*r, value()));
  if (out) *out = *r;
  EXPECT_TRUE(w->commit().ok());
  written x;
  x.bytes = w->take_bytes();
  auto f = file::from_bytes(x.bytes);
  EXPECT_TRUE(f.ok()) << (f.ok() ? "" : f.err().what());
  x.f = std::move(f).value();
  return x;
}

}  // namespace

TEST(ObjectsEncode, FloatsAreWrittenAsPythonReprs) {
  // repr() of each value in CPython; json.dumps writes the same text.
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},       {-0.0, "-0.0"},        {1.0, "1.0"},       {0.1, "0.1"},
      {1e16, "1e+16"},    {1e15, "1000000000000000.0"},               {1.5e16, "1.5e+16"},
      {1e-5, "1e-05"},    {0.0001, "0.0001"},    {123456789.123, "123456789.123"},
      {5e-324, "5e-324"}, {1e300, "1e+300"},     {1.0 / 3, "0.3333333333333333"},
      {9007199254740992.0, "9007199254740992.0"}, {1e22, "1e+22"},    {123e-7, "1.23e-05"},
      {-2.5e-300, "-2.5e-300"},                  {1.7976931348623157e308, "1.7976931348623157e+308"},
  };
  for (const auto& [d, text] : cases) {
    std::string s;
    ob::append_float_repr(s, d);
    EXPECT_EQ(s, text);
    auto back = parse_value(s);
    ASSERT_TRUE(back.ok()) << s;
    std::uint64_t a, b;
    const double got = back->as_double();
    std::memcpy(&a, &got, 8);
    std::memcpy(&b, &d, 8);
    EXPECT_EQ(a, b) << s << " does not round-trip";
  }
  ob::emitter e;
  e.begin_list();
  e.floating(std::numeric_limits<double>::quiet_NaN());
  e.floating(-std::numeric_limits<double>::infinity());
  e.end_list();
  EXPECT_EQ(e.text(), R"([{"$float":"nan"},{"$float":"-inf"}])");
}

TEST(ObjectsEncode, NodesMetTwiceAreSplicedAsSharedWithCycles) {
  ob::emitter e;
  const auto root = e.open_node();
  e.begin_list();
  const auto inner = e.open_node();
  e.begin_tuple();
  e.integer(1);
  e.end_tuple();
  e.close_node(inner);
  e.ref(inner);
  e.ref(root);  // a cycle back to the list being written
  const auto lone = e.open_node();
  e.begin_dict();
  e.key("$x");
  e.null();
  e.end_dict();
  e.close_node(lone);
  e.end_list();
  e.close_node(root);
  auto x = finish(e);
  const std::string text = packed_text(x.f);
  EXPECT_EQ(text, R"({"root":{"$shared":{"id":1,"value":[{"$shared":{"id":0,"value":{"$tuple":[1]}}},{"$ref":0},{"$ref":1},{"$x":null}]}}})");
}

TEST(ObjectsEncode, KeysetsAndDtypesAreTablesOfTheBody) {
  ob::emitter e;
  EXPECT_EQ(e.keyset({"a", "b"}), 0);
  EXPECT_EQ(e.keyset({"a", "bc"}), 1);
  EXPECT_EQ(e.keyset({"a", "b"}), 0);
  EXPECT_EQ(e.keyset({"ab"}), 2);  // no collision between ["a","b"] and ["ab"]
  const std::string d = R"({"fields":[["a","<i4",0]],"itemsize":4,"aligned":false})";
  EXPECT_EQ(e.dtype_index(d), 0);
  EXPECT_EQ(e.dtype_index(d), 0);
  e.null();
  auto x = finish(e);
  EXPECT_EQ(packed_text(x.f), std::string(R"({"root":null,"keys":[["a","b"],["a","bc"],["ab"]],"dtypes":[)") + d + "]}");
}

TEST(ObjectsEncode, PooledArraysAreAligned) {
  ob::emitter e;
  std::vector<std::byte> small(3, std::byte{7}), big(5000, std::byte{9});
  ob::fixed_array a;
  a.dtype_str = "|u1";
  a.shape = {3};
  a.data = small;
  e.begin_list();
  ASSERT_TRUE(e.fixed(a).ok());
  a.shape = {5000};
  a.data = big;
  ASSERT_TRUE(e.fixed(a).ok());
  a.shape = {0};
  a.data = {};
  ASSERT_TRUE(e.fixed(a).ok());
  e.end_list();
  ob::emit_result r;
  auto x = finish(e, &r);
  EXPECT_TRUE(r.pooled);
  EXPECT_EQ(r.pooled_arrays, 3u);
  EXPECT_EQ(packed_text(x.f), R"({"root":[{"p":[0,3],"t":"|u1","s":[3]},{"p":[64,5000],"t":"|u1","s":[5000]},{"p":[0,0],"t":"|u1","s":[0]}]})");
  auto p = x.f.find(ob::pool_name);
  ASSERT_TRUE(p.ok());
  auto v = x.f.view(*p, true);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->size(), 5064u);
  EXPECT_EQ((*v)[2], std::byte{7});
  EXPECT_EQ((*v)[3], std::byte{0});  // padding is zero
  EXPECT_EQ((*v)[64], std::byte{9});
}

TEST(ObjectsEncode, ConvertRedoesAKeysetReferencedTwiceAsAPlainSharedDict) {
  // [obj, obj.__dict__]: the state cannot be a keyset (it has no node of its own there).
  pyobj::graph g;
  auto* key = g.make();
  key->k = pyobj::node::kind::string;
  key->text = "coef_";
  auto* val = g.make();
  val->k = pyobj::node::kind::integer;
  val->i = 3;
  auto* state = g.make();
  state->k = pyobj::node::kind::dict;
  state->entries.emplace_back(key, val);
  auto* obj = g.make();
  obj->k = pyobj::node::kind::object;
  obj->obj = std::make_shared<pyobj::object>();
  obj->obj->type = "sklearn.linear_model.LinearRegression";
  obj->obj->newobj = true;
  obj->obj->state = state;
  auto* root = g.make();
  root->k = pyobj::node::kind::list;
  root->items = {obj, state};
  auto w = writer::create_in_memory();
  ASSERT_TRUE(w.ok());
  legacy::encode_options o;
  o.schema = false;
  auto info = legacy::write_objects(*root, *w, o);
  ASSERT_TRUE(info.ok()) << info.err().what();
  EXPECT_EQ(info->shared, 1u);
  ASSERT_TRUE(w->commit().ok());
  auto bytes = w->take_bytes();
  auto f = file::from_bytes(bytes);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(packed_text(*f),
            R"({"root":[{"$object":{"type":"sklearn.linear_model.LinearRegression","version":1,"state":{"n":true,"s":{"$shared":{"id":0,"value":{"coef_":3}}}}}},{"$ref":0}]})");
  auto back = pyobj::decode_objects(*f);
  ASSERT_TRUE(back.ok()) << back.err().what();
  const auto* r = (*back)->root;
  ASSERT_EQ(r->items.size(), 2u);
  EXPECT_EQ(r->items[0]->obj->state, r->items[1]);  // one node, reached twice
}
