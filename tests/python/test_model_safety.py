"""vitrify.load is safe by construction: names outside the trusted list are never imported or
called, the file cannot widen the list, and data that scikit-learn trusts blindly is validated."""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pytest

import vitrify
from vitrify import _core, model
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier


def _craft(root, *, extra=None, arrays=None) -> bytes:
    """A file whose content section holds `root` (typed-value JSON), written with the low-level
    writer so that nothing in vitrify.dump can sanitise it. Object encoding version 1: the tree
    sits in the header and uses the long state keys ("args", "new", "raw", ...); versions 2 and
    3 keep it in a packed array only (docs/OBJECTS.md section 3)."""
    w = _core.Writer.create_in_memory(64)
    for name, a in (arrays or {}).items():
        w.add_array(name, "float64", list(a.shape), a.reshape(-1).view(np.uint8), "raw", 0, None)
    content = {"kind": model.CONTENT_KIND, "version": 1, "root": root}
    content.update(extra or {})
    w.set_content(json.dumps(content))
    w.commit()
    return w.take_bytes()


def _obj(t, state):
    return {"$object": {"type": t, "version": 1, "state": state}}


def test_os_system_is_refused_and_never_called(tmp_path):
    marker = tmp_path / "pwned"
    data = _craft(_obj("os.system", {"args": [f"touch {marker}"]}))
    with pytest.raises(vitrify.UntrustedTypeError) as ei:
        vitrify.loads(data)
    assert "os.system" in str(ei.value)
    # Even listed explicitly, names that execute code are refused.
    with pytest.raises(vitrify.UntrustedTypeError) as ei:
        vitrify.loads(data, trusted=["os.system"])
    assert "never trusted" in str(ei.value)
    assert not marker.exists()
    assert vitrify.get_untrusted_types(data=data) == ["os.system"]


@pytest.mark.parametrize("name", [
    "builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__", "subprocess.Popen",
    "importlib.import_module", "pickle.loads", "posix.system", "nt.system", "shutil.rmtree",
    "numpy.testing._private.utils.runstring", "operator.attrgetter", "runpy._run_code",
])
def test_dangerous_callables_refused_even_when_listed(name):
    for root in (_obj(name, {"args": ["1"]}), _obj("vitrify.global", name)):
        data = _craft(root)
        with pytest.raises(vitrify.UntrustedTypeError):
            vitrify.loads(data, trusted=[name])


@pytest.mark.parametrize("name", [
    "sklearn.linear_model.LogisticRegressionX",          # look-alike of a trusted name
    "sklearn.linear_model.LogisticRegression.fit",         # attribute of a trusted class
    "sklearn.linear_model.LogisticRegression.__init__.__globals__",
    "sklearn.utils._testing.assert_run_python_script_without_output",
    "numpy.ndarray.__reduce__", "sklearn", "numpy",
    "vitrify_never_imported_module.Payload",
])
def test_look_alikes_of_trusted_names_are_refused(name):
    data = _craft(_obj(name, {"new": True}))
    with pytest.raises(vitrify.UntrustedTypeError):
        vitrify.loads(data)
    assert "vitrify_never_imported_module" not in sys.modules


def test_file_cannot_extend_its_own_trusted_list(tmp_path):
    payload = _obj("os.system", {"args": ["true"]})
    tricks = [
        {"trusted": ["os.system"]},
        {"types": ["os.system"], "trusted_types": ["os.system"], "safe": True},
    ]
    for extra in tricks:
        with pytest.raises(vitrify.UntrustedTypeError):
            vitrify.loads(_craft(payload, extra=extra))
    # Metadata and environment records that claim trust change nothing either.
    w = _core.Writer.create_in_memory(64)
    w.set_metadata(json.dumps({"trusted": ["os.system"], "vitrify_trust_all": True}))
    w.set_environment(json.dumps({"trusted": ["os.system"]}))
    w.set_content(json.dumps({"kind": model.CONTENT_KIND, "version": 1, "root": payload}))
    w.commit()
    with pytest.raises(vitrify.UntrustedTypeError):
        vitrify.loads(w.take_bytes())
    # A file cannot rename a dangerous function into a trusted special decoder either.
    with pytest.raises(vitrify.VitrifyError):
        vitrify.loads(_craft(_obj("numpy.random.Generator", {"bit_generator": "os.system", "state": {}})))


class UserThing:
    def __init__(self, x=1):
        self.x = x


def _double(x):
    return 2 * x


