#!/usr/bin/env python3
"""Benchmark: loading a PyTorch-style state_dict with vitrify.load_tensors against
safetensors and torch.load, side by side on the same tensors (issue 6).

Loaders compared (each in its own subprocess, median of --repeat runs, warm page cache):

  vitrify.load_tensors (numpy, mmap)       vitrify.load_tensors(framework="torch")
  safetensors.numpy.load_file              safetensors.torch.load_file
  torch.load(weights_only=True, mmap=True) torch.load(weights_only=True)   (no mmap)

For each: *open* (the call that returns the dict; memory-mapped loaders read no tensor data here)
and *open + touch* (then read one byte of every page of every tensor, so that every byte is in
memory and usable: the fair "ready to use" time). A plain read() of the vitrify file into a
preallocated buffer is the disk/page-cache baseline. Also timed: the converters
(vitrify.import_safetensors, vitrify.import_torch: no PyTorch involved, and
vitrify.export_safetensors) as throughput relative to that read() baseline and to
shutil.copyfile of the same bytes.

Data: a state_dict-like dict of --size-mib MiB (default 256; the issue asks for ~1 GiB:
--size-mib 1024): 2-D weight matrices of float32 and float16 (random normal values; float16
rather than bfloat16 because safetensors.numpy.load_file cannot load bfloat16 unless ml_dtypes
happens to be imported) plus small bias and norm vectors, --tensors tensors in all (default 96).

    .venv/bin/python bench/bench_tensors.py                          # quick run (256 MiB)
    .venv/bin/python bench/bench_tensors.py --size-mib 1024 --markdown docs/BENCHMARKS.md

This is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Tensors (issue 6)"
PAGE = 4096
NOTE = ("The converters each write the whole file: with the input in the page cache their time is dominated "
        "by the kernel taking in the written pages (dirty-page writeback throttling), so even "
        "`shutil.copyfile` (copy_file_range, no user-space copy) is no faster; the `× copy speed` column is the "
        "meaningful one (at least 1 means the converter costs no more than copying the bytes). Converter "
        "numbers vary by 2-3x between runs on a loaded shared machine (so do the loader ratios, but they are nowhere near 1). "
        "`vitrify.import_torch` reads the `torch.save` file with vitrify's own pickle reader: no PyTorch is "
        "imported in that process.")

# key: (label, file, framework-needed)
LOADERS = {
    "vit_np": ("vitrify.load_tensors (numpy, mmap)", "vit", None),
    "vit_torch": ("vitrify.load_tensors(framework='torch')", "vit", "torch"),
    "st_np": ("safetensors.numpy.load_file", "st", None),
    "st_torch": ("safetensors.torch.load_file", "st", "torch"),
    "torch_mmap": ("torch.load(weights_only=True, mmap=True)", "pt", "torch"),
    "torch_plain": ("torch.load(weights_only=True)", "pt", "torch"),
}
FILES = {"vit": "sd.vit", "st": "sd.safetensors", "pt": "sd.pt"}


# ----------------------------------------------------------------------------------------------
# Worker side: one measurement per process
# ----------------------------------------------------------------------------------------------

def _touch(values) -> int:
    import numpy as np

    s = 0
    for t in values:
        if hasattr(t, "numpy") and not isinstance(t, np.ndarray):  # torch tensor: view its bytes
            import torch

            t = t.view(torch.uint8) if t.element_size() == 1 else t.view(torch.int16 if t.element_size() == 2 else torch.int32)
            t = t.numpy()
        b = np.asarray(t).reshape(-1).view(np.uint8)
        if b.size:
            s += int(b[::PAGE].sum()) + int(b[-1])
    return s


def _open_fn(key: str):
    if key == "vit_np":
        from vitrify import tensors as vt
        return lambda p: vt.load_tensors(p)
    if key == "vit_torch":
        import torch  # noqa: F401
        from vitrify import tensors as vt
        return lambda p: vt.load_tensors(p, framework="torch")
    if key == "st_np":
        from safetensors.numpy import load_file
        return load_file
    if key == "st_torch":
        from safetensors.torch import load_file
        return load_file
    if key in ("torch_mmap", "torch_plain"):
        import torch
        mm = key == "torch_mmap"
        return lambda p: torch.load(p, weights_only=True, mmap=mm)
    raise KeyError(key)


def worker(args) -> dict:
    key, path = args.worker, args.path
    if key == "read":
        import numpy as np
        size = os.path.getsize(path)
        buf = np.empty(size, np.uint8)
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            mv = memoryview(buf)
            got = 0
            while got < size:
                n = f.readinto(mv[got:])
                if not n:
                    break
                got += n
        return {"open": time.perf_counter() - t0, "touch": 0.0}
    if key == "copy":
        t0 = time.perf_counter()
        shutil.copyfile(path, args.out)
        dt = time.perf_counter() - t0
        os.unlink(args.out)
        return {"open": dt, "touch": 0.0}
    if key in ("import_st", "import_torch", "export_st"):
        from vitrify import tensors as vt
        fn = {"import_st": vt.import_safetensors, "import_torch": vt.import_torch,
              "export_st": vt.export_safetensors}[key]
        out = args.out
        t0 = time.perf_counter()
        fn(path, out, durable=False)
        dt = time.perf_counter() - t0
        os.unlink(out)
        return {"open": dt, "touch": 0.0}
    fn = _open_fn(key)
    t0 = time.perf_counter()
    d = fn(path)
    t1 = time.perf_counter()
    _touch(d.values())
    t2 = time.perf_counter()
    return {"open": t1 - t0, "touch": t2 - t0, "n": len(d)}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------

def make_state_dict(size_mib: int, n_tensors: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    layers = max(1, n_tensors // 4)
    # Each layer: a float32 matrix, a float16 matrix, a float32 bias and a float32 norm weight.
    per_layer = (size_mib << 20) // layers
    cols = 1024
    rows32 = max(1, (per_layer * 2 // 3) // (4 * cols))
    rows16 = max(1, (per_layer // 3) // (2 * cols))
    sd = {}
    for i in range(layers):
        sd[f"layers.{i}.mlp.weight"] = rng.standard_normal((rows32, cols), np.float32)
        sd[f"layers.{i}.attn.weight"] = rng.standard_normal((rows16, cols), np.float32).astype(np.float16)
        sd[f"layers.{i}.mlp.bias"] = rng.standard_normal(cols, np.float32)
        sd[f"layers.{i}.norm.weight"] = np.ones(cols, np.float32)
    return sd


def write_files(workdir: Path, sd, have_torch: bool) -> dict:
    from safetensors.numpy import save_file
    from vitrify import tensors as vt

    sizes = {}
    vt.save_tensors(workdir / FILES["vit"], sd, durable=False)
    save_file(sd, str(workdir / FILES["st"]))
    if have_torch:
        import torch
        tsd = vt.load_tensors(workdir / FILES["vit"], framework="torch", mmap=False)
        torch.save(tsd, workdir / FILES["pt"])
        del tsd
    for k, name in FILES.items():
        if (workdir / name).exists():
            sizes[k] = (workdir / name).stat().st_size
    return sizes


def run_worker(key: str, path: Path, out: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", key, "--path", str(path)]
    if out is not None:
        cmd += ["--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout)


def median_of(key: str, path: Path, repeat: int, out: Path | None = None) -> dict:
    runs = [run_worker(key, path, out) for _ in range(repeat)]
    errs = [r["error"] for r in runs if "error" in r]
    if errs:
        return {"error": errs[0]}
    return {k: statistics.median(r[k] for r in runs) for k in ("open", "touch")}


def fmt_ms(s: float) -> str:
    ms = s * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--tensors", type=int, default=96)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "tensors")
    ap.add_argument("--markdown", type=Path, help="replace the section '## Tensors (issue 6)' of this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch files")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    wd: Path = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    t_start = time.time()
    sd = make_state_dict(args.size_mib, args.tensors)
    n_tensors = len(sd)
    data_bytes = sum(a.nbytes for a in sd.values())
    sizes = write_files(wd, sd, have_torch)
    del sd

    base = median_of("read", wd / FILES["vit"], args.repeat)
    results = {}
    for key, (label, fkey, need) in LOADERS.items():
        if need == "torch" and not have_torch:
            results[key] = {"error": "torch not installed"}
            continue
        results[key] = median_of(key, wd / FILES[fkey], args.repeat)
        print(f"{label:45s} {results[key]}", file=sys.stderr)
    conv = {
        "import_st": ("vitrify.import_safetensors (safetensors -> vitrify)", wd / FILES["st"]),
        "export_st": ("vitrify.export_safetensors (vitrify -> safetensors)", wd / FILES["vit"]),
    }
    if have_torch:
        conv["import_torch"] = ("vitrify.import_torch (torch.save zip -> vitrify, no PyTorch)", wd / FILES["pt"])
    conv_res = {k: median_of(k, src, args.repeat, wd / "conv.out") for k, (_, src) in conv.items()}
    copy = median_of("copy", wd / FILES["st"], args.repeat, wd / "conv.out")
    elapsed = time.time() - t_start
    load_end = os.getloadavg()

    st = results["st_np"]
    lines = [SECTION, ""]
    cmd = f".venv/bin/python bench/bench_tensors.py --size-mib {args.size_mib} --tensors {args.tensors} --repeat {args.repeat}"
    lines += [f"Generated by `bench/bench_tensors.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
              f"({elapsed / 60:.1f} min). Reproduce with:", "", "```sh",
              "make python    # build and install vitrify into .venv (torch and safetensors must be installed)",
              cmd, "```", ""]
    import numpy
    versions = [f"Python {platform.python_version()}", f"numpy {numpy.__version__}"]
    for mod in ("safetensors", "torch", "vitrify"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            pass
    lines += [f"Machine: {os.cpu_count()} cores, {platform.platform()}; {', '.join(versions)}. Load average "
              f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end (the machine is shared).", ""]
    lines += [f"Data: {n_tensors} tensors, {data_bytes / 2**20:.0f} MiB (float32 and float16 weight matrices, "
              "float32 vectors), the same dict saved with `vitrify.save_tensors` (raw), "
              "`safetensors.numpy.save_file` and `torch.save`. File sizes: " +
              ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()) + ". Each number is the median of "
              f"{args.repeat} runs, each in a fresh process, with the files in the page cache (warm).", ""]
    lines += ["*open*: the call returning the dict. *open + touch*: then one byte of every page of every tensor "
              "is read, so that all data is in memory (memory-mapped loaders pay their page faults here). "
              "Ratios are *safetensors.numpy.load_file time / this time* (higher is faster than safetensors).", ""]
    target_ok = ("error" not in results["vit_np"] and "error" not in st and
                 results["vit_np"]["touch"] <= st["touch"] and results["vit_np"]["open"] <= st["open"])
    lines += [f"Target (load_tensors no slower than safetensors.numpy.load_file, open and open + touch): "
              f"**{'PASS' if target_ok else 'FAIL'}**.", ""]
    lines += ["| loader | open ms | open + touch ms | open speed-up vs safetensors | open + touch speed-up vs safetensors |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for key, (label, _, _) in LOADERS.items():
        r = results[key]
        if "error" in r:
            lines.append(f"| {label} | n/a | n/a | | ({r['error']}) |")
            continue
        so = st["open"] / r["open"] if "error" not in st and r["open"] > 0 else float("nan")
        stt = st["touch"] / r["touch"] if "error" not in st and r["touch"] > 0 else float("nan")
        lines.append(f"| {label} | {fmt_ms(r['open'])} | {fmt_ms(r['touch'])} | {so:.1f}x | {stt:.2f}x |")
    lines.append(f"| *baseline: read() of the .vit file into a buffer* | {fmt_ms(base['open'])} | | | |")
    lines += ["", "Converters (`durable=False`, output into the page cache), against two baselines: the read() "
              "above, and `shutil.copyfile` of the safetensors file (read + write of the same bytes, what any "
              "converter must at least do):", "",
              "| conversion | ms | MiB/s | × read() speed | × copy speed |", "| --- | ---: | ---: | ---: | ---: |"]
    read_speed = sizes["vit"] / base["open"] if "error" not in base else float("nan")
    copy_speed = sizes["st"] / copy["open"] if "error" not in copy else float("nan")
    for k, (label, src) in conv.items():
        r = conv_res[k]
        if "error" in r:
            lines.append(f"| {label} | n/a | | | ({r['error']}) |")
            continue
        speed = src.stat().st_size / r["open"]
        lines.append(f"| {label} | {fmt_ms(r['open'])} | {speed / 2**20:.0f} | {speed / read_speed:.2f} | "
                     f"{speed / copy_speed:.2f} |")
    if "error" not in copy:
        lines.append(f"| *baseline: shutil.copyfile* | {fmt_ms(copy['open'])} | {copy_speed / 2**20:.0f} | "
                     f"{copy_speed / read_speed:.2f} | 1.00 |")
    lines += ["", NOTE]
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
    if not args.keep:
        shutil.rmtree(wd, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
