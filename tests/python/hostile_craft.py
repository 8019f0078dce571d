"""Crafting hostile vitrify object files, and loading them in a jailed child process.

A crafted file starts as the ``vitrify.dumps`` image of a real fitted model; one field of its
object tree (or one array of its pool) is changed, and the file is written again with the
package's own low-level writer, so that the file is well formed (checksums, array table,
content section) and only the targeted field is hostile:

    doc = Doc.from_model(clf)
    tree = doc.first("sklearn.tree._tree.Tree")
    nodes = doc.get_array(doc.state(tree)["nodes"])
    nodes["left_child"][0] = 10**6
    doc.state(tree)["nodes"] = doc.put_array(nodes)
    data = doc.to_bytes()

or in one call, ``craft(clf, mutate)`` with ``mutate(doc)`` editing the document in place.

``run_jailed(path, runtime, methods, X)`` loads a file in a child forked from a pre-imported
server (multiprocessing's forkserver: one child per file, cheap to start) under a 1.5 GiB
address-space limit and a timeout, then calls the listed methods on ``X``. The outcome is one of
``refused`` (a vitrify.VitrifyError, with its class name), ``worked``, or a failure: ``error``
(any other exception, MemoryError included), ``signal`` (the child died) or ``timeout``.
"""

from __future__ import annotations

import base64
import gc
import json
import multiprocessing
import os
import resource
import signal
import time
from typing import Any, Callable

import numpy as np

import vitrify
import vitrify.native
from vitrify import _core, arrays as _arrays

AS_LIMIT = 3 << 29          # 1.5 GiB of address space for the child
TIMEOUT = 10.0              # seconds; a hang fails the case
_ALIGN = 64
# What the C++ runtime implements (vitrify.native.NativeModel); other names are Python-only.
NATIVE_METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples")


def obj(type_name: str, state: Any) -> dict:
    """An encoded ``$object`` node."""
    return {"$object": {"type": type_name, "version": 1, "state": state}}


def glob(name: str) -> dict:
    """An encoded reference to a class or function (``vitrify.global``)."""
    return obj("vitrify.global", name)


def dtype_desc(dt: np.dtype) -> dict:
    """The ``dtypes`` table entry of a structured dtype of plain numeric fields."""
    return {"fields": [[n, dt.fields[n][0].str, int(dt.fields[n][1])] for n in dt.names],
            "itemsize": int(dt.itemsize), "aligned": bool(dt.isalignedstruct)}


def _dtype_from_desc(d: dict) -> np.dtype:
    f = d["fields"]
    return np.dtype({"names": [x[0] for x in f], "formats": [x[1] for x in f],
                     "offsets": [x[2] for x in f], "itemsize": d["itemsize"]})


class RawJSON:
    """JSON text spliced verbatim into the written tree: for nesting deeper than json.dumps
    (or any Python recursion) can produce."""

    def __init__(self, text: str):
        self.text = text


def nested(depth: int, open_: str, close: str, inner: str = "0") -> RawJSON:
    """``open_`` * depth + inner + ``close`` * depth, without recursion."""
    return RawJSON("".join((open_ * depth, inner, close * depth)))


