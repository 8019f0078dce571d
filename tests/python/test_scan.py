"""vitrify.scan / `vitrify scan`: the non-executing pickle reader judged on payloads built here
(os.system reached through every opcode path pickle has) and on benign files written by
scikit-learn, joblib, numpy and PyTorch in this test run. Nothing in this file ever unpickles
a payload: the payload classes below only define __reduce__, which runs at dump time."""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import warnings
import zipfile

import numpy as np
import pytest

import vitrify
from vitrify import legacy

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CLI = shutil.which("vitrify") or os.path.join(ROOT, "build", "tools", "vitrify", "vitrify")


class Evil:
    """Pickles as os.system('true'): a REDUCE of os.system (module name posix on Linux)."""

    def __reduce__(self):
        return (os.system, ("true",))


SYSTEM = f"{os.system.__module__}.system"  # "posix.system"


def scan(data: bytes, tmp_path, name="f.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    return legacy.scan(p)


def assert_malicious(r, name=SYSTEM):
    assert r.verdict == "malicious", r
    assert name in r.dangerous, r
    assert name in r.globals


# ---------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_reduce_os_system_every_protocol(tmp_path, proto):
    r = scan(pickle.dumps(Evil(), protocol=proto), tmp_path)
    assert_malicious(r)
    assert r.format == "pickle"
    calls = [c for c in r.calls if c.callee == SYSTEM]
    assert calls and calls[0].opcode == "REDUCE" and "'true'" in calls[0].args and not calls[0].handled


@pytest.mark.parametrize("proto", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_os_system_nested_in_benign_data(tmp_path, proto):
    payload = {"coef": np.arange(3.0), "meta": [1, 2, {"x": Evil()}]}
    assert_malicious(scan(pickle.dumps(payload, protocol=proto), tmp_path))


def op_unicode(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def test_stack_global_with_names_from_the_memo(tmp_path):
    # 'os' and 'system' are pushed, memoized and popped, then fetched back from the memo.
    data = (b"\x80\x04" + op_unicode("os") + b"\x94" + op_unicode("system") + b"\x94" + b"00"
            + b"h\x00h\x01\x93" + op_unicode("true") + b"\x85R.")
    assert pickle.loads.__name__  # (never called on payloads)
    r = scan(data, tmp_path)
    assert_malicious(r, "os.system")
    assert r.complete


def test_inst_opcode(tmp_path):
    r = scan(b"(S'true'\nios\nsystem\n.", tmp_path)
    assert_malicious(r, "os.system")
    assert any(c.opcode == "INST" and c.callee == "os.system" for c in r.calls)


def test_obj_opcode(tmp_path):
    r = scan(b"\x80\x01(cos\nsystem\nS'true'\no.", tmp_path)
    assert_malicious(r, "os.system")
    assert any(c.opcode == "OBJ" for c in r.calls)


def test_obj_result_discarded_by_pop_is_still_reported(tmp_path):
    # fickling GHSA-mxhj-88fx-4pcv: an OBJ whose result is popped left no trace in the output.
    r = scan(b"\x80\x01(cos\nsystem\nS'true'\no0N.", tmp_path)
    assert_malicious(r, "os.system")


def test_newobj_ex(tmp_path):
    data = (b"\x80\x04" + op_unicode("subprocess") + op_unicode("Popen") + b"\x93"
            + op_unicode("true") + b"\x85" + b"}" + b"\x92.")
    r = scan(data, tmp_path)
    assert_malicious(r, "subprocess.Popen")
    assert any(c.opcode == "NEWOBJ_EX" and c.callee == "subprocess.Popen" for c in r.calls)


@pytest.mark.parametrize("code, opcode", [(0xF0, b"\x82"), (0x1234, b"\x83"), (0x123456, b"\x84")])
def test_ext_codes(tmp_path, code, opcode):
    copyreg.add_extension(os.system.__module__, "system", code)
    try:
        data = pickle.dumps(Evil(), protocol=2)
    finally:
        copyreg.remove_extension(os.system.__module__, "system", code)
    assert opcode in data and b"system" not in data  # the name itself is not in the file
    r = scan(data, tmp_path)
    assert r.verdict != "clean"
    assert r.verdict == "inconclusive"
    assert f"copyreg.extension.{code}" in r.globals
    assert any("EXT code" in p for p in r.problems)
    assert any(c.callee == f"copyreg.extension.{code}" for c in r.calls)


def framed(body: bytes, declared: int) -> bytes:
    return b"\x80\x04\x95" + struct.pack("<Q", declared) + body


def test_frame_whose_length_lies(tmp_path):
    body = op_unicode("os") + op_unicode("system") + b"\x93" + op_unicode("true") + b"\x85R."
    honest = scan(framed(body, len(body)), tmp_path, "honest.pkl")
    assert_malicious(honest, "os.system")
    assert honest.complete
    # An opcode crossing the frame's end (3, 5), a frame longer than the data (len + 1, 2**40).
    # A frame that ends exactly between two opcodes is legal: later opcodes may be unframed.
    for declared in (3, 5, len(body) + 1, 1 << 40):
        r = scan(framed(body, declared), tmp_path, f"lie{declared}.pkl")
        assert_malicious(r, "os.system")
        assert not r.complete
        assert any("FRAME" in p for p in r.problems), r.problems


def test_payload_hidden_after_a_short_frame(tmp_path):
    # A frame holding a harmless value, then the payload outside any frame.
    benign = b"N"
    data = framed(benign, 1)[:-0 or None] + b"0" + op_unicode("os") + op_unicode("system") + b"\x93" \
        + op_unicode("true") + b"\x85R."
    assert_malicious(scan(data, tmp_path), "os.system")


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_payload_appended_after_stop(tmp_path, proto):
    data = pickle.dumps({"ok": 1}, protocol=proto) + pickle.dumps(Evil(), protocol=proto)
    r = scan(data, tmp_path)
    assert_malicious(r)
    assert not r.complete
    assert any("after STOP" in p for p in r.problems)


def test_garbage_after_stop_is_inconclusive(tmp_path):
    r = scan(pickle.dumps([1, 2, 3], protocol=4) + b"\x00garbage", tmp_path)
    assert r.verdict == "inconclusive"


def test_truncated_after_dangerous_global(tmp_path):
    data = pickle.dumps(Evil(), protocol=4)
    r = scan(data[: data.index(b"system") + 8], tmp_path)
    assert_malicious(r)
    assert not r.complete


def test_build_on_a_global_and_setitem_on_non_containers(tmp_path):
    # BUILD on a class would set its attributes; SETITEM on a class would call __setitem__.
    build = b"\x80\x02ccollections\nOrderedDict\n}(U\x01xK\x01ub."
    r = scan(build, tmp_path, "build.pkl")
    assert r.verdict == "inconclusive" and any("BUILD on a global" in p for p in r.problems)
    setitem = b"\x80\x02ccollections\nOrderedDict\nU\x01xK\x01s."
    r = scan(setitem, tmp_path, "setitem.pkl")
    assert r.verdict == "inconclusive" and any("SETITEM" in p for p in r.problems)


def test_dotted_attribute_walks_are_dangerous(tmp_path):
    for mod, name in [("sklearn", "base.os.system"), ("numpy", "__builtins__"), ("collections", "os.system"),
                      ("builtins", "getattr"), ("__builtin__", "eval"), ("numpy.testing._private.utils", "runstring")]:
        data = b"\x80\x04" + op_unicode(mod) + op_unicode(name) + b"\x93."
        r = scan(data, tmp_path)
        assert r.verdict == "malicious", (mod, name, r)


class CallsKernel:
    """Pickles (and dumps) as a call of a trusted scikit-learn compute kernel: the kernel is on
    the trusted list as a name, but load only keeps trusted functions as references."""

    def __reduce__(self):
        from sklearn.cluster._kmeans import _kmeans_single_lloyd
        return (_kmeans_single_lloyd, (1, 2, 3))


KERNEL = "sklearn.cluster._kmeans._kmeans_single_lloyd"


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_call_of_a_trusted_compute_kernel_is_not_clean(tmp_path, proto):
    r = scan(pickle.dumps(CallsKernel(), protocol=proto), tmp_path)
    assert r.verdict == "suspicious", r
    assert r.refused_calls == (KERNEL,), r
    assert not r.dangerous and not r.unknown
    assert [c for c in r.calls if c.callee == KERNEL and not c.handled]


def test_reference_to_a_trusted_function_is_clean(tmp_path):
    # A FunctionTransformer's func: the function is a value (GLOBAL), never called.
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils import check_array

    r = scan(pickle.dumps(FunctionTransformer(func=check_array), protocol=4), tmp_path)
    assert r.verdict == "clean", r
    assert r.refused_calls == ()


def test_vit_file_calling_a_kernel_is_reported_as_load_would_refuse_it(tmp_path):
    p = tmp_path / "k.vit"
    vitrify.dump({"model": CallsKernel()}, p)
    r = legacy.scan(p)
    assert r.verdict == "suspicious", r
    assert KERNEL in r.refused_calls
    with pytest.raises(vitrify.VitrifyError):
        vitrify.load(p)
    # The CLI says the same, and exits 1 (suspicious).
    out = subprocess.run([CLI, "scan", str(p)], capture_output=True, text=True)
    assert out.returncode == 1, out
    assert f"refused    {KERNEL} (load never calls it)" in out.stdout


def test_unknown_global_is_suspicious(tmp_path):
    import fractions

    r = scan(pickle.dumps(fractions.Fraction(1, 3), protocol=4), tmp_path)
    assert r.verdict == "suspicious"
    assert r.unknown == ("fractions.Fraction",)
    assert r.complete


def test_out_of_band_buffers_are_inconclusive(tmp_path):
    buffers = []
    data = pickle.dumps(np.arange(1000.0), protocol=5, buffer_callback=buffers.append)
    assert buffers
    r = scan(data, tmp_path)
    assert r.verdict == "inconclusive"
    assert any("out-of-band" in p for p in r.problems)


def test_unknown_opcode_and_empty_file(tmp_path):
    assert scan(b"\x80\x04\xff.", tmp_path).verdict == "inconclusive"
    assert scan(b"", tmp_path, "empty").verdict == "inconclusive"
    assert scan(os.urandom(256), tmp_path, "random").verdict in ("inconclusive", "malicious", "suspicious")


def test_joblib_object_array_payload(tmp_path):
    joblib = pytest.importorskip("joblib")
    arr = np.empty(2, dtype=object)
    arr[0] = "label"
    arr[1] = Evil()
    p = tmp_path / "evil.joblib"
    joblib.dump({"classes_": arr, "coef_": np.arange(4.0)}, p)
    r = legacy.scan(p)
    assert r.format == "joblib"
    assert_malicious(r)
    assert any("object array" in s for s in r.streams)
    p3 = tmp_path / "evil3.joblib"
    joblib.dump({"classes_": arr}, p3, compress=3)
    assert_malicious(legacy.scan(p3))


def torch_zip(pkl: bytes, extra: dict | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for k, v in (extra or {}).items():
            z.writestr(k, v)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def test_torch_data_pkl_payload(tmp_path):
    r = scan(torch_zip(pickle.dumps({"w": Evil()}, protocol=2)), tmp_path, "evil.pt")
    assert r.format == "torch_zip"
    assert_malicious(r)
    assert "archive/data.pkl" in r.streams


def test_torch_storage_size_mismatch(tmp_path):
    # A storage whose record holds fewer bytes than its reference declares.
    pkl = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storageq\x00ctorch\nFloatStorage\n"
           b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR.")
    r = scan(torch_zip(pkl, {"archive/data/0": b"\x00" * 8}), tmp_path, "bad.pt")
    assert r.verdict == "inconclusive", r
    assert any("storage" in p for p in r.problems)
    ok = scan(torch_zip(pkl, {"archive/data/0": b"\x00" * 16}), tmp_path, "ok.pt")
    assert ok.verdict == "clean", ok


def test_npy_with_pickled_objects(tmp_path):
    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    p = tmp_path / "evil.npy"
    np.save(p, arr, allow_pickle=True)
    r = legacy.scan(p)
    assert r.format == "npy"
    assert_malicious(r)
    q = tmp_path / "evil.npz"
    np.savez(q, a=np.arange(3), b=arr)
    r = legacy.scan(q)
    assert r.format == "npz"
    assert_malicious(r)


def test_legacy_torch_tar_payload(tmp_path):
    import tarfile

    p = tmp_path / "legacy.tar"
    with tarfile.open(p, "w") as t:
        for name, data in [("sys_info", pickle.dumps({"little_endian": True}, 2)),
                           ("pickle", pickle.dumps(Evil(), 2))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    r = legacy.scan(p)
    assert r.format == "torch_tar"
    assert_malicious(r)


# ---------------------------------------------------------------------------------------------
# Benign files
# ---------------------------------------------------------------------------------------------

def _estimators():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    labels = np.array(["a", "b"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels),
            RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
            GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, labels),
            HistGradientBoostingClassifier(max_iter=3).fit(X, y),
            OneHotEncoder().fit(np.array([["x", 1], ["y", 2]], dtype=object)),
        ]


@pytest.fixture(scope="module")
def estimators():
    return _estimators()


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_sklearn_pickles_are_clean(tmp_path, estimators, proto):
    for i, est in enumerate(estimators):
        r = scan(pickle.dumps(est, protocol=proto), tmp_path, f"e{i}.pkl")
        assert r.verdict == "clean", (type(est).__name__, str(r))
        assert r.complete and r.format == "pickle"
        assert f"{type(est).__module__}.{type(est).__qualname__}" in r.globals


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3)])
def test_joblib_files_are_clean(tmp_path, estimators, compress):
    joblib = pytest.importorskip("joblib")
    for i, est in enumerate(estimators):
        p = tmp_path / f"e{i}.joblib"
        joblib.dump(est, p, compress=compress)
        r = legacy.scan(p)
        assert r.verdict == "clean", (type(est).__name__, compress, str(r))
        assert r.format == "joblib"
        assert "joblib.numpy_pickle.NumpyArrayWrapper" in r.globals


def test_joblib_graph_equals_the_pickle_graph(tmp_path, estimators):
    """The reader's graph of a joblib file equals its graph of the same object pickled: the
    array payloads after the wrappers' BUILD were found (protocol 4 is joblib's default)."""
    joblib = pytest.importorskip("joblib")
    for i, est in enumerate(estimators):
        (tmp_path / "a.pkl").write_bytes(pickle.dumps(est, protocol=4))
        for compress in (0, 3):
            joblib.dump(est, tmp_path / "a.joblib", compress=compress)
            g1 = vitrify._core._legacy_graph(str(tmp_path / "a.pkl"))
            g2 = vitrify._core._legacy_graph(str(tmp_path / "a.joblib"))
            assert g1["complete"] and g2["complete"], g2["problems"]
            assert g1["root"] == g2["root"]


def test_reader_graph_matches_vitrify_dump(tmp_path, estimators):
    """The pickle reader produces the same object graph as the decoder of a vitrify.dump file
    of the same estimator (canonical type names, states, arrays byte for byte)."""

    def norm(x):
        if isinstance(x, dict):
            if "set" in x or "frozenset" in x:
                k = "set" if "set" in x else "frozenset"
                return {k: sorted(map(repr, (norm(i) for i in x[k])))}
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(norm(i) for i in x)
        return x

    for i, est in enumerate(estimators):
        vitrify.dump(est, tmp_path / "e.vit")
        want = norm(vitrify._core._vitrify_graph(str(tmp_path / "e.vit")))
        for proto in (2, 5):
            (tmp_path / "e.pkl").write_bytes(pickle.dumps(est, protocol=proto))
            got = vitrify._core._legacy_graph(str(tmp_path / "e.pkl"))
            assert got["complete"], got["problems"]
            assert norm(got["root"]) == want, (type(est).__name__, proto)


def test_numpy_files_are_clean(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(12.0).reshape(3, 4))
    assert legacy.scan(p).verdict == "clean"
    q = tmp_path / "a.npz"
    np.savez_compressed(q, a=np.arange(3), b=np.array(["x", "yy"]))
    r = legacy.scan(q)
    assert r.verdict == "clean" and r.format == "npz", r


def test_safetensors_and_vitrify_files(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    good = struct.pack("<Q", len(header)) + header + b"\x00" * 8
    r = scan(good, tmp_path, "a.safetensors")
    assert r.format == "safetensors" and r.verdict == "clean"
    bad_header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}).encode()
    bad = struct.pack("<Q", len(bad_header)) + bad_header + b"\x00" * 8
    assert scan(bad, tmp_path, "b.safetensors").verdict == "inconclusive"
    vitrify.save_arrays(tmp_path / "a.vit", {"w": np.ones(3)})
    r = legacy.scan(tmp_path / "a.vit")
    assert r.format == "vitrify" and r.verdict == "clean"


