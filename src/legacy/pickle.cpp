// The non-executing pickle reader: a pickle virtual machine (protocols 0 to 5) whose opcodes
// build inert pyobj nodes. Names are never imported and callables never called: a call to a
// known constructor (numpy arrays, dtypes and scalars, copyreg, collections, set/complex/...,
// numpy random states, joblib's array wrappers, torch tensor rebuilds) is replaced by the node
// it would produce; any other call becomes an object node recording (callee, args) and is
// listed in read_result::calls. Everything read is checked against the bytes that remain and
// the limits in read_options; anything the machine cannot account for is a problem, and a
// stream with problems is never complete.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "core/checked.hpp"
#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy {

namespace detail {
namespace {

// count * itemsize == size without wrapping: a shape of 2^62 items of 8 bytes is not 0 bytes.
bool sizes_match(std::uint64_t size, std::uint64_t count, std::uint64_t itemsize) {
  auto n = vitrify::detail::byte_count(count, itemsize);
  return n.ok() && *n == size;
}


using pyobj::node;
using pyobj::node_ptr;
using K = node::kind;

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

std::uint64_t le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}


std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) append_utf8(out, c);
  return out;
}

// UTF-8 text whose code points are all below 256 -> those bytes (Python's str.encode('latin1')).
bool utf8_to_latin1(std::string_view s, std::string& out) {
  out.clear();
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      std::uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      if (cp > 0xFF) return false;
      out += static_cast<char>(cp);
      i += 2;
    } else {
      return false;
    }
  }
  return true;
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

std::string dtype_from_torch(std::string_view name) {
  static const std::unordered_map<std::string_view, std::string_view> m = {
      {"float32", "<f4"}, {"float", "<f4"}, {"float64", "<f8"}, {"double", "<f8"}, {"float16", "<f2"},
      {"half", "<f2"}, {"bfloat16", "bfloat16"}, {"int64", "<i8"}, {"long", "<i8"}, {"int32", "<i4"},
      {"int", "<i4"}, {"int16", "<i2"}, {"short", "<i2"}, {"int8", "|i1"}, {"uint8", "|u1"}, {"bool", "|b1"},
      {"uint16", "<u2"}, {"uint32", "<u4"}, {"uint64", "<u8"}, {"complex64", "<c8"}, {"cfloat", "<c8"},
      {"complex128", "<c16"}, {"cdouble", "<c16"}, {"float8_e4m3fn", "float8_e4m3fn"},
      {"float8_e5m2", "float8_e5m2"}, {"float8_e4m3fnuz", "float8_e4m3fnuz"}, {"float8_e5m2fnuz", "float8_e5m2fnuz"},
      {"complex32", "complex32"}};
  auto it = m.find(name);
  return it == m.end() ? std::string() : std::string(it->second);
}

std::uint64_t torch_itemsize(std::string_view dt) {
  if (dt == "bfloat16") return 2;
  if (dt == "complex32") return 4;
  if (dt.rfind("float8", 0) == 0) return 1;
  if (dt.size() >= 3) {
    std::uint64_t n = 0;
    std::from_chars(dt.data() + 2, dt.data() + dt.size(), n);
    return n;
  }
  return 0;
}

std::string strip_core(std::string_view fixed) {
  // numpy 2 moved numpy.core to numpy._core; both spellings name the same functions.
  if (fixed.rfind("numpy.core.", 0) == 0) return "numpy._core." + std::string(fixed.substr(11));
  return std::string(fixed);
}

struct global_info {
  std::string raw;    // "module.name" exactly as in the stream
  std::string fixed;  // after Python 2 -> 3 fixes
};

class machine {
 public:
  machine(read_state& st, const bytes_ref& data, const stream_options& so) : st_(st), data_(data), so_(so) {}

