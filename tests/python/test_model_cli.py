"""The CLI shows what vitrify.dump recorded: `vitrify inspect` draws the estimator tree and
`vitrify env` prints a requirements.txt of the saving environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata

import pytest

import vitrify
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = shutil.which("vitrify") or os.path.join(ROOT, "build", "tools", "vitrify", "vitrify")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    if not os.path.exists(CLI):
        pytest.fail(f"the vitrify CLI is not built at {CLI}")
    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(C=0.5))]).fit(X, y)
    path = tmp_path_factory.mktemp("cli") / "pipe.vit"
    vitrify.dump(pipe, path)
    return path


def test_inspect_draws_the_estimator_tree(model_file):
    out = subprocess.run([CLI, "inspect", str(model_file)], capture_output=True, text=True, check=True).stdout
    assert "sklearn.pipeline.Pipeline" in out
    assert "steps['scaler']: sklearn.preprocessing.StandardScaler" in out
    assert "steps['clf']: sklearn.linear_model.LogisticRegression" in out
    assert "params: C=0.5" in out           # the one non-default parameter
    assert "coef_=float64[3, 4]" in out     # fitted array sizes
    assert "n_features_in_: 4" in out


def test_env_prints_requirements(model_file):
    out = subprocess.run([CLI, "env", str(model_file)], capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in lines
    assert f"numpy=={metadata.version('numpy')}" in lines
    assert f"scipy=={metadata.version('scipy')}" in lines
    assert any(ln.startswith("# python ") for ln in out.splitlines())


def test_env_without_record_fails(tmp_path):
    path = tmp_path / "plain.vit"
    vitrify.save_arrays(path, {"a": [1, 2, 3]})
    r = subprocess.run([CLI, "env", str(path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no saving environment" in r.stderr
