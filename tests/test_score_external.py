"""`bench score`: predictions made outside survbench scored like `bench run` (same folds, metrics, bootstrap,
stored arrays, records and pages), the HECKTOR 2022 convention against lifelines, and every bad input refused
with exit 2 and nothing stored."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.compact import quantise_predictions
from bench.external import predictions_csv, stored_fold_predictions
from bench.protocols import load_protocol
from bench.scoring import bootstrap_seed, score
from bench.store import Store, unpack_arrays

CLEAN = load_protocol("clean")


def bench(*args: str):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from helpers import write_tiny_hecktor

    return write_tiny_hecktor(tmp_path_factory.mktemp("score") / "hecktor", images=False)


@pytest.fixture(scope="module")
def results(data, tmp_path_factory):
    """coxph run through `bench run` under clean on the tiny clinical cohort."""
    out = tmp_path_factory.mktemp("results")
    done = bench("run", "-m", "coxph", "-p", "clean", "-d", data, "--scale", "smoke", "--results", out)
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def files(results, tmp_path_factory):
    """coxph's stored predictions written as predictions files: test (risk and curves) and training risks."""
    folder = tmp_path_factory.mktemp("csv")
    stored = stored_fold_predictions(Store(results, readonly=True), "coxph", CLEAN.hash)
    assert len(stored) == 5
    predictions_csv(stored, folder / "preds.csv")
    predictions_csv(stored, folder / "train.csv", side="training")
    return folder / "preds.csv", folder / "train.csv"


@pytest.fixture(scope="module")
def scored(data, results, files):
    """coxph's predictions scored back under the name `mine`, with the training predictions."""
    preds, train = files
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions", preds,
                 "--train-predictions", train, "--name", "mine")
    assert done.exit_code == 0, done.output
    assert "5 fold(s) scored, 0 already scored" in done.output
    return results


def _rows(results: Path, method: str) -> dict[int, dict]:
    return {r["fold"]: r for r in Store(results, readonly=True).rows() if r["method"] == method}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


# --- the round trip -------------------------------------------------------------------------------------------
def test_coxph_predictions_scored_back_give_coxph_metrics_exactly(scored):
    ref, ext = _rows(scored, "coxph"), _rows(scored, "mine")
    assert sorted(ext) == sorted(ref) == [0, 1, 2, 3, 4]
    for fold, a in ref.items():
        b = ext[fold]
        assert b["status"] == "done" and b["fold_name"] == a["fold_name"]
        assert (b["protocol_hash"], b["dataset_fp"], b["seed"], b["scale"]) == \
               (a["protocol_hash"], a["dataset_fp"], a["seed"], a["scale"])
        assert json.loads(b["metrics"]) == json.loads(a["metrics"])  # every metric, bit for bit
        assert json.loads(b["manifest"]) == json.loads(a["manifest"])  # same bootstrap seed, same threshold
        boot_a, boot_b = unpack_arrays(a["bootstrap"]), unpack_arrays(b["bootstrap"])
        assert boot_a.keys() == boot_b.keys()
        assert all(np.array_equal(boot_a[k], boot_b[k], equal_nan=True) for k in boot_a)
        pa, pb = unpack_arrays(a["predictions"]), unpack_arrays(b["predictions"])
        assert pa.keys() == pb.keys()
        for k in pa:  # the same arrays, quantised the same way
            assert pa[k].dtype == pb[k].dtype and np.array_equal(pa[k], pb[k]), k
        assert json.loads(b["corruption"]) == json.loads(a["corruption"])


def test_the_row_is_marked_external(scored, files):
    import hashlib

    preds, train = files
    row = _rows(scored, "mine")[0]
    assert json.loads(row["config"]) == {
        "external": True, "convention": "survbench", "predictions_sha256": hashlib.sha256(preds.read_bytes()).hexdigest(),
        "train_predictions_sha256": hashlib.sha256(train.read_bytes()).hexdigest()}
    info = json.loads(row["env"])["method"]
    assert info["external"] is True and info["produces"] == ["risk", "survival"] and not info["ceiling"]
    assert row["notes"].startswith("external predictions scored by `bench score`")
    assert row["fit_seconds"] == 0.0 and not row["model_reused"]


