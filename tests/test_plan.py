"""`bench plan`: the job graph (fits and predictions per method), the cost arithmetic against hand computations,
the LPT wall time, "not measured" where nothing was measured, JSON output, clean exit 2 on bad input, and that
nothing is written: no results folder, no cache, no split file, no generated cohort."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bench.cli import BenchGroup
from bench.method import Method
from bench.plan import DEFAULT_MEASUREMENTS, declared_folds, lpt, plan_cmd
from bench.registry import register_method, unregister_method


@click.group(cls=BenchGroup)
def group() -> None:
    """A stand-in for `bench` with only this command, so the test does not depend on its registration."""


group.add_command(plan_cmd)


def run(args: list[str]):
    return CliRunner().invoke(group, ["plan", *args])


def plan_json(args: list[str]) -> dict:
    r = run([*args, "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def files_under(root: Path) -> set[tuple[str, float]]:
    return {(str(p), p.stat().st_mtime) for p in root.rglob("*")} if root.exists() else set()


# --- a deep method with a measurement written by hand -------------------------------------------------------
class _Deep(Method):
    consumes = ("ct", "pet")
    produces = ("risk",)
    family = "deep"
    resources = {"quick": {"cpus": 2, "gpus": 1}}  # a GPU fit: what bench plan prices in GPU-hours
    configs = {"quick": {"crop": [32, 32, 32], "train": {"epochs": 10, "batch_size": 4, "steps_per_epoch": 0,
                                                         "patience": 0, "lr": 1e-3}}}


class _DeepUnmeasured(_Deep):
    pass


@pytest.fixture
def deep_methods(tmp_path):
    """Two deep methods, one measured in a measurement folder made here: 0.5 s per step at batch 4, 10
    inference images/s, at quick scale."""
    register_method("plan-deep")(_Deep)
    register_method("plan-deep-unmeasured")(_DeepUnmeasured)
    folder = tmp_path / "measured"
    folder.mkdir()
    (folder / "gpu.json").write_text(json.dumps({
        "env": {"device": "cuda", "cudnn_benchmark": True, "n_train": 313},
        "methods": [{"method": "plan-deep", "scale": "quick", "crop_xyz": [32, 32, 32],
                     "stages": [{"stage": "train", "batch_size": 4, "epoch_steps": 10, "timed_steps": 10,
                                 "seconds_timed": 5.0, "epoch_seconds": 5.0}],
                     "inference_images_per_s": 10.0}],
        "encoders": []}))
    yield folder
    unregister_method("plan-deep")
    unregister_method("plan-deep-unmeasured")


# --- the job graph ----------------------------------------------------------------------------------------
def test_fits_and_predictions_counted_by_hand(tmp_path):
    """coxph on clean + noisy10: the two share the clean split and train clean, so one fit per fold (5) and
    two predictions per fit (10); loco adds one fit and one prediction per centre (7 in the quick cohort);
    a second seed doubles everything."""
    p = plan_json(["-m", "coxph", "-p", "clean,noisy10"])
    (m,) = p["methods"]
    assert (m["fits"], m["predictions"], m["device"]) == (5, 10, "cpu")
    assert [g["protocols"] for g in p["groups"]] == [["clean", "noisy10"]]
    p = plan_json(["-m", "coxph", "-p", "clean,noisy10,loco"])
    assert (p["methods"][0]["fits"], p["methods"][0]["predictions"]) == (5 + 7, 10 + 7)
    assert [len(g["folds"]) for g in p["groups"]] == [5, 7]
    p = plan_json(["-m", "coxph,oracle", "-p", "clean,noisy10,loco", "--seed", "0,1"])
    assert p["totals"]["fits"] == 2 * 2 * 12 and p["totals"]["predictions"] == 2 * 2 * 17


def test_declared_sizes_when_the_cohort_is_not_generated():
    """The quick cohort is not in the test cache: its declared centres give the folds, and the output says so."""
    p = plan_json(["-m", "coxph", "-p", "clean,loco,center-split"])
    assert p["dataset"]["sizes"] == "declared" and p["dataset"]["patients"] == 489
    kfold, loco, centre = (g["folds"] for g in p["groups"])
    assert [f["test"] for f in kfold] == [98, 98, 98, 98, 97]
    assert [(f["train"], f["val"], f["fit"]) for f in kfold][-1] == (392, 78, 314)  # val = round(0.2 × 392)
    assert {f["name"]: f["test"] for f in loco}["HMR"] == 18 and all(f["train"] + f["test"] == 489 for f in loco)
    assert (centre[0]["train"], centre[0]["test"]) == (44 + 72 + 197 + 55 + 18, 56 + 47)  # CHUP… vs CHUM, CHUV
    assert "declared" in run(["-m", "coxph"]).output


def test_declared_folds_refuse_a_centre_the_cohort_lacks():
    split = {"kind": "center-split", "val_fraction": 0.2, "train_centres": ["CHUS"], "test_centres": ["CHUM"]}
    with pytest.raises(Exception, match="CHUS"):
        declared_folds(split, {"CHUM": 10, "MDA": 10})


def test_a_dataset_on_disk_gives_its_own_folds_and_nothing_is_written(tmp_path, monkeypatch, tiny_clinical_dir):
    from bench.data.hecktor import load_hecktor
    from bench.protocols import load_protocol
    from bench.splits import make_folds

    cache = Path(os.environ["BENCH_CACHE_DIR"])
    before_cache, before_data = files_under(cache), files_under(tiny_clinical_dir)
    monkeypatch.chdir(tmp_path)
    p = plan_json(["-m", "coxph", "-p", "clean,loco", "-d", f"hecktor2022:{tiny_clinical_dir}"])
    assert p["dataset"]["sizes"] == "dataset" and p["dataset"]["patients"] == 30
    ds = load_hecktor(tiny_clinical_dir)
    for g, name in zip(p["groups"], ("clean", "loco")):
        folds = make_folds(ds, load_protocol(name).split)
        assert [(f["train"], f["test"]) for f in g["folds"]] == [(len(f.train), len(f.test)) for f in folds]
    assert p["methods"][0]["fits"] == 5 + 3
    assert not (tmp_path / "results").exists() and list(tmp_path.iterdir()) == []
    assert files_under(cache) == before_cache and files_under(tiny_clinical_dir) == before_data


def test_nothing_is_generated_or_written(tmp_path, monkeypatch):
    cache = Path(os.environ["BENCH_CACHE_DIR"])
    before = files_under(cache)
    monkeypatch.chdir(tmp_path)
    r = run(["-m", "coxph,deepmts", "-p", "clean,noisy,loco", "--scale", "quick"])
    assert r.exit_code == 0, r.output
    assert files_under(cache) == before
    assert list(tmp_path.iterdir()) == []  # no results/ (splits), nothing else


# --- costs ------------------------------------------------------------------------------------------------
def test_gpu_hours_and_lpt_wall_time_by_hand(deep_methods):
    """Declared quick folds: fit 313 (×4) and 314 patients → ceil(313 / 4) = ceil(314 / 4) = 79 steps of
    0.5 s × 10 epochs = 395 s per fit; predictions (391 + 98 × 2) / 10 = 58.7 s (last fold (392 + 97 × 2) / 10
    = 58.6 s). On 2 GPUs, longest first: 453.7 | 453.7, then 907.4 | 907.4, then 1361.0."""
    p = plan_json(["-m", "plan-deep", "-p", "clean,noisy10", "--gpus", "2", "--measurements", str(deep_methods)])
    (m,) = p["methods"]
    assert [(j["train_s"], j["predict_s"]) for j in m["jobs"]] == [(395.0, 58.7)] * 4 + [(395.0, 58.6)]
    assert [j["validation_s"] for j in m["jobs"]] == [78.0] * 5  # 78 patients × 10 epochs / 10 per s
    total = 4 * 453.7 + 453.6
    t = p["totals"]
    assert t["gpu_hours"] == round(total / 3600, 3) == m["gpu_hours"]
    assert t["wall_hours"] == round(1361.0 / 3600, 3)
    assert t["lower_bound_hours"] == round(total / 2 / 3600, 3)
    assert t["longest_fit_hours"] == round(453.7 / 3600, 3)
    one = plan_json(["-m", "plan-deep", "-p", "clean,noisy10", "--gpus", "1", "--measurements", str(deep_methods)])
    assert one["totals"]["wall_hours"] == one["totals"]["gpu_hours"]


def test_lpt_is_longest_first_not_optimal():
    assert lpt([3, 3, 3, 5, 4], 2) == 10  # 5 | 4 → 5 | 7 → 8 | 7 → 8 | 10 (the optimum, 9, is not LPT's)
    assert lpt([2.0, 1.0], 8) == 2.0 and lpt([], 4) == 0.0
    assert lpt([1.0] * 6, 3) == 2.0


def test_a_method_without_measurement_says_not_measured(deep_methods):
    args = ["-m", "plan-deep,plan-deep-unmeasured,coxph", "-p", "clean", "--measurements", str(deep_methods)]
    r = run(args)
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("plan-deep-unmeasured"))
    assert "not measured" in line
    coxph = next(x for x in r.output.splitlines() if x.startswith("coxph"))
    assert "CPU" in coxph and "not measured" in coxph  # no GPU; no CPU timing of coxph in this folder
    p = plan_json(args)
    unmeasured = next(m for m in p["methods"] if m["method"] == "plan-deep-unmeasured")
    assert unmeasured["gpu_hours"] is None and not unmeasured["measured"]
    assert p["totals"]["methods_not_measured"] == ["plan-deep-unmeasured"]
    assert p["totals"]["gpu_hours"] == next(m for m in p["methods"] if m["method"] == "plan-deep")["gpu_hours"]
    # a --set that changes the cost of a step is not covered by the measurement; the epoch count is
    changed = plan_json(["-m", "plan-deep", "--set", "train.batch_size=8", "--measurements", str(deep_methods)])
    assert changed["methods"][0]["gpu_hours"] is None and "batch" in changed["methods"][0]["source"]
    longer = plan_json(["-m", "plan-deep", "--set", "train.epochs=20", "--measurements", str(deep_methods)])
    assert longer["methods"][0]["jobs"][0]["train_s"] == 790.0


def test_paper_scale_from_the_committed_measurements():
    """deepmts from its own H200 entry (100 epochs of 40 steps: 7.4 s each at n_train 313), fm-pet estimated
    from fm-ctpet, robsurv-no-vq not measured."""
    gpu = json.loads((DEFAULT_MEASUREMENTS / "h200-2026-11-29.json").read_text())
    entry = next(m for m in gpu["methods"] if m["method"] == "deepmts")
    st = entry["stages"][0]
    p = plan_json(["-m", "deepmts,fm-pet,robsurv-no-vq", "-p", "clean", "--scale", "paper", "--gpus", "8"])
    deepmts, fm_pet, no_vq = p["methods"]
    per_step = st["seconds_timed"] / st["timed_steps"]
    assert math.ceil(313 / st["batch_size"]) == st["epoch_steps"] == 40
    for job, (train, test) in zip(deepmts["jobs"], [(391, 98)] * 4 + [(392, 97)]):
        assert job["train_s"] == round(per_step * 40 * 100, 1)
        assert job["predict_s"] == round((train + test) / entry["inference_images_per_s"], 1)
    assert fm_pet["estimated_from"] == "fm-ctpet" and "estimated from fm-ctpet" in fm_pet["source"]
    assert no_vq["gpu_hours"] is None and no_vq["source"].startswith("not measured")
    assert no_vq["upper_bound_gpu_hours"] > 0 and "upper bound" in no_vq["source"]  # at robsurv's rate
    assert any(w["what"].startswith("pet-fm pretraining") and w["gpu_hours"] for w in p["one_off"])


# --- output and input -------------------------------------------------------------------------------------
def test_json_output_parses_and_matches_the_text():
    r = run(["-m", "coxph,oracle", "-p", "clean,noisy10", "--format", "json"])
    p = json.loads(r.output)
    assert {"methods", "totals", "groups", "dataset", "one_off", "sources"} <= set(p)
    text = run(["-m", "coxph,oracle", "-p", "clean,noisy10"]).output
    assert f"Totals: {p['totals']['fits']} fits" in text and f"{p['totals']['predictions']} predictions" in text


@pytest.mark.parametrize("args, words", [
    (["-m", "coxpx"], "unknown method"),
    (["-m", "coxph", "-p", "noisy5"], "noisy5"),
    (["-m", "coxph", "--gpus", "0"], "--gpus 0"),
    (["-m", "coxph", "--seed", "a"], "--seed"),
    (["-m", "coxph", "--set", "nope=1"], "nope"),
    (["-m", "coxph", "-p", "center-split", "--scale", "smoke"], "CHUS"),
    (["-m", "coxph", "-d", "synthetic:huge"], "huge"),
])
def test_bad_input_is_exit_2_without_traceback(args, words):
    r = run(args)
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output


def test_the_paper_plan_in_the_readme_and_docs_is_what_bench_plan_says():
    """The paper-scale numbers quoted in README.md, docs/cluster.md and benchmarks/results/paper-plan.txt are
    this command's output on the committed measurement files."""
    import re

    from helpers import ROOT

    deep = ("deepmts,tmss,tmss-image,robsurv,robsurv-no-patchfuse,robsurv-no-continuous,robsurv-no-vq,adamss,"
            "deepmts-daft,fm-ct,fm-pet,fm-ctpet")
    args = ["-m", deep, "-p", "clean,noisy,suite,loco,center-split", "--scale", "paper"]
    eight, sixty_four = (plan_json([*args, "--gpus", str(n)])["totals"] for n in (8, 64))
    assert (eight["fits"], eight["predictions"]) == (156, 2676)
    readme = (ROOT / "README.md").read_text()
    assert (f"156 fits\n  and {eight['gpu_hours']:.1f} measured GPU-hours: {eight['wall_hours']:.1f} h on 8 GPUs, "
            f"{sixty_four['wall_hours']:.1f} h on 64") in readme
    cluster = (ROOT / "docs" / "cluster.md").read_text()
    row = lambda name: re.search(rf"^\| {re.escape(name)}[^|]*\| ([^|]+) \| ([^|]+) \|$", cluster, re.M).groups()
    assert row("GPU-hours") == (f"{eight['gpu_hours']:.2f}",) * 2
    assert row("wall time") == (f"{eight['wall_hours']:.2f} h", f"{sixty_four['wall_hours']:.2f} h")
    assert row("lower bound: GPU-hours / N") == (f"{eight['lower_bound_hours']:.2f} h",
                                                 f"{sixty_four['lower_bound_hours']:.2f} h")
    assert row("lower bound: longest fit") == (f"{eight['longest_fit_hours']:.2f} h",) * 2
    assert f"at most {eight['not_measured_upper_bound_gpu_hours']:.2f} GPU-h" in cluster
    text = (ROOT / "benchmarks" / "results" / "paper-plan.txt").read_text()
    for n, t in ((8, eight), (64, sixty_four)):
        assert f"Wall time on {n} GPU(s), one GPU per fit, longest first: {t['wall_hours']:.2f} h" in text


def test_a_measurement_folder_that_does_not_exist_is_exit_2(tmp_path):
    r = run(["-m", "coxph", "--measurements", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder of measurement files" in r.output
