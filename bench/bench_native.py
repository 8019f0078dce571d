#!/usr/bin/env python3
"""Native inference benchmark (issue 4): the C++ runtime against scikit-learn, in one run.

Fits RandomForestClassifier(100 trees), HistGradientBoostingClassifier,
GradientBoostingClassifier and LogisticRegression on ``make_classification`` data (20
features), saves each with vitrify.dump and joblib.dump, then measures side by side:

* single-row ``predict_proba`` latency: scikit-learn (one-row array, median of many calls) vs
  ``runtime::model::run_row`` (bench/bench_native.cpp, Google Benchmark);
* batch throughput on 100k rows: scikit-learn ``predict_proba`` vs ``runtime::model``
  ``predict_proba`` (both single-threaded: n_jobs=1, threadpoolctl limits BLAS/OpenMP to 1);
* a fresh process that loads the forest and predicts one row: ``vitrify predict rf.vit row.csv
  --proba`` vs ``python -c 'import joblib; joblib.load(...).predict_proba(row)'`` (wall time and
  peak RSS from os.wait4);
* memory of 8 processes serving the same forest file (each has answered one request):
  ``vitrify predict rf.vit - --proba`` co-processes vs 8 Python processes with joblib.load
  (and with joblib's mmap_mode='r'); total PSS and per-process USS from psutil.

It prints a table of ratios with a PASS/FAIL verdict per target and (unless ``--no-write``)
replaces the section ``## Native inference (issue 4)`` of docs/BENCHMARKS.md, keeping every
other section and a hand-written ``### Analysis`` subsection of this one.

    make bench-native                                   # builds with -DVITRIFY_BUILD_BENCH=ON, runs this
    .venv/bin/python bench/bench_native.py --build build-bench   # with an existing build
    .venv/bin/python bench/bench_native.py --quick --no-write    # small, prints only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Native inference (issue 4)"
MIB = 2 ** 20
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

MODELS = {
    "rf": ("RandomForestClassifier(100 trees)", "sklearn.ensemble.RandomForestClassifier"),
    "hgb": ("HistGradientBoostingClassifier(100 iterations)", "sklearn.ensemble.HistGradientBoostingClassifier"),
    "gb": ("GradientBoostingClassifier(100 trees)", "sklearn.ensemble.GradientBoostingClassifier"),
    "lr": ("LogisticRegression", "sklearn.linear_model.LogisticRegression"),
}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def child_env() -> dict:
    env = dict(os.environ)
    env.update(ONE_THREAD)
    return env


# ------------------------------------------------------------------------------------------
# Models and files
# ------------------------------------------------------------------------------------------

def build_models(keys: list[str], n_train: int, n_test: int) -> tuple[dict, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=n_train + n_test, n_features=20, n_informative=10,
                               random_state=0)
    Xtr, ytr, Xte = X[:n_train], y[:n_train], np.ascontiguousarray(X[n_train:])
    makers = {
        "rf": lambda: RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0),
        "hgb": lambda: HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0),
        "gb": lambda: GradientBoostingClassifier(n_estimators=100, random_state=0),
        "lr": lambda: LogisticRegression(max_iter=1000),
    }
    models = {}
    for k in keys:
        t = time.perf_counter()
        m = makers[k]().fit(Xtr, ytr)
        if k == "rf":
            m.set_params(n_jobs=1)    # predictions single-threaded (fitting used both cores)
        models[k] = m
        log(f"  fitted {k} in {time.perf_counter() - t:.1f} s")
    return models, Xte


# ------------------------------------------------------------------------------------------
# scikit-learn in this process
# ------------------------------------------------------------------------------------------

def sklearn_row_latency(model, X: np.ndarray, budget_s: float, max_calls: int) -> float:
    """Median CPU seconds of predict_proba on a one-row array (CPU time, not wall time: the
    machine may be shared, and both sides run on one thread)."""
    for i in range(20):
        model.predict_proba(X[i:i + 1])
    times = []
    start = time.perf_counter()
    i = 0
    while len(times) < max_calls and (time.perf_counter() - start < budget_s or len(times) < 30):
        row = X[i % 1024:i % 1024 + 1]
        t = time.thread_time_ns()
        model.predict_proba(row)
        times.append(time.thread_time_ns() - t)
        i += 1
    return statistics.median(times) / 1e9


def sklearn_batch(model, X: np.ndarray, repeat: int) -> float:
    """Median CPU seconds of predict_proba on all of X."""
    times = []
    for _ in range(repeat):
        t = time.thread_time()
        model.predict_proba(X)
        times.append(time.thread_time() - t)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------
# The C++ side (Google Benchmark binary)
# ------------------------------------------------------------------------------------------

def run_cpp_bench(binary: str, data: str, files: dict, min_time: float, reps: int) -> dict:
    cmd = [binary, "--data", data]
    for k, p in files.items():
        cmd += ["--model", f"{k}={p}"]
    cmd += ["--benchmark_format=json", f"--benchmark_min_time={min_time}",
            f"--benchmark_repetitions={reps}"]
    if reps > 1:
        cmd.append("--benchmark_report_aggregates_only=true")
    log("  " + " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if r.returncode != 0:
        raise SystemExit(f"bench_native failed:\n{r.stderr}")
    doc = json.loads(r.stdout)
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    out: dict = {}
    for b in doc["benchmarks"]:
        if b.get("error_occurred"):
            raise SystemExit(f"bench_native: {b['name']}: {b.get('error_message')}")
        # One repetition: plain iteration entries; several: the median aggregate.
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if b.get("run_type") == "iteration" and reps > 1:
            continue
        kind, key = b.get("run_name", b["name"]).split("/")[:2]   # "batch/rf/real_time"
        out[(kind, key)] = b["cpu_time"] * unit[b["time_unit"]]
    return {"results": out, "context": doc.get("context", {}), "command": cmd}


# ------------------------------------------------------------------------------------------
# Fresh processes
# ------------------------------------------------------------------------------------------

def timed_run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one child process, which must succeed."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, ru.ru_utime + ru.ru_stime


TIME = shutil.which("time", path="/usr/bin:/bin")


def peak_rss(cmd: list[str]) -> int:
    """Peak RSS in bytes of one run of cmd. Measured by /usr/bin/time (GNU time): the
    ru_maxrss that os.wait4 gives this process for its own child starts from this (large)
    Python process's high-water mark, which fork and exec carry over; time's child does not
    inherit it. Without GNU time, a minimal Python launcher (about 9 MiB) is the floor."""
    if TIME:
        r = subprocess.run([TIME, "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, env=child_env())
        if r.returncode == 0:
            return int(r.stderr.strip().splitlines()[-1]) * 1024
    launcher = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n"
                "_, st, ru = os.wait4(pid, 0)\nprint(ru.ru_maxrss)")
    r = subprocess.run([sys.executable, "-S", "-c", launcher, *cmd], capture_output=True, text=True, env=child_env())
    return int(r.stdout.strip().splitlines()[-1]) * 1024


def fresh(cmd: list[str], runs: int) -> dict:
    timed_run(cmd)   # untimed: page cache, dynamic loader caches
    walls, cpus = [], []
    for _ in range(runs):
        w, c = timed_run(cmd)
        walls.append(w)
        cpus.append(c)
    rss = [peak_rss(cmd) for _ in range(3)]
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "rss": statistics.median(rss),
            "runs": runs}


# ------------------------------------------------------------------------------------------
# Serving processes sharing one model file
# ------------------------------------------------------------------------------------------

SERVE_PY = r"""
import sys, joblib, numpy as np
m = joblib.load(sys.argv[1], mmap_mode=(sys.argv[2] or None))
for line in sys.stdin:
    x = np.array([[float(v) for v in line.split(",")]])
    p = m.predict_proba(x)[0]
    sys.stdout.write(",".join(repr(float(v)) for v in p) + "\n")
    sys.stdout.flush()
