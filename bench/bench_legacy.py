#!/usr/bin/env python3
"""Benchmark: `vitrify scan` and `vitrify convert` / `vitrify import-tensors` on large legacy
files (issue 6), against a plain read of the same bytes.

Files (written once per run into a scratch folder):

* a joblib file of about --size-mib MiB: a fitted KNeighborsClassifier(algorithm="brute"), whose
  `_fit_X` holds the data (a scikit-learn model the C++ runtime supports, so it converts);
* a PyTorch checkpoint (`torch.save` zip format) of about --size-mib MiB: a state_dict of float32
  matrices (needs torch; skipped without it).

Measured, each as a fresh `vitrify` process, median of --repeat runs, warm page cache:

* `vitrify scan FILE` wall time (target: reads no array data, well under a second);
* `vitrify convert IN OUT --no-check --no-hash` (joblib) and `vitrify import-tensors IN OUT`
  (checkpoint) wall time, as throughput in MiB/s of the input;
* the disk/page-cache read speed of the input (`cat FILE > /dev/null` equivalent: read() in
  1 MiB blocks in this process) — target: converting runs at >= 50 % of it;
* `vitrify convert` with its default post-conversion check (the model is built by the C++
  runtime) and input hash, for reference.

    .venv/bin/python bench/bench_legacy.py --size-mib 1024 --markdown docs/BENCHMARKS.md
    .venv/bin/python bench/bench_legacy.py --size-mib 128           # quick, prints only

This is not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTION = "## Legacy files: scan and convert (issue 6)"
ROOT = Path(__file__).resolve().parent.parent


def vitrify_cli(arg: str | None) -> str:
    if arg:
        return arg
    for cand in (ROOT / "build" / "tools" / "vitrify" / "vitrify", shutil.which("vitrify")):
        if cand and Path(cand).exists():
            return str(cand)
    sys.exit("vitrify CLI not found: build it (make cpp) or pass --cli")


def timed_runs(cmd: list[str], repeat: int) -> float:
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up (page cache, binary)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def read_speed(path: Path, repeat: int) -> float:
    """Bytes per second of read() in 1 MiB blocks (warm page cache), median."""
    size = path.stat().st_size
    buf = bytearray(1 << 20)
    ts = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        ts.append(time.perf_counter() - t)
    return size / statistics.median(ts[1:])


def drop_caches() -> bool:
    """Drop the page cache (root only) so the next read comes from the disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def cold_read_speed(path: Path, repeat: int) -> float | None:
    """Bytes per second of read() from the disk (page cache dropped before each run), median."""
    size = path.stat().st_size
    buf = bytearray(1 << 20)
    ts = []
    for _ in range(repeat):
        if not drop_caches():
            return None
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        ts.append(time.perf_counter() - t)
    return size / statistics.median(ts)


