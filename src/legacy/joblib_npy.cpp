// numpy dtype strings, raw array data -> pyobj arrays, and the .npy / .npz formats (joblib's
// old layout keeps arrays in side .npy files; np.save'd object arrays hold a pickle).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

#include "core/checked.hpp"
#include "core/numpy_dtype.hpp"
#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy::detail {

namespace {

error bad(std::string msg) { return fail(errc::bad_pickle, std::move(msg)); }


// ---- a Python literal subset: what np.save writes into .npy headers ----
struct lit {
  enum class t { str, integer, boolean, none, seq, dict } k = t::none;
  std::string s;
  std::int64_t i = 0;
  bool b = false;
  std::vector<lit> items;                       // seq
  std::vector<lit> kv;                          // dict: keys and values interleaved
};

class lit_parser {
 public:
  explicit lit_parser(std::string_view s) : s_(s) {}
  bool parse(lit& out) {
    if (!value(out, 0)) return false;
    ws();
    return p_ == s_.size();
  }

 private:
  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\n' || s_[p_] == '\t' || s_[p_] == '\r')) ++p_;
  }
  bool value(lit& out, int depth) {
    if (depth > 16) return false;
    ws();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '\'' || c == '"') {
      ++p_;
      out.k = lit::t::str;
      while (p_ < s_.size() && s_[p_] != c) {
        if (s_[p_] == '\\') return false;  // numpy never writes escapes in its headers
        out.s += s_[p_++];
      }
      if (p_ >= s_.size()) return false;
      ++p_;
      return true;
    }
    if (c == '(' || c == '[') {
      char close = c == '(' ? ')' : ']';
      ++p_;
      out.k = lit::t::seq;
      for (;;) {
        ws();
        if (p_ < s_.size() && s_[p_] == close) {
          ++p_;
          return true;
        }
        lit x;
        if (!value(x, depth + 1)) return false;
        out.items.push_back(std::move(x));
        ws();
        if (p_ < s_.size() && s_[p_] == ',') {
          ++p_;
          continue;
        }
        if (p_ < s_.size() && s_[p_] == close) {
          ++p_;
          return true;
        }
        return false;
      }
    }
    if (c == '{') {
      ++p_;
      out.k = lit::t::dict;
      for (;;) {
        ws();
        if (p_ < s_.size() && s_[p_] == '}') {
          ++p_;
          return true;
        }
        lit k, v;
        if (!value(k, depth + 1)) return false;
        ws();
        if (p_ >= s_.size() || s_[p_] != ':') return false;
        ++p_;
        if (!value(v, depth + 1)) return false;
        out.kv.push_back(std::move(k));
        out.kv.push_back(std::move(v));
        ws();
        if (p_ < s_.size() && s_[p_] == ',') {
          ++p_;
          continue;
        }
        if (p_ < s_.size() && s_[p_] == '}') {
          ++p_;
          return true;
        }
        return false;
      }
    }
    for (auto [word, kind, bv] : {std::tuple{"True", lit::t::boolean, true}, std::tuple{"False", lit::t::boolean, false},
                                  std::tuple{"None", lit::t::none, false}}) {
      std::string_view w(word);
      if (s_.substr(p_, w.size()) == w) {
        p_ += w.size();
        out.k = kind;
        out.b = bv;
        return true;
      }
    }
    std::size_t start = p_;
    if (p_ < s_.size() && s_[p_] == '-') ++p_;
    while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) ++p_;
    if (p_ < s_.size() && s_[p_] == 'L') ++p_;  // Python 2 longs
    std::string_view num = s_.substr(start, p_ - start);
    if (!num.empty() && num.back() == 'L') num.remove_suffix(1);
    auto r = std::from_chars(num.data(), num.data() + num.size(), out.i);
    if (num.empty() || r.ec != std::errc() || r.ptr != num.data() + num.size()) return false;
    out.k = lit::t::integer;
    return true;
  }
  std::string_view s_;
  std::size_t p_ = 0;
};

const lit* lget(const lit& d, std::string_view key) {
  for (std::size_t i = 0; i + 1 < d.kv.size(); i += 2)
    if (d.kv[i].k == lit::t::str && d.kv[i].s == key) return &d.kv[i + 1];
  return nullptr;
}

}  // namespace

result<dtype_info> parse_typestr(std::string_view s) {
  auto p = vitrify::detail::parse_numpy_dtype(s);
  if (!p) return bad(std::move(p).err().message);
  return dtype_info{std::move(p->str), p->kind, p->itemsize, p->big_endian, {}, p->kind == 'O'};
}