def test_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3, dtype=torch.bfloat16),
          "t": torch.arange(6.0).reshape(2, 3).t(), "lin": torch.nn.Linear(3, 2).state_dict()}
    torch.save(sd, tmp_path / "sd.pt")
    r = legacy.scan(tmp_path / "sd.pt")
    assert r.format == "torch_zip" and r.verdict == "clean", str(r)
    torch.save(torch.nn.Linear(3, 2), tmp_path / "module.pt")  # a whole module pickles its class
    r = legacy.scan(tmp_path / "module.pt")
    assert r.verdict == "suspicious" and "torch.nn.modules.linear.Linear" in r.unknown


def test_detect_format_by_content(tmp_path):
    assert legacy.detect_format(pickle.dumps(1, protocol=2)) == "pickle"
    assert legacy.detect_format(pickle.dumps({"a": [1, 2]}, protocol=0)) == "pickle"
    assert legacy.detect_format(b"\x93NUMPY\x01\x00") == "npy"
    assert legacy.detect_format(torch_zip(b"\x80\x02N.")) == "torch_zip"
    assert legacy.detect_format(b"hello world, not a model") == "unknown"
    # the name says .pkl, the content is a vitrify file
    vitrify.save_arrays(tmp_path / "x.pkl", {"w": np.ones(3)})
    assert legacy.detect_format(tmp_path / "x.pkl") == "vitrify"


