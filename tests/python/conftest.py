"""Shared helpers for the vitrify Python tests."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import struct

import numpy as np
import pytest

PREAMBLE = 64


# --------------------------------------------------------------------------------------------
# XXH3-64 via the system libxxhash (used to craft files whose checksums are right but whose
# contents are wrong, to reach the checks behind the checksums).
# --------------------------------------------------------------------------------------------

def _load_xxhash():
    for name in (ctypes.util.find_library("xxhash"), "libxxhash.so.0", "libxxhash.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            fn = lib.XXH3_64bits
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        return fn
    return None


_XXH3 = _load_xxhash()


def xxh3(data: bytes) -> int:
    if _XXH3 is None:
        pytest.fail("libxxhash is not available to craft files (make setup installs libxxhash-dev)")
    data = bytes(data)
    return int(_XXH3(data, len(data)))


class Image:
    """A mutable vitrify file image with helpers to edit it and re-seal its checksums."""

    def __init__(self, data: bytes):
        self.b = bytearray(data)

    # preamble fields
    def u16(self, off): return struct.unpack_from("<H", self.b, off)[0]
    def u32(self, off): return struct.unpack_from("<I", self.b, off)[0]
    def u64(self, off): return struct.unpack_from("<Q", self.b, off)[0]
    def set_u16(self, off, v): struct.pack_into("<H", self.b, off, v)
    def set_u32(self, off, v): struct.pack_into("<I", self.b, off, v)
    def set_u64(self, off, v): struct.pack_into("<Q", self.b, off, v)

    @property
    def header_offset(self): return self.u64(24)
    @property
    def header_length(self): return self.u64(32)

    def header(self) -> dict:
        h = bytes(self.b[self.header_offset:self.header_offset + self.header_length])
        return json.loads(h)

    def set_header(self, header: dict | str) -> None:
        """Replace the header (no trailers assumed) and re-seal all preamble checksums."""
        text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
        raw = text.encode("utf-8")
        off = self.header_offset
        del self.b[off:]
        self.b += raw
        self.set_u64(32, len(raw))
        self.set_u64(40, off + len(raw))
        self.reseal()

    def reseal(self) -> None:
        off, n = self.header_offset, self.header_length
        self.set_u64(48, xxh3(self.b[off:off + n]))
        self.reseal_preamble()

    def reseal_preamble(self) -> None:
        self.set_u64(56, xxh3(self.b[:56]))

    def array_bytes(self, i: int) -> memoryview:
        e = self.header()["arrays"][i]
        return memoryview(self.b)[e["offset"]:e["offset"] + e["length"]]

    def fix_array_checksum(self, i: int) -> None:
        h = self.header()
        e = h["arrays"][i]
        e["xxh3"] = f"{xxh3(self.b[e['offset']:e['offset'] + e['length']]):016x}"
        self.set_header(h)

    def bytes(self) -> bytes:
        return bytes(self.b)


# --------------------------------------------------------------------------------------------
# Memory maps of this process
# --------------------------------------------------------------------------------------------

def mapped_ranges(path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from the file at `path` (Linux /proc/self/maps)."""
    real = os.path.realpath(os.fspath(path))
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].rstrip("\n") == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def data_address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    """Same dtype, same shape, bit-identical contents (NaN payloads and -0.0 included)."""
    assert isinstance(b, np.ndarray)
    assert b.dtype == a.dtype, (a.dtype, b.dtype)
    assert b.shape == a.shape, (a.shape, b.shape)
    if a.dtype == object:
        assert b.tolist() == a.tolist()
        assert [type(x) for x in b.flat] == [type(x) for x in a.flat]
    else:
        assert np.ascontiguousarray(b).tobytes() == np.ascontiguousarray(a).tobytes()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def vit_path(tmp_path):
    return tmp_path / "model.vit"


collect_ignore_glob: list[str] = []
