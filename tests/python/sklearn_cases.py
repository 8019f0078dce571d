"""Fitted scikit-learn estimators for round-trip tests: every estimator scikit-learn's own test
suite instantiates (``_tested_estimators``), fitted on small data shaped by its tags."""

from __future__ import annotations

import warnings

import numpy as np

# Estimators that cannot be round-tripped, with the reason. Keep this list short and honest.
EXCLUDED = {
    "FrozenEstimator": "scikit-learn's test suite cannot instantiate it without a fitted estimator",
}


_TEXT = ["the quick brown fox", "jumps over the lazy dog", "a stitch in time saves nine",
         "the early bird catches the worm", "all that glitters is not gold", "time flies like an arrow"]


def _data(est, seed=0, n=60, n_features=5):
    from sklearn.utils import get_tags
    from sklearn.utils.estimator_checks import _enforce_estimator_tags_X, _enforce_estimator_tags_y

    rng = np.random.RandomState(seed)
    if hasattr(est, "dictionary"):  # SparseCoder: X must match its fixed dictionary
        n_features = est.dictionary.shape[1]
    X = rng.normal(size=(n, n_features))
    tags = get_tags(est)
    if tags.estimator_type == "regressor":
        y = X[:, 0] * 2.0 + X[:, 1] - X[:, 2] * 0.5 + rng.normal(scale=0.1, size=n)
    else:
        # Three balanced classes, so that every class has more samples than features.
        score = X[:, 0] + X[:, 1] + 0.3 * rng.normal(size=n)
        y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    X = _enforce_estimator_tags_X(est, X)
    y = _enforce_estimator_tags_y(est, y)
    name = type(est).__name__
    if (tags.input_tags.string and not tags.input_tags.two_d_array) or name in (
            "CountVectorizer", "TfidfVectorizer", "HashingVectorizer"):
        X = [_TEXT[(i + seed) % len(_TEXT)] + f" w{i % 7}" for i in range(n)]
    elif tags.input_tags.dict or name == "DictVectorizer":
        X = [{"a": float(r[0]), "b": float(r[1]), f"k{int(abs(r[2]) * 3)}": 1.0} for r in X]
    if name in ("LabelEncoder", "LabelBinarizer"):
        X = y
    elif name == "MultiLabelBinarizer":
        X = [{int(v), int(v) + 1} for v in y]
    return X, y


def fitted_estimators():
    """Yield (name, fitted estimator, X_unseen) for every estimator that fits."""
    from sklearn.utils._test_common.instance_generator import _tested_estimators

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est in _tested_estimators():
            name = type(est).__name__
            if name in EXCLUDED:
                continue
            X, y = _data(est, seed=0)
            Xt, _ = _data(est, seed=1)
            try:
                if type(est).__name__ in ("LabelEncoder", "LabelBinarizer", "MultiLabelBinarizer"):
                    est.fit(X)
                else:
                    est.fit(X, y)
            except Exception as e:  # noqa: BLE001 - reported by the caller
                yield name, e, None
                continue
            yield name, est, Xt
