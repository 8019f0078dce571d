// joblib's array wrappers inside a pickle: NumpyArrayWrapper (joblib >= 0.10: the array data
// follows the wrapper's BUILD in the stream itself) and NDArrayWrapper / ZNDArrayWrapper (older
// joblib: the data is in a .npy file next to the pickle).
#include "legacy/pickle_internal.hpp"

namespace vitrify::legacy::detail::pickle {

bool machine::joblib_array(node_ptr wrapper, node_ptr state) {
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

bool machine::joblib_side_array(node_ptr wrapper, node_ptr state, const std::string& cls) {
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

}  // namespace vitrify::legacy::detail::pickle
