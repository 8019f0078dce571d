"""Dicts of framework tensors (PyTorch ``state_dict``\\ s, numpy arrays) as vitrify files, and
safetensors / ``torch.save`` import and export. See docs/TENSORS.md.

A *tensors file* is an ordinary vitrify file: one raw (memory-mappable) array per distinct
tensor, named after it, and a ``content`` section ``{"kind": "vitrify.tensors", "version": 1,
"source": ..., "aliases": {name: {"$array": stored_name}}}`` recording tied tensors (several names
for the same memory) once. PyTorch is optional: it is imported only when a torch tensor is
saved or ``framework="torch"`` is asked for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from . import _core
from . import values as _values
from .arrays import _codec_resolver, _codec_spec, _load_array, numpy_to_dtype, dtype_to_numpy
from .errors import ArgumentError, FormatError, VersionError

__all__ = [
    "save_tensors",
    "load_tensors",
    "import_safetensors",
    "export_safetensors",
    "import_torch",
    "import_tensors",
    "CONTENT_KIND",
]

PathLike = Union[str, "os.PathLike[str]"]

#: ``content["kind"]`` of a tensors file.
CONTENT_KIND = "vitrify.tensors"
#: ``content["version"]`` written; files up to this version are read.
CONTENT_VERSION = 1

_ML_NAMES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


# --------------------------------------------------------------------------------------------
# torch <-> numpy, zero-copy
# --------------------------------------------------------------------------------------------

def _torch_module():
    """torch if it has been imported already (a torch tensor cannot exist otherwise)."""
    return sys.modules.get("torch")


def _is_torch_tensor(x: Any) -> bool:
    torch = _torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_same_size_int(torch, itemsize: int):
    return {1: torch.uint8, 2: torch.int16}[itemsize]


def _torch_to_numpy(name: str, t: Any) -> np.ndarray:
    """A C-contiguous numpy array with the bytes of tensor ``t`` (zero-copy for contiguous CPU
    tensors; ml_dtypes dtypes for bfloat16 and float8)."""
    torch = _torch_module()
    if t.layout != torch.strided:
        raise ArgumentError(f"tensor {name!r}: {t.layout} tensors cannot be stored (convert to dense first)")
    if t.is_quantized:
        raise ArgumentError(f"tensor {name!r}: quantized tensors cannot be stored (dtype {t.dtype})")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    ml = str(t.dtype).removeprefix("torch.")
    if ml in _ML_NAMES:
        # numpy has no bfloat16/float8: view the same bytes as an integer type of the same size,
        # then reinterpret them with the ml_dtypes type (no copy, no rounding).
        raw = t.view(_torch_same_size_int(torch, t.element_size())).numpy()
        return raw.view(dtype_to_numpy(ml))
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as e:
        raise ArgumentError(f"tensor {name!r}: dtype {t.dtype} cannot be stored: {e}") from None


def _tie_key(x: Any) -> Any:
    """Identity of a tensor's memory and interpretation: equal keys mean the same values in the
    same memory (tied weights). None for empty tensors (nothing to share)."""
    if _is_torch_tensor(x):
        if x.numel() == 0 or x.layout != _torch_module().strided:
            return None
        return ("torch", x.device.type, x.untyped_storage().data_ptr(), x.storage_offset(),
                tuple(x.shape), tuple(x.stride()), str(x.dtype))
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return None
        return ("numpy", x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str, x.dtype.name)
    return None


def _to_numpy(name: str, x: Any) -> np.ndarray:
    if _is_torch_tensor(x):
        return _torch_to_numpy(name, x)
    try:
        a = np.asarray(x)
    except Exception as e:
        raise ArgumentError(f"tensor {name!r}: cannot convert {type(x).__qualname__} to an array: {e}") from None
    return a


def _numpy_to_torch(a: np.ndarray):
    import torch

    name = a.dtype.name if a.dtype.name in _ML_NAMES and numpy_to_dtype(a.dtype) == a.dtype.name else None
    if name is not None:
        raw = a.view(np.uint8 if a.dtype.itemsize == 1 else np.int16)
        return torch.from_numpy(raw).view(getattr(torch, name))
    return torch.from_numpy(a)


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------

def _content_text(source: str, aliases: dict[str, str]) -> str:
    content: dict[str, Any] = {"kind": CONTENT_KIND, "version": CONTENT_VERSION, "source": source}
    if aliases:
        content["aliases"] = {k: _values.ArrayRef(v) for k, v in aliases.items()}
    return _values.encode(content, where="content")


def save_tensors(path: PathLike, tensors: Mapping[str, Any], metadata: Any = None, compress: Any = None, *,
                 alignment: int = 64, durable: bool = True) -> None:
    """Save a dict of tensors (numpy arrays and/or torch tensors, e.g. ``model.state_dict()``)
    to a vitrify file at ``path``, atomically.

    Every dtype numpy, torch and safetensors share is kept exactly: bool, int8..int64,
    uint8..uint64, float16, bfloat16, float32, float64, complex64/128, float8_e4m3fn and
    float8_e5m2 (the last three need ``ml_dtypes`` for numpy). Torch tensors are moved to the CPU
    and made contiguous; no value is converted. Tied tensors (several names for the same memory:
    same storage, offset, shape, strides and dtype) are stored once and recorded as aliases, so
    ``load_tensors`` gives them back as one shared tensor; other overlapping views are stored as
    independent copies.

    ``metadata``: any typed value (:mod:`vitrify.values`); a dict of strings can be exported to
    safetensors as ``__metadata__``. ``compress``: as in :func:`vitrify.save_arrays` (default
    raw: memory-mappable, zero-copy loads).
    """
    if not isinstance(tensors, Mapping):
        raise ArgumentError(f"tensors must be a mapping of name -> tensor, got {type(tensors).__qualname__}")
    names = list(tensors.keys())
    for n in names:
        if not isinstance(n, str):
            raise ArgumentError(f"tensor names must be str, got {type(n).__qualname__} ({n!r})")
    stored: list[str] = []
    aliases: dict[str, str] = {}
    first_of: dict[Any, str] = {}
    sources = set()
    for n in names:
        x = tensors[n]
        sources.add("torch" if _is_torch_tensor(x) else "numpy")
        key = _tie_key(x)
        if key is not None and key in first_of:
            aliases[n] = first_of[key]
            continue
        if key is not None:
            first_of[key] = n
        stored.append(n)
    codec_for = _codec_resolver(compress, names)
    for alias in aliases:
        if codec_for(alias) != codec_for(aliases[alias]):
            raise ArgumentError(f"compress: {alias!r} is tied to {aliases[alias]!r} (same memory) and must use "
                                "the same compression")
    w = _core.Writer.create(os.fspath(path), int(alignment), bool(durable))
    try:
        for n in stored:
            a = _to_numpy(n, tensors[n])
            vname = numpy_to_dtype(a.dtype)
            if vname is None:
                raise ArgumentError(f"tensor {n!r}: dtype {a.dtype!r} is not a tensor dtype vitrify can store "
                                    "(bool, int8..int64, uint8..uint64, float16/32/64, bfloat16, float8_e4m3fn, "
                                    "float8_e5m2, complex64/128)")
            if vname not in _ML_NAMES and a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            if not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            cname, level = codec_for(n)
            w.add_array(n, vname, tuple(int(s) for s in a.shape), a.reshape(-1).view(np.uint8), cname, level, None)
        source = sources.pop() if len(sources) == 1 else ("mixed" if sources else "numpy")
        w.set_content(_content_text(source, aliases))
        if metadata is not None:
            w.set_metadata(_values.encode(metadata, where="metadata"))
        w.commit()
    finally:
        w.close()


def _aliases(f: Any) -> dict[str, str]:
    text = f.content_json
    if not text or text == "null":
        return {}  # a plain dict of arrays (vitrify.save_arrays)
    c = _values.decode(text)
    kind = c.get("kind") if isinstance(c, dict) else None
    if kind != CONTENT_KIND:
        raise FormatError(f"{f.name}: the file does not hold a dict of tensors (content kind {kind!r}; "
                          "use vitrify.load for models)", code_name="bad_value")
    version = c.get("version")
    if type(version) is not int or version < 1:
        raise FormatError(f"{f.name}: tensors content has no valid version", code_name="bad_value")
    if version > CONTENT_VERSION:
        raise VersionError(f"{f.name}: tensors content version {version} is newer than this vitrify reads "
                           f"({CONTENT_VERSION})", code_name="unsupported_feature")
    raw = c.get("aliases") or {}
    if not isinstance(raw, dict):
        raise FormatError(f"{f.name}: tensors content 'aliases' is not a dict", code_name="bad_value")
    out: dict[str, str] = {}
    names = set(f.names())
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, _values.ArrayRef):
            raise FormatError(f"{f.name}: an alias must map a name to {{'$array': name}}", code_name="bad_value")
        if k in names or k in out:
            raise FormatError(f"{f.name}: alias {k!r} repeats the name of another tensor", code_name="bad_value")
        out[k] = v.name
    return out


def load_tensors(path: PathLike, framework: str = "numpy", mmap: bool = True, *, copy_on_write: bool = False,
                 verify: bool = False, require_signature: Any = None) -> dict[str, Any]:
    """Load the tensors of a vitrify file as a dict name -> numpy array (``framework="numpy"``)
    or torch tensor (``framework="torch"``), so that
    ``model.load_state_dict(vitrify.load_tensors(p, framework="torch"))`` works.

    With ``mmap`` (default) raw arrays are zero-copy views of the memory-mapped file. numpy
    arrays are read-only unless ``copy_on_write``; torch tensors always come from a private
    copy-on-write mapping (writable; writes never reach the file), via ``torch.from_numpy`` on
    the mapped memory, so no tensor byte is copied either way. bfloat16 and float8 tensors get
    their torch dtypes (a zero-copy ``Tensor.view``). Tied tensors come back as one object under
    each of their names. Compressed arrays are decoded into fresh memory; ``mmap=False`` copies
    everything.

    ``verify``/``require_signature`` as in :func:`vitrify.load_arrays`. A file with no content
    section (written by :func:`vitrify.save_arrays`) loads as a plain dict of arrays.
    """
    if framework not in ("numpy", "torch"):
        raise ArgumentError(f"framework must be 'numpy' or 'torch', got {framework!r}")
    if framework == "torch":
        import torch  # noqa: F401  (fail early, before mapping anything)

        copy_on_write = True
    f = _core.File.open(os.fspath(path), bool(copy_on_write and mmap))
    if require_signature is not None:
        from .signing import require_signature as _require_signature

        _require_signature(f, require_signature)
    aliases = _aliases(f)
    out: dict[str, Any] = {}
    for i, info in enumerate(f.arrays):
        if info["dtype"] == "string":
            raise FormatError(f"{f.name}: array {info['name']!r} holds strings, not a tensor",
                              code_name="unknown_dtype")
        a = _load_array(f, i, info, bool(mmap), bool(verify))
        out[info["name"]] = _numpy_to_torch(a) if framework == "torch" else a
    for alias, target in aliases.items():
        out[alias] = out[target]
    return out


# --------------------------------------------------------------------------------------------
# Conversions (C++: no PyTorch needed, nothing executed)
# --------------------------------------------------------------------------------------------

def _codec(compress: Any) -> tuple[str, int]:
    return _codec_spec(compress, "compress")


def import_safetensors(src: PathLike, dst: PathLike, *, compress: Any = None, durable: bool = True) -> dict:
    """Convert a safetensors file into a vitrify tensors file. The header is fully verified
    (bounded length, strict JSON, dtypes, offsets tiling the data exactly); tensor bytes are
    copied byte for byte from the memory-mapped input; ``__metadata__`` becomes the file's
    metadata (a dict of strings). Returns a report dict."""
    codec, level = _codec(compress)
    return _core.import_safetensors(os.fspath(src), os.fspath(dst), codec, level, bool(durable))


def export_safetensors(src: PathLike, dst: PathLike, *, durable: bool = True) -> dict:
    """Write the tensors of a vitrify file as a safetensors file (atomically), byte for byte,
    laid out as the safetensors library lays it out. The metadata must be None or a dict of
    strings (it becomes ``__metadata__``); tied tensors are written under each name."""
    return _core.export_safetensors(os.fspath(src), os.fspath(dst), bool(durable))


def import_torch(src: PathLike, dst: PathLike, *, compress: Any = None, durable: bool = True) -> dict:
    """Convert a PyTorch ``state_dict`` saved with ``torch.save`` into a vitrify tensors file,
    without PyTorch and without executing the pickle (vitrify's own non-executing reader).
    Anything but a (nested) dict of tensors is refused (:class:`vitrify.UnsupportedModelError`)."""
    codec, level = _codec(compress)
    return _core.import_torch(os.fspath(src), os.fspath(dst), codec, level, bool(durable))


def import_tensors(src: PathLike, dst: PathLike, *, compress: Any = None, durable: bool = True) -> dict:
    """:func:`import_safetensors` or :func:`import_torch`, chosen by the input's bytes."""
    codec, level = _codec(compress)
    return _core.import_tensors(os.fspath(src), os.fspath(dst), codec, level, bool(durable))