def copy_speed(path: Path, out: Path, repeat: int) -> float:
    """Bytes per second of copying the file durably (copyfile + fsync): the write bound."""
    size = path.stat().st_size
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        shutil.copyfile(path, out)
        fd = os.open(out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        ts.append(time.perf_counter() - t)
        out.unlink()
    return size / statistics.median(ts)


def make_joblib(path: Path, mib: int) -> str:
    import joblib
    from sklearn.neighbors import KNeighborsClassifier

    n_feat = 32
    rows = max(1000, mib * 2**20 // (8 * n_feat))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, n_feat))
    y = (X[:, 0] > 0).astype(np.int64)
    model = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(X, y)
    joblib.dump(model, path)
    return f"KNeighborsClassifier(algorithm='brute') on {rows:,} x {n_feat} float64"


def make_checkpoint(path: Path, mib: int) -> str | None:
    try:
        import torch
    except ImportError:
        return None
    n = max(1, mib // 16)
    sd = {f"layer{i}.weight": torch.randn(2048, 2048) for i in range(n)}  # 16 MiB each
    sd.update({f"layer{i}.bias": torch.zeros(2048) for i in range(n)})
    torch.save(sd, path)
    return f"state_dict of {2 * n} tensors ({n} float32 2048x2048 matrices)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cli")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args(argv)
    cli = vitrify_cli(args.cli)
    wd = Path(tempfile.mkdtemp(prefix="vitrify-bench-legacy-", dir=args.workdir))
    rows = []
    verdicts = []
    try:
        jl = wd / "model.joblib"
        desc_j = make_joblib(jl, args.size_mib)
        inputs = [("joblib", jl, desc_j, [cli, "convert", str(jl), str(wd / "model.vit"), "--no-check", "--no-hash"],
                   [cli, "convert", str(jl), str(wd / "model-checked.vit")])]
        pt = wd / "checkpoint.pt"
        desc_t = make_checkpoint(pt, args.size_mib)
        if desc_t is not None:
            inputs.append(("PyTorch zip", pt, desc_t, [cli, "import-tensors", str(pt), str(wd / "weights.vit")], None))
        for kind, path, desc, conv, conv_checked in inputs:
            size = path.stat().st_size
            warm = read_speed(path, args.repeat)
            cold = cold_read_speed(path, 3)
            rs = cold if cold is not None else warm
            cp = copy_speed(path, wd / "copy.bin", 3)
            read_speed(path, 1)  # back into the page cache
            t_scan = timed_runs([cli, "scan", str(path)], args.repeat)
            t_conv = timed_runs(conv, args.repeat)
            t_checked = timed_runs(conv_checked, args.repeat) if conv_checked else None
            conv_speed = size / t_conv
            rows.append((kind, desc, size, rs, t_scan, t_conv, conv_speed, t_checked, warm, cp, cold is not None))
            verdicts.append(("PASS" if t_scan < 1.0 else "FAIL") + f" — {kind}: scan in {t_scan * 1000:.0f} ms (target: well under 1 s)")
            verdicts.append(("PASS" if conv_speed >= 0.5 * rs else "FAIL")
                            + f" — {kind}: convert at {conv_speed / 2**20:.0f} MiB/s = {conv_speed / rs:.0%} of the "
                              f"{'disk' if cold is not None else 'page-cache'} read speed {rs / 2**20:.0f} MiB/s "
                              f"(target >= 50 %); a durable copy of the file runs at {cp / 2**20:.0f} MiB/s")
    finally:
        shutil.rmtree(wd, ignore_errors=True)

    lines = [SECTION, "",
             f"Command: `.venv/bin/python bench/bench_legacy.py --size-mib {args.size_mib} --markdown docs/BENCHMARKS.md` "
             f"(each number: a fresh `vitrify` process, median of {args.repeat} runs, warm page cache; "
             "disk read speed: read() of the input in 1 MiB blocks after dropping the page cache; page-cache read: "
             "the same with the file cached; durable copy: shutil.copyfile + fsync).", ""]
    lines += [f"- **{v.split(' — ')[0]}** — {v.split(' — ', 1)[1]}" for v in verdicts]
    lines += ["", "| input | content | size MiB | disk read MiB/s | page-cache read MiB/s | durable copy MiB/s | `vitrify scan` ms | convert ms | convert MiB/s | convert / disk read | convert with runtime check + SHA-256, ms |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, desc, size, rs, t_scan, t_conv, cs, t_checked, warm, cp, had_cold in rows:
        lines.append(f"| {kind} | {desc} | {size / 2**20:.0f} | {rs / 2**20:.0f}{'' if had_cold else ' (cached)'} | {warm / 2**20:.0f} | "
                     f"{cp / 2**20:.0f} | {t_scan * 1000:.1f} | {t_conv * 1000:.0f} | "
                     f"{cs / 2**20:.0f} | {cs / rs:.2f} | {'' if t_checked is None else f'{t_checked * 1000:.0f}'} |")
    lines += ["", "Convert is `vitrify convert IN OUT --no-check --no-hash` for the joblib file and "
              "`vitrify import-tensors IN OUT` for the checkpoint: both read the input through the "
              "non-executing pickle reader (arrays are views of the mapped input) and write a durable "
              "vitrify file (fsync), so the write, not the read, bounds them. Scanning interprets the "
              "pickle stream only: array bytes are skipped, never read."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        md = args.markdown.read_text(encoding="utf-8") if args.markdown.exists() else "# Benchmarks\n"
        start = md.find(SECTION + "\n")
        if start < 0:
            md = md.rstrip("\n") + "\n\n" + text
        else:
            nxt = md.find("\n## ", start + len(SECTION))
            md = md[:start] + text + ("\n" + md[nxt + 1:] if nxt >= 0 else "")
        args.markdown.write_text(md, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
