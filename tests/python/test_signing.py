"""Signatures (issue 5): keygen, sign, verify_signature, and load(..., require_signature=PUBKEY)
refusing unsigned or tampered files before anything is decoded."""

from __future__ import annotations

import os
import stat
import struct

import numpy as np
import pytest

import vitrify
from vitrify import _core, errors
from conftest import Image

SIG_BLOCK = 16 + 100


@pytest.fixture
def keys(tmp_path):
    return vitrify.keygen(tmp_path / "key")


@pytest.fixture
def other_keys(tmp_path):
    return vitrify.keygen(tmp_path / "other.key")


def sample_arrays():
    return {
        "w": np.arange(24, dtype=np.float32).reshape(4, 6),
        "z": np.arange(5000, dtype=np.int64) % 7,
        "names": np.array(["alpha", "beta", "gamma"]),
    }


@pytest.fixture
def signed(tmp_path, keys):
    path = tmp_path / "a.vit"
    vitrify.save_arrays(path, sample_arrays(), metadata={"task": "demo"}, compress={"z": "zstd"},
                        durable=False)
    vitrify.sign(path, keys[0], durable=False)
    return path


def content_length(data: bytes) -> int:
    return struct.unpack_from("<Q", data, 40)[0]


def code_of(excinfo) -> str:
    return excinfo.value.code_name


# --------------------------------------------------------------------------------------------
# Error codes and classes
# --------------------------------------------------------------------------------------------

def test_error_codes_match_cpp():
    for code, name in ((23, "signature_missing"), (24, "signature_invalid"), (25, "key_error")):
        assert errors.CODE_NAMES[code] == name
        assert _core.errc_name(code) == name
        assert errors.error_class_for_code(code) is vitrify.SignatureError
        with pytest.raises(vitrify.SignatureError) as ei:
            _core._raise(code, "x")
        assert ei.value.code == code
    assert issubclass(vitrify.SignatureError, vitrify.VitrifyError)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

def test_keygen_writes_private_0600_and_public_pem(tmp_path):
    priv, pub = vitrify.keygen(tmp_path / "k")
    assert pub == priv + ".pub"
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert open(priv, "rb").read().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert open(pub, "rb").read().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(vitrify.VitrifyIOError):
        vitrify.keygen(tmp_path / "k")  # never overwrites
    priv2, pub2 = vitrify.keygen(tmp_path / "k2", tmp_path / "elsewhere.pem")
    assert pub2.endswith("elsewhere.pem") and os.path.exists(pub2)


def test_public_key_forms_are_equivalent(signed, keys):
    pub = keys[1]
    raw = vitrify.signing.public_key_bytes(pub)
    assert len(raw) == 32
    pem_bytes = open(pub, "rb").read()
    raw_file = os.path.join(os.path.dirname(pub), "raw.pub")
    with open(raw_file, "wb") as fh:
        fh.write(raw)
    for form in (pub, os.fspath(pub), type(signed)(pub), pem_bytes, pem_bytes.decode(), raw,
                 bytearray(raw), memoryview(raw), raw_file):
        vitrify.verify_signature(signed, form)
    assert vitrify.signature_info(signed)["key_id"] == raw.hex()
    assert vitrify.signature_info(signed)["public_key"] == raw


def test_bad_keys_are_key_errors(signed, keys, tmp_path):
    for bad in (b"not a key", b"\x00" * 31, keys[0]):  # junk, short, a private key
        with pytest.raises(vitrify.SignatureError) as ei:
            vitrify.verify_signature(signed, bad)
        assert code_of(ei) == "key_error"
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.sign(signed, keys[1])  # a public key cannot sign
    assert code_of(ei) == "key_error"
    with pytest.raises(vitrify.ArgumentError):
        vitrify.verify_signature(signed, 12345)
    with pytest.raises(vitrify.ArgumentError):
        vitrify.load_arrays(signed, require_signature=True)


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

def test_valid_signature_verifies(signed, keys):
    vitrify.verify_signature(signed, keys[1])
    vitrify.verify_signature(open(signed, "rb").read(), keys[1])
    vitrify.verify_signature(vitrify.File.open(os.fspath(signed)), keys[1])
    info = vitrify.signature_info(signed)
    assert info["algorithm"] == "ed25519" and len(info["signature"]) == 64