def test_scoring_the_same_file_again_changes_nothing(data, scored, files):
    preds, train = files
    before = _rows(scored, "mine")
    again = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions", preds,
                  "--train-predictions", train, "--name", "mine")
    assert again.exit_code == 0, again.output
    assert "0 fold(s) scored, 5 already scored from this file" in again.output
    assert _rows(scored, "mine") == before


def test_another_file_under_the_same_name_and_protocol_is_refused(data, scored, files, tmp_path):
    preds, train = files
    header, rows = _read(preds)
    rows[0][2] = "0.5"
    edited = _write(tmp_path / "edited.csv", header, rows)
    before = _rows(scored, "mine")
    for extra in ([edited, "--train-predictions", train], [preds]):  # another file; the same without training
        done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions",
                     *extra, "--name", "mine")
        assert done.exit_code == 2, done.output
        assert "bench store drop mine --config" in done.output and "Nothing was stored" in done.output
        assert "Traceback" not in done.output
    assert _rows(scored, "mine") == before


def test_without_training_predictions_the_log_rank_split_is_at_the_test_fold_median(data, scored, files):
    from bench import metrics as M

    preds, _ = files
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions", preds,
                 "--name", "mine-test-median")
    assert done.exit_code == 0, done.output
    ref, ext = _rows(scored, "coxph"), _rows(scored, "mine-test-median")
    for fold, a in ref.items():
        b = ext[fold]
        ma, mb = json.loads(a["metrics"]), json.loads(b["metrics"])
        assert {k: v for k, v in mb.items() if k != "logrank_p"} == {k: v for k, v in ma.items() if k != "logrank_p"}
        p = unpack_arrays(b["predictions"])
        risk = p["risk"].astype(float)
        assert mb["logrank_p"] == M.logrank_p(p["time"], p["event"], risk, float(np.median(risk)))
        threshold = json.loads(b["manifest"])["logrank_threshold"]
        assert np.array_equal(risk > threshold, risk > np.median(risk))
        assert len(p["train_risk"]) == len(p["train_ids"]) == len(unpack_arrays(a["predictions"])["train_ids"])
        assert "splits the patients at the test fold's median risk" in b["notes"]


def test_without_curves_c_td_and_ibs_are_na_or_derived_from_training_risks(data, scored, files, tmp_path):
    preds, train = files
    header, rows = _read(preds)
    risk_only = _write(tmp_path / "risk.csv", header[:3], [r[:3] for r in rows])
    na = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions", risk_only,
               "--name", "risk-only")
    assert na.exit_code == 0, na.output
    derived = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions",
                    risk_only, "--train-predictions", train, "--name", "risk-derived")
    assert derived.exit_code == 0, derived.output
    ref = _rows(scored, "coxph")
    for fold, row in _rows(scored, "risk-only").items():
        m, mr = json.loads(row["metrics"]), json.loads(ref[fold]["metrics"])
        assert m["cindex_td"] is None and m["ibs"] is None
        for k in ("cindex_harrell", "cindex_uno", "td_auc"):
            assert m[k] == mr[k]  # the risk is coxph's: everything that needs no curve is the same
        assert "cindex_td: n/a, the external predictions give no survival curves" in row["notes"]
        assert json.loads(row["env"])["method"]["produces"] == ["risk"]
    for fold, row in _rows(scored, "risk-derived").items():  # a risk-only plugin's scoring: Breslow curves
        p = {k: v for k, v in unpack_arrays(ref[fold]["predictions"]).items() if k not in ("survival", "times")}
        want = score(CLEAN.metrics, p, boot_seed=bootstrap_seed(CLEAN.metrics, CLEAN.split_hash, fold))
        assert json.loads(row["metrics"]) == want.metrics
        assert json.loads(row["manifest"])["survival_curves"]["source"].startswith("derived: Breslow")


