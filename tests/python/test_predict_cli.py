"""`vitrify predict MODEL INPUT.csv`: the C++ runtime behind a CSV command line.

Each test fits a scikit-learn model, saves it with vitrify.dump, writes a CSV (pandas writes
floats in their shortest round-trip form, so the CLI reads the same doubles sklearn was given),
runs the `vitrify` binary and compares its CSV output with sklearn's own predictions. Tests of
estimators the runtime does not implement yet are skipped until they land.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import vitrify
import vitrify.native
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = shutil.which("vitrify") or os.path.join(ROOT, "build", "tools", "vitrify", "vitrify")
SUPPORTED = set(vitrify.native.supported_types())

RF = "sklearn.ensemble.RandomForestClassifier"
TREE = "sklearn.tree.DecisionTreeClassifier"
LOGREG = "sklearn.linear_model.LogisticRegression"
SCALER = "sklearn.preprocessing.StandardScaler"
PIPE = "sklearn.pipeline.Pipeline"
ONEHOT = "sklearn.preprocessing.OneHotEncoder"
COLTF = "sklearn.compose.ColumnTransformer"


def needs(*types):
    missing = [t for t in types if t not in SUPPORTED]
    return pytest.mark.skipif(bool(missing), reason=f"runtime lacks {', '.join(missing)}")


def run(*args, stdin: str | bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    if not os.path.exists(CLI):
        pytest.fail(f"the vitrify CLI is not built at {CLI}")
    data = stdin.encode() if isinstance(stdin, str) else stdin
    r = subprocess.run([CLI, "predict", *map(str, args)], input=data, capture_output=True, timeout=120)
    r.stdout_text = r.stdout.decode()
    r.stderr_text = r.stderr.decode()
    if check:
        assert r.returncode == 0, r.stderr_text
        assert r.stderr_text == ""
    return r


def read_out(text: str, labels: bool = False) -> pd.DataFrame:
    """The CLI's CSV output (Python's csv module); numbers through float(), which is
    correctly rounded, so a bitwise comparison is meaningful; labels kept as text."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    if labels:
        return pd.DataFrame(body, columns=header, dtype=object)
    return pd.DataFrame([[float(v) for v in r] for r in body], columns=header, dtype=np.float64)


def fail_line(r: subprocess.CompletedProcess) -> str:
    """An error run: exit status 1 and one line on stderr."""
    assert r.returncode == 1, (r.returncode, r.stderr_text)
    lines = r.stderr_text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitrify: "), r.stderr_text
    return lines[0]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("predict_cli")


@pytest.fixture(scope="module")
def iris_rf(tmp):
    """RandomForestClassifier fitted on a plain array: columns are taken by position."""
    from sklearn.ensemble import RandomForestClassifier

    if RF not in SUPPORTED:
        pytest.fail("runtime lacks RandomForestClassifier")
    X, y = load_iris(return_X_y=True)
    rf = RandomForestClassifier(n_estimators=25, random_state=0).fit(X, y)
    path = tmp / "rf.vit"
    vitrify.dump(rf, path)
    csv = tmp / "iris.csv"
    # Header names that mean nothing to the model: ignored (no feature names were recorded).
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).to_csv(csv, index=False)
    return rf, X, path, csv


@pytest.fixture(scope="module")
def frame_logreg(tmp):
    """LogisticRegression fitted on a DataFrame (feature names recorded), binary."""
    from sklearn.linear_model import LogisticRegression

    if LOGREG not in SUPPORTED:
        pytest.fail("runtime lacks LogisticRegression")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :8].copy()
    # Names that need RFC 4180 quoting in the header: a comma, a quote, blanks.
    X.columns = ["mean radius", 'tex"ture', "peri,meter", " area ", *X.columns[4:]]
    lr = LogisticRegression(max_iter=5000).fit(X, y)
    path = tmp / "logreg.vit"
    vitrify.dump(lr, path)
    return lr, X, path


# --------------------------------------------------------------------------------------------
# Predictions agree with scikit-learn
# --------------------------------------------------------------------------------------------

