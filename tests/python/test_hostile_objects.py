"""Hostile object files (issue 11, item 8): for every type whose compiled code trusts its state,
a crafted file per trusted field, plus the load-time call attacks and resource attacks on the
object encoding. Each file is loaded in a child process under a 1.5 GiB address-space limit and
a timeout, by vitrify.load and by the C++ runtime (vitrify.native.load), and must either be
refused with a vitrify.VitrifyError or load and then run the model's methods without error. A
signal death, a MemoryError, a hang or any other exception fails the case.

Crafting: tests/python/hostile_craft.py (a real model's file, one field changed, rewritten with
the package's writer)."""

from __future__ import annotations

import base64
import functools
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import hostile_craft as hc
from hostile_craft import glob, obj

T_TREE = "sklearn.tree._tree.Tree"
T_PRED = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
T_CSR = "scipy.sparse.csr_matrix"
LLOYD = "sklearn.cluster._kmeans._kmeans_single_lloyd"

CLASSIFY = ["predict", "predict_proba", "decision_function"]


# ------------------------------------------------------------------------------------------
# Fitted models (tiny, fitted once per session)
# ------------------------------------------------------------------------------------------

def _iris():
    from sklearn.datasets import load_iris
    return load_iris(return_X_y=True)


def _categorical():
    rng = np.random.RandomState(0)
    X = np.c_[rng.randint(0, 4, 80), rng.randn(80)]
    y = ((X[:, 0] == 1) | (X[:, 0] == 3)).astype(int)
    return X, y


def _fit(name: str):
    from sklearn import cluster, ensemble, linear_model, neighbors, svm, tree
    X, y = _iris()
    if name == "tree":
        return tree.DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    if name == "forest":
        return ensemble.ExtraTreesClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)
    if name == "hgb":
        Xc, yc = _categorical()
        return ensemble.HistGradientBoostingClassifier(
            max_iter=2, max_depth=2, categorical_features=[0], random_state=0).fit(Xc, yc)
    if name in ("knn_kd", "knn_ball"):
        alg = "kd_tree" if name == "knn_kd" else "ball_tree"
        return neighbors.KNeighborsClassifier(3, algorithm=alg, leaf_size=5).fit(X[::3], y[::3])
    if name == "kdtree":
        return neighbors.KDTree(X[::3], leaf_size=5)
    if name == "balltree":
        return neighbors.BallTree(X[::3], leaf_size=5)
    if name == "nn_brute":
        return neighbors.NearestNeighbors(n_neighbors=2, algorithm="brute").fit(X[::3])
    if name == "svc":
        return svm.SVC(probability=True, random_state=0).fit(X[::2], y[::2])
    if name == "svc_sparse":
        return svm.SVC(kernel="linear").fit(sp.csr_matrix(X[40:110]), y[40:110])
    if name == "svr":
        return svm.SVR().fit(X[::3, :3], X[::3, 3])
    if name == "nusvc":
        return svm.NuSVC().fit(X[::3], y[::3])
    if name == "ocsvm":
        return svm.OneClassSVM(nu=0.2).fit(X[::3])
    if name == "kmeans":
        return cluster.KMeans(3, n_init=1, random_state=0).fit(X)
    if name == "lr":
        return linear_model.LogisticRegression(max_iter=1000).fit(X, y)
    if name == "lr_sparse":
        return linear_model.LogisticRegression(max_iter=1000).fit(X, y).sparsify()
    raise KeyError(name)


# model -> (methods to run after a load, rows to run them on)
_METHODS = {
    "tree": (["predict", "predict_proba", "apply", "decision_path"], "iris"),
    "forest": (["predict", "predict_proba", "apply", "decision_path"], "iris"),
    "hgb": (CLASSIFY, "cat"),
    "knn_kd": (["predict", "predict_proba", "kneighbors"], "iris"),
    "knn_ball": (["predict", "predict_proba", "kneighbors"], "iris"),
    "kdtree": (["query"], "iris"),
    "balltree": (["query"], "iris"),
    "nn_brute": (["kneighbors"], "iris"),
    "svc": (CLASSIFY, "iris"),
    "svc_sparse": (CLASSIFY, "iris"),
    "svr": (["predict"], "iris3"),
    "nusvc": (CLASSIFY, "iris"),
    "ocsvm": (["predict", "decision_function", "score_samples"], "iris"),
    "kmeans": (["predict", "transform"], "iris"),
    "lr": (CLASSIFY, "iris"),
    "lr_sparse": (CLASSIFY, "iris"),
}


