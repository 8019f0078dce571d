"""The load-time call rule of vitrify.load (docs/LOAD_RULES.md).

A file may name trusted classes and functions, but the only code load runs for them is:

* ``cls.__new__(cls)`` of a trusted class (an object node with the ``n`` flag), then its
  ``__setstate__`` (or a ``__dict__`` update), ``extend``/``append`` for list items and
  ``__setitem__`` for dict items: trusted code, fed state that the validators check
  (vitrify._validators) where compiled code trusts it;
* the reconstructors of :data:`RECONSTRUCTORS`, each after its checker accepted the types and
  sizes of its arguments: exactly the callables ``vitrify.dump`` writes for scikit-learn,
  scipy, numpy and the standard library;
* the builders of :data:`SPECIAL_BUILDERS` (sets, slices, masked arrays, random generators...),
  which check the decoded state before using it.

Trusted functions (a ``FunctionTransformer``'s ``func``, ``numpy.log``) are restored as
references (``vitrify.global``) and never called. The builder of Python objects
(python/src/bind_objects.cpp, over the graph of the one object decoder) runs this table; load
refuses a file that calls anything else before anything is built (:func:`refused_uses`).

Names the caller passes in ``trusted=`` that are not on the default list are the caller's own
code: they may be called and given ``__new__`` arguments.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Iterable

import numpy as np

from .errors import FormatError, VitrifyError


class UntrustedTypeError(VitrifyError):
    """The file names types or functions that are not trusted, or calls a trusted name that
    load never calls; nothing was built."""

    def __init__(self, names: list[str], message: str | None = None):
        self.names = list(names)
        super().__init__(message or (
            "refusing to load: the file names untrusted types: " + ", ".join(self.names)
            + ". Review them (vitrify.get_untrusted_types) and pass trusted=[...] to admit them."))


class InvalidStateError(FormatError):
    """The data of a trusted type breaks an invariant (e.g. a tree child index out of range)."""

    default_code_name = "bad_state"   # as the C++ runtime reports broken model state


class ResourceLimitError(InvalidStateError):
    """A reconstructor's arguments ask for more memory than the load budget allows."""

    default_code_name = "limit_exceeded"


# How an object node uses its type name (what refused_uses() and the builders see).
USE_GLOBAL = "global"      # vitrify.global: a reference, never called
USE_NEW = "new"            # n flag, no arguments: cls.__new__(cls)
USE_NEW_ARGS = "new_args"  # n flag with a / kw: cls.__new__(cls, *a, **kw)
USE_CALL = "call"          # no n flag: target(*a)


class Budget:
    """Bytes the reconstructors of one load may allocate beyond the file's own data: a floor
    for small files plus a multiple of the file size (a tree's class-count table, a loss
    object...). Arrays are views of the file or decoded from it and are not charged."""

    FLOOR = 64 << 20
    PER_FILE_BYTE = 4

    def __init__(self, file_size: int, floor: int | None = None):
        self.limit = (self.FLOOR if floor is None else floor) + self.PER_FILE_BYTE * max(0, int(file_size))
        self.spent = 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or nbytes > self.limit - self.spent:
            raise ResourceLimitError(f"{what} asks for {nbytes} bytes, over the load budget of "
                                     f"{self.limit} bytes")
        self.spent += nbytes


# ------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------

_INT_MAX = (1 << 31) - 1   # feature, class and output counts of compiled estimators fit an int


def _bad(name: str, why: str) -> InvalidStateError:
    return InvalidStateError(f"{name}: refused arguments: {why}")