def test_external_rows_export_import_and_reach_the_leaderboard(scored, tmp_path):
    exported = tmp_path / "rows"
    assert bench("store", "export", "--results", scored, "--out", exported).exit_code == 0
    moved = tmp_path / "moved"
    done = bench("store", "import", exported, "--results", moved)  # rescored from the predictions, checked
    assert done.exit_code == 0, done.output
    for name in ("mine", "risk-only"):
        assert {f: json.loads(r["metrics"]) for f, r in _rows(moved, name).items()} == \
               {f: json.loads(r["metrics"]) for f, r in _rows(scored, name).items()}
    out = tmp_path / "lb"
    lb = bench("leaderboard", "--results", moved, "--out", out)
    assert lb.exit_code == 0, lb.output
    record = json.loads(next((out / "records").glob("*/clean__mine__*.json")).read_text())
    assert record["config"]["external"] is True and len(record["folds"]) == 5
    cv = next(out.glob("*/cv.md")).read_text()
    row = next(line for line in cv.splitlines() if line.startswith("| mine"))
    assert row.count("0.") > 3 and "`" + record["config_hash"][:8] + "`" in row


def test_rows_scored_with_older_metric_definitions_are_rescored_keeping_their_notes(data, files, tmp_path):
    import sqlite3

    results = tmp_path / "r"
    args = ["score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions", files[0],
            "--name", "old"]
    assert bench(*args).exit_code == 0
    before = _rows(results, "old")
    with sqlite3.connect(results / "runs.sqlite") as con:  # as if scored by an older survbench
        con.execute("UPDATE runs SET manifest=json_set(manifest, '$.metrics_version', '0'), metrics='{}' "
                    "WHERE method='old'")
    again = bench(*args)
    assert again.exit_code == 0 and "5 finished fold(s) rescored" in again.output, again.output
    after = _rows(results, "old")
    for fold, row in after.items():
        assert row["metrics"] == before[fold]["metrics"] and row["manifest"] == before[fold]["manifest"]
        assert row["notes"] == before[fold]["notes"]  # the external notes kept, the metric notes regenerated


# --- templates and fold names ------------------------------------------------------------------------------
def test_templates_list_the_stored_folds(data, scored, files, tmp_path):
    split = json.loads(next((scored / "splits").glob("*.json")).read_text())
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored,
                 "--template", tmp_path / "t.csv", "--train-template", tmp_path / "tt.csv")
    assert done.exit_code == 0, done.output
    assert "fold0" in done.output and "fold4" in done.output
    header, rows = _read(tmp_path / "t.csv")
    assert header == ["PatientID", "fold", "risk"]
    assert sorted((p, f) for p, f, _ in rows) == sorted((p, f["name"]) for f in split["folds"] for p in f["test"])
    _, train_rows = _read(tmp_path / "tt.csv")
    assert len(train_rows) == sum(len(f["train"]) for f in split["folds"])
    risk = {(r[0], r[1]): r[2] for r in _read(files[0])[1]}  # the template filled in gives coxph's rows again
    filled = _write(tmp_path / "filled.csv", header, [[p, f, risk[(p, f)]] for p, f, _ in rows])
    again = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions",
                  filled, "--name", "filled")
    assert again.exit_code == 0, again.output
    assert [json.loads(r["metrics"])["cindex_harrell"] for r in _rows(scored, "filled").values()] == \
           [json.loads(r["metrics"])["cindex_harrell"] for r in _rows(scored, "coxph").values()]
    both = bench("score", "-p", "clean", "-d", data, "--results", scored, "--template", tmp_path / "x.csv",
                 "--predictions", filled)
    assert both.exit_code == 2 and "second call" in both.output


