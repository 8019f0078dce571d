"""Save and load Python objects (scikit-learn estimators above all) without pickle.

``dump`` turns an object graph into the inert typed-value tree of the vitrify format (stored in
the header's ``content`` section) plus out-of-line arrays; ``load`` rebuilds it. Loading never
imports a module whose name is not on the trusted list, and the file cannot widen that list; it
calls nothing but ``__new__``/``__setstate__`` of trusted classes and the checked reconstructors
of vitrify._reconstructors, then checks the built objects (vitrify._validators). Array data never
goes through pickle.

How objects are encoded (see docs/PYTHON.md):

* JSON-native values, tuples, bytes, dicts with any keys: the typed-value kinds themselves.
* numpy arrays of fixed-size dtypes: an array of the file (raw, so it can be memory-mapped);
  string arrays; object arrays element by element; structured arrays (scikit-learn's tree
  nodes) as their raw bytes plus a field description limited to plain numeric fields.
* numpy scalars and dtypes, ``RandomState``, ``Generator``, sets, complex numbers, slices.
* Any other object through the same protocol pickle uses (``__reduce_ex__``) at *save* time:
  the class (or reconstruction function) is recorded by its public import path, with the
  arguments and the state. At load time the name must be trusted before it is resolved.
* Shared references and reference cycles are kept (``$shared`` / ``$ref``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import functools
import gc
import importlib
import json
import os
import platform
import re
import sys
import threading
import time
import warnings
from typing import Any, Iterable

import numpy as np

from . import _core
from . import _reconstructors as _rules
from . import _validators
from . import arrays as _arrays
from ._reconstructors import InvalidStateError, ResourceLimitError, UntrustedTypeError
from .errors import ArgumentError, FormatError, LimitError, VersionError, VitrifyError

CONTENT_KIND = "vitrify.python-object"
CONTENT_VERSION = 3
_READ_VERSIONS = (1, 2, 3)
OBJECT_VERSION = 1


class EnvironmentMismatchWarning(UserWarning):
    """The file was saved with other versions of the packages that built it."""


# ------------------------------------------------------------------------------------------
# Trust
# ------------------------------------------------------------------------------------------

# Names that run code or touch the system: refused even when a caller lists them.
_DENY_MODULE_PREFIXES = (
    "os", "posix", "nt", "subprocess", "sys", "importlib", "pickle", "_pickle", "marshal", "shutil",
    "socket", "ctypes", "runpy", "code", "codeop", "pty", "webbrowser", "multiprocessing", "signal",
    "threading", "_thread", "asyncio", "io", "_io", "pathlib", "tempfile", "shelve", "dbm", "http",
    "urllib", "ftplib", "smtplib", "telnetlib", "pdb", "bdb", "trace", "inspect", "gc", "builtins.eval",
    "joblib", "cloudpickle", "dill", "torch", "numpy.testing", "numpy.distutils", "numpy.f2py",
    "numpy.lib.npyio", "scipy._lib._testutils", "sklearn.utils._testing", "sklearn.externals",
    "__main__", "typing", "operator",
)
_DENY_NAMES = frozenset({
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.__import__",
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals", "builtins.locals",
    "builtins.vars", "builtins.input", "builtins.breakpoint", "builtins.exit", "builtins.quit",
    "builtins.help", "builtins.memoryview", "builtins.type", "builtins.object", "builtins.super",
    "builtins.classmethod", "builtins.staticmethod", "builtins.property", "functools.reduce",
    "numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "numpy.memmap",
    "numpy.save", "numpy.savez", "numpy.ctypeslib", "numpy.frompyfunc", "numpy.vectorize",
    "numpy.piecewise", "numpy.apply_along_axis", "numpy.apply_over_axes",
})


@functools.lru_cache(maxsize=4096)
def _denied(name: str) -> bool:
    if name in _DENY_NAMES:
        return True
    for p in _DENY_MODULE_PREFIXES:
        if name == p or name.startswith(p + "."):
            return True
    return False


# Types and functions that dump() produces for numpy, scipy and the standard library.
_BASE_TRUSTED = frozenset({
    "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.slice", "builtins.range",
    "builtins.bytearray", "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int",
    "builtins.float", "builtins.str", "builtins.bool", "builtins.bytes", "builtins.NoneType",
    "collections.OrderedDict", "collections.defaultdict", "collections.Counter", "collections.deque",
    "functools.partial",
    "numpy.ndarray", "numpy.dtype", "numpy.generic", "numpy.random.RandomState",
    "numpy.random.Generator", "numpy.ma.MaskedArray",
    "numpy.bool_", "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64", "numpy.uint8",
    "numpy.uint16", "numpy.uint32", "numpy.uint64", "numpy.float16", "numpy.float32",
    "numpy.float64", "numpy.longdouble", "numpy.complex64", "numpy.complex128", "numpy.str_",
    "numpy.bytes_", "numpy.object_", "numpy.datetime64", "numpy.timedelta64", "numpy.intc",
    "numpy.uintc", "numpy.number", "numpy.integer", "numpy.floating", "numpy.inexact",
    "scipy.sparse.csr_matrix", "scipy.sparse.csc_matrix", "scipy.sparse.coo_matrix",
    "scipy.sparse.bsr_matrix", "scipy.sparse.dia_matrix", "scipy.sparse.lil_matrix",
    "scipy.sparse.dok_matrix", "scipy.sparse.csr_array", "scipy.sparse.csc_array",
    "scipy.sparse.coo_array", "scipy.sparse.bsr_array", "scipy.sparse.dia_array",
    "scipy.sparse.lil_array", "scipy.sparse.dok_array", "scipy.interpolate.BSpline",
    "scipy._lib.array_api_compat.numpy.asarray",
    # numpy ufuncs and array functions scikit-learn stores as parameters
    "numpy.log", "numpy.log1p", "numpy.exp", "numpy.expm1", "numpy.sqrt", "numpy.square",
    "numpy.abs", "numpy.absolute", "numpy.mean", "numpy.median", "numpy.sum", "numpy.max",
    "numpy.min", "numpy.nanmean", "numpy.nanmedian", "numpy.float64", "numpy.float32",
    "numpy.int64", "numpy.int32", "numpy.bool_", "numpy.nan", "numpy.inf", "numpy.sin",
    "numpy.cos", "numpy.tanh", "numpy.argmax", "numpy.argmin", "numpy.amax", "numpy.amin",
    "numpy.ravel", "numpy.ones", "numpy.zeros",
})

_sklearn_trusted_cache: frozenset[str] | None = None
_trust_lock = threading.Lock()


def _sklearn_trusted() -> frozenset[str]:
    """scikit-learn names dump() produces: from the list shipped with vitrify (generated by
    scripts/gen_trusted_types.py over all_estimators() and their fitted internals)."""
    global _sklearn_trusted_cache
    if _sklearn_trusted_cache is None:
        with _trust_lock:
            if _sklearn_trusted_cache is None:
                path = os.path.join(os.path.dirname(__file__), "trusted_types.txt")
                names = set()
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        line = line.strip()
                        if line and not line.startswith("#"):
                            names.add(line)
                _sklearn_trusted_cache = frozenset(names)
    return _sklearn_trusted_cache


@functools.cache
def _default_trusted() -> frozenset[str]:
    return _BASE_TRUSTED | _sklearn_trusted()


def default_trusted_types() -> frozenset[str]:
    """The names load() admits without being told: numpy, scipy, scikit-learn, builtins."""
    return _default_trusted()


def _trust_set(trusted: Iterable[str] | None) -> frozenset[str]:
    base = _default_trusted()
    if trusted is None:
        return base
    if isinstance(trusted, (str, bytes)):
        raise ArgumentError("trusted must be a list of names, not a single string")
    extra = set()
    for t in trusted:
        if isinstance(t, type) or callable(t):
            t = _canonical_name(t)
        if not isinstance(t, str):
            raise ArgumentError(f"trusted entries must be names or types, got {t!r}")
        extra.add(t)
    return base | extra


# ------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------

_name_cache: dict[Any, str] = {}


def _canonical_name(obj: Any) -> str:
    """Public import path of a class or function: the shortest parent module exposing it."""
    try:
        cached = _name_cache.get(obj)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(obj, np.ufunc):
        module, qual = "numpy", obj.__name__
    if module is None or qual is None:
        raise ArgumentError(f"cannot name {obj!r}: it has no module or qualified name")
    if "<locals>" in qual or "<lambda>" in qual:
        raise ArgumentError(f"cannot save {module}.{qual}: local functions and lambdas have no import path")
    name = f"{module}.{qual}"
    if "." not in qual:
        parts = module.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            mod = sys.modules.get(parent)
            if mod is not None and getattr(mod, qual, None) is obj:
                name = f"{parent}.{qual}"
                break
    try:
        _name_cache[obj] = name
    except TypeError:
        pass
    return name


_resolved: dict[str, Any] = {}


def _resolve(name: str, trusted: frozenset[str]) -> Any:
    """Import a trusted name. Never called for a name outside ``trusted``."""
    if type(name) is not str or name not in trusted or _denied(name):
        raise UntrustedTypeError([str(name)])
    obj = _resolved.get(name)
    if obj is None:
        obj = _resolved[name] = _import_name(name)
    return obj


def _import_name(name: str) -> Any:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise FormatError(f"trusted name {name!r} does not exist in this environment")



# ------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------

# The walk and every byte of the encoding are C++ (python/src/bind_encode.cpp over the one
# emitter, src/objects/encode.cpp); this module names classes and functions for it.
# Pooled arrays start at multiples of this (src/objects/encode.hpp pool_align).
_POOL_ALIGN = 16


_invalid = _rules.bad_value


# docs/OBJECTS.md section 8: typed-value depth of the object tree, counted as FORMAT.md 13.1.
_MAX_DEPTH = 256
_MAX_RANK = 64
_MAX_ITEMSIZE = 2**31 - 1
_MAX_BYTES = 2**63 - 1




@functools.lru_cache(maxsize=1024)
def _structured_descr_ok(dt: np.dtype) -> bool:
    """Only plain numeric fields: raw bytes of such a dtype can never become pointers."""
    if dt.fields is None:
        return dt.kind in "biufcmM" and not dt.hasobject
    for name, spec in dt.fields.items():
        sub = spec[0]
        if sub.subdtype is not None:
            base, _shape = sub.subdtype
            if not _structured_descr_ok(base):
                return False
        elif not _structured_descr_ok(sub):
            return False
    return not dt.hasobject


def _dtype_state(dt: np.dtype) -> Any:
    """The description the encoding stores for a numpy dtype (its str, or fields / sub-array)."""
    return json.loads(_core.numpy_dtype_state(dt))


# docs/OBJECTS.md section 7.1. Sizes are matched with at most as many digits as their bound
# has, so no arithmetic ever sees a longer number.
_DTYPE_STR_RE = re.compile(r"([<>|=]?)(?:([biufc?Mm])([0-9]{1,2})"
                           r"(?:\[([0-9]{0,18})(Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?"
                           r"|([SV])([0-9]{1,10})|(U)([0-9]{1,9}))")
_DTYPE_SIZES = {"b": (1,), "?": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8),
                "c": (8, 16), "M": (8,), "m": (8,)}
_MAX_UNICODE = _MAX_ITEMSIZE // 4


@functools.lru_cache(maxsize=1024)
def _dtype_from_str(s: str) -> np.dtype:
    if s == "O" or s == "|O":
        return np.dtype("O")
    m = _DTYPE_STR_RE.fullmatch(s)
    if m is None:
        raise _invalid(f"invalid dtype {s!r}")
    order, kind, size, mult, unit, skind, ssize, ukind, usize = m.groups()
    # "=" and "|" are read as little-endian: files mean the same on every platform.
    order = ">" if order == ">" else "<"
    if kind is not None:
        n = int(size)
        if n not in _DTYPE_SIZES[kind] or (unit is not None and kind not in "Mm"):
            raise _invalid(f"invalid dtype {s!r}")
        text = f"{order}{'b' if kind == '?' else kind}{n}" + (f"[{mult}{unit}]" if unit else "")
    elif skind is not None:
        n = int(ssize)
        if not 1 <= n <= _MAX_ITEMSIZE:
            raise _invalid(f"invalid dtype {s!r}: item size out of range")
        text = f"{order}{skind}{n}"
    else:
        n = int(usize)
        if not 1 <= n <= _MAX_UNICODE:
            raise _invalid(f"invalid dtype {s!r}: item size out of range")
        text = f"{order}U{n}"
    try:
        return np.dtype(text)
    except (TypeError, ValueError) as e:
        raise _invalid(f"invalid dtype {s!r}: {e}") from None


_dtype_desc_cache: dict[str, np.dtype] = {}


def _dtype_from_state(s: Any, depth: int = 0) -> np.dtype:
    if type(s) is str:
        return _dtype_from_str(s)
    if depth == 0 and isinstance(s, dict):
        # Memoised on the canonical text of the description (forests repeat one per tree).
        key = json.dumps(s, separators=(",", ":"))
        dt = _dtype_desc_cache.get(key)
        if dt is None:
            dt = _dtype_from_state_uncached(s, 0)
            if len(_dtype_desc_cache) < 1024:
                _dtype_desc_cache[key] = dt
        return dt
    return _dtype_from_state_uncached(s, depth)


def _field_dtype_ok(dt: np.dtype) -> bool:
    """A structured field: fixed-size numeric, a plain structure or a sub-array of them (raw
    bytes of object, S, U or V fields could become pointers or unchecked text)."""
    if dt.subdtype is not None:
        return _field_dtype_ok(dt.subdtype[0])
    if dt.fields is not None:
        return not dt.hasobject
    return dt.kind in "biufcmM"


def _dtype_from_state_uncached(s: Any, depth: int) -> np.dtype:
    """docs/OBJECTS.md section 7.2 (a table index is resolved by the caller)."""
    if depth > 8:
        raise _invalid("dtype description nested too deeply")
    if type(s) is str:
        return _dtype_from_str(s)
    if type(s) is dict and "fields" in s:
        fields, n = s["fields"], s.get("itemsize")
        if type(fields) is not list:
            raise _invalid("structured dtype fields must be a list")
        if type(n) is not int or not 1 <= n <= _MAX_ITEMSIZE:
            raise _invalid(f"invalid structured dtype itemsize {n!r}")
        aligned = s.get("aligned", False)
        if type(aligned) is not bool:
            raise _invalid("structured dtype 'aligned' must be a boolean")
        names, formats, offsets = [], [], []
        for item in fields:
            if not (type(item) is list and len(item) == 3 and type(item[0]) is str and type(item[2]) is int):
                raise _invalid("invalid structured dtype field (must be [name, dtype, offset])")
            name, fdt, off = item[0], _dtype_from_state_uncached(item[1], depth + 1), item[2]
            if name in names:
                raise FormatError(f"structured dtype names field {name!r} twice", code_name="duplicate_name")
            if not _field_dtype_ok(fdt):
                raise _invalid("structured dtypes may only have plain numeric fields")
            if off < 0 or off + fdt.itemsize > n:
                raise _invalid(f"structured dtype field {name!r} lies outside its record")
            names.append(name)
            formats.append(fdt)
            offsets.append(off)
        try:
            return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                             "itemsize": n, "aligned": aligned})
        except (TypeError, ValueError) as e:
            raise _invalid(f"invalid structured dtype: {e}") from None
    if type(s) is dict and "base" in s:
        base = _dtype_from_state_uncached(s["base"], depth + 1)
        shape = _shape(s.get("shape"))
        if _count(shape) * base.itemsize > _MAX_ITEMSIZE:
            raise _invalid("sub-array dtype too large")
        try:
            return np.dtype((base, shape))
        except (TypeError, ValueError) as e:
            raise _invalid(f"invalid sub-array dtype: {e}") from None
    raise _invalid(f"invalid dtype description {s!r}")


def _table_dtype(raw: Any) -> np.dtype:
    """An entry of the packed tree's dtypes table (plain numeric fields only)."""
    dt = _dtype_from_state(raw)
    if not _structured_descr_ok(dt):
        raise _invalid("structured dtypes may only have plain numeric fields")
    return dt


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------

