"""Finished rows as files: carry a results store between machines (or sessions) through git.

``bench store export`` writes one JSON file per finished (method, protocol, fold, seed) row, and ``bench store
import`` puts them back, so a sweep cut between folds resumes elsewhere without redoing what it finished.

Format version 2 is the compact run record (bench.compact): the predictions as an xz-compressed npz in
base85 with the survival curves encoded losslessly, and neither bootstrap replicates, per-patient corruption
entries nor metric definitions — import regenerates them from the row and refuses it if they do not give
back the row's own metrics and summaries. Version 1 files (full rows, base64 blobs) are still read.

Nothing read is trusted: every file is read within a size cap, every column checked (``row_problems``), the
decompressed predictions capped, and every file checked before anything is written, so a bad file changes
nothing.
"""
from __future__ import annotations

import base64
import binascii
import json
import lzma
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from bench.compact import (compact_corruption, compact_manifest, decode_predictions, encode_predictions, is_quantised,
                           regenerate)
from bench.errors import BenchInputError
from bench.fsutil import atomic_path, file_slug, write_if_changed
from bench.store import (MAX_BLOB_BYTES, RUN_COLUMNS, WHERE_KEY, BlobError, RunKey, Store, pack_arrays, read_arrays,
                         row_problems, strict_json)

ROW_FORMAT = "survbench-run-row"
ROW_FORMAT_VERSION = 2
_KEY_AND_FACTS = tuple(c for c in RUN_COLUMNS if c not in ("bootstrap", "history"))
COLUMNS = {1: _KEY_AND_FACTS + ("bootstrap",), 2: _KEY_AND_FACTS + ("history",)}  # per format version
STORE_COLUMNS = RUN_COLUMNS
PREDICTIONS_ENCODING = "npz, xz, base85; survival curves as bench.compact.encode_curves"
MAX_ROW_FILE_BYTES = 3 * MAX_BLOB_BYTES  # two capped blobs in base64 and the JSON columns
MAX_SPLIT_FILE_BYTES = 256 << 20

__all__ = ["export_rows", "import_rows", "row_filename", "ROW_FORMAT", "ROW_FORMAT_VERSION"]


def row_filename(row: dict[str, Any]) -> str:
    """``<dataset>/<method>__<protocol>__<config8>-<dataset8>-<protocol8>__fold<k>__seed<s>.json``."""
    hashes = "-".join(file_slug(row[c][:8]) for c in ("config_hash", "dataset_fp", "protocol_hash"))
    return (f"{file_slug(row['dataset'] or row['dataset_fp'])}/{file_slug(row['method'])}__{file_slug(row['protocol'])}__"
            f"{hashes}__fold{int(row['fold'])}__seed{int(row['seed'])}.json")


def _describe(row: dict[str, Any]) -> str:
    return f"{row['method']} / {row['protocol']} / fold {row['fold']} / seed {row['seed']}"


def compact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored finished row as a version-2 row file's ``row`` object."""
    arrays = read_arrays(row["predictions"])
    if not is_quantised(arrays):
        raise BenchInputError(
            f"row {_describe(row)} was scored before predictions were quantised and cannot be written as a compact "
            f"record: run `bench store compact --results DIR` first (it rescores such rows from float32 "
            f"predictions and reports how far each metric moved); nothing more was exported")
    out = {c: row[c] for c in _KEY_AND_FACTS}
    blob = lzma.compress(encode_predictions(arrays, compress=False), preset=9 | lzma.PRESET_EXTREME)
    out["predictions"] = base64.b85encode(blob).decode()
    out["corruption"] = json.dumps(compact_corruption(json.loads(row["corruption"])))
    out["manifest"] = json.dumps(compact_manifest(json.loads(row["manifest"]))) if row["manifest"] else None
    out["history"] = row.get("history")
    return out


def export_rows(store: Store, out: Path) -> tuple[int, int]:
    """Write every finished row of ``store`` as one compact JSON file under ``out`` and the stored splits
    under ``out/splits``. A file whose content is unchanged is not rewritten, so committing the folder after
    each sweep only adds what is new. Returns (files written, files unchanged)."""
    out = Path(out)
    docs = [(row_filename(row), {"format": ROW_FORMAT, "version": ROW_FORMAT_VERSION,
                                  "encoding": {"predictions": PREDICTIONS_ENCODING}, "row": compact_row(row)})
            for row in store.rows("done")]  # every row converted before any file is written
    written = same = 0
    for name, doc in docs:
        if write_if_changed(out / name, json.dumps(doc, indent=1, sort_keys=True) + "\n"):
            written += 1
        else:
            same += 1
    for split in sorted((store.root / "splits").glob("*.json")):
        try:
            text = split.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchInputError(f"cannot read the split file {split} ({exc}); nothing more was exported") from None
        write_if_changed(out / "splits" / split.name, text)
    return written, same


