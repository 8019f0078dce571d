"""Framework tensors (issue 6, item 4): save_tensors / load_tensors with numpy and PyTorch,
safetensors import and export (byte-exact both ways, hostile headers), and import of
``torch.save`` state_dict files without PyTorch and without executing the pickle.

Expected values always come from numpy, PyTorch or the safetensors library itself, never from
vitrify.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import vitrify
from vitrify import _core
from vitrify.errors import VitrifyError
from vitrify.tensors import (
    export_safetensors,
    import_safetensors,
    import_tensors,
    import_torch,
    load_tensors,
    save_tensors,
)

ROOT = Path(__file__).resolve().parents[2]

NUMPY_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                np.float16, np.float32, np.float64, np.complex64, np.complex128, ml_dtypes.bfloat16,
                ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]
# dtypes safetensors.numpy can write (numpy itself has no bfloat16/float8 names it knows).
SAFETENSORS_NUMPY_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                            np.uint64, np.float16, np.float32, np.float64, ml_dtypes.bfloat16]


def random_array(dt, shape, rng) -> np.ndarray:
    """Random bytes reinterpreted as `dt` (every bit pattern, NaN payloads included), except
    bool, whose bytes must be 0 or 1."""
    dt = np.dtype(dt)
    n = int(np.prod(shape, dtype=np.int64))
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape and
            np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def sample_tensors(rng, dtypes=NUMPY_DTYPES) -> dict[str, np.ndarray]:
    out = {}
    for k, dt in enumerate(dtypes):
        name = np.dtype(dt).name
        out[f"layer{k}.{name}"] = random_array(dt, (3, 5), rng)
    out["scalar"] = np.array(2.5, np.float32)
    out["empty"] = np.zeros((0, 4), np.int64)
    out["naïve \"quoted\" \\ name"] = random_array(np.float64, (7,), rng)
    return out


def sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def raises_code(code: str):
    """pytest.raises for a VitrifyError with the given stable code name."""

    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(VitrifyError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            r = self.cm.__exit__(*exc)
            assert self.info.value.code_name == code, f"expected {code}, got {self.info.value.code_name}: {self.info.value}"
            return r

    return _Ctx()


# ============================================================================================
# numpy round trips
# ============================================================================================

@pytest.mark.parametrize("compress", [None, "zstd"])
@pytest.mark.parametrize("mmap", [True, False])
def test_numpy_round_trip_every_dtype(tmp_path, rng, compress, mmap):
    tensors = sample_tensors(rng)
    p = tmp_path / "t.vit"
    save_tensors(p, tensors, compress=compress)
    got = load_tensors(p, mmap=mmap)
    assert list(got) == list(tensors)
    for k, v in tensors.items():
        assert same_bytes(got[k], v), k
    info = vitrify.inspect(p)
    assert info["content"]["kind"] == "vitrify.tensors"
    assert info["content"]["source"] == "numpy"
    # float8 arrays make the file a format 1.1 file with the dtype_float8 feature.
    assert info["version"] == (1, 1)
    assert info["required_features"] == ["dtype_float8"]
    assert {a["name"]: a["dtype"] for a in info["arrays"]}["layer15.float8_e4m3fn"] == "float8_e4m3fn"


def test_files_without_float8_stay_version_1_0(tmp_path, rng):
    p = tmp_path / "t.vit"
    save_tensors(p, sample_tensors(rng, SAFETENSORS_NUMPY_DTYPES))
    info = vitrify.inspect(p)
    assert info["version"] == (1, 0)
    assert info["required_features"] == []


def test_float8_values_are_the_ml_dtypes_values(tmp_path):
    values = np.array([0.0, -0.0, 1.0, -2.0, 448.0, 0.001953125, np.nan], np.float32)
    e4 = values.astype(ml_dtypes.float8_e4m3fn)
    e5 = np.array([1.0, 57344.0, np.inf, -np.inf, 1.52587890625e-05], np.float32).astype(ml_dtypes.float8_e5m2)
    save_tensors(tmp_path / "f8.vit", {"e4": e4, "e5": e5})
    got = load_tensors(tmp_path / "f8.vit")
    assert got["e4"].dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    assert got["e5"].dtype == np.dtype(ml_dtypes.float8_e5m2)
    np.testing.assert_array_equal(got["e4"].astype(np.float32), e4.astype(np.float32))
    np.testing.assert_array_equal(got["e5"].astype(np.float32), e5.astype(np.float32))
    # save_arrays/load_arrays know the dtypes too
    vitrify.save_arrays(tmp_path / "a.vit", {"e4": e4})
    assert same_bytes(vitrify.load_arrays(tmp_path / "a.vit")["e4"], e4)


def test_mmap_loads_are_zero_copy_views(tmp_path, rng):
    from conftest import data_address, mapped_ranges

    p = tmp_path / "t.vit"
    save_tensors(p, {"w": random_array(np.float32, (256, 64), rng)})
    got = load_tensors(p)
    w = got["w"]
    assert not w.flags.writeable
    addr = data_address(w)
    assert any(lo <= addr < hi for lo, hi in mapped_ranges(p)), "not a view of the mapped file"
    cow = load_tensors(p, copy_on_write=True)["w"]
    assert cow.flags.writeable
    before = p.read_bytes()
    cow[0, 0] = 123.0
    assert p.read_bytes() == before


def test_tied_numpy_arrays_are_stored_once(tmp_path, rng):
    a = random_array(np.float32, (8, 4), rng)
    tensors = {"embed.weight": a, "bias": np.zeros(4, np.float32), "lm_head.weight": a,
               "view": a[2:],                   # shares memory but is another tensor: stored on its own
               "same_values_copy": a.copy()}    # equal values, other memory: stored on its own
    p = tmp_path / "t.vit"
    save_tensors(p, tensors)
    info = vitrify.inspect(p)
    assert [x["name"] for x in info["arrays"]] == ["embed.weight", "bias", "view", "same_values_copy"]
    assert info["content"]["aliases"] == {"lm_head.weight": vitrify.ArrayRef("embed.weight")}
    got = load_tensors(p)
    assert got["lm_head.weight"] is got["embed.weight"]
    for k, v in tensors.items():
        assert same_bytes(got[k], v), k
    assert got["view"] is not got["embed.weight"]


def test_metadata_and_plain_array_files(tmp_path, rng):
    p = tmp_path / "t.vit"
    meta = {"epoch": 3, "lr": 0.01, "tags": ("a", "b")}
    save_tensors(p, {"w": np.ones(3, np.float32)}, metadata=meta)
    assert vitrify.inspect(p)["metadata"] == meta
    # A file written by save_arrays (no content section) loads as a plain dict of arrays.
    q = tmp_path / "plain.vit"
    x = random_array(np.int16, (4, 4), rng)
    vitrify.save_arrays(q, {"x": x})
    assert same_bytes(load_tensors(q)["x"], x)


def test_save_tensors_refuses_what_is_not_a_tensor(tmp_path):
    p = tmp_path / "t.vit"
    with pytest.raises(vitrify.ArgumentError, match="names must be str"):
        save_tensors(p, {1: np.zeros(2)})
    with pytest.raises(vitrify.ArgumentError, match="labels"):
        save_tensors(p, {"labels": np.array(["a", "b"])})
    with pytest.raises(vitrify.ArgumentError, match="float8_e4m3fnuz"):
        save_tensors(p, {"x": np.zeros(2, ml_dtypes.float8_e4m3fnuz)})
    with pytest.raises(vitrify.ArgumentError):
        save_tensors(p, [np.zeros(2)])
    with pytest.raises(vitrify.ArgumentError, match="framework"):
        load_tensors(p, framework="jax")
    assert not p.exists()


def test_load_tensors_refuses_other_content(tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model")
    p = tmp_path / "model.vit"
    m = sklearn.LinearRegression().fit(np.arange(8.0).reshape(4, 2), np.arange(4.0))
    vitrify.dump(m, p)
    with raises_code("bad_value"):
        load_tensors(p)
    # A newer content version than this reader knows.
    w = _core.Writer.create(str(tmp_path / "v9.vit"), 64, False)
    w.add_array("x", "uint8", [1], np.zeros(1, np.uint8), "raw", 0, None)
    w.set_content('{"kind":"vitrify.tensors","version":9}')
    w.commit()
    w.close()
    with raises_code("unsupported_feature"):
        load_tensors(tmp_path / "v9.vit")


# ============================================================================================
# PyTorch
# ============================================================================================

def _torch():
    return pytest.importorskip("torch")


def _tiny_model(torch):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, 8)
            self.block = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 8))
            self.norm = torch.nn.LayerNorm(8)
            self.bn = torch.nn.BatchNorm1d(8)   # buffers, incl. int64 num_batches_tracked
            self.head = torch.nn.Linear(8, 11, bias=False)
            self.head.weight = self.embed.weight  # tied weights

        def forward(self, ids):
            h = self.embed(ids)
            h = self.norm(h + self.block(h))
            h = self.bn(h.transpose(1, 2)).transpose(1, 2)
            return self.head(h)

    return Tiny


def test_torch_state_dict_round_trip(tmp_path):
    torch = _torch()
    torch.manual_seed(0)
    Tiny = _tiny_model(torch)
    model = Tiny()
    model.train()
    model(torch.randint(0, 11, (4, 5)))  # update the BatchNorm running statistics
    model.eval()
    sd = model.state_dict()
    p = tmp_path / "tiny.vit"
    save_tensors(p, sd)
    info = vitrify.inspect(p)
    assert info["content"]["source"] == "torch"
    assert info["content"]["aliases"] == {"head.weight": vitrify.ArrayRef("embed.weight")}

    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no "not writable" warnings: tensors come from a COW mapping
        loaded = load_tensors(p, framework="torch")
    assert list(loaded) == [k for k in sd if k != "head.weight"] + ["head.weight"]
    assert loaded["head.weight"] is loaded["embed.weight"]
    for k, v in sd.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k

    fresh = Tiny()
    fresh.load_state_dict(loaded)
    fresh.eval()
    ids = torch.randint(0, 11, (3, 7))
    with torch.no_grad():
        assert torch.equal(fresh(ids), model(ids))
    assert fresh.head.weight is fresh.embed.weight


def test_torch_tensors_are_zero_copy_and_private(tmp_path):
    torch = _torch()
    p = tmp_path / "t.vit"
    save_tensors(p, {"w": torch.arange(4096, dtype=torch.float32).reshape(64, 64)})
    before = p.read_bytes()
    from conftest import mapped_ranges

    t = load_tensors(p, framework="torch")["w"]
    assert any(lo <= t.data_ptr() < hi for lo, hi in mapped_ranges(p)), "tensor does not view the mapping"
    t.mul_(2)  # writable, private: the file never changes
    assert p.read_bytes() == before
    assert torch.equal(load_tensors(p, framework="torch")["w"], torch.arange(4096, dtype=torch.float32).reshape(64, 64))
    copied = load_tensors(p, framework="torch", mmap=False)["w"]
    assert not any(lo <= copied.data_ptr() < hi for lo, hi in mapped_ranges(p))


TORCH_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "bfloat16", "float32", "float64", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2"]


def _torch_random(torch, name, shape, gen):
    dt = getattr(torch, name)
    if name == "bool":
        return torch.randint(0, 2, shape, generator=gen).bool()
    size = torch.empty(0, dtype=dt).element_size()
    n = int(np.prod(shape))
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=gen)
    return raw.view(dt).reshape(shape)


def _torch_bits(t):
    """The bytes of a CPU tensor (bit patterns: NaN payloads compare too)."""
    t = t.contiguous()
    return bytes(t.reshape(-1).view(__import__("torch").uint8).numpy())


def test_torch_every_dtype_bit_exact(tmp_path):
    torch = _torch()
    gen = torch.Generator().manual_seed(1)
    tensors = {name: _torch_random(torch, name, (4, 6), gen) for name in TORCH_DTYPES}
    tensors["transposed"] = torch.randn(5, 3, generator=gen).t()           # not contiguous
    tensors["strided"] = torch.randn(10, generator=gen)[::3]
    tensors["grad"] = torch.nn.Parameter(torch.randn(3, generator=gen))    # requires_grad
    tensors["scalar_bf16"] = torch.tensor(1.5, dtype=torch.bfloat16)
    tensors["empty_f8"] = torch.empty((0, 2), dtype=torch.float8_e5m2)
    p = tmp_path / "t.vit"
    save_tensors(p, tensors)
    for framework in ("torch", "numpy"):
        got = load_tensors(p, framework=framework)
        for k, v in tensors.items():
            g = got[k]
            if framework == "numpy":
                assert g.shape == tuple(v.shape), k
                assert g.dtype.itemsize == v.element_size(), k
                assert np.ascontiguousarray(g).tobytes() == _torch_bits(v.detach()), k
            else:
                assert g.dtype == v.dtype and tuple(g.shape) == tuple(v.shape), k
                assert _torch_bits(g) == _torch_bits(v.detach()), k


# ============================================================================================
# safetensors export and import
# ============================================================================================

def _st_header(data: bytes) -> tuple[dict, int]:
    """The safetensors header parsed with the json module (independently of vitrify)."""
    (n,) = struct.unpack_from("<Q", data, 0)
    return json.loads(data[8:8 + n]), 8 + n


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_export_is_byte_identical_to_safetensors(tmp_path, rng, metadata):
    st = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng, SAFETENSORS_NUMPY_DTYPES)
    save_tensors(tmp_path / "t.vit", tensors, metadata=metadata)
    export_safetensors(tmp_path / "t.vit", tmp_path / "ours.safetensors")
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata=metadata)
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()
    back = st.load_file(str(tmp_path / "ours.safetensors"))
    for k, v in tensors.items():
        assert same_bytes(back[k], v), k


def test_export_torch_dtypes_byte_identical(tmp_path):
    torch = _torch()
    st = pytest.importorskip("safetensors.torch")
    gen = torch.Generator().manual_seed(2)
    names = [n for n in TORCH_DTYPES if not n.startswith("complex")]
    tensors = {f"t_{n}": _torch_random(torch, n, (3, 4), gen) for n in names}
    save_tensors(tmp_path / "t.vit", tensors)
    export_safetensors(tmp_path / "t.vit", tmp_path / "ours.safetensors")
    st.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()


def test_import_copies_tensor_bytes_exactly(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng, SAFETENSORS_NUMPY_DTYPES)
    src = tmp_path / "in.safetensors"
    st.save_file(tensors, str(src), metadata={"format": "np", "note": "ünïcode\n"})
    rep = import_safetensors(src, tmp_path / "t.vit")
    assert rep["tensors"] == len(tensors) and rep["source_format"] == "safetensors"
    data = src.read_bytes()
    header, base = _st_header(data)
    got = load_tensors(tmp_path / "t.vit")
    assert set(got) == set(tensors)
    for name, v in tensors.items():
        b, e = header[name]["data_offsets"]
        assert np.ascontiguousarray(got[name]).tobytes() == data[base + b:base + e], name
        assert got[name].dtype == v.dtype and got[name].shape == v.shape, name
    info = vitrify.inspect(tmp_path / "t.vit")
    assert info["metadata"] == {"format": "np", "note": "ünïcode\n"}
    # arrays are in the safetensors file's data order
    order = sorted((h["data_offsets"], k) for k, h in header.items() if k != "__metadata__")
    assert [a["name"] for a in info["arrays"]] == [k for _, k in order]


def test_safetensors_round_trip_both_ways(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng, SAFETENSORS_NUMPY_DTYPES)
    src = tmp_path / "in.safetensors"
    st.save_file(tensors, str(src), metadata={"format": "np"})
    import_safetensors(src, tmp_path / "t.vit", compress="zstd")   # compressed in between
    export_safetensors(tmp_path / "t.vit", tmp_path / "out.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == src.read_bytes()


def test_safetensors_float8_through_torch(tmp_path):
    torch = _torch()
    st = pytest.importorskip("safetensors.torch")
    gen = torch.Generator().manual_seed(3)
    tensors = {"e4": _torch_random(torch, "float8_e4m3fn", (5, 3), gen),
               "e5": _torch_random(torch, "float8_e5m2", (7,), gen),
               "bf": _torch_random(torch, "bfloat16", (2, 2), gen)}
    st.save_file(tensors, str(tmp_path / "in.safetensors"))
    import_safetensors(tmp_path / "in.safetensors", tmp_path / "t.vit")
    got = load_tensors(tmp_path / "t.vit", framework="torch")
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and _torch_bits(got[k]) == _torch_bits(v), k
    export_safetensors(tmp_path / "t.vit", tmp_path / "out.safetensors")
    back = st.load_file(str(tmp_path / "out.safetensors"))
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and _torch_bits(back[k]) == _torch_bits(v), k


def test_export_metadata_aliases_and_refusals(tmp_path, rng):
    st = pytest.importorskip("safetensors")
    a = random_array(np.float32, (4, 4), rng)
    save_tensors(tmp_path / "t.vit", {"w": a, "tied": a}, metadata={"b": "2", "a": "1", "c": ""})
    rep = export_safetensors(tmp_path / "t.vit", tmp_path / "o.safetensors")
    assert rep["aliases"] == 1 and rep["tensors"] == 2 and rep["arrays"] == 1
    with st.safe_open(str(tmp_path / "o.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"a": "1", "b": "2", "c": ""}
        assert same_bytes(f.get_tensor("w"), a) and same_bytes(f.get_tensor("tied"), a)

    save_tensors(tmp_path / "m.vit", {"w": a}, metadata={"epoch": 3})
    with raises_code("invalid_argument"):
        export_safetensors(tmp_path / "m.vit", tmp_path / "m.safetensors")
    save_tensors(tmp_path / "c.vit", {"z": np.zeros(2, np.complex64)})
    with raises_code("unknown_dtype"):
        export_safetensors(tmp_path / "c.vit", tmp_path / "c.safetensors")
    vitrify.save_arrays(tmp_path / "s.vit", {"labels": np.array(["x"])})
    with raises_code("unknown_dtype"):
        export_safetensors(tmp_path / "s.vit", tmp_path / "s.safetensors")
    assert not any(p.name.endswith(("m.safetensors", "c.safetensors", "s.safetensors")) for p in tmp_path.iterdir())


# ---- hostile safetensors headers -----------------------------------------------------------

def _st(header: dict | str | bytes, data: bytes = b"", n: int | None = None) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def _t(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


BAD_SAFETENSORS = {
    "empty": (b"", "truncated"),
    "short_length": (b"\x08\x00\x00", "truncated"),
    "length_past_eof": (_st({"a": _t()}, bytes(8), n=1000), "truncated"),
    "length_huge": (_st({"a": _t()}, bytes(8), n=2**64 - 1), "limit_exceeded"),
    "length_over_limit": (_st({"a": _t()}, bytes(8), n=100_000_001), "limit_exceeded"),
    "not_json": (_st("{not json}"), "bad_header"),
    "leading_space": (_st(' {"a":' + json.dumps(_t()) + "}", bytes(8)), "bad_header"),
    "json_array": (_st("[1, 2]"), "bad_header"),
    "trailing_nul": (_st('{"a":' + json.dumps(_t()) + "}\x00", bytes(8)), "bad_header"),
    "invalid_utf8": (_st(b'{"a\xff":' + json.dumps(_t()).encode() + b"}", bytes(8)), "bad_header"),
    "entry_not_object": (_st({"a": [1, 2]}), "bad_header"),
    "missing_offsets": (_st({"a": {"dtype": "F32", "shape": [2]}}, bytes(8)), "bad_header"),
    "unknown_member": (_st({"a": {**_t(), "x": 1}}, bytes(8)), "bad_header"),
    "offsets_three": (_st({"a": _t(offsets=(0, 8, 8))}, bytes(8)), "bad_header"),
    "offset_negative": (_st({"a": _t(offsets=(-8, 0))}, bytes(8)), "bad_header"),
    "offset_float": (_st({"a": _t(offsets=(0, 8.0))}, bytes(8)), "bad_header"),
    "offset_bigger_than_u64": (_st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}}',
                                   bytes(8)), "bad_header"),
    "shape_negative": (_st({"a": _t(shape=(-2,))}, bytes(8)), "bad_header"),
    "dtype_unknown": (_st({"a": _t(dtype="F128")}, bytes(8)), "unknown_dtype"),
    "dtype_lowercase": (_st({"a": _t(dtype="f32")}, bytes(8)), "unknown_dtype"),
    "dtype_e8m0": (_st({"a": _t(dtype="F8_E8M0", shape=(8,))}, bytes(8)), "unknown_dtype"),
    "dtype_not_string": (_st({"a": _t(dtype=4)}, bytes(8)), "bad_header"),
    "shape_mismatch": (_st({"a": _t(shape=(3,))}, bytes(8)), "bad_array"),
    "shape_overflow": (_st({"a": _t(shape=(2**32, 2**32, 2), offsets=(0, 8))}, bytes(8)), "bad_array"),
    "byte_size_overflow": (_st({"a": _t(shape=(2**62,), offsets=(0, 8))}, bytes(8)), "bad_array"),
    "end_before_begin": (_st({"a": _t(offsets=(8, 0))}, bytes(8)), "bad_layout"),
    "past_data_end": (_st({"a": _t(shape=(4,), offsets=(0, 16))}, bytes(8)), "truncated"),
    "overlap": (_st({"a": _t(offsets=(0, 8)), "b": _t(offsets=(4, 12))}, bytes(12)), "bad_layout"),
    "same_range_twice": (_st({"a": _t(offsets=(0, 8)), "b": _t(offsets=(0, 8))}, bytes(8)), "bad_layout"),
    "hole": (_st({"a": _t(offsets=(0, 8)), "b": _t(offsets=(12, 20))}, bytes(20)), "bad_layout"),
    "hole_at_start": (_st({"a": _t(offsets=(4, 12))}, bytes(12)), "bad_layout"),
    "trailing_bytes": (_st({"a": _t()}, bytes(9)), "bad_layout"),
    "duplicate_name": (_st('{"a":' + json.dumps(_t()) + ',"a":' + json.dumps(_t()) + "}", bytes(8)),
                       "duplicate_name"),
    "empty_name": (_st({"": _t()}, bytes(8)), "bad_name"),
    "name_with_newline": (_st({"a\nb": _t()}, bytes(8)), "bad_name"),
    "metadata_not_string": (_st({"__metadata__": {"epoch": 3}, "a": _t()}, bytes(8)), "bad_header"),
    "metadata_not_object": (_st({"__metadata__": ["x"], "a": _t()}, bytes(8)), "bad_header"),
    "metadata_duplicate_key": (_st('{"__metadata__":{"k":"1","k":"2"},"a":' + json.dumps(_t()) + "}", bytes(8)),
                               "duplicate_name"),
    "deep_nesting": (_st('{"a":' + "[" * 5000 + "]" * 5000 + "}"), "limit_exceeded"),
}


@pytest.mark.parametrize("case", list(BAD_SAFETENSORS), ids=list(BAD_SAFETENSORS))
def test_malformed_safetensors_are_refused(tmp_path, case):
    data, code = BAD_SAFETENSORS[case]
    with raises_code(code):
        _core.parse_safetensors(data)
    src, dst = tmp_path / "bad.safetensors", tmp_path / "out.vit"
    src.write_bytes(data)
    with raises_code(code):
        import_safetensors(src, dst)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.safetensors"]  # no temporary file left


def test_safetensors_edge_cases_that_are_valid():
    # Empty file content, null metadata, zero-size tensors sharing an offset, a scalar.
    tensors, meta, base = _core.parse_safetensors(_st("{}      "))
    assert tensors == [] and meta is None and base == 16
    data = _st({"__metadata__": None, "z1": _t(shape=(0,), offsets=(0, 0)), "s": _t(shape=(), offsets=(0, 4)),
                "z2": _t(dtype="BOOL", shape=(0, 3), offsets=(4, 4))}, bytes(4))
    tensors, meta, _ = _core.parse_safetensors(data)
    assert meta is None
    assert [(t[0], t[3], t[4]) for t in tensors] == [("z1", 0, 0), ("s", 0, 4), ("z2", 4, 4)]


def test_truncated_and_corrupted_safetensors_never_crash(rng):
    st = pytest.importorskip("safetensors.numpy")
    good = st.save({"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.int16)}, metadata={"k": "v"})
    for n in range(len(good)):
        with pytest.raises(VitrifyError):
            _core.parse_safetensors(good[:n])
    for _ in range(400):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        try:
            _core.parse_safetensors(bytes(b))
        except VitrifyError:
            pass


# ============================================================================================
# torch.save files, read without PyTorch
# ============================================================================================

def _torch_state(torch):
    gen = torch.Generator().manual_seed(4)
    emb = torch.randn(6, 4, generator=gen)
    return {
        "embed.weight": emb,
        "lin.weight": torch.randn(3, 4, generator=gen).t(),           # non-contiguous (transposed)
        "lin.bias": torch.randn(3, generator=gen).to(torch.bfloat16),
        "q.scale": _torch_random(torch, "float8_e4m3fn", (2, 3), gen),
        "q.other": _torch_random(torch, "float8_e5m2", (4,), gen),
        "steps": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "slice": emb[2:4],                                              # a view into another storage region
        "head.weight": emb,                                             # tied
    }


def test_import_torch_state_dict(tmp_path):
    torch = _torch()
    sd = _torch_state(torch)
    src = tmp_path / "sd.pt"
    torch.save(sd, src)
    rep = import_torch(src, tmp_path / "sd.vit")
    assert rep["source_format"] == "torch_zip"
    assert rep["tensors"] == len(sd) and rep["aliases"] == 1
    info = vitrify.inspect(tmp_path / "sd.vit")
    assert info["content"]["aliases"] == {"head.weight": vitrify.ArrayRef("embed.weight")}
    got = load_tensors(tmp_path / "sd.vit", framework="torch")
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and tuple(got[k].shape) == tuple(v.shape), k
        assert _torch_bits(got[k]) == _torch_bits(v), k
    assert got["head.weight"] is got["embed.weight"]
    # and the same through torch.load (weights_only): vitrify agrees with PyTorch itself
    ref = torch.load(src, weights_only=True)
    for k in sd:
        assert _torch_bits(ref[k]) == _torch_bits(got[k]), k


def test_import_torch_model_state_dict_and_nested(tmp_path):
    torch = _torch()
    torch.manual_seed(5)
    Tiny = _tiny_model(torch)
    model = Tiny().eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")          # an OrderedDict with _metadata
    import_tensors(tmp_path / "m.pt", tmp_path / "m.vit")       # detected by content
    fresh = Tiny().eval()
    fresh.load_state_dict(load_tensors(tmp_path / "m.vit", framework="torch"))
    ids = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        assert torch.equal(fresh(ids), model(ids))
    # A checkpoint nesting state_dicts: names are joined with "."
    torch.save({"model": model.state_dict(), "ema": {"w": torch.ones(2)}}, tmp_path / "ckpt.pt")
    import_torch(tmp_path / "ckpt.pt", tmp_path / "ckpt.vit")
    names = set(load_tensors(tmp_path / "ckpt.vit"))
    assert {"model.embed.weight", "model.bn.num_batches_tracked", "ema.w"} <= names


class _Payload:
    """Pickles as a call to os.system: unpickling it (torch.load without weights_only) would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_import_torch_refuses_without_executing(tmp_path):
    torch = _torch()
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "evil": _Payload(marker)}, tmp_path / "evil.pt")
    with raises_code("unsupported_model") as ei:
        import_torch(tmp_path / "evil.pt", tmp_path / "evil.vit")
    assert "system" in str(ei.value)
    assert not marker.exists() and not (tmp_path / "evil.vit").exists()

    # A whole pickled nn.Module is not a state_dict.
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with raises_code("unsupported_model") as ei:
        import_torch(tmp_path / "module.pt", tmp_path / "module.vit")
    assert "state_dict" in str(ei.value)
    # Non-tensor leaves (an optimizer step count) are refused, naming the entry.
    torch.save({"w": torch.ones(2), "epoch": 3}, tmp_path / "mixed.pt")
    with raises_code("unsupported_model") as ei:
        import_torch(tmp_path / "mixed.pt", tmp_path / "mixed.vit")
    assert "epoch" in str(ei.value)
    # Other formats are not PyTorch files.
    (tmp_path / "x.bin").write_bytes(b"hello world, not a model")
    with raises_code("unknown_format"):
        import_tensors(tmp_path / "x.bin", tmp_path / "x.vit")
    np.savez(tmp_path / "arrays.npz", w=np.ones(2))                  # a zip, but not torch.save's
    with raises_code("unknown_format"):
        import_tensors(tmp_path / "arrays.npz", tmp_path / "npz.vit")
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with raises_code("unknown_format") as ei:
        import_torch(tmp_path / "legacy.pt", tmp_path / "legacy.vit")
    assert "legacy" in str(ei.value)
    assert not any(p.suffix == ".vit" for p in tmp_path.iterdir())