def test_leave_one_centre_out_folds_are_named_by_their_centre(data, tmp_path):
    results = tmp_path / "r"
    done = bench("score", "-p", "loco", "-d", data, "--scale", "smoke", "--results", results,
                 "--template", tmp_path / "t.csv", "--convention", "hecktor")
    assert done.exit_code == 0, done.output
    header, rows = _read(tmp_path / "t.csv")
    assert header == ["PatientID", "fold", "Prediction"]
    assert all(p.split("-")[0] == f for p, f, _ in rows)  # the held-out centre
    rng = np.random.default_rng(0)
    preds = _write(tmp_path / "p.csv", header, [[p, f, f"{rng.normal():.4f}"] for p, f, _ in rows])
    scored = bench("score", "-p", "loco", "-d", data, "--scale", "smoke", "--results", results, "--predictions", preds,
                   "--name", "random", "--convention", "hecktor")
    assert scored.exit_code == 0, scored.output
    stored = _rows(results, "random")
    assert sorted(r["fold_name"] for r in stored.values()) == ["CHUM", "CHUP", "MDA"]
    assert "centres" in json.loads(stored[0]["env"])


# --- the HECKTOR 2022 convention against lifelines -------------------------------------------------------------
def _hecktor_file(path: Path, template: Path, nan_every: int = 0) -> tuple[Path, dict[str, float]]:
    """Predictions in the HECKTOR convention (a risk score: minus a predicted time in days; some tied), NaN every
    ``nan_every``-th row (as an empty cell and as the text NaN). Integer days are exact in float32."""
    rng = np.random.default_rng(7)
    _, rows = _read(template)
    out, given = [], {}
    for i, (p, f, _) in enumerate(rows):
        days = 900 if i % 6 == 0 else int(rng.integers(30, 3000))
        cell = str(-days)
        if nan_every and i % nan_every == 1:
            cell = "" if i % 2 else "NaN"
        out.append([p, f, cell])
        given[p] = float(cell) if cell else np.nan
    return _write(path, ["PatientID", "fold", "Prediction"], out), given


@pytest.mark.parametrize("nan_every", [0, 4])
def test_hecktor_convention_harrell_is_lifelines_on_the_predicted_times(data, tmp_path, nan_every):
    from lifelines.utils import concordance_index

    results = tmp_path / "r"
    assert bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results,
                 "--template", tmp_path / "t.csv", "--convention", "hecktor").exit_code == 0
    preds, given = _hecktor_file(tmp_path / "hk.csv", tmp_path / "t.csv", nan_every)
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions", preds,
                 "--name", "hk", "--convention", "hecktor")
    assert done.exit_code == 0, done.output
    n_missing = 0
    for row in _rows(results, "hk").values():
        p = unpack_arrays(row["predictions"])
        prediction = np.array([given[i] for i in p["ids"]])
        missing = np.isnan(prediction)
        n_missing += missing.sum()
        # the tie value: the fold's median given prediction, shared by every missing one
        tied = np.where(missing, np.median(prediction[~missing]), prediction)
        predicted_time = -tied  # HECKTOR's Prediction is anti-concordant with RFS: minus a predicted time
        want = concordance_index(p["time"], predicted_time, p["event"])
        got = json.loads(row["metrics"])["cindex_harrell"]
        assert abs(got - want) < 1e-12, (row["fold_name"], got, want)
        if missing.any():
            assert f"{missing.sum()} missing (NaN) prediction(s) of {row['fold_name']}" in row["notes"]
            assert len(set(p["risk"][missing])) == 1
    assert (n_missing > 0) == bool(nan_every)


