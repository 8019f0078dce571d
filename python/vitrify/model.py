"""Save and load Python objects (scikit-learn estimators above all) without pickle.

``dump`` turns an object graph into the inert typed-value tree of the vitrify format (stored in
the header's ``content`` section) plus out-of-line arrays; ``load`` rebuilds it. Loading never
imports a module or calls anything whose name is not on the trusted list, and the file cannot
widen that list. Array data never goes through pickle.

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

import copyreg
import datetime as _dt
import importlib
import io
import json
import os
import platform
import sys
import threading
import time
import types
import warnings
from typing import Any, Iterable

import numpy as np

from . import _core
from . import arrays as _arrays
from .errors import ArgumentError, FormatError, VitrifyError

CONTENT_KIND = "vitrify.python-object"
CONTENT_VERSION = 1
OBJECT_VERSION = 1


class UntrustedTypeError(VitrifyError):
    """The file names types or functions that are not trusted; nothing was built."""

    def __init__(self, names: list[str], message: str | None = None):
        self.names = list(names)
        super().__init__(message or (
            "refusing to load: the file names untrusted types: " + ", ".join(self.names)
            + ". Review them (vitrify.get_untrusted_types) and pass trusted=[...] to admit them."))


class InvalidStateError(FormatError):
    """The data of a trusted type breaks an invariant (e.g. a tree child index out of range)."""


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


def default_trusted_types() -> frozenset[str]:
    """The names load() admits without being told: numpy, scipy, scikit-learn, builtins."""
    return _BASE_TRUSTED | _sklearn_trusted()


def _trust_set(trusted: Iterable[str] | None) -> frozenset[str]:
    base = default_trusted_types()
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


def _resolve(name: str, trusted: frozenset[str]) -> Any:
    """Import a trusted name. Never called for a name outside ``trusted``."""
    if name not in trusted or _denied(name):
        raise UntrustedTypeError([name])
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

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_ATOMS = (type(None), bool, str)
_MIN_ARRAY_BYTES_OUT_OF_LINE = 0  # every numeric array goes to the array table


def _obj(type_name: str, state: Any, version: int = OBJECT_VERSION) -> dict:
    return {"$object": {"type": type_name, "version": version, "state": state}}


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
    if dt.fields is not None:
        return {"fields": [[n, _dtype_state(dt.fields[n][0]), int(dt.fields[n][1])] for n in dt.names],
                "itemsize": int(dt.itemsize), "aligned": bool(dt.isalignedstruct)}
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": _dtype_state(base), "shape": list(shape)}
    return dt.str


_SIMPLE_DTYPE_CHARS = set("?bBhHiIlLqQefdgFDGUSMmOV")


def _dtype_from_state(s: Any, depth: int = 0) -> np.dtype:
    if depth > 8:
        raise FormatError("dtype description nested too deeply")
    if isinstance(s, str):
        import re
        if not re.fullmatch(r"[<>|=]?([biufcUSVOMm?])\d*(\[[a-zA-Z0-9]+\])?", s):
            raise FormatError(f"invalid dtype {s!r}")
        return np.dtype(s)
    if isinstance(s, dict) and "fields" in s:
        names, formats, offsets = [], [], []
        for item in s["fields"]:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[2], int)):
                raise FormatError("invalid structured dtype field")
            names.append(item[0])
            formats.append(_dtype_from_state(item[1], depth + 1))
            offsets.append(item[2])
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": int(s["itemsize"]), "aligned": bool(s.get("aligned", False))})
    if isinstance(s, dict) and "base" in s:
        return np.dtype((_dtype_from_state(s["base"], depth + 1), tuple(int(x) for x in s["shape"])))
    raise FormatError(f"invalid dtype description {s!r}")


class _Encoder:
    def __init__(self, writer: Any, compress: Any):
        self.w = writer
        self.compress = compress
        self.n_arrays = 0
        self.shared_ids: dict[int, int] = {}   # id(obj) -> shared id, for objects seen twice
        self.multi: set[int] = set()
        self.emitted: set[int] = set()
        self.keep: list[Any] = []              # keep reduce() results alive so ids stay unique
        self.reduce_cache: dict[int, Any] = {}
        self.type_names: set[str] = set()
        self.array_bytes = 0

    # -- pass 1: which objects are referenced more than once --
    def count(self, root: Any) -> None:
        seen: set[int] = set()
        stack = [root]
        while stack:
            obj = stack.pop()
            if isinstance(obj, _ATOMS) or type(obj) in (int, float):
                continue
            i = id(obj)
            if i in seen:
                self.multi.add(i)
                continue
            seen.add(i)
            self.keep.append(obj)
            stack.extend(self._children(obj))

    def _children(self, obj: Any) -> list:
        t = type(obj)
        if t in (list, tuple, set, frozenset):
            return list(obj)
        if t is dict:
            out = []
            for k, v in obj.items():
                out.append(k)
                out.append(v)
            return out
        if type(obj) is np.ma.MaskedArray:
            return [np.ma.getdata(obj), obj.fill_value]
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                return list(obj.flat)
            return []
        if isinstance(obj, (np.generic, np.dtype, bytes, bytearray, complex, type, types.FunctionType,
                            types.BuiltinFunctionType, np.ufunc, np.random.RandomState,
                            np.random.Generator, slice, range)):
            return []
        rv = self._reduce(obj)
        if isinstance(rv, str):
            return []
        out = list(rv[1]) if len(rv) > 1 and rv[1] is not None else []
        if len(rv) > 2 and rv[2] is not None:
            out.append(rv[2])
        if len(rv) > 3 and rv[3] is not None:
            items = list(rv[3])
            self.reduce_cache[id(obj)] = rv[:3] + (items,) + tuple(rv[4:])
            out.extend(items)
        if len(rv) > 4 and rv[4] is not None:
            items = list(rv[4])
            cur = self.reduce_cache.get(id(obj), rv)
            self.reduce_cache[id(obj)] = tuple(cur[:4]) + (items,)
            for k, v in items:
                out.append(k)
                out.append(v)
        return out

    def _reduce(self, obj: Any) -> Any:
        i = id(obj)
        rv = self.reduce_cache.get(i)
        if rv is None:
            red = copyreg.dispatch_table.get(type(obj))
            try:
                rv = red(obj) if red is not None else obj.__reduce_ex__(4)
            except Exception as e:
                raise ArgumentError(f"cannot save {type(obj).__qualname__} object: {e}") from None
            if not isinstance(rv, (tuple, str)):
                raise ArgumentError(f"cannot save {type(obj).__qualname__}: __reduce_ex__ returned {type(rv).__name__}")
            self.reduce_cache[i] = rv
            self.keep.append(rv)
        return rv

    # -- pass 2: encode --
    def enc(self, obj: Any) -> Any:
        t = type(obj)
        if obj is None or t is bool or t is str:
            return obj
        if t is int:
            return obj if _INT64_MIN <= obj <= _INT64_MAX else {"$int": str(obj)}
        if t is float:
            if obj != obj:
                return {"$float": "nan"}
            if obj in (float("inf"), float("-inf")):
                return {"$float": "inf" if obj > 0 else "-inf"}
            return obj
        i = id(obj)
        if i in self.multi:
            if i in self.emitted:
                return {"$ref": self.shared_ids[i]}
            sid = len(self.shared_ids)
            self.shared_ids[i] = sid
            self.emitted.add(i)
            return {"$shared": {"id": sid, "value": self._enc_new(obj, t)}}
        return self._enc_new(obj, t)

    def _enc_new(self, obj: Any, t: type) -> Any:
        if t is list:
            return [self.enc(x) for x in obj]
        if t is tuple:
            return {"$tuple": [self.enc(x) for x in obj]}
        if t is dict:
            if all(type(k) is str and not k.startswith("$") for k in obj):
                return {k: self.enc(v) for k, v in obj.items()}
            return {"$dict": [[self.enc(k), self.enc(v)] for k, v in obj.items()]}
        if t is bytes:
            import base64
            return {"$bytes": base64.b64encode(obj).decode("ascii")}
        if isinstance(obj, np.ndarray) and t in (np.ndarray, np.memmap):
            return self._enc_array(obj)
        if t is np.ma.MaskedArray:
            return _obj("numpy.ma.MaskedArray", {
                "data": self.enc(np.ma.getdata(obj)), "mask": self.enc(np.ma.getmaskarray(obj)),
                "fill_value": self.enc(obj.fill_value)})
        if isinstance(obj, np.generic):
            return self._enc_scalar(obj)
        if isinstance(obj, np.dtype):
            return _obj("numpy.dtype", _dtype_state(obj))
        if t in (set, frozenset):
            items = [self.enc(x) for x in _stable_order(obj)]
            return _obj("builtins." + t.__name__, items)
        if t is complex:
            return _obj("builtins.complex", [self.enc(obj.real), self.enc(obj.imag)])
        if t is slice:
            return _obj("builtins.slice", [self.enc(obj.start), self.enc(obj.stop), self.enc(obj.step)])
        if t is range:
            return _obj("builtins.range", [obj.start, obj.stop, obj.step])
        if t is bytearray:
            import base64
            return _obj("builtins.bytearray", {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")})
        if t is np.random.RandomState:
            st = obj.get_state(legacy=True)
            return _obj("numpy.random.RandomState", self.enc(st))
        if t is np.random.Generator:
            bg = obj.bit_generator
            return _obj("numpy.random.Generator", {"bit_generator": _canonical_name(type(bg)),
                                                     "state": self.enc(bg.state)})
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, np.ufunc)):
            return self._global(obj)
        return self._enc_reduce(obj)

    def _global(self, obj: Any) -> Any:
        name = _canonical_name(obj)
        self.type_names.add(name)
        return _obj("vitrify.global", name)

    def _enc_array(self, a: np.ndarray) -> Any:
        dt = a.dtype
        shape = [int(s) for s in a.shape]
        if dt.hasobject:
            if dt.fields is not None:
                raise ArgumentError("structured arrays with object fields cannot be saved")
            if a.size and all(type(x) is str for x in a.flat):
                return _obj("numpy.ndarray", {"strings": self._add_array(a), "dtype": "O"})
            return _obj("numpy.ndarray", {"shape": shape, "dtype": "O",
                                          "items": [self.enc(x) for x in a.ravel(order="C")]})
        if dt.kind == "U":
            return _obj("numpy.ndarray", {"strings": self._add_array(a), "dtype": dt.str})
        if dt.kind == "S":
            return _obj("numpy.ndarray", {"bytes": self._add_array(np.ascontiguousarray(a).reshape(-1).view(np.uint8)),
                                          "shape": shape, "dtype": dt.str})
        order = "C"
        if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
            order = "F"
            stored = a.T  # C-contiguous view of the same memory: no copy
        else:
            stored = a
        vname = _arrays.numpy_to_dtype(dt)
        if vname is not None and dt.kind not in "mM":
            st = {"data": self._add_array(stored)}
            if order == "F":
                st["order"] = "F"
            if dt.byteorder == ">":
                st["dtype"] = dt.str
            return _obj("numpy.ndarray", st)
        # Structured, datetime, and other fixed-size dtypes: raw bytes + a checked description.
        if not _structured_descr_ok(dt):
            raise ArgumentError(f"cannot save numpy arrays of dtype {dt!r}")
        raw = np.ascontiguousarray(stored)
        st = {"raw": self._add_array(raw.reshape(-1).view(np.uint8)), "shape": shape,
              "dtype": _dtype_state(dt)}
        if order == "F":
            st["order"] = "F"
        return _obj("numpy.ndarray", st)

    def _add_array(self, a: np.ndarray) -> dict:
        name = str(self.n_arrays)
        self.n_arrays += 1
        codec = self.compress(a)
        _arrays._add_one(self.w, name, a, codec)
        self.array_bytes += a.nbytes
        return {"$array": name}

    def _enc_scalar(self, x: np.generic) -> Any:
        dt = x.dtype
        if dt.hasobject:
            raise ArgumentError("numpy object scalars cannot be saved")
        import base64
        raw = np.asarray(x).tobytes()
        return _obj("numpy.generic", {"dtype": _dtype_state(dt), "bytes": base64.b64encode(raw).decode("ascii")})

    def _enc_reduce(self, obj: Any) -> Any:
        rv = self._reduce(obj)
        if isinstance(rv, str):
            # A global reference (module-level singleton such as a function object).
            mod = getattr(obj, "__module__", None)
            name = f"{mod}.{rv}" if mod else rv
            self.type_names.add(name)
            return _obj("vitrify.global", name)
        func, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        listitems = rv[3] if len(rv) > 3 else None
        dictitems = rv[4] if len(rv) > 4 else None
        out: dict[str, Any] = {}
        if func is copyreg.__newobj__:
            cls = args[0]
            tname = _canonical_name(cls)
            if len(args) > 1:
                out["args"] = [self.enc(x) for x in args[1:]]
            out["new"] = True
        elif func is copyreg.__newobj_ex__:
            cls, a, kw = args
            tname = _canonical_name(cls)
            out["new"] = True
            out["args"] = [self.enc(x) for x in a]
            out["kwargs"] = self.enc(dict(kw))
        elif func is copyreg._reconstructor:
            cls, base, bstate = args
            tname = _canonical_name(cls)
            if base is not object or bstate is not None:
                raise ArgumentError(f"cannot save {tname}: unsupported copyreg reconstruction")
            out["new"] = True
        else:
            tname = _canonical_name(func)
            out["args"] = [self.enc(x) for x in (args or ())]
        self.type_names.add(tname)
        if state is not None:
            out["state"] = self.enc(state)
        if listitems is not None:
            out["listitems"] = [self.enc(x) for x in listitems]
        if dictitems is not None:
            out["dictitems"] = [[self.enc(k), self.enc(v)] for k, v in dictitems]
        return _obj(tname, out)


def _stable_order(s: Iterable) -> list:
    items = list(s)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------

_PLACEHOLDER = object()


class _Decoder:
    def __init__(self, f: Any, infos: list, trusted: frozenset[str], mmap: bool):
        self.f = f
        self.infos = {info["name"]: (i, info) for i, info in enumerate(infos)}
        self.trusted = trusted
        self.mmap = mmap
        self.shared: dict[int, Any] = {}
        self.depth = 0

    def array(self, ref: Any) -> np.ndarray:
        if not (isinstance(ref, dict) and len(ref) == 1 and "$array" in ref):
            raise FormatError("expected an array reference")
        name = ref["$array"]
        try:
            i, info = self.infos[name]
        except KeyError:
            raise FormatError(f"array {name!r} is not in the file") from None
        return _arrays._load_array(self.f, i, info, self.mmap, False)

    def dec(self, v: Any) -> Any:
        t = type(v)
        if v is None or t is bool or t is str or t is int or t is float:
            return v
        if t is list:
            return [self.dec(x) for x in v]
        if t is not dict:
            raise FormatError(f"unexpected JSON value {v!r}")
        if len(v) == 1:
            (k, x), = v.items()
            if k.startswith("$"):
                return self.tag(k, x)
        return {k: self.dec(x) for k, x in v.items()}

    def tag(self, k: str, x: Any) -> Any:
        if k == "$tuple":
            return tuple(self.dec(e) for e in x)
        if k == "$float":
            return float(x)
        if k == "$int":
            return int(x)
        if k == "$bytes":
            import base64
            return base64.b64decode(x, validate=True)
        if k == "$dict":
            out = {}
            for kk, vv in x:
                key = self.dec(kk)
                try:
                    out[key] = self.dec(vv)
                except TypeError:
                    raise FormatError(f"unhashable dict key {key!r}") from None
            return out
        if k == "$shared":
            sid = x["id"]
            val = x["value"]
            # Objects register themselves (so cycles resolve) before decoding their state.
            if isinstance(val, dict) and len(val) == 1 and "$object" in val:
                return self.object(val["$object"], sid)
            if type(val) is list:
                out: list = []
                self.shared[sid] = out
                out.extend(self.dec(e) for e in val)
                return out
            if type(val) is dict and not (len(val) == 1 and next(iter(val)).startswith("$")):
                d: dict = {}
                self.shared[sid] = d
                for kk, vv in val.items():
                    d[kk] = self.dec(vv)
                return d
            if type(val) is dict and "$dict" in val:
                d = {}
                self.shared[sid] = d
                for kk, vv in val["$dict"]:
                    d[self.dec(kk)] = self.dec(vv)
                return d
            self.shared[sid] = _PLACEHOLDER
            out2 = self.dec(val)
            self.shared[sid] = out2
            return out2
        if k == "$ref":
            obj = self.shared.get(x, _PLACEHOLDER)
            if obj is _PLACEHOLDER:
                raise FormatError(f"$ref {x} refers to a value that cannot be built yet (cycle through a tuple)")
            return obj
        if k == "$object":
            return self.object(x, None)
        if k == "$array":
            return self.array({"$array": x})
        raise FormatError(f"unknown tag {k}")

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
        if not isinstance(st, dict):
            raise FormatError(f"object state of {tname} must be a dict")
        if st.get("new"):
            if not isinstance(target, type):
                raise FormatError(f"{tname} is not a class")
            args = [self.dec(a) for a in st.get("args", [])]
            kwargs = self.dec(st["kwargs"]) if "kwargs" in st else {}
            obj = target.__new__(target, *args, **kwargs)
        else:
            args = [self.dec(a) for a in st.get("args", [])]
            obj = target(*args)
        if sid is not None:
            self.shared[sid] = obj
        if "state" in st:
            state = self.dec(st["state"])
            _validate_state(tname, state)
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
        if "listitems" in st:
            items = [self.dec(e) for e in st["listitems"]]
            if hasattr(obj, "extend"):
                obj.extend(items)
            else:
                for e in items:
                    obj.append(e)
        if "dictitems" in st:
            for kk, vv in st["dictitems"]:
                obj[self.dec(kk)] = self.dec(vv)
        _validate_object(tname, obj)
        return obj


def _is_default_setstate(obj: Any) -> bool:
    fn = getattr(type(obj), "__setstate__", None)
    return fn is None or fn is getattr(object, "__setstate__", None)


def _dec_ndarray(d: _Decoder, st: dict) -> np.ndarray:
    if "data" in st:
        a = d.array(st["data"])
        if "dtype" in st:
            a = a.astype(_dtype_from_state(st["dtype"]))
        return a.T if st.get("order") == "F" else a
    if "strings" in st:
        # The array table records the numpy dtype (object or <U n) and the load restores it.
        return d.array(st["strings"])
    if "items" in st:
        shape = tuple(int(s) for s in st["shape"])
        items = [d.dec(x) for x in st["items"]]
        n = 1
        for s in shape:
            n *= s
        if len(items) != n:
            raise FormatError("object array item count does not match its shape")
        out = np.empty(n, dtype=object)
        for j, x in enumerate(items):
            out[j] = x
        return out.reshape(shape)
    if "raw" in st or "bytes" in st:
        dt = _dtype_from_state(st["dtype"])
        if dt.hasobject:
            raise FormatError("object dtypes cannot come from raw bytes")
        raw = d.array(st.get("raw", st.get("bytes")))
        shape = tuple(int(s) for s in st["shape"])
        n = 1
        for s in shape:
            n *= s
        if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size != n * dt.itemsize:
            raise FormatError("raw array size does not match dtype and shape")
        a = raw.view(dt).reshape(shape[::-1] if st.get("order") == "F" else shape)
        return a.T if st.get("order") == "F" else a
    raise FormatError("invalid numpy.ndarray state")


def _dec_generic(d: _Decoder, st: dict) -> Any:
    import base64
    dt = _dtype_from_state(st["dtype"])
    if dt.hasobject:
        raise FormatError("object scalars are not allowed")
    raw = base64.b64decode(st["bytes"], validate=True)
    if len(raw) != dt.itemsize:
        raise FormatError("numpy scalar has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dt)[0]


def _dec_random_state(d: _Decoder, st: Any) -> np.random.RandomState:
    rs = np.random.RandomState()
    rs.set_state(d.dec(st))
    return rs


_BIT_GENERATORS = {"numpy.random.PCG64", "numpy.random.PCG64DXSM", "numpy.random.MT19937",
                   "numpy.random.Philox", "numpy.random.SFC64"}


def _dec_generator(d: _Decoder, st: dict) -> np.random.Generator:
    name = st["bit_generator"]
    if name not in _BIT_GENERATORS:
        raise UntrustedTypeError([name])
    bg = getattr(np.random, name.rsplit(".", 1)[1])()
    bg.state = d.dec(st["state"])
    return np.random.Generator(bg)


def _dec_set(kind):
    def f(d: _Decoder, st: Any) -> Any:
        return kind(d.dec(e) for e in st)
    return f


_SPECIAL_DECODERS = {
    "numpy.ndarray": _dec_ndarray,
    "numpy.generic": _dec_generic,
    "numpy.dtype": lambda d, st: _dtype_from_state(st),
    "numpy.random.RandomState": _dec_random_state,
    "numpy.random.Generator": _dec_generator,
    "numpy.ma.MaskedArray": lambda d, st: np.ma.MaskedArray(
        d.dec(st["data"]), mask=d.dec(st["mask"]), fill_value=d.dec(st["fill_value"])),
    "builtins.set": _dec_set(set),
    "builtins.frozenset": _dec_set(frozenset),
    "builtins.complex": lambda d, st: complex(float(d.dec(st[0])), float(d.dec(st[1]))),
    "builtins.slice": lambda d, st: slice(*(d.dec(x) for x in st)),
    "builtins.range": lambda d, st: range(*(int(x) for x in st)),
    "builtins.bytearray": lambda d, st: bytearray(d.dec(st)),
}


# ------------------------------------------------------------------------------------------
# Validation of data that scikit-learn would trust blindly
# ------------------------------------------------------------------------------------------

def _validate_state(tname: str, state: Any) -> None:
    if tname == "sklearn.tree._tree.Tree":
        _validate_tree_state(state)


def _validate_tree_state(state: Any) -> None:
    if not isinstance(state, dict):
        raise InvalidStateError("Tree state must be a dict")
    nodes = state.get("nodes")
    values = state.get("values")
    node_count = state.get("node_count")
    if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None or not isinstance(values, np.ndarray):
        raise InvalidStateError("Tree state lacks its node and value arrays")
    for fld in ("left_child", "right_child", "feature"):
        if fld not in nodes.dtype.names:
            raise InvalidStateError(f"Tree nodes lack the field {fld!r}")
    n = nodes.shape[0] if nodes.ndim == 1 else -1
    if n < 0 or not isinstance(node_count, (int, np.integer)) or int(node_count) != n:
        raise InvalidStateError("Tree node_count does not match its node array")
    if values.ndim != 3 or values.shape[0] != n:
        raise InvalidStateError("Tree values do not have one row per node")
    left = nodes["left_child"].astype(np.int64)
    right = nodes["right_child"].astype(np.int64)
    feat = nodes["feature"].astype(np.int64)
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise InvalidStateError("Tree node has exactly one child")
    internal = ~leaf
    idx = np.arange(n)
    if np.any((left[internal] <= idx[internal]) | (left[internal] >= n) |
              (right[internal] <= idx[internal]) | (right[internal] >= n)):
        raise InvalidStateError("Tree child index out of range (children must follow their parent)")
    if np.any(feat[internal] < 0):
        raise InvalidStateError("Tree split feature index is negative")


def _validate_object(tname: str, obj: Any) -> None:
    if tname == "sklearn.tree._tree.Tree":
        if obj.node_count and int(np.max(obj.feature)) >= obj.n_features:
            raise InvalidStateError("Tree split feature index is not below n_features")
    elif tname.startswith("scipy.sparse.") and hasattr(obj, "check_format"):
        try:
            obj.check_format(full_check=True)
        except Exception as e:
            raise InvalidStateError(f"{tname}: invalid sparse structure: {e}") from None
    elif tname == "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor":
        nodes = getattr(obj, "nodes", None)
        if nodes is None or nodes.dtype.names is None:
            raise InvalidStateError("TreePredictor without nodes")
        n = nodes.shape[0]
        leaf = nodes["is_leaf"].astype(bool)
        for fld in ("left", "right"):
            c = nodes[fld].astype(np.int64)[~leaf]
            if np.any((c < 0) | (c >= n)):
                raise InvalidStateError("TreePredictor child index out of range")
        if "bitset_idx" in nodes.dtype.names:
            cat = nodes["is_categorical"].astype(bool) & ~leaf
            bi = nodes["bitset_idx"].astype(np.int64)[cat]
            for bs in (obj.raw_left_cat_bitsets, obj.binned_left_cat_bitsets):
                if bi.size and (np.any(bi < 0) or np.any(bi >= bs.shape[0])):
                    raise InvalidStateError("TreePredictor bitset index out of range")
    elif tname in ("sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor",
                   "sklearn.tree.ExtraTreeClassifier", "sklearn.tree.ExtraTreeRegressor"):
        tree = getattr(obj, "tree_", None)
        nf = getattr(obj, "n_features_in_", None)
        if tree is not None and nf is not None and tree.n_features != nf:
            raise InvalidStateError(f"{tname}: tree_ has {tree.n_features} features, the estimator {nf}")
    elif tname in ("sklearn.ensemble.HistGradientBoostingClassifier",
                   "sklearn.ensemble.HistGradientBoostingRegressor"):
        nf = getattr(obj, "n_features_in_", None)
        for it in getattr(obj, "_predictors", []) or []:
            for pred in it:
                nodes = pred.nodes
                leaf = nodes["is_leaf"].astype(bool)
                f = nodes["feature_idx"].astype(np.int64)[~leaf]
                if nf is not None and f.size and (f.min() < 0 or f.max() >= nf):
                    raise InvalidStateError(f"{tname}: split feature index out of range")
    elif tname in ("sklearn.neighbors.KDTree", "sklearn.neighbors.BallTree",
                   "sklearn.neighbors._kd_tree.KDTree64", "sklearn.neighbors._ball_tree.BallTree64",
                   "sklearn.neighbors._kd_tree.KDTree32", "sklearn.neighbors._ball_tree.BallTree32"):
        data, idx, nd = obj.get_arrays()[0], obj.get_arrays()[1], obj.get_arrays()[2]
        if idx.size and (idx.min() < 0 or idx.max() >= data.shape[0]):
            raise InvalidStateError("neighbors tree index array points outside its data")
        if nd.size and (np.any(nd["idx_start"] < 0) or np.any(nd["idx_end"] > idx.shape[0])
                        or np.any(nd["idx_start"] > nd["idx_end"])):
            raise InvalidStateError("neighbors tree node ranges point outside the index array")


# ------------------------------------------------------------------------------------------
# Environment and schema
# ------------------------------------------------------------------------------------------

# Packages whose versions decide whether a saved model loads and predicts the same.
_ENV_PACKAGES = ("numpy", "scipy", "scikit-learn")


def _package_versions() -> dict:
    out = {}
    from importlib import metadata
    for p in _ENV_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def current_environment(created: bool = True) -> dict:
    env = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "vitrify": _core.library_version,
        "packages": _package_versions(),
    }
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
        params = obj.get_params(deep=False)
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


def _init_defaults(cls: type) -> dict:
    """Default values of the constructor's parameters (without building an instance)."""
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

