"""A dataset declared by a TOML manifest (``--dataset manifest:study.toml``): which tables, which columns are
the id, time, event and centre, the time unit, which columns are categorical or dropped, and optional image
paths per patient. Every declared thing is checked, with messages naming the file, the column and the patients.

    [dataset]
    name = "gbsg2"                      # how records and pages name it (default: the manifest's file stem)
    tables = ["clinical.csv", "endpoints.csv"]   # CSV files relative to the manifest, joined on the id
    id = "PatientID"
    time = "RFS"
    event = "Relapse"                   # 0/1 (or true/false)
    time_unit = "days"                  # days | weeks | months | years; times are kept in days
    centre = "CenterID"                 # optional: any grouping for leave-group-out; without it, centre-based
                                        # protocols are refused
    categorical = ["Gender", "race"]    # numerically coded categories (anything non-numeric already is one)
    drop = ["Task 1"]                   # columns that are not features

    [images]                            # optional; {id} is the patient id; paths relative to the manifest
    ct = "imagesTr/{id}__CT.nii.gz"
    pet = "imagesTr/{id}__PT.nii.gz"
    mask = "labelsTr/{id}.nii.gz"       # optional

The cohort is the patients of the table that holds the time and event columns; every other table must have a
row for each of them (extra rows are ignored).
"""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.cohort import ImageFiles
from bench.data.dataset import DAYS_PER, NO_CENTRE, Dataset, Problem, fail
from bench.data.hecktor import centre_text
from bench.errors import BenchInputError
from bench.fsutil import name_problem

DATASET_KEYS = {"name", "tables", "id", "time", "event", "time_unit", "centre", "categorical", "drop"}
REQUIRED_KEYS = ("tables", "id", "time", "event", "time_unit")
IMAGE_KEYS = ("ct", "pet", "mask")
EVENT_TEXT = {"1": 1, "0": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0}


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise BenchInputError(f"manifest {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BenchInputError(f"manifest {path}: not valid TOML ({exc})") from None
    problems = []
    unknown = sorted(set(doc) - {"dataset", "images"})
    if unknown:
        problems.append(f"unknown section(s) {unknown} (sections: [dataset], [images])")
    d = doc.get("dataset")
    if not isinstance(d, dict):
        raise BenchInputError(f"manifest {path}: no [dataset] section (it names the tables, id, time, event and "
                              f"time_unit; see docs/datasets.md)")
    unknown = sorted(set(d) - DATASET_KEYS)
    if unknown:
        problems.append(f"[dataset] has unknown key(s) {unknown} (keys: {', '.join(sorted(DATASET_KEYS))})")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        problems.append(f"[dataset] lacks {', '.join(missing)}"
                        + (" (the unit the time column is in: days, weeks, months or years)" if "time_unit" in missing else ""))
    for key in ("id", "time", "event", "centre", "name"):
        if key in d and (not isinstance(d[key], str) or not d[key].strip()):
            problems.append(f"[dataset] {key} must be a non-empty string")
    tables = d.get("tables")
    if isinstance(tables, str):
        d["tables"] = tables = [tables]
    if "tables" in d and (not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables)):
        problems.append("[dataset] tables must be a list of CSV paths")
    for key in ("categorical", "drop"):
        if key in d and (not isinstance(d[key], list) or not all(isinstance(c, str) for c in d[key])):
            problems.append(f"[dataset] {key} must be a list of column names")
    if "time_unit" in d and d["time_unit"] not in DAYS_PER:
        problems.append(f"[dataset] time_unit = {d['time_unit']!r}: choose {', '.join(DAYS_PER)}")
    images = doc.get("images")
    if images is not None:
        if not isinstance(images, dict):
            problems.append("[images] must be a table of path templates")
        else:
            unknown = sorted(set(images) - set(IMAGE_KEYS))
            if unknown:
                problems.append(f"[images] has unknown key(s) {unknown} (keys: ct, pet, mask)")
            for key in ("ct", "pet"):
                if key not in images:
                    problems.append(f"[images] lacks {key} (a path template with {{id}})")
            for key, value in images.items():
                if not isinstance(value, str) or "{id}" not in value:
                    problems.append(f"[images] {key} must be a path containing {{id}}, got {value!r}")
    if problems:
        fail([Problem(p, "manifest") for p in problems], f"manifest {path} is not valid")
    return doc


