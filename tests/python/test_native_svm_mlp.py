"""Parity of the C++ runtime's kernel SVMs and multilayer perceptrons with scikit-learn (issue 4).

Every model is fitted with scikit-learn in this run, saved with vitrify.dump, loaded with
vitrify.native and compared with scikit-learn's own outputs.

SVMs: the runtime replays sklearn's vendored libsvm step for step, including the summation order
of the BLAS ddot it calls (OpenBLAS's Haswell/Zen kernel, which scipy's wheels select on AVX2 and
AMD CPUs). With that BLAS every output must be equal bit for bit; with any other BLAS kernel the
dot products are summed in another order, and the outputs are compared within 1e-12 of the
largest value instead.

MLPs: numpy computes the layers with BLAS gemm (gemv for one row), whose summation order depends
on the sizes, and exp / tanh with its own SIMD code, which the runtime does not reproduce: outputs
are compared within 1e-12 of the output's scale (float32 models computed in float32: 1e-5) and
predictions must be identical.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, NuSVC, NuSVR, OneClassSVM

import vitrify
import vitrify.native

RTOL = 1e-12


def _blas_is_haswell_openblas() -> bool:
    """Whether scipy's BLAS (the one libsvm's ddot goes through) is OpenBLAS with the Haswell/Zen
    ddot kernel the runtime reproduces."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return False
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl sees it)

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas" and "scipy" in i.get("filepath", "")
            and "numpy" not in i.get("filepath", "")]
    return bool(libs) and all(i.get("internal_api") == "openblas" and
                              str(i.get("architecture", "")).lower() in ("haswell", "zen") for i in libs)


SVM_EXACT = _blas_is_haswell_openblas()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # SVC(probability=True) is deprecated in 1.9
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(name):
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }[name]
    X, y = loader(return_X_y=True)
    if name == "digits":   # a subset keeps the probability fits (5-fold Platt CV) fast
        X, y = X[::3], y[::3]
    return X, y


def _scaled(X):
    return StandardScaler().fit_transform(X)


def _native(est, tmp_path, name="m.vit"):
    p = tmp_path / name
    vitrify.dump(est, p)
    return vitrify.native.load(p)


def _svm_equal(a, b, what):
    a = np.asarray(a)
    assert b.shape == a.shape, what
    if SVM_EXACT or a.dtype.kind not in "f":
        np.testing.assert_array_equal(b, a, err_msg=f"{what} is not bit-exact")
    else:
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=RTOL * max(1.0, np.abs(a).max()), err_msg=what)


def _svm_methods(est):
    out = ["predict"]
    if hasattr(est, "decision_function"):
        out.append("decision_function")
    if isinstance(est, (SVC, NuSVC)) and est.probability is True:
        out.append("predict_proba")
    return out


def _check_svm(est, tmp_path, X, name="m.vit", rows=25):
    nm = _native(est, tmp_path, name)
    tag = f"{type(est).__name__}({est.kernel})"
    for m in _svm_methods(est):
        _svm_equal(getattr(est, m)(X), getattr(nm, m)(X), f"{tag}.{m}")
        # float32 input: sklearn converts it to float64 exactly, so must the runtime.
        X32 = X.astype(np.float32)
        _svm_equal(getattr(est, m)(X32), getattr(nm, m)(X32), f"{tag}.{m} float32")
        # the single-row path
        a = np.asarray(getattr(est, m)(X[:rows])).reshape(rows, -1)
        if m == "predict" and hasattr(est, "classes_"):
            a = np.searchsorted(est.classes_, a).astype(np.float64)
        b = np.array([nm.predict_row(m, r) for r in X[:rows]]).reshape(rows, -1)
        _svm_equal(a, b, f"{tag}.{m} predict_row")
    return nm


def _shapes(est, tmp_path, X):
    """decision_function_shape and break_ties only act at predict time: each combination of the
    same fitted model, saved and compared."""
    for shape in ("ovr", "ovo"):
        for ties in (False, True):
            if shape == "ovo" and ties:
                continue
            est.set_params(decision_function_shape=shape, break_ties=ties)
            nm = _native(est, tmp_path, f"m-{shape}-{ties}.vit")
            for m in ("predict", "decision_function"):
                _svm_equal(getattr(est, m)(X), getattr(nm, m)(X), f"{shape}/{ties}.{m}")


KERNELS = [
    ("linear", {}),
    ("poly", {"degree": 3, "coef0": 1.0}),
    ("poly", {"degree": 2, "gamma": "auto"}),
    ("rbf", {}),
    ("rbf", {"gamma": 0.05}),
    ("sigmoid", {"gamma": "auto", "coef0": -0.5}),
]
SVC_DATA = ["iris", "wine", "breast_cancer", "digits"]


