"""The base of every dataset: ``Dataset`` (what a loader returns and the harness reads), the checks every
loaded dataset passes whatever its source, time units, and the problem list loaders report with.

A dataset is a table of patients with an endpoint (time in days, event 0/1), a clinical table, a centre per
patient (or none declared), optionally image files per patient, and a fingerprint of what it was read from.
Loaders are registered in the entry-point group ``bench.datasets`` (``bench.data.sources``); docs/datasets.md
says how an outside package adds one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.cohort import Cohort, ImageFiles
from bench.errors import BenchInputError
from bench.fsutil import name_problem

GROUNDTRUTH_FILE = Path("groundtruth") / "oracle.csv"
MAX_LISTED_PROBLEMS = 20  # per kind of problem
NO_CENTRE = "all"  # the one centre of a dataset that declares none
DAYS_PER = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12, "years": 365.25}  # times are kept in days


def to_days(values, unit: str, where: str = "time_unit") -> pd.Series | np.ndarray:
    """Times in ``unit`` (days, weeks, months of 365.25/12 days, years of 365.25 days) as days."""
    if unit not in DAYS_PER:
        raise BenchInputError(f"{where} = {unit!r}: not a time unit (choose {', '.join(DAYS_PER)})")
    return values * DAYS_PER[unit]


class Problem(str):
    """One problem found in a dataset (its text names the file and patient), with a ``kind`` that groups
    problems for listing: a broken export repeats one kind thousands of times."""

    kind: str

    def __new__(cls, text: str, kind: str = "other") -> "Problem":
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj

    def __reduce__(self):
        return (Problem, (str(self), self.kind))


def listed(problems: list[str], per_kind: int | None = MAX_LISTED_PROBLEMS) -> list[str]:
    """The lines that list ``problems``: grouped by kind (in order of first appearance), at most ``per_kind``
    of each, then "… and N more" for the rest of that kind; every problem with None."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        groups.setdefault(getattr(p, "kind", "other"), []).append(str(p))
    lines = []
    for kind, group in groups.items():
        shown = group if per_kind is None else group[:per_kind]
        lines += shown
        if len(group) > len(shown):
            lines.append(f"… and {len(group) - len(shown)} more ({kind})")
    return lines