def _read_table(path: Path, id_column: str, problems: list) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(Problem(f"{path}: file missing", "file missing"))
        return None
    try:
        table = pd.read_csv(path, dtype={id_column: str}, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(Problem(f"{path}: cannot be parsed as CSV ({exc})", "CSV unreadable"))
        return None
    table.columns = [str(c).strip() for c in table.columns]
    if id_column not in table.columns:
        problems.append(Problem(f"{path}: no id column {id_column!r} (columns: {list(table.columns)[:20]})",
                                "CSV columns"))
        return None
    ids = table[id_column].astype("string").str.strip()
    empty = (np.flatnonzero(ids.isna().to_numpy() | (ids == "").fillna(True).to_numpy()) + 2).tolist()
    if empty:
        problems.append(Problem(f"{path}: column {id_column!r} is empty on line(s) {empty[:10]}", "PatientID"))
        return None
    unsafe = [(line, pid, why) for line, pid in enumerate(ids, start=2) if (why := name_problem(pid))]
    for line, pid, why in unsafe[:10]:
        problems.append(Problem(f"{path}: line {line}: id {pid!r} cannot name a file: it {why}", "PatientID"))
    dup = sorted(set(ids[ids.duplicated()]))
    if dup:
        problems.append(Problem(f"{path}: duplicate id(s) {dup[:10]} in column {id_column!r}", "PatientID"))
    if unsafe or dup:
        return None
    table[id_column] = ids.astype(str)
    return table.set_index(id_column)


def _typed(values: pd.Series, categorical: bool) -> pd.Series:
    if categorical:
        text = values.map(lambda v: None if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()))
        return text.astype("string").astype("category")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        return numeric.astype(float)
    return values.astype("string").str.strip().astype("category")