def test_signing_keeps_content_and_appends_one_block(tmp_path, keys):
    path = tmp_path / "b.vit"
    vitrify.save_arrays(path, sample_arrays(), durable=False)
    before = open(path, "rb").read()
    vitrify.sign(path, keys[0])
    after = open(path, "rb").read()
    assert after[:len(before)] == before
    assert len(after) == len(before) + SIG_BLOCK
    assert after[len(before):len(before) + 8] == b"VITSIG01"
    assert sorted(os.listdir(tmp_path)) == sorted(["b.vit", "key", "key.pub"])  # no temp files


def test_unsigned_file_is_signature_missing(tmp_path, keys):
    path = tmp_path / "u.vit"
    vitrify.save_arrays(path, sample_arrays(), durable=False)
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(path, keys[1])
    assert code_of(ei) == "signature_missing"


def test_stripped_signature_is_signature_missing(signed, keys):
    data = open(signed, "rb").read()
    stripped = data[:content_length(data)]
    assert len(stripped) == len(data) - SIG_BLOCK
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(stripped, keys[1])
    assert code_of(ei) == "signature_missing"


def test_tampered_array_byte_is_signature_invalid(signed, keys):
    img = Image(open(signed, "rb").read())
    img.array_bytes(0)[5] ^= 0x01  # checksum not fixed: only verification would notice ...
    vitrify.File.from_bytes(img.bytes())  # ... the structure still opens
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(img.bytes(), keys[1])
    assert code_of(ei) == "signature_invalid"


def test_tampered_array_with_fixed_checksum_is_signature_invalid(signed, keys):
    img = Image(open(signed, "rb").read())
    trailer = bytes(img.b[content_length(img.bytes()):])
    img.array_bytes(0)[5] ^= 0x01
    img.fix_array_checksum(0)  # rewrites the header (dropping the trailer) with a valid checksum
    img.b += trailer
    vitrify.File.from_bytes(img.bytes()).verify()  # every checksum holds
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(img.bytes(), keys[1])
    assert code_of(ei) == "signature_invalid"


def test_tampered_header_with_fixed_checksum_is_signature_invalid(signed, keys):
    img = Image(open(signed, "rb").read())
    off, n = img.header_offset, img.header_length
    at = bytes(img.b[off:off + n]).index(b'"demo"')
    img.b[off + at + 1] = ord("D")
    img.reseal()  # header and preamble checksums are right again
    f = vitrify.File.from_bytes(img.bytes())
    f.verify()
    assert "Demo" in f.metadata_json
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(img.bytes(), keys[1])
    assert code_of(ei) == "signature_invalid"


def test_signature_from_another_key_is_signature_invalid(signed, keys, other_keys):
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.verify_signature(signed, other_keys[1])
    assert code_of(ei) == "signature_invalid"
    assert "another key" in str(ei.value)


def test_resigning_replaces_the_signature(signed, keys, other_keys):
    size = os.path.getsize(signed)
    vitrify.sign(signed, other_keys[0])
    assert os.path.getsize(signed) == size
    f = vitrify.File.open(os.fspath(signed))
    assert [t for t, _ in f.trailers] == [b"VITSIG01"]
    vitrify.verify_signature(signed, other_keys[1])
    with pytest.raises(vitrify.SignatureError):
        vitrify.verify_signature(signed, keys[1])


def test_sign_bytes_matches_sign_file(tmp_path, keys):
    path = tmp_path / "c.vit"
    vitrify.save_arrays(path, sample_arrays(), durable=False)
    image = open(path, "rb").read()
    signed_image = vitrify.signing.sign_bytes(image, keys[0])
    vitrify.sign(path, open(keys[0], "rb").read())  # PEM bytes as the key
    assert open(path, "rb").read() == signed_image  # Ed25519 is deterministic


