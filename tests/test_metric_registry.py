"""The metric registry: what protocols may report, how outside metrics are scored and bootstrapped, and the
order and labels of columns."""
import numpy as np
import pytest

from bench import MetricSpec, SummarySpec, register_metric
from bench.errors import BenchInputError
from bench.metric_registry import available, column_order, get_metric, spec_of_column, unregister_metric
from bench.metrics import cindex_harrell
from bench.protocols import load_protocol, parse_protocol
from bench.scoring import score


def _pred(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.round(rng.exponential(900 * np.exp(-x))) + 1
    c = rng.uniform(200, 1600, n)
    tt = np.round(rng.exponential(900, 2 * n)) + 1
    return {"time": np.minimum(t, c), "event": t <= c, "risk": x + rng.normal(scale=0.7, size=n),
            "train_time": tt, "train_event": rng.uniform(size=2 * n) < 0.6, "train_risk": rng.normal(size=2 * n)}


@pytest.fixture
def harrell_again():
    """Harrell's C registered from outside, with no replicates function of its own."""
    spec = register_metric(MetricSpec("harrell_again", "Harrell again", "Harrell's C, recomputed per resample",
                                      lambda x: cindex_harrell(x.time, x.event, x.risk)))
    yield spec
    unregister_metric("harrell_again")


def _metrics(report, bootstrap=40):
    content = load_protocol("clean").content()
    return {**content["metrics"], "report": report, "bootstrap": bootstrap}


def test_outside_metric_is_scored_on_the_same_resamples_as_the_projects_own(harrell_again):
    scored = score(_metrics(["cindex_harrell", "harrell_again"]), _pred(), boot_seed=7)
    assert scored.metrics["harrell_again"] == scored.metrics["cindex_harrell"]
    assert scored.manifest["definitions"]["harrell_again"] == harrell_again.definition
    # the generic per-resample path and the fast kernel see the same patients: paired replicates agree
    np.testing.assert_allclose(scored.replicates["harrell_again"], scored.replicates["cindex_harrell"], rtol=1e-6)


def test_protocols_accept_registered_metrics_and_name_unknown_ones(harrell_again):
    data = {**load_protocol("clean").content(), "name": "mine"}
    data["metrics"] = {**data["metrics"], "report": ["cindex_td", "harrell_again"]}
    assert parse_protocol(data, "mine.toml").metrics["report"] == ["cindex_td", "harrell_again"]
    data["metrics"]["report"] = ["cindex_td", "harell_again"]
    with pytest.raises(BenchInputError, match=r"mine.toml.*metrics.report"):
        parse_protocol(data, "mine.toml")
    data["metrics"]["report"] = ["cindex_td", "relative_drop"]  # a summary across protocols, not a job metric
    with pytest.raises(BenchInputError, match="relative_drop"):
        parse_protocol(data, "mine.toml")


def test_registry_refuses_bad_specs():
    with pytest.raises(BenchInputError, match="survbench's own"):
        register_metric(MetricSpec("cindex_td", "C", "d", lambda x: 0.5))
    with pytest.raises(BenchInputError, match="needs"):
        MetricSpec("m", "M", "d", lambda x: 0.5, needs=("risk", "images"))
    with pytest.raises(BenchInputError, match="bootstrap"):
        MetricSpec("m", "M", "d", lambda x: 0.5, bootstrap="folds")
    with pytest.raises(BenchInputError, match="unknown metric 'cindex_t'.*did you mean 'cindex_td'"):
        get_metric("cindex_t")


def test_columns_keep_the_registry_order_and_labels():
    columns = ["logrank_p", "td_auc_5y", "dice_gtvn", "ibs", "td_auc", "td_auc_1y", "zzz", "cindex_td"]
    assert sorted(columns, key=column_order) == ["cindex_td", "td_auc", "td_auc_1y", "td_auc_5y", "ibs",
                                                 "dice_gtvn", "logrank_p", "zzz"]
    assert spec_of_column("td_auc_2y")[1].label_of("td_auc_2y") == "AUROC 2y"
    assert spec_of_column("dice_gtvp")[1].label_of("dice_gtvp") == "DSC GTVp"
    assert spec_of_column("zzz") is None
    assert list(available())[:3] == ["cindex_td", "cindex_harrell", "cindex_uno"]


def test_summary_metrics_registered_in_process_reach_the_robustness_page(tmp_path):
    from bench.leaderboard import _robustness_page, load_records

    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "leaderboards"
    shutil.copytree(src / "records" / "synthetic-quick-0", tmp_path / "records" / "synthetic-quick-0")
    recs = [r for r in load_records(tmp_path) if r["split"].get("kind") == "kfold"]
    register_metric(SummarySpec("worst_level", "worst C-td", "the lowest fold-mean C-td over the fractions run",
                                lambda p: min(p.values())))
    try:
        page = _robustness_page("synthetic-quick-0", recs)
    finally:
        unregister_metric("worst_level")
    header = next(l for l in page.text.splitlines() if l.startswith("| method"))
    assert header.rstrip(" |").endswith("worst C-td") and "relative drop" in header


@pytest.fixture
def installed(monkeypatch):
    """Pretend these (name, value) entry points of group bench.metrics are installed."""
    from importlib.metadata import EntryPoint

    import bench.metric_registry as R
    import bench.registry as registry

    def install(*pairs):
        eps = [EntryPoint(n, v, R.GROUP) for n, v in pairs]
        real = registry.entry_points
        monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == R.GROUP else real(group=group))
        R._installed.cache_clear()
        for name, _ in pairs:
            R._failed.pop(name, None), R._loaded.pop(name, None), R._warned.discard(name)
    yield install
    R._installed.cache_clear()