_PLACEHOLDER = object()

# Version 1 spelled the members of object states out; version 2 uses short keys.
_V1_REDUCE_KEYS = {"new": "n", "args": "a", "kwargs": "kw", "state": "s", "listitems": "li",
                   "dictitems": "di"}
_V1_NDARRAY_KEYS = {"data": "d", "order": "o", "dtype": "t", "strings": "u", "raw": "r",
                    "bytes": "y", "shape": "s", "items": "i"}
_V1_GENERIC_KEYS = {"dtype": "t", "bytes": "b"}


def _upgrade_v1(root: Any) -> None:
    """Rename the members of version-1 object states (in place) to their version-2 keys, and
    check the typed-value depth (docs/OBJECTS.md section 8, counted as FORMAT.md 13.1) before
    the recursive decoder meets it."""
    stack = [(root, 0)]
    while stack:
        x, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise LimitError(f"object tree nested deeper than {_MAX_DEPTH}")
        if type(x) is list:
            stack.extend((e, depth + 1) for e in x)
        elif type(x) is dict:
            if len(x) == 1 and next(iter(x)).startswith("$"):
                tag, inner = next(iter(x.items()))
                if tag == "$object" and type(inner) is dict:
                    st = inner.get("state")
                    if type(st) is dict:
                        t = inner.get("type")
                        table = (_V1_NDARRAY_KEYS if t == "numpy.ndarray" else _V1_GENERIC_KEYS
                                 if t == "numpy.generic" else None if t in _SPECIAL_DECODERS
                                 else _V1_REDUCE_KEYS)
                        if table is not None:
                            st = inner["state"] = {table.get(k, "?" + k): v for k, v in st.items()}
                    stack.append((st, depth + 1))
                elif tag == "$shared" and type(inner) is dict:
                    stack.append((inner.get("value"), depth + 1))
                elif tag == "$tuple" and type(inner) is list:
                    stack.extend((e, depth + 1) for e in inner)   # the tuple is its list
                elif tag == "$dict" and type(inner) is list:
                    for kv in inner:
                        if type(kv) is list:
                            stack.extend((e, depth + 1) for e in kv)
            else:
                stack.extend((v, depth + 1) for v in x.values())


