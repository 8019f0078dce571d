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


def test_dump_packs_the_tree_and_pools_numeric_arrays(tmp_path):
    obj = {"small": np.arange(5, dtype=np.int16), "big": np.arange(1000.0), "flag": np.array([True, False]),
           "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "be": np.arange(3, dtype=">f8"),
           "empty": np.zeros((0, 3)), "when": np.array(["2020-01-01"], dtype="M8[D]"),
           "rec": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), "text": np.array(["a", "bc"])}
    for compress in (None, "zstd"):
        path = tmp_path / "p.vit"
        vitrify.dump(obj, path, durable=False, compress=compress)
        info = vitrify.inspect(path)
        assert info["content"]["version"] == 3 and info["content"]["packed"].name == "content"
        assert info["content"]["pool"].name == "pool"
        names = sorted(a["name"] for a in info["arrays"])
        assert names == ["0", "content", "pool"]       # "0" is the string array
        for mmap in (True, False):
            out = vitrify.load(path, mmap=mmap)
            for k, v in obj.items():
                assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
                assert out[k].tobytes("A") == v.tobytes("A"), k
                assert out[k].flags.writeable and out[k].flags.f_contiguous == v.flags.f_contiguous, k
            big = out["big"]
            assert big.ctypes.data % 64 == 0 and out["small"].ctypes.data % 16 == 0
        # Writes stay private to this process (copy-on-write views of the mapping).
        out = vitrify.load(path)
        out["big"][0] = 42.0
        assert vitrify.load(path)["big"][0] == 0.0


def test_a_tree_without_pooled_arrays_stays_version_2(tmp_path):
    data = vitrify.dumps({"a": [1, 2.5, "x"], "s": np.array(["u"])})
    f = _core.File.from_bytes(data, True)
    assert json.loads(f.content_json)["version"] == 2 and "pool" not in f.names()
    assert vitrify.loads(data)["a"] == [1, 2.5, "x"]


def _pooled_file(state, pool: bytes = bytes(64), *, content_extra=None, root=None):
    """A version-3 file with one pooled array state (or the given root)."""
    w = _core.Writer.create_in_memory(64)
    w.add_array("pool", "uint8", [len(pool)], np.frombuffer(pool, np.uint8), "raw", 0, None)
    body = {"root": root if root is not None else _obj("numpy.ndarray", state)}
    text = json.dumps(body).encode()
    w.add_array("content", "uint8", [len(text)], text, "raw", 0, None)
    content = {"kind": model.CONTENT_KIND, "version": 3, "packed": {"$array": "content"},
               "pool": {"$array": "pool"}}
    content.update(content_extra or {})
    w.set_content(json.dumps(content))
    w.commit()
    return w.take_bytes()


def test_pooled_arrays_are_checked(tmp_path):
    pool = np.arange(8, dtype="<f8").tobytes() + bytes([0, 1, 2, 0]) + bytes(12)
    good = _pooled_file({"p": [16, 16], "t": "<f8", "s": [2]}, pool)
    assert vitrify.loads(good).tolist() == [2.0, 3.0]
    path = tmp_path / "case.vit"
    path.write_bytes(good)
    assert _core.object_graph_names(str(path))[0] == []      # the C++ runtime's reader
    cases = {
        "size": {"p": [0, 16], "t": "<f8", "s": [3]},
        "outside": {"p": [80, 16], "t": "<f8", "s": [2]},
        "negative": {"p": [-16, 16], "t": "<f8", "s": [2]},
        "huge": {"p": [16, 2 ** 62], "t": "<f8", "s": [2 ** 59]},
        "misaligned": {"p": [8, 8], "t": "<f8", "s": [1]},
        "bool": {"p": [64, 3], "t": "|b1", "s": [3]},
        "object": {"p": [0, 8], "t": "|O", "s": [1]},
        "unicode": {"p": [0, 8], "t": "<U2", "s": [1]},
        "ref": {"p": {"$array": "pool"}, "t": "<f8", "s": [2]},
        "ref3": {"p": [0, 8, 1], "t": "<f8", "s": [1]},
        "pool-as-array": {"d": {"$array": "pool"}},
    }
    for name, state in cases.items():
        # A declared size over the file's byte budget is a limit (docs/OBJECTS.md section 8),
        # whatever else is wrong with the state.
        with pytest.raises(vitrify.LimitError if name == "huge" else vitrify.FormatError):
            vitrify.loads(_pooled_file(state, pool))
        # The C++ runtime's reader applies the same checks.
        path.write_bytes(_pooled_file(state, pool))
        with pytest.raises(vitrify.VitrifyError):
            _core.object_graph_names(str(path))
    with pytest.raises(vitrify.FormatError):      # pooled state without a pool
        data = _file({"kind": model.CONTENT_KIND, "version": 3, "packed": {"$array": "content"}},
                     packed={"root": _obj("numpy.ndarray", {"p": [0, 8], "t": "<f8", "s": [1]})})
        vitrify.loads(data)
    with pytest.raises(vitrify.FormatError):      # the pool is the packed tree
        vitrify.loads(_pooled_file({"p": [0, 8], "t": "<f8", "s": [1]}, pool,
                                   content_extra={"pool": {"$array": "content"}}))
    with pytest.raises(vitrify.FormatError):      # a version-2 file cannot use the pool
        vitrify.loads(_pooled_file({"p": [0, 8], "t": "<f8", "s": [1]}, pool, content_extra={"version": 2}))


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


