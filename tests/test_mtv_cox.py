"""The PET burden reference rows (baselines/mtv_cox.py): MTV, TLG and SUVmax, and the Cox models on them."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from baselines.mtv_cox import ClinicalMTVCox, MTVCox, burden_features, patient_burden, pet_burden
from bench.config import resolve_config
from bench.data.cohort import ImageFiles
from bench.method import RunContext
from helpers import run_bench


def _sphere(shape, centre, radius_vox, value):
    zz, yy, xx = np.indices(shape)
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius_vox ** 2
    return np.where(inside, value, 0.0), inside


def test_burden_of_a_sphere_is_its_volume_sum_and_peak():
    spacing = 2.0
    pet, inside = _sphere((40, 40, 40), (20, 19, 21), 8, 5.0)
    mtv, tlg, suv_max = pet_burden(pet, spacing)
    assert mtv == pytest.approx(4 / 3 * np.pi * (8 * spacing) ** 3 / 1000, rel=0.05)  # voxelisation error
    assert mtv == pytest.approx(inside.sum() * spacing ** 3 / 1000)
    assert tlg == pytest.approx(5.0 * mtv)  # MTV × mean SUV: the summed SUV × voxel volume
    assert suv_max == 5.0
    pet[20, 19, 21] = 9.0  # one hotter voxel: SUVmax follows it, TLG gains its excess
    _, tlg_hot, suv_max_hot = pet_burden(pet, spacing)
    assert suv_max_hot == 9.0 and tlg_hot == pytest.approx(tlg + 4.0 * spacing ** 3 / 1000)


@pytest.mark.parametrize("pet", [np.zeros((8, 8, 8)), np.full((8, 8, 8), 2.4)], ids=["empty", "below-2.5"])
def test_no_voxel_at_the_threshold_is_zero_burden(pet):
    assert pet_burden(pet, 3.0) == (0.0, 0.0, 0.0)


def _write(arr, spacing, path, origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing((spacing,) * 3)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def test_burden_through_the_pipeline_box(tmp_path):
    """A native PET (2 mm) with a 30 mm sphere of SUV 5, read through the 3 mm box: the volume survives the
    resampling, and the CT and the mask play no part."""
    pet, inside = _sphere((48, 48, 48), (24, 24, 24), 7.5, 5.0)
    files = ImageFiles(_write(np.full((24, 24, 24), 40.0), 4.0, tmp_path / "ct.nii.gz"),
                       _write(pet, 2.0, tmp_path / "pet.nii.gz"), tmp_path / "no-such-mask.nii.gz")
    config = MTVCox.configs["quick"]
    mtv, tlg, suv_max = patient_burden(files, config)
    assert mtv == pytest.approx(inside.sum() * 8 / 1000, rel=0.1)
    assert suv_max == pytest.approx(5.0, rel=1e-5) and 2.5 * mtv < tlg <= 5.0 * mtv + 1e-6
    other_ct = ImageFiles(_write(np.full((20, 20, 20), -1000.0), 5.0, tmp_path / "ct2.nii.gz"), files.pet, None)
    assert patient_burden(other_ct, config) == (mtv, tlg, suv_max)
    empty = ImageFiles(files.ct, _write(np.zeros((48, 48, 48)), 2.0, tmp_path / "missing-pet.nii.gz"), None)
    assert patient_burden(empty, config) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("name, cls", [("mtv-cox", MTVCox), ("clinical-mtv-cox", ClinicalMTVCox)])
def test_fit_and_predict_on_the_tiny_dataset(name, cls, tiny_dataset, tmp_path):
    ids = list(tiny_dataset.ids)
    train = tiny_dataset.cohort(ids[:22], with_outcomes=True)
    # the masks are never read, at training either: unreadable ones change nothing
    blind = train.with_masks({i: tmp_path / "absent.nii.gz" for i in ids[:22]})
    m = cls(RunContext(config=resolve_config(name, cls, "smoke"), scale="smoke", progress=False))
    m.fit(blind, tiny_dataset.cohort([], with_outcomes=True))
    n_clinical = len(m.pre_.get_feature_names_out()) if cls.with_clinical else 0
    assert m.model_.coef_.shape == (n_clinical + 3,)
    test = tiny_dataset.cohort(ids[22:], with_outcomes=False)
    pred = m.predict(test)
    assert pred.risk.shape == (8,) and np.isfinite(pred.risk).all() and len(np.unique(pred.risk)) > 1
    assert pred.survival.shape == (8, len(pred.times)) and np.all(np.diff(pred.survival, axis=1) <= 1e-12)
    np.testing.assert_array_equal(m.predict(test).risk, pred.risk)


def test_features_are_cached_by_the_pet_alone(tiny_dataset, tmp_path, monkeypatch):
    """A new CT file for a patient reuses its PET features; a new PET file is computed."""
    from baselines import mtv_cox

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    ids = list(tiny_dataset.ids[:4])
    config = MTVCox.configs["smoke"]
    cohort = tiny_dataset.cohort(ids, with_outcomes=False)
    first, computed = burden_features(cohort, config, progress=False)
    assert computed == 4 and np.all(first[:, 0] > 0)  # the tiny PETs have voxels above SUV 2.5
    again, computed = burden_features(cohort, config, progress=False)
    assert computed == 0 and np.array_equal(again, first)
    files = tiny_dataset.images[ids[0]]
    moved_ct = _write(np.full((8, 8, 8), 0.0), 2.0, tmp_path / "ct.nii.gz", origin=(2.0, 0.0, 0.0))
    zero_pet = _write(np.zeros((6, 6, 6)), 3.0, tmp_path / "pet.nii.gz")
    calls = []

    def in_process(fn, items, on_result, **_):  # the computations, recorded
        for item in items:
            calls.append(item[0])
            on_result(fn(item))

    monkeypatch.setattr(mtv_cox, "progress_map", in_process)
    ct_only = {ids[0]: ImageFiles(moved_ct, files.pet, None)}
    x, computed = burden_features(tiny_dataset.cohort(ids, with_outcomes=False, replace_images=ct_only), config,
                                  progress=False)
    assert computed == 0 and not calls and np.array_equal(x, first)
    pet_only = {ids[0]: ImageFiles(files.ct, zero_pet, None)}
    x, computed = burden_features(tiny_dataset.cohort(ids, with_outcomes=False, replace_images=pet_only), config,
                                  progress=False)
    assert computed == 1 and calls == [ids[0]]
    assert np.array_equal(x[0], [0.0, 0.0, 0.0]) and np.array_equal(x[1:], first[1:])  # a missing PET: no burden


def test_bad_config_values_are_named():
    from bench.errors import BenchInputError
    from bench.runner import plan_methods

    for key, match in (("threshold_suv=0", "threshold_suv"), ("pet_suv_max=2", "pet_suv_max"),
                       ("box=[16, 16]", "box"), ("alpha=-1", "alpha")):
        with pytest.raises(BenchInputError, match=match):
            plan_methods(["mtv-cox"], "smoke", [key])


def test_bench_run_on_a_tiny_dataset(tiny_dataset_dir, tmp_path):
    done = run_bench("run", "-m", "mtv-cox", "-p", "clean", "--scale", "smoke", "-d", f"hecktor2022:{tiny_dataset_dir}",
                     "--results", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mtv-cox" in done.stdout
