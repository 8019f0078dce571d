"""Round trips of the cases issue 3 names explicitly, beyond the all-estimators sweep: columns by
name on a DataFrame, string class labels, categorical features, probability SVMs, neighbour
trees, nested search objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import vitrify
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import (HistGradientBoostingClassifier, StackingClassifier, VotingClassifier,
                              RandomForestClassifier)
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.decomposition import PCA
from sklearn.svm import SVC

rng = np.random.RandomState(0)
N = 120
DF = pd.DataFrame({
    "age": rng.normal(40, 10, N), "income": rng.lognormal(10, 1, N),
    "city": rng.choice(["paris", "lyon", "nice"], N), "colour": rng.choice(["red", "blue"], N),
})
LABELS = np.where(DF["age"] + rng.normal(0, 5, N) > 40, "senior", "junior")
X_NUM = rng.normal(size=(N, 4))
Y3 = np.array(["a", "b", "c"])[rng.randint(0, 3, N)]


def _roundtrip(est, X, methods=("predict", "predict_proba", "decision_function", "transform")):
    loaded = vitrify.loads(vitrify.dumps(est))
    assert type(loaded) is type(est)
    for m in methods:
        if hasattr(est, m):
            a, b = getattr(est, m)(X), getattr(loaded, m)(X)
            if hasattr(a, "toarray"):
                a, b = a.toarray(), b.toarray()
            assert np.asarray(a).dtype == np.asarray(b).dtype, m
            assert np.array_equal(np.asarray(a), np.asarray(b)), m
    return loaded


def test_column_transformer_by_name_and_string_labels():
    ct = ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "colour"])])
    pipe = Pipeline([("prep", ct), ("clf", LogisticRegression())]).fit(DF, LABELS)
    loaded = _roundtrip(pipe, DF)
    assert list(loaded.classes_) == ["junior", "senior"] and loaded.classes_.dtype == pipe.classes_.dtype
    assert list(loaded.feature_names_in_) == list(DF.columns)
    assert isinstance(loaded.predict(DF.iloc[:3])[0], str)


def test_column_transformer_by_index():
    ct = ColumnTransformer([("a", StandardScaler(), [0, 1]), ("b", PCA(1), slice(2, 4))], remainder="drop")
    _roundtrip(ct.fit(X_NUM), X_NUM)


def test_hist_gradient_boosting_categorical():
    X = np.column_stack([rng.randint(0, 5, N).astype(float), rng.normal(size=N)])
    X[::7, 1] = np.nan
    clf = HistGradientBoostingClassifier(categorical_features=[0], max_iter=20).fit(X, Y3)
    _roundtrip(clf, X)


def test_svc_probability_and_neighbours():
    _roundtrip(SVC(probability=True, random_state=0).fit(X_NUM, Y3), X_NUM)
    for algo in ("kd_tree", "ball_tree", "brute"):
        _roundtrip(KNeighborsClassifier(algorithm=algo).fit(X_NUM, Y3), X_NUM)
        _roundtrip(KNeighborsRegressor(algorithm=algo).fit(X_NUM, X_NUM[:, 0]), X_NUM)


@pytest.mark.parametrize("make", [
    lambda: GridSearchCV(Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]), {"c__C": [0.1, 1.0]}, cv=3),
    lambda: RandomizedSearchCV(RandomForestClassifier(n_estimators=5, random_state=0),
                               {"max_depth": [2, 3, None]}, n_iter=2, cv=3, random_state=0),
    lambda: VotingClassifier([("lr", LogisticRegression()), ("rf", RandomForestClassifier(5, random_state=0))], voting="soft"),
    lambda: StackingClassifier([("lr", LogisticRegression()), ("svc", SVC())], final_estimator=LogisticRegression()),
    lambda: CalibratedClassifierCV(SVC(), cv=3),
    lambda: OneVsRestClassifier(LogisticRegression()),
    lambda: FeatureUnion([("pca", PCA(2)), ("s", StandardScaler())]),
])
def test_meta_estimators(make):
    est = make()
    if isinstance(est, FeatureUnion):
        est.fit(X_NUM)
    else:
        est.fit(X_NUM, Y3)
    loaded = _roundtrip(est, X_NUM)
    if hasattr(est, "cv_results_"):
        assert set(loaded.cv_results_) == set(est.cv_results_)
        assert loaded.best_params_ == est.best_params_


def test_multioutput_and_transformed_target():
    Y = np.column_stack([Y3, np.where(X_NUM[:, 0] > 0, "x", "y")])
    _roundtrip(MultiOutputClassifier(LogisticRegression()).fit(X_NUM, Y), X_NUM, methods=("predict",))
    ttr = TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1)
    _roundtrip(ttr.fit(X_NUM, np.abs(X_NUM[:, 0]) * 3), X_NUM, methods=("predict",))
