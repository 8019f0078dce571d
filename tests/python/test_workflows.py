"""The three example workflows (examples/workflow_*.py) run end to end, each saving in one
interpreter and loading in a fresh one; and the environment record every saved file carries,
with the warning a load gives when the running versions differ from the saved ones."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import vitrify
import vitrify.model

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI_DIR = ROOT / "build" / "tools" / "vitrify"

WORKFLOWS = ["workflow_dataframe_logreg.py", "workflow_random_forest.py", "workflow_pipeline.py"]
NEEDS = {"workflow_dataframe_logreg.py": "pandas"}

MATCH_LINE = re.compile(r"^match: (?P<what>.+) are bit-identical on (?P<n>\d+) held-out rows$",
                        re.M)


def _env() -> dict:
    """The test's environment, with the freshly built CLI on PATH when it is not there yet."""
    env = dict(os.environ)
    env.pop("VITRIFY_PROGRESS", None)
    if shutil.which("vitrify") is None and (CLI_DIR / "vitrify").is_file():
        env["PATH"] = f"{CLI_DIR}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env=_env(), cwd=ROOT)


@dataclasses.dataclass
class Run:
    script: str
    out: Path
    proc: subprocess.CompletedProcess
    seconds: float

    @property
    def model(self) -> Path:
        return self.out / "model.vit"

    def explain(self) -> str:
        return (f"{self.script} exited {self.proc.returncode}\n--- stdout\n{self.proc.stdout}"
                f"\n--- stderr\n{self.proc.stderr}")


@pytest.fixture(scope="module", params=WORKFLOWS)
def workflow(request, tmp_path_factory) -> Run:
    """Each workflow script run once (module scope) into its own output folder."""
    script = request.param
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    out = tmp_path_factory.mktemp(script.removesuffix(".py"))
    t = time.perf_counter()
    proc = _run(str(EXAMPLES / script), str(out))
    return Run(script, out, proc, time.perf_counter() - t)


# ----------------------------------------------------------------------------------------------
# The workflows
# ----------------------------------------------------------------------------------------------

def test_workflow_succeeds_and_predictions_match(workflow):
    assert workflow.proc.returncode == 0, workflow.explain()
    m = MATCH_LINE.search(workflow.proc.stdout)
    assert m, workflow.explain()
    assert "predict" in m["what"] and "predict_proba" in m["what"]
    assert int(m["n"]) > 0
    assert "MISMATCH" not in workflow.proc.stdout + workflow.proc.stderr
    assert "DIFFERENT" not in workflow.proc.stdout
    # Quick (the examples promise < 10 s; leave room for a loaded machine).
    assert workflow.seconds < 60, f"{workflow.script} took {workflow.seconds:.1f} s"


def test_workflow_loads_in_a_fresh_process(workflow):
    out = workflow.proc.stdout
    saver = re.search(r"^training .*\(pid (\d+)\)$", out, re.M)
    loader = re.search(r"^loading .* in a fresh process \(pid (\d+)\); "
                       r"scikit-learn imported before load: (\w+)$", out, re.M)
    assert saver and loader, workflow.explain()
    assert saver[1] != loader[1]
    assert os.getpid() not in (int(saver[1]), int(loader[1]))
    assert loader[2] == "False"     # load() itself imported the (trusted) classes
    assert "environment: same versions as when saved" in out
    assert "warning:" not in out


def test_workflow_reports_what_was_saved(workflow):
    out = workflow.proc.stdout
    assert workflow.model.is_file() and (workflow.out / "expected.vit").is_file()
    info = vitrify.inspect(workflow.model)
    size = workflow.model.stat().st_size
    assert re.search(rf"^  file size: .*\({size} bytes\)$", out, re.M), out
    assert re.search(rf"^  arrays: +{len(info['arrays'])} \(", out, re.M), out
    assert "inspect view" in out and "estimator tree:" in out
    assert f"    {info['content']['schema']['type']}" in out
    if "PATH=" not in out and shutil.which("vitrify", path=_env()["PATH"]):
        assert f"$ vitrify inspect {workflow.model}" in out
        assert f"OK {workflow.model}" in out


