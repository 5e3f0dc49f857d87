"""Radiomics features (bench.features.radiomics) and the feature baselines built on them."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.corruptions import corrupted_images
from bench.data.cohort import ImageFiles
from bench.errors import BenchInputError
from bench.features.radiomics import ExtractionStats, cache_paths, RadiomicsSettings, extract, feature_table
from bench.protocols import load_protocol

FAST = RadiomicsSettings(classes=("shape", "firstorder"), regions=("gtvp", "gtvn", "union"), resample_mm=0.0)


def _patient_with(dataset, *, nodes: bool):
    for pid, files in dataset.images.items():
        labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask))))
        if (2 in labels) == nodes and 1 in labels:
            return pid, files
    pytest.skip("no such patient in the smoke cohort")


@pytest.mark.parametrize("bad, match", [
    ({"classes": ["shape", "wavelet"]}, "classes"),
    ({"regions": []}, "regions"),
    ({"ct_bin_width": 0}, "bin widths"),
    ({"resample_mm": -1}, "resample_mm"),
    ({"binwidth": 25}, "unknown key"),
])
def test_settings_name_what_is_wrong(bad, match):
    with pytest.raises(BenchInputError, match=match):
        RadiomicsSettings.from_config(bad, where="method x: radiomics")


def test_features_agree_with_the_images(synthetic_smoke):
    pid, files = _patient_with(synthetic_smoke, nodes=True)
    f = extract(files, FAST)
    ct = sitk.ReadImage(str(files.ct), sitk.sitkFloat32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask)))
    pet = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(files.pet), sitk.sitkFloat32), ct,
                                               sitk.Transform(), sitk.sitkLinear, 0.0))
    voxel = float(np.prod(ct.GetSpacing()))
    for region, lab in (("gtvp", [1]), ("gtvn", [2]), ("union", [1, 2])):
        inside = np.isin(labels, lab)
        assert f[f"{region}_present"] == 1.0
        assert f[f"{region}_shape_VoxelVolume"] == pytest.approx(inside.sum() * voxel, rel=1e-6)
        # first-order statistics are of the raw values in the region: PET on the CT grid, CT as is
        assert f[f"pet_{region}_firstorder_Maximum"] == pytest.approx(pet[inside].max(), rel=1e-5)
        assert f[f"ct_{region}_firstorder_Mean"] == pytest.approx(
            sitk.GetArrayFromImage(ct)[inside].mean(), rel=1e-4, abs=1e-3)
    assert not any(k.startswith("pet_") and "shape" in k for k in f)  # shape is taken once per region


def test_an_absent_region_is_missing_not_made_up(synthetic_smoke):
    pid, files = _patient_with(synthetic_smoke, nodes=False)
    f = extract(files, FAST)
    assert f["gtvn_present"] == 0.0 and f["gtvn_shape_VoxelVolume"] == 0.0
    assert not any(k.startswith(("ct_gtvn", "pet_gtvn")) for k in f)  # NaN in the table, imputed by the model


def test_a_table_leaves_absent_regions_nan(synthetic_smoke, tmp_path):
    with_nodes = _patient_with(synthetic_smoke, nodes=True)
    without = _patient_with(synthetic_smoke, nodes=False)
    table = feature_table(dict([with_nodes, without]), FAST, tmp_path, workers=1, progress=False)
    gtvn = table.filter(regex="^(ct|pet)_gtvn_")
    assert gtvn.shape[1] > 0 and gtvn.loc[with_nodes[0]].notna().all() and gtvn.loc[without[0]].isna().all()


def test_features_are_cached_once_and_noisy_images_get_their_own(synthetic_smoke, tmp_path):
    ids = list(synthetic_smoke.ids[:6])
    files = {i: synthetic_smoke.images[i] for i in ids}
    stats = ExtractionStats()
    first = feature_table(files, FAST, tmp_path, workers=2, progress=False, stats=stats)
    assert (stats.computed, stats.cached) == (6, 0)
    again = feature_table(files, FAST, tmp_path, progress=False, stats=stats)
    assert (stats.computed, stats.cached) == (6, 6)
    assert again.equals(first) and list(again.index) == ids
    noise = load_protocol("noisy100").corruption
    noisy = {i: corrupted_images(f, synthetic_smoke.fingerprint, noise, i, tmp_path / "noisy") for i, f in files.items()}
    table = feature_table(noisy, FAST, tmp_path, progress=False, stats=stats)
    assert stats.computed == 12  # the noisy files are other files: computed, never the clean ones reused
    shape = [c for c in table.columns if "_shape_" in c]
    intensity = [c for c in table.columns if c.startswith(("ct_gtvp_firstorder_Variance", "pet_gtvp_firstorder_Mean"))]
    np.testing.assert_allclose(table[shape].to_numpy(), first[shape].to_numpy())  # same contours
    assert not np.allclose(table[intensity].to_numpy(), first[intensity].to_numpy())
    # a damaged cache entry is recomputed, not trusted
    cached = sorted((tmp_path / "features" / "radiomics").glob("*.json"))
    assert len(cached) == 24  # one per (patient, modality)
    damaged = cache_paths(files[ids[0]], FAST, tmp_path)["ct"]
    damaged.write_text("{not json")
    feature_table(files, FAST, tmp_path, progress=False, stats=stats)
    assert stats.computed == 13 and stats.computed_passes == {"ct": 13, "pet": 12}
    assert json.loads(damaged.read_text())["regions"]["gtvp"]["features"]


# the tiny dataset's GTVp is a 2³ cube: present with min_voxels 4, and no GTVn
TINY = RadiomicsSettings(classes=("shape", "firstorder", "glcm"), regions=("gtvp", "gtvn", "union"), resample_mm=0.0,
                         min_voxels=4)


def _one_pass(files, settings):
    """The extraction before the cache was split by modality, as the oracle: the CT read whole as the grid, PET
    resampled onto that image (the tiny mask is on it already), one pass per region over CT then PET, shape in the
    CT's."""
    from bench.features.radiomics import REGIONS, _extractor

    ct = sitk.ReadImage(str(files.ct), sitk.sitkFloat32)
    images = {"ct": ct, "pet": sitk.Resample(sitk.ReadImage(str(files.pet), sitk.sitkFloat32), ct, sitk.Transform(),
                                             sitk.sitkLinear, 0.0, sitk.sitkFloat32)}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask)))
    out = {}
    for region in settings.regions:
        inside = np.isin(labels, REGIONS[region]).astype(np.uint8)
        roi = sitk.GetImageFromArray(inside)
        roi.CopyInformation(ct)
        out[f"{region}_present"] = float(inside.sum() >= settings.min_voxels)
        for i, modality in enumerate(("ct", "pet")):
            if not out[f"{region}_present"]:
                out[f"{region}_shape_MeshVolume"] = out[f"{region}_shape_VoxelVolume"] = 0.0
                break
            classes = (["shape"] if i == 0 else []) + [c for c in settings.classes if c != "shape"]
            extractor = _extractor(settings, settings.ct_bin_width if i == 0 else settings.pet_bin_width, classes)
            for k, v in extractor.execute(images[modality], roi, label=1).items():
                if not k.startswith("diagnostics_"):
                    _, cls, feat = k.split("_", 2)
                    out[f"{region}_shape_{feat}" if cls == "shape" else f"{modality}_{region}_{cls}_{feat}"] = float(v)
    return out


