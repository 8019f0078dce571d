"""Full read of a raw vitrify file into fresh memory (mmap=False), with and without checksum
verification, against plain read() into a fresh and into a pre-faulted buffer. Not a test.

    .venv/bin/python bench/bench_copy_read.py --size-mib 512
"""

import argparse
import os
import tempfile
import time

import numpy as np

import vitrify
from vitrify import _core


def best(f, n=5):
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        runs.append(time.perf_counter() - t)
    return min(runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    args = ap.parse_args()
    n = args.size_mib * 2**20 // 4 // 4
    arrays = {f"a{i}": np.random.default_rng(i).standard_normal(n, dtype=np.float32) for i in range(4)}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.vit")
        vitrify.save_arrays(path, arrays, durable=False)
        size = os.path.getsize(path)
        f = _core.File.open(path, False)

        def copy(check):
            for i, info in enumerate(f.arrays):
                out = np.empty(info["decoded_length"], np.uint8)
                f.read_into(i, out, check)

        def fresh_read():
            buf = np.empty(size, np.uint8)
            with open(path, "rb") as fh:
                fh.readinto(buf)

        pre = np.ones(size, np.uint8)

        def prefaulted_read():
            with open(path, "rb") as fh:
                fh.readinto(pre)

        fresh_read()  # warm the page cache
        base = best(fresh_read)
        rows = [("plain read() into a fresh buffer", base), ("plain read() into a pre-faulted buffer", best(prefaulted_read)),
                ("vitrify copy (read_into), checksums verified", best(lambda: copy(True))),
                ("vitrify copy (read_into), no verification", best(lambda: copy(False))),
                ("vitrify.load_arrays(mmap=False)", best(lambda: vitrify.load_arrays(path, mmap=False)))]
        print(f"{args.size_mib} MiB, warm page cache, best of 5")
        for name, t in rows:
            print(f"| {name} | {t * 1000:.0f} ms | {base / t * 100:.0f}% of read() into a fresh buffer |")


if __name__ == "__main__":
    main()
