"""Patient splits: stratified k-fold, leave-one-centre-out, fixed centre split, and the validation carve.

Splits are a pure function of (patient set, split section of the protocol, seed). The first run writes
them to ``<results>/splits/<dataset fingerprint>-<split hash>.json`` (the nnU-Net ``splits_final.json``
habit); every later run reads that file and checks it still fits the dataset, so a split is never
silently regenerated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from bench.data.hecktor import Dataset
from bench.errors import BenchInputError
from bench.fsutil import atomic_path
from bench.hashing import content_hash


@dataclass(frozen=True)
class Fold:
    index: int
    name: str  # "fold0" … or the held-out centre(s)
    train: tuple[str, ...]
    test: tuple[str, ...]


def _strata(dataset: Dataset, ids: np.ndarray, keys: list[str], n_splits: int) -> np.ndarray:
    """Stratum labels; strata smaller than ``n_splits`` are merged into a per-event remainder, then
    into one remainder, so StratifiedKFold always has enough members per class."""
    events = dataset.outcomes.loc[ids, "event"].to_numpy()
    centres = dataset.centres.loc[ids].to_numpy()
    labels = np.array([
        "|".join([f"e{e}" if "event" in keys else "", c if "centre" in keys else ""])
        for e, c in zip(events, centres)
    ], dtype=object)
    for fallback in (np.array([f"e{e}|*" for e in events], dtype=object), np.full(len(ids), "*", dtype=object)):
        values, counts = np.unique(labels, return_counts=True)
        small = set(values[counts < n_splits])
        if not small:
            return labels
        labels = np.where(np.isin(labels, list(small)), fallback, labels)
    # A remainder can still be too small (a 1-patient centre): fold it into the largest stratum.
    values, counts = np.unique(labels, return_counts=True)
    small = values[counts < n_splits]
    return np.where(np.isin(labels, small), values[np.argmax(counts)], labels)


def make_folds(dataset: Dataset, split: dict) -> list[Fold]:
    ids = np.array(sorted(dataset.ids), dtype=object)
    kind = split["kind"]
    if kind == "kfold":
        k = split["n_folds"]
        if len(ids) < 2 * k:
            raise BenchInputError(f"dataset {dataset.name} has {len(ids)} patients: too few for {k}-fold CV")
        labels = _strata(dataset, ids, split["stratify"], k)
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=split["seed"])
        return [
            Fold(i, f"fold{i}", tuple(ids[tr]), tuple(ids[te]))
            for i, (tr, te) in enumerate(skf.split(ids, labels))
        ]
    centres = dataset.centres.loc[ids].to_numpy()
    present = sorted(set(centres))
    if kind == "loco":
        if len(present) < 2:
            raise BenchInputError(f"dataset {dataset.name}: leave-one-centre-out needs >= 2 centres, found {present}")
        return [
            Fold(i, c, tuple(ids[centres != c]), tuple(ids[centres == c])) for i, c in enumerate(present)
        ]
    if kind == "center-split":
        for role in ("train_centres", "test_centres"):
            empty = [c for c in split[role] if c not in present]
            if empty:
                raise BenchInputError(
                    f"dataset {dataset.name}: centre(s) {empty} named in split.{role} have no patients "
                    f"(centres present: {present})"
                )
        train = ids[np.isin(centres, split["train_centres"])]
        test = ids[np.isin(centres, split["test_centres"])]
        return [Fold(0, "+".join(split["test_centres"]), tuple(train), tuple(test))]
    raise BenchInputError(f"unknown split kind {kind!r}")


def carve_validation(dataset: Dataset, train_ids: tuple[str, ...], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Stratified (event, then event x centre where possible) hold-out of a training fold."""
    ids = np.array(sorted(train_ids), dtype=object)
    n_val = int(round(fraction * len(ids)))
    if n_val == 0:
        return list(ids), []
    labels = _strata(dataset, ids, ["event", "centre"], 2)
    if min(n_val, len(ids) - n_val) < len(set(labels)):
        labels = _strata(dataset, ids, ["event"], 2)
    fit, val = train_test_split(ids, test_size=n_val, random_state=seed, stratify=labels)
    return sorted(fit), sorted(val)


def _val_seed(split_seed: int, fold: int, seed: int) -> int:
    return int(content_hash([split_seed, fold, seed], 8), 16)


@dataclass
class SplitPlan:
    """The folds of one (dataset, split section) and, per run seed, the validation carve of each fold."""

    path: Path
    folds: list[Fold]
    val: dict[str, list[list[str]]]

    def fit_val(self, fold: Fold, seed: int) -> tuple[list[str], list[str]]:
        val = set(self.val[str(seed)][fold.index])
        return [i for i in fold.train if i not in val], sorted(val)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path, ".tmp") as tmp, open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)


def split_file(results_dir: Path, dataset_fp: str, split: dict) -> Path:
    """Where a results folder keeps the folds of (dataset, split section)."""
    return Path(results_dir) / "splits" / f"{dataset_fp}-{content_hash(split, 12)}.json"


def split_plan(dataset: Dataset, split: dict, results_dir: Path, seeds: list[int]) -> SplitPlan:
    """Load the stored split for (dataset, split) or make and store it; add validation carves for seeds."""
    path = split_file(results_dir, dataset.fingerprint, split)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            folds = [Fold(f["index"], f["name"], tuple(f["train"]), tuple(f["test"])) for f in data["folds"]]
            val = data["val"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BenchInputError(
                f"split file {path} is damaged ({exc}); it is kept as is — move it away to regenerate the split"
            ) from None
        if set(data.get("patients", [])) != set(dataset.ids):
            raise BenchInputError(
                f"split file {path} does not cover this dataset's patients (it was made for another "
                f"patient set); move it away to regenerate"
            )
    else:
        folds, val, data = make_folds(dataset, split), {}, None
    changed = data is None
    for seed in seeds:
        if str(seed) not in val:
            val[str(seed)] = [
                carve_validation(dataset, f.train, split["val_fraction"], _val_seed(split["seed"], f.index, seed))[1]
                for f in folds
            ]
            changed = True
    if changed:
        _write_json(path, {
            "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint, "split": split,
            "patients": sorted(dataset.ids),
            "folds": [{"index": f.index, "name": f.name, "train": list(f.train), "test": list(f.test)} for f in folds],
            "val": val,
        })
    return SplitPlan(path, folds, val)