def _compress_policy(compress: Any):
    if isinstance(compress, dict):
        raise ArgumentError("dump(compress=...) takes None, 'zstd', an int level or (codec, level)")
    spec = _arrays._codec_spec(compress, "compress")
    if spec[0] == "raw":
        return lambda a: spec
    # Small arrays are not worth a zstd frame; keep them raw (and mappable).
    return lambda a: spec if a.nbytes >= 256 else ("raw", 0)


class _Progress:
    """Prints progress to stderr for operations that take longer than about a second."""

    def __init__(self, what: str, enabled: bool | None):
        if enabled is None:
            enabled = os.environ.get("VITRIFY_PROGRESS", "1") != "0" and sys.stderr.isatty()
        self.enabled = enabled
        self.what = what
        self.start = time.perf_counter()
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


def _write_object(w: Any, obj: Any, compress: Any, metadata: Any, progress: bool | None) -> None:
    from . import values as _values
    prog = _Progress("saving", progress)
    enc = _Encoder(w, _compress_policy(compress))
    enc.count(obj)
    root = enc.enc(obj)
    prog.update(f"{enc.n_arrays} arrays, {enc.array_bytes / 2**20:.1f} MiB")
    content = {"kind": CONTENT_KIND, "version": CONTENT_VERSION, "root": root,
               "types": sorted(enc.type_names)}
    try:
        content["schema"] = _schema(obj)
    except Exception:  # the schema is a convenience; never fail a save over it
        pass
    w.set_content(json.dumps(content, separators=(",", ":"), ensure_ascii=False, allow_nan=False))
    w.set_environment(json.dumps(current_environment(), separators=(",", ":")))
    if metadata is not None:
        w.set_metadata(_values.encode(metadata, where="metadata"))
    prog.done()