def _reject_constant(name: str) -> Any:
    raise FormatError(f"invalid JSON number {name} in the object tree")


class _Decoder:
    def __init__(self, f: Any, trusted: frozenset[str], mmap: bool, c: dict,
                 rules: _rules.CallRules | None = None):
        self.f = f
        self.rules = rules
        self._infos: dict | None = None
        self.trusted = trusted
        self.mmap = mmap
        self.shared: dict[int, Any] = {}
        self.packed = c.get("$packed")
        self.pool_name = c.get("$pool")
        self._pool: np.ndarray | None = None
        self.v1 = c.get("version") == 1
        keys = c.get("keys", [])
        dtypes = c.get("dtypes", [])
        if type(keys) is not list or type(dtypes) is not list:
            raise _invalid("invalid keys or dtypes table")
        self.keys_raw = keys
        self.keys: dict[int, tuple] = {}
        self.dtypes_raw = dtypes
        self.dtypes: dict[int, np.dtype] = {}

    def keyset(self, k: Any) -> tuple:
        ks = self.keys.get(k) if type(k) is int else None
        if ks is None:
            if type(k) is not int or not 0 <= k < len(self.keys_raw):
                raise _invalid(f"invalid keyset index {k!r}")
            raw = self.keys_raw[k]
            if type(raw) is not list or not all(type(s) is str for s in raw):
                raise _invalid("invalid keyset")
            if len(set(raw)) != len(raw):
                raise FormatError(f"keyset {k} names a key twice", code_name="duplicate_name")
            ks = self.keys[k] = tuple(raw)
        return ks

    def dtype(self, t: Any) -> np.dtype:
        if type(t) is str:
            return _dtype_from_str(t)
        if type(t) is int:
            dt = self.dtypes.get(t)
            if dt is None:
                if not 0 <= t < len(self.dtypes_raw):
                    raise _invalid(f"invalid dtype index {t!r}")
                dt = _table_dtype(self.dtypes_raw[t])
                self.dtypes[t] = dt
            return dt
        return _dtype_from_state(t)

    def array(self, ref: Any, kind: str | None = None) -> np.ndarray:
        """The array of the file named by ``ref``; ``kind`` "numeric" or "string" is the kind
        the state requires (docs/OBJECTS.md section 6.3)."""
        if not (type(ref) is dict and len(ref) == 1 and "$array" in ref):
            raise _invalid("expected an array reference")
        name = ref["$array"]
        infos = self._infos
        if infos is None:
            infos = self._infos = {info["name"]: (i, info) for i, info in enumerate(self.f.arrays)}
        try:
            i, info = infos[name]
        except (KeyError, TypeError):
            raise _invalid(f"array {name!r} is not in the file") from None
        if name == self.packed:
            raise _invalid("the object tree refers to its own packed array")
        if name == self.pool_name:
            raise _invalid("the object tree refers to the array pool as an array")
        if kind is not None and (info["dtype"] == "string") != (kind == "string"):
            raise _invalid(f"array {name!r} is not a {kind} array")
        return _arrays._load_array(self.f, i, info, self.mmap, False)

    def pool(self) -> np.ndarray:
        p = self._pool
        if p is None:
            p = self._pool = _load_pool(self.f, self.pool_name, self.mmap)
        return p

    def dec(self, v: Any) -> Any:
        t = type(v)
        if t is str or t is int or t is float or v is None or t is bool:
            return v
        if t is list:
            dec = self.dec
            return [dec(x) for x in v]
        if t is not dict:
            raise _invalid(f"unexpected JSON value {v!r}")
        if len(v) == 1:
            for k, x in v.items():
                if k.startswith("$"):
                    return self.tag(k, x)
        dec = self.dec
        return {k: dec(x) for k, x in v.items()}

    def tag(self, k: str, x: Any) -> Any:
        if k == "$object":
            return self.object(x, None)
        if k == "$tuple":
            if type(x) is not list:
                raise _invalid("$tuple must hold a list")
            dec = self.dec
            return tuple([dec(e) for e in x])
        if k == "$ref":
            obj = self.shared.get(x, _PLACEHOLDER) if type(x) is int else _PLACEHOLDER
            if obj is _PLACEHOLDER:
                raise _invalid(f"$ref {x!r} refers to a value that cannot be built yet (cycle through a tuple)")
            return obj
        if k == "$shared":
            return self.shared_def(x)
        if k == "$float":
            if x not in ("nan", "inf", "-inf"):
                raise _invalid(f"invalid $float {x!r}")
            return float(x)
        if k == "$int":
            if type(x) is not str or len(x) > 100000:
                raise _invalid("invalid $int")
            return int(x)
        if k == "$bytes":
            return base64.b64decode(x, validate=True)
        if k == "$dict":
            out = {}
            dec = self.dec
            for kk, vv in x:
                key = dec(kk)
                try:
                    out[key] = dec(vv)
                except TypeError:
                    raise _invalid(f"unhashable dict key {key!r}") from None
            return out
        if k == "$array":
            return self.array({"$array": x})
        raise _invalid(f"unknown tag {k}")

    def shared_def(self, x: Any) -> Any:
        sid = x["id"]
        val = x["value"]
        if type(sid) is not int or sid in self.shared:
            raise _invalid(f"invalid or duplicate $shared id {sid!r}")
        dec = self.dec
        # Containers and objects register themselves (so cycles resolve) before their contents.
        if type(val) is dict and len(val) == 1 and "$object" in val:
            return self.object(val["$object"], sid)
        if type(val) is list:
            out: list = []
            self.shared[sid] = out
            out.extend([dec(e) for e in val])
            return out
        if type(val) is dict and not (len(val) == 1 and next(iter(val)).startswith("$")):
            d: dict = {}
            self.shared[sid] = d
            for kk, vv in val.items():
                d[kk] = dec(vv)
            return d
        if type(val) is dict and "$dict" in val:
            d = {}
            self.shared[sid] = d
            for kk, vv in val["$dict"]:
                d[dec(kk)] = dec(vv)
            return d
        self.shared[sid] = _PLACEHOLDER
        out2 = dec(val)
        self.shared[sid] = out2
        return out2

    def object(self, spec: dict, sid: int | None) -> Any:
        tname = spec["type"]
        st = spec["state"]
        handler = _SPECIAL_DECODERS.get(tname)
        if handler is not None:
            obj = handler(self, st)
            if sid is not None:
                self.shared[sid] = obj
            return obj
        if tname == "vitrify.global":
            obj = _resolve(st, self.trusted)
            if sid is not None:
                self.shared[sid] = obj
            return obj
        target = _resolve(tname, self.trusted)
        if type(st) is not dict:
            raise FormatError(f"object state of {tname} must be a dict")
        dec = self.dec
        args = tuple([dec(a) for a in st["a"]]) if "a" in st else ()
        if st.get("n") is True:
            if "kw" in st or args:
                kwargs = dec(st["kw"]) if "kw" in st else None
                if kwargs is not None and type(kwargs) is not dict:
                    raise FormatError("kwargs must be a dict")
                obj = self.rules.new(tname, target, args, kwargs)
            elif not isinstance(target, type):
                raise FormatError(f"{tname} is not a class")
            else:
                obj = target.__new__(target)
        else:
            obj = self.rules.call(tname, target, args)
        if sid is not None:
            self.shared[sid] = obj
        if "s" in st:
            s = st["s"]
            if "k" in st:
                keys = self.keyset(st["k"])
                if type(s) is not list or len(s) != len(keys):
                    raise FormatError(f"state of {tname} does not match its keys")
                state: Any = dict(zip(keys, [dec(v) for v in s]))
            else:
                state = dec(s)
            check = _validators.state_check(type(obj))
            if check is not None:
                check(obj, state)
            setstate = getattr(obj, "__setstate__", None)
            if setstate is not None and not _is_default_setstate(obj):
                setstate(state)
            else:
                slotstate = None
                if isinstance(state, tuple) and len(state) == 2:
                    state, slotstate = state
                if state:
                    obj.__dict__.update(state)
                if slotstate:
                    for kk, vv in slotstate.items():
                        setattr(obj, kk, vv)
        if "li" in st:
            items = [dec(e) for e in st["li"]]
            if hasattr(obj, "extend"):
                obj.extend(items)
            else:
                for e in items:
                    obj.append(e)
        if "di" in st:
            for kk, vv in st["di"]:
                obj[dec(kk)] = dec(vv)
        check = _validators.object_check(type(obj))
        if check is not None:
            check(obj)
        return obj


