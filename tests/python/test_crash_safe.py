"""Crash-safe saves (issue 5, item 5).

A child process saves a large file over and over (two distinct contents, alternating) onto the
same target; the parent SIGKILLs it at random moments. After every kill the target must be absent
(only before the first commit) or a complete file that verifies and equals one of the two
contents - never a mix. Saves into a full disk, a read-only folder, or onto a symbolic link fail
with a clear error and leave the old file intact.

Temporary files: the writer streams into ``.NAME.vit-tmp-XXXXXX`` next to the target, locked
(flock) for as long as the writer lives, and renames it at commit. An orderly failure removes it;
a SIGKILL cannot (nothing runs in the killed process), so one may remain per kill that lands
mid-write. The next writer of the same target removes every such file whose lock is free (the
kernel drops the lock of a dead process). The test checks that leftovers never pile up and that a
later save leaves none.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import vitrify

SIZE_MIB = 64
N_KILLS = 24

CHILD = textwrap.dedent(
    """
    import sys, numpy as np, vitrify
    target, size_mib = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    base = np.resize(np.arange(251, dtype=np.uint8), size_mib << 20)
    contents = {"A": base, "B": np.resize(np.arange(1, 252, dtype=np.uint8) % 251, size_mib << 20)}
    i = int(sys.argv[3])
    while True:
        tag = "AB"[i % 2]
        vitrify.save_arrays(target, {"x": contents[tag]}, metadata={"tag": tag}, durable=False)
        i += 1
    """
)


def content_hashes(size_mib: int) -> dict[str, str]:
    a = np.resize(np.arange(251, dtype=np.uint8), size_mib << 20)
    b = np.resize(np.arange(1, 252, dtype=np.uint8) % 251, size_mib << 20)
    return {"A": hashlib.sha256(a.tobytes()).hexdigest(), "B": hashlib.sha256(b.tobytes()).hexdigest()}


def temp_files(folder: Path, target_name: str) -> list[Path]:
    return sorted(folder.glob(f".{target_name}.vit-tmp-*"))


def check_intact(target: Path, hashes: dict[str, str]) -> str:
    """The target verifies and holds exactly one of the two contents; returns its tag."""
    f = vitrify.File.open(target)
    f.verify()
    arrays = vitrify.load_arrays(target, mmap=False, verify=True)
    assert list(arrays) == ["x"]
    digest = hashlib.sha256(arrays["x"].tobytes()).hexdigest()
    tags = [t for t, h in hashes.items() if h == digest]
    assert tags, "target holds neither content: a mix of old and new"
    meta_json = f.metadata_json  # the metadata must agree with the array bytes
    assert f'"{tags[0]}"' in meta_json, (meta_json, tags)
    return tags[0]


def test_sigkill_at_random_moments_never_leaves_a_mix(tmp_path):
    target = tmp_path / "model.vit"
    hashes = content_hashes(SIZE_MIB)
    rng = random.Random(5)
    committed_once = False
    seen_tags: set[str] = set()
    leaked = 0
    absent_kills = 0
    t0 = time.monotonic()
    for k in range(N_KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(SIZE_MIB), str(k)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready", child.stderr.read().decode()
        # Kill anywhere in the first few saves: mid-write, mid-commit, between saves.
        time.sleep(rng.uniform(0.0, 0.6) if k else 0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        if not target.exists():
            assert not committed_once, f"kill {k}: target vanished after a commit"
            absent_kills += 1
        else:
            committed_once = True
            seen_tags.add(check_intact(target, hashes))
        # Only the target and temporary files of killed saves may be in the folder.
        names = sorted(p.name for p in tmp_path.iterdir())
        others = [n for n in names if n != target.name and not n.startswith(f".{target.name}.vit-tmp-")]
        assert others == [], others
        # Each save removes the leftovers of earlier killed saves: at most the killed one remains
        # (an empty file, killed before its lock was taken, is never removed: it may be a live
        # writer's; that window is a few instructions wide).
        left = [p for p in temp_files(tmp_path, target.name) if p.stat().st_size > 0]
        assert len(left) <= 1, f"kill {k}: leftovers pile up: {left}"
        leaked += len(left)
    # A later, orderly save removes what killed saves left behind.
    vitrify.save_arrays(target, {"x": np.arange(10)}, durable=False)
    assert [p for p in temp_files(tmp_path, target.name) if p.stat().st_size > 0] == []
    elapsed = time.monotonic() - t0
    print(f"\n[crash-safe] {N_KILLS} SIGKILLs of a {SIZE_MIB} MiB save loop in {elapsed:.1f} s: "
          f"{leaked} left a temporary file behind (each removed by the next save), "
          f"{absent_kills} before the first commit, contents seen {sorted(seen_tags)}")
    assert committed_once, "no save ever completed: kills too early to test anything"


def _old_file(folder: Path, name: str = "model.vit") -> tuple[Path, str]:
    target = folder / name
    vitrify.save_arrays(target, {"x": np.arange(1000, dtype=np.int64)}, metadata={"tag": "old"})
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


def _assert_old_intact(target: Path, digest: str) -> None:
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    vitrify.File.open(target).verify()
    assert np.array_equal(vitrify.load_arrays(target)["x"], np.arange(1000, dtype=np.int64))


class _Tmpfs:
    """A small tmpfs mounted at a fresh folder (root only; the test is skipped otherwise)."""

    def __init__(self, size: str):
        self.dir = Path(tempfile.mkdtemp(prefix="vitrify-tmpfs-"))
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.dir)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.dir.rmdir()
            pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")

    def remount(self, opts: str) -> None:
        r = subprocess.run(["mount", "-o", f"remount,{opts}", str(self.dir)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs {opts}: {r.stderr.strip()}")

    def close(self) -> None:
        subprocess.run(["umount", str(self.dir)], check=False)
        self.dir.rmdir()


def test_full_disk_fails_cleanly_and_keeps_the_old_file():
    fs = _Tmpfs("8m")
    try:
        target, digest = _old_file(fs.dir)
        big = np.ones(16 << 20, dtype=np.uint8)  # 16 MiB into an 8 MiB file system
        with pytest.raises(vitrify.VitrifyIOError) as ei:
            vitrify.save_arrays(target, {"x": big})
        msg = str(ei.value)
        assert "space" in msg.lower() and "model.vit" in msg, msg
        _assert_old_intact(target, digest)
        assert sorted(p.name for p in fs.dir.iterdir()) == ["model.vit"], "temp file left after ENOSPC"
        # The same through the zstd path (the compressed stream fills the disk mid-array).
        with pytest.raises(vitrify.VitrifyIOError):
            vitrify.save_arrays(target, {"x": np.random.default_rng(0).integers(0, 255, 16 << 20, dtype=np.uint8)},
                                compress="zstd")
        _assert_old_intact(target, digest)
        assert sorted(p.name for p in fs.dir.iterdir()) == ["model.vit"]
    finally:
        fs.close()


def test_read_only_folder_fails_cleanly_and_keeps_the_old_file():
    fs = _Tmpfs("8m")
    try:
        target, digest = _old_file(fs.dir)
        fs.remount("ro")
        with pytest.raises(vitrify.VitrifyIOError) as ei:
            vitrify.save_arrays(target, {"x": np.zeros(10, dtype=np.int64)})
        msg = str(ei.value)
        assert "read-only" in msg.lower() and "model.vit" in msg, msg
        _assert_old_intact(target, digest)
        assert sorted(p.name for p in fs.dir.iterdir()) == ["model.vit"]
    finally:
        fs.close()


def test_symlinked_target_is_refused_and_left_intact(tmp_path):
    real, digest = _old_file(tmp_path, "real.vit")
    link = tmp_path / "model.vit"
    link.symlink_to(real)
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify.save_arrays(link, {"x": np.zeros(10, dtype=np.int64)})
    assert "symbolic link" in str(ei.value), str(ei.value)
    assert link.is_symlink() and os.readlink(link) == str(real)
    _assert_old_intact(real, digest)
    _assert_old_intact(link, digest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vit", "real.vit"]
