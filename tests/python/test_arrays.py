"""Arrays: round trips, zero-copy mapping, copy-on-write, strings, metadata, inspect()."""

from __future__ import annotations

import gc
import hashlib
import math
import os
import threading

import ml_dtypes
import numpy as np
import pytest

import vitrify
from vitrify import values
from conftest import Image, assert_same, data_address, mapped_ranges

ALL_DTYPES = [
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.complex64, np.complex128, ml_dtypes.bfloat16,
]
VIT_NAMES = {
    np.bool_: "bool", np.int8: "int8", np.int16: "int16", np.int32: "int32", np.int64: "int64",
    np.uint8: "uint8", np.uint16: "uint16", np.uint32: "uint32", np.uint64: "uint64",
    np.float16: "float16", np.float32: "float32", np.float64: "float64",
    np.complex64: "complex64", np.complex128: "complex128", ml_dtypes.bfloat16: "bfloat16",
}


def sample(dt, shape, rng) -> np.ndarray:
    """Values covering the whole range of the type, with special floats."""
    dt = np.dtype(dt)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(np.bool_)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if n >= 2:
            a[0], a[1] = info.min, info.max
    elif dt.kind == "c":
        part = np.float32 if dt.itemsize == 8 else np.float64
        a = (rng.standard_normal(n) * 1e3).astype(part) + 1j * rng.standard_normal(n).astype(part)
        a = a.astype(dt)
        if n >= 2:
            a[0] = complex(math.nan, -0.0)
            a[1] = complex(math.inf, -math.inf)
    else:  # float16/32/64, bfloat16
        a = (rng.standard_normal(n) * 100).astype(np.float32).astype(dt)
        specials = np.array([math.nan, math.inf, -math.inf, -0.0, 0.0], dtype=np.float32).astype(dt)
        k = min(n, len(specials))
        a[:k] = specials[:k]
        if dt.kind == "f" and n > k:
            a[k] = np.finfo(dt).smallest_subnormal
    return a.reshape(shape)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("compress", [None, "zstd"])
def test_round_trip_every_dtype(dt, compress, vit_path, rng):
    arrays = {
        "matrix": sample(dt, (7, 13), rng),
        "scalar": sample(dt, (), rng),
        "empty": np.zeros((0,), dtype=dt),
        "empty2d": np.zeros((3, 0), dtype=dt),
        "cube": sample(dt, (2, 3, 4), rng),
    }
    vitrify.save_arrays(vit_path, arrays, compress=compress, durable=False)
    info = vitrify.inspect(vit_path)
    assert [a["name"] for a in info["arrays"]] == list(arrays)
    for entry, (name, a) in zip(info["arrays"], arrays.items()):
        assert entry["dtype"] == VIT_NAMES[dt]
        assert entry["shape"] == a.shape
        assert entry["decoded_length"] == a.nbytes
        assert entry["codec"] == ("zstd" if compress else "raw")
    for kwargs in ({}, {"mmap": False}, {"copy_on_write": True}, {"verify": True}):
        loaded = vitrify.load_arrays(vit_path, **kwargs)
        assert list(loaded) == list(arrays)
        for name, a in arrays.items():
            assert_same(a, loaded[name])
    loaded = vitrify.load_arrays_from_bytes(vit_path.read_bytes())
    for name, a in arrays.items():
        assert_same(a, loaded[name])
    # The numpy dtype matches what was saved exactly (e.g. bfloat16 is not widened).
    assert vitrify.load_arrays(vit_path)["matrix"].dtype == np.dtype(dt)


def test_bytes_round_trip_is_identical_to_file(vit_path, rng):
    arrays = {"a": sample(np.float32, (10, 10), rng), "s": np.array(["x", "yy"])}
    data = vitrify.save_arrays_to_bytes(arrays, metadata={"k": 1}, compress={"a": 3})
    vitrify.save_arrays(vit_path, arrays, metadata={"k": 1}, compress={"a": 3}, durable=False)
    assert vit_path.read_bytes() == data
    # Deterministic: the same calls produce the same bytes.
    assert vitrify.save_arrays_to_bytes(arrays, metadata={"k": 1}, compress={"a": 3}) == data
    loaded = vitrify.load_arrays_from_bytes(data)
    assert_same(arrays["a"], loaded["a"])
    assert_same(arrays["s"], loaded["s"])
    loaded = vitrify.load_arrays_from_bytes(bytearray(data), copy=True)
    assert_same(arrays["a"], loaded["a"])