def test_import_torch_works_without_torch(tmp_path):
    torch = _torch()
    sd = _torch_state(torch)
    torch.save(sd, tmp_path / "sd.pt")
    want = {k: sha(_torch_bits(v)) for k, v in sd.items()}
    script = textwrap.dedent(f"""
        import hashlib, json, sys
        sys.modules["torch"] = None          # any "import torch" now fails
        import numpy as np
        from vitrify.tensors import import_torch, load_tensors
        import_torch({str(tmp_path / 'sd.pt')!r}, {str(tmp_path / 'nt.vit')!r})
        got = load_tensors({str(tmp_path / 'nt.vit')!r})
        assert "torch" not in {{m for m in sys.modules if sys.modules[m] is not None}}
        print(json.dumps({{k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in got.items()}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == want


# ============================================================================================
# Command line
# ============================================================================================

def _cli() -> str | None:
    env = os.environ.get("VITRIFY_CLI")
    if env:
        return env
    built = ROOT / "build" / "tools" / "vitrify" / "vitrify"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which("vitrify")


CLI = _cli()


@pytest.mark.skipif(CLI is None, reason="vitrify CLI binary not found (set VITRIFY_CLI or build it)")
def test_cli_import_and_export(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng, SAFETENSORS_NUMPY_DTYPES)
    src = tmp_path / "model.bin"      # the name says nothing: the content decides
    st.save_file(tensors, str(src))
    r = subprocess.run([CLI, "import-tensors", str(src), str(tmp_path / "m.vit")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "safetensors" in r.stdout
    r = subprocess.run([CLI, "export-safetensors", str(tmp_path / "m.vit"), str(tmp_path / "back.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back.safetensors").read_bytes() == src.read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(BAD_SAFETENSORS["overlap"][0])
    r = subprocess.run([CLI, "import-tensors", str(tmp_path / "bad.safetensors"), str(tmp_path / "bad.vit")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "bad_layout" in r.stderr