def dump(obj: Any, path: Any, *, compress: Any = None, metadata: Any = None,
         progress: bool | None = None) -> None:
    """Save ``obj`` (a fitted scikit-learn estimator, pipeline, or any object built from numpy,
    scipy and standard containers) to ``path`` atomically. Arrays stay raw and memory-mappable
    unless ``compress`` is ``"zstd"``, a zstd level, or ``("zstd", level)``."""
    w = _core.Writer.create(os.fspath(path), 64, True)
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


def _content(f: Any) -> dict:
    text = f.content_json
    if not text or text == "null":
        raise FormatError("the file holds no Python object (use vitrify.load_arrays for plain arrays)")
    c = json.loads(text)
    if not isinstance(c, dict) or c.get("kind") != CONTENT_KIND:
        raise FormatError("the file's content is not a vitrify Python object")
    if c.get("version") != CONTENT_VERSION:
        raise FormatError(f"object encoding version {c.get('version')} is not supported (this vitrify reads {CONTENT_VERSION})")
    return c


def _collect_types(v: Any, out: set) -> None:
    stack = [v]
    while stack:
        x = stack.pop()
        if type(x) is list:
            stack.extend(x)
        elif type(x) is dict:
            if len(x) == 1 and "$object" in x:
                spec = x["$object"]
                if isinstance(spec, dict):
                    t = spec.get("type")
                    if t == "vitrify.global":
                        if isinstance(spec.get("state"), str):
                            out.add(spec["state"])
                    elif isinstance(t, str) and t not in _SPECIAL_DECODERS:
                        out.add(t)
                    if t == "numpy.random.Generator" and isinstance(spec.get("state"), dict):
                        bg = spec["state"].get("bit_generator")
                        if isinstance(bg, str) and bg not in _BIT_GENERATORS:
                            out.add(bg)
                    stack.append(spec.get("state"))
            else:
                stack.extend(x.values())