def test_unicode_and_odd_names(vit_path):
    names = ["ünïcödé", "层.权重", "emoji 🎉", "a/b/c", "with space", "x" * 4096, "$dollar", "0"]
    arrays = {n: np.full((2,), i, dtype=np.int32) for i, n in enumerate(names)}
    vitrify.save_arrays(vit_path, arrays, durable=False)
    loaded = vitrify.load_arrays(vit_path)
    assert list(loaded) == names
    for n, a in arrays.items():
        assert_same(a, loaded[n])
    f = vitrify.File.open(str(vit_path))
    assert f.names() == names
    assert f.find("层.权重") == 1
    assert "emoji 🎉" in f and "nope" not in f


def test_big_endian_input_is_stored_little_endian(rng):
    le = sample(np.int32, (5, 4), rng)
    be = le.astype(">i4")
    le_f = sample(np.float64, (9,), rng)
    be_f = le_f.astype(">f8")
    le_c = sample(np.complex64, (3,), rng)
    data_le = vitrify.save_arrays_to_bytes({"i": le, "f": le_f, "c": le_c})
    data_be = vitrify.save_arrays_to_bytes({"i": be, "f": be_f, "c": le_c.astype(">c8")})
    assert data_be == data_le  # byte-identical files
    loaded = vitrify.load_arrays_from_bytes(data_be)
    assert loaded["i"].dtype == np.dtype("<i4")
    assert_same(le, loaded["i"])
    assert_same(le_f, loaded["f"])


def test_non_contiguous_inputs(rng):
    base = sample(np.float32, (8, 10), rng)
    arrays = {
        "strided": base[::2, ::3],
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
        "negative": base[::-1],
        "broadcast": np.broadcast_to(np.arange(3, dtype=np.int16), (4, 3)),
    }
    loaded = vitrify.load_arrays_from_bytes(vitrify.save_arrays_to_bytes(arrays))
    for name, a in arrays.items():
        assert loaded[name].flags.c_contiguous
        assert_same(np.ascontiguousarray(a), loaded[name])


def test_array_likes_and_scalars():
    loaded = vitrify.load_arrays_from_bytes(vitrify.save_arrays_to_bytes({
        "list": [[1, 2], [3, 4]], "int": 7, "float": 2.5, "npscalar": np.float16(1.5), "bool": True,
    }))
    assert loaded["list"].tolist() == [[1, 2], [3, 4]]
    assert loaded["int"].shape == () and loaded["int"] == 7
    assert loaded["float"].dtype == np.float64 and loaded["float"] == 2.5
    assert loaded["npscalar"].dtype == np.float16 and loaded["npscalar"] == 1.5
    assert loaded["bool"].dtype == np.bool_ and bool(loaded["bool"]) is True


@pytest.mark.parametrize("compress", [None, 1])
def test_big_array_64mib(compress, vit_path):
    n = 16 * 1024 * 1024  # float32: 64 MiB
    a = (np.arange(n) % 1000).astype(np.float32)
    a[::4097] = -1.5
    vitrify.save_arrays(vit_path, {"big": a, "small": np.int8(3)}, compress=compress, durable=False)
    size = vit_path.stat().st_size
    if compress is None:
        assert size > a.nbytes
    else:
        assert size < a.nbytes // 2
    loaded = vitrify.load_arrays(vit_path)
    assert loaded["big"].shape == (n,)
    assert np.array_equal(loaded["big"], a)
    assert loaded["small"] == 3
    if compress is None:
        lo, hi = _mapping_of(vit_path)
        assert lo <= data_address(loaded["big"]) < hi
    f = vitrify.File.open(str(vit_path))
    f.verify()


# --------------------------------------------------------------------------------------------
# Zero copy, lifetime, copy-on-write
# --------------------------------------------------------------------------------------------

def _mapping_of(path) -> tuple[int, int]:
    ranges = mapped_ranges(path)
    assert ranges, f"{path} is not mapped"
    return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)


