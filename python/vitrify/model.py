"""Save and load Python objects (scikit-learn estimators above all) without pickle.

``dump`` turns an object graph into the inert object encoding of docs/OBJECTS.md (a packed tree
and an array pool, written by the C++ encoder); ``load`` has the C++ decoder turn the file into
an inert, checked graph and builds the objects from it (python/src/bind_objects.cpp). Loading never
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

import contextlib
import datetime as _dt
import functools
import gc
import importlib
import json
import os
import platform
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


_invalid = _rules.bad_value


def _dtype_state(dt: np.dtype) -> Any:
    """The description the encoding stores for a numpy dtype (its str, or fields / sub-array)."""
    return json.loads(_core.numpy_dtype_state(dt))


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------

# The object encoding has one decoder, in C++ (vitrify::pyobj::decode_objects): it turns the file
# into an inert, checked graph (docs/OBJECTS.md). python/src/bind_objects.cpp builds Python
# objects from that graph; this module resolves trusted names for it and supplies the builders
# of special types, the call rule and the checks of built objects.

def _graph_dtype_uncached(s: str) -> np.dtype:
    if s in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        return _arrays.dtype_to_numpy(s)
    if s == "U":
        return np.dtype("<U0")
    return np.dtype(s)


@functools.lru_cache(maxsize=1024)
def _graph_dtype(s: str) -> np.dtype:
    """numpy dtype of a dtype string of the object graph (already checked by the decoder)."""
    return _graph_dtype_uncached(s)


def _object_array(items: list, shape: tuple) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for j, x in enumerate(items):
        out[j] = x
    return out.reshape(shape)


def _bytes_array(items: list, dt: np.dtype, shape: tuple) -> np.ndarray:
    if not items:
        return np.empty(shape, dtype=dt)
    return np.array(items, dtype=dt).reshape(shape)


def _no_dtype_builder(s: Any) -> Any:
    raise _invalid("numpy.dtype nodes are built by the object decoder")


_BUILDERS = _rules.special_builders(_no_dtype_builder)
_BIT_GENERATORS = _rules.BIT_GENERATORS
# Type names the builder makes itself: numpy arrays, scalars and dtypes, sets, complex numbers
# (graph node kinds), and the special types built from their state (never called by name).
_SPECIAL_NAMES = sorted({"numpy.ndarray", "numpy.generic", "numpy.dtype", *_BUILDERS})
_BIT_GENERATOR_NAMES = sorted(_BIT_GENERATORS)
_GRAPH_SPECIAL = {k: v for k, v in _BUILDERS.items()
                  if k not in ("numpy.dtype", "builtins.set", "builtins.frozenset", "builtins.complex")}


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


class _BuildContext:
    """What the builder of Python objects (_core.ObjectGraph.build) asks Python for: dtypes, the
    builders of special types (given their built state), the call rule and the checks of built
    objects."""

    frombuffer = staticmethod(np.frombuffer)
    empty = staticmethod(np.empty)
    np_dtype = staticmethod(np.dtype)
    dtype_from_str = staticmethod(_graph_dtype)
    object_check = staticmethod(_validators.object_check)
    state_check = staticmethod(_validators.state_check)
    special = _GRAPH_SPECIAL
    object_array = staticmethod(_object_array)
    bytes_array = staticmethod(_bytes_array)

    def __init__(self, rules: _rules.CallRules):
        self.rules = rules

    @staticmethod
    def aligned_copy(raw: np.ndarray) -> np.ndarray:
        """A writable copy of a uint8 array, aligned to 64 bytes like a file image."""
        buf = np.empty(raw.size + 64, dtype=np.uint8)
        start = -buf.ctypes.data % 64
        out = buf[start:start + raw.size]
        out[...] = raw
        return out

    @staticmethod
    def string_array(items: list, shape: tuple, hint: str) -> np.ndarray:
        return _arrays._strings_to_numpy(items, shape, {"numpy_dtype": hint})


def _object_graph(f: Any) -> Any:
    """The file's object graph, decoded and checked by the C++ decoder (nothing is built)."""
    text = f.content_json
    if not text or text == "null":
        raise _invalid("the file holds no Python object (use vitrify.load_arrays for plain arrays)")
    return _core.ObjectGraph(f)


def _names(g: Any) -> set[str]:
    return set(g.names(_SPECIAL_NAMES, _BIT_GENERATOR_NAMES))


def _uses(g: Any) -> set[tuple[str, str]]:
    return {tuple(u) for u in g.uses(_SPECIAL_NAMES)}


def _untrusted(g: Any, trusted: frozenset[str]) -> list[str]:
    """Names load would refuse: untrusted ones, and trusted ones the file would have load call
    against the call rule (vitrify._reconstructors)."""
    bad = {n for n in _names(g) if n not in trusted or _denied(n)}
    bad.update(_rules.refused_uses(_uses(g), _default_trusted(), trusted))
    return sorted(bad)


def _open(source: Any, mmap: bool) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.File.from_bytes(source, True)
    return _core.File.open(os.fspath(source), bool(mmap))


def get_untrusted_types(path: Any = None, *, data: bytes | None = None, trusted: Iterable[str] | None = None) -> list[str]:
    """The names in a file that load() would refuse with the given ``trusted`` list. Nothing is
    imported or built."""
    f = _open(data if data is not None else path, True)
    return _untrusted(_object_graph(f), _trust_set(trusted))


def _load(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None) -> Any:
    with _gc_paused():
        return _load_inner(f, trusted, mmap, check_env, progress)


def _load_inner(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None) -> Any:
    prog = _Progress("loading", progress)
    g = _object_graph(f)
    ts = _trust_set(trusted)
    names = _names(g)
    bad = sorted(n for n in names if n not in ts or _denied(n))
    if bad:
        denied = [n for n in bad if _denied(n)]
        if denied:
            raise UntrustedTypeError(bad, "refusing to load: the file names types that are never "
                                     "trusted because they run code or touch the system: "
                                     + ", ".join(denied))
        raise UntrustedTypeError(bad)
    refused = _rules.refused_uses(_uses(g), _default_trusted(), ts)
    if refused:
        raise _rules.refused(refused)
    rules = _rules.CallRules(_default_trusted(), ts, int(f.size))
    if check_env:
        env_text = f.environment_json
        if env_text and env_text != "null":
            check_environment(json.loads(env_text), stacklevel=5)  # check_environment, _load_inner, _load, load(s), caller
    try:
        resolved = {n: _resolve(n, ts) for n in names}
        obj = g.build(resolved, _BuildContext(rules), not mmap)
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
