// torch inside a pickle: persistent ids (resolved to storages by read_state::persistent_load,
// see torch.cpp) and torch._utils._rebuild_tensor* calls turned into array nodes over those
// storages, bounds-checked against the storage size.
#include <charconv>

#include "legacy/pickle_internal.hpp"

namespace vitrify::legacy::detail::pickle {

namespace {

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

}  // namespace

bool machine::persistent(node_ptr pid, const char* opname) {
  record_call(nullptr, pid, opname, false);
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

node_ptr machine::torch_tensor(const std::string& fixed, const std::vector<node_ptr>& a) {
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

}  // namespace vitrify::legacy::detail::pickle