def test_forest_predict_and_proba_by_position(iris_rf):
    rf, X, path, csv = iris_rf
    out = read_out(run(path, csv).stdout_text)
    assert list(out.columns) == ["prediction"]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), rf.predict(X))

    r = run(path, csv, "--proba")
    proba = read_out(r.stdout_text)
    assert list(proba.columns) == ["0", "1", "2"]          # class labels as the header
    np.testing.assert_array_equal(proba.to_numpy(), rf.predict_proba(X))  # bit for bit
    # --method proba is the same thing
    assert run(path, csv, "--method", "proba").stdout == r.stdout


def test_stdin_stdout_and_output_file_agree(iris_rf, tmp):
    _, _, path, csv = iris_rf
    from_file = run(path, csv, "--proba").stdout
    data = csv.read_bytes()
    assert run(path, "--proba", stdin=data).stdout == from_file          # no INPUT: stdin
    assert run(path, "-", "--proba", stdin=data).stdout == from_file     # '-' : stdin
    out = tmp / "out.csv"
    r = run(path, csv, "--proba", "-o", out)
    assert r.stdout == b"" and out.read_bytes() == from_file


def test_chunking_does_not_change_the_output(iris_rf):
    _, _, path, csv = iris_rf
    whole = run(path, csv, "--proba").stdout
    for batch in ("1", "7", "149", "150", "151"):
        assert run(path, csv, "--proba", "--batch", batch).stdout == whole


def test_columns_by_name_in_any_order(frame_logreg, tmp):
    lr, X, path = frame_logreg
    shuffled = X[X.columns[::-1]]
    csv = tmp / "bc.csv"
    shuffled.to_csv(csv, index=False)
    assert '"peri,meter"' in csv.read_text().splitlines()[0]   # the header really is quoted
    pred = read_out(run(path, csv).stdout_text)
    np.testing.assert_array_equal(pred["prediction"].to_numpy(), lr.predict(X))
    proba = read_out(run(path, csv, "--proba").stdout_text)
    assert list(proba.columns) == ["0", "1"]
    # The runtime is bit-exact for binary LogisticRegression, and the CSV round trip is exact.
    np.testing.assert_array_equal(proba.to_numpy(), lr.predict_proba(X))
    dec = read_out(run(path, csv, "--method", "decision").stdout_text)
    assert list(dec.columns) == ["decision_function"]          # binary: one column
    np.testing.assert_array_equal(dec["decision_function"].to_numpy(), lr.decision_function(X))


@needs(PIPE, SCALER, LOGREG)
def test_pipeline_scaler_logreg(tmp):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))]).fit(X, y)
    path = tmp / "pipe.vit"
    vitrify.dump(pipe, path)
    csv = tmp / "wine.csv"
    pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).to_csv(csv, index=False)
    pred = read_out(run(path, csv).stdout_text)
    np.testing.assert_array_equal(pred["prediction"].to_numpy(), pipe.predict(X))
    proba = read_out(run(path, csv, "--proba").stdout_text)
    # Multinomial softmax: not bit-exact in the runtime (last-ulp differences).
    np.testing.assert_allclose(proba.to_numpy(), pipe.predict_proba(X), rtol=1e-12, atol=0)
    dec = read_out(run(path, csv, "--method", "decision_function").stdout_text)
    assert list(dec.columns) == ["0", "1", "2"]                # multi-class: one column per class
    np.testing.assert_allclose(dec.to_numpy(), pipe.decision_function(X), rtol=1e-12, atol=1e-14)


