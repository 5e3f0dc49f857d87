"""Trust nothing on disk (issue 25): ids and names that would lead out of their folders, damaged or
inconsistent images, unwritable outputs and floods of problems are bad input — exit 2 with the file, column
or patient named, no traceback, and nothing written outside the folder it belongs in."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, load_hecktor
from bench.errors import BenchInputError
from helpers import ROOT, run_bench, write_tiny_hecktor


def _rename_patient(root: Path, old: str, new: str) -> None:
    for name in (CLINICAL_FILE, ENDPOINT_FILE):
        frame = pd.read_csv(root / name, dtype={"PatientID": str})
        frame.loc[frame.PatientID == old, "PatientID"] = new
        frame.to_csv(root / name, index=False)


def _no_traceback(done) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A fresh tiny cohort (3 centres, 30 patients, 8³ images) in tmp/ds."""
    return write_tiny_hecktor(tmp_path / "ds", per_centre=(10, 10, 10))


# --- patient ids used as paths ---------------------------------------------------------------------------------

def test_an_id_that_climbs_out_of_the_dataset_is_refused_by_verify_run_show_and_corrupt(tiny, tmp_path):
    # the id's images lie outside the dataset, exactly where the id points: before, verify and run accepted it
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = "../../outside/CHUM-001"
    for src in (tiny / "imagesTr" / "CHUM-001__CT.nii.gz", tiny / "imagesTr" / "CHUM-001__PT.nii.gz",
                tiny / "labelsTr" / "CHUM-001.nii.gz"):
        shutil.move(src, outside / src.name)
    _rename_patient(tiny, "CHUM-001", hostile)
    source_ct = (outside / "CHUM-001__CT.nii.gz").read_bytes()
    before = _files_under(tmp_path)

    done = run_bench("data", "verify", str(tiny))
    assert done.returncode == 2, done.stdout
    assert f"PatientID '{hostile}' cannot name a file: it contains a path separator" in done.stderr
    assert ENDPOINT_FILE in done.stderr and "line 2" in done.stderr
    _no_traceback(done)
    for args in (["run", "-m", "coxph", "-p", "clean", "--scale", "smoke", "-d", str(tiny), "--results",
                  str(tmp_path / "r")],
                 ["data", "show", hostile, "-d", str(tiny)],
                 ["corrupt", "-p", "noisy100", "--patient", hostile, "-d", str(tiny), "--out", str(tmp_path / "o")]):
        done = run_bench(*args, cwd=tiny / "imagesTr")  # show's default PNG: imagesTr/<id>.png went to outside/
        assert done.returncode == 2 and hostile in done.stderr, (args, done.stderr)
        _no_traceback(done)
    assert (outside / "CHUM-001__CT.nii.gz").read_bytes() == source_ct  # corrupt overwrote it before
    assert _files_under(tmp_path) == before


def test_an_absolute_id_is_refused_without_a_traceback(tiny, tmp_path):
    hostile = str(tmp_path / "elsewhere" / "CHUM-002")  # before: a traceback (exit 1)
    _rename_patient(tiny, "CHUM-002", hostile)
    with pytest.raises(BenchInputError, match="cannot name a file: it contains a path separator"):
        load_hecktor(tiny)
    done = run_bench("run", "-m", "coxph", "-p", "clean", "--scale", "smoke", "-d", str(tiny), "--results",
                     str(tmp_path / "r"))
    assert done.returncode == 2 and hostile in done.stderr
    _no_traceback(done)


@pytest.mark.parametrize("bad, why", [("..", "is '..'"), ("CHUM\x07-003", "control character"),
                                      ("CHUM\\..\\x", "path separator"), ("C" * 200, "longer than 128")])
def test_other_ids_that_cannot_name_a_file(tiny, bad, why):
    _rename_patient(tiny, "CHUM-003", bad)
    with pytest.raises(BenchInputError, match=why):
        load_hecktor(tiny)


def test_names_from_data_never_lead_out_of_their_folder(tmp_path):
    from bench.corruptions import corrupted_images
    from bench.data.cohort import ImageFiles
    from bench.protocols import load_protocol

    noise = dict(load_protocol("noisy100").corruption)
    with pytest.raises(BenchInputError, match="patient id '../x'"):
        corrupted_images(ImageFiles(tmp_path / "ct", tmp_path / "pt", None), "f" * 16, noise, "../x", tmp_path / "c")
    assert not list(tmp_path.rglob("*.nii.gz"))

    from bench.data.show import default_png
    from bench.fsutil import path_under

    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    for parts in (("..", "x"), ("/etc/passwd",), ("link", "x"), ("a/../../x",)):
        with pytest.raises(BenchInputError, match="outside"):
            path_under(root, *parts)
    assert path_under(root, "a", "b.json") == root / "a" / "b.json"
    with pytest.raises(BenchInputError, match="patient id"):
        default_png("../../x", root)


