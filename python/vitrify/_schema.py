"""The human-readable summary ``dump`` records beside the object (docs/PYTHON.md): the
estimator tree, parameters that differ from the defaults, feature names and classes."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._trust import _canonical_name


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
