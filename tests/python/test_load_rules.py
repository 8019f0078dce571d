"""The load-time call rule and the checks of built objects (docs/LOAD_RULES.md).

Every crafted file is loaded in both encodings the one decoder reads: a version-3 packed tree
and the same tree in the version-1 form (header tree, long state keys), so the compatibility
path of the decoder (src/objects/decode.cpp) meets every hostile case too. Files that could crash
or allocate gigabytes if a check regressed are loaded in a child process under a 1.5 GiB
address-space limit, so that a crash fails the test instead of killing pytest."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vitrify
from vitrify import _core, _reconstructors, _validators, model
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

X, Y = load_iris(return_X_y=True)
DECODERS = ("packed", "header")


# ------------------------------------------------------------------------------------------
# Crafting files
# ------------------------------------------------------------------------------------------

def _array_bytes(f, name: str) -> bytes:
    i = f.find(name)
    info = f.array_info(i)
    out = np.empty(int(info["decoded_length"]), dtype=np.uint8)
    f.read_into(i, out, True)
    return out.tobytes()


def _parts(data: bytes) -> tuple[dict, bytes]:
    """The unpacked body (root, keys, dtypes) and the pool bytes of a dumps() image."""
    f = _core.File.from_bytes(data, True)
    c = json.loads(f.content_json)
    body = json.loads(_array_bytes(f, c["packed"]["$array"]))
    pool = _array_bytes(f, c["pool"]["$array"]) if "pool" in c else b""
    return {"root": body["root"], "keys": body.get("keys", []), "dtypes": body.get("dtypes", [])}, pool


def _desc_dtype(desc) -> np.dtype:
    """numpy dtype of a dtype string or structured description (docs/OBJECTS.md 7.2)."""
    if type(desc) is str:
        return np.dtype(desc)
    return np.dtype({"names": [f[0] for f in desc["fields"]], "formats": [_desc_dtype(f[1]) for f in desc["fields"]],
                     "offsets": [f[2] for f in desc["fields"]], "itemsize": desc["itemsize"]})


# docs/OBJECTS.md section 3: version 1 spelled the members of object states out.
_V1_REDUCE_KEYS = {"new": "n", "args": "a", "kwargs": "kw", "state": "s", "listitems": "li",
                   "dictitems": "di"}
_V1_NDARRAY_KEYS = {"data": "d", "order": "o", "dtype": "t", "strings": "u", "raw": "r",
                    "bytes": "y", "shape": "s", "items": "i"}
_V1_GENERIC_KEYS = {"dtype": "t", "bytes": "b"}
_TO_V1 = {t: {v: k for k, v in keys.items()} for t, keys in (
    ("numpy.ndarray", _V1_NDARRAY_KEYS), ("numpy.generic", _V1_GENERIC_KEYS),
    (None, _V1_REDUCE_KEYS))}


def _to_v1(node, body: dict, pool: bytes, add_raw):
    """``node`` of a version-3 body in the version-1 form (header tree, long state keys, no
    keyset or dtype tables; docs/OBJECTS.md section 3). Inline and pooled arrays become raw byte arrays of the file (``add_raw``)."""
    if type(node) is list:
        return [_to_v1(x, body, pool, add_raw) for x in node]
    if type(node) is not dict:
        return node
    spec = node.get("$object") if len(node) == 1 else None
    if type(spec) is not dict:
        return {k: _to_v1(v, body, pool, add_raw) for k, v in node.items()}
    t, st = spec.get("type"), spec.get("state")
    if t == "numpy.dtype" and type(st) is int:
        st = body["dtypes"][st]
    elif t in ("numpy.ndarray", "numpy.generic") and type(st) is dict:
        st = dict(st)
        if type(st.get("t")) is int:
            st["t"] = body["dtypes"][st["t"]]
        if t == "numpy.ndarray" and ("b" in st or "p" in st):
            if "b" in st:
                raw = base64.b64decode(st["b"])
            else:
                off, n = st["p"]
                raw = pool[off:off + n]
            # Version 1 records the logical shape of a Fortran-order array (version 2 the stored one).
            shape = st["s"][::-1] if st.get("o") == "F" else st["s"]
            st = {"r": {"$array": add_raw(raw)}, "t": st["t"], "s": shape,
                  **({"o": "F"} if "o" in st else {})}
        st = {_TO_V1[t].get(k, k): _to_v1(v, body, pool, add_raw) for k, v in st.items()}
    elif t not in model._SPECIAL_NAMES and type(st) is dict:
        st = dict(st)
        if "k" in st and type(st.get("s")) is list:
            st["s"] = dict(zip(body["keys"][st.pop("k")], st["s"]))
        st = {_TO_V1[None].get(k, k): _to_v1(v, body, pool, add_raw) for k, v in st.items()}
    else:
        st = _to_v1(st, body, pool, add_raw)
    return {"$object": {**spec, "state": st}}


def _file(body: dict, pool: bytes, decoder: str) -> bytes:
    w = _core.Writer.create_in_memory(64)
    if decoder == "packed":
        text = json.dumps(body).encode()
        w.add_array("content", "uint8", [len(text)], np.frombuffer(text, np.uint8), "raw", 0, None)
        content = {"kind": model.CONTENT_KIND, "version": 3, "packed": {"$array": "content"}}
        if pool:
            w.add_array("pool", "uint8", [len(pool)], np.frombuffer(pool, np.uint8), "raw", 0, None)
            content["pool"] = {"$array": "pool"}
    else:
        raws: list[bytes] = []

        def add_raw(raw: bytes) -> str:
            raws.append(raw)
            name = f"raw{len(raws) - 1}"
            w.add_array(name, "uint8", [len(raw)], np.frombuffer(raw, np.uint8), "raw", 0, None)
            return name

        content = {"kind": model.CONTENT_KIND, "version": 1,
                   "root": _to_v1(body["root"], body, pool, add_raw)}
    w.set_content(json.dumps(content))
    w.commit()
    return w.take_bytes()


def _obj(t, state):
    return {"$object": {"type": t, "version": 1, "state": state}}


def _glob(name):
    return _obj("vitrify.global", name)


def _root_file(root, decoder: str) -> bytes:
    return _file({"root": root, "keys": [], "dtypes": []}, b"", decoder)


def _objects(node, type_name):
    """Every $object spec of ``type_name`` under ``node``."""
    stack, out = [node], []
    while stack:
        x = stack.pop()
        if type(x) is list:
            stack.extend(x)
        elif type(x) is dict:
            spec = x.get("$object") if len(x) == 1 else None
            if type(spec) is dict and spec.get("type") == type_name:
                out.append(spec)
            stack.extend(x.values())
    return out


def _state(spec, body, key):
    """The value of ``key`` in an object spec's state (a keyset state or a plain dict)."""
    st = spec["state"]
    if "k" in st:
        return st["s"][body["keys"][st["k"]].index(key)]
    return st["s"][key]