def test_per_modality_entries_join_to_the_one_pass_features(tiny_dataset, tmp_path):
    files = {i: tiny_dataset.images[i] for i in tiny_dataset.ids[:8]}
    table = feature_table(files, TINY, tmp_path, workers=1, progress=False)
    expected = pd.DataFrame.from_dict({pid: _one_pass(f, TINY) for pid, f in files.items()}, orient="index")
    assert (table["gtvp_present"] == 1).all() and (table["gtvn_present"] == 0).all()
    assert table.filter(regex="^pet_gtvp_glcm_").shape[1] > 10  # texture of both modalities is compared
    pd.testing.assert_frame_equal(table, expected.reindex(columns=sorted(expected.columns)).astype(float),
                                  check_exact=True)


def _rewritten(path, out, *, scale=1.0, shift_mm=0.0):
    """A copy of the image at ``path`` with its voxels × ``scale`` and its origin moved by ``shift_mm`` along x."""
    img = sitk.ReadImage(str(path))
    new = sitk.GetImageFromArray(sitk.GetArrayFromImage(img) * np.float32(scale))
    new.CopyInformation(img)
    new.SetOrigin([img.GetOrigin()[0] + shift_mm, *img.GetOrigin()[1:]])
    sitk.WriteImage(new, str(out))
    return out


