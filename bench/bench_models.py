#!/usr/bin/env python3
"""Benchmark saving and loading scikit-learn models (issue 3).

Compares, side by side in one run: pickle (protocol 5), joblib (plain), joblib loaded with
``mmap_mode='r'``, joblib ``compress=3``, skops.io, vitrify raw and vitrify zstd (level 3).

For every model x method it measures the save time, the load time (warm page cache, median of
several loads in this process), the file size and the time to first prediction in a fresh
process (a ``python -c`` subprocess that imports, loads and predicts one row; wall time of the
whole subprocess, median of several runs). It prints a table of ratios against pickle and a
PASS/FAIL verdict per target, and (unless ``--no-write``) writes the section
``## scikit-learn models (issue 3)`` of docs/BENCHMARKS.md plus a bar chart of load times at
docs/benchmarks/models_load.png. Only that section of BENCHMARKS.md is replaced; every other
section is kept as it is. A ``### Analysis`` subsection already in the section (written by hand)
is kept too.

    .venv/bin/python bench/bench_models.py            # full run (several minutes on 2 cores)
    .venv/bin/python bench/bench_models.py --quick    # small models, few repeats; prints only
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pickle
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## scikit-learn models (issue 3)"
MIB = 2 ** 20

METHODS = ["pickle", "joblib", "joblib-mmap", "joblib-z3", "skops", "vitrify", "vitrify-zstd", "vitrify-nosync"]
METHOD_LABEL = {
    "pickle": "pickle (protocol 5)",
    "joblib": "joblib",
    "joblib-mmap": "joblib mmap_mode='r'",
    "joblib-z3": "joblib compress=3",
    "skops": "skops.io",
    "vitrify": "vitrify (raw)",
    "vitrify-zstd": "vitrify zstd-3",
    "vitrify-nosync": "vitrify (raw), durable=False",
}


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------

@dataclass
class ModelSpec:
    key: str
    label: str
    short: str                    # x-axis label of the chart
    build: Callable[[], Any]      # returns (fitted model, X used for checking predictions)


def model_specs(quick: bool) -> list[ModelSpec]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier,
                                  HistGradientBoostingClassifier, RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    n_rows = 2_000 if quick else 20_000
    n_knn = 10_000 if quick else 100_000
    n_feat = 20
    cache: dict[int, tuple] = {}

    def data(n: int):
        if n not in cache:
            cache[n] = make_classification(n_samples=n, n_features=n_feat, n_informative=10,
                                           n_redundant=4, random_state=0)
        return cache[n]

    def fit(est, n=n_rows):
        X, y = data(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # MLP ConvergenceWarning at a capped max_iter
            est.fit(X, y)
        return est, X

    t_small, t_big = (10, 50) if quick else (100, 500)
    return [
        ModelSpec("rf100", f"RandomForest ({t_small} trees)", f"RandomForest\n{t_small} trees", lambda: fit(RandomForestClassifier(
            n_estimators=t_small, min_samples_leaf=1, n_jobs=2, random_state=0))),
        ModelSpec("rf500", f"RandomForest ({t_big} trees)", f"RandomForest\n{t_big} trees", lambda: fit(RandomForestClassifier(
            n_estimators=t_big, min_samples_leaf=1, n_jobs=2, random_state=0))),
        ModelSpec("et100", f"ExtraTrees ({t_small} trees)", f"ExtraTrees\n{t_small} trees", lambda: fit(ExtraTreesClassifier(
            n_estimators=t_small, min_samples_leaf=1, n_jobs=2, random_state=0))),
        ModelSpec("hgb", "HistGradientBoosting", "HistGradient-\nBoosting", lambda: fit(HistGradientBoostingClassifier(
            max_iter=20 if quick else 200, early_stopping=False, random_state=0))),
        ModelSpec("gb", "GradientBoosting", "Gradient-\nBoosting", lambda: fit(GradientBoostingClassifier(
            n_estimators=20 if quick else 100, max_depth=3, random_state=0))),
        ModelSpec("pipe", "Pipeline(StandardScaler, LogisticRegression)",
                  "Pipeline(Scaler,\nLogReg)", lambda: fit(Pipeline([
            ("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]))),
        ModelSpec("knn", f"KNeighbors ({n_knn // 1000}k rows)", f"KNeighbors\n{n_knn // 1000}k rows", lambda: fit(
            KNeighborsClassifier(n_neighbors=5), n_knn)),
        ModelSpec("mlp", "MLP (256, 128)", "MLP\n(256, 128)", lambda: fit(MLPClassifier(
            hidden_layer_sizes=(256, 128), max_iter=5 if quick else 30, random_state=0))),
    ]


# ------------------------------------------------------------------------------------------
# Methods: save, load, and the fresh-process snippet
# ------------------------------------------------------------------------------------------

def _save(method: str, obj: Any, path: str) -> None:
    if method == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=5)
    elif method in ("joblib", "joblib-mmap"):
        import joblib
        joblib.dump(obj, path)
    elif method == "joblib-z3":
        import joblib
        joblib.dump(obj, path, compress=3)
    elif method == "skops":
        import skops.io as sio
        sio.dump(obj, path)
    elif method == "vitrify":
        import vitrify
        vitrify.dump(obj, path)
    elif method == "vitrify-zstd":
        import vitrify
        vitrify.dump(obj, path, compress=3)
    elif method == "vitrify-nosync":
        # Like for like with pickle, joblib and skops, which never fsync: still an atomic
        # write (temporary file + rename), without the fsyncs of the default.
        import vitrify
        vitrify.dump(obj, path, durable=False)
    else:
        raise ValueError(method)


# Names vitrify.load refused by default, per file (see "needs_trusted" in measure()). Passed as
# trusted=[...] so the comparison can go on; the report lists them as a vitrify defect.
EXTRA_TRUSTED: dict[str, list] = {}


def _load(method: str, path: str) -> Any:
    if method == "pickle":
        with open(path, "rb") as fh:
            return pickle.load(fh)
    if method in ("joblib", "joblib-z3"):
        import joblib
        return joblib.load(path)
    if method == "joblib-mmap":
        import joblib
        return joblib.load(path, mmap_mode="r")
    if method == "skops":
        import skops.io as sio
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    if method in ("vitrify", "vitrify-zstd", "vitrify-nosync"):
        import vitrify
        return vitrify.load(path, trusted=EXTRA_TRUSTED.get(path))
    raise ValueError(method)


_FRESH = {
    "pickle": "import pickle\nwith open(P, 'rb') as fh:\n    m = pickle.load(fh)",
    "joblib": "import joblib\nm = joblib.load(P)",
    "joblib-z3": "import joblib\nm = joblib.load(P)",
    "joblib-mmap": "import joblib\nm = joblib.load(P, mmap_mode='r')",
    "skops": "import skops.io as sio\nm = sio.load(P, trusted=sio.get_untrusted_types(file=P))",
    "vitrify": "import vitrify\nm = vitrify.load(P)",
    "vitrify-zstd": "import vitrify\nm = vitrify.load(P)",
    "vitrify-nosync": "import vitrify\nm = vitrify.load(P)",
}

# Interpreter + import baselines for the fresh-process numbers.
_BASELINES = [
    ("python -c pass", "pass"),
    ("import numpy", "import numpy"),
    ("import numpy, sklearn.ensemble", "import numpy, sklearn.ensemble"),
    ("import numpy, pickle", "import numpy, pickle"),
    ("import numpy, joblib", "import numpy, joblib"),
    ("import numpy, skops.io", "import numpy, skops.io"),
    ("import numpy, vitrify", "import numpy, vitrify"),
]


def fresh_code(method: str, path: str, n_features: int) -> str:
    body = _FRESH[method]
    if path in EXTRA_TRUSTED:
        body = body.replace("vitrify.load(P)", f"vitrify.load(P, trusted={EXTRA_TRUSTED[path]!r})")
    return (f"P = {path!r}\nimport numpy as np\n{body}\n"
            f"m.predict(np.zeros((1, {n_features})))\n")


def _child_env() -> dict:
    env = dict(os.environ)
    env["VITRIFY_PROGRESS"] = "0"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def time_subprocess(code: str, runs: int, warmup: bool = True) -> float:
    """Median wall time (s) of ``python -c code`` over ``runs`` runs (after one untimed run)."""
    env = _child_env()
    cmd = [sys.executable, "-c", code]
    if warmup:
        subprocess.run(cmd, check=True, env=env, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"fresh process failed: {r.stderr.decode(errors='replace')[-2000:]}")
    return statistics.median(times)


# ------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------

@dataclass
class Result:
    save: float = float("nan")       # s, median
    load: float = float("nan")       # s, median
    size: int = 0                    # bytes
    fresh: float = float("nan")      # s, median wall time of the fresh process
    needs_trusted: list = field(default_factory=list)   # vitrify: names refused by default
    save_runs: list = field(default_factory=list)
    load_runs: list = field(default_factory=list)


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    del out
    return dt


def _warm(path: str) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def _repeat(fn: Callable[[], Any], min_runs: int, max_runs: int, budget: float) -> list:
    """Run fn at least min_runs times, then up to max_runs while under budget seconds."""
    times: list = []
    start = time.perf_counter()
    while len(times) < max_runs:
        times.append(_timed(fn))
        if len(times) >= min_runs and time.perf_counter() - start > budget:
            break
    return times


def _same_predictions(a: Any, b: Any, X: np.ndarray) -> bool:
    return bool(np.array_equal(a.predict(X), b.predict(X)))


def measure(spec: ModelSpec, model: Any, X: np.ndarray, tmp: str, args) -> dict:
    out: dict[str, Result] = {}
    check_rows = X[:200]
    n_features = X.shape[1]
    for method in METHODS:
        r = Result()
        ext = {"skops": ".skops", "vitrify": ".vit", "vitrify-zstd": ".zst.vit",
               "vitrify-nosync": ".nosync.vit"}.get(method, ".pkl")
        path = os.path.join(tmp, f"{spec.key}.{method}{ext}")
        r.save_runs = _repeat(lambda: _save(method, model, path), args.save_min, args.save_max,
                              args.budget)
        r.save = statistics.median(r.save_runs)
        r.size = os.path.getsize(path)
        if method.startswith("vitrify"):
            import vitrify
            r.needs_trusted = vitrify.get_untrusted_types(path)
            if r.needs_trusted:
                EXTRA_TRUSTED[path] = r.needs_trusted
                print(f"  ! vitrify.load refuses {r.needs_trusted} by default; passing trusted=",
                      flush=True)
        _warm(path)
        loaded = _load(method, path)
        if not _same_predictions(model, loaded, check_rows):
            raise RuntimeError(f"{spec.key}/{method}: loaded model predicts differently")
        del loaded
        r.load_runs = _repeat(lambda: _load(method, path), args.load_min, args.load_max,
                              args.budget)
        r.load = statistics.median(r.load_runs)
        if args.fresh_runs > 0:
            r.fresh = time_subprocess(fresh_code(method, path, n_features), args.fresh_runs,
                                      not args.quick)
        out[method] = r
        print(f"  {method:13s} save {r.save * 1e3:9.1f} ms  load {r.load * 1e3:9.1f} ms  "
              f"size {r.size / MIB:8.2f} MiB  fresh {r.fresh * 1e3:8.0f} ms", flush=True)
    return out


# ------------------------------------------------------------------------------------------
# Profiles of vitrify where it misses a target
# ------------------------------------------------------------------------------------------

def profile_call(fn: Callable[[], Any], runs: int, top: int) -> tuple[float, list]:
    fn()
    gc.collect()
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    for _ in range(runs):
        fn()
    pr.disable()
    total = (time.perf_counter() - t0) / runs
    st = pstats.Stats(pr)
    rows = []
    for (fname, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        short = fname
        if "site-packages/" in fname:
            short = fname.split("site-packages/", 1)[1]
        elif "/python" in fname and "/lib/" in fname:
            short = "stdlib/" + fname.rsplit("/lib/", 1)[1].split("/", 1)[-1]
        where = f"{short}:{line}({func})" if line else func
        rows.append((tt / runs, ct / runs, nc / runs, where))
    rows.sort(key=lambda r: -r[0])
    return total, rows[:top]


def _pick(failures: dict, kind: str, results: dict) -> list:
    """The largest and the smallest model (by pickle size) that miss a target of this kind."""
    keys = sorted((k for k, kinds in failures.items() if kind in kinds),
                  key=lambda k: results[k]["pickle"].size)
    return list(dict.fromkeys([keys[-1], keys[0]])) if keys else []


def profiles(models: dict, failures: dict, results: dict, tmp: str, args) -> list:
    """cProfile vitrify.dump / vitrify.load on the largest and the smallest model that miss a
    save or load target."""
    import vitrify
    out = []
    for kind, what in (("save", "vitrify.dump"), ("load", "vitrify.load")):
        for key in _pick(failures, kind, results):
            model = models[key]
            path = os.path.join(tmp, f"{key}.profile.vit")
            vitrify.dump(model, path)
            trusted = vitrify.get_untrusted_types(path) or None
            if kind == "save":
                fn = lambda: vitrify.dump(model, path)          # noqa: E731
            else:
                fn = lambda: vitrify.load(path, trusted=trusted)  # noqa: E731
            total, rows = profile_call(fn, args.profile_runs, 12)
            out.append((key, what, total, rows))
    return out


def _no_gc(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run():
        gc.disable()
        try:
            return fn()
        finally:
            gc.enable()
    return run


def diagnostics(models: dict, keys: list, tmp: str, args) -> list:
    """Time vitrify's fixed costs and levers on the given models: the environment check on load,
    the cyclic GC, and durable writing (fsync + rename) against the in-memory ``dumps``. Also the
    header size against the array bytes."""
    import vitrify
    rows = []
    for key in keys:
        model = models[key]
        path = os.path.join(tmp, f"{key}.diag.vit")
        vitrify.dump(model, path)
        trusted = vitrify.get_untrusted_types(path) or None
        f = vitrify.File.open(path, True)
        n_arrays = len(f.arrays)
        content = len(f.content_json.encode())
        array_bytes = sum(int(a["length"]) for a in f.arrays)
        al = int(f.alignment)
        padded = sum(-(-int(a["length"]) // al) * al for a in f.arrays)
        del f
        pk = os.path.join(tmp, f"{key}.diag.pkl")
        with open(pk, "wb") as fh:
            pickle.dump(model, fh, protocol=5)

        def med(fn):
            return statistics.median(_repeat(fn, args.load_min, args.load_max, args.budget))
        d = {
            "pickle.load": med(lambda: _load("pickle", pk)),
            "load": med(lambda: vitrify.load(path, trusted=trusted)),
            "load(check_env=False)": med(lambda: vitrify.load(path, trusted=trusted, check_env=False)),
            "load(check_env=False), GC off": med(_no_gc(
                lambda: vitrify.load(path, trusted=trusted, check_env=False))),
            "pickle.dump": med(lambda: _save("pickle", model, pk)),
            "dump": med(lambda: vitrify.dump(model, path)),
            "dumps (in memory: no fsync, no rename)": med(lambda: vitrify.dumps(model)),
            "dumps, GC off": med(_no_gc(lambda: vitrify.dumps(model))),
        }
        rows.append((key, d, n_arrays, content, array_bytes, padded, os.path.getsize(path),
                     os.path.getsize(pk)))
    return rows


# ------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------

def check_targets(specs, results: dict) -> tuple[list, dict]:
    """[(target, passed, detail)], and {model: {"load", "save"}} where vitrify missed."""
    verdicts = []
    fails: dict[str, set] = {}
    keys = [s.key for s in specs]

    def mark(key, kind):
        fails.setdefault(key, set()).add(kind)

    # 1. load no slower than pickle everywhere, >= 2x faster for models over 10 MiB (pickle size)
    bad = []
    for k in keys:
        r = results[k]
        ratio = r["pickle"].load / r["vitrify"].load        # speed-up over pickle
        big = r["pickle"].size > 10 * MIB
        need = 2.0 if big else 1.0
        if ratio < need:
            bad.append(f"{k} speed-up {ratio:.2f}x (needs >= {need:g}x)")
            mark(k, "load")
    verdicts.append(("vitrify load no slower than pickle on every model, >= 2x faster on models "
                     "over 10 MiB (pickle size)", not bad, "; ".join(bad) or "all models"))
    # 2. >= 10x faster load than skops.io
    bad = []
    for k in keys:
        ratio = results[k]["skops"].load / results[k]["vitrify"].load
        if ratio < 10:
            bad.append(f"{k} speed-up {ratio:.1f}x")
            mark(k, "load")
    verdicts.append((">= 10x faster load than skops.io", not bad, "; ".join(bad) or "all models"))
    # 3. save <= 1.2x pickle's time
    bad = []
    for k in keys:
        ratio = results[k]["vitrify"].save / results[k]["pickle"].save
        if ratio > 1.2:
            bad.append(f"{k} {ratio:.2f}x")
            mark(k, "save")
    verdicts.append(("vitrify save time <= 1.2x pickle's", not bad, "; ".join(bad) or "all models"))
    # 3b. the same without fsync (informational: pickle, joblib and skops never fsync)
    bad = []
    for k in keys:
        ratio = results[k]["vitrify-nosync"].save / results[k]["pickle"].save
        if ratio > 1.2:
            bad.append(f"{k} {ratio:.2f}x")
    verdicts.append(("(like for like, not the target) vitrify save with durable=False <= 1.2x pickle's",
                     not bad, "; ".join(bad) or "all models"))
    # 4. uncompressed size <= pickle's
    bad = []
    for k in keys:
        ratio = results[k]["vitrify"].size / results[k]["pickle"].size
        if ratio > 1.0:
            bad.append(f"{k} {ratio:.3f}x (+{(results[k]['vitrify'].size - results[k]['pickle'].size) / 1024:.1f} KiB)")
    verdicts.append(("vitrify raw size <= pickle's", not bad, "; ".join(bad) or "all models"))
    # 5. zstd size < joblib compress=3
    bad = []
    for k in keys:
        ratio = results[k]["vitrify-zstd"].size / results[k]["joblib-z3"].size
        if ratio >= 1.0:
            bad.append(f"{k} {ratio:.3f}x")
    verdicts.append(("vitrify zstd-3 size < joblib compress=3", not bad, "; ".join(bad) or "all models"))
    return verdicts, fails


# ------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------

def _ms(s: float) -> str:
    if s != s:
        return "-"
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def _mib(b: int) -> str:
    m = b / MIB
    return f"{m:.1f}" if m >= 10 else f"{m:.2f}" if m >= 0.1 else f"{m:.3f}"


def _x(a: float, b: float) -> str:
    if b == 0 or a != a or b != b:
        return "-"
    return f"{a / b:.2f}"


def md_table(header: list, rows: list, align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def full_table(specs, results) -> str:
    rows = []
    for s in specs:
        r = results[s.key]
        p = r["pickle"]
        for m in METHODS:
            x = r[m]
            rows.append([s.label if m == "pickle" else "", METHOD_LABEL[m], _ms(x.save), _ms(x.load),
                         _mib(x.size), _ms(x.fresh), _x(x.save, p.save), _x(x.load, p.load),
                         _x(x.size, p.size), _x(x.fresh, p.fresh)])
    return md_table(["model", "method", "save ms", "load ms", "size MiB", "fresh 1st predict ms",
                     "save ×pickle", "load ×pickle", "size ×pickle", "fresh ×pickle"],
                    rows, "llrrrrrrrr")


def summary_table(specs, results) -> str:
    rows = []
    for s in specs:
        r = results[s.key]
        p, v, z = r["pickle"], r["vitrify"], r["vitrify-zstd"]
        rows.append([s.label, _mib(p.size), _x(p.load, v.load), _x(r["skops"].load, v.load),
                     _x(v.save, p.save), _x(r["vitrify-nosync"].save, p.save), _x(v.size, p.size),
                     _x(z.size, r["joblib-z3"].size), _x(v.fresh, p.fresh)])
    return md_table(["model", "pickle MiB", "vitrify load speed-up vs pickle",
                     "vitrify load speed-up vs skops", "vitrify save ×pickle",
                     "vitrify save ×pickle, durable=False", "vitrify size ×pickle", "zstd size ×joblib-z3", "fresh ×pickle"], rows)


def baseline_table(baselines: list) -> str:
    return md_table(["fresh process running", "median wall ms"],
                    [[f"`{n}`", _ms(t)] for n, t in baselines])


def machine_info() -> dict:
    import sklearn
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "platform": platform.platform()}
    for mod in ("joblib", "skops", "vitrify"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = "?"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "python", "src",
                                "include"], capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = rev + (" + uncommitted changes in python/src/include" if dirty else "")
    except Exception:
        info["commit"] = "?"
    try:
        info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return info


def render_section(specs, results, verdicts, baselines, profs, diags, info, args, cmd, png_rel,
                   elapsed, analysis: str | None) -> str:
    L = [SECTION, ""]
    L.append(f"Generated by `bench/bench_models.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             f" ({'quick run' if args.quick else 'full run'}, {elapsed / 60:.1f} min). Reproduce with:")
    L += ["", "```sh", cmd, "```", ""]
    L.append(f"Machine: {info['nproc']} cores ({info['cpu']}), shared with other jobs "
             f"(load average at the end of the run: {info.get('loadavg', '?')}); {info['platform']}; "
             f"Python {info['python']}, numpy {info['numpy']}, scikit-learn {info['scikit-learn']}, "
             f"joblib {info['joblib']}, skops {info['skops']}, vitrify {info['vitrify']} (commit "
             f"{info.get('commit', '?')}, as installed in .venv). Files are "
             f"written to a temporary folder on the local disk.")
    L.append("")
    L.append("Method: models are fitted on `make_classification` data (20 features, fixed seeds; "
             f"{'2k rows, KNeighbors 10k' if args.quick else '20k rows, KNeighbors 100k'}). "
             "*save* and *load* are medians of several calls in this process with a warm page cache "
             f"(save: {args.save_min}-{args.save_max} calls, load: {args.load_min}-{args.load_max} calls, "
             "fewer when one call is slow); loads use each library's public loader (skops with "
             "`trusted=get_untrusted_types(file=...)`; vitrify with `mmap=True`, the default). "
             "*fresh 1st predict* is the wall time of a whole `python -c` subprocess that imports "
             "the library, loads the file and predicts one row (median of "
             f"{args.fresh_runs} run(s){'' if args.quick else ' after one untimed run'}); subtract the baselines below for "
             "the load+predict part. `vitrify.dump` is durable by default (fsyncs the file and its "
             "folder) and atomic (writes a temporary file and renames it over the target); pickle, "
             "joblib and skops are neither. *vitrify (raw), durable=False* is the same file written "
             "atomically without the fsyncs.")
    refused = sorted({(s.label, tuple(results[s.key][m].needs_trusted)) for s in specs
                      for m in ("vitrify", "vitrify-zstd") if results[s.key][m].needs_trusted})
    if refused:
        L += ["", "**vitrify defect found by this run:** `vitrify.load` with the default trusted "
              "list refuses files it wrote itself for: " + "; ".join(
                  f"{lab} (`{'`, `'.join(names)}`)" for lab, names in refused)
              + ". The benchmark passes these names as `trusted=[...]` (found with "
              "`vitrify.get_untrusted_types`, outside the timed load) so the comparison can go on; "
              "they belong in `python/vitrify/trusted_types.txt`."]
    L += ["", "### Targets", ""]
    for name, ok, detail in verdicts:
        L.append(f"- **{'PASS' if ok else 'FAIL'}** — {name}: {detail}")
    L += ["", "### Summary (vitrify vs the others)", "",
          "Speed-ups are *other time / vitrify time* (higher is better); ×pickle columns are "
          "*vitrify / pickle* (lower is better).", "", summary_table(specs, results), ""]
    L += [f"![load time per model and method (log scale)]({png_rel})", ""]
    L += ["### All measurements", "", full_table(specs, results), ""]
    L += ["### Fresh-process baselines", "", baseline_table(baselines), ""]
    if profs:
        L += ["### Profiles where vitrify misses a target", "",
              f"`cProfile` over {args.profile_runs} calls in the benchmark process (times per call; "
              "cProfile adds overhead to Python-level calls, so totals exceed the timings above).", ""]
        for key, what, total, rows in profs:
            label = next(s.label for s in specs if s.key == key)
            L += [f"`{what}` on {label} — {total * 1e3:.1f} ms per call under the profiler:", ""]
            L.append(md_table(["tottime ms", "cumtime ms", "calls", "function"],
                              [[f"{tt * 1e3:.2f}", f"{ct * 1e3:.2f}", f"{nc:g}", f"`{w}`"]
                               for tt, ct, nc, w in rows], "rrrl"))
            L.append("")
    if diags:
        L += ["### Where vitrify's fixed costs go", "",
              "Medians in ms on the profiled models (no profiler): the environment check on load "
              "(`check_env=False` skips it), the cyclic garbage collector (`GC off` = `gc.disable()` "
              "around the call) and durable writing (`dump` fsyncs and renames; `dumps` builds the "
              "same file image in memory). Then the file's layout: JSON content bytes against "
              "array bytes.", ""]
        names = list(diags[0][1].keys())
        label = {s.key: s.label for s in specs}
        L.append(md_table(["model"] + names, [[label[k]] + [_ms(d[n]) for n in names]
                                              for k, d, *_ in diags]))
        L += ["", md_table(["model", "arrays", "JSON content KiB", "array bytes KiB",
                            "arrays padded to alignment KiB", "vitrify file KiB", "pickle file KiB"],
                           [[label[k], n, f"{c / 1024:.1f}", f"{a / 1024:.1f}", f"{pd / 1024:.1f}",
                             f"{v / 1024:.1f}", f"{p / 1024:.1f}"]
                            for k, d, n, c, a, pd, v, p in diags]), ""]
    if analysis:
        L += [analysis.rstrip(), ""]
    return "\n".join(L).rstrip() + "\n"


def _split_sections(text: str) -> tuple[str, str | None, str]:
    """(before, my section or None, after) of BENCHMARKS.md, split on level-2 headings."""
    lines = text.splitlines(keepends=True)
    start = None
    for i, ln in enumerate(lines):
        if ln.rstrip("\n").rstrip() == SECTION:
            start = i
            break
    if start is None:
        return text, None, ""
    end = len(lines)
    in_code = False
    for j in range(start + 1, len(lines)):
        if lines[j].startswith("```"):
            in_code = not in_code
        if not in_code and lines[j].startswith("## "):
            end = j
            break
    return "".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:])


def _analysis_of(section: str | None) -> str | None:
    """The hand-written '### Analysis' subsection of the existing section, kept across runs."""
    if not section:
        return None
    m = re.search(r"^### Analysis.*?(?=^### |\Z)", section, flags=re.S | re.M)
    return m.group(0) if m else None


def write_section(md_path: str, render: Callable[[str | None], str]) -> None:
    os.makedirs(os.path.dirname(md_path), exist_ok=True)
    text = ""
    if os.path.exists(md_path):
        with open(md_path, encoding="utf-8") as fh:     # re-read right before writing
            text = fh.read()
    if not text.strip():
        text = "# Benchmarks\n\n"
    before, mine, after = _split_sections(text)
    new = render(_analysis_of(mine))
    if mine is None:
        out = before.rstrip("\n") + "\n\n" + new
    else:
        out = before + new.rstrip("\n") + "\n" + ("\n" + after.lstrip("\n") if after.strip() else "")
    tmp = md_path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(out)
    os.replace(tmp, md_path)


def plot(specs, results, png_path: str, quick: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(png_path), exist_ok=True)
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    shown = [m for m in METHODS if m != "vitrify-nosync"]   # loads the same file as "vitrify"
    n = len(shown)
    width = 0.8 / n
    colors = ["#4c72b0", "#55a868", "#8fd18f", "#2f7d3c", "#c44e52", "#8172b3", "#b09fe0"]
    xs = np.arange(len(specs))
    for i, m in enumerate(shown):
        vals = [results[s.key][m].load * 1e3 for s in specs]
        ax.bar(xs + (i - (n - 1) / 2) * width, vals, width, label=METHOD_LABEL[m], color=colors[i])
    ax.set_yscale("log")
    ax.set_ylabel("load time, ms (median, warm cache; log scale)")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{s.short}\n{_mib(results[s.key]['pickle'].size)} MiB pickle"
                        for s in specs], fontsize=8)
    ax.set_title("Loading scikit-learn models" + (" (quick run)" if quick else ""))
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models and few repeats (~1 min)")
    ap.add_argument("--models", default="", help="comma-separated subset of model keys "
                    "(rf100,rf500,et100,hgb,gb,pipe,knn,mlp)")
    ap.add_argument("--no-write", action="store_true",
                    help="print only; do not touch docs/BENCHMARKS.md or the PNG")
    ap.add_argument("--write", action="store_true",
                    help="with --quick: write docs/BENCHMARKS.md and the PNG anyway (a quick run "
                    "prints only by default, so it cannot replace the full results by accident)")
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--png", default=os.path.join(ROOT, "docs", "benchmarks", "models_load.png"))
    ap.add_argument("--json", default="", help="also write raw results to this JSON file")
    ap.add_argument("--fresh-runs", type=int, default=None, help="fresh-process runs (0 = skip)")
    ap.add_argument("--no-profile", action="store_true",
                    help="skip the cProfile of vitrify on models that miss a target")
    ap.add_argument("--tmpdir", default=None, help="folder for the model files (default: $TMPDIR)")
    args = ap.parse_args(argv)
    if args.quick:
        args.save_min, args.save_max, args.load_min, args.load_max, args.budget = 2, 3, 3, 5, 2.0
        args.fresh_runs = 1 if args.fresh_runs is None else args.fresh_runs
        args.profile_runs = 3
    else:
        args.save_min, args.save_max, args.load_min, args.load_max, args.budget = 3, 5, 5, 11, 6.0
        args.fresh_runs = 5 if args.fresh_runs is None else args.fresh_runs
        args.profile_runs = 5

    cmd = ".venv/bin/python bench/bench_models.py" + (" --quick" if args.quick else "")
    if args.models:
        cmd += f" --models {args.models}"
    if args.fresh_runs != (1 if args.quick else 5):
        cmd += f" --fresh-runs {args.fresh_runs}"

    warnings.simplefilter("ignore", category=UserWarning)
    os.environ.setdefault("VITRIFY_PROGRESS", "0")
    t_start = time.perf_counter()
    specs = model_specs(args.quick)
    if args.models:
        want = args.models.split(",")
        specs = [s for s in specs if s.key in want]
    tmp = tempfile.mkdtemp(prefix="vitrify-bench-models-", dir=args.tmpdir)
    results: dict[str, dict] = {}
    models: dict[str, Any] = {}
    try:
        for s in specs:
            t0 = time.perf_counter()
            model, X = s.build()
            print(f"{s.label}: fitted in {time.perf_counter() - t0:.1f}s", flush=True)
            models[s.key] = model
            results[s.key] = measure(s, model, X, tmp, args)
        baselines = []
        if args.fresh_runs > 0:
            for name, code in _BASELINES:
                baselines.append((name, time_subprocess(code, args.fresh_runs, not args.quick)))
        verdicts, fails = check_targets(specs, results)
        profs, diags = [], []
        if not args.no_profile:
            profs = profiles(models, fails, results, tmp, args)
            diags = diagnostics(models, list(dict.fromkeys(k for k, *_ in profs)), tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start

    # ---- console report
    print()
    print("Ratios vs pickle (method / pickle; load and save are median times):")
    hdr = f"{'model':<16}{'pickle MiB':>11} " + "".join(f"{m:>14}" for m in METHODS[1:])
    for what in ("load", "save", "size", "fresh"):
        print(f"\n[{what}]")
        print(hdr)
        for s in specs:
            r = results[s.key]
            vals = "".join(f"{_x(getattr(r[m], what), getattr(r['pickle'], what)):>14}"
                           for m in METHODS[1:])
            print(f"{s.key:<16}{r['pickle'].size / MIB:>11.2f} {vals}")
    if baselines:
        print("\nFresh-process baselines:")
        for n, t in baselines:
            print(f"  {n:<36}{t * 1e3:8.0f} ms")
    print("\nTargets:")
    for name, ok, detail in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    for key, what, total, rows in profs:
        print(f"\nProfile of {what} on {key} ({total * 1e3:.1f} ms per call under cProfile):")
        for tt, ct, nc, w in rows:
            print(f"  {tt * 1e3:8.2f} ms  {ct * 1e3:8.2f} ms cum  {nc:8g}  {w}")
    for key, d, n, c, a, _pd, v, p in diags:
        print(f"\nDiagnostics on {key} ({n} arrays, JSON content {c / 1024:.1f} KiB, arrays "
              f"{a / 1024:.1f} KiB, file {v / 1024:.1f} KiB, pickle {p / 1024:.1f} KiB):")
        for name, t in d.items():
            print(f"  {name:<42}{t * 1e3:9.2f} ms")
    print(f"\nTotal {elapsed / 60:.1f} min")

    info = machine_info()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "quick": args.quick,
                       "results": {k: {m: vars(v) for m, v in r.items()} for k, r in results.items()},
                       "baselines": baselines,
                       "verdicts": [(n, ok, d) for n, ok, d in verdicts]}, fh, indent=1)
    if args.quick and not args.write:
        args.no_write = True
    if not args.no_write:
        plot(specs, results, args.png, args.quick)
        png_rel = os.path.relpath(args.png, os.path.dirname(os.path.abspath(args.md)))
        write_section(args.md, lambda analysis: render_section(
            specs, results, verdicts, baselines, profs, diags, info, args, cmd, png_rel, elapsed,
            analysis))
        print(f"wrote {args.md} (section '{SECTION}') and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
