// PyTorch checkpoints without PyTorch: the zip format of torch.save (>= 1.6: <stem>/data.pkl +
// <stem>/data/<key> storages, resolved through persistent ids) and the legacy tar format
// (sys_info, pickle, storages, tensors members; tar read with libarchive).
#include <archive.h>
#include <archive_entry.h>

#include <cstring>
#include <map>

#include "legacy/legacy_internal.hpp"

namespace vitrify::legacy::detail {

namespace {

using pyobj::node;
using pyobj::node_ptr;
using K = node::kind;

std::string storage_dtype(const node* cls) {
  if (!cls || cls->k != K::global) return {};
  std::string_view n = cls->text;
  auto dot = n.rfind('.');
  std::string_view last = dot == std::string_view::npos ? n : n.substr(dot + 1);
  static const std::map<std::string_view, std::string_view> m = {
      {"FloatStorage", "<f4"}, {"DoubleStorage", "<f8"}, {"HalfStorage", "<f2"}, {"BFloat16Storage", "bfloat16"},
      {"LongStorage", "<i8"}, {"IntStorage", "<i4"}, {"ShortStorage", "<i2"}, {"CharStorage", "|i1"},
      {"ByteStorage", "|u1"}, {"BoolStorage", "|b1"}, {"ComplexFloatStorage", "<c8"}, {"ComplexDoubleStorage", "<c16"},
      {"UntypedStorage", "|u1"}, {"UInt16Storage", "<u2"}, {"UInt32Storage", "<u4"}, {"UInt64Storage", "<u8"},
      {"Float8_e4m3fnStorage", "float8_e4m3fn"}, {"Float8_e5m2Storage", "float8_e5m2"}};
  if (n.rfind("torch.", 0) != 0) return {};
  auto it = m.find(last);
  return it == m.end() ? std::string() : std::string(it->second);
}

std::uint64_t itemsize_of(std::string_view dt) {
  if (dt == "bfloat16") return 2;
  if (dt.rfind("float8", 0) == 0) return 1;
  if (dt.size() >= 3) return static_cast<std::uint64_t>(std::stoull(std::string(dt.substr(2))));
  return 0;
}

node_ptr make_storage_node(read_state& st, const node* cls) {
  node_ptr n = st.g.make();
  n->k = K::object;
  n->obj = std::make_shared<pyobj::object>();
  n->obj->type = cls && cls->k == K::global ? cls->text : "torch.storage";
  return n;
}

}  // namespace

pyobj::node_ptr read_torch_zip(read_state& st, const bytes_ref& file, const zip_archive& zip) {
  st.torch = true;
  const zip_entry* pkl = nullptr;
  std::string prefix;
  for (const auto& e : zip.entries) {
    const std::string& n = e.name;
    if (n == "data.pkl" || (n.size() > 9 && n.compare(n.size() - 9, 9, "/data.pkl") == 0)) {
      if (pkl) {
        st.problem("more than one data.pkl in the archive ('" + pkl->name + "', '" + n + "')");
        continue;
      }
      pkl = &e;
      prefix = n.substr(0, n.size() - 8);
    }
  }
  if (!pkl) {
    st.problem("no data.pkl in the PyTorch archive");
    return nullptr;
  }
  std::map<std::string, const zip_entry*> storages;
  for (const auto& e : zip.entries) {
    if (e.name.rfind(prefix + "data/", 0) == 0) storages[e.name.substr(prefix.size() + 5)] = &e;
    if (e.name == prefix + "byteorder" && e.size <= 16) {
      auto b = zip_read(file, e, 64);
      if (b && std::string_view(reinterpret_cast<const char*>(b->bytes.data()), b->bytes.size()) != "little")
        st.problem("the archive's storages are not little-endian");
    }
    if (e.name.rfind(prefix + "code/", 0) == 0 && e.name.size() > 3 && e.name.compare(e.name.size() - 3, 3, ".py") == 0) {
      st.problem("TorchScript code in '" + e.name + "' (Python code run by torch.jit.load; not analysed)");
    }
  }
  std::map<std::string, node_ptr> loaded;
  st.persistent_load = [&](node_ptr pid, std::string& why) -> result<node_ptr> {
    // ('storage', storage_type, key, location, numel)
    if (!pid || pid->k != K::tuple || pid->items.size() != 5 || !pid->items[0] || pid->items[0]->k != K::string ||
        pid->items[0]->text != "storage" || !pid->items[2] || pid->items[2]->k != K::string || !pid->items[4] ||
        pid->items[4]->k != K::integer || pid->items[4]->i < 0) {
      why = "not a torch storage reference";
      return node_ptr{nullptr};
    }
    const std::string& key = pid->items[2]->text;
    auto hit = loaded.find(key);
    if (hit != loaded.end()) return hit->second;
    std::string dt = storage_dtype(pid->items[1]);
    if (dt.empty()) {
      why = "unknown storage type " + (pid->items[1] ? pid->items[1]->text : std::string("?"));
      return node_ptr{nullptr};
    }
    std::uint64_t isz = itemsize_of(dt);
    std::uint64_t numel = static_cast<std::uint64_t>(pid->items[4]->i);
    if (isz == 0 || numel > (1ull << 62) / isz) {
      why = "storage size out of range";
      return node_ptr{nullptr};
    }
    auto it = storages.find(key);
    if (it == storages.end()) {
      why = "storage '" + key + "' is not in the archive";
      return node_ptr{nullptr};
    }
    if (it->second->size != numel * isz) {
      why = "storage '" + key + "' holds " + std::to_string(it->second->size) + " bytes, its reference says " +
            std::to_string(numel) + " elements of " + std::to_string(isz) + " bytes";
      return node_ptr{nullptr};
    }
    node_ptr n = make_storage_node(st, pid->items[1]);
    torch_storage ts;
    ts.dtype = dt;
    ts.nbytes = numel * isz;
    if (st.opt.array_data) {
      auto b = zip_read(file, *it->second, st.opt.max_bytes);
      if (!b) return std::move(b).err();
      ts.data = b->bytes;
      ts.owner = b->owner;
      ts.have_data = true;
    }
    st.storages[n] = ts;
    loaded[key] = n;
    return n;
  };
  node_ptr root = nullptr;
  for (const auto& e : zip.entries) {
    bool is_main = &e == pkl;
    bool is_pkl = e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".pkl") == 0;
    if (!is_main && !is_pkl) continue;
    auto b = zip_read(file, e, st.opt.max_bytes);
    if (!b) {
      st.problem(e.name + ": " + b.err().message);
      continue;
    }
    stream_options so;
    so.joblib = false;
    so.name = e.name;
    node_ptr r = read_pickle_stream(st, *b, so);
    if (is_main) root = r;
  }
  st.persistent_load = nullptr;
  return root;
}

