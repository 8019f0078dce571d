// The non-executing pickle reader: a pickle virtual machine (protocols 0 to 5) whose opcodes
// build inert pyobj nodes. Names are never imported and callables never called: a call to a
// known constructor (numpy arrays, dtypes and scalars, copyreg, collections, set/complex/...,
// numpy random states, joblib's array wrappers, torch tensor rebuilds) is replaced by the node
// it would produce; any other call becomes an object node recording (callee, args) and is
// listed in read_result::calls. Everything read is checked against the bytes that remain and
// the limits in read_options; anything the machine cannot account for is a problem, and a
// stream with problems is never complete.
//
// This file is the virtual machine itself: opcode decoding, the stack, memo and frames, the
// limits, and the entry points. The machine class is declared in pickle_internal.hpp; what calls
// become is in pickle_calls.cpp, joblib's array wrappers in pickle_joblib.cpp, persistent ids and
// torch tensors in pickle_torch.cpp.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "legacy/pickle_internal.hpp"

namespace vitrify::legacy {

namespace detail {
namespace pickle {
namespace {

// ---- opcodes (CPython Lib/pickle.py) ----
enum op : unsigned char {
  MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', FLOAT = 'F', INT = 'I', BININT = 'J',
  BININT1 = 'K', LONG = 'L', BININT2 = 'M', NONE = 'N', PERSID = 'P', BINPERSID = 'Q', REDUCE = 'R',
  STRING = 'S', BINSTRING = 'T', SHORT_BINSTRING = 'U', UNICODE = 'V', BINUNICODE = 'X', APPEND = 'a',
  BUILD = 'b', GLOBAL = 'c', DICT = 'd', EMPTY_DICT = '}', APPENDS = 'e', GET = 'g', BINGET = 'h',
  INST = 'i', LONG_BINGET = 'j', LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', PUT = 'p', BINPUT = 'q',
  LONG_BINPUT = 'r', SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
  PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86,
  TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = 'B',
  SHORT_BINBYTES = 'C', SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
  ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
  BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
};

const char* op_name(unsigned char c) {
  switch (c) {
    case MARK: return "MARK"; case STOP: return "STOP"; case POP: return "POP"; case POP_MARK: return "POP_MARK";
    case DUP: return "DUP"; case FLOAT: return "FLOAT"; case INT: return "INT"; case BININT: return "BININT";
    case BININT1: return "BININT1"; case LONG: return "LONG"; case BININT2: return "BININT2"; case NONE: return "NONE";
    case PERSID: return "PERSID"; case BINPERSID: return "BINPERSID"; case REDUCE: return "REDUCE";
    case STRING: return "STRING"; case BINSTRING: return "BINSTRING"; case SHORT_BINSTRING: return "SHORT_BINSTRING";
    case UNICODE: return "UNICODE"; case BINUNICODE: return "BINUNICODE"; case APPEND: return "APPEND";
    case BUILD: return "BUILD"; case GLOBAL: return "GLOBAL"; case DICT: return "DICT"; case EMPTY_DICT: return "EMPTY_DICT";
    case APPENDS: return "APPENDS"; case GET: return "GET"; case BINGET: return "BINGET"; case INST: return "INST";
    case LONG_BINGET: return "LONG_BINGET"; case LIST: return "LIST"; case EMPTY_LIST: return "EMPTY_LIST";
    case OBJ: return "OBJ"; case PUT: return "PUT"; case BINPUT: return "BINPUT"; case LONG_BINPUT: return "LONG_BINPUT";
    case SETITEM: return "SETITEM"; case TUPLE: return "TUPLE"; case EMPTY_TUPLE: return "EMPTY_TUPLE";
    case SETITEMS: return "SETITEMS"; case BINFLOAT: return "BINFLOAT"; case PROTO: return "PROTO";
    case NEWOBJ: return "NEWOBJ"; case EXT1: return "EXT1"; case EXT2: return "EXT2"; case EXT4: return "EXT4";
    case TUPLE1: return "TUPLE1"; case TUPLE2: return "TUPLE2"; case TUPLE3: return "TUPLE3";
    case NEWTRUE: return "NEWTRUE"; case NEWFALSE: return "NEWFALSE"; case LONG1: return "LONG1"; case LONG4: return "LONG4";
    case BINBYTES: return "BINBYTES"; case SHORT_BINBYTES: return "SHORT_BINBYTES";
    case SHORT_BINUNICODE: return "SHORT_BINUNICODE"; case BINUNICODE8: return "BINUNICODE8";
    case BINBYTES8: return "BINBYTES8"; case EMPTY_SET: return "EMPTY_SET"; case ADDITEMS: return "ADDITEMS";
    case FROZENSET: return "FROZENSET"; case NEWOBJ_EX: return "NEWOBJ_EX"; case STACK_GLOBAL: return "STACK_GLOBAL";
    case MEMOIZE: return "MEMOIZE"; case FRAME: return "FRAME"; case BYTEARRAY8: return "BYTEARRAY8";
    case NEXT_BUFFER: return "NEXT_BUFFER"; case READONLY_BUFFER: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) append_utf8(out, c);
  return out;
}

// Python's raw-unicode-escape decoding (protocol 0 UNICODE): \uXXXX and \UXXXXXXXX escapes,
// every other byte is a Latin-1 character.
bool raw_unicode_escape(std::string_view s, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
      std::size_t n = s[i + 1] == 'u' ? 4 : 8;
      if (i + 2 + n > s.size()) return false;
      std::uint32_t cp = 0;
      auto r = std::from_chars(s.data() + i + 2, s.data() + i + 2 + n, cp, 16);
      if (r.ec != std::errc() || r.ptr != s.data() + i + 2 + n || cp > 0x10FFFF) return false;
      append_utf8(out, cp);
      i += 1 + n;
    } else {
      append_utf8(out, c);
    }
  }
  return true;
}

// Python 2 string literal (protocol 0 STRING): quoted, with backslash escapes -> bytes.
bool py_string_literal(std::string_view s, std::string& out) {
  if (s.size() < 2 || (s.front() != '\'' && s.front() != '"') || s.back() != s.front()) return false;
  s = s.substr(1, s.size() - 2);
  out.clear();
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= s.size()) return false;
    char e = s[i];
    switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': {
        if (i + 2 >= s.size()) return false;  // two hex digits at i+1, i+2
        unsigned v = 0;
        auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
        if (r.ec != std::errc() || r.ptr != s.data() + i + 3) return false;
        out += static_cast<char>(v);
        i += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          unsigned v = 0;
          std::size_t k = 0;
          while (k < 3 && i + k < s.size() && s[i + k] >= '0' && s[i + k] <= '7') v = v * 8 + static_cast<unsigned>(s[i + k++] - '0');
          out += static_cast<char>(v & 0xFF);
          i += k - 1;
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return true;
}

// Two's-complement little-endian integer (LONG1/LONG4) -> decimal text.
std::string long_to_decimal(std::span<const std::byte> b) {
  if (b.empty()) return "0";
  bool neg = (static_cast<std::uint8_t>(b.back()) & 0x80) != 0;
  std::vector<std::uint8_t> mag(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) mag[i] = static_cast<std::uint8_t>(b[i]);
  if (neg) {  // magnitude = two's complement negation
    unsigned carry = 1;
    for (auto& x : mag) {
      unsigned v = static_cast<unsigned>(static_cast<std::uint8_t>(~x)) + carry;
      x = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
  }
  std::string digits;
  // Repeated division by 10^9 of the little-endian base-256 magnitude.
  std::vector<std::uint8_t> cur(mag.rbegin(), mag.rend());  // big-endian
  while (!cur.empty() && cur.front() == 0) cur.erase(cur.begin());
  if (cur.empty()) return "0";
  while (!cur.empty()) {
    std::uint64_t rem = 0;
    std::vector<std::uint8_t> next;
    next.reserve(cur.size());
    for (auto x : cur) {
      std::uint64_t v = (rem << 8) | x;
      std::uint64_t q = v / 1000000000ull;
      rem = v % 1000000000ull;
      if (!next.empty() || q) next.push_back(static_cast<std::uint8_t>(q));
    }
    std::string chunk = std::to_string(rem);
    if (!next.empty()) chunk.insert(0, 9 - chunk.size(), '0');
    digits.insert(0, chunk);
    cur.swap(next);
  }
  return neg ? "-" + digits : digits;
}

bool fits_i64(std::span<const std::byte> b, std::int64_t& v) {
  if (b.size() > 8) return false;
  if (b.empty()) {
    v = 0;
    return true;
  }
  std::uint64_t u = le(b.data(), static_cast<int>(b.size()));
  if (b.size() < 8 && (static_cast<std::uint8_t>(b.back()) & 0x80)) u |= ~0ull << (8 * b.size());
  v = static_cast<std::int64_t>(u);
  return true;
}

}  // namespace

stream_outcome machine::run() {
  stream_outcome out;
  if (st_.streams >= st_.opt.max_nested_streams) {
    problem("more than " + std::to_string(st_.opt.max_nested_streams) + " pickle streams");
    return out;
  }
  ++st_.streams;
  end_ = data_.bytes.size();
  bool stopped = false;
  while (fatal_.empty()) {
    if (st_.g.size() > st_.opt.max_nodes) {
      fail("more than " + std::to_string(st_.opt.max_nodes) + " objects");
      break;
    }
    op_pos_ = pos_;
    const std::byte* p = take(1, true);
    if (!p) break;
    unsigned char c = static_cast<unsigned char>(*p);
    op_ = c;
    if (c == STOP) {
      if (stack_.size() != 1 || !marks_.empty()) {
        if (stack_.empty()) {
          fail("STOP with an empty stack");
          break;
        }
        problem("STOP with " + std::to_string(stack_.size()) + " values and " + std::to_string(marks_.size()) +
                " marks on the stack (expected exactly one value)");
      }
      out.root = stack_.back();
      stopped = true;
      break;
    }
    if (!step(c)) break;
  }
  if (!fatal_.empty()) problem(fatal_);
  if (in_frame_ && pos_ != frame_end_ && stopped) problem("STOP before the end of its FRAME");
  finish_pending();
  out.consumed = pos_;
  out.stopped = stopped && fatal_.empty();
  return out;
}

std::string machine::where() const {
  std::string w = so_.name.empty() ? "" : so_.name + ": ";
  return w + "offset " + std::to_string(op_pos_) + (op_name(op_) ? std::string(" (") + op_name(op_) + ")" : "") + ": ";
}

bool machine::step(unsigned char c) {
  switch (c) {
    case MARK:
      if (marks_.size() >= st_.opt.max_stack) return fail("too many marks");
      marks_.push_back(stack_.size());
      return true;
    case POP: {
      if (stack_.size() > base()) {
        stack_.pop_back();
        return true;
      }
      // CPython pops a mark when the stack above it is empty.
      if (!marks_.empty()) {
        marks_.pop_back();
        return true;
      }
      return fail("stack underflow");
    }
    case POP_MARK: {
      std::vector<node_ptr> items;
      return pop_mark(items);
    }
    case DUP: {
      node_ptr t = top();
      return t && push(t);
    }
    case NONE: return push(mk(K::none));
    case NEWTRUE:
    case NEWFALSE: {
      node_ptr n = mk(K::boolean);
      n->b = c == NEWTRUE;
      return push(n);
    }
    case BININT: {
      const std::byte* p = take(4);
      return p && push(mk_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(p, 4)))));
    }
    case BININT1: {
      const std::byte* p = take(1);
      return p && push(mk_int(static_cast<std::int64_t>(le(p, 1))));
    }
    case BININT2: {
      const std::byte* p = take(2);
      return p && push(mk_int(static_cast<std::int64_t>(le(p, 2))));
    }
    case INT: {
      std::string_view s;
      if (!line(s)) return false;
      if (s == "00" || s == "01") {
        node_ptr n = mk(K::boolean);
        n->b = s == "01";
        return push(n);
      }
      return push_decimal(s, false);
    }
    case LONG: {
      std::string_view s;
      if (!line(s)) return false;
      if (!s.empty() && s.back() == 'L') s.remove_suffix(1);
      return push_decimal(s, true);
    }
    case LONG1:
    case LONG4: {
      std::uint64_t n;
      if (c == LONG1) {
        const std::byte* p = take(1);
        if (!p) return false;
        n = le(p, 1);
      } else {
        const std::byte* p = take(4);
        if (!p) return false;
        std::int32_t sn = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(p, 4)));
        if (sn < 0) return fail("LONG4 with a negative length");
        n = static_cast<std::uint64_t>(sn);
      }
      const std::byte* p = take(n);
      if (!p) return false;
      if (n > 1024) {
        // Beyond 8192 bits: no model needs it, and decimal conversion is quadratic.
        problem("integer of " + std::to_string(n) + " bytes (more than 1024) not converted");
        return push(mk(K::none));
      }
      std::span<const std::byte> b(p, n);
      std::int64_t v;
      if (fits_i64(b, v)) return push(mk_int(v));
      node_ptr x = mk(K::big_integer);
      x->text = long_to_decimal(b);
      return push(x);
    }
    case FLOAT: {
      std::string_view s;
      if (!line(s)) return false;
      node_ptr n = mk(K::floating);
      std::string t(s);
      char* endp = nullptr;
      n->d = std::strtod(t.c_str(), &endp);
      if (t.empty() || endp != t.c_str() + t.size()) return fail("invalid FLOAT '" + t.substr(0, 40) + "'");
      return push(n);
    }
    case BINFLOAT: {
      const std::byte* p = take(8);
      if (!p) return false;
      std::uint64_t u = 0;
      for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<std::uint8_t>(p[i]);
      node_ptr n = mk(K::floating);
      std::memcpy(&n->d, &u, 8);
      return push(n);
    }
    case STRING: {
      std::string_view s;
      if (!line(s)) return false;
      std::string out;
      if (!py_string_literal(s, out)) return fail("invalid STRING literal");
      return push(mk_str(latin1_to_utf8(out)));
    }
    case BINSTRING:
    case SHORT_BINSTRING: {
      std::uint64_t n;
      if (c == SHORT_BINSTRING) {
        const std::byte* p = take(1);
        if (!p) return false;
        n = le(p, 1);
      } else {
        const std::byte* p = take(4);
        if (!p) return false;
        std::int32_t sn = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(p, 4)));
        if (sn < 0) return fail("BINSTRING with a negative length");
        n = static_cast<std::uint64_t>(sn);
      }
      if (!check_len(n)) return false;
      const std::byte* p = take(n);
      if (!p) return false;
      // Python 2 str: decoded as Latin-1 here (the unpickler's encoding argument decides).
      return push(mk_str(latin1_to_utf8(std::string_view(reinterpret_cast<const char*>(p), n))));
    }
    case UNICODE: {
      std::string_view s;
      if (!line(s)) return false;
      std::string out;
      if (!raw_unicode_escape(s, out)) return fail("invalid raw-unicode-escape text");
      return push(mk_str(std::move(out)));
    }
    case BINUNICODE:
    case SHORT_BINUNICODE:
    case BINUNICODE8: {
      int w = c == SHORT_BINUNICODE ? 1 : c == BINUNICODE ? 4 : 8;
      const std::byte* p = take(static_cast<std::uint64_t>(w));
      if (!p) return false;
      std::uint64_t n = le(p, w);
      if (!check_len(n)) return false;
      const std::byte* s = take(n);
      if (!s) return false;
      return push(mk_str(std::string(reinterpret_cast<const char*>(s), n)));
    }
    case BINBYTES:
    case SHORT_BINBYTES:
    case BINBYTES8:
    case BYTEARRAY8: {
      int w = c == SHORT_BINBYTES ? 1 : c == BINBYTES ? 4 : 8;
      const std::byte* p = take(static_cast<std::uint64_t>(w));
      if (!p) return false;
      std::uint64_t n = le(p, w);
      if (!check_len(n)) return false;
      const std::byte* s = take(n);
      if (!s) return false;
      return push(mk_bytes_view(std::span<const std::byte>(s, n), c == BYTEARRAY8));
    }
    case NEXT_BUFFER: {
      // Out-of-band buffers live outside the file (pickle.loads(..., buffers=...)): the data
      // cannot be accounted for.
      problem("out-of-band buffer (NEXT_BUFFER): the data is not in the file");
      node_ptr n = mk(K::bytes);
      oob_.insert(n);
      return push(n);
    }
    case READONLY_BUFFER: return top() != nullptr;
    case EMPTY_TUPLE: return push(mk(K::tuple));
    case TUPLE1:
    case TUPLE2:
    case TUPLE3: {
      std::size_t k = c == TUPLE1 ? 1 : c == TUPLE2 ? 2 : 3;
      if (stack_.size() < base() + k) return fail("stack underflow");
      node_ptr t = mk(K::tuple);
      t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
      stack_.resize(stack_.size() - k);
      return push(t);
    }
    case TUPLE: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      node_ptr t = mk(K::tuple);
      t->items = std::move(items);
      return push(t);
    }
    case EMPTY_LIST: return push(mk(K::list));
    case LIST: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      node_ptr t = mk(K::list);
      t->items = std::move(items);
      return push(t);
    }
    case EMPTY_DICT: return push(mk(K::dict));
    case DICT: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      if (items.size() % 2) return fail("odd number of items for DICT");
      node_ptr d = mk(K::dict);
      for (std::size_t i = 0; i < items.size(); i += 2) d->entries.emplace_back(items[i], items[i + 1]);
      return push(d);
    }
    case EMPTY_SET: return push(mk(K::set));
    case FROZENSET: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      node_ptr t = mk(K::frozenset);
      t->items = std::move(items);
      return push(t);
    }
    case APPEND: {
      node_ptr v = pop();
      if (!v) return false;
      std::vector<node_ptr> one{v};
      return add_items(one, "APPEND");
    }
    case APPENDS: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      return add_items(items, "APPENDS");
    }
    case ADDITEMS: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      node_ptr s = top();
      if (!s) return false;
      if (s->k == K::set) {
        s->items.insert(s->items.end(), items.begin(), items.end());
        return true;
      }
      problem("ADDITEMS on a " + kind_text(s) + " (would call its add method)");
      record_call(s, nullptr, "ADDITEMS", false, std::to_string(items.size()) + " items");
      if (s->k == K::object) s->obj->listitems.insert(s->obj->listitems.end(), items.begin(), items.end());
      return true;
    }
    case SETITEM: {
      node_ptr v = pop();
      node_ptr k = pop();
      if (!v || !k) return false;
      std::vector<node_ptr> kv{k, v};
      return set_items(kv, "SETITEM");
    }
    case SETITEMS: {
      std::vector<node_ptr> items;
      if (!pop_mark(items)) return false;
      if (items.size() % 2) return fail("odd number of items for SETITEMS");
      return set_items(items, "SETITEMS");
    }
    case GET: {
      std::string_view s;
      if (!line(s)) return false;
      std::uint64_t idx;
      if (!parse_index(s, idx)) return false;
      return memo_get(idx);
    }
    case BINGET: {
      const std::byte* p = take(1);
      return p && memo_get(le(p, 1));
    }
    case LONG_BINGET: {
      const std::byte* p = take(4);
      return p && memo_get(le(p, 4));
    }
    case PUT: {
      std::string_view s;
      if (!line(s)) return false;
      std::uint64_t idx;
      if (!parse_index(s, idx)) return false;
      return memo_put(idx, top());
    }
    case BINPUT: {
      const std::byte* p = take(1);
      return p && memo_put(le(p, 1), top());
    }
    case LONG_BINPUT: {
      const std::byte* p = take(4);
      return p && memo_put(le(p, 4), top());
    }
    case MEMOIZE: return memo_put(memo_.size(), top());
    case PROTO: {
      const std::byte* p = take(1);
      if (!p) return false;
      int v = static_cast<int>(le(p, 1));
      if (v > 5) return fail("unsupported pickle protocol " + std::to_string(v));
      if (op_pos_ != 0) problem("PROTO opcode in the middle of the stream");
      proto_ = v;
      return true;
    }
    case FRAME: {
      const std::byte* p = take(8);
      if (!p) return false;
      std::uint64_t n = le(p, 8);
      if (in_frame_) problem("a FRAME starts before the end of the previous one");
      if (n > end_ - pos_) {
        problem("FRAME length " + std::to_string(n) + " exceeds the " + std::to_string(end_ - pos_) + " bytes left");
        in_frame_ = false;
        return true;
      }
      in_frame_ = true;
      frame_end_ = pos_ + n;
      return true;
    }
    case GLOBAL: {
      std::string_view mod, name;
      if (!line(mod) || !line(name)) return false;
      node_ptr g = make_global(mod, name);
      return g && push(g);
    }
    case STACK_GLOBAL: {
      node_ptr name = pop();
      node_ptr mod = pop();
      if (!name || !mod) return false;
      if (!is_str(name) || !is_str(mod)) return fail("STACK_GLOBAL needs two str values");
      node_ptr g = make_global(mod->text, name->text);
      return g && push(g);
    }
    case INST: {
      std::string_view mod, name;
      if (!line(mod) || !line(name)) return false;
      std::vector<node_ptr> args;
      if (!pop_mark(args)) return false;
      node_ptr cls = make_global(mod, name);
      if (!cls) return false;
      return instantiate(cls, std::move(args), "INST");
    }
    case OBJ: {
      std::vector<node_ptr> args;
      if (!pop_mark(args)) return false;
      if (args.empty()) return fail("OBJ without a class");
      node_ptr cls = args.front();
      args.erase(args.begin());
      return instantiate(cls, std::move(args), "OBJ");
    }
    case EXT1:
    case EXT2:
    case EXT4: {
      int w = c == EXT1 ? 1 : c == EXT2 ? 2 : 4;
      const std::byte* p = take(static_cast<std::uint64_t>(w));
      if (!p) return false;
      std::uint64_t code = le(p, w);
      if (w == 4) code = static_cast<std::uint64_t>(static_cast<std::int64_t>(static_cast<std::int32_t>(static_cast<std::uint32_t>(code))));
      // The extension registry (copyreg.add_extension) lives in the loading process: the
      // name behind a code is unknowable from the file. Report it as an unknown callable.
      std::string raw = "copyreg.extension." + std::to_string(static_cast<std::int64_t>(code));
      problem("EXT code " + std::to_string(static_cast<std::int64_t>(code)) +
              " names a global through the loading process's copyreg extension registry; it cannot be resolved from the file");
      st_.global(raw);
      node_ptr g = mk(K::global);
      g->text = raw;
      globals_[g] = global_info{raw, raw};
      return push(g);
    }
    case REDUCE: {
      node_ptr args = pop();
      node_ptr f = pop();
      if (!args || !f) return false;
      node_ptr r = reduce(f, args, "REDUCE");
      return r && fatal_.empty() && push(r);
    }
    case NEWOBJ: {
      node_ptr args = pop();
      node_ptr cls = pop();
      if (!args || !cls) return false;
      bool ok;
      auto a = seq_items(args, ok);
      if (!ok || args->k != K::tuple) problem("NEWOBJ arguments are not a tuple");
      if (!charge(a.size())) return false;
      return push(newobj(cls, std::move(a), nullptr, "NEWOBJ", args));
    }
    case NEWOBJ_EX: {
      node_ptr kw = pop();
      node_ptr args = pop();
      node_ptr cls = pop();
      if (!kw || !args || !cls) return false;
      bool ok;
      auto a = seq_items(args, ok);
      if (!ok) problem("NEWOBJ_EX arguments are not a tuple");
      if (kw->k != K::dict) problem("NEWOBJ_EX keyword arguments are not a dict");
      if (!charge(a.size())) return false;
      return push(newobj(cls, std::move(a), kw, "NEWOBJ_EX", args));
    }
    case BUILD: {
      node_ptr state = pop();
      node_ptr target = top();
      if (!state || !target) return false;
      return build(target, state);
    }
    case PERSID: {
      std::string_view s;
      if (!line(s)) return false;
      return persistent(mk_str(std::string(s)), "PERSID");
    }
    case BINPERSID: {
      node_ptr pid = pop();
      return pid && persistent(pid, "BINPERSID");
    }
    default: {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02x", c);
      return fail(std::string("unknown opcode ") + buf);
    }
  }
}

