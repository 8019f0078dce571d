// test_value.cpp - typed values: canonical JSON encoding, exact round trips, and rejection of
// malformed encodings.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace vitrify;
using kind = value::kind;

namespace {

value parsed(std::string_view json) {
  auto r = parse_value(json);
  EXPECT_TRUE(r.ok()) << json << ": " << (r.ok() ? "" : r.err().what());
  return r.ok() ? std::move(r).value() : value();
}

/// to_json -> parse_value -> same tree, and the encoding is a fixed point.
void round_trip(const value& v) {
  auto j = to_json(v);
  SCOPED_TRACE(j);
  auto back = parse_value(j);
  ASSERT_TRUE(back.ok()) << back.err().what();
  EXPECT_EQ(to_json(*back), j);
  EXPECT_EQ(back->type(), v.type());
  bool has_nan = j.find("\"nan\"") != std::string::npos;
  if (!has_nan) {
    EXPECT_TRUE(*back == v);
  }
  std::string appended = "prefix:";
  append_json(appended, v);
  EXPECT_EQ(appended, "prefix:" + j);
}

value dict_of(std::vector<std::pair<value, value>> kv) {
  value d = value::dict();
  for (auto& [k, v] : kv) d.dict_set(std::move(k), std::move(v));
  return d;
}

}  // namespace

TEST(Value, ScalarsCanonicalJson) {
  EXPECT_EQ(to_json(value()), "null");
  EXPECT_EQ(to_json(value::null()), "null");
  EXPECT_EQ(to_json(value::boolean(true)), "true");
  EXPECT_EQ(to_json(value::boolean(false)), "false");
  EXPECT_EQ(to_json(value::integer(0)), "0");
  EXPECT_EQ(to_json(value::integer(-5)), "-5");
  EXPECT_EQ(to_json(value::integer(std::numeric_limits<std::int64_t>::max())), "9223372036854775807");
  EXPECT_EQ(to_json(value::integer(std::numeric_limits<std::int64_t>::min())), "-9223372036854775808");
  EXPECT_EQ(to_json(value::floating(0.1)), "0.1");
  EXPECT_EQ(to_json(value::floating(-2.5)), "-2.5");
  EXPECT_EQ(to_json(value::floating(std::numeric_limits<double>::quiet_NaN())), "{\"$float\":\"nan\"}");
  EXPECT_EQ(to_json(value::floating(std::numeric_limits<double>::infinity())), "{\"$float\":\"inf\"}");
  EXPECT_EQ(to_json(value::floating(-std::numeric_limits<double>::infinity())), "{\"$float\":\"-inf\"}");
  EXPECT_EQ(to_json(value::string("hi")), "\"hi\"");
  EXPECT_EQ(to_json(value::string("")), "\"\"");
  EXPECT_EQ(to_json(value::big_integer("123456789012345678901234567890")),
            "{\"$int\":\"123456789012345678901234567890\"}");
  EXPECT_EQ(to_json(value::array_ref("w")), "{\"$array\":\"w\"}");
  EXPECT_EQ(to_json(value::ref(3)), "{\"$ref\":3}");
  EXPECT_EQ(to_json(value::list()), "[]");
  EXPECT_EQ(to_json(value::tuple()), "{\"$tuple\":[]}");
  EXPECT_EQ(to_json(value::dict()), "{}");
  EXPECT_EQ(to_json(value::list({value::integer(1), value::string("a")})), "[1,\"a\"]");
}

TEST(Value, FloatsAlwaysLookLikeFloats) {
  for (double d : {1.0, -1.0, 0.0, 100.0, 1e22, 1e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                   123456789.0, 0.30000000000000004}) {
    auto j = to_json(value::floating(d));
    SCOPED_TRACE(j);
    EXPECT_NE(j.find_first_of(".eE"), std::string::npos);
    auto back = parsed(j);
    ASSERT_EQ(back.type(), kind::floating);
    EXPECT_EQ(back.as_double(), d);
    round_trip(value::floating(d));
  }
  // Shortest round trip: no excess digits.
  EXPECT_EQ(to_json(value::floating(0.30000000000000004)), "0.30000000000000004");
  EXPECT_LE(to_json(value::floating(1e22)).size(), 6u);
}