result<std::vector<tar_member>> tar_read_all(std::span<const std::byte> archive, std::uint64_t max_bytes) {
  struct archive* a = archive_read_new();
  if (!a) return fail(errc::io_error, "libarchive initialisation failed");
  struct closer {
    struct archive* a;
    ~closer() { archive_read_free(a); }
  } c{a};
  archive_read_support_format_tar(a);
  if (archive_read_open_memory(a, archive.data(), archive.size()) != ARCHIVE_OK)
    return fail(errc::unknown_format, std::string("not a tar archive: ") + (archive_error_string(a) ? archive_error_string(a) : "?"));
  std::vector<tar_member> out;
  std::uint64_t total = 0;
  struct archive_entry* e = nullptr;
  for (;;) {
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      return fail(errc::bad_layout, std::string("corrupt tar archive: ") + (archive_error_string(a) ? archive_error_string(a) : "?"));
    if (out.size() > 100000) return fail(errc::limit_exceeded, "tar archive with too many members");
    tar_member m;
    m.name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || static_cast<std::uint64_t>(size) > max_bytes - std::min(total, max_bytes)) return fail(errc::limit_exceeded, "tar member too large");
    total += static_cast<std::uint64_t>(size);
    auto buf = std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(size));
    std::size_t got = 0;
    while (got < buf->size()) {
      la_ssize_t n = archive_read_data(a, buf->data() + got, buf->size() - got);
      if (n < 0) return fail(errc::bad_layout, "corrupt tar member '" + m.name + "'");
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    if (got != buf->size()) return fail(errc::truncated, "tar member '" + m.name + "' is truncated");
    m.data = bytes_ref{std::span<const std::byte>(buf->data(), buf->size()), buf};
    out.push_back(std::move(m));
  }
  return out;
}