bool machine::check_len(std::uint64_t n) {
  if (n > st_.opt.max_string_bytes) return fail("string of " + std::to_string(n) + " bytes exceeds the limit");
  if (n > end_ - pos_) return fail("truncated: a string of " + std::to_string(n) + " bytes, " + std::to_string(end_ - pos_) + " left");
  return true;
}

bool machine::parse_index(std::string_view s, std::uint64_t& idx) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), idx);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return fail("invalid memo index");
  return true;
}

bool machine::push_decimal(std::string_view s, bool is_long) {
  std::string_view t = s;
  if (!t.empty() && (t.front() == '-' || t.front() == '+')) t.remove_prefix(1);
  if (t.empty() || t.size() > 5000 || !std::all_of(t.begin(), t.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return fail(std::string("invalid ") + (is_long ? "LONG" : "INT") + " text");
  std::int64_t v = 0;
  const char* b = s.data() + (s.front() == '+' ? 1 : 0);
  auto r = std::from_chars(b, s.data() + s.size(), v);
  if (r.ec == std::errc() && r.ptr == s.data() + s.size()) return push(mk_int(v));
  node_ptr n = mk(K::big_integer);
  n->text = std::string(s.front() == '+' ? s.substr(1) : s);
  return push(n);
}

std::string machine::kind_text(node_ptr n) {
  if (!n) return "null";
  switch (n->k) {
    case K::none: return "None";
    case K::boolean: return "bool";
    case K::integer: case K::big_integer: return "int";
    case K::floating: return "float";
    case K::complex: return "complex";
    case K::string: return "str";
    case K::bytes: return "bytes";
    case K::list: return "list";
    case K::tuple: return "tuple";
    case K::dict: return "dict";
    case K::set: return "set";
    case K::frozenset: return "frozenset";
    case K::array: return "numpy array";
    case K::scalar: return "numpy scalar";
    case K::dtype: return "numpy dtype";
    case K::global: return "global " + n->text;
    case K::object: return "object of " + (n->obj ? n->obj->type : std::string("?"));
  }
  return "?";
}

bool machine::add_items(const std::vector<node_ptr>& items, const char* opname) {
  node_ptr l = top();
  if (!l) return false;
  if (l->k == K::list) {
    l->items.insert(l->items.end(), items.begin(), items.end());
    return true;
  }
  if (l->k == K::object && l->obj) {  // list subclasses: append/extend on the instance
    l->obj->listitems.insert(l->obj->listitems.end(), items.begin(), items.end());
    return true;
  }
  problem(std::string(opname) + " on a " + kind_text(l) + " (would call its append/extend method)");
  record_call(l, nullptr, opname, false, std::to_string(items.size()) + " items");
  return true;
}

bool machine::set_items(const std::vector<node_ptr>& kv, const char* opname) {
  node_ptr d = top();
  if (!d) return false;
  if (d->k == K::dict) {
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) d->entries.emplace_back(kv[i], kv[i + 1]);
    return true;
  }
  if (d->k == K::object && d->obj) {  // dict subclasses (OrderedDict, Bunch): __setitem__
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) d->obj->dictitems.emplace_back(kv[i], kv[i + 1]);
    return true;
  }
  problem(std::string(opname) + " on a " + kind_text(d) + " (would call its __setitem__ method)");
  record_call(d, nullptr, opname, false, std::to_string(kv.size() / 2) + " items");
  return true;
}

