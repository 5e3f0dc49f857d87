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
    again = [b for b in loader(ds, batch_size=4, shuffle=True, seed=1)]
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(batches, again))  # augmentation seeded too
    other = [b for b in loader(ds, batch_size=4, shuffle=True, seed=2)]
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(batches, other))
    b = batches[0]
    assert b["image"].shape == (4, 2, 24, 24, 24) and b["mask"].shape == (4, 1, 24, 24, 24)
    assert b["time"].shape == (4,) and b["clinical"].shape == (4, 3) and len(b["id"]) == 4
    again = [x for x in loader(ds, batch_size=4, shuffle=True, seed=1)]
    assert [x["id"] for x in again] == [x["id"] for x in batches]
    t = next(iter(loader(PetCtDataset(test, CFG, tmp_path), batch_size=2, shuffle=False)))
    assert "mask" not in t and "time" not in t and t["image"].dtype == torch.float32


def test_a_damaged_cache_file_is_recomputed(smoke, tmp_path):
    f = smoke.images[smoke.ids[1]]
    first = load(f, CFG, tmp_path)
    (npz,) = (tmp_path / "pipeline").glob("*.npz")
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte: bad CRC
    npz.write_bytes(bytes(data))
    np.testing.assert_array_equal(load(f, CFG, tmp_path)["ct"], first["ct"])
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(load(f, CFG, tmp_path)["ct"], first["ct"])


def test_the_output_grid_does_not_depend_on_the_input_direction(smoke, tmp_path):
    """The same anatomy stored with a flipped direction matrix gives the same arrays (LPS, axis-aligned)."""
    f = smoke.images[smoke.ids[2]]
    flipped = {}
    for kind, path in (("ct", f.ct), ("pet", f.pet), ("mask", f.mask)):
        img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img)[:, ::-1, ::-1].copy()
        re = sitk.GetImageFromArray(arr)
        re.SetSpacing(img.GetSpacing())
        # index (0, 0) now sits where the last voxel was: origin moves, direction becomes diag(-1, -1, 1)
        re.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
        last = img.TransformIndexToPhysicalPoint([img.GetSize()[0] - 1, img.GetSize()[1] - 1, 0])
        re.SetOrigin(last)
        flipped[kind] = tmp_path / f"{kind}.nii.gz"
        sitk.WriteImage(re, str(flipped[kind]))
    a = process(f, CFG)
    b = process(ImageFiles(flipped["ct"], flipped["pet"], flipped["mask"]), CFG)
    np.testing.assert_allclose(a["pet"], b["pet"], atol=1e-5)
    np.testing.assert_array_equal(a["mask"], b["mask"])
