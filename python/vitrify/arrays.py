"""Save and load dicts of numpy arrays as vitrify files."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, Union

import numpy as np

from . import _core
from . import values as _values
from .errors import ArgumentError, FormatError

__all__ = [
    "save_arrays",
    "load_arrays",
    "save_arrays_to_bytes",
    "load_arrays_from_bytes",
    "inspect",
    "dtype_to_numpy",
    "numpy_to_dtype",
]

PathLike = Union[str, "os.PathLike[str]"]

#: zstd level used when compression is requested without a level.
DEFAULT_ZSTD_LEVEL = 3

_FIXED = {
    ("b", 1): "bool",
    ("i", 1): "int8",
    ("i", 2): "int16",
    ("i", 4): "int32",
    ("i", 8): "int64",
    ("u", 1): "uint8",
    ("u", 2): "uint16",
    ("u", 4): "uint32",
    ("u", 8): "uint64",
    ("f", 2): "float16",
    ("f", 4): "float32",
    ("f", 8): "float64",
    ("c", 8): "complex64",
    ("c", 16): "complex128",
}


#: vitrify dtypes whose numpy dtype comes from ml_dtypes (same names there).
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


@functools.cache
def _ml_dtype(name: str) -> np.dtype:
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name))


def _bfloat16() -> np.dtype:
    return _ml_dtype("bfloat16")


@functools.cache
def dtype_to_numpy(name: str) -> np.dtype:
    """The numpy dtype (little-endian) of a vitrify dtype name; ``string`` has none."""
    if name in _ML_DTYPES:
        return _ml_dtype(name)
    if name == "bool":
        return np.dtype(np.bool_)
    for (kind, size), n in _FIXED.items():
        if n == name:
            return np.dtype(f"<{kind}{size}")
    raise ArgumentError(f"vitrify dtype {name!r} has no fixed-size numpy equivalent")


def numpy_to_dtype(dt: np.dtype) -> str | None:
    """The vitrify dtype name for a numpy dtype, or None if it has no fixed-size equivalent."""
    dt = np.dtype(dt)
    name = _FIXED.get((dt.kind, dt.itemsize))
    if name is not None and dt.fields is None and dt.subdtype is None:
        return name
    # ml_dtypes types (kind "V", or "f" for some float8 types in recent releases): by name,
    # then checked to be that very type.
    if dt.name in _ML_DTYPES and dt.fields is None and dt == _ml_dtype(dt.name):
        return dt.name
    return None


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------

_RAW = ("raw", 0)


def _codec_spec(spec: Any, where: str) -> tuple[str, int]:
    if spec is None or spec is False:
        return _RAW
    if spec is True:
        return ("zstd", DEFAULT_ZSTD_LEVEL)
    if isinstance(spec, str):
        if spec == "raw":
            return _RAW
        if spec == "zstd":
            return ("zstd", DEFAULT_ZSTD_LEVEL)
        raise ArgumentError(f"{where}: unknown codec {spec!r} (expected 'raw' or 'zstd')")
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
        return ("zstd", int(spec))
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        codec, level = spec
        if codec not in ("raw", "zstd"):
            raise ArgumentError(f"{where}: unknown codec {codec!r} (expected 'raw' or 'zstd')")
        if level is None:
            level = DEFAULT_ZSTD_LEVEL if codec == "zstd" else 0
        if not isinstance(level, (int, np.integer)) or isinstance(level, (bool, np.bool_)):
            raise ArgumentError(f"{where}: compression level must be an int, got {level!r}")
        return (codec, int(level)) if codec == "zstd" else _RAW
    raise ArgumentError(
        f"{where}: invalid compression spec {spec!r} (None, 'zstd', 'raw', an int level, "
        "a (codec, level) tuple, or a dict of these per array name)")


def _codec_resolver(compress: Any, names: list[str]):
    if isinstance(compress, Mapping):
        known = set(names)
        unknown = [k for k in compress if k not in known]
        if unknown:
            raise ArgumentError(f"compress: names not among the arrays being saved: {unknown!r}")
        per = {k: _codec_spec(v, f"compress[{k!r}]") for k, v in compress.items()}
        return lambda name: per.get(name, _RAW)
    spec = _codec_spec(compress, "compress")
    return lambda name: spec


def _is_str_object_array(a: np.ndarray) -> bool:
    return all(isinstance(x, str) for x in a.flat)


def _add_one(w: "_core.Writer", name: Any, value: Any, codec: tuple[str, int]) -> None:
    if not isinstance(name, str):
        raise ArgumentError(f"array names must be str, got {type(name).__qualname__} ({name!r})")
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists etc.
        raise ArgumentError(f"array {name!r}: cannot convert to a numpy array: {e}") from None
    dt = a.dtype
    shape = tuple(int(s) for s in a.shape)
    cname, level = codec

    if dt.kind in ("U", "O"):
        if dt.kind == "O":
            if not _is_str_object_array(a):
                bad = next(type(x).__qualname__ for x in a.flat if not isinstance(x, str))
                raise ArgumentError(
                    f"array {name!r}: object arrays may only contain str (found {bad})")
            hint = "object"
        else:
            hint = f"<U{dt.itemsize // 4}"
        _add_strings(w, name, a, shape, cname, level, hint)
        return

    vname = numpy_to_dtype(dt)
    if vname is None:
        raise ArgumentError(f"array {name!r}: dtype {dt!r} cannot be stored (supported: bool, "
                            "int8..int64, uint8..uint64, float16/32/64, bfloat16, float8_e4m3fn, "
                            "float8_e5m2, complex64/128, str)")
    if vname not in _ML_DTYPES and dt.byteorder not in ("<", "|") and not (
            dt.byteorder == "=" and np.little_endian):
        a = a.astype(dt.newbyteorder("<"))
    if not a.flags.c_contiguous:
        a = np.array(a, order="C", copy=True)
    data = a.reshape(-1).view(np.uint8)
    w.add_array(name, vname, shape, data, cname, level, None)


def _add_strings(w, name: str, a: np.ndarray, shape: tuple, codec: str, level: int, hint: str) -> None:
    items = a.ravel(order="C").tolist()
    try:
        encoded = [s.encode("utf-8") for s in items]
    except UnicodeEncodeError as e:
        raise ArgumentError(f"array {name!r}: string is not valid Unicode: {e}") from None
    offsets = np.zeros(len(encoded) + 1, dtype="<u8")
    if encoded:
        np.cumsum(np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded)), out=offsets[1:])
    text = b"".join(encoded)
    attrs = _values.encode({"numpy_dtype": hint})
    w.add_string_array(name, shape, offsets, text, codec, level, attrs)


def _write(w, arrays: Mapping[str, Any], metadata: Any, compress: Any) -> None:
    if not isinstance(arrays, Mapping):
        raise ArgumentError(f"arrays must be a mapping of name -> array, got {type(arrays).__qualname__}")
    names = list(arrays.keys())
    codec_for = _codec_resolver(compress, names)
    for name in names:
        _add_one(w, name, arrays[name], codec_for(name))
    if metadata is not None:
        w.set_metadata(_values.encode(metadata, where="metadata"))


def save_arrays(path: PathLike, arrays: Mapping[str, Any], metadata: Any = None, compress: Any = None,
                alignment: int = 64, *, durable: bool = True) -> None:
    """Write ``arrays`` (name -> numpy array) to a vitrify file at ``path``, atomically.

    compress: None (raw, memory-mappable), ``"zstd"``, an int (zstd level), a
    ``(codec, level)`` tuple, or a dict ``{name: spec}`` (arrays not named stay raw).
    metadata: any value of the typed-value model (see :mod:`vitrify.values`).
    durable: fsync file and folder (turn off only for scratch files).
    """
    w = _core.Writer.create(os.fspath(path), int(alignment), bool(durable))
    try:
        _write(w, arrays, metadata, compress)
        w.commit()
    finally:
        w.close()


def save_arrays_to_bytes(arrays: Mapping[str, Any], metadata: Any = None, compress: Any = None,
                         alignment: int = 64) -> bytes:
    """Like :func:`save_arrays`, returning the file image as bytes."""
    w = _core.Writer.create_in_memory(int(alignment))
    try:
        _write(w, arrays, metadata, compress)
        w.commit()
        return w.take_bytes()
    finally:
        w.close()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _attrs(info: dict) -> Any:
    text = info.get("attrs")
    return None if text is None else _values.decode(text)


def _strings_to_numpy(strings: list, shape: tuple, attrs: Any) -> np.ndarray:
    hint = attrs.get("numpy_dtype") if isinstance(attrs, dict) else None
    if hint == "object":
        out = np.empty(len(strings), dtype=object)
        out[:] = strings
        return out.reshape(shape)
    arr = np.array(strings, dtype=np.str_)
    if len(strings) == 0:
        arr = np.empty(0, dtype="<U1")
    if isinstance(hint, str):
        try:
            want = np.dtype(hint)
        except TypeError:
            want = None
        # Never truncate: only widen to the recorded width.
        if want is not None and want.kind == "U" and want.itemsize >= arr.dtype.itemsize:
            arr = arr.astype(want)
    return arr.reshape(shape)


def _load_array(f: "_core.File", i: int, info: dict, zero_copy: bool, verify: bool) -> np.ndarray:
    shape = tuple(info["shape"])
    dtname = info["dtype"]
    if dtname == "string":
        return _strings_to_numpy(f.read_strings(i, True), shape, _attrs(info))
    dt = dtype_to_numpy(dtname)
    if zero_copy and info["codec"] == "raw":
        if verify:
            f.verify_array(i)  # checksum, and for bool arrays that every byte is 0 or 1
        return f.view(i).view(dt).reshape(shape)
    out = np.empty(shape, dtype=dt)
    raw = out.reshape(-1).view(np.uint8)
    f.read_into(i, raw, True)
    if dtname == "bool" and raw.size and int(raw.max()) > 1:
        bad = int(np.argmax(raw > 1))
        raise FormatError(f"{f.name}: bool array {info['name']!r} holds a byte other than 0 or 1 "
                          f"at element {bad}", code_name="bad_array")
    return out


def _load_all(f: "_core.File", zero_copy: bool, verify: bool) -> dict[str, np.ndarray]:
    return {info["name"]: _load_array(f, i, info, zero_copy, verify)
            for i, info in enumerate(f.arrays)}


def load_arrays(path: PathLike, mmap: bool = True, copy_on_write: bool = False, *,
                verify: bool = False, require_signature: Any = None) -> dict[str, np.ndarray]:
    """Load every array of a vitrify file into a dict name -> numpy array.

    With ``mmap`` (default), raw arrays are zero-copy views of the memory-mapped file: read-only
    unless ``copy_on_write`` (writes then stay private to this process; the file never changes).
    The mapping stays alive as long as any returned array does. Compressed and string arrays are
    decoded into fresh arrays. With ``mmap=False`` every array is read into fresh memory.

    Structure is always verified when the file is opened. Array checksums (and for bool arrays,
    that every byte is 0 or 1) are verified whenever bytes are copied or decoded; for zero-copy
    views only with ``verify=True`` (which reads every byte of the file once).

    With ``require_signature=PUBKEY`` (a key file path, PEM text or the 32 raw key bytes) the file
    must carry a valid signature by that key (:mod:`vitrify.signing`), checked together with every
    array checksum before any array is returned; otherwise :class:`SignatureError` is raised.
    """
    f = _core.File.open(os.fspath(path), bool(copy_on_write and mmap))
    if require_signature is not None:
        from .signing import require_signature as _require_signature

        _require_signature(f, require_signature)
    return _load_all(f, bool(mmap), bool(verify))


def load_arrays_from_bytes(data: Any, *, copy: bool = False, verify: bool = False,
                           require_signature: Any = None) -> dict[str, np.ndarray]:
    """Load arrays from a vitrify file image (bytes-like).

    The image is verified and copied once into a private aligned buffer; raw arrays are
    writable views of that private copy (they never alias ``data``). With ``copy=True`` every
    array gets its own memory instead. ``require_signature`` as in :func:`load_arrays`.
    """
    f = _core.File.from_bytes(data, True)
    if require_signature is not None:
        from .signing import require_signature as _require_signature

        _require_signature(f, require_signature)
    return _load_all(f, not copy, bool(verify))


def _info_out(info: dict) -> dict:
    out = dict(info)
    out["attrs"] = _attrs(info)
    return out


def inspect(path: Any) -> dict:
    """Describe a vitrify file: version, alignment, size, array table and decoded header sections.

    ``path`` may also be a bytes-like file image.
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        f = _core.File.from_bytes(path)
    else:
        f = _core.File.open(os.fspath(path))
    return {
        "path": f.name,
        "version": tuple(f.version),
        "alignment": f.alignment,
        "size": f.size,
        "content_length": f.content_length,
        "required_features": list(f.required_features),
        "arrays": [_info_out(info) for info in f.arrays],
        "metadata": _values.decode(f.metadata_json),
        "environment": _values.decode(f.environment_json),
        "provenance": _values.decode(f.provenance_json),
        "content": _values.decode(f.content_json),
        "trailers": [tag for tag, _ in f.trailers],
    }
