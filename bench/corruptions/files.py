"""Corrupted image files: one realisation per (dataset, seed, patient, type, parameters), written once.

A realisation is a NIfTI file per rewritten modality under ``<cache>/<dataset fingerprint>/``, named
``<patient>__<type>-<parameters hash>-seed<seed>-v<type version>__<CT|PET>.nii.gz``. The severity is not part
of the name: the same parameters are the same realisation, whichever protocol asks (noisyNN's CT and PET noise
are the ct-noise-s5 and pet-noise-s5 files). Only the modalities a type rewrites are written; a patient's
other images stay the source files, so per-modality caches downstream (features, pipeline) reuse them. Each
file has its sha256 beside it (``<file>.sha256``) and is reused only while it matches, so a truncated or
damaged cache file is written again, never read as an image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from bench.corruptions.kinds import TYPES, realisations, suite_type
from bench.corruptions.selection import noise_rng, selected
from bench.fsutil import atomic_path, file_digest, path_under, safe_name
from bench.hashing import content_hash


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def cached_intact(target: Path, cache: Path) -> bool:
    """Whether the corrupted file ``target`` is the one written: its sha256 (memoised by stat under
    ``<cache>/file-hashes``) equals the one recorded beside it. A file that is missing, truncated, rewritten
    or without its record is not, and is written again."""
    side = _sidecar(target)
    if not (target.is_file() and side.is_file()):
        return False
    try:
        return side.read_text().strip() == file_digest(target, Path(cache) / "file-hashes")
    except OSError:
        return False


def realisation_name(patient_id: str, corruption_type: str, params: dict[str, Any], seed: int,
                     modality: str) -> str:
    """The file name of one realisation's image of ``modality`` (``missing-modality`` is named by its
    modality, as pages name it)."""
    shown = suite_type({"kind": corruption_type, **params})
    return (f"{patient_id}__{shown}-{content_hash(params, 8)}-seed{seed}-v{TYPES[corruption_type].version}"
            f"__{modality.upper()}.nii.gz")


def _write(image, target: Path, cache: Path) -> None:
    import SimpleITK as sitk

    with atomic_path(target, ".nii.gz") as tmp:
        sitk.WriteImage(image, str(tmp), True)
    digest = file_digest(target, Path(cache) / "file-hashes")
    with atomic_path(_sidecar(target), ".sha256") as tmp:
        tmp.write_text(digest + "\n")


def corrupted_images(files, dataset_fp: str, corruption: dict[str, Any], patient_id: str, cache: Path):
    """The patient's ImageFiles with each modality the corruption rewrites replaced by its realisation
    (written once, atomically, under ``cache``, each with its sha256 beside it and reused only when it still
    matches); the other modality and the mask are the source files. A damaged source image is a
    ``BenchInputError`` naming it."""
    from bench.data.cohort import ImageFiles
    from bench.data.images import read_image

    safe_name(patient_id, "patient id")
    folder = safe_name(dataset_fp, "dataset fingerprint")
    seed = corruption["seed"]
    paths = {"ct": files.ct, "pet": files.pet}
    for name, params in realisations(corruption):
        spec = TYPES[name]
        targets = {m: path_under(Path(cache), folder, realisation_name(patient_id, name, params, seed, m))
                   for m in spec.modalities(params)}
        if not all(cached_intact(t, cache) for t in targets.values()):
            images = {m: read_image(files.ct if m == "ct" else files.pet, m.upper(), patient_id) for m in targets}
            rng = noise_rng(dataset_fp, seed, patient_id, name, params)
            draws = spec.draw(params, rng) if spec.draw else {}
            for m, image in spec.apply(images, params, draws, rng).items():
                _write(image, targets[m], cache)
        paths |= targets
    return ImageFiles(paths["ct"], paths["pet"], files.mask)


def corrupted_files(dataset, corruption: dict[str, Any], ids: Iterable[str], cache: Path) -> dict[str, Any]:
    """{patient id: corrupted ImageFiles} for the patients of ``ids`` that the corruption selects (every one,
    for a suite protocol's fraction 1)."""
    if corruption["kind"] == "none" or dataset.images is None:
        return {}
    return {pid: corrupted_images(dataset.images[pid], dataset.fingerprint, corruption, pid, cache)
            for pid in ids
            if selected(dataset.fingerprint, corruption, pid)}