def test_workflow_schema(workflow):
    schema = vitrify.inspect(workflow.model)["content"]["schema"]
    tree = schema["estimator"]
    if workflow.script == "workflow_dataframe_logreg.py":
        from sklearn.datasets import load_breast_cancer

        columns = list(load_breast_cancer(as_frame=True).data.columns)
        assert schema["type"] == "sklearn.linear_model.LogisticRegression"
        assert schema["feature_names_in_"] == columns
        assert schema["n_features_in_"] == len(columns)
        assert schema["classes_"] == [0, 1]
        assert tree["fitted"]["coef_"] == f"float64[1, {len(columns)}]"
        assert re.search(r"^  feature_names_in_: kept ", workflow.proc.stdout, re.M)
        assert "predict(DataFrame): no feature-name warnings" in workflow.proc.stdout
        assert "columns reversed): refused" in workflow.proc.stdout
    elif workflow.script == "workflow_random_forest.py":
        assert schema["type"] == "sklearn.ensemble.RandomForestClassifier"
        assert schema["n_features_in_"] == 13 and schema["classes_"] == [0, 1, 2]
        assert tree["params"]["n_estimators"] == 50
        assert tree["fitted"]["estimators_"] == "list of 50 DecisionTreeClassifier"
        assert "feature_names_in_" not in schema
    else:
        assert schema["type"] == "sklearn.pipeline.Pipeline"
        assert schema["n_features_in_"] == 4 and schema["classes_"] == [0, 1, 2]
        steps = [(c.get("param"), c.get("name"), c.get("type")) for c in tree["children"]]
        assert steps == [("steps", "scaler", "sklearn.preprocessing.StandardScaler"),
                         ("steps", "classifier", "sklearn.linear_model.LogisticRegression")]
        assert "steps: scaler=StandardScaler, classifier=LogisticRegression" in workflow.proc.stdout


def test_workflow_fails_when_predictions_differ(workflow, tmp_path):
    """The check is real: one ulp off in one saved probability makes the load step fail."""
    out = tmp_path / "out"
    shutil.copytree(workflow.out, out)
    expected = {k: np.array(v) for k, v in vitrify.load_arrays(out / "expected.vit").items()}
    p = expected["predict_proba"]
    p.flat[0] = np.nextafter(p.flat[0], np.inf)
    vitrify.save_arrays(out / "expected.vit", expected)
    proc = _run(str(EXAMPLES / workflow.script), "--load", str(out))
    assert proc.returncode != 0, proc.stdout
    assert "MISMATCH" in proc.stderr
    assert re.search(r"^  predict_proba +\w+\[[^]]*\] +DIFFERENT$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^  predict +\w+\[[^]]*\] +identical$", proc.stdout, re.M), proc.stdout
    assert not MATCH_LINE.search(proc.stdout)


