"""Golden test vectors (tests/vectors): the Python API and the `vitrify` CLI against the manifest.

* every valid vector opens, verifies, and yields exactly the recorded arrays (SHA-256 of the
  decoded bytes, dtype, shape, strings) and typed sections, through every loading path;
* every invalid vector fails with exactly the recorded stable error code (``exc.code_name``),
  at open or at verify as recorded, from a path and from bytes alike;
* ``vitrify verify`` agrees on every vector (skipped only when the CLI binary is not built).

The vectors are permanent; tests/vectors/generate.py --check proves they are what the generator
makes. See tests/vectors/manifest.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vitrify
from vitrify import _core
from vitrify.errors import CODES, VitrifyError

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
VALID = MANIFEST["valid"]
INVALID = MANIFEST["invalid"]
SECTIONS = ("metadata", "environment", "provenance", "content")


def _id(rec: dict) -> str:
    return Path(rec["file"]).stem


def _path(rec: dict) -> str:
    return str(VECTORS / rec["file"])


def _sha(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def _same(a, b) -> bool:
    """Deep equality of decoded typed values: NaN equals NaN, -0.0 differs from 0.0, types match."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        ia, ib = list(a.items()), list(b.items())
        return len(ia) == len(ib) and all(_same(ka, kb) and _same(va, vb) for (ka, va), (kb, vb) in zip(ia, ib))
    if dataclasses.is_dataclass(a):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


# ----------------------------------------------------------------------------------------------
# The vector set itself
# ----------------------------------------------------------------------------------------------

def test_manifest_lists_every_vector_file_unchanged():
    listed = {r["file"]: r["file_sha256"] for r in VALID + INVALID}
    on_disk = {f"{p.parent.name}/{p.name}" for sub in ("valid", "invalid") for p in (VECTORS / sub).glob("*.vit")}
    assert on_disk == set(listed), "vector files and manifest.json disagree"
    changed = [f for f, h in listed.items() if _sha((VECTORS / f).read_bytes()) != h]
    assert not changed, f"vectors are permanent, but these changed: {changed}"
    for r in INVALID:
        assert r["error"] in CODES, r
        assert r["stage"] in ("open", "verify"), r


def test_generator_reproduces_the_vectors():
    pytest.importorskip("xxhash", reason="tests/vectors/generate.py needs the xxhash package")
    r = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ----------------------------------------------------------------------------------------------
# Valid vectors
# ----------------------------------------------------------------------------------------------

def _check_numpy(arr: np.ndarray, rec: dict, where: str) -> None:
    assert arr.shape == tuple(rec["shape"]), where
    if rec["dtype"] == "string":
        assert arr.reshape(-1).tolist() == rec["strings"], where
        return
    assert arr.dtype == vitrify.dtype_to_numpy(rec["dtype"]), where
    assert _sha(np.ascontiguousarray(arr).tobytes()) == rec["sha256"], where


@pytest.mark.parametrize("rec", VALID, ids=_id)
def test_valid_vector_file_api(rec):
    f = _core.File.open(_path(rec))
    assert tuple(f.version) == tuple(rec["version"])
    assert f.alignment == rec["alignment"]
    assert f.names() == [a["name"] for a in rec["arrays"]]
    for i, (info, a) in enumerate(zip(f.arrays, rec["arrays"])):
        where = f"{rec['file']}: array {a['name']!r}"
        assert info["dtype"] == a["dtype"], where
        assert tuple(info["shape"]) == tuple(a["shape"]), where
        assert info["codec"] == a["codec"], where
        assert info["decoded_length"] == a["decoded_length"], where
        out = np.empty(a["decoded_length"], np.uint8)
        f.read_into(i, out, True)
        assert _sha(out) == a["sha256"], where
        if a["codec"] == "raw":
            assert _sha(f.view(i, True)) == a["sha256"], where
        if a["dtype"] == "string":
            assert f.read_strings(i, True) == a["strings"], where
        want_attrs = a.get("attrs")
        if want_attrs is None:
            assert info["attrs"] is None, where
        else:
            assert info["attrs"] == _core.canonical_json(json.dumps(want_attrs)), where
    f.verify()
    for k in SECTIONS:
        got = getattr(f, f"{k}_json")
        want = rec[k]
        assert got == _core.canonical_json(json.dumps(want)), f"{rec['file']}: {k}"
    assert [tag.decode("ascii") for tag, _ in f.trailers] == rec["trailers"]


@pytest.mark.parametrize("rec", VALID, ids=_id)
def test_valid_vector_load_arrays(rec):
    path = _path(rec)
    data = Path(path).read_bytes()
    loads = {
        "mmap": lambda: vitrify.load_arrays(path),
        "mmap+verify": lambda: vitrify.load_arrays(path, verify=True),
        "copy": lambda: vitrify.load_arrays(path, mmap=False),
        "bytes": lambda: vitrify.load_arrays_from_bytes(data),
        "bytes+copy": lambda: vitrify.load_arrays_from_bytes(data, copy=True, verify=True),
    }
    for how, load in loads.items():
        got = load()
        assert list(got) == [a["name"] for a in rec["arrays"]], how
        for a in rec["arrays"]:
            _check_numpy(got[a["name"]], a, f"{rec['file']} ({how}): {a['name']!r}")


