"""How the runner scores jobs: every reported metric, derived curves, stored manifest and replicates, CIs,
rescoring old rows, and paired comparisons between methods."""
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

import bench
from bench.data import load_dataset
from bench.metrics import METRICS_VERSION, MetricWarning, bootstrap_ci, cindex_harrell
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.results import compare, results_frame, summary_numbers
from bench.runner import plan_methods, run_jobs
from bench.scoring import bootstrap_seed, score
from bench.store import Store, unpack_arrays
from bench.survival import breslow_curves
from helpers import run_bench


def _outcomes(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.round(rng.exponential(900 * np.exp(-x))) + 1
    c = rng.uniform(200, 1600, n)
    return np.minimum(t, c), t <= c, x + rng.normal(scale=0.7, size=n)


def test_breslow_curves_keep_the_ranking_and_never_flip_it():
    tt, te, tr = _outcomes(200, 1)
    risk = np.linspace(-2, 2, 9)
    surv, times, info = breslow_curves(tt, te, tr, risk)
    assert surv.shape == (9, len(times)) and np.all(np.diff(times) > 0)
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 1e-12)  # non-increasing in t
    assert np.all(np.diff(surv, axis=0) <= 1e-12)  # higher risk, lower survival
    assert info["beta"] > 0.3
    # a risk that is inverted on the training fold gets the floor slope: nearly flat, never reversed
    with pytest.warns(MetricWarning, match="does not rank"):
        surv2, _, info2 = breslow_curves(tt, te, -tr, risk)
    assert info2["fitted_beta"] < 0 and info2["beta"] == pytest.approx(1e-3)
    assert np.all(np.diff(surv2, axis=0) <= 1e-12)


def test_breslow_slope_is_the_cox_estimate():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    tt, te, tr = _outcomes(300, 4)
    tt = np.round(tt / 30)  # tied times: Breslow's tie handling on both sides
    z = (tr - np.median(tr)) / tr.std()
    ref = CoxPHSurvivalAnalysis(ties="breslow").fit(z[:, None], Surv.from_arrays(te, tt)).coef_[0]
    _, _, info = breslow_curves(tt, te, tr, tr[:5])
    assert info["beta"] == pytest.approx(ref, abs=1e-4)


def test_breslow_survives_separation_and_heavy_tailed_risks():
    tt, te, tr = _outcomes(300, 5)
    order = np.argsort(np.where(te, tt, np.inf))
    separating = np.empty(300)
    separating[order] = -np.arange(300.0)  # earlier events, higher risk: the training fold is separated
    with pytest.warns(MetricWarning, match="separates"):
        surv, _, info = breslow_curves(tt, te, separating, separating[:10])
    assert info["beta"] == 10.0 and info["fitted_beta"] is None and np.all(np.isfinite(surv))
    assert surv[:, -1].max() > 0 or surv[:, 0].min() < 1  # not collapsed to all-0 curves
    # a hazard-ratio-scale score (exp of a linear predictor) still gives sensible curves
    t, e, r = _outcomes(150, 6)
    pred = {"risk": np.exp(3 * r), "time": t, "event": e, "train_risk": np.exp(3 * tr), "train_time": tt,
            "train_event": te}
    s = score(load_protocol("clean").metrics | {"bootstrap": 0}, pred, boot_seed=0)
    assert 0 < s.metrics["ibs"] < 0.25


def test_no_training_event_gives_nan_curves_metrics_with_reason():
    t, e, r = _outcomes(60, 7)
    pred = {"risk": r, "time": t, "event": e, "train_risk": r, "train_time": t, "train_event": np.zeros(60, bool)}
    s = score(load_protocol("clean").metrics | {"bootstrap": 0}, pred, boot_seed=0)
    assert s.metrics["cindex_td"] is None and s.metrics["ibs"] is None
    assert s.metrics["cindex_harrell"] is not None
    assert any("no event to fit a Breslow baseline" in n for n in s.notes)