def test_workflow_default_output_is_a_temporary_folder():
    proc = _run(str(EXAMPLES / "workflow_pipeline.py"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert MATCH_LINE.search(proc.stdout)
    saved = re.search(r"^saved (.+) in \d+ ms$", proc.stdout, re.M)
    assert saved, proc.stdout
    path = Path(saved[1])
    assert path.name == "model.vit" and not path.parent.exists()   # cleaned up


# ----------------------------------------------------------------------------------------------
# The environment record
# ----------------------------------------------------------------------------------------------

def test_environment_record(workflow):
    env = vitrify.inspect(workflow.model)["environment"]
    assert env["python"] == platform.python_version()
    assert env["implementation"] == platform.python_implementation()
    assert env["platform"] == platform.platform()
    assert env["machine"] == platform.machine()
    assert env["byteorder"] == sys.byteorder
    assert env["vitrify"] == vitrify.__version__
    packages = env["packages"]
    for pkg in ("numpy", "scipy", "scikit-learn"):
        assert packages[pkg] == metadata.version(pkg), pkg
    # Only the packages that decide how a model loads and predicts are recorded: a model
    # fitted on a DataFrame holds no pandas object, so pandas is not among them.
    assert "pandas" not in packages
    created = dt.datetime.fromisoformat(env["created"])
    assert created.tzinfo is not None
    now = dt.datetime.now(dt.timezone.utc)
    assert now - dt.timedelta(hours=1) < created <= now + dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def saved_env(tmp_path_factory) -> dict:
    """The environment record of a file written by this process."""
    from sklearn.linear_model import LogisticRegression

    path = tmp_path_factory.mktemp("env") / "model.vit"
    vitrify.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    return vitrify.inspect(path)["environment"]


def test_same_environment_does_not_warn(saved_env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vitrify.model.check_environment(copy.deepcopy(saved_env)) == []


@pytest.mark.parametrize("pkg", ["numpy", "scipy", "scikit-learn"])
def test_package_version_change_warns(saved_env, pkg):
    record = copy.deepcopy(saved_env)
    running = record["packages"][pkg]
    assert running == metadata.version(pkg)
    record["packages"][pkg] = "0.0.1"
    with pytest.warns(vitrify.EnvironmentMismatchWarning) as caught:
        msgs = vitrify.model.check_environment(record)
    assert len(caught) == len(msgs) == 1, [str(w.message) for w in caught]
    text = str(caught[0].message)
    assert pkg in text and "0.0.1" in text and running in text, text
    assert text.index("0.0.1") < text.index(running)     # saved first, then running


def test_python_version_change_warns(saved_env):
    record = copy.deepcopy(saved_env)
    record["python"] = "2.7.18"
    with pytest.warns(vitrify.EnvironmentMismatchWarning, match=r"python") as caught:
        vitrify.model.check_environment(record)
    text = str(caught[0].message)
    assert "2.7.18" in text and platform.python_version() in text, text


def test_python_patch_release_does_not_warn(saved_env):
    record = copy.deepcopy(saved_env)
    major, minor, _ = platform.python_version_tuple()
    record["python"] = f"{major}.{minor}.9999"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vitrify.model.check_environment(record) == []


def test_byteorder_change_warns(saved_env):
    record = copy.deepcopy(saved_env)
    other = "big" if sys.byteorder == "little" else "little"
    record["byteorder"] = other
    with pytest.warns(vitrify.EnvironmentMismatchWarning, match=rf"byteorder.*{other}"):
        vitrify.model.check_environment(record)


def test_package_missing_now_warns(saved_env):
    record = copy.deepcopy(saved_env)
    record["packages"]["vitrify-test-no-such-package"] = "1.2.3"
    with pytest.warns(vitrify.EnvironmentMismatchWarning) as caught:
        vitrify.model.check_environment(record)
    text = str(caught[0].message)
    assert "vitrify-test-no-such-package" in text and "1.2.3" in text and "not installed" in text


def test_load_warns_when_saved_with_another_version(tmp_path, monkeypatch):
    """End to end: a file whose record names another scikit-learn warns on load (and not with
    check_env=False), and the model still loads."""
    from sklearn.linear_model import LogisticRegression

    from vitrify import _environment

    real = _environment._package_versions
    path = tmp_path / "old.vit"
    with monkeypatch.context() as m:
        m.setattr(_environment, "_package_versions",
                  lambda: {**real(), "scikit-learn": "0.0.1"})
        vitrify.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    assert vitrify.inspect(path)["environment"]["packages"]["scikit-learn"] == "0.0.1"

    running = metadata.version("scikit-learn")
    with pytest.warns(vitrify.EnvironmentMismatchWarning,
                      match=rf"scikit-learn: saved with 0\.0\.1, running {re.escape(running)}"):
        model = vitrify.load(path)
    assert model.predict([[1.0]]).tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", vitrify.EnvironmentMismatchWarning)
        vitrify.load(path, check_env=False)
