// PyTorch state_dict files (`torch.save` zip, legacy tar) -> tensors files, without PyTorch and
// without executing anything: the file is read by the non-executing pickle reader
// (vitrify/legacy.hpp), whose graph represents tensors as inert array nodes viewing the storages.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "format/internal.hpp"
#include "vitrify/legacy.hpp"
#include "vitrify/pyobj.hpp"
#include "vitrify/tensors.hpp"

namespace vitrify::tensors {

namespace {

using pyobj::node;

/// numpy dtype strings the pickle reader uses for tensors -> vitrify dtypes.
std::optional<dtype> tensor_dtype(std::string_view s) {
  static const std::pair<std::string_view, dtype> table[] = {
      {"|b1", dtype::bool_},        {"|i1", dtype::int8},        {"<i2", dtype::int16},
      {"<i4", dtype::int32},        {"<i8", dtype::int64},       {"|u1", dtype::uint8},
      {"<u2", dtype::uint16},       {"<u4", dtype::uint32},      {"<u8", dtype::uint64},
      {"<f2", dtype::float16},      {"bfloat16", dtype::bfloat16}, {"<f4", dtype::float32},
      {"<f8", dtype::float64},      {"<c8", dtype::complex64},   {"<c16", dtype::complex128},
      {"float8_e4m3fn", dtype::float8_e4m3fn}, {"float8_e5m2", dtype::float8_e5m2},
  };
  for (const auto& [n, t] : table)
    if (n == s) return t;
  return std::nullopt;
}

std::string describe(const node* n) {
  switch (n->k) {
    case node::kind::none: return "None";
    case node::kind::boolean: return "a bool";
    case node::kind::integer:
    case node::kind::big_integer: return "an int";
    case node::kind::floating: return "a float";
    case node::kind::complex: return "a complex number";
    case node::kind::string: return "a str";
    case node::kind::bytes: return "bytes";
    case node::kind::list: return "a list";
    case node::kind::tuple: return "a tuple";
    case node::kind::dict: return "a dict";
    case node::kind::set:
    case node::kind::frozenset: return "a set";
    case node::kind::array: return "an array";
    case node::kind::scalar: return "a numpy scalar";
    case node::kind::dtype: return "a numpy dtype";
    case node::kind::global: return "a reference to " + n->text;
    case node::kind::object: return "an object of type " + n->obj->type;
  }
  return "an unknown value";
}

bool is_ordered_dict(const node* n) {
  return n->is(node::kind::object) && n->obj &&
         (n->obj->type == "collections.OrderedDict" || n->obj->type == "torch.nn.modules.module._IncompatibleKeys");
}

/// A tensor wrapped by torch._utils._rebuild_parameter (an nn.Parameter) or an array itself.
const node* as_tensor(const node* n) {
  if (n->is(node::kind::array)) return n;
  if (n->is(node::kind::object) && n->obj && !n->obj->args.empty() &&
      (n->obj->type == "torch._utils._rebuild_parameter" || n->obj->type == "torch.nn.parameter.Parameter" ||
       n->obj->type == "torch._utils._rebuild_parameter_with_state") &&
      n->obj->args[0] && n->obj->args[0]->is(node::kind::array))
    return n->obj->args[0];
  return nullptr;
}

struct collector {
  std::string file;
  std::vector<tensor_ref> tensors;
  std::vector<std::pair<std::string, std::string>> aliases;
  std::vector<std::shared_ptr<std::vector<std::byte>>> owned;  // C-order copies of Fortran data
  // (data pointer, bytes, dtype, shape) -> stored name: tied tensors are stored once.
  std::map<std::tuple<const std::byte*, std::size_t, int, std::vector<std::uint64_t>>, std::string> seen;
  std::uint32_t depth = 0;