def test_corrupt_file_is_not_signed(tmp_path, keys):
    path = tmp_path / "d.vit"
    vitrify.save_arrays(path, sample_arrays(), durable=False)
    img = Image(open(path, "rb").read())
    img.array_bytes(0)[0] ^= 0xFF
    path.write_bytes(img.bytes())
    with pytest.raises(vitrify.ChecksumError):
        vitrify.sign(path, keys[0])
    assert path.read_bytes() == img.bytes()


# --------------------------------------------------------------------------------------------
# Readers: a signed file opens everywhere; require_signature refuses before decoding
# --------------------------------------------------------------------------------------------

def test_signed_file_opens_with_every_reader(signed):
    want = sample_arrays()
    for got in (vitrify.load_arrays(signed), vitrify.load_arrays(signed, mmap=False),
                vitrify.load_arrays(signed, verify=True),
                vitrify.load_arrays_from_bytes(open(signed, "rb").read())):
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    info = vitrify.inspect(signed)
    assert info["trailers"] == [b"VITSIG01"]
    assert info["metadata"] == {"task": "demo"}
    vitrify.File.open(os.fspath(signed)).verify()


def test_load_arrays_require_signature(signed, keys, other_keys, monkeypatch):
    got = vitrify.load_arrays(signed, require_signature=keys[1])
    np.testing.assert_array_equal(got["w"], sample_arrays()["w"])
    data = open(signed, "rb").read()
    got = vitrify.load_arrays_from_bytes(data, require_signature=vitrify.signing.public_key_bytes(keys[1]))
    np.testing.assert_array_equal(got["z"], sample_arrays()["z"])

    # Refusals happen before any array is decoded.
    from vitrify import arrays as arrays_mod

    def boom(*a, **k):
        raise AssertionError("arrays were decoded before the signature was checked")

    monkeypatch.setattr(arrays_mod, "_load_all", boom)
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.load_arrays(signed, require_signature=other_keys[1])
    assert code_of(ei) == "signature_invalid"
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.load_arrays_from_bytes(data[:content_length(data)], require_signature=keys[1])
    assert code_of(ei) == "signature_missing"
    img = Image(data)
    img.array_bytes(1)[3] ^= 0x10
    with pytest.raises(vitrify.SignatureError):
        vitrify.load_arrays_from_bytes(img.bytes(), require_signature=keys[1])


def _model():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=200).fit(X, y), X


def test_load_model_require_signature(tmp_path, keys, other_keys, monkeypatch):
    pytest.importorskip("sklearn")
    clf, X = _model()
    path = tmp_path / "m.vit"
    vitrify.dump(clf, path, metadata={"task": "iris"})
    unsigned = path.read_bytes()
    vitrify.sign(path, keys[0])

    back = vitrify.load(path, require_signature=keys[1])
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    back = vitrify.loads(path.read_bytes(), require_signature=keys[1])
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))

    from vitrify import model as model_mod

    def boom(*a, **k):
        raise AssertionError("the object was decoded before the signature was checked")

    monkeypatch.setattr(model_mod, "_load", boom)
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.load(path, require_signature=other_keys[1])
    assert code_of(ei) == "signature_invalid"
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.loads(unsigned, require_signature=keys[1])
    assert code_of(ei) == "signature_missing"
    img = Image(path.read_bytes())
    off, n = img.header_offset, img.header_length
    header = bytes(img.b[off:off + n])
    at = header.index(b'"iris"')
    img.b[off + at + 1] = ord("I")  # a header byte, checksums fixed: only the signature catches it
    img.reseal()
    with pytest.raises(vitrify.SignatureError) as ei:
        vitrify.loads(img.bytes(), require_signature=keys[1])
    assert code_of(ei) == "signature_invalid"


class NotTrusted:  # a user type: loading it needs trusted=[...], signed or not
    def __init__(self):
        self.x = 1


def test_signature_does_not_widen_trust(tmp_path, keys):
    path = tmp_path / "u.vit"
    vitrify.dump(NotTrusted(), path)
    vitrify.sign(path, keys[0])
    with pytest.raises(vitrify.UntrustedTypeError):
        vitrify.load(path, require_signature=keys[1])
    with pytest.raises(vitrify.SignatureError):  # unsigned: the signature check comes first
        vitrify.loads(path.read_bytes()[:content_length(path.read_bytes())], require_signature=keys[1])