@dataclass
class Dataset:
    """A loaded cohort, what every dataset loader returns.

    - ``name``: how records and pages name it (``synthetic:quick:v3:0``, ``manifest:gbsg2``); a loader makes it
      unique to its source.
    - ``root``: the folder its files are read from (ground truth and centre descriptions are looked for there).
    - ``outcomes``: indexed by patient id (str), columns ``time`` (days, finite, >= 0) and ``event`` (0/1).
    - ``clinical``: the same index; numeric columns as float, categorical ones as pandas ``category``; no id,
      endpoint or centre column.
    - ``centres``: the same index, one non-empty string per patient; ``NO_CENTRE`` for every patient when the
      dataset declares none (``has_centres`` False), and centre-based protocols then refuse it.
    - ``images``: ``{id: ImageFiles(ct, pet, mask)}`` for every patient, or None for a clinical-only dataset.
    - ``fingerprint``: a hash of what the dataset was read from; it keys caches and stored runs.
    """

    name: str
    root: Path
    clinical: pd.DataFrame
    outcomes: pd.DataFrame
    centres: pd.Series
    images: dict[str, ImageFiles] | None
    fingerprint: str
    has_centres: bool = True

    @property
    def ids(self) -> np.ndarray:
        return self.outcomes.index.to_numpy(dtype=object)

    @property
    def has_groundtruth(self) -> bool:
        return (self.root / GROUNDTRUTH_FILE).is_file()

    def groundtruth(self) -> pd.DataFrame:
        """The hidden truth of a synthetic cohort (``groundtruth/oracle.csv``), indexed by patient id."""
        path = self.root / GROUNDTRUTH_FILE
        if not path.is_file():
            raise BenchInputError(f"dataset {self.name} has no ground truth ({path} is missing)")
        table = pd.read_csv(path, dtype={"PatientID": str}).set_index("PatientID")
        missing = sorted(set(self.ids) - set(table.index))
        if missing:
            raise BenchInputError(f"{path}: no ground truth for patient(s) {missing[:10]}")
        return table

    def centre_facts(self) -> dict[str, dict[str, str]]:
        """What is known of each centre beyond its patients, for pages: a synthetic cohort's scanner archetype
        and PET voxel (``groundtruth/centres.json``); empty for a cohort that does not say."""
        path = self.root / "groundtruth" / "centres.json"
        if not path.is_file():
            return {}
        try:
            centres = json.loads(path.read_text())
            return {str(c): {"scanner": str(v["archetype"]),
                             "PET voxel (mm)": "×".join(f"{x:g}" for x in v["pet_voxel_mm"])}
                    for c, v in centres.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchInputError(f"{path}: not a readable centre description ({exc})") from None

    def cohort(self, ids, *, with_outcomes: bool, with_mask: bool = True, name: str = "cohort",
               replace_images: dict[str, ImageFiles] | None = None, with_groundtruth: bool = False) -> Cohort:
        """The patients ``ids``; ``replace_images`` swaps in other files for some (the corrupted ones);
        ``with_groundtruth`` attaches the hidden truth (the oracle only)."""
        images = self.images
        if images is not None and replace_images:
            images = {**images, **replace_images}
        if images is not None and not with_mask:
            images = {i: ImageFiles(f.ct, f.pet, None) for i, f in images.items()}
        outcomes = self.outcomes if with_outcomes else None
        truth = self.groundtruth() if with_groundtruth else None
        return Cohort(ids, self.centres, self.clinical, outcomes, images, name, truth)


def fail(problems: list[str], what: str, max_listed: int | None = MAX_LISTED_PROBLEMS) -> None:
    """Raise the problems as one ``BenchInputError`` (``max_listed`` of each kind listed; all with None); the
    exception carries the whole list as ``problems``."""
    text = "\n".join(f"  - {line}" for line in listed(problems, max_listed))
    exc = BenchInputError(f"{what}:\n{text}")
    exc.problems = list(problems)
    raise exc




def check_dataset(ds: Dataset, source: str) -> Dataset:
    """What the harness requires of any loaded dataset, whichever loader made it (a plugin's included):
    ``BenchInputError`` naming ``source`` and the patients otherwise. Returns ``ds``."""
    problems: list[str] = []
    if not isinstance(ds, Dataset):
        raise BenchInputError(f"{source}: the loader returned {type(ds).__name__}, not a bench.data.Dataset")
    name_bad = name_problem(ds.name.replace(":", "-").replace("/", "-")) if ds.name else "is empty"
    if name_bad:
        problems.append(Problem(f"dataset name {ds.name!r} {name_bad}", "name"))
    ids = [str(i) for i in ds.outcomes.index]
    if not ids:
        problems.append(Problem("no patients", "PatientID"))
    for pid in ids:
        why = name_problem(pid)
        if why:
            problems.append(Problem(f"patient id {pid!r} cannot name a file: it {why}", "PatientID"))
    if len(set(ids)) != len(ids):
        problems.append(Problem(f"duplicate patient id(s) {sorted({i for i in ids if ids.count(i) > 1})[:10]}",
                                "PatientID"))
    missing_cols = [c for c in ("time", "event") if c not in ds.outcomes.columns]
    if missing_cols:
        problems.append(Problem(f"outcomes lack column(s) {missing_cols}", "endpoint values"))
    else:
        time = pd.to_numeric(ds.outcomes["time"], errors="coerce").to_numpy(float)
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(time) | (time < 0))]
        if bad:
            problems.append(Problem(f"time missing, negative or not a number for patient(s) {bad[:10]}",
                                    "endpoint values"))
        bad = [ids[i] for i, e in enumerate(ds.outcomes["event"].tolist()) if e not in (0, 1)]
        if bad:
            problems.append(Problem(f"event not 0 or 1 for patient(s) {bad[:10]}", "endpoint values"))
    for what, frame in (("clinical table", ds.clinical), ("centres", ds.centres)):
        absent = sorted(set(ids) - set(map(str, frame.index)))
        if absent:
            problems.append(Problem(f"{what} has no row for patient(s) {absent[:10]}", "PatientID"))
    if not problems:
        centres = ds.centres.loc[ids]
        empty = [pid for pid, c in centres.items() if not isinstance(c, str) or not c.strip() or c == "nan"]
        if empty:
            problems.append(Problem(f"no centre for patient(s) {empty[:10]}", "centre"))
    if ds.images is not None:
        absent = sorted(set(ids) - set(ds.images))
        if absent:
            problems.append(Problem(f"no image files listed for patient(s) {absent[:10]}", "image missing"))
    if problems:
        fail(problems, f"dataset {ds.name or source} ({source}) is not usable")
    return ds