# --- protocol, method and config names that become file names -----------------------------------------------

def test_a_protocol_named_with_dots_and_slashes_cannot_write_outside_the_leaderboard(tiny, tmp_path):
    text = (ROOT / "protocols" / "clean.toml").read_text()
    assert 'name = "clean"' in text
    user = tmp_path / "user.toml"
    user.write_text(text.replace('name = "clean"', 'name = "../../../escaped"'))
    done = run_bench("run", "-m", "coxph", "-p", str(user), "--scale", "smoke", "-d", str(tiny), "--results",
                     str(tmp_path / "r"))
    # refused when the protocol is read (before: the run went ahead and the leaderboard wrote outside --out);
    # stored rows that carry such a name anyway are refused at export (next test)
    assert done.returncode == 2, done.stderr
    assert "name '../../../escaped' cannot be used in a file name" in done.stderr
    _no_traceback(done)
    assert not list(tmp_path.rglob("escaped*")) and not (tmp_path / "r" / "runs.sqlite").exists()


@pytest.mark.parametrize("field, value", [("method", "../../../evil"), ("protocol", "..")])
def test_a_record_with_a_hostile_name_is_refused(tmp_path, field, value):
    records = sorted((ROOT / "leaderboards" / "records").glob("*/clean__coxph__*.json"))
    assert records
    rec = json.loads(records[0].read_text())
    rec[field] = value
    out = tmp_path / "a" / "b" / "lb"
    target = out / "records" / records[0].parent.name / "hostile.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(rec))
    done = run_bench("leaderboard", "--out", str(out))
    assert done.returncode == 2, done.stderr  # before: exit 0, the Kaplan-Meier plot written outside --out
    assert str(target) in done.stderr and f"{field} {value!r} cannot be used in a file name" in done.stderr
    _no_traceback(done)
    assert _files_under(tmp_path) == {target}


# --- truncated images: in the dataset, and in the cache -----------------------------------------------------

def test_a_truncated_source_image_is_an_error_naming_patient_and_file(tiny):
    pet = tiny / "imagesTr" / "CHUP-004__PT.nii.gz"
    _truncate(pet)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(pet))).size  # SimpleITK alone reads it, half zeros
    done = run_bench("data", "verify", str(tiny))
    assert done.returncode == 2  # before: OK
    assert f"{pet}: patient CHUP-004: PET cannot be read (truncated" in done.stderr

    from bench.data.pipeline import PipelineConfig, process
    from bench.data.verify import check_images

    ds = load_hecktor(tiny)
    with pytest.raises(BenchInputError, match=r"CHUP-004__PT.nii.gz: patient CHUP-004: PET cannot be read \(truncated"):
        check_images(ds)
    with pytest.raises(BenchInputError, match=r"CHUP-004__PT.nii.gz: PET cannot be read \(truncated"):
        process(ds.images["CHUP-004"], PipelineConfig(spacing_mm=4.0, size=(8, 8, 8)))


def test_a_damaged_gzip_stream_and_short_image_data_are_caught(tmp_path):
    from bench.data.images import integrity_problem

    img = sitk.GetImageFromArray(np.arange(4096, dtype=np.float32).reshape(16, 16, 16))
    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(img, str(good), True)
    assert integrity_problem(good) is None
    flipped = bytearray(good.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (tmp_path / "flip.nii.gz").write_bytes(bytes(flipped))
    assert "gzip" in integrity_problem(tmp_path / "flip.nii.gz")
    raw = gzip.decompress(good.read_bytes())
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[:-100]))  # a whole gzip of a short image
    assert integrity_problem(tmp_path / "short.nii.gz").startswith("truncated: 16636 bytes")
    (tmp_path / "text.nii.gz").write_bytes(gzip.compress(b"hello" * 100))
    assert "not a NIfTI" in integrity_problem(tmp_path / "text.nii.gz")