node_ptr machine::make_global(std::string_view mod, std::string_view name) {
  if (mod.empty() || name.empty() || mod.size() > 1024 || name.size() > 1024) {
    fail("invalid global name");
    return nullptr;
  }
  std::string raw = std::string(mod) + "." + std::string(name);
  st_.global(raw);
  // Protocols 0-2 written by Python 3 use Python 2 names (fix_imports); so do Python 2 files.
  std::string fixed = proto_ < 3 ? fix_py2_name(mod, name) : raw;
  node_ptr g = mk(K::global);
  g->text = canon(fixed);
  globals_[g] = global_info{raw, fixed};
  return g;
}

void machine::finish_pending() {
  // Large bytes values that were not consumed as array data become real bytes values now.
  for (auto& [n, b] : lazy_) {
    if (consumed_.count(n)) continue;
    n->text.assign(reinterpret_cast<const char*>(b.data()), b.size());
  }
  lazy_.clear();
  for (auto n : pending_arrays_) n->arr->shape = {0};
}

}  // namespace pickle

using pickle::K;
using pickle::node;

stream_outcome run_pickle(read_state& st, const bytes_ref& data, const stream_options& so) {
  pickle::machine m(st, data, so);
  return m.run();
}

pyobj::node_ptr read_pickle_stream(read_state& st, const bytes_ref& data, const stream_options& so) {
  st.out.streams.push_back(so.name);
  stream_outcome o = run_pickle(st, data, so);
  std::uint64_t pos = o.consumed;
  // Bytes after STOP: never part of what pickle.load returns, but other loaders (torch's
  // legacy format, repeated pickle.load calls) read further streams; report what they hold.
  if (o.stopped && pos < data.bytes.size()) {
    st.problem((so.name.empty() ? "" : so.name + ": ") + std::to_string(data.bytes.size() - pos) + " bytes after STOP");
    int extra = 0;
    while (pos < data.bytes.size() && extra < 64) {
      stream_options s2 = so;
      s2.name = (so.name.empty() ? "" : so.name + ": ") + "data after STOP at offset " + std::to_string(pos);
      st.out.streams.push_back(s2.name);
      bytes_ref rest{data.bytes.subspan(pos), data.owner};
      stream_outcome o2 = run_pickle(st, rest, s2);
      if (o2.consumed == 0 || !o2.stopped) break;
      pos += o2.consumed;
      ++extra;
    }
  }
  return o.root;
}

