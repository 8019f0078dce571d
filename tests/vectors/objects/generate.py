#!/usr/bin/env python3
"""Golden vectors of the object encoding (docs/OBJECTS.md): the ``content`` of kind
``vitrify.python-object``, versions 1, 2 and 3.

Writes

* ``valid/*.vit``: files every conforming decoder must accept, each with the expected value in
  ``manifest.json`` as a canonical *description* (below) and the names the file refers to;
  some of them name untrusted types, and ``load`` must refuse them (``load_error``) although
  they decode;
* ``invalid/*.vit``: files with one defect each in the object encoding, with the Python
  exception class and the error code name (``errc``) a decoder must raise.

The object trees are written out by hand below (explicit typed-value JSON), not produced by
``vitrify.dump``, so that they test the decoders rather than mirror the encoder; the files are
assembled with the byte-level builder of ``tests/vectors/generate.py``. Output is deterministic.

Descriptions (language-neutral; docs/OBJECTS.md section "Golden vectors"):
``null``/``true``/``false``; ``{"int": "<decimal>"}``; ``{"float": "<16 hex digits of the
IEEE-754 binary64 bits>"}``; ``{"str": s}``; ``{"bytes": hex}``; ``{"list": [...]}``;
``{"tuple": [...]}``; ``{"dict": [[k, v], ...]}``; ``{"set"|"frozenset": [...]}`` (items sorted
by their compact JSON text); ``{"complex": [re, im]}``; ``{"ndarray": {"dtype", "shape",
"xxh3" | "strings" | "bytes" | "items", "fields"?}}`` (``xxh3``: XXH3-64 of the elements in
logical C order, little-endian); ``{"scalar": {"dtype", "hex"}}``; ``{"dtype": {"str",
"fields"?}}``; ``{"global": name}``; ``{"object": {"type", "state"}}``; ``{"slice"|"range":
[a, b, c]}``; ``{"bytearray": hex}``; ``{"random_state": state}``; ``{"generator":
{"bit_generator", "state"}}``; ``{"masked_array": {"data", "mask", "fill_value"}}``. A
container or object reached more than once is described the first time as ``{"shared": k,
"value": ...}`` and afterwards as ``{"ref": k}``, k counting from 0 in order of first
appearance. Dtype strings are compared without their byte-order character.

Vectors are permanent: this script never rewrites an existing file whose bytes would differ,
never drops a vector or changes a manifest record; it refuses (exit 1) instead. ``--check``
compares without writing.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import xxhash

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_format_vectors", HERE.parent / "generate.py")
fv = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fv  # dataclasses look their module up by name
_spec.loader.exec_module(fv)

KIND = "vitrify.python-object"
MANIFEST_SCHEMA = 1


# ----------------------------------------------------------------------------------------------
# Typed-value trees, written out explicitly
# ----------------------------------------------------------------------------------------------

def obj(tname: str, state: Any) -> dict:
    return {"$object": {"type": tname, "version": 1, "state": state}}


def shared(i: int, v: Any) -> dict:
    return {"$shared": {"id": i, "value": v}}


def ref(i: int) -> dict:
    return {"$ref": i}


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def tup(*items) -> dict:
    return {"$tuple": list(items)}


def arr_ref(name: str) -> dict:
    return {"$array": name}


def inline(t: Any, shape: list, raw: bytes, fortran: bool = False) -> dict:
    st = {"b": b64(raw), "t": t, "s": shape}
    if fortran:
        st["o"] = "F"
    return obj("numpy.ndarray", st)


def pooled(t: Any, shape: list, off: int, n: int, fortran: bool = False) -> dict:
    st = {"p": [off, n], "t": t, "s": shape}
    if fortran:
        st["o"] = "F"
    return obj("numpy.ndarray", st)


def scalar(t: str, raw: bytes) -> dict:
    return obj("numpy.generic", {"t": t, "b": b64(raw)})


def ns(state: Any, k: Optional[int] = None) -> dict:
    """A types.SimpleNamespace built as __new__ + __dict__ update."""
    st: dict = {"n": True}
    if k is not None:
        st["k"] = k
    st["s"] = state
    return obj("types.SimpleNamespace", st)


def nested_lists_body(depth: int) -> bytes:
    """A packed body whose root is 0 inside `depth` lists (as text: json.dumps recurses)."""
    return ('{"root":' + "[" * depth + "0" + "]" * depth + "}").encode()


# ----------------------------------------------------------------------------------------------
# Descriptions of the expected values
# ----------------------------------------------------------------------------------------------

def d_int(i: int) -> dict:
    return {"int": str(i)}


def d_float(x: float) -> dict:
    return {"float": struct.pack(">d", x).hex()}


def d_str(s: str) -> dict:
    return {"str": s}


def d_list(*items) -> dict:
    return {"list": list(items)}


def d_tuple(*items) -> dict:
    return {"tuple": list(items)}


def d_dict(*pairs) -> dict:
    return {"dict": [list(p) for p in pairs]}


def d_set(kind: str, *items) -> dict:
    return {kind: sorted(items, key=lambda d: json.dumps(d, separators=(",", ":"), ensure_ascii=False))}


def le_bytes(a: np.ndarray) -> bytes:
    """Elements in logical C order, little-endian."""
    if a.dtype.fields is None and a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes()


def dtype_fields(dt: np.dtype) -> list:
    return [[n, dt.fields[n][0].str, int(dt.fields[n][1])] for n in dt.names]


def d_nd(a: np.ndarray) -> dict:
    """An array described from an independent numpy array holding the expected elements."""
    dt = a.dtype
    out: dict = {"dtype": dt.str, "shape": list(a.shape)}
    if dt.kind == "U" or (dt.kind == "O" and a.size and all(type(x) is str for x in a.flat)):
        out["strings"] = [str(x) for x in a.ravel()]
    elif dt.kind == "S":
        out["bytes"] = [bytes(x).hex() for x in a.ravel()]
    elif dt.kind == "O":
        raise ValueError("describe object arrays with d_obj_array")
    else:
        out["xxh3"] = f"{xxhash.xxh3_64_intdigest(le_bytes(a)):016x}"
    if dt.fields is not None:
        out["fields"] = dtype_fields(dt)
    return {"ndarray": out}


def d_obj_array(shape: list, items: list) -> dict:
    return {"ndarray": {"dtype": "|O", "shape": shape, "items": items}}


def d_scalar(dt: str, raw_le: bytes) -> dict:
    return {"scalar": {"dtype": dt, "hex": raw_le.hex()}}


def d_dtype(dt: np.dtype) -> dict:
    out: dict = {"str": dt.str}
    if dt.fields is not None:
        out["fields"] = dtype_fields(dt)
    return {"dtype": out}


def d_obj(tname: str, state: dict) -> dict:
    return {"object": {"type": tname, "state": state}}


def shared_d(k: int, v: dict) -> dict:
    return {"shared": k, "value": v}


def ref_d(k: int) -> dict:
    return {"ref": k}


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

@dataclass
class Vec:
    name: str
    description: str
    data: bytes
    version: int = 0
    value: Any = None                    # valid: expected description
    names: list = field(default_factory=list)      # valid: referenced names (trust-checked)
    trusted: list = field(default_factory=list)    # valid: names the caller adds to the trust list
    untrusted: list = field(default_factory=list)  # valid: get_untrusted_types(trusted=...)
    load_error: Optional[str] = None               # valid: load() refuses (Python class)
    python: Optional[str] = None                   # invalid: Python exception class
    errc: Optional[str] = None                     # invalid: error code name


def content_section(version: Any, extra: Optional[dict] = None, *, pool: bool = False, kind: str = KIND) -> str:
    c: dict = {"kind": kind, "version": version}
    if version != 1:
        c["packed"] = arr_ref("content")
    if pool:
        c["pool"] = arr_ref("pool")
    if extra:
        c.update(extra)
    return json.dumps(c, separators=(",", ":"), ensure_ascii=False)


def body_text(root: Any, keys: Optional[list] = None, dtypes: Optional[list] = None) -> bytes:
    b: dict = {"root": root}
    if keys is not None:
        b["keys"] = keys
    if dtypes is not None:
        b["dtypes"] = dtypes
    return json.dumps(b, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def u8(name: str, data: bytes, zstd: bool = False) -> "fv.Arr":
    a = fv.raw_arr(name, "uint8", [len(data)], data)
    return fv.zstd(a) if zstd else a


def packed_file(version: int, root: Any = None, *, keys=None, dtypes=None, pool: Optional[bytes] = None,
                arrays: tuple = (), body: Optional[bytes] = None, zstd: bool = False, zstd_pool: bool = False,
                content: Optional[str] = None) -> bytes:
    text = body if body is not None else body_text(root, keys, dtypes)
    arrs = [u8("content", text, zstd)]
    if pool is not None:
        arrs.append(u8("pool", pool, zstd_pool))
    arrs += list(arrays)
    sec = content if content is not None else content_section(version, pool=pool is not None)
    return fv.build(arrs, sections={"content": sec})


def v1_file(root: Any, arrays: tuple = ()) -> bytes:
    sec = json.dumps({"kind": KIND, "version": 1, "root": root}, separators=(",", ":"), ensure_ascii=False)
    return fv.build(list(arrays), sections={"content": sec})


class Pool:
    """Pool bytes assembled by hand: each array at a multiple of 16 (64 from 4 KiB)."""

    def __init__(self):
        self.buf = bytearray()

    def add(self, raw: bytes) -> tuple[int, int]:
        if not raw:
            return 0, 0
        align = 64 if len(raw) >= 4096 else 16
        self.buf += bytes(-len(self.buf) % align)
        off = len(self.buf)
        self.buf += raw
        return off, len(raw)


# Expected element data, built with numpy independently of vitrify.
F8_23 = np.array([[0.5, -1.0, 2.25], [3.0, float("inf"), -0.0]], dtype="<f8")
I4_BE = np.array([1, -2, 65536, 2**31 - 1], dtype=">i4")
BOOLS = np.array([True, False, True], dtype="|b1")
C16 = np.array([1 + 2j, -0.5 - 3j], dtype="<c16")
DT_S = np.array([0, 86400, -1], dtype="<M8[s]")
I8_F = np.asfortranarray(np.arange(6, dtype="<i8").reshape(2, 3))  # logical 2x3, Fortran order
NODE_DT = np.dtype({"names": ["left", "right", "thr"], "formats": ["<i8", "<i8", "<f8"],
                    "offsets": [0, 8, 16], "itemsize": 24})
NODE_DESC = {"fields": [["left", "<i8", 0], ["right", "<i8", 8], ["thr", "<f8", 16]], "itemsize": 24, "aligned": False}
NODES = np.array([(1, 2, 0.5), (-1, -1, 0.0), (-1, -1, 1.5)], dtype=NODE_DT)
U8_BIG = np.arange(5000, dtype="<u2").astype("<u1")[:4096]           # pooled at a multiple of 64
MT_KEYS = np.array([(i * 2654435761) % 2**32 for i in range(624)], dtype="<u4")


def fortran_stored(a: np.ndarray) -> bytes:
    """The stored bytes of a Fortran-ordered array: the C order of its transpose."""
    return np.ascontiguousarray(a.T).tobytes()


def plain_tree() -> tuple[Any, dict]:
    """Every typed-value kind, with the description of what it decodes to."""
    root = {
        "none": None, "t": True, "f": False, "i": -7, "big": {"$int": "-1180591620717411303424"},
        "x": 0.1, "negzero": -0.0, "nan": {"$float": "nan"}, "inf": {"$float": "-inf"},
        "s": "naïve ☃ \u0000 end", "b": {"$bytes": "AAEC/w=="}, "tuple": tup(1, "a", [2.5]),
        "list": [[], [1, [2, [3]]]], "nonstr": {"$dict": [[1, "one"], [tup(2, 3), None], ["$x", 4]]},
    }
    desc = d_dict(
        (d_str("none"), None), (d_str("t"), True), (d_str("f"), False), (d_str("i"), d_int(-7)),
        (d_str("big"), d_int(-1180591620717411303424)), (d_str("x"), d_float(0.1)),
        (d_str("negzero"), d_float(-0.0)), (d_str("nan"), d_float(float("nan"))),
        (d_str("inf"), d_float(float("-inf"))), (d_str("s"), d_str("naïve ☃ \u0000 end")),
        (d_str("b"), {"bytes": "000102ff"}),
        (d_str("tuple"), d_tuple(d_int(1), d_str("a"), d_list(d_float(2.5)))),
        (d_str("list"), d_list(d_list(), d_list(d_int(1), d_list(d_int(2), d_list(d_int(3)))))),
        (d_str("nonstr"), d_dict((d_int(1), d_str("one")), (d_tuple(d_int(2), d_int(3)), None),
                                 (d_str("$x"), d_int(4)))),
    )
    return root, desc


def valid_vectors() -> list[Vec]:
    out: list[Vec] = []

    def add(name, description, data, version, value, names=(), **kw):
        out.append(Vec(name, description, data, version, value, sorted(names), **kw))

    # -- version 1: the tree in the header, long state keys --
    root, desc = plain_tree()
    add("v1_plain", "version 1: every typed-value kind in the header's root", v1_file(root), 1, desc)
    arr0 = fv.raw_arr("0", "int32", [4], np.array([3, 1, 4, 1], "<i4").tobytes())
    raw_nodes = fv.raw_arr("1", "uint8", [NODES.nbytes], NODES.tobytes())
    f_arr = fv.raw_arr("2", "float64", [3, 2], fortran_stored(F8_23.astype("<f8")))
    root = [
        obj("numpy.ndarray", {"data": arr_ref("0")}),
        obj("numpy.ndarray", {"raw": arr_ref("1"), "shape": [3], "dtype": NODE_DESC}),
        obj("numpy.ndarray", {"data": arr_ref("2"), "order": "F"}),
        obj("numpy.generic", {"dtype": "<i8", "bytes": b64(struct.pack("<q", -5))}),
        obj("types.SimpleNamespace", {"new": True, "state": {"alpha": 1, "beta": [obj("builtins.set", [2, 1])]}}),
    ]
    desc = d_list(
        d_nd(np.array([3, 1, 4, 1], "<i4")), d_nd(NODES), d_nd(np.asfortranarray(F8_23)),
        d_scalar("<i8", struct.pack("<q", -5)),
        d_obj("types.SimpleNamespace", d_dict((d_str("alpha"), d_int(1)),
                                             (d_str("beta"), d_list(d_set("set", d_int(1), d_int(2)))))),
    )
    add("v1_objects", "version 1: arrays of the file (data, raw structured, Fortran), a scalar, an object "
        "with the long keys new/state", v1_file(root, (arr0, raw_nodes, f_arr)), 1, desc,
        ["types.SimpleNamespace"], trusted=["types.SimpleNamespace"])

    # -- version 2: packed tree, arrays inline or out of line --
    root, desc = plain_tree()
    add("v2_plain", "version 2: every typed-value kind in the packed tree", packed_file(2, root), 2, desc)
    add("v2_plain_zstd", "version 2: the packed tree compressed with zstd", packed_file(2, root, zstd=True), 2, desc)

    root = [
        inline("<f8", [2, 3], F8_23.tobytes()),
        inline(">i4", [4], I4_BE.tobytes()),
        inline("|b1", [3], BOOLS.tobytes()),
        inline("<c16", [2], C16.tobytes()),
        inline("<M8[s]", [3], DT_S.tobytes()),
        inline("<i8", [3, 2], fortran_stored(I8_F), fortran=True),
        inline("<f4", [0, 5], b""),
        inline("<f8", [], struct.pack("<d", 2.5)),
        inline(0, [3], NODES.tobytes()),
    ]
    desc = d_list(d_nd(F8_23), d_nd(I4_BE), d_nd(BOOLS), d_nd(C16), d_nd(DT_S), d_nd(I8_F),
                  d_nd(np.zeros((0, 5), "<f4")), d_nd(np.array(2.5, "<f8")), d_nd(NODES))
    add("v2_inline_arrays", "version 2: inline arrays (base64): float, big-endian int, bool, complex, "
        "datetime, Fortran order, empty, rank 0, structured through the dtype table",
        packed_file(2, root, dtypes=[NODE_DESC]), 2, desc)

    strs = ["ab", "", "日本"]
    arrays = (
        fv.raw_arr("0", "float64", [2, 3], F8_23.tobytes()),
        fv.raw_arr("1", "float64", [3, 2], fortran_stored(F8_23)),
        fv.str_arr("2", [3], strs, attrs='{"numpy_dtype":"<U2"}'),
        fv.str_arr("3", [1, 3], strs, attrs='{"numpy_dtype":"object"}'),
        fv.raw_arr("4", "uint8", [6], b"ab\x00c\x00d"),
        fv.raw_arr("5", "uint8", [NODES.nbytes], NODES.tobytes()),
    )
    root = [
        obj("numpy.ndarray", {"d": arr_ref("0")}),
        obj("numpy.ndarray", {"d": arr_ref("1"), "o": "F"}),
        obj("numpy.ndarray", {"u": arr_ref("2"), "t": "<U2"}),
        obj("numpy.ndarray", {"u": arr_ref("3"), "t": "O"}),
        obj("numpy.ndarray", {"y": arr_ref("4"), "s": [2], "t": "|S3"}),
        obj("numpy.ndarray", {"r": arr_ref("5"), "s": [3], "t": 0}),
        obj("numpy.ndarray", {"s": [2, 2], "t": "O", "i": [1, None, "x", [2]]}),
    ]
    desc = d_list(d_nd(F8_23), d_nd(np.asfortranarray(F8_23)), d_nd(np.array(strs, "<U2")),
                  d_nd(np.array(strs, dtype=object).reshape(1, 3)),
                  {"ndarray": {"dtype": "|S3", "shape": [2], "bytes": [b"ab".hex(), b"c\x00d".hex()]}},
                  d_nd(NODES),
                  d_obj_array([2, 2], [d_int(1), None, d_str("x"), d_list(d_int(2))]))
    add("v2_out_of_line_arrays", "version 2: arrays of the file: numeric (C and Fortran order), unicode, "
        "object of str, fixed-width bytes, structured raw bytes; an object array item by item",
        packed_file(2, root, dtypes=[NODE_DESC], arrays=arrays), 2, desc)

    # Shared references and cycles.
    root = {
        "cyc": shared(0, [1, ref(0)]),
        "d": shared(1, {"k": "v"}),
        "d2": ref(1),
        "a": shared(2, inline("<i4", [2], np.array([7, 8], "<i4").tobytes())),
        "a2": ref(2),
        "self": shared(3, ns({"me": ref(3), "n": 1})),
        "t": shared(4, tup(ref(1), "x")),
        "t2": ref(4),
        "nonstr": shared(5, {"$dict": [[1, 2]]}),
        "back": [ref(5)],
    }
    desc = d_dict(
        (d_str("cyc"), shared_d(0, d_list(d_int(1), ref_d(0)))),
        (d_str("d"), shared_d(1, d_dict((d_str("k"), d_str("v"))))),
        (d_str("d2"), ref_d(1)),
        (d_str("a"), shared_d(2, d_nd(np.array([7, 8], "<i4")))),
        (d_str("a2"), ref_d(2)),
        (d_str("self"), shared_d(3, d_obj("types.SimpleNamespace", d_dict((d_str("me"), ref_d(3)),
                                                                          (d_str("n"), d_int(1)))))),
        (d_str("t"), shared_d(4, d_tuple(ref_d(1), d_str("x")))),
        (d_str("t2"), ref_d(4)),
        (d_str("nonstr"), shared_d(5, d_dict((d_int(1), d_int(2))))),
        (d_str("back"), d_list(ref_d(5))),
    )
    add("v2_shared_and_cycles", "version 2: $shared/$ref: a list containing itself, a shared dict, array and "
        "tuple, an object whose state refers to the object, a shared dict with a non-string key",
        packed_file(2, root), 2, desc, ["types.SimpleNamespace"], trusted=["types.SimpleNamespace"])

    keys = [["alpha", "beta"], ["x"]]
    root = [ns([1, "b"], k=0), ns([2, [3]], k=0), ns([None], k=1), ns({"plain": True})]
    desc = d_list(
        d_obj("types.SimpleNamespace", d_dict((d_str("alpha"), d_int(1)), (d_str("beta"), d_str("b")))),
        d_obj("types.SimpleNamespace", d_dict((d_str("alpha"), d_int(2)), (d_str("beta"), d_list(d_int(3))))),
        d_obj("types.SimpleNamespace", d_dict((d_str("x"), None))),
        d_obj("types.SimpleNamespace", d_dict((d_str("plain"), True))),
    )
    add("v2_keysets", "version 2: object states as keyset index + values (two objects share keyset 0)",
        packed_file(2, root, keys=keys), 2, desc, ["types.SimpleNamespace"], trusted=["types.SimpleNamespace"])

    mt_arr = fv.raw_arr("0", "uint32", [624], MT_KEYS.tobytes())
    pcg_state = {"bit_generator": "PCG64", "state": {"state": {"$int": "194290289479364712180083596243593368443"},
                                                      "inc": {"$int": "199343011360183301451402167212018474017"}},
                 "has_uint32": 0, "uinteger": 0}
    root = [
        obj("numpy.dtype", "<f4"),
        obj("numpy.dtype", NODE_DESC),
        scalar("<f8", struct.pack("<d", -1.5)),
        scalar(">u2", struct.pack(">H", 513)),
        scalar("|b1", b"\x01"),
        obj("builtins.set", [3, "a", 1]),
        obj("builtins.frozenset", ["z"]),
        obj("builtins.complex", [1.5, -2.0]),
        obj("builtins.slice", [1, None, -1]),
        obj("builtins.range", [0, 10, 3]),
        obj("builtins.bytearray", {"$bytes": "aGk="}),
        obj("numpy.random.RandomState", tup("MT19937", obj("numpy.ndarray", {"d": arr_ref("0")}), 17, 0, 0.0)),
        obj("numpy.random.Generator", {"bit_generator": "numpy.random.PCG64", "state": pcg_state}),
        obj("numpy.ma.MaskedArray", {"data": inline("<f8", [2], np.array([1.0, 2.0]).tobytes()),
                                     "mask": inline("|b1", [2], b"\x00\x01"),
                                     "fill_value": scalar("<f8", struct.pack("<d", 1e20))}),
        obj("vitrify.global", "numpy.log1p"),
    ]
    pcg_desc = d_dict(
        (d_str("bit_generator"), d_str("PCG64")),
        (d_str("state"), d_dict((d_str("state"), d_int(194290289479364712180083596243593368443)),
                                (d_str("inc"), d_int(199343011360183301451402167212018474017)))),
        (d_str("has_uint32"), d_int(0)), (d_str("uinteger"), d_int(0)))
    desc = d_list(
        # numpy scalars are always in native byte order: the big-endian ">u2" one loads as "<u2".
        d_dtype(np.dtype("<f4")), d_dtype(NODE_DT),
        d_scalar("<f8", struct.pack("<d", -1.5)), d_scalar("<u2", struct.pack("<H", 513)),
        d_scalar("|b1", b"\x01"),
        d_set("set", d_int(3), d_str("a"), d_int(1)), d_set("frozenset", d_str("z")),
        {"complex": [d_float(1.5), d_float(-2.0)]},
        {"slice": [d_int(1), None, d_int(-1)]}, {"range": [d_int(0), d_int(10), d_int(3)]},
        {"bytearray": b"hi".hex()},
        {"random_state": d_tuple(d_str("MT19937"), d_nd(MT_KEYS), d_int(17), d_int(0), d_float(0.0))},
        {"generator": {"bit_generator": "numpy.random.PCG64", "state": pcg_desc}},
        {"masked_array": {"data": d_nd(np.array([1.0, 2.0])), "mask": d_nd(np.array([False, True])),
                          "fill_value": d_scalar("<f8", struct.pack("<d", 1e20))}},
        {"global": "numpy.log1p"},
    )
    add("v2_special_types", "version 2: numpy dtypes and scalars, set, frozenset, complex, slice, range, "
        "bytearray, RandomState, Generator, MaskedArray, a function reference (vitrify.global)",
        packed_file(2, root, dtypes=[NODE_DESC], arrays=(mt_arr,)), 2, desc, ["numpy.log1p"])

    # -- version 3: pooled arrays --
    p = Pool()
    refs = [p.add(F8_23.tobytes()), p.add(I4_BE.tobytes()), p.add(BOOLS.tobytes()), p.add(fortran_stored(I8_F)),
            p.add(NODES.tobytes()), p.add(U8_BIG.tobytes()), p.add(DT_S.tobytes())]
    root = [
        pooled("<f8", [2, 3], *refs[0]),
        pooled(">i4", [4], *refs[1]),
        pooled("|b1", [3], *refs[2]),
        pooled("<i8", [3, 2], *refs[3], fortran=True),
        pooled(0, [3], *refs[4]),
        pooled("|u1", [4096], *refs[5]),
        pooled("<M8[s]", [3], *refs[6]),
        pooled("<f8", [0], 0, 0),
        pooled("<f8", [2, 3], *refs[0]),
    ]
    desc = d_list(d_nd(F8_23), d_nd(I4_BE), d_nd(BOOLS), d_nd(I8_F), d_nd(NODES), d_nd(U8_BIG), d_nd(DT_S),
                  d_nd(np.zeros(0, "<f8")), d_nd(F8_23))
    pool = bytes(p.buf)
    add("v3_pooled_arrays", "version 3: arrays in the pool (float, big-endian, bool, Fortran, structured, "
        "4 KiB at a multiple of 64, datetime, empty, two arrays over the same bytes)",
        packed_file(3, root, dtypes=[NODE_DESC], pool=pool), 3, desc)
    add("v3_pooled_arrays_zstd", "version 3: the same tree and pool, both compressed with zstd",
        packed_file(3, root, dtypes=[NODE_DESC], pool=pool, zstd=True, zstd_pool=True), 3, desc)

    root = {"x": 1}
    add("v3_pool_unused", "version 3 with an empty pool that no array uses",
        packed_file(3, root, pool=b""), 3, d_dict((d_str("x"), d_int(1))))
    add("v2_depth_256", "typed-value depth exactly 256 (the limit)", packed_file(2, body=nested_lists_body(256)), 2,
        _nested_desc(256))

    # -- decode, but load refuses: untrusted names --
    add("v2_untrusted_type", "an object of type os.system: decodes (names are inert), load refuses it",
        packed_file(2, obj("os.system", {"a": ["echo hi"]})), 2, None, ["os.system"],
        untrusted=["os.system"], load_error="UntrustedTypeError")
    add("v2_untrusted_global", "a reference to builtins.eval: decodes, load refuses it",
        packed_file(2, [obj("vitrify.global", "builtins.eval")]), 2, None, ["builtins.eval"],
        untrusted=["builtins.eval"], load_error="UntrustedTypeError")
    add("v2_untrusted_bit_generator", "a Generator over an unknown bit generator: load refuses it",
        packed_file(2, obj("numpy.random.Generator", {"bit_generator": "os.popen", "state": {}})), 2, None,
        ["os.popen"], untrusted=["os.popen"], load_error="UntrustedTypeError")
    return out


def _nested_desc(depth: int) -> Any:
    v: Any = d_int(0)
    for _ in range(depth):
        v = d_list(v)
    return v


# ----------------------------------------------------------------------------------------------
# Invalid vectors: one defect each
# ----------------------------------------------------------------------------------------------

FE, LE, VE = "FormatError", "LimitError", "VersionError"


def invalid_vectors() -> list[Vec]:
    out: list[Vec] = []

    def bad(name, description, data, python=FE, errc="bad_value"):
        out.append(Vec(name, description, data, python=python, errc=errc))

    def p2(root, **kw):
        return packed_file(2, root, **kw)

    def p3(root, pool: bytes, **kw):
        return packed_file(3, root, pool=pool, **kw)

    f8 = np.array([1.0, 2.0], "<f8").tobytes()
    pool16 = f8 + bytes(16)

    # Content section
    bad("content_wrong_kind", "content kind is not vitrify.python-object",
        packed_file(2, [1], content=content_section(2, kind="other")))
    bad("content_version_0", "object encoding version 0", packed_file(2, [1], content=content_section(0)), VE,
        "unsupported_version")
    bad("content_version_4", "object encoding version 4 (newer than this reader)",
        packed_file(2, [1], content=content_section(4)), VE, "unsupported_version")
    bad("content_version_string", "object encoding version is a string",
        packed_file(2, [1], content=content_section("3")), VE, "unsupported_version")
    bad("packed_not_uint8", "the packed tree is an int32 array",
        fv.build([fv.raw_arr("content", "int32", [1], b"\x00" * 4)], sections={"content": content_section(2)}))
    bad("packed_missing_v2", "version 2 without a packed tree",
        fv.build([], sections={"content": json.dumps({"kind": KIND, "version": 2, "root": 1})}))
    bad("body_not_json", "the packed tree is not JSON", p2(None, body=b"{\"root\": [1,"), FE, "bad_header")
    bad("body_not_object", "the packed tree is a JSON list", p2(None, body=b"[1]"))
    bad("body_no_root", "the packed tree has no root", p2(None, body=b'{"keys": []}'))
    bad("body_keys_not_list", "keys is not a list", p2(None, body=b'{"root": 1, "keys": {}}'))
    bad("body_dtypes_not_list", "dtypes is not a list", p2(None, body=b'{"root": 1, "dtypes": 5}'))

    # Typed values
    bad("unknown_tag", "an unknown tag $foo", p2([{"$foo": 1}]))
    bad("tag_two_members", "a tagged value with two members", p2([{"$tuple": [], "$x": 1}]))
    bad("object_bad_type_name", "an $object type that is not a dotted name", p2(obj("os.system()", {})))
    bad("object_missing_version", "$object without version",
        p2({"$object": {"type": "types.SimpleNamespace", "state": {}}}))
    bad("dangling_ref", "a $ref to no $shared", p2([ref(5)]))
    bad("ref_before_shared", "a $ref that comes before its $shared in document order",
        p2([ref(0), shared(0, [1])]))
    bad("duplicate_shared", "two $shared with id 0", p2([shared(0, [1]), shared(0, [2])]))
    bad("negative_shared_id", "a $shared id below 0", p2([shared(-1, [1])]))
    bad("cycle_through_tuple", "a tuple containing itself: cannot be built",
        p2(shared(0, tup(1, ref(0)))))
    bad("bad_base64_bytes", "$bytes that is not padded base64", p2([{"$bytes": "AAE"}]))
    bad("bad_int_text", "$int with a leading zero", p2([{"$int": "0123"}]))
    bad("bad_float_tag", "$float other than nan/inf/-inf", p2([{"$float": "1.5"}]))
    bad("int_above_i64", "a JSON integer above 2^63-1", p2(None, body=b'{"root":[9223372036854775808]}'))
    bad("dict_duplicate_key", "a $dict with two equal keys", p2({"$dict": [[1, "a"], [1, "b"]]}), FE,
        "duplicate_name")

    # Limits
    bad("depth_257", "typed-value depth 257", p2(None, body=nested_lists_body(257)), LE, "limit_exceeded")
    bad("depth_2000", "typed-value depth 2000", p2(None, body=nested_lists_body(2000)), LE, "limit_exceeded")
    bad("depth_exceeded_through_objects", "129 objects nested through their state dicts: the innermost "
        "value has depth 258", p2(_nested_objects(129)), LE, "limit_exceeded")

    # Objects
    bad("unknown_ndarray_state", "a numpy.ndarray state with none of the known members",
        p2(obj("numpy.ndarray", {"zz": 1, "t": "<f8", "s": [1]})))
    bad("ndarray_state_not_dict", "a numpy.ndarray state that is a list", p2(obj("numpy.ndarray", [1])))
    bad("reduce_state_not_dict", "an object state that is not a dict", p2(obj("types.SimpleNamespace", [1])))
    bad("reduce_args_not_list", "object args that are not a list",
        p2(obj("types.SimpleNamespace", {"n": True, "a": 5})))
    bad("reduce_kwargs_not_dict", "object kwargs that are not a dict",
        p2(obj("types.SimpleNamespace", {"n": True, "kw": [1]})))
    bad("reduce_dictitems_not_pairs", "dictitems entries that are not pairs",
        p2(obj("collections.OrderedDict", {"a": [], "di": [[1, 2, 3]]})))
    bad("global_not_string", "vitrify.global with a non-string state", p2(obj("vitrify.global", 5)))
    bad("set_state_not_list", "a set whose state is a dict", p2(obj("builtins.set", {"a": 1})))
    bad("complex_three_parts", "a complex with three parts", p2(obj("builtins.complex", [1.0, 2.0, 3.0])))
    bad("complex_not_numbers", "a complex with a string part", p2(obj("builtins.complex", ["1", 2.0])))
    bad("generator_state_not_dict", "a Generator whose state is a list", p2(obj("numpy.random.Generator", [1])))
    bad("scalar_wrong_size", "a numpy scalar whose bytes do not match its dtype",
        p2(scalar("<f8", b"\x00" * 4)))
    bad("scalar_bad_base64", "a numpy scalar with invalid base64", p2(obj("numpy.generic", {"t": "<f8", "b": "AAAA AAAA"})))
    bad("scalar_object_dtype", "a numpy scalar of object dtype", p2(obj("numpy.generic", {"t": "O", "b": ""})))
    bad("object_array_count", "an object array with fewer items than its shape",
        p2(obj("numpy.ndarray", {"s": [3], "t": "O", "i": [1, 2]})))
    bad("order_not_F", "an array order other than F",
        p2(obj("numpy.ndarray", {"b": b64(f8), "t": "<f8", "s": [2], "o": "X"})))

    # Keysets
    ks = [["a", "b"]]
    bad("keyset_index_out_of_range", "keyset index 1 of a table of 1", p2(ns([1, 2], k=1), keys=ks))
    bad("keyset_index_negative", "keyset index -1", p2(ns([1, 2], k=-1), keys=ks))
    bad("keyset_without_table", "a keyset index with no keys table", p2(ns([1, 2], k=0)))
    bad("keyset_not_strings", "a keyset holding a number", p2(ns([1, 2], k=0), keys=[["a", 2]]))
    bad("keyset_length_mismatch", "three values for two keys", p2(ns([1, 2, 3], k=0), keys=ks))
    bad("keyset_duplicate_keys", "a keyset naming one key twice", p2(ns([1, 2], k=0), keys=[["a", "a"]]),
        FE, "duplicate_name")

    # Dtypes
    bad("dtype_index_out_of_range", "dtype index 1 of a table of 1",
        p2(inline(1, [1], NODES[:1].tobytes()), dtypes=[NODE_DESC]))
    bad("dtype_index_without_table", "a dtype index with no dtypes table", p2(inline(0, [1], NODES[:1].tobytes())))
    for nm, t, what in [
        ("dtype_f3", "<f3", "a float of 3 bytes"), ("dtype_i16", "<i16", "an integer of 16 bytes"),
        ("dtype_f16", "<f16", "long double (platform-dependent)"), ("dtype_unknown_kind", "<q8", "kind q"),
        ("dtype_bad_unit", "<M8[xyz]", "an unknown datetime unit"), ("dtype_trailing", "<f8x", "trailing text"),
        ("dtype_S_huge", "|S2147483648", "S item size 2^31"), ("dtype_V_huge", "|V99999999999", "V item size 11 digits"),
        ("dtype_U_huge", "<U536870912", "U item size 4 * 2^29 = 2^31 bytes"), ("dtype_S0", "|S0", "S item size 0"),
    ]:
        bad(nm, f"numpy.dtype state {t!r}: {what}", p2([obj("numpy.dtype", t)]))
    bad("scalar_dtype_V_huge", "a numpy scalar of dtype |V4294967296", p2(obj("numpy.generic", {"t": "|V4294967296", "b": ""})))
    bad("struct_field_outside", "a structured field past the record's end",
        p2(obj("numpy.dtype", {"fields": [["a", "<f8", 20]], "itemsize": 24})))
    bad("struct_object_field", "a structured dtype with an object field",
        p2(inline({"fields": [["a", "O", 0]], "itemsize": 8}, [0], b"")))
    bad("struct_itemsize_zero", "a structured dtype of item size 0",
        p2(obj("numpy.dtype", {"fields": [], "itemsize": 0})))
    bad("struct_duplicate_field", "a structured dtype naming one field twice",
        p2(obj("numpy.dtype", {"fields": [["a", "<i4", 0], ["a", "<i4", 4]], "itemsize": 8})), FE, "duplicate_name")
    bad("struct_field_not_triple", "a structured field that is not [name, dtype, offset]",
        p2(obj("numpy.dtype", {"fields": [["a", "<i4"]], "itemsize": 8})))

    # Shapes
    bad("shape_negative", "a negative dimension", p2(inline("<f8", [-2], f8)))
    bad("shape_not_list", "a shape that is a number", p2(inline("<f8", 2, f8)))
    bad("shape_float", "a dimension that is a float", p2(inline("<f8", [2.0], f8)))
    bad("shape_rank_65", "65 dimensions", p2(inline("<f8", [1] * 65, struct.pack("<d", 1.0))), LE, "limit_exceeded")
    bad("shape_nonzero_product_overflow", "dimensions 2^62 x 0 x 4: the product of the non-zero ones is 2^64",
        p2(inline("<f8", [2**62, 0, 4], b"")))
    bad("inline_count_times_itemsize_wraps", "2^61 float64 elements: count x itemsize wraps to 0 bytes",
        p2(inline("<f8", [2**61], b"")))
    bad("pooled_count_times_itemsize_wraps", "a pooled array of 2^61 float64 over 0 bytes",
        p3(pooled("<f8", [2**61], 0, 0), pool16))
    bytes_arr = fv.raw_arr("0", "uint8", [0], b"")
    bad("bytes_array_size_wraps", "an |S1048576 array of 2^44 items over 0 bytes: the size wraps to 0",
        p2(obj("numpy.ndarray", {"y": arr_ref("0"), "s": [2**44], "t": "|S1048576"}), arrays=(bytes_arr,)))
    bad("raw_array_size_wraps", "a structured raw array whose size wraps to 0 bytes",
        p2(obj("numpy.ndarray", {"r": arr_ref("0"), "s": [2**61], "t": {"fields": [["a", "<f8", 0]], "itemsize": 8}}),
           arrays=(bytes_arr,)))

    # Inline arrays
    bad("inline_bad_base64", "inline array bytes that are not base64",
        p2(obj("numpy.ndarray", {"b": "@@@@", "t": "<f8", "s": [0]})))
    bad("inline_base64_unpadded", "inline array bytes without padding",
        p2(obj("numpy.ndarray", {"b": "AAAAAAAAAAA", "t": "|u1", "s": [8]})))
    bad("inline_size_mismatch", "inline bytes shorter than dtype x shape", p2(inline("<f8", [3], f8)))
    bad("inline_bool_byte_2", "an inline bool array holding the byte 2", p2(inline("|b1", [2], b"\x01\x02")))
    bad("inline_object_dtype", "an inline array of object dtype", p2(inline("O", [0], b"")))
    bad("inline_unicode_dtype", "an inline array of unicode dtype", p2(inline("<U1", [1], b"a\x00\x00\x00")))
    bad("inline_no_dtype", "an inline array without t", p2(obj("numpy.ndarray", {"b": b64(f8), "s": [2]})))

    # Pooled arrays
    bad("pooled_outside_pool", "a pooled range past the end of the pool", p3(pooled("<f8", [2], 16, 16), f8))
    bad("pooled_offset_overflow", "a pooled offset near 2^63", p3(pooled("<f8", [2], 2**63 - 16, 16), pool16))
    bad("pooled_misaligned", "a pooled offset that is not a multiple of 16", p3(pooled("<f8", [1], 8, 8), pool16))
    bad("pooled_size_mismatch", "nbytes differs from dtype x shape", p3(pooled("<f8", [2], 0, 8), pool16))
    bad("pooled_negative", "a negative pooled offset", p3(pooled("<f8", [0], -16, 0), pool16))
    bad("pooled_ref_not_pair", "a pooled reference of three numbers",
        p3(obj("numpy.ndarray", {"p": [0, 16, 1], "t": "<f8", "s": [2]}), pool16))
    bad("pooled_no_pool", "a pooled array in a file without a pool", p2(pooled("<f8", [2], 0, 16)))
    bad("pooled_in_v2", "a version-2 file whose pool is ignored: the pooled array has no pool",
        packed_file(2, pooled("<f8", [2], 0, 16), pool=pool16,
                    content=content_section(2, pool=True)))
    bad("pooled_bool_byte_2", "a pooled bool array holding the byte 2", p3(pooled("|b1", [2], 0, 2), b"\x00\x02"))
    bad("pooled_object_dtype", "a pooled array of object dtype", p3(pooled("O", [0], 0, 0), pool16))
    bad("pooled_bytes_dtype", "a pooled array of |S dtype", p3(pooled("|S2", [1], 0, 2), pool16))
    bad("pool_not_uint8", "the pool is a float64 array",
        packed_file(3, pooled("<f8", [2], 0, 16), arrays=(fv.raw_arr("pool", "float64", [2], f8),),
                    content=content_section(3, pool=True)))
    bad("pool_is_packed", "the pool and the packed tree are the same array",
        packed_file(3, [1], content=content_section(3, {"pool": arr_ref("content")})))
    bad("tree_refers_to_pool", "the tree uses the pool as an array of the file",
        p3(obj("numpy.ndarray", {"d": arr_ref("pool")}), pool16))
    bad("tree_refers_to_packed", "the tree uses its own packed array",
        p2(obj("numpy.ndarray", {"d": arr_ref("content")})))

    # Arrays of the file
    str_arr = fv.str_arr("0", [1], ["a"], attrs='{"numpy_dtype":"<U1"}')
    num_arr = fv.raw_arr("0", "float64", [2], f8)
    bad("array_missing", "an array state naming no array of the file", p2(obj("numpy.ndarray", {"d": arr_ref("zz")})))
    bad("data_is_string_array", "a numeric array state (d) naming a string array",
        p2(obj("numpy.ndarray", {"d": arr_ref("0")}), arrays=(str_arr,)))
    bad("strings_is_numeric_array", "a string array state (u) naming a float64 array",
        p2(obj("numpy.ndarray", {"u": arr_ref("0"), "t": "<U1"}), arrays=(num_arr,)))
    bad("raw_not_uint8", "raw structured bytes (r) in a float64 array",
        p2(obj("numpy.ndarray", {"r": arr_ref("0"), "s": [2], "t": "<f8"}), arrays=(num_arr,)))
    bad("raw_size_mismatch", "raw bytes shorter than dtype x shape",
        p2(obj("numpy.ndarray", {"y": arr_ref("0"), "s": [3], "t": "|S4"}),
           arrays=(fv.raw_arr("0", "uint8", [8], b"abcdefgh"),)))

    # Added 2026-12-04 (one decoder for load, the runtime and scan)
    raw8 = (fv.raw_arr("0", "uint8", [8], b"abcdefgh"),)
    bad("raw_r_bytes_dtype", "raw bytes (r) with an |S dtype (fixed-width bytes are y)",
        p2(obj("numpy.ndarray", {"r": arr_ref("0"), "s": [4], "t": "|S2"}), arrays=raw8))
    bad("raw_y_numeric_dtype", "raw bytes (y) with a float64 dtype (numeric bytes are r)",
        p2(obj("numpy.ndarray", {"y": arr_ref("0"), "s": [1], "t": "<f8"}), arrays=raw8))
    bad("dtype_table_entry_is_index", "a dtypes table entry that is itself an index",
        packed_file(3, pooled(1, [2], 0, 16), dtypes=["<f8", 0], pool=pool16))
    bad("dtype_table_entry_bytes", "a dtypes table entry of |S dtype (entries are numeric or structured)",
        packed_file(3, obj("numpy.dtype", 0), dtypes=["|S4"], pool=pool16))
    bad("structured_field_bytes", "a structured field of |S dtype",
        p3(pooled({"fields": [["a", "|S8", 0]], "itemsize": 8}, [1], 0, 8), pool16))
    keys624 = bytes(624 * 4)
    rs_pool = keys624 + bytes(-len(keys624) % 16)

    def rstate(pos, gauss=0, n=624):
        return obj("numpy.random.RandomState", tup("MT19937", pooled("<u4", [n], 0, 4 * n), pos, gauss, 0.0))
    bad("random_state_pos_625", "a RandomState position past its 624 keys", p3(rstate(625), rs_pool))
    bad("random_state_623_keys", "a RandomState with 623 keys", p3(rstate(0, n=623), rs_pool))
    bad("random_state_has_gauss_2", "a RandomState has_gauss of 2", p3(rstate(0, gauss=2), rs_pool))
    return out


def _nested_objects(n: int) -> Any:
    """n SimpleNamespace objects nested through their states: two levels each (state, value)."""
    v: Any = 0
    for _ in range(n):
        v = ns(v)
    return v


# ----------------------------------------------------------------------------------------------
# Manifest and output
# ----------------------------------------------------------------------------------------------

def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def record(v: Vec, kind: str) -> dict:
    rec: dict = {"file": f"{kind}/{v.name}.vit", "file_sha256": sha256(v.data), "description": v.description}
    if kind == "valid":
        rec["version"] = v.version
        rec["names"] = v.names
        if v.trusted:
            rec["trusted"] = v.trusted
        rec["untrusted"] = v.untrusted
        if v.load_error:
            rec["load_error"] = v.load_error
        else:
            rec["value"] = v.value
    else:
        rec["python"] = v.python
        rec["errc"] = v.errc
    return rec


def manifest_text(vs: list[Vec], ivs: list[Vec]) -> str:
    doc = {
        "schema": MANIFEST_SCHEMA,
        "generator": "tests/vectors/objects/generate.py",
        "spec": "docs/OBJECTS.md",
        "notes": ("valid: decoding must succeed; 'value' describes the loaded value (see generate.py's "
                  "docstring), 'names' the referenced type and function names that the trust check "
                  "covers, 'untrusted' what get_untrusted_types returns when the caller adds 'trusted'; "
                  "'load_error': load refuses the file with this Python exception although it decodes. "
                  "invalid: decoding must fail with the Python exception class 'python' and the error "
                  "code 'errc'."),
        "valid": [record(v, "valid") for v in vs],
        "invalid": [record(v, "invalid") for v in ivs],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 on any missing or differing file")
    args = ap.parse_args(argv)
    vs, ivs = valid_vectors(), invalid_vectors()
    names = [v.name for v in vs + ivs]
    assert len(names) == len(set(names)), "duplicate vector names"
    files = {f"valid/{v.name}.vit": v.data for v in vs} | {f"invalid/{v.name}.vit": v.data for v in ivs}
    text = manifest_text(vs, ivs)
    problems, to_write = [], []
    for rel, data in files.items():
        path = HERE / rel
        if not path.exists():
            (problems.append(f"{rel}: missing") if args.check else to_write.append((path, data)))
        elif path.read_bytes() != data:
            problems.append(f"{rel}: differs from what this script generates (vectors are permanent: "
                            "add a new vector under a new name)")
    for sub in ("valid", "invalid"):
        for p in sorted((HERE / sub).glob("*.vit")):
            if f"{sub}/{p.name}" not in files:
                problems.append(f"{sub}/{p.name}: on disk but no longer generated (vectors are never removed)")
    mpath = HERE / "manifest.json"
    if mpath.exists():
        old, new = json.loads(mpath.read_text(encoding="utf-8")), json.loads(text)
        for section in ("valid", "invalid"):
            by_file = {r["file"]: r for r in new[section]}
            for r in old.get(section, []):
                if by_file.get(r["file"]) != r:
                    problems.append(f"manifest.json: record of {r['file']} would change or disappear")
    if args.check and (not mpath.exists() or mpath.read_text(encoding="utf-8") != text):
        problems.append("manifest.json is out of date")
    if problems:
        for p in problems:
            print("error:", p, file=sys.stderr)
        return 1
    for path, data in to_write:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    if not args.check:
        tmp = mpath.with_name(".manifest.json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, mpath)
    print(f"{len(vs)} valid and {len(ivs)} invalid object vectors: {len(to_write)} written"
          + (" (check only)" if args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
