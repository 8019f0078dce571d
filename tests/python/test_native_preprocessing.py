"""Parity of the C++ runtime's preprocessing and decomposition transformers with scikit-learn
(issue 4).

Every model is fitted with scikit-learn in this run, saved with vitrify.dump, loaded with
vitrify.native and compared with scikit-learn's own output: bit for bit, except the pairs in
NOT_BIT_EXACT (within a relative 1e-12 of the output's scale, for the reason given there).
float32 input: the runtime computes as scikit-learn does on float32 data and returns the
float32 result widened to float64, so it is compared with scikit-learn's float32 output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import (
    Binarizer,
    FunctionTransformer,
    LabelEncoder,
    MaxAbsScaler,
    MinMaxScaler,
    Normalizer,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

import vitrify
import vitrify.native

# Pairs that cannot be bit-exact, and why. Everything else is compared with assert_array_equal.
NOT_BIT_EXACT = {
    "Normalizer-l2": "row norms come from np.einsum, whose SIMD partial sums (and FMA) the "
                     "runtime's plain sum of squares does not reproduce",
    "PCA": "X @ components_.T goes through BLAS (blocked, SIMD, FMA)",
    "TruncatedSVD": "X @ components_.T goes through BLAS (blocked, SIMD, FMA)",
}
RTOL = 1e-12

DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes")


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


def _close(a, b, what):
    """Within RTOL of the output's scale (per column: PCA outputs near 0 have no relative digits)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    scale = np.maximum(np.max(np.abs(a), axis=0, keepdims=True), np.finfo(float).tiny)
    err = np.abs(a - b) / scale
    assert np.all(err <= RTOL), f"{what}: max relative error {np.nanmax(err):.3g}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), what


def _check(est, nm, X, key=None, Xn=None):
    a = est.transform(X)
    b = nm.transform(X if Xn is None else Xn)
    if key in NOT_BIT_EXACT:
        _close(a, b, key)
    else:
        assert b.dtype == np.float64
        np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), b, err_msg=str(key))


# ------------------------------------------------------------------------------------------
# Element-wise transformers on every shipped dataset (float64 and float32), NaNs included.
# ------------------------------------------------------------------------------------------

SCALERS = {
    "StandardScaler": lambda: StandardScaler(),
    "StandardScaler-nomean": lambda: StandardScaler(with_mean=False),
    "StandardScaler-nostd": lambda: StandardScaler(with_std=False),
    "StandardScaler-none": lambda: StandardScaler(with_mean=False, with_std=False),
    "MinMaxScaler": lambda: MinMaxScaler(),
    "MinMaxScaler-clip": lambda: MinMaxScaler(feature_range=(-2.5, 3.0), clip=True),
    "MaxAbsScaler": lambda: MaxAbsScaler(),
    "MaxAbsScaler-clip": lambda: MaxAbsScaler(clip=True),
    "RobustScaler": lambda: RobustScaler(),
    "RobustScaler-q": lambda: RobustScaler(quantile_range=(10.0, 90.0), unit_variance=True),
    "RobustScaler-nocenter": lambda: RobustScaler(with_centering=False),
    "Normalizer-l1": lambda: Normalizer("l1"),
    "Normalizer-l2": lambda: Normalizer("l2"),
    "Normalizer-max": lambda: Normalizer("max"),
    "Binarizer": lambda: Binarizer(threshold=0.5),
    "PolynomialFeatures": lambda: PolynomialFeatures(2),
    "PolynomialFeatures-3io": lambda: PolynomialFeatures(3, interaction_only=True, include_bias=False),
    "PolynomialFeatures-23": lambda: PolynomialFeatures((2, 3)),
    "PolynomialFeatures-23nb": lambda: PolynomialFeatures((2, 3), include_bias=False),
    "PolynomialFeatures-0": lambda: PolynomialFeatures(0),
    "PolynomialFeatures-1": lambda: PolynomialFeatures((1, 1), include_bias=False),
    "PCA": lambda: PCA(4, random_state=0),
    "PCA-whiten": lambda: PCA(3, whiten=True, random_state=0),
    "TruncatedSVD": lambda: TruncatedSVD(3, random_state=0),
    "FunctionTransformer": lambda: FunctionTransformer(),
}