def _untrusted(c: dict, trusted: frozenset[str]) -> list[str]:
    names: set[str] = set()
    _collect_types(c.get("root"), names)
    return sorted(n for n in names if n not in trusted or _denied(n))


def _open(source: Any, mmap: bool) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.File.from_bytes(source, True)
    return _core.File.open(os.fspath(source), bool(mmap))


def get_untrusted_types(path: Any = None, *, data: bytes | None = None, trusted: Iterable[str] | None = None) -> list[str]:
    """The names in a file that load() would refuse with the given ``trusted`` list. Nothing is
    imported or built."""
    f = _open(data if data is not None else path, True)
    return _untrusted(_content(f), _trust_set(trusted))


def _load(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None) -> Any:
    prog = _Progress("loading", progress)
    c = _content(f)
    ts = _trust_set(trusted)
    bad = _untrusted(c, ts)
    if bad:
        denied = [n for n in bad if _denied(n)]
        if denied:
            raise UntrustedTypeError(bad, "refusing to load: the file names types that are never "
                                     "trusted because they run code or touch the system: "
                                     + ", ".join(denied))
        raise UntrustedTypeError(bad)
    if check_env:
        env_text = f.environment_json
        if env_text and env_text != "null":
            check_environment(json.loads(env_text), stacklevel=4)
    dec = _Decoder(f, f.arrays, ts, mmap)
    try:
        obj = dec.dec(c["root"])
    except VitrifyError:
        raise
    except RecursionError:
        raise FormatError("object tree nested too deeply") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise FormatError(f"invalid object data: {type(e).__name__}: {e}") from None
    prog.done()
    return obj


def load(path: Any, *, trusted: Iterable[str] | None = None, mmap: bool = True,
         check_env: bool = True, progress: bool | None = None) -> Any:
    """Load an object saved with :func:`dump`.

    Only trusted names are imported or called: numpy, scipy and scikit-learn types that dump()
    produces, plus the names in ``trusted``. A file naming anything else raises
    :class:`UntrustedTypeError` before anything is built. With ``mmap`` (default) large arrays are
    copy-on-write views of the mapped file.
    """
    f = _open(path, mmap)
    return _load(f, trusted, mmap, check_env, progress)


def loads(data: bytes, *, trusted: Iterable[str] | None = None, check_env: bool = True) -> Any:
    """Like :func:`load`, from a file image in memory."""
    f = _core.File.from_bytes(data, True)
    return _load(f, trusted, True, check_env, False)
