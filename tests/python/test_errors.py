"""Errors: every C++ error code maps to the right Python class; corrupt files are refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import vitrify
from vitrify import errors
from conftest import Image, xxh3

# --------------------------------------------------------------------------------------------
# Classes and the translator
# --------------------------------------------------------------------------------------------

EXPECTED_CLASS = {
    "io_error": vitrify.VitrifyIOError,
    "truncated": vitrify.FormatError,
    "bad_magic": vitrify.FormatError,
    "unsupported_version": vitrify.VersionError,
    "unsupported_feature": vitrify.VersionError,
    "bad_preamble": vitrify.FormatError,
    "checksum_mismatch": vitrify.ChecksumError,
    "bad_header": vitrify.FormatError,
    "limit_exceeded": vitrify.LimitError,
    "bad_array": vitrify.FormatError,
    "bad_layout": vitrify.FormatError,
    "unknown_dtype": vitrify.FormatError,
    "unknown_codec": vitrify.FormatError,
    "decompress_error": vitrify.CompressionError,
    "duplicate_name": vitrify.FormatError,
    "bad_name": vitrify.FormatError,
    "invalid_argument": vitrify.ArgumentError,
    "not_found": vitrify.ArrayNotFoundError,
    "bad_string_array": vitrify.FormatError,
    "bad_value": vitrify.FormatError,
    "bad_trailer": vitrify.FormatError,
    "not_raw": vitrify.ArgumentError,
    "signature_missing": vitrify.SignatureError,
    "signature_invalid": vitrify.SignatureError,
    "key_error": vitrify.SignatureError,
    "unsupported_model": vitrify.UnsupportedModelError,
    "bad_state": vitrify.FormatError,
    "bad_pickle": vitrify.FormatError,
    "unknown_format": vitrify.FormatError,
}


def test_code_table_matches_cpp():
    for code, name in errors.CODE_NAMES.items():
        assert vitrify._core.errc_name(code) == name
    assert set(EXPECTED_CLASS) == set(errors.CODE_NAMES.values()) - {"ok"}


@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_translator_picks_class_by_code(name):
    code = errors.CODES[name]
    with pytest.raises(vitrify.VitrifyError) as ei:
        vitrify._core._raise(code, f"something about {name}")
    e = ei.value
    assert type(e) is EXPECTED_CLASS[name]
    assert e.code == code and e.code_name == name
    assert f"something about {name}" in str(e)
    assert f"({name})" in str(e)  # "vitrify error N (name): ..."


def test_class_hierarchy():
    for cls in EXPECTED_CLASS.values():
        assert issubclass(cls, vitrify.VitrifyError)
    assert issubclass(vitrify.VitrifyIOError, OSError)
    assert issubclass(vitrify.ArgumentError, ValueError)
    assert issubclass(vitrify.ArrayNotFoundError, KeyError)
    assert not issubclass(vitrify.ChecksumError, vitrify.ArgumentError)
    assert not issubclass(vitrify.FormatError, (OSError, ValueError, KeyError))


def test_error_objects():
    e = vitrify.ArrayNotFoundError("no array 'x'", code=18)
    assert str(e) == "no array 'x'"  # not KeyError's repr-quoting
    assert e.code_name == "not_found"
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is vitrify.ArrayNotFoundError and e2.code == 18 and str(e2) == str(e)
    io = vitrify.VitrifyIOError("disk on fire")
    assert io.code == 1 and io.code_name == "io_error" and str(io) == "disk on fire"
    io2 = pickle.loads(pickle.dumps(io))
    assert type(io2) is vitrify.VitrifyIOError and io2.code == 1
    assert vitrify.ChecksumError("x").code_name == "checksum_mismatch"
    assert vitrify.FormatError("x", code_name="bad_layout").code == 11


def test_cpp_errors_pickle():
    with pytest.raises(vitrify.ChecksumError) as ei:
        vitrify._core._raise(7, "bad sum")
    e = pickle.loads(pickle.dumps(ei.value))
    assert type(e) is vitrify.ChecksumError and e.code == 7 and "bad sum" in str(e)


# --------------------------------------------------------------------------------------------
# Corrupt and unusual files
# --------------------------------------------------------------------------------------------

@pytest.fixture
def image(rng):
    arrays = {"a": rng.standard_normal((16, 8)).astype(np.float32),
              "z": np.arange(4000, dtype=np.int64),
              "s": np.array(["alpha", "beta", "γ"])}
    return Image(vitrify.save_arrays_to_bytes(arrays, metadata={"k": [1, 2]}, compress={"z": 3}))


def _open_bytes_and_file(data, tmp_path):
    """Open `data` both from memory and from a file; both must raise the same class and code."""
    p = tmp_path / "bad.vit"
    p.write_bytes(data)
    excs = []
    for opener in (lambda: vitrify.File.from_bytes(data), lambda: vitrify.File.open(str(p)),
                   lambda: vitrify.load_arrays(p), lambda: vitrify.inspect(p)):
        with pytest.raises(vitrify.VitrifyError) as ei:
            opener()
        excs.append(ei.value)
    assert len({(type(e), e.code) for e in excs}) == 1, excs
    return excs[0]


def test_valid_image_opens(image, tmp_path):
    f = vitrify.File.from_bytes(image.bytes())
    f.verify()
    assert [e["name"] for e in f.arrays] == ["a", "z", "s"]


def test_bad_magic(image, tmp_path):
    image.b[1] = ord("X")
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert isinstance(e, vitrify.FormatError) and e.code_name == "bad_magic"


def test_not_a_vitrify_file(tmp_path):
    e = _open_bytes_and_file(b"PK\x03\x04" + b"\x00" * 200, tmp_path)
    assert isinstance(e, vitrify.FormatError) and e.code_name == "bad_magic"


@pytest.mark.parametrize("where", ["preamble", "header"])
def test_flipped_byte_in_structure(image, where, tmp_path):
    off = 30 if where == "preamble" else image.header_offset + 10
    image.b[off] ^= 0x01
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert type(e) is vitrify.ChecksumError and e.code_name == "checksum_mismatch"


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipped_byte_in_array(image, index, tmp_path):
    data = image.array_bytes(index)
    data[len(data) // 2] ^= 0x40
    p = tmp_path / "flip.vit"
    p.write_bytes(image.bytes())
    f = vitrify.File.open(str(p))  # structure is intact: opening succeeds
    with pytest.raises(vitrify.ChecksumError):
        f.verify()
    with pytest.raises(vitrify.ChecksumError):
        f.verify_array(index)
    for other in {0, 1, 2} - {index}:
        f.verify_array(other)
    with pytest.raises(vitrify.ChecksumError):
        vitrify.load_arrays(p, mmap=False)
    with pytest.raises(vitrify.ChecksumError):
        vitrify.load_arrays(p, verify=True)
    with pytest.raises(vitrify.ChecksumError):
        vitrify.load_arrays_from_bytes(image.bytes(), verify=True)
    if index == 0:
        # Lazy zero-copy loading does not read the data, so it does not notice...
        arrays = vitrify.load_arrays(p)
        assert arrays["a"].shape == (16, 8)
        # ...but a checked view does.
        with pytest.raises(vitrify.ChecksumError):
            f.view(0, check=True)
    else:
        # Decoded arrays (compressed, strings) are always checked.
        with pytest.raises(vitrify.ChecksumError):
            vitrify.load_arrays(p)


@pytest.mark.parametrize("cut", [0, 1, 63, 64, "mid_array", "mid_header", "minus1"])
def test_truncated(image, cut, tmp_path):
    n = len(image.b)
    cut = {"mid_array": 100, "mid_header": image.header_offset + 5, "minus1": n - 1}.get(cut, cut)
    e = _open_bytes_and_file(image.bytes()[:cut], tmp_path)
    assert isinstance(e, vitrify.FormatError)
    assert e.code_name == "truncated"


def test_trailing_garbage(image, tmp_path):
    e = _open_bytes_and_file(image.bytes() + b"junk", tmp_path)
    assert isinstance(e, vitrify.FormatError) and e.code_name == "bad_trailer"


def test_unsupported_version(image, tmp_path):
    image.set_u16(8, 2)
    image.reseal_preamble()
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert type(e) is vitrify.VersionError and e.code_name == "unsupported_version"


def test_newer_minor_version_is_accepted(image):
    image.set_u16(10, 7)
    image.reseal_preamble()
    assert vitrify.File.from_bytes(image.bytes()).version == (1, 7)


def test_unsupported_feature(image, tmp_path):
    h = image.header()
    h["required_features"] = ["time-travel"]
    image.set_header(h)
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert type(e) is vitrify.VersionError and e.code_name == "unsupported_feature"
    assert "time-travel" in str(e)


def test_unknown_members_are_ignored(image):
    h = image.header()
    h["future_thing"] = {"x": 1}
    h["arrays"][0]["future_member"] = [1, 2]
    image.set_header(h)
    vitrify.File.from_bytes(image.bytes()).verify()


@pytest.mark.parametrize("edit, code", [
    (lambda h: h["arrays"][0].update(dtype="float8"), "unknown_dtype"),
    (lambda h: h["arrays"][1].update(codec="lz4"), "unknown_codec"),
    (lambda h: h["arrays"][1].update(name="a"), "duplicate_name"),
    (lambda h: h["arrays"][1].update(name=""), "bad_name"),
    (lambda h: h["arrays"][0].update(shape=[16, 9]), "bad_array"),
    (lambda h: h["arrays"][0].update(offset=128), "bad_layout"),
    (lambda h: h.update(format="other"), "bad_header"),
    (lambda h: h.pop("arrays"), "bad_header"),
    (lambda h: h.update(metadata={"$bogus": 1}), "bad_value"),
    (lambda h: h.update(metadata={"$array": "nope"}), "bad_value"),
])
def test_bad_headers(image, edit, code, tmp_path):
    h = image.header()
    edit(h)
    image.set_header(h)
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert isinstance(e, vitrify.FormatError)
    assert e.code_name == code, str(e)


def test_header_not_json(image, tmp_path):
    image.set_header('{"format":"vitrify","arrays":[')
    e = _open_bytes_and_file(image.bytes(), tmp_path)
    assert isinstance(e, vitrify.FormatError) and e.code_name == "bad_header"


def test_corrupt_compressed_stream_with_valid_checksum(image, tmp_path):
    data = image.array_bytes(1)
    for k in range(10, len(data) - 10):  # wreck the middle of the zstd frame
        data[k] = 0xAB
    del data  # release the memoryview so the image can be resized
    image.fix_array_checksum(1)
    f = vitrify.File.from_bytes(image.bytes())
    with pytest.raises(vitrify.CompressionError) as ei:
        f.verify_array(1)
    assert ei.value.code_name == "decompress_error"
    with pytest.raises(vitrify.CompressionError):
        vitrify.load_arrays_from_bytes(image.bytes())


def test_bad_string_array_with_valid_checksum(image):
    data = image.array_bytes(2)
    data[8:16] = (99).to_bytes(8, "little")  # offsets[1] beyond the text
    del data
    image.fix_array_checksum(2)
    f = vitrify.File.from_bytes(image.bytes())
    with pytest.raises(vitrify.FormatError) as ei:
        f.read_strings(2)
    assert ei.value.code_name == "bad_string_array"
    with pytest.raises(vitrify.FormatError):
        vitrify.load_arrays_from_bytes(image.bytes())


def test_limits(image, tmp_path):
    p = tmp_path / "ok.vit"
    p.write_bytes(image.bytes())
    with pytest.raises(vitrify.LimitError) as ei:
        vitrify.File.open(str(p), max_header_bytes=16)
    assert ei.value.code_name == "limit_exceeded"
    with pytest.raises(vitrify.LimitError):
        vitrify.File.from_bytes(image.bytes(), max_decoded_bytes=1000)
    vitrify.File.open(str(p), max_decoded_bytes=32000)


# --------------------------------------------------------------------------------------------
# I/O and lookups
# --------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    missing = tmp_path / "nope.vit"
    for call in (lambda: vitrify.load_arrays(missing), lambda: vitrify.inspect(missing),
                 lambda: vitrify.File.open(str(missing))):
        with pytest.raises(vitrify.VitrifyIOError) as ei:
            call()
        assert isinstance(ei.value, OSError)
        assert ei.value.code == 1 and ei.value.code_name == "io_error"
        assert "nope.vit" in str(ei.value)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(vitrify.VitrifyIOError):
        vitrify.load_arrays(tmp_path)
    with pytest.raises(vitrify.VitrifyError):
        vitrify.save_arrays(tmp_path, {"a": np.zeros(1)}, durable=False)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.vit"
    p.write_bytes(b"")
    with pytest.raises(vitrify.FormatError) as ei:
        vitrify.load_arrays(p)
    assert ei.value.code_name == "truncated"


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(vitrify.VitrifyIOError):
        vitrify.save_arrays(tmp_path / "no" / "such" / "dir.vit", {"a": np.zeros(1)}, durable=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.vit"
    vitrify.save_arrays(p, {"a": np.zeros(1)}, durable=False)
    p.chmod(0)
    with pytest.raises(vitrify.VitrifyIOError):
        vitrify.load_arrays(p)


def test_unknown_array_name_is_a_key_error(tmp_path):
    p = tmp_path / "k.vit"
    vitrify.save_arrays(p, {"a": np.zeros(1)}, durable=False)
    f = vitrify.File.open(str(p))
    with pytest.raises(KeyError) as ei:
        f.find("b")
    e = ei.value
    assert isinstance(e, vitrify.ArrayNotFoundError)
    assert e.code == 18 and e.code_name == "not_found"
    for call in (lambda: f.view("b"), lambda: f.read_strings("b"), lambda: f.verify_array("b"),
                 lambda: f.read_into("b", np.empty(8, np.uint8)), lambda: f.array_info("b")):
        with pytest.raises(vitrify.ArrayNotFoundError):
            call()


def test_symlink_target_refused_by_writer(tmp_path):
    real = tmp_path / "real.vit"
    vitrify.save_arrays(real, {"a": np.zeros(1)}, durable=False)
    link = tmp_path / "link.vit"
    link.symlink_to(real)
    with pytest.raises(vitrify.VitrifyError):
        vitrify.save_arrays(link, {"b": np.zeros(1)}, durable=False)
    assert list(vitrify.load_arrays(real)) == ["a"]


def test_xxh3_helper_matches_library(image):
    # Guards the crafting helpers above: our XXH3 agrees with the recorded preamble checksum.
    assert xxh3(image.b[:56]) == image.u64(56)


def test_paths_pathlike_and_non_utf8(tmp_path):
    p = tmp_path / "caf\udce9.vit"  # a file name that is not valid UTF-8 (surrogateescape)
    vitrify.save_arrays(p, {"a": np.arange(3)}, durable=False)
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9.vit"]
    assert vitrify.load_arrays(p)["a"].tolist() == [0, 1, 2]
    assert vitrify.load_arrays(str(p))["a"].tolist() == [0, 1, 2]
    assert vitrify.File.open(p).name == str(p)
    with pytest.raises(vitrify.VitrifyIOError) as ei:
        vitrify.load_arrays(tmp_path / "x\udcff.vit")
    assert "x\\xff.vit" in str(ei.value)  # undecodable bytes are escaped, never an encoding error


def test_bool_bytes_other_than_0_or_1(tmp_path):
    img = Image(vitrify.save_arrays_to_bytes({"b": np.array([True, False, True]),
                                              "z": np.array([True, False] * 50)}, compress={"z": 1}))
    data = img.array_bytes(0)
    data[1] = 2
    del data
    img.fix_array_checksum(0)
    p = tmp_path / "bool.vit"
    p.write_bytes(img.bytes())
    f = vitrify.File.open(p)
    for call in (f.verify, lambda: f.verify_array(0), lambda: vitrify.load_arrays(p, verify=True),
                 lambda: vitrify.load_arrays(p, mmap=False),
                 lambda: vitrify.load_arrays_from_bytes(img.bytes(), copy=True)):
        with pytest.raises(vitrify.FormatError) as ei:
            call()
        assert ei.value.code_name == "bad_array"
    f.verify_array(1)


def test_io_errors_carry_errno(tmp_path):
    import errno

    import vitrify

    missing = tmp_path / "nope.vit"
    with pytest.raises(FileNotFoundError) as ei:
        vitrify.load_arrays(missing)
    assert isinstance(ei.value, vitrify.VitrifyIOError)
    assert ei.value.errno == errno.ENOENT and ei.value.code_name == "io_error"
    with pytest.raises(FileNotFoundError):
        vitrify.save_arrays(tmp_path / "no_such_folder" / "x.vit", {"a": [1]})
    # Opening a folder is an I/O error too, but not a missing file.
    with pytest.raises(vitrify.VitrifyIOError) as ei:
        vitrify.load_arrays(tmp_path)
    assert not isinstance(ei.value, FileNotFoundError)
