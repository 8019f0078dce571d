"""Checks of what scikit-learn and scipy actually built (docs/LOAD_RULES.md).

Compiled code (Cython trees, libsvm, the neighbour trees, scipy's sparse kernels) indexes
memory with numbers from fitted state. Those numbers are checked on the built object, in the
layout the compiled code reads, and the check is chosen by ``isinstance`` on the built object,
never by the name in the file. Structured arrays must have exactly the dtype the running
scikit-learn declares (field order, offsets and itemsize included): scikit-learn converts other
layouts by field position.

Two kinds of checks, both looked up once per concrete type:

* state checks run before ``__setstate__`` on the raw state, where ``__setstate__`` itself would
  reinterpret it (a node array converted by position, a struct memoryview assigned by position);
* object checks run once the object and its state are built.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from . import _core
from ._reconstructors import _INT_MAX, InvalidStateError
from .errors import VitrifyError

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _fail(what: str, why: str) -> InvalidStateError:
    return InvalidStateError(f"{what}: {why}")


_layout_cache: dict[tuple[int, int], tuple[np.dtype, np.dtype, bool]] = {}


def same_layout(dt: Any, expected: np.dtype) -> bool:
    """``dt`` is ``expected`` byte for byte: same field names in the same order, same field
    dtypes (byte order included), same offsets and itemsize. Memoised by identity (``==`` on
    structured dtypes does not see every difference; a forest repeats one dtype object)."""
    key = (id(dt), id(expected))
    hit = _layout_cache.get(key)
    if hit is not None and hit[0] is dt and hit[1] is expected:
        return hit[2]
    r = _same_layout(dt, expected)
    if len(_layout_cache) > 4096:
        _layout_cache.clear()
    _layout_cache[key] = (dt, expected, r)
    return r


def _same_layout(dt: Any, expected: np.dtype) -> bool:
    if not isinstance(dt, np.dtype) or dt.names != expected.names or dt.itemsize != expected.itemsize:
        return False
    if expected.names is None:
        return dt.str == expected.str
    for name in expected.names:
        a, b = dt.fields[name], expected.fields[name]
        if a[1] != b[1] or a[0].str != b[0].str or a[0].shape != b[0].shape:
            return False
    return True


def _array(what: str, a: Any, ndim: int, kinds: str = "f") -> np.ndarray:
    if type(a) is not np.ndarray or a.ndim != ndim or a.dtype.kind not in kinds:
        raise _fail(what, f"expected a {ndim}-d array of kind {kinds!r}")
    return a


def _int_in(what: str, x: Any, lo: int, hi: int) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not lo <= int(x) <= hi:
        raise _fail(what, f"expected an integer in [{lo}, {hi}]")
    return int(x)


def _indices_in(what: str, a: np.ndarray, n: int) -> None:
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
        raise _fail(what, f"index out of range [0, {n})")


# ------------------------------------------------------------------------------------------
# sklearn.tree._tree.Tree
# ------------------------------------------------------------------------------------------

def _node_dtype() -> np.dtype:
    from sklearn.tree._tree import NODE_DTYPE
    return NODE_DTYPE


def tree_state(obj: Any, state: Any) -> None:
    """Before Tree.__setstate__: it converts any node dtype whose field *names* match by field
    *position* (and copies node_count * n_outputs * max_n_classes values)."""
    if type(state) is not dict:
        raise _fail("Tree", "state must be a dict")
    nodes, values = state.get("nodes"), state.get("values")
    if type(nodes) is not np.ndarray or nodes.ndim != 1 or not same_layout(nodes.dtype, _node_dtype()):
        raise _fail("Tree", "node array must be 1-d with exactly scikit-learn's NODE_DTYPE layout")
    n = nodes.shape[0]
    if type(values) is not np.ndarray or values.dtype != np.float64 or \
            values.shape != (n, obj.n_outputs, obj.max_n_classes):
        raise _fail("Tree", "values must be float64 of shape (node_count, n_outputs, max_n_classes)")
    _int_in("Tree node_count", state.get("node_count"), n, n)
    _int_in("Tree max_depth", state.get("max_depth"), 0, max(n - 1, 0))


def tree(obj: Any) -> None:
    st = obj.__getstate__()          # views of the memory the Cython object owns
    nodes = st["nodes"]
    n = int(obj.node_count)
    if n < 1 or nodes.shape != (n,) or int(obj.capacity) != n or not same_layout(nodes.dtype, _node_dtype()):
        raise _fail("Tree", "node array does not match node_count")
    n_outputs = int(obj.n_outputs)
    n_classes = obj.n_classes
    counts = n_classes.tolist() if n_classes.shape == (n_outputs,) else []
    if n_outputs < 1 or not counts or min(counts) < 1 or max(counts) != int(obj.max_n_classes):
        raise _fail("Tree", "class counts do not match n_outputs and max_n_classes")
    if st["values"].shape != (n, n_outputs, int(obj.max_n_classes)):
        raise _fail("Tree", "values do not have one row per node")
    f = nodes.dtype.fields
    try:
        depth = _core.check_tree_nodes(nodes, f["left_child"][1], f["right_child"][1],
                                       f["feature"][1], int(obj.n_features))
    except VitrifyError as e:
        raise InvalidStateError(str(e).split(": ", 1)[-1]) from None
    if int(obj.max_depth) != depth:
        # decision_path sizes a buffer from max_depth
        raise _fail("Tree", f"max_depth is {int(obj.max_depth)}, the nodes are {depth} deep")


def tree_estimator(obj: Any) -> None:
    t = obj.__dict__.get("tree_")
    if t is None:
        return
    from sklearn.tree._tree import Tree
    if not isinstance(t, Tree):
        raise _fail(type(obj).__name__, "tree_ is not a Tree")
    nf = obj.__dict__.get("n_features_in_")
    if nf is not None and t.n_features != nf:
        raise _fail(type(obj).__name__, f"tree_ has {t.n_features} features, the estimator {nf}")
    no = obj.__dict__.get("n_outputs_")
    if no is not None and t.n_outputs != no:
        raise _fail(type(obj).__name__, "tree_ and the estimator disagree on n_outputs")
    if "classes_" in obj.__dict__:
        _classes_match(type(obj).__name__, obj.__dict__["classes_"], t.n_classes, t.n_outputs)


def _classes_match(what: str, classes: Any, n_classes: np.ndarray, n_outputs: int) -> None:
    """predict indexes ``classes_`` with the argmax over the tree's value columns: one label per
    column of each output (an array for one output, a list of arrays for several)."""
    per_output = [classes] if n_outputs == 1 else classes
    if type(per_output) is not list or len(per_output) != n_outputs or any(
            getattr(c, "ndim", None) != 1 or c.shape[0] != int(k) for c, k in zip(per_output, n_classes)):
        raise _fail(what, "classes_ must hold one label per class of every output of the tree")


def forest(obj: Any) -> None:
    """BaseForest: predict_proba adds every tree's output into arrays sized from the forest's
    own n_outputs_ and n_classes_."""
    trees = obj.__dict__.get("estimators_")
    if trees is None:
        return
    what = type(obj).__name__
    from sklearn.tree._classes import BaseDecisionTree
    no = obj.__dict__.get("n_outputs_")
    nc = obj.__dict__.get("n_classes_")
    nc = None if nc is None else np.atleast_1d(nc)
    for t in trees:
        if not isinstance(t, BaseDecisionTree):
            raise _fail(what, "estimators_ must be decision trees")
        tr = t.__dict__.get("tree_")
        if tr is None or (no is not None and tr.n_outputs != no):
            raise _fail(what, "a tree and the forest disagree on n_outputs")
        if nc is not None and not np.array_equal(tr.n_classes, nc):
            raise _fail(what, "a tree and the forest disagree on the class counts")


# ------------------------------------------------------------------------------------------
# Histogram gradient boosting
# ------------------------------------------------------------------------------------------

def _predictor_nodes(p: Any) -> np.ndarray:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    nodes = p.__dict__.get("nodes")
    if type(nodes) is not np.ndarray or nodes.ndim != 1 or nodes.shape[0] < 1 or \
            not same_layout(nodes.dtype, PREDICTOR_RECORD_DTYPE):
        raise _fail("TreePredictor", "nodes must be a 1-d array with exactly PREDICTOR_RECORD_DTYPE")
    return nodes


_PREDICTOR_FIELDS = ("left", "right", "is_leaf", "is_categorical", "bitset_idx", "feature_idx")


def _check_predictor(p: Any, nodes: np.ndarray, n_features: int, categorical: Any) -> None:
    f = nodes.dtype.fields
    n_bitsets = min(p.raw_left_cat_bitsets.shape[0], p.binned_left_cat_bitsets.shape[0])
    try:
        _core.check_predictor_nodes(nodes, [f[k][1] for k in _PREDICTOR_FIELDS], n_bitsets,
                                    n_features, categorical)
    except VitrifyError as e:
        raise InvalidStateError(str(e).split(": ", 1)[-1]) from None


def tree_predictor(obj: Any) -> None:
    nodes = _predictor_nodes(obj)
    for attr in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        bs = obj.__dict__.get(attr)
        if type(bs) is not np.ndarray or bs.ndim != 2 or bs.shape[1] != 8 or bs.dtype != np.uint32:
            raise _fail("TreePredictor", f"{attr} must be a (n, 8) uint32 array")
    _check_predictor(obj, nodes, -1, None)


def hist_gradient_boosting(obj: Any) -> None:
    preds = obj.__dict__.get("_predictors")
    nf = obj.__dict__.get("n_features_in_")
    if preds is None or nf is None:
        return
    name = type(obj).__name__
    mapper = obj.__dict__.get("_bin_mapper")
    is_cat = getattr(mapper, "is_categorical_", None) if mapper is not None else None
    if is_cat is not None:
        if type(is_cat) is not np.ndarray or is_cat.shape != (nf,):
            raise _fail(name, "_bin_mapper.is_categorical_ must have one entry per feature")
        is_cat = np.ascontiguousarray(is_cat, dtype=np.uint8)
    # _raw_predict sizes its output from n_trees_per_iteration_, adds the baseline to it and
    # one predictor of each iteration per column; classes_ is indexed by those columns.
    k = _int_in(f"{name} n_trees_per_iteration_", obj.__dict__.get("n_trees_per_iteration_"), 1, _INT_MAX)
    base = obj.__dict__.get("_baseline_prediction")
    if type(base) is not np.ndarray or base.shape != (1, k) or base.dtype.kind != "f":
        raise _fail(name, "_baseline_prediction must have shape (1, n_trees_per_iteration_)")
    if "classes_" in obj.__dict__:
        c = obj.__dict__["classes_"]
        if getattr(c, "ndim", None) != 1 or (c.shape[0] != k if k > 1 else c.shape[0] > 2):
            raise _fail(name, "classes_ does not match n_trees_per_iteration_")
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    if type(preds) is not list:
        raise _fail(name, "_predictors must be a list")
    for it in preds:
        if type(it) is not list or len(it) != k:
            raise _fail(name, "every iteration must hold n_trees_per_iteration_ predictors")
        for p in it:
            if not isinstance(p, TreePredictor):
                raise _fail(name, "predictors must be TreePredictor objects")
            _check_predictor(p, _predictor_nodes(p), int(nf), is_cat)


# ------------------------------------------------------------------------------------------
# KD-tree / ball tree and distance metrics
# ------------------------------------------------------------------------------------------

def partial_state(obj: Any, state: Any) -> None:
    """functools.partial.__setstate__ replaces the function the reconstructor's check accepted:
    it must stay that function."""
    if type(state) is not tuple or len(state) != 4 or state[0] is not obj.func:
        raise _fail("functools.partial", "state must keep the function the partial was built with")
    if type(state[1]) is not tuple or not (state[2] is None or type(state[2]) is dict):
        raise _fail("functools.partial", "arguments must be a tuple and keywords a dict")


def _node_data_dtype() -> np.dtype:
    from sklearn.neighbors._kd_tree import NodeData
    return NodeData


def binary_tree_state(obj: Any, state: Any) -> None:
    """Before BinaryTree.__setstate__: Cython assigns node_data to a struct memoryview by
    field position."""
    if type(state) is not tuple or len(state) != 13:
        raise _fail("BinaryTree", "state must be a 13-tuple")
    nd = state[2]
    if type(nd) is not np.ndarray or not same_layout(nd.dtype, _node_data_dtype()):
        raise _fail("BinaryTree", "node_data must have exactly scikit-learn's NodeData layout")


def binary_tree(obj: Any) -> None:
    import sklearn.neighbors._kd_tree as kd
    (data, idx, nd, bounds, leaf_size, n_levels, n_nodes, _trims, _leaves, _splits, _calls,
     metric, weight) = obj.__getstate__()
    what = type(obj).__name__
    if type(data) is not np.ndarray or data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1 \
            or data.dtype.kind != "f":
        raise _fail(what, "data must be a non-empty 2-d float array")
    n, d = data.shape
    if type(idx) is not np.ndarray or idx.shape != (n,) or idx.dtype != np.intp:
        raise _fail(what, "idx_array must hold one index per sample")
    _indices_in(f"{what} idx_array", idx, n)
    if n and not bool((np.bincount(idx, minlength=n) == 1).all()):
        raise _fail(what, "idx_array is not a permutation of the samples")
    _int_in(f"{what} leaf_size", leaf_size, 1, 1 << 62)
    levels = _int_in(f"{what} n_levels", n_levels, 1, 62)
    nn = _int_in(f"{what} n_nodes", n_nodes, 1, (1 << levels) - 1)
    if nn != (1 << levels) - 1 or nd.shape != (nn,):
        raise _fail(what, "n_nodes must be 2**n_levels - 1, one node_data row each")
    if not same_layout(nd.dtype, _node_data_dtype()):
        raise _fail(what, "node_data must have exactly scikit-learn's NodeData layout")
    start, end, leaf = nd["idx_start"], nd["idx_end"], nd["is_leaf"]
    if bool((start < 0).any()) or bool((end > n).any()) or bool((start > end).any()):
        raise _fail(what, "node ranges point outside the index array")
    if bool(((leaf != 0) & (leaf != 1)).any()):
        raise _fail(what, "is_leaf must be 0 or 1")
    # queries descend to 2i+1 and 2i+2 from every node that is not a leaf
    inner = np.flatnonzero(leaf == 0)
    if inner.size and int(inner.max()) * 2 + 2 >= nn:
        raise _fail(what, "a node without children is not marked as a leaf")
    k = 2 if issubclass(type(obj), (kd.BinaryTree64, kd.BinaryTree32)) else 1
    if type(bounds) is not np.ndarray or bounds.shape != (k, nn, d) or bounds.dtype != data.dtype:
        raise _fail(what, f"node_bounds must have shape ({k}, n_nodes, n_features)")
    if weight is not None and (type(weight) is not np.ndarray or weight.shape != (n,)):
        raise _fail(what, "sample_weight must have one weight per sample")
    from sklearn.metrics._dist_metrics import DistanceMetric
    if not isinstance(metric, DistanceMetric):
        raise _fail(what, "dist_metric is not a DistanceMetric")
    distance_metric(metric)
    try:
        metric._validate_data(data)
    except ValueError as e:
        raise _fail(what, f"distance metric does not fit the data: {e}") from None


def distance_metric(obj: Any) -> None:
    st = obj.__getstate__()
    vec, mat = st[1], st[2]
    what = type(obj).__name__
    if type(vec) is not np.ndarray or vec.ndim != 1 or type(mat) is not np.ndarray or mat.ndim != 2:
        raise _fail(what, "vec and mat must be 1-d and 2-d arrays")
    if what.startswith("Mahalanobis") and mat.shape[0] != mat.shape[1]:
        raise _fail(what, "the Mahalanobis matrix must be square")


# ------------------------------------------------------------------------------------------
# scipy.sparse
# ------------------------------------------------------------------------------------------

def sparse(obj: Any) -> None:
    what = type(obj).__name__
    fmt = getattr(obj, "format", None)
    try:
        if fmt in ("csr", "csc", "bsr"):
            obj.check_format(full_check=True)
        elif fmt == "coo":
            m, n = obj.shape
            coords = getattr(obj, "coords", None) or (obj.row, obj.col)
            if len(coords) != 2 or any(c.ndim != 1 or c.shape != obj.data.shape for c in coords):
                raise ValueError("row, col and data must have the same length")
            _indices_in(f"{what} row", coords[0], m)
            _indices_in(f"{what} col", coords[1], n)
        elif fmt == "dia":
            if obj.data.ndim != 2 or obj.offsets.ndim != 1 or obj.data.shape[0] != obj.offsets.shape[0]:
                raise ValueError("one data row per diagonal offset")
    except InvalidStateError:
        raise
    except Exception as e:
        raise _fail(what, f"invalid sparse structure: {e}") from None


# ------------------------------------------------------------------------------------------
# Estimators whose predict hands fitted arrays to compiled code
# ------------------------------------------------------------------------------------------

_KERNELS = ("linear", "poly", "rbf", "sigmoid", "precomputed")


def libsvm(obj: Any) -> None:
    """BaseLibSVM: libsvm's set_model copies nSV, rho, probA/probB and the dual coefficients
    with counts derived from these arrays' shapes."""
    st = obj.__dict__
    if "support_" not in st:
        return
    what = type(obj).__name__
    from sklearn.svm._base import LIBSVM_IMPL
    if getattr(obj, "_impl", None) not in LIBSVM_IMPL:
        raise _fail(what, "unknown libsvm implementation")
    kernel = st.get("kernel")
    if not (callable(kernel) or kernel in _KERNELS):
        raise _fail(what, f"kernel must be one of {_KERNELS} or a trusted function")
    support = _array(f"{what} support_", st.get("support_"), 1, "i")
    n_sv = support.shape[0]
    n_support = _array(f"{what} _n_support", st.get("_n_support"), 1, "i")
    if n_support.shape[0] < 2 or (n_support.size and int(n_support.min()) < 0):
        raise _fail(what, "_n_support must hold a non-negative count per class")
    classifier = LIBSVM_IMPL.index(obj._impl) < 2
    n_class = n_support.shape[0] if classifier else 2
    if classifier and int(n_support.sum()) != n_sv:
        raise _fail(what, "_n_support does not add up to the number of support vectors")
    if not classifier and (n_support.shape[0] != 2 or int(n_support[0]) != n_sv):
        # n_support_ of a regression or one-class model is _n_support[0]
        raise _fail(what, "_n_support[0] must be the number of support vectors")
    if classifier:
        classes = st.get("classes_")
        if getattr(classes, "ndim", None) != 1 or classes.shape[0] != n_class:
            raise _fail(what, "classes_ must hold one label per class of _n_support")
    # libsvm reads degree as a C int; gamma and coef0 as doubles
    degree = st.get("degree", 3)
    if not (isinstance(degree, (int, float, np.integer, np.floating)) and not isinstance(degree, (bool, np.bool_))
            and 0 <= degree <= _INT_MAX):
        raise _fail(what, f"degree must be a number in [0, {_INT_MAX}]")
    for attr in ("_gamma", "coef0"):
        v = st.get(attr, 0.0)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise _fail(what, f"{attr} must be a number")
    m = n_class * (n_class - 1) // 2
    sparse_model = bool(st.get("_sparse"))
    dual = st.get("_dual_coef_")
    dual_shape = dual.shape if dual is not None and hasattr(dual, "shape") else None
    if dual_shape != (n_class - 1, n_sv):
        raise _fail(what, "_dual_coef_ must have shape (n_classes - 1, n_support)")
    for attr, lens in (("_intercept_", (m,)), ("_probA", (0, m)), ("_probB", (0, m))):
        a = _array(f"{what} {attr}", st.get(attr), 1)
        if a.shape[0] not in lens:
            raise _fail(what, f"{attr} has the wrong length")
    n_prob = st["_probA"].shape[0]
    if st["_probB"].shape[0] != n_prob or (st.get("probability") is True and n_prob != m):
        raise _fail(what, "_probA and _probB must both hold one value per class pair "
                          "(both empty without probability estimates)")
    sv = st.get("support_vectors_")
    shape_fit = st.get("shape_fit_")
    if not (type(shape_fit) is tuple and shape_fit and all(isinstance(x, (int, np.integer)) for x in shape_fit)):
        raise _fail(what, "shape_fit_ must be a tuple of integers")
    if kernel == "precomputed":
        # fit on a (n_samples, n_samples) kernel matrix keeps no support vectors
        if len(shape_fit) != 2 or shape_fit[0] != shape_fit[1] or getattr(sv, "shape", None) != (0, 0):
            raise _fail(what, "a precomputed kernel has a square shape_fit_ and no support vectors")
        _indices_in(f"{what} support_", support, int(shape_fit[0]))
    elif callable(kernel):
        _indices_in(f"{what} support_", support, int(shape_fit[0]))
    elif sparse_model:
        import scipy.sparse as sp
        if not sp.issparse(sv) or sv.shape[0] != n_sv or not sp.issparse(dual):
            raise _fail(what, "sparse support vectors must have one row per support vector")
    else:
        nf = st.get("n_features_in_", sv.shape[1] if hasattr(sv, "shape") and len(sv.shape) == 2 else -1)
        if type(sv) is not np.ndarray or sv.shape != (n_sv, nf) or sv.dtype != np.float64:
            raise _fail(what, "support_vectors_ must be float64 of shape (n_support, n_features_in_)")
    cw = st.get("class_weight_")
    if classifier and cw is not None and (type(cw) is not np.ndarray or cw.shape != (n_class,)):
        raise _fail(what, "class_weight_ must have one weight per class")