def test_mmap_views_are_zero_copy_and_read_only(vit_path, rng):
    arrays = {"a": sample(np.float32, (100, 3), rng), "b": sample(np.int64, (10,), rng),
              "z": sample(np.uint16, (500,), rng), "e": np.zeros((0, 2), np.float64)}
    vitrify.save_arrays(vit_path, arrays, compress={"z": "zstd"}, durable=False)
    assert mapped_ranges(vit_path) == []
    info = {e["name"]: e for e in vitrify.inspect(vit_path)["arrays"]}
    loaded = vitrify.load_arrays(vit_path)
    lo, hi = _mapping_of(vit_path)
    for name in ("a", "b"):
        arr = loaded[name]
        assert not arr.flags.writeable
        assert not arr.flags.owndata
        # The data lies in the mapping of the file, exactly at the recorded offset.
        assert lo <= data_address(arr) < hi
        assert data_address(arr) - data_address(loaded["a"]) == info[name]["offset"] - info["a"]["offset"]
        assert data_address(arr) % 64 == 0
        with pytest.raises(ValueError):
            arr[...] = 0
    # Compressed arrays are decoded into fresh, writable memory outside the mapping.
    z = loaded["z"]
    assert z.flags.writeable and not (lo <= data_address(z) < hi)
    assert_same(arrays["z"], z)
    assert_same(arrays["e"], loaded["e"])


def test_mapping_lives_as_long_as_any_view(vit_path, rng):
    a = sample(np.float64, (1000,), rng)
    vitrify.save_arrays(vit_path, {"a": a, "b": a[:10]}, durable=False)
    loaded = vitrify.load_arrays(vit_path)
    keep = loaded["a"][5:20]  # a view of a view keeps the file alive too
    del loaded
    gc.collect()
    assert mapped_ranges(vit_path)  # still mapped
    assert_same(a[5:20], keep)
    del keep
    gc.collect()
    assert mapped_ranges(vit_path) == []  # unmapped once the last view is gone


def test_file_view_owner_is_the_file(vit_path, rng):
    a = sample(np.int32, (64,), rng)
    vitrify.save_arrays(vit_path, {"a": a}, durable=False)
    f = vitrify.File.open(str(vit_path))
    v = f.view(0)
    assert v.dtype == np.uint8 and v.shape == (a.nbytes,)
    assert not v.flags.writeable
    assert data_address(v) == f.address + f.arrays[0]["offset"]
    assert v.tobytes() == a.tobytes()
    assert f.view("a").tobytes() == a.tobytes()
    assert f.view(-1).tobytes() == a.tobytes()
    del f
    gc.collect()
    assert mapped_ranges(vit_path)
    assert v.tobytes() == a.tobytes()
    del v
    gc.collect()
    assert mapped_ranges(vit_path) == []


def test_copy_on_write_is_writable_and_private(vit_path, rng):
    a = sample(np.float32, (256,), rng)
    vitrify.save_arrays(vit_path, {"a": a}, durable=False)
    before = hashlib.sha256(vit_path.read_bytes()).hexdigest()
    loaded = vitrify.load_arrays(vit_path, copy_on_write=True)
    arr = loaded["a"]
    assert arr.flags.writeable
    lo, hi = _mapping_of(vit_path)
    assert lo <= data_address(arr) < hi  # still zero-copy
    arr[:] = 42.0
    assert np.all(arr == 42.0)
    # Neither the file nor other mappings see the writes.
    assert hashlib.sha256(vit_path.read_bytes()).hexdigest() == before
    assert_same(a, vitrify.load_arrays(vit_path)["a"])
    f = vitrify.File.open(str(vit_path), copy_on_write=True)
    assert f.writable and f.view(0).flags.writeable
    f.verify()


def test_mmap_false_reads_into_fresh_memory(vit_path, rng):
    a = sample(np.int16, (33, 3), rng)
    vitrify.save_arrays(vit_path, {"a": a}, durable=False)
    loaded = vitrify.load_arrays(vit_path, mmap=False)
    gc.collect()
    assert mapped_ranges(vit_path) == []  # nothing refers to the mapping any more
    arr = loaded["a"]
    assert arr.flags.writeable and arr.flags.owndata
    arr[0, 0] = 1
    assert_same(a, vitrify.load_arrays(vit_path, mmap=False)["a"])


def test_bytes_load_views_private_copy(rng):
    a = sample(np.uint32, (16,), rng)
    data = bytearray(vitrify.save_arrays_to_bytes({"a": a}))
    loaded = vitrify.load_arrays_from_bytes(data)
    arr = loaded["a"]
    arr[:] = 0  # writable, and does not alias `data`
    assert_same(a, vitrify.load_arrays_from_bytes(data)["a"])