class Doc:
    """A vitrify object file taken apart: the content section, the packed tree (``body``:
    ``root``, ``keys``, ``dtypes``), the pool bytes and any other array of the file."""

    def __init__(self, data: bytes):
        f = _core.File.from_bytes(data, True)
        self.content = json.loads(f.content_json)
        env = f.environment_json
        self.environment = env if env and env != "null" else None
        arrays = vitrify.load_arrays_from_bytes(data, copy=True)
        self.body = json.loads(bytes(arrays.pop("content")))
        self.pool = bytearray(arrays.pop("pool").tobytes()) if "pool" in arrays else bytearray()
        self.arrays = arrays            # other arrays (strings...), copied through unchanged
        self._shared: dict[int, Any] = {}
        self._walk(self.body["root"], [])   # registers $shared values

    @classmethod
    def from_model(cls, model: Any) -> "Doc":
        return cls(vitrify.dumps(model))

    # -- navigation --
    def _walk(self, v: Any, out: list) -> list:
        stack = [v]
        while stack:
            x = stack.pop()
            if type(x) is list:
                stack.extend(reversed(x))
            elif type(x) is dict:
                if "$shared" in x and len(x) == 1:
                    self._shared[x["$shared"]["id"]] = x["$shared"]["value"]
                if "$object" in x and len(x) == 1 and type(x["$object"]) is dict:
                    out.append(x["$object"])
                stack.extend(reversed(list(x.values())))
        return out

    def objects(self, type_name: str | None = None) -> list[dict]:
        """The ``$object`` specs (``{"type", "version", "state"}``) in document order."""
        return [s for s in self._walk(self.body["root"], [])
                if type_name is None or s["type"] == type_name]

    def first(self, type_name: str) -> dict:
        found = self.objects(type_name)
        if not found:
            raise LookupError(f"no {type_name} in the document")
        return found[0]

    def deref(self, node: Any) -> Any:
        """A node with ``$shared`` / ``$ref`` wrappers resolved."""
        while type(node) is dict and len(node) == 1:
            if "$shared" in node:
                node = node["$shared"]["value"]
            elif "$ref" in node:
                node = self._shared[node["$ref"]]
            else:
                break
        return node

    def state(self, spec: dict) -> Any:
        """The reduce state of an object node as a mutable plain value. A shared key list
        (``"k": i, "s": [values]``) is turned into a plain dict state in place, which is an
        equally valid encoding, so that keys can be edited, added or removed."""
        st = spec["state"]
        if type(st) is dict and "k" in st:
            keys = self.body["keys"][st.pop("k")]
            st["s"] = dict(zip(keys, st["s"]))
        s = st.get("s") if type(st) is dict else None
        if type(s) is dict and set(s) == {"$tuple"}:
            return s["$tuple"]
        return s

    # -- arrays --
    def get_array(self, node: Any) -> np.ndarray:
        """A fresh copy of an encoded numeric array (pooled or inline)."""
        spec = self.deref(node)["$object"]
        assert spec["type"] == "numpy.ndarray", spec["type"]
        st = spec["state"]
        t = st["t"]
        dt = _dtype_from_desc(self.body["dtypes"][t]) if type(t) is int else np.dtype(t)
        if "p" in st:
            off, n = st["p"]
            raw = bytes(self.pool[off:off + n])
        else:
            raw = base64.b64decode(st["b"])
        a = np.frombuffer(raw, dtype=dt).reshape(st["s"]).copy()
        return a.T.copy() if st.get("o") == "F" else a

    def put_array(self, a: np.ndarray, *, shape: list | None = None, dtype: Any = None) -> dict:
        """An encoded array node whose bytes are appended to the pool. ``shape`` / ``dtype``
        override what the node declares (to lie about the data)."""
        a = np.ascontiguousarray(a)
        raw = a.reshape(-1).view(np.uint8).tobytes()
        self.pool.extend(b"\0" * (-len(self.pool) % _ALIGN))
        off = len(self.pool)
        self.pool.extend(raw)
        return obj("numpy.ndarray", {"p": [off, len(raw)], "t": self.dtype_ref(a.dtype if dtype is None else dtype),
                                     "s": list(a.shape) if shape is None else list(shape)})

    def dtype_ref(self, dt: Any) -> Any:
        if isinstance(dt, (str, int, dict)):
            if isinstance(dt, dict):
                self.body.setdefault("dtypes", []).append(dt)
                return len(self.body["dtypes"]) - 1
            return dt
        dt = np.dtype(dt)
        if dt.names is None:
            return dt.str
        return self.dtype_ref(dtype_desc(dt))

    # -- output --
    def _dump_body(self) -> str:
        raws: list[str] = []

        def splice(o: Any) -> str:
            if not isinstance(o, RawJSON):
                raise TypeError(f"cannot write {type(o).__name__}")
            raws.append(o.text)
            return f"\x00raw{len(raws) - 1}\x00"

        text = json.dumps(self.body, separators=(",", ":"), allow_nan=False, default=splice)
        for i, r in enumerate(raws):
            text = text.replace(json.dumps(f"\x00raw{i}\x00"), r, 1)
        return text

    def to_bytes(self) -> bytes:
        w = _core.Writer.create_in_memory(64)
        try:
            for name, a in self.arrays.items():
                _arrays._add_one(w, name, a, ("raw", 0))
            if self.pool:
                w.add_array("pool", "uint8", [len(self.pool)], np.frombuffer(bytes(self.pool), np.uint8), "raw", 0, None)
            text = self._dump_body().encode()
            w.add_array("content", "uint8", [len(text)], np.frombuffer(text, np.uint8), "raw", 0, None)
            content = dict(self.content)
            if not self.pool:
                content.pop("pool", None)
            w.set_content(json.dumps(content, separators=(",", ":")))
            if self.environment:
                w.set_environment(self.environment)
            w.commit()
            return w.take_bytes()
        finally:
            w.close()