def test_a_prediction_column_needs_the_hecktor_convention(data, tmp_path):
    results = tmp_path / "r"
    assert bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results,
                 "--template", tmp_path / "t.csv", "--convention", "hecktor").exit_code == 0
    preds, _ = _hecktor_file(tmp_path / "hk.csv", tmp_path / "t.csv")
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions", preds,
                 "--name", "hk")
    assert done.exit_code == 2 and "use --convention hecktor" in done.output
    header, rows = _read(preds)
    lower = _write(tmp_path / "lower.csv", ["PatientID", "fold", "prediction"], rows)
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions", lower,
                 "--name", "hk", "--convention", "hecktor")
    assert done.exit_code == 2 and "names it 'Prediction'" in done.output
    assert not (results / "runs.sqlite").exists()


# --- bad input: exit 2, the file, line, patient and what is wrong, nothing stored ---------------------------
def _edit(case: str, header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]], list[str]]:
    """The file edited to show ``case``, and what the message must say (line numbers count the header)."""
    rows = [list(r) for r in rows]
    s365 = next(j for j, c in enumerate(header) if c.startswith("S(") and all(r[j] for r in rows[:3]))
    p0, f0 = rows[0][0], rows[0][1]
    other = next(r[1] for r in rows if r[1] != f0)
    if case == "missing patient":
        return header, rows[1:], [f"patient {p0} of fold {f0} is missing"]
    if case == "wrong fold":
        rows[0][1] = other
        return header, rows, ["line 2", p0, f"is in fold {other} here, but the protocol tests it in fold {f0}"]
    if case == "duplicate":
        return header, rows + [rows[0]], [f"line {len(rows) + 2}", p0, "appears again (first on line 2)"]
    if case == "NaN risk":
        rows[2][2] = "nan"
        return header, rows, ["line 4", rows[2][0], "risk is NaN, not a finite number"]
    if case == "risk beyond float32":
        rows[2][2] = "-1e39"
        return header, rows, ["line 4", rows[2][0], "risk is -1e39, beyond float32"]
    if case == "empty risk":
        rows[2][2] = ""
        return header, rows, ["line 4", rows[2][0], "risk is empty"]
    if case == "non-monotone survival":
        later = next(j for j in range(s365 + 1, len(header)) if rows[1][j])
        rows[1][later] = "1"
        return header, rows, ["line 3", rows[1][0], f"not monotone: {header[later]} = 1 >"]
    if case == "survival out of range":
        rows[1][s365] = "1.5"
        return header, rows, ["line 3", rows[1][0], f"{header[s365]} is '1.5', not a survival probability"]
    if case == "survival partly empty":
        rows[1][s365] = ""
        return header, rows, ["line 3", rows[1][0], f"{header[s365]} is empty, but other patients of fold {f0}"]
    if case == "unknown column":
        return header + ["comment"], [r + ["x"] for r in rows], ["line 1", "unknown column 'comment'"]
    if case == "misspelt column":
        return ["PatientID", "fold", "Risk"] + header[3:], rows, ["unknown column 'Risk'", "did you mean 'risk'"]
    if case == "bad time":
        return header[:3] + ["S(one year)"] + header[4:], rows, ["line 1", "'one year' is not a time in days"]
    if case == "unknown fold":
        rows[0][1] = "fold9"
        return header, rows, ["line 2", p0, "fold 'fold9' is not a fold of this protocol (its folds: fold0"]
    if case == "unknown patient":
        rows[0][0] = "NOPE-001"
        return header, rows, ["line 2", "patient NOPE-001 is not in dataset"]
    if case == "short line":
        rows[3] = rows[3][:2]
        return header, rows, ["line 5", "2 cell(s), the header has"]
    raise AssertionError(case)


