"""Which patients a protocol corrupts, and how (the per-patient manifest stored with every run).

Each patient has a uniform draw u from (dataset fingerprint, seed, patient id) and is corrupted iff u < fraction, so
noisy10 ⊂ noisy20 ⊂ … ⊂ noisy100 and the choice does not depend on the fold. The noise itself (CT
Gaussian, PET Poisson, on the native images) belongs to the image pipeline; a clinical-only method's
inputs are untouched, which the manifest records.
"""
from __future__ import annotations

from typing import Any, Iterable

from bench.hashing import unit_uniform


def selection_draw(dataset_fp: str, seed: int, patient_id: str) -> float:
    return unit_uniform("corruption", dataset_fp, seed, patient_id)


def corruption_manifest(
    dataset_fp: str, corruption: dict[str, Any], ids: Iterable[str], *, affects_inputs: bool
) -> dict[str, Any]:
    """Per-patient record: drawn u, whether corrupted, and the CT/PET noise applied."""
    if corruption["kind"] == "none":
        return {"kind": "none", "patients": {}}
    ct_sigma = corruption["ct_sigma"][corruption["ct_level"]]
    pet_counts = corruption["pet_counts_per_suv"][corruption["pet_level"]]
    patients = {}
    for pid in ids:
        u = selection_draw(dataset_fp, corruption["seed"], pid)
        entry: dict[str, Any] = {"u": round(u, 6), "corrupted": u < corruption["fraction"]}
        if entry["corrupted"]:
            entry["ct"] = {"noise": "gaussian", "level": corruption["ct_level"], "sigma_x_range": ct_sigma}
            entry["pet"] = {"noise": "poisson", "level": corruption["pet_level"], "counts_per_suv": pet_counts}
        patients[pid] = entry
    return {
        "kind": corruption["kind"],
        "fraction": corruption["fraction"],
        "apply_to": corruption["apply_to"],
        "affects_inputs": affects_inputs,
        "n_corrupted": sum(e["corrupted"] for e in patients.values()),
        "patients": patients,
    }