def _key(name):
    return name.split("-")[0] if name.startswith(("PCA", "TruncatedSVD")) else name


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", sorted(SCALERS))
def test_elementwise_datasets(name, dataset, tmp_path):
    X, _ = _data(dataset)
    if name.startswith("PolynomialFeatures") and X.shape[1] > 13:
        X = X[:, :13]  # keep the expansion small (digits: 64 features)
    est = SCALERS[name]().fit(X[::2])
    nm = _native(est, tmp_path)
    Xt = X[1::2] * 1.1 - 0.05  # unseen rows, some outside the fitted range
    _check(est, nm, Xt, _key(name))
    # float32: scikit-learn keeps float32 for these; the runtime returns the same float32 values.
    X32 = Xt.astype(np.float32)
    a = est.transform(X32)
    b = nm.transform(X32)
    if _key(name) in NOT_BIT_EXACT or a.dtype != np.float32:
        rt = 1e-5 if a.dtype == np.float32 or name.startswith(("PCA", "TruncatedSVD")) else RTOL
        scale = np.maximum(np.max(np.abs(a), axis=0, keepdims=True), 1e-30)
        assert np.all(np.abs(a - b) <= rt * scale), name
    else:
        np.testing.assert_array_equal(a.astype(np.float64), b, err_msg=name)


@pytest.mark.parametrize("name", ["StandardScaler", "MinMaxScaler-clip", "MaxAbsScaler", "RobustScaler"])
def test_scalers_nan_pass_through(name, tmp_path):
    rng = np.random.RandomState(1)
    X = rng.normal(3, 2, size=(200, 6))
    X[rng.rand(*X.shape) < 0.15] = np.nan
    X[:, 5] = 7.0  # constant column: scale 1
    est = SCALERS[name]().fit(X)
    nm = _native(est, tmp_path)
    Xt = rng.normal(3, 3, size=(300, 6))
    Xt[rng.rand(*Xt.shape) < 0.1] = np.nan
    np.testing.assert_array_equal(est.transform(Xt), nm.transform(Xt))
    # Rows one at a time through the allocation-free path.
    for i in range(0, 300, 37):
        np.testing.assert_array_equal(est.transform(Xt[i:i + 1])[0], nm.predict_row("transform", Xt[i]))
    # Infinity is refused like scikit-learn refuses it.
    bad = Xt[:3].copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError):
        est.transform(bad)
    with pytest.raises(vitrify.VitrifyError):
        nm.transform(bad)


def test_refuses_nan_where_sklearn_does(tmp_path):
    X, _ = _data("iris")
    Xn = X.copy()
    Xn[3, 1] = np.nan
    for est in (Normalizer(), Binarizer(), PolynomialFeatures(2), PCA(2)):
        est.fit(X)
        nm = _native(est, tmp_path)
        with pytest.raises(ValueError):
            est.transform(Xn)
        with pytest.raises(vitrify.VitrifyError):
            nm.transform(Xn)


def test_binarizer_float32_threshold(tmp_path):
    # 0.1 as float32 is above 0.1 in float64 but equal to it in float32: scikit-learn compares
    # float32 data with the threshold rounded to float32.
    X = np.array([[0.1, 0.2, 0.09], [1.0, 0.1, -1.0]])
    est = Binarizer(threshold=0.1).fit(X)
    nm = _native(est, tmp_path)
    for Xi in (X, X.astype(np.float32)):
        np.testing.assert_array_equal(est.transform(Xi).astype(np.float64), nm.transform(Xi))


def test_polynomial_order_many_features(tmp_path):
    # Products in scikit-learn's order: values with many significant bits show any reordering.
    rng = np.random.RandomState(3)
    X = rng.normal(size=(50, 7)) * np.pi
    for kw in (dict(degree=4), dict(degree=(2, 4), interaction_only=True), dict(degree=3, include_bias=False)):
        est = PolynomialFeatures(**kw).fit(X)
        nm = _native(est, tmp_path)
        np.testing.assert_array_equal(est.transform(X), nm.transform(X))
        np.testing.assert_array_equal(est.transform(X[:1])[0], nm.predict_row("transform", X[0]))


