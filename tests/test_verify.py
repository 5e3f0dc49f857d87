"""`bench data verify`: every problem in a HECKTOR folder, with patient and file, exit 2; OK otherwise."""
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.data.synthetic import generate, scale_config
from helpers import run_bench


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "smoke", scale_config("smoke"), 0, progress=False)


def _put_label(path, value):
    """Write ``value`` into one voxel of the label map at ``path`` (an invalid label when value > 2)."""
    m = sitk.ReadImage(str(path))
    a = sitk.GetArrayFromImage(m)
    a[0, 0, 0] = value
    b = sitk.GetImageFromArray(a)
    b.CopyInformation(m)
    sitk.WriteImage(b, str(path))


def test_a_good_folder_passes(smoke_dir):
    out = run_bench("data", "verify", str(smoke_dir))
    assert out.returncode == 0 and "OK (40 patients)" in out.stdout


def test_every_image_problem_is_reported_with_patient_and_file(smoke_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(smoke_dir, bad)
    _put_label(bad / "labelsTr" / "CHUM-002.nii.gz", 7)
    ct = bad / "imagesTr" / "CHUP-001__CT.nii.gz"
    c = sitk.ReadImage(str(ct))
    c.SetSpacing([0.05, 0.05, 0.05])
    sitk.WriteImage(c, str(ct))
    (bad / "imagesTr" / "MDA-003__PT.nii.gz").write_bytes(b"not a nifti")
    out = run_bench("data", "verify", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    for needle in ("CHUM-002.nii.gz: patient CHUM-002: labels [0, 1, 2, 7]",
                   "CHUP-001__CT.nii.gz: patient CHUP-001: CT spacing (0.05, 0.05, 0.05) mm",
                   "CHUP-001.nii.gz: patient CHUP-001: mask geometry",
                   "MDA-003__PT.nii.gz: patient MDA-003: PET cannot be read"):
        assert needle in out.stderr, needle


def test_csv_problems_are_listed_too(smoke_dir, tmp_path):
    bad = tmp_path / "csv"
    shutil.copytree(smoke_dir, bad)
    end = bad / "hecktor2022_endpoint_training.csv"
    t = pd.read_csv(end)
    t.loc[3, "RFS"] = np.nan
    t.to_csv(end, index=False)
    (bad / "imagesTr" / "CHUM-005__CT.nii.gz").unlink()
    out = run_bench("data", "verify", str(bad))
    assert out.returncode == 2
    assert "RFS" in out.stderr and t.loc[3, "PatientID"] in out.stderr and "CHUM-005" in out.stderr


def test_twenty_problems_of_a_kind_are_listed_and_images_are_checked_despite_csv_errors(smoke_dir, tmp_path):
    bad = tmp_path / "many"
    shutil.copytree(smoke_dir, bad)
    pets = sorted((bad / "imagesTr").glob("*__PT.nii.gz"))[:25]
    for p in pets:
        p.unlink()
    _put_label(bad / "labelsTr" / "MDA-010.nii.gz", 9)
    out = run_bench("data", "verify", str(bad))
    assert out.returncode == 2
    listed = [ln for ln in out.stderr.splitlines() if ln.startswith("  - ")]
    missing = [ln for ln in listed if "__PT.nii.gz: image of patient" in ln]
    assert len(missing) == 20 and "  - … and 5 more (image missing)" in listed  # 25 missing PETs: 20 named
    assert f"{len(listed) - 1 + 5} problem(s)" in out.stderr  # the count is of every problem
    assert "labels [0, 1, 2, 9]" in out.stderr  # the image checks ran although files are missing


def test_a_folder_without_images_says_none_was_checked(smoke_dir, tmp_path):
    clin = tmp_path / "clin"
    clin.mkdir()
    for f in ("hecktor2022_clinical_info_training.csv", "hecktor2022_endpoint_training.csv"):
        shutil.copy(smoke_dir / f, clin / f)
    out = run_bench("data", "verify", str(clin))
    assert out.returncode == 0 and "images not checked" in out.stdout and "no imagesTr" in out.stderr
