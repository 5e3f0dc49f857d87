"""Corrupted images: the noise of the noisyNN protocols (right amount, reproducible, nested, exactly the chosen
patients, what an image method actually receives in a run) and the corruption suite's types (each rewrites
only its modality on the same grid, deterministic and cached, monotone over severities, recorded in a manifest
that import regenerates, rendered by `bench corrupt`)."""
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import bench
from bench.corruptions import corrupted_files, corrupted_images, ct_gaussian, pet_poisson, selection_draw
from bench.data.hecktor import load_hecktor
from bench.data.synthetic import generate, scale_config
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.results import results_frame
from bench.runner import plan_methods, run_jobs
from bench.store import Store, unpack_arrays
from helpers import run_bench


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    return load_hecktor(generate(tmp_path_factory.mktemp("synth") / "smoke", scale_config("smoke"), 0, progress=False))


def test_noise_amounts():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1000, size=(20, 50, 50)).astype(np.int16)
    noisy = ct_gaussian(ct, 0.1, np.random.default_rng(1))
    assert noisy.dtype == np.int16
    sd = (noisy.astype(float) - ct).std()
    assert sd == pytest.approx(0.1 * (ct.max() - ct.min()), rel=0.02)
    pet = np.full((20, 50, 50), 4.0, dtype=np.float32)
    p = pet_poisson(pet, 5.0, np.random.default_rng(2))
    assert p.mean() == pytest.approx(4.0, rel=0.02) and p.var() == pytest.approx(4.0 / 5.0, rel=0.05)
    assert (p * 5.0 == np.round(p * 5.0)).all()  # counts scaled back


def test_selection_is_nested_and_exact(smoke, tmp_path):
    c50 = dict(load_protocol("noisy50").corruption)
    c20 = dict(load_protocol("noisy20").corruption)
    ids = list(smoke.ids)
    u = {pid: selection_draw(smoke.fingerprint, c50["seed"], pid) for pid in ids}
    f50 = corrupted_files(smoke, c50, ids, tmp_path)
    f20 = corrupted_files(smoke, c20, ids, tmp_path)
    assert set(f50) == {p for p in ids if u[p] < 0.5} and set(f20) == {p for p in ids if u[p] < 0.2}
    assert set(f20) < set(f50)
    # one noisy image per patient and level: noisy20 reuses noisy50's files
    assert all(f20[p].ct == f50[p].ct and f20[p].pet == f50[p].pet for p in f20)
    assert all(f50[p].mask == smoke.images[p].mask for p in f50)


def test_noise_realisation_is_reproducible_and_keeps_geometry(smoke, tmp_path):
    c = dict(load_protocol("noisy100").corruption)
    pid = smoke.ids[0]
    a = corrupted_images(smoke.images[pid], smoke.fingerprint, c, pid, tmp_path / "a")
    b = corrupted_images(smoke.images[pid], smoke.fingerprint, c, pid, tmp_path / "b")
    assert a.ct.read_bytes() == b.ct.read_bytes() and a.pet.read_bytes() == b.pet.read_bytes()
    for noisy, clean in ((a.ct, smoke.images[pid].ct), (a.pet, smoke.images[pid].pet)):
        n, c0 = sitk.ReadImage(str(noisy)), sitk.ReadImage(str(clean))
        assert n.GetSize() == c0.GetSize() and n.GetSpacing() == c0.GetSpacing() and n.GetOrigin() == c0.GetOrigin()
        assert not np.array_equal(sitk.GetArrayFromImage(n), sitk.GetArrayFromImage(c0))


class MeanCT(bench.Method):
    """Reads each patient's CT: risk = the CT's standard deviation (noise raises it)."""

    consumes = ("ct",)
    configs = {"smoke": {}, "quick": {}, "paper": {}}

    def fit(self, train, val):
        self.n = len(train.ids)

    def predict(self, cohort):
        files = cohort.image_files
        return bench.Prediction([float(sitk.GetArrayFromImage(sitk.ReadImage(str(files[p].ct))).std())
                                 for p in cohort.ids])


