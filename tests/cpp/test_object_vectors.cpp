// test_object_vectors.cpp - the golden object vectors (tests/vectors/objects/, docs/OBJECTS.md)
// through the C++ decoder of the object encoding (vitrify::pyobj::decode_objects).
//
// Valid files must decode to an inert graph whose description equals the manifest's (the
// description language is documented in tests/vectors/objects/generate.py; dtype strings are
// compared without their byte-order character, since the graph holds numeric data
// little-endian) and refer to the names the manifest lists. Invalid files must fail with the
// manifest's error code, when the file is opened or when its objects are decoded. One test per
// vector, so that a decoder crash on one file is reported as that file's failure.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/reader.hpp"

namespace fs = std::filesystem;
using vitrify::pyobj::node;
using nk = vitrify::pyobj::node::kind;

namespace {

fs::path vectors_dir() { return fs::path(__FILE__).parent_path().parent_path() / "vectors" / "objects"; }

struct vec {
  std::string name;          // file stem
  std::string file;          // relative to vectors_dir()
  std::string errc;          // invalid: expected code name
  std::string value;         // valid: expected description, emitted by emit_expected
  bool has_value = false;
  std::vector<std::string> names;
};

void PrintTo(const vec& v, std::ostream* os) { *os << v.file; }

void escape(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

std::string strip_order(std::string_view dt) {
  if (!dt.empty() && (dt[0] == '<' || dt[0] == '>' || dt[0] == '|' || dt[0] == '=')) dt.remove_prefix(1);
  return std::string(dt);
}

// The manifest's description, re-emitted compactly with dtype strings stripped of their order.
void emit_expected(std::string& out, simdjson::dom::element e, std::string_view key, bool in_dtype) {
  using et = simdjson::dom::element_type;
  switch (e.type()) {
    case et::ARRAY: {
      out += '[';
      bool first = true;
      const simdjson::dom::array arr = e.get_array().value_unsafe();
      for (simdjson::dom::element x : arr) {
        if (!first) out += ',';
        first = false;
        // "fields": [[name, dtype, offset], ...]
        if (key == "fields" && x.is_array()) {
          out += '[';
          std::size_t j = 0;
          const simdjson::dom::array triple = x.get_array().value_unsafe();
          for (simdjson::dom::element y : triple) {
            if (j) out += ',';
            if (j == 1 && y.is_string()) escape(out, strip_order(y.get_string().value_unsafe()));
            else emit_expected(out, y, "", false);
            ++j;
          }
          out += ']';
        } else {
          emit_expected(out, x, "", false);
        }
      }
      out += ']';
      return;
    }
    case et::OBJECT: {
      out += '{';
      bool first = true;
      const simdjson::dom::object obj = e.get_object().value_unsafe();
      for (simdjson::dom::key_value_pair f : obj) {
        if (!first) out += ',';
        first = false;
        escape(out, f.key);
        out += ':';
        const bool dtype_string = f.value.is_string() && (f.key == "dtype" || (in_dtype && f.key == "str"));
        if (dtype_string) escape(out, strip_order(f.value.get_string().value_unsafe()));
        else emit_expected(out, f.value, f.key, f.key == "dtype");
      }
      out += '}';
      return;
    }
    case et::STRING: escape(out, e.get_string().value_unsafe()); return;
    case et::INT64: out += std::to_string(e.get_int64().value_unsafe()); return;
    case et::UINT64: out += std::to_string(e.get_uint64().value_unsafe()); return;
    case et::BOOL: out += e.get_bool().value_unsafe() ? "true" : "false"; return;
    case et::NULL_VALUE: out += "null"; return;
    default: ADD_FAILURE() << "unexpected JSON in the manifest"; return;
  }
}

std::vector<vec> load_manifest(const char* section) {
  static simdjson::dom::parser parser;
  static simdjson::dom::element doc = parser.load((vectors_dir() / "manifest.json").string()).value();
  std::vector<vec> out;
  const simdjson::dom::array records = doc[section].get_array().value();
  for (simdjson::dom::element r : records) {
    vec v;
    v.file = std::string(r["file"].get_string().value());
    v.name = fs::path(v.file).stem().string();
    if (std::string_view(section) == "invalid") {
      v.errc = std::string(r["errc"].get_string().value());
    } else {
      simdjson::dom::element val;
      if (r["value"].get(val) == simdjson::SUCCESS) {
        emit_expected(v.value, val, "", false);
        v.has_value = true;
      }
      const simdjson::dom::array names = r["names"].get_array().value();
      for (simdjson::dom::element n : names) v.names.emplace_back(n.get_string().value());
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string hex(std::span<const std::byte> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += d[static_cast<unsigned>(x) >> 4];
    s += d[static_cast<unsigned>(x) & 15];
  }
  return s;
}

std::string hex(std::string_view s) { return hex(std::as_bytes(std::span<const char>(s.data(), s.size()))); }

const std::set<std::string, std::less<>> kSpecial = {
    "builtins.slice", "builtins.range", "builtins.bytearray", "numpy.random.RandomState",
    "numpy.random.Generator", "numpy.ma.MaskedArray"};
const std::set<std::string, std::less<>> kBitGenerators = {
    "numpy.random.PCG64", "numpy.random.PCG64DXSM", "numpy.random.MT19937", "numpy.random.Philox",
    "numpy.random.SFC64"};

bool counted(const node* n) {
  switch (n->k) {
    case nk::list: case nk::dict: case nk::set: case nk::frozenset: case nk::array: case nk::object: return true;
    case nk::tuple: return !n->items.empty();  // () is one object in Python
    default: return false;
  }
}

bool special(const node* n) { return n->k == nk::object && kSpecial.count(n->obj->type); }

// The description of a graph (same language as the manifest), with shared / ref numbering.
class describer {
 public:
  explicit describer(const node* root) { walk(root); }

  std::string operator()(const node* n) {
    std::string out;
    emit(out, n, true);
    return out;
  }

  // Names the trust check covers: object types except the special ones, globals, and
  // Generators' bit generators outside numpy's own.
  std::set<std::string> names;
  // The object types and globals among them (what referenced_names() reports too).
  std::set<std::string> type_names;

 private:
  void walk(const node* root) {
    std::vector<const node*> stack{root};
    while (!stack.empty()) {
      const node* n = stack.back();
      stack.pop_back();
      if (!n) continue;
      if (n->k == nk::global) {
        names.insert(n->text);
        type_names.insert(n->text);
      }
      if (n->k == nk::object) {
        if (!kSpecial.count(n->obj->type)) {
          names.insert(n->obj->type);
          type_names.insert(n->obj->type);
        }
        if (n->obj->type == "numpy.random.Generator" && n->obj->state) {
          const node* bg = n->obj->state->get("bit_generator");
          if (bg && bg->k == nk::string && !kBitGenerators.count(bg->text)) names.insert(bg->text);
        }
      }
      if (!counted(n)) continue;
      if (count_[n]++) continue;
      if (special(n)) continue;
      for (auto* x : n->items) stack.push_back(x);
      for (auto& [k, v] : n->entries) {
        stack.push_back(k);
        stack.push_back(v);
      }
      if (n->arr)
        for (auto* x : n->arr->items) stack.push_back(x);
      if (n->k == nk::object) stack.push_back(n->obj->state);
    }
  }

  void emit(std::string& out, const node* n, bool count) {
    if (count && n && counted(n) && count_[n] >= 2) {
      auto it = ids_.find(n);
      if (it != ids_.end()) {
        out += "{\"ref\":" + std::to_string(it->second) + "}";
        return;
      }
      const int k = static_cast<int>(ids_.size());
      ids_[n] = k;
      out += "{\"shared\":" + std::to_string(k) + ",\"value\":";
      body(out, n, count);
      out += '}';
      return;
    }
    body(out, n, count);
  }

  void items(std::string& out, const char* tag, const std::vector<vitrify::pyobj::node_ptr>& xs, bool count, bool sort) {
    std::vector<std::string> parts;
    for (auto* x : xs) {
      std::string s;
      emit(s, x, count);
      parts.push_back(std::move(s));
    }
    if (sort) std::sort(parts.begin(), parts.end());
    out += std::string("{\"") + tag + "\":[";
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "," : "") + parts[i];
    out += "]}";
  }

  static std::string float_bits(double d) {
    std::uint64_t u;
    std::memcpy(&u, &d, 8);
    char buf[32];
    std::snprintf(buf, sizeof buf, "{\"float\":\"%016" PRIx64 "\"}", u);
    return buf;
  }

  static void fields(std::string& out, const std::vector<vitrify::pyobj::field>& fs) {
    out += ",\"fields\":[";
    for (std::size_t i = 0; i < fs.size(); ++i) {
      out += i ? ",[" : "[";
      escape(out, fs[i].name);
      out += ',';
      escape(out, strip_order(fs[i].dtype));
      out += ',' + std::to_string(fs[i].offset) + ']';
    }
    out += ']';
  }

  // XXH3-64 of the elements in logical C order (the graph holds Fortran data transposed).
  static std::string elements_hash(const vitrify::pyobj::ndarray& a) {
    const std::uint64_t n = a.count(), w = a.itemsize;
    if (n * w != a.data.size()) return "size-mismatch:" + std::to_string(a.data.size());
    if (!a.fortran || a.shape.size() < 2) return vt::hex16(vt::xxh3(a.data));
    std::vector<std::byte> c(a.data.size());
    std::vector<std::uint64_t> idx(a.shape.size(), 0);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t off = 0, stride = 1;
      for (std::size_t k = 0; k < idx.size(); ++k) {
        off += idx[k] * stride;
        stride *= static_cast<std::uint64_t>(a.shape[k]);
      }
      std::memcpy(c.data() + i * w, a.data.data() + off * w, w);
      for (std::size_t k = idx.size(); k-- > 0;) {
        if (++idx[k] < static_cast<std::uint64_t>(a.shape[k])) break;
        idx[k] = 0;
      }
    }
    return vt::hex16(vt::xxh3(c));
  }

  void array(std::string& out, const vitrify::pyobj::ndarray& a, bool count) {
    out += "{\"ndarray\":{\"dtype\":";
    escape(out, strip_order(a.dtype));
    out += ",\"shape\":[";
    for (std::size_t i = 0; i < a.shape.size(); ++i) out += (i ? "," : "") + std::to_string(a.shape[i]);
    out += ']';
    const char kind = a.kind();
    if (kind == 'U' || (kind == 'O' && a.strings_are_objects)) {
      out += ",\"strings\":[";
      for (std::size_t i = 0; i < a.strings.size(); ++i) {
        if (i) out += ',';
        escape(out, a.strings[i]);
      }
      out += ']';
    } else if (kind == 'S') {
      out += ",\"bytes\":[";
      for (std::size_t i = 0; i < a.strings.size(); ++i) out += (i ? ",\"" : "\"") + hex(a.strings[i]) + '"';
      out += ']';
    } else if (kind == 'O') {
      std::string s;
      items(s, "items", a.items, count, false);
      out += "," + s.substr(1, s.size() - 2);  // "items":[...] without the braces
    } else {
      out += ",\"xxh3\":\"" + elements_hash(a) + '"';
    }
    if (!a.fields.empty()) fields(out, a.fields);
    out += "}}";
  }

  void body(std::string& out, const node* n, bool count) {
    if (!n) {
      out += "null";
      return;
    }
    switch (n->k) {
      case nk::none: out += "null"; return;
      case nk::boolean: out += n->b ? "true" : "false"; return;
      case nk::integer: out += "{\"int\":\"" + std::to_string(n->i) + "\"}"; return;
      case nk::big_integer: out += "{\"int\":\"" + n->text + "\"}"; return;
      case nk::floating: out += float_bits(n->d); return;
      case nk::complex: out += "{\"complex\":[" + float_bits(n->d) + "," + float_bits(n->imag) + "]}"; return;
      case nk::string: out += "{\"str\":"; escape(out, n->text); out += '}'; return;
      case nk::bytes: out += "{\"bytes\":\"" + hex(n->text) + "\"}"; return;
      case nk::list: items(out, "list", n->items, count, false); return;
      case nk::tuple: items(out, "tuple", n->items, count, false); return;
      case nk::set: items(out, "set", n->items, count, true); return;
      case nk::frozenset: items(out, "frozenset", n->items, count, true); return;
      case nk::dict: {
        out += "{\"dict\":[";
        for (std::size_t i = 0; i < n->entries.size(); ++i) {
          out += i ? ",[" : "[";
          emit(out, n->entries[i].first, count);
          out += ',';
          emit(out, n->entries[i].second, count);
          out += ']';
        }
        out += "]}";
        return;
      }
      case nk::array: array(out, *n->arr, count); return;
      case nk::scalar:
        out += "{\"scalar\":{\"dtype\":";
        escape(out, strip_order(n->arr->dtype));
        out += ",\"hex\":\"" + hex(n->arr->data) + "\"}}";
        return;
      case nk::dtype:
        out += "{\"dtype\":{\"str\":";
        escape(out, strip_order(n->text));
        if (n->arr && !n->arr->fields.empty()) fields(out, n->arr->fields);
        out += "}}";
        return;
      case nk::global: out += "{\"global\":"; escape(out, n->text); out += '}'; return;
      case nk::object: object(out, n, count); return;
    }
    out += "\"unknown node kind\"";
  }

  void object(std::string& out, const node* n, bool count) {
    const auto& o = *n->obj;
    const node* st = o.state;
    if (o.type == "builtins.slice" || o.type == "builtins.range") {
      if (!st) { out += "\"no state\""; return; }
      items(out, o.type == "builtins.slice" ? "slice" : "range", st->items, false, false);
      return;
    }
    if (o.type == "builtins.bytearray") {
      out += "{\"bytearray\":\"" + (st ? hex(st->text) : std::string()) + "\"}";
      return;
    }
    if (o.type == "numpy.random.RandomState") {
      out += "{\"random_state\":";
      emit(out, st, false);
      out += '}';
      return;
    }
    if (o.type == "numpy.random.Generator") {
      const node* bg = st ? st->get("bit_generator") : nullptr;
      out += "{\"generator\":{\"bit_generator\":";
      escape(out, bg ? bg->text : "");
      out += ",\"state\":";
      emit(out, st ? st->get("state") : nullptr, false);
      out += "}}";
      return;
    }
    if (o.type == "numpy.ma.MaskedArray") {
      out += "{\"masked_array\":{";
      const char* keys[] = {"data", "mask", "fill_value"};
      for (int i = 0; i < 3; ++i) {
        out += std::string(i ? "," : "") + "\"" + keys[i] + "\":";
        emit(out, st ? st->get(keys[i]) : nullptr, false);
      }
      out += "}}";
      return;
    }
    out += "{\"object\":{\"type\":";
    escape(out, o.type);
    out += ",\"state\":";
    if (st) emit(out, st, count);
    else out += "{\"dict\":[]}";  // no state: Python's __dict__ is empty
    out += "}}";
  }

  std::map<const node*, int> count_;
  std::map<const node*, int> ids_;
};

struct outcome {
  vitrify::errc code = vitrify::errc::ok;
  std::string message;
  std::shared_ptr<vitrify::pyobj::graph> graph;
};

outcome decode(const vec& v) {
  outcome o;
  auto f = vitrify::file::open(vectors_dir() / v.file);
  if (!f) {
    o.code = f.code();
    o.message = f.err().message;
    return o;
  }
  auto g = vitrify::pyobj::decode_objects(*f);
  if (!g) {
    o.code = g.code();
    o.message = g.err().message;
    return o;
  }
  o.graph = std::move(g).value();
  return o;
}

std::string test_name(const testing::TestParamInfo<vec>& info) { return info.param.name; }

class ValidObjectVector : public testing::TestWithParam<vec> {};
class InvalidObjectVector : public testing::TestWithParam<vec> {};

}  // namespace

TEST_P(ValidObjectVector, DecodesToTheDescribedGraph) {
  const vec& v = GetParam();
  outcome o = decode(v);
  ASSERT_EQ(o.code, vitrify::errc::ok) << o.message;
  ASSERT_NE(o.graph->root, nullptr);
  describer d(o.graph->root);
  EXPECT_EQ(std::vector<std::string>(d.names.begin(), d.names.end()), v.names);
  const auto listed = vitrify::pyobj::referenced_names(*o.graph->root);
  for (const auto& n : d.type_names) {
    EXPECT_TRUE(std::find(listed.begin(), listed.end(), n) != listed.end()) << n;
  }
  if (v.has_value) {
    EXPECT_EQ(d(o.graph->root), v.value);
  }
}

TEST_P(InvalidObjectVector, FailsWithTheListedError) {
  const vec& v = GetParam();
  outcome o = decode(v);
  EXPECT_EQ(std::string(vitrify::errc_name(o.code)), v.errc) << o.message;
}

INSTANTIATE_TEST_SUITE_P(Objects, ValidObjectVector, testing::ValuesIn(load_manifest("valid")), test_name);
INSTANTIATE_TEST_SUITE_P(Objects, InvalidObjectVector, testing::ValuesIn(load_manifest("invalid")), test_name);