def kmeans(obj: Any) -> None:
    c = obj.__dict__.get("cluster_centers_")
    nf = obj.__dict__.get("n_features_in_")
    if c is None:
        return
    what = type(obj).__name__
    if type(c) is not np.ndarray or c.ndim != 2 or c.dtype.kind != "f" or c.shape[0] < 1 or \
            (nf is not None and c.shape[1] != nf):
        raise _fail(what, "cluster_centers_ must have shape (n_clusters, n_features_in_)")
    if "_n_threads" in obj.__dict__:
        _int_in(f"{what} _n_threads", obj.__dict__["_n_threads"], 1, _INT_MAX)


def neighbors(obj: Any) -> None:
    st = obj.__dict__
    if "_fit_method" not in st:
        return
    what = type(obj).__name__
    method = st["_fit_method"]
    fit_x = st.get("_fit_X")
    if method not in ("kd_tree", "ball_tree", "brute"):
        raise _fail(what, "unknown neighbours algorithm")
    shape = getattr(fit_x, "shape", None)
    if shape is None or len(shape) != 2:
        raise _fail(what, "_fit_X must be a 2-d array")
    if st.get("n_samples_fit_", shape[0]) != shape[0]:
        raise _fail(what, "n_samples_fit_ does not match _fit_X")
    nf = st.get("n_features_in_")
    if nf is not None and shape[1] != nf:
        raise _fail(what, "_fit_X does not have n_features_in_ columns")
    if st.get("_y") is not None:
        _neighbor_targets(what, st, shape[0])
    if method != "brute":
        import sklearn.neighbors as nb
        t = st.get("_tree")
        cls = nb.KDTree if method == "kd_tree" else nb.BallTree
        if not isinstance(t, cls) or t.data.shape != shape:
            raise _fail(what, f"_tree must be a {cls.__name__} over _fit_X")


