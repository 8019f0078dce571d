"""Typed values: Python objects <-> the JSON encoding of the vitrify header.

The encoding (docs/FORMAT.md, "Typed values") distinguishes integers from floats, keeps
NaN/infinities, integers of any size, bytes, tuples and dicts with arbitrary keys:

=====================  =============================================
Python                 JSON
=====================  =============================================
None, True, False      null, true, false
int (int64 range)      number without '.'/'e'
int (outside int64)    {"$int": "123..."}
float (finite)         number always containing '.' or 'e' (repr)
float nan/inf/-inf     {"$float": "nan" | "inf" | "-inf"}
str                    string
bytes                  {"$bytes": "<base64>"}
list                   array
tuple                  {"$tuple": [...]}
dict (str keys, none   object
starting with '$')
other dicts            {"$dict": [[key, value], ...]}
=====================  =============================================

The tags ``$array``, ``$object``, ``$shared`` and ``$ref`` (used by model content) decode to
the small marker classes :class:`ArrayRef`, :class:`TaggedObject`, :class:`Shared` and
:class:`Ref`, which encode back to the same JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import ArgumentError, FormatError

__all__ = ["encode", "decode", "ArrayRef", "TaggedObject", "Shared", "Ref", "MAX_DEPTH"]

#: Maximum nesting accepted by the default reader limits (``limits::max_depth``).
MAX_DEPTH = 256

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class ArrayRef:
    """``{"$array": name}``: a reference to an array of the same file."""

    name: str


@dataclass(frozen=True)
class TaggedObject:
    """``{"$object": {"type": ..., "version": ..., "state": ...}}``."""

    type: str
    version: int
    state: Any


@dataclass(frozen=True)
class Shared:
    """``{"$shared": {"id": ..., "value": ...}}``: a value that ``Ref(id)`` refers to."""

    id: int
    value: Any


@dataclass(frozen=True)
class Ref:
    """``{"$ref": id}``: refers to the :class:`Shared` value with that id."""

    id: int


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------

try:  # optional: accept numpy scalars in metadata
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x  # json writes repr(): shortest round trip, always with '.' or 'e'
    if math.isnan(x):
        return {"$float": "nan"}
    return {"$float": "inf" if x > 0 else "-inf"}


def _int(i: int) -> Any:
    if _INT64_MIN <= i <= _INT64_MAX:
        return i
    return {"$int": str(i)}


def _to_jsonable(obj: Any, depth: int, where: str) -> Any:
    if depth > MAX_DEPTH:
        raise ArgumentError(f"{where}: nested deeper than {MAX_DEPTH} levels (or a reference cycle)")
    t = type(obj)
    # Exact-type fast paths first.
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        return _int(obj)
    if t is float:
        return _float(obj)
    if t is list:
        return [_to_jsonable(x, depth + 1, where) for x in obj]
    if t is dict:
        return _dict(obj, depth, where)
    if t is tuple:
        return {"$tuple": [_to_jsonable(x, depth + 1, where) for x in obj]}
    # Subclasses and friends.
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return _int(int(obj))
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, tuple):  # namedtuples become plain tuples
        return {"$tuple": [_to_jsonable(x, depth + 1, where) for x in obj]}
    if isinstance(obj, list):
        return [_to_jsonable(x, depth + 1, where) for x in obj]
    if isinstance(obj, dict):
        return _dict(obj, depth, where)
    if isinstance(obj, ArrayRef):
        return {"$array": _str(obj.name, where)}
    if isinstance(obj, TaggedObject):
        return {"$object": {"type": _str(obj.type, where), "version": _int(int(obj.version)),
                            "state": _to_jsonable(obj.state, depth + 2, where)}}
    if isinstance(obj, Shared):
        return {"$shared": {"id": int(obj.id), "value": _to_jsonable(obj.value, depth + 2, where)}}
    if isinstance(obj, Ref):
        return {"$ref": int(obj.id)}
    if _np is not None:
        if isinstance(obj, _np.bool_):
            return bool(obj)
        if isinstance(obj, _np.integer):
            return _int(int(obj))
        if isinstance(obj, _np.floating) and obj.dtype.itemsize <= 8:
            return _float(float(obj))
    raise ArgumentError(f"{where}: cannot store a value of type {t.__module__}.{t.__qualname__}")


def _str(s: Any, where: str) -> str:
    if not isinstance(s, str):
        raise ArgumentError(f"{where}: expected a str, got {type(s).__qualname__}")
    return str(s)


def _dict(d: dict, depth: int, where: str) -> Any:
    if all(type(k) is str and not k.startswith("$") for k in d):
        return {k: _to_jsonable(v, depth + 1, where) for k, v in d.items()}
    return {"$dict": [[_to_jsonable(k, depth + 2, where), _to_jsonable(v, depth + 2, where)]
                      for k, v in d.items()]}


def to_jsonable(obj: Any, *, where: str = "value") -> Any:
    """The JSON-ready structure (dicts, lists, str, int, float, ...) encoding ``obj``."""
    return _to_jsonable(obj, 0, where)


def encode(obj: Any, *, where: str = "value") -> str:
    """Encode a Python value as typed-value JSON text.

    Raises :class:`~vitrify.ArgumentError` for values that cannot be stored (naming ``where``).
    """
    text = json.dumps(_to_jsonable(obj, 0, where), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ArgumentError(f"{where}: string is not valid Unicode (lone surrogate): {e}") from None
    return text


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _bad(msg: str) -> FormatError:
    return FormatError(msg, code_name="bad_value")


def _hashable(k: Any) -> Any:
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    try:
        hash(k)
    except TypeError:
        raise _bad(f"dict key of type {type(k).__qualname__} cannot be a Python dict key") from None
    return k


def _pairs_hook(pairs: list) -> Any:
    if len(pairs) == 1:
        key, val = pairs[0]
        if key.startswith("$"):
            return _tag(key, val)
    elif any(k.startswith("$") for k, _ in pairs):
        raise _bad("an object with a '$' key must have exactly one member")
    return dict(pairs)


def _tag(key: str, val: Any) -> Any:
    if key == "$float":
        if isinstance(val, str) and val in _FLOATS:
            return _FLOATS[val]
    elif key == "$int":
        if isinstance(val, str):
            try:
                return int(val, 10)
            except ValueError:
                pass
    elif key == "$bytes":
        if isinstance(val, str):
            try:
                return base64.b64decode(val, validate=True)
            except (binascii.Error, ValueError):
                pass
    elif key == "$tuple":
        if isinstance(val, list):
            return tuple(val)
    elif key == "$dict":
        if isinstance(val, list) and all(isinstance(p, list) and len(p) == 2 for p in val):
            return {_hashable(k): v for k, v in val}
    elif key == "$array":
        if isinstance(val, str):
            return ArrayRef(val)
    elif key == "$object":
        if isinstance(val, dict) and set(val) == {"type", "version", "state"}:
            return TaggedObject(val["type"], val["version"], val["state"])
    elif key == "$shared":
        if isinstance(val, dict) and set(val) == {"id", "value"}:
            return Shared(val["id"], val["value"])
    elif key == "$ref":
        if type(val) is int:
            return Ref(val)
    else:
        raise _bad(f"unknown typed-value tag {key!r}")
    raise _bad(f"malformed {key!r} value")


def _no_constant(name: str) -> Any:
    raise _bad(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_no_constant)


def decode(text: str | bytes) -> Any:
    """Decode typed-value JSON text into Python objects (inverse of :func:`encode`)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8")
    try:
        return _decoder.decode(text)
    except json.JSONDecodeError as e:
        raise _bad(f"invalid typed-value JSON: {e}") from None