def _exotic_values():
    return {
        "nested": np.zeros(3, dtype=[("a", "<i4"), ("b", [("x", "<f8"), ("y", "<u2")])]),
        "subarray_field": np.zeros(4, dtype=[("v", "<f8", (2, 3)), ("w", "<i2")]),
        "big_endian": np.arange(5, dtype=">f8"),
        "big_endian_fortran": np.asfortranarray(np.arange(6, dtype=">i4").reshape(2, 3)),
        "big_endian_field": np.zeros(2, dtype=[("a", ">i4"), ("b", "<f8")]),
        "aligned": np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True)),
        "bytes": np.array([b"ab", b"", b"xyz\x00q"], dtype="S5"),
        "unicode": np.array(["a", "h\u00e9llo"]),
        "empty": np.zeros((0, 3)),
        "empty_unicode": np.array([], dtype="<U4"),
        "datetime": np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"),
        "float16": np.arange(3, dtype=np.float16),
        "dtype_subarray": np.dtype(("<f8", (2, 2))),
        "dtype_aligned": np.dtype([("a", "u1"), ("b", "<f8")], align=True),
        "dtype_big_endian": np.dtype(">i8"),
        "dtype_unicode": np.dtype("<U7"),
    }


@pytest.mark.parametrize("compress", [None, "zstd"])
@pytest.mark.parametrize("mmap", [True, False])
def test_dtypes_keep_their_description(tmp_path, compress, mmap):
    """The one object decoder (docs/OBJECTS.md section 12) keeps what the file describes: nested
    and sub-array fields, byte order, numpy's align flag, widths and units."""
    obj = _exotic_values()
    path = tmp_path / "d.vit"
    vitrify.dump(obj, path, compress=compress)
    out = vitrify.load(path, mmap=mmap)
    for k, v in obj.items():
        o = out[k]
        if isinstance(v, np.dtype):
            assert o == v and o.str == v.str and o.descr == v.descr and o.isalignedstruct == v.isalignedstruct, k
            continue
        assert o.dtype.str == v.dtype.str and o.dtype.descr == v.dtype.descr, k
        assert o.dtype.isalignedstruct == v.dtype.isalignedstruct, k
        assert o.shape == v.shape and o.tobytes("A") == v.tobytes("A"), k
        assert o.flags.f_contiguous == v.flags.f_contiguous and o.flags.writeable, k


def test_budget_allowance_can_be_raised_for_a_trusted_file(tmp_path):
    """A small file declaring more decoded bytes than its budget (docs/OBJECTS.md section 8) is
    refused; the caller raises the budget's fixed allowance explicitly with extra_bytes."""
    big = np.zeros(40 * 2 ** 20 // 8)                      # 40 MiB of zeros
    path = tmp_path / "z.vit"
    vitrify.dump({"a": big}, path, compress="zstd")
    assert path.stat().st_size < 2 ** 20                   # compresses to a few KiB
    with pytest.raises(vitrify.LimitError, match="extra_bytes"):
        vitrify.load(path, extra_bytes=0)
    with pytest.raises(vitrify.LimitError):
        vitrify.loads(path.read_bytes(), extra_bytes=2 ** 20)
    out = vitrify.load(path, extra_bytes=128 * 2 ** 20)   # pool decoded + its arrays: 80 MiB
    assert out["a"].shape == big.shape and not out["a"].any()
    assert vitrify.load(path)["a"].shape == big.shape       # within the default allowance
    with pytest.raises(vitrify.ArgumentError):
        vitrify.load(path, extra_bytes=-1)


def test_cycles_the_builder_cannot_make_are_refused():
    """Lists, dicts and objects exist before their contents, so a $ref inside them may name them
    (docs/OBJECTS.md 5.2); an object's constructor arguments, a set or a tuple cannot hold
    themselves: refused with a FormatError, never a half-built object."""
    def load_root(root):
        return vitrify.loads(_pooled_file(None, root=root))

    shared = lambda v: {"$shared": {"id": 1, "value": v}}   # noqa: E731
    ref = {"$ref": 1}
    ok = load_root(shared(_obj("collections.OrderedDict", {"n": True, "di": [["me", ref]]})))
    assert ok["me"] is ok
    lst = load_root(shared([{"$tuple": [ref]}]))
    assert lst[0][0] is lst
    for bad in (_obj("collections.OrderedDict", {"a": [ref]}), _obj("builtins.set", [ref]),
                {"$tuple": [ref]}, {"$dict": [[ref, 1]]}):
        with pytest.raises(vitrify.FormatError):
            load_root(shared(bad))
