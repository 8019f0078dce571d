// Shared by the binding's translation units: errors as Python exceptions.
#pragma once

#include <nanobind/nanobind.h>

#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>
#include <utility>

#include "vitrify/error.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/writer.hpp"

namespace vitrify_py {

namespace nb = nanobind;

// Thrown by unwrap()/raise(); binding.cpp translates it into the class chosen by its code
// (python/vitrify/errors.py).
struct py_error : std::exception {
  vitrify::error err;
  std::string text;
  explicit py_error(vitrify::error e) : err(std::move(e)), text(err.what()) {}
  const char* what() const noexcept override { return text.c_str(); }
};

[[noreturn]] inline void raise(vitrify::error e) { throw py_error(std::move(e)); }
[[noreturn]] inline void raise(vitrify::errc code, std::string msg) { raise(vitrify::error{code, std::move(msg)}); }

template <class T>
T unwrap(vitrify::result<T>&& r) {
  if (!r.ok()) raise(std::move(r).err());
  return std::move(r).value();
}
inline void unwrap(vitrify::result<void>&& r) {
  if (!r.ok()) raise(std::move(r).err());
}

// The state behind vitrify._core.Writer (binding.cpp); bind_encode.cpp writes into it too.
struct Writer {
  std::optional<vitrify::writer> w;
  bool committed = false;
  bool in_memory = false;
  std::mutex mu;  // serialises calls made with the GIL released

  vitrify::writer& get(const char* op) {
    if (!w) raise(vitrify::errc::invalid_argument, std::string("Writer.") + op + "(): the writer is closed");
    if (committed && std::string_view(op) != "take_bytes")
      raise(vitrify::errc::invalid_argument, std::string("Writer.") + op + "(): the writer is already committed");
    return *w;
  }
};

// The state behind vitrify._core.File (binding.cpp); bind_objects.cpp decodes from it.
struct File {
  vitrify::file f;
  bool writable = false;  // views may be written (copy-on-write map or private heap copy)

  std::size_t index(std::int64_t i) const {
    auto n = static_cast<std::int64_t>(f.arrays().size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) throw nb::index_error(("array index out of range (file has " + std::to_string(n) + " arrays)").c_str());
    return static_cast<std::size_t>(i);
  }
  std::size_t index(const std::string& name) const { return unwrap(f.find(name)); }
};

// One per area, each in its own file (bind_<area>.cpp), called from NB_MODULE in binding.cpp.
void bind_legacy(nb::module_& m);   // bind_legacy.cpp: scan, non-executing pickle reader
void bind_tensors(nb::module_& m);  // bind_tensors.cpp: tensors, safetensors / torch import
void bind_convert(nb::module_& m);  // bind_convert.cpp: legacy model -> vitrify file
void bind_objects(nb::module_& m);  // bind_objects.cpp: vitrify.load's builder of Python objects from the object graph
void bind_encode(nb::module_& m);   // bind_encode.cpp: vitrify.dump's object walker

}  // namespace vitrify_py
