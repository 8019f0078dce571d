"""Exception classes of vitrify.

Every error reported by the C++ library carries a stable numeric code (see ``errc`` in
``include/vitrify/error.hpp``). The extension module turns each one into an instance of the
class below chosen by that code; all of them derive from :class:`VitrifyError`, which exposes
``.code`` (int) and ``.code_name`` (str).
"""

from __future__ import annotations

__all__ = [
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
    "SignatureError",
    "UnsupportedModelError",
    "CODE_NAMES",
    "CODES",
    "error_class_for_code",
]

#: Stable code numbers -> names (mirrors ``vitrify::errc``; never renumbered, only appended).
CODE_NAMES: dict[int, str] = {
    0: "ok",
    1: "io_error",
    2: "truncated",
    3: "bad_magic",
    4: "unsupported_version",
    5: "unsupported_feature",
    6: "bad_preamble",
    7: "checksum_mismatch",
    8: "bad_header",
    9: "limit_exceeded",
    10: "bad_array",
    11: "bad_layout",
    12: "unknown_dtype",
    13: "unknown_codec",
    14: "decompress_error",
    15: "duplicate_name",
    16: "bad_name",
    17: "invalid_argument",
    18: "not_found",
    19: "bad_string_array",
    20: "bad_value",
    21: "bad_trailer",
    22: "not_raw",
    23: "signature_missing",
    24: "signature_invalid",
    25: "key_error",
    26: "unsupported_model",
    27: "bad_state",
    28: "bad_pickle",
    29: "unknown_format",
}
#: Names -> code numbers.
CODES: dict[str, int] = {name: code for code, name in CODE_NAMES.items()}


class VitrifyError(Exception):
    """Base class of every error raised by vitrify.

    ``code`` is the stable numeric error code, ``code_name`` its identifier
    (``"checksum_mismatch"``); ``message`` is the human-readable description.
    """

    #: Code used when an instance is created without an explicit one.
    default_code_name = "invalid_argument"

    def __init__(self, message: str = "", *, code: int | None = None, code_name: str | None = None):
        if code is None:
            code = CODES[code_name] if code_name is not None else CODES[self.default_code_name]
        if code_name is None:
            code_name = CODE_NAMES.get(code, f"code_{code}")
        super().__init__(message)
        self.code = int(code)
        self.code_name = str(code_name)
        self.message = str(message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.code, self.code_name), self.__dict__)


def _rebuild(cls, message, code, code_name):
    return cls(message, code=code, code_name=code_name)


class FormatError(VitrifyError):
    """The file (or in-memory image) is not a well-formed vitrify file."""

    default_code_name = "bad_header"


class ChecksumError(VitrifyError):
    """A recorded XXH3 checksum does not match the bytes (corruption)."""

    default_code_name = "checksum_mismatch"


class VersionError(VitrifyError):
    """The file needs a format version or feature this reader does not implement."""

    default_code_name = "unsupported_version"


class LimitError(VitrifyError):
    """A size or count in the file exceeds the reader's configured limits."""

    default_code_name = "limit_exceeded"


class CompressionError(VitrifyError):
    """Compressed data is corrupt or does not decode to the declared size."""

    default_code_name = "decompress_error"


class VitrifyIOError(VitrifyError, OSError):
    """Opening, reading, writing, syncing or renaming a file failed."""

    default_code_name = "io_error"


class VitrifyFileNotFoundError(VitrifyIOError, FileNotFoundError):
    """The file (or its folder) does not exist."""

    default_code_name = "io_error"


class VitrifyPermissionError(VitrifyIOError, PermissionError):
    """The operating system refused access to the file or its folder."""

    default_code_name = "io_error"


class ArgumentError(VitrifyError, ValueError):
    """The caller passed something vitrify cannot handle (not a problem of the file)."""

    default_code_name = "invalid_argument"


class ArrayNotFoundError(VitrifyError, KeyError):
    """No array with the requested name exists in the file."""

    default_code_name = "not_found"


class SignatureError(VitrifyError):
    """A required signature is missing (``signature_missing``), malformed, made by another key or
    not matching the file's content (``signature_invalid``), or a key cannot be used
    (``key_error``). See :mod:`vitrify.signing`."""

    default_code_name = "signature_invalid"


class UnsupportedModelError(VitrifyError):
    """The C++ runtime does not implement an estimator (or one of its options) that the model
    uses (``unsupported_model``); the message names it."""

    default_code_name = "unsupported_model"


_CLASS_BY_NAME: dict[str, type[VitrifyError]] = {
    "io_error": VitrifyIOError,
    "truncated": FormatError,
    "bad_magic": FormatError,
    "unsupported_version": VersionError,
    "unsupported_feature": VersionError,
    "bad_preamble": FormatError,
    "checksum_mismatch": ChecksumError,
    "bad_header": FormatError,
    "limit_exceeded": LimitError,
    "bad_array": FormatError,
    "bad_layout": FormatError,
    "unknown_dtype": FormatError,
    "unknown_codec": FormatError,
    "decompress_error": CompressionError,
    "duplicate_name": FormatError,
    "bad_name": FormatError,
    "invalid_argument": ArgumentError,
    "not_found": ArrayNotFoundError,
    "bad_string_array": FormatError,
    "bad_value": FormatError,
    "bad_trailer": FormatError,
    "not_raw": ArgumentError,
    "signature_missing": SignatureError,
    "signature_invalid": SignatureError,
    "key_error": SignatureError,
    "unsupported_model": UnsupportedModelError,
    "bad_state": FormatError,
    "bad_pickle": FormatError,
    "unknown_format": FormatError,
}


def error_class_for_code(code: int) -> type[VitrifyError]:
    """The exception class used for numeric error ``code`` (VitrifyError for unknown codes)."""
    return _CLASS_BY_NAME.get(CODE_NAMES.get(int(code), ""), VitrifyError)


def _make_error(code: int, code_name: str, message: str, sys_errno: int = 0) -> VitrifyError:
    """Called by the extension module to build the exception for a C++ ``vitrify::error``.
    I/O errors carry the operating system's ``errno`` (``exc.errno``), and a missing file or a
    refused permission raise subclasses of ``FileNotFoundError`` / ``PermissionError``."""
    import errno as _errno

    cls = error_class_for_code(code)
    if cls is VitrifyIOError and sys_errno == _errno.ENOENT:
        cls = VitrifyFileNotFoundError
    elif cls is VitrifyIOError and sys_errno in (_errno.EACCES, _errno.EPERM):
        cls = VitrifyPermissionError
    exc = cls(message, code=code, code_name=code_name)
    if sys_errno and isinstance(exc, OSError):
        exc.errno = sys_errno
        exc.strerror = __import__("os").strerror(sys_errno)
    return exc
