#!/usr/bin/env python3
"""Golden test vectors of the vitrify file format, version 1.1 (1.0 plus the "dtype_float8" feature).

Writes

* ``valid/*.vit``: files every conforming reader must open and verify, with their expected
  contents (array names, dtypes, shapes, SHA-256 of each array's decoded bytes, the typed
  header sections as JSON) recorded in ``manifest.json``;
* ``invalid/*.vit``: files with exactly one defect each, with the stable error code name a
  reader must report and whether it must do so when the file is opened (``"stage": "open"``)
  or only when it is fully verified (``"stage": "verify"``).

The files are crafted byte by byte here (struct, hand-written header JSON, XXH3-64 from the
``xxhash`` package, hand-assembled zstd frames), independently of the library, so that they
test the library rather than mirror it. Three zstd payloads made by libzstd itself are
embedded below as constants (``LIBZSTD_FRAMES``) so that the output never depends on the
installed zstd version. No other randomness or platform-dependent arithmetic is used: the
output is byte-for-byte deterministic.

Vectors are permanent. This script never rewrites an existing file whose bytes would differ
and never removes a vector: it refuses (exit status 1) instead. To change the format's
expectations, add a new vector under a new name. ``--check`` compares without writing.

Usage::

    python tests/vectors/generate.py            # write missing vectors, check existing ones
    python tests/vectors/generate.py --check    # write nothing; fail on any difference
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import xxhash

HERE = Path(__file__).resolve().parent
MAGIC = b"\x89VIT\r\n\x1a\n"
MANIFEST_SCHEMA = 1

DTYPE_SIZE = {
    "bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
    "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
    "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
    "complex64": 8, "complex128": 16, "string": 0,
    # Format 1.1, required feature "dtype_float8".
    "float8_e4m3fn": 1, "float8_e5m2": 1,
}


def xxh3(b: bytes) -> int:
    return xxhash.xxh3_64_intdigest(bytes(b))


def align_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


def sha256(b: bytes) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()


def jstr(s: str) -> str:
    """A JSON string literal (UTF-8 kept as is, controls escaped)."""
    return json.dumps(s, ensure_ascii=False)


def pack(fmt: str, values) -> bytes:
    values = list(values)
    return struct.pack(f"<{len(values)}{fmt}", *values)


# ----------------------------------------------------------------------------------------------
# Deterministic array contents
# ----------------------------------------------------------------------------------------------

def string_decoded(strings: list[str]) -> bytes:
    """Decoded bytes of a string array: u64 offsets[count+1], then the UTF-8 text."""
    enc = [s.encode("utf-8") for s in strings]
    offs = [0]
    for e in enc:
        offs.append(offs[-1] + len(e))
    return pack("Q", offs) + b"".join(enc)


def pseudo_random(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(n) if n else b""


#: One small array per fixed dtype, with edge values (extremes, -0, inf, NaN with payload,
#: subnormals). (dtype, shape, decoded bytes)
FIXED_ARRAYS: list[tuple[str, list[int], bytes]] = [
    ("bool", [2, 3], bytes([1, 0, 0, 1, 1, 0])),
    ("int8", [4], pack("b", [-128, -1, 0, 127])),
    ("int16", [2, 2], pack("h", [-32768, -1, 1, 32767])),
    ("int32", [5], pack("i", [-2**31, -1, 0, 1, 2**31 - 1])),
    ("int64", [1, 1, 3], pack("q", [-2**63, 0, 2**63 - 1])),
    ("uint8", [3, 1], pack("B", [0, 128, 255])),
    ("uint16", [2], pack("H", [0, 65535])),
    ("uint32", [2], pack("I", [0, 2**32 - 1])),
    ("uint64", [2], pack("Q", [0, 2**64 - 1])),
    # 0, -0, 1, inf, -inf, qNaN, smallest subnormal, max finite
    ("float16", [8], pack("H", [0x0000, 0x8000, 0x3C00, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x7BFF])),
    # 1, -2, inf, 0, NaN
    ("bfloat16", [5], pack("H", [0x3F80, 0xC000, 0x7F80, 0x0000, 0x7FC0])),
    ("float32", [2, 4], pack("I", [0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000,
                                   0x7FC00000, 0x00000001, 0x7F7FFFFF, 0x80000000])),
    # 0.1, -0, inf, NaN with payload, smallest subnormal, max finite, 1, -1e300-ish
    ("float64", [4, 2], pack("Q", [0x3FB999999999999A, 0x8000000000000000, 0x7FF0000000000000,
                                   0x7FF8000000000001, 0x0000000000000001, 0x7FEFFFFFFFFFFFFF,
                                   0x3FF0000000000000, 0xFE3E0FBB6DE2A0B5])),
    # (1+2j), (-0.5+inf j), (nan+0j)
    ("complex64", [3], pack("I", [0x3F800000, 0x40000000, 0xBF000000, 0x7F800000,
                                  0x7FC00000, 0x00000000])),
    ("complex128", [2, 1], pack("Q", [0x3FF0000000000000, 0xBFF0000000000000,
                                      0x7FF8000000000000, 0x0000000000000001])),
]

#: Format 1.1 (required feature "dtype_float8"): edge values of both float8 types, as bytes.
#: e4m3fn (bias 7, no infinities): 0, -0, 1, -2, 448 (max), -448, NaN, -NaN, 2^-9 (smallest
#: subnormal), 2^-6 (smallest normal), 0.9375 (largest below 1), 2^-7 (subnormal)
#: e5m2 (bias 15, the top byte of a float16): 0, -0, 1, -2, 57344 (max), inf, -inf, NaN,
#: 2^-16 (smallest subnormal), 2^-14 (smallest normal), 0.875 (largest below 1), NaN with payload
FLOAT8_ARRAYS: list[tuple[str, list[int], bytes]] = [
    ("float8_e4m3fn", [3, 4], bytes([0x00, 0x80, 0x38, 0xC0, 0x7E, 0xFE, 0x7F, 0xFF, 0x01, 0x08, 0x37, 0x02])),
    ("float8_e5m2", [12], bytes([0x00, 0x80, 0x3C, 0xC0, 0x7B, 0x7C, 0xFC, 0x7E, 0x01, 0x04, 0x3B, 0x7D])),
]
FLOAT8_TOP = [("format", '"vitrify"'), ("required_features", '["dtype_float8"]')]

UNICODE_STRINGS = [
    "", "ascii", "é", "naïve café", "日本語のテキスト", "😀 emoji (4-byte UTF-8)",
    "e\u0301 (combining accent)", "a\u0000b (NUL inside)", "tab\tnewline\n", "\u202eRTL override",
    "\U0010FFFF max code point", "Ω≈ç√∫", "quote \" backslash \\",
]


def int32_ramp(n: int) -> bytes:
    return pack("i", [((i * 7919) % 1013) - 500 for i in range(n)])


def float32_steps(n: int) -> bytes:
    # Multiples of 0.25: exact in float32, so no rounding question anywhere.
    return pack("f", [((i * 37) % 101) / 4.0 for i in range(n)])


def token_strings(n: int) -> list[str]:
    return [f"token_{(i * 13) % 50}_é" for i in range(n)]


# zstd payloads produced once by libzstd (through vitrify's writer) from the decoded bytes
# named in the comment, then frozen here. Level in parentheses.
LIBZSTD_FRAMES = {
    # int32_ramp(1024) (level 3)
    "int32_ramp": (
        "KLUv/WAADxVDAKr7ACEmELDc6OkoiqIoiqIoiqIoiqJoZmZmZmZmZmZmZmZmZmZm5mFpMgUDAgYCBQJukK6UrzR+EVQ5"
        "KiW6Jr4i+MP8g6g86BjpXPmS419B3aN2orPiS4Nfzc+IWoSuku6Wrz1+GlRCqim6L75G+Of8lahO6Dx9ifki5O9BbaS+"
        "okPji4Wfz++JeoUOgq81X438RqiW1NLF8VXDX+g/RQVDl8EXnS9L/ifUTzoCdHp8+fA7+mFR09CJ8NXn65MfCzUCXRjd"
        "IF9H/JdWOXQrfBn6QuUPQ9VAp0bHyBcUfwJqAeoeOhq+Hn3F8quhjqCbo6vkK4tfAlWMSoiuhy9Mv/8cKgs6PjpPvsT4"
        "N1DXqI3ojPhS4Dfg50OtQVdId8rXGj8JKh3VEt0TXxP8Y/5CVB90jnSwfNHxt6D2UT/RYfHFwc/md0Q9QndJ91cfvw2q"
        "IRUVXRhfJfx1/ktUKHQJfJH5MuT/QX2kxqJT48uF388PipqFToKvNl+P/EiomHRzfN3wH/pTUcXQbfBl5wuTPwpVAZ0B"
        "Oj6+gPgh/bKoa+hI+PrzFcqvhTqBboyukK8k/kzqVDp0LXwh+lLlH0PlQMdG58iXFP8C6gFqHzobviJ9zfKzoZagq6O7"
        "5GuLnwKVjGqI7ocvTT+Xvw7VBZ0fHShfZPwdqG3UR3RIfDHwI/D7od6gO6RL5auN3wTVjoqJLoqvCv4y/yEqEDpIOlm+"
        "7PhfUP+ooei0+PLgd/NDoiahy/TVJWuje+Rrip8BFQHVD90NX5K+aPnbUE3Q2dFh8sXFX4FaRj1EB8TXph+A3w71Bd0f"
        "XShfZfweqG5USHRJfDXwd/n/UHHQIdKp8uXGf4J6R81EJ8WXBb+ZHxE1CF0k3Sxfd/wwqIBUUXRbfH3wv/kjUZXQafry"
        "8gXIn4OaSF1FR8YXCj+eXxN1Ch0DX2e+EvmFUCWptOja+IrhD/SPonKhq+ALzpck/xLqJh0AOju+dPgV/ayoZeg8+Mrz"
        "tclPhdqArovuj68h/kl/LaobuhO+BH2R8nehWqAzo0Pki4mfkxqAeocOhq9FX638Zqgf6N7oIvmq4ndA9aICosvhi9KX"
        "Lf8bKgo6PDpNvrz4L1DPqInohPjq9Avw46HGoAukG+XrjB8EFY4qiW6Jrwf+L38gqg46RTpWvuD4U1DzqJvoqPjC4Efz"
        "K6IOoZukq+Urj18GVZBKiq6LrxD+OP8kKhM6Tl9gvgT5d1AXqa3ozPhS4dfzc6JWoXPgK83XIj8RKiXVFt0bXzP8g/5S"
        "VC90F3zJ+aLkb0LtpBNAh8cXDz+j3xX1DB0IX3u+OvmtUB/QfdEF8lXEX+m/RYVDl8IXoS9T/i9UDHRodIp8OfF7UgdQ"
        "89DJ8NXo65UfDTUEXRzdJF9X/BCoYFRBdDt8WfqqPw5VBZ0eHSdfYPwZqGnURXREfH36Cfj1UGcw15yvSn4nVE+6AXR5"
        "fPXwN/pfUdHQhfDF58uT/woVAh0YnSBfRvyW1Dh0KnwV+jrlB0PNQJdGt8jXE/8nlQBVD90MX46+YPnTUEXQydFR8oXF"
        "H4EaRh1Ex8PXpV8OdQXdHl0nX2H8GqhqVEZ0RXwl8Bfw76HSoCOkM+VLjX8EdY5aic6JLwl+MT8hag+6RrpXvub4WVD5"
        "qJ7orvja4F/zN6IaobOkqy8+/hrUQuopOjC+SPjp/JaoT+g+fY35KuT3QXWkwqJL46uFv8//iYqFLoIvNl+O/Eeol9R1"
        "cnzZ8Bv6UVHD0GnwVefrkh8KNQFdAbo9vn74H/2xqGroRvjy8wXKn4UqgU6MjpAvJH5MzqFj4evQVyq/GOoGujW6Rr6i"
        "+BVQDVD50NXwBelLln8NlQQdHZ0lX1r8E6hj1EJ0Pnxl+ulQW9D10X3yNcbPgcpGdUR3xNcC/wF/H6oNOkM6VL7Y+EtQ"
        "66iX6KD4ouAn8xui/qB7pIvlq47fBdWPCooui68O/jb/IyoSOkzKxS8//hvUQ2oqOjG+TPjt/JioUegU+CrzdcgPhApJ"
        "lUW3xtcL/58/FFUL3QRfbr4g+ZNQM+mmo+MLhx/Rr4o6ho6DrztfmfxSqAvoDtD18RXEH+mfRWVDV8IXoC9R/i1UCnRk"
        "dIZ8KfFrUrmodehc+Er0tcpPhtqBBl9//DioiFRVdGN8nfDf+TNRpdAt8GXmC5E/CDWSOouOjS8YfkC/KOoWOgq+3nxF"
        "8iuhatJx0dXxlcOf6F9FJUPXwReeL03+KVQGdAjo/PgS4pf006K2oTPhK9DXKD8XagW6MrpDvpb4N6kAqHboXvhS9MXK"
        "X4bqgc6NDpIvKv4G1C7qHzocviZ91fK7oZ6gu6PL5KuL3wLVjIqILogvTn8A/x0qDDpAOlG+zPg/UN+okeiU+HLg9/ID"
        "ouagS6Rb5euNHwUVj6qJboqvC/4zfyKqEDpJOlq+8PhjUAOpo+i4+ALhh/NLoi6h2/T15SuQXwdVkcqKroyvFP48/yYq"
        "FboGvtB8KfIPoU5Sa9G58SXDL+gnRe1CZ8FXnK9JfiZUTroAdHd87fAv+ltRzdB98KXni5O/CtUBnRcdIF9E/JR+W9Q3"
        "dCh8Dfoq5fdCvUB3RpfIVxN/J1UAFQ9dDF+Mvlz5z1BB0MHRSfJlxf+A+kUNRKfDV6WvW3441BR0eXSbfH3xY6CiURXR"
        "DfHl6R/gz0OVQSdIR8oXGn8Iahx1Eh0TXxD8YH5B1B10i3StfMXxq6DqUTnRVfGVwZ/mX0QlQkdJZ8uXHv8M6iC1FJ0X"
        "XyL8cn5K1CZ0nb7CfA3y86AyUl3RnfG1wr/n70S1QvfAl5ovRv4i1ErqLTo4vmj4Cf2mqF/oMDgHADh0fWhkSgfu6YVw"
        "XlPi8LRU8zRKTEWbwlALTwE="
    ),
    # float32_steps(2048) (level 19)
    "float32_steps": (
        "KLUv/WAAH10HAAZZNzJAcyrDAdOFqUGTvHqj3qg36o16o96oN+qNekMjxrg9ZYlSlihX5G7UsEQpS5QoUYpJASkAKAAp"
        "AJVcgi0p5+EAnIwLeVBuxT14Pm7EdWyZ4/DgOBhH4Sk5k2PwdFyII/AHvZSz8JycinPwzJGcgS1vw3PjXhzIQ3IobsED"
        "4gacymV4alyLi/BcDs3jcSKuwA0up+FZOZSb8IzciVPwvJETcDQOw6NyLO7jCbkSh2BLyXU4XR4b5+IkPCJn4jy2rNyH"
        "C3Az7sKTcicH4QE5Endgy+VEnhwX4yo8JpfiAgANaX65eg6yVwo="
    ),
    # string_decoded(token_strings(300)) (level 1)
    "token_strings": (
        "KLUv/WAQFVURAIQZAAAKABUAIAArADUAQABLAFYAYABrAHYAgQCLAJYAoQCsALYAwQDMANcA4gDtAPgAAwEADhkkLjlE"
        "T1lkb3qEj5qlr7rF0Nrl8PsGAhEcJjE8R1FcZ3J8h5Kdp7K9yNLd6PP+CQMUHyo1QEpVYGt1gIuWoKu2wcvW4ez2AQQM"
        "FyItOEJNWGNteIOOmKOuucPO2eTu+QQFDxolMDtGUVxmcXyHkZynsrzH0t3n8v0IBhIdKDM+SVReaXR/iZSfqrS/ytXf"
        "6vUABwoVICs2QUxXYm14go2Yo624w87Y4+75AwgOGSQuOURPWmVweoWQm6Wwu8bQ2+bx+wYJERwmMTxHUl1oc36JlJ6p"
        "tL/J1N/q9P8KChUfKjVASlVga3aBjJahrLfBzNfi7PcCCw0XIi04Qk1YY255hI+apbC6xdDb5fD7BgwQGyYxO0ZRXGZx"
        "fIeSnah0b2tlbl8wX8OpMTMyNjM5MjE1Mjg0MTE3MzA0MzEzNDIzNDQ3MTAyMzM2NDkxMjI1MzgxMjQxMjQxMzQyNDIz"
        "NDEyMzEygWOoMdBtO+EryxoSSNBYB9j2///fY/rQJwgjzGAeXkZnOBx1RfL1K9d1cS7jdXEuA/YNAB0IA0DHQvBBQSRe"
        "vnFdnoIGeEfcAjn475ocF1D/3XfKx7g2sLGamXMRQA1laY5rARurmTkXAdQwlua4FvizjplzEWBYXQEZCYNwDIABMAAG"
        "wAAwAAbAABgA0w0N"
    ),
}


# ----------------------------------------------------------------------------------------------
# zstd frames assembled by hand (RFC 8878): raw, RLE and "compressed" (raw-literals-only) blocks
# ----------------------------------------------------------------------------------------------

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_block(kind: str, chunk: bytes, last: bool) -> bytes:
    if kind == "raw":
        hdr = (len(chunk) << 3) | (0 << 1) | int(last)
        return hdr.to_bytes(3, "little") + chunk
    if kind == "rle":
        assert chunk and chunk == chunk[:1] * len(chunk)
        hdr = (len(chunk) << 3) | (1 << 1) | int(last)
        return hdr.to_bytes(3, "little") + chunk[:1]
    if kind == "lit":
        # Compressed block: Raw_Literals_Block holding the chunk, then zero sequences.
        n = len(chunk)
        if n < 32:
            lh = bytes([n << 3])
        elif n < 4096:
            lh = bytes([((n & 0xF) << 4) | (0b01 << 2), n >> 4])
        else:
            lh = bytes([((n & 0xF) << 4) | (0b11 << 2), (n >> 4) & 0xFF, n >> 12])
        body = lh + chunk + b"\x00"
        hdr = (len(body) << 3) | (2 << 1) | int(last)
        return hdr.to_bytes(3, "little") + body
    raise ValueError(kind)


def zstd_frame(data: bytes, kinds: tuple[str, ...] = ("raw",), chunk: int = 1 << 16, *,
               content_size: Optional[int] = None, single_segment: bool = True, window_log: int = 17,
               checksum: bool = False, checksum_value: Optional[int] = None, portable: bool = False) -> bytes:
    """One zstd frame holding `data`, split into chunks whose block types cycle through `kinds`
    ("raw", "rle" for chunks of one repeated byte (falls back to raw), "lit").

    content_size: the Frame_Content_Size to declare (default: len(data)); single_segment=False
    writes a Window_Descriptor for 2**window_log instead and no content size.
    portable: keep the frame within the frame rules of docs/FORMAT.md section 10 (every block
    no larger than min(Window_Size, 128 KiB)): when a single-segment frame would hold a block
    larger than its content (a literal-only block of a small chunk), write a Window_Descriptor
    large enough for the largest block, followed by the content size, instead.
    """
    fcs = len(data) if content_size is None else content_size
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    blocks = []
    for k, c in enumerate(chunks):
        kind = kinds[k % len(kinds)]
        if kind == "rle" and (not c or c != c[:1] * len(c)):
            kind = "raw"
        blocks.append(_zstd_block(kind, c, k == len(chunks) - 1))
    largest = max(_block_size(b) for b in blocks)
    if portable and single_segment and largest > fcs:
        wlog = max(10, (largest - 1).bit_length())
        if fcs < 256 or fcs >= 2**32:
            fcs_flag, fcs_bytes = (2, fcs.to_bytes(4, "little")) if fcs < 2**32 else (3, fcs.to_bytes(8, "little"))
        elif fcs < 65536 + 256:
            fcs_flag, fcs_bytes = 1, (fcs - 256).to_bytes(2, "little")
        else:
            fcs_flag, fcs_bytes = 2, fcs.to_bytes(4, "little")
        header = bytes([(fcs_flag << 6) | (int(checksum) << 2), (wlog - 10) << 3]) + fcs_bytes
    elif single_segment:
        if fcs < 256:
            fcs_flag, fcs_bytes = 0, fcs.to_bytes(1, "little")
        elif fcs < 65536 + 256:
            fcs_flag, fcs_bytes = 1, (fcs - 256).to_bytes(2, "little")
        elif fcs < 2**32:
            fcs_flag, fcs_bytes = 2, fcs.to_bytes(4, "little")
        else:
            fcs_flag, fcs_bytes = 3, fcs.to_bytes(8, "little")
        fhd = (fcs_flag << 6) | (1 << 5) | (int(checksum) << 2)
        header = bytes([fhd]) + fcs_bytes
    else:
        assert content_size is None or content_size == -1
        fhd = (0 << 6) | (0 << 5) | (int(checksum) << 2)
        header = bytes([fhd, (window_log - 10) << 3])
    out = ZSTD_MAGIC + header + b"".join(blocks)
    if checksum:
        v = xxhash.xxh64_intdigest(data) & 0xFFFFFFFF if checksum_value is None else checksum_value
        out += v.to_bytes(4, "little")
    return out


def zstd_mixed(data: bytes, portable: bool = False) -> bytes:
    """Small blocks of every kind, split over two frames (a stream may hold several frames)."""
    half = len(data) // 2
    return (zstd_frame(data[:half], ("lit", "raw", "rle"), chunk=7, portable=portable) +
            zstd_frame(data[half:], ("raw", "lit"), chunk=5, checksum=True, portable=portable))


def _block_size(block: bytes) -> int:
    return int.from_bytes(block[:3], "little") >> 3


def frame_rule_violations(stream: bytes) -> list[str]:
    """Where a zstd stream breaks the frame rules of docs/FORMAT.md section 10 (RFC 8878:
    every block's Block_Size at most Block_Maximum_Size = min(Window_Size, 128 KiB), where a
    single-segment frame's Window_Size is its content size). Walks headers only."""
    out, pos, frame = [], 0, 0
    while pos < len(stream):
        assert stream[pos:pos + 4] == ZSTD_MAGIC, "not a zstd frame"
        fhd = stream[pos + 4]
        pos += 5
        single, fcs_flag, dict_flag, checksum = (fhd >> 5) & 1, fhd >> 6, fhd & 3, (fhd >> 2) & 1
        window = 0
        if not single:
            wd = stream[pos]
            pos += 1
            base_ = 1 << (10 + (wd >> 3))
            window = base_ + (base_ // 8) * (wd & 7)
        pos += (0, 1, 2, 4)[dict_flag]
        nfcs = (1 if single else 0, 2, 4, 8)[fcs_flag]
        fcs = int.from_bytes(stream[pos:pos + nfcs], "little") + (256 if nfcs == 2 else 0)
        pos += nfcs
        if single:
            window = fcs
        bmax = min(window, 128 * 1024)
        while True:
            bh = int.from_bytes(stream[pos:pos + 3], "little")
            pos += 3
            btype, size = (bh >> 1) & 3, bh >> 3
            if size > bmax:
                out.append(f"frame {frame}: block of {size} bytes > block maximum {bmax}")
            pos += 1 if btype == 1 else size
            if bh & 1:
                break
        pos += 4 * checksum
        frame += 1
    return out


# ----------------------------------------------------------------------------------------------
# File assembly
# ----------------------------------------------------------------------------------------------

@dataclass
class Arr:
    name: str
    dtype: str
    shape: list
    decoded: bytes                     # decoded bytes (hashed into the manifest)
    stored: Optional[bytes] = None     # stored bytes; default: decoded (raw)
    codec: str = "raw"
    level: Optional[int] = None
    attrs: Optional[str] = None        # typed-value JSON text
    strings: Optional[list] = None     # for string arrays: the expected list
    # Invalid-vector hooks.
    offset: Optional[int] = None       # place the data here instead of the next aligned offset
    pad_byte: int = 0                  # fill of the padding before this array
    fields: dict = field(default_factory=dict)  # entry member -> raw JSON text (None removes)
    extra: list = field(default_factory=list)   # (key, raw JSON text) appended to the entry
    name_json: Optional[str] = None    # raw JSON text of the name member

    def __post_init__(self):
        if self.stored is None:
            self.stored = self.decoded


def raw_arr(name: str, dtype: str, shape: list, data: bytes, **kw) -> Arr:
    return Arr(name, dtype, list(shape), data, **kw)


def str_arr(name: str, shape: list, strings: list[str], **kw) -> Arr:
    return Arr(name, "string", list(shape), string_decoded(strings), strings=list(strings), **kw)


def zstd(a: Arr, frame: Optional[bytes] = None, level: int = 3, portable: bool = False) -> Arr:
    a.stored = zstd_mixed(a.decoded, portable) if frame is None else frame
    a.codec = "zstd"
    a.level = level
    return a


PREAMBLE_FIELDS = ("magic", "major", "minor", "flags", "alignment", "reserved", "header_offset",
                   "header_length", "content_length", "header_xxh3", "preamble_xxh3")


def build(arrays: list[Arr], *, alignment: int = 64, sections: Optional[dict] = None,
          top: Optional[list] = None, header: Optional[Callable[[str], str]] = None,
          header_bytes: Optional[bytes] = None, header_gap: int = 0, header_pad_byte: int = 0,
          preamble: Optional[dict] = None, trailer: bytes = b"",
          post: Optional[Callable[[bytearray], None]] = None) -> bytes:
    """Assemble a file. By default a valid one; the keyword hooks inject single defects.

    sections: {"metadata": json_text, ...}; top: list of (key, json_text) replacing the default
    top-level members; header: maps the finished header text to another; header_bytes: the
    header verbatim; header_gap: extra bytes between the aligned end of the arrays and the header;
    preamble: field -> value overrides (checksums recomputed unless overridden); post: mutates
    the finished image in place (checksums NOT recomputed).
    """
    body = bytearray(64)
    placed = []
    for a in arrays:
        off = align_up(len(body), alignment) if a.offset is None else a.offset
        if off >= len(body):
            body += bytes([a.pad_byte]) * (off - len(body))
            body += a.stored
        else:  # overlapping placement: the bytes already there are the array's stored bytes
            end = off + len(a.stored)
            if end > len(body):
                body += bytes(end - len(body))
        placed.append((a, off, len(a.stored)))
    header_offset = align_up(len(body), 8) + header_gap
    body += bytes([header_pad_byte]) * (header_offset - len(body))

    entries = []
    for a, off, length in placed:
        stored = bytes(body[off:off + length])
        members = [
            ("name", a.name_json if a.name_json is not None else jstr(a.name)),
            ("dtype", jstr(a.dtype)),
            ("shape", "[" + ",".join(str(d) for d in a.shape) + "]"),
            ("offset", str(off)),
            ("length", str(length)),
            ("decoded_length", str(len(a.decoded))),
            ("codec", jstr(a.codec)),
        ]
        if a.level is not None:
            members.append(("level", str(a.level)))
        members.append(("xxh3", jstr(f"{xxh3(stored):016x}")))
        if a.attrs is not None:
            members.append(("attrs", a.attrs))
        for k, v in a.fields.items():
            idx = [m[0] for m in members].index(k) if k in [m[0] for m in members] else None
            if v is None:
                members.pop(idx)
            elif idx is None:
                members.append((k, v))
            else:
                members[idx] = (k, v)
        members += a.extra
        entries.append("{" + ",".join(f"{jstr(k)}:{v}" for k, v in members) + "}")

    if top is None:
        top = [("format", '"vitrify"'), ("required_features", "[]"), ("arrays", "[" + ",".join(entries) + "]")]
        for k in ("metadata", "environment", "provenance", "content"):
            if sections and k in sections:
                top.append((k, sections[k]))
    else:
        top = [(k, ("[" + ",".join(entries) + "]") if v is ARRAYS else v) for k, v in top]
    htext = "{" + ",".join(f"{jstr(k)}:{v}" for k, v in top) + "}"
    if header is not None:
        htext = header(htext)
    hbytes = htext.encode("utf-8") if header_bytes is None else header_bytes

    p = dict(magic=MAGIC, major=1, minor=0, flags=0, alignment=alignment, reserved=0,
             header_offset=header_offset, header_length=len(hbytes),
             content_length=header_offset + len(hbytes), header_xxh3=xxh3(hbytes), preamble_xxh3=None)
    if preamble:
        unknown = set(preamble) - set(PREAMBLE_FIELDS)
        assert not unknown, unknown
        p.update(preamble)
        if "header_length" in preamble and "content_length" not in preamble:
            p["content_length"] = (p["header_offset"] + p["header_length"]) % 2**64
    pre = p["magic"] + struct.pack("<HHIIIQQQQ", p["major"], p["minor"], p["flags"], p["alignment"],
                                   p["reserved"], p["header_offset"], p["header_length"],
                                   p["content_length"], p["header_xxh3"])
    pre += struct.pack("<Q", xxh3(pre) if p["preamble_xxh3"] is None else p["preamble_xxh3"])
    assert len(pre) == 64
    body[0:64] = pre
    image = bytearray(body) + hbytes + trailer
    if post is not None:
        post(image)
    return bytes(image)


ARRAYS = object()  # placeholder for the array table in a custom `top`


def trailer_block(tag: bytes, body: bytes) -> bytes:
    assert len(tag) == 8
    return tag + struct.pack("<Q", len(body)) + body


# ----------------------------------------------------------------------------------------------
# Valid vectors
# ----------------------------------------------------------------------------------------------

@dataclass
class Vector:
    name: str
    description: str
    data: bytes
    arrays: list = field(default_factory=list)      # valid: list[Arr]
    sections: dict = field(default_factory=dict)    # valid: section -> JSON text
    alignment: int = 64
    version: tuple = (1, 0)
    trailers: list = field(default_factory=list)    # valid: tags
    error: Optional[str] = None                      # invalid: expected code name
    stage: Optional[str] = None                      # invalid: "open" | "verify"
    load_error: Optional[str] = None                 # invalid: load_arrays(mmap=False) must raise
    writer_canonical: bool = False                   # valid: the library writer makes these bytes


def valid(name: str, description: str, arrays: list[Arr], *, alignment: int = 64,
          sections: Optional[dict] = None, trailer: bytes = b"", trailers=(), minor: int = 0,
          top: Optional[list] = None, header: Optional[Callable[[str], str]] = None) -> Vector:
    sections = dict(sections or {})
    data = build(arrays, alignment=alignment, sections=sections, trailer=trailer, top=top, header=header,
                 preamble={"minor": minor} if minor else None)
    return Vector(name, description, data, arrays=arrays, sections=sections, alignment=alignment,
                  version=(1, minor), trailers=list(trailers))


def all_fixed(prefix: str = "") -> list[Arr]:
    return [raw_arr(prefix + dt, dt, shape, data) for dt, shape, data in FIXED_ARRAYS]


TYPED_METADATA = (
    '{"plain":{"null":null,"true":true,"false":false,"int":42,"negative":-7,'
    '"int64_min":-9223372036854775808,"int64_max":9223372036854775807,"float":0.1,'
    '"one":1.0,"neg_zero":-0.0,"tiny":5e-324,"huge":1.7976931348623157e+308,"exp":1e+22,'
    '"str":"h\u00e9llo \\"w\u00f6rld\\"\\n\\t\\\\ \u65e5\u672c \U0001F600","escaped":"\\u00e9\\ud83d\\ude00\\u0001",'
    '"empty_str":"","list":[1,2.5,"x",[],{}],"nested":{"a":{"b":{"c":[1,[2,[3]]]}}}},'
    '"floats":[{"$float":"nan"},{"$float":"inf"},{"$float":"-inf"}],'
    '"ints":[{"$int":"9223372036854775808"},{"$int":"-9223372036854775809"},'
    '{"$int":"123456789012345678901234567890"}],'
    '"bytes":[{"$bytes":""},{"$bytes":"AA=="},{"$bytes":"AAEC/f7/"},{"$bytes":"aGVsbG8="}],'
    '"tuples":[{"$tuple":[]},{"$tuple":[1,"a",{"$tuple":[null]}]}],'
    '"dicts":[{"$dict":[]},{"$dict":[[1,"one"],[{"$tuple":[1,2]},"pair"],["$dollar","key with $"],'
    '[null,true],[2.5,"float key"],[{"$bytes":"AQ=="},"bytes key"]]}],'
    '"object":{"$object":{"type":"sklearn.preprocessing.StandardScaler","version":1,'
    '"state":{"mean":{"$array":"weights"},"n_features":3,"with_std":true}}},'
    '"shared":[{"$shared":{"id":0,"value":{"big":"thing"}}},{"$ref":0},{"$ref":0},'
    '{"$shared":{"id":7,"value":[1,2]}},{"$ref":7}],'
    '"array":{"$array":"weights"},"strings_array":{"$array":"labels"},'
    '"empty_dict":{},"empty_list":[]}'
)


def valid_vectors() -> list[Vector]:
    v: list[Vector] = []
    v.append(valid("empty", "No arrays and no sections: header right after the preamble", []))
    v.append(valid(
        "dtypes_raw",
        "Every fixed dtype with edge values (extremes, -0, inf, NaN payloads, subnormals) plus a "
        "unicode string array, all raw, alignment 64",
        all_fixed() + [str_arr("string", [13], UNICODE_STRINGS)]))
    v.append(dtypes_zstd(""))
    v.append(valid(
        "dtypes_float8",
        "Format 1.1: both float8 dtypes (float8_e4m3fn, float8_e5m2) with edge values, raw, next "
        "to a 1.0 dtype; required_features [\"dtype_float8\"], minor version 1",
        [raw_arr(dt, dt, shape, data) for dt, shape, data in FLOAT8_ARRAYS] +
        [raw_arr("bfloat16", "bfloat16", [5], pack("H", [0x3F80, 0xC000, 0x7F80, 0x0000, 0x7FC0]))],
        top=FLOAT8_TOP + [("arrays", ARRAYS)], minor=1))
    v.append(dtypes_float8_zstd(""))
    v.append(zero_d_and_empty(""))
    v.append(valid(
        "strings_unicode",
        "String arrays: unicode (combining marks, 4-byte code points, NUL inside, RTL), 2-D, "
        "repeated values, raw and zstd, with and without a numpy_dtype attribute",
        [
            str_arr("unicode", [13], UNICODE_STRINGS),
            str_arr("grid", [2, 3], ["a", "bb", "ccc", "ü", "€€", "𝄞"]),
            str_arr("object_hint", [3], ["x", "", "y z"], attrs='{"numpy_dtype":"object"}'),
            str_arr("width_hint", [2], ["ab", "c"], attrs='{"numpy_dtype":"<U4"}'),
            zstd(str_arr("compressed", [4, 2], [f"row {i} ✓" for i in range(8)])),
        ]))
    v.append(valid(
        "align_4096",
        "Alignment 4096: odd-sized arrays padded to page boundaries, an array spanning pages",
        [
            raw_arr("one_byte", "uint8", [1], b"\x7f"),
            raw_arr("spans_pages", "float64", [700], pack("d", [i / 8 for i in range(700)])),
            raw_arr("empty", "int32", [0], b""),
            str_arr("labels", [3], ["α", "β", "γ"]),
            raw_arr("tail", "int16", [3], pack("h", [1, -2, 3])),
        ], alignment=4096))
    v.append(valid(
        "align_4096_zstd",
        "Alignment 4096 with raw and zstd arrays interleaved",
        [
            zstd(raw_arr("z1", "int32", [64], int32_ramp(64))),
            raw_arr("r1", "float32", [5], float32_steps(5)),
            zstd(raw_arr("z2", "uint8", [4096], bytes(4096)), zstd_frame(bytes(4096), ("rle",), chunk=1000)),
        ], alignment=4096))
    v.append(valid(
        "align_256",
        "Alignment 256 (any power of two in [64, 4096] is allowed)",
        [raw_arr("a", "uint16", [3], pack("H", [1, 2, 3])), raw_arr("b", "uint16", [1], pack("H", [4]))],
        alignment=256))
    v.append(valid(
        "libzstd_frames",
        "Arrays compressed by libzstd itself (levels 3, 19 and 1), frozen in the generator",
        [
            zstd(raw_arr("ramp", "int32", [32, 32], int32_ramp(1024)),
                 base64.b64decode(LIBZSTD_FRAMES["int32_ramp"]), level=3),
            zstd(raw_arr("steps", "float32", [2048], float32_steps(2048)),
                 base64.b64decode(LIBZSTD_FRAMES["float32_steps"]), level=19),
            zstd(str_arr("tokens", [300], token_strings(300)),
                 base64.b64decode(LIBZSTD_FRAMES["token_strings"]), level=1),
        ]))
    v.append(valid(
        "metadata_typed",
        "Metadata using every typed-value kind: null/bool/int/float/str, int64 extremes, -0.0, "
        "subnormal, $float nan/inf/-inf, $int, $bytes, $tuple, $dict (non-string and '$' keys), "
        "$object, $shared/$ref, $array (to a fixed and a string array)",
        [raw_arr("weights", "float32", [3], pack("f", [1.0, 2.0, 3.0])),
         str_arr("labels", [2], ["cat", "dog"])],
        sections={"metadata": TYPED_METADATA}))
    v.append(valid(
        "all_sections",
        "All four typed sections (metadata, environment, provenance, content), array attrs with "
        "typed values and $array references, a $ref before its $shared",
        [raw_arr("coef", "float64", [2, 2], pack("d", [1.0, 0.0, 0.0, 1.0]),
                 attrs='{"role":"weights","scale":{"$float":"inf"},"peer":{"$array":"bias"},'
                       '"shape_hint":{"$tuple":[2,2]}}'),
         raw_arr("bias", "float64", [2], pack("d", [0.5, -0.5]), attrs="{}")],
        sections={
            "metadata": '{"user":"x","steps":10}',
            "environment": '{"python":"3.11.2","packages":{"numpy":"2.1.0"},"platform":"linux-x86_64"}',
            "provenance": '{"created":"2024-01-01T00:00:00Z","source":{"$bytes":"c2hhMjU2"}}',
            "content": '{"$object":{"type":"vitrify.test.Linear","version":2,"state":{'
                       '"coef":{"$array":"coef"},"bias":{"$array":"bias"},"first":{"$ref":3},'
                       '"cfg":{"$shared":{"id":3,"value":{"$dict":[[1,2]]}}}}}}',
        }))
    v.append(valid(
        "names_unicode",
        "Array names with unicode, spaces, slashes, quotes, backslashes, '$' and a 4096-byte name",
        [
            raw_arr("layer.0/weight", "uint8", [1], b"\x01"),
            raw_arr("ünïcödé 名前 😀", "uint8", [1], b"\x02"),
            raw_arr('quote" back\\slash', "uint8", [1], b"\x03"),
            raw_arr("$not_a_tag", "uint8", [1], b"\x04"),
            raw_arr(" ", "uint8", [1], b"\x05"),
            raw_arr("n" * 4096, "uint8", [1], b"\x06"),
        ]))
    v.append(valid(
        "header_whitespace",
        "A header with insignificant whitespace and \\u escapes (any valid JSON text is allowed)",
        [raw_arr("caf\u00e9", "int32", [2], pack("i", [1, 2]))],
        sections={"metadata": '{"k":[1,2]}'},
        header=lambda h: (h.replace(',"', ',\n  "').replace('{"', '{ "').replace(":", ": ")
                          .replace("caf\u00e9", "caf\\u00e9") + "\n")))
    v.append(valid(
        "unknown_members",
        "Unknown top-level members and unknown array-entry members (readers must ignore them)",
        [raw_arr("a", "int8", [2], pack("b", [1, -1]),
                 extra=[("future_member", '{"x":[1,2,{"$weird":true}]}'), ("note", '"ignored"')])],
        top=[("format", '"vitrify"'), ("x-writer", '{"name":"generate.py","dup":[1,1]}'),
             ("arrays", ARRAYS), ("required_features", "[]"), ("zz", "null")]))
    v.append(valid(
        "minor_version_7",
        "Format version 1.7: readers accept any minor version of major 1",
        [raw_arr("a", "uint8", [2], b"\x01\x02")], minor=7))
    v.append(valid(
        "trailer_block",
        "Unknown trailer blocks after the header (readers ignore unknown tags)",
        [raw_arr("a", "uint8", [2], b"\x01\x02")],
        trailer=trailer_block(b"XTEST001", b"opaque body") + trailer_block(b"EMPTY000", b""),
        trailers=["XTEST001", "EMPTY000"]))
    v.append(level_and_fields(""))
    v.append(valid(
        "big_random",
        "A larger file: 256 KiB of pseudo-random uint8 data raw, and 160 KB zstd in 4 big blocks",
        [raw_arr("noise", "uint8", [512, 512], pseudo_random("noise", 1 << 18)),
         zstd(raw_arr("blocks", "float32", [40000], float32_steps(40000)),
              zstd_frame(float32_steps(40000), ("raw", "lit"), chunk=50000))],
        alignment=4096))
    v.append(valid(
        "empty_last_4096",
        "Alignment 4096 ending with an empty array: it still sits at the next page boundary, so "
        "the header follows a full page of padding",
        [raw_arr("one", "uint8", [1], b"\x01"), raw_arr("nothing", "float32", [0, 4], b"")],
        alignment=4096))
    # 2026-12-04: the same four vectors again, with frames within the frame rules (the
    # originals are reclassified: see RECLASSIFIED).
    for make in (dtypes_zstd, dtypes_float8_zstd, zero_d_and_empty, level_and_fields):
        v.append(make(PORTABLE_SUFFIX))
    for x in v:
        x.writer_canonical = x.name in WRITER_CANONICAL
    return v


PORTABLE_SUFFIX = "_portable"
PORTABLE_NOTE = (" (frames within the block-size rule of FORMAT.md section 10: a literal block "
                 "larger than its frame's content gets a Window_Descriptor)")


def _variant(suffix: str, description: str) -> tuple[bool, str]:
    portable = suffix == PORTABLE_SUFFIX
    return portable, description + (PORTABLE_NOTE if portable else "")


def dtypes_zstd(suffix: str) -> Vector:
    p, d = _variant(suffix, "Every dtype zstd-compressed with hand-made frames (raw, RLE and literal-only "
                    "compressed blocks, two frames per array, the second with a content checksum), alignment 64")
    return valid("dtypes_zstd" + suffix, d,
                 [zstd(a, portable=p) for a in all_fixed("z_")] +
                 [zstd(str_arr("z_string", [13], UNICODE_STRINGS), portable=p)])


def dtypes_float8_zstd(suffix: str) -> Vector:
    p, d = _variant(suffix, "Format 1.1: both float8 dtypes zstd-compressed with hand-made frames, a 0-d and an "
                    "empty float8 array; required_features [\"dtype_float8\"], minor version 1")
    return valid("dtypes_float8_zstd" + suffix, d,
                 [zstd(raw_arr("z_" + dt, dt, shape, data), portable=p) for dt, shape, data in FLOAT8_ARRAYS] +
                 [raw_arr("scalar_e4m3fn", "float8_e4m3fn", [], b"\x38"),
                  raw_arr("empty_e5m2", "float8_e5m2", [0, 3], b"")],
                 top=FLOAT8_TOP + [("arrays", ARRAYS)], minor=1)


def zero_d_and_empty(suffix: str) -> Vector:
    p, d = _variant(suffix, "0-d arrays (shape []), empty arrays (zero-length data, several at the same "
                    "offset), empty and 0-d string arrays, raw and zstd")
    return valid("zero_d_and_empty" + suffix, d, [
        raw_arr("scalar_f64", "float64", [], pack("d", [2.5])),
        raw_arr("scalar_bool", "bool", [], b"\x01"),
        raw_arr("empty_f32", "float32", [0], b""),
        raw_arr("empty_2d", "int16", [3, 0], b""),
        raw_arr("empty_3d", "complex128", [0, 5, 2], b""),
        str_arr("empty_strings", [0], []),
        str_arr("scalar_string", [], ["only one"]),
        zstd(raw_arr("empty_zstd", "uint32", [0], b""), zstd_frame(b"", portable=p)),
        zstd(raw_arr("scalar_zstd", "int64", [], pack("q", [-42])),
             zstd_frame(pack("q", [-42]), ("lit",), portable=p)),
        zstd(str_arr("empty_strings_zstd", [2, 0], []), zstd_frame(string_decoded([]), ("rle",), portable=p)),
        raw_arr("after_empties", "uint8", [3], b"\x01\x02\x03"),
    ])


def level_and_fields(suffix: str) -> Vector:
    p, d = _variant(suffix, "The optional 'level' member: a negative (fast) zstd level, and a zstd array "
                    "without one")
    return valid("level_and_fields" + suffix, d,
                 [zstd(raw_arr("fast", "int32", [16], int32_ramp(16)), level=-5, portable=p),
                  zstd(raw_arr("nolevel", "int32", [16], int32_ramp(16)),
                       zstd_frame(int32_ramp(16), ("lit",), portable=p), level=None)])


#: Vectors published as valid whose zstd frames break the frame rules (FORMAT.md section 10),
#: now expected to fail verification. Their files and their old descriptions stay; the manifest
#: lists them under "invalid" with the reason. Corrected copies are the "_portable" vectors.
RECLASSIFIED_WHY = (
    "hand-made single-segment zstd frames holding a literal-only compressed block larger than "
    "the frame's content size, so larger than its Window_Size and Block_Maximum_Size (RFC 8878 "
    "3.1.1.2.4). libzstd 1.5.4 (Debian 12) rejects them ('Src size is incorrect'), 1.5.7 "
    "(Debian 13) accepts them: the format now checks the block-size rule itself, so every "
    "reader rejects them with decompress_error. Corrected copies: the same name + '_portable'.")
RECLASSIFIED = {n: {"date": "2026-12-04", "was": "valid", "why": RECLASSIFIED_WHY}
                for n in ("dtypes_zstd", "dtypes_float8_zstd", "zero_d_and_empty", "level_and_fields")}


#: Valid vectors whose bytes are exactly what the library's writer produces for the same arrays
#: and sections (recorded in the manifest as "writer_canonical": true).
WRITER_CANONICAL = {"empty", "dtypes_raw", "align_4096", "align_256", "all_sections", "names_unicode",
                    "empty_last_4096", "dtypes_float8"}


# ----------------------------------------------------------------------------------------------
# Invalid vectors: one defect each
# ----------------------------------------------------------------------------------------------

def base_arrays() -> list[Arr]:
    return [raw_arr("w", "float32", [4, 4], float32_steps(16)),
            raw_arr("b", "int64", [3], pack("q", [1, -2, 3]))]


BASE_META = {"metadata": '{"epoch":1,"name":"base"}'}


def base(**kw) -> bytes:
    kw.setdefault("sections", BASE_META)
    arrays = kw.pop("arrays", None)
    if arrays is None:
        arrays = base_arrays()
    return build(arrays, **kw)


def set_bytes(off: int, new: bytes):
    def f(img: bytearray):
        img[off:off + len(new)] = new
    return f


def xor_byte(off: int, mask: int = 0x01):
    def f(img: bytearray):
        img[off] ^= mask
    return f


def header_offset_of(img: bytes) -> int:
    return struct.unpack_from("<Q", img, 24)[0]


def corrupt_in_header(old: bytes, new: bytes):
    def f(img: bytearray):
        ho = header_offset_of(img)
        k = img.index(old, ho)
        img[k:k + len(old)] = new
    return f


def meta(text: str, arrays: Optional[list] = None) -> bytes:
    return build(arrays or base_arrays(), sections={"metadata": text})


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def invalid_vectors() -> list[Vector]:
    out: list[Vector] = []

    def bad(name, error, stage, description, data, load_error=None):
        out.append(Vector(name, description, data, error=error, stage=stage, load_error=load_error))

    valid_base = base()
    size = len(valid_base)

    # --- preamble ---------------------------------------------------------------------------
    bad("empty_file", "truncated", "open", "Zero-byte file", b"")
    bad("truncated_preamble", "truncated", "open", "Only the first 40 bytes of a valid file", valid_base[:40])
    bad("bad_magic", "bad_magic", "open", "First magic byte changed (0x89 -> 0x88)", base(post=xor_byte(0)))
    bad("bad_magic_text", "bad_magic", "open", "A text file of more than 64 bytes",
        b"This is not a vitrify file. " * 4)
    bad("preamble_checksum", "checksum_mismatch", "open",
        "Preamble field (minor version) changed without updating preamble_xxh3",
        base(post=set_bytes(10, struct.pack("<H", 1))))
    bad("preamble_checksum_field", "checksum_mismatch", "open", "preamble_xxh3 itself has one bit flipped",
        base(post=xor_byte(60, 0x10)))
    bad("unsupported_major_2", "unsupported_version", "open", "Major version 2", base(preamble={"major": 2}))
    bad("unsupported_major_0", "unsupported_version", "open", "Major version 0", base(preamble={"major": 0}))
    bad("flags_nonzero", "bad_preamble", "open", "Reserved flags = 1", base(preamble={"flags": 1}))
    bad("flags_high_bit", "bad_preamble", "open", "Reserved flags = 0x80000000",
        base(preamble={"flags": 0x80000000}))
    bad("reserved_nonzero", "bad_preamble", "open", "Reserved u32 at offset 20 = 1", base(preamble={"reserved": 1}))
    bad("alignment_not_pow2", "bad_preamble", "open", "Alignment 100 (not a power of two)",
        base(preamble={"alignment": 100}))
    bad("alignment_32", "bad_preamble", "open", "Alignment 32 (below 64)", base(preamble={"alignment": 32}))
    bad("alignment_8192", "bad_preamble", "open", "Alignment 8192 (above 4096)", base(preamble={"alignment": 8192}))
    bad("alignment_0", "bad_preamble", "open", "Alignment 0", base(preamble={"alignment": 0}))
    bad("header_length_max", "limit_exceeded", "open", "header_length = 2^64-1 (content_length left as is)",
        base(preamble={"header_length": 2**64 - 1, "content_length": struct.unpack_from("<Q", valid_base, 40)[0]}))
    bad("header_length_max_wrapped", "limit_exceeded", "open",
        "header_length = 2^64-1 with content_length = header_offset + header_length mod 2^64",
        base(preamble={"header_length": 2**64 - 1}))
    bad("header_length_size_plus_1", "truncated", "open",
        "header_length = file size + 1 (content_length consistent with it, so past the end)",
        base(preamble={"header_length": size + 1}))
    bad("header_length_over_limit", "limit_exceeded", "open",
        "header_length = 64 MiB + 1, one more than the default reader limit",
        base(preamble={"header_length": (64 << 20) + 1}))
    bad("header_length_1", "bad_preamble", "open", "header_length = 1 (a JSON object needs at least 2)",
        base(preamble={"header_length": 1}))
    bad("header_length_0", "bad_preamble", "open", "header_length = 0", base(preamble={"header_length": 0}))
    bad("header_offset_unaligned", "bad_preamble", "open", "header_offset not a multiple of 8",
        base(preamble={"header_offset": 153, "content_length": 153 + len(valid_base) - 152}))
    bad("header_offset_in_preamble", "bad_preamble", "open", "header_offset = 32 (inside the preamble)",
        base(preamble={"header_offset": 32, "content_length": 32 + len(valid_base) - 152}))
    bad("content_length_mismatch", "bad_preamble", "open", "content_length != header_offset + header_length",
        base(preamble={"content_length": size - 1}))
    bad("truncated_arrays", "truncated", "open", "File cut in the middle of the first array",
        valid_base[:100])
    bad("truncated_header", "truncated", "open", "File cut in the middle of the header", valid_base[:size - 10])
    bad("header_checksum", "checksum_mismatch", "open",
        "One header byte changed ('\"epoch\":1' -> '\"epoch\":2') without updating header_xxh3",
        base(post=corrupt_in_header(b'"epoch":1', b'"epoch":2')))
    bad("header_checksum_field", "checksum_mismatch", "open",
        "header_xxh3 in the preamble off by one (preamble_xxh3 recomputed)",
        base(preamble={"header_xxh3": xxh3(valid_base[152:]) ^ 1}))

    # --- trailer -----------------------------------------------------------------------------
    bad("trailing_garbage", "bad_trailer", "open", "5 bytes after the header", base(trailer=b"junk!"))
    bad("trailing_zeros", "bad_trailer", "open", "4096 zero bytes after the header: a block of tag NUL",
        base(trailer=bytes(4096)))
    bad("trailer_overrun", "bad_trailer", "open", "A trailer block whose body_length runs past the end",
        base(trailer=b"XTEST001" + struct.pack("<Q", 100) + b"short"))
    bad("trailer_overrun_max", "bad_trailer", "open", "A trailer block with body_length 2^64-1",
        base(trailer=b"XTEST001" + struct.pack("<Q", 2**64 - 1)))
    bad("trailer_bad_tag", "bad_trailer", "open", "A trailer block whose tag has a non-printable byte",
        base(trailer=trailer_block(b"XTEST\x00\x01\x02", b"")))
    bad("trailer_partial", "bad_trailer", "open", "A valid trailer block followed by 3 stray bytes",
        base(trailer=trailer_block(b"XTEST001", b"ok") + b"abc"))

    # --- header JSON and schema -----------------------------------------------------------------
    bad("header_not_json", "bad_header", "open", "Header is not JSON", base(header=lambda h: " " * (len(h) - 8) + "not json"))
    bad("header_not_object", "bad_header", "open", "Header is a JSON array", base(header=lambda h: "[" + h + "]"))
    bad("header_trailing_text", "bad_header", "open", "Header object followed by more text",
        base(header=lambda h: h + " x"))
    bad("header_two_objects", "bad_header", "open", "Two JSON objects in the header",
        base(header=lambda h: h + "{}"))
    bad("header_invalid_utf8", "bad_header", "open", "A 0xFF byte inside a metadata string",
        base(header_bytes=base_header_text().replace('"base"', '"ba\udcffse"').encode("utf-8", "surrogateescape")))
    bad("header_bom", "bad_header", "open", "A UTF-8 byte order mark before the header object",
        base(header_bytes=b"\xef\xbb\xbf" + base_header_text().encode()))
    bad("header_nul_byte", "bad_header", "open", "A NUL byte after the header object",
        base(header=lambda h: h + "\x00"))
    bad("format_missing", "bad_header", "open", "No \"format\" member",
        base(top=[("required_features", "[]"), ("arrays", ARRAYS)]))
    bad("format_wrong", "bad_header", "open", "\"format\": \"vitrifx\"",
        base(top=[("format", '"vitrifx"'), ("arrays", ARRAYS)]))
    bad("format_not_string", "bad_header", "open", "\"format\": 1",
        base(top=[("format", "1"), ("arrays", ARRAYS)]))
    bad("arrays_missing", "bad_header", "open", "No \"arrays\" member",
        base(arrays=[], top=[("format", '"vitrify"')]))
    bad("arrays_not_array", "bad_header", "open", "\"arrays\" is an object",
        base(arrays=[], top=[("format", '"vitrify"'), ("arrays", "{}")]))
    bad("entry_not_object", "bad_header", "open", "An array entry that is a string",
        base(arrays=[], top=[("format", '"vitrify"'), ("arrays", '["w"]')]))
    bad("duplicate_top_key", "duplicate_name", "open", "The header object has \"format\" twice",
        base(top=[("format", '"vitrify"'), ("format", '"vitrify"'), ("arrays", ARRAYS)]))
    bad("unknown_member_duplicate_key", "duplicate_name", "open",
        "An unknown top-level member (ignored by readers) whose object has the key \"a\" twice (added 2026-11-28)",
        base(top=[("format", '"vitrify"'), ("x-future", '{"a":1,"a":2}'), ("arrays", ARRAYS)]))
    bad("unknown_entry_member_duplicate_key", "duplicate_name", "open",
        "An unknown array-entry member whose object has the key \"k\" twice (added 2026-11-28)",
        base(arrays=[raw_arr("w", "float32", [4, 4], float32_steps(16), extra=[("x-future", '{"k":[1],"k":[2]}')]),
                     raw_arr("b", "int64", [3], pack("q", [1, -2, 3]))]))
    bad("unknown_required_feature", "unsupported_feature", "open", "required_features: [\"quantum-weights\"]",
        base(top=[("format", '"vitrify"'), ("required_features", '["quantum-weights"]'), ("arrays", ARRAYS)]))
    bad("required_features_not_array", "bad_header", "open", "required_features: \"none\"",
        base(top=[("format", '"vitrify"'), ("required_features", '"none"'), ("arrays", ARRAYS)]))
    bad("required_feature_not_string", "bad_header", "open", "required_features: [1]",
        base(top=[("format", '"vitrify"'), ("required_features", "[1]"), ("arrays", ARRAYS)]))

    def entry(name, error, description, stage="open", load_error=None, arrays=None, **kw):
        bad(name, error, stage, description, base(arrays=arrays, **kw), load_error)

    def a_w(**kw):
        return raw_arr("w", "float32", [4, 4], float32_steps(16), **kw)

    def a_b(**kw):
        return raw_arr("b", "int64", [3], pack("q", [1, -2, 3]), **kw)

    entry("entry_missing_xxh3", "bad_header", "Array entry without \"xxh3\"", arrays=[a_w(fields={"xxh3": None}), a_b()])
    entry("entry_missing_shape", "bad_header", "Array entry without \"shape\"", arrays=[a_w(fields={"shape": None}), a_b()])
    entry("entry_duplicate_member", "duplicate_name", "Array entry with \"dtype\" twice",
          arrays=[a_w(extra=[("dtype", '"float32"')]), a_b()])
    entry("xxh3_uppercase", "bad_header", "xxh3 written with uppercase hex digits",
          arrays=[a_w(fields={"xxh3": jstr(f"{xxh3(float32_steps(16)):016X}")}), a_b()])
    entry("xxh3_short", "bad_header", "xxh3 with 15 hex digits",
          arrays=[a_w(fields={"xxh3": jstr(f"{xxh3(float32_steps(16)):016x}"[1:])}), a_b()])
    entry("offset_negative", "bad_header", "Array offset -64", arrays=[a_w(fields={"offset": "-64"}), a_b()])
    entry("offset_float", "bad_header", "Array offset 64.0", arrays=[a_w(fields={"offset": "64.0"}), a_b()])
    entry("shape_not_array", "bad_header", "shape is a number", arrays=[a_w(fields={"shape": "16"}), a_b()])
    entry("shape_negative", "bad_header", "shape [-4, -4]", arrays=[a_w(fields={"shape": "[-4,-4]"}), a_b()])
    entry("level_out_of_range", "bad_header", "zstd level 99",
          arrays=[zstd(a_w(), level=99), a_b()])
    entry("name_not_string", "bad_header", "Array name is a number", arrays=[a_w(name_json="7"), a_b()])

    # --- array table -------------------------------------------------------------------------
    entry("unknown_dtype", "unknown_dtype", "dtype \"float8_e4m3\"",
          arrays=[raw_arr("w", "float8_e4m3", [16], bytes(16)), a_b()])
    entry("dtype_case", "unknown_dtype", "dtype \"Float32\" (names are case-sensitive)",
          arrays=[raw_arr("w", "Float32", [4, 4], float32_steps(16)), a_b()])
    entry("float8_without_feature", "unknown_dtype",
          "dtype \"float8_e4m3fn\" in a file that does not list the required feature \"dtype_float8\"",
          arrays=[raw_arr("w", "float8_e4m3fn", [16], bytes(16)), a_b()])
    entry("float8_e5m2_without_feature", "unknown_dtype",
          "dtype \"float8_e5m2\" in a version 1.1 file whose required_features is empty",
          arrays=[a_w(), raw_arr("f8", "float8_e5m2", [4], b"\x3c\x00\x7c\x80")], preamble={"minor": 1})
    entry("float8_unknown_second_feature", "unsupported_feature",
          "required_features [\"dtype_float8\", \"quantum-weights\"]: the second is not implemented",
          arrays=[raw_arr("w", "float8_e4m3fn", [16], bytes(16)), a_b()],
          top=FLOAT8_TOP[:1] + [("required_features", '["dtype_float8","quantum-weights"]'), ("arrays", ARRAYS)])
    entry("float8_feature_shape_mismatch", "bad_array",
          "float8_e4m3fn shape [4, 4] with 15 bytes (decoded_length 15), feature listed",
          arrays=[raw_arr("w", "float8_e4m3fn", [4, 4], bytes(15)), a_b()],
          top=FLOAT8_TOP + [("arrays", ARRAYS)], preamble={"minor": 1})
    entry("unknown_codec", "unknown_codec", "codec \"lz4\"", arrays=[a_w(fields={"codec": '"lz4"'}), a_b()])
    entry("dtype_shape_mismatch", "bad_array", "float32 shape [4, 4] with 60 bytes (decoded_length 60)",
          arrays=[raw_arr("w", "float32", [4, 4], float32_steps(15)), a_b()])
    entry("shape_overflow", "bad_array", "shape [2^32, 2^32, 2]: element count overflows 64 bits",
          arrays=[a_w(fields={"shape": f"[{2**32},{2**32},2]"}), a_b()])
    entry("shape_zero_hides_huge_dim", "bad_array",
          "shape [0, 2^63]: 0 elements, but a dimension no array library can index (added 2026-11-28)",
          arrays=[raw_arr("w", "uint8", [0, 2**63], b""), a_b()])
    entry("shape_zero_between_huge_dims", "bad_array",
          "shape [2^40, 0, 2^30]: the non-zero dimensions multiply past 2^63 - 1 (added 2026-11-28)",
          arrays=[raw_arr("w", "uint8", [2**40, 0, 2**30], b""), a_b()])
    entry("byte_size_overflow", "bad_array", "float64 shape [2^62]: byte size overflows 64 bits",
          arrays=[raw_arr("w", "float64", [2**62], float32_steps(16)), a_b()])
    entry("raw_length_ne_decoded", "bad_array", "raw array whose length differs from decoded_length",
          arrays=[a_w(fields={"decoded_length": "32", "shape": "[8]", "dtype": '"float32"'}), a_b()])
    entry("string_decoded_too_small", "bad_array",
          "string array of 3 elements whose decoded_length (24) cannot hold its 4 offsets",
          arrays=[Arr("s", "string", [3], pack("Q", [0, 0, 0])), a_b()])
    entry("rank_65", "limit_exceeded", "65 dimensions (limit 64)",
          arrays=[a_w(fields={"shape": "[" + ",".join(["1"] * 63 + ["4", "4"]) + "]"}), a_b()])
    entry("decoded_over_limit", "limit_exceeded",
          "zstd uint8 array declaring 2 TiB decoded (limit 1 TiB): a declared decompression bomb",
          arrays=[zstd(raw_arr("w", "uint8", [1 << 41], bytes(16), fields={"decoded_length": str(1 << 41)}),
                       zstd_frame(bytes(16), ("rle",))), a_b()])
    entry("duplicate_names", "duplicate_name", "Two arrays named \"w\"",
          arrays=[a_w(), raw_arr("w", "int64", [3], pack("q", [1, -2, 3]))])
    entry("name_empty", "bad_name", "Empty array name", arrays=[a_w(name_json='""'), a_b()])
    entry("name_control_char", "bad_name", "Array name with U+0001 (escaped as \\u0001)",
          arrays=[a_w(name_json='"a\\u0001b"'), a_b()])
    entry("name_newline", "bad_name", "Array name with a newline (escaped as \\n)",
          arrays=[a_w(name_json='"line\\nbreak"'), a_b()])
    entry("name_del", "bad_name", "Array name with DEL (U+007F)", arrays=[a_w(name_json='"a\x7fb"'), a_b()])
    entry("name_too_long", "bad_name", "Array name of 4097 bytes (limit 4096)",
          arrays=[raw_arr("n" * 4097, "float32", [4, 4], float32_steps(16)), a_b()])
    bad("name_invalid_utf8", "bad_header", "open",
        "Array name containing the invalid UTF-8 sequence C3 28: the header is then not UTF-8 text",
        base(header_bytes=base_header_text().replace('"name":"w"', '"name":"w\udcc3("')
             .encode("utf-8", "surrogateescape")))
    entry("name_lone_surrogate", "bad_header",
          "Array name \"\\ud800\": a JSON escape of a lone surrogate, which is no Unicode text",
          arrays=[a_w(name_json='"w\\ud800"'), a_b()])

    # --- layout --------------------------------------------------------------------------------
    entry("overlapping_arrays", "bad_layout",
          "Second array starts inside the first (offset 96 < 64 + 64); its bytes are the first's tail",
          arrays=[a_w(), raw_arr("b", "int64", [3], bytes(24), offset=96)])
    entry("hole_between_arrays", "bad_layout",
          "Second array one alignment unit later than it must be (zero bytes in the hole)",
          arrays=[a_w(), a_b(offset=192)])
    entry("first_array_late", "bad_layout", "First array at 128 instead of 64",
          arrays=[a_w(offset=128), a_b()])
    entry("misaligned_array", "bad_layout", "Alignment 4096 but the first array at offset 64",
          arrays=[a_w(offset=64), a_b(offset=4096)], alignment=4096)
    entry("nonzero_padding", "bad_layout", "A non-zero byte in the padding between two arrays",
          arrays=[raw_arr("w", "float32", [5], float32_steps(5)), a_b()],
          post=set_bytes(100, b"\x01"))
    entry("nonzero_padding_header", "bad_layout", "A non-zero byte in the padding before the header",
          arrays=[a_w(), raw_arr("b", "int64", [3], pack("q", [1, -2, 3])),
                  raw_arr("c", "uint8", [3], b"\x01\x02\x03")],
          header_pad_byte=0xAA)
    entry("header_gap", "bad_layout", "8 extra zero bytes between the last array and the header",
          header_gap=8)
    entry("array_past_header", "bad_layout", "Array length runs into the header (still inside the file)",
          arrays=[a_w(), a_b(fields={"length": "64", "decoded_length": "64", "shape": "[8]"})])
    entry("array_past_eof", "truncated", "Array length runs past the end of the file",
          arrays=[a_w(), a_b(fields={"length": "80000", "decoded_length": "80000", "shape": "[10000]"})])

    # --- typed values --------------------------------------------------------------------------
    def m(name, error, description, text, arrays=None):
        bad(name, error, "open", description, meta(text, arrays))

    m("json_too_deep", "limit_exceeded", "Metadata of 300 nested lists (limit 256)",
      '{"deep":' + nested_lists(300) + "}")
    m("json_too_deep_parser", "limit_exceeded", "Metadata of 5000 nested lists (beyond the JSON parser's depth)",
      nested_lists(5000))
    m("json_too_deep_dicts", "limit_exceeded", "Metadata of 300 nested objects",
      '{"a":' * 300 + "1" + "}" * 300)
    m("unknown_tag", "bad_value", "Unknown tag {\"$set\": [1, 2]}", '{"x":{"$set":[1,2]}}')
    m("tag_with_extra_member", "bad_value", "A '$float' object with a second member",
      '{"x":{"$float":"nan","y":1}}')
    m("ref_undefined", "bad_value", "{\"$ref\": 5} with no $shared id 5", '{"a":{"$shared":{"id":1,"value":2}},"b":{"$ref":5}}')
    m("shared_duplicate_id", "bad_value", "Two $shared values with id 1",
      '[{"$shared":{"id":1,"value":2}},{"$shared":{"id":1,"value":3}}]')
    m("shared_negative_id", "bad_value", "$shared id -1", '{"$shared":{"id":-1,"value":0}}')
    m("array_ref_missing", "bad_value", "{\"$array\": \"nope\"} naming no array", '{"w":{"$array":"nope"}}')
    m("float_tag_bad", "bad_value", "{\"$float\": \"NaN\"} (only nan, inf, -inf)", '{"$float":"NaN"}')
    m("int_tag_bad", "bad_value", "{\"$int\": \"12a\"}", '{"$int":"12a"}')
    m("int_tag_leading_zero", "bad_value", "{\"$int\": \"0123\"}", '{"$int":"0123"}')
    m("bytes_bad_base64", "bad_value", "{\"$bytes\": \"abc\"} (not padded base64)", '{"$bytes":"abc"}')
    m("tuple_not_list", "bad_value", "{\"$tuple\": {}}", '{"$tuple":{}}')
    m("dict_bad_pair", "bad_value", "{\"$dict\": [[1, 2, 3]]}", '{"$dict":[[1,2,3]]}')
    m("object_bad_type", "bad_value", "$object whose type is not a dotted name", '{"$object":{"type":"os.system(1)","version":1,"state":null}}')
    m("object_missing_state", "bad_value", "$object without state", '{"$object":{"type":"a.b","version":1}}')
    m("uint64_plain_number", "bad_value", "A plain integer above int64 (must use $int)", '{"n":18446744073709551615}')
    m("duplicate_metadata_key", "duplicate_name", "A metadata object with the key \"a\" twice", '{"a":1,"a":2}')
    bad("array_ref_missing_in_attrs", "bad_value", "open", "Array attrs with {\"$array\": \"nope\"}",
        base(arrays=[a_w(attrs='{"peer":{"$array":"nope"}}'), a_b()]))
    bad("unknown_tag_in_content", "bad_value", "open", "Unknown tag in the content section",
        base(sections={"content": '{"$pickle":"gASVAAAAAAAAAAA="}'}))

    # --- detected by verify ------------------------------------------------------------------
    def v_(name, error, description, data, load_error=None):
        bad(name, error, "verify", description, data, load_error)

    v_("array_checksum", "checksum_mismatch", "One bit of the first array's data flipped (header intact)",
       base(post=xor_byte(64 + 5, 0x40)), load_error="checksum_mismatch")
    v_("array_checksum_zstd", "checksum_mismatch", "One literal byte of a zstd array flipped",
       build([zstd(a_w(), zstd_frame(float32_steps(16), ("raw",)))], sections=BASE_META,
             post=xor_byte(64 + 20, 0x01)), load_error="checksum_mismatch")
    v_("zstd_inflates", "decompress_error", "zstd frame decoding to 200 bytes, decoded_length 100",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(pseudo_random("z", 200)))]),
       load_error="decompress_error")
    v_("zstd_inflates_no_content_size", "decompress_error",
       "zstd frame without a content size decoding to 200 bytes, decoded_length 100",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)),
                   zstd_frame(pseudo_random("z", 200), single_segment=False, window_log=10))]),
       load_error="decompress_error")
    v_("zstd_inflates_second_frame", "decompress_error",
       "Two zstd frames of 100 bytes each, decoded_length 100",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(bytes(100)) + zstd_frame(bytes(100)))]),
       load_error="decompress_error")
    v_("zstd_short", "decompress_error", "zstd frame decoding to 50 bytes, decoded_length 100",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(bytes(50)))]),
       load_error="decompress_error")
    v_("zstd_not_zstd", "decompress_error", "Stored bytes of a zstd array are not a zstd frame",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), pseudo_random("nz", 40))]),
       load_error="decompress_error")
    v_("zstd_truncated_frame", "decompress_error", "zstd frame missing its last 10 bytes",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(pseudo_random("t", 100))[:-10])]),
       load_error="decompress_error")
    v_("zstd_trailing_bytes", "decompress_error", "A complete zstd frame followed by 3 stray bytes",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(bytes(100)) + b"abc")]),
       load_error="decompress_error")
    v_("zstd_bad_content_checksum", "decompress_error", "zstd frame whose content checksum is wrong",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)), zstd_frame(bytes(100), checksum=True, checksum_value=1))]),
       load_error="decompress_error")
    v_("zstd_window_too_large", "decompress_error",
       "zstd frame asking for a 2 GiB window (readers cap the window at 128 MiB)",
       build([zstd(raw_arr("z", "uint8", [100], bytes(100)),
                   zstd_frame(bytes(100), single_segment=False, window_log=31))]),
       load_error="decompress_error")
    v_("string_offsets_decreasing", "bad_string_array", "String offsets [0, 5, 3, 8]",
       build([Arr("s", "string", [3], pack("Q", [0, 5, 3, 8]) + b"abcdefgh")]), load_error="bad_string_array")
    v_("string_first_offset_nonzero", "bad_string_array", "String offsets start at 1",
       build([Arr("s", "string", [2], pack("Q", [1, 2, 4]) + b"abcd")]), load_error="bad_string_array")
    v_("string_last_offset_short", "bad_string_array", "Last string offset (3) does not end the text (4)",
       build([Arr("s", "string", [2], pack("Q", [0, 2, 3]) + b"abcd")]), load_error="bad_string_array")
    v_("string_offset_past_text", "bad_string_array", "A string offset beyond the text",
       build([Arr("s", "string", [2], pack("Q", [0, 2**63, 4]) + b"abcd")]), load_error="bad_string_array")
    v_("string_invalid_utf8", "bad_string_array", "String element with bytes FF FE",
       build([Arr("s", "string", [2], pack("Q", [0, 2, 4]) + b"ok\xff\xfe")]), load_error="bad_string_array")
    v_("string_split_code_point", "bad_string_array",
       "A 2-byte code point split across two elements (each slice must be UTF-8 on its own)",
       build([Arr("s", "string", [2], pack("Q", [0, 1, 2]) + "é".encode())]), load_error="bad_string_array")
    v_("string_offsets_zstd", "bad_string_array", "Decreasing string offsets inside a zstd array",
       build([zstd(Arr("s", "string", [3], pack("Q", [0, 5, 3, 8]) + b"abcdefgh"))]), load_error="bad_string_array")
    v_("bool_value_2", "bad_array", "A bool array holding the byte 2",
       build([raw_arr("flags", "bool", [4], b"\x01\x00\x02\x01")]))
    # 2026-12-04: the zstd frame rules of FORMAT.md section 10, checked on the headers.
    data100 = pseudo_random("fr", 100)
    v_("zstd_block_over_window", "decompress_error",
       "Single-segment frame of 100 bytes holding one literal-only block of 102 stored bytes "
       "(Block_Size > Window_Size; libzstd 1.5.7 decodes it, 1.5.4 does not)",
       build([zstd(raw_arr("z", "uint8", [100], data100), zstd_frame(data100, ("lit",)))]),
       load_error="decompress_error")
    v_("zstd_block_over_128k", "decompress_error",
       "RLE block of 131073 bytes in a frame with a 1 MiB window (Block_Maximum_Size is 128 KiB)",
       build([zstd(raw_arr("z", "uint8", [131073], bytes(131073)),
                   zstd_frame(bytes(131073), ("rle",), chunk=131073, single_segment=False, window_log=20))]),
       load_error="decompress_error")
    frame = bytearray(zstd_frame(data100))
    frame[4] |= 0x08
    v_("zstd_reserved_descriptor_bit", "decompress_error",
       "zstd frame whose Frame_Header_Descriptor has its reserved bit set",
       build([zstd(raw_arr("z", "uint8", [100], data100), bytes(frame))]), load_error="decompress_error")
    frame = bytearray(zstd_frame(data100))
    frame[4] |= 0x01
    frame[5:5] = b"\x07"
    v_("zstd_dictionary_id", "decompress_error", "zstd frame that needs dictionary 7",
       build([zstd(raw_arr("z", "uint8", [100], data100), bytes(frame))]), load_error="decompress_error")
    frame = bytearray(zstd_frame(data100))
    frame[6] |= 0x06
    v_("zstd_reserved_block_type", "decompress_error", "zstd block of the reserved type 3",
       build([zstd(raw_arr("z", "uint8", [100], data100), bytes(frame))]), load_error="decompress_error")
    return out