def test_skipping_pyradiomics_diagnostics_leaves_every_feature_unchanged(tiny_dataset):
    """The extractor is built without PyRadiomics' diagnostics (additionalInfo), which the tables drop; the
    features must equal those of an extractor with its default settings, bit for bit."""
    from bench.features.radiomics import _extractor

    files = tiny_dataset.images[tiny_dataset.ids[0]]
    ct = sitk.ReadImage(str(files.ct), sitk.sitkFloat32)
    roi = sitk.GetImageFromArray((sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask))) > 0).astype(np.uint8))
    roi.CopyInformation(ct)
    ours = _extractor(TINY, TINY.ct_bin_width, ["shape", "firstorder", "glcm"])
    assert ours.settings["additionalInfo"] is False
    default = _extractor(TINY, TINY.ct_bin_width, ["shape", "firstorder", "glcm"])
    default.settings["additionalInfo"] = True
    got, want = ours.execute(ct, roi, label=1), default.execute(ct, roi, label=1)
    assert not any(k.startswith("diagnostics_") for k in got)
    assert any(k.startswith("diagnostics_") for k in want)
    want = {k: float(v) for k, v in want.items() if not k.startswith("diagnostics_")}
    assert {k: float(v) for k, v in got.items()} == want and len(want) > 30


def test_a_one_modality_corruption_recomputes_that_modality_only(tiny_dataset, tmp_path, monkeypatch):
    """A new CT file (same geometry) recomputes the patient's CT entry and reuses its PET entry, and vice versa;
    a CT on another grid recomputes both (PET and mask are brought onto it)."""
    from bench.features import radiomics

    ids = list(tiny_dataset.ids[:3])
    files = {i: tiny_dataset.images[i] for i in ids}
    cache = tmp_path / "cache"
    clean = feature_table(files, TINY, cache, workers=1, progress=False)
    calls = []
    real = radiomics.extract_modality
    monkeypatch.setattr(radiomics, "extract_modality", lambda f, s, m: (calls.append((f, m)), real(f, s, m))[1])
    target = files[ids[0]]
    entries = cache_paths(target, TINY, cache)
    stamps = {m: p.stat().st_mtime_ns for m, p in entries.items()}
    cases = {
        "ct": ImageFiles(_rewritten(target.ct, tmp_path / "ct.nii.gz", scale=1.5), target.pet, target.mask),
        "pet": ImageFiles(target.ct, _rewritten(target.pet, tmp_path / "pet.nii.gz", scale=1.5), target.mask),
    }
    for modality, corrupted in cases.items():
        calls.clear()
        stats = ExtractionStats()
        table = feature_table(files | {ids[0]: corrupted}, TINY, cache, workers=1, progress=False, stats=stats)
        assert calls == [(corrupted, modality)] and stats.computed_passes == {modality: 1}
        assert (stats.computed, stats.cached) == (1, 2)
        kept = "pet" if modality == "ct" else "ct"
        assert entries[kept].stat().st_mtime_ns == stamps[kept]  # the clean entry of the other modality, read
        same = [c for c in table.columns if not c.startswith(f"{modality}_")]
        changed = [c for c in table.columns if c.startswith(f"{modality}_gtvp_firstorder_Mean")]
        pd.testing.assert_frame_equal(table[same], clean[same], check_exact=True)
        assert not np.allclose(table.loc[ids[0], changed], clean.loc[ids[0], changed])
        np.testing.assert_array_equal(table.loc[ids[1:]].to_numpy(), clean.loc[ids[1:]].to_numpy())
    calls.clear()
    moved = ImageFiles(_rewritten(target.ct, tmp_path / "ct-moved.nii.gz", shift_mm=2.0), target.pet, target.mask)
    feature_table(files | {ids[0]: moved}, TINY, cache, workers=1, progress=False)
    assert sorted(m for _, m in calls) == ["ct", "pet"]  # same PET and mask files, but another grid


def test_a_missing_mask_is_a_clear_error(synthetic_smoke, tmp_path):
    pid = synthetic_smoke.ids[0]
    f = synthetic_smoke.images[pid]
    with pytest.raises(BenchInputError, match="reference mask"):
        feature_table({pid: ImageFiles(f.ct, f.pet, None)}, FAST, tmp_path, progress=False)


