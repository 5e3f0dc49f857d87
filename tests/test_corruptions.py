"""Image noise of the noisyNN protocols: right amount, reproducible, nested, exactly the chosen patients, and
what an image method actually receives in a run."""
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