def test_an_image_method_sees_noise_on_exactly_the_chosen_test_patients(smoke, tmp_path):
    register_method("unit-ct-std")(MeanCT)
    try:
        protocols = [load_protocol(n) for n in ("clean", "noisy50")]
        report = run_jobs(plan_methods(["unit-ct-std"], "smoke", []), protocols, smoke, scale="smoke", seeds=[0],
                          results_dir=tmp_path, progress=False)
        assert report.fits == 5 and report.ran == 10 and not report.failed  # one model per fold serves both
    finally:
        unregister_method("unit-ct-std")
    rows = Store(tmp_path).rows()
    c = load_protocol("noisy50").corruption
    changed, chosen = set(), set()
    by = {(r["protocol"], r["fold"]): unpack_arrays(r["predictions"]) for r in rows}
    for fold in range(5):
        clean, noisy = by[("clean", fold)], by[("noisy50", fold)]
        assert list(clean["ids"]) == list(noisy["ids"])
        changed |= {p for p, a, b in zip(clean["ids"], clean["risk"], noisy["risk"]) if a != b}
        chosen |= {p for p in clean["ids"] if selection_draw(smoke.fingerprint, c["seed"], p) < c["fraction"]}
        np.testing.assert_array_equal(clean["train_risk"], noisy["train_risk"])  # training stays clean
    assert changed == chosen and 0 < len(chosen) < len(smoke.ids)
    frame = results_frame(Store(tmp_path))
    assert set(frame.protocol) == {"clean", "noisy50"}


def test_bench_corrupt_writes_the_files_or_says_why_not(smoke, tmp_path):
    root = str(smoke.root)
    c = load_protocol("noisy50").corruption
    chosen = [p for p in smoke.ids if selection_draw(smoke.fingerprint, c["seed"], p) < 0.5]
    spared = [p for p in smoke.ids if p not in chosen]
    out = run_bench("corrupt", "-p", "noisy50", "--patient", chosen[0], "-d", root, "--out", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o" / f"{chosen[0]}__CT.nii.gz").is_file() and (tmp_path / "o" / f"{chosen[0]}__PT.nii.gz").is_file()
    out = run_bench("corrupt", "-p", "noisy50", "--patient", spared[0], "-d", root, "--out", str(tmp_path / "o2"))
    assert out.returncode == 0 and "not corrupted" in out.stdout and not Path(tmp_path / "o2").exists()
    bad = run_bench("corrupt", "-p", "clean", "--patient", chosen[0], "-d", root, "--out", str(tmp_path / "o3"))
    assert bad.returncode == 2 and "corrupts nothing" in bad.stderr


def test_manifest_follows_apply_to(smoke):
    from bench.corruptions import corruption_manifest

    c = dict(load_protocol("noisy50").corruption)
    ids = list(smoke.ids)
    chosen = {p for p in ids if selection_draw(smoke.fingerprint, c["seed"], p) < 0.5}
    test_only = corruption_manifest(smoke.fingerprint, c, ids[:20], affects_inputs=True, train_ids=ids[20:])
    assert {p for p, e in test_only["patients"].items() if e["corrupted"]} == chosen & set(ids[:20])
    assert test_only["train_corrupted"] == []
    train_only = corruption_manifest(smoke.fingerprint, c | {"apply_to": ["train"]}, ids[:20], affects_inputs=True,
                                     train_ids=ids[20:])
    assert train_only["n_corrupted"] == 0 and set(train_only["train_corrupted"]) == chosen & set(ids[20:])


# --- the corruption suite --------------------------------------------------------------------------------------
SUITE_FILES = [f"{t}-s{k}" for t in ("ct-noise", "pet-noise", "blur", "misregistration", "suv-calibration", "ct-metal")
               for k in range(1, 6)] + ["missing-pet", "missing-ct"]
REWRITES = {"ct-noise": {"ct"}, "pet-noise": {"pet"}, "blur": {"ct", "pet"}, "misregistration": {"pet"},
            "suv-calibration": {"pet"}, "ct-metal": {"ct"}, "missing-pet": {"pet"}, "missing-ct": {"ct"}}


def _phantom():
    """A small CT (int16 HU, 2 × 2 × 2 mm, teeth at the top) and PET (float32 SUV, 3 mm) of one neck."""
    ct = np.full((30, 40, 40), -1000, np.int16)
    z, y, x = np.ogrid[:30, :40, :40]
    ct[np.broadcast_to(((y - 20) ** 2 + (x - 20) ** 2) <= 18 ** 2, ct.shape)] = 40
    ct[np.broadcast_to(z % 4 == 0, ct.shape) & (ct == 40)] = 90  # structure along z, for the slab average to remove
    ct[24:27, 4:8, 14:26] = 2500  # teeth
    ct_img = sitk.GetImageFromArray(ct)
    ct_img.SetSpacing((2.0, 2.0, 2.0))
    z, y, x = np.ogrid[:24, :30, :30]
    r2 = (z - 11.5) ** 2 + (y - 14.5) ** 2 + (x - 14.5) ** 2
    pet = (0.5 + 10.0 * np.exp(-r2 / (2 * 2.0 ** 2))).astype(np.float32)
    pet_img = sitk.GetImageFromArray(pet)
    pet_img.SetSpacing((3.0, 3.0, 3.0))
    pet_img.SetOrigin((-3.0, -3.0, -6.0))
    return {"ct": ct_img, "pet": pet_img}


def _apply(kind: str, params: dict, seed: int = 0):
    from bench.corruptions import apply_type

    return apply_type(kind, params, _phantom(), np.random.default_rng(seed))


def _array(img) -> np.ndarray:
    return sitk.GetArrayFromImage(img).astype(np.float64)


def _centroid_mm(img) -> np.ndarray:
    a = _array(img)
    a = np.where(a > 0.5 * a.max(), a, 0.0)
    zyx = (np.argwhere(a > 0) * a[a > 0][:, None]).sum(0) / a.sum()
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))