def test_score_reports_every_metric_with_replicates_and_manifest():
    t, e, r = _outcomes(120, 2)
    tt, te, tr = _outcomes(400, 3)
    metrics = load_protocol("clean").metrics
    pred = {"risk": r, "time": t, "event": e, "train_risk": tr, "train_time": tt, "train_event": te}
    s = score(metrics, pred, boot_seed=7)
    for key in ("cindex_td", "cindex_harrell", "cindex_uno", "td_auc", "td_auc_1y", "td_auc_2y", "ibs", "logrank_p"):
        assert key in s.metrics, key
    assert s.metrics["cindex_harrell"] == pytest.approx(cindex_harrell(t, e, r))
    assert 0.6 < s.metrics["cindex_td"] < 0.9 and 0 < s.metrics["ibs"] < 0.25
    assert s.metrics["td_auc_5y"] is None and any("1826.25" in n for n in s.notes)  # beyond follow-up
    assert s.manifest["metrics_version"] == METRICS_VERSION
    assert s.manifest["survival_curves"]["source"].startswith("derived: Breslow")
    assert "not applicable" in s.manifest["dice"]
    assert set(s.replicates) >= {"cindex_td", "cindex_harrell", "cindex_uno", "td_auc", "td_auc_1y", "ibs"}
    assert all(len(v) == 1000 for v in s.replicates.values())
    # the stored replicates give the same interval as bootstrap_ci with that seed
    _, lo, hi = bootstrap_ci(cindex_harrell, t, e, r, n=1000, seed=7)
    reps = s.replicates["cindex_harrell"].astype(float)
    assert np.quantile(reps, [0.025, 0.975]) == pytest.approx([lo, hi], abs=1e-6)
    # a method's own curves are used as given
    grid = np.linspace(30, 2400, 50)
    own = np.exp(-np.outer(np.exp(r), grid) / 1500)
    s2 = score(metrics, pred | {"survival": own, "times": grid}, boot_seed=7)
    assert s2.manifest["survival_curves"] == {"source": "method"}


def test_bootstrap_seed_is_shared_by_methods_noise_levels_and_run_seeds_of_a_fold():
    m = load_protocol("clean").metrics
    assert bootstrap_seed(m, "abc", 0) == bootstrap_seed(m, "abc", 0)
    assert bootstrap_seed(m, "abc", 0) != bootstrap_seed(m, "abc", 1)
    assert bootstrap_seed(m, "abc", 0) != bootstrap_seed(m, "abd", 0)
    assert bootstrap_seed(load_protocol("noisy50").metrics, "abc", 0) == bootstrap_seed(m, "abc", 0)


class RandomRisk(bench.Method):
    """Risk unrelated to outcome (a method that learned nothing)."""

    consumes = ("clinical",)
    configs = {"smoke": {}, "quick": {}, "paper": {}}

    def fit(self, train, val):
        self.seed = self.ctx.seed

    def predict(self, cohort):
        return bench.Prediction(np.random.default_rng(len(cohort.ids) + self.seed).normal(size=len(cohort.ids)))


@pytest.fixture
def random_method():
    register_method("unit-random-risk")(RandomRisk)
    yield "unit-random-risk"
    unregister_method("unit-random-risk")


