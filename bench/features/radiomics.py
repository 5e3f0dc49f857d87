"""Radiomics features (PyRadiomics) from CT and PET inside GTVp, GTVn and their union, cached per
(patient, modality).

Per patient and modality: bring the image (PET only: CT is the grid) and the reference mask onto the CT grid
(linear and nearest neighbour) when their geometry differs; optionally resample both to an isotropic
``resample_mm`` grid (PyRadiomics' own resampling); then one PyRadiomics extraction per region with the
configured feature classes and a fixed bin width per modality (HU for CT, SUV for PET). Shape features depend
on the mask only, so they are taken once per region, in the first modality's pass (CT's by default).

A region that is absent (an N0 patient has no GTVn) or too small for PyRadiomics gets
``<region>_present = 0``, volumes 0 and NaN for every other feature: the model's train-fitted imputer
decides what to do with them, never this module. The modalities are joined as one pass over them in order
would give: once a modality finds the region too small, no later modality adds features for it.

Cache: ``<cache>/features/radiomics/<key>.json``, one entry per (patient, modality), keyed by what that
modality's features depend on: the CT entry by the content hashes of the CT and mask files; the PET entry by
those of the PET and mask files and the CT's geometry (size, spacing, origin, direction, read from its
header: PET and mask are brought onto that grid, the CT voxels play no part); both by the settings, this
module's version and the PyRadiomics version. Corrupted images are other files (bench.corruptions), so they
get their own features and never reuse the clean ones, while a corruption of one modality reuses the other
modality's clean entry; the same noisy file serves every noise fraction that selects the patient, every
method and every fold.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchInputError
from bench.fsutil import atomic_path
from bench.hashing import content_hash
from bench.parallel import progress_map

RADIOMICS_VERSION = "2"  # bump when the extraction recipe or the cache layout changes: part of every cache key
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


def _ct_grid(path, digest: str, cache: Path):
    """The CT's geometry from its header (``bench.data.images.Header``), memoised under ``cache`` by the file's
    content hash ``digest``: reading a header costs more than the rest of a cached lookup, and a table is looked
    up several times per fold."""
    from bench.data.images import Header, read_header

    memo = Path(cache) / "features" / "radiomics" / "grids" / f"{digest[:32]}.json"
    try:
        return Header(**{k: tuple(v) for k, v in json.loads(memo.read_text()).items()})
    except (OSError, ValueError, TypeError):
        pass
    header = read_header(path, "CT", check=False)
    with atomic_path(memo, ".json") as tmp:
        tmp.write_text(json.dumps(asdict(header)))
    return header


def _pass_classes(settings: RadiomicsSettings, modality: str) -> list[str]:
    """The feature classes of one modality's pass: every configured class but shape, plus shape (mask only,
    so taken once) in the first modality's pass."""
    texture = [c for c in settings.classes if c != "shape"]
    first = modality == settings.modalities[0] and "shape" in settings.classes
    return (["shape"] if first else []) + texture


def entry_modalities(settings: RadiomicsSettings) -> tuple[str, ...]:
    """The modalities that get a pass, and so a cache entry: those with a feature class to extract."""
    return tuple(m for m in settings.modalities if _pass_classes(settings, m))


def cache_paths(files, settings: RadiomicsSettings, cache: Path) -> dict[str, Path]:
    """Where each of the patient's entries lives in the cache, ``{modality: path}``: the files' content hashes
    (memoised) and, for the PET entry, the CT header."""
    from bench.data.pipeline import file_digest

    if files is None or files.mask is None:
        raise BenchInputError("radiomics features need CT, PET and a reference mask (labelsTr/) for every patient")
    memo = Path(cache) / "pipeline" / "file-hashes"
    common = {"mask": file_digest(Path(files.mask), memo), "settings": settings.key()}
    paths = {}
    for modality in entry_modalities(settings):
        parts = common | {"modality": modality, modality: file_digest(Path(getattr(files, modality)), memo)}
        if modality != "ct":
            parts["ct_grid"] = asdict(_ct_grid(files.ct, file_digest(Path(files.ct), memo), cache))
        paths[modality] = Path(cache) / "features" / "radiomics" / f"{content_hash(parts, 24)}.json"
    return paths