@functools.cache
def model(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fit(name)


def rows(kind: str) -> np.ndarray:
    X, _ = _iris()
    if kind == "cat":
        return _categorical()[0][:6]
    if kind == "iris3":
        return X[:6, :3]
    if kind == "iris32":
        return X[::25].astype(np.float32)
    return X[::25].copy()


# ------------------------------------------------------------------------------------------
# Mutation helpers
# ------------------------------------------------------------------------------------------

def edit_array(type_name: str, key: Any, fn, nth: int = 0):
    """A mutation that passes the decoded array at ``state[key]`` of the nth ``type_name``
    object to ``fn`` (which edits it in place, or returns a replacement array)."""
    def mutate(d: hc.Doc):
        st = d.state(d.objects(type_name)[nth])
        a = d.get_array(st[key])
        out = fn(a)
        st[key] = d.put_array(out if isinstance(out, np.ndarray) else a)
    return mutate


def set_state(type_name: str, key: Any, value, nth: int = 0):
    def mutate(d: hc.Doc):
        v = value(d) if callable(value) else value
        d.state(d.objects(type_name)[nth])[key] = v
    return mutate


def drop_state(type_name: str, key: Any):
    def mutate(d: hc.Doc):
        del d.state(d.first(type_name))[key]
    return mutate


def restructure(type_name: str, key: Any, new_dtype_of):
    """Re-lay a structured array into another dtype, copying every field by name (so a reader
    that goes by name sees the same values)."""
    def fn(a):
        dt = new_dtype_of(a.dtype)
        out = np.zeros(a.shape, dtype=dt)
        for n in dt.names:
            if n in a.dtype.names:
                out[n] = a[n]
        return out
    return edit_array(type_name, key, fn)


def permuted(dt: np.dtype) -> np.dtype:
    """Same fields, declared in another order (swap the first two and the next two)."""
    names = list(dt.names)
    names[0], names[1], names[2], names[3] = names[2], names[3], names[0], names[1]
    return np.dtype([(n, dt.fields[n][0]) for n in names])


def offsets_shuffled(dt: np.dtype) -> np.dtype:
    """Same fields in the same order at other offsets (reversed layout)."""
    names = list(dt.names)
    offs, pos = {}, 0
    for n in reversed(names):
        offs[n] = pos
        pos += dt.fields[n][0].itemsize
    return np.dtype({"names": names, "formats": [dt.fields[n][0] for n in names],
                     "offsets": [offs[n] for n in names], "itemsize": pos})


def without(field: str):
    return lambda dt: np.dtype([(n, dt.fields[n][0]) for n in dt.names if n != field])


def with_extra(dt: np.dtype) -> np.dtype:
    return np.dtype([(n, dt.fields[n][0]) for n in dt.names] + [("extra", "<i8")])


def wider(dt: np.dtype) -> np.dtype:
    return np.dtype({"names": list(dt.names), "formats": [dt.fields[n][0] for n in dt.names],
                     "offsets": [dt.fields[n][1] for n in dt.names], "itemsize": dt.itemsize + 24})


# ------------------------------------------------------------------------------------------
# Cases: (id, model, mutation)
# ------------------------------------------------------------------------------------------

CASES: list = []


def case(cid: str, model_name: str, mutate, rows_kind: str | None = None):
    """``rows_kind`` overrides the rows the methods run on (else the model's, _METHODS)."""
    CASES.append(pytest.param(model_name, mutate, rows_kind, id=cid))


# -- sklearn.tree._tree.Tree --------------------------------------------------------------

def _nodes(fn):
    return edit_array(T_TREE, "nodes", fn)


def _set_node(field, value, row=0):
    def fn(a):
        a[field][row] = value
    return _nodes(fn)


def _internal_child_to(target):
    def fn(a):
        i = [j for j in range(1, len(a)) if a["left_child"][j] != -1][0]
        a["left_child"][i] = target(i)
    return _nodes(fn)


case("tree-left_child-out-of-range", "tree", _set_node("left_child", 10**6))
case("tree-right_child-2**40", "tree", _set_node("right_child", 2**40))
case("tree-left_child-negative", "tree", _set_node("left_child", -5))
case("tree-right_child-negative-big", "tree", _set_node("right_child", -(2**40)))
case("tree-self-loop", "tree", _set_node("left_child", 0))
case("tree-cycle-to-root", "tree", _internal_child_to(lambda i: 0))
case("tree-child-to-itself-deeper", "tree", _internal_child_to(lambda i: i))
case("tree-leaf-with-one-child", "tree", _nodes(lambda a: a["left_child"].__setitem__(
    int(np.flatnonzero(a["left_child"] == -1)[0]), 1)))
case("tree-feature-equals-n_features", "tree", _set_node("feature", 4))
case("tree-feature-2**40", "tree", _set_node("feature", 2**40))
case("tree-feature-negative", "tree", _set_node("feature", -7))
case("tree-threshold-nan", "tree", _set_node("threshold", np.nan))
case("tree-values-too-few-rows", "tree", edit_array(T_TREE, "values", lambda v: v[:-2]))
case("tree-values-too-few-classes", "tree", edit_array(T_TREE, "values", lambda v: v[:, :, :2]))
case("tree-values-more-classes", "tree", edit_array(T_TREE, "values", lambda v: np.concatenate([v, v], axis=2)))
case("tree-values-2d", "tree", edit_array(T_TREE, "values", lambda v: v.reshape(v.shape[0], -1)))
case("tree-values-float32", "tree", edit_array(T_TREE, "values", lambda v: v.astype(np.float32)))
case("tree-node_count-bigger", "tree", set_state(T_TREE, "node_count", lambda d: 10**6))
case("tree-node_count-smaller", "tree", set_state(T_TREE, "node_count", 1))
case("tree-node_count-2**62", "tree", set_state(T_TREE, "node_count", 2**62))
case("tree-node_count-negative", "tree", set_state(T_TREE, "node_count", -1))
case("tree-max_depth-zero", "tree", set_state(T_TREE, "max_depth", 0))
case("tree-max_depth-one", "tree", set_state(T_TREE, "max_depth", 1))
case("tree-max_depth-2**40", "tree", set_state(T_TREE, "max_depth", 2**40))
case("tree-max_depth-2**62", "tree", set_state(T_TREE, "max_depth", 2**62))
case("tree-max_depth-negative", "tree", set_state(T_TREE, "max_depth", -3))
case("tree-fields-declared-in-another-order", "tree", restructure(T_TREE, "nodes", permuted))
case("tree-fields-at-other-offsets", "tree", restructure(T_TREE, "nodes", offsets_shuffled))
case("tree-field-missing", "tree", restructure(T_TREE, "nodes", without("missing_go_to_left")))
case("tree-field-missing-threshold", "tree", restructure(T_TREE, "nodes", without("threshold")))
case("tree-field-extra", "tree", restructure(T_TREE, "nodes", with_extra))
case("tree-itemsize-wider", "tree", restructure(T_TREE, "nodes", wider))
case("tree-children-int32", "tree", restructure(T_TREE, "nodes", lambda dt: np.dtype(
    [(n, "<i4" if n in ("left_child", "right_child") else dt.fields[n][0]) for n in dt.names])))
case("tree-nodes-big-endian", "tree", restructure(T_TREE, "nodes", lambda dt: np.dtype(
    [(n, dt.fields[n][0].newbyteorder(">")) for n in dt.names])))
case("tree-nodes-2d", "tree", edit_array(T_TREE, "nodes", lambda a: a.reshape(1, -1)))
case("tree-nodes-plain-int64", "tree", edit_array(T_TREE, "nodes", lambda a: a.view(np.int64)))


def _tree_args(i, v):
    def mutate(d):
        st = d.first(T_TREE)["state"]
        st["a"][i] = v(d) if callable(v) else v
    return mutate


case("tree-ctor-n_features-2**40", "tree", _tree_args(0, 2**40))
case("tree-ctor-n_features-negative", "tree", _tree_args(0, -1))
case("tree-ctor-n_features-smaller", "tree", _tree_args(0, 1))
case("tree-ctor-n_classes-2**40", "tree", _tree_args(1, lambda d: d.put_array(np.array([2**40]))))
case("tree-ctor-n_classes-2**62", "tree", _tree_args(1, lambda d: d.put_array(np.array([2**62]))))
case("tree-ctor-n_classes-negative", "tree", _tree_args(1, lambda d: d.put_array(np.array([-3]))))
case("tree-ctor-n_outputs-2**33", "tree", _tree_args(2, 2**33))
case("tree-ctor-n_outputs-mismatch", "tree", _tree_args(2, 2))
case("tree-ctor-n_classes-shape-mismatch", "tree", _tree_args(1, lambda d: d.put_array(np.array([3, 3, 3]))))
case("tree-estimator-n_features_in_-mismatch", "tree",
     set_state("sklearn.tree.DecisionTreeClassifier", "n_features_in_", 10))
case("tree-estimator-classes_-shorter", "tree", set_state(
    "sklearn.tree.DecisionTreeClassifier", "classes_", lambda d: d.put_array(np.array([0, 1]))))
case("tree-estimator-n_outputs_-mismatch", "tree", set_state("sklearn.tree.DecisionTreeClassifier", "n_outputs_", 3))
case("forest-second-tree-child-out-of-range", "forest",
     edit_array(T_TREE, "nodes", lambda a: a["right_child"].__setitem__(0, 10**6), nth=1))
case("forest-tree-max_depth-zero", "forest", set_state(T_TREE, "max_depth", 0, nth=1))

# -- HistGradientBoosting TreePredictor ---------------------------------------------------


def _pnodes(fn, nth=0):
    return edit_array(T_PRED, "nodes", fn, nth)


def _pset(field, value, row=0):
    def fn(a):
        a[field][row] = value
    return _pnodes(fn)


def _p_internal(fn):
    def g(a):
        i = int(np.flatnonzero(a["is_leaf"] == 0)[0])
        fn(a, i)
    return _pnodes(g)


def _p_categorical(fn):
    def g(a):
        cat = np.flatnonzero((a["is_leaf"] == 0) & (a["is_categorical"] == 1))
        assert cat.size, "the model must have a categorical split"
        fn(a, int(cat[0]))
    return _pnodes(g)


case("hgb-left-out-of-range", "hgb", _p_internal(lambda a, i: a["left"].__setitem__(i, 10**6)))
case("hgb-right-uint32-max", "hgb", _p_internal(lambda a, i: a["right"].__setitem__(i, 2**32 - 1)))
case("hgb-self-loop", "hgb", _p_internal(lambda a, i: a["left"].__setitem__(i, i)))
case("hgb-leaf-flags-cleared", "hgb", _pnodes(lambda a: a["is_leaf"].__setitem__(slice(None), 0)))
case("hgb-is_leaf-not-bool", "hgb", _p_internal(lambda a, i: a["is_leaf"].__setitem__(i, 7)))
case("hgb-feature_idx-too-big", "hgb", _p_internal(lambda a, i: a["feature_idx"].__setitem__(i, 50)))
case("hgb-feature_idx-negative", "hgb", _p_internal(lambda a, i: a["feature_idx"].__setitem__(i, -3)))
case("hgb-num_threshold-nan", "hgb", _p_internal(lambda a, i: a["num_threshold"].__setitem__(i, np.nan)))
case("hgb-bitset_idx-out-of-range", "hgb", _p_categorical(lambda a, i: a["bitset_idx"].__setitem__(i, 10**6)))
case("hgb-numeric-node-marked-categorical", "hgb", _pnodes(lambda a: (
    a["is_categorical"].__setitem__(slice(None), 1), a["bitset_idx"].__setitem__(slice(None), 5))))
case("hgb-raw-bitsets-narrow", "hgb", edit_array(T_PRED, "raw_left_cat_bitsets", lambda b: b[:, :2]))
case("hgb-raw-bitsets-1d", "hgb", edit_array(T_PRED, "raw_left_cat_bitsets", lambda b: b.reshape(-1)))
case("hgb-raw-bitsets-empty", "hgb", edit_array(T_PRED, "raw_left_cat_bitsets", lambda b: b[:0]))
case("hgb-binned-bitsets-int64", "hgb", edit_array(T_PRED, "binned_left_cat_bitsets", lambda b: b.astype(np.int64)))
case("hgb-fields-declared-in-another-order", "hgb", restructure(T_PRED, "nodes", permuted))
case("hgb-fields-at-other-offsets", "hgb", restructure(T_PRED, "nodes", offsets_shuffled))
case("hgb-field-missing", "hgb", restructure(T_PRED, "nodes", without("gain")))
case("hgb-field-missing-left", "hgb", restructure(T_PRED, "nodes", without("left")))
case("hgb-field-extra", "hgb", restructure(T_PRED, "nodes", with_extra))
case("hgb-itemsize-wider", "hgb", restructure(T_PRED, "nodes", wider))
case("hgb-nodes-empty", "hgb", _pnodes(lambda a: a[:0]))
case("hgb-n_trees_per_iteration_-2**33", "hgb",
     set_state("sklearn.ensemble.HistGradientBoostingClassifier", "n_trees_per_iteration_", 2**33))
case("hgb-n_trees_per_iteration_-2", "hgb",
     set_state("sklearn.ensemble.HistGradientBoostingClassifier", "n_trees_per_iteration_", 2))
case("hgb-baseline-wrong-shape", "hgb", set_state(
    "sklearn.ensemble.HistGradientBoostingClassifier", "_baseline_prediction",
    lambda d: d.put_array(np.zeros((5, 3)))))
case("hgb-n_features_in_-smaller", "hgb",
     set_state("sklearn.ensemble.HistGradientBoostingClassifier", "n_features_in_", 1))


def _hgb_partial_to_kernel(d: hc.Doc):
    # The numeric column's FunctionTransformer holds functools.partial(check_array, ...); the
    # file makes it a partial of a raw k-means kernel, which transform (hence predict) calls.
    part = d.objects("functools.partial")[0]
    kernel = glob(LLOYD)
    kw = {"sample_weight": d.put_array(np.ones(len(rows("cat")))),
          "centers_init": d.put_array(np.zeros((2, 0)))}   # no feature column: writes past it
    # Only the state (func, args, keywords, dict) changes: "a" holds $shared values used later.
    st = part["state"]["s"]["$tuple"]
    st[0], st[2] = kernel, kw


case("hgb-partial-wraps-kmeans-kernel", "hgb", _hgb_partial_to_kernel)

# -- KD-tree / ball-tree (in KNeighborsClassifier and stand-alone) --------------------------

KD_NEW = "sklearn.neighbors._kd_tree.newObj"
BALL_NEW = "sklearn.neighbors._ball_tree.newObj"


def _nt_type(m):
    return KD_NEW if m in ("knn_kd", "kdtree") else BALL_NEW


def _nt_edit(m, i, fn):
    return edit_array(_nt_type(m), i, fn)


def _nt_set(m, i, v):
    return set_state(_nt_type(m), i, v)


def _bounds_fewer_nodes(b):
    # (2, n_nodes, n_features) for a KD-tree, (1, n_nodes, n_features) for a ball tree
    return b[:, :1]


for _m in ("knn_kd", "knn_ball", "kdtree", "balltree"):
    case(f"{_m}-idx_array-out-of-range", _m, _nt_edit(_m, 1, lambda a: a.__setitem__(0, 10**6)))
    case(f"{_m}-idx_array-negative", _m, _nt_edit(_m, 1, lambda a: a.__setitem__(0, -1)))
    case(f"{_m}-idx_array-short", _m, _nt_edit(_m, 1, lambda a: a[:3]))
    case(f"{_m}-idx_start-negative", _m, _nt_edit(_m, 2, lambda a: a["idx_start"].__setitem__(1, -5)))
    case(f"{_m}-idx_end-past-end", _m, _nt_edit(_m, 2, lambda a: a["idx_end"].__setitem__(0, 10**6)))
    case(f"{_m}-idx-range-reversed", _m, _nt_edit(_m, 2, lambda a: (
        a["idx_start"].__setitem__(1, a["idx_end"][1]), a["idx_end"].__setitem__(1, 0))))
    case(f"{_m}-leaf-flags-cleared", _m, _nt_edit(_m, 2, lambda a: a["is_leaf"].__setitem__(slice(None), 0)))
    case(f"{_m}-node_data-fields-another-order", _m, restructure(_nt_type(_m), 2, permuted))
    case(f"{_m}-node_data-short", _m, _nt_edit(_m, 2, lambda a: a[:1]))
    case(f"{_m}-node_bounds-fewer-nodes", _m, _nt_edit(_m, 3, _bounds_fewer_nodes))
    case(f"{_m}-node_bounds-fewer-features", _m, _nt_edit(_m, 3, lambda b: b[..., :2]))
    case(f"{_m}-node_bounds-2d", _m, _nt_edit(_m, 3, lambda b: b.reshape(b.shape[0], -1)))
    case(f"{_m}-n_levels-huge", _m, _nt_set(_m, 5, 60))
    case(f"{_m}-n_nodes-bigger", _m, _nt_set(_m, 6, 1000))
    case(f"{_m}-n_nodes-smaller", _m, _nt_set(_m, 6, 1))
    case(f"{_m}-leaf_size-zero", _m, _nt_set(_m, 4, 0))
    case(f"{_m}-data-fewer-features", _m, _nt_edit(_m, 0, lambda x: x[:, :2]))
    case(f"{_m}-data-fewer-rows", _m, _nt_edit(_m, 0, lambda x: x[:4]))
    case(f"{_m}-data-1d", _m, _nt_edit(_m, 0, lambda x: x.reshape(-1)))

_KNN = "sklearn.neighbors.KNeighborsClassifier"
for _m in ("knn_kd", "knn_ball"):
    case(f"{_m}-_y-short", _m, edit_array(_KNN, "_y", lambda a: a[:5]))
    case(f"{_m}-_y-out-of-classes", _m, edit_array(_KNN, "_y", lambda a: a.__setitem__(slice(None), 50)))
    case(f"{_m}-_fit_X-fewer-rows", _m, set_state(_KNN, "_fit_X", lambda d: d.put_array(np.zeros((3, 4)))))
    case(f"{_m}-n_samples_fit_-huge", _m, set_state(_KNN, "n_samples_fit_", 2**40))
    case(f"{_m}-_fit_method-unknown", _m, set_state(_KNN, "_fit_method", "foo"))
    case(f"{_m}-_tree-replaced-by-array", _m, set_state(_KNN, "_tree", lambda d: d.put_array(np.zeros(3))))
case("nn_brute-_fit_X-fewer-features", "nn_brute", set_state(
    "sklearn.neighbors.NearestNeighbors", "_fit_X", lambda d: d.put_array(np.zeros((5, 2)))))
case("nn_brute-_fit_X-1d", "nn_brute", set_state(
    "sklearn.neighbors.NearestNeighbors", "_fit_X", lambda d: d.put_array(np.zeros(5))))

# -- scipy sparse inside models ------------------------------------------------------------

for _m, _nth in (("svc_sparse", 0), ("lr_sparse", 0)):
    case(f"{_m}-indptr-non-monotone", _m, edit_array(T_CSR, "indptr", lambda p: p.__setitem__(1, p[-1]), _nth))
    case(f"{_m}-indptr-short", _m, edit_array(T_CSR, "indptr", lambda p: p[:-1], _nth))
    case(f"{_m}-indptr-last-past-data", _m, edit_array(T_CSR, "indptr", lambda p: p.__setitem__(-1, p[-1] + 100), _nth))
    case(f"{_m}-indptr-negative", _m, edit_array(T_CSR, "indptr", lambda p: p.__setitem__(0, -8), _nth))
    case(f"{_m}-indices-past-n_cols", _m, edit_array(T_CSR, "indices", lambda p: p.__setitem__(0, 10**6), _nth))
    case(f"{_m}-indices-negative", _m, edit_array(T_CSR, "indices", lambda p: p.__setitem__(0, -1), _nth))
    case(f"{_m}-data-short", _m, edit_array(T_CSR, "data", lambda p: p[:2], _nth))
    case(f"{_m}-shape-fewer-cols", _m, set_state(T_CSR, "_shape", lambda d: {"$tuple": [
        d.state(d.objects(T_CSR)[0])["_shape"]["$tuple"][0], 2]}))
    case(f"{_m}-shape-2**40-rows", _m, set_state(T_CSR, "_shape", lambda d: {"$tuple": [
        2**40, d.state(d.objects(T_CSR)[0])["_shape"]["$tuple"][1]]}))
case("svc_sparse-dual_coef-indices-past-n_SV", "svc_sparse",
     edit_array(T_CSR, "indices", lambda p: p.__setitem__(slice(None), 10**5), 1))

# -- libsvm state: SVC / SVR / NuSVC / OneClassSVM -----------------------------------------

_SVM_TYPE = {"svc": "sklearn.svm.SVC", "svr": "sklearn.svm.SVR", "nusvc": "sklearn.svm.NuSVC",
             "ocsvm": "sklearn.svm.OneClassSVM", "svc_sparse": "sklearn.svm.SVC"}


def _svm_edit(m, key, fn):
    return edit_array(_SVM_TYPE[m], key, fn)


for _m in ("svc", "svr", "nusvc", "ocsvm"):
    case(f"{_m}-_n_support-sum-too-big", _m, _svm_edit(_m, "_n_support", lambda a: a.__setitem__(0, a[0] + 50)))
    case(f"{_m}-_n_support-negative", _m, _svm_edit(_m, "_n_support", lambda a: a.__setitem__(0, -5)))
    case(f"{_m}-_n_support-short", _m, _svm_edit(_m, "_n_support", lambda a: a[:1] if a.size > 1 else a[:0]))
    case(f"{_m}-support_-out-of-range", _m, _svm_edit(_m, "support_", lambda a: a.__setitem__(0, 10**6)))
    case(f"{_m}-_dual_coef_-fewer-columns", _m, _svm_edit(_m, "_dual_coef_", lambda a: a[:, :2]))
    case(f"{_m}-_dual_coef_-1d", _m, _svm_edit(_m, "_dual_coef_", lambda a: a.reshape(-1)))
    case(f"{_m}-dual_coef_-fewer-columns", _m, _svm_edit(_m, "dual_coef_", lambda a: a[:, :2]))
    case(f"{_m}-support_vectors_-fewer-rows", _m, _svm_edit(_m, "support_vectors_", lambda a: a[:2]))
    case(f"{_m}-support_vectors_-fewer-cols", _m, _svm_edit(_m, "support_vectors_", lambda a: a[:, :1]))
    case(f"{_m}-support_vectors_-float32", _m, _svm_edit(_m, "support_vectors_", lambda a: a.astype(np.float32)))
    case(f"{_m}-_intercept_-empty", _m, _svm_edit(_m, "_intercept_", lambda a: a[:0]))
    case(f"{_m}-intercept_-empty", _m, _svm_edit(_m, "intercept_", lambda a: a[:0]))
    case(f"{_m}-kernel-unknown", _m, set_state(_SVM_TYPE[_m], "kernel", "foo"))
    case(f"{_m}-kernel-precomputed", _m, set_state(_SVM_TYPE[_m], "kernel", "precomputed"))
    case(f"{_m}-_sparse-true-on-dense", _m, set_state(_SVM_TYPE[_m], "_sparse", True))
    case(f"{_m}-shape_fit_-other-width", _m, set_state(_SVM_TYPE[_m], "shape_fit_", {"$tuple": [10, 2]}))
for _m in ("svc", "nusvc"):
    case(f"{_m}-_probA-short", _m, _svm_edit(_m, "_probA", lambda a: a[:1]))
    case(f"{_m}-_probB-empty", _m, _svm_edit(_m, "_probB", lambda a: a[:0]))
    case(f"{_m}-class_weight_-short", _m, _svm_edit(_m, "class_weight_", lambda a: a[:1]))
    case(f"{_m}-classes_-longer", _m, _svm_edit(_m, "classes_", lambda a: np.arange(6)))
case("svc-degree-huge-poly", "svc", lambda d: (set_state("sklearn.svm.SVC", "kernel", "poly")(d),
                                              set_state("sklearn.svm.SVC", "degree", 2**40)(d)))
case("svc_sparse-_sparse-false-on-sparse", "svc_sparse", set_state("sklearn.svm.SVC", "_sparse", False))
case("svc_sparse-_n_support-sum-too-big", "svc_sparse",
     _svm_edit("svc_sparse", "_n_support", lambda a: a.__setitem__(0, a[0] + 50)))

# -- KMeans --------------------------------------------------------------------------------

_KM = "sklearn.cluster.KMeans"
case("kmeans-centers-fewer-features", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: c[:, :2]))
case("kmeans-centers-more-features", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: np.c_[c, c]))
case("kmeans-centers-1d", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: c.reshape(-1)))
case("kmeans-centers-empty", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: c[:0]))
# float32 centres are what KMeans keeps when fitted on float32 data, and scikit-learn's own
# predict then refuses float64 rows (a ValueError from the Cython kernel): the model must work
# with the data it was made for.
case("kmeans-centers-float32", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: c.astype(np.float32)),
     "iris32")
