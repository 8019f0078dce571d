"""Display and comparison helpers shared by the examples/workflow_*.py scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import vitrify


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def short_list(values: list, keep: int = 3) -> str:
    if len(values) <= 2 * keep:
        return repr(values)
    head = ", ".join(map(repr, values[:keep]))
    tail = ", ".join(map(repr, values[-keep:]))
    return f"[{head}, ..., {tail}] ({len(values)})"


def print_tree(node: dict, indent: str = "    ", label: str = "") -> None:
    """The schema's estimator tree: type, non-default params, fitted attributes, children."""
    print(f"{indent}{label}{node.get('type', '?')}")
    sub = indent + ("    " if label else "  ")
    params = node.get("params") or {}
    if params:
        print(f"{sub}params: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
    fitted = node.get("fitted") or {}
    if fitted:
        print(f"{sub}fitted: " + ", ".join(f"{k} {v}" for k, v in fitted.items()))
    for child in node.get("children") or []:
        where = child.get("param", "?") + (f"[{child['name']!r}]" if "name" in child else "")
        print_tree(child, sub, f"{where}: ")


def report_saved(path: Path, seconds: float) -> None:
    info = vitrify.inspect(path)
    arrays = info["arrays"]
    stored = sum(a["length"] for a in arrays)
    print(f"saved {path} in {seconds * 1000:.0f} ms")
    print(f"  file size: {human(path.stat().st_size)} ({path.stat().st_size} bytes)")
    print(f"  arrays:    {len(arrays)} ({human(stored)} of array data, codecs: "
          f"{', '.join(sorted({a['codec'] for a in arrays})) or '-'})")
    content = info["content"] or {}
    print(f"  types:     {', '.join(content.get('types', []))}")
    env = info["environment"] or {}
    pk = env.get("packages", {})
    print(f"  saved by:  python {env.get('python')}, "
          + ", ".join(f"{k} {v}" for k, v in pk.items())
          + f", vitrify {env.get('vitrify')} on {env.get('platform')} "
          f"({env.get('byteorder')}-endian) at {env.get('created')}")
    print(f"  metadata:  {info['metadata']}")
    schema = content.get("schema") or {}
    print("inspect view (vitrify.inspect(path)['content']['schema']):")
    for key in ("type", "n_features_in_", "feature_names_in_", "classes_", "n_outputs_"):
        if key in schema:
            v = schema[key]
            print(f"  {key + ':':19}{short_list(v) if isinstance(v, list) else v}")
    if "estimator" in schema:
        print("  estimator tree:")
        print_tree(schema["estimator"])


def run_cli(path: Path, max_lines: int = 48) -> None:
    exe = shutil.which("vitrify")
    if exe is None:
        print("(the vitrify CLI is not on PATH: skipping `vitrify inspect`; "
              "try PATH=build/tools/vitrify:$PATH)")
        return
    for cmd in (["inspect", str(path)], ["verify", str(path)]):
        r = subprocess.run([exe, *cmd], capture_output=True, text=True)
        print(f"$ vitrify {' '.join(cmd)}" + (f"   [exit {r.returncode}]" if r.returncode else ""))
        lines = (r.stdout + r.stderr).rstrip("\n").splitlines()
        for line in lines[:max_lines]:
            print(f"  {line}")
        if len(lines) > max_lines:
            print(f"  ... ({len(lines) - max_lines} more lines)")


def identical(a, b) -> bool:
    """Bit for bit: same dtype, shape and bytes (np.array_equal alone would let -0.0 == 0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def compare(got: dict, expected: dict) -> bool:
    """Outputs of the loaded model (this process) against those saved before dump()."""
    ok = True
    for name, value in got.items():
        same = identical(value, expected[name])
        ok &= same
        print(f"  {name:18} {str(value.dtype) + str(list(value.shape)):16} "
              f"{'identical' if same else 'DIFFERENT'}")
    n = len(next(iter(got.values())))
    if ok:
        print(f"match: {', '.join(got)} are bit-identical on {n} held-out rows")
    else:
        print(f"MISMATCH: outputs after loading differ on {n} held-out rows", file=sys.stderr)
    return ok


def run_native_predict(model_path: Path, X, expected: dict, columns: list | None = None) -> bool:
    """The same predictions from the C++ runtime, in a process without Python: `vitrify predict`
    on a CSV of the held-out rows, compared with what scikit-learn predicted before saving."""
    import csv
    import io

    exe = shutil.which("vitrify")
    if exe is None:
        print("(the vitrify CLI is not on PATH: skipping `vitrify predict`)")
        return True
    X = np.asarray(X, dtype=np.float64)
    names = list(columns) if columns is not None else [f"x{i}" for i in range(X.shape[1])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in X:
        w.writerow([repr(float(v)) for v in row])
    csv_path = Path(model_path).with_suffix(".input.csv")
    csv_path.write_text(buf.getvalue())
    ok = True
    print(f"C++ runtime, no Python: vitrify predict {Path(model_path).name} "
          f"{csv_path.name} ({X.shape[0]} rows)")
    for method, flag in (("predict", []), ("predict_proba", ["--proba"])):
        if method not in expected:
            continue
        r = subprocess.run([exe, "predict", str(model_path), str(csv_path), *flag],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  {method}: FAILED: {r.stderr.strip()}", file=sys.stderr)
            ok = False
            continue
        rows = list(csv.reader(io.StringIO(r.stdout)))
        header, body = rows[0], rows[1:]
        want = np.asarray(expected[method])
        if method == "predict":
            got = np.array([row[0] for row in body], dtype=want.dtype if want.dtype.kind in "iuf" else object)
            same = want.shape == got.shape and all(str(a) == str(b) for a, b in zip(want, got))
            detail = "identical labels" if same else "DIFFERENT labels"
        else:
            got = np.array([[float(v) for v in row] for row in body])
            same = want.shape == got.shape and np.array_equal(want, got)
            if same:
                detail = "bit-identical"
            else:
                scale = np.maximum(np.abs(want).max(axis=0, keepdims=True), 1e-300)
                rel = float(np.max(np.abs(got - want) / scale)) if want.shape == got.shape else np.inf
                same = rel <= 1e-12
                detail = (f"within {rel:.1e} of the column scale (BLAS summation order, see "
                          f"docs/RUNTIME.md)" if same else f"DIFFERENT (max relative difference {rel:.2e})")
        print(f"  {method:18} columns {header[:4]}{'...' if len(header) > 4 else ''}: {detail}")
        ok &= same
    return ok
