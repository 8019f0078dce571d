#!/usr/bin/env python3
"""Permanent model files of the object encoding (vitrify.dump), one folder per encoding version,
and what loading them must give (expected.json).

- content_v2/: files written by vitrify 0.1.0 with object encoding version 2 (numeric arrays
  inline or one array of the file each). They were the model fuzzer's seeds
  (fuzz/corpus/model/, written by fuzz/model_seeds.py) and are copied from there.
- content_v3/: the same estimators written with version 3 (arrays pooled in one array).
- expected.json: per file, the outputs of predict / predict_proba / decision_function /
  transform / score_samples (whichever the estimator has) on the fixed input X below, computed
  when the file was added.

Like tests/vectors/, files are never rewritten or removed: running the script only adds what is
missing (a new estimator, or a new encoding version's folder).
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
METHODS = ("predict", "predict_proba", "decision_function", "transform", "score_samples")


def inputs() -> np.ndarray:
    """The rows every file is evaluated on (the seeds' training data come from the same RNG)."""
    rng = np.random.RandomState(1)
    X = rng.rand(12, 4)
    X[:, 2] = rng.randint(0, 3, 12)
    return X


def outputs(model, X) -> dict:
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in METHODS:
            fn = getattr(model, m, None)
            if fn is None:
                continue
            try:
                r = np.asarray(fn(X))
            except Exception:       # e.g. predict_proba of a hard-voting model
                continue
            if hasattr(r, "toarray"):
                r = r.toarray()
            out[m] = {"dtype": r.dtype.str, "shape": list(r.shape), "values": r.ravel().tolist()}
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT / "fuzz"))
    import vitrify
    import model_seeds

    v2 = HERE / "content_v2"
    v3 = HERE / "content_v3"
    v2.mkdir(exist_ok=True)
    v3.mkdir(exist_ok=True)
    for src in sorted((ROOT / "fuzz" / "corpus" / "model").glob("*.vit")):
        dst = v2 / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
    # Version 3: refit the seeds' estimators exactly as fuzz/model_seeds.py does.
    rng = np.random.RandomState(0)
    X = rng.rand(30, 4)
    X[:, 2] = rng.randint(0, 3, 30)
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    yr = X[:, 0] * 2 + X[:, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, est in model_seeds.estimators():
            for comp in (None, "zstd"):
                path = v3 / f"{name}{'-zstd' if comp else ''}.vit"
                if path.exists():
                    continue
                target = yr if name.endswith("_reg") or name in ("ridge", "linreg", "svr_poly") else y
                est.fit(X, target)
                vitrify.dump(est, path, compress=comp, durable=False)
    man_path = HERE / "expected.json"
    man = json.loads(man_path.read_text()) if man_path.exists() else {}
    Xe = inputs()
    added = 0
    for path in sorted(HERE.glob("content_v*/*.vit")):
        key = str(path.relative_to(HERE))
        if key in man:
            continue
        model = vitrify.load(path)
        man[key] = {"type": type(model).__module__ + "." + type(model).__qualname__,
                    "outputs": outputs(model, Xe)}
        added += 1
    man_path.write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    print(f"{len(man)} files in expected.json ({added} added)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