_default_setstate_cache: dict[type, bool] = {}


def _is_default_setstate(obj: Any) -> bool:
    t = type(obj)
    r = _default_setstate_cache.get(t)
    if r is None:
        fn = getattr(t, "__setstate__", None)
        r = fn is None or fn is getattr(object, "__setstate__", None)
        _default_setstate_cache[t] = r
    return r


def _shape(s: Any) -> tuple:
    """docs/OBJECTS.md section 6, shapes: at most 64 dimensions, each >= 0, the product of
    the non-zero ones within 2^63 - 1."""
    if type(s) is not list:
        raise _invalid("array shape must be a list")
    if len(s) > _MAX_RANK:
        raise LimitError(f"array rank {len(s)} exceeds {_MAX_RANK}")
    shape = tuple(s)
    nonzero = 1
    for x in shape:
        if type(x) is not int or x < 0:
            raise _invalid("invalid array shape")
        if x:
            nonzero *= x
    if nonzero > _MAX_BYTES:
        raise _invalid("array shape too large")
    return shape


def _count(shape: tuple) -> int:
    n = 1
    for x in shape:
        n *= x
    return n


def _nbytes(shape: tuple, dt: np.dtype) -> int:
    """count x itemsize, within 2^63 - 1 (bad_value otherwise)."""
    n = _count(shape) * dt.itemsize
    if n > _MAX_BYTES:
        raise _invalid("array size (count x itemsize) too large")
    return n


