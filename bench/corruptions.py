"""Which patients a protocol corrupts, how, and the corrupted images themselves.

Selection: each patient has a uniform draw u from (dataset fingerprint, seed, patient id) and is
corrupted iff u < fraction, so noisy10 ⊂ noisy20 ⊂ … ⊂ noisy100 and the choice does not depend on the fold.

Noise (on the native images, before any resampling): CT gets zero-mean Gaussian noise with
σ = level × (max − min) of that CT; PET gets Poisson noise at a named count level — the SUV image is
scaled to expected counts (``counts_per_suv``), Poisson counts are drawn and scaled back. The realisation
comes from (dataset fingerprint, seed, patient id, modality, level) only, so each patient has one noisy
image per level, written once to the cache and reused by every protocol, fold and method. A corrupted
patient's cohort entry points at those files; a clinical-only method's inputs are untouched, which the
manifest records. Each noisy file has its sha256 beside it (``<file>.sha256``) and is reused only while it
matches, so a truncated or damaged cache file is written again, never read as an image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.fsutil import atomic_path, file_digest, path_under, safe_name
from bench.hashing import content_hash, unit_uniform

NOISE_VERSION = "1"  # part of every noisy file's name: bump when the noise recipe changes


def selection_draw(dataset_fp: str, seed: int, patient_id: str) -> float:
    return unit_uniform("corruption", dataset_fp, seed, patient_id)


def selected(dataset_fp: str, corruption: dict[str, Any], patient_id: str) -> bool:
    """Whether the corruption picks this patient (u < fraction), whichever side it is applied to."""
    return selection_draw(dataset_fp, corruption["seed"], patient_id) < corruption["fraction"]


def corruption_manifest(
    dataset_fp: str, corruption: dict[str, Any], ids: Iterable[str], *, affects_inputs: bool,
    train_ids: Iterable[str] = (),
) -> dict[str, Any]:
    """Per test patient: drawn u, whether corrupted, and the CT/PET noise applied; with ``apply_to``
    including ``train``, also the corrupted training patients."""
    if corruption["kind"] == "none":
        return {"kind": "none", "patients": {}}
    on_test = "test" in corruption["apply_to"]
    ct_sigma = corruption["ct_sigma"][corruption["ct_level"]]
    pet_counts = corruption["pet_counts_per_suv"][corruption["pet_level"]]
    patients = {}
    for pid in ids:
        u = selection_draw(dataset_fp, corruption["seed"], pid)
        entry: dict[str, Any] = {"u": round(u, 6), "corrupted": on_test and u < corruption["fraction"]}
        if entry["corrupted"]:
            entry["ct"] = {"noise": "gaussian", "level": corruption["ct_level"], "sigma_x_range": ct_sigma}
            entry["pet"] = {"noise": "poisson", "level": corruption["pet_level"], "counts_per_suv": pet_counts}
        patients[pid] = entry
    return {
        "kind": corruption["kind"],
        "seed": corruption["seed"],
        "noise_realisation": "one per (dataset fingerprint, seed, patient, modality, level)",
        "fraction": corruption["fraction"],
        "apply_to": corruption["apply_to"],
        "affects_inputs": affects_inputs,
        "n_corrupted": sum(e["corrupted"] for e in patients.values()),
        "patients": patients,
        "train_corrupted": sorted(p for p in train_ids if "train" in corruption["apply_to"]
                                  and selected(dataset_fp, corruption, p)),
    }


def noise_rng(dataset_fp: str, seed: int, patient_id: str, modality: str, level: str) -> np.random.Generator:
    key = content_hash({"dataset": dataset_fp, "seed": seed, "patient": patient_id, "modality": modality,
                        "level": level}, 16)
    return np.random.default_rng(int(key, 16))


def ct_gaussian(ct: np.ndarray, sigma_x_range: float, rng: np.random.Generator) -> np.ndarray:
    """CT + N(0, (sigma_x_range · (max − min))²), in the input's dtype (integers rounded and clipped)."""
    a = ct.astype(np.float64)
    noisy = a + rng.normal(0.0, sigma_x_range * float(a.max() - a.min()), a.shape)
    if np.issubdtype(ct.dtype, np.integer):
        info = np.iinfo(ct.dtype)
        return np.clip(np.round(noisy), info.min, info.max).astype(ct.dtype)
    return noisy.astype(ct.dtype)


def pet_poisson(pet: np.ndarray, counts_per_suv: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson(max(SUV, 0) · counts_per_suv) / counts_per_suv, as float32."""
    lam = np.clip(pet.astype(np.float64), 0.0, None) * counts_per_suv
    return (rng.poisson(lam) / counts_per_suv).astype(np.float32)


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def cached_intact(target: Path, cache: Path) -> bool:
    """Whether the noisy file ``target`` is the one written: its sha256 (memoised by stat under
    ``<cache>/file-hashes``) equals the one recorded beside it. A file that is missing, truncated, rewritten
    or without its record is not, and is written again."""
    side = _sidecar(target)
    if not (target.is_file() and side.is_file()):
        return False
    try:
        return side.read_text().strip() == file_digest(target, Path(cache) / "file-hashes")
    except OSError:
        return False


def corrupted_images(files, dataset_fp: str, corruption: dict[str, Any], patient_id: str, cache: Path):
    """The patient's ImageFiles with CT and PET replaced by their noisy versions (written once, atomically,
    under ``cache``, each with its sha256 beside it and reused only when it still matches); the mask is
    unchanged. A damaged source image is a ``BenchInputError`` naming it."""
    import SimpleITK as sitk

    from bench.data.cohort import ImageFiles
    from bench.data.images import read_image

    seed = corruption["seed"]
    safe_name(patient_id, "patient id")
    out = {}
    for modality, src, level, amount, noise in (
        ("ct", files.ct, corruption["ct_level"], corruption["ct_sigma"][corruption["ct_level"]], ct_gaussian),
        ("pet", files.pet, corruption["pet_level"], corruption["pet_counts_per_suv"][corruption["pet_level"]],
         pet_poisson),
    ):
        name = f"{patient_id}__{modality.upper()}-{level}-{amount:g}-seed{seed}-v{NOISE_VERSION}.nii.gz"
        target = path_under(Path(cache), safe_name(dataset_fp, "dataset fingerprint"), name)
        if not cached_intact(target, cache):
            img = read_image(src, modality.upper(), patient_id)
            arr = sitk.GetArrayFromImage(img)
            noisy = sitk.GetImageFromArray(noise(arr, amount, noise_rng(dataset_fp, seed, patient_id, modality, level)))
            noisy.CopyInformation(img)
            with atomic_path(target, ".nii.gz") as tmp:
                sitk.WriteImage(noisy, str(tmp), True)
            digest = file_digest(target, Path(cache) / "file-hashes")
            with atomic_path(_sidecar(target), ".sha256") as tmp:
                tmp.write_text(digest + "\n")
        out[modality] = target
    return ImageFiles(out["ct"], out["pet"], files.mask)


def corrupted_files(dataset, corruption: dict[str, Any], ids: Iterable[str], cache: Path) -> dict[str, Any]:
    """{patient id: noisy ImageFiles} for the patients of ``ids`` that the corruption selects."""
    if corruption["kind"] == "none" or dataset.images is None:
        return {}
    return {pid: corrupted_images(dataset.images[pid], dataset.fingerprint, corruption, pid, cache)
            for pid in ids
            if selected(dataset.fingerprint, corruption, pid)}
