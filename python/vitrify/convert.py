"""Convert scikit-learn models saved with pickle or joblib into vitrify files, without
executing them.

``pickle.load``, ``joblib.load`` and friends run whatever code a file carries. ``convert``
never does: the file is read by vitrify's own pickle interpreter (C++), which builds an inert
description of the objects; every type and function it names must be an estimator the C++
runtime implements or one of the fixed types such estimators contain, and names that run code
(``os.system``, ``builtins.eval``, ...) are always refused. The result is an ordinary vitrify
file: ``vitrify.load`` rebuilds the estimator, ``vitrify.native.load`` predicts in C++.

    info = vitrify.convert("model.joblib", "model.vit")
    model = vitrify.load("model.vit")

See docs/CONVERTING.md.
"""

from __future__ import annotations

import os
from typing import Any

from . import _core
from .arrays import _codec_spec

__all__ = ["convert", "convert_component_names"]


def convert(src: Any, dst: Any, *, compress: Any = None, check: bool = True, hash_input: bool = True,
            durable: bool = True) -> dict:
    """Convert the pickle or joblib file ``src`` (protocols 2-5; joblib plain, compressed or
    with side ``.npy`` files) into the vitrify file ``dst``, atomically, without executing it.

    ``compress``: None (arrays raw, memory-mappable), ``"zstd"``, an int zstd level or
    ``("zstd", level)``. ``check`` (default): build the written model with the C++ runtime and
    fail, leaving ``dst`` untouched, if it cannot. ``hash_input``: record the SHA-256 of
    ``src`` in the file's provenance.

    Returns a dict: ``format`` ("pickle" / "joblib"), ``estimator`` (its type),
    ``sklearn_version`` (recorded in the file, or None), ``input_bytes``, ``output_bytes``,
    ``sha256``, ``checked``, ``streams`` and ``encoded`` (arrays, bytes, types written).

    Raises :class:`vitrify.UnsupportedModelError` when the file names anything outside the
    convertible set (the message lists the names), ``VitrifyError`` with code ``bad_pickle``
    for streams that cannot be fully accounted for (truncated, trailing data), and
    ``unknown_format`` for files that are not pickle or joblib.
    """
    codec, level = _codec_spec(compress, "compress")
    return _core.convert(os.fspath(src), os.fspath(dst), codec, level, bool(check), bool(hash_input),
                         bool(durable))


def convert_component_names() -> list[str]:
    """Types admitted inside converted estimators besides the estimators the C++ runtime
    implements (``vitrify.native.supported_types()``)."""
    return list(_core.convert_component_names())