def _read_capped(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes (OSError / ValueError otherwise)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_size > cap:
        raise ValueError(f"{st.st_size >> 20} MB, more than the {cap >> 20} MB such a file may hold")
    with open(path, "rb") as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"more than the {cap >> 20} MB such a file may hold")
    return data


def _unxz(data: bytes) -> bytes:
    """xz-decompressed ``data`` within ``MAX_BLOB_BYTES`` (ValueError on a truncated, damaged or oversized stream)."""
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = dec.decompress(data, max_length=MAX_BLOB_BYTES + 1)
    except lzma.LZMAError as exc:
        raise ValueError(f"not an xz stream ({exc})") from None
    if len(out) > MAX_BLOB_BYTES:
        raise ValueError(f"inflates past the {MAX_BLOB_BYTES >> 20} MB a stored blob may hold")
    if not dec.eof or dec.unused_data:
        raise ValueError("the xz stream is truncated or followed by other bytes")
    return out


def _decode_blob(text: Any, version: int) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"is {type(text).__name__}, not text")
    if len(text) > MAX_BLOB_BYTES * 4 // 3 + 4:
        raise ValueError(f"more than {MAX_BLOB_BYTES >> 20} MB")
    if version == 1:
        return base64.b64decode(text, validate=True)
    return _unxz(base64.b85decode(text))


