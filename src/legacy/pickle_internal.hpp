// Private to the pickle reader: the machine that reads one pickle stream, shared by the files
// that define its members. pickle.cpp holds the virtual machine (opcode decoding, stack, memo,
// frames, limits); pickle_calls.cpp turns GLOBAL/REDUCE/NEWOBJ/INST/OBJ/BUILD into inert nodes
// (known constructors, numpy arrays, dtypes and scalars, recorded calls); pickle_joblib.cpp reads
// joblib's array wrappers; pickle_torch.cpp resolves persistent ids and rebuilds torch tensors.
// The small helpers every piece uses (input, stack, node makers, value tests) stay inline here.
// Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy::detail::pickle {

using pyobj::node;
using pyobj::node_ptr;
using K = node::kind;

/// Little-endian unsigned integer of `n` bytes (pickle's fixed-width arguments).
inline std::uint64_t le(const std::byte* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

struct global_info {
  std::string raw;    // "module.name" exactly as in the stream
  std::string fixed;  // after Python 2 -> 3 fixes
};

/// One pickle stream being read into st.g: run() executes opcodes until STOP or a fatal problem.
class machine {
 public:
  machine(read_state& st, const bytes_ref& data, const stream_options& so) : st_(st), data_(data), so_(so) {}

  stream_outcome run();

 private:
  // ---- problems ----
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

  // What keeps a bytes node's data alive: the stream's owner for lazy views, nothing for copies.
  std::shared_ptr<const void> keep_of(node_ptr b) const {
    return lazy_.count(b) ? data_.owner : nullptr;
  }

  // ---- the virtual machine (pickle.cpp) ----
  std::string where() const;
  bool step(unsigned char c);
  bool check_len(std::uint64_t n);
  bool parse_index(std::string_view s, std::uint64_t& idx);
  bool push_decimal(std::string_view s, bool is_long);
  static std::string kind_text(node_ptr n);
  bool add_items(const std::vector<node_ptr>& items, const char* opname);
  bool set_items(const std::vector<node_ptr>& kv, const char* opname);
  node_ptr make_global(std::string_view mod, std::string_view name);
  void finish_pending();

  // ---- calls and BUILD (pickle_calls.cpp) ----
  void record_call(node_ptr callee, node_ptr args, const char* opcode, bool handled, std::string extra_args = {});
  node_ptr make_object(const std::string& type, bool newobj, std::vector<node_ptr> args);
  std::string type_of_class(node_ptr cls);
  node_ptr generic_call(node_ptr f, node_ptr args, const char* opname);
  node_ptr reduce(node_ptr f, node_ptr args, const char* opname);
  node_ptr known_call(const std::string& fixed, node_ptr f, node_ptr args, bool& matched);
  bool instantiate(node_ptr cls, std::vector<node_ptr> args, const char* opname);
  node_ptr newobj(node_ptr cls, std::vector<node_ptr> args, node_ptr kw, const char* opname, node_ptr args_node);
  bool build(node_ptr target, node_ptr state);
  void set_dtype(node_ptr n, const dtype_info& dt);
  bool shape_of(node_ptr s, std::vector<std::int64_t>& shape);
  node_ptr frombuffer(const std::vector<node_ptr>& a);
  static std::shared_ptr<std::vector<std::byte>> gather(std::span<const std::byte> src, std::uint64_t itemsize,
                                                       const std::vector<std::int64_t>& shape,
                                                       const std::vector<std::int64_t>& strides, std::uint64_t offset);
  bool masked_setstate(node_ptr target, node_ptr state);
  node_ptr legacy_random_state(node_ptr state);
  bool dtype_setstate(node_ptr n, node_ptr state);
  bool array_setstate(node_ptr n, node_ptr state);
  void object_array(pyobj::ndarray& a, std::vector<std::int64_t> shape, const std::vector<node_ptr>& items);

  // ---- joblib's array wrappers (pickle_joblib.cpp) ----
  bool joblib_array(node_ptr wrapper, node_ptr state);
  bool joblib_side_array(node_ptr wrapper, node_ptr state, const std::string& cls);

  // ---- persistent ids and torch tensors (pickle_torch.cpp) ----
  bool persistent(node_ptr pid, const char* opname);
  node_ptr torch_tensor(const std::string& fixed, const std::vector<node_ptr>& a);

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

}  // namespace vitrify::legacy::detail::pickle