def test_every_fold_and_method_reuses_one_extraction_per_image(synthetic_smoke, tmp_path, monkeypatch):
    """The clean sweep and noisy100 for two feature methods over five folds: each patient's clean images
    are extracted once, and its noisy images once more (noisy100 corrupts every test patient)."""
    from bench.runner import plan_methods, run_jobs

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    plans = plan_methods(["radiomics-cox", "rsf"], "smoke", [])
    report = run_jobs(plans, [load_protocol("clean"), load_protocol("noisy100")], synthetic_smoke, scale="smoke",
                      seeds=[0], results_dir=tmp_path / "r", progress=False)
    assert report.ran == 20 and report.fits == 10 and not report.failed
    n = len(synthetic_smoke.ids)
    assert len(list((tmp_path / "cache" / "features" / "radiomics").glob("*.json"))) == 2 * 2 * n  # CT and PET
    # every stored row says it read reference contours at test time, for the leaderboard to flag
    from bench.results import results_frame, summarise
    from bench.store import Store

    frame = results_frame(Store(tmp_path / "r"))
    assert set(frame["flags"]) == {"reference contours at test time"}
    assert set(summarise(frame)["flags"]) == {"reference contours at test time"}


def test_feature_inputs_are_fitted_on_the_training_fold_only(synthetic_smoke):
    from baselines.radiomics_cox import RadiomicsCox
    from baselines.tabular import FeatureInputs
    from bench.config import resolve_config

    cfg = resolve_config("radiomics-cox", RadiomicsCox, "smoke")
    ids = list(synthetic_smoke.ids)
    train = synthetic_smoke.cohort(ids[:30], with_outcomes=True)
    inputs = FeatureInputs(cfg, progress=False).fit(train)
    assert len(inputs.radiomics_columns_) <= cfg["select_k"]
    x_train = inputs.transform(train)
    assert x_train.shape == (30, len(inputs.names_)) and np.isfinite(x_train).all()
    assert np.abs(x_train[:, :len(inputs.radiomics_columns_)]).max() <= 3.0 + 1e-9
    test = synthetic_smoke.cohort(ids[30:], with_outcomes=False)
    x_test = inputs.transform(test)  # a prediction cohort: no outcomes, nothing refitted
    assert x_test.shape == (len(ids) - 30, len(inputs.names_)) and np.isfinite(x_test).all()
    np.testing.assert_array_equal(inputs.transform(train), x_train)  # transforming a test cohort refits nothing
    # the redundancy filter: no two kept features correlate above corr_max on the training fold
    kept = x_train[:, :len(inputs.radiomics_columns_)]
    if kept.shape[1] > 1:
        corr = np.abs(np.corrcoef(kept, rowvar=False))
        assert corr[np.triu_indices_from(corr, 1)].max() < cfg["corr_max"] + 1e-9


def test_lasso_cox_takes_its_penalty_from_the_inner_cv(synthetic_smoke):
    from baselines.radiomics_cox import LassoCox
    from bench.config import resolve_config
    from bench.method import RunContext

    cfg = resolve_config("lasso-cox", LassoCox, "smoke")
    m = LassoCox(RunContext(config=cfg, scale="smoke", progress=False))
    ids = list(synthetic_smoke.ids)
    m.fit(synthetic_smoke.cohort(ids, with_outcomes=True), synthetic_smoke.cohort([], with_outcomes=True))
    assert len(m.inner_cindex_) == len(m.model_.alphas_)
    assert m.alpha_ == m.model_.alphas_[np.nanargmax(m.inner_cindex_)]  # the best inner-CV alpha, not the path's end
    assert np.nanstd(m.inner_cindex_) > 0
    with pytest.raises(BenchInputError, match="inner_folds"):
        LassoCox(RunContext(config=cfg | {"inner_folds": 100}, scale="smoke", progress=False)).fit(
            synthetic_smoke.cohort(ids, with_outcomes=True), synthetic_smoke.cohort([], with_outcomes=True))


def test_default_resampling_keeps_the_volume(synthetic_smoke):
    """The scales' default: PyRadiomics resamples to 2 mm (B-spline image, nearest mask); volumes survive."""
    pid, files = _patient_with(synthetic_smoke, nodes=True)
    native = extract(files, FAST)
    resampled = extract(files, RadiomicsSettings(classes=("shape", "firstorder"), resample_mm=2.0))
    for region in ("gtvp", "gtvn", "union"):
        assert resampled[f"{region}_shape_MeshVolume"] == pytest.approx(native[f"{region}_shape_MeshVolume"], rel=0.15)


