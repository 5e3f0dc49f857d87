"""The image pipeline: native CT / PET / mask → a fixed box on a common grid, normalised, cached on disk.

Per patient: read the NIfTI files (SimpleITK); find the head-and-neck box from the images alone — centred
on the PET hot region (voxels above ``hot_fraction`` of the 99.9th SUV percentile, SUV-weighted
centroid; the PET image's centre when nothing is hot, as for a missing PET of zeros), never on the reference
mask, which a test cohort does not even have; resample CT (linear), PET (linear) and, when present, the mask
(nearest neighbour) onto ``size`` voxels of ``spacing_mm`` around that centre; window the CT to [0, 1] and
scale PET SUV by ``pet_suv_max`` (clipped to [0, 1]).

Cache: ``<cache>/pipeline/<key>.npz`` with key = hash(content hashes of the input files, pipeline config).
Corrupted images are separate files (bench.corruptions), so the corruption is part of the key through
them. A file's content hash is memoised by (path, size, mtime), so the second epoch, the second method and
the second run read one small npz per patient and no NIfTI.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchInputError
from bench.faults import fault_point
from bench.fsutil import atomic_path, file_digest  # file_digest: sha256 memoised by (path, size, mtime, ctime, inode)
from bench.hashing import content_hash
from bench.parallel import progress_map

PIPELINE_VERSION = "2"  # bump when the output changes: it is part of every cache key (history: CHANGELOG.md)


@dataclass(frozen=True)
class PipelineConfig:
    spacing_mm: float = 2.0  # isotropic output voxel
    size: tuple[int, int, int] = (48, 48, 48)  # output voxels (x, y, z)
    ct_window: tuple[float, float] = (-200.0, 300.0)  # HU mapped to [0, 1]
    pet_suv_max: float = 20.0  # SUV mapped to [0, 1] (clipped)
    hot_fraction: float = 0.4  # crop centre: SUV-weighted centroid of voxels above this × p99.9

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PipelineConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("size", "ct_window"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)

    def key(self) -> dict[str, Any]:
        return asdict(self) | {"version": PIPELINE_VERSION}


def cache_key(files, cfg: PipelineConfig, cache: Path) -> str:
    memo = Path(cache) / "pipeline" / "file-hashes"
    parts = {"ct": file_digest(Path(files.ct), memo), "pet": file_digest(Path(files.pet), memo),
             "mask": None if files.mask is None else file_digest(Path(files.mask), memo), "config": cfg.key()}
    return content_hash(parts, 24)


def hot_centre(pet, cfg: PipelineConfig) -> np.ndarray:
    """Physical (x, y, z) centre of the PET hot region; the centre of the PET image when it has none (a
    missing PET, all zeros: the box then sits in the middle of the field of view instead of failing)."""
    import SimpleITK as sitk

    a = sitk.GetArrayFromImage(pet).astype(np.float64)
    thr = cfg.hot_fraction * np.percentile(a, 99.9)
    if thr > 0:
        idx = np.argwhere(a > thr)
        w = a[tuple(idx.T)]
        z, y, x = (idx * w[:, None]).sum(0) / w.sum()
    else:
        z, y, x = (np.asarray(a.shape, float) - 1) / 2
    return np.asarray(pet.TransformContinuousIndexToPhysicalPoint([float(x), float(y), float(z)]))


def process(files, cfg: PipelineConfig) -> dict[str, np.ndarray]:
    """One patient through the pipeline (no cache): arrays (z, y, x) float32 ct, pet in [0, 1], uint8 mask.
    Each file is checked whole first (``bench.data.images``): a truncated or non-3-D image is a
    ``BenchInputError`` naming the file, never an image that is half zeros."""
    from bench.data.images import read_image

    mask = None if files.mask is None else read_image(files.mask, "mask")
    return process_images(read_image(files.ct, "CT"), read_image(files.pet, "PET"), mask, cfg)


def process_images(ct, pet, mask, cfg: PipelineConfig) -> dict[str, np.ndarray]:
    """``process`` on SimpleITK images already in memory (``mask`` may be None)."""
    import SimpleITK as sitk

    centre = hot_centre(pet, cfg)
    # The output grid is axis-aligned in LPS whatever the input's direction: array axes (z, y, x) run
    # inferior → superior, anterior → posterior, right → left for every scanner.
    ref = sitk.Image([int(s) for s in cfg.size], sitk.sitkFloat32)
    ref.SetSpacing([cfg.spacing_mm] * 3)
    half = (np.asarray(cfg.size, float) - 1) / 2 * cfg.spacing_mm
    ref.SetOrigin([float(v) for v in centre - half])
    ct_r = sitk.GetArrayFromImage(sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    pet_r = sitk.GetArrayFromImage(sitk.Resample(pet, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    lo, hi = cfg.ct_window
    out = {
        "ct": np.clip((ct_r - lo) / (hi - lo), 0, 1).astype(np.float32),
        "pet": np.clip(pet_r / cfg.pet_suv_max, 0, 1).astype(np.float32),
        "origin": np.asarray(ref.GetOrigin()), "centre": centre,
    }
    if mask is not None:
        out["mask"] = sitk.GetArrayFromImage(sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                           sitk.sitkUInt8))
    return out


def cache_path(files, cfg: PipelineConfig, cache: Path) -> Path:
    """Where the patient's pipeline output lives in the cache (hashes the input files, memoised)."""
    if files is None:
        raise BenchInputError("the image pipeline needs CT and PET files; this dataset has none")
    return Path(cache) / "pipeline" / f"{cache_key(files, cfg, cache)}.npz"