def test_classify_name():
    assert legacy.classify_name("numpy.ndarray") == "safe"
    assert legacy.classify_name("sklearn.linear_model._logistic.LogisticRegression") == "safe"
    assert legacy.classify_name("numpy.core.multiarray._reconstruct") == "safe"
    assert legacy.classify_name("__builtin__.set") == "safe"
    assert legacy.classify_name("posix.system") == "dangerous"
    assert legacy.classify_name("__builtin__.eval") == "dangerous"
    assert legacy.classify_name("sklearn.utils.os.system") == "dangerous"
    assert legacy.classify_name("mypackage.MyModel") == "unknown"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def run_cli(*args):
    if not os.path.exists(CLI):
        pytest.fail(f"vitrify CLI not built at {CLI}")
    return subprocess.run([CLI, "scan", *map(str, args)], capture_output=True, text=True)


def test_cli_exit_codes_and_json(tmp_path):
    import fractions

    files = {
        "clean.pkl": pickle.dumps({"a": np.arange(3)}, protocol=4),
        "suspicious.pkl": pickle.dumps(fractions.Fraction(1, 3), protocol=4),
        "inconclusive.pkl": pickle.dumps([1, 2], protocol=4)[:-1],
        "malicious.pkl": pickle.dumps(Evil(), protocol=4),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    expect = {"clean.pkl": 0, "suspicious.pkl": 1, "inconclusive.pkl": 3, "malicious.pkl": 4}
    for name, code in expect.items():
        p = run_cli(tmp_path / name)
        assert p.returncode == code, (name, p.stdout, p.stderr)
        assert name.split(".")[0] in p.stdout
    p = run_cli(tmp_path / "clean.pkl", tmp_path / "suspicious.pkl")
    assert p.returncode == 1
    p = run_cli(*(tmp_path / n for n in files), "--json")
    assert p.returncode == 4
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == 4
    verdicts = {os.path.basename(f["path"]): f["verdict"] for f in doc["files"]}
    assert verdicts == {n: n.split(".")[0] for n in files}
    mal = next(f for f in doc["files"] if f["verdict"] == "malicious")
    assert SYSTEM in mal["dangerous"]
    assert any(c["callee"] == SYSTEM and c["opcode"] == "REDUCE" for c in mal["calls"])
    assert run_cli().returncode == 2  # usage error: no file
    assert run_cli(tmp_path / "missing.pkl").returncode == 3


# ---------------------------------------------------------------------------------------------
# Reader details
# ---------------------------------------------------------------------------------------------

def ndarraywrapper_pickle(filename: str) -> bytes:
    """joblib < 0.10's layout: the pickle holds an NDArrayWrapper naming a side .npy file."""
    fn = filename.encode()
    return (b"\x80\x02cjoblib.numpy_pickle\nNDArrayWrapper\n)\x81}(X\x08\x00\x00\x00filenameX"
            + struct.pack("<I", len(fn)) + fn + b"X\x08\x00\x00\x00subclasscnumpy\nndarray\n"
            + b"X\x0a\x00\x00\x00allow_mmap\x88ub.")


def test_joblib_old_layout_with_side_npy_files(tmp_path):
    a = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "model.pkl_01.npy", a)
    (tmp_path / "model.pkl").write_bytes(ndarraywrapper_pickle("model.pkl_01.npy"))
    r = legacy.scan(tmp_path / "model.pkl")
    assert r.format == "joblib" and r.verdict == "clean", str(r)
    g = vitrify._core._legacy_graph(str(tmp_path / "model.pkl"))
    assert g["complete"], g["problems"]
    assert g["root"]["array"] == "<f8" and g["root"]["shape"] == (3, 4)
    assert g["root"]["data"] == a.tobytes()
    # a side file outside the pickle's directory is never opened
    (tmp_path / "evil.pkl").write_bytes(ndarraywrapper_pickle("../model.pkl_01.npy"))
    r = legacy.scan(tmp_path / "evil.pkl")
    assert r.verdict == "inconclusive" and any("not a plain file name" in p for p in r.problems)
    # the side file's pickled objects are scanned too
    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    np.save(tmp_path / "obj_01.npy", evil, allow_pickle=True)
    (tmp_path / "obj.pkl").write_bytes(ndarraywrapper_pickle("obj_01.npy"))
    assert_malicious(legacy.scan(tmp_path / "obj.pkl"))