result<void> fill_array(pyobj::ndarray& a, const dtype_info& dt, std::vector<std::int64_t> shape, bool fortran,
                        std::span<const std::byte> data, std::shared_ptr<const void> owner, bool want_data) {
  a.shape = std::move(shape);
  a.fortran = fortran;
  a.dtype = dt.str;
  a.fields = dt.fields;
  if (dt.has_object) return bad("object arrays have no raw data");
  auto cnt = vitrify::detail::element_count(std::span<const std::int64_t>(a.shape));
  if (!cnt) return bad(std::move(cnt).err().message);
  const std::uint64_t count = *cnt;
  auto nbytes = vitrify::detail::byte_count(count, dt.itemsize);
  if (!nbytes || data.size() != *nbytes) return bad("array data size does not match its dtype and shape");
  if (dt.kind == 'U' || dt.kind == 'S') {
    a.itemsize = 0;
    if (!want_data) return {};
    // numpy strips trailing NULs when items are read; keep the items in C order.
    a.strings.reserve(count);
    std::uint64_t n = dt.itemsize;
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::byte* p = data.data() + k * n;
      std::string s;
      if (dt.kind == 'S') {
        std::size_t len = n;
        while (len && p[len - 1] == std::byte{0}) --len;
        s.assign(reinterpret_cast<const char*>(p), len);
      } else {
        std::size_t chars = n / 4;
        while (chars) {
          const std::byte* q = p + (chars - 1) * 4;
          if (q[0] == std::byte{0} && q[1] == std::byte{0} && q[2] == std::byte{0} && q[3] == std::byte{0}) --chars;
          else break;
        }
        for (std::size_t c = 0; c < chars; ++c) {
          const auto* q = reinterpret_cast<const unsigned char*>(p + c * 4);
          std::uint32_t cp = dt.big_endian ? (std::uint32_t(q[0]) << 24 | std::uint32_t(q[1]) << 16 | std::uint32_t(q[2]) << 8 | q[3])
                                           : (std::uint32_t(q[3]) << 24 | std::uint32_t(q[2]) << 16 | std::uint32_t(q[1]) << 8 | q[0]);
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return bad("unicode array holds an invalid code point");
          append_utf8(s, cp);
        }
      }
      a.strings.push_back(std::move(s));
    }
    return {};
  }
  a.itemsize = dt.itemsize;
  if (!want_data) return {};
  bool need_copy = dt.big_endian;
  if (dt.kind == 'b')
    for (std::byte x : data)
      if (static_cast<unsigned>(x) > 1) need_copy = true;
  if (!need_copy) {
    a.data = data;
    a.owner = std::move(owner);
    return {};
  }
  auto buf = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
  if (dt.kind == 'b') {
    for (auto& x : *buf) x = static_cast<unsigned>(x) ? std::byte{1} : std::byte{0};  // numpy: nonzero is True
  } else if (dt.big_endian) {
    std::uint64_t w = dt.kind == 'c' ? dt.itemsize / 2 : dt.itemsize;
    for (std::uint64_t k = 0; k < buf->size() / w; ++k) std::reverse(buf->data() + k * w, buf->data() + (k + 1) * w);
  }
  a.data = std::span<const std::byte>(buf->data(), buf->size());
  a.owner = buf;
  return {};
}

result<npy_header> parse_npy_header(std::span<const std::byte> data) {
  static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (data.size() < 10 || std::memcmp(data.data(), magic, 6) != 0) return fail(errc::unknown_format, "not a .npy file");
  unsigned major = static_cast<unsigned>(data[6]);
  std::uint64_t hlen, start;
  if (major == 1) {
    hlen = static_cast<std::uint64_t>(data[8]) | static_cast<std::uint64_t>(data[9]) << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) return fail(errc::truncated, ".npy header truncated");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | static_cast<std::uint64_t>(data[8 + static_cast<std::size_t>(i)]);
    start = 12;
  } else {
    return fail(errc::unsupported_version, ".npy format version " + std::to_string(major) + " is not supported");
  }
  if (hlen > data.size() - start) return fail(errc::truncated, ".npy header truncated");
  if (hlen > (1u << 20)) return fail(errc::limit_exceeded, ".npy header larger than 1 MiB");
  std::string_view text(reinterpret_cast<const char*>(data.data() + start), hlen);
  lit d;
  if (!lit_parser(text).parse(d) || d.k != lit::t::dict) return bad(".npy header is not a dict literal");
  const lit* descr = lget(d, "descr");
  const lit* fo = lget(d, "fortran_order");
  const lit* shape = lget(d, "shape");
  if (!descr || !fo || !shape || fo->k != lit::t::boolean || shape->k != lit::t::seq) return bad(".npy header lacks descr, fortran_order or shape");
  npy_header h;
  h.fortran = fo->b;
  h.data_offset = start + hlen;
  if (shape->items.size() > 64) return bad(".npy shape of rank above 64");
  std::uint64_t n = 1;
  for (auto& x : shape->items) {
    if (x.k != lit::t::integer || x.i < 0) return bad(".npy shape is not a tuple of sizes");
    h.shape.push_back(x.i);
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(x.i), &n) || n > (1ull << 62)) return bad(".npy shape too large");
  }
  if (descr->k == lit::t::str) {
    h.descr = descr->s;
  } else if (descr->k == lit::t::seq) {
    // Structured: [('name', '<i8'), ...] packed in order. Encoded as "[name:<i8,name2:<f8]".
    std::string s = "[";
    for (auto& f : descr->items) {
      if (f.k != lit::t::seq || f.items.size() != 2 || f.items[0].k != lit::t::str || f.items[1].k != lit::t::str)
        return bad(".npy structured descr not supported (titles, sub-arrays or nesting)");
      if (f.items[0].s.find_first_of(":,[]") != std::string::npos) return bad(".npy field name not supported");
      s += (s.size() > 1 ? "," : "") + f.items[0].s + ":" + f.items[1].s;
    }
    h.descr = s + "]";
  } else {
    return bad(".npy descr is neither a string nor a list");
  }
  return h;
}