def _severities(kind: str) -> list[dict]:
    from bench.corruptions.kinds import parameters

    return [parameters(load_protocol(f"{kind}-s{k}").corruption) for k in range(1, 6)]


def test_each_type_rewrites_only_its_modality_on_the_same_grid_and_is_deterministic():
    from bench.corruptions import TYPES

    for name in TYPES:
        params = _severities(name)[2] if name != "missing-modality" else {"modality": "ct"}
        out, draws = _apply(name, params)
        again, _ = _apply(name, params)
        assert set(out) == set(TYPES[name].modalities(params)), name
        clean = _phantom()
        for m, img in out.items():
            assert (img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()) == (
                clean[m].GetSize(), clean[m].GetSpacing(), clean[m].GetOrigin(), clean[m].GetDirection()), name
            assert img.GetPixelID() == (clean[m].GetPixelID() if m == "ct" else sitk.sitkFloat32), name
            np.testing.assert_array_equal(_array(img), _array(again[m]), err_msg=name)
            assert not np.array_equal(_array(img), _array(clean[m])), name


def test_severities_are_monotone():
    clean = _phantom()
    ct0, pet0 = _array(clean["ct"]), _array(clean["pet"])
    noise = [np.std(_array(_apply("ct-noise", p)[0]["ct"]) - ct0) for p in _severities("ct-noise")]
    assert noise == sorted(noise) and noise[0] == pytest.approx(0.01 * 3500, rel=0.05)
    poisson = [np.std(_array(_apply("pet-noise", p)[0]["pet"]) - pet0) for p in _severities("pet-noise")]
    assert poisson == sorted(poisson)
    blurred = [_apply("blur", p)[0] for p in _severities("blur")]
    peaks = [_array(b["pet"]).max() for b in blurred]
    assert peaks == sorted(peaks, reverse=True) and peaks[0] < pet0.max()
    slab = [np.std(_array(b["ct"]) - ct0) for b in blurred]
    assert slab == sorted(slab) and slab[0] > 0
    metal = [np.abs(_array(_apply("ct-metal", p)[0]["ct"]) - ct0).sum() for p in _severities("ct-metal")]
    assert metal == sorted(metal)
    factors = _severities("suv-calibration")
    for p in factors:
        scaled = _array(_apply("suv-calibration", p)[0]["pet"])
        assert scaled.mean() == pytest.approx(pet0.mean() * p["factor"], rel=1e-6)


def test_misregistration_moves_the_pet_by_the_translation_in_the_drawn_direction():
    before = _centroid_mm(_phantom()["pet"])
    for p in _severities("misregistration"):
        out, draws = _apply("misregistration", p)
        assert np.linalg.norm(draws["direction"]) == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(draws["axis"]) == pytest.approx(1.0, abs=1e-5)
        moved = _centroid_mm(out["pet"]) - before  # the hot blob sits at the centre: rotation barely moves it
        assert np.linalg.norm(moved) == pytest.approx(p["translation_mm"], abs=0.6)
        if p["translation_mm"] >= 7:
            assert np.dot(moved / np.linalg.norm(moved), draws["direction"]) > 0.98
    out, draws = _apply("misregistration", {"translation_mm": 7.0, "rotation_deg": 0.0})
    np.testing.assert_allclose(_centroid_mm(out["pet"]) - before, 7.0 * np.asarray(draws["direction"]), atol=0.3)