def _on_grid(image, grid, interpolator, default: float):
    """``image`` resampled onto ``grid`` (a ``bench.data.images.Header``), or itself when its geometry already
    matches."""
    import SimpleITK as sitk

    same = (tuple(image.GetSize()) == grid.size
            and np.allclose(image.GetSpacing(), grid.spacing, atol=1e-4)
            and np.allclose(image.GetOrigin(), grid.origin, atol=1e-3)
            and np.allclose(image.GetDirection(), grid.direction, atol=1e-5))
    if same:
        return image
    return sitk.Resample(image, [int(v) for v in grid.size], sitk.Transform(), interpolator, grid.origin, grid.spacing,
                         grid.direction, default, image.GetPixelID())


def _extractor(settings: RadiomicsSettings, bin_width: float, classes):
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(
        binWidth=bin_width, resampledPixelSpacing=[settings.resample_mm] * 3 if settings.resample_mm else None,
        interpolator="sitkBSpline", label=1, minimumROISize=settings.min_voxels, correctMask=False,
        additionalInfo=False,  # the diagnostics_* entries are dropped anyway, and computing them (image and mask
    )                          # hashes, connected components) is a large part of a pass (benchmarks/radiomics_speed.py)
    extractor.disableAllFeatures()
    for c in classes:
        extractor.enableFeatureClassByName(c)
    return extractor


def extract_modality(files, settings: RadiomicsSettings, modality: str) -> dict[str, dict[str, Any]]:
    """One modality's pass over one patient (no cache): ``{region: {"present": 0 | 1, "features": {...}}}`` with
    features ``{modality}_{region}_{class}_{feature}`` and, in the pass that carries shape,
    ``{region}_shape_{feature}``. ``present`` is 0 for a region below ``min_voxels`` or one that PyRadiomics
    finds too small after resampling (then it has no features)."""
    import radiomics
    import SimpleITK as sitk

    from bench.data.images import read_header

    radiomics.setVerbosity(logging.ERROR)  # its import sets its own stderr handler to WARNING
    logging.getLogger("radiomics").setLevel(logging.ERROR)  # and its records would reach the CLI's root handler
    grid = read_header(files.ct, "CT", check=False)
    image = _on_grid(sitk.ReadImage(str(getattr(files, modality)), sitk.sitkFloat32), grid, sitk.sitkLinear, 0.0)
    labels = _on_grid(sitk.ReadImage(str(files.mask), sitk.sitkUInt8), grid, sitk.sitkNearestNeighbor, 0)
    label_arr = sitk.GetArrayFromImage(labels)
    bin_width = settings.ct_bin_width if modality == "ct" else settings.pet_bin_width
    extractor = _extractor(settings, bin_width, _pass_classes(settings, modality))
    out: dict[str, dict[str, Any]] = {}
    for region in settings.regions:
        region_arr = np.isin(label_arr, REGIONS[region]).astype(np.uint8)
        entry = out[region] = {"present": float(int(region_arr.sum()) >= settings.min_voxels), "features": {}}
        if not entry["present"]:
            continue
        region_mask = sitk.GetImageFromArray(region_arr)
        region_mask.CopyInformation(labels)
        try:
            result = extractor.execute(image, region_mask, label=1)
        except ValueError as exc:  # an ROI that resampling shrank below min_voxels (or to one voxel)
            if not any(t in str(exc) for t in _TOO_SMALL):
                raise
            entry["present"] = 0.0
            continue
        for k, v in result.items():
            if k.startswith("diagnostics_"):
                continue
            _, cls, feat = k.split("_", 2)
            name = f"{region}_shape_{feat}" if cls == "shape" else f"{modality}_{region}_{cls}_{feat}"
            entry["features"][name] = float(v)
    return out