@pytest.mark.parametrize("rec", VALID, ids=_id)
def test_valid_vector_inspect_sections(rec):
    info = vitrify.inspect(_path(rec))
    assert info["version"] == tuple(rec["version"])
    assert [a["name"] for a in info["arrays"]] == [a["name"] for a in rec["arrays"]]
    for k in SECTIONS:
        want = vitrify.values.decode(json.dumps(rec[k]))
        assert _same(info[k], want), f"{rec['file']}: {k}: {info[k]!r} != {want!r}"
    for got, a in zip(info["arrays"], rec["arrays"]):
        want = vitrify.values.decode(json.dumps(a["attrs"])) if "attrs" in a else None
        assert _same(got["attrs"], want), f"{rec['file']}: attrs of {a['name']!r}"


@pytest.mark.parametrize("rec", [r for r in VALID if r["writer_canonical"]], ids=_id)
def test_writer_reproduces_canonical_vector(rec):
    """The library's writer, fed the same arrays and sections, writes the vector byte for byte."""
    f = _core.File.open(_path(rec))
    w = _core.Writer.create_in_memory(rec["alignment"])
    for i, a in enumerate(rec["arrays"]):
        data = np.empty(a["decoded_length"], np.uint8)
        f.read_into(i, data, True)
        attrs = _core.canonical_json(json.dumps(a["attrs"])) if "attrs" in a else None
        if a["dtype"] == "string":
            n = len(a["strings"]) + 1
            w.add_string_array(a["name"], a["shape"], data[:8 * n].view("<u8"), data[8 * n:], "raw", 0, attrs)
        else:
            w.add_array(a["name"], a["dtype"], a["shape"], data, "raw", 0, attrs)
    for k in SECTIONS:
        if rec[k] is not None:
            getattr(w, f"set_{k}")(_core.canonical_json(json.dumps(rec[k])))
    w.commit()
    assert w.take_bytes() == Path(_path(rec)).read_bytes()


# ----------------------------------------------------------------------------------------------
# Invalid vectors
# ----------------------------------------------------------------------------------------------

def _raises(fn, code: str, where: str) -> VitrifyError:
    with pytest.raises(VitrifyError) as ei:
        fn()
    e = ei.value
    assert e.code_name == code, f"{where}: expected {code}, got {e.code_name}: {e}"
    assert e.code == CODES[code], where
    return e


@pytest.mark.parametrize("rec", INVALID, ids=_id)
def test_invalid_vector(rec):
    path = _path(rec)
    data = Path(path).read_bytes()
    code = rec["error"]
    if rec["stage"] == "open":
        _raises(lambda: _core.File.open(path), code, "File.open")
        _raises(lambda: vitrify.load_arrays(path), code, "load_arrays")
        _raises(lambda: vitrify.inspect(path), code, "inspect")
        _raises(lambda: _core.File.from_bytes(data), code, "File.from_bytes")
        _raises(lambda: vitrify.load_arrays_from_bytes(data), code, "load_arrays_from_bytes")
        return
    f = _core.File.open(path)  # structure is sound: opening succeeds
    _raises(f.verify, code, "File.verify")
    _raises(_core.File.from_bytes(data).verify, code, "File.from_bytes(...).verify")
    load_error = rec.get("load_error")
    if load_error is not None:
        _raises(lambda: vitrify.load_arrays(path, mmap=False), load_error, "load_arrays(mmap=False)")
        _raises(lambda: vitrify.load_arrays(path, verify=True), load_error, "load_arrays(verify=True)")
        _raises(lambda: vitrify.load_arrays_from_bytes(data, verify=True), load_error,
                "load_arrays_from_bytes(verify=True)")


# ----------------------------------------------------------------------------------------------
# The command-line tool
# ----------------------------------------------------------------------------------------------

def _cli() -> str | None:
    env = os.environ.get("VITRIFY_CLI")
    if env:
        return env
    built = ROOT / "build" / "tools" / "vitrify" / "vitrify"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which("vitrify")


CLI = _cli()
needs_cli = pytest.mark.skipif(
    CLI is None, reason="vitrify CLI binary not found (build it with `make cpp`: build/tools/vitrify/vitrify, "
                        "or put `vitrify` on PATH, or set VITRIFY_CLI)")


@needs_cli
@pytest.mark.parametrize("rec", VALID, ids=_id)
def test_cli_verify_valid(rec):
    r = subprocess.run([CLI, "verify", _path(rec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"OK {_path(rec)}"


@needs_cli
@pytest.mark.parametrize("rec", INVALID, ids=_id)
def test_cli_verify_invalid(rec):
    r = subprocess.run([CLI, "verify", _path(rec)], capture_output=True, text=True)
    assert r.returncode == 1, (r.stdout, r.stderr)
    prefix = f"FAIL {_path(rec)}: {rec['error']}: "
    assert r.stderr.startswith(prefix), f"expected {prefix!r}..., got {r.stderr!r}"