def base_header_text() -> str:
    """The header text of base() (used by vectors that edit the header's raw bytes)."""
    img = base()
    ho = header_offset_of(img)
    return img[ho:].decode("utf-8")


# ----------------------------------------------------------------------------------------------
# Manifest and output
# ----------------------------------------------------------------------------------------------

def valid_record(v: Vector) -> dict:
    arrays = []
    for a in v.arrays:
        r = {"name": a.name, "dtype": a.dtype, "shape": list(a.shape), "codec": a.codec,
             "decoded_length": len(a.decoded), "sha256": sha256(a.decoded)}
        if a.attrs is not None:
            r["attrs"] = json.loads(a.attrs)
        if a.strings is not None:
            r["strings"] = list(a.strings)
        arrays.append(r)
    rec = {"file": f"valid/{v.name}.vit", "file_sha256": sha256(v.data), "description": v.description,
           "version": list(v.version), "alignment": v.alignment, "arrays": arrays}
    for k in ("metadata", "environment", "provenance", "content"):
        rec[k] = json.loads(v.sections[k]) if k in v.sections else None
    rec["trailers"] = list(v.trailers)
    rec["writer_canonical"] = v.writer_canonical
    return rec


def invalid_record(v: Vector) -> dict:
    rec = {"file": f"invalid/{v.name}.vit", "file_sha256": sha256(v.data), "description": v.description,
           "error": v.error, "stage": v.stage}
    if v.load_error is not None:
        rec["load_error"] = v.load_error
    return rec


