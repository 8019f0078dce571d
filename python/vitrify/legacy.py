"""Judge pickle, joblib and PyTorch files without executing them (docs/SCANNING.md).

``scan(path)`` runs vitrify's own C++ pickle reader over the file: nothing is imported and
nothing is called, in Python or in C++. It reports the detected format, every global the file
references, every call it would make when loaded with ``pickle.load`` / ``joblib.load`` /
``torch.load``, and a verdict:

* ``"clean"``: the whole file was read and every name is in vitrify's table of known-safe
  names (numpy, scikit-learn, scipy.sparse, torch tensor rebuilds, collections, ...);
* ``"suspicious"``: a name outside that table;
* ``"malicious"``: a name known to run code or reach the system (``os.system``,
  ``builtins.eval``, ``subprocess.*``, ...);
* ``"inconclusive"``: part of the file could not be accounted for (parse error, data after
  STOP, out-of-band buffers, an unknown format, an unreadable file).

A clean verdict is not a proof that loading the file with pickle is safe; converting it with
``vitrify.convert`` and loading the result with ``vitrify.load`` is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Union

from . import _core

__all__ = ["Call", "ScanReport", "scan", "scan_bytes", "detect_format", "classify_name", "scan_exit_status",
           "VERDICTS"]

#: Verdicts from best to worst (for sorting); see scan_exit_status for the exit codes.
VERDICTS = ("clean", "suspicious", "inconclusive", "malicious")

_EXIT = {"clean": 0, "suspicious": 1, "inconclusive": 3, "malicious": 4}

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Call:
    """One call the file would make when unpickled."""

    callee: str      #: "module.name" as written in the file ("?..." when not a named global)
    args: str        #: short Python-like rendering of the arguments
    opcode: str      #: REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD, BINPERSID, ...
    handled: bool    #: a known name vitrify rebuilds inertly (numpy arrays, estimators, ...)
    count: int = 1   #: repeated handled calls are folded into one entry: how many it stands for


@dataclass(frozen=True)
class ScanReport:
    """The scanner's findings for one file (see the module docstring for the verdicts)."""

    path: str
    format: str
    verdict: str
    complete: bool
    globals: tuple[str, ...]
    dangerous: tuple[str, ...]
    unknown: tuple[str, ...]
    #: calls load never makes: a trusted function called (a compute kernel, a ufunc), or
    #: ``__new__`` with arguments (docs/LOAD_RULES.md); any of them makes the verdict suspicious
    refused_calls: tuple[str, ...]
    calls: tuple[Call, ...]
    problems: tuple[str, ...]
    streams: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return self.verdict == "clean"

    @property
    def exit_status(self) -> int:
        """What ``vitrify scan`` exits with for this file alone."""
        return _EXIT[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["globals"] = list(self.globals)
        d["dangerous"] = list(self.dangerous)
        d["unknown"] = list(self.unknown)
        d["refused_calls"] = list(self.refused_calls)
        d["calls"] = [dict(c.__dict__) for c in self.calls]
        d["problems"] = list(self.problems)
        d["streams"] = list(self.streams)
        return d

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.verdict} ({self.format}, {len(self.globals)} globals, {len(self.calls)} calls)"]
        lines += [f"  dangerous  {g}" for g in self.dangerous]
        lines += [f"  unknown    {g}" for g in self.unknown]
        lines += [f"  refused    {g} (load never calls it)" for g in self.refused_calls]
        lines += [f"  call       {c.callee}{c.args}  [{c.opcode}]" for c in self.calls if not c.handled]
        lines += [f"  problem    {p}" for p in self.problems]
        return "\n".join(lines)


def _report(d: dict) -> ScanReport:
    return ScanReport(
        path=d["path"], format=d["format"], verdict=d["verdict"], complete=d["complete"],
        globals=tuple(d["globals"]), dangerous=tuple(d["dangerous"]), unknown=tuple(d["unknown"]),
        refused_calls=tuple(d["refused_calls"]), calls=tuple(Call(**c) for c in d["calls"]), problems=tuple(d["problems"]), streams=tuple(d["streams"]))


def scan(path: PathLike) -> ScanReport:
    """Scan one file without executing it. Never raises for a bad or unreadable file: the
    report is then ``inconclusive`` with the reason in ``problems``."""
    return _report(_core.scan(os.fspath(path)))


def scan_bytes(data: bytes, name: str = "<memory>") -> ScanReport:
    """Scan bytes in memory (the format is detected from them)."""
    return _report(_core.scan_bytes(bytes(data), name))


def detect_format(data: Union[bytes, PathLike]) -> str:
    """The format of a file judged by its content (pass bytes, or a path: its first 64 KiB are
    read): "pickle", "joblib", "torch_zip", "torch_tar", "npy", "npz", "safetensors",
    "vitrify", "zip_other" or "unknown"."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        with open(os.fspath(data), "rb") as f:
            data = f.read(65536)
    return _core.detect_format(bytes(data))


def classify_name(name: str) -> str:
    """How the scanner judges one global name: "safe", "unknown" or "dangerous"."""
    return _core.classify_name(name)


def scan_exit_status(reports: Iterable[ScanReport]) -> int:
    """Exit status of ``vitrify scan`` for these reports: 0 all clean, 1 some suspicious,
    3 some inconclusive, 4 some malicious (the worst wins)."""
    worst = max((VERDICTS.index(r.verdict) for r in reports), default=0)
    return _EXIT[VERDICTS[worst]]
