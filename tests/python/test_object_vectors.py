"""Golden object vectors (tests/vectors/objects/, docs/OBJECTS.md) through vitrify.load.

Valid files must load to the value their manifest describes (the description language is
documented in tests/vectors/objects/generate.py) and report the untrusted names the manifest
lists; invalid files must raise exactly the exception class and error code it names.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import xxhash

import vitrify

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "objects"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
# Invalid vectors use these names; trusting them leaves the defect as the only reason to fail.
INVALID_TRUSTED = ["types.SimpleNamespace"]


def _compact(d) -> str:
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


class _Describer:
    """A loaded value -> its manifest description; containers and objects met twice become
    {"shared": k, "value": ...} then {"ref": k}."""

    def __init__(self, root):
        self.count: dict[int, int] = {}
        self.keep: list = []          # keeps temporaries alive so that ids stay unique
        self.ids: dict[int, int] = {}
        self._walk(root)

    @staticmethod
    def _counted(x) -> bool:
        if type(x) is tuple:
            return len(x) > 0         # () is a singleton in CPython
        return isinstance(x, (list, dict, set, frozenset, np.ndarray, slice, range, bytearray,
                              np.random.RandomState, np.random.Generator)) or _is_instance_object(x)

    def _walk(self, root) -> None:
        stack = [root]
        while stack:
            x = stack.pop()
            if not self._counted(x):
                continue
            n = self.count.get(id(x), 0)
            self.count[id(x)] = n + 1
            self.keep.append(x)
            if n:
                continue
            if isinstance(x, (list, tuple, set, frozenset)):
                stack.extend(x)
            elif type(x) is dict:
                for k, v in x.items():
                    stack += [k, v]
            elif type(x) is np.ndarray and x.dtype.kind == "O":
                stack.extend(x.ravel().tolist())
            elif _is_instance_object(x):
                stack.append(vars(x))

    def __call__(self, x):
        if not self._counted(x) or self.count[id(x)] < 2:
            return self._describe(x)
        k = self.ids.get(id(x))
        if k is not None:
            return {"ref": k}
        k = self.ids[id(x)] = len(self.ids)
        return {"shared": k, "value": self._describe(x)}

    def _describe(self, x):
        d = self
        if x is None or type(x) is bool:
            return x
        if type(x) is int:
            return {"int": str(x)}
        if type(x) is float:
            return {"float": struct.pack(">d", x).hex()}
        if type(x) is str:
            return {"str": x}
        if type(x) is bytes:
            return {"bytes": x.hex()}
        if type(x) is list:
            return {"list": [d(e) for e in x]}
        if type(x) is tuple:
            return {"tuple": [d(e) for e in x]}
        if type(x) is dict:
            return {"dict": [[d(k), d(v)] for k, v in x.items()]}
        if type(x) in (set, frozenset):
            return {type(x).__name__: sorted((d(e) for e in x), key=_compact)}
        if type(x) is complex:
            return {"complex": [d(x.real), d(x.imag)]}
        if type(x) is slice:
            return {"slice": [_plain(x.start), _plain(x.stop), _plain(x.step)]}
        if type(x) is range:
            return {"range": [_plain(x.start), _plain(x.stop), _plain(x.step)]}
        if type(x) is bytearray:
            return {"bytearray": bytes(x).hex()}
        if isinstance(x, np.ma.MaskedArray):
            return {"masked_array": {"data": _array(np.ma.getdata(x), None),
                                     "mask": _array(np.ma.getmaskarray(x), None),
                                     "fill_value": _plain(x.fill_value)}}
        if type(x) is np.ndarray:
            return _array(x, d)
        if isinstance(x, (np.generic, np.dtype)):
            return _describe_np(x)
        if type(x) is np.random.RandomState:
            return {"random_state": _plain(x.get_state(legacy=True))}
        if type(x) is np.random.Generator:
            bg = x.bit_generator
            return {"generator": {"bit_generator": "numpy.random." + type(bg).__name__, "state": _plain(bg.state)}}
        if isinstance(x, np.ufunc):
            return {"global": "numpy." + x.__name__}
        if isinstance(x, (type, types.FunctionType, types.BuiltinFunctionType)):
            return {"global": f"{x.__module__}.{x.__qualname__}"}
        if _is_instance_object(x):
            t = type(x)
            return {"object": {"type": f"{t.__module__}.{t.__qualname__}", "state": d(vars(x))}}
        raise AssertionError(f"no description for {type(x)!r}")


def _is_instance_object(x) -> bool:
    return hasattr(x, "__dict__") and not isinstance(x, (type, types.FunctionType, types.ModuleType, np.ndarray))


def _plain(x):
    """A value reached only through a special type's state (never shared): no counting."""
    return _Describer(x)(x)


def _le(a: np.ndarray) -> bytes:
    if a.dtype.fields is None and a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes()


def _fields(dt: np.dtype) -> list:
    return [[n, dt.fields[n][0].str, int(dt.fields[n][1])] for n in dt.names]


def _array(a: np.ndarray, d) -> dict:
    out: dict = {"dtype": a.dtype.str, "shape": list(a.shape)}
    kind = a.dtype.kind
    flat = a.ravel().tolist() if kind in "OSU" else None
    if kind == "U" or (kind == "O" and flat and all(type(s) is str for s in flat)):
        out["strings"] = flat
    elif kind == "S":
        out["bytes"] = [s.hex() for s in flat]
    elif kind == "O":
        out["items"] = [(d or _plain)(e) for e in flat]
    else:
        out["xxh3"] = f"{xxhash.xxh3_64_intdigest(_le(a)):016x}"
    if a.dtype.fields is not None:
        out["fields"] = _fields(a.dtype)
    return {"ndarray": out}


def _describe_np(x):
    if isinstance(x, np.dtype):
        out: dict = {"str": x.str}
        if x.fields is not None:
            out["fields"] = _fields(x)
        return {"dtype": out}
    return {"scalar": {"dtype": x.dtype.str, "hex": _le(np.asarray(x)).hex()}}


def describe(x):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))  # the depth-256 vector nests 256 lists: ~3 frames each
    try:
        return _Describer(x)(x)
    finally:
        sys.setrecursionlimit(old)


def _ids(section):
    return [r["file"].split("/", 1)[1][:-4] for r in MANIFEST[section]]


def test_generator_check_passes():
    r = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("rec", MANIFEST["valid"], ids=_ids("valid"))
@pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "copy"])
def test_valid_vector(rec, mmap):
    path = VECTORS / rec["file"]
    trusted = rec.get("trusted")
    assert vitrify.get_untrusted_types(path) == sorted(set(rec["untrusted"]) | set(trusted or ()))
    assert vitrify.get_untrusted_types(path, trusted=trusted) == rec["untrusted"]
    if "load_error" in rec:
        with pytest.raises(vitrify.VitrifyError) as ei:
            vitrify.load(path, trusted=trusted, mmap=mmap, check_env=False)
        assert type(ei.value).__name__ == rec["load_error"]
        return
    obj = vitrify.load(path, trusted=trusted, mmap=mmap, check_env=False)
    assert describe(obj) == rec["value"]


@pytest.mark.parametrize("rec", MANIFEST["invalid"], ids=_ids("invalid"))
def test_invalid_vector(rec):
    path = VECTORS / rec["file"]
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify.load(path, trusted=INVALID_TRUSTED, check_env=False)
    got = (type(ei.value).__name__, ei.value.code_name)
    assert got == (rec["python"], rec["errc"]), str(ei.value)
