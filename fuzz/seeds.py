#!/usr/bin/env python3
"""Write the seed corpora of the value and round-trip fuzzers from the golden vectors.

The reader fuzzer uses tests/vectors/valid and tests/vectors/invalid directly as seed
folders (see `make fuzz`). The value fuzzer gets every typed value found in a vector's
header (each section and each array's attrs, plus the whole header text); the round-trip
fuzzer gets the same values behind a small prefix that selects arrays. Deterministic: run
it again and nothing changes. Files found by fuzzing (crashes, minimized corpus) live next
to the seeds in fuzz/corpus/<target>/ and are never touched by this script.
"""
import hashlib
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CORPUS = ROOT / "fuzz" / "corpus"


def header_text(data: bytes):
    if len(data) < 64 or data[:4] != b"\x89VIT":
        return None
    off, length = struct.unpack_from("<QQ", data, 24)
    if off + length > len(data) or length > 1 << 20:
        return None
    return data[off:off + length]


def values_of(header: bytes):
    yield header
    try:
        h = json.loads(header)
    except (ValueError, RecursionError):
        return
    if not isinstance(h, dict):
        return
    for key in ("metadata", "environment", "provenance", "content"):
        if key in h:
            yield json.dumps(h[key], ensure_ascii=False, separators=(",", ":")).encode()
    for a in h.get("arrays", []) if isinstance(h.get("arrays"), list) else []:
        if isinstance(a, dict) and "attrs" in a:
            yield json.dumps(a["attrs"], ensure_ascii=False, separators=(",", ":")).encode()


def write(folder: pathlib.Path, stem: str, data: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    name = f"seed-{stem}-{hashlib.sha256(data).hexdigest()[:12]}"
    (folder / name).write_bytes(data)


def main():
    seen = set()
    for vec in sorted(VECTORS.glob("*/*.vit")):
        header = header_text(vec.read_bytes())
        if header is None:
            continue
        for v in values_of(header):
            if v in seen:
                continue
            seen.add(v)
            stem = f"{vec.parent.name}_{vec.stem}"
            write(CORPUS / "value", stem, v)
            # Round trip: alignment 64, three arrays (uint8 raw [4], float32 zstd [2,2], string [2]).
            prefix = bytes([0, 3,
                            0x05, 3, 1, 4, 1, 2, 3, 4,
                            0x1b, 3, 2, 2, 2] + list(range(16)) + [
                            0x0f, 0, 1, 2, 3, ord("a"), ord("b"), ord("c"), 2, ord("x"), ord("y")])
            write(CORPUS / "roundtrip", stem, prefix + v)


if __name__ == "__main__":
    main()