_CHILD = textwrap.dedent("""
    import resource, sys, warnings
    resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
    warnings.simplefilter("ignore")
    import vitrify
    for path in sys.argv[1:]:
        try:
            vitrify.loads(open(path, "rb").read())
        except vitrify.VitrifyError as e:
            print("REFUSED", type(e).__name__, flush=True)
        except MemoryError:
            print("MEMORY", flush=True)
        else:
            print("LOADED", flush=True)
""")


def _load_in_child(data: bytes | list[bytes], tmp_path) -> str | list[str]:
    """Load under a 1.5 GiB address-space limit: what happened to each file (REFUSED and the
    error class, LOADED or MEMORY); a crash fails the test."""
    many = isinstance(data, list)
    paths = []
    for i, d in enumerate(data if many else [data]):
        paths.append(tmp_path / f"crafted{i}.vit")
        paths[-1].write_bytes(d)
    r = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, f"load crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    out = r.stdout.strip().splitlines()
    assert len(out) == len(paths), r.stdout + r.stderr[-2000:]
    return out if many else out[0]


def _refused(data: bytes, exc=vitrify.VitrifyError, match: str | None = None, **kw):
    with pytest.raises(exc, match=match) as ei:
        vitrify.loads(data, **kw)
    return ei.value


# ------------------------------------------------------------------------------------------
# 4. Nothing is called that the file chooses
# ------------------------------------------------------------------------------------------