def _fortran(st: dict) -> bool:
    o = st.get("o")
    if o is None:
        return False
    if o != "F":
        raise _invalid(f"invalid array order {o!r} (only \"F\" may be written)")
    return True


def _raw_dtype_ok(dt: np.dtype, member: str) -> bool:
    """``r``: numeric, datetime or plain structured; ``y``: fixed-width bytes."""
    if member == "y":
        return dt.kind == "S"
    return not dt.hasobject and (dt.fields is not None or dt.kind in "biufcmM")


def _dec_ndarray(d: _Decoder, st: dict) -> np.ndarray:
    if type(st) is not dict:
        raise _invalid("invalid numpy.ndarray state")
    fortran = _fortran(st)
    b = st.get("b")
    if type(b) is str:
        # Small numeric array stored inline (version 2).
        raw = np.frombuffer(bytearray(base64.b64decode(b, validate=True)), dtype=np.uint8)
        return _from_bytes(raw, d.dtype(st["t"]), _shape(st["s"]), fortran, "inline")
    p = st.get("p")
    if p is not None:
        # An array of the pool (version 3).
        return _pooled_array(d.pool(), p, d.dtype(st["t"]), _shape(st["s"]), fortran)
    if "d" in st:
        a = d.array(st["d"], "numeric")
        if "t" in st:
            # Only a byte-order record (big-endian original): the same item size, no object
            # or structured dtype.
            dt = d.dtype(st["t"])
            if dt.itemsize != a.dtype.itemsize or dt.hasobject or dt.fields is not None:
                raise _invalid(f"array dtype {dt} does not match its data ({a.dtype})")
            a = a.astype(dt)
        return a.T if fortran else a
    if "u" in st:
        # The array table records the numpy dtype (object or <U n) and the load restores it.
        return d.array(st["u"], "string")
    if "i" in st:
        shape = _shape(st["s"])
        if type(st["i"]) is not list:
            raise _invalid("object array items must be a list")
        if len(st["i"]) != _count(shape):
            raise _invalid("object array item count does not match its shape")
        items = [d.dec(x) for x in st["i"]]
        out = np.empty(len(items), dtype=object)
        for j, x in enumerate(items):
            out[j] = x
        return out.reshape(shape)
    if "r" in st or "y" in st:
        member = "r" if "r" in st else "y"
        dt = d.dtype(st["t"])
        if not _raw_dtype_ok(dt, member):
            raise _invalid(f"raw arrays ({member}) cannot have dtype {dt}")
        raw = d.array(st[member])
        shape = _shape(st["s"])
        if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size != _nbytes(shape, dt):
            raise _invalid("raw array size does not match dtype and shape")
        if fortran:
            # Version 1 recorded the logical shape, version 2 the stored (transposed) one.
            return raw.view(dt).reshape(shape[::-1] if d.v1 else shape).T
        return raw.view(dt).reshape(shape)
    raise _invalid("invalid numpy.ndarray state")


def _byte_array(f: Any, name: Any, what: str) -> tuple[int, dict]:
    """Index and info of the 1-D uint8 array ``name`` (the packed tree or the pool)."""
    if type(name) is not str:
        raise _invalid(f"invalid reference to {what}")
    try:
        i = f.find(name)
    except VitrifyError:
        raise _invalid(f"{what} {name!r} is not in the file") from None
    info = f.array_info(i)
    if info["dtype"] != "uint8" or len(info["shape"]) != 1:
        raise _invalid(f"{what} must be a 1-D uint8 array")
    return i, info


def _load_pool(f: Any, name: Any, mmap: bool) -> np.ndarray:
    """The pool array of a version-3 file: a view of the mapping (raw, mmap) or decoded."""
    if name is None:
        raise _invalid("the file has pooled arrays but no array pool")
    i, info = _byte_array(f, name, "the array pool")
    if mmap and info["codec"] == "raw":
        return _arrays._load_array(f, i, info, True, False)
    # Decoded into fresh memory aligned like the file's arrays (64 bytes): pooled arrays of
    # 4 KiB or more sit at multiples of 64 in the pool.
    n = int(info["decoded_length"])
    buf = np.empty(n + 64, dtype=np.uint8)
    start = -buf.ctypes.data % 64
    out = buf[start:start + n]
    f.read_into(i, out, True)
    return out