def reclassified_record(v: Vector) -> dict:
    """A vector first published as valid, now expected to fail verification (RECLASSIFIED)."""
    return {"file": f"valid/{v.name}.vit", "file_sha256": sha256(v.data), "description": v.description,
            "error": "decompress_error", "stage": "verify", "load_error": "decompress_error",
            "reclassified": RECLASSIFIED[v.name]}


def all_vectors() -> tuple[list[Vector], list[Vector]]:
    vs, ivs = valid_vectors(), invalid_vectors()
    names = [v.name for v in vs] + [v.name for v in ivs]
    dups = {n for n in names if names.count(n) > 1}
    assert not dups, f"duplicate vector names: {dups}"
    for v in vs:  # every valid vector keeps to the frame rules; the reclassified ones do not
        bad = [f"{a.name}: {e}" for a in v.arrays if a.codec == "zstd" for e in frame_rule_violations(a.stored)]
        assert bool(bad) == (v.name in RECLASSIFIED), f"{v.name}: frame rules: {bad or 'none broken'}"
    return vs, ivs


def manifest_text(vs: list[Vector], ivs: list[Vector]) -> str:
    doc = {
        "schema": MANIFEST_SCHEMA,
        "format_version": [1, 0],
        "generator": "tests/vectors/generate.py",
        "notes": ("valid: every file must open and verify; arrays[].sha256 is the SHA-256 of the "
                  "decoded bytes (for dtype string: u64 offsets then UTF-8 text); sections are the "
                  "typed-value JSON. invalid: opening (stage 'open') or verifying (stage 'verify') "
                  "must fail with the error code named in 'error'; 'load_error', when present, is "
                  "the code that reading every array with checksum checks must fail with. "
                  "writer_canonical: the library's writer, given the same arrays (in order) and "
                  "sections, produces exactly this file. An invalid record with 'reclassified' is a "
                  "file first published as valid (it stays under valid/): the member says when, "
                  "and why it must now fail."),
        "valid": [valid_record(v) for v in vs if v.name not in RECLASSIFIED],
        "invalid": [invalid_record(v) for v in ivs] + [reclassified_record(v) for v in vs if v.name in RECLASSIFIED],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 on any missing or differing file")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)
    outdir: Path = args.out
    vs, ivs = all_vectors()
    problems: list[str] = []
    written = unchanged = 0

    to_write: list[tuple[Path, bytes]] = []

    def emit(rel: str, data: bytes) -> None:
        nonlocal unchanged
        path = outdir / rel
        if path.exists():
            if path.read_bytes() != data:
                problems.append(f"{rel}: existing vector differs from what this script generates "
                                "(vectors are permanent: add a new vector under a new name instead)")
            else:
                unchanged += 1
        elif args.check:
            problems.append(f"{rel}: missing")
        else:
            to_write.append((path, data))

    for v in vs:  # reclassified vectors keep their place under valid/
        emit(f"valid/{v.name}.vit", v.data)
    for v in ivs:
        emit(f"invalid/{v.name}.vit", v.data)

    # The manifest may grow (new vectors) but existing records never change or disappear.
    text = manifest_text(vs, ivs)
    mpath = outdir / "manifest.json"
    if mpath.exists():
        old = json.loads(mpath.read_text(encoding="utf-8"))
        new = json.loads(text)
        for section in ("valid", "invalid"):
            new_by_file = {r["file"]: r for r in new[section]}
            moved = {r["file"]: r for r in new["invalid"] if "reclassified" in r}
            for r in old.get(section, []):
                m = moved.get(r["file"]) if section == "valid" else None
                if m is not None:  # reclassified: same file, same bytes, the reason recorded
                    if m["file_sha256"] != r["file_sha256"]:
                        problems.append(f"manifest.json: reclassified {r['file']} would change its bytes")
                elif r["file"] not in new_by_file:
                    problems.append(f"manifest.json: {r['file']} would be removed")
                elif new_by_file[r["file"]] != r:
                    problems.append(f"manifest.json: record of {r['file']} would change")
    known = {f"{s}/{v.name}.vit" for s, lst in (("valid", vs), ("invalid", ivs)) for v in lst}
    for sub in ("valid", "invalid"):
        for p in sorted((outdir / sub).glob("*.vit")) if (outdir / sub).is_dir() else []:
            rel = f"{sub}/{p.name}"
            if rel not in known:
                problems.append(f"{rel}: on disk but no longer generated (vectors are never removed)")
    if problems:
        for p in problems:
            print("error:", p, file=sys.stderr)
        print(f"{len(problems)} problem(s); nothing was written", file=sys.stderr)
        return 1
    for path, data in to_write:  # only new files: never an existing one
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written += 1
    if not mpath.exists() or mpath.read_text(encoding="utf-8") != text:
        if args.check:
            print("error: manifest.json is out of date", file=sys.stderr)
            return 1
        mpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = mpath.with_name(".manifest.json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, mpath)
        written += 1
    print(f"{len(vs)} valid and {len(ivs)} invalid vectors: {written} file(s) written, "
          f"{unchanged} unchanged" + (" (check only)" if args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
