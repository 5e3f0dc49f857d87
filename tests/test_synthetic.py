"""The synthetic PET/CT cohort: layout, determinism, images that agree with the ground truth, and (slow) the
spec's acceptance numbers on the 489-patient quick cohort."""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.data import load_dataset
from bench.data.hecktor import GROUNDTRUTH_FILE, load_hecktor
from bench.data.synthetic import generate, scale_config
from bench.metrics import cindex_harrell
from helpers import run_bench


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "smoke", scale_config("smoke"), 0, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_smoke_cohort_has_the_hecktor_layout_and_loads(smoke_dir):
    ds = load_hecktor(smoke_dir)
    assert len(ds.ids) == 40 and ds.centres.nunique() >= 3
    assert 0.1 <= ds.outcomes.event.mean() <= 0.3
    assert ds.has_groundtruth and (smoke_dir / GROUNDTRUTH_FILE).is_file()
    for pid in ds.ids:
        f = ds.images[pid]
        assert f.ct.name == f"{pid}__CT.nii.gz" and f.pet.name == f"{pid}__PT.nii.gz" and f.mask.name == f"{pid}.nii.gz"
    # the ground truth is outside the layout: no method input carries it
    assert not any("eta" in c for c in ds.clinical.columns)


def test_same_config_and_seed_write_the_same_bytes_and_a_complete_cohort_is_kept(smoke_dir, tmp_path):
    again = generate(tmp_path / "again", scale_config("smoke"), 0, progress=False, workers=1)
    assert _files(again) == _files(smoke_dir)
    ct = again / "imagesTr" / "CHUM-001__CT.nii.gz"
    stamp = ct.stat().st_mtime_ns
    generate(again, scale_config("smoke"), 0, progress=False)
    assert ct.stat().st_mtime_ns == stamp  # not regenerated
    other = generate(tmp_path / "seed1", scale_config("smoke"), 1, progress=False)
    assert _files(other)["hecktor2022_endpoint_training.csv"] != _files(smoke_dir)["hecktor2022_endpoint_training.csv"]


SMOKE_DIGEST = "7da0197cf7edbd12"  # sha256 over every file of the smoke cohort, seed 0 (names + bytes)


