// Format detection by content, and read_file: the entry point that maps a file, detects its
// format and runs the matching reader (pickle, joblib, torch zip/tar, npy, npz).
#include <cstring>
#include <new>
#include <unordered_set>

#include "legacy/legacy_internal.hpp"
#include "vitrify/reader.hpp"

namespace vitrify::legacy {

std::string_view format_name(file_format f) noexcept {
  switch (f) {
    case file_format::unknown: return "unknown";
    case file_format::vitrify: return "vitrify";
    case file_format::pickle: return "pickle";
    case file_format::joblib: return "joblib";
    case file_format::torch_zip: return "torch_zip";
    case file_format::torch_tar: return "torch_tar";
    case file_format::npy: return "npy";
    case file_format::npz: return "npz";
    case file_format::safetensors: return "safetensors";
    case file_format::zip_other: return "zip_other";
  }
  return "unknown";
}

namespace {

bool ends_with(std::string_view s, std::string_view t) { return s.size() >= t.size() && s.substr(s.size() - t.size()) == t; }

std::string_view as_text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Walk the first opcodes of a protocol 0/1 pickle (no PROTO opcode): every byte must be a
// known opcode with well-formed arguments, up to STOP or the end of `head`.
bool looks_like_old_pickle(std::span<const std::byte> head) {
  static const std::string_view starts = "(cl]})NILFSVXUTJKMGid";
  if (head.empty() || starts.find(static_cast<char>(head[0])) == std::string_view::npos) return false;
  std::size_t pos = 0;
  int ops = 0;
  while (pos < head.size() && ops < 4096) {
    unsigned char c = static_cast<unsigned char>(head[pos++]);
    ++ops;
    auto line = [&](int n) {
      for (int k = 0; k < n; ++k) {
        const void* nl = std::memchr(head.data() + pos, '\n', head.size() - pos);
        if (!nl) {
          pos = head.size();
          return;
        }
        pos = static_cast<std::size_t>(static_cast<const std::byte*>(nl) - head.data()) + 1;
      }
    };
    auto lenp = [&](int w) {
      if (pos + static_cast<std::size_t>(w) > head.size()) {
        pos = head.size();
        return true;
      }
      std::uint64_t n = 0;
      for (int i = w - 1; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(head[pos + static_cast<std::size_t>(i)]);
      pos += static_cast<std::size_t>(w);
      pos = n > head.size() - pos ? head.size() : pos + n;
      return true;
    };
    switch (c) {
      case '.': return ops >= 2;
      case '(': case '0': case '1': case '2': case 'N': case 'Q': case 'R': case 'a': case 'b': case 'd': case '}':
      case 'e': case 'l': case ']': case 'o': case 's': case 't': case ')': case 'u':
        break;
      case 'F': case 'I': case 'L': case 'P': case 'S': case 'V': case 'g': case 'p': line(1); break;
      case 'c': case 'i': line(2); break;
      case 'J': pos += 4; break;
      case 'K': case 'h': case 'q': pos += 1; break;
      case 'M': pos += 2; break;
      case 'j': case 'r': pos += 4; break;
      case 'G': pos += 8; break;
      case 'T': case 'X': lenp(4); break;
      case 'U': lenp(1); break;
      default: return false;
    }
  }
  return pos >= head.size() && head.size() >= 64;
}

}  // namespace

file_format detect_format(std::span<const std::byte> head) noexcept {
  auto at = [&](std::size_t i) { return i < head.size() ? static_cast<unsigned>(head[i]) : 0x100u; };
  std::string_view text = as_text(head);
  if (head.size() >= 8 && std::memcmp(head.data(), magic, 8) == 0) return file_format::vitrify;
  if (text.substr(0, 6) == "\x93NUMPY") return file_format::npy;
  if (text.substr(0, 4) == "PK\x03\x04" || text.substr(0, 4) == "PK\x05\x06") {
    if (text.size() >= 30 && text.substr(0, 4) == "PK\x03\x04") {
      std::size_t nlen = at(26) | (at(27) << 8);
      std::string_view name = text.substr(30, std::min<std::size_t>(nlen, text.size() - 30));
      if (ends_with(name, "data.pkl")) return file_format::torch_zip;
      if (ends_with(name, ".npy")) return file_format::npz;
    }
    if (text.find("/data.pkl") != std::string_view::npos) return file_format::torch_zip;
    return file_format::zip_other;
  }
  if (text.size() >= 262 && text.substr(257, 5) == "ustar") {
    std::string_view name = text.substr(0, 100);
    name = name.substr(0, name.find('\0'));
    if (name == "sys_info" || name == "pickle" || name == "storages" || name == "tensors") return file_format::torch_tar;
    return file_format::unknown;
  }
  if (detail::sniff_codec(head) != detail::codec::none) return file_format::joblib;
  if (head.size() >= 9 && at(8) == '{') {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | at(static_cast<std::size_t>(i));
    if (n >= 2 && n < (1ull << 32)) return file_format::safetensors;
  }
  bool joblib_names = text.find("NumpyArrayWrapper") != std::string_view::npos || text.find("NDArrayWrapper") != std::string_view::npos;
  if (at(0) == 0x80 && at(1) <= 5) return joblib_names ? file_format::joblib : file_format::pickle;
  if (looks_like_old_pickle(head)) return joblib_names ? file_format::joblib : file_format::pickle;
  return file_format::unknown;
}

namespace detail {

// Reject graphs nested deeper than the limit: consumers walk them recursively.
bool depth_ok(const pyobj::node* root, std::uint32_t max_depth) {
  if (!root) return true;
  std::unordered_set<const pyobj::node*> seen;
  std::vector<std::pair<const pyobj::node*, std::uint32_t>> stack{{root, 0}};
  while (!stack.empty()) {
    const pyobj::node* n = stack.back().first;
    const std::uint32_t d = stack.back().second;
    stack.pop_back();
    if (!n || !seen.insert(n).second) continue;
    if (d > max_depth) return false;
    auto push = [&](const pyobj::node* c) {
      if (c && !seen.count(c)) stack.emplace_back(c, d + 1);
    };
    for (auto c : n->items) push(c);
    for (auto& [k, v] : n->entries) {
      push(k);
      push(v);
    }
    if (n->arr)
      for (auto c : n->arr->items) push(c);
    if (n->obj) {
      for (auto c : n->obj->args) push(c);
      push(n->obj->kwargs);
      push(n->obj->state);
      for (auto c : n->obj->listitems) push(c);
      for (auto& [k, v] : n->obj->dictitems) {
        push(k);
        push(v);
      }
    }
  }
  return true;
}

// Reads `file` (already mapped) into `out`; shared by read_file and the scanner.
void read_into(read_result& out, const bytes_ref& file, const std::filesystem::path& side_dir, const read_options& opt) {
  out.graph = std::make_shared<pyobj::graph>();
  out.graph->keep(file.owner);
  read_state st(opt, out, *out.graph);
  st.side_dir = side_dir;
  std::span<const std::byte> head = file.bytes.subspan(0, std::min<std::size_t>(file.bytes.size(), 65536));
  out.format = detect_format(head);
  pyobj::node_ptr root = nullptr;
  switch (out.format) {
    case file_format::pickle:
    case file_format::joblib: {
      bytes_ref data = file;
      codec c = sniff_codec(head);
      if (c != codec::none) {
        auto d = decompress(c, file.bytes, opt.max_bytes);
        if (!d) {
          st.problem(std::string(codec_name(c)) + " decompression: " + d.err().message);
          break;
        }
        data = *d;
        out.graph->keep(data.owner);
        auto inner = detect_format(data.bytes.subspan(0, std::min<std::size_t>(data.bytes.size(), 65536)));
        if (inner != file_format::pickle && inner != file_format::joblib) {
          st.problem("the " + std::string(codec_name(c)) + "-compressed data is not a pickle");
          break;
        }
      }
      root = read_pickle_stream(st, data, {});
      if (st.saw_joblib || c != codec::none) out.format = file_format::joblib;
      break;
    }
    case file_format::torch_zip:
    case file_format::npz:
    case file_format::zip_other: {
      auto z = zip_list(file.bytes);
      if (!z) {
        st.problem(z.err().message);
        break;
      }
      for (auto& p : z->problems) st.problem(p);
      bool torch = false, all_npy = !z->entries.empty();
      for (auto& e : z->entries) {
        if (e.name == "data.pkl" || ends_with(e.name, "/data.pkl")) torch = true;
        if (!ends_with(e.name, ".npy")) all_npy = false;
      }
      if (torch) {
        out.format = file_format::torch_zip;
        root = read_torch_zip(st, file, *z);
      } else if (all_npy) {
        out.format = file_format::npz;
        root = read_npz(st, file, *z);
      } else {
        out.format = file_format::zip_other;
        st.problem("a zip archive that is neither a PyTorch checkpoint nor an .npz file");
      }
      break;
    }
    case file_format::torch_tar: root = read_torch_tar(st, file); break;
    case file_format::npy:
      out.streams.push_back("");
      root = read_npy(st, file, "npy");
      break;
    default: break;
  }
  if (root && !depth_ok(root, opt.max_depth)) {
    st.problem("the object graph is nested deeper than " + std::to_string(opt.max_depth) + " levels");
    root = nullptr;
  }
  out.graph->root = root;
  out.complete = root != nullptr && out.problems.empty();
}

}  // namespace detail

result<read_result> read_file(const std::filesystem::path& path, const read_options& opt) {
  auto mapped = detail::map_file(path);
  if (!mapped) return std::move(mapped).err();
  auto f = detect_format(mapped->bytes.subspan(0, std::min<std::size_t>(mapped->bytes.size(), 65536)));
  if (f == file_format::unknown || f == file_format::vitrify || f == file_format::safetensors)
    return fail(errc::unknown_format, path.string() + ": " +
                                          (f == file_format::unknown ? std::string("not a pickle, joblib, PyTorch or numpy file")
                                                                     : "a " + std::string(format_name(f)) + " file (use its own reader)"));
  read_result out;
  try {
    detail::read_into(out, *mapped, path.parent_path(), opt);
  } catch (const std::bad_alloc&) {
    return fail(errc::limit_exceeded, path.string() + ": out of memory while reading (lower read_options limits)");
  }
  return out;
}

}  // namespace vitrify::legacy
