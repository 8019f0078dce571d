"""Model files written by earlier versions of the object encoding keep loading, to the same
predictions, in Python and in the C++ runtime (tests/vectors/models/, never rewritten)."""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pytest

import vitrify
import vitrify.native
from vitrify import _core

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors" / "models"
MANIFEST = json.loads((VECTORS / "expected.json").read_text())


def _inputs() -> np.ndarray:
    rng = np.random.RandomState(1)
    X = rng.rand(12, 4)
    X[:, 2] = rng.randint(0, 3, 12)
    return X


def _expected(e: dict) -> np.ndarray:
    return np.array(e["values"], dtype=np.dtype(e["dtype"])).reshape(e["shape"])


# The expected outputs were computed on another machine. Float arithmetic that goes through
# OpenBLAS (PCA's matrix product) or glibc's libm (libsvm's exp in the RBF kernel, pow in the
# polynomial one) picks CPU-specific kernels (Haswell, SkylakeX, Zen...), which round
# differently: up to 1.3e-15 of the output's scale was seen between two x86-64 machines. So
# float outputs must match within CROSS_MACHINE_RTOL of their scale (max |value|, at least 1);
# labels, indices and every non-float output must match exactly. Documented in
# tests/vectors/README.md.
CROSS_MACHINE_RTOL = 1e-13


def _assert_same_output(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype.kind not in "fc" or np.array_equal(got, want, equal_nan=True):
        assert np.array_equal(got, want, equal_nan=want.dtype.kind in "fc"), what
        return
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    scale = max(1.0, float(np.nanmax(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=CROSS_MACHINE_RTOL * scale, err_msg=what)


def test_every_vector_is_listed():
    files = sorted(str(p.relative_to(VECTORS)) for p in VECTORS.glob("content_v*/*.vit"))
    assert files == sorted(MANIFEST) and len(files) >= 96


@pytest.mark.parametrize("key", sorted(MANIFEST))
def test_vector_loads_to_the_same_outputs(key):
    path = VECTORS / key
    version = int(key.split("/")[0].removeprefix("content_v"))
    # content_vN holds what the writer of version N wrote: version N, or a lower one when the
    # object needs nothing newer (PolynomialFeatures has no numeric array to pool).
    written = json.loads(_core.File.open(str(path), True).content_json)["version"]
    assert written == version or (written < version and "poly" in key)
    entry = MANIFEST[key]
    X = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vitrify.load(path)
        assert type(model).__module__ + "." + type(model).__qualname__ == entry["type"]
        for method, e in entry["outputs"].items():
            got = np.asarray(getattr(model, method)(X))
            if hasattr(got, "toarray"):
                got = got.toarray()
            _assert_same_output(got, _expected(e), f"{key} {method}")
    # The C++ runtime reads the same file (every seed is an estimator it implements).
    native = vitrify.native.load(path)
    for method, e in entry["outputs"].items():
        if not native.supports(method):
            continue
        got = np.asarray(getattr(native, method)(X))
        want = _expected(e)
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got.ravel().astype(float), want.ravel(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{key} {method}")
        else:
            assert got.ravel().tolist() == want.ravel().tolist(), (key, method)