def test_a_truncated_cached_noisy_image_is_written_again(synthetic_smoke, tmp_path):
    from bench.corruptions import corrupted_images
    from bench.protocols import load_protocol

    c = dict(load_protocol("noisy100").corruption)
    pid = synthetic_smoke.ids[0]
    files = synthetic_smoke.images[pid]
    first = corrupted_images(files, synthetic_smoke.fingerprint, c, pid, tmp_path / "noisy")
    good = first.ct.read_bytes(), first.pet.read_bytes()
    _truncate(first.ct)
    (first.pet.parent / (first.pet.name + ".sha256")).write_text("0" * 64)  # a record that does not match
    again = corrupted_images(files, synthetic_smoke.fingerprint, c, pid, tmp_path / "noisy")
    assert (again.ct.read_bytes(), again.pet.read_bytes()) == good  # before: the truncated CT was reused
    (again.ct.parent / (again.ct.name + ".sha256")).unlink()  # no record (a cache from before): rewritten too
    assert corrupted_images(files, synthetic_smoke.fingerprint, c, pid, tmp_path / "noisy").ct.read_bytes() == good[0]
    damaged = tmp_path / "ds"
    shutil.copytree(synthetic_smoke.root, damaged)
    _truncate(damaged / "imagesTr" / f"{pid}__CT.nii.gz")
    broken = load_hecktor(damaged).images[pid]
    with pytest.raises(BenchInputError, match=f"{pid}__CT.nii.gz: patient {pid}: CT cannot be read"):
        corrupted_images(broken, "0" * 16, c, pid, tmp_path / "noisy")


# --- labels and geometry: checked before a run fits anything ------------------------------------------------

def _write_like(path: Path, array: np.ndarray, like: Path, **geometry) -> None:
    ref = sitk.ReadImage(str(like))
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(ref)
    for key, value in geometry.items():
        getattr(img, f"Set{key}")(value)
    sitk.WriteImage(img, str(path))


def test_the_run_side_check_names_label_7_and_a_pet_10_m_away(tiny):
    from bench.data import check_images

    mask = tiny / "labelsTr" / "CHUP-003.nii.gz"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    labels[0, 0, 0] = 7
    _write_like(mask, labels, mask)
    pet = tiny / "imagesTr" / "MDA-002__PT.nii.gz"
    _write_like(pet, sitk.GetArrayFromImage(sitk.ReadImage(str(pet))), pet, Origin=(10000.0, 0.0, 0.0))
    ds = load_hecktor(tiny)
    with pytest.raises(BenchInputError) as err:
        check_images(ds, progress=False)
    text = str(err.value)
    assert f"{mask}: patient CHUP-003: labels [0, 1, 7]" in text
    assert f"{pet}: patient MDA-002: PET covers 0% of the CT's field of view" in text
    assert "2 image problem(s)" in text


def test_the_run_side_check_remembers_patients_that_passed_by_content(tiny, tmp_path, monkeypatch):
    import bench.data.verify as verify

    ds = load_hecktor(tiny)
    cache = tmp_path / "cache"
    assert verify.check_images(ds, cache=cache, progress=False) == 30
    monkeypatch.setattr(verify, "check_patient", lambda *a: pytest.fail("a passed patient was checked again"))
    assert verify.check_images(ds, cache=cache, progress=False) == 0
    monkeypatch.undo()
    mask = tiny / "labelsTr" / "CHUM-004.nii.gz"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    labels[1, 1, 1] = 7  # same size on disk, new content: checked again
    _write_like(mask, labels, mask)
    with pytest.raises(BenchInputError, match="patient CHUM-004: labels"):
        verify.check_images(load_hecktor(tiny), cache=cache, progress=False)


def test_a_4d_image_a_non_nifti_and_a_mask_off_the_ct_grid_are_named(tiny):
    from bench.data.pipeline import PipelineConfig, process

    ct = tiny / "imagesTr" / "CHUM-005__CT.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 8, 8, 8), np.float32), isVector=False), str(ct))
    pet = tiny / "imagesTr" / "CHUP-006__PT.nii.gz"
    pet.write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    mask = tiny / "labelsTr" / "MDA-007.nii.gz"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    _write_like(mask, labels, mask, Spacing=(1.0, 1.0, 1.0))
    ds = load_hecktor(tiny)
    cfg = PipelineConfig(spacing_mm=4.0, size=(8, 8, 8))
    for pid, needle in (("CHUM-005", "CHUM-005__CT.nii.gz: CT is 4-D, expected 3-D"),
                        ("CHUP-006", "CHUP-006__PT.nii.gz: PET cannot be read")):
        with pytest.raises(BenchInputError, match=needle):  # before: a RuntimeError in each worker, exit 1
            process(ds.images[pid], cfg)
    done = run_bench("data", "verify", str(tiny))
    assert done.returncode == 2 and "CT is 4-D" in done.stderr and "CHUP-006__PT.nii.gz" in done.stderr

    from bench.data import check_images

    with pytest.raises(BenchInputError) as err:
        check_images(ds, progress=False)
    text = str(err.value)
    assert f"{ct}: patient CHUM-005: CT is 4-D, expected 3-D" in text
    assert f"{pet}: patient CHUP-006: PET cannot be read (not a NIfTI" in text
    assert f"{mask}: patient MDA-007: mask geometry" in text


