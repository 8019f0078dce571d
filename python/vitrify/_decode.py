"""Building Python objects from the object graph (docs/OBJECTS.md section 12).

The object encoding has one decoder, in C++ (``vitrify::pyobj::decode_objects``): it turns the
file into an inert, checked graph. ``_core.ObjectGraph`` exposes it; its ``build()``
(python/src/bind_objects.cpp) makes the Python objects, asking this module's build context for
dtypes, the builders of special types, the call rule and the checks of built objects."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import _core
from . import _reconstructors as _rules
from . import _validators
from . import arrays as _arrays
from ._trust import _default_trusted, _denied
from .errors import LimitError

_invalid = _rules.bad_value


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


def _object_graph(f: Any, extra_bytes: int | None = None) -> Any:
    """The file's object graph, decoded and checked by the C++ decoder (nothing is built).
    ``extra_bytes`` replaces the fixed allowance of its byte budget (decode_limits)."""
    text = f.content_json
    if not text or text == "null":
        raise _invalid("the file holds no Python object (use vitrify.load_arrays for plain arrays)")
    try:
        return _core.ObjectGraph(f, extra_bytes)
    except LimitError as e:
        if "budget" not in str(e):
            raise
        raise LimitError(f"{e}; load(..., extra_bytes=N) raises the budget for a file you trust") from None


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
