from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from bench.data import load_dataset
from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, load_hecktor
from bench.errors import BenchInputError, OutcomeLeakError
from helpers import run_bench


def test_tiny_dataset_loads_with_typed_clinical_and_listed_images(tiny_dataset):
    ds = tiny_dataset
    assert len(ds.ids) == 30 and set(ds.centres) == {"CHUM", "CHUP", "MDA"}
    assert "PatientID" not in ds.clinical and "CenterID" not in ds.clinical and "Task 1" not in ds.clinical
    assert isinstance(ds.clinical["Gender"].dtype, pd.CategoricalDtype)
    assert ds.clinical["HPV status (0=-, 1=+)"].isna().any()  # missing stays missing
    assert ds.images["CHUM-001"].ct.name == "CHUM-001__CT.nii.gz"
    assert list(ds.outcomes.columns) == ["time", "event"]


def test_cohort_hides_test_outcomes_and_masks(tiny_dataset):
    ids = tiny_dataset.ids[:5]
    test = tiny_dataset.cohort(ids, with_outcomes=False, with_mask=False, name="test")
    with pytest.raises(OutcomeLeakError):
        test.outcomes
    assert all(f.mask is None for f in test.image_files.values())
    train = tiny_dataset.cohort(ids, with_outcomes=True)
    assert len(train.outcomes) == 5
    both = train.subset(ids[:2]).union(train.subset(ids[2:]))
    assert list(both.ids) == list(ids)
    with pytest.raises(ValueError, match="overlap"):
        train.union(train)
    clin = train.clinical
    clin.loc[:, "Age"] = -1  # a copy: the cohort is read-only
    assert (train.clinical["Age"] >= 0).all()


def test_demo_cohort_is_deterministic(tmp_path):
    from bench.data.demo import write_demo

    a, b = write_demo(tmp_path / "a", seed=3), write_demo(tmp_path / "b", seed=3)
    for f in (CLINICAL_FILE, ENDPOINT_FILE):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    ds = load_dataset("demo")
    assert len(ds.ids) == 489 and ds.centres.nunique() == 7
    assert 0.15 < ds.outcomes.event.mean() < 0.25


def _copy(src, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def _edit_csv(path, fn):
    frame = pd.read_csv(path, dtype={"PatientID": str})
    fn(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: _edit_csv(d / CLINICAL_FILE, lambda f: f.rename(columns={"PatientID": "ID"}, inplace=True)),
         r"hecktor2022_clinical_info_training.csv: missing column\(s\) \['PatientID'\]"),
        (lambda d: _edit_csv(d / CLINICAL_FILE, lambda f: f.loc.__setitem__((1, "CenterID"), np.nan)),
         r"column 'CenterID' is empty for patient\(s\) \['CHUM-002'\]"),
        (lambda d: _edit_csv(d / CLINICAL_FILE, lambda f: f.loc.__setitem__((1, "CenterID"), 99)),
         r"PatientID code 'CHUM' and column 'CenterID' disagree \(CenterID 1: .* CenterID 99: 1 patient\(s\), "
         r"e.g. \['CHUM-002'\]"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.rename(columns={"RFS": "rfs"}, inplace=True)),
         r"endpoint_training.csv: missing column\(s\) \['RFS'\]"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((1, "PatientID"), f.loc[0, "PatientID"])),
         r"duplicate PatientID\(s\) \['CHUM-001'\]"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((0, "PatientID"), "XYZ-999")),
         r"patient\(s\) \['XYZ-999'\] are not in hecktor2022_clinical_info_training.csv"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((2, "RFS"), -5)),
         r"'RFS' is negative for patient\(s\) \['CHUM-003'\]"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((3, "RFS"), np.nan)),
         r"'RFS' is missing, infinite or not a number for patient\(s\) \['CHUM-004'\]"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((4, "Relapse"), 2)),
         r"'Relapse' must be 0 or 1; patient\(s\) \['CHUM-005'\]"),
        (lambda d: (d / "imagesTr" / "CHUP-002__PT.nii.gz").unlink(),
         r"imagesTr/CHUP-002__PT.nii.gz: image of patient CHUP-002 is missing"),
        (lambda d: (d / ENDPOINT_FILE).unlink(), r"hecktor2022_endpoint_training.csv: file missing"),
        (lambda d: _edit_csv(d / ENDPOINT_FILE, lambda f: f.__setitem__("RFS", f["RFS"].astype(float)) or f.loc.__setitem__((5, "RFS"), np.inf)),
         r"'RFS' is missing, infinite or not a number for patient\(s\) \['CHUM-006'\]"),
        (lambda d: _edit_csv(d / CLINICAL_FILE, lambda f: f.__setitem__("Age", f["Age"].astype(object)) or f.loc.__setitem__((0, "Age"), "sixty")),
         r"column 'Age' must be numeric; not a number for patient\(s\) CHUM-001 \('sixty'\)"),
        (lambda d: [_edit_csv(d / n, lambda f: f.loc.__setitem__((0, "PatientID"), "   ")) for n in (CLINICAL_FILE, ENDPOINT_FILE)],
         r"empty PatientID on line\(s\) \[2\]"),
    ],
)
def test_bad_dataset_names_file_and_patient(tiny_dataset_dir, tmp_path, breakage, expected):
    d = _copy(tiny_dataset_dir, tmp_path)
    breakage(d)
    with pytest.raises(BenchInputError, match=expected):
        load_hecktor(d)


def test_bad_dataset_on_the_command_line_exits_2_without_traceback(tiny_dataset_dir, tmp_path):
    d = _copy(tiny_dataset_dir, tmp_path)
    _edit_csv(d / ENDPOINT_FILE, lambda f: f.loc.__setitem__((3, "RFS"), np.nan))
    done = run_bench("run", "-m", "coxph", "-d", f"hecktor2022:{d}", "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "CHUM-004" in done.stderr and "Traceback" not in done.stderr
    for spec in (f"hecktor2022:{tmp_path / 'absent'}", "nosuchkind:1"):
        done = run_bench("run", "-m", "coxph", "-d", spec, "--results", str(tmp_path / "r"))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_image_method_refuses_clinical_only_dataset(tiny_clinical_dir):
    import bench
    from bench.runner import check_dataset_fits

    class ImageOnly(bench.Method):
        consumes = ("ct", "pet")
        configs = {"smoke": {}}

    with pytest.raises(BenchInputError, match="has no images"):
        check_dataset_fits("img", ImageOnly, load_hecktor(tiny_clinical_dir))


def test_byte_order_mark_and_padded_ids_are_accepted(tiny_clinical_dir, tmp_path):
    d = _copy(tiny_clinical_dir, tmp_path)
    text = (d / ENDPOINT_FILE).read_text()
    (d / ENDPOINT_FILE).write_text("\ufeff" + text.replace("CHUM-001,", " CHUM-001 ,"), encoding="utf-8")
    ds = load_hecktor(d)
    assert "CHUM-001" in ds.outcomes.index and len(ds.ids) == 30