def test_pca_float32_fit(tmp_path):
    X, _ = _data("wine")
    X32 = X.astype(np.float32)
    est = PCA(4, whiten=True).fit(X32)
    nm = _native(est, tmp_path)
    a = est.transform(X32)
    b = nm.transform(X32)
    assert np.all(np.abs(a - b) <= 1e-4 * np.max(np.abs(a), axis=0)), "float32 PCA"


# ------------------------------------------------------------------------------------------
# SimpleImputer
# ------------------------------------------------------------------------------------------

def _nan_data(seed=0, n=150):
    rng = np.random.RandomState(seed)
    X = np.round(rng.normal(2, 3, size=(n, 5)), 1)
    X[rng.rand(*X.shape) < 0.2] = np.nan
    X[:, 3] = np.nan  # never observed: dropped (or kept with keep_empty_features)
    return X


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent", "constant"])
@pytest.mark.parametrize("add_indicator", [False, True])
@pytest.mark.parametrize("keep_empty", [False, True])
def test_imputer_numeric(strategy, add_indicator, keep_empty, tmp_path):
    X = _nan_data()
    kw = dict(fill_value=-7.5) if strategy == "constant" else {}
    est = SimpleImputer(strategy=strategy, add_indicator=add_indicator, keep_empty_features=keep_empty, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X)
        Xt = _nan_data(1, 80)
        Xt[:, 0] = np.nan  # column without NaN in fit, with NaN now
        nm = _native(est, tmp_path)
        np.testing.assert_array_equal(est.transform(Xt), nm.transform(Xt))
        X32 = Xt.astype(np.float32)
        np.testing.assert_array_equal(est.transform(X32).astype(np.float64), nm.transform(X32))
        for i in (0, 5, 17):
            np.testing.assert_array_equal(est.transform(Xt[i:i + 1])[0], nm.predict_row("transform", Xt[i]))


def test_imputer_number_missing_value(tmp_path):
    rng = np.random.RandomState(2)
    X = rng.randint(0, 5, size=(100, 4)).astype(np.float64)
    X[rng.rand(*X.shape) < 0.2] = -1
    for strategy in ("mean", "median", "most_frequent"):
        est = SimpleImputer(missing_values=-1, strategy=strategy, add_indicator=True).fit(X)
        nm = _native(est, tmp_path)
        Xt = rng.randint(-1, 5, size=(60, 4)).astype(np.float64)
        np.testing.assert_array_equal(est.transform(Xt), nm.transform(Xt))
    # NaN is not allowed when missing_values is a number.
    bad = Xt[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        est.transform(bad)
    with pytest.raises(vitrify.VitrifyError, match="NaN"):
        nm.transform(bad)
    # Integer data: statistics are cast to the integer dtype the imputer was fitted on.
    Xi = rng.randint(-1, 9, size=(100, 3))
    est = SimpleImputer(missing_values=-1, strategy="most_frequent").fit(Xi)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.transform(Xi).astype(np.float64), nm.transform(Xi.astype(np.float64)))


def _text_frame(seed, n):
    rng = np.random.RandomState(seed)
    a = rng.choice(["red", "green", "blue", "ochre"], n, p=[0.4, 0.3, 0.25, 0.05]).astype(object)
    b = rng.choice(["x", "y"], n).astype(object)
    a[rng.rand(n) < 0.15] = np.nan
    b[rng.rand(n) < 0.1] = None
    return pd.DataFrame({"a": a, "b": b, "c": rng.normal(size=n).round(2)})


def _table(df):
    """A DataFrame as a dict of columns for vitrify.native (text as str / None)."""
    out = {}
    for c in df.columns:
        s = df[c]
        if s.dtype.kind in "biuf":
            out[c] = np.array(s, dtype=np.float64)  # writable: the binding refuses read-only arrays
        else:
            out[c] = [None if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in s]
    return out