"""


def serve_memory(kind: str, n: int, cli: str, vit: str, jl: str, row: list[float]) -> dict:
    """Start n serving processes, send each one row and wait for its answer, then sum their
    memory (psutil memory_full_info: USS = private pages, PSS = shared pages split among
    their users). Returns totals and the per-process mean."""
    import psutil

    line = ",".join(repr(float(v)) for v in row) + "\n"
    procs = []
    try:
        for _ in range(n):
            if kind == "vitrify":
                cmd = [cli, "predict", vit, "-", "--proba", "--quiet"]
            else:
                cmd = [sys.executable, "-c", SERVE_PY, jl, "r" if kind == "joblib-mmap" else ""]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
            procs.append(p)
            if kind == "vitrify":
                p.stdin.write(",".join(f"f{i}" for i in range(len(row))) + "\n")
            p.stdin.write(line)
            p.stdin.flush()
        for p in procs:
            if kind == "vitrify":
                p.stdout.readline()   # the output header
            answer = p.stdout.readline()
            if not answer:
                raise SystemExit(f"{kind} server died: {p.args}")
        time.sleep(0.2)
        uss = pss = rss = 0
        for p in procs:
            mi = psutil.Process(p.pid).memory_full_info()
            uss += mi.uss
            pss += mi.pss
            rss += mi.rss
        return {"n": n, "uss": uss, "pss": pss, "rss": rss}
    finally:
        for p in procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ------------------------------------------------------------------------------------------
# Profiles (for targets that are missed)
# ------------------------------------------------------------------------------------------

def perf_profile(binary: str, data: str, key: str, path: str, kind: str, workdir: str) -> str | None:
    """Top symbols of `perf record` on one bench_native benchmark, or None without perf."""
    perf = shutil.which("perf")
    if not perf:
        return None
    out = os.path.join(workdir, f"perf-{kind}-{key}.data")
    cmd = [perf, "record", "-q", "-g", "-o", out, "--", binary, "--data", data, "--model", f"{key}={path}",
           f"--benchmark_filter=^{kind}/{key}$", "--benchmark_min_time=1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if r.returncode != 0:
        return None
    rep = subprocess.run([perf, "report", "-i", out, "--no-children", "--stdio", "--percent-limit", "2",
                          "-g", "none", "--sort", "symbol"], capture_output=True, text=True)
    # "    98.27%  [.] symbol      -      -   ": keep the share and the symbol
    lines = [re.sub(r"(\s+-)+\s*$", "", ln).rstrip()[:160] for ln in rep.stdout.splitlines()
             if ln.strip() and not ln.startswith("#")]
    if not lines:
        return None
    text = "\n".join(lines[:15])
    # The hot function is mostly one inlined loop: its hottest instructions say more.
    top = re.match(r"\s*[\d.]+%\s+\[\.\]\s+(.*)$", lines[0])
    if top:
        ann = subprocess.run([perf, "annotate", "-i", out, "--stdio", "-s", top.group(1).strip()],
                             capture_output=True, text=True)
        hot = sorted((ln.strip() for ln in ann.stdout.splitlines() if re.match(r"\s+\d+\.\d+\s+:", ln)),
                     key=lambda ln: -float(ln.split(":")[0]))[:10]
        if hot:
            text += "\n\nhottest instructions of the first symbol (% of its samples):\n" + "\n".join(
                re.sub(r"\s+", " ", h)[:120] for h in hot)
    return text


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

@dataclass
class Results:
    keys: list[str]
    n_train: int
    n_test: int
    sizes: dict = field(default_factory=dict)        # key -> (vitrify bytes, joblib bytes)
    parity: dict = field(default_factory=dict)       # key -> max abs difference of predict_proba
    sk_row: dict = field(default_factory=dict)
    sk_batch: dict = field(default_factory=dict)
    cpp: dict = field(default_factory=dict)
    fresh: dict = field(default_factory=dict)        # name -> {wall, rss}
    serve: dict = field(default_factory=dict)        # kind -> {1: {...}, 8: {...}}
    profiles: dict = field(default_factory=dict)
    commands: dict = field(default_factory=dict)
    elapsed: float = 0.0


def fmt_t(s: float) -> str:
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def verdicts(R: Results) -> list[tuple[bool, str]]:
    out = []
    f = R.fresh
    if "vitrify predict (rf)" in f and "python joblib (rf)" in f:
        v, p = f["vitrify predict (rf)"], f["python joblib (rf)"]
        sp = p["wall"] / v["wall"]
        cp = p["cpu"] / v["cpu"]
        out.append((sp >= 50, f"fresh `vitrify predict` (RF 100 trees, one row) >= 50x faster than `python -c "
                              f"joblib.load(...).predict_proba(row)`: {sp:.1f}x wall time ({fmt_t(v['wall'])} vs "
                              f"{fmt_t(p['wall'])}); {cp:.1f}x in CPU time ({fmt_t(v['cpu'])} vs {fmt_t(p['cpu'])})"))
        mr = v["rss"] / p["rss"]
        out.append((mr <= 0.25, f"its peak memory <= 1/4 of Python's: {mr:.3f}x ({v['rss'] / MIB:.1f} MiB vs "
                                f"{p['rss'] / MIB:.1f} MiB)"))
    for k in R.keys:
        if ("row", k) in R.cpp and k in R.sk_row:
            sp = R.sk_row[k] / R.cpp[("row", k)]
            out.append((sp >= 50, f"{k}: single-row predict_proba latency >= 50x lower than scikit-learn's: {sp:.0f}x "
                                  f"({fmt_t(R.cpp[('row', k)])} vs {fmt_t(R.sk_row[k])})"))
    for k in R.keys:
        if ("batch", k) in R.cpp and k in R.sk_batch:
            sp = R.sk_batch[k] / R.cpp[("batch", k)]
            out.append((sp >= 2, f"{k}: batch throughput on {R.n_test // 1000}k rows >= 2x scikit-learn's "
                                 f"single-threaded: {sp:.2f}x ({R.n_test / R.cpp[('batch', k)] / 1e6:.2f} M rows/s vs "
                                 f"{R.n_test / R.sk_batch[k] / 1e6:.2f} M rows/s)"))
    return out


def render(R: Results, meta: dict, analysis: str | None) -> str:
    L = [SECTION, ""]
    L += [f"Generated by `bench/bench_native.py` on {meta['date']} ({R.elapsed / 60:.1f} min). Reproduce with:", "",
          "```sh", "make bench-native", "# or, with a build configured with -DVITRIFY_BUILD_BENCH=ON:",
          f".venv/bin/python bench/bench_native.py --build {meta['build']}", "```", ""]
    L += [f"Machine: {meta['machine']}. {meta['versions']}.", ""]
    L += ["Method: the models are fitted on `make_classification` data (20 features, 10 informative, "
          f"{R.n_train // 1000}k training rows, fixed seeds) and predict `predict_proba` on {R.n_test // 1000}k "
          "other rows. Everything is single-threaded: scikit-learn with `n_jobs=1` and threadpoolctl limiting "
          "BLAS/OpenMP to one thread (and `OMP_NUM_THREADS=1` etc. in every child process); the runtime has no "
          "threads. Latency and throughput are CPU time of the one thread that works (the machine is shared, "
          "so wall time would count other jobs' time slices): scikit-learn latency is the median of many "
          "`predict_proba` calls on a one-row array in this process (`time.thread_time`); the C++ numbers are Google Benchmark medians of "
          f"{meta['reps']} repetitions (`bench/bench_native.cpp`: `row/*` is `runtime::model::run_row`, "
          "`batch/*` is `runtime::model::predict_proba` on the whole matrix, `load/*` is `runtime::model::load` "
          "with checksum verification, warm page cache). Fresh-process rows are medians of "
          f"{meta['fresh_runs']} runs after an untimed one (wall time around fork+exec+wait, CPU time from "
          "`wait4`; peak RSS: median of 3 runs under GNU `time -f %M`). The serving rows start N processes, send each one row and wait for the answer, then sum "
          "`psutil` `memory_full_info()` over them: USS is memory private to a process, PSS counts shared pages "
          "divided among the processes sharing them.", ""]
    L += ["### Targets", ""]
    for ok, text in verdicts(R):
        L.append(f"- **{'PASS' if ok else 'FAIL'}** — {text}")
    L.append("")

    L += ["### Latency and throughput", "",
          "| model | vitrify MiB | joblib MiB | load (C++) | 1 row: sklearn | 1 row: C++ | speed-up | "
          "100k rows: sklearn | 100k rows: C++ | speed-up | max abs diff |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k in R.keys:
        label = MODELS[k][0]
        if ("batch", k) not in R.cpp:
            L.append(f"| {label} | | | | {fmt_t(R.sk_row.get(k, float('nan')))} | not implemented | | "
                     f"{fmt_t(R.sk_batch.get(k, float('nan')))} | not implemented | | |")
            continue
        vs, js = R.sizes[k]
        L.append(f"| {label} | {vs / MIB:.2f} | {js / MIB:.2f} | {fmt_t(R.cpp[('load', k)])} | {fmt_t(R.sk_row[k])} | "
                 f"{fmt_t(R.cpp[('row', k)])} | {R.sk_row[k] / R.cpp[('row', k)]:.0f}x | {fmt_t(R.sk_batch[k])} | "
                 f"{fmt_t(R.cpp[('batch', k)])} | {R.sk_batch[k] / R.cpp[('batch', k)]:.2f}x | {R.parity[k]:.1e} |")
    L.append("")

    if R.fresh:
        L += ["### Fresh process: load the forest and predict one row", "",
              "| command | wall time (median) | CPU time, user + system (median) | peak RSS |",
              "| --- | ---: | ---: | ---: |"]
        for name, d in R.fresh.items():
            L.append(f"| {name} | {fmt_t(d['wall'])} | {fmt_t(d['cpu'])} | {d['rss'] / MIB:.1f} MiB |")
        L += ["", "Commands:", "", "```sh"] + [R.commands[n] for n in R.fresh if n in R.commands] + ["```", ""]

    if R.serve:
        L += ["### Processes serving the same forest file", "",
              "| server | model file | 1 process: PSS | 8 processes: total PSS | growth per extra process (PSS) | "
              "USS per process (8 running) | RSS per process |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for kind, d in R.serve.items():
            one, many = d[1], d[8]
            growth = (many["pss"] - one["pss"]) / 7
            L.append(f"| {kind} | {d['file'] / MIB:.2f} MiB | {one['pss'] / MIB:.1f} MiB | {many['pss'] / MIB:.1f} MiB | "
                     f"{growth / MIB:.1f} MiB | {many['uss'] / 8 / MIB:.1f} MiB | {many['rss'] / 8 / MIB:.1f} MiB |")
        L += ["", "Servers: `vitrify predict rf.vit - --proba` (rows on standard input, one answer per row); "
              "Python: a loop reading rows from standard input around `joblib.load(path)` (or "
              "`joblib.load(path, mmap_mode='r')`) and `predict_proba`.", ""]

    if R.profiles:
        L += ["### Profiles of missed targets", "",
              "`perf record -g` on the benchmark binary (self time by symbol, >= 2%):", ""]
        for name, text in R.profiles.items():
            L += [f"`{name}`:", "", "```", text, "```", ""]
    if analysis:
        L += [analysis.rstrip(), ""]
    return "\n".join(L).rstrip() + "\n"


def _split_sections(text: str) -> tuple[str, str | None, str]:
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        return text, None, ""
    end, in_code = len(lines), False
    for j in range(start + 1, len(lines)):
        if lines[j].startswith("```"):
            in_code = not in_code
        if not in_code and lines[j].startswith("## "):
            end = j
            break
    return "".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:])


def write_section(md_path: str, R: Results, meta: dict) -> None:
    text = open(md_path, encoding="utf-8").read() if os.path.exists(md_path) else ""
    if not text.strip():
        text = "# Benchmarks\n\n"
    before, mine, after = _split_sections(text)
    analysis = None
    if mine:
        m = re.search(r"^### Analysis.*?(?=^### |\Z)", mine, flags=re.S | re.M)
        analysis = m.group(0) if m else None
    new = render(R, meta, analysis)
    if mine is None:
        out = text.rstrip("\n") + "\n\n" + new
    else:
        out = before + new + ("\n" + after if after else "")
    tmp = md_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(out)
    os.replace(tmp, md_path)


def machine_meta(build: str, reps: int, fresh_runs: int) -> dict:
    import joblib
    import sklearn

    import vitrify

    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    cpu = "?"
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores ({cpu}), shared with other jobs (load average at the end: "
                   f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}); {platform.platform()}",
        "versions": f"Python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
                    f"joblib {joblib.__version__}, vitrify {vitrify.__version__} (commit {commit}"
                    f"{' + uncommitted changes' if dirty else ''}), compiler and flags of the `{build}` build "
                    "(Release)",
        "build": os.path.relpath(build, ROOT) if os.path.isabs(build) else build,
        "reps": reps,
        "fresh_runs": fresh_runs,
    }


# ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                    help="build folder configured with -DVITRIFY_BUILD_BENCH=ON (bench/bench_native, tools/vitrify/vitrify)")
    ap.add_argument("--cli", help="the vitrify binary (default: BUILD/tools/vitrify/vitrify)")
    ap.add_argument("--models", default="rf,hgb,gb,lr", help="subset of rf,hgb,gb,lr")
    ap.add_argument("--train", type=int, default=20000, help="training rows")
    ap.add_argument("--rows", type=int, default=100000, help="rows of the batch benchmark")
    ap.add_argument("--fresh-runs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3, help="Google Benchmark repetitions")
    ap.add_argument("--serve", type=int, default=8, help="processes of the memory-sharing experiment (0: skip)")
    ap.add_argument("--quick", action="store_true", help="small data and few repeats; implies --no-write")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-profile", action="store_true", help="no perf profile of missed targets")
    ap.add_argument("--markdown", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args()
    if args.quick:
        args.train, args.rows, args.fresh_runs, args.reps, args.no_write = 3000, 20000, 3, 1, True

    import joblib
    from threadpoolctl import threadpool_limits

    import vitrify
    import vitrify.native

    binary = os.path.join(args.build, "bench", "bench_native")
    cli = args.cli or os.path.join(args.build, "tools", "vitrify", "vitrify")
    for p in (binary, cli):
        if not os.path.exists(p):
            raise SystemExit(f"{p} not found: configure {args.build} with -DVITRIFY_BUILD_BENCH=ON and build it "
                             "(or run `make bench-native`)")
    supported = set(vitrify.native.supported_types())
    keys = [k for k in args.models.split(",") if k]
    for k in keys:
        if k not in MODELS:
            raise SystemExit(f"unknown model {k!r}")

    t0 = time.perf_counter()
    work = args.workdir or tempfile.mkdtemp(prefix="vitrify-bench-native-")
    os.makedirs(work, exist_ok=True)
    R = Results(keys=keys, n_train=args.train, n_test=args.rows)
    try:
        log(f"fitting {', '.join(keys)} on {args.train} rows")
        models, X = build_models(keys, args.train, args.rows)
        data = os.path.join(work, "X.vit")
        vitrify.save_arrays(data, {"X": X})
        native_files = {}
        for k, m in models.items():
            vit, jl = os.path.join(work, f"{k}.vit"), os.path.join(work, f"{k}.joblib")
            vitrify.dump(m, vit)
            joblib.dump(m, jl)
            R.sizes[k] = (os.path.getsize(vit), os.path.getsize(jl))
            if MODELS[k][1] in supported:
                nm = vitrify.native.load(vit)
                R.parity[k] = float(np.max(np.abs(nm.predict_proba(X[:2000]) - m.predict_proba(X[:2000]))))
                native_files[k] = vit
            else:
                log(f"  {k}: the runtime does not implement {MODELS[k][1]} yet: scikit-learn side only")

        log("scikit-learn, single-threaded")
        with threadpool_limits(limits=1):
            for k, m in models.items():
                R.sk_row[k] = sklearn_row_latency(m, X, budget_s=1.0 if args.quick else 3.0, max_calls=5000)
                R.sk_batch[k] = sklearn_batch(m, X, repeat=1 if args.quick else 3)
                log(f"  {k}: row {fmt_t(R.sk_row[k])}, batch {fmt_t(R.sk_batch[k])}")

        if native_files:
            log("C++ runtime (Google Benchmark)")
            cpp = run_cpp_bench(binary, data, native_files, min_time=0.2 if args.quick else 0.5, reps=args.reps)
            R.cpp = cpp["results"]
            for k in native_files:
                log(f"  {k}: load {fmt_t(R.cpp[('load', k)])}, row {fmt_t(R.cpp[('row', k)])}, "
                    f"batch {fmt_t(R.cpp[('batch', k)])}")

        if "rf" in native_files:
            log("fresh processes (RandomForest, one row)")
            row_csv, row_npy = os.path.join(work, "row.csv"), os.path.join(work, "row.npy")
            with open(row_csv, "w") as fh:
                fh.write(",".join(f"f{i}" for i in range(X.shape[1])) + "\n")
                fh.write(",".join(repr(float(v)) for v in X[0]) + "\n")
            np.save(row_npy, X[:1])
            rf_vit, rf_jl = native_files["rf"], os.path.join(work, "rf.joblib")
            cmds = {
                "vitrify predict (rf)": [cli, "predict", rf_vit, row_csv, "--proba"],
                "python joblib (rf)": [sys.executable, "-c",
                                       "import sys, joblib, numpy as np; "
                                       "print(joblib.load(sys.argv[1]).predict_proba(np.load(sys.argv[2])))",
                                       rf_jl, row_npy],
                "python (empty `-c pass`, for reference)": [sys.executable, "-c", "pass"],
            }
            for name, cmd in cmds.items():
                runs = args.fresh_runs if "vitrify" in name else max(3, args.fresh_runs // 2)
                R.fresh[name] = fresh(cmd, runs)
                R.commands[name] = shlex.join(["python" if c == sys.executable else "vitrify" if c == cli else
                                               os.path.basename(c) if os.path.isabs(c) else c for c in cmd])
                log(f"  {name}: {fmt_t(R.fresh[name]['wall'])}, peak RSS {R.fresh[name]['rss'] / MIB:.1f} MiB")

            if args.serve > 1:
                log(f"{args.serve} processes serving rf")
                servers = [("vitrify predict, RandomForest", "vitrify", rf_vit),
                           ("python joblib.load, RandomForest", "joblib", rf_jl),
                           ("python joblib.load(mmap_mode='r'), RandomForest", "joblib-mmap", rf_jl)]
                if "lr" in native_files:   # the process alone: a model of a few hundred bytes
                    servers.append(("vitrify predict, LogisticRegression (baseline: the process itself)",
                                    "vitrify", native_files["lr"]))
                for label, kind, path in servers:
                    R.serve[label] = {"file": os.path.getsize(path)}
                    for n in (1, args.serve):
                        R.serve[label][1 if n == 1 else 8] = serve_memory(kind, n, cli, path, path, list(X[0]))
                    d = R.serve[label]
                    log(f"  {label}: PSS 1 -> {d[1]['pss'] / MIB:.1f} MiB, {args.serve} -> {d[8]['pss'] / MIB:.1f} MiB, "
                        f"USS {d[8]['uss'] / 8 / MIB:.1f} MiB each")

        R.elapsed = time.perf_counter() - t0
        missed = [(ok, t) for ok, t in verdicts(R) if not ok]
        if missed and not args.no_profile and not args.quick:
            for k in native_files:
                for kind in ("row", "batch"):
                    if any(t.startswith(f"{k}: {'single-row' if kind == 'row' else 'batch'}") for _, t in missed):
                        prof = perf_profile(binary, data, k, native_files[k], kind, work)
                        if prof:
                            R.profiles[f"{kind}/{k}"] = prof
        R.elapsed = time.perf_counter() - t0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    meta = machine_meta(args.build, args.reps, args.fresh_runs)
    print(render(R, meta, None))
    if not args.no_write:
        write_section(args.markdown, R, meta)
        log(f"wrote the section '{SECTION}' of {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