def test_concurrent_reads_from_threads(vit_path, rng):
    arrays = {f"a{i}": sample(np.float64, (20000,), rng) for i in range(8)}
    vitrify.save_arrays(vit_path, arrays, compress=1, durable=False)
    f = vitrify.File.open(str(vit_path))
    errors = []

    def work(k):
        try:
            for name, a in arrays.items():
                out = np.empty(a.size, np.float64)
                f.read_into(name, out.view(np.uint8))
                assert_same(a, out)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------

STRINGS = ["", "a", "héllo", "日本語テキスト", "emoji 🎉🚀", "", "tab\tnew\nline", "nul\x00inside", "z" * 300]


@pytest.mark.parametrize("compress", [None, "zstd"])
def test_string_arrays(compress):
    arrays = {
        "u": np.array(STRINGS),
        "u2d": np.array(STRINGS[:8]).reshape(2, 4),
        "obj": np.array(STRINGS + ["x"], dtype=object).reshape(5, 2),
        "empty_u": np.array([], dtype="<U3"),
        "empty_obj": np.empty((0, 3), dtype=object),
        "all_empty": np.array(["", "", ""]),
        "scalar": np.array("только"),
        "big_endian": np.array(["ab", "çd"], dtype=">U2"),
    }
    data = vitrify.save_arrays_to_bytes(arrays, compress=compress)
    info = {e["name"]: e for e in vitrify.inspect(data)["arrays"]}
    assert all(e["dtype"] == "string" for e in info.values())
    assert info["u"]["attrs"] == {"numpy_dtype": arrays["u"].dtype.str}
    assert info["obj"]["attrs"] == {"numpy_dtype": "object"}
    assert info["big_endian"]["attrs"] == {"numpy_dtype": "<U2"}
    loaded = vitrify.load_arrays_from_bytes(data)
    for name, a in arrays.items():
        if name == "big_endian":
            a = a.astype("<U2")
        assert_same(a, loaded[name])
    f = vitrify.File.from_bytes(data)
    assert f.read_strings("obj") == STRINGS + ["x"]
    assert f.read_strings(0)[2] == "héllo"


def test_object_array_of_str_subclasses():
    class S(str):
        pass

    a = np.array([S("x"), np.str_("y"), "z"], dtype=object)
    loaded = vitrify.load_arrays_from_bytes(vitrify.save_arrays_to_bytes({"a": a}))["a"]
    assert loaded.dtype == object and loaded.tolist() == ["x", "y", "z"]
    assert all(type(x) is str for x in loaded)


def test_string_arrays_are_not_mapped(vit_path):
    vitrify.save_arrays(vit_path, {"s": np.array(["abc", "de"])}, durable=False)
    f = vitrify.File.open(str(vit_path))
    v = f.view("s")  # raw bytes of the offsets table + text are still viewable
    offsets = v[:24].view("<u8")
    assert offsets.tolist() == [0, 3, 5]
    assert v[24:].tobytes() == b"abcde"


# --------------------------------------------------------------------------------------------
# Compression options, alignment, unsupported inputs
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expect", [
    (None, {"a": ("raw", 0), "b": ("raw", 0)}),
    ("zstd", {"a": ("zstd", 3), "b": ("zstd", 3)}),
    (7, {"a": ("zstd", 7), "b": ("zstd", 7)}),
    (("zstd", 19), {"a": ("zstd", 19), "b": ("zstd", 19)}),
    (("zstd", -5), {"a": ("zstd", -5), "b": ("zstd", -5)}),
    ({"b": 2}, {"a": ("raw", 0), "b": ("zstd", 2)}),
    ({"a": "zstd", "b": None}, {"a": ("zstd", 3), "b": ("raw", 0)}),
    ({"a": ("raw", None), "b": ("zstd", 1)}, {"a": ("raw", 0), "b": ("zstd", 1)}),
])
def test_compress_specs(spec, expect):
    arrays = {"a": np.zeros(1000, np.float32), "b": np.arange(1000, dtype=np.int64)}
    data = vitrify.save_arrays_to_bytes(arrays, compress=spec)
    table = {e["name"]: e for e in vitrify.inspect(data)["arrays"]}
    for name, (codec, level) in expect.items():
        assert table[name]["codec"] == codec
        if codec == "zstd":
            assert table[name]["level"] == level
            assert table[name]["length"] < table[name]["decoded_length"]
        else:
            assert table[name]["length"] == table[name]["decoded_length"]
    loaded = vitrify.load_arrays_from_bytes(data)
    for name, a in arrays.items():
        assert_same(a, loaded[name])