def craft(model: Any, mutate: Callable[[Doc], Any]) -> bytes:
    """The file of ``model`` with ``mutate(doc)`` applied to its decoded document."""
    doc = Doc.from_model(model)
    mutate(doc)
    return doc.to_bytes()


def raw_body(root: Any, pool: bytes = b"", keys: list | None = None, dtypes: list | None = None) -> bytes:
    """A file whose object tree is exactly ``root`` (for trees no model produces)."""
    doc = Doc(vitrify.dumps(None))
    doc.body = {"root": root, "keys": keys or [], "dtypes": dtypes or []}
    doc.pool = bytearray(pool)
    doc.content["version"] = 3
    doc.content["pool"] = {"$array": "pool"}
    doc.content["packed"] = {"$array": "content"}
    return doc.to_bytes()


# ------------------------------------------------------------------------------------------
# The jailed child
# ------------------------------------------------------------------------------------------

def _child(path: str, runtime: str, methods: list, X: Any, conn: Any) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    stage = "load"
    m = None
    try:
        if runtime == "selftest":
            m = _SelfTest()
            has = lambda name: True   # noqa: E731
        elif runtime == "native":
            m = vitrify.native.load(path)
            has = lambda name: name in NATIVE_METHODS and m.supports(name)   # noqa: E731
        else:
            m = vitrify.load(path, check_env=False)
            has = lambda name: hasattr(m, name)   # noqa: E731
        ran = []
        for name in methods:
            if has(name):
                stage = name
                getattr(m, name)(X)
                ran.append(name)
        result = ("worked", type(m).__name__ + (f" ran {','.join(ran)}" if ran else ""))
    except vitrify.VitrifyError as e:
        result = ("refused", f"{type(e).__name__} at {stage}: {str(e)[:200]}")
    except BaseException as e:  # noqa: BLE001 - every other outcome is the finding
        result = ("error", f"{type(e).__name__} at {stage}: {str(e)[:200]}")
    # Free everything the load built before answering: a corrupted heap shows up here (as a
    # signal) rather than going unnoticed after the answer.
    del m
    gc.collect()
    conn.send(result)


class _SelfTest:
    """Misbehaviours the jail must tell apart from a refusal (tests of the harness)."""

    def _hc_crash(self, X):
        os.kill(os.getpid(), signal.SIGSEGV)

    def _hc_hang(self, X):
        time.sleep(3600)

    def _hc_memory(self, X):
        return bytearray(2**33)


_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        # Single-threaded BLAS in the server: children are forked from it, and fork after
        # threads is unsafe; it also keeps the child's address space small.
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = "1"
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(["hostile_craft", "sklearn.ensemble", "sklearn.neighbors",
                                     "sklearn.svm", "sklearn.cluster", "sklearn.linear_model",
                                     "sklearn.tree", "scipy.sparse", "vitrify.native"])
    return _ctx


def run_jailed(path: str, runtime: str, methods: list, X: Any) -> tuple[str, str]:
    """(outcome, detail) of loading ``path`` with ``runtime`` ("python" or "native") in a
    child, then calling ``methods`` on ``X``."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(path, runtime, methods, X, send))
    p.start()
    send.close()
    try:
        if recv.poll(TIMEOUT):
            try:
                result = recv.recv()
            except EOFError:
                result = None
        else:
            result = ("timeout", f"no answer after {TIMEOUT:.0f} s")
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
            if result is None or result[0] == "timeout":
                return ("timeout", f"no answer after {TIMEOUT:.0f} s")
        if p.exitcode is not None and p.exitcode < 0:
            return ("signal", f"child died (signal {-p.exitcode})"
                    + (f" after answering {result[0]}: {result[1]}" if result else ""))
        if result is None:
            return ("signal", f"child died (exit code {p.exitcode})")
        return result
    finally:
        recv.close()
