"""The saving environment recorded in a file and checked on load (docs/COMPATIBILITY.md)."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import sys
import warnings
from typing import Any


from . import _core

class EnvironmentMismatchWarning(UserWarning):
    """The file was saved with other versions of the packages that built it."""


# ------------------------------------------------------------------------------------------
# Environment and schema
# ------------------------------------------------------------------------------------------

# Packages whose versions decide whether a saved model loads and predicts the same.
_ENV_PACKAGES = ("numpy", "scipy", "scikit-learn")


@functools.cache
def _package_versions_cached() -> tuple:
    out = []
    from importlib import metadata
    for p in _ENV_PACKAGES:
        try:
            out.append((p, metadata.version(p)))
        except metadata.PackageNotFoundError:
            pass
    return tuple(out)


def _package_versions() -> dict:
    """Versions of the packages that matter, read once per process (installing another
    version under a running interpreter does not change the modules it has imported)."""
    return dict(_package_versions_cached())


@functools.cache
def _static_environment() -> tuple:
    return (
        ("python", platform.python_version()),
        ("implementation", platform.python_implementation()),
        ("platform", platform.platform()),
        ("machine", platform.machine()),
        ("byteorder", sys.byteorder),
        ("vitrify", _core.library_version),
    )


def current_environment(created: bool = True) -> dict:
    env: dict[str, Any] = dict(_static_environment())
    env["packages"] = _package_versions()
    if created:
        env["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return env


def check_environment(saved: Any, *, stacklevel: int = 3) -> list[str]:
    """Compare a saved environment record with the running one; warn for each difference."""
    msgs = []
    if not isinstance(saved, dict):
        return msgs
    now = current_environment(created=False)
    sp = saved.get("packages") or {}
    for pkg, ver in sorted(sp.items()):
        cur = now["packages"].get(pkg)
        if cur is None:
            try:
                from importlib import metadata
                cur = metadata.version(pkg)
            except Exception:
                cur = None
        if cur != ver:
            msgs.append(f"{pkg}: saved with {ver}, running {cur or 'not installed'}")
    if saved.get("python") and saved["python"].rsplit(".", 1)[0] != now["python"].rsplit(".", 1)[0]:
        msgs.append(f"python: saved with {saved['python']}, running {now['python']}")
    if saved.get("vitrify") and saved["vitrify"] != now["vitrify"]:
        msgs.append(f"vitrify: saved with {saved['vitrify']}, running {now['vitrify']}")
    if saved.get("byteorder") and saved["byteorder"] != now["byteorder"]:
        msgs.append(f"byteorder: saved on {saved['byteorder']}-endian, running {now['byteorder']}-endian")
    for m in msgs:
        warnings.warn(f"vitrify: environment differs: {m}", EnvironmentMismatchWarning, stacklevel=stacklevel)
    return msgs