@pytest.mark.parametrize("name", ["radiomics-cox", "lasso-cox", "rsf", "deepsurv"])
def test_a_feature_method_refits_identically_with_the_same_seed(name, synthetic_smoke):
    from bench.config import resolve_config
    from bench.method import RunContext
    from bench.registry import get_method

    cls = get_method(name)
    ids = list(synthetic_smoke.ids)
    preds = []
    for _ in range(2):
        m = cls(RunContext(config=resolve_config(name, cls, "smoke"), scale="smoke", seed=3, progress=False))
        # on the 40-patient smoke cohort the lasso's inner CV keeps no feature when ids[:26] (7 events) train;
        # this arrangement (8 events) leaves it something to refit
        m.fit(synthetic_smoke.cohort(ids[6:32], with_outcomes=True), synthetic_smoke.cohort(ids[:6], with_outcomes=True))
        preds.append(m.predict(synthetic_smoke.cohort(ids[32:], with_outcomes=False)))
    np.testing.assert_allclose(preds[0].risk, preds[1].risk, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(preds[0].survival, preds[1].survival, rtol=1e-12, atol=1e-12)
    assert len(np.unique(preds[0].risk)) > 1  # it learnt something: not one risk for everyone


@pytest.mark.parametrize("n", [23, 65, 129])
def test_deepsurv_survives_awkward_batches(n):
    from baselines.deepsurv import _CoxLoss, _batch_size
    import torch

    b = _batch_size(64, n)
    assert 2 <= b <= max(n, 2) and n % b != 1
    log_h = torch.zeros(5, 1, requires_grad=True)
    loss = _CoxLoss()(log_h, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(log_h.grad).all()


@pytest.mark.parametrize("name", ["radiomics-cox", "rsf", "deepsurv"])
def test_bad_config_values_are_input_errors(name):
    from bench.runner import plan_methods

    key = {"radiomics-cox": "alpha=-1", "rsf": "max_features_fraction=1.5", "deepsurv": "batch_size=1"}[name]
    with pytest.raises(BenchInputError, match=key.split("=")[0]):
        plan_methods([name], "smoke", [key])
    with pytest.raises(BenchInputError, match="classes"):
        plan_methods([name], "smoke", ['radiomics.classes=["texture"]'])


def test_lasso_cox_inner_cv_refits_the_inputs_without_the_held_out_patients(synthetic_smoke, monkeypatch):
    """Nested inner CV: each inner fold's feature inputs (imputation, scaling, outcome-driven selection when
    ``select_k`` > 0) are fitted on its inner training part only and transform that part and its held-out part;
    the final inputs are fitted on every patient."""
    from baselines import radiomics_cox
    from baselines.radiomics_cox import LassoCox
    from bench.config import resolve_config
    from bench.method import RunContext

    fitted, transformed, alive = {}, {}, []  # alive: an inner inputs object freed early could lend its id() to the next
    real_fit, real_transform = radiomics_cox.FeatureInputs.fit, radiomics_cox.FeatureInputs.transform

    def recording_fit(self, cohort):
        alive.append(self)
        fitted[id(self)] = set(cohort.ids)
        return real_fit(self, cohort)

    def recording_transform(self, cohort):
        transformed.setdefault(id(self), []).append(set(cohort.ids))
        return real_transform(self, cohort)

    monkeypatch.setattr(radiomics_cox.FeatureInputs, "fit", recording_fit)
    monkeypatch.setattr(radiomics_cox.FeatureInputs, "transform", recording_transform)
    cfg = resolve_config("lasso-cox", LassoCox, "smoke") | {"select_k": 4}
    ids = list(synthetic_smoke.ids)
    m = LassoCox(RunContext(config=cfg, scale="smoke", progress=False))
    m.fit(synthetic_smoke.cohort(ids, with_outcomes=True), synthetic_smoke.cohort([], with_outcomes=True))
    outer = fitted.pop(id(m.inputs_))
    assert outer == set(ids) and len(fitted) == cfg["inner_folds"]
    held_out = []
    for key, part in fitted.items():
        fit_part, held = transformed[key]  # each inner inputs object transforms its own two parts, in that order
        assert fit_part == part and held == outer - part and held  # held-out patients: transformed, never fitted
        held_out.append(held)
    assert sum(map(len, held_out)) == len(outer) and set().union(*held_out) == outer  # a partition of the fold