def _runner_checks_images() -> bool:
    return "check_images" in (ROOT / "bench" / "runner.py").read_text()


@pytest.mark.skipif(not _runner_checks_images(), reason="bench/runner.py does not call check_images yet")
def test_bench_run_stops_on_a_bad_label_before_any_fit(tiny, tmp_path):
    import bench
    from bench.protocols import load_protocol
    from bench.registry import register_method, unregister_method
    from bench.runner import plan_methods, run_jobs

    class NeverFit(bench.Method):
        consumes = ("ct", "pet", "mask")
        configs = {"smoke": {}, "quick": {}, "paper": {}}

        def fit(self, train, val):
            raise AssertionError("fit ran on a dataset with a bad mask")

    mask = tiny / "labelsTr" / "MDA-001.nii.gz"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    labels[0, 0, 0] = 7
    _write_like(mask, labels, mask)
    register_method("unit-never-fit")(NeverFit)
    try:
        with pytest.raises(BenchInputError, match="MDA-001.nii.gz: patient MDA-001: labels"):
            run_jobs(plan_methods(["unit-never-fit"], "smoke", []), [load_protocol("clean")], load_hecktor(tiny),
                     scale="smoke", seeds=[0], results_dir=tmp_path / "r", progress=False)
    finally:
        unregister_method("unit-never-fit")


# --- unwritable outputs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-results")
    ds = write_tiny_hecktor(base / "ds", per_centre=(10, 10, 10))
    done = run_bench("run", "-m", "coxph", "-p", "clean", "--scale", "smoke", "-d", str(ds), "--results",
                     str(base / "r"), env={"BENCH_CACHE_DIR": str(base / "cache")})  # before the per-test cache
    assert done.returncode == 0, done.stderr
    return ds, base / "r"


def test_an_unwritable_out_is_exit_2_naming_the_path(finished_results, tmp_path):
    ds, results = finished_results
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"  # (the tests may run as root: a folder under a file is unwritable for anyone)
    for args in (["store", "export", "--results", str(results), "--out", str(out)],
                 ["leaderboard", "--results", str(results), "--out", str(out)],
                 ["corrupt", "-p", "noisy100", "--patient", "CHUM-001", "-d", str(ds), "--out", str(out)]):
        done = run_bench(*args)
        assert done.returncode == 2, (args, done.stderr)  # before: a traceback, exit 1
        assert f"--out {out}: cannot write there" in done.stderr
        _no_traceback(done)
    # a folder that exists, with a file where a page's folder must go: named too
    board = tmp_path / "board"
    assert run_bench("leaderboard", "--results", str(results), "--out", str(board)).returncode == 0
    slug = next(p for p in board.iterdir() if p.is_dir() and p.name not in ("records",))
    shutil.rmtree(slug)
    slug.write_text("in the way")
    done = run_bench("leaderboard", "--out", str(board))
    assert done.returncode == 2 and f"--out {board}: cannot write {slug}" in done.stderr, done.stderr
    _no_traceback(done)


# --- verify's listing ---------------------------------------------------------------------------------------

def test_verify_lists_20_problems_of_a_kind_then_how_many_more(tmp_path):
    root = write_tiny_hecktor(tmp_path / "many", per_centre=(40, 40, 40), images=False)
    (root / "imagesTr").mkdir()  # 120 patients, 240 missing images (a broken export), 1 bad RFS
    end = pd.read_csv(root / ENDPOINT_FILE)
    end.loc[0, "RFS"] = -1
    end.to_csv(root / ENDPOINT_FILE, index=False)
    done = run_bench("data", "verify", str(root))
    assert done.returncode == 2
    listed = [ln for ln in done.stderr.splitlines() if ln.startswith("  - ")]
    assert len(listed) == 20 + 1 + 1, done.stderr  # before: 241 lines
    assert "  - … and 220 more (image missing)" in listed
    assert any("'RFS' is negative" in ln for ln in listed)
    assert "241 problem(s)" in done.stderr
