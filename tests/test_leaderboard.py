"""Leaderboards: records exported from the store, pages rendered from the records alone, --check."""
from __future__ import annotations

import json
import shutil

import pytest

from bench.protocols import load_protocol
from bench.runner import plan_methods, run_jobs
from helpers import run_bench


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, synthetic_smoke):
    results = tmp_path_factory.mktemp("lb-results")
    plans = plan_methods(["coxph", "oracle", "radiomics-cox"], "smoke", [])
    protocols = [load_protocol(p) for p in ("clean", "noisy50", "noisy100", "loco")]
    report = run_jobs(plans, protocols, synthetic_smoke, scale="smoke", seeds=[0], results_dir=results, progress=False)
    assert not report.failed
    return results


def test_pages_come_from_records_and_check_catches_staleness(smoke_results, tmp_path):
    out = tmp_path / "leaderboards"
    done = run_bench("leaderboard", "--results", str(smoke_results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    slug = "synthetic-smoke-v3-0"
    records = sorted((out / "records" / slug).glob("*.json"))
    assert len(records) == 3 * 4
    cv = (out / slug / "cv.md").read_text()
    robust = (out / slug / "robustness.md").read_text()
    gen = (out / slug / "generalisation.md").read_text()
    # flags, bold best among methods (not the ceiling), CI, paired comparison, reported-on-real-data labelling
    assert "oracle ‡" in cv and "radiomics-cox †" in cv and "**" in cv and "95 % CI" in cv
    assert "Paired C-td difference against `coxph`" in cv and "not comparable with a synthetic cohort" in cv
    assert "fingerprint" in cv and "newest run record" in cv and "definitions version" in cv
    assert "| 0%" in robust and "100%" in robust and "relative drop" in robust
    assert "Leave one centre out" in gen and "CHUM" in gen
    assert (out / slug / "plots" / "robustness.png").stat().st_size > 1000
    assert list((out / slug / "plots").glob("km__clean__coxph__*.png"))
    # regeneration is stable (no rendering time on the pages) and --check passes from the records alone
    before = {p: p.read_text() for p in out.rglob("*.md")}
    again = run_bench("leaderboard", "--out", str(out))
    assert again.returncode == 0 and {p: p.read_text() for p in out.rglob("*.md")} == before
    ok = run_bench("leaderboard", "--out", str(out), "--check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # a hand edit is caught, with the difference printed
    (out / slug / "cv.md").write_text(cv.replace("coxph", "c0xph", 1))
    stale = run_bench("leaderboard", "--out", str(out), "--check")
    assert stale.returncode == 1 and "c0xph" in stale.stdout and "stale" in stale.stderr
    (out / slug / "cv.md").write_text(cv)
    # so is a record that changed under the pages, and a missing plot
    rec = json.loads(records[0].read_text())
    rec["folds"][0]["metrics"]["cindex_td"] = 0.123
    records[0].write_text(json.dumps(rec))
    assert run_bench("leaderboard", "--out", str(out), "--check").returncode == 1
    run_bench("leaderboard", "--out", str(out))
    shutil.rmtree(out / slug / "plots")
    missing = run_bench("leaderboard", "--out", str(out), "--check")
    assert missing.returncode == 1 and "referenced plot missing" in missing.stdout


def test_leaderboard_input_errors(tmp_path):
    empty = run_bench("leaderboard", "--out", str(tmp_path / "none"))
    assert empty.returncode == 2 and "no run records" in empty.stderr and "Traceback" not in empty.stderr
    bad = tmp_path / "lb" / "records" / "x"
    bad.mkdir(parents=True)
    (bad / "r.json").write_text("{broken")
    out = run_bench("leaderboard", "--out", str(tmp_path / "lb"))
    assert out.returncode == 2 and "r.json" in out.stderr


def test_bench_report_shows_one_method_under_one_protocol(smoke_results):
    done = run_bench("report", "radiomics-cox", "--protocol", "noisy50", "--results", str(smoke_results))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "config:" in text and "select_k = 5" in text and "environment:" in text and "scikit-survival" in text
    assert "per fold:" in text and "fold0" in text and "cindex_td" in text
    assert "noise on test, fraction 0.5" in text and "training curves:" in text
    missing = run_bench("report", "radiomics-cox", "--protocol", "nope", "--results", str(smoke_results))
    assert missing.returncode == 2 and "no stored runs" in missing.stderr and "Traceback" not in missing.stderr


def test_an_experiment_cut_between_folds_is_not_exported(smoke_results, tmp_path, caplog):
    """Every started job done is not enough: all of the stored split's folds must have run."""
    import sqlite3

    from bench.leaderboard import export_records

    results = tmp_path / "results"
    shutil.copytree(smoke_results, results)
    con = sqlite3.connect(results / "runs.sqlite")
    with con:
        n = con.execute("DELETE FROM runs WHERE method = 'coxph' AND protocol = 'clean' AND fold = 2").rowcount
    con.close()
    assert n == 1
    with caplog.at_level("WARNING", logger="bench.leaderboard"):
        written = export_records(results, tmp_path / "out")
    names = {p.name.split("__")[0] + "/" + p.name.split("__")[1] for p in written}
    assert "clean/coxph" not in names and "clean/oracle" in names and "noisy50/coxph" in names
    assert "fold(s) [2] not run yet" in caplog.text
