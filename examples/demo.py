#!/usr/bin/env python3
"""vitrify end to end: save numpy arrays (raw and zstd), inspect and verify them with the CLI,
load them back memory-mapped and check that every byte survived.

`make demo` runs this with the freshly built `vitrify` tool on PATH. Standalone:

    PATH=build/tools/vitrify:$PATH .venv/bin/python examples/demo.py [--out DIR]

Exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import vitrify

ROOT = Path(__file__).resolve().parent.parent


def make_arrays() -> dict[str, np.ndarray]:
    """A few MB of model-like arrays covering several dtypes (deterministic)."""
    rng = np.random.default_rng(0)
    arrays = {
        "embedding": rng.standard_normal((512, 1024), dtype=np.float32),     # 2 MiB, noisy
        "token_counts": rng.poisson(3.0, 200_000).astype(np.int64),          # 1.6 MB, compressible
        "attention_mask": rng.random((256, 1024)) < 0.9,                     # bool
        "head_fp16": rng.standard_normal((256, 256)).astype(np.float16),
        "spectrum": (rng.standard_normal(4096) + 1j * rng.standard_normal(4096)).astype(np.complex64),
        "bias": np.float64(0.125) * np.ones(()),                            # rank 0
        "vocab": np.array(["<pad>", "cat", "dog", "élan", "日本", ""] * 500),  # strings, UTF-8
    }
    try:  # bfloat16 needs ml_dtypes (installed by `make setup`)
        import ml_dtypes

        arrays["head_bf16"] = rng.standard_normal((256, 256)).astype(ml_dtypes.bfloat16)
    except ImportError:
        pass
    return arrays


METADATA = {
    "model": "demo",
    "created_by": "examples/demo.py",
    "epochs": 3,
    "learning_rate": 0.001,
    "classes": ("cat", "dog", "élan"),  # a tuple stays a tuple
    "big": 2**70,                          # integers of any size
}


def mib(n: int) -> str:
    return f"{n / 2**20:7.2f} MiB"


def check(cond: bool, what: str) -> None:
    if not cond:
        print(f"demo: FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN-safe, works for every dtype incl. strings)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in ("U", "O"):
        return a.tolist() == b.tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def run_cli(*args: str) -> str:
    exe = shutil.which("vitrify")
    check(exe is not None, "the `vitrify` tool is not on PATH (run `make demo`)")
    t = time.perf_counter()
    p = subprocess.run([exe, *args], capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        print(p.stdout + p.stderr, file=sys.stderr)
        check(False, f"`vitrify {' '.join(args)}` exited with {p.returncode}")
    print(f"$ vitrify {' '.join(args)}    ({dt * 1e3:.0f} ms)")
    return p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "demo",
                    help="folder for the demo files (default: build/demo)")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    arrays = make_arrays()
    total = sum(a.nbytes for a in arrays.values())
    print(f"vitrify {vitrify.__version__}, format {vitrify.FORMAT_VERSION[0]}.{vitrify.FORMAT_VERSION[1]}")
    print(f"{len(arrays)} arrays, {mib(total)} in memory: "
          + ", ".join(f"{k} {a.dtype}{list(a.shape)}" for k, a in arrays.items()))
    print()

    # --- Save: raw (memory-mappable) and zstd ------------------------------------------------
    files = {"raw": out / "demo-raw.vit", "zstd": out / "demo-zstd.vit"}
    for kind, path in files.items():
        t = time.perf_counter()
        vitrify.save_arrays(path, arrays, metadata=METADATA, compress=None if kind == "raw" else "zstd")
        dt = time.perf_counter() - t
        size = path.stat().st_size
        print(f"save {kind:4}  {path.name:14} {mib(size)}  ({size / total:5.1%} of in-memory)  "
              f"{dt * 1e3:7.1f} ms")
    print()

    # --- The CLI: inspect (structure) and verify (every checksum) ----------------------------
    print(run_cli("inspect", str(files["zstd"])))
    doc = json.loads(run_cli("inspect", "--json", str(files["raw"])))
    check(doc["version"] == {"major": 1, "minor": 0}, "inspect --json reports format 1.0")
    check([a["name"] for a in doc["arrays"]] == list(arrays), "inspect --json lists every array in order")
    check(all(a["codec"] == "raw" for a in doc["arrays"]), "the raw file stores every array raw")
    check(doc["metadata"]["model"] == "demo", "inspect --json shows the metadata")
    print(run_cli("verify", *map(str, files.values())))

    # --- Load back, memory-mapped --------------------------------------------------------------
    for kind, path in files.items():
        t = time.perf_counter()
        loaded = vitrify.load_arrays(path, mmap=True)
        t_open = time.perf_counter() - t
        t = time.perf_counter()
        for name, a in arrays.items():
            check(name in loaded, f"{kind}: array {name!r} is in the file")
            check(same(a, loaded[name]), f"{kind}: array {name!r} round-trips exactly")
        t_cmp = time.perf_counter() - t
        check(list(loaded) == list(arrays), f"{kind}: arrays come back in the order they were saved")
        if kind == "raw":
            emb = loaded["embedding"]
            check(not emb.flags.writeable, "raw arrays load as read-only views of the mapping")
            check(not emb.flags.owndata, "raw arrays are zero-copy (they do not own their memory)")
        print(f"load {kind:4}  {path.name:14} mmap=True  {t_open * 1e3:7.1f} ms to open+load, "
              f"{t_cmp * 1e3:6.1f} ms to compare every byte: OK")

    info = vitrify.inspect(files["zstd"])
    check(info["metadata"] == METADATA, "metadata round-trips with its types (tuple, big int, float)")
    check(isinstance(info["metadata"]["classes"], tuple), "a tuple comes back as a tuple")
    print("metadata round-trips:", info["metadata"])
    print()
    shown = os.path.relpath(out) if out.resolve().is_relative_to(Path.cwd()) else str(out)
    print(f"demo: OK ({len(arrays)} arrays, raw {mib(files['raw'].stat().st_size).strip()}, "
          f"zstd {mib(files['zstd'].stat().st_size).strip()}); files kept in {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