@pytest.mark.parametrize("spec", ["lz4", ("gzip", 3), ("zstd", "high"), 1.5, {"missing": 3}, [1]])
def test_bad_compress_specs(spec):
    with pytest.raises(vitrify.ArgumentError):
        vitrify.save_arrays_to_bytes({"a": np.zeros(3)}, compress=spec)


@pytest.mark.parametrize("alignment", [64, 128, 4096])
def test_alignment(alignment, vit_path):
    arrays = {"a": np.ones(5, np.int8), "b": np.ones(3, np.float64), "c": np.ones(100, np.uint8)}
    vitrify.save_arrays(vit_path, arrays, alignment=alignment, durable=False)
    info = vitrify.inspect(vit_path)
    assert info["alignment"] == alignment
    offsets = [e["offset"] for e in info["arrays"]]
    assert all(o % alignment == 0 for o in offsets)
    assert offsets[0] == alignment
    loaded = vitrify.load_arrays(vit_path)
    assert all(data_address(a) % alignment == 0 for a in loaded.values())


@pytest.mark.parametrize("alignment", [0, 32, 100, 8192])
def test_bad_alignment(alignment, vit_path):
    with pytest.raises(vitrify.VitrifyError):
        vitrify.save_arrays(vit_path, {"a": np.zeros(2)}, alignment=alignment, durable=False)
    assert not vit_path.exists()


@pytest.mark.parametrize("value, what", [
    (np.zeros(3, dtype=[("x", "i4"), ("y", "f4")]), "structured"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), "datetime"),
    (np.array([1, 2], dtype="timedelta64[s]"), "timedelta"),
    (np.array([1, "a"], dtype=object), "object with int"),
    (np.array([None], dtype=object), "object with None"),
    (np.array([b"ab"], dtype="S2"), "bytes"),
    (np.zeros(2, dtype=np.longdouble), "longdouble"),
    (np.zeros(2, dtype="V4"), "void"),
    (np.zeros(2, dtype=ml_dtypes.float8_e4m3fnuz), "float8_e4m3fnuz"),  # float8_e4m3fn/e5m2 are stored (1.1)
    (np.zeros(2, dtype=ml_dtypes.int4), "int4"),
])
def test_unsupported_dtypes_name_the_array(value, what, vit_path):
    if what == "longdouble" and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("longdouble is float64 here")
    with pytest.raises(vitrify.ArgumentError, match="bad_array_name"):
        vitrify.save_arrays(vit_path, {"ok": np.zeros(2), "bad_array_name": value}, durable=False)
    # Atomic: nothing is left behind, not even a temporary file.
    assert os.listdir(vit_path.parent) == []


def test_non_str_names_rejected():
    with pytest.raises(vitrify.ArgumentError):
        vitrify.save_arrays_to_bytes({1: np.zeros(2)})
    with pytest.raises(vitrify.ArgumentError):
        vitrify.save_arrays_to_bytes([("a", np.zeros(2))])


@pytest.mark.parametrize("name", ["", "tab\there", "nl\n", "del\x7f"])
def test_bad_names_rejected(name):
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify.save_arrays_to_bytes({name: np.zeros(2)})
    assert ei.value.code_name in ("bad_name", "invalid_argument")


def test_existing_file_replaced_atomically(vit_path):
    vitrify.save_arrays(vit_path, {"old": np.zeros(2)}, durable=False)
    with pytest.raises(vitrify.ArgumentError):
        vitrify.save_arrays(vit_path, {"new": np.zeros(2), "bad": np.zeros(2, "M8[s]")}, durable=False)
    assert list(vitrify.load_arrays(vit_path)) == ["old"]  # failed save left the old file
    vitrify.save_arrays(vit_path, {"new": np.ones(2)})  # durable default
    assert list(vitrify.load_arrays(vit_path)) == ["new"]
    assert sorted(os.listdir(vit_path.parent)) == [vit_path.name]


