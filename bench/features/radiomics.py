"""Radiomics features (PyRadiomics) from CT and PET inside GTVp, GTVn and their union, cached per patient.

Per patient: read CT, PET and the reference mask (SimpleITK); bring PET and mask onto the CT grid (linear
and nearest neighbour) when their geometry differs; optionally resample all three to an isotropic
``resample_mm`` grid (PyRadiomics' own resampling); then one PyRadiomics extraction per (modality, region)
with the configured feature classes and a fixed bin width per modality (HU for CT, SUV for PET). Shape
features depend on the mask only, so they are taken once per region (from the CT pass).

A region that is absent (an N0 patient has no GTVn) or too small for PyRadiomics gets
``<region>_present = 0``, volumes 0 and NaN for every other feature: the model's train-fitted imputer
decides what to do with them, never this module.

Cache: ``<cache>/features/radiomics/<key>.json`` with key = hash(content hashes of the CT, PET and mask
files, settings, this module's version, the PyRadiomics version). Corrupted images are other files
(bench.corruptions), so they get their own features and never reuse the clean ones; the same noisy file
serves every noise fraction that selects the patient, every method and every fold.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchInputError
from bench.fsutil import atomic_path
from bench.hashing import content_hash
from bench.parallel import progress_map

RADIOMICS_VERSION = "1"  # bump when the extraction recipe changes: it is part of every cache key
FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
REGIONS = {"gtvp": (1,), "gtvn": (2,), "union": (1, 2)}
MODALITIES = ("ct", "pet")
_VOLUME_FEATURES = ("shape_MeshVolume", "shape_VoxelVolume")
_TOO_SMALL = ("ROI is too small", "only contains 1 segmented voxel", "not present in mask", "No labels found")


@dataclass(frozen=True)
class RadiomicsSettings:
    """What is extracted, and how. ``resample_mm`` 0 keeps the CT grid."""

    classes: tuple[str, ...] = ("shape", "firstorder", "glcm", "glszm")
    regions: tuple[str, ...] = ("gtvp", "gtvn", "union")
    modalities: tuple[str, ...] = MODALITIES
    ct_bin_width: float = 25.0  # HU
    pet_bin_width: float = 0.5  # SUV
    resample_mm: float = 2.0
    min_voxels: int = 8  # a smaller region counts as absent (texture matrices are meaningless below this)

    @classmethod
    def from_config(cls, d: dict[str, Any], where: str = "radiomics") -> RadiomicsSettings:
        problems = []
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            problems.append(f"unknown key(s) {unknown} (known: {sorted(cls.__dataclass_fields__)})")
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        s = cls(**known)
        for key, allowed in (("classes", FEATURE_CLASSES), ("regions", tuple(REGIONS)), ("modalities", MODALITIES)):
            values = getattr(s, key)
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                problems.append(f"{key} = {list(values)}: choose a non-empty subset of {list(allowed)}")
        if not (s.ct_bin_width > 0 and s.pet_bin_width > 0):
            problems.append(f"bin widths must be > 0 (ct_bin_width = {s.ct_bin_width}, pet_bin_width = {s.pet_bin_width})")
        if not s.resample_mm >= 0:
            problems.append(f"resample_mm = {s.resample_mm} must be >= 0 (0 keeps the CT grid)")
        if s.min_voxels < 1:
            problems.append(f"min_voxels = {s.min_voxels} must be >= 1")
        if problems:
            raise BenchInputError(f"{where}: " + "; ".join(problems))
        return s

    def key(self) -> dict[str, Any]:
        import SimpleITK as sitk

        return asdict(self) | {"version": RADIOMICS_VERSION, "pyradiomics": _pyradiomics_version(),
                               "simpleitk": sitk.Version.VersionString()}


def _pyradiomics_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("pyradiomics-bhklab", "pyradiomics"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    raise BenchInputError("radiomics features need PyRadiomics: pip install pyradiomics-bhklab")


def cache_path(files, settings: RadiomicsSettings, cache: Path) -> Path:
    from bench.data.pipeline import file_digest

    if files is None or files.mask is None:
        raise BenchInputError("radiomics features need CT, PET and a reference mask (labelsTr/) for every patient")
    memo = Path(cache) / "pipeline" / "file-hashes"
    parts = {m: file_digest(Path(getattr(files, m)), memo) for m in ("ct", "pet", "mask")}
    return Path(cache) / "features" / "radiomics" / f"{content_hash(parts | {'settings': settings.key()}, 24)}.json"


def _on_grid(image, reference, interpolator, default: float):
    """``image`` resampled onto ``reference``'s grid, or itself when the geometry already matches."""
    import SimpleITK as sitk

    same = (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
            and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
            and np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-5))
    if same:
        return image
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, default, image.GetPixelID())


def _extractor(settings: RadiomicsSettings, bin_width: float, classes):
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(
        binWidth=bin_width, resampledPixelSpacing=[settings.resample_mm] * 3 if settings.resample_mm else None,
        interpolator="sitkBSpline", label=1, minimumROISize=settings.min_voxels, correctMask=False,
    )
    extractor.disableAllFeatures()
    for c in classes:
        extractor.enableFeatureClassByName(c)
    return extractor