  result<void> add_tensor(const std::string& name, const node* n) {
    const pyobj::ndarray& a = *n->arr;
    auto t = tensor_dtype(a.dtype);
    if (!t)
      return fail(errc::unsupported_model, file + ": tensor \"" + name + "\" has dtype \"" + a.dtype +
                                               "\", which vitrify cannot store");
    tensor_ref r;
    r.name = name;
    r.type = *t;
    for (std::int64_t d : a.shape) {
      if (d < 0) return fail(errc::bad_pickle, file + ": tensor \"" + name + "\" has a negative dimension");
      r.shape.push_back(static_cast<std::uint64_t>(d));
    }
    auto count = detail::element_count(r.shape);
    if (!count) return fail(errc::bad_pickle, file + ": tensor \"" + name + "\": " + count.err().message);
    std::uint64_t nbytes;
    if (detail::mul_overflow(*count, dtype_size(r.type), &nbytes) || nbytes != a.data.size())
      return fail(errc::bad_pickle, file + ": tensor \"" + name + "\" has " + std::to_string(a.data.size()) +
                                        " data bytes, but its dtype and shape need " + std::to_string(nbytes));
    r.data = a.data;
    if (a.fortran && r.shape.size() > 1 && nbytes > 0) {
      // Column-major data: write it out in C order (vitrify arrays are C order).
      auto buf = std::make_shared<std::vector<std::byte>>(static_cast<std::size_t>(nbytes));
      const std::size_t item = dtype_size(r.type), rank = r.shape.size();
      std::vector<std::uint64_t> idx(rank, 0), fstride(rank, 1);
      for (std::size_t k = 1; k < rank; ++k) fstride[k] = fstride[k - 1] * r.shape[k - 1];
      for (std::uint64_t c = 0; c < *count; ++c) {
        std::uint64_t src = 0;
        for (std::size_t k = 0; k < rank; ++k) src += idx[k] * fstride[k];
        std::memcpy(buf->data() + c * item, a.data.data() + src * item, item);
        for (std::size_t k = rank; k-- > 0;) {  // next C-order index
          if (++idx[k] < r.shape[k]) break;
          idx[k] = 0;
        }
      }
      r.data = *buf;
      owned.push_back(std::move(buf));
    }
    // Same bytes read the same way (C order, dtype, shape): one tensor under two names. Column-
    // major views are never aliased (a matrix and its transpose share bytes but not values).
    if (!a.data.empty() && !(a.fortran && r.shape.size() > 1)) {
      auto key = std::make_tuple(a.data.data(), a.data.size(), static_cast<int>(r.type), r.shape);
      auto [it, fresh] = seen.emplace(key, name);
      if (!fresh) {
        aliases.emplace_back(name, it->second);
        return {};
      }
    }
    tensors.push_back(std::move(r));
    return {};
  }

  result<void> walk_entries(const std::vector<std::pair<pyobj::node_ptr, pyobj::node_ptr>>& entries,
                            const std::string& prefix) {
    if (++depth > 64) return fail(errc::unsupported_model, file + ": state_dict nested more than 64 levels deep");
    for (const auto& [k, v] : entries) {
      if (!k || !k->is(node::kind::string))
        return fail(errc::unsupported_model, file + ": a state_dict key under \"" + prefix + "\" is " +
                                                 (k ? describe(k) : std::string("missing")) + ", not a str");
      const std::string name = prefix.empty() ? k->text : prefix + "." + k->text;
      if (!v) return fail(errc::bad_pickle, file + ": state_dict entry \"" + name + "\" has no value");
      VITRIFY_TRY(walk(name, v));
    }
    --depth;
    return {};
  }

  result<void> walk(const std::string& name, const node* v) {
    if (const node* t = as_tensor(v)) return add_tensor(name, t);
    if (v->is(node::kind::dict)) return walk_entries(v->entries, name);
    if (is_ordered_dict(v)) return walk_entries(v->obj->dictitems, name);
    return fail(errc::unsupported_model, file + ": state_dict entry \"" + name + "\" is " + describe(v) +
                                             ", not a tensor (only dicts of tensors can be imported)");
  }
};

}  // namespace

result<convert_report> import_torch(const std::filesystem::path& in, const std::filesystem::path& out,
                                    const write_options& opt) {
  auto rr = legacy::read_file(in);
  if (!rr) return std::move(rr).err();
  const std::string name = in.string();
  if (rr->format == legacy::file_format::pickle)
    return fail(errc::unknown_format, name + ": a plain pickle, not a torch.save zip file (the legacy format of "
                                             "torch.save(..., _use_new_zipfile_serialization=False) is not supported)");
  if (rr->format != legacy::file_format::torch_zip && rr->format != legacy::file_format::torch_tar)
    return fail(errc::unknown_format, name + ": not a PyTorch (torch.save) file but " +
                                          std::string(legacy::format_name(rr->format)));
  if (!rr->complete) {
    std::string why = rr->problems.empty() ? std::string("unknown reason") : rr->problems.front();
    return fail(errc::bad_pickle, name + ": the pickle stream cannot be fully accounted for: " + why);
  }
  const node* root = rr->graph ? rr->graph->root : nullptr;
  if (!root) return fail(errc::bad_pickle, name + ": the pickle holds no object");
  const bool plain_dict = root->is(node::kind::dict);
  if (!plain_dict && !is_ordered_dict(root))
    return fail(errc::unsupported_model, name + ": the file holds " + describe(root) +
                                             ", not a state_dict (save model.state_dict() rather than the model)");
  // Nothing but tensor rebuilds and dict construction belongs in a state_dict; refuse anything
  // else rather than silently dropping it (it is never run either way).
  for (const auto& c : rr->calls)
    if (!c.handled)
      return fail(errc::unsupported_model, name + ": the pickle calls " + c.callee + " (" + c.opcode +
                                               "), which is not part of a state_dict of tensors");
  collector col;
  col.file = name;
  VITRIFY_TRY(col.walk_entries(plain_dict ? root->entries : root->obj->dictitems, ""));
  convert_report rep;
  rep.source_format = std::string(legacy::format_name(rr->format));
  for (const auto& t : col.tensors) rep.bytes += t.data.size();
  VITRIFY_TRY(write_tensors_file(out, col.tensors, col.aliases, value::null(), "torch.save", opt));
  rep.arrays = col.tensors.size();
  rep.aliases = col.aliases.size();
  rep.tensors = rep.arrays + rep.aliases;
  return rep;
}

}  // namespace vitrify::tensors