CASES = ["missing patient", "wrong fold", "duplicate", "NaN risk", "risk beyond float32", "empty risk", "non-monotone survival",
         "survival out of range", "survival partly empty", "unknown column", "misspelt column", "bad time",
         "unknown fold", "unknown patient", "short line"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_predictions_file_is_refused_and_nothing_stored(case, data, scored, files, tmp_path):
    header, rows = _read(files[0])
    header, rows, says = _edit(case, header, rows)
    bad = _write(tmp_path / "bad.csv", header, rows)
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions", bad,
                 "--name", "bad")
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and str(bad) in done.output and "nothing was stored" in done.output
    for part in says:
        assert part in done.output, (part, done.output)
    assert _rows(scored, "bad") == {}


def test_bad_training_predictions_are_refused(data, scored, files, tmp_path):
    header, rows = _read(files[1])
    test_patient = _read(files[0])[1][0]  # tested in its fold, so not one of that fold's training patients
    bad = _write(tmp_path / "train.csv", header, rows + [[test_patient[0], test_patient[1], "0.1"]])
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions",
                 files[0], "--train-predictions", bad, "--name", "bad-train")
    assert done.exit_code == 2, done.output
    assert "--train-predictions" in done.output
    assert f"patient {test_patient[0]} is not a training patient of fold {test_patient[1]}" in done.output
    assert _rows(scored, "bad-train") == {}


@pytest.mark.parametrize("name, says", [("coxph", "is a registered method"), ("a/b", "path separator"),
                                        ("..", "cannot be used in a file name")])
def test_the_name_must_be_free_and_safe(name, says, data, scored, files):
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", scored, "--predictions", files[0],
                 "--name", name)
    assert done.exit_code == 2 and says in done.output, done.output


def test_a_name_holding_bench_run_rows_is_refused(data, files, tmp_path):
    from baselines.coxph import CoxPH
    from bench.data.hecktor import load_hecktor
    from bench.registry import register_method, unregister_method
    from bench.runner import plan_methods, run_jobs

    results = tmp_path / "r"
    register_method("was-a-plugin")(CoxPH)
    try:
        run_jobs(plan_methods(["was-a-plugin"], "smoke", []), [CLEAN], load_hecktor(data), scale="smoke", seeds=[0],
                 results_dir=results, progress=False)
    finally:
        unregister_method("was-a-plugin")
    done = bench("score", "-p", "clean", "-d", data, "--scale", "smoke", "--results", results, "--predictions",
                 files[0], "--name", "was-a-plugin")
    assert done.exit_code == 2 and "produced by `bench run`" in done.output, done.output


def test_missing_options_and_files_are_named(data, tmp_path):
    none = bench("score", "-p", "clean", "-d", data, "--results", tmp_path / "r")
    assert none.exit_code == 2 and "--predictions and --name missing" in none.output
    gone = bench("score", "-p", "clean", "-d", data, "--results", tmp_path / "r", "--predictions",
                 tmp_path / "nope.csv", "--name", "x")
    assert gone.exit_code == 2 and "nope.csv: cannot read it" in gone.output
    empty = bench("score", "-p", "clean", "-d", data, "--results", tmp_path / "r", "--predictions",
                  _write(tmp_path / "e.csv", ["PatientID", "fold"], []), "--name", "x")
    assert empty.exit_code == 2 and "no 'risk' column" in empty.output
    two = bench("score", "-p", "clean,loco", "-d", data, "--results", tmp_path / "r", "--template", tmp_path / "t.csv")
    assert two.exit_code == 2 and "one protocol per predictions file" in two.output


def test_quantisation_keeps_the_tie_threshold_exact():
    """The stored stand-in for training risks splits float32 risks exactly as their median does."""
    from bench.external import _train_threshold

    rng = np.random.default_rng(3)
    for n in (2, 3, 10, 11, 50):
        for _ in range(50):
            risk = quantise_predictions({"risk": rng.normal(size=n) * 10 ** rng.uniform(-3, 3)})["risk"].astype(float)
            thr = _train_threshold(risk, 7)
            assert thr.dtype == np.float32 and len(thr) == 7
            assert np.array_equal(risk > float(np.median(thr)), risk > np.median(risk))