def _neighbor_targets(what: str, st: dict, n_samples: int) -> None:
    """predict gathers _y rows by neighbour index; a classifier then indexes classes_ with the
    encoded labels of _y (one column per output)."""
    y = st["_y"]
    if type(y) is not np.ndarray or y.ndim not in (1, 2) or y.shape[0] != n_samples:
        raise _fail(what, "_y must hold one target row per sample of _fit_X")
    if "classes_" not in st:
        return
    classes = st["classes_"]
    per_output = classes if y.ndim == 2 else [classes]
    if y.dtype.kind not in "iu" or type(per_output) is not list or \
            len(per_output) != (y.shape[1] if y.ndim == 2 else 1):
        raise _fail(what, "_y must hold encoded labels, one column per output of classes_")
    cols = y.T if y.ndim == 2 else [y]
    for c, col in zip(per_output, cols):
        if getattr(c, "ndim", None) != 1:
            raise _fail(what, "classes_ must be 1-d per output")
        _indices_in(f"{what} _y", col, c.shape[0])


# ------------------------------------------------------------------------------------------
# Dispatch by type
# ------------------------------------------------------------------------------------------

# (module, class, check): the check runs for every built object that is an instance of the
# class. A module not imported yet cannot hold the class of an object being built.
OBJECT_CHECKS: list[tuple[str, str, Callable]] = [
    ("sklearn.tree._tree", "Tree", tree),
    ("sklearn.tree._classes", "BaseDecisionTree", tree_estimator),
    ("sklearn.ensemble._forest", "BaseForest", forest),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor", tree_predictor),
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", "BaseHistGradientBoosting",
     hist_gradient_boosting),
    ("sklearn.neighbors._kd_tree", "BinaryTree64", binary_tree),
    ("sklearn.neighbors._kd_tree", "BinaryTree32", binary_tree),
    ("sklearn.neighbors._ball_tree", "BinaryTree64", binary_tree),
    ("sklearn.neighbors._ball_tree", "BinaryTree32", binary_tree),
    ("sklearn.metrics._dist_metrics", "DistanceMetric", distance_metric),
    ("scipy.sparse._base", "_spbase", sparse),
    ("sklearn.svm._base", "BaseLibSVM", libsvm),
    ("sklearn.cluster._kmeans", "_BaseKMeans", kmeans),
    ("sklearn.neighbors._base", "NeighborsBase", neighbors),
]