@pytest.mark.parametrize("dataset", SVC_DATA)
@pytest.mark.parametrize("kernel,params", KERNELS, ids=[f"{k}{i}" for i, (k, _) in enumerate(KERNELS)])
def test_svc_parity(dataset, kernel, params, tmp_path):
    X, y = _data(dataset)
    X = _scaled(X)
    est = SVC(kernel=kernel, probability=True, random_state=0, **params).fit(X, y)
    _check_svm(est, tmp_path, X)
    if len(est.classes_) > 2:
        _shapes(est, tmp_path, X)


def test_svc_raw_features_and_string_labels(tmp_path):
    # Unscaled breast_cancer features (values up to ~4000) with gamma='scale'; string classes.
    X, y = _data("breast_cancer")
    labels = np.array(["benign", "malignant"])[y]
    est = SVC(probability=True, random_state=0).fit(X, labels)
    nm = _check_svm(est, tmp_path, X)
    assert list(nm.predict(X[:5])) == list(est.predict(X[:5]))
    X, y = _data("wine")
    est = SVC(kernel="rbf", C=10.0, random_state=0).fit(X, np.array(["a", "b", "c"])[y])
    _check_svm(est, tmp_path, X, "w.vit")
    _shapes(est, tmp_path, X)


def test_svc_synthetic_many_classes_and_features(tmp_path):
    # 40 features: the 16-wide BLAS lanes and the tail both matter; 6 classes, sample weights.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 40)) * rng.uniform(0.1, 20.0, size=40)
    y = (X[:, :6] / X[:, :6].std(axis=0)).argmax(axis=1)
    Xt = rng.normal(size=(200, 40)) * 10
    for kernel in ("linear", "rbf", "poly", "sigmoid"):
        est = SVC(kernel=kernel, gamma="scale", coef0=0.3, C=3.0, probability=True, random_state=0,
                  max_iter=20000).fit(X, y, sample_weight=rng.uniform(0.5, 2.0, size=len(y)))
        _check_svm(est, tmp_path, Xt, f"{kernel}.vit")
        _shapes(est, tmp_path, Xt)


def test_svc_without_probability(tmp_path):
    X, y = _data("iris")
    est = SVC().fit(X, y)
    nm = _check_svm(est, tmp_path, X)
    assert not nm.supports("predict_proba")
    with pytest.raises(vitrify.VitrifyError):
        nm.predict_proba(X)


def test_svc_break_ties_with_ovo_is_an_error(tmp_path):
    X, y = _data("iris")
    est = SVC(decision_function_shape="ovo", break_ties=True).fit(X, y)
    with pytest.raises(ValueError):
        est.predict(X)
    nm = _native(est, tmp_path)
    with pytest.raises(vitrify.ArgumentError):
        nm.predict(X)
    _svm_equal(est.decision_function(X), nm.decision_function(X), "ovo decision_function")


@pytest.mark.parametrize("kernel,params", KERNELS, ids=[f"{k}{i}" for i, (k, _) in enumerate(KERNELS)])
def test_svr_parity(kernel, params, tmp_path):
    X, y = _data("diabetes")
    Xs = _scaled(X)
    est = SVR(kernel=kernel, C=50.0, epsilon=5.0, **params).fit(Xs, y)
    _check_svm(est, tmp_path, Xs)
    # raw diabetes features (already centred, small) and synthetic data
    est = SVR(kernel=kernel, C=100.0, **params).fit(X, y)
    _check_svm(est, tmp_path, X, "raw.vit")


def test_nu_and_one_class(tmp_path):
    X, y = _data("wine")
    X = _scaled(X)
    est = NuSVC(nu=0.3, probability=True, random_state=0).fit(X, y)
    _check_svm(est, tmp_path, X, "nusvc.vit")
    _shapes(est, tmp_path, X)
    X, y = _data("diabetes")
    est = NuSVR(nu=0.4, C=30.0, kernel="poly", degree=2).fit(X, y)
    _check_svm(est, tmp_path, X, "nusvr.vit")
    X, _ = _data("breast_cancer")
    X = _scaled(X)
    for kernel in ("rbf", "sigmoid", "linear"):
        est = OneClassSVM(nu=0.2, kernel=kernel, gamma="scale").fit(X)
        _check_svm(est, tmp_path, X, f"oc-{kernel}.vit")