def _pooled_array(pool: np.ndarray, ref: Any, dt: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    if not (type(ref) is list and len(ref) == 2 and type(ref[0]) is int and type(ref[1]) is int):
        raise _invalid("a pooled array reference must be [offset, nbytes]")
    off, n = ref
    if off < 0 or n < 0 or off > pool.size - n:
        raise _invalid("pooled array lies outside the array pool")
    if n and off % _POOL_ALIGN:
        raise _invalid(f"pooled array offset {off} is not a multiple of {_POOL_ALIGN}")
    return _from_bytes(pool[off:off + n], dt, shape, fortran, "pooled")


def _from_bytes(raw: np.ndarray, dt: np.dtype, shape: tuple, fortran: bool, what: str) -> np.ndarray:
    """A numeric or plain structured array viewing ``raw`` (uint8, the stored C-order bytes)."""
    if dt.hasobject or (dt.fields is None and dt.kind not in "biufcmM"):
        raise _invalid(f"{what} arrays cannot have dtype {dt}")
    if raw.size != _nbytes(shape, dt):
        raise _invalid(f"{what} array size does not match dtype and shape")
    if dt.kind == "b" and raw.size and int(raw.max()) > 1:
        raise _invalid("bool array holds a byte other than 0 or 1")
    a = raw.view(dt).reshape(shape)
    return a.T if fortran else a


def _dec_generic(d: _Decoder, st: dict) -> Any:
    if type(st) is not dict or type(st.get("b")) is not str:
        raise _invalid("invalid numpy scalar")
    dt = d.dtype(st["t"])
    if dt.hasobject:
        raise _invalid("object scalars are not allowed")
    raw = base64.b64decode(st["b"], validate=True)
    if len(raw) != dt.itemsize:
        raise _invalid("numpy scalar has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dt)[0]


_BUILDERS = _rules.special_builders(lambda s: _dtype_from_state(s))
_BIT_GENERATORS = _rules.BIT_GENERATORS


def _dec_special(name: str):
    build = _BUILDERS[name]
    return lambda d, st: build(d.dec(st))


_SPECIAL_DECODERS = {
    "numpy.ndarray": _dec_ndarray,
    "numpy.generic": _dec_generic,
    **{name: _dec_special(name) for name in _BUILDERS},
    # After the builders: a dtype state may also be an index into the dtypes table.
    "numpy.dtype": lambda d, st: d.dtype(st),
}


# ------------------------------------------------------------------------------------------
# Environment and schema
# ------------------------------------------------------------------------------------------

# Packages whose versions decide whether a saved model loads and predicts the same.
_ENV_PACKAGES = ("numpy", "scipy", "scikit-learn")


@functools.cache
def _package_versions_cached() -> tuple:
    out = []
    from importlib import metadata
    for p in _ENV_PACKAGES:
        try:
            out.append((p, metadata.version(p)))
        except metadata.PackageNotFoundError:
            pass
    return tuple(out)


def _package_versions() -> dict:
    """Versions of the packages that matter, read once per process (installing another
    version under a running interpreter does not change the modules it has imported)."""
    return dict(_package_versions_cached())


@functools.cache
def _static_environment() -> tuple:
    return (
        ("python", platform.python_version()),
        ("implementation", platform.python_implementation()),
        ("platform", platform.platform()),
        ("machine", platform.machine()),
        ("byteorder", sys.byteorder),
        ("vitrify", _core.library_version),
    )


def current_environment(created: bool = True) -> dict:
    env: dict[str, Any] = dict(_static_environment())
    env["packages"] = _package_versions()
    if created:
        env["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return env


def check_environment(saved: Any, *, stacklevel: int = 3) -> list[str]:
    """Compare a saved environment record with the running one; warn for each difference."""
    msgs = []
    if not isinstance(saved, dict):
        return msgs
    now = current_environment(created=False)
    sp = saved.get("packages") or {}
    for pkg, ver in sorted(sp.items()):
        cur = now["packages"].get(pkg)
        if cur is None:
            try:
                from importlib import metadata
                cur = metadata.version(pkg)
            except Exception:
                cur = None
        if cur != ver:
            msgs.append(f"{pkg}: saved with {ver}, running {cur or 'not installed'}")
    if saved.get("python") and saved["python"].rsplit(".", 1)[0] != now["python"].rsplit(".", 1)[0]:
        msgs.append(f"python: saved with {saved['python']}, running {now['python']}")
    if saved.get("vitrify") and saved["vitrify"] != now["vitrify"]:
        msgs.append(f"vitrify: saved with {saved['vitrify']}, running {now['vitrify']}")
    if saved.get("byteorder") and saved["byteorder"] != now["byteorder"]:
        msgs.append(f"byteorder: saved on {saved['byteorder']}-endian, running {now['byteorder']}-endian")
    for m in msgs:
        warnings.warn(f"vitrify: environment differs: {m}", EnvironmentMismatchWarning, stacklevel=stacklevel)
    return msgs



def _summary(obj: Any, depth: int = 0) -> Any:
    """Estimator tree with non-default parameters and array sizes, for inspect()."""
    if depth > 20:
        return None
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - sklearn is optional for plain objects
        return {"type": _canonical_name(type(obj))}
    if not isinstance(obj, BaseEstimator):
        return None
    node: dict[str, Any] = {"type": _canonical_name(type(obj))}
    try:
        params = _params(obj, BaseEstimator)
        defaults = _init_defaults(type(obj))
    except Exception:
        params, defaults = {}, {}
    nondefault = {}
    children = []
    for k, v in params.items():
        if isinstance(v, BaseEstimator):
            children.append({"param": k, **(_summary(v, depth + 1) or {})})
            continue
        if isinstance(v, (list, tuple)) and v and all(isinstance(s, tuple) and len(s) >= 2 and
                                                     isinstance(s[1], BaseEstimator) for s in v):
            for s in v:
                children.append({"param": k, "name": str(s[0]), **(_summary(s[1], depth + 1) or {})})
            continue
        if k in defaults and _same(defaults[k], v):
            continue
        nondefault[k] = _short(v)
    if nondefault:
        node["params"] = nondefault
    fitted = {}
    for k, v in vars(obj).items():
        if k.endswith("_") and not k.startswith("_"):
            if isinstance(v, np.ndarray):
                fitted[k] = f"{v.dtype.name}{list(v.shape)}"
            elif isinstance(v, (int, float, str, np.generic)) and not isinstance(v, bool):
                fitted[k] = _short(v)
            elif isinstance(v, list) and v and isinstance(v[0], BaseEstimator):
                fitted[k] = f"list of {len(v)} {type(v[0]).__name__}"
    if fitted:
        node["fitted"] = fitted
    if children:
        node["children"] = children
    return node


def _params(obj: Any, base: type) -> dict:
    """obj.get_params(deep=False), without its per-call signature inspection when the class
    keeps scikit-learn's own get_params (the names are cached per class: a save of a forest
    asks once per tree)."""
    cls = type(obj)
    if cls.get_params is base.get_params and \
            getattr(cls._get_param_names, "__func__", None) is base._get_param_names.__func__:
        return {k: getattr(obj, k) for k in _param_names(cls)}
    return obj.get_params(deep=False)


@functools.lru_cache(maxsize=256)
def _param_names(cls: type) -> tuple:
    return tuple(cls._get_param_names())


@functools.lru_cache(maxsize=256)
def _init_defaults(cls: type) -> dict:
    """Default values of the constructor's parameters (without building an instance); cached
    per class, callers only read it."""
    import inspect as _inspect
    try:
        sig = _inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in sig.parameters.items()
            if p.default is not _inspect.Parameter.empty}


def _same(a: Any, b: Any) -> bool:
    try:
        if a is b:
            return True
        r = a == b
        return bool(r) if not isinstance(r, np.ndarray) else bool(r.all())
    except Exception:
        return False


def _short(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else repr(v)
    if isinstance(v, np.generic):
        return _short(v.item())
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _schema(obj: Any) -> dict:
    out: dict[str, Any] = {"type": _canonical_name(type(obj))}
    for attr in ("n_features_in_", "feature_names_in_", "classes_", "n_outputs_"):
        v = getattr(obj, attr, None) if _safe_hasattr(obj, attr) else None
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[attr] = _jsonable_plain(v)
    tree = _summary(obj)
    if tree:
        out["estimator"] = tree
    return out


def _safe_hasattr(obj: Any, attr: str) -> bool:
    try:
        return hasattr(obj, attr)
    except Exception:
        return False


def _jsonable_plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable_plain(x) for x in v]
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return repr(v)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, np.generic):
        return _jsonable_plain(v.item())
    return repr(v)



# ------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------

def _compress_spec(compress: Any) -> tuple:
    if isinstance(compress, dict):
        raise ArgumentError("dump(compress=...) takes None, 'zstd', an int level or (codec, level)")
    return _arrays._codec_spec(compress, "compress")


class _Progress:
    """Prints progress to stderr for operations that take longer than about a second."""

    def __init__(self, what: str, enabled: bool | None):
        if enabled is None:
            enabled = os.environ.get("VITRIFY_PROGRESS", "1") != "0" and sys.stderr.isatty()
        self.enabled = enabled
        self.what = what
        self.start = time.perf_counter() if enabled else 0.0
        self.shown = False

    def update(self, msg: str) -> None:
        if not self.enabled:
            return
        el = time.perf_counter() - self.start
        if el >= 1.0:
            self.shown = True
            sys.stderr.write(f"\rvitrify: {self.what}: {msg} ({el:.1f}s)")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused():
    """The cyclic garbage collector off while a model is encoded or built: both create tens of
    thousands of containers, each allocation burst triggering collections that walk every live
    object (8-10% of dump and load time on forests). Nested and concurrent calls keep it off
    until the last one ends; a collector the caller turned off stays off."""
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()


def _write_object(w: Any, obj: Any, compress: Any, metadata: Any, progress: bool | None) -> None:
    with _gc_paused():
        _write_object_inner(w, obj, compress, metadata, progress)


def _write_object_inner(w: Any, obj: Any, compress: Any, metadata: Any, progress: bool | None) -> None:
    from . import values as _values
    prog = _Progress("saving", progress)
    spec = _compress_spec(compress)
    try:  # the schema is a convenience for inspect; never fail a save over it
        schema = json.dumps(_schema(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except Exception:
        schema = None
    # Arrays, the pool, the packed object tree and the content section, written by the C++
    # encoder (docs/PYTHON.md "What is stored").
    info = _core.encode_objects(w, obj, spec[0], spec[1], schema, _canonical_name, _arrays.numpy_to_dtype,
                                ArgumentError)
    prog.update(f"{info['arrays'] + info['pooled_arrays']} arrays, {info['array_bytes'] / 2**20:.1f} MiB")
    w.set_environment(json.dumps(current_environment(), separators=(",", ":")))
    if metadata is not None:
        w.set_metadata(_values.encode(metadata, where="metadata"))
    prog.done()


def dump(obj: Any, path: Any, *, compress: Any = None, metadata: Any = None,
         progress: bool | None = None, durable: bool = True) -> None:
    """Save ``obj`` (a fitted scikit-learn estimator, pipeline, or any object built from numpy,
    scipy and standard containers) to ``path`` atomically. Arrays stay raw and memory-mappable
    unless ``compress`` is ``"zstd"``, a zstd level, or ``("zstd", level)``. ``durable`` (the
    default) fsyncs the file and its folder before returning; turn it off only for scratch
    files."""
    w = _core.Writer.create(os.fspath(path), 64, bool(durable))
    try:
        _write_object(w, obj, compress, metadata, progress)
        w.commit()
    finally:
        w.close()


def dumps(obj: Any, *, compress: Any = None, metadata: Any = None) -> bytes:
    """Like :func:`dump`, returning the file image as bytes."""
    w = _core.Writer.create_in_memory(64)
    try:
        _write_object(w, obj, compress, metadata, False)
        w.commit()
        return w.take_bytes()
    finally:
        w.close()


def _packed_bytes(f: Any, name: Any) -> bytes | bytearray:
    i, info = _byte_array(f, name, "the packed object tree")
    if info["codec"] == "raw":
        return f.view(i, True).tobytes()         # checksum verified
    buf = bytearray(int(info["decoded_length"]))
    f.read_into(i, np.frombuffer(buf, dtype=np.uint8), True)
    return buf


def _content(f: Any, parse_packed: bool = True) -> dict:
    """The content section. For packed version-2 trees, ``parse_packed=False`` leaves the
    packed body unparsed: ``c["$body"]`` holds its bytes for the C++ decoder (_core.ObjectTree)."""
    text = f.content_json
    if not text or text == "null":
        raise _invalid("the file holds no Python object (use vitrify.load_arrays for plain arrays)")
    c = json.loads(text)
    if not isinstance(c, dict) or c.get("kind") != CONTENT_KIND:
        raise _invalid("the file's content is not a vitrify Python object")
    version = c.get("version")
    if type(version) is not int or version not in _READ_VERSIONS:
        raise VersionError(f"object encoding version {version!r} is not supported (this vitrify reads "
                           f"{', '.join(map(str, _READ_VERSIONS))})")
    if version == 1:
        if "root" not in c:
            raise _invalid("the version-1 content has no root")
        _upgrade_v1(c["root"])
        c.pop("keys", None)
        c.pop("dtypes", None)
        return c
    # Versions 2 and 3 keep the tree in the packed array only; a root in the header is ignored.
    packed = c.get("packed")
    if not (type(packed) is dict and len(packed) == 1 and "$array" in packed):
        raise _invalid("the content has no valid packed object tree reference")
    name = packed["$array"]
    pool = None
    if version >= 3 and "pool" in c:
        pref = c["pool"]
        if not (type(pref) is dict and len(pref) == 1 and type(pref.get("$array")) is str):
            raise _invalid("invalid array pool reference")
        pool = pref["$array"]
        if pool == name:
            raise _invalid("the array pool and the packed object tree are the same array")
        _byte_array(f, pool, "the array pool")
    body_bytes = _packed_bytes(f, name)
    if not parse_packed:
        return {"version": version, "$packed": name, "$pool": pool, "$body": bytes(body_bytes)}
    try:
        body = json.loads(body_bytes, parse_constant=_reject_constant)
    except RecursionError:
        raise LimitError("object tree nested too deeply") from None
    except ValueError as e:
        raise FormatError(f"the packed object tree is not valid JSON: {e}") from None
    if type(body) is not dict or "root" not in body:
        raise _invalid("the packed object tree has no root")
    # Only the packed body counts: the header's own root/keys/dtypes are ignored.
    c = {"version": version, "root": body["root"], "keys": body.get("keys", []),
         "dtypes": body.get("dtypes", []), "$packed": name, "$pool": pool}
    return c


class _BuildContext:
    """What the C++ decoder (_core.ObjectTree.build) asks Python for: arrays, dtypes, the
    builders of special types (given their decoded state), the call rule and the checks of
    built objects (the same as model.py's _Decoder uses)."""

    frombuffer = staticmethod(np.frombuffer)
    dtype_from_str = staticmethod(_dtype_from_str)
    placeholder = _PLACEHOLDER
    object_check = staticmethod(_validators.object_check)
    state_check = staticmethod(_validators.state_check)
    special = _BUILDERS

    def __init__(self, f: Any, mmap: bool, packed: str, pool: str | None, rules: _rules.CallRules):
        loader = _Decoder(f, frozenset(), mmap, {"$packed": packed, "$pool": pool})
        self.array = lambda name, kind=None: loader.array({"$array": name}, kind)
        # The C++ decoder slices pooled arrays out of this (None: the file has no pool).
        self.pool = loader.pool() if pool is not None else None
        self.rules = rules

    @staticmethod
    def dtype_from_state(s: Any, from_table: bool) -> np.dtype:
        return _table_dtype(s) if from_table else _dtype_from_state(s)

    @staticmethod
    def object_array(items: list, shape: tuple) -> np.ndarray:
        out = np.empty(len(items), dtype=object)
        for j, x in enumerate(items):
            out[j] = x
        return out.reshape(shape)


_SPECIAL_NAMES = sorted(_SPECIAL_DECODERS)
_BIT_GENERATOR_NAMES = sorted(_BIT_GENERATORS)


def _collect_types(v: Any, out: set, uses: set | None = None) -> None:
    """Every type and function name under ``v`` into ``out`` and, with ``uses``, how each is
    used (_reconstructors.USE_*), as _core.ObjectTree.names() and uses() do for packed trees."""
    stack = [v]
    pop = stack.pop
    push = stack.append
    extend = stack.extend
    special = _SPECIAL_DECODERS
    while stack:
        x = pop()
        t = type(x)
        if t is list:
            extend(x)
        elif t is dict:
            if len(x) == 1 and "$object" in x:
                spec = x["$object"]
                if type(spec) is dict:
                    tn = spec.get("type")
                    st = spec.get("state")
                    if tn == "vitrify.global":
                        if type(st) is not str:
                            raise _invalid("vitrify.global state must be a name")
                        out.add(st)
                    elif type(tn) is str:
                        if tn not in special:
                            out.add(tn)
                            if uses is not None:
                                uses.add((tn, _use_of(st)))
                        elif tn == "numpy.random.Generator" and type(st) is dict:
                            bg = st.get("bit_generator")
                            if type(bg) is str and bg not in _BIT_GENERATORS:
                                out.add(bg)
                    if type(st) is dict or type(st) is list:
                        push(st)
                else:
                    push(spec)
            else:
                extend(x.values())


def _use_of(st: Any) -> str:
    if type(st) is not dict or st.get("n") is not True:
        return _rules.USE_CALL
    return _rules.USE_NEW_ARGS if "kw" in st or st.get("a") not in (None, []) else _rules.USE_NEW


def _names(c: dict) -> set[str]:
    tree = c.get("$tree")
    if tree is not None:
        return set(tree.names(_SPECIAL_NAMES, _BIT_GENERATOR_NAMES))
    names: set[str] = set()
    _collect_types(c.get("root"), names)
    return names


def _uses(c: dict) -> set[tuple[str, str]]:
    tree = c.get("$tree")
    if tree is not None:
        return {tuple(u) for u in tree.uses(_SPECIAL_NAMES)}
    uses: set[tuple[str, str]] = set()
    _collect_types(c.get("root"), set(), uses)
    return uses


def _untrusted(c: dict, trusted: frozenset[str]) -> list[str]:
    """Names load would refuse: untrusted ones, and trusted ones the file would have load call
    against the call rule (vitrify._reconstructors)."""
    bad = {n for n in _names(c) if n not in trusted or _denied(n)}
    bad.update(_rules.refused_uses(_uses(c), _default_trusted(), trusted))
    return sorted(bad)


def _content_for_load(f: Any) -> dict:
    """The content, with a packed version-2 tree parsed by the C++ decoder (c["$tree"])."""
    c = _content(f, parse_packed=False)
    body = c.pop("$body", None)
    if body is not None:
        c["$tree"] = _core.ObjectTree(body)
    return c


def _open(source: Any, mmap: bool) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.File.from_bytes(source, True)
    return _core.File.open(os.fspath(source), bool(mmap))


def get_untrusted_types(path: Any = None, *, data: bytes | None = None, trusted: Iterable[str] | None = None) -> list[str]:
    """The names in a file that load() would refuse with the given ``trusted`` list. Nothing is
    imported or built."""
    f = _open(data if data is not None else path, True)
    return _untrusted(_content_for_load(f), _trust_set(trusted))


def _load(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None) -> Any:
    with _gc_paused():
        return _load_inner(f, trusted, mmap, check_env, progress)


def _load_inner(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None) -> Any:
    prog = _Progress("loading", progress)
    c = _content_for_load(f)
    ts = _trust_set(trusted)
    names = _names(c)
    bad = sorted(n for n in names if n not in ts or _denied(n))
    if bad:
        denied = [n for n in bad if _denied(n)]
        if denied:
            raise UntrustedTypeError(bad, "refusing to load: the file names types that are never "
                                     "trusted because they run code or touch the system: "
                                     + ", ".join(denied))
        raise UntrustedTypeError(bad)
    refused = _rules.refused_uses(_uses(c), _default_trusted(), ts)
    if refused:
        raise _rules.refused(refused)
    rules = _rules.CallRules(_default_trusted(), ts, int(f.size))
    if check_env:
        env_text = f.environment_json
        if env_text and env_text != "null":
            check_environment(json.loads(env_text), stacklevel=5)  # check_environment, _load_inner, _load, load(s), caller
    try:
        tree = c.get("$tree")
        if tree is not None:
            resolved = {n: _resolve(n, ts) for n in names}
            obj = tree.build(resolved, _BuildContext(f, mmap, c["$packed"], c.get("$pool"), rules))
        else:
            dec = _Decoder(f, ts, mmap, c, rules)
            obj = dec.dec(c["root"])
    except VitrifyError:
        raise
    except RecursionError:
        raise LimitError("object tree nested too deeply") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        # numpy's and Python's own complaints about values from the file
        raise _invalid(f"invalid object data: {type(e).__name__}: {e}") from None
    prog.done()
    return obj


def load(path: Any, *, trusted: Iterable[str] | None = None, mmap: bool = True,
         check_env: bool = True, progress: bool | None = None, require_signature: Any = None) -> Any:
    """Load an object saved with :func:`dump`.

    Only trusted names are imported or called: numpy, scipy and scikit-learn types that dump()
    produces, plus the names in ``trusted``. A file naming anything else raises
    :class:`UntrustedTypeError` before anything is built. With ``mmap`` (default) large arrays are
    copy-on-write views of the mapped file.

    With ``require_signature=PUBKEY`` (a key file path, PEM text or the 32 raw key bytes) the file
    must carry a valid signature by that key (vitrify.signing), checked with every array checksum
    before anything is decoded; otherwise :class:`SignatureError` is raised.
    """
    f = _open(path, mmap)
    if require_signature is not None:  # signatures (issue 5): before anything is decoded
        from .signing import require_signature as _require_signature
        _require_signature(f, require_signature)
    return _load(f, trusted, mmap, check_env, progress)


def loads(data: bytes, *, trusted: Iterable[str] | None = None, check_env: bool = True,
          require_signature: Any = None) -> Any:
    """Like :func:`load`, from a file image in memory."""
    f = _core.File.from_bytes(data, True)
    if require_signature is not None:  # signatures (issue 5): before anything is decoded
        from .signing import require_signature as _require_signature
        _require_signature(f, require_signature)
    return _load(f, trusted, True, check_env, False)
