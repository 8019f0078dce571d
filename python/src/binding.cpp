// vitrify._core: nanobind bindings of the C++ reader and writer.
//
// Every vitrify::error is thrown as `py_error` and translated into the Python exception class
// chosen by its code (see python/vitrify/errors.py). The GIL is released around everything
// that touches file data (mapping, verification, decompression, writing).

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitrify/pyobj.hpp"
#include "vitrify/runtime.hpp"
#include "vitrify/sign.hpp"
#include "vitrify/vitrify.hpp"
#include "common.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using vitrify_py::py_error;
using vitrify_py::raise;
using vitrify_py::unwrap;
using vitrify_py::File;

namespace {

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

void translate(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const py_error& e) {
    try {
      nb::object mod = nb::module_::import_("vitrify.errors");
      // Messages may quote file paths that are not valid UTF-8: never fail on them.
      nb::object msg = nb::steal(
          PyUnicode_DecodeUTF8(e.text.data(), static_cast<Py_ssize_t>(e.text.size()), "backslashreplace"));
      if (!msg.is_valid()) throw nb::python_error();
      nb::object exc = mod.attr("_make_error")(static_cast<int>(e.err.code),
                                              std::string(vitrify::errc_name(e.err.code)), msg, e.err.sys_errno);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    } catch (nb::python_error& pe) {
      pe.restore();
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, e.text.c_str());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A C-contiguous read-only byte view of any object supporting the buffer protocol.
class byte_buffer {
 public:
  byte_buffer(nb::handle obj, const char* what) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      raise(vitrify::errc::invalid_argument,
            std::string(what) + ": expected a C-contiguous buffer (bytes, bytearray, memoryview or numpy array), got " +
                std::string(nb::type_name(obj.type()).c_str()));
    }
    held_ = true;
  }
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;
  ~byte_buffer() {
    if (held_) PyBuffer_Release(&view_);
  }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept {
    return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

vitrify::dtype dtype_arg(std::string_view name) {
  auto t = vitrify::dtype_from_name(name);
  if (!t) raise(vitrify::errc::invalid_argument, "unknown dtype name '" + std::string(name) + "'");
  return *t;
}

vitrify::array_codec codec_arg(std::string_view name, int level) {
  auto c = vitrify::codec_from_name(name);
  if (!c) raise(vitrify::errc::invalid_argument, "unknown codec name '" + std::string(name) + "'");
  return vitrify::array_codec{*c, level};
}

vitrify::value value_arg(const std::optional<std::string>& json, const char* what) {
  if (!json) return vitrify::value{};
  auto r = vitrify::parse_value(*json);
  if (!r.ok()) {
    raise(vitrify::errc::invalid_argument, std::string(what) + ": invalid typed-value JSON (" +
                                               std::string(vitrify::errc_name(r.code())) + "): " +
                                               r.err().message);
  }
  return std::move(r).value();
}

nb::dict array_info_dict(const vitrify::array_info& a) {
  nb::dict d;
  d["name"] = nb::str(a.name.data(), a.name.size());
  d["dtype"] = std::string(vitrify::dtype_name(a.type));
  nb::list shape;
  for (auto s : a.shape) shape.append(nb::int_(s));
  d["shape"] = nb::tuple(shape);
  d["count"] = nb::int_(a.count);
  d["offset"] = nb::int_(a.offset);
  d["length"] = nb::int_(a.stored_length);
  d["decoded_length"] = nb::int_(a.decoded_length);
  d["codec"] = std::string(vitrify::codec_name(a.codec));
  d["level"] = nb::int_(a.level);
  d["xxh3"] = nb::int_(a.xxh3);
  if (a.attrs.is(vitrify::value::kind::null))
    d["attrs"] = nb::none();
  else
    d["attrs"] = vitrify::to_json(a.attrs);
  return d;
}

// ---------------------------------------------------------------------------------------------
// File
// ---------------------------------------------------------------------------------------------

std::string opt_json(const vitrify::value& v) { return vitrify::to_json(v); }

/// A Python str from bytes that should be UTF-8 but may not be (paths): never fails.
nb::str lossy_str(const std::string& s) {
  return nb::steal<nb::str>(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace"));
}

nb::object make_view(nb::pointer_and_handle<File> self, std::size_t i, bool check) {
  const File& fh = *self.p;
  std::span<const std::byte> s;
  {
    nb::gil_scoped_release release;
    s = unwrap(fh.f.view(i, check));
  }
  std::size_t shape[1] = {s.size()};
  // numpy refuses NULL data pointers in some versions; empty arrays point at the file start.
  const std::byte* ptr = s.data() != nullptr ? s.data() : fh.f.bytes().data();
  if (fh.writable) {
    nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<1>> arr(
        const_cast<std::byte*>(ptr), 1, shape, self.h);
    return arr.cast();
  }
  nb::ndarray<nb::numpy, const std::uint8_t, nb::ndim<1>> arr(ptr, 1, shape, self.h);
  return arr.cast();
}

using out_array = nb::ndarray<std::uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

void read_into(const File& fh, std::size_t i, out_array out, bool check) {
  const auto& a = fh.f.arrays()[i];
  if (out.size() != a.decoded_length) {
    raise(vitrify::errc::invalid_argument, "read_into('" + a.name + "'): output buffer has " + std::to_string(out.size()) +
                                               " bytes, the array decodes to " + std::to_string(a.decoded_length));
  }
  std::span<std::byte> dst(reinterpret_cast<std::byte*>(out.data()), out.size());
  nb::gil_scoped_release release;
  unwrap(fh.f.read_into(i, dst, check));
}

nb::list read_strings(const File& fh, std::size_t i, bool check) {
  std::vector<std::string> v;
  {
    nb::gil_scoped_release release;
    v = unwrap(fh.f.read_strings(i, check));
  }
  nb::list out;
  for (const auto& s : v) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
    if (o == nullptr) throw nb::python_error();
    out.append(nb::steal(o));
  }
  return out;
}

vitrify::open_options make_opts(bool copy_on_write, std::optional<std::uint64_t> max_header_bytes,
                                std::optional<std::uint64_t> max_decoded_bytes) {
  vitrify::open_options o;
  o.copy_on_write = copy_on_write;
  if (max_header_bytes) o.lim.max_header_bytes = *max_header_bytes;
  if (max_decoded_bytes) o.lim.max_decoded_bytes = *max_decoded_bytes;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Signatures (issue 5)
// ---------------------------------------------------------------------------------------------

bool is_buffer(nb::handle h) { return PyObject_CheckBuffer(h.ptr()) != 0; }

/// A public key from bytes-like data (PEM text or 32 raw bytes) or a path (str / os.PathLike).
vitrify::public_key pubkey_arg(nb::handle h) {
  if (is_buffer(h)) {
    byte_buffer buf(h, "public key");
    return unwrap(vitrify::parse_public_key(buf.bytes()));
  }
  auto path = nb::cast<std::filesystem::path>(h);
  nb::gil_scoped_release release;
  return unwrap(vitrify::read_public_key(path));
}

/// A private key from bytes-like PEM text or a path (str / os.PathLike).
vitrify::private_key privkey_arg(nb::handle h) {
  if (is_buffer(h)) {
    byte_buffer buf(h, "private key");
    return unwrap(vitrify::parse_private_key(buf.bytes()));
  }
  auto path = nb::cast<std::filesystem::path>(h);
  nb::gil_scoped_release release;
  return unwrap(vitrify::read_private_key(path));
}

nb::bytes key_bytes(const vitrify::public_key& k) {
  return nb::bytes(reinterpret_cast<const char*>(k.bytes.data()), k.bytes.size());
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

using vitrify_py::Writer;

// ---------------------------------------------------------------------------------------------
// C++ runtime (vitrify.native)
// ---------------------------------------------------------------------------------------------

namespace rt = vitrify::runtime;

rt::method method_arg(std::string_view name) {
  if (name == "predict") return rt::method::predict;
  if (name == "predict_proba") return rt::method::predict_proba;
  if (name == "decision_function") return rt::method::decision_function;
  if (name == "transform") return rt::method::transform;
  if (name == "score_samples") return rt::method::score_samples;
  raise(vitrify::errc::invalid_argument, "unknown method '" + std::string(name) + "'");
}

nb::object output_to_python(rt::output&& out) {
  if (out.is_labels()) {
    nb::list labels;
    for (auto& s : out.labels)
      labels.append(nb::steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape")));
    return nb::make_tuple(labels, out.rows, out.cols);
  }
  auto* vec = new std::vector<double>(std::move(out.values));
  nb::capsule owner(vec, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
  std::size_t shape[2] = {out.rows, out.cols};
  nb::ndarray<nb::numpy, double, nb::ndim<2>> arr(vec->data(), 2, shape, owner);
  return nb::make_tuple(nb::cast(arr), out.rows, out.cols);
}

struct NativeModel {
  rt::model m;

  nb::object run(std::string_view method, nb::ndarray<nb::ro, nb::ndim<2>, nb::c_contig, nb::device::cpu> x) const {
    rt::method meth = method_arg(method);
    rt::matrix_view view;
    if (x.dtype() == nb::dtype<double>())
      view = rt::matrix_view(static_cast<const double*>(x.data()), x.shape(0), x.shape(1));
    else if (x.dtype() == nb::dtype<float>())
      view = rt::matrix_view(static_cast<const float*>(x.data()), x.shape(0), x.shape(1));
    else
      raise(vitrify::errc::invalid_argument, "X must be a float64 or float32 array");
    vitrify::result<rt::output> r = vitrify::fail(vitrify::errc::ok, "");
    {
      nb::gil_scoped_release nogil;
      r = m.run(meth, view);
    }
    return output_to_python(unwrap(std::move(r)));
  }

  // columns: list of (name, float64 ndarray | list of str-or-None)
  nb::object run_table(std::string_view method, std::size_t rows, nb::list columns) const {
    rt::method meth = method_arg(method);
    rt::table t(rows);
    for (nb::handle item : columns) {
      nb::tuple pair = nb::cast<nb::tuple>(item);
      std::string name = nb::cast<std::string>(pair[0]);
      nb::handle data = pair[1];
      if (nb::isinstance<nb::list>(data)) {
        std::vector<std::string> texts;
        std::vector<bool> missing;
        for (nb::handle v : nb::cast<nb::list>(data)) {
          if (v.is_none()) {
            texts.emplace_back();
            missing.push_back(true);
          } else {
            texts.push_back(nb::cast<std::string>(v));
            missing.push_back(false);
          }
        }
        unwrap(t.add_text(std::move(name), std::move(texts), std::move(missing)));
      } else {
        auto a = nb::cast<nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>>(data);
        const double* p = a.data();
        unwrap(t.add_numeric(std::move(name), std::vector<double>(p, p + a.shape(0))));
      }
    }
    vitrify::result<rt::output> r = vitrify::fail(vitrify::errc::ok, "");
    {
      nb::gil_scoped_release nogil;
      r = m.run(meth, t);
    }
    return output_to_python(unwrap(std::move(r)));
  }
};

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "vitrify C++ core (nanobind)";
  vitrify_py::bind_legacy(m);
  vitrify_py::bind_tensors(m);
  vitrify_py::bind_convert(m);
  vitrify_py::bind_objects(m);
  vitrify_py::bind_encode(m);
  nb::register_exception_translator(translate);

  m.attr("library_version") = vitrify::library_version();
  m.attr("format_version") = nb::make_tuple(vitrify::format_major, vitrify::format_minor);
  m.attr("preamble_size") = vitrify::preamble_size;

  m.def("errc_name", [](int code) { return std::string(vitrify::errc_name(static_cast<vitrify::errc>(code))); },
        "code"_a, "Stable identifier of a numeric error code.");
  m.def("dtype_names", [] {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < vitrify::dtype_count; ++i)
      v.emplace_back(vitrify::dtype_name(static_cast<vitrify::dtype>(i)));
    return v;
  });
  m.def("dtype_size", [](std::string_view name) { return vitrify::dtype_size(dtype_arg(name)); }, "name"_a);
  m.def("canonical_json", [](const std::string& json) { return vitrify::to_json(value_arg(json, "canonical_json")); },
        "json"_a, "Parse typed-value JSON with the C++ parser and return its canonical encoding.");
  m.def("_raise", [](int code, std::string msg) { raise(static_cast<vitrify::errc>(code), std::move(msg)); },
        "code"_a, "message"_a, "Raise the Python exception for an error code (for tests).");

  // ---- File --------------------------------------------------------------------------------
  nb::class_<File>(m, "File", "A verified vitrify file (memory-mapped or an in-memory copy).")
      .def_static(
          "open",
          [](const std::filesystem::path& path, bool copy_on_write, std::optional<std::uint64_t> max_header_bytes,
             std::optional<std::uint64_t> max_decoded_bytes) {
            auto opts = make_opts(copy_on_write, max_header_bytes, max_decoded_bytes);
            std::optional<vitrify::file> f;
            {
              nb::gil_scoped_release release;
              f.emplace(unwrap(vitrify::file::open(path, opts)));
            }
            return File{std::move(*f), copy_on_write};
          },
          "path"_a, "copy_on_write"_a = false, "max_header_bytes"_a = nb::none(),
          "max_decoded_bytes"_a = nb::none(),
          "Memory-map and verify the file at path. With copy_on_write, views are writable and\n"
          "writes stay private to this process (the file is never modified).")
      .def_static(
          "from_bytes",
          [](nb::handle data, bool writable, std::optional<std::uint64_t> max_header_bytes,
             std::optional<std::uint64_t> max_decoded_bytes) {
            byte_buffer buf(data, "File.from_bytes");
            auto opts = make_opts(false, max_header_bytes, max_decoded_bytes);
            std::optional<vitrify::file> f;
            {
              nb::gil_scoped_release release;
              f.emplace(unwrap(vitrify::file::from_bytes(buf.bytes(), opts)));
            }
            return File{std::move(*f), writable};
          },
          "data"_a, "writable"_a = false, "max_header_bytes"_a = nb::none(), "max_decoded_bytes"_a = nb::none(),
          "Verify an in-memory image (copied into a private aligned buffer). With writable, views\n"
          "of raw arrays may be written (they alias the private copy, never `data`).")
      .def_prop_ro("name",
                   [](const File& s) {
                     const auto& n = s.f.name();
                     return nb::steal(PyUnicode_DecodeFSDefaultAndSize(n.data(), static_cast<Py_ssize_t>(n.size())));
                   })
      .def_prop_ro("version", [](const File& s) { return nb::make_tuple(s.f.version_major(), s.f.version_minor()); })
      .def_prop_ro("alignment", [](const File& s) { return s.f.alignment(); })
      .def_prop_ro("size", [](const File& s) { return s.f.size(); })
      .def_prop_ro("content_length", [](const File& s) { return s.f.content_length(); })
      .def_prop_ro("writable", [](const File& s) { return s.writable; })
      .def_prop_ro("address", [](const File& s) { return reinterpret_cast<std::uintptr_t>(s.f.bytes().data()); },
                   "Address of the first byte of the file image (mapping or private copy).")
      .def_prop_ro("required_features",
                   [](const File& s) {
                     std::vector<std::string> v(s.f.required_features().begin(), s.f.required_features().end());
                     return v;
                   })
      .def_prop_ro("header_json", [](const File& s) {
        auto h = s.f.header_json();
        return nb::str(h.data(), h.size());
      })
      .def_prop_ro("arrays",
                   [](const File& s) {
                     nb::list out;
                     for (const auto& a : s.f.arrays()) out.append(array_info_dict(a));
                     return out;
                   },
                   "The array table: a list of dicts (name, dtype, shape, count, offset, length,\n"
                   "decoded_length, codec, level, xxh3, attrs as typed-value JSON text or None).")
      .def("__len__", [](const File& s) { return s.f.arrays().size(); })
      .def("names",
           [](const File& s) {
             nb::list out;
             for (const auto& a : s.f.arrays()) out.append(nb::str(a.name.data(), a.name.size()));
             return out;
           })
      .def("array_info", [](const File& s, std::int64_t i) { return array_info_dict(s.f.arrays()[s.index(i)]); }, "i"_a)
      .def("array_info", [](const File& s, const std::string& n) { return array_info_dict(s.f.arrays()[s.index(n)]); },
           "name"_a)
      .def("find", [](const File& s, const std::string& n) { return s.index(n); }, "name"_a,
           "Index of the array called name (ArrayNotFoundError if there is none).")
      .def("__contains__", [](const File& s, const std::string& n) { return s.f.find(n).ok(); }, "name"_a)
      .def(
          "view",
          [](nb::pointer_and_handle<File> self, std::int64_t i, bool check) {
            return make_view(self, self.p->index(i), check);
          },
          "i"_a, "check"_a = false,
          "Zero-copy 1-D uint8 view of a raw array's bytes inside the mapping. The array keeps this\n"
          "File alive. Read-only unless the file was opened copy_on_write. With check, the XXH3\n"
          "checksum is verified first (touches every byte). ArgumentError (not_raw) for compressed arrays.")
      .def(
          "view",
          [](nb::pointer_and_handle<File> self, const std::string& name, bool check) {
            return make_view(self, self.p->index(name), check);
          },
          "name"_a, "check"_a = false)
      .def(
          "stored_bytes",
          [](nb::pointer_and_handle<File> self, std::int64_t i) {
            auto s = self.p->f.stored_bytes(self.p->index(i));
            std::size_t shape[1] = {s.size()};
            const std::byte* ptr = s.data() != nullptr ? s.data() : self.p->f.bytes().data();
            nb::ndarray<nb::numpy, const std::uint8_t, nb::ndim<1>> arr(ptr, 1, shape, self.h);
            return arr.cast();
          },
          "i"_a, "Read-only zero-copy view of the stored (possibly compressed) bytes of array i.")
      .def(
          "read_into",
          [](const File& s, std::int64_t i, out_array out, bool check) { read_into(s, s.index(i), std::move(out), check); },
          "i"_a, "out"_a.noconvert(), "check"_a = true,
          "Decode array i into `out` (a writable C-contiguous 1-D uint8 array of exactly\n"
          "decoded_length bytes), verifying its checksum unless check=False. Releases the GIL.")
      .def(
          "read_into",
          [](const File& s, const std::string& n, out_array out, bool check) {
            read_into(s, s.index(n), std::move(out), check);
          },
          "name"_a, "out"_a.noconvert(), "check"_a = true)
      .def(
          "read_strings", [](const File& s, std::int64_t i, bool check) { return read_strings(s, s.index(i), check); },
          "i"_a, "check"_a = true, "Decode a string array into a list of str (C order).")
      .def(
          "read_strings",
          [](const File& s, const std::string& n, bool check) { return read_strings(s, s.index(n), check); },
          "name"_a, "check"_a = true)
      .def(
          "verify",
          [](const File& s) {
            nb::gil_scoped_release release;
            unwrap(s.f.verify());
          },
          "Verify every array (checksums, string arrays, compressed streams, bool values).")
      .def(
          "verify_array",
          [](const File& s, std::int64_t i) {
            std::size_t k = s.index(i);
            nb::gil_scoped_release release;
            unwrap(s.f.verify_array(k));
          },
          "i"_a)
      .def(
          "verify_array",
          [](const File& s, const std::string& n) {
            std::size_t k = s.index(n);
            nb::gil_scoped_release release;
            unwrap(s.f.verify_array(k));
          },
          "name"_a)
      .def_prop_ro("metadata_json", [](const File& s) { return opt_json(s.f.metadata()); })
      .def_prop_ro("environment_json", [](const File& s) { return opt_json(s.f.environment()); })
      .def_prop_ro("provenance_json", [](const File& s) { return opt_json(s.f.provenance()); })
      .def_prop_ro("content_json", [](const File& s) { return opt_json(s.f.content()); })
      .def_prop_ro("trailers",
                   [](const File& s) {
                     nb::list out;
                     for (const auto& t : s.f.trailers())
                       out.append(nb::make_tuple(
                           nb::bytes(t.tag.data(), t.tag.size()),
                           nb::bytes(reinterpret_cast<const char*>(t.body.data()), t.body.size())));
                     return out;
                   })
      .def(
          "verify_signature",
          [](const File& s, nb::handle pubkey) {
            auto k = pubkey_arg(pubkey);
            nb::gil_scoped_release release;
            unwrap(vitrify::verify_signature(s.f, k));
          },
          "pubkey"_a,
          "Require exactly one VITSIG01 signature block made by `pubkey` (bytes: PEM or 32 raw\n"
          "bytes; str / os.PathLike: a key file) over this file's content, then verify every\n"
          "array. Raises SignatureError (signature_missing, signature_invalid, key_error) or the\n"
          "error of the first failing array check. Reads every byte of the file.")
      .def(
          "signature",
          [](const File& s) {
            auto b = unwrap(vitrify::read_signature(s.f));
            nb::dict d;
            d["algorithm"] = b.algorithm == vitrify::signature_algorithm_ed25519 ? "ed25519" : "unknown";
            d["public_key"] = key_bytes(b.key);
            d["key_id"] = b.key.hex();
            d["signature"] = nb::bytes(reinterpret_cast<const char*>(b.signature.data()), b.signature.size());
            return d;
          },
          "The signature block (algorithm, public_key, key_id, signature), NOT verified.\n"
          "SignatureError (signature_missing) for unsigned files.")
      .def("__repr__", [](const File& s) {
        return lossy_str("<vitrify.File " + s.f.name() + " v" + std::to_string(s.f.version_major()) + "." +
               std::to_string(s.f.version_minor()) + ", " + std::to_string(s.f.arrays().size()) + " arrays, " +
               std::to_string(s.f.size()) + " bytes>");
      });

  // ---- Signatures --------------------------------------------------------------------------
  m.def(
      "generate_key_files",
      [](const std::filesystem::path& private_path, const std::filesystem::path& public_path) {
        nb::gil_scoped_release release;
        auto k = unwrap(vitrify::generate_key());
        unwrap(vitrify::write_key_files(k, private_path, public_path));
        return unwrap(k.public_key()).hex();
      },
      "private_path"_a, "public_path"_a,
      "Create an Ed25519 key pair: a PEM private key (mode 0600) and a PEM public key. Never\n"
      "overwrites existing files. Returns the key id (hex of the 32-byte public key).");
  m.def(
      "sign_file",
      [](const std::filesystem::path& path, nb::handle key, bool durable) {
        auto k = privkey_arg(key);
        nb::gil_scoped_release release;
        unwrap(vitrify::sign_file(path, k, vitrify::sign_options{durable}));
      },
      "path"_a, "key"_a, "durable"_a = true,
      "Sign the file in place (atomically), replacing any previous signature. key: a PEM private\n"
      "key file path, or its PEM bytes.");
  m.def(
      "sign_bytes",
      [](nb::handle data, nb::handle key) {
        auto k = privkey_arg(key);
        byte_buffer buf(data, "sign_bytes data");
        std::vector<std::byte> out;
        {
          nb::gil_scoped_release release;
          out = unwrap(vitrify::sign_bytes(buf.bytes(), k));
        }
        return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size());
      },
      "data"_a, "key"_a, "A signed copy of a file image.");
  m.def(
      "public_key_bytes", [](nb::handle pubkey) { return key_bytes(pubkey_arg(pubkey)); }, "pubkey"_a,
      "The 32 raw bytes of a public key given as PEM bytes, 32 raw bytes or a key file path.");
  m.def(
      "public_key_pem",
      [](nb::handle pubkey) { return unwrap(vitrify::public_key_pem(pubkey_arg(pubkey))); }, "pubkey"_a,
      "The PEM text of a public key.");

  // ---- Writer ------------------------------------------------------------------------------
  m.def("native_supported_types", [] { return rt::supported_types(); });
  m.def("object_graph_names", [](const std::filesystem::path& path) {
    auto f = unwrap(vitrify::file::open(path));
    auto g = unwrap(vitrify::pyobj::decode_objects(f));
    return std::make_pair(vitrify::pyobj::referenced_names(*g->root), g->size());
  }, "path"_a, "Decode the object graph of a vitrify.dump file in C++: (type and function names, node count).");
  nb::class_<NativeModel>(m, "NativeModel", "A model built by the C++ runtime (no Python objects involved).")
      .def_static(
          "load",
          [](const std::filesystem::path& path, bool verify) {
            rt::load_options opt;
            opt.verify_arrays = verify;
            vitrify::result<rt::model> r = vitrify::fail(vitrify::errc::ok, "");
            {
              nb::gil_scoped_release nogil;
              r = rt::model::load(path, opt);
            }
            return NativeModel{unwrap(std::move(r))};
          },
          "path"_a, "verify"_a = true)
      .def_prop_ro("type_name", [](const NativeModel& s) { return std::string(s.m.type_name()); })
      .def_prop_ro("n_features", [](const NativeModel& s) { return s.m.n_features(); })
      .def_prop_ro("feature_names", [](const NativeModel& s) { return s.m.feature_names(); })
      .def_prop_ro("classes", [](const NativeModel& s) { return s.m.classes(); })
      .def_prop_ro("needs_table", [](const NativeModel& s) { return s.m.needs_table(); })
      .def("supports", [](const NativeModel& s, std::string_view meth) { return s.m.supports(method_arg(meth)); })
      .def("output_width", [](const NativeModel& s, std::string_view meth) { return s.m.output_width(method_arg(meth)); })
      .def("run", &NativeModel::run, "method"_a, "x"_a)
      .def("run_table", &NativeModel::run_table, "method"_a, "rows"_a, "columns"_a)
      .def("run_row", [](const NativeModel& s, std::string_view meth, nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu> row) {
        rt::method mm = method_arg(meth);
        std::vector<double> out(s.m.output_width(mm));
        unwrap(s.m.run_row(mm, std::span<const double>(row.data(), row.shape(0)), out));
        return out;
      }, "method"_a, "row"_a);

  nb::class_<Writer>(m, "Writer", "Streams arrays into a new vitrify file (atomic: temp file + rename).")
      .def_static(
          "create",
          [](const std::filesystem::path& path, std::uint32_t alignment, bool durable) {
            vitrify::writer_options o;
            o.alignment = alignment;
            o.durable = durable;
            auto* w = new Writer();
            try {
              nb::gil_scoped_release release;
              w->w.emplace(unwrap(vitrify::writer::create(path, o)));
            } catch (...) {
              delete w;
              throw;
            }
            return w;
          },
          "path"_a, "alignment"_a = 64, "durable"_a = true, nb::rv_policy::take_ownership)
      .def_static(
          "create_in_memory",
          [](std::uint32_t alignment) {
            vitrify::writer_options o;
            o.alignment = alignment;
            o.durable = false;
            auto* w = new Writer();
            try {
              w->w.emplace(unwrap(vitrify::writer::create_in_memory(o)));
            } catch (...) {
              delete w;
              throw;
            }
            w->in_memory = true;
            return w;
          },
          "alignment"_a = 64, nb::rv_policy::take_ownership)
      .def(
          "add_array",
          [](Writer& s, const std::string& name, std::string_view dtype, std::vector<std::uint64_t> shape,
             nb::handle data, std::string_view codec, int level, std::optional<std::string> attrs_json) {
            auto t = dtype_arg(dtype);
            if (t == vitrify::dtype::string)
              raise(vitrify::errc::invalid_argument, "add_array('" + name + "'): use add_string_array for strings");
            auto how = codec_arg(codec, level);
            auto attrs = value_arg(attrs_json, "add_array attrs");
            byte_buffer buf(data, "add_array data");
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            auto& w = s.get("add_array");
            unwrap(w.add_array(name, t, shape, buf.bytes(), how, std::move(attrs)));
          },
          "name"_a, "dtype"_a, "shape"_a, "data"_a, "codec"_a = "raw", "level"_a = 3, "attrs_json"_a = nb::none(),
          "Append a fixed-size array. data: any C-contiguous buffer holding exactly\n"
          "dtype_size * prod(shape) bytes, little-endian, C order.")
      .def(
          "add_bytes",
          [](Writer& s, const std::string& name, nb::list pieces, std::string_view codec, int level) {
            // pieces: buffers, and ints for runs of zero bytes (padding, at most 4096 each).
            static const std::byte zeros[4096] = {};
            auto how = codec_arg(codec, level);
            std::vector<std::unique_ptr<byte_buffer>> held;
            std::vector<std::span<const std::byte>> spans;
            held.reserve(pieces.size());
            spans.reserve(pieces.size());
            for (nb::handle p : pieces) {
              if (PyLong_Check(p.ptr())) {
                const long long n = PyLong_AsLongLong(p.ptr());
                if (n < 0 || n > 4096) raise(vitrify::errc::invalid_argument, "add_bytes: padding must be 0 to 4096 bytes");
                spans.emplace_back(zeros, static_cast<std::size_t>(n));
              } else {
                held.push_back(std::make_unique<byte_buffer>(p, "add_bytes piece"));
                spans.push_back(held.back()->bytes());
              }
            }
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            auto& w = s.get("add_bytes");
            unwrap(w.add_bytes(name, spans, how));
          },
          "name"_a, "pieces"_a, "codec"_a = "raw", "level"_a = 3,
          "Append a 1-D uint8 array made of the concatenated pieces (C-contiguous buffers, or\n"
          "ints for that many zero bytes), written without joining them first.")
      .def(
          "add_string_array",
          [](Writer& s, const std::string& name, std::vector<std::uint64_t> shape, nb::handle offsets,
             nb::handle text, std::string_view codec, int level, std::optional<std::string> attrs_json) {
            auto how = codec_arg(codec, level);
            auto attrs = value_arg(attrs_json, "add_string_array attrs");
            byte_buffer obuf(offsets, "add_string_array offsets");
            byte_buffer tbuf(text, "add_string_array text");
            auto ob = obuf.bytes();
            if (ob.size() % sizeof(std::uint64_t) != 0)
              raise(vitrify::errc::invalid_argument,
                    "add_string_array('" + name + "'): offsets must be a buffer of uint64 values");
            // Copy the offsets: the buffer need not be 8-byte aligned.
            std::vector<std::uint64_t> offs(ob.size() / sizeof(std::uint64_t));
            if (!ob.empty()) std::memcpy(offs.data(), ob.data(), ob.size());
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            auto& w = s.get("add_string_array");
            unwrap(w.add_string_array(name, shape, std::span<const std::uint64_t>(offs), tbuf.bytes(), how,
                                      std::move(attrs)));
          },
          "name"_a, "shape"_a, "offsets"_a, "text"_a, "codec"_a = "raw", "level"_a = 3, "attrs_json"_a = nb::none(),
          "Append a string array: offsets (count+1 uint64, offsets[0]==0, non-decreasing,\n"
          "last == len(text)) and the concatenated UTF-8 text.")
      .def(
          "add_strings",
          [](Writer& s, const std::string& name, std::vector<std::uint64_t> shape, std::vector<std::string> strings,
             std::string_view codec, int level, std::optional<std::string> attrs_json) {
            auto how = codec_arg(codec, level);
            auto attrs = value_arg(attrs_json, "add_strings attrs");
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            auto& w = s.get("add_strings");
            unwrap(w.add_string_array(name, shape, std::span<const std::string>(strings), how, std::move(attrs)));
          },
          "name"_a, "shape"_a, "strings"_a, "codec"_a = "raw", "level"_a = 3, "attrs_json"_a = nb::none(),
          "Append a string array from a list of str.")
      .def(
          "set_metadata",
          [](Writer& s, const std::string& json) {
            auto v = value_arg(json, "metadata");
            std::lock_guard lock(s.mu);
            s.get("set_metadata").set_metadata(std::move(v));
          },
          "json"_a)
      .def(
          "set_environment",
          [](Writer& s, const std::string& json) {
            auto v = value_arg(json, "environment");
            std::lock_guard lock(s.mu);
            s.get("set_environment").set_environment(std::move(v));
          },
          "json"_a)
      .def(
          "set_provenance",
          [](Writer& s, const std::string& json) {
            auto v = value_arg(json, "provenance");
            std::lock_guard lock(s.mu);
            s.get("set_provenance").set_provenance(std::move(v));
          },
          "json"_a)
      .def(
          "set_content",
          [](Writer& s, const std::string& json) {
            auto v = value_arg(json, "content");
            std::lock_guard lock(s.mu);
            s.get("set_content").set_content(std::move(v));
          },
          "json"_a)
      .def_prop_ro("array_count",
                   [](Writer& s) {
                     std::lock_guard lock(s.mu);
                     return s.w ? s.w->array_count() : std::size_t{0};
                   })
      .def_prop_ro("committed", [](const Writer& s) { return s.committed; })
      .def_prop_ro("closed", [](const Writer& s) { return !s.w.has_value(); })
      .def(
          "commit",
          [](Writer& s) {
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            auto& w = s.get("commit");
            auto r = w.commit();
            if (!r.ok()) {
              if (!s.in_memory) s.w.reset();  // removes the temporary file
              raise(std::move(r).err());
            }
            s.committed = true;
            if (!s.in_memory) s.w.reset();
          },
          "Write header and preamble; for files fsync (if durable) and rename into place.")
      .def(
          "take_bytes",
          [](Writer& s) {
            std::vector<std::byte> v;
            {
              std::lock_guard lock(s.mu);
              if (!s.in_memory) raise(vitrify::errc::invalid_argument, "Writer.take_bytes(): not an in-memory writer");
              if (!s.committed) raise(vitrify::errc::invalid_argument, "Writer.take_bytes(): commit() first");
              v = s.get("take_bytes").take_bytes();
              s.w.reset();
            }
            return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size());
          },
          "The committed in-memory file image (once; the writer is closed afterwards).")
      .def(
          "abort",
          [](Writer& s) {
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            s.w.reset();  // an uncommitted file writer removes its temporary file
          },
          "Discard the writer (removes the temporary file if not committed).")
      .def("close",
           [](Writer& s) {
             nb::gil_scoped_release release;
             std::lock_guard lock(s.mu);
             s.w.reset();
           })
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def(
          "__exit__",
          [](Writer& s, nb::handle exc_type, nb::handle, nb::handle) {
            const bool failed = !exc_type.is_none();
            nb::gil_scoped_release release;
            std::lock_guard lock(s.mu);
            // Uncommitted (or failed) writers are discarded; a committed in-memory writer keeps
            // its bytes for take_bytes().
            if (failed || !s.committed) s.w.reset();
            return false;
          },
          "exc_type"_a.none(), "exc"_a.none(), "tb"_a.none(),
          "Leaving the block without commit() discards the file.");
}
