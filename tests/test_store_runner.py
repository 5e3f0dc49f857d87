from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

import bench
from bench.errors import BenchInputError
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.runner import plan_methods, run_jobs
from bench.store import Store


class Killer(bench.Method):
    """Age as risk; ``kill_on_fit`` simulates the process being killed during the n-th fit."""

    consumes = ("clinical",)
    configs = {"smoke": {"w": 1.0}}
    kill_on_fit: int | None = None
    fits = 0

    def fit(self, train, val):
        type(self).fits += 1
        if type(self).kill_on_fit == type(self).fits:
            raise KeyboardInterrupt("simulated kill")
        self.mean_ = float(train.clinical["Age"].mean())

    def predict(self, cohort):
        return bench.Prediction(self.config["w"] * (cohort.clinical["Age"].fillna(self.mean_).to_numpy()))


@pytest.fixture
def killer():
    register_method("killer")(Killer)
    Killer.kill_on_fit, Killer.fits = None, 0
    yield Killer
    unregister_method("killer")


def _run(dataset, protocols, results, **kw):
    return run_jobs(plan_methods(["killer"], "smoke", []), [load_protocol(p) for p in protocols], dataset,
                    scale="smoke", seeds=[0], results_dir=results, **kw, progress=False)


def _count(results, status=None):
    return len(Store(results).rows(status))


def test_resume_after_a_kill_redoes_only_the_unfinished_job(killer, tiny_dataset, tmp_path):
    killer.kill_on_fit = 3
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, ["clean"], tmp_path)
    rows = Store(tmp_path).rows()
    assert [r["status"] for r in rows] == ["done", "done", "running"]
    finished = {r["fold"]: r["finished_at"] for r in rows if r["status"] == "done"}
    killer.kill_on_fit = None
    report = _run(tiny_dataset, ["clean"], tmp_path)
    assert report.skipped == 2 and report.ran == 3
    rows = Store(tmp_path).rows()
    assert len(rows) == 5 and {r["status"] for r in rows} == {"done"}
    assert {r["fold"]: r["finished_at"] for r in rows if r["fold"] in finished} == finished
    again = _run(tiny_dataset, ["clean"], tmp_path)
    assert again.ran == 0 and again.skipped == 5 and _count(tmp_path) == 5


def test_test_side_corruption_reuses_one_model_per_fold(killer, tiny_dataset, tmp_path):
    report = _run(tiny_dataset, ["clean", "noisy50"], tmp_path)
    assert report.fits == 5 and report.ran == 10
    later = _run(tiny_dataset, ["noisy10", "noisy100"], tmp_path)
    assert later.fits == 0 and later.reused_models == 5 and later.ran == 10
    assert killer.fits == 5
    rows = {(r["protocol"], r["fold"]): r for r in Store(tmp_path).rows()}
    assert rows[("noisy10", 0)]["train_key"] == rows[("clean", 0)]["train_key"]
    assert rows[("noisy10", 0)]["model_reused"] == 1


def test_corruption_manifest_is_nested_and_stored(killer, tiny_dataset, tmp_path):
    import json

    _run(tiny_dataset, ["noisy10", "noisy50", "noisy100"], tmp_path)
    manifests = {}
    for r in Store(tmp_path).rows():
        m = json.loads(r["corruption"])
        assert m["affects_inputs"] is False  # a clinical-only method's inputs are untouched
        manifests.setdefault(r["protocol"], set()).update(p for p, e in m["patients"].items() if e["corrupted"])
    assert manifests["noisy10"] <= manifests["noisy50"] <= manifests["noisy100"]
    assert manifests["noisy100"] == set(tiny_dataset.ids)


def test_predictions_are_stored_per_patient(killer, tiny_dataset, tmp_path):
    from bench.store import unpack_arrays

    _run(tiny_dataset, ["clean"], tmp_path)
    row = Store(tmp_path).rows()[0]
    arrays = unpack_arrays(row["predictions"])
    assert len(arrays["ids"]) == len(arrays["risk"]) == len(arrays["time"]) == len(arrays["event"])
    assert len(arrays["train_risk"]) == len(arrays["train_ids"]) == 30 - len(arrays["ids"])
    age = tiny_dataset.clinical.loc[list(arrays["ids"]), "Age"].to_numpy()
    np.testing.assert_allclose(arrays["risk"], age)


