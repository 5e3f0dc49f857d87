"""DICOM export of the synthetic cohort and DICOM import into the dataset layout (docs/dicom.md): a round trip
at smoke scale through the CLI, the SUV arithmetic, and one test per refused input (each must name the
patient and the file, exit 2 without a traceback, and leave neither the output nor a temporary folder)."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from bench.cli import cli
from bench.data.dicom import fill_polygon, import_dicom, load_roi_map, suv_factor
from bench.data.dicom_write import F18_HALF_LIFE_S, ds_text, export_dicom, trace_outlines
from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, load_hecktor
from bench.errors import BenchInputError
from helpers import run_bench


def _bench(*args: str):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """`bench data synth --format dicom --scale smoke`, then `bench data import-dicom` with the two CSVs: the
    NIfTI cohort, its DICOM export and the import (40 patients, ~15 s on two cores)."""
    from bench.data.synthetic import default_path

    base = tmp_path_factory.mktemp("dicom")
    with pytest.MonkeyPatch.context() as mp:  # the session fixture runs before the per-test cache isolation
        mp.setenv("BENCH_CACHE_DIR", str(base / "cache"))
        r = _bench("data", "synth", "--format", "dicom", "--scale", "smoke", "--out", base / "dicom")
        assert r.exit_code == 0, r.output
        nifti = default_path(base / "cache" / "datasets", "smoke", 0)
    r = _bench("data", "import-dicom", base / "dicom", "--out", base / "imported",
               "--clinical", base / "dicom" / CLINICAL_FILE, "--endpoints", base / "dicom" / ENDPOINT_FILE)
    assert r.exit_code == 0, r.output
    return {"nifti": nifti, "dicom": base / "dicom", "imported": base / "imported", "import_output": r.output}


@pytest.fixture(scope="session")
def patient(smoke) -> str:
    """A patient with both a primary and a node."""
    for path in sorted((smoke["nifti"] / "labelsTr").glob("*.nii.gz")):
        if {1, 2} <= set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).tolist()):
            return path.name.split(".")[0]
    raise AssertionError("no smoke patient has both GTVp and GTVn")


def _copy(smoke, pids, dest: Path) -> Path:
    for pid in pids:
        shutil.copytree(smoke["dicom"] / pid, dest / pid)
    return dest


def _arrays(root: Path, pid: str) -> dict:
    out = {}
    for key, rel in (("ct", f"imagesTr/{pid}__CT.nii.gz"), ("pet", f"imagesTr/{pid}__PT.nii.gz"),
                     ("mask", f"labelsTr/{pid}.nii.gz")):
        img = sitk.ReadImage(str(root / rel))
        out[key] = img
    return out


def _rewrite(files, change) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        change(ds)
        ds.save_as(f, enforce_file_format=True)


# --- the round trip ---------------------------------------------------------------------------------------

def test_round_trip_of_the_smoke_cohort_gives_back_hu_suv_geometry_and_masks(smoke):
    nifti, imported = smoke["nifti"], smoke["imported"]
    ids = load_hecktor(nifti).ids
    worst_hu, worst_suv, worst_geometry = 0, 0.0, 0.0
    dice = {1: [], 2: []}
    for pid in ids:
        a, b = _arrays(nifti, pid), _arrays(imported, pid)
        assert b["ct"].GetPixelID() == sitk.sitkInt16 and b["pet"].GetPixelID() == sitk.sitkFloat32
        assert b["mask"].GetPixelID() == sitk.sitkUInt8
        for key in ("ct", "pet", "mask"):
            for what in ("GetOrigin", "GetSpacing", "GetDirection"):
                diff = np.abs(np.subtract(getattr(a[key], what)(), getattr(b[key], what)())).max()
                worst_geometry = max(worst_geometry, float(diff))
            assert a[key].GetSize() == b[key].GetSize()
        hu = np.abs(sitk.GetArrayFromImage(a["ct"]).astype(int) - sitk.GetArrayFromImage(b["ct"]).astype(int))
        worst_hu = max(worst_hu, int(hu.max()))
        suv0, suv1 = (sitk.GetArrayFromImage(x["pet"]).astype(float) for x in (a, b))
        for k in range(suv0.shape[0]):
            top = suv0[k].max()
            worst_suv = max(worst_suv, float(np.abs(suv0[k] - suv1[k]).max() / top) if top > 0 else
                            float(np.abs(suv1[k]).max()))
        m0, m1 = (sitk.GetArrayFromImage(x["mask"]) for x in (a, b))
        assert set(np.unique(m1)) <= {0, 1, 2}
        for label in (1, 2):
            n0, n1 = int((m0 == label).sum()), int((m1 == label).sum())
            assert (n0 == 0) == (n1 == 0), f"{pid}: label {label} present on one side only"
            if n0:
                dice[label].append(2 * int(((m0 == label) & (m1 == label)).sum()) / (n0 + n1))
    print(f"\nround trip, {len(ids)} patients: max |dHU| {worst_hu}, max SUV error / slice max {worst_suv:.2e}, "
          f"max geometry difference {worst_geometry:.1e}, Dice GTVp min {min(dice[1]):.4f} mean "
          f"{np.mean(dice[1]):.4f} (n={len(dice[1])}), GTVn min {min(dice[2]):.4f} mean {np.mean(dice[2]):.4f} "
          f"(n={len(dice[2])})")
    assert worst_hu == 0
    assert worst_suv <= 1e-3
    assert worst_geometry <= 1e-4
    assert min(dice[1]) >= 0.95 and min(dice[2]) >= 0.95


def test_the_import_is_a_hecktor_folder_with_a_manifest_and_provenance(smoke, patient):
    imported, nifti = smoke["imported"], smoke["nifti"]
    ds, ref = load_hecktor(imported), load_hecktor(nifti)
    assert list(ds.ids) == list(ref.ids)
    assert ds.outcomes.equals(ref.outcomes)
    assert (imported / CLINICAL_FILE).read_bytes() == (nifti / CLINICAL_FILE).read_bytes()
    manifest = tomllib.loads((imported / "study.toml").read_text())
    assert manifest == {
        "dataset": {"name": "imported", "tables": [CLINICAL_FILE, ENDPOINT_FILE], "id": "PatientID", "time": "RFS",
                    "event": "Relapse", "centre": "CenterID", "time_unit": "days", "drop": ["Task 1", "Task 2"]},
        "images": {"ct": "imagesTr/{id}__CT.nii.gz", "pet": "imagesTr/{id}__PT.nii.gz", "mask": "labelsTr/{id}.nii.gz"}}
    prov = json.loads((imported / "provenance" / f"{patient}.json").read_text())
    assert prov["PatientID"] == patient
    assert prov["rtstruct"]["rois"] == {"GTVp": ["GTVp"], "GTVn": ["GTVn"]}
    assert prov["rtstruct"]["file"] == f"{patient}/RTSTRUCT.dcm"
    suv = prov["pet"]["suv"]
    assert suv["units"] == "BQML" and suv["decay_correction"] == "START" and suv["half_life_s"] == F18_HALF_LIFE_S
    assert 55 * 60 <= suv["decay_time_s"] <= 75 * 60
    assert suv["suv_factor"] == pytest.approx(suv["patient_weight_kg"] * 1000 / suv["decayed_dose_bq"])
    assert len(prov["ct"]["files"]) == prov["ct"]["slices"] and prov["ct"]["series_instance_uid"]
    assert prov["pet"]["series_instance_uid"] != prov["ct"]["series_instance_uid"]
    assert "40 patient(s) imported, 40 with GTVp/GTVn masks" in smoke["import_output"]


def test_the_manifest_loads_with_the_manifest_loader(smoke):
    from bench.data import manifest

    ds, ref = manifest.load_manifest_file(smoke["imported"] / "study.toml"), load_hecktor(smoke["imported"])
    assert list(ds.ids) == list(ref.ids)
    assert np.array_equal(ds.outcomes.to_numpy(), ref.outcomes.to_numpy())
    assert list(ds.clinical.columns) == list(ref.clinical.columns)  # Task 1 / Task 2 dropped: not features
    assert (ds.centres.groupby(ref.centres).nunique() == 1).all()  # the same grouping (numbers, not codes)
    assert all(ds.images[i] == ref.images[i] for i in ref.ids)


def test_the_export_is_reproducible_and_kept(smoke, patient, tmp_path):
    again = export_dicom(smoke["nifti"], tmp_path / "again", patients=[patient])
    files = sorted(p.relative_to(again / patient) for p in (again / patient).rglob("*.dcm"))
    assert files and all((again / patient / f).read_bytes() == (smoke["dicom"] / patient / f).read_bytes()
                         for f in files)
    stamp = (again / ".complete").stat().st_mtime_ns
    export_dicom(smoke["nifti"], again, patients=[patient])  # the same export: kept as it is
    assert (again / ".complete").stat().st_mtime_ns == stamp
    ct = pydicom.dcmread(again / patient / "CT" / "CT-0001.dcm")
    pt = pydicom.dcmread(again / patient / "PT" / "PT-0001.dcm")
    rs = pydicom.dcmread(again / patient / "RTSTRUCT.dcm")
    assert (ct.SOPClassUID, pt.SOPClassUID, rs.SOPClassUID) == (pydicom.uid.CTImageStorage,
                                                               pydicom.uid.PositronEmissionTomographyImageStorage,
                                                               pydicom.uid.RTStructureSetStorage)
    frame = rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    assert ct.FrameOfReferenceUID == pt.FrameOfReferenceUID == frame
    assert ct.StudyInstanceUID == pt.StudyInstanceUID == rs.StudyInstanceUID
    assert (pt.Units, pt.DecayCorrection) == ("BQML", "START")
    assert float(pt.RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife) == 6586.2
    assert [r.ROIName for r in rs.StructureSetROISequence] == ["GTVp", "GTVn"]
    assert {c.ContourGeometricType for r in rs.ROIContourSequence for c in r.ContourSequence} == {"CLOSED_PLANAR"}


def test_without_tables_the_manifest_lists_the_images_and_says_to_add_the_tables(smoke, patient, tmp_path):
    src = _copy(smoke, [patient], tmp_path / "src")
    r = _bench("data", "import-dicom", src, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "[dataset] section is commented out" in r.output
    text = (tmp_path / "out" / "study.toml").read_text()
    assert "# [dataset]" in text and "# time = \"RFS\"" in text
    assert tomllib.loads(text) == {"images": {"ct": "imagesTr/{id}__CT.nii.gz", "pet": "imagesTr/{id}__PT.nii.gz",
                                              "mask": "labelsTr/{id}.nii.gz"}}
    assert not (tmp_path / "out" / CLINICAL_FILE).exists()


# --- SUV ---------------------------------------------------------------------------------------------------

def _pet(root: Path, pid: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / "imagesTr" / f"{pid}__PT.nii.gz"))).astype(float)


def test_the_dose_is_decayed_from_injection_to_the_series_start(smoke, patient, tmp_path):
    reference = _pet(smoke["imported"], patient)
    src = _copy(smoke, [patient], tmp_path / "src")
    pet_files = sorted((src / patient / "PT").glob("*.dcm"))
    info = pydicom.dcmread(pet_files[0]).RadiopharmaceuticalInformationSequence[0]
    h, m, s = int(info.RadiopharmaceuticalStartTime[:2]), int(info.RadiopharmaceuticalStartTime[2:4]), \
        int(info.RadiopharmaceuticalStartTime[4:6])
    t = h * 3600 + m * 60 + s - 1800  # injected 30 minutes earlier
    earlier = f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}"

    def inject_earlier(ds):
        item = ds.RadiopharmaceuticalInformationSequence[0]
        item.RadiopharmaceuticalStartTime = earlier
        item.RadiopharmaceuticalStartDateTime = str(item.RadiopharmaceuticalStartDateTime)[:8] + earlier

    _rewrite(pet_files, inject_earlier)
    import_dicom(src, tmp_path / "earlier")
    hot = reference > 0.1 * reference.max()
    ratio = _pet(tmp_path / "earlier", patient)[hot] / reference[hot]
    assert ratio == pytest.approx(2 ** (1800 / F18_HALF_LIFE_S), rel=1e-6)  # 1.208: less dose left at the scan

    _rewrite(pet_files, lambda ds: setattr(ds, "DecayCorrection", "ADMIN"))  # decay-corrected to the injection
    import_dicom(src, tmp_path / "admin")
    prov = json.loads((smoke["imported"] / "provenance" / f"{patient}.json").read_text())["pet"]["suv"]
    ratio = _pet(tmp_path / "admin", patient)[hot] / reference[hot]
    assert ratio == pytest.approx(2 ** (-prov["decay_time_s"] / F18_HALF_LIFE_S), rel=1e-6)


def test_philips_counts_with_their_suv_scale_factor_are_converted(smoke, patient, tmp_path):
    reference = _pet(smoke["imported"], patient)
    factor = json.loads((smoke["imported"] / "provenance" / f"{patient}.json").read_text())["pet"]["suv"]["suv_factor"]
    src = _copy(smoke, [patient], tmp_path / "src")

    def philips(ds):
        ds.Units = "CNTS"
        ds.add_new((0x7053, 0x0010), "LO", "Philips PET Private Group")
        ds.add_new((0x7053, 0x1000), "DS", ds_text(factor))

    _rewrite(sorted((src / patient / "PT").glob("*.dcm")), philips)
    import_dicom(src, tmp_path / "out")
    assert np.allclose(_pet(tmp_path / "out", patient), reference, rtol=1e-6, atol=1e-6 * reference.max())


def test_an_injection_time_without_a_date_crosses_midnight():
    from pydicom.dataset import Dataset

    ds, item = Dataset(), Dataset()
    ds.Units, ds.DecayCorrection, ds.PatientWeight = "BQML", "START", "80"
    ds.SeriesDate, ds.SeriesTime = "20200102", "003000"
    item.RadionuclideTotalDose, item.RadionuclideHalfLife, item.RadiopharmaceuticalStartTime = "3e8", "6586.2", "233000"
    ds.RadiopharmaceuticalInformationSequence = [item]
    factor, inputs = suv_factor([ds])
    assert inputs["decay_time_s"] == 3600 and inputs["injection"] == "2020-01-01T23:30:00"
    assert factor == pytest.approx(80e3 / (3e8 * 2 ** (-3600 / 6586.2)))


# --- contours ----------------------------------------------------------------------------------------------

def test_voxel_boundary_outlines_fill_back_to_the_mask_exactly():
    rng = np.random.default_rng(0)
    for _ in range(200):  # holes, islands in holes, pixels touching at a corner
        mask = rng.uniform(size=(rng.integers(1, 14), rng.integers(1, 14))) < rng.uniform(0.2, 0.8)
        back = np.zeros(mask.shape, bool)
        for loop in trace_outlines(mask):
            assert np.all(np.abs(loop - np.round(loop)) == 0.5)  # corners: no voxel centre on a contour
            back ^= fill_polygon(loop, mask.shape)
        assert np.array_equal(back, mask)
    checker = np.indices((4, 4)).sum(0) % 2 == 0
    assert len(trace_outlines(checker)) == 8  # corner-touching pixels get outlines of their own


def test_a_roi_map_names_other_rois(smoke, patient, tmp_path):
    src = _copy(smoke, [patient], tmp_path / "src")
    renamed = {"GTVp": "Tumour_main", "GTVn": "LN_level2_R"}
    _rewrite([src / patient / "RTSTRUCT.dcm"],
             lambda ds: [setattr(r, "ROIName", renamed[r.ROIName]) for r in ds.StructureSetROISequence])
    rois = tmp_path / "rois.toml"
    rois.write_text('[gtvp]\npatterns = ["^tumou?r"]\n[gtvn]\npatterns = ["^ln[_ ]"]\n')
    r = _bench("data", "import-dicom", src, "--out", tmp_path / "out", "--roi-map", rois)
    assert r.exit_code == 0, r.output
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "labelsTr" / f"{patient}.nii.gz")))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(smoke["imported"] / "labelsTr" / f"{patient}.nii.gz")))
    assert np.array_equal(mask, ref)
    prov = json.loads((tmp_path / "out" / "provenance" / f"{patient}.json").read_text())
    assert prov["rtstruct"]["rois"] == {"GTVp": ["Tumour_main"], "GTVn": ["LN_level2_R"]}
    rois.write_text('[gtvp]\npatterns = ["(unclosed"]\n')
    with pytest.raises(BenchInputError, match="not a regular expression"):
        load_roi_map(rois)


# --- refused inputs ----------------------------------------------------------------------------------------

def _drop_weight(src, pid):
    _rewrite(sorted((src / pid / "PT").glob("*.dcm")), lambda ds: delattr(ds, "PatientWeight"))
    return src / pid / "PT" / "PT-0001.dcm", "PatientWeight"


def _drop_dose(src, pid):
    _rewrite(sorted((src / pid / "PT").glob("*.dcm")),
             lambda ds: delattr(ds.RadiopharmaceuticalInformationSequence[0], "RadionuclideTotalDose"))
    return src / pid / "PT" / "PT-0001.dcm", "RadionuclideTotalDose"


def _counts(src, pid):
    _rewrite(sorted((src / pid / "PT").glob("*.dcm")), lambda ds: setattr(ds, "Units", "CNTS"))
    return src / pid / "PT" / "PT-0001.dcm", "CNTS cannot be converted"


def _unknown_rois(src, pid):
    names = iter(["Parotid_L", "Brainstem", "SpinalCord"])
    _rewrite([src / pid / "RTSTRUCT.dcm"], lambda ds: [setattr(r, "ROIName", next(names))
                                                       for r in ds.StructureSetROISequence])
    return src / pid / "RTSTRUCT.dcm", "no ROI matches"


def _empty_roi(src, pid):
    _rewrite([src / pid / "RTSTRUCT.dcm"], lambda ds: delattr(ds.ROIContourSequence[1], "ContourSequence"))
    return src / pid / "RTSTRUCT.dcm", "'GTVn' is empty"


def _two_ct_series(src, pid):
    shutil.copytree(src / pid / "CT", src / pid / "CT-recon2")
    series = pydicom.uid.generate_uid(entropy_srcs=["test", "second CT"])
    def second(ds):
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[str(ds.SOPInstanceUID)])

    _rewrite(sorted((src / pid / "CT-recon2").glob("*.dcm")), second)
    return src / pid / "CT-recon2", "2 CT series"


def _missing_slice(src, pid):
    (src / pid / "CT" / "CT-0010.dcm").unlink()
    return src / pid / "CT" / "CT-0011.dcm", "inconsistent slice spacing"


PROBLEMS = {"missing PatientWeight": _drop_weight, "missing RadionuclideTotalDose": _drop_dose,
            "Units CNTS without a conversion": _counts, "ROIs match no pattern": _unknown_rois,
            "empty ROI": _empty_roi, "two CT series": _two_ct_series, "a missing CT slice": _missing_slice}


def _left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".out") or p.name == "out")


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_a_refused_input_names_patient_and_file_and_writes_nothing(smoke, patient, tmp_path, case):
    src = _copy(smoke, [patient], tmp_path / "src")
    where, what = PROBLEMS[case](src, patient)
    with pytest.raises(BenchInputError) as err:
        import_dicom(src, tmp_path / "out")
    message = str(err.value)
    assert f"patient {patient}" in message and str(where) in message and what in message, message
    assert "nothing was written" in message
    assert _left_behind(tmp_path) == []
    r = _bench("data", "import-dicom", src, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and f"patient {patient}" in r.output and str(where) in r.output
    assert _left_behind(tmp_path) == []


def test_problems_are_collected_over_the_whole_folder(smoke, patient, tmp_path):
    other = next(p.name for p in sorted(smoke["dicom"].iterdir()) if p.is_dir() and p.name != patient)
    src = _copy(smoke, [patient, other], tmp_path / "src")
    weight_file, _ = _drop_weight(src, patient)
    rtstruct, _ = _unknown_rois(src, other)
    with pytest.raises(BenchInputError) as err:
        import_dicom(src, tmp_path / "out")
    message = str(err.value)
    assert "2 problem(s)" in message and str(weight_file) in message and str(rtstruct) in message
    assert _left_behind(tmp_path) == []


def test_masks_for_some_patients_only_are_refused(smoke, patient, tmp_path):
    other = next(p.name for p in sorted(smoke["dicom"].iterdir()) if p.is_dir() and p.name != patient)
    src = _copy(smoke, [patient, other], tmp_path / "src")
    (src / other / "RTSTRUCT.dcm").unlink()
    with pytest.raises(BenchInputError, match=f"{src / other}: patient {other}: no RTSTRUCT, while 1 other"):
        import_dicom(src, tmp_path / "out")
    assert _left_behind(tmp_path) == []


def test_a_non_empty_output_folder_is_refused_and_left_alone(smoke, patient, tmp_path):
    src = _copy(smoke, [patient], tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    r = _bench("data", "import-dicom", src, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "not empty" in r.output and "Traceback" not in r.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]
    r = _bench("data", "import-dicom", src, "--out", tmp_path / "new", "--clinical", src / "missing.csv")
    assert r.exit_code == 2 and "--clinical and --endpoints go together" in r.output


@pytest.mark.slow
def test_a_run_on_the_imported_cohort_scores_as_on_the_nifti_one(smoke, tmp_path):
    """The round trip as a user sees it: coxph's metrics equal exactly, radiomics-cox's C-td within 0.01
    (PET in DICOM is 16-bit with a per-slice slope)."""
    from bench.store import Store

    runs = {}
    for label, folder in (("nifti", smoke["nifti"]), ("imported", smoke["imported"])):
        done = run_bench("run", "--method", "coxph,radiomics-cox", "--protocol", "clean", "--scale", "smoke",
                         "--dataset", f"hecktor2022:{folder}", "--results", str(tmp_path / label))
        assert done.returncode == 0, done.stderr
        store = Store(tmp_path / label, readonly=True)
        runs[label] = {(r["method"], r["fold"]): json.loads(r["metrics"]) for r in store.rows()}
    assert runs["nifti"].keys() == runs["imported"].keys() and len(runs["nifti"]) == 10
    for (method, fold), metrics in runs["nifti"].items():
        other = runs["imported"][(method, fold)]
        if method == "coxph":
            assert metrics == other
        else:
            assert abs(metrics["cindex_td"] - other["cindex_td"]) <= 0.01, (fold, metrics["cindex_td"], other["cindex_td"])