TEST(Value, NegativeZeroNanInfinity) {
  auto nz = parsed(to_json(value::floating(-0.0)));
  ASSERT_EQ(nz.type(), kind::floating);
  EXPECT_EQ(nz.as_double(), 0.0);
  EXPECT_TRUE(std::signbit(nz.as_double())) << to_json(value::floating(-0.0));
  auto pz = parsed(to_json(value::floating(0.0)));
  EXPECT_FALSE(std::signbit(pz.as_double()));
  EXPECT_NE(to_json(value::floating(-0.0)), to_json(value::floating(0.0)));

  auto nan = parsed("{\"$float\":\"nan\"}");
  ASSERT_EQ(nan.type(), kind::floating);
  EXPECT_TRUE(std::isnan(nan.as_double()));
  auto inf = parsed("{\"$float\":\"inf\"}");
  EXPECT_EQ(inf.as_double(), std::numeric_limits<double>::infinity());
  auto ninf = parsed("{\"$float\":\"-inf\"}");
  EXPECT_EQ(ninf.as_double(), -std::numeric_limits<double>::infinity());
  round_trip(value::floating(std::numeric_limits<double>::quiet_NaN()));
  round_trip(value::floating(std::numeric_limits<double>::infinity()));
  round_trip(value::floating(-std::numeric_limits<double>::infinity()));
  round_trip(value::floating(-0.0));
}