def test_a_broken_outside_metric_is_named_and_harms_nothing_else(installed, tmp_path, monkeypatch, caplog):
    (tmp_path / "broken_metric.py").write_text("raise RuntimeError('half-written plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    installed(("broken", "broken_metric:SPEC"))
    with caplog.at_level("WARNING"):
        assert sorted(["zzz", "cindex_td"], key=column_order) == ["cindex_td", "zzz"]
        column_order("ibs")
    assert sum("half-written plugin" in r.getMessage() for r in caplog.records) == 1  # warned once
    with pytest.raises(BenchInputError, match="broken.*RuntimeError: half-written plugin"):
        get_metric("broken")
    data = load_protocol("clean").content()
    data["metrics"] = {**data["metrics"], "report": ["cindex_td", "broken"]}
    with pytest.raises(BenchInputError, match="mine.toml: metrics.report 'broken'"):
        parse_protocol(data, "mine.toml")


def test_two_packages_claiming_one_metric_name_make_it_unusable(installed):
    installed(("twin", "pkg_a:SPEC"), ("twin", "pkg_b:SPEC"))
    with pytest.raises(BenchInputError, match="twin.*registered by.*pkg_a:SPEC.*pkg_b:SPEC"):
        get_metric("twin")


def test_an_outside_metric_that_raises_is_nan_with_its_reason_not_a_failed_job():
    def bad(x):
        raise KeyError("no such column")

    register_metric(MetricSpec("raises", "R", "always raises", bad))
    try:
        scored = score(_metrics(["cindex_harrell", "raises"]), _pred(), boot_seed=1)
    finally:
        unregister_metric("raises")
    assert scored.metrics["raises"] is None and scored.metrics["cindex_harrell"] is not None
    assert any("raises: the metric raised KeyError" in n for n in scored.notes)


def test_report_names_are_checked_one_by_one_with_hints():
    data = {**load_protocol("clean").content(), "name": "mine"}
    data["metrics"] = {**data["metrics"], "report": ["cindex_td", "cindx_harrell"]}
    with pytest.raises(BenchInputError, match="did you mean 'cindex_harrell'"):
        parse_protocol(data, "mine.toml")
    data["metrics"]["report"] = ["cindex_td", "relative_drop"]
    with pytest.raises(BenchInputError, match="summary across protocols"):
        parse_protocol(data, "mine.toml")


def test_an_outside_metric_cannot_take_a_column_of_the_projects_own():
    for name in ("td_auc_10y", "dice_gtvp", "relative_drop"):
        with pytest.raises(BenchInputError, match="survbench's own"):
            register_metric(MetricSpec(name, "X", "d", lambda x: 0.5))


def test_a_failing_summary_metric_shows_na_and_a_bad_axis_is_refused():
    bad = SummarySpec("fails", "fails", "d", lambda p: 1 / 0)
    assert bad.cell({0.0: 0.7, 0.5: 0.6}) == "n/a"
    with pytest.raises(BenchInputError, match="axis"):
        SummarySpec("other", "o", "d", lambda p: 0.0, axis="severity")