std::string render(const pyobj::node* n, std::size_t budget) {
  std::string out;
  struct walker {
    std::string& out;
    std::size_t budget;
    void put(std::string_view s) {
      if (out.size() < budget) out.append(s.substr(0, budget - out.size()));
    }
    void go(const node* x, int depth) {
      if (out.size() >= budget) return;
      if (!x) return put("?");
      if (depth > 4) return put("...");
      switch (x->k) {
        case K::none: return put("None");
        case K::boolean: return put(x->b ? "True" : "False");
        case K::integer: return put(std::to_string(x->i));
        case K::big_integer: return put(x->text);
        case K::floating: {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.17g", x->d);
          return put(buf);
        }
        case K::complex: return put("complex(...)");
        case K::string: {
          put("'");
          std::string s;
          for (char c : x->text.substr(0, 80)) {
            if (c == '\'' || c == '\\') s += '\\';
            if (static_cast<unsigned char>(c) < 0x20) {
              char buf[8];
              std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
              s += buf;
            } else {
              s += c;
            }
          }
          put(s);
          if (x->text.size() > 80) put("...");
          return put("'");
        }
        case K::bytes: return put("b<" + std::to_string(x->text.size()) + " bytes>");
        case K::list:
        case K::tuple:
        case K::set:
        case K::frozenset: {
          put(x->k == K::list ? "[" : x->k == K::tuple ? "(" : "{");
          std::size_t i = 0;
          for (auto c : x->items) {
            if (i++) put(", ");
            if (i > 8) {
              put("...");
              break;
            }
            go(c, depth + 1);
          }
          if (x->k == K::tuple && x->items.size() == 1) put(",");
          return put(x->k == K::list ? "]" : x->k == K::tuple ? ")" : "}");
        }
        case K::dict: {
          put("{");
          std::size_t i = 0;
          for (auto& [k, v] : x->entries) {
            if (i++) put(", ");
            if (i > 8) {
              put("...");
              break;
            }
            go(k, depth + 1);
            put(": ");
            go(v, depth + 1);
          }
          return put("}");
        }
        case K::array:
        case K::scalar: {
          std::string s = x->k == K::array ? "array(" : "scalar(";
          s += x->arr ? x->arr->dtype : "?";
          if (x->arr && x->k == K::array) {
            s += ", (";
            for (std::size_t i = 0; i < x->arr->shape.size(); ++i) s += (i ? "," : "") + std::to_string(x->arr->shape[i]);
            s += ")";
          }
          return put(s + ")");
        }
        case K::dtype: return put("dtype('" + x->text + "')");
        case K::global: return put(x->text);
        case K::object: return put("<" + (x->obj ? x->obj->type : std::string("?")) + " object>");
      }
    }
  } w{out, budget};
  w.go(n, 0);
  return out;
}

}  // namespace detail

result<read_result> read_pickle_bytes(std::span<const std::byte> data, const read_options& opt) {
  read_result out;
  out.format = file_format::pickle;
  out.graph = std::make_shared<pyobj::graph>();
  detail::bytes_ref ref = detail::copy_bytes(data);
  out.graph->keep(ref.owner);
  detail::read_state st(opt, out, *out.graph);
  std::size_t before = out.problems.size();
  out.graph->root = detail::read_pickle_stream(st, ref, {});
  if (out.graph->root && !detail::depth_ok(out.graph->root, opt.max_depth)) {
    st.problem("the object graph is nested deeper than " + std::to_string(opt.max_depth) + " levels");
    out.graph->root = nullptr;
  }
  if (st.saw_joblib) out.format = file_format::joblib;
  out.complete = out.graph->root && out.problems.size() == before;
  return out;
}

}  // namespace vitrify::legacy