def _same_objects(a, b):
    """Object arrays (strings and numbers) equal cell by cell."""
    assert a.shape == b.shape
    for x, y in zip(np.ravel(a), np.ravel(b)):
        assert x == y or (x != x and y != y), (x, y)


def test_imputer_text_then_encoder(tmp_path):
    from sklearn.pipeline import Pipeline
    df = _text_frame(0, 200)[["a", "b"]]
    for strategy, kw in (("most_frequent", {}), ("constant", dict(fill_value="missing"))):
        pipe = Pipeline([("imp", SimpleImputer(strategy=strategy, **kw)),
                         ("ohe", OneHotEncoder(sparse_output=False, handle_unknown="ignore"))]).fit(df)
        nm = _native(pipe, tmp_path)
        dt = _text_frame(5, 90)[["a", "b"]]
        dt.loc[3, "a"] = "violet"  # unseen
        np.testing.assert_array_equal(pipe.transform(dt), nm.transform(_table(dt)))
        np.testing.assert_array_equal(pipe.transform(dt), nm.transform(dt))  # DataFrame directly


def test_imputer_text_alone_needs_numbers(tmp_path):
    df = _text_frame(0, 50)[["a"]]
    est = SimpleImputer(strategy="most_frequent").fit(df)
    nm = _native(est, tmp_path)
    # Its output is text: the runtime returns numbers only and says so.
    with pytest.raises(vitrify.UnsupportedModelError):
        nm.transform(_table(df))


# ------------------------------------------------------------------------------------------
# OneHotEncoder / OrdinalEncoder
# ------------------------------------------------------------------------------------------

def _cat_frames():
    fit = _text_frame(0, 300)
    fit["n"] = np.random.RandomState(9).choice([1.0, 2.0, 5.0, 10.0, np.nan], 300, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    new = _text_frame(1, 120)
    new["n"] = np.random.RandomState(10).choice([1.0, 2.0, 5.0, 10.0, np.nan], 120)
    new = new.drop(columns=["c"])
    fit = fit.drop(columns=["c"])
    return fit, new


OHE_CASES = {
    "plain": dict(),
    "drop-first": dict(drop="first"),
    "drop-if_binary": dict(drop="if_binary"),
    "drop-explicit": dict(drop=["green", "y", 5.0]),
    "ignore": dict(handle_unknown="ignore"),
    "ignore-drop": dict(handle_unknown="ignore", drop="first"),
    "minfreq": dict(min_frequency=20, handle_unknown="infrequent_if_exist"),
    "minfreq-float": dict(min_frequency=0.1, handle_unknown="ignore"),
    "maxcat": dict(max_categories=3, handle_unknown="infrequent_if_exist"),
    "maxcat-drop": dict(max_categories=3, handle_unknown="infrequent_if_exist", drop="first"),
    "maxcat-ifbinary": dict(max_categories=2, handle_unknown="infrequent_if_exist", drop="if_binary"),
    "minfreq-error": dict(min_frequency=20),
    "warn": dict(handle_unknown="warn", max_categories=3),
    "categories": dict(categories=[["red", "green", "blue", "ochre", "teal"], ["y", "x"], [1.0, 2.0, 5.0, 10.0]],
                       handle_unknown="ignore"),
}


@pytest.mark.parametrize("case", sorted(OHE_CASES))
def test_one_hot(case, tmp_path):
    fit, new = _cat_frames()
    kw = OHE_CASES[case]
    est = OneHotEncoder(sparse_output=False, **kw).fit(fit)
    nm = _native(est, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(est.transform(fit), nm.transform(_table(fit)))
        unseen = new.copy()
        unseen.loc[[2, 7], "a"] = "violet"
        unseen.loc[4, "n"] = 3.0
        if kw.get("handle_unknown", "error") == "error":
            with pytest.raises(ValueError):
                est.transform(unseen)
            with pytest.raises(vitrify.VitrifyError, match="unknown categories"):
                nm.transform(_table(unseen))
        else:
            np.testing.assert_array_equal(est.transform(unseen), nm.transform(_table(unseen)))
    # Columns are matched by name, in any order.
    np.testing.assert_array_equal(est.transform(fit), nm.transform(_table(fit[["n", "b", "a"]])))


def test_one_hot_numeric_arrays(tmp_path):
    X, _ = _data("digits")
    X = X[:, 20:30]
    for kw in (dict(), dict(drop="first"), dict(max_categories=4, handle_unknown="infrequent_if_exist"),
               dict(min_frequency=30, handle_unknown="ignore", drop="if_binary")):
        est = OneHotEncoder(sparse_output=False, **{"handle_unknown": "ignore", **kw}).fit(X[::2])
        nm = _native(est, tmp_path)
        np.testing.assert_array_equal(est.transform(X[1::2]), nm.transform(X[1::2]))
        assert not nm._m.needs_table  # numbers only: a plain array is enough


def test_one_hot_sparse_output_computed_dense(tmp_path):
    # The default (sparse_output=True) only changes scikit-learn's container: same values.
    fit, test = _cat_frames()
    est = OneHotEncoder(handle_unknown="ignore").fit(fit)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.transform(test).toarray(), nm.transform(test))


def test_column_transformer_default_sparse_one_hot(tmp_path):
    # The most common preprocessing: ColumnTransformer + OneHotEncoder() with its defaults.
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    fit, test = _cat_frames()
    cats = list(fit.columns)
    y = np.arange(len(fit)) % 2
    est = Pipeline([("ct", ColumnTransformer([("ohe", OneHotEncoder(handle_unknown="ignore"), cats)],
                                             sparse_threshold=1.0)),
                    ("clf", LogisticRegression())]).fit(fit, y)
    assert est[0].sparse_output_
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.predict(test), nm.predict(test))
    np.testing.assert_allclose(est.predict_proba(test), nm.predict_proba(test), rtol=1e-12, atol=1e-15)


