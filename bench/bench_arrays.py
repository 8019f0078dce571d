#!/usr/bin/env python3
"""Benchmark: saving and loading a dict of float32 arrays with vitrify and its alternatives.

One run measures, side by side and on the same data:

  vitrify raw (memory-mapped load), vitrify zstd level 3 and 1, pickle protocol 5, joblib
  (plain, mmap_mode='r', compress=3), numpy .npz (np.savez) and safetensors.numpy
  (save_file / load_file, and safe_open for lazy access),

and for each: save time, file size, peak extra memory while saving, open time (getting the
dict of arrays; for memory-mapped loaders this touches no array data), full read time (open
and then touch every page of every array) and, as the baseline, plain read() of the vitrify
file's bytes into a preallocated buffer.

Data: --arrays float32 arrays (default 16) totalling --size-mib MiB (default 1024), of
standard-normal values rounded to 2 decimals (x = round(100*N(0,1))/100), which leaves some
compressibility (about 10 significant bits of 32) as in trained weights stored at low precision.

Every measurement runs in its own subprocess (so that memory peaks and caches of one do not
leak into another); each is repeated --repeat times and the median is reported. Warm numbers
(file in the page cache) are primary; --cold adds cold runs after
`sync; echo 3 > /proc/sys/vm/drop_caches` (needs root; it empties the machine's whole page cache).

This is not a test. Examples:

    .venv/bin/python bench/bench_arrays.py --size-mib 64                 # quick look
    .venv/bin/python bench/bench_arrays.py --size-mib 1024 --cold --markdown docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Arrays (issue 2)"
PAGE = 4096

# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------
# key: (label, file key, extension, lazy)
METHODS = {
    "vit_raw":        ("vitrify raw, mmap",               "vit_raw", ".vit", True),
    "vit_raw_verify": ("vitrify raw, mmap + verify",      "vit_raw", ".vit", False),
    "vit_raw_copy":   ("vitrify raw, mmap=False (copy)",  "vit_raw", ".vit", False),
    "vit_zstd3":      ("vitrify zstd level 3",            "vit_zstd3", ".vit", False),
    "vit_zstd1":      ("vitrify zstd level 1",            "vit_zstd1", ".vit", False),
    "pickle5":        ("pickle protocol 5",               "pickle5", ".pkl", False),
    "joblib":         ("joblib",                          "joblib", ".joblib", False),
    "joblib_mmap":    ("joblib mmap_mode='r'",            "joblib", ".joblib", True),
    "joblib_z3":      ("joblib compress=3",               "joblib_z3", ".joblib", False),
    "npz":            ("numpy .npz (np.savez)",           "npz", ".npz", False),
    "st":             ("safetensors load_file",           "st", ".safetensors", False),
    "st_lazy":        ("safetensors safe_open (lazy)",    "st", ".safetensors", True),
}
# Save-only variants: (label, file key) measured for save time and memory only.
SAVE_ONLY = {"vit_raw_durable": ("vitrify raw, durable=True (fsync)", "vit_raw_durable")}
FILE_EXT = {"vit_raw": ".vit", "vit_raw_durable": ".vit", "vit_zstd3": ".vit", "vit_zstd1": ".vit",
            "pickle5": ".pkl", "joblib": ".joblib", "joblib_z3": ".joblib", "npz": ".npz", "st": ".safetensors"}
SAVE_LABEL = {"vit_raw": "vitrify raw", "vit_raw_durable": "vitrify raw, durable=True (fsync)",
              "vit_zstd3": "vitrify zstd level 3", "vit_zstd1": "vitrify zstd level 1",
              "pickle5": "pickle protocol 5", "joblib": "joblib", "joblib_z3": "joblib compress=3",
              "npz": "numpy .npz (np.savez)", "st": "safetensors save_file"}


def save_fn(file_key: str):
    if file_key.startswith("vit_"):
        import vitrify
        compress = {"vit_zstd3": 3, "vit_zstd1": 1}.get(file_key)
        durable = file_key == "vit_raw_durable"
        return lambda path, arrays: vitrify.save_arrays(path, arrays, compress=compress, durable=durable)
    if file_key == "pickle5":
        import pickle

        def f(path, arrays):
            with open(path, "wb") as fh:
                pickle.dump(arrays, fh, protocol=5)
        return f
    if file_key in ("joblib", "joblib_z3"):
        import joblib
        compress = 3 if file_key == "joblib_z3" else 0
        return lambda path, arrays: joblib.dump(arrays, path, compress=compress)
    if file_key == "npz":
        import numpy as np
        return lambda path, arrays: np.savez(path, **arrays)
    if file_key == "st":
        from safetensors.numpy import save_file
        return lambda path, arrays: save_file(arrays, path)
    raise KeyError(file_key)


def open_fn(method: str):
    """A function path -> (dict of arrays, keepalive); for lazy loaders no array data is read."""
    if method.startswith("vit_"):
        import vitrify
        kw = {"vit_raw_verify": {"verify": True}, "vit_raw_copy": {"mmap": False}}.get(method, {})
        return lambda path: (vitrify.load_arrays(path, **kw), None)
    if method == "pickle5":
        import pickle

        def f(path):
            with open(path, "rb") as fh:
                return pickle.load(fh), None
        return f
    if method in ("joblib", "joblib_z3", "joblib_mmap"):
        import joblib
        mm = "r" if method == "joblib_mmap" else None
        return lambda path: (joblib.load(path, mmap_mode=mm), None)
    if method == "npz":
        import numpy as np

        def f(path):
            with np.load(path) as z:
                return {k: z[k] for k in z.files}, None
        return f
    if method == "st":
        from safetensors.numpy import load_file
        return lambda path: (load_file(path), None)
    if method == "st_lazy":
        from safetensors import safe_open

        def f(path):
            h = safe_open(path, framework="np")
            h.__enter__()
            return LazySafetensors(h), h
        return f
    raise KeyError(method)


class LazySafetensors:
    """The handle of safe_open: keys are known at open, tensors are read on access."""

    def __init__(self, h):
        self.h = h
        self.names = list(h.keys())

    def values(self):
        return (self.h.get_tensor(k) for k in self.names)


def touch(d) -> int:
    """Read one byte of every page of every array (forces memory-mapped data in)."""
    import numpy as np
    s = 0
    for a in d.values():
        b = np.asarray(a).reshape(-1).view(np.uint8)
        if b.size:
            s += int(b[::PAGE].sum()) + int(b[-1])
    return s


# ----------------------------------------------------------------------------------------------
# Worker side (one measurement per process)
# ----------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def prefault(mib: int) -> None:
    """Touch and free `mib` MiB of anonymous memory. On VMs that hand free guest memory back to
    the host (virtio-balloon free page reporting), the first touch of such memory costs up to
    ~2 s/GiB and varies from run to run; touching it first makes the timed allocations steady."""
    if mib <= 0:
        return
    import numpy as np
    a = np.ones(mib << 20, np.uint8)
    del a


def load_data(workdir: Path):
    import numpy as np
    layout = json.loads((workdir / "layout.json").read_text())
    arrays = {}
    with open(workdir / "data.bin", "rb", buffering=0) as f:
        for name, shape in layout["arrays"]:
            a = np.empty(shape, np.float32)
            mv = memoryview(a.reshape(-1).view(np.uint8))
            got = 0
            while got < len(mv):
                n = f.readinto(mv[got:])
                assert n, "data.bin too short"
                got += n
            arrays[name] = a
    return arrays


def worker(args) -> dict:
    import numpy as np
    path = args.path
    if args.worker == "save":
        fn = save_fn(args.method)
        arrays = load_data(Path(args.workdir))
        import gc
        gc.collect()
        prefault(args.prefault_mib)
        exact = _reset_peak()
        rss0 = _status_kib("VmRSS")
        import resource
        maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        fn(path, arrays)
        dt = time.perf_counter() - t0
        hwm = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base = rss0 if exact else maxrss0
        return {"seconds": dt, "peak_extra_bytes": max(0, hwm - base) * 1024, "exact_peak": exact,
                "size": os.path.getsize(path)}
    if args.worker == "open":
        fn = open_fn(args.method)
        prefault(args.prefault_mib)
        times = []
        for _ in range(args.inner):
            t0 = time.perf_counter()
            d, keep = fn(path)
            times.append(time.perf_counter() - t0)
            del d, keep
        return {"times": times}
    if args.worker == "full":
        fn = open_fn(args.method)
        prefault(args.prefault_mib)
        t0 = time.perf_counter()
        d, keep = fn(path)
        t1 = time.perf_counter()
        s = touch(d)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "open": t1 - t0, "checksum": s}
    if args.worker == "readraw":
        size = os.path.getsize(path)
        prefault(args.prefault_mib)
        buf = np.ones(size, np.uint8)  # preallocated and faulted in: the best case for read()
        mv = memoryview(buf)
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            got = 0
            while got < size:
                n = f.readinto(mv[got:])
                if not n:
                    break
                got += n
        dt = time.perf_counter() - t0
        assert got == size
        return {"seconds": dt, "bytes": got}
    raise ValueError(args.worker)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def make_data(workdir: Path, size_mib: int, n_arrays: int, seed: int) -> None:
    import numpy as np
    layout_path = workdir / "layout.json"
    total = size_mib << 20
    per = total // n_arrays // 4  # float32 elements per array
    cols = 1024 if per % 1024 == 0 else 1
    shapes = [[f"layer{i:02d}.weight", [per // cols, cols] if cols > 1 else [per]] for i in range(n_arrays)]
    want = {"arrays": shapes, "seed": seed, "size_mib": size_mib,
            "data": "round(100 * N(0,1)) / 100 as float32, numpy default_rng(seed)"}
    if layout_path.exists() and json.loads(layout_path.read_text()) == want and \
            (workdir / "data.bin").stat().st_size == per * 4 * n_arrays:
        return
    rng = np.random.default_rng(seed)
    chunk = 1 << 22
    with open(workdir / "data.bin", "wb") as f:
        left = per * n_arrays
        while left:
            n = min(chunk, left)
            x = rng.standard_normal(n, dtype=np.float32)
            np.multiply(x, 100, out=x)
            np.round(x, out=x)
            np.divide(x, 100, out=x)
            f.write(x.tobytes())
            left -= n
    layout_path.write_text(json.dumps(want))


def run_worker(args, mode: str, method: str, path: Path, inner: int = 1) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--method", method,
           "--path", str(path), "--workdir", str(args.workdir), "--inner", str(inner),
           "--prefault-mib", str(args.prefault_mib)]
    # One BLAS thread: idle OpenBLAS worker threads otherwise spin on this small machine.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"worker {mode} {method} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def prewarm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def med(xs):
    return statistics.median(xs) if xs else None


def machine_info() -> dict:
    import numpy as np
    info = {"nproc": os.cpu_count(), "cpu": platform.processor() or "?", "kernel": platform.release(),
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    for mod in ("vitrify", "joblib", "safetensors"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = "?"
    info["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def fmt(x, spec=".3f", none="—"):
    return none if x is None else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024, help="total size of the arrays (default 1024)")
    ap.add_argument("--arrays", type=int, default=16, help="number of arrays (default 16)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per measurement; median reported")
    ap.add_argument("--warmup", type=int, default=1, help="untimed save runs before the timed ones (default 1)")
    ap.add_argument("--cold", action="store_true", help="also measure with the page cache dropped (root)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ",".join(METHODS))
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default bench/out/arrays-<N>MiB)")
    ap.add_argument("--markdown", type=Path, default=None, help="write the results into this markdown file's "
                    f"'{SECTION}' section (other sections are kept)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch files")
    ap.add_argument("--notes", type=Path, default=ROOT / "bench" / "arrays_notes.md",
                    help="markdown appended to the generated section (analysis of the numbers; default "
                         "bench/arrays_notes.md if it exists)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="measure nothing: re-render the report of an earlier run (its results.json), "
                         "e.g. after editing the notes")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--inner", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--prefault-mib", type=int, default=None,
                    help="anonymous memory each measuring process touches and frees before timing "
                         "(default: 1.25x --size-mib; 0 disables)")
    args = ap.parse_args(argv)

    if args.prefault_mib is None:
        args.prefault_mib = args.size_mib * 5 // 4
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    if args.render:
        res = json.loads(args.render.read_text())
        res["notes"] = args.notes.read_text(encoding="utf-8") if args.notes and args.notes.is_file() else None
        text = render(res, [m for m in res["args"]["methods"].split(",") if m], argv)
        print(text)
        if args.markdown:
            write_markdown(args.markdown, text)
        return 0

    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}")
    if args.workdir is None:
        args.workdir = ROOT / "bench" / "out" / f"arrays-{args.size_mib}MiB"
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    t_start = time.time()
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    log(f"data: {args.arrays} float32 arrays, {args.size_mib} MiB total, in {args.workdir}")
    make_data(args.workdir, args.size_mib, args.arrays, args.seed)
    nbytes = (args.workdir / "data.bin").stat().st_size

    file_keys = []
    for m in methods:
        fk = METHODS[m][1]
        if fk not in file_keys:
            file_keys.append(fk)
    if "vit_raw" in file_keys:
        file_keys.insert(file_keys.index("vit_raw") + 1, "vit_raw_durable")
    paths = {fk: args.workdir / f"{fk}{FILE_EXT[fk]}" for fk in file_keys}

    # ---- saves ----
    saves: dict[str, dict] = {}
    for fk in file_keys:
        runs = []
        for r in range(-args.warmup, args.repeat):
            p = paths[fk]
            if p.exists():
                p.unlink()
            os.sync()
            res = run_worker(args, "save", fk, p)
            os.sync()  # write-back outside the timed region
            log(f"save {fk:16} " + (f"run {r + 1}" if r >= 0 else "warm-up") + f": {res['seconds']:.3f} s, "
                f"peak extra {res['peak_extra_bytes'] / 2**20:.1f} MiB, {res['size'] / 2**20:.1f} MiB")
            if r >= 0:
                runs.append(res)
        saves[fk] = {"seconds": med([x["seconds"] for x in runs]),
                     "peak_extra_bytes": med([x["peak_extra_bytes"] for x in runs]),
                     "size": runs[-1]["size"], "runs": runs}
    if "vit_raw_durable" in paths and paths["vit_raw_durable"].exists() and not args.keep:
        paths["vit_raw_durable"].unlink()

    # ---- loads, warm ----
    loads: dict[str, dict] = {}
    for m in methods:
        p = paths[METHODS[m][1]]
        opens, firsts, fulls = [], [], []
        lazy = METHODS[m][3]
        for r in range(args.repeat):
            if lazy:  # open alone, repeated in the process (the first one separately)
                prewarm(p)
                o = run_worker(args, "open", m, p, inner=5)
                firsts.append(o["times"][0])
                opens.extend(o["times"][1:])
            prewarm(p)
            f = run_worker(args, "full", m, p)
            fulls.append(f["seconds"])
            if not lazy:  # open = the loading part of the full read, same process
                firsts.append(f["open"])
                opens.append(f["open"])
            log(f"load {m:16} run {r + 1}: open {firsts[-1] * 1e3:.3f} ms (first in process), "
                f"full read {fulls[-1]:.3f} s")
        loads[m] = {"open_first": med(firsts), "open": med(opens), "full": med(fulls),
                    "runs": {"open_first": firsts, "open": opens, "full": fulls}}
    base_path = paths.get("vit_raw") or next(iter(paths.values()))
    reads = []
    for r in range(args.repeat):
        prewarm(base_path)
        reads.append(run_worker(args, "readraw", "-", base_path)["seconds"])
    readraw = {"seconds": med(reads), "bytes": os.path.getsize(base_path), "runs": reads}
    log(f"read() baseline: {readraw['seconds']:.3f} s for {readraw['bytes'] / 2**20:.1f} MiB")

    # ---- loads, cold ----
    cold = None
    if args.cold:
        if not drop_caches():
            log("--cold: cannot write /proc/sys/vm/drop_caches (not root?); cold runs skipped")
        else:
            cold = {}
            for m in methods:
                p = paths[METHODS[m][1]]
                opens, fulls = [], []
                for r in range(args.repeat):
                    drop_caches()
                    f = run_worker(args, "full", m, p)
                    fulls.append(f["seconds"])
                    if METHODS[m][3]:
                        drop_caches()
                        opens.append(run_worker(args, "open", m, p)["times"][0])
                    else:
                        opens.append(f["open"])
                cold[m] = {"open": med(opens), "full": med(fulls), "runs": {"open": opens, "full": fulls}}
                log(f"cold {m:16}: open {cold[m]['open'] * 1e3:.3f} ms, full read {cold[m]['full']:.3f} s")
            rs = []
            for r in range(args.repeat):
                drop_caches()
                rs.append(run_worker(args, "readraw", "-", base_path)["seconds"])
            cold["readraw"] = med(rs)
            log(f"cold read() baseline: {cold['readraw']:.3f} s")

    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": info, "nbytes": nbytes, "saves": saves, "loads": loads, "readraw": readraw,
               "cold": cold, "elapsed_s": time.time() - t_start,
               "load_average_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
               "notes": args.notes.read_text(encoding="utf-8") if args.notes and args.notes.is_file() else None}
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1))
    text = render(results, methods, argv)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text)
        log(f"wrote section {SECTION!r} of {args.markdown}")
    if not args.keep:
        for p in paths.values():
            if p.exists():
                p.unlink()
    return 0


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def ratio_text(r: float) -> str:
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def render(res: dict, methods: list[str], argv) -> str:
    saves, loads, cold, rr = res["saves"], res["loads"], res["cold"], res["readraw"]
    nbytes = res["nbytes"]
    mib = nbytes / 2**20
    a = res["args"]
    cmd_args = ["--size-mib", str(a["size_mib"])]
    if a["arrays"] != 16:
        cmd_args += ["--arrays", str(a["arrays"])]
    if a["repeat"] != 3:
        cmd_args += ["--repeat", str(a["repeat"])]
    if a["cold"]:
        cmd_args.append("--cold")
    if a["methods"] != ",".join(METHODS):
        cmd_args += ["--methods", a["methods"]]
    if a.get("markdown"):
        cmd_args += ["--markdown", os.path.relpath(a["markdown"], ROOT) if os.path.isabs(a["markdown"]) else a["markdown"]]
    command = ".venv/bin/python bench/bench_arrays.py " + " ".join(cmd_args)
    mi = res["machine"]
    L = []
    L.append(SECTION)
    L.append("")
    L.append(f"Saving and loading a dict of {a['arrays']} float32 arrays totalling {mib:.0f} MiB "
             f"({nbytes:,} bytes). Data: standard-normal values rounded to 2 decimals "
             "(`round(100*x)/100`), so about 10 of 32 bits carry information and the data "
             "compresses somewhat, as low-precision weights do. Every measurement runs in a fresh "
             f"process; each is the median of {a['repeat']} runs (saves after {a.get('warmup', 0)} untimed run(s)); "
             "\"best\" is the fastest run. Warm = file in the page cache. Before timing, each measuring process "
             f"touches and frees {a.get('prefault_mib') or 0} MiB of memory (see the notes on this VM's memory).")
    L.append("")
    L.append("Reproduce (from the repository root, after `make python`):")
    L.append("")
    L.append("```")
    L.append(command)
    L.append("```")
    L.append("")
    L.append(f"Machine: {mi.get('nproc')} CPUs ({mi.get('cpu')}), {mi.get('memory', '?')} RAM, Linux "
             f"{mi.get('kernel')}; Python {mi.get('python')}, numpy {mi.get('numpy')}, vitrify "
             f"{mi.get('vitrify')}, joblib {mi.get('joblib')}, safetensors {mi.get('safetensors')}. "
             f"Load average at start: {mi.get('load_average')}, at the end: {res.get('load_average_end')} "
             f"(a shared machine: other work may have run at the same time). Run time {res['elapsed_s']:.0f} s.")
    L.append("")

    # Save table
    vs = saves.get("vit_raw")
    L.append("### Save")
    L.append("")
    L.append("| Format | Save (s) | Best (s) | vs vitrify raw | Throughput (GiB/s) | File size (MiB) | "
             "Size vs input | Peak extra memory (MiB) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for fk, s in saves.items():
        ratio = f"{s['seconds'] / vs['seconds']:.2f}x" if vs else "—"
        best = min(r["seconds"] for r in s["runs"])
        L.append(f"| {SAVE_LABEL[fk]} | {s['seconds']:.3f} | {best:.3f} | {ratio} | "
                 f"{nbytes / 2**30 / s['seconds']:.2f} | {s['size'] / 2**20:.1f} | {s['size'] / nbytes:.3f} | "
                 f"{s['peak_extra_bytes'] / 2**20:.1f} |")
    L.append("")
    L.append("Peak extra memory = the process's peak resident set during the save (VmHWM, reset just "
             "before) minus its resident set before it, with the arrays already in memory.")
    L.append("")

    # Load table
    vl = loads.get("vit_raw")
    L.append("### Load (warm)")
    L.append("")
    L.append("| Format | Open (ms) | Open, 1st in process (ms) | Open vs vitrify mmap | Full read (s) | "
             "Full read best (s) | Full read (GiB/s) | Full read vs read() |" +
             (" Cold open (ms) | Cold full read (s) |" if cold else ""))
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cold else ""))
    rr_rate = rr["bytes"] / rr["seconds"]
    for m in methods:
        l_ = loads[m]
        label = METHODS[m][0] + (" (lazy)" if METHODS[m][3] and "lazy" not in METHODS[m][0] else "")
        ratio = ratio_text(l_["open"] / vl["open"]) if vl else "—"
        rate = nbytes / l_["full"]
        best = min(l_["runs"]["full"]) if "runs" in l_ else None
        row = (f"| {label} | {l_['open'] * 1e3:.3f} | {l_['open_first'] * 1e3:.3f} | {ratio} | {l_['full']:.3f} | "
               f"{fmt(best)} | {rate / 2**30:.2f} | {rate / rr_rate:.0%} |")
        if cold:
            row += f" {cold[m]['open'] * 1e3:.3f} | {cold[m]['full']:.3f} |"
        L.append(row)
    L.append(f"| plain `read()` of the vitrify raw file into a preallocated buffer | — | — | — | "
             f"{rr['seconds']:.3f} | {fmt(min(rr['runs']) if 'runs' in rr else None)} | {rr_rate / 2**30:.2f} | 100% |" +
             (f" — | {cold['readraw']:.3f} |" if cold else ""))
    L.append("")
    L.append("Open = time to get the dict of arrays. Lazy loaders (marked) read no array data: for them "
             "Open is the median over 4 repeated opens in a process, and the first open in a fresh "
             "process is shown separately; the others read and decode everything, and their Open is "
             "the loading part of the full-read runs. Full read = open, then read one byte of "
             "every 4 KiB page of every array, so that all data is in memory. The read() baseline "
             "reads the same bytes (the whole vitrify raw file) into an already faulted-in buffer. "
             "Cold = after `sync; echo 3 > /proc/sys/vm/drop_caches` (first open in a fresh process).")
    L.append("")

    # Targets
    L.append("### Targets")
    L.append("")
    L.append("| Target | Measured | Met |")
    L.append("|---|---|:---:|")

    def row(name, measured, ok):
        L.append(f"| {name} | {measured} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |")

    if vs:
        pe = vs["peak_extra_bytes"] / 2**20
        row(f"vitrify save of {mib:.0f} MiB adds < 64 MiB of memory", f"{pe:.1f} MiB", pe < 64)
    if vl:
        row(f"mmap open of {mib:.0f} MiB < 1 ms", f"{vl['open'] * 1e3:.3f} ms (first in process "
            f"{vl['open_first'] * 1e3:.3f} ms)", vl["open"] < 1e-3)
        if "pickle5" in loads:
            r = loads["pickle5"]["open"] / vl["open"]
            row("mmap open >= 100x faster than pickle.load", f"{r:,.0f}x", r >= 100)
        frac = (nbytes / vl["full"]) / rr_rate
        row("full read (mmap + touch) >= 80% of plain read() rate", f"{frac:.0%}", frac >= 0.8)
        if "vit_raw_verify" in loads:
            fr = (nbytes / loads["vit_raw_verify"]["full"]) / rr_rate
            row("(not a target) full read with checksum verification (verify=True) vs read()", f"{fr:.0%}", None)
    if "vit_zstd3" in saves and "joblib_z3" in saves:
        z, j = saves["vit_zstd3"], saves["joblib_z3"]
        r = j["seconds"] / z["seconds"]
        row("vitrify zstd save >= 10x faster than joblib compress=3", f"{r:.1f}x ({z['seconds']:.2f} s vs "
            f"{j['seconds']:.2f} s)", r >= 10)
        row("... with a compressed size no larger", f"{z['size'] / 2**20:.1f} MiB vs {j['size'] / 2**20:.1f} MiB",
            z["size"] <= j["size"])
    L.append("")
    notes = res.get("notes")
    if notes:
        L.append(notes.rstrip("\n"))
        L.append("")
    return "\n".join(L) + "\n"


def write_markdown(path: Path, section: str) -> None:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Benchmarks\n\n" + section, encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == SECTION), None)
    if start is None:
        if not text.endswith("\n"):
            text += "\n"
        path.write_text(text + "\n" + section, encoding="utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = "".join(lines[:start]) + section + ("\n" if end < len(lines) else "") + "".join(lines[end:])
    path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
