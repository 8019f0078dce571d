#!/usr/bin/env python3
"""Workflow (b): a RandomForestClassifier (50 trees), saved with vitrify and loaded back in a
fresh Python process.

    .venv/bin/python examples/workflow_random_forest.py [OUT_DIR]

1. This process fits the forest on the wine data set, saves it to OUT_DIR/model.vit with
   vitrify.dump (every tree's node table is a raw, memory-mappable array of the file), and the
   held-out rows with the predictions it made to OUT_DIR/expected.vit (plain arrays), then prints
   what was saved and the inspect view.
2. It runs this same script with ``--load OUT_DIR`` in a new interpreter, which loads the forest
   (before anything else has imported scikit-learn) and compares predict / predict_proba with
   the saved ones byte for byte.

OUT_DIR defaults to a temporary directory (removed afterwards). Exit status 0 only if every
check passes. `vitrify inspect` is run too when the CLI is on PATH (`make demo` puts it there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import vitrify

MODEL = "model.vit"
EXPECTED = "expected.vit"


def outputs(model, X) -> dict:
    """What must not change: compared byte for byte after loading."""
    return {m: getattr(model, m)(X) for m in ("predict", "predict_proba")}


def data():
    """The same split in both processes (fixed random_state)."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    X, y = load_wine(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


# ----------------------------------------------------------------------------------------------
# Reporting (the same in every workflow example)
# ----------------------------------------------------------------------------------------------

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


def load_model(path: Path):
    """vitrify.load in this fresh process, reporting environment warnings and timing."""
    print(f"loading {path} in a fresh process (pid {os.getpid()}); "
          f"scikit-learn imported before load: {'sklearn' in sys.modules}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", vitrify.EnvironmentMismatchWarning)
        t = time.perf_counter()
        model = vitrify.load(path)
        dt = time.perf_counter() - t
    env = [w for w in caught if issubclass(w.category, vitrify.EnvironmentMismatchWarning)]
    print(f"  loaded {type(model).__module__}.{type(model).__qualname__} in {dt * 1000:.0f} ms "
          f"(importing scikit-learn included); "
          "environment: " + (f"{len(env)} difference(s)" if env else "same versions as when saved"))
    for w in caught:
        print(f"  warning: {w.category.__name__}: {w.message}")
    return model


# ----------------------------------------------------------------------------------------------
# The workflow
# ----------------------------------------------------------------------------------------------

N_TREES = 50


def save(out: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X_train, X_test, y_train, y_test = data()
    print(f"training RandomForestClassifier(n_estimators={N_TREES}) on wine: {X_train.shape[0]} "
          f"rows x {X_train.shape[1]} features, {len(np.unique(y_train))} classes "
          f"(pid {os.getpid()})")
    model = RandomForestClassifier(n_estimators=N_TREES, random_state=0).fit(X_train, y_train)
    accuracy = float(model.score(X_test, y_test))
    nodes = sum(t.tree_.node_count for t in model.estimators_)
    print(f"  held-out accuracy {accuracy:.4f}; {nodes} tree nodes in all")

    t = time.perf_counter()
    vitrify.dump(model, out / MODEL, metadata={"workflow": "random-forest",
                                              "dataset": "sklearn wine",
                                              "test_accuracy": accuracy})
    dt = time.perf_counter() - t
    vitrify.save_arrays(out / EXPECTED, {"X_test": X_test, **outputs(model, X_test)})
    report_saved(out / MODEL, dt)
    run_cli(out / MODEL)


def load(out: Path) -> int:
    model = load_model(out / MODEL)        # before scikit-learn is imported here
    expected = vitrify.load_arrays(out / EXPECTED)
    _, X_test, _, _ = data()
    if not identical(X_test, expected["X_test"]):
        print("FAILED: the held-out rows rebuilt here differ from the saved ones", file=sys.stderr)
        return 1
    ok = True

    trees = getattr(model, "estimators_", [])
    nodes = sum(t.tree_.node_count for t in trees)
    print(f"  {len(trees)} trees, {nodes} nodes in all")
    ok &= len(trees) == N_TREES

    print("predictions after loading vs before saving:")
    ok &= compare(outputs(model, X_test), expected)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, help="output folder (default: a temporary one)")
    ap.add_argument("--load", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load is not None:
        return load(args.load)

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="vitrify-workflow-")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    try:
        save(out)
        print("-" * 78, flush=True)
        child = [sys.executable, os.path.abspath(__file__), "--load", str(out)]
        return subprocess.run(child).returncode
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
