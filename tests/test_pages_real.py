"""Leaderboard pages of a real dataset (no ground truth): lifelines' rossi table declared by a manifest, with
race as the "centre". None of a synthetic cohort's boilerplate, one log-rank quantity for table and plot,
patients and events per held-out centre, a note for every metric left out, and a mark on rows whose
predictions were made outside survbench."""
from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from helpers import run_bench

SLUG = "manifest-rossi"


@pytest.fixture(scope="module")
def rossi_board(tmp_path_factory):
    """coxph under clean (5 folds) and loco (race 0 / race 1) on rossi; the records and pages built from them."""
    from lifelines.datasets import load_rossi

    base = tmp_path_factory.mktemp("rossi")
    table = load_rossi()
    table.insert(0, "pid", [f"R{i:03d}" for i in range(len(table))])
    table.to_csv(base / "rossi.csv", index=False)
    (base / "study.toml").write_text('[dataset]\nname = "rossi"\ntables = ["rossi.csv"]\nid = "pid"\n'
                                     'time = "week"\nevent = "arrest"\ntime_unit = "weeks"\ncentre = "race"\n')
    results, out = base / "results", base / "board"
    done = run_bench("run", "--method", "coxph", "--protocol", "clean,loco", "--dataset",
                     f"manifest:{base / 'study.toml'}", "--results", str(results))
    assert done.returncode == 0, done.stderr
    made = run_bench("leaderboard", "--results", str(results), "--out", str(out))
    assert made.returncode == 0, made.stderr
    return out


def _pages(out) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.md")}


def _records(out) -> dict[str, dict]:
    return {p.name.split("__")[0]: json.loads(p.read_text()) for p in (out / "records" / SLUG).glob("*.json")}


def _render(out) -> dict[str, str]:
    from bench.leaderboard import render

    return {p.path: p.text for p in render(out)}