  stream_outcome run() {
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

 private:
  // ---- problems ----
  std::string where() const {
    std::string w = so_.name.empty() ? "" : so_.name + ": ";
    return w + "offset " + std::to_string(op_pos_) + (op_name(op_) ? std::string(" (") + op_name(op_) + ")" : "") + ": ";
  }
  void problem(const std::string& msg) { st_.problem(where() + msg); }
  bool fail(const std::string& msg) {
    if (fatal_.empty()) fatal_ = msg;
    return false;
  }

  // ---- input ----
  // Bytes of one opcode or argument. Frames: an opcode and its arguments must lie within the
  // current frame (CPython's pure-Python unpickler enforces this; the C one does not). A
  // violation is a problem, and reading goes on linearly, which is what both would see.
  const std::byte* take(std::uint64_t n, bool opcode = false) {
    if (in_frame_) {
      if (opcode && pos_ == frame_end_) {
        in_frame_ = false;
      } else if (pos_ + n > frame_end_) {
        problem("an opcode crosses the end of its FRAME (frame ends at " + std::to_string(frame_end_) + ")");
        in_frame_ = false;
      }
    }
    if (n > end_ - pos_) {
      fail("truncated: " + std::to_string(n) + " bytes needed, " + std::to_string(end_ - pos_) + " left");
      return nullptr;
    }
    const std::byte* p = data_.bytes.data() + pos_;
    pos_ += n;
    return p;
  }
  bool line(std::string_view& out) {
    const std::byte* base = data_.bytes.data();
    const void* nl = std::memchr(base + pos_, '\n', end_ - pos_);
    if (!nl) return fail("truncated: no end of line");
    std::uint64_t n = static_cast<std::uint64_t>(static_cast<const std::byte*>(nl) - (base + pos_)) + 1;
    const std::byte* p = take(n);
    if (!p) return false;
    out = std::string_view(reinterpret_cast<const char*>(p), n - 1);
    if (!out.empty() && out.back() == '\r') out.remove_suffix(1);  // files written on Windows in text mode
    return true;
  }

  // ---- stack ----
  std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  bool push(node_ptr n) {
    if (stack_.size() >= st_.opt.max_stack) return fail("stack deeper than " + std::to_string(st_.opt.max_stack));
    stack_.push_back(n);
    return true;
  }
  node_ptr pop() {
    if (stack_.size() <= base()) {
      fail("stack underflow");
      return nullptr;
    }
    node_ptr n = stack_.back();
    stack_.pop_back();
    return n;
  }
  node_ptr top() {
    if (stack_.size() <= base()) {
      fail("stack underflow");
      return nullptr;
    }
    return stack_.back();
  }
  bool pop_mark(std::vector<node_ptr>& items) {
    if (marks_.empty()) return fail("no MARK on the stack");
    std::size_t b = marks_.back();
    marks_.pop_back();
    items.assign(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
    stack_.resize(b);
    return true;
  }

  node_ptr mk(K k) {
    node_ptr n = st_.g.make();
    n->k = k;
    return n;
  }
  node_ptr mk_str(std::string s) {
    node_ptr n = mk(K::string);
    n->text = std::move(s);
    return n;
  }
  node_ptr mk_int(std::int64_t v) {
    node_ptr n = mk(K::integer);
    n->i = v;
    return n;
  }

  // ---- memo ----
  bool memo_put(std::uint64_t idx, node_ptr n) {
    if (!n) return false;
    if (memo_.size() >= st_.opt.max_memo && !memo_.count(idx)) return fail("memo larger than " + std::to_string(st_.opt.max_memo));
    memo_[idx] = n;
    return true;
  }
  bool memo_get(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) return fail("memo key " + std::to_string(idx) + " not found");
    return push(it->second);
  }

  // ---- values ----
  bool is_str(node_ptr n) const { return n && n->k == K::string; }
  // Raw bytes of a bytes/bytearray node (lazy views of the stream included).
  bool bytes_of(node_ptr n, std::span<const std::byte>& out) {
    if (!n) return false;
    auto it = lazy_.find(n);
    if (it != lazy_.end()) {
      out = it->second;
      return true;
    }
    if (n->k == K::bytes) {
      out = std::as_bytes(std::span<const char>(n->text.data(), n->text.size()));
      return true;
    }
    if (n->k == K::object && n->obj && n->obj->type == "builtins.bytearray" && n->obj->state) return bytes_of(n->obj->state, out);
    return false;
  }
  node_ptr mk_bytes_view(std::span<const std::byte> b, bool bytearray) {
    node_ptr n = mk(K::bytes);
    // Large blobs stay views of the stream until the end: numpy's array data usually arrives
    // this way and is consumed by the array handler without a copy.
    if (b.size() > 4096) {
      lazy_[n] = b;
    } else {
      n->text.assign(reinterpret_cast<const char*>(b.data()), b.size());
    }
    if (!bytearray) return n;
    node_ptr o = mk(K::object);
    o->obj = std::make_shared<pyobj::object>();
    o->obj->type = "builtins.bytearray";
    o->obj->state = n;
    return o;
  }
  const global_info* gl(node_ptr n) const {
    if (!n || n->k != K::global) return nullptr;
    auto it = globals_.find(n);
    return it == globals_.end() ? nullptr : &it->second;
  }
  std::string fixed_of(node_ptr n) const {
    const global_info* g = gl(n);
    return g ? g->fixed : std::string();
  }
  std::string callee_of(node_ptr n) const {
    const global_info* g = gl(n);
    if (g) return g->raw;
    if (!n) return "?";
    return "?" + render(n, 60);
  }
  bool as_int(node_ptr n, std::int64_t& v) const {
    if (!n) return false;
    if (n->k == K::integer) {
      v = n->i;
      return true;
    }
    if (n->k == K::boolean) {
      v = n->b ? 1 : 0;
      return true;
    }
    return false;
  }
  bool truthy(node_ptr n) const {
    if (!n) return false;
    switch (n->k) {
      case K::boolean: return n->b;
      case K::integer: return n->i != 0;
      case K::none: return false;
      default: return true;
    }
  }
  std::vector<node_ptr> seq_items(node_ptr n, bool& ok) const {
    ok = n && (n->k == K::tuple || n->k == K::list);
    return ok ? n->items : std::vector<node_ptr>{};
  }

  // Calls copy their argument tuples (and set() its iterable) into new objects: a memoized
  // big tuple passed to many calls would grow memory quadratically in the stream's length.
  bool charge(std::size_t n) {
    st_.copied += n;
    if (st_.copied > st_.opt.max_nodes * 4) return fail("too many values copied into call arguments");
    return true;
  }

  std::string canon(const std::string& fixed) const { return st_.opt.canonical_names ? canonical_name(fixed) : fixed; }

  void record_call(node_ptr callee, node_ptr args, const char* opcode, bool handled, std::string extra_args = {}) {
    call c;
    c.callee = callee_of(callee);
    if (args && args->k == K::tuple) {  // rendered as an argument list: f(a, b)
      c.args = "(";
      for (std::size_t i = 0; i < args->items.size() && c.args.size() < 200; ++i)
        c.args += (i ? ", " : "") + render(args->items[i], 120);
      c.args += ")";
    } else {
      c.args = args ? render(args) : extra_args;
    }
    c.opcode = opcode;
    std::string f = fixed_of(callee);
    c.handled = handled || (!f.empty() && classify_call(f) == name_class::safe);
    st_.out.calls.push_back(std::move(c));
  }

  node_ptr make_object(const std::string& type, bool newobj, std::vector<node_ptr> args) {
    node_ptr n = mk(K::object);
    n->obj = std::make_shared<pyobj::object>();
    n->obj->type = type;
    n->obj->newobj = newobj;
    n->obj->args = std::move(args);
    return n;
  }
  std::string type_of_class(node_ptr cls) {
    const global_info* g = gl(cls);
    if (g) return canon(g->fixed);
    return "?";
  }

  // ---- the opcodes ----
  bool step(unsigned char c) {
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
        return persistent(mk_str(std::string(s)));
      }
      case BINPERSID: {
        node_ptr pid = pop();
        return pid && persistent(pid);
      }
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "0x%02x", c);
        return fail(std::string("unknown opcode ") + buf);
      }
    }
  }

  bool check_len(std::uint64_t n) {
    if (n > st_.opt.max_string_bytes) return fail("string of " + std::to_string(n) + " bytes exceeds the limit");
    if (n > end_ - pos_) return fail("truncated: a string of " + std::to_string(n) + " bytes, " + std::to_string(end_ - pos_) + " left");
    return true;
  }

  bool parse_index(std::string_view s, std::uint64_t& idx) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), idx);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return fail("invalid memo index");
    return true;
  }

  bool push_decimal(std::string_view s, bool is_long) {
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

  static std::string kind_text(node_ptr n) {
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

  bool add_items(const std::vector<node_ptr>& items, const char* opname) {
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

  bool set_items(const std::vector<node_ptr>& kv, const char* opname) {
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

  node_ptr make_global(std::string_view mod, std::string_view name) {
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

  // ---- calls ----
  node_ptr generic_call(node_ptr f, node_ptr args, const char* opname) {
    bool ok;
    auto a = seq_items(args, ok);
    if (!charge(a.size())) return nullptr;
    if (!ok) {
      problem(std::string(opname) + " arguments are not a tuple");
      a = {args};
    }
    record_call(f, args, opname, false);
    node_ptr o = make_object(gl(f) ? type_of_class(f) : "?", false, std::move(a));
    return o;
  }

  node_ptr reduce(node_ptr f, node_ptr args, const char* opname) {
    std::string fixed = strip_core(fixed_of(f));
    if (!fixed.empty()) {
      bool matched = false;
      node_ptr r = known_call(fixed, f, args, matched);
      if (r) {
        record_call(f, args, opname, true);
        return r;
      }
      if (!fatal_.empty()) return nullptr;
      if (matched) problem("unexpected arguments for " + fixed + ": " + render(args));
    } else {
      problem(std::string(opname) + " calls a value that is not a named global: " + render(f, 80));
    }
    return generic_call(f, args, opname);
  }

  // Known callables -> inert nodes. Returns null (and sets `matched` when the name was known
  // but the arguments were not what the handler expects).
  node_ptr known_call(const std::string& fixed, node_ptr f, node_ptr args, bool& matched) {
    bool ok;
    auto a = seq_items(args, ok);
    if (!ok) return nullptr;
    if (!charge(a.size())) return nullptr;
    auto arg = [&](std::size_t i) -> node_ptr { return i < a.size() ? a[i] : nullptr; };
    if (fixed == "numpy._core.multiarray._reconstruct") {
      matched = true;
      std::string cls = fixed_of(arg(0));
      if (a.size() != 3 || (cls != "numpy.ndarray" && cls != "numpy.matrix")) return nullptr;
      node_ptr n = mk(K::array);
      n->arr = std::make_shared<pyobj::ndarray>();
      n->arr->dtype = "|i1";
      n->arr->itemsize = 1;
      n->arr->shape = {0};
      pending_arrays_.insert(n);
      return n;
    }
    if (fixed == "numpy.ma.core._mareconstruct") {
      matched = true;
      std::string sub = fixed_of(a[0]);
      if (a.size() != 4 || (sub != "numpy.ma.core.MaskedArray" && sub != "numpy.ma.MaskedArray") || fixed_of(a[1]) != "numpy.ndarray") return nullptr;
      node_ptr o = make_object("numpy.ma.MaskedArray", false, {});
      masked_.insert(o);
      return o;
    }
    if (fixed == "numpy._core.numeric._frombuffer") {
      matched = true;
      return frombuffer(a);
    }
    if (fixed == "numpy.dtype") {
      matched = true;
      if (a.empty() || !is_str(a[0])) return nullptr;
      std::string ts = a[0]->text;
      // The reduce gives the type without byte order; BUILD's state says the order.
      auto dt = parse_typestr(ts == "O8" || ts == "O4" ? "|O" : "<" + ts);
      if (!dt) {
        problem("unsupported numpy dtype '" + ts + "'");
        dt = dtype_info{std::string(1, '?'), 0, 0, false, {}, false};
      }
      node_ptr n = mk(K::dtype);
      set_dtype(n, *dt);
      dtype_base_[n] = ts;
      return n;
    }
    if (fixed == "numpy._core.multiarray.scalar") {
      matched = true;
      if (a.size() != 2 || !a[0] || a[0]->k != K::dtype) return nullptr;
      auto it = dtypes_.find(a[0]);
      if (it == dtypes_.end()) return nullptr;
      const dtype_info& dt = it->second;
      if (dt.has_object) return a[1];  // object scalars pickle the object itself
      std::span<const std::byte> b;
      if (!bytes_of(a[1], b)) {
        std::string tmp;
        if (!is_str(a[1]) || !utf8_to_latin1(a[1]->text, tmp)) return nullptr;
        node_ptr bn = mk(K::bytes);
        bn->text = std::move(tmp);
        bytes_of(bn, b);
      }
      if (b.size() != dt.itemsize) return nullptr;
      node_ptr n = mk(K::scalar);
      n->arr = std::make_shared<pyobj::ndarray>();
      auto r = fill_array(*n->arr, dt, {}, false, b, keep_of(a[1]), true);
      if (!r) {
        problem(r.err().message);
        return nullptr;
      }
      if (lazy_.count(a[1])) consumed_.insert(a[1]);
      return n;
    }
    if (fixed == "copyreg._reconstructor") {
      matched = true;
      if (a.size() != 3 || !gl(a[0])) return nullptr;
      std::string basecls = fixed_of(a[1]);
      if (basecls == "builtins.object" && a[2]->k == K::none) return make_object(type_of_class(a[0]), true, {});
      return nullptr;
    }
    if (fixed == "copyreg.__newobj__") {
      matched = true;
      if (a.empty() || !gl(a[0])) return nullptr;
      return make_object(type_of_class(a[0]), true, std::vector<node_ptr>(a.begin() + 1, a.end()));
    }
    if (fixed == "copyreg.__newobj_ex__") {
      matched = true;
      if (a.size() != 3 || !gl(a[0]) || !a[1] || a[1]->k != K::tuple || !a[2] || a[2]->k != K::dict) return nullptr;
      node_ptr o = make_object(type_of_class(a[0]), true, a[1]->items);
      o->obj->kwargs = a[2];
      return o;
    }
    if (fixed == "builtins.set" || fixed == "builtins.frozenset") {
      matched = true;
      node_ptr n = mk(fixed == "builtins.set" ? K::set : K::frozenset);
      if (a.empty()) return n;
      if (a.size() != 1 || !a[0] || (a[0]->k != K::list && a[0]->k != K::tuple && a[0]->k != K::set && a[0]->k != K::frozenset))
        return nullptr;
      if (!charge(a[0]->items.size())) return nullptr;
      n->items = a[0]->items;
      return n;
    }
    if (fixed == "builtins.complex") {
      matched = true;
      auto num = [&](node_ptr x, double& d) {
        if (!x) return false;
        if (x->k == K::floating) d = x->d;
        else if (x->k == K::integer) d = static_cast<double>(x->i);
        else if (x->k == K::boolean) d = x->b;
        else return false;
        return true;
      };
      double re = 0, im = 0;
      if (a.empty() || a.size() > 2 || !num(a[0], re) || (a.size() == 2 && !num(a[1], im))) return nullptr;
      node_ptr n = mk(K::complex);
      n->d = re;
      n->imag = im;
      return n;
    }
    if (fixed == "builtins.slice" || fixed == "builtins.range") {
      matched = true;
      if (a.empty() || a.size() > 3) return nullptr;
      for (auto x : a)
        if (!x || (x->k != K::integer && x->k != K::none && x->k != K::big_integer)) return nullptr;
      // vitrify.dump's convention: state = [start, stop, step]
      node_ptr st = mk(K::list);
      node_ptr none = mk(K::none);
      if (fixed == "builtins.slice") {
        if (a.size() == 1) st->items = {none, a[0], none};
        else st->items = {a[0], a[1], a.size() == 3 ? a[2] : none};
      } else {
        if (a.size() == 1) st->items = {mk_int(0), a[0], mk_int(1)};
        else st->items = {a[0], a[1], a.size() == 3 ? a[2] : mk_int(1)};
      }
      node_ptr o = make_object(fixed, false, {});
      o->obj->state = st;
      return o;
    }
    if (fixed == "builtins.bytearray" || fixed == "builtins.bytes") {
      matched = true;
      node_ptr b = mk(K::bytes);
      if (a.size() == 1) {
        std::span<const std::byte> v;
        if (bytes_of(a[0], v)) b->text.assign(reinterpret_cast<const char*>(v.data()), v.size());
        else if (a[0] && a[0]->k == K::list) {
          for (auto x : a[0]->items) {
            if (!x || x->k != K::integer || x->i < 0 || x->i > 255) return nullptr;
            b->text += static_cast<char>(x->i);
          }
        } else return nullptr;
      } else if (a.size() == 2 && is_str(a[0]) && is_str(a[1]) && (a[1]->text == "latin-1" || a[1]->text == "latin1")) {
        if (!utf8_to_latin1(a[0]->text, b->text)) return nullptr;
      } else if (!a.empty()) {
        return nullptr;
      }
      if (fixed == "builtins.bytes") return b;
      node_ptr o = make_object("builtins.bytearray", false, {});
      o->obj->state = b;
      return o;
    }
    if (fixed == "_codecs.encode") {
      matched = true;
      if (a.size() != 2 || !is_str(a[0]) || !is_str(a[1])) return nullptr;
      const std::string& enc = a[1]->text;
      node_ptr b = mk(K::bytes);
      if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1") {
        if (!utf8_to_latin1(a[0]->text, b->text)) return nullptr;
      } else if (enc == "utf-8" || enc == "utf8" || enc == "ascii") {
        b->text = a[0]->text;
      } else {
        return nullptr;
      }
      return b;
    }
    if (fixed == "numpy.random._pickle.__randomstate_ctor") {
      matched = true;
      node_ptr o = make_object("numpy.random.RandomState", false, {});
      random_states_.insert(o);
      return o;
    }
    if (fixed == "numpy.random._pickle.__generator_ctor") {
      matched = true;
      node_ptr o = make_object("numpy.random.Generator", false, {});
      node_ptr st = mk(K::dict);
      std::string bg = "numpy.random.PCG64";
      node_ptr inner = mk(K::none);
      if (!a.empty() && is_str(a[0])) {
        bg = "numpy.random." + a[0]->text;
      } else if (!a.empty() && a[0] && a[0]->k == K::object) {
        bg = a[0]->obj->type;
        node_ptr s = a[0]->obj->state;
        if (s && s->k == K::tuple && !s->items.empty()) s = s->items[0];
        if (s) inner = s;
      }
      st->entries.emplace_back(mk_str("bit_generator"), mk_str(bg));
      st->entries.emplace_back(mk_str("state"), inner);
      o->obj->state = st;
      generators_.insert(o);
      return o;
    }
    if (fixed == "numpy.random._pickle.__bit_generator_ctor") {
      matched = true;
      std::string t = "numpy.random.MT19937";
      if (!a.empty() && is_str(a[0])) t = "numpy.random." + a[0]->text;
      else if (!a.empty() && gl(a[0])) t = type_of_class(a[0]);
      else if (!a.empty()) return nullptr;
      return make_object(t, false, {});
    }
    if (fixed == "torch._utils._rebuild_tensor_v2" || fixed == "torch._utils._rebuild_tensor" ||
        fixed == "torch._utils._rebuild_tensor_v3") {
      matched = true;
      return torch_tensor(fixed, a);
    }
    if (fixed == "torch._utils._rebuild_parameter" || fixed == "torch._utils._rebuild_parameter_with_state") {
      matched = true;
      if (a.empty() || !a[0] || a[0]->k != K::array) return nullptr;
      return a[0];
    }
    (void)f;
    return nullptr;
  }

  std::shared_ptr<const void> keep_of(node_ptr b) const {
    return lazy_.count(b) ? data_.owner : nullptr;
  }

  void set_dtype(node_ptr n, const dtype_info& dt) {
    n->text = dt.str;
    n->arr = std::make_shared<pyobj::ndarray>();
    n->arr->dtype = dt.str;
    n->arr->itemsize = dt.has_object ? 0 : dt.itemsize;
    n->arr->fields = dt.fields;
    dtypes_[n] = dt;
  }

  bool shape_of(node_ptr s, std::vector<std::int64_t>& shape) {
    if (!s) return false;
    if (s->k == K::integer) {
      if (s->i < 0) return false;
      shape = {s->i};
      return true;
    }
    if (s->k != K::tuple && s->k != K::list) return false;
    if (s->items.size() > 64) return false;
    shape.clear();
    std::uint64_t n = 1;
    for (auto x : s->items) {
      std::int64_t v;
      if (!as_int(x, v) || v < 0) return false;
      shape.push_back(v);
      if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(v), &n) || n > (1ull << 62)) return false;
    }
    return true;
  }

  node_ptr frombuffer(const std::vector<node_ptr>& a) {
    if (a.size() < 4 || a.size() > 5 || !a[1] || a[1]->k != K::dtype || !is_str(a[3])) return nullptr;
    auto it = dtypes_.find(a[1]);
    if (it == dtypes_.end() || it->second.has_object) return nullptr;
    const dtype_info& dt = it->second;
    std::vector<std::int64_t> shape;
    if (!shape_of(a[2], shape)) return nullptr;
    std::span<const std::byte> b;
    bool oob = oob_.count(a[0]) > 0;
    if (!oob && !bytes_of(a[0], b)) return nullptr;
    std::uint64_t count = 1;
    for (auto x : shape) count *= static_cast<std::uint64_t>(x);
    node_ptr n = mk(K::array);
    n->arr = std::make_shared<pyobj::ndarray>();
    const std::string& order = a[3]->text;
    if (oob) {  // data out of band: keep dtype and shape only
      n->arr->dtype = dt.str;
      n->arr->itemsize = dt.itemsize;
      n->arr->shape = shape;
      return n;
    }
    if (dt.itemsize == 0 || !sizes_match(b.size(), count, dt.itemsize)) {
      problem("_frombuffer: " + std::to_string(b.size()) + " bytes for " + std::to_string(count) + " items of " + dt.str);
      return nullptr;
    }
    bool fortran = order == "F";
    std::vector<std::int64_t> perm;
    if (order == "K" && a.size() == 5 && a[4] && a[4]->k != K::none) {
      // numpy >= 2.3: the buffer holds the C-ordered data of shape `shape`, transposed by axis_order
      bool okp;
      auto ax = seq_items(a[4], okp);
      if (!okp || ax.size() != shape.size()) return nullptr;
      std::vector<bool> seen(shape.size(), false);
      for (auto x : ax) {
        std::int64_t v;
        if (!as_int(x, v) || v < 0 || static_cast<std::size_t>(v) >= shape.size() || seen[static_cast<std::size_t>(v)]) return nullptr;
        seen[static_cast<std::size_t>(v)] = true;
        perm.push_back(v);
      }
    } else if (order != "C" && order != "F" && order != "K" && order != "A") {
      return nullptr;
    }
    std::shared_ptr<const void> owner = keep_of(a[0]);
    if (!perm.empty()) {
      bool identity = true, reversed = true;
      for (std::size_t i = 0; i < perm.size(); ++i) {
        identity = identity && perm[i] == static_cast<std::int64_t>(i);
        reversed = reversed && perm[i] == static_cast<std::int64_t>(perm.size() - 1 - i);
      }
      std::vector<std::int64_t> logical(shape.size());
      for (std::size_t i = 0; i < perm.size(); ++i) logical[i] = shape[static_cast<std::size_t>(perm[i])];
      if (identity) {
        // plain C order
      } else if (reversed) {
        fortran = true;
        shape = logical;
      } else {
        // A general permutation: copy into C order.
        std::vector<std::int64_t> cstride(shape.size());
        std::int64_t s = 1;
        for (std::size_t i = shape.size(); i-- > 0;) {
          cstride[i] = s;
          s *= std::max<std::int64_t>(shape[i], 1);
        }
        std::vector<std::int64_t> strides(perm.size());
        for (std::size_t i = 0; i < perm.size(); ++i) strides[i] = cstride[static_cast<std::size_t>(perm[i])];
        if (st_.opt.array_data) {
          auto buf = gather(b, dt.itemsize, logical, strides, 0);
          b = std::span<const std::byte>(buf->data(), buf->size());
          owner = buf;
        }
        shape = logical;
      }
    }
    auto r = fill_array(*n->arr, dt, shape, fortran && shape.size() > 1, b, owner, st_.opt.array_data);
    if (!r) {
      problem(r.err().message);
      return nullptr;
    }
    if (lazy_.count(a[0])) consumed_.insert(a[0]);
    return n;
  }

  // Copy a strided view (strides in elements) into a fresh C-ordered buffer. The caller checked
  // that every index stays inside `src`.
  static std::shared_ptr<std::vector<std::byte>> gather(std::span<const std::byte> src, std::uint64_t itemsize,
                                                       const std::vector<std::int64_t>& shape,
                                                       const std::vector<std::int64_t>& strides, std::uint64_t offset) {
    std::uint64_t count = 1;
    for (auto x : shape) count *= static_cast<std::uint64_t>(x);
    auto out = std::make_shared<std::vector<std::byte>>(count * itemsize);
    if (count == 0) return out;
    std::vector<std::int64_t> idx(shape.size(), 0);
    for (std::uint64_t k = 0; k < count; ++k) {
      std::uint64_t e = offset;
      for (std::size_t d = 0; d < shape.size(); ++d) e += static_cast<std::uint64_t>(idx[d] * strides[d]);
      std::memcpy(out->data() + k * itemsize, src.data() + e * itemsize, itemsize);
      for (std::size_t d = shape.size(); d-- > 0;) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  bool instantiate(node_ptr cls, std::vector<node_ptr> args, const char* opname) {
    // INST/OBJ: cls(*args), or cls.__new__(cls) when there are no arguments (pickle's
    // _instantiate for classes without __getinitargs__).
    node_ptr t = mk(K::tuple);
    t->items = args;
    std::string fixed = strip_core(fixed_of(cls));
    if (!fixed.empty()) {
      bool matched = false;
      node_ptr r = known_call(fixed, cls, t, matched);
      if (r) {
        record_call(cls, t, opname, true);
        return push(r);
      }
      if (!fatal_.empty()) return false;
    }
    record_call(cls, t, opname, false);
    node_ptr o = make_object(type_of_class(cls), args.empty(), std::move(args));
    return push(o);
  }

  node_ptr newobj(node_ptr cls, std::vector<node_ptr> args, node_ptr kw, const char* opname, node_ptr args_node) {
    record_call(cls, args_node, opname, false);
    if (!gl(cls)) problem(std::string(opname) + " on a value that is not a named class: " + render(cls, 80));
    node_ptr o = make_object(type_of_class(cls), true, std::move(args));
    if (kw) o->obj->kwargs = kw;
    if (gl(cls)) newobj_raw_[o] = globals_[cls].fixed;
    return o;
  }

  // ---- BUILD ----
  bool build(node_ptr target, node_ptr state) {
    if (pending_arrays_.count(target)) {
      pending_arrays_.erase(target);
      if (!array_setstate(target, state)) {
        if (!fatal_.empty()) return false;
        problem("invalid numpy array state: " + render(state));
      }
      return true;
    }
    if (target->k == K::dtype && dtypes_.count(target) && !built_dtypes_.count(target)) {
      built_dtypes_.insert(target);
      if (!dtype_setstate(target, state)) problem("invalid numpy dtype state: " + render(state));
      return true;
    }
    if (target->k == K::object && target->obj) {
      auto raw = newobj_raw_.find(target);
      if (raw != newobj_raw_.end() && so_.joblib) {
        if (raw->second == "joblib.numpy_pickle.NumpyArrayWrapper") return joblib_array(target, state);
        if (raw->second == "joblib.numpy_pickle.NDArrayWrapper" || raw->second == "joblib.numpy_pickle.ZNDArrayWrapper" ||
            raw->second == "joblib.numpy_pickle_compat.NDArrayWrapper" || raw->second == "joblib.numpy_pickle_compat.ZNDArrayWrapper")
          return joblib_side_array(target, state, raw->second);
      }
      if (masked_.count(target)) {
        masked_.erase(target);
        if (!masked_setstate(target, state)) problem("invalid numpy masked array state: " + render(state));
        return true;
      }
      if (random_states_.count(target)) {
        target->obj->state = legacy_random_state(state);
        return true;
      }
      if (generators_.count(target)) {
        if (state->k != K::none && target->obj->state) {  // numpy 1.x: the bit generator's state
          for (auto& [k, v] : target->obj->state->entries)
            if (k->text == "state") v = state;
        }
        return true;
      }
      if (target->obj->state) {
        problem("second BUILD on an object of " + target->obj->type);
        // keep the first state: CPython would update it; record the second as another call
        record_call(target, state, "BUILD", false);
      } else {
        target->obj->state = state;
      }
      return true;
    }
    // BUILD on a global, a container, an array...: sets attributes or calls __setstate__ on
    // something that is not an instance being built.
    problem("BUILD on a " + kind_text(target) + " (would set its attributes)");
    record_call(target, state, "BUILD", false);
    return true;
  }

  // MaskedArray.__reduce__ state: (1, shape, dtype, is_fortran, data bytes, mask bytes,
  // fill_value as a 0-d array). vitrify.dump records {data, mask, fill_value (a scalar)}.
  bool masked_setstate(node_ptr target, node_ptr state) {
    if (!state || state->k != K::tuple || state->items.size() != 7) return false;
    auto& it = state->items;
    node_ptr data = mk(K::array);
    data->arr = std::make_shared<pyobj::ndarray>();
    node_ptr t = mk(K::tuple);
    t->items = {it[1], it[2], it[3], it[4]};
    if (!array_setstate(data, t) || !fatal_.empty() || data->arr->kind() == 'O') return false;
    std::span<const std::byte> mb;
    if (!bytes_of(it[5], mb)) return false;
    auto bdt = parse_typestr("|b1");
    node_ptr mask = mk(K::array);
    mask->arr = std::make_shared<pyobj::ndarray>();
    auto r = fill_array(*mask->arr, *bdt, data->arr->shape, data->arr->fortran, mb, keep_of(it[5]), st_.opt.array_data);
    if (!r) return false;
    if (lazy_.count(it[5])) consumed_.insert(it[5]);
    node_ptr fill = it[6];
    if (fill && fill->k == K::array && fill->arr && fill->arr->shape.empty() && fill->arr->kind() != 'O') {
      node_ptr sc = mk(K::scalar);
      sc->arr = fill->arr;
      fill = sc;
    }
    node_ptr d = mk(K::dict);
    d->entries.emplace_back(mk_str("data"), data);
    d->entries.emplace_back(mk_str("mask"), mask);
    d->entries.emplace_back(mk_str("fill_value"), fill);
    target->obj->state = d;
    return true;
  }

  node_ptr legacy_random_state(node_ptr state) {
    // RandomState.__getstate__ is get_state(legacy=False); vitrify.dump records the legacy
    // tuple ('MT19937', key, pos, has_gauss, gauss).
    if (!state || state->k != K::dict) return state;
    const node* name = state->get("bit_generator");
    const node* inner = state->get("state");
    const node* hg = state->get("has_gauss");
    const node* ga = state->get("gauss");
    if (!name || !inner || !hg || !ga || inner->k != K::dict) return state;
    const node* key = inner->get("key");
    const node* pos = inner->get("pos");
    if (!key || !pos) return state;
    node_ptr t = mk(K::tuple);
    t->items = {const_cast<node_ptr>(name), const_cast<node_ptr>(key), const_cast<node_ptr>(pos), const_cast<node_ptr>(hg),
                const_cast<node_ptr>(ga)};
    return t;
  }

  bool dtype_setstate(node_ptr n, node_ptr state) {
    if (!state || state->k != K::tuple || state->items.size() < 8) return false;
    auto& it = state->items;
    std::int64_t version;
    if (!as_int(it[0], version) || version < 0 || version > 4) return false;
    if (!is_str(it[1])) return false;
    std::string endian = it[1]->text;
    dtype_info dt = dtypes_[n];
    std::string base = dtype_base_[n];
    if (it[2] && it[2]->k != K::none) {
      problem("sub-array dtypes are not supported");
      return true;
    }
    bool structured = it[3] && it[3]->k == K::tuple;
    if (structured) {
      if (!it[4] || it[4]->k != K::dict) return false;
      std::int64_t elsize;
      if (!as_int(it[5], elsize) || elsize <= 0 || elsize > (1 << 24)) return false;
      dtype_info s;
      s.kind = 'V';
      s.itemsize = static_cast<std::uint64_t>(elsize);
      s.str = "V" + std::to_string(elsize);
      for (auto nm : it[3]->items) {
        if (!is_str(nm)) return false;
        const node* f = it[4]->get(nm->text);
        if (!f || f->k != K::tuple || f->items.size() < 2 || !f->items[0] || f->items[0]->k != K::dtype) return false;
        auto fd = dtypes_.find(f->items[0]);
        std::int64_t off;
        if (fd == dtypes_.end() || !as_int(f->items[1], off) || off < 0) return false;
        if (fd->second.has_object) {
          s.has_object = true;
          continue;
        }
        if (fd->second.kind == 'V' || fd->second.kind == 'U' || fd->second.kind == 'S' || fd->second.big_endian ||
            static_cast<std::uint64_t>(off) + fd->second.itemsize > s.itemsize) {
          problem("unsupported structured dtype field '" + nm->text + "'");
          return true;
        }
        s.fields.push_back(pyobj::field{nm->text, fd->second.str, static_cast<std::uint64_t>(off), {}});
      }
      set_dtype(n, s);
      return true;
    }
    std::string unit;
    if (state->items.size() >= 9 && it[8] && it[8]->k == K::tuple && it[8]->items.size() >= 2) {
      // datetime metadata: (unit, num, den, events)
      std::span<const std::byte> ub;
      std::string u;
      if (bytes_of(it[8]->items[0], ub)) u.assign(reinterpret_cast<const char*>(ub.data()), ub.size());
      else if (is_str(it[8]->items[0])) u = it[8]->items[0]->text;
      std::int64_t num = 1;
      as_int(it[8]->items[1], num);
      if (!u.empty() && u.size() < 8 && std::all_of(u.begin(), u.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }))
        unit = "[" + (num > 1 ? std::to_string(num) : std::string()) + u + "]";
    }
    char order = endian.empty() ? '=' : endian[0];
    if (order == '=') order = '<';
    if (base == "O8" || base == "O4" || base == "O") return true;
    if (base.find('[') == std::string::npos) base += unit;
    if (order != '<' && order != '>' && order != '|') return false;
    auto d2 = parse_typestr(std::string(1, order) + base);
    if (!d2) {
      problem("unsupported numpy dtype '" + std::string(1, order) + base + "'");
      return true;
    }
    set_dtype(n, *d2);
    return true;
  }

  bool array_setstate(node_ptr n, node_ptr state) {
    if (!state || state->k != K::tuple) return false;
    auto it = state->items;
    if (it.size() == 5) it.erase(it.begin());
    if (it.size() != 4) return false;
    std::vector<std::int64_t> shape;
    if (!shape_of(it[0], shape)) return false;
    if (!it[1] || it[1]->k != K::dtype) return false;
    auto dti = dtypes_.find(it[1]);
    if (dti == dtypes_.end()) return false;
    const dtype_info& dt = dti->second;
    bool fortran = truthy(it[2]);
    std::uint64_t count = 1;
    for (auto x : shape) count *= static_cast<std::uint64_t>(x);
    pyobj::ndarray& a = *n->arr;
    if (dt.has_object) {
      if (dt.kind == 'V') {
        problem("structured arrays with object fields are not supported");
        return true;
      }
      if (!it[3] || it[3]->k != K::list || it[3]->items.size() != count) return false;
      if (!charge(count)) return false;
      object_array(a, shape, it[3]->items);
      return true;
    }
    std::span<const std::byte> b;
    std::shared_ptr<const void> owner;
    if (bytes_of(it[3], b)) {
      owner = keep_of(it[3]);
      if (lazy_.count(it[3])) consumed_.insert(it[3]);
    } else if (is_str(it[3])) {  // Python 2 str data decoded as Latin-1
      auto buf = std::make_shared<std::string>();
      if (!utf8_to_latin1(it[3]->text, *buf)) return false;
      b = std::as_bytes(std::span<const char>(buf->data(), buf->size()));
      owner = buf;
    } else {
      return false;
    }
    if (dt.itemsize == 0 || !sizes_match(b.size(), count, dt.itemsize)) {
      problem("array data of " + std::to_string(b.size()) + " bytes for shape " + render(it[0]) + " of " + dt.str);
      return true;
    }
    auto r = fill_array(a, dt, shape, fortran && shape.size() > 1, b, owner, st_.opt.array_data);
    if (!r) problem(r.err().message);
    return true;
  }

  void object_array(pyobj::ndarray& a, std::vector<std::int64_t> shape, const std::vector<node_ptr>& items) {
    a.dtype = "O";
    a.itemsize = 0;
    a.shape = std::move(shape);
    a.fortran = false;
    bool all_str = !items.empty();
    for (auto x : items)
      if (!is_str(x)) all_str = false;
    if (all_str) {
      for (auto x : items) a.strings.push_back(x->text);
      a.strings_are_objects = true;
    } else {
      a.items = items;
    }
  }

  // ---- joblib ----
  bool joblib_array(node_ptr wrapper, node_ptr state) {
    wrapper->obj->state = state;
    st_.saw_joblib = true;
    if (!state || state->k != K::dict) {
      problem("NumpyArrayWrapper state is not a dict");
      return true;
    }
    const node* shp = state->get("shape");
    const node* order = state->get("order");
    const node* dtn = state->get("dtype");
    const node* align = state->get("numpy_array_alignment_bytes");
    std::vector<std::int64_t> shape;
    if (!shp || !shape_of(const_cast<node_ptr>(shp), shape) || !dtn || dtn->k != K::dtype || !dtypes_.count(dtn)) {
      // joblib would fail here: no payload can be located after this point
      return fail("NumpyArrayWrapper without a valid shape and dtype: the array data cannot be located");
    }
    const dtype_info dt = dtypes_[dtn];
    // joblib ends the frame before writing the array data; the data follows the BUILD opcode.
    if (in_frame_) {
      if (pos_ != frame_end_) problem("joblib array data inside a FRAME");
      in_frame_ = false;
    }
    std::uint64_t count = 1;
    for (auto x : shape) count *= static_cast<std::uint64_t>(x);
    node_ptr arr = mk(K::array);
    arr->arr = std::make_shared<pyobj::ndarray>();
    if (dt.has_object) {
      // A nested pickle of the whole array, read by a fresh unpickler (own memo).
      bytes_ref rest{data_.bytes.subspan(pos_), data_.owner};
      stream_options so;
      so.joblib = false;
      so.name = (so_.name.empty() ? "" : so_.name + ": ") + "object array at offset " + std::to_string(pos_);
      st_.out.streams.push_back(so.name);
      machine inner(st_, rest, so);
      stream_outcome o = inner.run();
      pos_ += o.consumed;
      if (!o.stopped) return fail("the nested pickle of a joblib object array is incomplete");
      stack_.back() = o.root;
      return true;
    }
    if (align && align->k != K::none) {
      std::int64_t al;
      if (!as_int(const_cast<node_ptr>(align), al) || al <= 0 || al > 4096) return fail("invalid numpy_array_alignment_bytes");
      const std::byte* p = take(1);
      if (!p) return false;
      std::uint64_t pad = le(p, 1);
      if (pad > static_cast<std::uint64_t>(al)) problem("joblib padding of " + std::to_string(pad) + " bytes");
      const std::byte* q = take(pad);
      if (!q) return false;
    }
    if (dt.itemsize == 0 || count > (end_ - pos_) / dt.itemsize) return fail("joblib array data truncated");
    std::uint64_t nbytes = count * dt.itemsize;
    std::span<const std::byte> b = data_.bytes.subspan(pos_, nbytes);
    pos_ += nbytes;
    bool fortran = order && order->k == K::string && order->text == "F" && shape.size() > 1;
    auto r = fill_array(*arr->arr, dt, shape, fortran, b, data_.owner, st_.opt.array_data);
    if (!r) problem(r.err().message);
    stack_.back() = arr;
    return true;
  }

  bool joblib_side_array(node_ptr wrapper, node_ptr state, const std::string& cls) {
    wrapper->obj->state = state;
    st_.saw_joblib = true;
    const node* fn = state && state->k == K::dict ? state->get("filename") : nullptr;
    if (!fn || fn->k != K::string) {
      problem(cls + " without a file name");
      return true;
    }
    std::string name = fn->text;
    // Only a plain file next to the pickle (joblib joins it with the pickle's directory).
    if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos || name == "." ||
        name == ".." || name.find('\0') != std::string::npos) {
      problem(cls + " refers to '" + name + "', which is not a plain file name");
      return true;
    }
    if (st_.side_dir.empty()) {
      problem(cls + " keeps its data in the side file '" + name + "', which is not available");
      return true;
    }
    auto mapped = map_file(st_.side_dir / name);
    if (!mapped) {
      problem(cls + ": " + mapped.err().message);
      return true;
    }
    if (cls.find("ZNDArrayWrapper") != std::string::npos) {
      problem("ZNDArrayWrapper (joblib < 0.10 compressed side files) is not supported");
      return true;
    }
    node_ptr arr = read_npy(st_, *mapped, name);
    if (arr) stack_.back() = arr;
    return true;
  }

  // ---- persistent ids (torch storages) ----
  bool persistent(node_ptr pid) {
    record_call(nullptr, pid, op_ == PERSID ? "PERSID" : "BINPERSID", false);
    st_.out.calls.back().callee = "persistent_load";
    if (!st_.persistent_load) {
      problem("persistent id " + render(pid) + " (no persistent_load in this context)");
      return push(mk(K::none));
    }
    std::string why;
    auto r = st_.persistent_load(pid, why);
    if (!r || !*r) {
      problem("persistent id " + render(pid) + ": " + (r ? why : r.err().message));
      return push(mk(K::none));
    }
    st_.out.calls.back().handled = true;
    return push(*r);
  }

  node_ptr torch_tensor(const std::string& fixed, const std::vector<node_ptr>& a) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    // _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
    // _rebuild_tensor(storage, storage_offset, size, stride)
    std::size_t need = fixed == "torch._utils._rebuild_tensor" ? 4 : fixed.back() == '3' ? 7 : 6;
    if (a.size() < need || !a[0]) return nullptr;
    auto si = st_.storages.find(a[0]);
    if (si == st_.storages.end()) return nullptr;
    const torch_storage& s = si->second;
    std::string dt = s.dtype;
    if (fixed.back() == '3') {
      std::string t = fixed_of(a[6]);
      if (t.rfind("torch.", 0) != 0) return nullptr;
      dt = dtype_from_torch(t.substr(6));
    }
    if (dt.empty()) {
      problem("tensor of an unsupported dtype");
      return nullptr;
    }
    std::uint64_t itemsize = torch_itemsize(dt);
    std::int64_t off;
    std::vector<std::int64_t> size, stride;
    if (!as_int(a[1], off) || off < 0 || !shape_of(a[2], size) || !shape_of(a[3], stride) || size.size() != stride.size())
      return nullptr;
    // Every element must lie inside the storage (bytes for untyped storages).
    std::uint64_t last = static_cast<std::uint64_t>(off);
    std::uint64_t count = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < size.size(); ++i) {
      count *= static_cast<std::uint64_t>(size[i]);
      std::uint64_t step = 0;
      if (size[i] > 0)
        overflow = overflow || __builtin_mul_overflow(static_cast<std::uint64_t>(size[i] - 1), static_cast<std::uint64_t>(stride[i]), &step) ||
                   __builtin_add_overflow(last, step, &last);
    }
    std::uint64_t storage_items = s.nbytes / itemsize;
    if (count > 0 && (overflow || last >= storage_items)) {
      problem("tensor of shape " + render(a[2]) + " reaches outside its storage of " + std::to_string(s.nbytes) + " bytes");
      return nullptr;
    }
    node_ptr n = mk(K::array);
    n->arr = std::make_shared<pyobj::ndarray>();
    pyobj::ndarray& arr = *n->arr;
    arr.dtype = dt;
    arr.itemsize = itemsize;
    arr.shape = size;
    if (!st_.opt.array_data || !s.have_data || count == 0) return n;
    // C-contiguous, Fortran-contiguous, or copied into C order.
    bool c_contig = true, f_contig = true;
    {
      std::int64_t e = 1;
      for (std::size_t i = size.size(); i-- > 0;) {
        if (size[i] != 1 && stride[i] != e) c_contig = false;
        e *= size[i];
      }
      e = 1;
      for (std::size_t i = 0; i < size.size(); ++i) {
        if (size[i] != 1 && stride[i] != e) f_contig = false;
        e *= size[i];
      }
    }
    std::span<const std::byte> all = s.data;
    if (c_contig || f_contig) {
      arr.data = all.subspan(static_cast<std::uint64_t>(off) * itemsize, count * itemsize);
      arr.owner = s.owner;
      arr.fortran = !c_contig && size.size() > 1;
    } else {
      // Overlapping views (stride 0) may expand a small storage enormously: bound the copy.
      if (count > (s.nbytes / itemsize) * 16 + (1u << 20)) {
        problem("non-contiguous tensor of " + std::to_string(count) + " elements over a storage of " + std::to_string(s.nbytes) +
                " bytes not expanded");
        return n;
      }
      auto buf = gather(all, itemsize, size, stride, static_cast<std::uint64_t>(off));
      arr.data = std::span<const std::byte>(buf->data(), buf->size());
      arr.owner = buf;
    }
    if (dt == "|b1") {
      for (std::byte x : arr.data)
        if (static_cast<unsigned>(x) > 1) {
          problem("bool tensor holds a byte other than 0 or 1");
          break;
        }
    }
    return n;
  }

  void finish_pending() {
    // Large bytes values that were not consumed as array data become real bytes values now.
    for (auto& [n, b] : lazy_) {
      if (consumed_.count(n)) continue;
      n->text.assign(reinterpret_cast<const char*>(b.data()), b.size());
    }
    lazy_.clear();
    for (auto n : pending_arrays_) n->arr->shape = {0};
  }

 public:
  std::unordered_map<const node*, global_info> globals_;

 private:
  read_state& st_;
  bytes_ref data_;
  stream_options so_;
  std::uint64_t pos_ = 0, end_ = 0, op_pos_ = 0, frame_end_ = 0;
  bool in_frame_ = false;
  unsigned char op_ = 0;
  int proto_ = 0;
  std::string fatal_;
  std::vector<node_ptr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, node_ptr> memo_;
  std::unordered_map<node_ptr, std::span<const std::byte>> lazy_;
  std::unordered_set<const node*> consumed_;
  std::unordered_set<const node*> oob_;
  std::unordered_set<const node*> pending_arrays_;
  std::unordered_map<const node*, dtype_info> dtypes_;
  std::unordered_map<const node*, std::string> dtype_base_;
  std::unordered_set<const node*> built_dtypes_;
  std::unordered_set<const node*> random_states_;
  std::unordered_set<const node*> masked_;
  std::unordered_set<const node*> generators_;
  std::unordered_map<const node*, std::string> newobj_raw_;
};

}  // namespace

stream_outcome run_pickle(read_state& st, const bytes_ref& data, const stream_options& so) {
  machine m(st, data, so);
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
