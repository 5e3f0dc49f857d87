from __future__ import annotations

import json

import pytest

from bench.data import load_dataset
from bench.errors import BenchInputError
from bench.protocols import load_protocol
from bench.splits import make_folds, split_plan


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo")


def test_kfold_is_a_partition_stratified_by_event_and_centre(demo):
    folds = make_folds(demo, load_protocol("clean").split)
    assert len(folds) == 5
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == set(demo.ids)
    assert sum(len(t) for t in tests) == len(demo.ids)  # no patient in two test folds
    for f in folds:
        assert not set(f.train) & set(f.test)
        assert len(f.train) + len(f.test) == len(demo.ids)
    overall = demo.outcomes.event.mean()
    for t in tests:
        assert abs(demo.outcomes.loc[list(t), "event"].mean() - overall) < 0.03
        share = demo.centres.loc[list(t)].value_counts(normalize=True)
        for centre, frac in demo.centres.value_counts(normalize=True).items():
            assert abs(share.get(centre, 0) - frac) < 0.03, centre


def test_kfold_is_deterministic_and_seeded(demo):
    split = load_protocol("clean").split
    assert make_folds(demo, split) == make_folds(demo, split)
    assert make_folds(demo, {**split, "seed": 1})[0].test != make_folds(demo, split)[0].test


def test_loco_covers_each_centre_once(demo):
    folds = make_folds(demo, load_protocol("loco").split)
    assert sorted(f.name for f in folds) == sorted(demo.centres.unique())
    for f in folds:
        assert set(demo.centres.loc[list(f.test)]) == {f.name}
        assert f.name not in set(demo.centres.loc[list(f.train)])
    assert sum(len(f.test) for f in folds) == len(demo.ids)


def test_center_split_and_empty_centre(demo, tiny_dataset):
    (fold,) = make_folds(demo, load_protocol("center-split").split)
    assert set(demo.centres.loc[list(fold.test)]) == {"CHUM", "CHUV"}
    assert set(demo.centres.loc[list(fold.train)]) == {"CHUP", "CHUS", "HGJ", "HMR", "MDA"}
    with pytest.raises(BenchInputError, match=r"centre\(s\) \['CHUS', 'HGJ', 'HMR'\] named in split.train_centres"):
        make_folds(tiny_dataset, load_protocol("center-split").split)


def test_split_is_written_and_reused_never_regenerated(demo, tmp_path):
    split = load_protocol("clean").split
    plan = split_plan(demo, split, tmp_path, seeds=[0])
    assert plan.path.is_file()
    data = json.loads(plan.path.read_text())
    # An edited (but consistent) stored split is what later runs use: swap two patients between folds (their
    # test sets, training sets and validation carves alike).
    a, b = data["folds"][0]["test"][0], data["folds"][1]["test"][0]
    swap = {a: b, b: a}
    for f in data["folds"]:
        f["train"], f["test"] = [swap.get(p, p) for p in f["train"]], [swap.get(p, p) for p in f["test"]]
    data["val"] = {s: [[swap.get(p, p) for p in carve] for carve in carves] for s, carves in data["val"].items()}
    plan.path.write_text(json.dumps(data))
    again = split_plan(demo, split, tmp_path, seeds=[0])
    assert again.folds[0].test[0] == b
    # A new seed adds its validation carve without touching the folds.
    split_plan(demo, split, tmp_path, seeds=[0, 7])
    stored = json.loads(plan.path.read_text())
    assert stored["folds"][0]["test"][0] == b and set(stored["val"]) == {"0", "7"}


def test_damaged_or_foreign_split_file_is_an_input_error_and_kept(demo, tmp_path):
    split = load_protocol("clean").split
    plan = split_plan(demo, split, tmp_path, seeds=[0])
    plan.path.write_text("{not json")
    with pytest.raises(BenchInputError, match="damaged"):
        split_plan(demo, split, tmp_path, seeds=[0])
    assert plan.path.read_text() == "{not json"
    data = {"folds": [], "val": {}, "patients": ["X-001"]}
    plan.path.write_text(json.dumps(data))
    with pytest.raises(BenchInputError, match="does not cover"):
        split_plan(demo, split, tmp_path, seeds=[0])


def test_validation_carve_is_stratified_disjoint_and_seeded(demo, tmp_path):
    split = load_protocol("clean").split
    plan = split_plan(demo, split, tmp_path, seeds=[0, 1])
    fold = plan.folds[0]
    fit, val = plan.fit_val(fold, 0)
    assert not set(fit) & set(val) and set(fit) | set(val) == set(fold.train)
    assert len(val) == round(0.2 * len(fold.train))
    ev = demo.outcomes.event
    assert abs(ev.loc[val].mean() - ev.loc[list(fold.train)].mean()) < 0.03
    assert plan.fit_val(fold, 1)[1] != val
    assert plan.fit_val(fold, 0)[1] == val


def test_a_one_patient_centre_still_splits(tiny_dataset_dir, tmp_path):
    import shutil

    import pandas as pd

    from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, load_hecktor

    d = tmp_path / "ds"
    shutil.copytree(tiny_dataset_dir, d)
    shutil.rmtree(d / "imagesTr"), shutil.rmtree(d / "labelsTr")
    for name in (CLINICAL_FILE, ENDPOINT_FILE):
        f = pd.read_csv(d / name, dtype={"PatientID": str})
        f.loc[0, "PatientID"] = "NEW-001"
        if "CenterID" in f:
            f.loc[0, "CenterID"] = 8  # a centre of its own: CenterID decides, and the id's code agrees
        f.to_csv(d / name, index=False)
    ds = load_hecktor(d)
    assert (ds.centres == "NEW").sum() == 1
    for protocol in ("clean", "loco"):
        plan = split_plan(ds, load_protocol(protocol).split, tmp_path / protocol, seeds=[0])
        for fold in plan.folds:
            fit, val = plan.fit_val(fold, 0)
            assert set(fit) | set(val) == set(fold.train)