STATE_CHECKS: list[tuple[str, str, Callable]] = [
    ("functools", "partial", partial_state),
    ("sklearn.tree._tree", "Tree", tree_state),
    ("sklearn.neighbors._kd_tree", "BinaryTree64", binary_tree_state),
    ("sklearn.neighbors._kd_tree", "BinaryTree32", binary_tree_state),
    ("sklearn.neighbors._ball_tree", "BinaryTree64", binary_tree_state),
    ("sklearn.neighbors._ball_tree", "BinaryTree32", binary_tree_state),
]


def _lookup(table: list, tp: type) -> Callable | None:
    found = []
    for module, cls_name, check in table:
        mod = sys.modules.get(module)
        cls = getattr(mod, cls_name, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(tp, cls) and check not in found:
            found.append(check)
    if not found:
        return None
    if len(found) == 1:
        return found[0]

    def all_checks(*a: Any) -> None:
        for c in found:
            c(*a)
    return all_checks


_object_cache: dict[type, Callable | None] = {}
_state_cache: dict[type, Callable | None] = {}


def object_check(tp: type) -> Callable | None:
    """The check of built objects of type ``tp`` (None: nothing compiled trusts their state)."""
    try:
        return _object_cache[tp]
    except KeyError:
        c = _object_cache[tp] = _lookup(OBJECT_CHECKS, tp)
        return c


def state_check(tp: type) -> Callable | None:
    """The check of the raw state given to ``tp.__setstate__`` (None: none needed)."""
    try:
        return _state_cache[tp]
    except KeyError:
        c = _state_cache[tp] = _lookup(STATE_CHECKS, tp)
        return c