def test_user_types_need_explicit_trust(tmp_path):
    path = tmp_path / "u.vit"
    vitrify.dump({"thing": UserThing(5)}, path)
    name = f"{__name__}.UserThing"
    assert vitrify.get_untrusted_types(path) == [name]
    with pytest.raises(vitrify.UntrustedTypeError) as ei:
        vitrify.load(path)
    assert name in str(ei.value)
    obj = vitrify.load(path, trusted=[name])
    assert isinstance(obj["thing"], UserThing) and obj["thing"].x == 5
    assert vitrify.load(path, trusted=[UserThing])["thing"].x == 5


def test_function_transformer_with_user_function(tmp_path):
    ft = FunctionTransformer(_double).fit(np.ones((3, 2)))
    path = tmp_path / "ft.vit"
    vitrify.dump(ft, path)
    fname = f"{__name__}._double"
    assert vitrify.get_untrusted_types(path) == [fname]
    with pytest.raises(vitrify.UntrustedTypeError):
        vitrify.load(path)
    loaded = vitrify.load(path, trusted=[fname])
    assert np.array_equal(loaded.transform(np.ones((2, 2))), 2 * np.ones((2, 2)))
    # numpy functions are trusted by default
    vitrify.dump(FunctionTransformer(np.log1p).fit(np.ones((3, 2))), path)
    assert vitrify.get_untrusted_types(path) == []


def test_lambdas_cannot_be_saved(tmp_path):
    with pytest.raises(vitrify.VitrifyError):
        vitrify.dump(FunctionTransformer(lambda x: x), tmp_path / "l.vit")


def _tampered_tree_file(tmp_path, field, value, row=0):
    X, y = load_iris(return_X_y=True)
    clf = DecisionTreeClassifier(random_state=0).fit(X, y)
    state = clf.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][row] = value
    state["nodes"] = nodes
    clf.tree_.__setstate__(state)  # scikit-learn accepts it: this is what a crafted file holds
    path = tmp_path / f"bad_{field}.vit"
    vitrify.dump(clf, path)
    return path


@pytest.mark.parametrize("field,value", [
    ("left_child", 10**6), ("right_child", 10**6), ("left_child", -5), ("right_child", 0),
    ("feature", 10**6), ("feature", -7),
])
def test_tree_with_out_of_range_indices_is_refused(tmp_path, field, value):
    path = _tampered_tree_file(tmp_path, field, value)
    with pytest.raises(vitrify.InvalidStateError):
        vitrify.load(path)


def test_tree_with_backward_child_is_refused(tmp_path):
    # A child pointing back to its parent would make predict loop forever.
    path = _tampered_tree_file(tmp_path, "left_child", 0, row=2)
    with pytest.raises(vitrify.InvalidStateError):
        vitrify.load(path)


def test_array_data_never_goes_through_pickle(tmp_path, monkeypatch):
    X, y = load_iris(return_X_y=True)
    obj = {"model": LogisticRegression(max_iter=500).fit(X, y), "objs": np.array([1, "a", None], dtype=object)}
    path = tmp_path / "m.vit"
    vitrify.dump(obj, path)

    def boom(*a, **k):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    loaded = vitrify.load(path)
    assert np.array_equal(loaded["model"].predict(X), obj["model"].predict(X))
    assert list(loaded["objs"]) == [1, "a", None]


def test_large_arrays_are_views_of_the_mapping(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(400, 300))
    y = (X[:, 0] > 0).astype(int)
    clf = LogisticRegression(max_iter=50).fit(X, y)
    path = tmp_path / "lr.vit"
    vitrify.dump(clf, path)
    loaded = vitrify.load(path)
    f = vitrify.File.open(str(path))
    lo, hi = f.address, f.address + f.size
    del f
    addr = loaded.coef_.__array_interface__["data"][0]
    # Mapped from the same file, but by load()'s own mapping: check the array is not owned
    # memory and is writable copy-on-write.
    assert not loaded.coef_.flags.owndata
    assert loaded.coef_.flags.writeable
    assert np.array_equal(loaded.coef_, clf.coef_)
    loaded.coef_[0, 0] += 1.0  # copy-on-write: the file does not change
    again = vitrify.load(path)
    assert np.array_equal(again.coef_, clf.coef_)
    assert lo and hi and addr