namespace {
result<dtype_info> npy_dtype(const std::string& descr) {
  if (descr.empty() || descr.front() != '[') return parse_typestr(descr);
  dtype_info d;
  d.kind = 'V';
  std::string_view s(descr);
  s = s.substr(1, s.size() - 2);
  std::uint64_t off = 0;
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    auto colon = item.find(':');
    auto sub = parse_typestr(item.substr(colon + 1));
    if (!sub) return std::move(sub).err();
    if (sub->has_object) {
      d.has_object = true;
      off += 8;
      continue;
    }
    if (sub->kind == 'U' || sub->kind == 'S' || sub->kind == 'V' || sub->big_endian)
      return bad("unsupported structured dtype field '" + std::string(item) + "'");
    d.fields.push_back(pyobj::field{std::string(item.substr(0, colon)), sub->str, off, {}});
    off += sub->itemsize;
  }
  if (off == 0) return bad("empty structured dtype");
  d.itemsize = off;
  d.str = "V" + std::to_string(off);
  return d;
}
}  // namespace

pyobj::node_ptr read_npy(read_state& st, const bytes_ref& data, const std::string& name) {
  auto h = parse_npy_header(data.bytes);
  if (!h) {
    st.problem(name + ": " + h.err().message);
    return nullptr;
  }
  auto dt = npy_dtype(h->descr);
  if (!dt) {
    st.problem(name + ": " + dt.err().message);
    return nullptr;
  }
  bytes_ref rest{data.bytes.subspan(h->data_offset), data.owner};
  if (dt->has_object) {
    // np.save(allow_pickle=True) pickles the whole array after the header; np.load unpickles it.
    stream_options so;
    so.joblib = false;
    so.name = name + " (pickled object array)";
    return read_pickle_stream(st, rest, so);
  }
  std::uint64_t count = 1;
  for (auto x : h->shape) count *= static_cast<std::uint64_t>(x);
  if (dt->itemsize == 0 || count > rest.bytes.size() / dt->itemsize) {
    st.problem(name + ": array data truncated");
    return nullptr;
  }
  std::uint64_t nbytes = count * dt->itemsize;
  if (rest.bytes.size() != nbytes) st.problem(name + ": " + std::to_string(rest.bytes.size() - nbytes) + " bytes after the array data");
  pyobj::node_ptr n = st.g.make();
  n->k = pyobj::node::kind::array;
  n->arr = std::make_shared<pyobj::ndarray>();
  auto r = fill_array(*n->arr, *dt, h->shape, h->fortran && h->shape.size() > 1, rest.bytes.subspan(0, nbytes), data.owner,
                      st.opt.array_data);
  if (!r) {
    st.problem(name + ": " + r.err().message);
    return nullptr;
  }
  return n;
}

pyobj::node_ptr read_npz(read_state& st, const bytes_ref& file, const zip_archive& zip) {
  pyobj::node_ptr d = st.g.make();
  d->k = pyobj::node::kind::dict;
  for (const auto& e : zip.entries) {
    if (e.name.size() < 4 || e.name.substr(e.name.size() - 4) != ".npy") {
      st.problem(e.name + ": not a .npy member");
      continue;
    }
    st.out.streams.push_back(e.name);
    auto m = zip_read(file, e, st.opt.max_bytes);
    if (!m) {
      st.problem(e.name + ": " + m.err().message);
      continue;
    }
    pyobj::node_ptr a = read_npy(st, *m, e.name);
    if (!a) continue;
    pyobj::node_ptr k = st.g.make();
    k->k = pyobj::node::kind::string;
    k->text = e.name.substr(0, e.name.size() - 4);
    d->entries.emplace_back(k, a);
  }
  return d;
}

}  // namespace vitrify::legacy::detail