def _is_int(x: Any) -> bool:
    return (type(x) is int or isinstance(x, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_real(x: Any) -> bool:
    return (type(x) in (int, float) or isinstance(x, (np.integer, np.floating))) \
        and not isinstance(x, (bool, np.bool_))


def _count(name: str, x: Any, what: str, lo: int = 0, hi: int = _INT_MAX) -> int:
    if not _is_int(x) or not lo <= int(x) <= hi:
        raise _bad(name, f"{what} must be an integer in [{lo}, {hi}]")
    return int(x)


def _scalar_params(max_n: int) -> Callable:
    """Cython loss objects: at most ``max_n`` finite real parameters (``CyPinballLoss(q)``)."""
    def check(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
        if kwargs or len(args) > max_n:
            raise _bad(name, f"expects at most {max_n} numeric arguments")
        for a in args:
            if not _is_real(a) or not math.isfinite(float(a)):
                raise _bad(name, "parameters must be finite numbers")
    return check


def _check_tree(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
    """Tree(n_features, n_classes, n_outputs[, n_categories]): __cinit__ sizes its class table
    from n_outputs and every value row from n_outputs * max(n_classes)."""
    if kwargs or len(args) not in (3, 4):
        raise _bad(name, "expects (n_features, n_classes, n_outputs)")
    n_features = _count(name, args[0], "n_features")
    n_outputs = _count(name, args[2], "n_outputs", 1)
    nc = args[1]
    if not (type(nc) is np.ndarray and nc.ndim == 1 and nc.dtype.kind in "iu"):
        raise _bad(name, "n_classes must be a 1-d integer array")
    if nc.shape[0] != n_outputs:
        raise _bad(name, "n_classes must have one entry per output")
    counts = nc.tolist()       # one per output: Python's min/max beat numpy's on a few items
    if min(counts) < 1 or max(counts) > _INT_MAX:
        raise _bad(name, "class counts must be in [1, 2**31-1]")
    budget.charge(8 * n_outputs * max(counts), f"{name} value rows")
    if len(args) == 4:
        cats = args[3]
        if not (type(cats) is np.ndarray and cats.ndim == 1 and cats.dtype.kind in "iu"
                and cats.shape[0] == n_features):
            raise _bad(name, "n_categories must be a 1-d integer array with one entry per feature")
        budget.charge(8 * n_features, f"{name} category table")


def _check_new_obj(base_names: tuple[str, ...]) -> Callable:
    """``newObj(cls)`` of the neighbour trees and distance metrics is ``cls.__new__(cls)``:
    ``cls`` must be one of the module's own classes."""
    def check(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
        if kwargs or len(args) != 1 or not isinstance(args[0], type):
            raise _bad(name, "expects one class")
        module = name.rsplit(".", 1)[0]
        mod = sys.modules.get(module)
        bases = tuple(getattr(mod, b) for b in base_names if hasattr(mod, b)) if mod else ()
        if not bases or not issubclass(args[0], bases):
            raise _bad(name, f"{args[0].__qualname__} is not a class of {module}")
    return check


def _check_pyx_unpickle(cls_name: str) -> Callable:
    """Cython's generated ``__pyx_unpickle_X(cls, checksum, state)``: ``X.__new__`` and a
    tuple of scalars for the C struct."""
    def check(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
        if kwargs or len(args) != 3:
            raise _bad(name, "expects (cls, checksum, state)")
        cls, checksum, state = args
        if not (isinstance(cls, type) and cls.__name__ == cls_name
                and cls.__module__ == name.rsplit(".", 1)[0]):
            raise _bad(name, f"expects the class {cls_name}")
        if not _is_int(checksum):
            raise _bad(name, "checksum must be an integer")
        if state is not None and not (type(state) is tuple and len(state) <= 16
                                      and all(x is None or _is_real(x) or type(x) is bool for x in state)):
            raise _bad(name, "state must be a short tuple of scalars")
    return check


# Functions a partial may wrap: those dump() writes (HistGradientBoosting's preprocessor wraps
# check_array), numpy ufuncs, and names the caller trusted explicitly.
PARTIAL_FUNCTIONS = frozenset({
    "sklearn.utils.validation.check_array", "sklearn.utils.check_array",
})


def _partial_func_ok(func: Any, user_trusted: frozenset[str]) -> bool:
    if isinstance(func, np.ufunc):
        return True
    module = getattr(func, "__module__", None)
    qual = getattr(func, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(qual, str)) or isinstance(func, type):
        return False
    name = f"{module}.{qual}"
    return name in PARTIAL_FUNCTIONS or name in user_trusted or \
        any(n in user_trusted for n in _public_names(func))


def _public_names(func: Any) -> list[str]:
    from .model import _canonical_name
    try:
        return [_canonical_name(func)]
    except VitrifyError:
        return []


def _check_partial(name: str, args: tuple, kwargs: dict | None, budget: Budget,
                   user_trusted: frozenset[str] = frozenset()) -> None:
    if kwargs or len(args) != 1 or not callable(args[0]):
        raise _bad(name, "expects one function")
    if not _partial_func_ok(args[0], user_trusted):
        raise UntrustedTypeError([_describe(args[0])], (
            f"refusing to load: functools.partial wraps {_describe(args[0])}, which load does "
            "not allow inside a partial (pass its name in trusted=[...] to admit it)"))


def _describe(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _check_no_args(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
    if args or kwargs:
        raise _bad(name, "expects no arguments")


def _check_defaultdict(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
    # The factory is called later for missing keys: only plain containers and numbers.
    if kwargs or len(args) > 1 or (args and args[0] is not None
                                   and args[0] not in (list, dict, set, int, float, str, tuple)):
        raise _bad(name, "the default factory must be None or a builtin container or number type")


def _check_counter(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
    if kwargs or len(args) > 1 or (args and type(args[0]) is not dict):
        raise _bad(name, "expects a dict of counts")


def _check_deque(name: str, args: tuple, kwargs: dict | None, budget: Budget) -> None:
    if kwargs or len(args) > 2 or (args and type(args[0]) not in (list, tuple)) or \
            (len(args) == 2 and args[1] is not None and not _is_int(args[1])):
        raise _bad(name, "expects (items, maxlen)")


_KD = ("BinaryTree64", "BinaryTree32")
_CY_LOSSES_0 = ("CyHalfSquaredError", "CyAbsoluteError", "CyHalfPoissonLoss", "CyHalfGammaLoss",
                "CyHalfBinomialLoss", "CyExponentialLoss", "CyHalfMultinomialLoss")
_CY_LOSSES_1 = ("CyPinballLoss", "CyHuberLoss", "CyHalfTweedieLoss", "CyHalfTweedieLossIdentity")

# name -> checker(name, args, kwargs, budget): every callable load ever calls. Review an addition
# like a new pickle opcode: what the call allocates and what compiled code later trusts.
RECONSTRUCTORS: dict[str, Callable] = {
    "sklearn.tree._tree.Tree": _check_tree,
    "sklearn.neighbors._kd_tree.newObj": _check_new_obj(_KD),
    "sklearn.neighbors._ball_tree.newObj": _check_new_obj(_KD),
    "sklearn.metrics._dist_metrics.newObj": _check_new_obj(("DistanceMetric",)),
    **{f"sklearn._loss._loss.{n}": _scalar_params(0) for n in _CY_LOSSES_0},
    **{f"sklearn._loss._loss.{n}": _scalar_params(1) for n in _CY_LOSSES_1},
    **{f"sklearn._loss._loss.__pyx_unpickle_{n}": _check_pyx_unpickle(n)
       for n in _CY_LOSSES_0 + _CY_LOSSES_1},
    "sklearn.linear_model._sgd_fast.Hinge": _scalar_params(1),
    "sklearn.linear_model._sgd_fast.SquaredHinge": _scalar_params(1),
    "sklearn.linear_model._sgd_fast.ModifiedHuber": _scalar_params(0),
    "sklearn.linear_model._sgd_fast.EpsilonInsensitive": _scalar_params(1),
    "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive": _scalar_params(1),
    "functools.partial": _check_partial,
    "collections.OrderedDict": _check_no_args,
    "collections.defaultdict": _check_defaultdict,
    "collections.Counter": _check_counter,
    "collections.deque": _check_deque,
}


class CallRules:
    """The call rule for one load: the caller's own names, the budget, the checks."""

    def __init__(self, default_trusted: frozenset[str], trusted: frozenset[str], file_size: int,
                 extra_bytes: int | None = None):
        self.user = frozenset(trusted - default_trusted)
        self.budget = Budget(file_size, extra_bytes)

    def call(self, name: str, target: Any, args: tuple) -> Any:
        """``target(*args)`` for a reconstructor (after its checker) or a caller-trusted name."""
        check = RECONSTRUCTORS.get(name)
        if check is _check_partial:
            _check_partial(name, args, None, self.budget, self.user)
        elif check is not None:
            check(name, args, None, self.budget)
        elif name not in self.user:
            raise refused([name])
        return target(*args)

    def new(self, name: str, cls: Any, args: tuple, kwargs: dict | None) -> Any:
        if not isinstance(cls, type):
            raise FormatError(f"{name} is not a class")
        if (args or kwargs) and name not in self.user:
            raise refused([name])
        return cls.__new__(cls, *args, **(kwargs or {}))


def refused(names: list[str]) -> UntrustedTypeError:
    return UntrustedTypeError(names, (
        "refusing to load: the file calls " + ", ".join(names) + ", which load never calls: "
        "it only creates trusted classes (__new__ and their state) and runs the reconstructors "
        "of vitrify._reconstructors"))


def refused_uses(uses: Iterable[tuple[str, str]], default_trusted: frozenset[str],
                 trusted: frozenset[str]) -> list[str]:
    """Names the file would have load call (or give __new__ arguments) against the rule."""
    user = trusted - default_trusted
    out = set()
    for name, use in uses:
        if use == USE_CALL and name not in RECONSTRUCTORS and name not in user:
            out.add(name)
        elif use == USE_NEW_ARGS and name not in user:
            out.add(name)
    return sorted(out)


# ------------------------------------------------------------------------------------------
# Builders of the special types (state already decoded, checked here before use)
# ------------------------------------------------------------------------------------------

def bad_value(msg: str) -> FormatError:
    """A structural defect of the object encoding (docs/OBJECTS.md: ``bad_value``)."""
    return FormatError(msg, code_name="bad_value")


def _items(name: str, s: Any) -> list:
    if type(s) is not list:
        raise bad_value(f"{name} state must be a list of items")
    return s


def _build_complex(s: Any) -> complex:
    if type(s) is not list or len(s) != 2 or not all(_is_real(x) or type(x) is float for x in s):
        raise bad_value("builtins.complex state must be two numbers")
    return complex(float(s[0]), float(s[1]))


def _build_slice(s: Any) -> slice:
    if type(s) is not list or len(s) != 3 or not all(x is None or _is_int(x) for x in s):
        raise bad_value("builtins.slice state must be three integers or nulls")
    return slice(*s)


def _build_range(s: Any) -> range:
    if type(s) is not list or len(s) != 3 or not all(_is_int(x) for x in s):
        raise bad_value("builtins.range state must be three integers")
    return range(*(int(x) for x in s))


def _build_bytearray(s: Any) -> bytearray:
    # bytearray(n) would allocate n bytes: only the bytes stored in the file.
    if type(s) is not bytes:
        raise bad_value("builtins.bytearray state must be bytes")
    return bytearray(s)


def _build_masked(s: Any) -> Any:
    if type(s) is not dict or type(s.get("data")) is not np.ndarray:
        raise bad_value("numpy.ma.MaskedArray state must hold a data array")
    mask = s.get("mask")
    if not (type(mask) is np.ndarray and mask.shape == s["data"].shape) and \
            not isinstance(mask, (bool, np.bool_)):
        raise bad_value("numpy.ma.MaskedArray mask must be a bool or an array shaped like the data")
    fill = s.get("fill_value")
    if not (fill is None or isinstance(fill, (bool, int, float, complex, str, bytes, np.generic))):
        raise bad_value("numpy.ma.MaskedArray fill value must be a scalar")
    return np.ma.MaskedArray(s["data"], mask=mask, fill_value=fill)


def _build_random_state(s: Any) -> np.random.RandomState:
    rs = np.random.RandomState()
    rs.set_state(s)   # numpy checks the key length and types
    return rs


BIT_GENERATORS = frozenset({"numpy.random.PCG64", "numpy.random.PCG64DXSM", "numpy.random.MT19937",
                            "numpy.random.Philox", "numpy.random.SFC64"})


def _build_generator(s: Any) -> np.random.Generator:
    if type(s) is not dict or type(s.get("state")) is not dict:
        raise bad_value("numpy.random.Generator state must be a dict with a dict 'state'")
    name = s.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise UntrustedTypeError([str(name)])
    bg = getattr(np.random, name.rsplit(".", 1)[1])()
    bg.state = s["state"]
    return np.random.Generator(bg)


def special_builders(dtype_from_state: Callable) -> dict[str, Callable]:
    """type name -> builder(built state), used by the builder of Python objects."""
    return {
        "numpy.dtype": dtype_from_state,
        "numpy.random.RandomState": _build_random_state,
        "numpy.random.Generator": _build_generator,
        "numpy.ma.MaskedArray": _build_masked,
        "builtins.set": lambda s: set(_items("builtins.set", s)),
        "builtins.frozenset": lambda s: frozenset(_items("builtins.frozenset", s)),
        "builtins.complex": _build_complex,
        "builtins.slice": _build_slice,
        "builtins.range": _build_range,
        "builtins.bytearray": _build_bytearray,
    }
