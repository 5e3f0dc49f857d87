"""Load and validate a cohort in the HECKTOR 2022 training layout.

    <root>/hecktor2022_clinical_info_training.csv   PatientID, Task 1, Task 2, CenterID, Gender, Age, ...
    <root>/hecktor2022_endpoint_training.csv        PatientID, Relapse, RFS
    <root>/imagesTr/<PatientID>__CT.nii.gz, <PatientID>__PT.nii.gz   (optional: clinical-only datasets)
    <root>/labelsTr/<PatientID>.nii.gz              0 background, 1 GTVp, 2 GTVn

The cohort is the patients of the endpoint file. Images are listed (their existence checked) but not read:
a clinical-only method never touches them. Every problem found is reported with its file and patient.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.cohort import Cohort, ImageFiles
from bench.errors import BenchInputError
from bench.fsutil import name_problem

CLINICAL_FILE = "hecktor2022_clinical_info_training.csv"
ENDPOINT_FILE = "hecktor2022_endpoint_training.csv"
IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
GROUNDTRUTH_FILE = Path("groundtruth") / "oracle.csv"

HPV_COLUMN = "HPV status (0=-, 1=+)"
CLINICAL_COLUMNS = [
    "PatientID", "Task 1", "Task 2", "CenterID", "Gender", "Age", "Weight", "Tobacco", "Alcohol",
    "Performance status", HPV_COLUMN, "Surgery", "Chemotherapy",
]
ENDPOINT_COLUMNS = ["PatientID", "Relapse", "RFS"]
# Bookkeeping columns of the clinical file that are not patient features.
NON_FEATURES = ("PatientID", "Task 1", "Task 2", "CenterID")
CATEGORICAL = ("Gender",)
NUMERIC = ("Age", "Weight", "Tobacco", "Alcohol", "Performance status", HPV_COLUMN, "Surgery", "Chemotherapy")
MAX_LISTED_PROBLEMS = 20  # per kind of problem


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
    """A loaded cohort: the whole table, image listing and a fingerprint of the files it came from."""

    name: str
    root: Path
    clinical: pd.DataFrame
    outcomes: pd.DataFrame
    centres: pd.Series
    images: dict[str, ImageFiles] | None
    fingerprint: str

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


def _fail(problems: list[str], root: Path, max_listed: int | None = MAX_LISTED_PROBLEMS) -> None:
    """Raise the problems as one ``BenchInputError`` (``max_listed`` of each kind listed; all with None); the
    exception carries the whole list as ``problems``."""
    text = "\n".join(f"  - {line}" for line in listed(problems, max_listed))
    exc = BenchInputError(f"dataset {root} is not a valid HECKTOR 2022 folder:\n{text}")
    exc.problems = list(problems)
    raise exc


def _read_csv(path: Path, required: list[str], problems: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(Problem(f"{path}: file missing", "file missing"))
        return None
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        table = pd.read_csv(path, dtype={"PatientID": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(Problem(f"{path}: cannot be parsed as CSV ({exc})", "CSV unreadable"))
        return None
    table.columns = [str(c).strip() for c in table.columns]
    if "PatientID" in table.columns:
        table["PatientID"] = table["PatientID"].str.strip()
    missing = [c for c in required if c not in table.columns]
    if missing:
        problems.append(Problem(f"{path}: missing column(s) {missing}", "CSV columns"))
        return None
    ids = table["PatientID"].replace("", np.nan)
    if ids.isna().any():
        rows = (np.flatnonzero(ids.isna().to_numpy()) + 2).tolist()
        problems.append(Problem(f"{path}: empty PatientID on line(s) {rows[:10]}", "PatientID"))
        return None
    unsafe = [(line, pid, why) for line, pid in enumerate(ids, start=2) if (why := name_problem(pid))]
    if unsafe:  # ids name image files and cached files: none may lead out of its folder
        for line, pid, why in unsafe:
            problems.append(Problem(f"{path}: line {line}: PatientID {pid!r} cannot name a file: it {why}",
                                    "PatientID"))
        return None
    dup = sorted(set(ids[ids.duplicated()]))
    if dup:
        problems.append(Problem(f"{path}: duplicate PatientID(s) {dup[:10]}", "PatientID"))
        return None
    return table.set_index("PatientID", drop=False)


def _centre_of(pid: str, center_id) -> str:
    """HECKTOR ids are <Centre>-<NNN>; the numeric CenterID is the fallback for other id schemes."""
    if "-" in pid:
        return pid.split("-", 1)[0]
    return str(center_id)


def _type_clinical(table: pd.DataFrame, path: Path, problems: list[str]) -> pd.DataFrame:
    features = table.drop(columns=[c for c in NON_FEATURES if c in table.columns])
    out = {}
    for col in features.columns:
        values = features[col]
        if col in NUMERIC:
            numeric = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & numeric.isna()
            if bad.any():
                examples = ", ".join(f"{pid} ({values[pid]!r})" for pid in table.index[bad][:5])
                problems.append(Problem(f"{path}: column {col!r} must be numeric; not a number for patient(s) "
                                        f"{examples}", "clinical values"))
            out[col] = numeric.astype(float)
        elif col in CATEGORICAL or values.dtype == object:
            numeric = pd.to_numeric(values, errors="coerce")
            if col not in CATEGORICAL and numeric.notna().sum() == values.notna().sum():
                out[col] = numeric.astype(float)
            else:
                out[col] = values.astype("string").astype("category")
        else:
            out[col] = values.astype(float)
    typed = pd.DataFrame(out, index=table.index)
    typed.index.name = "PatientID"
    for col in ("Age", "Weight"):
        if col in typed and pd.api.types.is_numeric_dtype(typed[col]) and (typed[col] < 0).any():
            bad = typed.index[typed[col] < 0].tolist()
            problems.append(Problem(f"{path}: column {col!r} is negative for patient(s) {bad[:10]}", "clinical values"))
    return typed


def _validate_endpoint(table: pd.DataFrame, path: Path, problems: list[str]) -> pd.DataFrame | None:
    time = pd.to_numeric(table["RFS"], errors="coerce")
    event = pd.to_numeric(table["Relapse"], errors="coerce")
    n_before = len(problems)
    nan_time = table.index[~np.isfinite(time.to_numpy(dtype=float))].tolist()
    if nan_time:
        problems.append(Problem(f"{path}: column 'RFS' is missing, infinite or not a number for patient(s) "
                                f"{nan_time[:10]}", "endpoint values"))
    neg = table.index[time < 0].tolist()
    if neg:
        problems.append(Problem(f"{path}: column 'RFS' is negative for patient(s) {neg[:10]}", "endpoint values"))
    bad_event = table.index[~event.isin([0, 1])].tolist()
    if bad_event:
        problems.append(Problem(f"{path}: column 'Relapse' must be 0 or 1; patient(s) {bad_event[:10]} are not",
                                "endpoint values"))
    if len(problems) > n_before:
        return None
    out = pd.DataFrame({"time": time.astype(float), "event": event.astype(int)}, index=table.index)
    out.index.name = "PatientID"
    return out


def _list_images(root: Path, ids: list[str], problems: list[str]) -> dict[str, ImageFiles] | None:
    images_dir, labels_dir = root / IMAGES_DIR, root / LABELS_DIR
    if not images_dir.is_dir():
        if labels_dir.is_dir():
            problems.append(Problem(f"{labels_dir}: labels present but {images_dir} is missing", "file missing"))
        return None
    listing = {}
    for pid in ids:
        ct, pet = images_dir / f"{pid}__CT.nii.gz", images_dir / f"{pid}__PT.nii.gz"
        mask = labels_dir / f"{pid}.nii.gz" if labels_dir.is_dir() else None
        for path in (ct, pet, mask):
            if path is not None and not path.is_file():
                problems.append(Problem(f"{path}: image of patient {pid} is missing", "image missing"))
        listing[pid] = ImageFiles(ct, pet, mask)
    return listing


def _fingerprint(root: Path, images: dict[str, ImageFiles] | None) -> str:
    """Hash of the CSV contents and of the image file names and sizes (reading every voxel is too slow)."""
    h = hashlib.sha256()
    for name in (CLINICAL_FILE, ENDPOINT_FILE):
        h.update(name.encode())
        h.update((root / name).read_bytes())
    for pid in sorted(images or {}):
        f = images[pid]
        for path in (f.ct, f.pet, f.mask):
            if path is not None:
                h.update(f"{path.relative_to(root)}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def load_hecktor(root: str | Path, name: str | None = None, *, max_listed: int | None = MAX_LISTED_PROBLEMS
                 ) -> Dataset:
    """Load and validate a HECKTOR 2022 layout folder; raise ``BenchInputError`` listing the problems (the
    first ``max_listed`` of each kind, or all with None; the whole list is the exception's ``problems``).
    Patient ids name files, so an id with a path separator, '..' or a control character is refused."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchInputError(f"dataset folder {root} does not exist")
    problems: list[str] = []
    clin_path, end_path = root / CLINICAL_FILE, root / ENDPOINT_FILE
    clinical = _read_csv(clin_path, CLINICAL_COLUMNS, problems)
    endpoint = _read_csv(end_path, ENDPOINT_COLUMNS, problems)
    if clinical is None or endpoint is None:
        _fail(problems, root, max_listed)
    unknown = sorted(set(endpoint.index) - set(clinical.index))
    if unknown:
        problems.append(Problem(f"{end_path}: patient(s) {unknown[:10]} are not in {CLINICAL_FILE}", "PatientID"))
    outcomes = _validate_endpoint(endpoint, end_path, problems)
    typed = _type_clinical(clinical, clin_path, problems)
    ids = endpoint.index.tolist()
    if not ids:
        problems.append(Problem(f"{end_path}: no patients", "PatientID"))
    images = _list_images(root, ids, problems)
    if problems:
        _fail(problems, root, max_listed)
    centres = pd.Series(
        [_centre_of(pid, clinical.at[pid, "CenterID"]) for pid in ids], index=endpoint.index, name="centre"
    )
    return Dataset(
        name=name or f"hecktor2022:{root}",
        root=root,
        clinical=typed.loc[ids],
        outcomes=outcomes,
        centres=centres,
        images=images,
        fingerprint=_fingerprint(root, images),
    )