def load(files, cfg: PipelineConfig, cache: Path, *, path: Path | None = None) -> dict[str, np.ndarray]:
    """The patient's pipeline output, from the cache when there (computed and stored atomically otherwise).
    ``path``: its ``cache_path``, when the caller already knows it (a Dataset reading every epoch)."""
    target = path or cache_path(files, cfg, cache)
    if target.is_file():
        try:
            with np.load(target) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # damaged (truncated, bad CRC, not a zip): recompute and overwrite
            pass
    out = process(files, cfg)
    with atomic_path(target, ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    return out


def _load_job(args):
    files, cfg, cache = args
    load(files, cfg, cache)
    return True


def preprocess(image_files: dict, cfg: PipelineConfig, cache: Path, *, workers: int | None = None,
               progress: bool = True) -> None:
    """Fill the cache for every patient (in parallel, with a progress bar); cached ones cost a stat."""
    progress_map(_load_job, [(f, cfg, cache) for f in image_files.values()],
                 lambda _: fault_point("image-pipeline"), desc="image pipeline", workers=workers, progress=progress)


def to_native(labels: np.ndarray, origin, cfg: PipelineConfig, ct_path) -> np.ndarray:
    """The inverse of ``process`` for a label map: ``labels`` (z, y, x) on the pipeline box with ``origin``
    (stored in the cache entry) → the patient's native CT grid (nearest neighbour; 0 outside the box), as
    the (z, y, x) array the reference mask has. Reads only the CT header."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    img.SetSpacing([cfg.spacing_mm] * 3)
    img.SetOrigin([float(v) for v in origin])
    out = sitk.Resample(img, _ct_reference(ct_path), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def _ct_reference(ct_path):
    """An empty uint8 image with the CT's geometry (only the header is read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(ct_path))
    reader.ReadImageInformation()
    ref = sitk.Image([int(s) for s in reader.GetSize()], sitk.sitkUInt8)
    ref.SetSpacing(reader.GetSpacing())
    ref.SetOrigin(reader.GetOrigin())
    ref.SetDirection(reader.GetDirection())
    return ref


def save_label(labels: np.ndarray, ct_path, path: Path) -> Path:
    """Write a label map on the patient's native CT grid ((z, y, x), as ``to_native`` returns it) as an image
    file with the CT's geometry (atomically; the format follows the suffix, e.g. .nii.gz)."""
    import SimpleITK as sitk

    ref = _ct_reference(ct_path)
    if tuple(labels.shape) != tuple(reversed(ref.GetSize())):
        raise ValueError(f"label map {labels.shape} does not match the CT grid {tuple(reversed(ref.GetSize()))} "
                         f"of {ct_path}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    img.CopyInformation(ref)
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), True)
    return path
