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

from bench.data.dataset import Dataset
from bench.errors import BenchInputError
from bench.fsutil import atomic_path
from bench.hashing import canonical_json, content_hash


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
    if kind in ("loco", "center-split") and not getattr(dataset, "has_centres", True):
        raise BenchInputError(f"dataset {dataset.name} declares no centre, so a {kind} protocol cannot split it: "
                              f"declare a grouping column as the centre (a manifest's `centre = \"COLUMN\"`, or "
                              f"CenterID in a HECKTOR folder), or run k-fold protocols such as clean")
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


MAX_SPLIT_FILE_BYTES = 256 << 20  # a split file lists patient ids: far below this for any real cohort


def expected_fold_count(split: dict, n_centres: int | None = None) -> int | None:
    """How many folds a split section makes: ``n_folds`` for k-fold, one per centre for leave-one-centre-out
    (None when the number of centres is not known), one for a centre split."""
    kind = split.get("kind")
    if kind == "kfold":
        n = split.get("n_folds")
        return n if isinstance(n, int) and not isinstance(n, bool) else None
    if kind == "loco":
        return n_centres
    return 1 if kind == "center-split" else None


def _ids(value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a list of patient ids")
    return value


def _parse_split_data(data) -> tuple[list[Fold], dict[str, list[list[str]]], list[str]]:
    """Folds, validation carves and patients of a split file's JSON; ValueError naming the part that is not
    of the expected shape."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for part in ("folds", "val", "patients"):
        if part not in data:
            raise ValueError(f"no {part!r} entry")
    if not isinstance(data["folds"], list):
        raise ValueError("'folds' is not a list")
    folds = []
    for i, f in enumerate(data["folds"]):
        if not isinstance(f, dict) or not {"index", "name", "train", "test"} <= set(f):
            raise ValueError(f"fold {i} lacks index, name, train or test")
        if type(f["index"]) is not int or f["index"] != i:
            raise ValueError(f"fold {i} has index {f['index']!r}")
        if not isinstance(f["name"], str):
            raise ValueError(f"fold {i} has name {f['name']!r}")
        folds.append(Fold(i, f["name"], tuple(_ids(f["train"], f"fold {i} train")),
                          tuple(_ids(f["test"], f"fold {i} test"))))
    val = data["val"]
    if not isinstance(val, dict):
        raise ValueError("'val' is not an object")
    for seed, carves in val.items():
        if not isinstance(carves, list) or len(carves) != len(folds):
            raise ValueError(f"val[{seed!r}] does not hold one validation list per fold ({len(folds)})")
        for i, carve in enumerate(carves):
            _ids(carve, f"val[{seed!r}] of fold {i}")
    return folds, val, _ids(data["patients"], "'patients'")


def _short(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def split_problems(folds: list[Fold], val: dict[str, list[list[str]]], patients: list[str], split: dict,
                   dataset: Dataset | None = None) -> list[str]:
    """What makes stored folds unusable for ``split`` (empty when none): a patient listed twice or unknown,
    train and test sharing a patient, a number of folds the split section does not make, a patient tested
    in no fold or in several (k-fold, leave-one-centre-out), centres on the wrong side, validation patients
    outside their training fold. With ``dataset``, its centres are checked too."""
    problems = []
    everyone = set(patients)
    if len(everyone) != len(patients):
        problems.append("'patients' lists a patient twice")
    kind = split.get("kind")
    centres = None if dataset is None else dataset.centres
    n_centres = None if centres is None else len(set(centres.loc[sorted(everyone & set(centres.index))]))
    want = expected_fold_count(split, n_centres)
    if want is not None and len(folds) != want:
        per = {"kfold": "the protocol's split section asks for", "loco": "one per centre needs",
               "center-split": "a centre split has"}[kind]
        problems.append(f"it holds {len(folds)} folds, {per} {want}")
    tested: dict[str, list[str]] = {}
    for f in folds:
        for side in ("train", "test"):
            ids = getattr(f, side)
            if len(set(ids)) != len(ids):
                twice = {p for p in ids if ids.count(p) > 1}
                problems.append(f"{f.name} lists {_short(twice)} twice in {side}")
            unknown = set(ids) - everyone
            if unknown:
                problems.append(f"{f.name} {side} holds patient(s) not in 'patients': {_short(unknown)}")
        both = set(f.train) & set(f.test)
        if both:
            problems.append(f"{len(both)} patient(s) in both train and test of {f.name}: {_short(both)}")
        if kind in ("kfold", "loco") and set(f.train) | set(f.test) != everyone:
            problems.append(f"{f.name}: train and test do not cover the patients "
                            f"(missing {_short(everyone - set(f.train) - set(f.test))})")
        for p in f.test:
            tested.setdefault(p, []).append(f.name)
        if centres is not None and kind == "loco":
            held = set(centres.reindex(list(f.test)).dropna())
            if held != {f.name} or f.name in set(centres.reindex(list(f.train)).dropna()):
                problems.append(f"{f.name}: its test patients are not exactly those of centre {f.name}")
        if centres is not None and kind == "center-split":
            for side, role in (("train", "train_centres"), ("test", "test_centres")):
                wrong = set(centres.reindex(list(getattr(f, side))).dropna()) - set(split.get(role, []))
                if wrong:
                    problems.append(f"{f.name} {side} holds patients of centre(s) {sorted(wrong)}, not in "
                                    f"split.{role}")
    if kind in ("kfold", "loco"):
        again = {p: names for p, names in tested.items() if len(names) > 1}
        for p, names in sorted(again.items())[:3]:
            problems.append(f"patient {p} is tested in {len(names)} folds ({', '.join(names)})")
        never = everyone - set(tested)
        if never:
            problems.append(f"{len(never)} patient(s) tested in no fold: {_short(never)}")
    for seed, carves in val.items():
        for f, carve in zip(folds, carves):
            outside = set(carve) - set(f.train)
            if outside:
                problems.append(f"the validation patients of seed {seed}, {f.name} are not all in its training "
                                f"fold: {_short(outside)}")
            if len(set(carve)) != len(carve):
                problems.append(f"the validation patients of seed {seed}, {f.name} list a patient twice")
    return problems


def _same_section(stored, split: dict) -> str | None:
    """None when the file's split section is the protocol's, else which keys differ."""
    if canonical_json(stored) == canonical_json(split):
        return None
    if not isinstance(stored, dict):
        return "the file names no split section"
    keys = sorted(k for k in set(stored) | set(split) if canonical_json(stored.get(k)) != canonical_json(split.get(k)))
    return ", ".join(f"{k}: {stored.get(k)!r} in the file, {split.get(k)!r} in the protocol" for k in keys)


def load_split_file(path: Path, split: dict, dataset: Dataset | None = None):
    """The folds, validation carves and raw content of a stored split file, checked against the protocol's
    split section (and, with ``dataset``, its patients and centres); ``BenchInputError`` naming the file
    otherwise. The file is never changed here."""
    keep = "it is kept as is — move it away to regenerate the split"
    try:
        if path.stat().st_size > MAX_SPLIT_FILE_BYTES:
            raise ValueError(f"larger than {MAX_SPLIT_FILE_BYTES >> 20} MB")
        data = json.loads(path.read_bytes().decode("utf-8"))
        folds, val, patients = _parse_split_data(data)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BenchInputError(f"split file {path} is damaged ({exc}); {keep}") from None
    if dataset is not None and set(patients) != set(dataset.ids):
        raise BenchInputError(
            f"split file {path} does not cover this dataset's patients (it was made for another "
            f"patient set); move it away to regenerate"
        )
    if dataset is not None and data.get("dataset_fingerprint", dataset.fingerprint) != dataset.fingerprint:
        raise BenchInputError(f"split file {path} was made for dataset fingerprint {data['dataset_fingerprint']!r}, "
                              f"not {dataset.fingerprint}; {keep}")
    differs = _same_section(data.get("split"), split)
    if differs:
        raise BenchInputError(f"split file {path} was made for another split section ({differs}); {keep}")
    problems = split_problems(folds, val, patients, split, dataset)
    if problems:
        more = f" (and {len(problems) - 3} more problem(s))" if len(problems) > 3 else ""
        raise BenchInputError(f"split file {path} is inconsistent: {'; '.join(problems[:3])}{more}; {keep}")
    return folds, val, data


def split_plan(dataset: Dataset, split: dict, results_dir: Path, seeds: list[int]) -> SplitPlan:
    """Load the stored split for (dataset, split) or make and store it; add validation carves for seeds. A
    stored file is checked first (``load_split_file``): a damaged, foreign or inconsistent one is an input error
    and left as it is."""
    path = split_file(results_dir, dataset.fingerprint, split)
    if path.is_file():
        folds, val, data = load_split_file(path, split, dataset)
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
        try:
            _write_json(path, {
                "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint, "split": split,
                "patients": sorted(dataset.ids),
                "folds": [{"index": f.index, "name": f.name, "train": list(f.train), "test": list(f.test)}
                          for f in folds],
                "val": val,
            })
        except OSError as exc:
            raise BenchInputError(f"cannot write the split file {path} ({exc.strerror or exc}); "
                                  f"--results {results_dir} must be a writable folder") from None
    return SplitPlan(path, folds, val)