def test_torch_tensors_in_the_graph(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "t": torch.arange(6.0).reshape(2, 3).t(),
          "p": torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1), "s": torch.arange(10)[2:7],
          "b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}
    torch.save(sd, tmp_path / "sd.pt")
    g = vitrify._core._legacy_graph(str(tmp_path / "sd.pt"))
    assert g["format"] == "torch_zip" and g["complete"], g["problems"]
    got = dict(g["root"]["dict"])
    for k in ("w", "t", "p", "s"):
        want = sd[k].numpy()
        a = got[k]
        arr = np.frombuffer(a["data"], dtype=a["array"]).reshape(a["shape"], order="F" if a["fortran"] else "C")
        np.testing.assert_array_equal(arr, want)
    assert got["b"]["array"] == "bfloat16"
    assert got["b"]["data"] == sd["b"].view(torch.int16).numpy().tobytes()


def test_quadratic_argument_copies_are_bounded(tmp_path):
    # One memoized tuple of 20000 values passed to 5000 calls: 10**8 argument copies if the
    # reader copied naively. The reader stops at its budget instead.
    n_items, n_calls = 20000, 5000
    data = bytearray(b"\x80\x04" + op_unicode("fractions") + op_unicode("Fraction") + b"\x93\x94")  # memo 0
    data += b"(" + b"N" * n_items + b"t\x94"  # memo 1
    data += b"0" * 2 + b"]"
    for _ in range(n_calls):
        data += b"j\x00\x00\x00\x00j\x01\x00\x00\x00Ra"
    data += b"."
    r = scan(bytes(data), tmp_path)
    assert r.verdict == "inconclusive"
    assert any("too many values copied" in p for p in r.problems), r.problems[:3]