BUILT: list = []


class Witness:
    """Records every instance load builds: a refused file must build none."""

    def __setstate__(self, state):
        BUILT.append(state)


WITNESS = f"{__name__}.Witness"


@pytest.mark.parametrize("decoder", DECODERS)
def test_kernel_call_is_refused_before_anything_is_built(decoder):
    # A raw k-means kernel given crafted shapes corrupts the heap: it must never be called.
    kernel = "sklearn.cluster._kmeans._kmeans_single_lloyd"
    assert kernel in vitrify.default_trusted_types()     # trusted as a reference only
    witness = _obj(WITNESS, {"n": True, "s": {"x": 1}})
    call = _obj(kernel, {"a": [[[1.0]], [1.0], [[1.0, 2.0]], 10**6]})
    data = _root_file([witness, call], decoder)
    BUILT.clear()
    e = _refused(data, vitrify.UntrustedTypeError, match="calls " + kernel, trusted=[WITNESS])
    assert e.names == [kernel] and BUILT == []
    # The caller cannot admit it either: it is on the default list, as a reference.
    with pytest.raises(vitrify.UntrustedTypeError):
        vitrify.loads(data, trusted=[WITNESS, kernel])
    assert BUILT == []
    assert vitrify.get_untrusted_types(data=data, trusted=[WITNESS]) == [kernel]
    # Without the call, the witness is built; the kernel as a reference loads, uncalled.
    assert len(vitrify.loads(_root_file([witness], decoder), trusted=[WITNESS])) == 1 and BUILT
    out = vitrify.loads(_root_file([_glob(kernel)], decoder))
    from sklearn.cluster._kmeans import _kmeans_single_lloyd
    assert out == [_kmeans_single_lloyd]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name,args", [
    ("numpy.ones", [[1 << 16, 1 << 16]]),                # 32 GiB of float64
    ("numpy.zeros", [[1 << 40]]),
    ("builtins.list", [_obj("builtins.range", [0, 1 << 40, 1])]),
    ("builtins.dict", []),
    ("builtins.int", ["9" * 100]),
])
def test_allocating_calls_are_refused(tmp_path, decoder, name, args):
    data = _root_file(_obj(name, {"a": args}), decoder)
    assert vitrify.get_untrusted_types(data=data) == [name]
    assert _load_in_child(data, tmp_path) == "REFUSED UntrustedTypeError"


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name,args", [
    ("builtins.bytearray", [10 << 30]),
    ("builtins.range", [0, 1 << 40]),
])
def test_special_types_are_never_called(tmp_path, decoder, name, args):
    # Their names select a builder of vitrify._reconstructors, which takes only their state.
    data = _root_file(_obj(name, {"a": args}), decoder)
    assert _load_in_child(data, tmp_path) == "REFUSED FormatError"


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name,state", [
    ("builtins.bytearray", 10 << 30),                                     # bytearray(n)
    ("builtins.set", _obj("builtins.range", [0, 1 << 40, 1])),           # set(range(...))
    ("builtins.frozenset", _obj("builtins.range", [0, 1 << 40, 1])),
    ("numpy.ma.MaskedArray", {"data": _obj("builtins.range", [0, 1 << 40, 1]), "mask": False,
                              "fill_value": None}),
    ("builtins.complex", ["1", "2"]),
    ("builtins.slice", [1.5, 2, 3]),
])
def test_special_types_check_their_state(tmp_path, decoder, name, state):
    data = _root_file(_obj(name, state), decoder)
    assert _load_in_child(data, tmp_path) == "REFUSED FormatError"