def test_svm_rejects_non_finite_input(tmp_path):
    X, y = _data("iris")
    nm = _native(SVC().fit(X, y), tmp_path)
    bad = X[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(vitrify.ArgumentError):
        nm.predict(bad)
    bad[1, 2] = np.inf
    with pytest.raises(vitrify.ArgumentError):
        nm.decision_function(bad)


def test_svm_unsupported_options(tmp_path):
    import scipy.sparse as sp

    X, y = _data("iris")
    with pytest.raises(vitrify.UnsupportedModelError, match="sparse"):
        _native(SVC().fit(sp.csr_matrix(X), y), tmp_path, "sparse.vit")
    K = X @ X.T
    with pytest.raises(vitrify.UnsupportedModelError, match="precomputed"):
        _native(SVC(kernel="precomputed").fit(K, y), tmp_path, "pre.vit")


def _corrupt_svc(attr, fn):
    X, y = _data("iris")
    est = SVC(probability=True, random_state=0).fit(X, y)
    setattr(est, attr, fn(getattr(est, attr)))
    return est


SVC_CORRUPTIONS = [
    ("_n_support", lambda a: a + np.array([1, 0, 0], dtype=a.dtype)),      # more SVs than stored
    ("_n_support", lambda a: np.array([-5, a[1] + 5, a[2]], dtype=a.dtype)),
    ("_n_support", lambda a: a[:2]),                                         # fewer classes
    ("_dual_coef_", lambda a: a[:, :-1]),
    ("_dual_coef_", lambda a: a[:1]),
    ("_intercept_", lambda a: a[:2]),
    ("support_vectors_", lambda a: np.ascontiguousarray(a[:, :3])),
    ("support_vectors_", lambda a: a[:-1]),
    ("_probA", lambda a: a[:1]),
    ("classes_", lambda a: a[:2]),
    ("degree", lambda a: -1),
]


@pytest.mark.parametrize("attr,fn", SVC_CORRUPTIONS, ids=[f"{a}{i}" for i, (a, _) in enumerate(SVC_CORRUPTIONS)])
def test_svc_corrupted_state_is_an_error(attr, fn, tmp_path):
    est = _corrupt_svc(attr, fn)
    with pytest.raises(vitrify.FormatError):
        _native(est, tmp_path)


def test_svr_corrupted_state_is_an_error(tmp_path):
    X, y = _data("diabetes")
    est = SVR().fit(X, y)
    est._dual_coef_ = est._dual_coef_[:, 1:]
    with pytest.raises(vitrify.FormatError):
        _native(est, tmp_path)
    est = SVR().fit(X, y)
    est._intercept_ = np.zeros(3)
    with pytest.raises(vitrify.FormatError):
        _native(est, tmp_path, "b.vit")


# ---------------------------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------------------------

def _mlp_close(a, b, what, rtol=RTOL):
    """Within rtol of the output's scale: an output that nearly cancels to 0 (a sum of large terms
    of both signs) carries the rounding of those terms, not of its own size."""
    a = np.asarray(a)
    assert b.shape == a.shape, what
    np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max(), err_msg=what)


def _check_mlp(est, tmp_path, X, name="m.vit", rtol=RTOL):
    nm = _native(est, tmp_path, name)
    tag = f"{type(est).__name__}({est.activation})"
    if hasattr(est, "classes_"):
        np.testing.assert_array_equal(nm.predict(X), est.predict(X), err_msg=f"{tag}.predict")
        _mlp_close(est.predict_proba(X), nm.predict_proba(X), f"{tag}.predict_proba", rtol)
    else:
        _mlp_close(est.predict(X), nm.predict(X), f"{tag}.predict", rtol)
    if X.dtype == np.float64:
        # float32 input on a float64 model: numpy widens it, computes in float64
        X32 = X.astype(np.float32)
        m = "predict_proba" if hasattr(est, "classes_") else "predict"
        _mlp_close(getattr(est, m)(X32), getattr(nm, m)(X32), f"{tag}.{m} float32 input", rtol)
        a = np.asarray(getattr(est, m)(X[:20])).reshape(20, -1)
        b = np.array([nm.predict_row(m, r) for r in X[:20]]).reshape(20, -1)
        _mlp_close(a, b, f"{tag}.{m} predict_row", rtol)
    return nm


ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer", "digits", "wine"])
def test_mlp_classifier_parity(dataset, activation, tmp_path):
    X, y = _data(dataset)
    X = _scaled(X)
    est = MLPClassifier(hidden_layer_sizes=(20, 10), activation=activation, max_iter=60,
                        random_state=0).fit(X, y)
    _check_mlp(est, tmp_path, X)