def extract(files, settings: RadiomicsSettings) -> dict[str, float]:
    """One patient's features (no cache): ``{modality}_{region}_{class}_{feature}`` for intensity and
    texture, ``{region}_shape_{feature}`` and ``{region}_present``."""
    import radiomics
    import SimpleITK as sitk

    radiomics.setVerbosity(logging.ERROR)  # its import sets its own stderr handler to WARNING
    logging.getLogger("radiomics").setLevel(logging.ERROR)  # and its records would reach the CLI's root handler
    ct = sitk.ReadImage(str(files.ct), sitk.sitkFloat32)
    images = {"ct": ct}
    if "pet" in settings.modalities:
        images["pet"] = _on_grid(sitk.ReadImage(str(files.pet), sitk.sitkFloat32), ct, sitk.sitkLinear, 0.0)
    labels = _on_grid(sitk.ReadImage(str(files.mask), sitk.sitkUInt8), ct, sitk.sitkNearestNeighbor, 0)
    label_arr = sitk.GetArrayFromImage(labels)
    texture = [c for c in settings.classes if c != "shape"]
    extractors = {}  # modality -> extractor; shape (mask only) rides on the first modality's pass
    for i, modality in enumerate(settings.modalities):
        classes = (["shape"] if i == 0 and "shape" in settings.classes else []) + texture
        if classes:
            bin_width = settings.ct_bin_width if modality == "ct" else settings.pet_bin_width
            extractors[modality] = _extractor(settings, bin_width, classes)
    out: dict[str, float] = {}
    for region in settings.regions:
        region_arr = np.isin(label_arr, REGIONS[region]).astype(np.uint8)
        region_mask = sitk.GetImageFromArray(region_arr)
        region_mask.CopyInformation(labels)
        present = f"{region}_present"
        out[present] = float(int(region_arr.sum()) >= settings.min_voxels)
        for modality, extractor in extractors.items():
            if not out[present]:
                break
            try:
                result = extractor.execute(images[modality], region_mask, label=1)
            except ValueError as exc:  # an ROI that resampling shrank below min_voxels (or to one voxel)
                if not any(t in str(exc) for t in _TOO_SMALL):
                    raise
                out[present] = 0.0
                break
            for k, v in result.items():
                if k.startswith("diagnostics_"):
                    continue
                _, cls, feat = k.split("_", 2)
                name = f"{region}_shape_{feat}" if cls == "shape" else f"{modality}_{region}_{cls}_{feat}"
                out[name] = float(v)
        if not out[present] and "shape" in settings.classes:
            for feat in _VOLUME_FEATURES:
                out[f"{region}_{feat}"] = 0.0
    return out


def _cached(path: Path) -> dict[str, float] | None:
    """The features stored at ``path``; None when missing or damaged (then they are recomputed)."""
    if path.is_file():
        try:
            return json.loads(path.read_text())["features"]
        except (ValueError, KeyError):
            pass
    return None


def load(files, settings: RadiomicsSettings, cache: Path, *, path: Path | None = None) -> dict[str, float]:
    """The patient's features from the cache, computed and stored (atomically) when missing or damaged.
    ``path``: its ``cache_path``, when the caller already knows it."""
    target = path or cache_path(files, settings, cache)
    features = _cached(target)
    if features is not None:
        return features
    features = extract(files, settings)
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps({"files": {m: str(getattr(files, m)) for m in ("ct", "pet", "mask")},
                                   "settings": settings.key(), "features": features}))
    return features


def _job(args):
    pid, files, settings, cache, path = args
    try:
        return pid, load(files, settings, cache, path=path), None
    except Exception as exc:  # report which patient, in the parent
        return pid, None, f"{type(exc).__name__}: {exc}"


@dataclass
class ExtractionStats:
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


def feature_table(image_files: dict, settings: RadiomicsSettings, cache: Path, *, workers: int | None = None,
                  progress: bool = True, stats: ExtractionStats | None = None) -> pd.DataFrame:
    """Features of every patient in ``image_files`` ({id: ImageFiles}), one row per patient in that order;
    missing ones are computed in parallel (one process per core) with a progress bar."""
    import time

    t0 = time.perf_counter()
    rows: dict[str, dict[str, float]] = {}
    todo = []
    for pid, files in image_files.items():
        path = cache_path(files, settings, cache)
        features = _cached(path)
        if features is not None:
            rows[pid] = features
        else:
            todo.append((pid, files, settings, Path(cache), path))
    failures: list[str] = []

    def collect(result) -> None:
        pid, feats, err = result
        if err is not None:
            failures.append(f"{pid}: {err}")
        else:
            rows[pid] = feats

    progress_map(_job, todo, collect, desc="radiomics", workers=workers, progress=progress)
    if failures:
        raise BenchInputError(f"radiomics extraction failed for {len(failures)} patient(s): " + "; ".join(failures[:5]))
    if stats is not None:
        stats.computed += len(todo)
        stats.cached += len(image_files) - len(todo)
        stats.seconds += time.perf_counter() - t0
    frame = pd.DataFrame.from_dict({pid: rows[pid] for pid in image_files}, orient="index")
    return frame.reindex(columns=sorted(frame.columns)).astype(float)


def cohort_features(cohort, settings: RadiomicsSettings, cache: Path, *, progress: bool = True,
                    stats: ExtractionStats | None = None) -> pd.DataFrame:
    """``feature_table`` for a Cohort (its image files, corrupted ones included, with reference masks)."""
    if not cohort.has_images:
        raise BenchInputError(f"radiomics features need images, and cohort {cohort.name!r} has none")
    files = cohort.image_files
    missing = [pid for pid, f in files.items() if f.mask is None]
    if missing:
        raise BenchInputError(f"radiomics features need the reference mask, and cohort {cohort.name!r} has none "
                              f"for {len(missing)} patient(s), e.g. {missing[:3]}")
    return feature_table(files, settings, cache, progress=progress, stats=stats)


__all__ = ["RadiomicsSettings", "extract", "load", "feature_table", "cohort_features", "cache_path",
           "ExtractionStats", "FEATURE_CLASSES", "REGIONS", "RADIOMICS_VERSION"]
