"""Datasets from outside the synthetic cohort: the registry, the manifest dataset and the HECKTOR loader's
centre and column rules (each test names the defect it guards against)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from bench.data.dataset import DAYS_PER, Dataset, check_dataset
from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, load_hecktor
from bench.data.manifest import load_manifest_file
from bench.data.sources import load, register_dataset, unregister_dataset
from bench.errors import BenchInputError
from bench.protocols import load_protocol
from bench.splits import make_folds
from helpers import run_bench


def _rossi(tmp_path, **overrides):
    """lifelines' rossi table (time in weeks) as a CSV and a manifest declaring it."""
    from lifelines.datasets import load_rossi

    df = load_rossi()
    df.insert(0, "id", [f"R-{i:03d}" for i in range(len(df))])
    df.to_csv(tmp_path / "rossi.csv", index=False)
    keys = {"name": '"rossi"', "tables": '["rossi.csv"]', "id": '"id"', "time": '"week"', "event": '"arrest"',
            "time_unit": '"weeks"', "centre": '"race"', "categorical": '["race"]'} | overrides
    text = "[dataset]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)
    (tmp_path / "study.toml").write_text(text)
    return tmp_path / "study.toml", df


def test_a_table_in_weeks_is_kept_in_days(tmp_path):
    """Defect: time was hard-wired to days, so a table in weeks ran silently wrong."""
    manifest, df = _rossi(tmp_path)
    ds = load_manifest_file(manifest)
    np.testing.assert_array_equal(ds.outcomes["time"].to_numpy(), df["week"].to_numpy() * 7.0)
    assert DAYS_PER["months"] == 365.25 / 12 and DAYS_PER["years"] == 365.25
    assert ds.name == "manifest:rossi" and ds.has_centres and sorted(set(ds.centres)) == ["0", "1"]
    manifest, _ = _rossi(tmp_path, time_unit=None)
    with pytest.raises(BenchInputError, match="lacks time_unit"):
        load_manifest_file(manifest)


def test_declared_categoricals_are_categories_and_the_rest_typed_by_content(tmp_path):
    """Defect: numerically coded categoricals (race 0/1, arm 0-3) were taken as continuous."""
    manifest, _ = _rossi(tmp_path, categorical='["race", "fin"]', centre=None)
    ds = load_manifest_file(manifest)
    assert isinstance(ds.clinical["fin"].dtype, pd.CategoricalDtype)
    assert sorted(ds.clinical["fin"].cat.categories) == ["0", "1"]
    assert ds.clinical["age"].dtype == float and "race" in ds.clinical and "week" not in ds.clinical
    from baselines.coxph import fit_clinical_encoding

    columns, pre = fit_clinical_encoding(ds.clinical)
    names = list(pre.get_feature_names_out())
    assert any("fin" in n and n.endswith("_1") for n in names), names  # one-hot, not a slope over 0/1


@pytest.mark.parametrize("edit, match", [
    (lambda t, d: (t / "rossi.csv").unlink(), r"rossi.csv: file missing"),
    (lambda t, d: d.rename(columns={"week": "weeks"}).to_csv(t / "rossi.csv", index=False),
     r"exactly one table must hold both time column 'week' and event column 'arrest'"),
    (lambda t, d: d.assign(week=d["week"].where(d.index != 3)).to_csv(t / "rossi.csv", index=False),
     r"rossi.csv: column 'week' is missing, infinite or not a number for patient\(s\) \['R-003'\]"),
    (lambda t, d: d.assign(arrest=d["arrest"].where(d.index != 5, 2)).to_csv(t / "rossi.csv", index=False),
     r"column 'arrest' must be 0 or 1 \(or true/false\); patient\(s\) \['R-005'\]"),
    (lambda t, d: d.assign(race=d["race"].astype(object).where(d.index != 7, "")).to_csv(t / "rossi.csv", index=False),
     r"column 'race' \(the centre\) is empty for patient\(s\) \['R-007'\]"),
    (lambda t, d: d.assign(id=d["id"].where(d.index != 1, "R-000")).to_csv(t / "rossi.csv", index=False),
     r"duplicate id\(s\) \['R-000'\]"),
    (lambda t, d: (t / "study.toml").write_text((t / "study.toml").read_text() + 'centr = "race"\n'),
     r"unknown key\(s\) \['centr'\]"),
    (lambda t, d: (t / "study.toml").write_text((t / "study.toml").read_text().replace('"race"]', '"races"]')),
     r"categorical names column\(s\) \['races'\] that no table has"),
    (lambda t, d: (t / "study.toml").write_text((t / "study.toml").read_text() + '[images]\nct = "img/{id}_ct.nii.gz"\npet = "img/{id}_pt.nii.gz"\n'),
     r"img/R-000_ct.nii.gz: CT image of patient R-000 is missing"),
    (lambda t, d: (t / "study.toml").write_text("[dataset\n"), r"not valid TOML"),
])
def test_every_declared_thing_is_checked_with_file_column_and_patient(tmp_path, edit, match):
    manifest, df = _rossi(tmp_path)
    edit(tmp_path, df)
    with pytest.raises(BenchInputError, match=match):
        load_manifest_file(manifest)