def test_replacing_a_mapped_file_keeps_old_views_valid(vit_path):
    vitrify.save_arrays(vit_path, {"a": np.full(1000, 1.0)}, durable=False)
    old = vitrify.load_arrays(vit_path)["a"]
    vitrify.save_arrays(vit_path, {"a": np.full(1000, 2.0)}, durable=False)
    assert np.all(old == 1.0)  # the old inode stays mapped: rename never touches it
    assert np.all(vitrify.load_arrays(vit_path)["a"] == 2.0)


def test_zero_sized_huge_dimensions():
    a = np.zeros((0, 2**40), dtype=np.float32)
    loaded = vitrify.load_arrays_from_bytes(vitrify.save_arrays_to_bytes({"a": a}, compress="zstd"))
    assert loaded["a"].shape == (0, 2**40) and loaded["a"].dtype == np.float32


# --------------------------------------------------------------------------------------------
# Writer / File low-level API
# --------------------------------------------------------------------------------------------

def test_writer_api(vit_path):
    w = vitrify.Writer.create(str(vit_path), 128, False)
    w.add_array("f", "float32", [2, 2], np.arange(4, dtype=np.float32).view(np.uint8))
    w.add_array("b", "uint8", [3], b"xyz", "zstd", 5, '{"role":"bytes"}')
    w.add_string_array("s", [2], np.array([0, 2, 5], np.uint64), b"abcde")
    w.add_strings("t", [3], ["x", "", "ü"])
    w.set_metadata('{"step":3}')
    w.set_environment('{"python":"3"}')
    w.set_provenance('{"by":"test"}')
    w.set_content('{"$array":"f"}')
    assert w.array_count == 4 and not w.committed
    assert not vit_path.exists()
    w.commit()
    assert w.committed and vit_path.exists()
    with pytest.raises(vitrify.ArgumentError):
        w.add_array("late", "uint8", [1], b"x")
    f = vitrify.File.open(str(vit_path))
    assert f.version == (1, 0) and f.alignment == 128
    assert f.arrays[1]["attrs"] == '{"role":"bytes"}'
    assert f.arrays[1]["codec"] == "zstd" and f.arrays[1]["level"] == 5
    assert f.read_strings("s") == ["ab", "cde"]
    assert f.read_strings("t") == ["x", "", "ü"]
    assert values.decode(f.metadata_json) == {"step": 3}
    assert values.decode(f.content_json) == vitrify.ArrayRef("f")
    assert '"format":"vitrify"' in f.header_json.replace(" ", "")
    out = np.empty(3, np.uint8)
    f.read_into("b", out)
    assert out.tobytes() == b"xyz"
    with pytest.raises(vitrify.ArgumentError) as ei:
        f.view("b")
    assert ei.value.code_name == "not_raw"
    with pytest.raises(vitrify.ArgumentError):
        f.read_into("b", np.empty(4, np.uint8))  # wrong size
    with pytest.raises(TypeError):  # never silently decoded into a temporary copy
        f.read_into("b", np.zeros(6, np.uint8)[::2])
    with pytest.raises(TypeError):
        ro = np.empty(3, np.uint8)
        ro.flags.writeable = False
        f.read_into("b", ro)
    with pytest.raises(IndexError):
        f.view(4)
    with pytest.raises(vitrify.ArrayNotFoundError):
        f.view("missing")
    assert len(f) == 4
    f.verify()
    for i in range(4):
        f.verify_array(i)


def test_writer_context_manager_and_abort(tmp_path):
    p = tmp_path / "x.vit"
    with vitrify.Writer.create(str(p), 64, False) as w:
        w.add_array("a", "int8", [1], b"\x01")
    assert not p.exists()  # left without commit: discarded
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with vitrify.Writer.create(str(p), 64, False) as w:
            w.add_array("a", "int8", [1], b"\x01")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with vitrify.Writer.create(str(p), 64, False) as w:
        w.add_array("a", "int8", [1], b"\x01")
        w.commit()
    assert vitrify.load_arrays(p)["a"].tolist() == [1]
    w = vitrify.Writer.create(str(tmp_path / "y.vit"), 64, False)
    w.add_array("a", "int8", [1], b"\x01")
    w.abort()
    assert w.closed
    with pytest.raises(vitrify.ArgumentError):
        w.commit()
    assert sorted(os.listdir(tmp_path)) == ["x.vit"]
    with vitrify.Writer.create_in_memory() as m:
        m.add_array("a", "int8", [1], b"\x02")
        m.commit()
    assert vitrify.load_arrays_from_bytes(m.take_bytes())["a"].tolist() == [2]