@pytest.mark.parametrize("decoder", DECODERS)
def test_new_with_arguments_is_refused_for_default_trusted_classes(decoder):
    # Tree.__cinit__ sizes buffers from its arguments: only its checked reconstructor may pass them.
    root = _obj("sklearn.tree._tree.Tree", {"n": True, "a": [4, _obj("numpy.ndarray", {
        "b": base64.b64encode(np.array([1 << 40], "<i8").tobytes()).decode(), "t": "<i8", "s": [1]}), 1]})
    data = _root_file(root, decoder)
    assert vitrify.get_untrusted_types(data=data) == ["sklearn.tree._tree.Tree"]
    _refused(data, vitrify.UntrustedTypeError, match="calls sklearn.tree._tree.Tree")


def _i8(values):
    a = np.asarray(values, "<i8")
    return _obj("numpy.ndarray", {"b": base64.b64encode(a.tobytes()).decode(), "t": "<i8",
                                  "s": list(a.shape)})


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("args,why", [
    ([4, _i8([1 << 40]), 1], "class counts"),           # value rows of 2**40 classes
    ([4, _i8([2]), 10**9], "one entry per output"),     # n_outputs without its class table
    ([4, _i8([0]), 1], "class counts"),
    ([-1, _i8([2]), 1], "n_features"),
    ([4, _i8([[2]]), 1], "1-d integer array"),
    ([4, [2], 1], "1-d integer array"),
    ([4, _i8([2]), 1, 5, 6], "expects"),
])
def test_tree_reconstructor_checks_its_arguments(tmp_path, decoder, args, why):
    data = _root_file(_obj("sklearn.tree._tree.Tree", {"a": args}), decoder)
    assert vitrify.get_untrusted_types(data=data) == []
    assert _refused(data, vitrify.InvalidStateError, match=why).code_name == "bad_state"


@pytest.mark.parametrize("decoder", DECODERS)
def test_tree_reconstructor_charges_the_load_budget(decoder):
    # 2**30 classes: 8 GiB of value rows from a file of a few hundred bytes
    data = _root_file(_obj("sklearn.tree._tree.Tree", {"a": [4, _i8([1 << 30]), 1]}), decoder)
    e = _refused(data, vitrify.ResourceLimitError, match="load budget")
    assert e.code_name == "limit_exceeded"


@pytest.mark.parametrize("decoder", DECODERS)
def test_partial_may_not_wrap_a_kernel_or_an_untrusted_function(decoder):
    ok = _obj("functools.partial", {"a": [_glob("sklearn.utils.check_array")]})
    out = vitrify.loads(_root_file(ok, decoder))
    from sklearn.utils.validation import check_array
    assert out.func is check_array
    kernel = _obj("functools.partial", {"a": [_glob("sklearn.cluster._kmeans._kmeans_single_lloyd")]})
    _refused(_root_file(kernel, decoder), vitrify.UntrustedTypeError, match="_kmeans_single_lloyd")
    untrusted = _obj("functools.partial", {"a": [_glob("os.system")]})
    _refused(_root_file(untrusted, decoder), vitrify.UntrustedTypeError, match="os.system")
    # __setstate__ may not swap the checked function for another one.
    swap = _obj("functools.partial", {"a": [_glob("sklearn.utils.check_array")], "s": {
        "$tuple": [_glob("sklearn.cluster._kmeans._kmeans_single_lloyd"), {"$tuple": []}, {}, None]}})
    _refused(_root_file(swap, decoder), vitrify.InvalidStateError, match="partial")


@pytest.mark.parametrize("decoder", DECODERS)
def test_trusted_functions_are_references_never_calls(decoder):
    ft = FunctionTransformer(np.log1p).fit(X)
    body, pool = _parts(vitrify.dumps(ft))
    assert not [s for s in _objects(body["root"], "numpy.log1p")]      # written as vitrify.global
    loaded = vitrify.loads(_file(body, pool, decoder))
    assert loaded.func is np.log1p
    # Written as a call instead, the same trusted function is refused.
    data = _root_file(_obj("numpy.log1p", {"a": [1.0]}), decoder)
    _refused(data, vitrify.UntrustedTypeError, match="calls numpy.log1p")