def _read_row_file(path: Path) -> dict[str, Any]:
    """One exported row as a store row (every column of ``STORE_COLUMNS``), checked (``row_problems(strict=
    True)``) and, for a compact record, regenerated (``bench.compact.regenerate``); ``BenchInputError`` naming
    the file and what is wrong otherwise."""
    try:
        doc = strict_json(_read_capped(path, MAX_ROW_FILE_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BenchInputError(f"{path}: not a readable run-row file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != ROW_FORMAT or not isinstance(doc.get("row"), dict):
        raise BenchInputError(f"{path}: not a survbench run-row file (no format {ROW_FORMAT!r})")
    version = doc.get("version")
    if version not in COLUMNS:
        raise BenchInputError(f"{path}: run-row format version {version!r}, this harness reads "
                              f"{', '.join(map(str, COLUMNS))}")
    row = doc["row"]
    missing = [c for c in COLUMNS[version] if c not in row]
    if missing:
        raise BenchInputError(f"{path}: run row lacks {', '.join(missing)}")
    if row["status"] != "done":
        raise BenchInputError(f"{path}: run row has status {row['status']!r}; only finished rows are carried")
    row = {c: row.get(c) for c in STORE_COLUMNS}
    problems = []
    for c in ("predictions", "bootstrap"):
        if row[c] is None:
            continue
        try:
            row[c] = _decode_blob(row[c], version)
        except (binascii.Error, ValueError, TypeError) as exc:
            problems.append(f"{c} {'are' if c == 'predictions' else 'is'} unreadable ({exc})")
    arrays = None
    if not problems and version == 2 and row["predictions"] is not None:
        try:
            arrays = decode_predictions(read_arrays(row["predictions"]), str(path))
            row["predictions"] = pack_arrays(arrays)
        except BlobError as exc:
            problems.append(f"predictions are unreadable: {exc}")
    if not problems:
        problems = row_problems(row, strict=True)
    if problems:
        raise BenchInputError(f"{path}: {'; '.join(problems)} — nothing was imported")
    if version == 2:
        if not is_quantised(arrays):
            raise BenchInputError(f"{path}: a compact record whose predictions are not float32 — nothing was imported")
        scored, corruption = regenerate(row, arrays, str(path))
        row["bootstrap"] = pack_arrays(scored.replicates) if scored.replicates else None
        row["manifest"] = json.dumps(scored.manifest)
        row["corruption"] = json.dumps(corruption)
    return row


def _read_carried_split(path: Path) -> str:
    """A split file carried with exported rows, checked for shape and consistency with the split section it
    names (its patients are checked against a dataset when a run loads it)."""
    from bench.splits import _parse_split_data, split_problems

    try:
        text = _read_capped(path, MAX_SPLIT_FILE_BYTES).decode("utf-8")
        data = strict_json(text)
        folds, val, patients = _parse_split_data(data)
        if not isinstance(data.get("split"), dict):
            raise ValueError("no split section")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, TypeError) as exc:
        raise BenchInputError(f"{path}: not a usable split file ({exc}) — nothing was imported") from None
    problems = split_problems(folds, val, patients, data["split"])
    if problems:
        raise BenchInputError(f"{path}: an inconsistent split file ({'; '.join(problems[:3])}) — nothing was "
                              f"imported")
    return text


def import_rows(store: Store, src: Path, *, progress: bool = False) -> tuple[int, int]:
    """Insert the finished rows filed under ``src`` (by :func:`export_rows`) into ``store``: a row the store
    already has finished is left as it is; a running or failed row of the same job is replaced. Every file is
    read, checked and regenerated before anything is written, so a bad file changes nothing. Splits under
    ``src/splits`` missing from the store are copied. Returns (rows imported, rows already there)."""
    from tqdm import tqdm

    src = Path(src)
    if not src.is_dir():
        raise BenchInputError(f"{src}: no such folder of run rows")
    try:
        files = sorted(p for p in src.glob("*/*.json") if p.parent.name != "splits")
        split_files = sorted((src / "splits").glob("*.json"))
    except OSError as exc:
        raise BenchInputError(f"{src}: cannot list the run rows ({exc.strerror or exc})") from None
    rows = [_read_row_file(p) for p in tqdm(files, desc="bench store import", unit="row", leave=False,
                                            disable=not progress or None)]
    splits = [(p.name, _read_carried_split(p)) for p in split_files]
    imported = kept = 0
    with store._connect(immediate=True) as con:
        for row in rows:
            key = RunKey(**{f: row[f] for f in RunKey.__dataclass_fields__}).as_tuple()
            old = con.execute(f"SELECT status FROM runs WHERE {WHERE_KEY}", key).fetchone()
            if old and old[0] == "done":
                kept += 1
                continue
            con.execute(f"DELETE FROM runs WHERE {WHERE_KEY}", key)
            con.execute(f"INSERT INTO runs ({', '.join(STORE_COLUMNS)}) VALUES ({', '.join('?' * len(STORE_COLUMNS))})",
                        tuple(row[c] for c in STORE_COLUMNS))
            imported += 1
    for name, text in splits:
        target = store.root / "splits" / name
        if not target.exists():
            try:
                with atomic_path(target) as tmp:
                    tmp.write_text(text)
            except OSError as exc:
                raise BenchInputError(f"the rows were imported, but the split file {target} could not be written "
                                      f"({exc.strerror or exc}); copy {src / 'splits' / name} there by hand") from None
    return imported, kept


def compact_store(store: Store, *, progress: bool = False) -> dict[str, Any]:
    """Rescore every finished row whose predictions were stored before quantisation from its float32
    predictions (bench.compact.quantise_predictions), in place. Returns {"rows": n converted, "kept": n already
    compact, "failed": [(row, why)], "moved": {metric: largest |change|}}."""
    import math

    from tqdm import tqdm

    from bench.compact import quantise_predictions
    from bench.scoring import score

    report: dict[str, Any] = {"rows": 0, "kept": 0, "failed": [], "moved": {}}
    for row in tqdm(store.rows("done"), desc="bench store compact", unit="row", leave=False,
                    disable=not progress or None):
        arrays = read_arrays(row["predictions"])
        if is_quantised(arrays):
            report["kept"] += 1
            continue
        q = quantise_predictions(arrays)
        manifest = json.loads(row["manifest"]) if row["manifest"] else {}
        seed = (manifest.get("bootstrap") or {}).get("seed")
        if not isinstance(seed, int):
            report["failed"].append((_describe(row), "its scoring manifest names no bootstrap seed"))
            continue
        try:
            scored = score(json.loads(row["protocol_content"])["metrics"], dict(q), boot_seed=seed)
        except BenchInputError as exc:
            report["failed"].append((_describe(row), str(exc)))
            continue
        before = json.loads(row["metrics"])
        for k, v in scored.metrics.items():
            old = before.get(k)
            if v is not None and old is not None and math.isfinite(old):
                report["moved"][k] = max(report["moved"].get(k, 0.0), abs(v - old))
        key = RunKey(**{f: row[f] for f in RunKey.__dataclass_fields__})
        store.rescore(key, metrics=scored.metrics, notes=scored.notes, manifest=scored.manifest,
                      bootstrap=scored.replicates, predictions=q)
        report["rows"] += 1
    return report