def test_a_bad_manifest_on_the_command_line_exits_2_and_stores_nothing(tmp_path):
    manifest, df = _rossi(tmp_path)
    df.assign(week=df["week"].where(df.index != 3)).to_csv(tmp_path / "rossi.csv", index=False)
    done = run_bench("run", "--method", "coxph", "--dataset", f"manifest:{manifest}", "--results",
                     str(tmp_path / "results"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "R-003" in done.stderr and "rossi.csv" in done.stderr and "'week'" in done.stderr
    assert not (tmp_path / "results").exists()


def test_without_a_centre_kfold_runs_and_centre_protocols_are_refused(tmp_path):
    manifest, _ = _rossi(tmp_path, centre=None)
    ds = load_manifest_file(manifest)
    assert not ds.has_centres and set(ds.centres) == {"all"}
    assert len(make_folds(ds, load_protocol("clean").split)) == 5
    for protocol in ("loco", "center-split"):
        with pytest.raises(BenchInputError, match="declares no centre"):
            make_folds(ds, load_protocol(protocol).split)


def test_a_manifest_dataset_runs_clean_and_loco(tmp_path):
    manifest, _ = _rossi(tmp_path)
    done = run_bench("run", "--method", "coxph", "--protocol", "clean,loco", "--dataset", f"manifest:{manifest}",
                     "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "manifest:rossi (432 patients" in done.stdout and "7 job(s) run" in done.stdout


# The HECKTOR loader

def _hecktor(tiny_dataset_dir, tmp_path, edit):
    d = tmp_path / "ds"
    shutil.copytree(tiny_dataset_dir, d)
    shutil.rmtree(d / "imagesTr"), shutil.rmtree(d / "labelsTr")
    for name in (CLINICAL_FILE, ENDPOINT_FILE):
        f = pd.read_csv(d / name, dtype={"PatientID": str})
        edit(name, f)
        f.to_csv(d / name, index=False)
    return d


def test_only_the_id_and_endpoint_columns_are_required(tiny_dataset_dir, tmp_path):
    """Defect: all 11 HECKTOR clinical columns were required even when empty."""
    def keep(name, f):
        if name == CLINICAL_FILE:
            f.drop(columns=[c for c in f.columns if c not in ("PatientID", "CenterID", "Age")], inplace=True)

    ds = load_hecktor(_hecktor(tiny_dataset_dir, tmp_path, keep))
    assert list(ds.clinical.columns) == ["Age"] and ds.has_centres


def test_a_dash_in_the_id_does_not_override_centre_id(tiny_dataset_dir, tmp_path):
    """Defect: 'P-001' made every patient's centre 'P'; verify said OK, then loco failed and clean lost its
    centre strata."""
    def rename(name, f):
        f["PatientID"] = [f"P-{i:03d}" for i in range(len(f))]
        if name == CLINICAL_FILE:
            f["CenterID"] = [1 + i % 3 for i in range(len(f))]

    ds = load_hecktor(_hecktor(tiny_dataset_dir, tmp_path, rename))
    assert sorted(set(ds.centres)) == ["1", "2", "3"]
    assert [f.name for f in make_folds(ds, load_protocol("loco").split)] == ["1", "2", "3"]


def test_an_empty_centre_is_an_error_naming_the_patients_not_a_pseudo_centre(tiny_dataset_dir, tmp_path):
    """Defect: an empty CenterID became a centre 'nan' that leave-centre-out scored."""
    def blank(name, f):
        if name == CLINICAL_FILE:
            f["PatientID"] = [f"X{i:03d}" for i in range(len(f))]
            f.loc[[2, 4], "CenterID"] = np.nan
        else:
            f["PatientID"] = [f"X{i:03d}" for i in range(len(f))]

    with pytest.raises(BenchInputError, match=r"'CenterID' is empty for patient\(s\) \['X002', 'X004'\]"):
        load_hecktor(_hecktor(tiny_dataset_dir, tmp_path, blank))


def test_hecktor_ids_name_the_centres_when_they_agree_with_centre_id(tiny_dataset_dir):
    ds = load_hecktor(tiny_dataset_dir)
    assert set(ds.centres) <= {"CHUM", "CHUP", "CHUS", "CHUV", "HGJ", "HMR", "MDA"} and ds.has_centres


# The registry and the checks every dataset passes

def test_an_in_process_dataset_is_checked_like_any_other(tmp_path):
    ids = pd.Index(["a", "b", "../c"], name="PatientID")

    @register_dataset("hostile-test")
    def hostile(arg, *, scale, progress=True):
        return Dataset(name="hostile-test", root=tmp_path, clinical=pd.DataFrame(index=ids),
                       outcomes=pd.DataFrame({"time": [1.0, np.nan, 3.0], "event": [1, 0, 2]}, index=ids),
                       centres=pd.Series(["x", "nan", "y"], index=ids), images=None, fingerprint="0")

    try:
        with pytest.raises(BenchInputError) as info:
            load("hostile-test", "quick")
        text = str(info.value)
        assert "'../c' cannot name a file" in text and "['b']" in text and "event not 0 or 1" in text
    finally:
        unregister_dataset("hostile-test")
    with pytest.raises(BenchInputError, match="not a bench.data.Dataset"):
        check_dataset("no", "x")
    with pytest.raises(BenchInputError, match=r"'synthetik' is not a registered dataset nor an existing folder — did you mean 'synthetic'"):
        load("synthetik:quick", "quick")