ORD_CASES = {
    "plain": dict(),
    "unknown": dict(handle_unknown="use_encoded_value", unknown_value=-1),
    "unknown-nan": dict(handle_unknown="use_encoded_value", unknown_value=np.nan),
    "missing": dict(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2),
    "maxcat": dict(max_categories=3, handle_unknown="use_encoded_value", unknown_value=99),
    "minfreq": dict(min_frequency=25, encoded_missing_value=-5),
    "float32": dict(dtype=np.float32, handle_unknown="use_encoded_value", unknown_value=-1),
    "categories": dict(categories=[["red", "green", "blue", "ochre", "teal"], ["y", "x"], [1.0, 2.0, 5.0, 10.0]],
                       handle_unknown="use_encoded_value", unknown_value=-3),
}


@pytest.mark.parametrize("case", sorted(ORD_CASES))
def test_ordinal(case, tmp_path):
    fit, new = _cat_frames()
    kw = ORD_CASES[case]
    est = OrdinalEncoder(**kw).fit(fit)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.transform(fit).astype(np.float64), nm.transform(_table(fit)))
    unseen = new.copy()
    unseen.loc[[1, 9], "a"] = "violet"
    unseen.loc[4, "n"] = 3.0
    if kw.get("handle_unknown", "error") == "error":
        with pytest.raises(ValueError):
            est.transform(unseen)
        with pytest.raises(vitrify.VitrifyError, match="unknown categories"):
            nm.transform(_table(unseen))
    else:
        np.testing.assert_array_equal(est.transform(unseen).astype(np.float64), nm.transform(_table(unseen)))


def test_ordinal_numeric(tmp_path):
    X, _ = _data("iris")
    X = np.round(X)
    X[::7, 1] = np.nan
    est = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(X[::2])
    nm = _native(est, tmp_path)
    Xt = X[1::2].copy()
    Xt[0, 0] = 42.0
    np.testing.assert_array_equal(est.transform(Xt), nm.transform(Xt))


# ------------------------------------------------------------------------------------------
# LabelEncoder
# ------------------------------------------------------------------------------------------