pyobj::node_ptr read_torch_tar(read_state& st, const bytes_ref& file) {
  st.torch = true;
  auto members = tar_read_all(file.bytes, st.opt.max_bytes);
  if (!members) {
    st.problem(members.err().message);
    return nullptr;
  }
  // Persistent ids in the legacy format name storages/tensors by key; their data lives in the
  // 'storages' and 'tensors' members, which are walked below but not turned into arrays.
  st.persistent_load = [&](node_ptr pid, std::string&) -> result<node_ptr> {
    node_ptr n = st.g.make();
    n->k = K::object;
    n->obj = std::make_shared<pyobj::object>();
    n->obj->type = "torch.legacy_storage";
    n->obj->args = {pid};
    return n;
  };
  node_ptr root = nullptr;
  bool saw_pickle = false;
  for (auto& m : *members) {
    stream_options so;
    so.joblib = false;
    so.name = m.name;
    if (m.name == "sys_info" || m.name == "pickle") {
      node_ptr r = read_pickle_stream(st, m.data, so);
      if (m.name == "pickle") {
        root = r;
        saw_pickle = true;
      }
      continue;
    }
    if (m.name != "storages" && m.name != "tensors") {
      st.problem("unexpected member '" + m.name + "' in a PyTorch tar archive");
      continue;
    }
    // A sequence of pickles with raw records between them.
    std::span<const std::byte> b = m.data.bytes;
    std::uint64_t pos = 0;
    auto next_pickle = [&](node_ptr& out) {
      st.out.streams.push_back(m.name + " at offset " + std::to_string(pos));
      stream_options s2 = so;
      s2.name = m.name + " at offset " + std::to_string(pos);
      std::size_t before = st.out.problems.size();
      stream_outcome o = run_pickle(st, bytes_ref{b.subspan(pos), m.data.owner}, s2);
      pos += o.consumed;
      out = o.root;
      return o.stopped && st.out.problems.size() == before;
    };
    auto rd = [&](std::uint64_t n, std::uint64_t& v) {
      if (n > b.size() - pos) return false;
      v = 0;
      for (std::uint64_t i = n; i-- > 0;) v = (v << 8) | static_cast<std::uint8_t>(b[pos + i]);
      pos += n;
      return true;
    };
    node_ptr count_node;
    if (!next_pickle(count_node) || !count_node || count_node->k != K::integer || count_node->i < 0 || count_node->i > 1'000'000) {
      st.problem(m.name + ": invalid record count");
      continue;
    }
    bool ok = true;
    for (std::int64_t r = 0; r < count_node->i && ok; ++r) {
      node_ptr rec;
      if (!next_pickle(rec) || !rec || rec->k != K::tuple || rec->items.size() != 3) {
        ok = false;
        break;
      }
      if (m.name == "storages") {
        std::string dt = storage_dtype(rec->items[2]);
        std::uint64_t n;
        if (dt.empty() || !rd(8, n) || n > (b.size() - pos) / itemsize_of(dt)) {
          ok = false;
          break;
        }
        pos += n * itemsize_of(dt);
      } else {
        std::uint64_t ndim, skip, tmp;
        if (!rd(4, ndim) || !rd(4, skip) || ndim > 64) {
          ok = false;
          break;
        }
        for (std::uint64_t i = 0; i < 2 * ndim + 1 && ok; ++i) ok = rd(8, tmp);
      }
    }
    if (ok && m.name == "storages") {
      node_ptr views;
      ok = next_pickle(views);
    }
    if (!ok) st.problem(m.name + ": records do not follow the legacy PyTorch layout");
    else if (pos != b.size()) st.problem(m.name + ": " + std::to_string(b.size() - pos) + " bytes after the last record");
  }
  st.persistent_load = nullptr;
  if (!saw_pickle) st.problem("no 'pickle' member in the PyTorch tar archive");
  if (st.opt.array_data && saw_pickle) st.problem("tensors of the legacy PyTorch tar format are not reconstructed");
  return root;
}

}  // namespace vitrify::legacy::detail