def _joined(settings: RadiomicsSettings, passes: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """The modalities' passes as one row, ``{modality}_{region}_…``, ``{region}_shape_…`` and
    ``{region}_present``, the way one pass over the modalities in order would give it: a region is present
    when every pass found it so, and a pass that did not stops the later ones adding features for it."""
    out: dict[str, float] = {}
    for region in settings.regions:
        present = 1.0
        for modality in entry_modalities(settings):
            if not passes[modality][region]["present"]:
                present = 0.0
                break
            out.update(passes[modality][region]["features"])
        out[f"{region}_present"] = present
        if not present and "shape" in settings.classes:
            for feat in _VOLUME_FEATURES:
                out[f"{region}_{feat}"] = 0.0
    return out


def extract(files, settings: RadiomicsSettings) -> dict[str, float]:
    """One patient's features (no cache): ``{modality}_{region}_{class}_{feature}`` for intensity and
    texture, ``{region}_shape_{feature}`` and ``{region}_present``."""
    return _joined(settings, {m: extract_modality(files, settings, m) for m in entry_modalities(settings)})


def _cached(path: Path) -> dict[str, dict[str, Any]] | None:
    """The pass stored at ``path``; None when missing or damaged (then it is recomputed)."""
    if path.is_file():
        try:
            regions = json.loads(path.read_text())["regions"]
            if all(isinstance(r["features"], dict) and r["present"] in (0.0, 1.0) for r in regions.values()):
                return regions
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return None


def _store(path: Path, files, settings: RadiomicsSettings, modality: str, regions: dict[str, dict[str, Any]]) -> None:
    read = {"ct": str(files.ct), "mask": str(files.mask)} | {modality: str(getattr(files, modality))}
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps({"modality": modality, "files": read, "settings": settings.key(),
                                   "regions": regions}))


def _pass(files, settings: RadiomicsSettings, modality: str, path: Path) -> dict[str, dict[str, Any]]:
    """One modality's pass, from the cache at ``path`` or computed and stored there (atomically)."""
    regions = _cached(path)
    if regions is None:
        regions = extract_modality(files, settings, modality)
        _store(path, files, settings, modality, regions)
    return regions


def load(files, settings: RadiomicsSettings, cache: Path) -> dict[str, float]:
    """The patient's features, each modality's pass from the cache, computed and stored when missing or
    damaged."""
    paths = cache_paths(files, settings, cache)
    return _joined(settings, {m: _pass(files, settings, m, path) for m, path in paths.items()})


def _job(args):
    pid, modality, files, settings, path = args
    try:
        return pid, modality, _pass(files, settings, modality, path), None
    except Exception as exc:  # report which patient, in the parent
        return pid, modality, None, f"{type(exc).__name__}: {exc}"


@dataclass
class ExtractionStats:
    """What a table cost: patients with at least one pass ``computed`` (the rest all ``cached``), the passes
    computed per modality, and the seconds spent."""

    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    computed_passes: dict[str, int] = field(default_factory=dict)


def feature_table(image_files: dict, settings: RadiomicsSettings, cache: Path, *, workers: int | None = None,
                  progress: bool = True, stats: ExtractionStats | None = None) -> pd.DataFrame:
    """Features of every patient in ``image_files`` ({id: ImageFiles}), one row per patient in that order;
    missing (patient, modality) passes are computed in parallel (one process per core) with a progress bar."""
    import time

    t0 = time.perf_counter()
    passes: dict[str, dict[str, dict]] = {pid: {} for pid in image_files}
    todo = []
    for pid, files in image_files.items():
        for modality, path in cache_paths(files, settings, cache).items():
            regions = _cached(path)
            if regions is not None:
                passes[pid][modality] = regions
            else:
                todo.append((pid, modality, files, settings, path))
    failures: list[str] = []

    def collect(result) -> None:
        pid, modality, regions, err = result
        if err is not None:
            failures.append(f"{pid} ({modality.upper()}): {err}")
        else:
            passes[pid][modality] = regions

    progress_map(_job, todo, collect, desc="radiomics", unit="pass", workers=workers, progress=progress)
    if failures:
        raise BenchInputError(f"radiomics extraction failed for {len(failures)} (patient, modality) pass(es): "
                              + "; ".join(failures[:5]))
    if stats is not None:
        computed = {job[0] for job in todo}
        stats.computed += len(computed)
        stats.cached += len(image_files) - len(computed)
        for job in todo:
            stats.computed_passes[job[1]] = stats.computed_passes.get(job[1], 0) + 1
        stats.seconds += time.perf_counter() - t0
    rows = {pid: _joined(settings, passes[pid]) for pid in image_files}
    frame = pd.DataFrame.from_dict(rows, orient="index")
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


__all__ = ["RadiomicsSettings", "extract", "extract_modality", "entry_modalities", "load", "feature_table",
           "cohort_features", "cache_paths", "ExtractionStats", "FEATURE_CLASSES", "REGIONS", "RADIOMICS_VERSION"]