def test_writer_rejects_bad_arguments():
    w = vitrify.Writer.create_in_memory()
    with pytest.raises(vitrify.ArgumentError):
        w.add_array("a", "float128", [1], b"x" * 16)
    with pytest.raises(vitrify.ArgumentError):
        w.add_array("a", "uint8", [1], b"x", "lz4")
    with pytest.raises(vitrify.VitrifyError):
        w.add_array("a", "float32", [3], b"x" * 8)  # size mismatch
    with pytest.raises(vitrify.ArgumentError):
        w.add_array("a", "uint8", [1], b"x", "raw", 0, "{not json")
    with pytest.raises(vitrify.ArgumentError):
        w.set_metadata('{"$nosuchtag": 1}')
    with pytest.raises(vitrify.ArgumentError):
        w.add_array("a", "uint8", [1], object())
    with pytest.raises(vitrify.ArgumentError):
        w.take_bytes()  # not committed
    w.add_array("a", "uint8", [1], b"x")
    with pytest.raises(vitrify.FormatError) as ei:
        w.add_array("a", "uint8", [1], b"y")
    assert ei.value.code_name == "duplicate_name"
    with pytest.raises(vitrify.VitrifyError):
        w.add_string_array("s", [2], np.array([0, 3, 2], np.uint64), b"abc")  # decreasing
    with pytest.raises(vitrify.VitrifyError):
        w.add_string_array("s", [1], np.array([0, 2], np.uint64), b"\xff\xfe")  # not UTF-8
    w.set_metadata('{"$array":"nope"}')  # checked at commit
    with pytest.raises(vitrify.VitrifyError):
        w.commit()


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------