TEST(Value, NumbersParseByTheirSpelling) {
  EXPECT_EQ(parsed("1").type(), kind::integer);
  EXPECT_EQ(parsed("-0").type(), kind::integer);
  EXPECT_EQ(parsed("1.0").type(), kind::floating);
  EXPECT_EQ(parsed("1e5").type(), kind::floating);
  EXPECT_EQ(parsed("1E5").type(), kind::floating);
  EXPECT_EQ(parsed("-1.5e-3").as_double(), -1.5e-3);
  EXPECT_EQ(parsed("9223372036854775807").as_int(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parsed("-9223372036854775808").as_int(), std::numeric_limits<std::int64_t>::min());
  // Outside int64 without a $int tag: either a big integer or an error, never a wrapped int64.
  for (const char* big : {"9223372036854775808", "-9223372036854775809", "100000000000000000000000"}) {
    auto r = parse_value(big);
    if (r.ok()) {
      EXPECT_EQ(r->type(), kind::big_integer) << big;
      EXPECT_EQ(r->as_string(), big);
    } else {
      EXPECT_TRUE(r.code() == errc::bad_value || r.code() == errc::bad_header) << big << ": " << r.err().what();
    }
  }
}

TEST(Value, BigIntegers) {
  for (const char* s : {"123456789012345678901234567890", "-123456789012345678901234567890",
                        "9223372036854775808", "-9223372036854775809", "18446744073709551616"}) {
    SCOPED_TRACE(s);
    auto v = value::big_integer(s);
    EXPECT_EQ(to_json(v), std::string("{\"$int\":\"") + s + "\"}");
    round_trip(v);
    auto back = parsed(to_json(v));
    EXPECT_EQ(back.type(), kind::big_integer);
    EXPECT_EQ(back.as_string(), s);
  }
}

TEST(Value, StringsWithEscapesAndUnicode) {
  const std::string samples[] = {"a\"b\\c", "line\nbreak\ttab\r", std::string("nul\0byte", 8), "\x01\x1f\x7f",
                                 "é ü 权 🚀", "$not_a_tag", "{\"$array\":\"x\"}", "</script>"};
  for (const auto& s : samples) {
    auto j = to_json(value::string(s));
    SCOPED_TRACE(j);
    for (char c : j) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control character in JSON";
    round_trip(value::string(s));
    EXPECT_EQ(parsed(j).as_string(), s);
  }
  EXPECT_EQ(parsed("\"\\u00e9\\ud83d\\ude80\"").as_string(), "é🚀");
}

TEST(Value, BytesBase64) {
  const std::pair<std::string, const char*> cases[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
      {std::string("\0\xff\x10", 3), "AP8Q"}, {"\xfb\xff", "+/8="},
  };
  for (const auto& [raw, b64] : cases) {
    auto v = value::bytes(raw);
    EXPECT_EQ(to_json(v), std::string("{\"$bytes\":\"") + b64 + "\"}");
    round_trip(v);
    auto back = parsed(to_json(v));
    EXPECT_EQ(back.type(), kind::bytes);
    EXPECT_EQ(back.as_string(), raw);
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  round_trip(value::bytes(all));
}

TEST(Value, Containers) {
  round_trip(value::list({value::integer(1), value::list({value::list()}), value::dict()}));
  round_trip(value::tuple({value::integer(1)}));
  round_trip(value::tuple({value::tuple(), value::string("x"), value::null()}));
  // String-keyed dict: a plain JSON object.
  auto d = dict_of({{value::string("b"), value::integer(1)}, {value::string("a"), value::floating(2.5)}});
  auto j = to_json(d);
  EXPECT_TRUE(j == "{\"b\":1,\"a\":2.5}" || j == "{\"a\":2.5,\"b\":1}") << j;
  round_trip(d);
  EXPECT_EQ(d.dict_size(), 2u);
  ASSERT_NE(d.get("a"), nullptr);
  EXPECT_EQ(d.get("a")->as_double(), 2.5);
  EXPECT_EQ(d.get("zzz"), nullptr);
  EXPECT_EQ(value::integer(3).get("a"), nullptr);
  // Non-string keys and '$'-keys force the $dict form.
  auto nd = dict_of({{value::integer(1), value::string("one")},
                     {value::tuple({value::integer(1), value::integer(2)}), value::null()},
                     {value::string("s"), value::boolean(true)}});
  auto nj = to_json(nd);
  EXPECT_EQ(nj.rfind("{\"$dict\":", 0), 0u) << nj;
  round_trip(nd);
  auto back = parsed(nj);
  ASSERT_EQ(back.type(), kind::dict);
  EXPECT_EQ(back.dict_size(), 3u);
  EXPECT_EQ(back.dict_key(0).as_int(), 1);
  EXPECT_EQ(back.dict_value(0).as_string(), "one");
  EXPECT_EQ(back.dict_key(1).type(), kind::tuple);
  auto dollar = dict_of({{value::string("$array"), value::string("not a ref")}});
  EXPECT_EQ(to_json(dollar).rfind("{\"$dict\":", 0), 0u) << to_json(dollar);
  round_trip(dollar);
  EXPECT_EQ(parsed(to_json(dollar)).dict_key(0).as_string(), "$array");
  round_trip(dict_of({{value::floating(1.5), value::integer(1)}, {value::null(), value::integer(2)}}));
  // Parsing the $dict form directly.
  auto pd = parsed("{\"$dict\":[[1,2],[\"k\",[3]]]}");
  ASSERT_EQ(pd.type(), kind::dict);
  EXPECT_EQ(pd.dict_size(), 2u);
  // Nested objects.
  auto nested = parsed("{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}");
  ASSERT_NE(nested.get("a"), nullptr);
  ASSERT_NE(nested.get("a")->get("b"), nullptr);
  EXPECT_EQ(nested.get("a")->get("b")->get("c")->items().size(), 2u);
  round_trip(nested);
}

TEST(Value, TaggedKinds) {
  auto obj = value::object("sklearn.tree.DecisionTreeClassifier", 3,
                           dict_of({{value::string("depth"), value::integer(4)}}));
  EXPECT_EQ(obj.as_string(), "sklearn.tree.DecisionTreeClassifier");
  EXPECT_EQ(obj.as_int(), 3);
  EXPECT_EQ(obj.inner().get("depth")->as_int(), 4);
  auto oj = to_json(obj);
  EXPECT_EQ(oj.rfind("{\"$object\":{", 0), 0u) << oj;
  round_trip(obj);
  auto po = parsed("{\"$object\":{\"type\":\"t\",\"version\":2,\"state\":[1]}}");
  ASSERT_EQ(po.type(), kind::object);
  EXPECT_EQ(po.as_string(), "t");
  EXPECT_EQ(po.as_int(), 2);
  EXPECT_EQ(po.inner().items().size(), 1u);

  auto shared = value::list({value::shared(7, value::list({value::integer(1)})), value::ref(7), value::ref(7)});
  round_trip(shared);
  auto ps = parsed("[{\"$shared\":{\"id\":0,\"value\":\"x\"}},{\"$ref\":0}]");
  ASSERT_EQ(ps.items().size(), 2u);
  EXPECT_EQ(ps.items()[0].type(), kind::shared);
  EXPECT_EQ(ps.items()[0].as_int(), 0);
  EXPECT_EQ(ps.items()[0].inner().as_string(), "x");
  EXPECT_EQ(ps.items()[1].type(), kind::ref);
  EXPECT_EQ(ps.items()[1].as_int(), 0);
  // A reference may come before its definition ("a $shared id in the document").
  EXPECT_OK(parse_value("[{\"$ref\":0},{\"$shared\":{\"id\":0,\"value\":1}}]"));

  auto ar = parsed("{\"$array\":\"layer.0/w\"}");
  EXPECT_EQ(ar.type(), kind::array_ref);
  EXPECT_EQ(ar.as_string(), "layer.0/w");
  round_trip(value::array_ref("权重"));
  auto tup = parsed("{\"$tuple\":[1,\"a\"]}");
  EXPECT_EQ(tup.type(), kind::tuple);
  EXPECT_EQ(tup.items().size(), 2u);
  auto bi = parsed("{\"$bytes\":\"AP8Q\"}");
  EXPECT_EQ(bi.as_string(), std::string("\0\xff\x10", 3));

  // Everything at once.
  auto all = dict_of({
      {value::string("null"), value::null()},
      {value::string("bool"), value::boolean(true)},
      {value::string("int"), value::integer(-42)},
      {value::string("big"), value::big_integer("-99999999999999999999")},
      {value::string("float"), value::floating(1.25)},
      {value::string("str"), value::string("s")},
      {value::string("bytes"), value::bytes("\x01\x02")},
      {value::string("list"), value::list({value::integer(1)})},
      {value::string("tuple"), value::tuple({value::integer(1)})},
      {value::string("dict"), dict_of({{value::integer(1), value::integer(2)}})},
      {value::string("array"), value::array_ref("w")},
      {value::string("object"), value::object("t", 1, value::null())},
      {value::string("shared"), value::shared(1, value::string("s"))},
      {value::string("ref"), value::ref(1)},
  });
  round_trip(all);
}

TEST(Value, Equality) {
  EXPECT_TRUE(value::integer(1) == value::integer(1));
  EXPECT_FALSE(value::integer(1) == value::integer(2));
  EXPECT_FALSE(value::integer(1) == value::floating(1.0));
  EXPECT_FALSE(value::list() == value::tuple());
  EXPECT_FALSE(value::string("a") == value::bytes("a"));
  EXPECT_FALSE(value::string("a") == value::array_ref("a"));
  EXPECT_FALSE(value::list({value::integer(1)}) == value::list({value::integer(1), value::integer(2)}));
  EXPECT_TRUE(value() == value::null());
}

TEST(Value, RejectsMalformed) {
  const char* bad[] = {
      // unknown tags, tags mixed with other keys
      "{\"$foo\":1}", "{\"$\":1}", "{\"$array\":\"x\",\"y\":1}", "{\"$array\":\"x\",\"$tuple\":[]}",
      "{\"a\":1,\"$int\":\"5\"}",
      // $float
      "{\"$float\":\"NaN\"}", "{\"$float\":\"infinity\"}", "{\"$float\":1.0}", "{\"$float\":null}",
      // $int
      "{\"$int\":\"12a\"}", "{\"$int\":\"\"}", "{\"$int\":\"-\"}", "{\"$int\":5}", "{\"$int\":\" 5\"}",
      "{\"$int\":\"1.5\"}",
      // $bytes
      "{\"$bytes\":\"A\"}", "{\"$bytes\":\"AB\"}", "{\"$bytes\":\"@@@@\"}", "{\"$bytes\":5}",
      "{\"$bytes\":\"Zg=\"}", "{\"$bytes\":\"Zg==Zg==\"}",
      // $tuple, $dict
      "{\"$tuple\":5}", "{\"$tuple\":{}}", "{\"$dict\":5}", "{\"$dict\":[1]}", "{\"$dict\":[[1]]}",
      "{\"$dict\":[[1,2,3]]}",
      // $array
      "{\"$array\":5}", "{\"$array\":null}",
      // $object
      "{\"$object\":{\"type\":\"t\"}}", "{\"$object\":{\"type\":5,\"version\":1,\"state\":null}}",
      "{\"$object\":{\"type\":\"t\",\"version\":\"1\",\"state\":null}}",
      "{\"$object\":[]}",
      // $shared / $ref
      "{\"$shared\":{\"id\":-1,\"value\":1}}", "{\"$shared\":{\"id\":\"x\",\"value\":1}}",
      "{\"$shared\":{\"id\":1}}", "{\"$shared\":5}",
      "[{\"$shared\":{\"id\":1,\"value\":1}},{\"$shared\":{\"id\":1,\"value\":2}}]",
      "{\"$ref\":3}", "[{\"$shared\":{\"id\":1,\"value\":1}},{\"$ref\":2}]", "{\"$ref\":\"1\"}",
      "{\"$ref\":-1}",
  };
  for (const char* j : bad) {
    auto r = parse_value(j);
    EXPECT_FALSE(r.ok()) << "accepted: " << j;
    if (!r.ok()) {
      EXPECT_EQ(r.code(), errc::bad_value) << j << " -> " << r.err().what();
    }
  }
}

TEST(Value, RejectsInvalidJson) {
  // Not JSON, or not exactly one JSON document. The code is bad_value or bad_header: error.hpp
  // defines bad_header as "not valid JSON" and bad_value as "typed value malformed".
  const char* bad[] = {"", " ", "{", "[1,]", "nul", "'a'", "1 2", "[1] x", "{\"a\"}", "\"unterminated",
                       "\"\xff\"", "\"\xc3\"", "NaN", "Infinity", "01", "1.", ".5", "+1", "[1}", "\"\\x\""};
  for (const char* j : bad) {
    auto r = parse_value(j);
    EXPECT_FALSE(r.ok()) << "accepted: " << j;
    if (!r.ok()) {
      EXPECT_TRUE(r.code() == errc::bad_value || r.code() == errc::bad_header) << j << " -> " << r.err().what();
    }
  }
}

TEST(Value, DuplicateKeys) {
  EXPECT_CODE(parse_value("{\"a\":1,\"a\":2}"), errc::duplicate_name);
  EXPECT_CODE(parse_value("[{\"x\":{\"a\":1,\"b\":2,\"a\":3}}]"), errc::duplicate_name);
}

// The "$dict" form must not smuggle in what the object form forbids: a dict with two equal keys
// is ambiguous (first or last wins?) and readers in different languages would disagree.
TEST(Value, DictFormRejectsDuplicateKeys) {
  for (const char* j : {"{\"$dict\":[[\"a\",1],[\"a\",2]]}", "{\"$dict\":[[1,1],[1,2]]}",
                        "{\"$dict\":[[{\"$tuple\":[1,2]},1],[{\"$tuple\":[1,2]},2]]}"}) {
    auto r = parse_value(j);
    EXPECT_FALSE(r.ok()) << "accepted: " << j;
    if (!r.ok()) {
      EXPECT_TRUE(r.code() == errc::duplicate_name || r.code() == errc::bad_value) << r.err().what();
    }
  }
}

TEST(Value, DepthAndNodeLimits) {
  auto nest = [](int depth) {
    std::string s(static_cast<std::size_t>(depth), '[');
    s += std::string(static_cast<std::size_t>(depth), ']');
    return s;
  };
  EXPECT_OK(parse_value(nest(100)));
  EXPECT_CODE(parse_value(nest(300)), errc::limit_exceeded);
  value_limits lim;
  lim.max_depth = 5;
  EXPECT_OK(parse_value(nest(3), lim));
  EXPECT_CODE(parse_value(nest(10), lim), errc::limit_exceeded);
  // Tagged nesting counts too.
  std::string tagged;
  for (int i = 0; i < 10; ++i) tagged += "{\"$tuple\":[";
  tagged += "1";
  for (int i = 0; i < 10; ++i) tagged += "]}";
  EXPECT_CODE(parse_value(tagged, lim), errc::limit_exceeded);
  std::string objs;
  for (int i = 0; i < 10; ++i) objs += "{\"a\":";
  objs += "1";
  for (int i = 0; i < 10; ++i) objs += "}";
  EXPECT_CODE(parse_value(objs, lim), errc::limit_exceeded);
  // No stack overflow on absurd nesting.
  for (int depth : {100000, 1000000}) {
    auto r = parse_value(nest(depth));
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.code() == errc::limit_exceeded || r.code() == errc::bad_value) << r.err().what();
  }
  value_limits nodes;
  nodes.max_nodes = 10;
  EXPECT_OK(parse_value("[1,2,3]", nodes));
  EXPECT_CODE(parse_value("[1,2,3,4,5,6,7,8,9,10,11,12]", nodes), errc::limit_exceeded);
}

// The depth limit counts value nesting, whatever JSON form a kind uses: a "$dict" level takes
// three JSON levels ({"$dict":[[k,v]]}), so a JSON-depth cap of 2 x max_depth rejects values well
// within max_depth.
TEST(Value, DictFormNestingWithinTheDepthLimitParses) {
  value v = value::integer(0);
  for (int i = 0; i < 200; ++i) {
    value d = value::dict();
    d.dict_set(value::integer(i), v);
    v = d;
  }
  auto j = to_json(v);
  ASSERT_EQ(j.rfind("{\"$dict\":", 0), 0u);
  auto r = parse_value(j);
  EXPECT_TRUE(r.ok()) << r.err().what();
  // The same nesting with string keys (plain JSON objects) is accepted.
  value s = value::integer(0);
  for (int i = 0; i < 200; ++i) {
    value d = value::dict();
    d.dict_set(value::string("k"), s);
    s = d;
  }
  EXPECT_OK(parse_value(to_json(s)));
}

TEST(Value, DeepValueSurvivesEncoding) {
  value v = value::integer(1);
  for (int i = 0; i < 200; ++i) v = value::list({v});
  round_trip(v);
}
