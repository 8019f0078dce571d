#!/usr/bin/env python3
"""Permanent model files of the object encoding (vitrify.dump), one folder per encoding version,
and what loading them must give (expected.json).

- content_v2/: files written by vitrify 0.1.0 with object encoding version 2 (numeric arrays
  inline or one array of the file each): the model fuzzer's seeds as they were then
  (fuzz/corpus/model/, written by fuzz/model_seeds.py), copied once. Complete: never added to.
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

    v3 = HERE / "content_v3"
    v3.mkdir(exist_ok=True)
    # content_v2/ is complete: it holds the 48 seeds vitrify 0.1.0 wrote with version 2, copied
    # once from fuzz/corpus/model/ (whose later "-v3" seeds are version 3). Nothing is added there.
    # Version 3: the seeds' estimators, fitted exactly as fuzz/model_seeds.py fits them.
    for stem, comp, est in model_seeds.fitted(lambda stem: (v3 / f"{stem}.vit").exists()):
        vitrify.dump(est, v3 / f"{stem}.vit", compress=comp, durable=False)
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
