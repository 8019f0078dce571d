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
import gc
import json
import os
import sys
import threading
import time
from typing import Any, Iterable

import numpy as np

from . import _core
from . import _reconstructors as _rules
from . import arrays as _arrays
from ._reconstructors import InvalidStateError, ResourceLimitError, UntrustedTypeError  # noqa: F401
from .errors import ArgumentError, LimitError, VitrifyError
# The concerns of this module live in their own files; their names stay importable from here.
from ._decode import _BuildContext, _names, _object_graph, _SPECIAL_NAMES, _untrusted, _uses  # noqa: F401
from ._environment import (EnvironmentMismatchWarning, _package_versions, check_environment,  # noqa: F401
                           current_environment)
from ._schema import _jsonable_plain, _schema  # noqa: F401
from ._trust import (_canonical_name, _default_trusted, _denied, _import_name, _resolve,  # noqa: F401
                     _sklearn_trusted, _trust_set, default_trusted_types)

CONTENT_KIND = "vitrify.python-object"
CONTENT_VERSION = 3
_READ_VERSIONS = (1, 2, 3)
OBJECT_VERSION = 1


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


def _open(source: Any, mmap: bool) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.File.from_bytes(source, True)
    return _core.File.open(os.fspath(source), bool(mmap))


def get_untrusted_types(path: Any = None, *, data: bytes | None = None, trusted: Iterable[str] | None = None) -> list[str]:
    """The names in a file that load() would refuse with the given ``trusted`` list. Nothing is
    imported or built."""
    f = _open(data if data is not None else path, True)
    return _untrusted(_object_graph(f), _trust_set(trusted))


def _load(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None,
          extra_bytes: int | None = None) -> Any:
    with _gc_paused():
        return _load_inner(f, trusted, mmap, check_env, progress, extra_bytes)


def _check_extra_bytes(extra_bytes: Any) -> int | None:
    if extra_bytes is None:
        return None
    if isinstance(extra_bytes, bool) or not isinstance(extra_bytes, int) or not 0 <= extra_bytes < 2 ** 63:
        raise ArgumentError("extra_bytes must be a non-negative integer (bytes)")
    return extra_bytes


def _load_inner(f: Any, trusted: Any, mmap: bool, check_env: bool, progress: bool | None,
                extra_bytes: int | None = None) -> Any:
    prog = _Progress("loading", progress)
    g = _object_graph(f, extra_bytes)
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
    rules = _rules.CallRules(_default_trusted(), ts, int(f.size), extra_bytes)
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
         check_env: bool = True, progress: bool | None = None, require_signature: Any = None,
         extra_bytes: int | None = None) -> Any:
    """Load an object saved with :func:`dump`.

    Only trusted names are imported or called: numpy, scipy and scikit-learn types that dump()
    produces, plus the names in ``trusted``. A file naming anything else raises
    :class:`UntrustedTypeError` before anything is built. With ``mmap`` (default) large arrays are
    copy-on-write views of the mapped file.

    With ``require_signature=PUBKEY`` (a key file path, PEM text or the 32 raw key bytes) the file
    must carry a valid signature by that key (vitrify.signing), checked with every array checksum
    before anything is decoded; otherwise :class:`SignatureError` is raised.

    Every size the file declares is charged to a budget tied to the file's size (docs/SECURITY.md):
    64 bytes of decoded data per byte of file plus 256 MiB, and for the allocations of the
    reconstructors 4 bytes per byte of file plus 64 MiB. A file over it raises :class:`LimitError`
    (decoded data) or :class:`ResourceLimitError` (reconstructors) before the memory is taken.
    ``extra_bytes`` replaces both fixed allowances (256 MiB and 64 MiB) for a file you trust to
    need more.
    """
    extra_bytes = _check_extra_bytes(extra_bytes)
    f = _open(path, mmap)
    if require_signature is not None:  # signatures (issue 5): before anything is decoded
        from .signing import require_signature as _require_signature
        _require_signature(f, require_signature)
    return _load(f, trusted, mmap, check_env, progress, extra_bytes)


def loads(data: bytes, *, trusted: Iterable[str] | None = None, check_env: bool = True,
          require_signature: Any = None, extra_bytes: int | None = None) -> Any:
    """Like :func:`load`, from a file image in memory."""
    extra_bytes = _check_extra_bytes(extra_bytes)
    f = _core.File.from_bytes(data, True)
    if require_signature is not None:  # signatures (issue 5): before anything is decoded
        from .signing import require_signature as _require_signature
        _require_signature(f, require_signature)
    return _load(f, trusted, True, check_env, False, extra_bytes)
