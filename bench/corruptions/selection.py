"""Which patients a corruption picks, the generator of each realisation, and the run's corruption manifest.

Every function here is pure: the manifest is a function of (dataset fingerprint, corruption, patient ids,
whether the inputs are images, training ids), so ``bench store import`` regenerates it and compares.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from bench.corruptions.kinds import TYPES, parameters, suite_severity, suite_type
from bench.hashing import content_hash, unit_uniform


def selection_draw(dataset_fp: str, seed: int, patient_id: str) -> float:
    return unit_uniform("corruption", dataset_fp, seed, patient_id)


def selected(dataset_fp: str, corruption: dict[str, Any], patient_id: str) -> bool:
    """Whether the corruption picks this patient (u < fraction), whichever side it is applied to."""
    return selection_draw(dataset_fp, corruption["seed"], patient_id) < corruption["fraction"]


def noise_rng(dataset_fp: str, seed: int, patient_id: str, corruption_type: str,
              params: dict[str, Any]) -> np.random.Generator:
    """The generator of one realisation: keyed by (dataset fingerprint, seed, patient, type, parameters) and
    nothing else, so every protocol, fold and method that asks for it gets the same image."""
    key = content_hash({"dataset": dataset_fp, "seed": seed, "patient": patient_id, "type": corruption_type,
                        "parameters": params}, 16)
    return np.random.default_rng(int(key, 16))


def _train_corrupted(dataset_fp: str, corruption: dict[str, Any], train_ids: Iterable[str]) -> list[str]:
    return sorted(p for p in train_ids if "train" in corruption["apply_to"] and selected(dataset_fp, corruption, p))


def _noise_manifest(dataset_fp, corruption, ids, affects_inputs, train_ids) -> dict[str, Any]:
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
        "train_corrupted": _train_corrupted(dataset_fp, corruption, train_ids),
    }


def _suite_manifest(dataset_fp, corruption, ids, affects_inputs, train_ids) -> dict[str, Any]:
    spec = TYPES[corruption["kind"]]
    params = parameters(corruption)
    on_test = "test" in corruption["apply_to"]
    patients = {}
    for pid in ids:
        u = selection_draw(dataset_fp, corruption["seed"], pid)
        entry: dict[str, Any] = {"u": round(u, 6), "corrupted": on_test and u < corruption["fraction"]}
        if entry["corrupted"] and spec.draw is not None:
            entry |= spec.draw(params, noise_rng(dataset_fp, corruption["seed"], pid, spec.name, params))
        patients[pid] = entry
    out = {
        "kind": corruption["kind"],
        "type": suite_type(corruption),
        "severity": suite_severity(corruption),
        "parameters": params,
        "modalities": list(spec.modalities(params)),
        "seed": corruption["seed"],
        "realisation": "one per (dataset fingerprint, seed, patient, type, parameters)",
        "fraction": corruption["fraction"],
        "apply_to": corruption["apply_to"],
        "affects_inputs": affects_inputs,
        "n_corrupted": sum(e["corrupted"] for e in patients.values()),
        "expected_to_move": corruption["expected_to_move"],
    }
    if "effect" in corruption:
        out["effect"] = dict(corruption["effect"])
    return out | {"patients": patients, "train_corrupted": _train_corrupted(dataset_fp, corruption, train_ids)}


def corruption_manifest(
    dataset_fp: str, corruption: dict[str, Any], ids: Iterable[str], *, affects_inputs: bool,
    train_ids: Iterable[str] = (),
) -> dict[str, Any]:
    """Per test patient: drawn u, whether corrupted, and what was applied (the noise levels of ``noise``; a
    suite type's per-patient draws, such as the misregistration direction and axis); the corruption's type,
    severity, parameters, named reference method and measured effect; with ``apply_to`` including ``train``,
    also the corrupted training patients."""
    if corruption["kind"] == "none":
        return {"kind": "none", "patients": {}}
    if corruption["kind"] == "noise":
        return _noise_manifest(dataset_fp, corruption, ids, affects_inputs, train_ids)
    return _suite_manifest(dataset_fp, corruption, ids, affects_inputs, train_ids)