def test_shared_references_and_cycles():
    a = np.arange(10.0)
    shared = [1, 2]
    obj = {"x": a, "y": a, "l1": shared, "l2": shared}
    cyc: list = [1]
    cyc.append(cyc)
    obj["cyc"] = cyc
    d: dict = {}
    d["self"] = d
    obj["d"] = d
    out = vitrify.loads(vitrify.dumps(obj))
    assert out["x"] is out["y"]
    assert out["l1"] is out["l2"]
    assert out["cyc"][1] is out["cyc"]
    assert out["d"]["self"] is out["d"]


def test_python_values_round_trip():
    rs = np.random.RandomState(3)
    gen = np.random.default_rng(5)
    obj = {
        1: "int key", (1, 2): "tuple key", "nan": float("nan"), "inf": float("-inf"), "big": 2**100,
        "set": {3, 1, 2}, "fs": frozenset({"a"}), "c": 1 + 2j, "b": b"\x00\xff", "t": (1, (2, 3)),
        "np": np.float32(1.5), "i8": np.int8(-3), "dt": np.dtype("<f4"), "rs": rs, "gen": gen,
        "u": np.array(["a", "é"]), "o": np.array(["x", "yz"], dtype=object),
        "struct": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), "f": np.asfortranarray(np.ones((3, 4))),
        "dt64": np.array(["2020-01-01"], dtype="M8[D]"), "empty": np.zeros((0, 3)), "zero_d": np.array(4.0),
        "ma": np.ma.MaskedArray([1.0, 2.0], mask=[False, True]),
    }
    out = vitrify.loads(vitrify.dumps(obj))
    assert out[1] == "int key" and out[(1, 2)] == "tuple key"
    assert out["nan"] != out["nan"] and out["inf"] == float("-inf") and out["big"] == 2**100
    assert out["set"] == {1, 2, 3} and out["fs"] == frozenset({"a"}) and out["c"] == 1 + 2j
    assert out["b"] == b"\x00\xff" and out["t"] == (1, (2, 3))
    assert type(out["np"]) is np.float32 and out["np"] == 1.5 and type(out["i8"]) is np.int8
    assert out["dt"] == np.dtype("<f4")
    assert out["rs"].randint(1000) == rs.randint(1000)
    assert out["gen"].integers(1000) == gen.integers(1000)
    assert out["u"].dtype == obj["u"].dtype and list(out["u"]) == ["a", "é"]
    assert out["o"].dtype == object and list(out["o"]) == ["x", "yz"]
    assert out["struct"].dtype == obj["struct"].dtype
    assert out["f"].flags.f_contiguous and np.array_equal(out["f"], obj["f"])
    assert out["dt64"].dtype == obj["dt64"].dtype and np.array_equal(out["dt64"], obj["dt64"])
    assert out["empty"].shape == (0, 3) and out["zero_d"].shape == ()
    assert list(out["ma"].mask) == [False, True]


def test_structured_dtypes_with_objects_are_refused():
    bad = _obj("numpy.ndarray", {"raw": {"$array": "a"}, "shape": [1], "dtype": {
        "fields": [["p", "|O", 0]], "itemsize": 8, "aligned": False}})
    data = _craft(bad, arrays={"a": np.zeros(1)})
    with pytest.raises(vitrify.VitrifyError):
        vitrify.loads(data)


def test_environment_is_recorded_and_checked(tmp_path):
    path = tmp_path / "e.vit"
    vitrify.dump(LogisticRegression().fit(*load_iris(return_X_y=True)), path)
    env = vitrify.inspect(path)["environment"]
    for k in ("python", "platform", "byteorder", "created", "vitrify"):
        assert k in env
    for p in ("numpy", "scipy", "scikit-learn"):
        assert p in env["packages"]
    with pytest.warns(vitrify.EnvironmentMismatchWarning, match="scikit-learn: saved with 0.1, running"):
        model.check_environment({**env, "packages": {**env["packages"], "scikit-learn": "0.1"}})


def test_environment_warning_points_at_the_caller(tmp_path, monkeypatch):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    real = model.current_environment
    monkeypatch.setattr(model, "current_environment",
                        lambda: {**real(), "packages": {**real()["packages"], "scikit-learn": "0.1"}})
    path = tmp_path / "old.vit"
    vitrify.dump(LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True)), path)
    monkeypatch.setattr(model, "current_environment", real)
    for call in (lambda: vitrify.load(path), lambda: vitrify.loads(path.read_bytes())):
        with pytest.warns(vitrify.EnvironmentMismatchWarning) as caught:
            call()
        assert caught[0].filename == __file__      # the user's line, not vitrify's
