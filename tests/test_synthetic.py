"""The synthetic PET/CT cohort: layout, determinism, images that agree with the ground truth, and (slow) the
spec's acceptance numbers on the 489-patient quick cohort."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.data import load_dataset
from bench.data.hecktor import GROUNDTRUTH_FILE, load_hecktor
from bench.data.synthetic import generate, scale_config
from helpers import ROOT, load_script, run_bench


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


SMOKE_DIGEST = "5c7fbf3c7f2e9742"  # sha256 over every file of the smoke cohort, seed 0 (names + bytes)


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
    assert ds.name == "synthetic:smoke:v3:0" and len(ds.ids) == 40
    assert load_dataset("synthetic:smoke", "quick", progress=False).fingerprint == ds.fingerprint


# --- version 3: latents, their image proxies and the spec's targets ----------------------------------------

RESULTS = ROOT / "benchmarks" / "results"


def _targets_script():
    return load_script("benchmarks/synthetic_targets.py")


def test_ground_truth_has_g_and_every_term_of_eta(smoke_dir):
    from bench.data.synthetic import ETA_GROUPS

    truth = pd.read_csv(smoke_dir / GROUNDTRUTH_FILE)
    terms = [f"eta_{k}" for ks in ETA_GROUPS.values() for k in ks]
    assert set(terms) | {"g", "h"} <= set(truth.columns)
    assert np.allclose(truth[terms].sum(axis=1), truth.eta, atol=1e-8)
    assert truth.g.between(0, 1).all() and truth.g.std() > 0.2
    cfg = scale_config("smoke")
    assert np.allclose(truth.eta_g, cfg.coefficients.ct_latent * truth.g)
    assert np.allclose(truth.eta_h, cfg.coefficients.heterogeneity * truth.h)


@pytest.mark.parametrize("scale", ["smoke", "quick"])
def test_centre_frailties_are_standardised_for_every_seed(scale):
    from bench.data.synthetic import _draw_cohort

    cfg = scale_config(scale)
    for seed in range(10):
        _, centres = _draw_cohort(cfg, seed)
        f = np.array([c["frailty"] for c in centres.values()])
        assert f.std(ddof=1) == pytest.approx(cfg.coefficients.frailty_sd, abs=1e-12)
        assert f.mean() == pytest.approx(0.0, abs=1e-12)


def test_only_nodes_large_enough_for_a_resolvable_core_are_necrotic():
    from bench.data.synthetic import _draw_cohort

    cfg = scale_config("quick")
    pats, _ = _draw_cohort(cfg, 5)
    nodes = [nd for ns in pats.nodes for nd in ns]
    look = cfg.appearance
    necrotic = [nd["diameter_mm"] for nd in nodes if nd["necrotic"]]
    assert necrotic and min(necrotic) * look.necrosis_core_fraction >= look.necrosis_min_core_mm - 1e-9
    assert not pats.primary_necrotic.any()  # a cold core in GTVp would swamp the h proxy


def test_proxies_read_what_they_say():
    from bench.data.proxies import ct_texture_hu, necrosis_fractions, pet_volume_cc, suv_cov

    pet = np.zeros((6, 6, 6))
    pet[1:3, 1:3, 1:3] = 5.0  # 8 hot voxels, connected to the peak
    pet[2, 2, 2] = 9.0
    pet[5, 5, 5] = 4.0  # hot but not connected to the peak
    assert pet_volume_cc(pet, 3.0) == pytest.approx(8 * 27 / 1000)
    mask = np.zeros_like(pet, dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    v = pet[mask == 1]
    assert suv_cov(pet, mask) == pytest.approx(v.std() / v.mean())
    ct = np.where(mask == 1, 50.0, 0.0)
    ct[1, 1, 1] = -1000.0  # one partial-volume voxel does not move the robust sd
    assert ct_texture_hu(ct, mask) == pytest.approx(0.0)
    mask[5, 5, 5] = 2
    assert necrosis_fractions(pet, ct, mask) == (0.0, 1.0)
    assert np.isnan(necrosis_fractions(pet, ct, np.zeros_like(mask))[0])


def _check_file(path: Path, seeds: list[int]) -> dict:
    from bench.data.proxies import SEVERITY5, SYNTH_TARGETS, VISIBILITY_CHECKS, definition, meets
    from bench.data.synthetic import GENERATOR_VERSION
    from bench.hashing import content_hash

    res = json.loads(path.read_text())
    assert res["scale"] == "quick" and res["seeds"] == seeds and [r["seed"] for r in res["per_seed"]] == seeds
    # the file was measured on this generator, config and proxy definitions: a change must be re-measured
    assert res["generator_version"] == GENERATOR_VERSION and res["config_hash"] == scale_config("quick").hash()
    assert res["proxies_hash"] == content_hash(definition(), 12)
    assert res["severity5"] == SEVERITY5
    for key, (op, bound) in (SYNTH_TARGETS | VISIBILITY_CHECKS).items():
        mean = float(np.mean([r[key] for r in res["per_seed"]]))
        assert mean == pytest.approx(res["targets"][key]["mean"], abs=1e-12), key
        assert meets(op, bound, mean), f"{key}: mean {mean:.4f} does not meet {op} {bound}"
    return res


def test_the_committed_targets_over_seeds_0_to_4_meet_the_spec():
    res = _check_file(RESULTS / "synthetic-v3-targets.json", [0, 1, 2, 3, 4])
    assert res["all_met"]


def test_the_calibration_used_development_seeds_and_chose_severity_5():
    from bench.data.proxies import SEVERITY5

    res = _check_file(RESULTS / "synthetic-v3-calibration.json", [5, 6, 7, 8, 9])
    cal = res["pet_noise_calibration"]
    scan = {float(c): rho for c, rho in cal["rho_suv_cov_h_by_counts_per_suv"].items()}
    assert len(scan) >= 5 and cal["chosen"] == SEVERITY5["pet-noise"]
    assert cal["chosen"] == max(c for c, rho in scan.items() if rho <= cal["margin"])  # the least noise that does it


def test_the_generator_coefficients_are_the_base_times_the_scale_chosen_on_development_seeds():
    from dataclasses import asdict

    from bench.data.synthetic import Coefficients

    mod = load_script("benchmarks/synthetic_eta_scale.py")
    res = json.loads((RESULTS / "synthetic-v3-eta-scale.json").read_text())
    assert res["seeds"] == [5, 6, 7, 8, 9] and res["base"] == mod.BASE
    chosen = res["chosen"]
    ok = [p for p in res["points"] if p["coxph_harrell"] >= res["target"] and p["share_clinical"] <= res["max_share"]]
    assert (chosen["m"], chosen["k"]) == min((p["k"], p["m"]) for p in ok)[::-1]
    want = asdict(mod.scaled_coefficients(chosen["m"], chosen["k"]))
    assert asdict(Coefficients()) == pytest.approx(want, rel=1e-12)


def test_the_eta_scale_script_refuses_benchmark_seeds(capsys):
    mod = load_script("benchmarks/synthetic_eta_scale.py")
    with pytest.raises(SystemExit):
        mod.main(["--seeds", "3-7", "--out", "unused.json"])
    assert "development seeds only" in capsys.readouterr().err


def test_the_recorded_name_is_a_spec_and_another_generator_version_is_refused(tmp_path):
    ok = run_bench("data", "show", "CHUM-001", "--dataset", "synthetic:smoke:v3:0", "--out", str(tmp_path / "p.png"),
                   env={"BENCH_CACHE_DIR": str(tmp_path)})
    assert ok.returncode == 0, ok.stderr
    bad = run_bench("data", "show", "CHUM-001", "--dataset", "synthetic:smoke:v2:0", env={"BENCH_CACHE_DIR": str(tmp_path)})
    assert bad.returncode == 2 and "generator v2" in bad.stderr and "Traceback" not in bad.stderr


# The per-patient targets (image proxies, frailty, η's shares) hold on one smoke seed too; the survival ones
# (oracle C, the fine-term drop, PET-volume C, clinical Cox) need the 489-patient cohort: the committed file
# above and the slow test below check those.
SMOKE_CHECKED = ("rho_suv_cov_h", "rho_ct_texture_g", "rho_suv_cov_h_s5", "rho_ct_texture_g_s5",
                 "rho_pet_volume_clean_s5", "frailty_sd", "rho_h_g", "share_fine", "share_clinical", "share_volume")


def test_one_smoke_seed_meets_the_per_patient_targets(tmp_path, monkeypatch):
    from bench.data.proxies import SYNTH_TARGETS, meets

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    row = _targets_script().measure_seed("smoke", 0, workers=1, coxph=False, progress=False)
    for key in SMOKE_CHECKED:
        op, bound = SYNTH_TARGETS[key]
        assert meets(op, bound, row[key]), f"{key} = {row[key]:.3f} on smoke seed 0, target {op} {bound}"


@pytest.mark.slow
def test_quick_seed_0_reproduces_the_committed_row(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    committed = json.loads((RESULTS / "synthetic-v3-targets.json").read_text())["per_seed"][0]
    row = _targets_script().measure_seed("quick", 0, progress=False)
    for key, value in committed.items():
        if isinstance(value, float) and key != "generation_seconds":
            assert row[key] == pytest.approx(value, abs=1e-9), key


def test_the_targets_script_resumes_only_rows_of_the_same_measurement(tmp_path, monkeypatch):
    mod = _targets_script()
    calls = []

    def fake_measure(scale, seed, **kw):
        calls.append(seed)
        return {"seed": seed, "oracle_c": 0.5 + seed / 100}

    monkeypatch.setattr(mod, "measure_seed", fake_measure)
    out = tmp_path / "r.json"
    partial = out.with_suffix(".partial.json")
    stale = {"stamp": {"config_hash": "another generator"}, "rows": [{"seed": 0, "oracle_c": 0.99}]}
    partial.write_text(json.dumps(stale))
    mod.main(["--seeds", "0-1", "--scale", "smoke", "--no-coxph", "--out", str(out)])
    assert calls == [0, 1]  # the stale row was not reused
    assert [r["oracle_c"] for r in json.loads(out.read_text())["per_seed"]] == [0.5, 0.51]
    assert not partial.exists()
    # a run killed after seed 0 left its row: the next run measures only seed 1
    from bench.data.proxies import SEVERITY5

    stamp = mod.run_stamp("smoke", [SEVERITY5["pet-noise"]], False)
    partial.write_text(json.dumps({"stamp": stamp, "rows": [{"seed": 0, "oracle_c": 0.5}]}))
    calls.clear()
    mod.main(["--seeds", "0-1", "--scale", "smoke", "--no-coxph", "--out", str(out)])
    assert calls == [1]