def _fingerprint(manifest: Path, tables: list[Path], images: dict[str, ImageFiles] | None) -> str:
    h = hashlib.sha256(manifest.read_bytes())
    for path in tables:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for pid in sorted(images or {}):
        for path in (images[pid].ct, images[pid].pet, images[pid].mask):
            if path is not None:
                h.update(f"{pid}:{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def load_manifest_file(path: str | Path) -> Dataset:
    """The dataset a manifest declares, checked; ``BenchInputError`` listing every problem otherwise."""
    path = Path(path).expanduser().resolve()
    doc = _read_manifest(path)
    d, where = doc["dataset"], path.parent
    id_col, time_col, event_col, centre_col = d["id"], d["time"], d["event"], d.get("centre")
    problems: list = []
    paths = [where / t for t in d["tables"]]
    tables = {p: _read_table(p, id_col, problems) for p in paths}
    if problems:
        fail(problems, f"dataset of manifest {path} is not valid")
    holders = [p for p, t in tables.items() if time_col in t.columns and event_col in t.columns]
    if len(holders) != 1:
        found = [f"{p.name}: {', '.join(c for c in (time_col, event_col) if c in t.columns) or 'neither'}"
                 for p, t in tables.items()]
        fail([Problem(f"{path}: exactly one table must hold both time column {time_col!r} and event column "
                      f"{event_col!r} ({'; '.join(found)})", "CSV columns")], f"dataset of manifest {path} is not valid")
    endpoint_path = holders[0]
    ids = tables[endpoint_path].index.tolist()
    merged = tables[endpoint_path]
    for p, t in tables.items():
        if p == endpoint_path:
            continue
        absent = [i for i in ids if i not in t.index]
        if absent:
            problems.append(Problem(f"{p}: no row for patient(s) {absent[:10]}"
                                    f"{f' and {len(absent) - 10} more' if len(absent) > 10 else ''} of {endpoint_path.name}",
                                    "PatientID"))
            continue
        clash = sorted(set(t.columns) & set(merged.columns))
        if clash:
            problems.append(Problem(f"{p}: column(s) {clash} also in another table; keep each column in one table",
                                    "CSV columns"))
            continue
        merged = merged.join(t, how="left")
    declared = {"centre": [centre_col] if centre_col else [], "categorical": d.get("categorical", []),
                "drop": d.get("drop", [])}
    for key, cols in declared.items():
        absent = [c for c in cols if c not in merged.columns]
        if absent:
            problems.append(Problem(f"{path}: [dataset] {key} names column(s) {absent} that no table has "
                                    f"(columns: {[c for c in merged.columns][:30]})", "CSV columns"))
    if problems:
        fail(problems, f"dataset of manifest {path} is not valid")

    raw_time = merged[time_col]
    time = pd.to_numeric(raw_time, errors="coerce")
    bad = [i for i, t in zip(ids, time) if not np.isfinite(t)]
    if bad:
        problems.append(Problem(f"{endpoint_path}: column {time_col!r} is missing, infinite or not a number for "
                                f"patient(s) {bad[:10]}", "endpoint values"))
    neg = [i for i, t in zip(ids, time) if t < 0]
    if neg:
        problems.append(Problem(f"{endpoint_path}: column {time_col!r} is negative for patient(s) {neg[:10]}",
                                "endpoint values"))
    event = merged[event_col].map(lambda v: EVENT_TEXT.get(str(v).strip().lower()) if not pd.isna(v) else None)
    bad = [i for i, e in zip(ids, event) if pd.isna(e)]
    if bad:
        problems.append(Problem(f"{endpoint_path}: column {event_col!r} must be 0 or 1 (or true/false); patient(s) "
                                f"{bad[:10]} are not", "endpoint values"))
    if centre_col:
        centres = merged[centre_col].map(centre_text)
        empty = [i for i, c in zip(ids, centres) if c is None or pd.isna(c)]
        if empty:
            holder = next(p for p, t in tables.items() if centre_col in t.columns)
            problems.append(Problem(f"{holder}: column {centre_col!r} (the centre) is empty for patient(s) {empty[:10]}"
                                    f"{f' and {len(empty) - 10} more' if len(empty) > 10 else ''}", "centre"))
    images = None
    if "images" in doc:
        images = {}
        for pid in ids:
            files = {k: (where / doc["images"][k].replace("{id}", pid)) if k in doc["images"] else None
                     for k in IMAGE_KEYS}
            for k, f in files.items():
                if f is not None and not f.is_file():
                    problems.append(Problem(f"{f}: {k.upper()} image of patient {pid} is missing "
                                            f"([images] {k} of {path.name})", "image missing"))
            images[pid] = ImageFiles(files["ct"], files["pet"], files["mask"])
    if problems:
        fail(problems, f"dataset of manifest {path} is not valid")

    features = merged.drop(columns=[time_col, event_col, *declared["centre"], *declared["drop"]])
    clinical = pd.DataFrame({c: _typed(features[c], c in declared["categorical"]) for c in features.columns},
                            index=pd.Index(ids, name="PatientID"))
    outcomes = pd.DataFrame({"time": time.astype(float).to_numpy() * DAYS_PER[d["time_unit"]],
                             "event": event.astype(int).to_numpy()}, index=pd.Index(ids, name="PatientID"))
    centre_series = (pd.Series(centres.to_numpy(), index=outcomes.index, name="centre") if centre_col
                     else pd.Series(NO_CENTRE, index=outcomes.index, name="centre"))
    name = d.get("name") or path.stem
    return Dataset(name=f"manifest:{name}", root=where, clinical=clinical, outcomes=outcomes, centres=centre_series,
                   images=images, fingerprint=_fingerprint(path, paths, images), has_centres=bool(centre_col))


def load_manifest(arg: str, *, scale: str, progress: bool = True) -> Dataset:
    """``manifest:FILE.toml`` (the registry's loader)."""
    if not arg:
        raise BenchInputError("--dataset manifest:FILE.toml needs the manifest's path after the colon")
    return load_manifest_file(arg)
