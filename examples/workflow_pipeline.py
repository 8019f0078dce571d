#!/usr/bin/env python3
"""Workflow (c): a Pipeline (StandardScaler then LogisticRegression), saved with vitrify and
loaded back in a fresh Python process.

    .venv/bin/python examples/workflow_pipeline.py [OUT_DIR]

1. This process fits the pipeline on iris, saves it to OUT_DIR/model.vit with vitrify.dump (the
   whole pipeline, steps and all, in one file), and the held-out rows with the outputs it
   produced to OUT_DIR/expected.vit (plain arrays), then prints what was saved and the inspect
   view (the estimator tree shows each step).
2. It runs this same script with ``--load OUT_DIR`` in a new interpreter, which loads the
   pipeline (before anything else has imported scikit-learn), checks its steps, and compares
   predict / predict_proba / decision_function and the scaler's output byte for byte.

OUT_DIR defaults to a temporary directory (removed afterwards). Exit status 0 only if every
check passes. `vitrify inspect` is run too when the CLI is on PATH (`make demo` puts it there).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import vitrify
from _workflow_common import human, short_list, print_tree, report_saved, run_cli, identical, compare, run_native_predict  # noqa: E402 - beside this script

MODEL = "model.vit"
EXPECTED = "expected.vit"


def outputs(model, X) -> dict:
    """What must not change: compared byte for byte after loading."""
    out = {m: getattr(model, m)(X) for m in ("predict", "predict_proba", "decision_function")}
    out["scaler.transform"] = model.named_steps["scaler"].transform(X)
    return out


def data():
    """The same split in both processes (fixed random_state)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


# ----------------------------------------------------------------------------------------------
# Reporting (the same in every workflow example)
# ----------------------------------------------------------------------------------------------

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

STEPS = ["scaler", "classifier"]


def save(out: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = data()
    print(f"training Pipeline(StandardScaler, LogisticRegression) on iris: {X_train.shape[0]} rows "
          f"x {X_train.shape[1]} features, {len(np.unique(y_train))} classes (pid {os.getpid()})")
    model = Pipeline([("scaler", StandardScaler()), ("classifier", LogisticRegression())])
    model.fit(X_train, y_train)
    accuracy = float(model.score(X_test, y_test))
    print(f"  held-out accuracy {accuracy:.4f}")

    t = time.perf_counter()
    vitrify.dump(model, out / MODEL, metadata={"workflow": "pipeline",
                                              "dataset": "sklearn iris",
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

    steps = [f"{name}={type(step).__name__}" for name, step in model.steps]
    ok = list(model.named_steps) == STEPS
    print(f"  steps: {', '.join(steps)}{'' if ok else '  (EXPECTED ' + ', '.join(STEPS) + ')'}")

    print("outputs after loading vs before saving:")
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
        rc = subprocess.run(child).returncode
        if rc == 0:
            print("-" * 78, flush=True)
            expected = vitrify.load_arrays(out / EXPECTED)
            if not run_native_predict(out / MODEL, expected["X_test"], expected, None):
                rc = 1
        return rc
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