def test_generator_output_is_pinned_to_its_version(smoke_dir):
    """Cached cohorts are reused by (GENERATOR_VERSION, config hash, seed). If this fails, the generator's
    output changed: bump GENERATOR_VERSION (so stale caches are not reused) and update SMOKE_DIGEST."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(smoke_dir.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(str(p.relative_to(smoke_dir)).encode())
            h.update(p.read_bytes())
    assert h.hexdigest()[:16] == SMOKE_DIGEST


def test_out_refuses_a_folder_that_is_not_a_cohort(tmp_path):
    other = tmp_path / "mydata"
    other.mkdir()
    (other / "hecktor2022_endpoint_training.csv").write_text("PatientID,Relapse,RFS\n")
    out = run_bench("data", "synth", "--scale", "smoke", "--out", str(other))
    assert out.returncode == 2 and "not a synthetic cohort" in out.stderr
    assert (other / "hecktor2022_endpoint_training.csv").read_text() == "PatientID,Relapse,RFS\n"
    assert sorted(p.name for p in other.iterdir()) == ["hecktor2022_endpoint_training.csv"]


def test_files_are_readable_by_others(smoke_dir):
    import stat

    mode = (smoke_dir / "imagesTr" / "CHUM-001__CT.nii.gz").stat().st_mode
    assert mode & stat.S_IRGRP or os.umask(os.umask(0)) & stat.S_IRGRP


def test_a_killed_generation_resumes_with_what_was_written(smoke_dir, tmp_path):
    out = generate(tmp_path / "resume", scale_config("smoke"), 0, progress=False)
    (out / ".complete").unlink()
    (out / "groundtruth" / "patients" / "MDA-002.json").unlink()
    (out / "imagesTr" / "MDA-002__PT.nii.gz").unlink()
    kept = (out / "imagesTr" / "CHUM-001__CT.nii.gz").stat().st_mtime_ns
    generate(out, scale_config("smoke"), 0, progress=False)
    assert (out / "imagesTr" / "CHUM-001__CT.nii.gz").stat().st_mtime_ns == kept
    assert _files(out) == _files(smoke_dir)


def test_masks_sit_on_the_pet_hot_spots_and_match_the_true_volumes(smoke_dir):
    ds = load_hecktor(smoke_dir)
    truth = pd.read_csv(smoke_dir / GROUNDTRUTH_FILE).set_index("PatientID")
    for pid in ds.ids:
        f = ds.images[pid]
        lab = sitk.ReadImage(str(f.mask))
        ct = sitk.ReadImage(str(f.ct))
        assert lab.GetSize() == ct.GetSize() and lab.GetSpacing() == ct.GetSpacing()
        pet = sitk.Resample(sitk.ReadImage(str(f.pet)), lab, sitk.Transform(), sitk.sitkLinear, 0.0)
        la, pa, ca = (sitk.GetArrayFromImage(i) for i in (lab, pet, ct))
        assert set(np.unique(la)) <= {0, 1, 2} and (la == 1).any()
        background = pa[(ca > -500) & (la == 0)].mean()
        assert pa[la == 1].mean() >= 3 * background, pid
        voxel_cc = np.prod(lab.GetSpacing()) / 1000
        assert np.count_nonzero(la == 1) * voxel_cc == pytest.approx(truth.loc[pid, "mtv_primary_cc"], rel=1e-6)
        assert np.count_nonzero(la == 2) * voxel_cc == pytest.approx(truth.loc[pid, "mtv_nodes_cc"], rel=1e-6, abs=1e-9)


def test_centres_differ_in_pet_resolution_and_suv_scale(smoke_dir):
    ds = load_hecktor(smoke_dir)
    centres = json.loads((smoke_dir / "groundtruth" / "centres.json").read_text())
    spacing = {c: sitk.ReadImage(str(ds.images[ds.ids[list(ds.centres).index(c)]].pet)).GetSpacing()
               for c in centres}
    for c, info in centres.items():
        assert spacing[c] == pytest.approx(tuple(info["pet_voxel_mm"]))
    assert len({round(v["suv_calibration"], 6) for v in centres.values()}) == len(centres)
    assert len({tuple(v) for v in spacing.values()}) >= 2 or len({v["psf_fwhm_mm"] for v in centres.values()}) >= 2


def test_cli_synth_show_and_dataset_spec(tmp_path):
    out = run_bench("data", "synth", "--scale", "smoke", "--out", str(tmp_path / "s"), "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert "40 patients in 3 centres" in out.stdout
    png = tmp_path / "p.png"
    shown = run_bench("data", "show", "CHUM-001", "--dataset", str(tmp_path / "s"), "--out", str(png))
    assert shown.returncode == 0, shown.stderr and png.stat().st_size > 10_000
    bad = run_bench("data", "show", "NOPE-001", "--dataset", str(tmp_path / "s"))
    assert bad.returncode == 2 and "NOPE-001" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_bench("run", "--method", "coxph", "--dataset", "synthetic:huge")
    assert bad.returncode == 2 and "huge" in bad.stderr


def test_default_dataset_follows_the_run_scale():
    ds = load_dataset(None, "smoke", progress=False)
    assert ds.name == "synthetic:smoke:0" and len(ds.ids) == 40
    assert load_dataset("synthetic:smoke", "quick", progress=False).fingerprint == ds.fingerprint


@pytest.mark.slow
def test_quick_cohort_meets_the_spec_targets(tmp_path):
    """Oracle C ≈ 0.78–0.83; clinical-only Cox at least 0.10 below it; clinical + true volumes in between."""
    from sklearn.model_selection import StratifiedKFold
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    root = generate(tmp_path / "quick", scale_config("quick"), 0, progress=False)
    ds = load_hecktor(root)
    ids = list(ds.ids)
    truth = pd.read_csv(root / GROUNDTRUTH_FILE).set_index("PatientID").loc[ids]
    t = ds.outcomes.loc[ids, "time"].to_numpy(float)
    e = ds.outcomes.loc[ids, "event"].to_numpy(bool)
    cl = ds.clinical.loc[ids]
    hpv = cl["HPV status (0=-, 1=+)"]
    clinical = np.c_[cl.Age, cl.Gender == "M", cl.Tobacco.fillna(0.5), cl.Tobacco.isna(),
                     cl["Performance status"].fillna(1), hpv.fillna(0.5), hpv.isna()].astype(float)
    volumes = np.c_[np.log(truth.mtv_primary_cc), np.log1p(truth.mtv_nodes_cc)]
    strata = e * 10 + ds.centres.loc[ids].astype("category").cat.codes.to_numpy()
    folds = list(StratifiedKFold(5, shuffle=True, random_state=2022).split(clinical, strata))

    def cv(x):
        out = []
        for tr, te in folds:
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-9
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = CoxPHSurvivalAnalysis(alpha=0.1).fit((x[tr] - mu) / sd, Surv.from_arrays(e[tr], t[tr]))
            out.append(cindex_harrell(t[te], e[te], m.predict((x[te] - mu) / sd)))
        return float(np.mean(out))

    oracle = float(np.mean([cindex_harrell(t[te], e[te], truth.eta.to_numpy()[te]) for _, te in folds]))
    clin, clin_vol = cv(clinical), cv(np.c_[clinical, volumes])
    assert 0.78 <= oracle <= 0.84
    assert oracle - clin >= 0.10
    assert clin < clin_vol < oracle
    assert 0.15 <= e.mean() <= 0.25