def test_run_stores_cis_and_compares_methods(tmp_path, tiny_dataset_dir, random_method):
    ds = load_dataset(str(tiny_dataset_dir))
    plans = plan_methods(["coxph", random_method], "smoke", [])
    report = run_jobs(plans, [load_protocol("clean")], ds, scale="smoke", seeds=[0], results_dir=tmp_path,
                      progress=False)
    assert report.ran == 10 and not report.failed
    frame = results_frame(Store(tmp_path), with_bootstrap=True)
    numbers = summary_numbers(frame)
    row = numbers[numbers.method == "coxph"].iloc[0]
    assert row.cindex_td_low < row.cindex_td_mean < row.cindex_td_high
    cmp = compare(frame, "coxph", "cindex_td")
    assert list(cmp.method) == [random_method]
    r = cmp.iloc[0]
    assert r.jobs == 5 and r.low <= r["diff"] <= r.high and 0 < r.p <= 1 and r.p_holm >= r.p
    # the CLI prints the same comparison; an unknown reference or metric is a clear error
    out = run_bench("results", "--results", str(tmp_path), "--compare", "coxph")
    assert out.returncode == 0 and random_method in out.stdout and "p_holm" in out.stdout
    # a second config of coxph: the reference must then be named with its config, and the two coxph
    # configs are compared with each other too
    plans2 = plan_methods(["coxph"], "smoke", ["alpha=5.0"])
    run_jobs(plans2, [load_protocol("clean")], ds, scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
    frame = results_frame(Store(tmp_path), with_bootstrap=True)
    with pytest.raises(bench.BenchInputError, match="2 configs of coxph"):
        compare(frame, "coxph")
    ref = plans[0].config_hash
    cmp = compare(frame, f"coxph@{ref[:8]}")
    assert sorted(cmp.method) == ["coxph", random_method] and set(cmp.reference_config) == {ref}
    assert (cmp.jobs == 5).all()
    bad = run_bench("results", "--results", str(tmp_path), "--compare", "nosuch")
    assert bad.returncode == 2 and "nosuch" in bad.stderr
    bad = run_bench("results", "--results", str(tmp_path), "--compare", "coxph", "--metric", "accuracy")
    assert bad.returncode == 2 and "accuracy" in bad.stderr


def test_old_store_is_migrated_and_rescored_without_refitting(tmp_path, tiny_dataset_dir):
    ds = load_dataset(str(tiny_dataset_dir))
    plans = plan_methods(["coxph"], "smoke", [])
    protocol = load_protocol("clean")
    run_jobs(plans, [protocol], ds, scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
    db = tmp_path / "runs.sqlite"
    before = {r["fold"]: r for r in Store(tmp_path).rows()}
    # make it look like a schema-1 store scored by the interim harness (Harrell's C only)
    con = sqlite3.connect(db)
    with con:
        con.execute("ALTER TABLE runs DROP COLUMN manifest")
        con.execute("ALTER TABLE runs DROP COLUMN bootstrap")
        con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
        for fold, r in before.items():
            old = {"cindex_harrell": json.loads(r["metrics"])["cindex_harrell"]}
            con.execute("UPDATE runs SET metrics=? WHERE fold=?", (json.dumps(old), fold))
    con.close()
    report = run_jobs(plans, [protocol], ds, scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
    assert report.ran == 0 and report.fits == 0 and report.rescored == 5 and report.skipped == 5
    after = {r["fold"]: r for r in Store(tmp_path).rows()}
    for fold, r in after.items():
        assert json.loads(r["metrics"]) == json.loads(before[fold]["metrics"])
        assert r["predictions"] == before[fold]["predictions"] and r["finished_at"] == before[fold]["finished_at"]
        assert json.loads(r["manifest"])["metrics_version"] == METRICS_VERSION
        assert np.array_equal(unpack_arrays(r["bootstrap"])["cindex_td"],
                              unpack_arrays(before[fold]["bootstrap"])["cindex_td"], equal_nan=True)
    # and a third run has nothing to do
    report = run_jobs(plans, [protocol], ds, scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
    assert report.rescored == 0 and report.ran == 0


def test_pooled_ci_drops_resamples_where_a_fold_is_undefined():
    frame = pd.DataFrame({
        "method": ["m"] * 3, "protocol": ["p"] * 3, "protocol_hash": ["h"] * 3, "config_hash": ["c"] * 3,
        "dataset": ["d"] * 3, "dataset_fp": ["f"] * 3, "scale": ["quick"] * 3, "status": ["done"] * 3,
        "fold": [0, 1, 2], "seed": [0, 0, 0], "fit_seconds": [1.0] * 3, "m1": [0.9, 0.5, np.nan],
        "bootstrap": [{"m1": np.array([0.9, 0.9, 0.9, 0.9])}, {"m1": np.array([0.5, np.nan, 0.5, 0.5])},
                      {"m1": np.array([np.nan] * 4)}],
    })
    row = summary_numbers(frame).iloc[0]
    # fold 2 has no value, so it is not pooled; resample 1 (fold 1 undefined) is dropped, not averaged as 0.9
    assert row.m1_mean == pytest.approx(0.7) and row.m1_low == pytest.approx(0.7) and row.m1_high == pytest.approx(0.7)


def test_summary_ci_needs_every_fold_to_have_replicates(tmp_path):
    frame = pd.DataFrame({
        "method": ["m", "m"], "protocol": ["p", "p"], "protocol_hash": ["h", "h"], "config_hash": ["c", "c"],
        "dataset": ["d", "d"], "dataset_fp": ["f", "f"], "scale": ["quick", "quick"], "status": ["done", "done"],
        "fold": [0, 1], "seed": [0, 0], "fit_seconds": [1.0, 1.0], "cindex_td": [0.6, 0.7],
        "bootstrap": [{"cindex_td": np.full(10, 0.6)}, None],
    })
    row = summary_numbers(frame).iloc[0]
    assert row.cindex_td_mean == pytest.approx(0.65) and np.isnan(row.cindex_td_low)
    frame.at[1, "bootstrap"] = {"cindex_td": np.linspace(0.6, 0.8, 10)}
    row = summary_numbers(frame).iloc[0]
    assert 0.6 <= row.cindex_td_low < row.cindex_td_high <= 0.7


class EchoMask(bench.Method):
    """Segments by returning the reference mask it is shown (needs_mask_at_test): Dice must be 1."""

    consumes = ("ct", "mask")
    produces = ("risk", "segmentation")
    needs_mask_at_test = True
    configs = {"smoke": {}, "quick": {}, "paper": {}}

    def fit(self, train, val):
        self.n = len(train.ids)

    def predict(self, cohort):
        import SimpleITK as sitk

        files = cohort.image_files
        seg = {p: sitk.GetArrayFromImage(sitk.ReadImage(str(files[p].mask))) for p in cohort.ids}
        return bench.Prediction(np.arange(len(cohort.ids), dtype=float), segmentation=seg)


def test_segmentation_is_scored_as_aggregate_dice(synthetic_smoke, tmp_path):
    register_method("unit-echo-mask")(EchoMask)
    try:
        report = run_jobs(plan_methods(["unit-echo-mask"], "smoke", []), [load_protocol("clean")], synthetic_smoke,
                          scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
        assert report.ran == 5 and not report.failed
        # a row scored before DSC intervals existed (no Dice replicates) is rescored by the next run
        with sqlite3.connect(tmp_path / "runs.sqlite") as con:
            con.execute("UPDATE runs SET manifest = json_remove(manifest, '$.bootstrap.dice') WHERE fold IN (0, 1)")
            # fold 1: GTVp undefined (stored as null), GTVn scored: still a row with a Dice score
            con.execute("UPDATE runs SET metrics = json_set(metrics, '$.dice_gtvp', json('null')) WHERE fold = 1")
        again = run_jobs(plan_methods(["unit-echo-mask"], "smoke", []), [load_protocol("clean")], synthetic_smoke,
                         scale="smoke", seeds=[0], results_dir=tmp_path, progress=False)
        assert again.ran == 0 and again.rescored == 2
    finally:
        unregister_method("unit-echo-mask")
    for row in Store(tmp_path).rows():
        metrics = json.loads(row["metrics"])
        assert metrics["dice_gtvp"] == pytest.approx(1.0)
        assert metrics.get("dice_gtvn") in (None, pytest.approx(1.0))
        manifest = json.loads(row["manifest"])
        assert "dice" not in manifest  # applicable, so no "not applicable" line
        assert manifest["bootstrap"]["dice"] is True  # DSC replicates for its CI
