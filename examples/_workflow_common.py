"""Display and comparison helpers shared by the examples/workflow_*.py scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import vitrify


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
