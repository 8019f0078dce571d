"""Ed25519 signatures of vitrify files.

A signature is a ``VITSIG01`` trailer block appended after the file's content (docs/FORMAT.md,
section 12.1): it covers the preamble, the header and every array, and signing never changes
those bytes, so a signed file opens with every reader, old ones included.

Quick start::

    import vitrify
    vitrify.keygen("release.key")                      # release.key (0600) + release.key.pub
    vitrify.dump(model, "model.vit")
    vitrify.sign("model.vit", "release.key")
    # ... on the consumer's side, with the public key obtained over a trusted channel:
    model = vitrify.load("model.vit", require_signature="release.key.pub")

A valid signature proves who signed these exact bytes. It does not prove that the content is
benign, or that the signer deserves trust: which public keys to accept, and how they reach the
people who verify, is up to you (see docs/SECURITY.md).

Public keys (``pubkey`` arguments) may be given as a path (``str`` or ``os.PathLike``) to a PEM
public key file or a file of 32 raw bytes, as PEM text (``str`` or ``bytes`` starting with
``-----BEGIN``), or as the 32 raw key bytes. Private keys (``key``) are a path to the PEM file
``keygen`` writes, or its PEM bytes.
"""

from __future__ import annotations

import os
from typing import Any, Union

from . import _core
from .errors import ArgumentError, SignatureError

__all__ = [
    "keygen",
    "sign",
    "sign_bytes",
    "verify_signature",
    "signature_info",
    "public_key_bytes",
    "SignatureError",
]

PathLike = Union[str, "os.PathLike[str]"]

_PEM_START = "-----BEGIN"


def _key_arg(key: Any, what: str) -> Any:
    """Normalise a key argument for the extension: bytes-like stays bytes; str holding PEM text
    becomes bytes; other str / os.PathLike become a path string."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, str):
        if key.lstrip().startswith(_PEM_START):
            return key.encode("ascii", "strict")
        return key
    if isinstance(key, os.PathLike):
        return os.fspath(key)
    raise ArgumentError(
        f"{what} must be a path (str or os.PathLike), PEM text, or raw key bytes; "
        f"got {type(key).__qualname__}")


def _file(source: Any) -> "_core.File":
    if isinstance(source, _core.File):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.File.from_bytes(source)
    return _core.File.open(os.fspath(source))


def keygen(path: PathLike, public_path: PathLike | None = None) -> tuple[str, str]:
    """Create a new Ed25519 key pair: the private key at ``path`` (unencrypted PKCS#8 PEM, mode
    0600) and the public key at ``public_path`` (default ``path + ".pub"``, PEM). Existing files
    are never overwritten (:class:`VitrifyIOError`). Returns ``(path, public_path)``."""
    path = os.fspath(path)
    public_path = path + ".pub" if public_path is None else os.fspath(public_path)
    _core.generate_key_files(path, public_path)
    return path, public_path


def sign(path: PathLike, key: Any, *, durable: bool = True) -> None:
    """Sign the vitrify file at ``path`` in place with the private ``key``.

    The file is verified in full first (a corrupt file is not signed); a previous signature is
    replaced; the file is replaced atomically (temporary file + rename) and its content bytes do
    not change. Symbolic links are refused.
    """
    _core.sign_file(os.fspath(path), _key_arg(key, "key"), bool(durable))


def sign_bytes(data: Any, key: Any) -> bytes:
    """A signed copy of a vitrify file image (bytes-like)."""
    return _core.sign_bytes(data, _key_arg(key, "key"))


def verify_signature(source: Any, pubkey: Any) -> None:
    """Check that ``source`` (a path, a file image as bytes, or a :class:`vitrify.File`) carries
    exactly one signature, made by ``pubkey`` over its current content, and that every array
    matches its checksum. Returns None; raises :class:`SignatureError` (``signature_missing``,
    ``signature_invalid``, ``key_error``) or the error of the first failing check."""
    _file(source).verify_signature(_key_arg(pubkey, "pubkey"))


def signature_info(source: Any) -> dict:
    """The signature block of ``source`` **without verifying it**: ``algorithm``,
    ``public_key`` (32 bytes), ``key_id`` (its hex) and ``signature`` (64 bytes).
    :class:`SignatureError` (``signature_missing``) when the file is unsigned."""
    return _file(source).signature()


def public_key_bytes(pubkey: Any) -> bytes:
    """The 32 raw bytes of a public key given in any accepted form."""
    return _core.public_key_bytes(_key_arg(pubkey, "pubkey"))


def require_signature(f: "_core.File", pubkey: Any) -> None:
    """Used by ``load(..., require_signature=...)`` and ``load_arrays(..., require_signature=...)``:
    verify the signature of an opened file before anything in it is decoded."""
    if pubkey is None or pubkey is False:
        raise ArgumentError("require_signature must be a public key (path, PEM or 32 raw bytes)")
    f.verify_signature(_key_arg(pubkey, "require_signature"))