def test_label_encoder(tmp_path):
    y = np.array(["setosa", "versicolor", "virginica"])[datasets.load_iris().target]
    est = LabelEncoder().fit(y)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.transform(y[::-3]), nm.transform({"y": list(y[::-3])}).ravel())
    with pytest.raises(ValueError):
        est.transform(["setosa", "rose"])
    with pytest.raises(vitrify.VitrifyError, match="unseen"):
        nm.transform({"y": ["setosa", "rose"]})
    # Numbers: integer classes cast float labels to integers like column_or_1d does.
    yi = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    est = LabelEncoder().fit(yi)
    nm = _native(est, tmp_path)
    probe = np.array([[9.0], [1.0], [2.7], [6.0]])
    np.testing.assert_array_equal(est.transform(probe.ravel()), nm.transform(probe).ravel())
    with pytest.raises(vitrify.VitrifyError, match="unseen"):
        nm.transform(np.array([[7.0]]))
    yf = np.array([0.5, 1.5, np.nan, 0.5])
    est = LabelEncoder().fit(yf)
    nm = _native(est, tmp_path)
    np.testing.assert_array_equal(est.transform(yf), nm.transform(yf.reshape(-1, 1)).ravel())


# ------------------------------------------------------------------------------------------
# Crafted files: broken state gives an error, never an out-of-bounds read.
# ------------------------------------------------------------------------------------------

def _corrupt(est, tmp_path, **attrs):
    for k, v in attrs.items():
        setattr(est, k, v)
    p = tmp_path / "bad.vit"
    vitrify.dump(est, p)
    with pytest.raises(vitrify.VitrifyError) as e:
        vitrify.native.load(p)
    assert e.value.code_name in ("bad_state", "unsupported_model"), e.value
    return e.value


def test_corrupted_state(tmp_path):
    X, _ = _data("iris")
    fit, _ = _cat_frames()
    _corrupt(StandardScaler().fit(X), tmp_path, scale_=np.ones(3))
    _corrupt(StandardScaler().fit(X), tmp_path, mean_=np.ones((4, 1)))
    _corrupt(MinMaxScaler().fit(X), tmp_path, min_=np.ones(7))
    _corrupt(RobustScaler().fit(X), tmp_path, center_=None)
    _corrupt(PCA(2).fit(X), tmp_path, mean_=np.zeros(3))
    _corrupt(PCA(2).fit(X), tmp_path, components_=np.zeros((2, 5)))
    _corrupt(TruncatedSVD(2).fit(X), tmp_path, components_=np.zeros(4))
    _corrupt(PolynomialFeatures(2).fit(X), tmp_path, n_output_features_=1000)
    _corrupt(PolynomialFeatures(2).fit(X), tmp_path, _max_degree=10 ** 6)
    _corrupt(SimpleImputer().fit(X), tmp_path, statistics_=np.zeros(2))
    imp = SimpleImputer(add_indicator=True).fit(_nan_data())
    imp.indicator_.features_ = np.array([0, 99])
    _corrupt(imp, tmp_path)
    ohe = OneHotEncoder(sparse_output=False, drop="first").fit(fit)
    _corrupt(ohe, tmp_path, _drop_idx_after_grouping=np.array([0, 7, 0], dtype=object))
    ohe = OneHotEncoder(sparse_output=False, max_categories=2).fit(fit)
    ohe._default_to_infrequent_mappings[0][:] = 40
    _corrupt(ohe, tmp_path)
    ohe = OneHotEncoder(sparse_output=False).fit(fit)
    _corrupt(ohe, tmp_path, categories_=ohe.categories_[:2])
    ohe = OneHotEncoder(sparse_output=False).fit(X)
    _corrupt(ohe, tmp_path, categories_=[c[::-1] for c in ohe.categories_])  # unsorted numbers
    ohe = OneHotEncoder(sparse_output=False).fit(fit)
    _corrupt(ohe, tmp_path, _n_features_outs=[1, 1, 1])
    ordn = OrdinalEncoder().fit(fit)
    _corrupt(ordn, tmp_path, _missing_indices={0: 0, 7: 1})
    le = LabelEncoder().fit([3, 1, 2])
    _corrupt(le, tmp_path, classes_=np.array([3, 1, 2]))