def test_two_runs_never_duplicate_a_row(killer, tiny_dataset, tmp_path):
    _run(tiny_dataset, ["clean"], tmp_path)
    _run(tiny_dataset, ["clean"], tmp_path)
    assert _count(tmp_path) == 5
    row = Store(tmp_path).rows()[0]
    with sqlite3.connect(tmp_path / "runs.sqlite") as con, pytest.raises(sqlite3.IntegrityError):
        con.execute(
            "INSERT INTO runs (method, config_hash, dataset_fp, protocol_hash, fold, seed, status) "
            "VALUES (?,?,?,?,?,?,'done')",
            tuple(row[k] for k in ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed")),
        )


def test_a_method_bug_is_recorded_and_the_sweep_goes_on(killer, tiny_dataset, tmp_path, monkeypatch):
    def broken(self, train, val):
        raise RuntimeError("boom")

    monkeypatch.setattr(Killer, "fit", broken)
    report = _run(tiny_dataset, ["clean"], tmp_path)
    assert len(report.failed) == 5
    rows = Store(tmp_path).rows()
    assert {r["status"] for r in rows} == {"failed"} and "boom" in rows[0]["error"]


def test_a_non_database_store_is_refused_and_left_untouched(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(BenchInputError, match="not a usable results database"):
        Store(tmp_path)
    assert (tmp_path / "runs.sqlite").read_bytes() == b"not a database at all" * 100


def test_config_changes_make_new_rows_not_overwrites(killer, tiny_dataset, tmp_path):
    _run(tiny_dataset, ["clean"], tmp_path)
    plans = plan_methods(["killer"], "smoke", ["w=2"])
    run_jobs(plans, [load_protocol("clean")], tiny_dataset, scale="smoke", seeds=[0], results_dir=tmp_path,
             progress=False)
    rows = Store(tmp_path).rows()
    assert len(rows) == 10 and len({r["config_hash"] for r in rows}) == 2


def test_a_bad_prediction_is_a_failed_job_naming_the_method(killer, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(Killer, "predict", lambda self, cohort: bench.Prediction(np.full(len(cohort), np.nan)))
    report = _run(tiny_dataset, ["clean"], tmp_path)
    assert len(report.failed) == 5
    assert "method 'killer': risk has" in Store(tmp_path).rows()[0]["error"]


def test_summary_keeps_different_configs_apart(killer, tiny_dataset, tmp_path):
    from bench.results import results_frame, summarise, summary_numbers

    _run(tiny_dataset, ["clean"], tmp_path)
    run_jobs(plan_methods(["killer"], "smoke", ["w=-1"]), [load_protocol("clean")], tiny_dataset, scale="smoke",
             seeds=[0], results_dir=tmp_path, progress=False)
    numbers = summary_numbers(results_frame(Store(tmp_path)))
    assert len(numbers) == 2 and list(numbers.done) == [5, 5]
    means = sorted(numbers.cindex_harrell_mean)
    assert means[0] == pytest.approx(1 - means[1])  # negated risk mirrors the C-index
    assert "config_hash" in summarise(results_frame(Store(tmp_path))).columns


def test_metric_nan_comes_with_its_reason():
    from bench.scoring import score

    pred = {"risk": np.arange(4.0), "time": np.arange(1.0, 5.0), "event": np.zeros(4, int),
            "train_risk": np.arange(6.0), "train_time": np.arange(1.0, 7.0), "train_event": np.ones(6, int)}
    scored = score(load_protocol("clean").metrics, pred, boot_seed=0)
    assert scored.metrics["cindex_harrell"] is None and any("no events" in n for n in scored.notes)
    assert scored.metrics["cindex_td"] is None and scored.manifest["survival_curves"]["source"].startswith("derived")


def test_exported_rows_resume_a_sweep_in_a_fresh_store(killer, tiny_dataset, tmp_path):
    """A sweep cut between folds, carried as files to an empty store, redoes only the missing folds."""
    from bench.row_files import export_rows, import_rows

    killer.kill_on_fit = 3
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, ["clean"], tmp_path / "a")
    written, same = export_rows(Store(tmp_path / "a"), tmp_path / "rows")
    assert (written, same) == (2, 0)  # the running row is not carried
    assert export_rows(Store(tmp_path / "a"), tmp_path / "rows") == (0, 2)  # unchanged files are not rewritten
    assert list((tmp_path / "rows" / "splits").glob("*.json"))
    assert import_rows(Store(tmp_path / "b"), tmp_path / "rows") == (2, 0)
    assert import_rows(Store(tmp_path / "b"), tmp_path / "rows") == (0, 2)
    before = {r["fold"]: (r["metrics"], r["predictions"]) for r in Store(tmp_path / "a").rows("done")}
    after = {r["fold"]: (r["metrics"], r["predictions"]) for r in Store(tmp_path / "b").rows("done")}
    assert before == after
    killer.kill_on_fit, killer.fits = None, 0
    report = _run(tiny_dataset, ["clean"], tmp_path / "b")
    assert report.skipped == 2 and report.ran == 3 and killer.fits == 3


def test_a_bad_row_file_is_refused_before_anything_is_imported(killer, tiny_dataset, tmp_path):
    from bench.row_files import export_rows, import_rows

    _run(tiny_dataset, ["clean"], tmp_path / "a")
    export_rows(Store(tmp_path / "a"), tmp_path / "rows")
    victim = sorted((tmp_path / "rows").glob("*/*fold3*.json"))[0]
    victim.write_text(victim.read_text().replace('"predictions": "', '"predictions": "!!'))
    with pytest.raises(BenchInputError, match=r"fold3.*predictions are unreadable"):
        import_rows(Store(tmp_path / "b"), tmp_path / "rows")
    assert Store(tmp_path / "b").rows() == []
    victim.write_text("{not json")
    with pytest.raises(BenchInputError, match="not a readable run-row file"):
        import_rows(Store(tmp_path / "b"), tmp_path / "rows")


def test_provenance_of_a_fitted_model_reaches_record_page_and_report(killer, tiny_dataset, tmp_path, monkeypatch):
    """What a model read beyond its config (e.g. encoder weights) is stored per run and named on the pages."""
    from bench import leaderboard as lb
    from bench.report import method_report

    monkeypatch.setattr(Killer, "provenance", lambda self: {"encoder weights": "enc.pt (sha256 abc123)"}, raising=False)
    _run(tiny_dataset, ["clean"], tmp_path / "r")
    env = json.loads(Store(tmp_path / "r").rows("done")[0]["env"])
    assert env["provenance"] == {"encoder weights": "enc.pt (sha256 abc123)"}
    lb.export_records(tmp_path / "r", tmp_path / "lb")
    (record,) = lb.load_records(tmp_path / "lb")
    assert record["provenance"] == {"encoder weights": ["enc.pt (sha256 abc123)"]}
    cv = next(p.text for p in lb.render(tmp_path / "lb", "killer") if p.path.endswith("cv.md"))
    assert "`killer` (`" in cv and "encoder weights: enc.pt (sha256 abc123)" in cv
    assert "encoder weights: enc.pt (sha256 abc123)" in method_report(Store(tmp_path / "r"), "killer", "clean")


def test_drop_experiment_keeps_look_alike_methods_and_configs(tmp_path):
    """drop removes one (method, config) only: not a method whose name extends it, not a config sharing its
    first characters; a longer prefix must match in full; a wrong leaderboard folder is refused."""
    from bench.leaderboard import LeaderboardFiles
    from bench.store import RunKey, Store, drop_experiment

    store = Store(tmp_path / "results")
    info = {"fold_name": "f", "protocol": "clean", "protocol_version": 1, "dataset": "d", "scale": "quick",
            "train_key": "t", "config": {}, "protocol_content": {}, "env": {}}
    same8 = ["aaaa1111" + "0" * 56, "aaaa1111" + "1" * 56]
    for method, h in (("deepmts", same8[0]), ("deepmts", same8[1]), ("deepmts-daft", same8[0]),
                      ("deepmts", "bbbb2222" + "0" * 56)):
        for fold in range(2):
            store.start(RunKey(method, h, "fp", "ph", fold, 0), info)
    lb = tmp_path / "lb"
    for name in ("runs/d/deepmts__clean__bbbb2222-fp-ph__fold0__seed0.json",
                 "runs/d/deepmts-daft__clean__bbbb2222-fp-ph__fold0__seed0.json",
                 "records/d/clean__deepmts__bbbb2222.json", "records/d/clean__deepmts-daft__bbbb2222.json",
                 "d/plots/km__clean__deepmts__bbbb2222.png", "d/plots/km__clean__deepmts-daft__bbbb2222.png"):
        (lb / name).parent.mkdir(parents=True, exist_ok=True)
        (lb / name).write_text("x")
    count = lambda m: sum(r["method"] == m for r in store.rows())  # noqa: E731
    with pytest.raises(BenchInputError, match="matches 2 configs"):
        drop_experiment(store, "deepmts", "aaaa1111", apply=True)
    with pytest.raises(BenchInputError, match="no experiment .* starting 'aaaa11112'"):
        drop_experiment(store, "deepmts", "aaaa11112", apply=True)
    with pytest.raises(BenchInputError, match="no records/ or runs/ folder"):
        drop_experiment(store, "deepmts", "bbbb2222", committed=LeaderboardFiles(lb / "runs"), apply=True)
    with pytest.raises(BenchInputError, match="share the 8 characters"):
        drop_experiment(store, "deepmts", "aaaa11111", committed=LeaderboardFiles(lb), apply=True)
    # a longer prefix names one of the two configs sharing 8 characters: only its rows go
    out = drop_experiment(store, "deepmts", "aaaa11111", apply=True)
    assert out["config"] == [same8[1]] and len(out["rows"]) == 2 and count("deepmts") == 4
    out = drop_experiment(store, "deepmts", "bbbb", committed=LeaderboardFiles(lb), apply=True)
    assert len(out["rows"]) == 2 and len(out["files"]) == 3 and count("deepmts") == 2
    left = sorted(str(p.relative_to(lb)) for p in lb.rglob("*") if p.is_file())
    assert left and all("deepmts-daft" in p for p in left)
    assert count("deepmts-daft") == 2


def test_a_fold_whose_model_is_elsewhere_is_not_refitted_for_the_other_protocols(killer, tiny_dataset, tmp_path):
    """Clean and noisy rows of a fold must come from one fitted model: imported rows without their model make
    `bench run` refuse the other protocols (exit-2 error naming folds and way out), not score them with a new fit."""
    from bench.row_files import export_rows, import_rows

    _run(tiny_dataset, ["clean"], tmp_path / "a")
    export_rows(Store(tmp_path / "a"), tmp_path / "rows")
    import_rows(Store(tmp_path / "b"), tmp_path / "rows")
    before = Store(tmp_path / "b").rows()
    killer.fits = 0
    with pytest.raises(BenchInputError, match=r"(?s)killer \(config [0-9a-f]{8}\): fold0 seed 0 \(clean\).*bench store drop"):
        _run(tiny_dataset, ["noisy10"], tmp_path / "b")
    assert killer.fits == 0 and Store(tmp_path / "b").rows() == before  # nothing fitted, nothing stored
    # where the model is, the same request reuses it; a fold with no finished row is simply fitted
    assert _run(tiny_dataset, ["noisy10"], tmp_path / "a").reused_models == 5
    assert _run(tiny_dataset, ["noisy10"], tmp_path / "c").fits == 5
    # a deleted model file counts as absent
    store = Store(tmp_path / "a")
    next((tmp_path / "a" / "models").glob("*.model")).unlink()
    with pytest.raises(BenchInputError, match="not in"):
        _run(tiny_dataset, ["noisy20"], tmp_path / "a")
    assert len(store.rows("done")) == 10
    # a model file that is there but damaged: refused before any work, with the way to refit
    next((tmp_path / "c" / "models").glob("*.model")).write_bytes(b"not a model")
    fits, done = killer.fits, Store(tmp_path / "c").rows("done")
    with pytest.raises(BenchInputError, match="does not match the sha256.*refit"):
        _run(tiny_dataset, ["noisy30"], tmp_path / "c")
    assert killer.fits == fits and Store(tmp_path / "c").rows("done") == done


def test_rows_record_the_cpu_parallelism(killer, tiny_dataset, tmp_path, monkeypatch):
    """A CPU training repeats bit for bit only at the same thread count, so a job runs pinned to the CPUs its
    method declares (whatever the shell set) and every row says what it ran with, written when the job
    finishes (after fit has loaded the method's libraries); the pin is lifted after the sweep."""
    import json
    import os

    import torch

    from bench.env import threads

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setattr(Killer, "resources", {"smoke": {"cpus": 1}})
    before = torch.get_num_threads()
    seen = []
    monkeypatch.setattr(Killer, "fit", lambda self, train, val: (seen.append(torch.get_num_threads()),
                                                                 setattr(self, "mean_", 60.0)))
    _run(tiny_dataset, ["clean"], tmp_path)
    envs = [json.loads(r["env"]) for r in Store(tmp_path).rows("done")]
    assert seen and set(seen) == {1}
    assert all(e["threads"]["omp_num_threads"] == "1" and e["threads"]["pinned"] == 1 and e["threads"]["torch"] == 1
               for e in envs)
    assert envs[0]["threads"]["cpu_count"] >= 1 and envs[0]["executor"] == "local"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "BENCH_THREADS" not in os.environ
    assert torch.get_num_threads() == before and "pinned" not in threads()


def test_quiet_reaches_the_methods_and_a_reused_model_gets_this_runs_context(killer, tiny_dataset, tmp_path,
                                                                            monkeypatch):
    """`bench -q` (progress=False) is in the context a method fits and predicts with, and a model read back
    from the store predicts with the context of the run that reads it."""
    seen = []
    monkeypatch.setattr(Killer, "predict", lambda self, cohort: (seen.append(self.ctx.progress),
                                                                   bench.Prediction(np.zeros(len(cohort))))[1])
    _run(tiny_dataset, ["clean"], tmp_path)
    assert seen and not any(seen)
    seen.clear()
    run_jobs(plan_methods(["killer"], "smoke", []), [load_protocol("noisy50")], tiny_dataset, scale="smoke",
             seeds=[0], results_dir=tmp_path, progress=True)
    assert seen and all(seen) and _count(tmp_path, "done") == 10
