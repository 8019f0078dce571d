"""Parity of the C++ runtime's Pipeline, ColumnTransformer and FeatureUnion with scikit-learn
(issue 4): fitted with scikit-learn in this run, saved with vitrify.dump, loaded with
vitrify.native and compared with scikit-learn's own outputs. Compositions only route data, so
they are bit-exact whenever their steps are (PCA, TruncatedSVD and Normalizer(l2) are not: see
test_native_preprocessing.py).

Pipelines ending in classifiers run when the runtime has those classifiers
(vitrify.native.supported_types()); until then they are skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import (
    Binarizer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

import vitrify
import vitrify.native

SUPPORTED = set(vitrify.native.supported_types())


def _needs(*types):
    missing = [t for t in types if t not in SUPPORTED]
    if missing:
        pytest.fail("runtime does not implement " + ", ".join(missing))


def _native(est, tmp_path, name="m.vit"):
    p = tmp_path / name
    vitrify.dump(est, p)
    return vitrify.native.load(p)


def _data(name):
    X, y = getattr(datasets, "load_" + name)(return_X_y=True)
    return np.ascontiguousarray(X, dtype=np.float64), y


def _table(df):
    out = {}
    for c in df.columns:
        s = df[c]
        if s.dtype.kind in "biuf":
            out[c] = np.array(s, dtype=np.float64)  # writable: the binding refuses read-only arrays
        else:
            out[c] = [None if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in s]
    return out


def _frame(seed, n):
    rng = np.random.RandomState(seed)
    age = rng.normal(40, 12, n).round(1)
    income = rng.lognormal(10, 1, n).round(0)
    age[rng.rand(n) < 0.1] = np.nan
    city = rng.choice(["paris", "lyon", "nice", "brest"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    city[rng.rand(n) < 0.1] = np.nan
    colour = rng.choice(["red", "blue"], n).astype(object)
    return pd.DataFrame({"age": age, "city": city, "income": income, "colour": colour,
                         "score": rng.normal(size=n)})


# ------------------------------------------------------------------------------------------
# Pipelines of transformers
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["iris", "wine", "breast_cancer", "digits", "diabetes"])
def test_pipeline_transformers(dataset, tmp_path):
    X, _ = _data(dataset)
    X = X[:, :12]
    pipe = Pipeline([("scale", StandardScaler()), ("skip", "passthrough"), ("none", None),
                     ("mm", MinMaxScaler((-1, 1))), ("poly", PolynomialFeatures(2)),
                     ("abs", MaxAbsScaler())]).fit(X[::2])
    nm = _native(pipe, tmp_path)
    Xt = X[1::2]
    np.testing.assert_array_equal(pipe.transform(Xt), nm.transform(Xt))
    # float32 flows through as float32 in both.
    X32 = Xt.astype(np.float32)
    a = pipe.transform(X32)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a.astype(np.float64), nm.transform(X32))
    for i in (0, 3):
        np.testing.assert_array_equal(pipe.transform(Xt[i:i + 1])[0], nm.predict_row("transform", Xt[i]))


def test_pipeline_passthrough_last(tmp_path):
    X, _ = _data("wine")
    pipe = Pipeline([("rs", RobustScaler()), ("last", "passthrough")]).fit(X)
    nm = _native(pipe, tmp_path)
    np.testing.assert_array_equal(pipe.transform(X), nm.transform(X))
    pipe = Pipeline([("a", "passthrough")]).fit(X)
    nm = _native(pipe, tmp_path)
    np.testing.assert_array_equal(pipe.transform(X), nm.transform(X))


def test_pipeline_pca_tolerance(tmp_path):
    X, _ = _data("digits")
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0)).fit(X)
    nm = _native(pipe, tmp_path)
    a, b = pipe.transform(X), nm.transform(X)
    assert np.all(np.abs(a - b) <= 1e-12 * np.max(np.abs(a), axis=0))


# ------------------------------------------------------------------------------------------
# ColumnTransformer
# ------------------------------------------------------------------------------------------

def test_column_transformer_by_name(tmp_path):
    df = _frame(0, 300)
    ct = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), ["age", "income"]),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(sparse_output=False, handle_unknown="ignore")), ["city"]),
        ("ord", OrdinalEncoder(), ["colour"]),
    ], remainder="drop").fit(df)
    nm = _native(ct, tmp_path)
    new = _frame(1, 120)
    new.loc[5, "city"] = "lille"  # unseen
    np.testing.assert_array_equal(ct.transform(new), nm.transform(_table(new)))
    # Any column order.
    np.testing.assert_array_equal(ct.transform(new), nm.transform(_table(new[new.columns[::-1]])))
    assert nm._m.needs_table
    with pytest.raises(vitrify.VitrifyError, match="table"):
        nm.transform(np.zeros((2, 5)))


@pytest.mark.parametrize("remainder", ["drop", "passthrough", "scaler"])
def test_column_transformer_by_index_mask_slice(remainder, tmp_path):
    X, _ = _data("wine")
    rem = MinMaxScaler() if remainder == "scaler" else remainder
    mask = np.zeros(X.shape[1], dtype=bool)
    mask[[4, 6]] = True
    ct = ColumnTransformer([
        ("ss", StandardScaler(), [0, 2, 1]),
        ("mask", RobustScaler(), mask),
        ("slice", MaxAbsScaler(), slice(7, 10)),
        ("pass", "passthrough", [3]),
        ("bin", Binarizer(threshold=2.0), [-1]),
        ("gone", "drop", [5]),
        ("empty", StandardScaler(), []),
    ], remainder=rem, transformer_weights={"ss": 2.5, "pass": 0.5}).fit(X[::2])
    nm = _native(ct, tmp_path)
    Xt = X[1::2]
    np.testing.assert_array_equal(ct.transform(Xt), nm.transform(Xt))
    X32 = Xt.astype(np.float32)
    np.testing.assert_array_equal(ct.transform(X32).astype(np.float64), nm.transform(X32))
    for i in (0, 7):
        np.testing.assert_array_equal(ct.transform(Xt[i:i + 1])[0], nm.predict_row("transform", Xt[i]))


def test_column_transformer_selector_and_dataframe_numeric(tmp_path):
    df = _frame(2, 200).drop(columns=["city", "colour"])
    ct = ColumnTransformer([("s", make_pipeline(SimpleImputer(), StandardScaler()),
                             make_column_selector(dtype_include=np.number, pattern="^(?:age|score)"))],
                           remainder="passthrough").fit(df)
    nm = _native(ct, tmp_path)
    np.testing.assert_array_equal(ct.transform(df), nm.transform(_table(df)))
    # Fitted on a DataFrame of numbers: a plain array in the fitted column order works too.
    np.testing.assert_array_equal(ct.transform(df), nm.transform(np.array(df.to_numpy())))


def test_column_transformer_sparse_output_computed_dense(tmp_path):
    # sparse_output_ only changes scikit-learn's container: the runtime returns the same values.
    df = _frame(0, 100)
    ct = ColumnTransformer([("c", OneHotEncoder(), ["city", "colour"])], sparse_threshold=1.0).fit(df)
    assert ct.sparse_output_
    nm = _native(ct, tmp_path)
    np.testing.assert_array_equal(ct.transform(df).toarray(), nm.transform(_table(df)))


def test_column_transformer_text_passthrough_is_refused(tmp_path):
    df = _frame(0, 100)
    ct = ColumnTransformer([("c", OrdinalEncoder(), ["colour"])], remainder="passthrough").fit(df)
    nm = _native(ct, tmp_path)
    # scikit-learn returns an object array here (text passed through); the runtime cannot.
    with pytest.raises(vitrify.UnsupportedModelError):
        nm.transform(_table(df))


# ------------------------------------------------------------------------------------------
# FeatureUnion
# ------------------------------------------------------------------------------------------

def test_feature_union(tmp_path):
    X, _ = _data("breast_cancer")
    fu = FeatureUnion([("ss", StandardScaler()), ("mm", MinMaxScaler()), ("pass", "passthrough"),
                       ("gone", "drop"), ("poly", make_pipeline(MaxAbsScaler(), PolynomialFeatures(2)))],
                      transformer_weights={"mm": 3.0, "pass": 0.25}).fit(X[::2])
    nm = _native(fu, tmp_path)
    Xt = X[1::2]
    np.testing.assert_array_equal(fu.transform(Xt), nm.transform(Xt))
    X32 = Xt.astype(np.float32)
    np.testing.assert_array_equal(fu.transform(X32).astype(np.float64), nm.transform(X32))
    np.testing.assert_array_equal(fu.transform(Xt[:1])[0], nm.predict_row("transform", Xt[0]))


# ------------------------------------------------------------------------------------------
# Pipelines ending in estimators of other families (run once the runtime has them)
# ------------------------------------------------------------------------------------------

def _compare_methods(pipe, nm, X, Xn=None, exact=True):
    for m in ("predict", "predict_proba", "decision_function"):
        if not hasattr(pipe, m):
            continue
        a = getattr(pipe, m)(X)
        b = getattr(nm, m)(X if Xn is None else Xn)
        if a.dtype.kind in "OU":
            assert list(a) == list(b), m
        elif exact:
            np.testing.assert_array_equal(a, b, err_msg=m)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(a)), err_msg=m)


def test_pipeline_logistic_regression(tmp_path):
    _needs("sklearn.linear_model.LogisticRegression")
    from sklearn.linear_model import LogisticRegression
    X, y = _data("wine")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    nm = _native(pipe, tmp_path)
    _compare_methods(pipe, nm, X, exact=False)  # X @ coef_.T is BLAS in scikit-learn
    np.testing.assert_array_equal(pipe.predict(X), nm.predict(X))


def test_column_transformer_logistic_regression_strings(tmp_path):
    _needs("sklearn.linear_model.LogisticRegression")
    from sklearn.linear_model import LogisticRegression
    df = _frame(0, 300)
    y = np.where(df["score"] + (df["colour"] == "red") > 0.3, "yes", "no")
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income", "score"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"),
                              OneHotEncoder(sparse_output=False, handle_unknown="ignore")), ["city", "colour"]),
    ])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=2000))]).fit(df, y)
    nm = _native(pipe, tmp_path)
    new = _frame(1, 100)
    _compare_methods(pipe, nm, new, _table(new), exact=False)


def test_pipeline_random_forest(tmp_path):
    _needs("sklearn.ensemble.RandomForestClassifier")
    from sklearn.ensemble import RandomForestClassifier
    df = _frame(3, 300)
    y = (df["score"] > 0).astype(int).to_numpy()
    pre = ColumnTransformer([("num", SimpleImputer(), ["age", "income", "score"]),
                             ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                              ["city", "colour"])])
    pipe = make_pipeline(pre, RandomForestClassifier(n_estimators=15, random_state=0)).fit(df, y)
    nm = _native(pipe, tmp_path)
    new = _frame(4, 150)
    _compare_methods(pipe, nm, new, _table(new))


def test_concurrent_calls(tmp_path):
    # Models are immutable: many threads may transform at once (the binding releases the GIL).
    from concurrent.futures import ThreadPoolExecutor
    df = _frame(0, 400)
    ct = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler(), PolynomialFeatures(2)), ["age", "income", "score"]),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(sparse_output=False, handle_unknown="ignore")), ["city", "colour"]),
    ]).fit(df)
    nm = _native(ct, tmp_path)
    frames = [_frame(s, 300) for s in range(8)]
    expected = [ct.transform(f) for f in frames]
    tables = [_table(f) for f in frames]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: nm.transform(tables[i % 8]), range(32)))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(expected[i % 8], g)


def test_corrupted_compositions(tmp_path):
    X, _ = _data("iris")
    ct = ColumnTransformer([("a", StandardScaler(), [0, 1])], remainder="passthrough").fit(X)
    ct._transformer_to_input_indices["a"] = [0, 17]
    p = tmp_path / "bad.vit"
    vitrify.dump(ct, p)
    with pytest.raises(vitrify.VitrifyError) as e:
        vitrify.native.load(p)
    assert e.value.code_name == "bad_state"
    ct = ColumnTransformer([("a", StandardScaler(), [0, 1])], remainder="passthrough").fit(X)
    ct._transformer_to_input_indices["a"] = [0, 1, 2]  # the scaler was fitted on 2 columns
    vitrify.dump(ct, p)
    with pytest.raises(vitrify.VitrifyError) as e:
        vitrify.native.load(p)
    assert e.value.code_name == "bad_state"
    pipe = make_pipeline(StandardScaler(), PCA(2)).fit(X)
    pipe.steps[1][1].components_ = np.zeros((2, 3))
    vitrify.dump(pipe, p)
    with pytest.raises(vitrify.VitrifyError):
        vitrify.native.load(p)