class UserReduce:
    """A caller's class whose pickle form is a call with arguments."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __reduce__(self):
        return (UserReduce, (self.a, self.b))


def test_caller_trusted_names_may_be_called():
    data = vitrify.dumps({"u": UserReduce(1, "x")})
    name = f"{__name__}.UserReduce"
    assert vitrify.get_untrusted_types(data=data) == [name]
    out = vitrify.loads(data, trusted=[name])["u"]
    assert (out.a, out.b) == (1, "x")


def test_reconstructor_table_covers_exactly_what_dump_writes():
    # Every name the table admits is on the default trusted list or a standard-library type.
    trusted = vitrify.default_trusted_types()
    import sklearn._loss._loss  # noqa: F401 - so that the loss classes resolve
    missing = [n for n in _reconstructors.RECONSTRUCTORS
               if n not in trusted and not n.startswith(("collections.", "functools."))]
    assert not [n for n in missing if n.count(".") and not n.startswith("sklearn.")], missing


# ------------------------------------------------------------------------------------------
# 5. Validate what scikit-learn actually built
# ------------------------------------------------------------------------------------------

def _tree_body():
    clf = DecisionTreeClassifier(random_state=0).fit(X, Y)
    body, pool = _parts(vitrify.dumps(clf))
    (tree,) = _objects(body["root"], "sklearn.tree._tree.Tree")
    return clf, body, pool, tree


@pytest.mark.parametrize("decoder", DECODERS)
def test_tree_round_trips_through_both_decoders(decoder):
    clf, body, pool, _ = _tree_body()
    loaded = vitrify.loads(_file(body, pool, decoder))
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.tree_.max_depth == clf.tree_.max_depth


@pytest.mark.parametrize("decoder", DECODERS)
def test_tree_nodes_with_fields_in_another_order_are_refused(tmp_path, decoder):
    # Same names and offsets, declared in another order: scikit-learn's own check compares the
    # fields by name, then converts by position (child indices read from threshold bits).
    _, body, pool, tree = _tree_body()
    nodes = _state(tree, body, "nodes")
    desc = body["dtypes"][nodes["$object"]["state"]["t"]]
    fields = desc["fields"]
    # n_node_samples first, left_child sixth: both intp, so scikit-learn's cast accepts it and
    # left_child becomes the sample counts
    fields[0], fields[5] = fields[5], fields[0]
    assert _desc_dtype(desc).names[0] == "n_node_samples"
    assert _load_in_child(_file(body, pool, decoder), tmp_path) == "REFUSED InvalidStateError"


def _tampered_tree(**changes):
    clf = DecisionTreeClassifier(random_state=0).fit(X, Y)
    state = clf.tree_.__getstate__()
    nodes = state["nodes"].copy()
    for (field, row), value in changes.pop("nodes", {}).items():
        nodes[field][row] = value
    state = {**state, "nodes": nodes, **changes}
    clf.tree_.__setstate__(state)  # scikit-learn accepts it: this is what a crafted file holds
    return clf


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("delta", [1, 5, -1, 10**6])
def test_tree_max_depth_must_be_the_real_depth(decoder, delta):
    clf = _tampered_tree()
    real = clf.tree_.max_depth
    if real + delta < 0:
        pytest.fail("the fitted tree is too shallow for this case")
    bad = _tampered_tree(max_depth=real + delta)
    body, pool = _parts(vitrify.dumps(bad))
    _refused(_file(body, pool, decoder), vitrify.InvalidStateError, match="max_depth")


@pytest.mark.parametrize("decoder", DECODERS)
def test_tree_nodes_with_two_parents_are_refused(decoder):
    # Children after their parents and in range, but node 2 shares node 1's children: a
    # graph that is not a tree (and a depth that does not follow from the nodes).
    clf = _tampered_tree()
    left, right = clf.tree_.children_left, clf.tree_.children_right
    inner = [i for i in range(len(left)) if left[i] != -1]
    a, b = inner[1], inner[2]
    assert a < b and left[b] > b
    bad = _tampered_tree(nodes={("left_child", a): left[b], ("right_child", a): right[b]})
    body, pool = _parts(vitrify.dumps(bad))
    _refused(_file(body, pool, decoder), vitrify.InvalidStateError)


def _knn_body(algorithm):
    knn = KNeighborsClassifier(algorithm=algorithm).fit(X, Y)
    body, pool = _parts(vitrify.dumps(knn))
    return knn, body, pool


def _tree_state_tuple(body):
    # Neighbour trees are written under their reconstructor's name, newObj, with the class as
    # argument: the check must find them by the built object's type.
    for mod in ("_kd_tree", "_ball_tree"):
        specs = _objects(body["root"], f"sklearn.neighbors.{mod}.newObj")
        for spec in specs:
            if spec["state"]["a"][0]["$object"]["state"].endswith(("KDTree", "BallTree")):
                return spec
    raise AssertionError("no neighbour tree in the file")


def _tamper_tree_array(body, pool, index, fn):
    """Apply ``fn`` to the array at ``index`` of a neighbour tree's state tuple (in place in a
    copy of the pool)."""
    spec = _tree_state_tuple(body)
    arr = spec["state"]["s"]["$tuple"][index]["$object"]["state"]
    off, n = arr["p"]
    dt = _desc_dtype(body["dtypes"][arr["t"]]) if type(arr["t"]) is int \
        else np.dtype(arr["t"])
    buf = bytearray(pool)
    a = np.frombuffer(buf, dtype=dt, count=n // dt.itemsize, offset=off)
    fn(a)
    return bytes(buf)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
def test_neighbour_tree_under_newobj_is_checked(tmp_path, decoder, algorithm):
    knn, body, pool = _knn_body(algorithm)
    assert np.array_equal(vitrify.loads(_file(body, pool, decoder)).predict(X), knn.predict(X))

    def idx_out(a):
        a[3] = 10**9

    def range_out(a):
        a["idx_end"][0] = 10**6

    def leaf_cleared(a):
        a["is_leaf"][:] = 0

    def idx_dup(a):
        a[1] = a[0]

    cases = ((1, idx_out), (2, range_out), (2, leaf_cleared), (1, idx_dup))
    files = [_file(body, _tamper_tree_array(body, pool, i, fn), decoder) for i, fn in cases]
    assert _load_in_child(files, tmp_path) == ["REFUSED InvalidStateError"] * len(cases)


@pytest.mark.parametrize("decoder", DECODERS)
def test_neighbour_tree_node_data_in_another_field_order_is_refused(tmp_path, decoder):
    knn, body, pool = _knn_body("kd_tree")
    spec = _tree_state_tuple(body)
    nd = spec["state"]["s"]["$tuple"][2]["$object"]["state"]
    desc = copy.deepcopy(body["dtypes"][nd["t"]])
    desc["fields"][0], desc["fields"][1] = desc["fields"][1], desc["fields"][0]
    body["dtypes"].append(desc)
    nd["t"] = len(body["dtypes"]) - 1
    assert _load_in_child(_file(body, pool, decoder), tmp_path) == "REFUSED InvalidStateError"


@pytest.mark.parametrize("decoder", DECODERS)
def test_hgb_predictor_loop_and_bitset_index_are_refused(tmp_path, decoder):
    Xc = np.column_stack([np.random.RandomState(0).randint(0, 4, len(X)), X[:, :2]])
    hgb = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0], random_state=0).fit(Xc, Y)
    body, pool = _parts(vitrify.dumps(hgb))
    assert np.array_equal(vitrify.loads(_file(body, pool, decoder)).predict(Xc), hgb.predict(Xc))
    spec = _objects(body["root"], "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")[0]
    nodes = _state(spec, body, "nodes")["$object"]["state"]
    off, n = nodes["p"]
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE as dt

    def tampered(fn):
        buf = bytearray(pool)
        fn(np.frombuffer(buf, dtype=dt, count=n // dt.itemsize, offset=off))
        return _file(body, bytes(buf), decoder)

    def loop(a):
        a["left"][0] = 0

    def bitset(a):
        a["is_categorical"][0] = 1
        a["bitset_idx"][0] = 10**6

    def feature(a):
        a["feature_idx"][0] = 10**6

    files = [tampered(fn) for fn in (loop, bitset, feature)]
    assert _load_in_child(files, tmp_path) == ["REFUSED InvalidStateError"] * 3


def _estimator_file(est, decoder, **attrs):
    for k, v in attrs.items():
        setattr(est, k, v)
    body, pool = _parts(vitrify.dumps(est))
    return _file(body, pool, decoder)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("attr,value", [
    ("_n_support", lambda s: (s._n_support + np.array([5, 0, 0], np.int32))),
    ("_dual_coef_", lambda s: s._dual_coef_[:, :-3].copy()),
    ("support_vectors_", lambda s: s.support_vectors_[:, :2].copy()),
    ("_intercept_", lambda s: np.zeros(1)),
    ("_probA", lambda s: np.zeros(7)),
    ("kernel", lambda s: "bogus"),
])
def test_libsvm_state_is_checked(tmp_path, decoder, attr, value):
    svc = SVC(probability=True, random_state=0).fit(X, Y)
    assert np.array_equal(vitrify.loads(_estimator_file(SVC().fit(X, Y), decoder)).predict(X),
                          SVC().fit(X, Y).predict(X))
    data = _estimator_file(svc, decoder, **{attr: value(svc)})
    assert _load_in_child(data, tmp_path) == "REFUSED InvalidStateError"


@pytest.mark.parametrize("decoder", DECODERS)
def test_kmeans_centers_must_match_the_features(tmp_path, decoder):
    km = KMeans(3, n_init=1, random_state=0).fit(X)
    data = _estimator_file(km, decoder, cluster_centers_=km.cluster_centers_[:, :2].copy())
    assert _load_in_child(data, tmp_path) == "REFUSED InvalidStateError"


@pytest.mark.parametrize("decoder", DECODERS)
def test_neighbours_fit_data_must_match_their_tree(tmp_path, decoder):
    knn = KNeighborsClassifier(algorithm="kd_tree").fit(X, Y)
    data = _estimator_file(knn, decoder, _fit_X=X[:10].copy())
    assert _load_in_child(data, tmp_path) == "REFUSED InvalidStateError"
    brute = KNeighborsClassifier(algorithm="brute").fit(X, Y)
    data = _estimator_file(brute, decoder, n_samples_fit_=10**6)
    assert _load_in_child(data, tmp_path) == "REFUSED InvalidStateError"


@pytest.mark.parametrize("decoder", DECODERS)
def test_sparse_structure_is_checked(tmp_path, decoder):
    import scipy.sparse as sp
    m = sp.csr_matrix(np.eye(4))
    body, pool = _parts(vitrify.dumps({"m": m}))
    assert (vitrify.loads(_file(body, pool, decoder))["m"] != m).nnz == 0
    bad = sp.csr_matrix(np.eye(4))
    bad.indices[2] = 10**6    # scipy does not check on assignment: a crafted file can hold it
    body, pool = _parts(vitrify.dumps({"m": bad}))
    assert _load_in_child(_file(body, pool, decoder), tmp_path) == "REFUSED InvalidStateError"


def test_checks_are_chosen_by_the_built_type_not_the_name():
    from sklearn.neighbors import KDTree
    from sklearn.tree._tree import Tree
    assert _validators.object_check(KDTree) is _validators.binary_tree
    assert _validators.state_check(Tree) is _validators.tree_state
    assert _validators.object_check(dict) is None


def test_layout_comparison_sees_field_order_and_offsets():
    from sklearn.tree._tree import NODE_DTYPE
    assert _validators.same_layout(NODE_DTYPE, NODE_DTYPE)
    names = list(NODE_DTYPE.names)
    swapped = np.dtype({"names": [names[3]] + names[:3] + names[4:],
                        "formats": [NODE_DTYPE.fields[n][0] for n in [names[3]] + names[:3] + names[4:]],
                        "offsets": [NODE_DTYPE.fields[n][1] for n in [names[3]] + names[:3] + names[4:]],
                        "itemsize": NODE_DTYPE.itemsize})
    assert not _validators.same_layout(swapped, NODE_DTYPE)
    assert not _validators.same_layout(NODE_DTYPE.newbyteorder(), NODE_DTYPE)
