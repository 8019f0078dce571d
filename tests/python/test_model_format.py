"""The object encoding of vitrify.dump: version 2 packs the tree into one array of the file,
version 1 files (tree inline in the header) still load, and packing hides nothing from the
trust check."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vitrify
from vitrify import _core, model


def _file(content: dict, arrays: dict | None = None, packed: dict | None = None,
          codec: str = "raw") -> bytes:
    w = _core.Writer.create_in_memory(64)
    for name, a in (arrays or {}).items():
        a = np.ascontiguousarray(a)
        w.add_array(name, vitrify.numpy_to_dtype(a.dtype), list(a.shape), a.reshape(-1).view(np.uint8),
                    "raw", 0, None)
    if packed is not None:
        text = json.dumps(packed).encode()
        w.add_array("content", "uint8", [len(text)], text, codec, 3, None)
    w.set_content(json.dumps(content))
    w.commit()
    return w.take_bytes()


def _obj(t, state):
    return {"$object": {"type": t, "version": 1, "state": state}}


def test_version_1_files_still_load():
    s = np.zeros((2, 3), dtype=[("a", "<i4"), ("b", "<f8")], order="F")
    nodes_dt = model._dtype_state(s.dtype)
    s["a"] = np.arange(6).reshape(2, 3)
    root = {"$dict": [
        ["x", _obj("numpy.ndarray", {"data": {"$array": "x"}})],
        ["f", _obj("numpy.ndarray", {"data": {"$array": "fT"}, "order": "F"})],
        ["s", _obj("numpy.ndarray", {"raw": {"$array": "s"}, "shape": [2, 3], "dtype": nodes_dt, "order": "F"})],
        ["g", _obj("numpy.generic", {"dtype": "<f4", "bytes": "AADAPw=="})],
        ["o", _obj("numpy.ndarray", {"shape": [2], "dtype": "O", "items": [1, None]})],
        ["c", _obj("collections.OrderedDict", {"new": True, "dictitems": [["k", 1]]})],
    ]}
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    data = _file({"kind": model.CONTENT_KIND, "version": 1, "root": root},
                 arrays={"x": np.arange(3.0), "fT": f.T, "s": np.ascontiguousarray(s.T).view(np.uint8).reshape(-1)})
    out = vitrify.loads(data)
    assert np.array_equal(out["x"], np.arange(3.0))
    assert out["f"].flags.f_contiguous and np.array_equal(out["f"], f)
    assert out["s"].shape == (2, 3) and np.array_equal(out["s"]["a"], s["a"])
    assert type(out["g"]) is np.float32 and out["g"] == 1.5
    assert list(out["o"]) == [1, None]
    assert dict(out["c"]) == {"k": 1}


def test_dump_packs_the_tree_and_inlines_small_arrays(tmp_path):
    obj = {"small": np.arange(5, dtype=np.int16), "big": np.arange(1000.0), "flag": np.array([True, False]),
           "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "be": np.arange(3, dtype=">f8")}
    path = tmp_path / "p.vit"
    vitrify.dump(obj, path, durable=False)
    info = vitrify.inspect(path)
    assert info["content"]["version"] == 2 and info["content"]["packed"].name == "content"
    names = [a["name"] for a in info["arrays"]]
    assert "content" in names and len(names) == 2      # only "big" is out of line
    out = vitrify.load(path)
    for k, v in obj.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape and out[k].tobytes("A") == v.tobytes("A"), k
        assert out[k].flags.writeable and out[k].flags.f_contiguous == v.flags.f_contiguous, k


def test_packed_names_are_checked_and_header_root_is_ignored():
    bad = {"root": _obj("os.system", {"a": ["true"]})}
    decoy = {"kind": model.CONTENT_KIND, "version": 2, "packed": {"$array": "content"},
             "types": [], "root": None}
    for codec in ("raw", "zstd"):
        data = _file(decoy, packed=bad, codec=codec)
        assert vitrify.get_untrusted_types(data=data) == ["os.system"]
        with pytest.raises(vitrify.UntrustedTypeError):
            vitrify.loads(data, trusted=["os.system"])


def test_inline_arrays_are_checked():
    def arr(state):
        return _file({"kind": model.CONTENT_KIND, "version": 2, "packed": {"$array": "content"}},
                     packed={"root": _obj("numpy.ndarray", state)})
    with pytest.raises(vitrify.FormatError):       # bool byte other than 0/1
        vitrify.loads(arr({"b": "Ag==", "t": "|b1", "s": [1]}))
    with pytest.raises(vitrify.FormatError):       # size mismatch
        vitrify.loads(arr({"b": "AAAA", "t": "<f8", "s": [1]}))
    with pytest.raises(vitrify.FormatError):       # object dtype from bytes
        vitrify.loads(arr({"b": "AAAAAAAAAAA=", "t": "|O", "s": [1]}))
    with pytest.raises(vitrify.FormatError):       # the tree may not point at its own array
        vitrify.loads(arr({"d": {"$array": "content"}}))


class _Holder:
    pass


def test_shared_state_dicts_and_lists():
    shared = [1, 2]
    h = _Holder()
    h.items = shared
    obj = {"h": h, "again": shared, "state": h.__dict__}    # the state dict itself is shared
    out = vitrify.loads(vitrify.dumps(obj), trusted=[_Holder])
    assert out["h"].items is out["again"]
    assert out["state"] == {"items": [1, 2]} and out["state"]["items"] is out["again"]  # as pickle
