"""The C++ runtime from Python: predictions computed without building any Python estimator.

    m = vitrify.native.load("model.vit")
    m.predict(X); m.predict_proba(X); m.decision_function(X); m.transform(X)

``X`` is a 2-D float64 or float32 array (never copied when C-contiguous), or a pandas
DataFrame / a dict of columns (needed for models that encode text columns or select columns by
name). Predictions of classifiers whose classes are strings come back as an object array of
``str``; numeric outputs as float64 arrays shaped like scikit-learn's.

This is the same code the ``vitrify predict`` command and C++ programs use
(``vitrify::runtime::model``); it exists for parity tests and for services that want the
runtime's memory sharing and latency from Python.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _core

__all__ = ["NativeModel", "load", "supported_types"]

_METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples")


def _columns(X: Any) -> tuple[int, list] | None:
    """(rows, [(name, float64 array | list of str/None)]) for tables; None for plain arrays."""
    try:
        import pandas as pd  # noqa: F401
        is_frame = isinstance(X, pd.DataFrame)
    except ImportError:
        is_frame = False
    if is_frame:
        items = [(str(c), X[c]) for c in X.columns]
        rows = len(X)
    elif isinstance(X, dict):
        items = [(str(k), v) for k, v in X.items()]
        rows = len(items[0][1]) if items else 0
    else:
        return None
    cols = []
    for name, col in items:
        a = np.asarray(col)
        if a.dtype.kind in "biuf":
            cols.append((name, np.ascontiguousarray(a, dtype=np.float64)))
        else:
            vals = []
            for v in a.tolist():
                if v is None or (isinstance(v, float) and v != v):
                    vals.append(None)
                else:
                    vals.append(str(v))
            cols.append((name, vals))
    return rows, cols


class NativeModel:
    """A model loaded by the C++ runtime. Immutable; safe to share between threads."""

    def __init__(self, core: Any):
        self._m = core

    @property
    def type_name(self) -> str:
        return self._m.type_name

    @property
    def n_features_in_(self) -> int:
        return self._m.n_features

    @property
    def feature_names_in_(self) -> list[str]:
        return list(self._m.feature_names)

    @property
    def classes_(self) -> list[str]:
        return list(self._m.classes)

    def supports(self, method: str) -> bool:
        return self._m.supports(method)

    def _run(self, method: str, X: Any) -> np.ndarray:
        tab = _columns(X)
        if tab is not None:
            out, rows, cols = self._m.run_table(method, tab[0], tab[1])
        else:
            a = np.asarray(X)
            if a.dtype not in (np.float64, np.float32):
                a = a.astype(np.float64)
            if a.ndim != 2:
                raise ValueError(f"X must be 2-D, got shape {a.shape}")
            out, rows, cols = self._m.run(method, np.ascontiguousarray(a))
        if isinstance(out, list):
            arr = np.empty(len(out), dtype=object)
            arr[:] = out
            out = arr.reshape(rows, cols)
        if method == "predict" and cols == 1:
            return out.reshape(rows)
        if method in ("decision_function", "score_samples") and cols == 1:
            return out.reshape(rows)
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self._run("predict", X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._run("predict_proba", X)

    def decision_function(self, X: Any) -> np.ndarray:
        return self._run("decision_function", X)

    def transform(self, X: Any) -> np.ndarray:
        return self._run("transform", X)

    def score_samples(self, X: Any) -> np.ndarray:
        return self._run("score_samples", X)

    def predict_row(self, method: str, row: Any) -> np.ndarray:
        """One row through the allocation-free path (numeric input only)."""
        return np.asarray(self._m.run_row(method, np.ascontiguousarray(row, dtype=np.float64)))

    def __repr__(self) -> str:
        return f"<vitrify.native.NativeModel {self.type_name}>"


def load(path: Any, *, verify: bool = True) -> NativeModel:
    """Load the model in ``path`` with the C++ runtime (``vitrify.UnsupportedModelError`` names
    any estimator it does not implement)."""
    return NativeModel(_core.NativeModel.load(os.fspath(path), bool(verify)))


def supported_types() -> list[str]:
    """Canonical names of every estimator the C++ runtime can build."""
    return list(_core.native_supported_types())