def test_missing_modality_is_its_background_and_metal_sits_in_the_teeth():
    pet = _array(_apply("missing-modality", {"modality": "pet"})[0]["pet"])
    ct = _array(_apply("missing-modality", {"modality": "ct"})[0]["ct"])
    assert (pet == 0).all() and (ct == -1000).all()
    out = _array(_apply("ct-metal", _severities("ct-metal")[0])[0]["ct"])
    changed = np.flatnonzero(np.abs(out - _array(_phantom()["ct"])).sum(axis=(1, 2)))
    assert out.max() == 3071 and changed.min() >= 24 - 3 and changed.max() <= 26 + 3  # the teeth's slices, ± 3 sd
    from bench.corruptions.artefacts import dental_candidates, slab_weights

    flat = np.zeros((4, 4, 4), np.int16)
    flat[1, 2, 3] = 7
    assert [tuple(v) for v in dental_candidates(flat)] == [(1, 2, 3)]  # no teeth: the brightest voxels
    np.testing.assert_allclose(slab_weights(3.0, 2.0), [1 / 6, 2 / 3, 1 / 6])  # 0.5, 2, 0.5 mm of 3
    assert list(slab_weights(3.0, 3.75)) == [1.0]  # a slab no thicker than a slice changes nothing


@pytest.mark.parametrize("name", SUITE_FILES[2::5] + ["missing-pet", "missing-ct"])
def test_a_suite_realisation_is_written_once_reused_and_rewritten_when_damaged(smoke, tmp_path, monkeypatch, name):
    import bench.data.images as images

    c = dict(load_protocol(name).corruption)
    typ = load_protocol(name).corruption_type
    pid = smoke.ids[1]
    src = smoke.images[pid]
    a = corrupted_images(src, smoke.fingerprint, c, pid, tmp_path / "a")
    b = corrupted_images(src, smoke.fingerprint, c, pid, tmp_path / "b")
    for m in ("ct", "pet"):
        new, old = getattr(a, m), getattr(src, m)
        assert (new != old) == (m in REWRITES[typ]), (name, m)
        if m in REWRITES[typ]:
            assert new.read_bytes() == getattr(b, m).read_bytes() and new.parent.parent == tmp_path / "a"
            n, o = sitk.ReadImage(str(new)), sitk.ReadImage(str(old))
            assert (n.GetSize(), n.GetSpacing(), n.GetOrigin()) == (o.GetSize(), o.GetSpacing(), o.GetOrigin())
    assert a.mask == src.mask
    written = [getattr(a, m) for m in sorted(REWRITES[typ])]
    good = [f.read_bytes() for f in written]

    def refuse(*args, **kwargs):
        raise AssertionError("a cached realisation was read from the source again")

    with monkeypatch.context() as mp:
        mp.setattr(images, "read_image", refuse)
        assert corrupted_images(src, smoke.fingerprint, c, pid, tmp_path / "a") == a
    written[0].write_bytes(good[0][: len(good[0]) // 2])
    again = corrupted_images(src, smoke.fingerprint, c, pid, tmp_path / "a")
    assert [getattr(again, m).read_bytes() for m in sorted(REWRITES[typ])] == good


def test_noisy_protocols_reuse_the_severity5_noise_files(smoke, tmp_path):
    pid = smoke.ids[0]

    def under(name):
        return corrupted_images(smoke.images[pid], smoke.fingerprint, load_protocol(name).corruption, pid, tmp_path)

    noisy, ct5, pet5 = under("noisy100"), under("ct-noise-s5"), under("pet-noise-s5")
    assert (noisy.ct, noisy.pet) == (ct5.ct, pet5.pet)
    assert ct5.pet == smoke.images[pid].pet and pet5.ct == smoke.images[pid].ct
    assert len(list((tmp_path / smoke.fingerprint).glob("*.nii.gz"))) == 2


def test_suite_files_cover_every_test_patient(smoke, tmp_path):
    c = load_protocol("suv-calibration-s1").corruption
    ids = list(smoke.ids[:4])
    files = corrupted_files(smoke, c, ids, tmp_path)
    assert list(files) == ids and all(files[p].ct == smoke.images[p].ct for p in ids)


def test_the_pipeline_takes_a_missing_pet(smoke, tmp_path):
    from bench.data.pipeline import PipelineConfig, process

    pid = smoke.ids[0]
    files = corrupted_images(smoke.images[pid], smoke.fingerprint, load_protocol("missing-pet").corruption, pid,
                             tmp_path)
    out = process(files, PipelineConfig(spacing_mm=4.0, size=(16, 16, 16)))
    pet = sitk.ReadImage(str(files.pet))
    centre = pet.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in pet.GetSize()])
    np.testing.assert_allclose(out["centre"], centre)
    assert (out["pet"] == 0).all() and out["ct"].std() > 0