@needs(SCALER)
def test_transform_reads_every_double_exactly(tmp):
    """StandardScaler's output moves with every bit of its input: a cell parsed one ulp off
    would show. Extreme magnitudes, subnormals, signs, exponents of every size."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 3)) * 10.0 ** rng.integers(-300, 300, (300, 3))
    X[0] = [5e-324, -2.2250738585072014e-308, 1.7976931348623157e308]
    sc = StandardScaler(with_mean=False, with_std=False).fit(X)   # identity: output == input
    path = tmp / "ident.vit"
    vitrify.dump(sc, path)
    csv = tmp / "extreme.csv"
    pd.DataFrame(X, columns=["p", "q", "r"]).to_csv(csv, index=False)
    out = read_out(run(path, csv, "--method", "transform").stdout_text)
    assert list(out.columns) == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(out.to_numpy(), sc.transform(X))
    np.testing.assert_array_equal(out.to_numpy(), X)


def test_string_labels_are_quoted_as_needed(tmp):
    from sklearn.tree import DecisionTreeClassifier

    if TREE not in SUPPORTED:
        pytest.fail("runtime lacks DecisionTreeClassifier")
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", 'ver"si, color', " virginica"])   # comma, quote, leading blank
    tree = DecisionTreeClassifier(random_state=0).fit(X, names[y])
    path = tmp / "labels.vit"
    vitrify.dump(tree, path)
    csv = tmp / "iris_plain.csv"
    pd.DataFrame(X).to_csv(csv, index=False)
    r = run(path, csv)
    assert '"ver""si, color"' in r.stdout_text and '" virginica"' in r.stdout_text
    out = read_out(r.stdout_text, labels=True)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), tree.predict(X))
    proba = read_out(run(path, csv, "--proba").stdout_text)
    assert list(proba.columns) == list(tree.classes_)
    np.testing.assert_array_equal(proba.to_numpy(), tree.predict_proba(X))


def test_missing_values_and_number_spellings(tmp):
    """Empty cells, NA, nan... are NaN (as pandas reads them); '+1.5', ' 2 ', '1E0', '.5e1' are
    numbers and '1e-400' underflows to 0 (as float() does)."""
    from sklearn.tree import DecisionTreeRegressor

    if "sklearn.tree.DecisionTreeRegressor" not in SUPPORTED:
        pytest.fail("runtime lacks DecisionTreeRegressor")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    X[rng.random(400) < 0.2, 0] = np.nan
    y = np.where(np.isnan(X[:, 0]), 5.0, X[:, 0]) + X[:, 1]
    tree = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y)
    path = tmp / "nan_tree.vit"
    vitrify.dump(tree, path)
    cells = ["", "NA", "nan", "NaN", "N/A", "NULL", "None", "<NA>", "  "]
    lines = ["u,v"] + [f"{c},0.25" for c in cells] + ["+1.5, 2 ", "1E0,-0.0", "1e-400,.5e1"]
    expect_X = np.array([[np.nan, 0.25]] * len(cells) + [[1.5, 2.0], [1.0, -0.0], [0.0, 5.0]])
    out = read_out(run(path, stdin="\n".join(lines) + "\n").stdout_text)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), tree.predict(expect_X))


@needs(PIPE, COLTF, ONEHOT, LOGREG)
def test_text_columns_for_models_that_encode_them(tmp):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(1)
    n = 300
    colors = np.array(["red", "green, dark", 'say "blue"', "multi\nline"])
    df = pd.DataFrame({"color": colors[rng.integers(0, 4, n)], "size": rng.standard_normal(n)})
    y = (df["color"].isin(["red", "multi\nline"]) ^ (df["size"] > 0)).astype(int)
    pipe = Pipeline([("ct", ColumnTransformer([("oh", OneHotEncoder(sparse_output=False), ["color"])], remainder="passthrough")),
                     ("clf", LogisticRegression())]).fit(df, y)
    path = tmp / "table.vit"
    vitrify.dump(pipe, path)
    csv = tmp / "table.csv"
    df[["size", "color"]].to_csv(csv, index=False)      # other order; quoted commas, quotes, newlines
    out = read_out(run(path, csv, "--proba", "--batch", "64").stdout_text)
    np.testing.assert_allclose(out.to_numpy(), pipe.predict_proba(df), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# Errors name the row and the column
# --------------------------------------------------------------------------------------------

def test_missing_and_unknown_columns(frame_logreg, tmp):
    _, X, path = frame_logreg
    csv = tmp / "missing.csv"
    X.drop(columns=["peri,meter"]).to_csv(csv, index=False)
    line = fail_line(run(path, csv, check=False))
    assert "missing column 'peri,meter'" in line

    csv2 = tmp / "unknown.csv"
    X.assign(extra=1.0).to_csv(csv2, index=False)
    line = fail_line(run(path, csv2, check=False))
    assert "unknown column 'extra' (9)" in line          # name and position in the header


def test_wrong_column_count_without_feature_names(iris_rf):
    _, _, path, _ = iris_rf
    line = fail_line(run(path, stdin="a,b,c\n1,2,3\n", check=False))
    assert "3 columns" in line and "expects 4 features" in line


def test_row_with_wrong_field_count(iris_rf):
    _, _, path, _ = iris_rf
    body = "a,b,c,d\n1,2,3,4\n5,6,7,8\n1,2,3\n"
    line = fail_line(run(path, stdin=body, check=False))
    assert "data row 3 has 3 fields, the header has 4" in line
    line = fail_line(run(path, stdin="a,b,c,d\n1,2,3,4,5\n", check=False))
    assert "data row 1 has 5 fields" in line


def test_unparsable_cell_names_row_and_column(frame_logreg, iris_rf, tmp):
    _, X, path = frame_logreg
    bad = X.head(5).astype(object)
    bad.iloc[3, 2] = "12,5 cm"                      # quoted by pandas (comma)
    csv = tmp / "bad.csv"
    bad.to_csv(csv, index=False)
    line = fail_line(run(path, csv, check=False))
    assert "data row 4, column 'peri,meter' (3)" in line and "'12,5 cm'" in line

    _, _, rf_path, _ = iris_rf
    # the third row, after a first chunk of two was already predicted
    line = fail_line(run(rf_path, "--batch", "2", stdin="a,b,c,d\n1,2,3,4\n1,2,3,4\n1,x,3,4\n", check=False))
    assert "data row 3, column 'b' (2)" in line


def test_error_removes_partial_output_file(iris_rf, tmp):
    _, X, path, _ = iris_rf
    rows = "\n".join(",".join(repr(float(v)) for v in r) for r in X) + "\n"
    out = tmp / "partial.csv"
    # 150 good rows predicted in chunks of 10, then a bad one: no half-written file remains.
    r = run(path, "--batch", "10", "-o", out, stdin="a,b,c,d\n" + rows + "1,2,3,oops\n", check=False)
    assert "data row 151, column 'd' (4)" in fail_line(r)
    assert not out.exists()


def test_malformed_csv_and_empty_input(iris_rf):
    _, _, path, _ = iris_rf
    assert "data row 2: malformed CSV" in fail_line(run(path, stdin='a,b,c,d\n1,2,3,4\n1,2,"3"x,4\n', check=False))
    assert "data row 1: malformed CSV" in fail_line(run(path, stdin='a,b,c,d\n1,2,"3,4\n', check=False))
    assert "header row" in fail_line(run(path, stdin="", check=False))
    # A header alone is fine: the output is a header alone.
    assert run(path, "--proba", stdin="a,b,c,d\n").stdout_text == "0,1,2\n"


def test_duplicate_header_column(iris_rf):
    _, _, path, _ = iris_rf
    assert "appears twice" in fail_line(run(path, stdin="a,b,a,d\n1,2,3,4\n", check=False))


def test_method_the_model_lacks_and_usage_errors(iris_rf, tmp):
    _, _, path, csv = iris_rf
    assert "has no method transform" in fail_line(run(path, csv, "--method", "transform", check=False))
    r = run(path, csv, "--proba", "--method", "decision", check=False)
    assert r.returncode == 2
    r = run(path, csv, "--method", "bogus", check=False)
    assert r.returncode == 2
    assert "cannot open" in fail_line(run(path, tmp / "nope.csv", check=False))
    assert fail_line(run(tmp / "nope.vit", csv, check=False))


def test_progress_only_when_asked_or_on_a_terminal(iris_rf):
    _, _, path, csv = iris_rf
    r = run(path, csv)                                   # stderr is a pipe: nothing
    assert r.stderr_text == ""
    r = subprocess.run([CLI, "predict", str(path), str(csv), "--progress"], capture_output=True, text=True)
    assert r.returncode == 0 and "150 rows" in r.stderr and "done" in r.stderr
    r = subprocess.run([CLI, "predict", str(path), str(csv), "--progress", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
