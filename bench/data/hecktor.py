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
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.cohort import ImageFiles
from bench.data.dataset import (GROUNDTRUTH_FILE, MAX_LISTED_PROBLEMS, NO_CENTRE, Dataset, Problem, fail,  # noqa: F401
                                listed)
from bench.errors import BenchInputError
from bench.fsutil import name_problem

CLINICAL_FILE = "hecktor2022_clinical_info_training.csv"
ENDPOINT_FILE = "hecktor2022_endpoint_training.csv"
IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"

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


HECKTOR_ID = re.compile(r"^([A-Za-z]+)-\d+$")  # CHUM-001: the centre's code, a dash, a number


def centre_text(value) -> str | None:
    """A centre cell (CenterID, or a manifest's centre column) as text: None when empty; 3.0 (a column with gaps
    reads as float) as "3"."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _centres(clinical: pd.DataFrame, ids: list[str], path: Path, problems: list[str]) -> tuple[pd.Series, bool] | None:
    """Each patient's centre, and whether the dataset has centres at all.

    CenterID decides when it is filled in. HECKTOR's own ids (``CHUM-001``) name the centre too: when every id
    has such a code, there are at least two codes and codes and CenterIDs correspond one to one, the codes are
    the centres' names on pages (the same grouping); when they disagree, that is an error naming the patients.
    Ids in any other form never decide anything. A CenterID left empty for some patients is an error naming
    them (never a pseudo-centre); a column empty for every patient (or absent) falls back to the ids' codes
    when every id has one, else the dataset has no centres."""
    column = clinical["CenterID"] if "CenterID" in clinical.columns else pd.Series(None, index=clinical.index)
    given = {pid: centre_text(column.get(pid)) for pid in ids}
    codes = {pid: m.group(1) for pid in ids if (m := HECKTOR_ID.match(pid))}
    empty = [pid for pid, c in given.items() if c is None]
    if len(empty) == len(ids):
        if len(codes) == len(ids):
            return pd.Series([codes[p] for p in ids], index=ids, name="centre"), True
        return pd.Series(NO_CENTRE, index=ids, name="centre"), False
    if empty:
        problems.append(Problem(f"{path}: column 'CenterID' is empty for patient(s) {empty[:10]}"
                                f"{f' and {len(empty) - 10} more' if len(empty) > 10 else ''}: give every patient "
                                f"a centre, or leave the column empty for all (no centre-based protocols then)",
                                "centre"))
        return None
    if len(codes) == len(ids) and len(set(codes.values())) >= 2:
        pairs: dict[str, dict[str, list[str]]] = {}
        for pid in ids:
            pairs.setdefault(codes[pid], {}).setdefault(given[pid], []).append(pid)
        centre_codes: dict[str, set[str]] = {}
        for code, by_centre in pairs.items():
            for centre in by_centre:
                centre_codes.setdefault(centre, set()).add(code)
        clashes = [(code, by_centre) for code, by_centre in pairs.items()
                   if len(by_centre) > 1 or any(len(centre_codes[c]) > 1 for c in by_centre)]
        if not clashes:
            return pd.Series([codes[p] for p in ids], index=ids, name="centre"), True
        for code, by_centre in clashes[:10]:
            listed_ = "; ".join(f"CenterID {c}: {len(p)} patient(s), e.g. {p[:3]}" for c, p in by_centre.items())
            problems.append(Problem(f"{path}: PatientID code {code!r} and column 'CenterID' disagree ({listed_}); "
                                    f"the ids name a centre that CenterID contradicts: correct one of them",
                                    "centre"))
        return None
    return pd.Series([given[p] for p in ids], index=ids, name="centre"), True


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
    clinical = _read_csv(clin_path, ["PatientID"], problems)  # every other column is optional
    endpoint = _read_csv(end_path, ENDPOINT_COLUMNS, problems)
    if clinical is None or endpoint is None:
        fail(problems, f"dataset {root} is not a valid HECKTOR 2022 folder", max_listed)
    unknown = sorted(set(endpoint.index) - set(clinical.index))
    if unknown:
        problems.append(Problem(f"{end_path}: patient(s) {unknown[:10]} are not in {CLINICAL_FILE}", "PatientID"))
    outcomes = _validate_endpoint(endpoint, end_path, problems)
    typed = _type_clinical(clinical, clin_path, problems)
    ids = endpoint.index.tolist()
    if not ids:
        problems.append(Problem(f"{end_path}: no patients", "PatientID"))
    images = _list_images(root, ids, problems)
    found = _centres(clinical, [i for i in ids if i in clinical.index], clin_path, problems) if not unknown else None
    if problems:
        fail(problems, f"dataset {root} is not a valid HECKTOR 2022 folder", max_listed)
    centres, has_centres = found
    centres.index = endpoint.index
    return Dataset(
        name=name or f"hecktor2022:{root}",
        root=root,
        clinical=typed.loc[ids],
        outcomes=outcomes,
        centres=centres,
        images=images,
        fingerprint=_fingerprint(root, images),
        has_centres=has_centres,
    )