def _same_value(a, b):
    """Deep equality that distinguishes types, -0.0 and NaN."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, float):
        if math.isnan(a):
            assert math.isnan(b)
        else:
            assert a == b and math.copysign(1, a) == math.copysign(1, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_value(x, y)
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            _same_value(ka, kb)
            _same_value(va, vb)
    else:
        assert a == b


METADATA = {
    "none": None,
    "bools": [True, False],
    "ints": [0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**40, -(10**40)],
    "floats": [0.0, -0.0, 1.0, -2.5, 0.1, 1e300, 5e-324, 1.7976931348623157e308, 1e16, 123456789.0,
               math.nan, math.inf, -math.inf, 3.0],
    "str": "héllo 🎉 \"quoted\" \\ \n\t\x00",
    "empty": ["", [], {}, (), b""],
    "bytes": bytes(range(256)),
    "tuple": (1, "a", (2.0, None)),
    "nested": {"a": {"b": [{"c": (1, 2)}]}},
    "dollar_key_dict": {"$tag": 1, "plain": 2},
    "non_str_keys": {1: "one", 2.5: "float", None: "none", (1, 2): "tuple", b"k": "bytes", True: "t"},
    "mixed_keys": {"a": 1, 2: "b"},
}


def test_metadata_round_trip_every_kind(vit_path):
    vitrify.save_arrays(vit_path, {"x": np.zeros(1)}, metadata=METADATA, durable=False)
    got = vitrify.inspect(vit_path)["metadata"]
    _same_value(METADATA, got)
    # Plain dicts/lists survive as JSON objects/arrays; only special kinds are tagged.
    header = vitrify.File.open(str(vit_path)).header_json
    assert '"none":null' in header
    assert '"dollar_key_dict":{"$dict":[["$tag",1],["plain",2]]}' in header
    assert '{"$int":"9223372036854775808"}' in header
    assert '{"$float":"nan"}' in header and '{"$float":"-inf"}' in header
    assert '-0.0' in header and '3.0' in header
    assert '"$tuple"' in header and '"$bytes"' in header and '"$dict"' in header


@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**64, 1.5, -0.0, math.nan, math.inf, "", "x", b"\x00\xff", (), [], {},
    {"$k": 1}, {1: 2}, [(1,), [2], {"a": (3,)}], 0.1 + 0.2, 1e-7, 2.0**-1074,
])
def test_metadata_values_match_cpp_canonical_encoding(value):
    text = values.encode(value)
    # The C++ parser accepts it, and its canonical form decodes to the same value.
    canonical = vitrify._core.canonical_json(text)
    _same_value(value, values.decode(canonical))
    _same_value(value, values.decode(text))


def test_finite_floats_always_look_like_floats():
    for x in [1.0, 1e16, 1e22, 12345678901234567890.0, -3.0, 2.0**70]:
        text = values.encode(x)
        assert any(c in text for c in ".eE"), text
        assert type(values.decode(text)) is float and values.decode(text) == x


def test_metadata_numpy_scalars_and_subclasses():
    import collections
    import enum

    class E(enum.IntEnum):
        A = 5

    P = collections.namedtuple("P", "x y")
    got = values.decode(values.encode({"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True),
                                       "e": E.A, "p": P(1, 2), "ba": bytearray(b"ab")}))
    _same_value({"i": 3, "f": 0.5, "b": True, "e": 5, "p": (1, 2), "ba": b"ab"}, got)


@pytest.mark.parametrize("bad", [object(), {1, 2}, np.zeros(2), lambda: 0, "\ud800", {"k": [object()]}])
def test_metadata_unsupported_values(bad):
    with pytest.raises(vitrify.ArgumentError):
        vitrify.save_arrays_to_bytes({"x": np.zeros(1)}, metadata=bad)


def test_metadata_cycles_and_depth():
    a = []
    a.append(a)
    with pytest.raises(vitrify.ArgumentError):
        values.encode(a)
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(vitrify.ArgumentError):
        values.encode(deep)


def test_decode_rejects_malformed_tags():
    for text in ['{"$float":"nope"}', '{"$int":"12x"}', '{"$bytes":"!!"}', '{"$what":1}',
                 '{"$int":"1","x":2}', '{"$tuple":1}', '{"$dict":[[1]]}', 'NaN', '[1,']:
        with pytest.raises(vitrify.FormatError):
            values.decode(text)


def test_decode_content_markers_round_trip():
    v = {"tree": vitrify.TaggedObject("torch.nn.Linear", 1, {"weight": vitrify.ArrayRef("w")}),
         "s": [vitrify.Shared(0, {"a": 1}), vitrify.Ref(0)]}
    text = values.encode(v)
    assert values.decode(text) == v
    assert values.decode(vitrify._core.canonical_json(text)) == v


# --------------------------------------------------------------------------------------------
# inspect()
# --------------------------------------------------------------------------------------------

def test_inspect(vit_path, rng):
    arrays = {"w": sample(np.float32, (4, 5), rng), "names": np.array(["a", "bc"]),
              "z": np.zeros(1000, np.int64)}
    meta = {"model": "tiny", "epochs": 3, "lr": 1e-3, "tags": ("a", "b")}
    vitrify.save_arrays(vit_path, arrays, metadata=meta, compress={"z": ("zstd", 9)}, alignment=256,
                        durable=False)
    info = vitrify.inspect(vit_path)
    assert info["version"] == (1, 0) == vitrify.FORMAT_VERSION
    assert info["alignment"] == 256
    assert info["size"] == vit_path.stat().st_size == info["content_length"]
    assert info["path"].endswith("model.vit")
    assert info["required_features"] == [] and info["trailers"] == []
    _same_value(meta, info["metadata"])
    assert info["environment"] is None and info["provenance"] is None and info["content"] is None
    table = info["arrays"]
    assert [e["name"] for e in table] == ["w", "names", "z"]
    w, names, z = table
    assert w["dtype"] == "float32" and w["shape"] == (4, 5) and w["count"] == 20
    assert w["offset"] == 256 and w["length"] == w["decoded_length"] == 80 and w["codec"] == "raw"
    assert w["attrs"] is None
    assert names["dtype"] == "string" and names["offset"] == 512
    assert names["decoded_length"] == 8 * 3 + 3
    assert names["attrs"] == {"numpy_dtype": "<U2"}
    assert z["codec"] == "zstd" and z["level"] == 9 and z["decoded_length"] == 8000
    assert z["length"] < 8000
    # xxh3 is the checksum of the stored bytes.
    img = Image(vit_path.read_bytes())
    from conftest import xxh3
    for i, e in enumerate(table):
        assert e["xxh3"] == xxh3(img.array_bytes(i))
    # Same answer from an in-memory image.
    mem = vitrify.inspect(vit_path.read_bytes())
    assert mem["arrays"] == table and mem["path"] == "<memory>"
