#!/usr/bin/env python3
"""Write the seed corpus of the model fuzzer (fuzz/corpus/model/): small fitted estimators of
every family the C++ runtime implements, saved with vitrify.dump (raw and zstd).

Kept small (few rows and features, shallow trees) so each seed fits libFuzzer's -max_len.
Existing seeds are never rewritten (a file that exists is skipped), so running it again only
adds seeds for estimators that are new. The seeds without a suffix were written with object
encoding version 2; the `-v3` seeds (version 3, arrays pooled) are copies of
tests/vectors/models/content_v3/.
"""
import pathlib
import warnings

import numpy as np

import vitrify

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus" / "model"


def estimators():
    from sklearn import (cluster, compose, decomposition, ensemble, linear_model, naive_bayes,
                         neighbors, neural_network, pipeline, preprocessing, svm, tree)
    yield "logreg", linear_model.LogisticRegression(max_iter=50)
    yield "ridge", linear_model.Ridge()
    yield "linreg", linear_model.LinearRegression()
    yield "sgd", linear_model.SGDClassifier(max_iter=5, tol=None, random_state=0)
    yield "linsvc", svm.LinearSVC(max_iter=50)
    yield "svc_rbf", svm.SVC(probability=True, random_state=0)
    yield "svr_poly", svm.SVR(kernel="poly", degree=2)
    yield "gnb", naive_bayes.GaussianNB()
    yield "knn", neighbors.KNeighborsClassifier(n_neighbors=3)
    yield "kmeans", cluster.KMeans(n_clusters=2, n_init=1, random_state=0)
    yield "mlp", neural_network.MLPClassifier(hidden_layer_sizes=(3,), max_iter=20, random_state=0)
    yield "tree", tree.DecisionTreeClassifier(max_depth=3, random_state=0)
    yield "tree_reg", tree.DecisionTreeRegressor(max_depth=3, random_state=0)
    yield "rf", ensemble.RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    yield "et_reg", ensemble.ExtraTreesRegressor(n_estimators=3, max_depth=3, random_state=0)
    yield "gb", ensemble.GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0)
    yield "hgb", ensemble.HistGradientBoostingClassifier(max_iter=3, max_depth=2, random_state=0)
    yield "iso", ensemble.IsolationForest(n_estimators=3, random_state=0)
    yield "scaler", preprocessing.StandardScaler()
    yield "minmax", preprocessing.MinMaxScaler()
    yield "poly", preprocessing.PolynomialFeatures(degree=2)
    yield "pca", decomposition.PCA(n_components=2)
    yield "pipe", pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=50))
    yield "ct", compose.ColumnTransformer([("s", preprocessing.StandardScaler(), [0, 1]),
                                          ("o", preprocessing.OneHotEncoder(handle_unknown="ignore"), [2])],
                                         remainder="passthrough")


def fitted(skip=lambda stem: False):
    """Yield (file stem, compression, fitted estimator) for every seed, raw and zstd, fitted on
    the seeds' fixed data. ``skip(stem)`` avoids fitting for files that already exist."""
    rng = np.random.RandomState(0)
    X = rng.rand(30, 4)
    X[:, 2] = rng.randint(0, 3, 30)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    yr = X[:, 0] * 2 + X[:, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, est in estimators():
            for comp in (None, "zstd"):
                stem = f"{name}{'-zstd' if comp else ''}"
                if skip(stem):
                    continue
                target = yr if name.endswith("_reg") or name in ("ridge", "linreg", "svr_poly") else y
                yield stem, comp, est.fit(X, target)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, comp, est in fitted(lambda stem: (OUT / f"{stem}.vit").exists()):
        path = OUT / f"{stem}.vit"
        vitrify.dump(est, path, compress=comp, durable=False)
        print("wrote", path.relative_to(ROOT), path.stat().st_size)


if __name__ == "__main__":
    main()