def _suite_manifest(name: str, ids, fp: str = "f" * 16, **kw):
    from bench.corruptions import corruption_manifest

    return corruption_manifest(fp, load_protocol(name).corruption, ids, affects_inputs=True, **kw)


def test_a_suite_manifest_states_type_severity_and_each_patients_draws():
    ids = [f"P{i}" for i in range(6)]
    m = _suite_manifest("misregistration-s3", ids, train_ids=["T1"])
    assert (m["kind"], m["type"], m["severity"], m["modalities"]) == ("misregistration", "misregistration", 3, ["pet"])
    assert m["parameters"] == {"translation_mm": 7.0, "rotation_deg": 2.0} and m["expected_to_move"] == "radiomics-cox"
    assert m["n_corrupted"] == 6 and m["train_corrupted"] == [] and m["effect"] == load_protocol("misregistration-s3").corruption["effect"]
    assert all(set(e) == {"u", "corrupted", "direction", "axis"} for e in m["patients"].values())
    assert len({tuple(e["direction"]) for e in m["patients"].values()}) == 6  # drawn per patient
    assert m == _suite_manifest("misregistration-s3", ids, train_ids=["T1"])
    missing = _suite_manifest("missing-ct", ids)
    assert (missing["type"], missing["severity"], missing["parameters"]) == ("missing-ct", None, {"modality": "ct"})
    assert all(set(e) == {"u", "corrupted"} for e in missing["patients"].values())


def test_the_manifest_draws_are_the_ones_applied(smoke, tmp_path):
    c = load_protocol("misregistration-s5").corruption
    pid = smoke.ids[2]
    files = corrupted_images(smoke.images[pid], smoke.fingerprint, c, pid, tmp_path)
    entry = _suite_manifest("misregistration-s5", [pid], fp=smoke.fingerprint)["patients"][pid]
    from bench.corruptions.kinds import TYPES

    pet = sitk.ReadImage(str(smoke.images[pid].pet))
    expected = TYPES["misregistration"].apply({"pet": pet}, {"translation_mm": 15.0, "rotation_deg": 5.0},
                                               {"direction": entry["direction"], "axis": entry["axis"]}, None)["pet"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(files.pet))),
                                  sitk.GetArrayFromImage(expected))


def test_a_suite_row_regenerates_its_corruption_manifest_on_import(tiny_clinical_dir, tmp_path):
    import json

    from bench.compact import compact_corruption, regenerate
    from bench.protocols import protocol_text

    text = re.sub(r"\n(# [^\n]*\n)*\[corruption\.effect\][^\[]*", "\n", protocol_text("misregistration-s3")).replace(
        'name = "misregistration-s3"', 'name = "mine"').replace(
        "[metrics]", "[corruption.effect]\nrho_h_proxy = 0.81\ntumour_cnr = 3\n\n[metrics]")
    (tmp_path / "mine.toml").write_text(text)
    protocol = load_protocol(str(tmp_path / "mine.toml"))
    ds = load_hecktor(tiny_clinical_dir)
    run_jobs(plan_methods(["coxph"], "smoke", []), [protocol], ds, scale="smoke", seeds=[0],
             results_dir=tmp_path / "r", progress=False)
    row = next(r for r in Store(tmp_path / "r", readonly=True).rows("done") if r["fold"] == 0)
    stored = json.loads(row["corruption"])
    assert stored["effect"] == {"rho_h_proxy": 0.81, "tumour_cnr": 3} and stored["affects_inputs"] is False
    assert stored["n_corrupted"] == len(stored["patients"]) > 0
    _, full = regenerate(row, unpack_arrays(row["predictions"]), "row")
    assert compact_corruption(full) == compact_corruption(stored) and full["patients"] == stored["patients"]


def test_bench_corrupt_renders_a_suite_protocol(tiny_dataset_dir, tmp_path):
    out = run_bench("corrupt", "-p", "misregistration-s3", "--patient", "CHUM-001", "-d", str(tiny_dataset_dir),
                    "--out", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    assert "misregistration severity 3: PET moved 7 mm along" in out.stdout
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert written == ["CHUM-001__PT.nii.gz", "CHUM-001__misregistration-s3.png"]  # the CT is not rewritten
    assert (tmp_path / "o" / "CHUM-001__misregistration-s3.png").read_bytes()[:4] == b"\x89PNG"
    out = run_bench("corrupt", "-p", "ct-metal-s2", "--patient", "CHUM-002", "-d", str(tiny_dataset_dir),
                    "--out", str(tmp_path / "m"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["CHUM-002__CT.nii.gz", "CHUM-002__ct-metal-s2.png"]
