"""Every estimator scikit-learn tests (``_tested_estimators``), fitted, must round-trip through
vitrify.dump/load with bitwise-identical outputs on unseen data and identical parameters."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import vitrify
from sklearn_cases import EXCLUDED, fitted_estimators

pytest.importorskip("sklearn")

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform", "score_samples")

_CASES = list(fitted_estimators())


def _same(a, b, where="value"):
    from sklearn.base import BaseEstimator

    if isinstance(a, BaseEstimator):
        assert type(a) is type(b), where
        _same(a.get_params(deep=False), b.get_params(deep=False), where)
        return
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.hasobject:
            assert all(x == y or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel())), where
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
        return
    if isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
        return
    if isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
        return
    if callable(a) and not isinstance(a, type):
        assert getattr(a, "__qualname__", repr(a)) == getattr(b, "__qualname__", repr(b)), where
        return
    assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def _outputs(est, X):
    out = {}
    for m in METHODS:
        if not hasattr(est, m):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[m] = getattr(est, m)(X)
            except Exception as e:  # noqa: BLE001 - the error itself must round-trip too
                out[m] = ("error", type(e).__name__)
    return out


def _equal_outputs(a, b):
    if isinstance(a, tuple):
        return a == b
    if hasattr(a, "toarray"):
        a, b = a.toarray(), b.toarray()
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal_outputs(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return np.array_equal(a, b, equal_nan=True)
    return np.array_equal(a, b)


@pytest.mark.parametrize("name,est,X", _CASES, ids=[c[0] for c in _CASES])
def test_roundtrip(name, est, X, tmp_path):
    if isinstance(est, Exception):
        pytest.fail(f"{name} did not fit on the test data: {est!r}")
    # Stochastic methods (BernoulliRBM.score_samples, ...) draw from the estimator's RandomState,
    # which may be numpy's global one: compare with a pickle copy taken at the same moment, so
    # both start from the same generator state. For deterministic methods this is the original.
    est = pickle.loads(pickle.dumps(est))
    reference = pickle.loads(pickle.dumps(est))
    path = tmp_path / "model.vit"
    vitrify.dump(est, path)
    assert vitrify.get_untrusted_types(path) == []
    loaded = vitrify.load(path)
    assert type(loaded) is type(est)
    _same(est.get_params(), loaded.get_params(), "get_params()")
    twin = pickle.loads(pickle.dumps(est))
    before, after = _outputs(reference, X), _outputs(loaded, X)
    # A method whose output differs between two identical copies draws from numpy's global
    # random generator (e.g. DummyClassifier(strategy="stratified") with random_state=None):
    # nothing can make it repeatable, so it is not compared.
    twin_out = _outputs(twin, X)
    random_methods = {m for m in before if not _equal_outputs(before[m], twin_out[m])}
    assert before.keys() == after.keys()
    for m in before.keys() - random_methods:
        assert _equal_outputs(before[m], after[m]), f"{name}.{m} differs after the round trip"
    # Loading from bytes and without mmap gives the same model too.
    data = vitrify.dumps(est)
    reference = pickle.loads(pickle.dumps(est))
    again = vitrify.loads(data)
    before = _outputs(reference, X)
    for m, v in _outputs(again, X).items():
        if m in random_methods:
            continue
        assert _equal_outputs(before[m], v), f"{name}.{m} differs after dumps/loads"


def test_exclusions_are_short_and_explained():
    assert len(EXCLUDED) <= 5
    assert all(isinstance(v, str) and len(v) > 20 for v in EXCLUDED.values())


def test_every_estimator_fits():
    failures = [f"{n}: {e!r}" for n, e, _ in _CASES if isinstance(e, Exception)]
    assert not failures, "\n".join(failures)
