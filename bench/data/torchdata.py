"""torch Dataset / DataLoader over the cached image pipeline, for deep methods (imports torch and MONAI).

A sample is a dict: ``image`` float32 tensor (2, Z, Y, X) — channel 0 CT, channel 1 PET, both in [0, 1];
``mask`` uint8 (1, Z, Y, X) when the cohort shows the reference mask; ``time`` / ``event`` on cohorts with
outcomes (training and validation); ``clinical`` when given; ``id``. Augmentations are MONAI dictionary
transforms applied to the numpy sample before conversion.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.data.pipeline import PipelineConfig, cache_path, load, preprocess


class PetCtDataset(Dataset):
    def __init__(self, cohort, cfg: PipelineConfig, cache: Path, *, transform: Callable | None = None,
                 clinical: np.ndarray | None = None, progress: bool = False, masks: bool = True):
        self.ids = list(cohort.ids)
        self.masks = masks  # False: samples carry no mask even when the data has one
        self.files = cohort.image_files
        self.cfg, self.cache, self.transform = cfg, Path(cache), transform
        self.outcomes = cohort.outcomes if cohort.has_outcomes else None
        # event flags for balanced batches (None on a prediction cohort)
        self.events = None if self.outcomes is None else self.outcomes.loc[self.ids, "event"].to_numpy().astype(bool)
        self.clinical = None if clinical is None else np.asarray(clinical, dtype=np.float32)
        preprocess({i: self.files[i] for i in self.ids}, cfg, self.cache, progress=progress)
        # resolved once: each epoch then reads one npz per patient, no file hashing
        self.paths = {i: cache_path(self.files[i], cfg, self.cache) for i in self.ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pid = self.ids[i]
        d = load(self.files[pid], self.cfg, self.cache, path=self.paths[pid])
        sample: dict[str, Any] = {"image": np.stack([d["ct"], d["pet"]]).astype(np.float32), "id": pid}
        if self.masks and "mask" in d:
            sample["mask"] = d["mask"][None].astype(np.uint8)
        if self.transform is not None:
            sample = self.transform(sample)
        out = {k: (torch.as_tensor(np.asarray(v)) if k != "id" else v) for k, v in sample.items()}
        if self.outcomes is not None:
            out["time"] = torch.tensor(float(self.outcomes.loc[pid, "time"]))
            out["event"] = torch.tensor(float(self.outcomes.loc[pid, "event"]))
        if self.clinical is not None:
            out["clinical"] = torch.from_numpy(self.clinical[i])
        return out


def augmentation(with_mask: bool = True, crop: tuple[int, int, int] | None = None, flips: bool = True,
                 jitter: bool = True):
    """MONAI training augmentation, applied to image and mask alike: a random crop of ``crop`` voxels
    (array order z, y, x) inside the pipeline box — the box is centred on the PET hot region, so this is a
    random crop around the tumour as the images locate it — flips on every axis (``flips``), intensity scale
    and shift jitter (``jitter``)."""
    from monai.transforms import Compose, RandFlipd, RandScaleIntensityd, RandShiftIntensityd, RandSpatialCropd

    keys = ["image", "mask"] if with_mask else ["image"]
    steps = [] if crop is None else [RandSpatialCropd(keys=keys, roi_size=list(crop), random_size=False)]
    if flips:
        steps += [RandFlipd(keys=keys, prob=0.5, spatial_axis=a) for a in (0, 1, 2)]
    if jitter:
        steps += [RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
                  RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5)]
    return Compose(steps)


def centre_slices(box: tuple[int, ...], crop: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the centred ``crop`` inside an array of shape ``box`` (same axis order); the inverse of
    a prediction's crop is pasting it back at these slices."""
    if any(c > b for b, c in zip(box, crop)):
        raise ValueError(f"crop {tuple(crop)} is larger than the box {tuple(box)}")
    return tuple(slice((b - c) // 2, (b - c) // 2 + c) for b, c in zip(box, crop))


class CentreCrop:
    """The deterministic crop used for validation and prediction: the centre of the pipeline box."""

    def __init__(self, crop: tuple[int, int, int]):
        self.crop = tuple(crop)

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        for key in ("image", "mask"):
            if key in out:
                arr = out[key]
                out[key] = arr[(slice(None),) + centre_slices(arr.shape[1:], self.crop)]
        return out


def loader(dataset: PetCtDataset, *, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
           sampler=None, batch_sampler=None) -> DataLoader:
    """A seeded DataLoader: the same seed gives the same order and the same augmentation draws. The
    transform's random state is seeded here; each worker process reseeds its copy from torch's per-worker,
    per-epoch seed, so workers and epochs draw different augmentations."""
    g = torch.Generator()
    g.manual_seed(seed)
    transform = dataset.transform
    if transform is not None and hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed % 2**32)

    def worker_init(_worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        t = info.dataset.transform if info is not None else None
        if t is not None and hasattr(t, "set_random_state"):
            t.set_random_state(seed=torch.initial_seed() % 2**32)

    def collate(batch):
        out = {k: torch.stack([b[k] for b in batch]) for k in batch[0] if k != "id"}
        out["id"] = [b["id"] for b in batch]
        return out

    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate,
                          worker_init_fn=worker_init if num_workers else None)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=g, num_workers=num_workers, collate_fn=collate,
                      worker_init_fn=worker_init if num_workers else None)