case("kmeans-centers-fortran", "kmeans", edit_array(_KM, "cluster_centers_", lambda c: np.asfortranarray(np.c_[c, c])[:, :4]))
case("kmeans-n_clusters-mismatch", "kmeans", set_state(_KM, "n_clusters", 50))
case("kmeans-_n_threads-2**20", "kmeans", set_state(_KM, "_n_threads", 2**20))
case("kmeans-_n_threads-negative", "kmeans", set_state(_KM, "_n_threads", -4))

# -- Load-time call attacks and resource attacks on the encoding ----------------------------
# The hostile node replaces a LogisticRegression's coef_ (the C++ runtime reads it too), or is
# added under an extra key when only the parser should meet it.

_LR = "sklearn.linear_model.LogisticRegression"


def in_coef(make):
    return set_state(_LR, "coef_", make)


def in_extra(make):
    return set_state(_LR, "_hostile", make)


def _call(name, *args):
    return lambda d: obj(name, {"a": [a(d) if callable(a) else a for a in args]})


def _nd(state):
    return lambda d: obj("numpy.ndarray", state(d) if callable(state) else state)


def _lloyd_args(d):
    # Centers with no feature column against 2-column data: the kernel writes past the centers'
    # buffer (heap corruption, "free(): invalid pointer" in plain scikit-learn).
    X = d.put_array(np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    return [X, d.put_array(np.ones(3)), d.put_array(np.zeros((2, 0))), 300, False, 0.0, 1]


case("call-kmeans-lloyd-kernel", "lr", in_coef(lambda d: obj(LLOYD, {"a": _lloyd_args(d)})))
case("call-kmeans-lloyd-kernel-in-extra-key", "lr", in_extra(lambda d: obj(LLOYD, {"a": _lloyd_args(d)})))
case("call-numpy-ones-2**33", "lr", in_coef(_call("numpy.ones", 2**33)))
case("call-numpy-zeros-2**33", "lr", in_coef(_call("numpy.zeros", 2**33)))
case("call-numpy-ones-shape-overflow", "lr", in_coef(_call("numpy.ones", {"$tuple": [2**32, 2**32]})))
case("call-builtins-bytearray-2**33", "lr", in_coef(_call("builtins.bytearray", 2**33)))
case("special-builtins-bytearray-2**33", "lr", in_coef(lambda d: obj("builtins.bytearray", 2**33)))
case("call-builtins-bytes-2**33", "lr", in_coef(_call("builtins.bytes", 2**33)))
case("call-builtins-range-2**33", "lr", in_extra(_call("builtins.range", 2**33)))
case("call-builtins-list-of-range-2**33", "lr",
     in_extra(_call("builtins.list", lambda d: obj("builtins.range", [0, 2**33, 1]))))
case("call-builtins-bytes-of-range-2**33", "lr",
     in_extra(_call("builtins.bytes", lambda d: obj("builtins.range", [0, 2**33, 1]))))
case("call-functools-partial-of-kernel", "lr", in_extra(lambda d: obj("functools.partial", {
    "a": [glob(LLOYD)], "s": {"$tuple": [glob(LLOYD), {"$tuple": _lloyd_args(d)}, {}, None]}})))
case("call-tree-ctor-huge-n_classes", "lr", in_extra(lambda d: obj(T_TREE, {
    "a": [4, d.put_array(np.array([2**40, 2**40])), 2]})))


_DEEP = 10**5
case("nest-lists-1e5", "lr", in_extra(lambda d: hc.nested(_DEEP, "[", "]")))
case("nest-dicts-1e5", "lr", in_extra(lambda d: hc.nested(_DEEP, '{"a":', "}")))
case("nest-tuples-1e5", "lr", in_extra(lambda d: hc.nested(_DEEP, '{"$tuple":[', "]}")))
case("nest-objects-1e5", "lr", in_extra(lambda d: hc.nested(
    _DEEP, '{"$object":{"type":"builtins.frozenset","version":1,"state":[', "]}}")))
case("nest-ndarray-object-items-1e5", "lr", in_extra(lambda d: hc.nested(
    _DEEP, '{"$object":{"type":"numpy.ndarray","version":1,"state":{"s":[1],"t":"O","i":[', "]}}}")))
case("nest-shared-1e5", "lr", in_extra(lambda d: hc.RawJSON("".join(
    [f'{{"$shared":{{"id":{i},"value":[' for i in range(_DEEP)] + ["0"] + ["]}}"] * _DEEP))))
case("shape-product-overflow", "lr", in_coef(_nd({"p": [0, 0], "t": "<f8", "s": [2**32, 2**32, 3]})))
case("shape-times-itemsize-wraps-to-zero", "lr", in_coef(_nd({"p": [0, 0], "t": "<f8", "s": [2**61]})))
case("shape-times-itemsize-wraps-to-16", "lr", in_coef(_nd({"p": [0, 16], "t": "<f8", "s": [2**61 + 2]})))
case("shape-negative-dims", "lr", in_coef(_nd({"p": [0, 16], "t": "<f8", "s": [-1, -2]})))
case("shape-rank-100", "lr", in_coef(_nd({"p": [0, 8], "t": "<f8", "s": [1] * 100})))
case("shape-huge-inline", "lr", in_coef(_nd({"b": base64.b64encode(bytes(8)).decode(), "t": "<f8", "s": [2**40]})))
case("dtype-void-itemsize-2**40", "lr", in_coef(_nd({"p": [0, 16], "t": "|V1099511627776", "s": [1]})))
case("dtype-bytes-itemsize-2**62", "lr", in_coef(_nd({"p": [0, 16], "t": "|S4611686018427387904", "s": [1]})))
case("dtype-structured-itemsize-2**62", "lr", in_coef(lambda d: obj("numpy.ndarray", {
    "p": [0, 16], "s": [1], "t": d.dtype_ref({"fields": [["a", "<f8", 0]], "itemsize": 2**62, "aligned": False})})))
case("dtype-structured-field-past-itemsize", "lr", in_coef(lambda d: obj("numpy.ndarray", {
    "p": [0, 16], "s": [2], "t": d.dtype_ref({"fields": [["a", "<f8", 2**40]], "itemsize": 8, "aligned": False})})))
case("dtype-table-index-past-end", "lr", in_coef(_nd({"p": [0, 16], "t": 10**6, "s": [2]})))
case("pool-ref-past-end", "lr", in_coef(lambda d: obj("numpy.ndarray", {
    "p": [len(d.pool) // 16 * 16, 4096], "t": "<f8", "s": [512]})))
case("pool-ref-offset-wraps", "lr", in_coef(_nd({"p": [2**64 - 16, 32], "t": "<f8", "s": [4]})))
case("pool-ref-huge", "lr", in_coef(_nd({"p": [2**62, 2**62], "t": "<f8", "s": [2**59]})))
case("pool-ref-negative-offset", "lr", in_coef(_nd({"p": [-16, 32], "t": "<f8", "s": [4]})))
case("pool-ref-nbytes-mismatch", "lr", in_coef(_nd({"p": [0, 8], "t": "<f8", "s": [3, 4]})))
case("object-array-huge-shape", "lr", in_coef(_nd({"s": [2**40], "t": "O", "i": []})))
case("object-array-shape-overflow", "lr", in_coef(_nd({"s": [2**32, 2**32], "t": "O", "i": []})))
case("object-array-shape-mismatch", "lr", in_coef(_nd({"s": [3, 4], "t": "O", "i": [1.0]})))
case("array-ref-past-array-table", "lr", in_coef(_nd({"d": {"$array": "999"}})))


# ------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["python", "native"])
@pytest.mark.parametrize("model_name,mutate,rows_kind", CASES)
def test_hostile_file_is_refused_or_works(tmp_path, model_name, mutate, rows_kind, runtime):
    data = hc.craft(model(model_name), mutate)
    path = tmp_path / "hostile.vit"
    path.write_bytes(data)
    methods, kind = _METHODS[model_name]
    outcome, detail = hc.run_jailed(str(path), runtime, methods, rows(rows_kind or kind))
    print(f"{outcome}: {detail}")
    assert outcome in ("refused", "worked"), f"{outcome}: {detail}"


def test_crafting_changes_only_the_target():
    """The crafting machinery itself: an unchanged document loads into an equal model, and an
    edit reaches the loaded object (so a 'worked' outcome above is about the edit)."""
    import vitrify
    m = model("tree")
    X = rows("iris")
    same = vitrify.loads(hc.craft(m, lambda d: None), check_env=False)
    np.testing.assert_array_equal(same.predict_proba(X), m.predict_proba(X))
    edited = vitrify.loads(hc.craft(m, set_state("sklearn.tree.DecisionTreeClassifier", "max_depth", 7)),
                           check_env=False)
    assert edited.max_depth == 7
    doc = hc.Doc.from_model(m)
    nodes = doc.get_array(doc.state(doc.first(T_TREE))["nodes"])
    np.testing.assert_array_equal(nodes, m.tree_.__getstate__()["nodes"])


@pytest.mark.parametrize("outcome_of", ["crash", "hang", "memory"])
def test_jail_reports_failures(tmp_path, outcome_of):
    """run_jailed tells a crash, a hang and a MemoryError apart from a refusal (else the suite
    could not fail)."""
    import vitrify
    path = tmp_path / "plain.vit"
    path.write_bytes(vitrify.dumps([1, 2]))
    method = {"crash": "_hc_crash", "hang": "_hc_hang", "memory": "_hc_memory"}[outcome_of]
    old = hc.TIMEOUT
    hc.TIMEOUT = 3.0
    try:
        outcome, detail = hc.run_jailed(str(path), "selftest", [method], None)
    finally:
        hc.TIMEOUT = old
    assert outcome == {"crash": "signal", "hang": "timeout", "memory": "error"}[outcome_of], detail