def test_huge_integer_is_not_converted(tmp_path):
    big = (1 << (8 * 5000)) - 1
    r = scan(pickle.dumps(big, protocol=4), tmp_path)
    assert r.verdict == "inconclusive"
    assert scan(pickle.dumps(1 << 1000, protocol=4), tmp_path, "ok.pkl").verdict == "clean"


class CallsNumpyZeros:
    """Pickles as a call of numpy.zeros: a name load trusts (scikit-learn stores numpy functions
    as parameters) but only ever keeps as a reference."""

    def __reduce__(self):
        return (np.zeros, (10 ** 12,))


def test_scan_judges_numpy_functions_as_load_does(tmp_path):
    # One trust table (scripts/gen_pickle_names.py over vitrify._trust): a numpy function is a
    # trusted reference for scan exactly as for load, and calling it is refused by both.
    from sklearn.preprocessing import FunctionTransformer

    ref = scan(pickle.dumps(FunctionTransformer(func=np.log1p), protocol=4), tmp_path)
    assert ref.verdict == "clean", ref
    assert ref.refused_calls == () and not ref.unknown
    call = scan(pickle.dumps(CallsNumpyZeros(), protocol=4), tmp_path)
    assert call.verdict == "suspicious", call
    assert call.refused_calls == ("numpy.zeros",), call
    p = tmp_path / "z.vit"
    vitrify.dump({"z": CallsNumpyZeros()}, p)
    with pytest.raises(vitrify.VitrifyError):
        vitrify.load(p)
    assert "numpy.zeros" in legacy.scan(p).refused_calls
