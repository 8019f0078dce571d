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

// One per area, each in its own file (bind_<area>.cpp), called from NB_MODULE in binding.cpp.
void bind_legacy(nb::module_& m);   // bind_legacy.cpp: scan, non-executing pickle reader
void bind_tensors(nb::module_& m);  // bind_tensors.cpp: tensors, safetensors / torch import
void bind_convert(nb::module_& m);
void bind_objects(nb::module_& m);  // bind_objects.cpp: vitrify.load's object decoder (lead)  // bind_convert.cpp: legacy model -> vitrify file
void bind_encode(nb::module_& m);   // bind_encode.cpp: vitrify.dump's object walker

}  // namespace vitrify_py