def _write_record(out, rec: dict) -> None:
    from bench.leaderboard import record_path

    path = record_path(out, rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")


def _rows(text: str, method: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {method} ")]


def test_a_real_dataset_gets_none_of_the_synthetic_cohorts_text(rossi_board):
    pages = _pages(rossi_board)
    assert set(pages) == {"README.md", f"{SLUG}/cv.md", f"{SLUG}/generalisation.md"}
    for path, text in pages.items():
        low = text.lower()
        for phrase in ("synthetic", "generator", "oracle", "ceiling", "latent", "noisy test images",
                       "not comparable with a synthetic cohort", "true risk"):
            assert phrase not in low, (path, phrase)
    cv = pages[f"{SLUG}/cv.md"]
    assert "# manifest-rossi: cross-validation\n" in cv and "dataset `manifest:rossi`" in cv
    assert "† reads the reference contours at test time. Reported numbers come from the papers, each on its own " \
           "cohort and splits" in cv


def test_synthetic_is_read_from_the_record_or_the_dataset_name(rossi_board, tmp_path):
    from bench.leaderboard import _legend, is_synthetic

    assert is_synthetic({"dataset": "synthetic:quick:v3:0"}) and is_synthetic({"dataset": "demo:0"})
    assert not is_synthetic({"dataset": "manifest:rossi"}) and not is_synthetic({"dataset": "hecktor2022:/d/h"})
    assert is_synthetic({"dataset": "plugin:cohort", "synthetic": True})
    assert not is_synthetic({"dataset": "synthetic:odd", "synthetic": False})
    rec = _records(rossi_board)["clean"]
    assert "synthetic cohort" in " ".join(_legend([dict(rec, dataset="synthetic:quick:v3:0")]))
    # a ceiling row on a real dataset is explained without calling the dataset synthetic
    ceiling = dict(rec, method_info=dict(rec["method_info"], ceiling=True))
    (line,) = _legend([ceiling])
    assert "‡ a ceiling, not a method" in line and "synthetic" not in line


def test_the_log_rank_column_is_the_pooled_p_the_kaplan_meier_plot_shows(rossi_board, monkeypatch, tmp_path):
    from lifelines.statistics import logrank_test

    from bench import leaderboard as lb

    rec = _records(rossi_board)["clean"]
    km = rec["km"]
    t, e, h = (np.asarray(km[k], float) for k in ("time", "event", "high"))
    assert sorted(set(km["fold"])) == [0, 1, 2, 3, 4] and len(t) == 432
    pooled = logrank_test(t[h == 1], t[h == 0], e[h == 1], e[h == 0]).p_value
    fold_mean = np.mean([f["metrics"]["logrank_p"] for f in rec["folds"]])
    assert abs(pooled - fold_mean) > 0.1  # the two quantities differ a lot here: the page must show one
    cv = _pages(rossi_board)[f"{SLUG}/cv.md"]
    header = next(line for line in cv.splitlines() if line.startswith("| method"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    (row,) = _rows(cv, "coxph")
    cell = row[cells.index("pooled log-rank p")].strip("*")
    assert cell == f"{pooled:.3g}", (cell, pooled, fold_mean)
    assert "pooled log-rank p: one test on the test patients of every fold (first seed) pooled, each split at " \
           "its fold's training-median risk — the p the Kaplan–Meier plots show" in cv
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda self, text, *a, **k: titles.append(text))
    lb._km_plot(rec)(tmp_path / "km.png")
    assert titles == [f"coxph · clean · log-rank p = {pooled:.2g}"]


def test_loco_gives_patients_and_events_per_centre_without_centre_facts(rossi_board, tmp_path):
    from lifelines.datasets import load_rossi

    rossi = load_rossi()
    truth = {str(race): (int((rossi.race == race).sum()), int(rossi.arrest[rossi.race == race].sum()))
             for race in (0, 1)}
    gen = _pages(rossi_board)[f"{SLUG}/generalisation.md"]
    table = gen.split("Held-out centres: test patients, events.")[1]
    for centre, (n, events) in truth.items():
        assert re.search(rf"\| {centre} +\| {n} +\| {events} +\|", table), (centre, table)
    loco = _records(rossi_board)["loco"]
    assert "centres" not in loco  # the dataset says nothing of its centres
    assert {f["fold_name"]: (f["n_test"], f["n_events"]) for f in loco["folds"]} == truth
    # a record without its risk-group data still gives the counts, from the folds
    out = tmp_path / "board"
    bare = dict(loco, km={"time": [], "event": [], "high": [], "fold": []})
    _write_record(out, bare)
    text = _render(out)[f"{SLUG}/generalisation.md"]
    assert "Held-out centres: test patients, events." in text
    for centre, (n, events) in truth.items():
        assert re.search(rf"\| {centre} +\| {n} +\| {events} +\|", text)


def test_a_metric_left_out_says_why(rossi_board, tmp_path):
    cv = _pages(rossi_board)[f"{SLUG}/cv.md"]
    header = next(line for line in cv.splitlines() if line.startswith("| method"))
    assert "AUROC" not in header  # rossi's follow-up is 52 weeks: no horizon of 1, 2, 3 or 5 years fits
    assert "- AUROC 1y: left out, n/a for every row: follow-up ends before 1 year (longest test time 364 days)." in cv
    assert "- AUROC 5y: left out, n/a for every row: follow-up ends before 5 years" in cv
    assert "- td-AUROC (mean): left out, n/a for every row: follow-up ends before the first horizon, 1 year" in cv
    # a metric n/a in one fold for another reason: the scoring note, and what the cell is made of
    rec = copy.deepcopy(_records(rossi_board)["clean"])
    rec["folds"][2]["metrics"]["cindex_uno"] = None
    rec["folds"][2]["notes"] = ["cindex_uno: no comparable pair among the test patients"]
    out = tmp_path / "board"
    _write_record(out, rec)
    text = _render(out)[f"{SLUG}/cv.md"]
    assert "- Uno C: `coxph` n/a in fold2: no comparable pair among the test patients, so its cell averages the " \
           "other 4 fold(s)." in text, text
    # and a row with no value at all where another row has one
    other = copy.deepcopy(rec)
    other["method"], other["config_hash"] = "coxph-bis", "b" * 16
    for f in other["folds"]:
        f["metrics"]["ibs"] = None
        f.pop("notes", None)
    other["manifest"]["ibs"] = "not applicable: the method gives no survival curves"
    _write_record(out, other)
    text = _render(out)[f"{SLUG}/cv.md"]
    assert "- IBS: — for `coxph-bis`: not applicable: the method gives no survival curves." in text
    # a held-out centre's C-td
    loco = copy.deepcopy(_records(rossi_board)["loco"])
    fold = next(f for f in loco["folds"] if f["fold_name"] == "0")
    fold["metrics"]["cindex_td"], fold["notes"] = None, ["cindex_td: no comparable pair in the test fold"]
    _write_record(out, loco)
    text = _render(out)[f"{SLUG}/generalisation.md"]
    assert re.search(r"\| coxph +\| — +\| 0\.604 ", text), text
    assert "C-td not shown (\"—\"), and why:\n\n- `coxph` on 0: no comparable pair in the test fold." in text


def test_rows_scored_outside_survbench_are_marked_on_every_page(rossi_board, tmp_path):
    footnote = "- ⊕ predictions made outside survbench (`bench score`); the harness did not train this model."
    out = tmp_path / "board"
    for protocol, rec in _records(rossi_board).items():
        _write_record(out, rec)
        ext = copy.deepcopy(rec)
        ext["method"], ext["config_hash"] = "their-model", "e" * 16
        ext["config"] = {"external": True, "predictions": "their.csv"}
        ext["method_info"] = {}
        _write_record(out, ext)
    pages = _render(out)
    for path in (f"{SLUG}/cv.md", f"{SLUG}/generalisation.md"):
        text = pages[path]
        assert footnote in text, path
        rows = [line for line in text.splitlines() if line.startswith("| their-model")]
        assert rows and all(line.startswith("| their-model ⊕") for line in rows), (path, rows)
        assert "| coxph ⊕" not in text and "| coxph " in text
    assert "[their-model ⊕](plots/km__clean__their-model__eeeeeeee.png)" in pages[f"{SLUG}/cv.md"]
    # without an external row, no footnote
    plain = _pages(rossi_board)
    assert all("⊕" not in text for text in plain.values())


def test_real_pages_regenerate_identically(rossi_board):
    before = _pages(rossi_board)
    again = run_bench("leaderboard", "--out", str(rossi_board), "--check")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _pages(rossi_board) == before
