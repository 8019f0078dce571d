"""Parity of the C++ runtime's naive Bayes, nearest-neighbour and KMeans estimators with
scikit-learn (issue 4).

Each model is fitted with scikit-learn in this run, saved with vitrify.dump, loaded with
vitrify.native and compared with scikit-learn's outputs on the shipped datasets and on
synthetic data. Class decisions and cluster labels must be equal; numbers are compared bit for
bit where the arithmetic allows it, else within a relative 1e-12:

* GaussianNB / MultinomialNB / BernoulliNB predict_proba: numpy's SIMD exp / log / log1p differ
  from the C library's in the last ulp on some inputs (AVX-512 kernels); MultinomialNB and
  BernoulliNB also go through BLAS.
* KNeighbors* with weights="distance" fitted with brute force (algorithm="brute", or "auto" with
  more than 15 features) and the euclidean metric: scikit-learn's distances come from
  sqrt(‖x‖² - 2x·y + ‖y‖²) (BLAS), accurate only to ~1e-16 · ‖x‖²/d²; vitrify computes
  sqrt(Σ (x-y)²) exactly, so the weighted results are compared within a relative 1e-8.
* KMeans transform: BLAS product (vitrify follows OpenBLAS's order; most values are identical).

Exact distance ties at the k-th neighbour are broken by training index in vitrify and by
traversal order in scikit-learn, so the KNN parity data has no ties (continuous features); a
separate test checks the documented tie rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

import vitrify
import vitrify.native

RTOL = 1e-12


def _data(name):
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }[name]
    X, y = loader(return_X_y=True)
    return np.ascontiguousarray(X, dtype=np.float64), y


def _native(est, tmp_path, name="m.vit"):
    p = tmp_path / name
    vitrify.dump(est, p)
    return vitrify.native.load(p)


def _close(expected, got, what, floor=1e-15, rtol=RTOL):
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    assert expected.shape == got.shape, (what, expected.shape, got.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=floor, err_msg=what)
    share = float(np.mean(expected == got)) if expected.size else 1.0
    print(f"{what}: {100 * share:.1f}% bit-identical")


CLASSIFICATION = ["iris", "wine", "breast_cancer", "digits"]


# ---------------------------------------------------------------------------------- naive Bayes

@pytest.mark.parametrize("dataset", CLASSIFICATION + ["synthetic"])
def test_gaussian_nb(tmp_path, dataset):
    if dataset == "synthetic":
        rng = np.random.default_rng(0)
        X = rng.normal(size=(400, 7)) * [1, 10, 0.1, 5, 1, 1, 100]
        y = (X[:, 0] + X[:, 1] / 10 > 0).astype(int) + (X[:, 2] > 0.05)
    else:
        X, y = _data(dataset)
    est = GaussianNB().fit(X, y)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(nm.predict(X), est.predict(X))
    _close(est.predict_proba(X), nm.predict_proba(X), f"GaussianNB/{dataset}")
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(nm.predict(X32), est.predict(X32))
    _close(est.predict_proba(X32), nm.predict_proba(X32), f"GaussianNB/{dataset}/float32")


@pytest.mark.parametrize("dataset", CLASSIFICATION + ["counts"])
@pytest.mark.parametrize("make", [lambda: MultinomialNB(), lambda: MultinomialNB(alpha=0.01, fit_prior=False),
                                  lambda: BernoulliNB(), lambda: BernoulliNB(binarize=3.0, alpha=0.5),
                                  lambda: BernoulliNB(binarize=None)],
                         ids=["mnb", "mnb_a", "bnb", "bnb_thr", "bnb_nobin"])
def test_discrete_nb(tmp_path, dataset, make):
    if dataset == "counts":
        rng = np.random.default_rng(1)
        X = rng.poisson(2.0, size=(300, 20)).astype(np.float64)
        y = np.array(["spam", "ham", "eggs"], dtype=object)[(X[:, 0] + X[:, 1] + rng.integers(0, 3, 300)).astype(int) % 3]
    else:
        X, y = _data(dataset)
        X = X - X.min(axis=0)  # counts must be non-negative
    est = make().fit(X, y)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(nm.predict(X), est.predict(X))
    _close(est.predict_proba(X), nm.predict_proba(X), f"{type(est).__name__}/{dataset}")
    for i in range(5):
        _close(est.predict_proba(X[i : i + 1])[0], nm.predict_row("predict_proba", X[i]), "row")


def test_nb_rejects_nan_and_bad_state(tmp_path):
    X, y = _data("iris")
    est = GaussianNB().fit(X, y)
    nm = _native(est, tmp_path)
    bad = X[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError):
        est.predict(bad)
    with pytest.raises(vitrify.VitrifyError, match="NaN"):
        nm.predict(bad)
    for attrs in ({"theta_": est.theta_[:, :2]}, {"var_": est.var_[:2]}, {"class_prior_": est.class_prior_[:1]},
                  {"classes_": est.classes_[:2]}):
        bad_est = GaussianNB().fit(X, y)
        for k, v in attrs.items():
            setattr(bad_est, k, v)
        p = tmp_path / "bad.vit"
        vitrify.dump(bad_est, p)
        with pytest.raises(vitrify.VitrifyError) as ei:
            vitrify.native.load(p)
        assert ei.value.code_name == "bad_state", attrs
    m = MultinomialNB().fit(X, y)
    m.feature_log_prob_ = m.feature_log_prob_[:, :3]
    p = tmp_path / "bad2.vit"
    vitrify.dump(m, p)
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify.native.load(p)
    assert ei.value.code_name == "bad_state"


# ---------------------------------------------------------------------------- nearest neighbours

def _jitter(X, seed=0):
    """Continuous data without distance ties."""
    rng = np.random.default_rng(seed)
    return X + rng.normal(scale=1e-3 * (X.std(axis=0) + 1e-3), size=X.shape)


def _knn_rtol(est):
    """scikit-learn's brute-force euclidean distances are sqrt(‖x‖² - 2x·y + ‖y‖²): their
    rounding error is ~1e-16 · ‖x‖² / d², so distance weights agree only to ~1e-9 there."""
    if est.weights == "distance" and est._fit_method == "brute" and est.effective_metric_ == "euclidean":
        return 1e-8
    return RTOL


KNN_CONFIGS = [
    dict(n_neighbors=5),
    dict(n_neighbors=7, weights="distance"),
    dict(n_neighbors=10, weights="distance", algorithm="brute"),
    dict(n_neighbors=3, algorithm="ball_tree", p=1),
    dict(n_neighbors=9, algorithm="kd_tree", metric="manhattan", weights="distance"),
    dict(n_neighbors=4, algorithm="brute", p=3),
    dict(n_neighbors=6, metric="chebyshev"),
    dict(n_neighbors=5, metric="euclidean", algorithm="brute"),
]


@pytest.mark.parametrize("dataset", ["iris", "wine", "breast_cancer", "digits"])
@pytest.mark.parametrize("cfg", KNN_CONFIGS, ids=[str(i) for i in range(len(KNN_CONFIGS))])
def test_knn_classifier(tmp_path, dataset, cfg):
    X, y = _data(dataset)
    X = _jitter(X)
    if dataset == "digits":
        X, y = X[:600], y[:600]
    tr, te = slice(0, None, 2), slice(1, None, 2)
    est = KNeighborsClassifier(**cfg).fit(X[tr], y[tr])
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(nm.predict(X[te]), est.predict(X[te]))
    _close(est.predict_proba(X[te]), nm.predict_proba(X[te]), f"knn {cfg}/{dataset}", rtol=_knn_rtol(est))
    row = X[1]
    np.testing.assert_array_equal(nm.predict_row("predict_proba", row), nm.predict_proba(row[None, :])[0])


@pytest.mark.parametrize("cfg", KNN_CONFIGS, ids=[str(i) for i in range(len(KNN_CONFIGS))])
def test_knn_regressor(tmp_path, cfg):
    X, y = _data("diabetes")
    X = _jitter(X, 1)
    est = KNeighborsRegressor(**cfg).fit(X[::2], y[::2])
    nm = _native(est, tmp_path)
    _close(est.predict(X[1::2]), nm.predict(X[1::2]), f"knnreg {cfg}", floor=1e-12, rtol=_knn_rtol(est))
    Y = np.column_stack([y, np.log(y)])
    est2 = KNeighborsRegressor(**cfg).fit(X[::2], Y[::2])
    nm2 = _native(est2, tmp_path, "m2.vit")
    got = nm2.predict(X[1::2])
    assert got.shape == (len(X[1::2]), 2)
    _close(est2.predict(X[1::2]), got, f"knnreg multi {cfg}", floor=1e-12, rtol=_knn_rtol(est2))


def test_knn_string_labels_float32_and_zero_distance(tmp_path):
    X, y = _data("iris")
    X = _jitter(X)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    est = KNeighborsClassifier(n_neighbors=5, weights="distance").fit(X, labels)
    nm = _native(est, tmp_path)
    # Querying the training points: zero distances get weight 1, the others 0.
    np.testing.assert_array_equal(nm.predict(X), est.predict(X))
    _close(est.predict_proba(X), nm.predict_proba(X), "zero distance")
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(nm.predict(X32), est.predict(X32))


def test_knn_tie_rule(tmp_path):
    # Training points at exactly equal distance from the query: vitrify keeps the lowest
    # training indices (documented; scikit-learn's choice depends on its search structure).
    Xtr = np.array([[1.0, 0], [-1.0, 0], [0, 1.0], [0, -1.0], [3.0, 3.0]])
    ytr = np.array([0, 1, 1, 0, 1])
    est = KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(Xtr, ytr)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(nm.predict_proba([[0.0, 0.0]]), [[0.5, 0.5]])
    est3 = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(Xtr, ytr)
    nm3 = _native(est3, tmp_path, "m3.vit")
    # neighbours 0, 1, 2 (labels 0, 1, 1)
    np.testing.assert_array_equal(nm3.predict_proba([[0.0, 0.0]]), [[1 / 3, 2 / 3]])


def test_knn_bad_state_and_unsupported(tmp_path):
    X, y = _data("iris")
    est = KNeighborsClassifier().fit(X, y)
    for attrs, code in (({"_y": est._y[:10]}, "bad_state"), ({"_y": est._y + 5}, "bad_state"),
                        ({"n_neighbors": 1000}, "bad_state"), ({"_fit_X": est._fit_X[:, :2]}, "bad_state"),
                        ({"effective_metric_": "cosine"}, "unsupported_model"),
                        ({"weights": "something"}, "unsupported_model")):
        e = KNeighborsClassifier().fit(X, y)
        for k, v in attrs.items():
            setattr(e, k, v)
        p = tmp_path / "bad.vit"
        vitrify.dump(e, p)
        with pytest.raises(vitrify.VitrifyError) as ei:
            vitrify.native.load(p)
        assert ei.value.code_name == code, (attrs, str(ei.value))
    nm = _native(est, tmp_path)
    bad = X[:2].copy()
    bad[0, 0] = np.inf
    with pytest.raises(vitrify.VitrifyError):
        nm.predict(bad)


# ----------------------------------------------------------------------------------------- KMeans

@pytest.mark.parametrize("dataset", CLASSIFICATION + ["diabetes", "synthetic"])
@pytest.mark.parametrize("make", [lambda: KMeans(n_clusters=4, n_init=2, random_state=0),
                                  lambda: KMeans(n_clusters=9, n_init=1, random_state=1, algorithm="elkan"),
                                  lambda: MiniBatchKMeans(n_clusters=5, n_init=2, random_state=0)],
                         ids=["kmeans4", "kmeans9_elkan", "minibatch5"])
def test_kmeans(tmp_path, dataset, make):
    if dataset == "synthetic":
        rng = np.random.default_rng(2)
        X = np.vstack([rng.normal(loc=c, size=(150, 6)) for c in (-5, 0, 5)]) * [1, 2, 3, 100, 0.01, 1]
    else:
        X, _ = _data(dataset)
    est = make().fit(X)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(nm.predict(X), est.predict(X))
    t = est.transform(X)
    _close(t, nm.transform(X), f"kmeans transform {dataset}", floor=1e-12 * max(1.0, float(np.abs(t).max())))
    _close(est.transform(X.astype(np.float32)), nm.transform(X.astype(np.float32)), "kmeans f32 transform",
           floor=1e-12 * max(1.0, float(np.abs(t).max())))
    assert int(nm.predict_row("predict", X[3])[0]) == int(est.predict(X[3:4])[0])


def test_kmeans_bad_state(tmp_path):
    X, _ = _data("iris")
    est = KMeans(3, n_init=1, random_state=0).fit(X)
    est.cluster_centers_ = est.cluster_centers_[:, :2]
    p = tmp_path / "bad.vit"
    vitrify.dump(est, p)
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify.native.load(p)
    assert ei.value.code_name == "bad_state"
    est = KMeans(3, n_init=1, random_state=0).fit(X)
    nm = _native(est, tmp_path, "ok.vit")
    bad = X[:3].copy()
    bad[2, 2] = np.nan
    with pytest.raises(vitrify.VitrifyError):
        nm.predict(bad)
