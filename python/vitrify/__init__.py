"""vitrify: safe, memory-mapped model files.

Arrays are stored raw (memory-mappable, zero-copy) or zstd-compressed, every structure is
verified when a file is opened, and metadata is inert typed data (never code).

Quick start::

    import numpy as np, vitrify
    vitrify.save_arrays("w.vit", {"w": np.ones((2, 3), np.float32)}, metadata={"step": 10})
    arrays = vitrify.load_arrays("w.vit")      # zero-copy, read-only views of the mapping
    info = vitrify.inspect("w.vit")            # array table and decoded header sections
"""

from __future__ import annotations

from . import errors, values
from ._core import File, Writer, library_version
from ._core import format_version as _format_version
from .arrays import (
    dtype_to_numpy,
    inspect,
    load_arrays,
    load_arrays_from_bytes,
    numpy_to_dtype,
    save_arrays,
    save_arrays_to_bytes,
)
from .errors import (
    ArgumentError,
    ArrayNotFoundError,
    ChecksumError,
    CompressionError,
    FormatError,
    LimitError,
    VersionError,
    VitrifyError,
    VitrifyFileNotFoundError,
    VitrifyIOError,
    VitrifyPermissionError,
)
from .values import ArrayRef, Ref, Shared, TaggedObject

__version__ = library_version
#: (major, minor) of the file format this library writes.
FORMAT_VERSION: tuple[int, int] = tuple(_format_version)

__all__ = [
    "File",
    "Writer",
    "save_arrays",
    "load_arrays",
    "save_arrays_to_bytes",
    "load_arrays_from_bytes",
    "inspect",
    "dtype_to_numpy",
    "numpy_to_dtype",
    "VitrifyError",
    "FormatError",
    "ChecksumError",
    "VersionError",
    "LimitError",
    "CompressionError",
    "VitrifyIOError",
    "VitrifyFileNotFoundError",
    "VitrifyPermissionError",
    "ArgumentError",
    "ArrayNotFoundError",
    "ArrayRef",
    "TaggedObject",
    "Shared",
    "Ref",
    "errors",
    "values",
    "FORMAT_VERSION",
    "__version__",
]

# scikit-learn and other Python objects (issue 3): dump/load without pickle.
from .model import (  # noqa: E402
    EnvironmentMismatchWarning,
    InvalidStateError,
    ResourceLimitError,
    UntrustedTypeError,
    default_trusted_types,
    dump,
    dumps,
    get_untrusted_types,
    load,
    loads,
)

__all__ += ["dump", "dumps", "load", "loads", "get_untrusted_types", "default_trusted_types",
            "UntrustedTypeError", "InvalidStateError", "ResourceLimitError", "EnvironmentMismatchWarning"]

# Signatures (issue 5): Ed25519 signature blocks; load(..., require_signature=PUBKEY).
from . import signing  # noqa: E402
from .errors import SignatureError, UnsupportedModelError  # noqa: E402
from . import native  # noqa: E402
from . import tensors  # noqa: E402
from .convert import convert  # noqa: E402
from . import legacy  # noqa: E402
from .legacy import Call, ScanReport, classify_name, detect_format, scan, scan_bytes  # noqa: E402
from .tensors import (  # noqa: E402
    export_safetensors,
    import_safetensors,
    import_tensors,
    import_torch,
    load_tensors,
    save_tensors,
)
from .signing import keygen, sign, signature_info, verify_signature  # noqa: E402

__all__ += ["signing", "keygen", "sign", "verify_signature", "signature_info", "SignatureError",
            "UnsupportedModelError", "native", "tensors", "save_tensors", "load_tensors",
            "import_safetensors", "export_safetensors", "import_torch", "import_tensors", "convert",
            "legacy", "scan", "scan_bytes", "ScanReport", "Call", "detect_format", "classify_name"]
