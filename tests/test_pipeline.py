"""The image pipeline: box from the images only, normalisation, on-disk cache, and the torch Dataset."""
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from bench.corruptions import corrupted_images
from bench.data.cohort import ImageFiles
from bench.data.hecktor import GROUNDTRUTH_FILE, load_hecktor
from bench.data.pipeline import PipelineConfig, cache_key, load, preprocess, process
from bench.data.synthetic import generate, scale_config
from bench.protocols import load_protocol

CFG = PipelineConfig(spacing_mm=3.5, size=(24, 24, 24))


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    return load_hecktor(generate(tmp_path_factory.mktemp("synth") / "smoke", scale_config("smoke"), 0, progress=False))


def test_output_grid_ranges_and_the_box_holds_the_tumour(smoke):
    truth = pd.read_csv(smoke.root / GROUNDTRUTH_FILE).set_index("PatientID")
    for pid in smoke.ids[:10]:
        d = process(smoke.images[pid], CFG)
        assert d["ct"].shape == d["pet"].shape == d["mask"].shape == (24, 24, 24)
        assert d["ct"].dtype == np.float32 and 0 <= d["ct"].min() and d["ct"].max() <= 1
        assert 0 <= d["pet"].min() and d["pet"].max() <= 1
        inside = np.count_nonzero(d["mask"] == 1) * 3.5 ** 3 / 1000
        assert inside >= 0.7 * truth.loc[pid, "mtv_primary_cc"], pid


def test_the_box_never_depends_on_the_mask(smoke):
    f = smoke.images[smoke.ids[3]]
    with_mask = process(f, CFG)
    without = process(ImageFiles(f.ct, f.pet, None), CFG)
    assert "mask" not in without
    np.testing.assert_array_equal(with_mask["ct"], without["ct"])
    np.testing.assert_array_equal(with_mask["pet"], without["pet"])


def test_cache_is_reused_without_reading_nifti_and_keyed_by_inputs_and_config(smoke, tmp_path, monkeypatch):
    f = smoke.images[smoke.ids[0]]
    first = load(f, CFG, tmp_path)
    assert len(list((tmp_path / "pipeline").glob("*.npz"))) == 1

    def no_read(*a, **k):
        raise AssertionError("NIfTI read although the patient is cached")

    monkeypatch.setattr(sitk, "ReadImage", no_read)
    again = load(f, CFG, tmp_path)
    np.testing.assert_array_equal(first["pet"], again["pet"])
    monkeypatch.undo()
    assert cache_key(f, CFG, tmp_path) != cache_key(f, PipelineConfig(spacing_mm=3.0, size=(24, 24, 24)), tmp_path)
    noisy = corrupted_images(f, smoke.fingerprint, dict(load_protocol("noisy100").corruption), smoke.ids[0],
                             tmp_path / "noisy")
    assert cache_key(noisy, CFG, tmp_path) != cache_key(f, CFG, tmp_path)
    assert not np.array_equal(load(noisy, CFG, tmp_path)["pet"], first["pet"])


def test_preprocess_fills_the_cache_in_parallel(smoke, tmp_path):
    files = {p: smoke.images[p] for p in smoke.ids[:6]}
    preprocess(files, CFG, tmp_path, workers=2, progress=False)
    assert len(list((tmp_path / "pipeline").glob("*.npz"))) == 6


def test_torch_dataset_and_loader(smoke, tmp_path):
    import torch

    from bench.data.torchdata import PetCtDataset, augmentation, loader

    train = smoke.cohort(smoke.ids[:8], with_outcomes=True)
    test = smoke.cohort(smoke.ids[8:12], with_outcomes=False, with_mask=False)
    ds = PetCtDataset(train, CFG, tmp_path, transform=augmentation(), clinical=np.zeros((8, 3)))
    batches = [b for b in loader(ds, batch_size=4, shuffle=True, seed=1)]
    b = batches[0]
    assert b["image"].shape == (4, 2, 24, 24, 24) and b["mask"].shape == (4, 1, 24, 24, 24)
    assert b["time"].shape == (4,) and b["clinical"].shape == (4, 3) and len(b["id"]) == 4
    again = [x for x in loader(ds, batch_size=4, shuffle=True, seed=1)]
    assert [x["id"] for x in again] == [x["id"] for x in batches]
    t = next(iter(loader(PetCtDataset(test, CFG, tmp_path), batch_size=2, shuffle=False)))
    assert "mask" not in t and "time" not in t and t["image"].dtype == torch.float32