def test_mlp_classifier_string_labels_lbfgs(tmp_path):
    X, y = _data("wine")
    X = _scaled(X)
    est = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0).fit(
        X, np.array(["x", "y", "z"])[y])
    nm = _check_mlp(est, tmp_path, X)
    assert list(nm.predict(X)) == list(est.predict(X))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_regressor_parity(activation, tmp_path):
    X, y = _data("diabetes")
    est = MLPRegressor(hidden_layer_sizes=(32, 16), activation=activation, learning_rate_init=0.01,
                       max_iter=80, random_state=0).fit(_scaled(X), y)
    _check_mlp(est, tmp_path, _scaled(X))
    # multi-output, synthetic
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 7))
    Y = np.c_[X[:, 0] * X[:, 1], np.sin(X[:, 2]), X[:, 3] - X[:, 4]]
    est = MLPRegressor(hidden_layer_sizes=(25,), activation=activation, max_iter=100, random_state=0).fit(X, Y)
    _check_mlp(est, tmp_path, rng.normal(size=(100, 7)) * 2, "multi.vit")


def test_mlp_regressor_poisson(tmp_path):
    X, y = _data("diabetes")
    est = MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=100, random_state=0).fit(_scaled(X), y)
    assert est.out_activation_ == "exp"
    _check_mlp(est, tmp_path, _scaled(X))


def test_mlp_float32_model(tmp_path):
    # Fitted on float32, the weights are float32; numpy then computes float32 input in float32.
    X, y = _data("digits")
    X = _scaled(X).astype(np.float32)
    est = MLPClassifier(hidden_layer_sizes=(30,), max_iter=40, random_state=0).fit(X, y)
    assert est.coefs_[0].dtype == np.float32
    nm = _native(est, tmp_path)
    _mlp_close(est.predict_proba(X), nm.predict_proba(X), "float32 predict_proba", rtol=1e-5)
    p = est.predict_proba(X)
    top2 = np.sort(p, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4   # rows whose winner float32 rounding cannot change
    np.testing.assert_array_equal(nm.predict(X)[clear], est.predict(X)[clear])
    # float64 input on the float32 model: float64 arithmetic with the widened weights
    X64 = X.astype(np.float64)
    _mlp_close(est.predict_proba(X64), nm.predict_proba(X64), "float64 input on float32 model")
    Xr, yr = _data("diabetes")
    est = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(
        _scaled(Xr).astype(np.float32), yr.astype(np.float32))
    nm = _native(est, tmp_path, "r.vit")
    X32 = _scaled(Xr).astype(np.float32)
    _mlp_close(est.predict(X32), nm.predict(X32), "float32 regressor", rtol=1e-5)


def test_mlp_multilabel_unsupported_and_nan(tmp_path):
    X, y = _data("iris")
    est = MLPClassifier(max_iter=20, random_state=0).fit(X, np.c_[y == 1, y == 2])
    with pytest.raises(vitrify.UnsupportedModelError, match="multilabel"):
        _native(est, tmp_path)
    nm = _native(MLPRegressor(max_iter=20, random_state=0).fit(X, y), tmp_path, "r.vit")
    bad = X[:4].copy()
    bad[2, 0] = np.nan
    with pytest.raises(vitrify.ArgumentError):
        nm.predict(bad)


def _mlp_fitted():
    X, y = _data("iris")
    return MLPClassifier(hidden_layer_sizes=(8, 5), max_iter=30, random_state=0).fit(X, y)


MLP_CORRUPTIONS = [
    lambda m: setattr(m, "coefs_", [m.coefs_[0], m.coefs_[1][:4], m.coefs_[2]]),
    lambda m: setattr(m, "coefs_", [m.coefs_[0][:3], m.coefs_[1], m.coefs_[2]]),
    lambda m: setattr(m, "intercepts_", [m.intercepts_[0][:7], m.intercepts_[1], m.intercepts_[2]]),
    lambda m: setattr(m, "intercepts_", m.intercepts_[:2]),
    lambda m: setattr(m, "n_layers_", 7),
    lambda m: setattr(m, "coefs_", [m.coefs_[0], m.coefs_[1], m.coefs_[2][:, :2]]),
    lambda m: setattr(m, "n_outputs_", 5),
    lambda m: setattr(m, "activation", "softplus"),
]


@pytest.mark.parametrize("i", range(len(MLP_CORRUPTIONS)))
def test_mlp_corrupted_state_is_an_error(i, tmp_path):
    est = _mlp_fitted()
    MLP_CORRUPTIONS[i](est)
    with pytest.raises(vitrify.VitrifyError):
        _native(est, tmp_path)
