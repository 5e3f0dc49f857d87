"""The results store: one SQLite file plus fitted models (bench.model_io's format), under the results directory.

``runs``: one row per (method, config hash, dataset fingerprint, protocol hash, fold, seed) with status,
timings, environment, metrics, the corruption manifest and the per-patient predictions (an npz blob), so
every metric can be recomputed later. A row is written ``running`` when its job starts and completed in one
transaction when it ends: a killed job is redone on the next run, a finished one is skipped, and the UNIQUE
key means two runs never duplicate a row; a finished row is final (``finish`` never overwrites it).

``claims``: the jobs (training keys) a running process works on, with its heartbeat, so two ``bench run``
processes on one store share the jobs instead of repeating them (``Claims``).

Nothing read back is trusted: rows are checked when read (``row_problems``: types, JSON, blobs), stored
arrays are read within ``MAX_BLOB_BYTES`` without inflating a zip bomb, imported row files are checked
column by column before anything is written, and every SQLite error is a ``BenchInputError`` naming the store.

``models``: fitted models keyed apart from evaluations by (method, config hash, dataset fingerprint, split,
fold, seed, train-side corruption), so protocols that differ only in test-side corruption reuse one model.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from urllib.parse import quote
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from bench.errors import BenchInputError
from bench.fsutil import atomic_path, write_if_changed
from bench.model_io import model_to_bytes, read_header
from bench.model_io import load_model as load_model_bytes

SCHEMA_VERSION = 3  # bump on a table change and migrate older stores in Store.__init__ (history: CHANGELOG.md)
DB_NAME = "runs.sqlite"
SQLITE_HEADER = b"SQLite format 3\x00"
log = logging.getLogger("bench.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL, config_hash TEXT NOT NULL, dataset_fp TEXT NOT NULL,
    protocol_hash TEXT NOT NULL, fold INTEGER NOT NULL, seed INTEGER NOT NULL,
    fold_name TEXT, protocol TEXT, protocol_version TEXT, dataset TEXT, scale TEXT, train_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    error TEXT, started_at TEXT, finished_at TEXT,
    fit_seconds REAL, predict_seconds REAL, model_reused INTEGER,
    config TEXT, protocol_content TEXT, env TEXT, metrics TEXT, notes TEXT, corruption TEXT, predictions BLOB,
    manifest TEXT, bootstrap BLOB, history TEXT,
    UNIQUE (method, config_hash, dataset_fp, protocol_hash, fold, seed)
);
CREATE TABLE IF NOT EXISTS models (
    train_key TEXT PRIMARY KEY, method TEXT NOT NULL, config_hash TEXT NOT NULL, dataset_fp TEXT NOT NULL,
    split_hash TEXT NOT NULL, fold INTEGER NOT NULL, seed INTEGER NOT NULL, train_corruption TEXT,
    path TEXT NOT NULL, fit_seconds REAL, created_at TEXT NOT NULL, sha256 TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    job TEXT PRIMARY KEY, claimant TEXT NOT NULL, claimed_at TEXT NOT NULL, heartbeat REAL NOT NULL
);
"""


@dataclass(frozen=True)
class RunKey:
    method: str
    config_hash: str
    dataset_fp: str
    protocol_hash: str
    fold: int
    seed: int

    def as_tuple(self) -> tuple:
        return (self.method, self.config_hash, self.dataset_fp, self.protocol_hash, self.fold, self.seed)


# every column of a run row (id aside), as a finished row holds them
RUN_COLUMNS = ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed", "fold_name", "protocol",
               "protocol_version", "dataset", "scale", "train_key", "status", "error", "started_at", "finished_at",
               "fit_seconds", "predict_seconds", "model_reused", "config", "protocol_content", "env", "metrics",
               "notes", "corruption", "predictions", "manifest", "bootstrap", "history")
WHERE_KEY = "method=? AND config_hash=? AND dataset_fp=? AND protocol_hash=? AND fold=? AND seed=?"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pack_arrays(arrays: dict[str, np.ndarray | None]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    return buf.getvalue()


# --- stored arrays, read without trusting them -------------------------------------------------------------
MAX_BLOB_BYTES = 64 << 20  # what one stored blob (predictions, bootstrap) may hold, compressed or inflated
MAX_ARRAYS = 64


class BlobError(ValueError):
    """A stored npz blob that is not what the store writes (why, in words)."""


def _npz_directory(blob) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The archive and its members, from the zip directory alone: nothing is inflated. Refuses anything but a
    handful of .npy members whose declared sizes add up to at most ``MAX_BLOB_BYTES``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise BlobError(f"is {type(blob).__name__}, not a blob")
    if len(blob) > MAX_BLOB_BYTES:
        raise BlobError(f"is {len(blob) >> 20} MB, more than the {MAX_BLOB_BYTES >> 20} MB a stored blob may hold")
    try:
        zf = zipfile.ZipFile(io.BytesIO(bytes(blob)))
        infos = zf.infolist()
    except Exception as exc:  # zipfile raises many kinds on a damaged archive
        raise BlobError(f"is not an npz archive ({type(exc).__name__}: {exc})") from None
    if len(infos) > MAX_ARRAYS:
        raise BlobError(f"holds {len(infos)} members, more than {MAX_ARRAYS}")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise BlobError("names one member twice")
    for info in infos:
        if not info.filename.endswith(".npy") or "/" in info.filename or "\\" in info.filename:
            raise BlobError(f"holds {info.filename!r}, not an array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BlobError(f"member {info.filename!r} uses compression method {info.compress_type}")
    total = sum(i.file_size for i in infos)
    if total > MAX_BLOB_BYTES:
        raise BlobError(f"would inflate to {total / 2**20:.0f} MB, more than the {MAX_BLOB_BYTES >> 20} MB a "
                        f"stored blob may hold (a zip bomb?); nothing was inflated")
    return zf, infos


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One member, inflated no further than its declared size (zipfile stops there and checks the CRC), its
    .npy header checked against the bytes it really holds; no Python objects."""
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ValueError(f"holds {len(data)} bytes, its zip entry declares {info.file_size}")
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10000)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
    else:
        raise ValueError(f".npy format version {version} is not read here")
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - f.tell():
        raise ValueError(f"its header claims {count * dtype.itemsize} bytes of {dtype} {shape}, it holds "
                         f"{len(data) - f.tell()}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return (arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)).copy()


def read_arrays(blob) -> dict[str, np.ndarray]:
    """The arrays of a stored npz blob, within ``MAX_BLOB_BYTES``; ``BlobError`` saying why not."""
    zf, infos = _npz_directory(blob)
    out = {}
    for info in infos:
        try:
            out[info.filename[:-4]] = _read_npy(zf, info)
        except BlobError:
            raise
        except Exception as exc:  # CRC, truncation, bad header: the blob is damaged
            raise BlobError(f"member {info.filename!r} is unreadable ({type(exc).__name__}: {exc})") from None
    return out


def unpack_arrays(blob: bytes, what: str = "stored arrays") -> dict[str, np.ndarray]:
    """``read_arrays`` with its refusal as ``BenchInputError`` naming ``what`` (e.g. the row and column)."""
    try:
        return read_arrays(blob)
    except BlobError as exc:
        raise BenchInputError(f"{what}: {exc}") from None


# --- what a stored row may hold -----------------------------------------------------------------------------
STATUSES = ("running", "done", "failed")
_KEY_TEXT = ("method", "config_hash", "dataset_fp", "protocol_hash")
_TEXT = ("fold_name", "protocol", "protocol_version", "dataset", "scale", "train_key", "error", "started_at",
         "finished_at", "notes")
_JSON = ("config", "protocol_content", "env", "metrics", "corruption", "manifest", "history")
_HEX = re.compile(r"[0-9a-f]{8,64}")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def strict_json(text: str) -> Any:
    """JSON as SQLite's json functions read it: no NaN or Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_shape(column: str, value) -> str | None:
    """Why a parsed JSON column does not have the shape the harness writes (None when it does)."""
    if column in ("manifest", "history") and value is None:
        return None
    if not isinstance(value, dict):
        return f"is JSON {type(value).__name__}, not an object"
    if column == "metrics":
        bad = [k for k, v in value.items() if v is not None and not _is_number(v)]
        if bad:
            return f"{bad[0]!r} is {value[bad[0]]!r}, not a number or null"
    elif column == "env":
        for part in ("method", "provenance", "packages", "threads", "centres"):
            if part in value and value[part] is not None and not isinstance(value[part], dict):
                return f"{part} is not an object"
        if any(not isinstance(v, str) for v in (value.get("provenance") or {}).values()):
            return "provenance holds values that are not text"
    elif column == "corruption":
        if not isinstance(value.get("kind"), str):
            return "has no kind"
        if value["kind"] != "none":
            apply_to = value.get("apply_to")
            if not (isinstance(apply_to, list) and all(isinstance(a, str) for a in apply_to)):
                return "apply_to is not a list of names"
            for part, check in (("fraction", _is_number), ("n_corrupted", _is_int), ("seed", _is_int)):
                if not check(value.get(part)):
                    return f"{part} is {value.get(part)!r}"
        if "patients" in value and not isinstance(value["patients"], dict):
            return "patients is not an object"
    elif column == "history":
        bad = [k for k, v in value.items() if not isinstance(v, list) or any(x is not None and not _is_number(x)
                                                                               for x in v)]
        if bad:
            return f"{bad[0]!r} is not a series of numbers"
    elif column == "manifest":
        boot = value.get("bootstrap")
        if boot is not None and (not isinstance(boot, dict) or ("n" in boot and not _is_int(boot["n"]))):
            return "bootstrap is not an object with an integer n"
    elif column == "protocol_content":
        for part in ("split", "corruption", "metrics"):
            if part in value and not isinstance(value[part], dict):
                return f"{part} is not an object"
    return None


def _iso_time(v) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except (TypeError, ValueError):
        return False


def _prediction_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """Why decoded predictions are not what the runner stores (None when they are)."""
    missing = [k for k in ("ids", "risk", "time", "event") if k not in arrays]
    if missing:
        return f"lack {', '.join(missing)}"
    n = len(arrays["ids"]) if arrays["ids"].ndim == 1 else -1
    if n < 1:
        return "hold no patient ids"
    for k in ("risk", "time", "event"):
        a = arrays[k]
        if a.shape != (n,) or a.dtype.kind not in "biuf":
            return f"{k} is {a.dtype} {a.shape}, not {n} numbers"
    if "survival" in arrays:
        s, t = arrays["survival"], arrays.get("times")
        if t is None or t.ndim != 1 or s.shape != (n, len(t)) or s.dtype.kind != "f":
            return "survival does not fit ids and times"
    return None


def row_problems(row: dict[str, Any], *, strict: bool = False) -> list[str]:
    """What in a run row is not what the harness writes, one entry per column, each starting with the
    column's name; empty when the row is sound. ``strict`` (rows carried in from files): every column a
    finished row needs, hashes in hex, times in ISO format, and the blobs decoded in full (within
    ``MAX_BLOB_BYTES``); otherwise (rows read from the store) the types, the JSON and the blobs' zip directory."""
    out = []
    for c in _KEY_TEXT:
        v = row.get(c)
        if not isinstance(v, str) or not v:
            out.append(f"{c} is {v!r}, not text")
        elif strict and c != "method" and not _HEX.fullmatch(v):
            out.append(f"{c} {v[:80]!r} is not a hexadecimal hash")
    for c in ("fold", "seed"):
        v = row.get(c)
        if not _is_int(v) or v < 0 or (c == "seed" and v >= 2**32):
            out.append(f"{c} is {v!r}, not a non-negative integer")
    if row.get("status") not in STATUSES:
        out.append(f"status is {row.get('status')!r}, not one of {', '.join(STATUSES)}")
    for c in _TEXT:
        v = row.get(c)
        if v is not None and not isinstance(v, str) and not (c == "protocol_version" and _is_int(v)):
            out.append(f"{c} is {v!r}, not text")
    for c in ("fit_seconds", "predict_seconds"):
        v = row.get(c)
        if v is not None and (not _is_number(v) or v < 0):
            out.append(f"{c} is {v!r}, not a number of seconds")
    if row.get("model_reused") not in (None, 0, 1):  # True and False compare equal to 1 and 0
        out.append(f"model_reused is {row.get('model_reused')!r}, not 0 or 1")
    for c in _JSON:
        v = row.get(c)
        if v is None:
            continue
        if not isinstance(v, str):
            out.append(f"{c} is {type(v).__name__}, not JSON text")
            continue
        try:
            why = _json_shape(c, strict_json(v))
        except (ValueError, RecursionError) as exc:
            why = f"is not valid JSON ({exc})"
        if why:
            out.append(f"{c} {why}")
    for c in ("predictions", "bootstrap"):
        v = row.get(c)
        if v is None:
            continue
        try:
            if strict:
                arrays = read_arrays(v)
                why = _prediction_problem(arrays) if c == "predictions" else next(
                    (f"{k} is not a 1-D float array" for k, a in arrays.items() if a.ndim != 1 or a.dtype.kind != "f"),
                    None)
                if why:
                    raise BlobError(why)
            else:
                _npz_directory(v)
        except BlobError as exc:
            out.append(f"{c} are unreadable: {exc}" if c == "predictions" else f"{c} is unreadable: {exc}")
    if strict:
        for c in ("protocol", "dataset", "scale", "fold_name", "train_key", "config", "protocol_content", "env",
                  "metrics", "corruption", "predictions", "finished_at"):
            if row.get(c) is None:
                out.append(f"{c} is missing (a finished row has it)")
        for c in ("protocol", "dataset", "scale", "fold_name"):
            v = row.get(c)
            if isinstance(v, str) and (not v or any(ord(ch) < 32 for ch in v)):
                out.append(f"{c} {v!r} is empty or holds control characters")
        if isinstance(row.get("train_key"), str) and not _HEX.fullmatch(row["train_key"]):
            out.append(f"train_key {row['train_key'][:80]!r} is not a hexadecimal hash")
        for c in ("started_at", "finished_at"):
            if isinstance(row.get(c), str) and not _iso_time(row[c]):
                out.append(f"{c} {row[c][:80]!r} is not an ISO time")
    return out


def describe_row(row: dict[str, Any]) -> str:
    """``method / protocol / fold / seed`` of a row, for messages."""
    fold = row.get("fold_name") or f"fold {row.get('fold')}"
    protocol = row.get("protocol") or str(row.get("protocol_hash"))[:8]
    return f"{row.get('method')} / {protocol} / {fold} / seed {row.get('seed')}"


# --- jobs claimed by the processes that work on them ---------------------------------------------------------
CLAIM_TTL_S = 60.0  # a claim with no heartbeat for this long is free again (BENCH_CLAIM_TTL overrides)
HEARTBEAT_S = 10.0


def claim_ttl() -> float:
    """Seconds a claim lives without a heartbeat: ``$BENCH_CLAIM_TTL`` or ``CLAIM_TTL_S``."""
    text = os.environ.get("BENCH_CLAIM_TTL")
    if text is None:
        return CLAIM_TTL_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise BenchInputError(f"BENCH_CLAIM_TTL={text!r}: give a positive number of seconds")
    return value


def claimant_id() -> str:
    """``host:pid:random``: who holds a claim, unique per process and call."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _claim_alive(claimant: str, heartbeat: float, at: float, ttl: float) -> bool:
    """A claim counts while its heartbeat is younger than ``ttl``, unless its process is on this host and gone."""
    if not isinstance(heartbeat, (int, float)) or at - heartbeat > ttl:
        return False
    host, _, rest = str(claimant).rpartition(":")
    host, _, pid = host.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except OSError:  # exists, under another user
            return True
    return True


class Store:
    """The results store of one folder. Writers (``bench run``, ``bench store import`` and ``drop``) open it
    read-write and create it when missing (``create``); readers (``bench results``, ``report``, ``store
    export``, leaderboard export) open it ``readonly``: SQLite's read-only mode, or an immutable (or, with a
    write-ahead log to replay, copied) database when the folder itself cannot be written, so a read-only
    folder can be read. A file that is empty, not SQLite or another program's database is refused and left
    untouched; every SQLite error becomes a ``BenchInputError`` naming the store and what to do."""

    def __init__(self, results_dir: str | Path, *, create: bool = True, readonly: bool = False):
        self.root = Path(results_dir)
        self.db_path = self.root / DB_NAME
        self.readonly = readonly
        self._copy: tempfile.TemporaryDirectory | None = None  # read-only folder with a log to replay
        if self.root.exists() and not self.root.is_dir():
            raise BenchInputError(f"--results {self.root} exists and is not a directory")
        exists = self._check_file()
        if not exists and (readonly or not create):
            raise BenchInputError(f"no results store at {self.db_path} (run `bench run --results {self.root}` first)")
        if readonly:
            self._uri = self._readonly_uri()
            with self._connect() as con:
                self._check_schema(con)
                self._models_hashed = "sha256" in _columns(con, "models")
            return
        if not exists:
            self._create()
        with self._connect(wal=False) as con:  # nothing written to a file that is not a survbench store
            self._check_schema(con)
        with self._connect() as con:
            con.executescript(SCHEMA)  # tables added since the store was made (claims)
            row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif str(row[0]) != str(SCHEMA_VERSION):  # older schema: columns added since (v2 manifest and
                # bootstrap, old rows rescored by the next run; v3 the fit's training history)
                cols = _columns(con, "runs")
                for col, kind in (("manifest", "TEXT"), ("bootstrap", "BLOB"), ("history", "TEXT")):
                    if col not in cols:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
                con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            if "sha256" not in _columns(con, "models"):  # made before models were hashed: its models are refused
                con.execute("ALTER TABLE models ADD COLUMN sha256 TEXT")
        self._models_hashed = True

    # --- opening --------------------------------------------------------------------------------------
    def _check_file(self) -> bool:
        """Whether the store file exists; ``BenchInputError`` (the file untouched) when it is not a regular
        file, is empty, or does not start with SQLite's header."""
        keep = "it was left untouched"
        try:
            st = os.stat(self.db_path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BenchInputError(f"cannot read {self.db_path} ({exc.strerror or exc}): check the permissions of "
                                  f"{self.root}") from None
        if not stat.S_ISREG(st.st_mode):
            raise BenchInputError(f"{self.db_path} is not a regular file, so not a results store; {keep}")
        if st.st_size == 0:
            raise BenchInputError(
                f"{self.db_path} is empty (0 bytes): not a results store (a copy cut short, a full disk?); {keep} — "
                f"restore it from a copy, or move it away to start a new store in {self.root}")
        try:
            with open(self.db_path, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise BenchInputError(f"cannot read {self.db_path} ({exc.strerror or exc}): check its "
                                  f"permissions") from None
        if len(head) < 100 or not head.startswith(SQLITE_HEADER):
            raise BenchInputError(f"{self.db_path} is not a usable results database (not an SQLite file); {keep} — "
                                  f"use another --results directory")
        return True

    def _create(self) -> None:
        """A new store: written under a temporary name and linked into place, so no reader or second writer
        ever sees a half-made file (the one that links first wins; the other uses it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".sqlite")
            os.close(fd)
        except OSError as exc:
            raise BenchInputError(f"--results {self.root}: cannot create the store there ({exc.strerror or exc}); "
                                  f"choose a writable folder") from None
        try:
            con = sqlite3.connect(tmp)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.commit()
            finally:
                con.close()
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            try:
                os.link(tmp, self.db_path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                if not self.db_path.exists():
                    os.replace(tmp, self.db_path)
        except (OSError, sqlite3.Error) as exc:
            raise BenchInputError(f"--results {self.root}: cannot create the store {self.db_path} ({exc})") from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(tmp + suffix).unlink(missing_ok=True)

    def _readonly_uri(self) -> str:
        path = self.db_path.resolve()
        if os.access(path.parent, os.W_OK):
            return f"file:{quote(str(path))}?mode=ro"
        wal = path.with_name(path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            # committed rows may still sit in the write-ahead log, which an immutable open would not read and a
            # read-only open cannot replay without writing beside it: read a private copy instead
            self._copy = tempfile.TemporaryDirectory(prefix="survbench-store-")
            copy = Path(self._copy.name) / DB_NAME
            try:
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, copy.with_name(DB_NAME + "-wal"))
            except OSError as exc:
                raise BenchInputError(f"cannot read {self.db_path} and its write-ahead log in the read-only folder "
                                      f"{self.root} ({exc.strerror or exc})") from None
            return f"file:{quote(str(copy))}?mode=ro"
        return f"file:{quote(str(path))}?immutable=1"

    def _check_schema(self, con: sqlite3.Connection) -> None:
        """Refuse an SQLite database that is not a survbench store, or of another schema version. A writer
        may initialise a database with no tables at all (nothing to lose)."""
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "runs"} <= tables:
            if tables or self.readonly:
                raise BenchInputError(
                    f"{self.db_path} is an SQLite database but not a survbench results store (tables: "
                    f"{', '.join(sorted(tables)) or 'none'}); it was left untouched — use another --results "
                    f"directory")
            return
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = None if row is None else str(row[0])
        if version is None and self.readonly:
            raise BenchInputError(f"{self.db_path} names no schema version: not a survbench results store, or "
                                  f"damaged; it was left untouched")
        if version not in (None, *map(str, range(1, SCHEMA_VERSION + 1))):
            raise BenchInputError(
                f"results store {self.db_path} has schema version {version!r}, this harness writes "
                f"{SCHEMA_VERSION}; use another --results directory"
            )

    def _writable(self) -> bool:
        return os.access(self.root, os.W_OK) and (not self.db_path.exists() or os.access(self.db_path, os.W_OK))

    def error(self, exc: sqlite3.Error) -> BenchInputError:
        """An SQLite error as an input error naming the store and what to do."""
        text = str(exc)
        low = text.lower()
        where = f"results store {self.db_path}"
        if "locked" in low or "busy" in low:
            return BenchInputError(f"{where} stayed locked by another process for over 60 s ({text}); let it "
                                   f"finish, or use another --results directory")
        if not self.readonly and any(w in low for w in ("readonly", "read-only", "unable to open")) \
                and not self._writable():
            return BenchInputError(
                f"{where} is read-only here ({text}): this command stores results, so make {self.root} and its "
                f"files writable, or copy the folder somewhere writable; `bench results`, `report` and `store "
                f"export` read it as it is")
        if "unable to open" in low:
            return BenchInputError(f"cannot open {where} ({text}): check that {self.root} and its files exist "
                                   f"and may be read")
        if "full" in low:
            return BenchInputError(f"{where}: the disk is full ({text}); free some space and run again "
                                   f"(finished rows are kept)")
        if "disk i/o" in low:
            return BenchInputError(f"{where}: the disk reported an I/O error ({text}); check the disk, then run "
                                   f"again or restore the store from a copy")
        return BenchInputError(
            f"{self.db_path} is not a usable results database ({text}): it is damaged or was edited; it was left "
            f"untouched — restore it from a copy (or import its exported rows into a new store) and use another "
            f"--results directory")

    @contextmanager
    def _connect(self, *, immediate: bool = False, wal: bool = True) -> Iterator[sqlite3.Connection]:
        """One connection and one transaction: committed on success, rolled back on error. ``immediate`` takes
        the write lock at once, so a read-then-write (start, finish, claim, import) is atomic between
        processes. SQLite errors become ``BenchInputError`` (``error``)."""
        try:
            if self.readonly:
                con = sqlite3.connect(self._uri, uri=True, timeout=60)
            else:
                con = sqlite3.connect(self.db_path, timeout=60)
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        try:
            if wal and not self.readonly:
                con.execute("PRAGMA journal_mode=WAL")
            if immediate:
                con.isolation_level = None
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            else:
                with con:
                    yield con
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        finally:
            con.close()

    def _damaged(self, row: dict[str, Any], problems: list[str]) -> BenchInputError:
        method, cfg = row.get("method"), str(row.get("config_hash") or "")[:8]
        return BenchInputError(
            f"{self.db_path}: the stored row {describe_row(row)} is damaged ({'; '.join(problems[:3])}); remove that "
            f"experiment with `bench store drop {method} --config {cfg} --results {self.root}` and run it again, or "
            f"restore the store from a copy")

    def _checked(self, row: dict[str, Any]) -> dict[str, Any]:
        for c in RUN_COLUMNS:
            row.setdefault(c, None)  # an older schema's store read as it is
        problems = row_problems(row)
        if problems:
            raise self._damaged(row, problems)
        return row

    # --- evaluation rows ------------------------------------------------------------------------------
    def state(self, key: RunKey) -> tuple[str | None, str | None]:
        """(status, metrics version the row was scored with); (None, None) for no row, and a None version for
        a row scored before metric manifests existed. A row with a Dice score but no Dice bootstrap (scored
        before DSC intervals existed) reports version None, so the runner rescores it."""
        with self._connect() as con:
            row = con.execute(f"SELECT status, manifest, metrics FROM runs WHERE {WHERE_KEY}",
                              key.as_tuple()).fetchone()
        if not row:
            return None, None
        try:
            manifest = strict_json(row[1]) if row[1] else None
            metrics = strict_json(row[2]) if row[2] else {}
            if not isinstance(manifest, (dict, type(None))) or not isinstance(metrics, dict):
                raise ValueError("manifest or metrics is not a JSON object")
        except (ValueError, TypeError, RecursionError) as exc:
            full = dict(zip(("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed"), key.as_tuple()))
            raise self._damaged(full, [f"manifest or metrics: {exc}"]) from None
        manifest = manifest or {}
        boot = manifest.get("bootstrap") if isinstance(manifest.get("bootstrap"), dict) else {}
        stale_dice = (("dice_gtvp" in metrics or "dice_gtvn" in metrics) and _is_number(boot.get("n"))
                      and boot["n"] > 0 and boot.get("dice") is None)
        return row[0], None if stale_dice else manifest.get("metrics_version")

    def start(self, key: RunKey, info: dict[str, Any]) -> None:
        """Mark a job running (replacing a stale running/failed row of a killed or failed attempt); a finished
        row is left as it is."""
        with self._connect(immediate=True) as con:
            row = con.execute(f"SELECT status FROM runs WHERE {WHERE_KEY}", key.as_tuple()).fetchone()
            if row and row[0] == "done":
                return
            con.execute(f"DELETE FROM runs WHERE {WHERE_KEY}", key.as_tuple())
            con.execute(
                """INSERT INTO runs (method, config_hash, dataset_fp, protocol_hash, fold, seed, fold_name,
                   protocol, protocol_version, dataset, scale, train_key, status, started_at, config,
                   protocol_content, env) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'running',?,?,?,?)""",
                (*key.as_tuple(), info["fold_name"], info["protocol"], info["protocol_version"],
                 info["dataset"], info["scale"], info["train_key"], now(), json.dumps(info["config"]),
                 json.dumps(info["protocol_content"]), json.dumps(info["env"])),
            )

    def finish(self, key: RunKey, *, metrics: dict, notes: list[str], corruption: dict, predictions: dict[str, Any],
               fit_seconds: float, predict_seconds: float, model_reused: bool, manifest: dict | None = None,
               bootstrap: dict[str, np.ndarray] | None = None, provenance: dict[str, str] | None = None,
               threads: dict | None = None, history: str | None = None, worker: dict | None = None) -> bool:
        """Complete a started row in one transaction. A finished row is final: finishing it again (a second
        process that did the same job) changes nothing and returns False; True when this call finished it."""
        with self._connect(immediate=True) as con:
            # kept with the environment: what the fitted model read beyond its config; the CPU threads once the
            # method has loaded its libraries (torch is often imported by fit itself); where a cluster ran it
            for path, value in (("$.provenance", provenance), ("$.threads", threads), ("$.worker", worker)):
                if value:
                    con.execute(f"UPDATE runs SET env=json_set(coalesce(env, '{{}}'), '{path}', json(?)) "
                                f"WHERE {WHERE_KEY} AND status != 'done'", (json.dumps(value), *key.as_tuple()))
            cur = con.execute(
                f"""UPDATE runs SET status='done', error=NULL, finished_at=?, fit_seconds=?, predict_seconds=?,
                    model_reused=?, metrics=?, notes=?, corruption=?, predictions=?, manifest=?, bootstrap=?,
                    history=? WHERE {WHERE_KEY} AND status != 'done'""",
                (now(), fit_seconds, predict_seconds, int(model_reused), json.dumps(metrics), "; ".join(notes) or None,
                 json.dumps(corruption), pack_arrays(predictions), json.dumps(manifest),
                 pack_arrays(bootstrap) if bootstrap else None, history, *key.as_tuple()),
            )
            return cur.rowcount > 0

    def rescore(self, key: RunKey, *, metrics: dict, notes: list[str], manifest: dict,
                bootstrap: dict[str, np.ndarray] | None, predictions: dict[str, Any] | None = None) -> None:
        """Replace the scores of a finished row (newer metric definitions), and with ``predictions`` the
        predictions they were scored on (quantised ones: ``bench store compact``), in one transaction."""
        with self._connect() as con:
            con.execute(
                f"UPDATE runs SET metrics=?, notes=?, manifest=?, bootstrap=?, predictions=coalesce(?, predictions) "
                f"WHERE {WHERE_KEY} AND status='done'",
                (json.dumps(metrics), "; ".join(notes) or None, json.dumps(manifest),
                 pack_arrays(bootstrap) if bootstrap else None,
                 pack_arrays(predictions) if predictions is not None else None, *key.as_tuple()),
            )

    def fail(self, key: RunKey, error: str) -> bool:
        """Mark an unfinished job failed; a finished one is left alone. True if a row was marked."""
        with self._connect() as con:
            cur = con.execute(
                f"UPDATE runs SET status='failed', error=?, finished_at=? WHERE {WHERE_KEY} AND status != 'done'",
                (error, now(), *key.as_tuple()),
            )
            return cur.rowcount > 0

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every row (of ``status``), each checked (``row_problems``): a damaged one is an input error naming
        it and how to remove it."""
        query = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY method, protocol, seed, fold"
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            rows = [dict(r) for r in con.execute(query, (status,) if status else ())]
        return [self._checked(r) for r in rows]

    def method_rows(self, method: str) -> list[dict[str, Any]]:
        """The key columns, protocol name, status and config (JSON text) of every row of ``method``, without
        their blobs: what a name already holds, for a command that is about to store rows under it."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(
                "SELECT method, config_hash, dataset_fp, protocol_hash, fold, seed, protocol, status, config "
                "FROM runs WHERE method=? ORDER BY protocol, seed, fold", (method,))]

    def row(self, key: RunKey) -> dict[str, Any] | None:
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            r = con.execute(f"SELECT * FROM runs WHERE {WHERE_KEY}", key.as_tuple()).fetchone()
        return self._checked(dict(r)) if r else None

    # --- claims: two processes on one store share its jobs ----------------------------------------------
    def claim(self, keys: list[str], claimant: str, *, ttl: float | None = None) -> bool:
        """Claim every job in ``keys`` for ``claimant`` (``claimant_id()``), or none: False when another claimant
        holds one of them and is alive (heartbeat younger than ``ttl`` seconds, default ``claim_ttl()``, and — on
        this host — its process still running). Expired claims are taken over; one's own are renewed."""
        keys = list(dict.fromkeys(keys))
        ttl = claim_ttl() if ttl is None else float(ttl)
        if not keys:
            return True
        at = time.time()
        with self._connect(immediate=True) as con:
            marks = ", ".join("?" * len(keys))
            held = con.execute(f"SELECT job, claimant, heartbeat FROM claims WHERE job IN ({marks})", keys).fetchall()
            for job, other, beat in held:
                if other != claimant and _claim_alive(other, beat, at, ttl):
                    return False
            for job, other, beat in held:
                if other != claimant:
                    log.info("job %s: taking over the claim of %s (no heartbeat for %.0f s, or its process is gone)",
                             job, other, at - (beat or 0))
            con.executemany("INSERT OR REPLACE INTO claims (job, claimant, claimed_at, heartbeat) VALUES (?,?,?,?)",
                            [(k, claimant, now(), at) for k in keys])
        return True

    def release(self, keys: list[str] | None, claimant: str) -> int:
        """Drop ``claimant``'s claims on ``keys`` (None: all of them); another claimant's are left. Returns how
        many were dropped."""
        with self._connect(immediate=True) as con:
            if keys is None:
                return con.execute("DELETE FROM claims WHERE claimant=?", (claimant,)).rowcount
            keys = list(dict.fromkeys(keys))
            if not keys:
                return 0
            return con.execute(f"DELETE FROM claims WHERE claimant=? AND job IN ({', '.join('?' * len(keys))})",
                               (claimant, *keys)).rowcount

    def heartbeat(self, claimant: str) -> int:
        """Renew every claim of ``claimant``; returns how many it still holds."""
        with self._connect(immediate=True) as con:
            return con.execute("UPDATE claims SET heartbeat=? WHERE claimant=?", (time.time(), claimant)).rowcount

    def claims(self) -> list[dict[str, Any]]:
        """The claims in the store: job, claimant, claimed_at, heartbeat (unix seconds)."""
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM claims ORDER BY job")]

    # --- fitted models --------------------------------------------------------------------------------
    def scored_protocols(self, train_key: str) -> list[str]:
        """The protocols of the finished rows that a fitted model (``train_key``) scored, here or in the store
        they were imported from."""
        with self._connect() as con:
            return sorted({r[0] for r in con.execute(
                "SELECT protocol FROM runs WHERE train_key=? AND status='done'", (train_key,))})

    def _model_entry(self, train_key: str) -> ModelEntry | None:
        """The model listed for ``train_key``, or None when none is listed. The listed path must lie in this
        store's models/ folder: a row pointing elsewhere is refused."""
        sha = "sha256" if self._models_hashed else "NULL"  # a read-only store made before models were hashed
        with self._connect() as con:
            row = con.execute(f"SELECT path, fit_seconds, {sha}, method, config_hash FROM models WHERE train_key=?",
                              (train_key,)).fetchone()
        if row is None:
            return None
        models = (self.root / "models").resolve()
        path = (self.root / str(row[0])).resolve()
        if path.parent != models:
            raise BenchInputError(f"{self.db_path}: the model of training key {train_key} is listed at {row[0]!r}, "
                                  f"outside {models}; the store is damaged or was edited — use another --results")
        return ModelEntry(path, float(row[1] or 0.0), row[2], row[3], row[4])

    def has_model(self, train_key: str) -> bool:
        entry = self._model_entry(train_key)
        return entry is not None and entry.path.is_file()

    def model_path(self, train_key: str) -> Path:
        return self.root / "models" / f"{train_key}.model"

    def _model_bytes(self, train_key: str, entry: ModelEntry) -> bytes:
        """The model file's bytes after checking them against the store: its sha256 and the training key in
        its header. A mismatch, or a model stored as a plain pickle by an older survbench, is refused."""
        path = entry.path
        data = path.read_bytes()
        refit = (f"refit it: `bench store drop {entry.method} --config {entry.config_hash[:8]} --results {self.root} "
                 f"--yes`, then `bench run` with every protocol")
        if entry.sha256 is None or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BenchInputError(f"model {path} does not match the sha256 the store recorded when it was fitted "
                                  f"(changed, damaged, or stored by an older survbench); {refit}")
        header, _ = read_header(data, str(path))
        if header.get("train_key") != train_key:
            raise BenchInputError(f"model {path} was fitted for training key {header.get('train_key')!r}, not "
                                  f"{train_key} (a model file swapped in?); {refit}")
        return data

    def check_model(self, train_key: str) -> None:
        """Refuse (BenchInputError) a listed model whose file does not match the store; no model is read."""
        entry = self._model_entry(train_key)
        if entry is not None and entry.path.is_file():
            self._model_bytes(train_key, entry)

    def load_model(self, train_key: str, *, trusted_packages: tuple[str, ...] = (),
                   trusted_globals: frozenset[str] = frozenset()) -> tuple[Any, float] | None:
        """The stored fitted model and the seconds its fit took, or None when none is listed or its file is
        gone. A file that does not match the store, or holds anything outside the allow-list of
        ``bench.model_io``, is refused."""
        entry = self._model_entry(train_key)
        if entry is None or not entry.path.is_file():
            return None
        data = self._model_bytes(train_key, entry)
        _, model = load_model_bytes(data, str(entry.path), extra_packages=trusted_packages,
                                    extra_globals=trusted_globals)
        return model, entry.fit_seconds

    def save_model(self, train_key: str, model: Any, info: dict[str, Any]) -> None:
        self.save_model_bytes(train_key, model_bytes(train_key, model, info), info)

    def save_model_bytes(self, train_key: str, data: bytes, info: dict[str, Any]) -> None:
        """Store a fitted model already written as bytes (``model_bytes``, e.g. by a worker on another
        machine), after checking that its header names this training key."""
        header, _ = read_header(data, f"the fitted model of {info['method']} for training key {train_key}")
        if header.get("train_key") != train_key:
            raise BenchInputError(f"a fitted model for training key {header.get('train_key')!r} was handed in "
                                  f"as {train_key}; it was not stored")
        path = self.model_path(train_key)
        with atomic_path(path, ".tmp") as tmp:
            Path(tmp).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        with self._connect() as con:
            con.execute(
                """INSERT OR REPLACE INTO models (train_key, method, config_hash, dataset_fp, split_hash, fold,
                   seed, train_corruption, path, fit_seconds, created_at, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
                (train_key, info["method"], info["config_hash"], info["dataset_fp"], info["split_hash"],
                 info["fold"], info["seed"], json.dumps(info["train_corruption"]),
                 str(path.relative_to(self.root)), info["fit_seconds"], now(), sha),
            )

    def model_blob(self, train_key: str) -> tuple[bytes, float] | None:
        """The stored model's checked bytes and its fit seconds (to hand to a worker), or None when none is
        listed or its file is gone."""
        entry = self._model_entry(train_key)
        if entry is None or not entry.path.is_file():
            return None
        return self._model_bytes(train_key, entry), entry.fit_seconds


def model_bytes(train_key: str, model: Any, info: dict[str, Any]) -> bytes:
    """A fitted model as the store keeps it (bench.model_io: a header naming the training key, method and
    class, then the allow-listed pickle), ready to be written anywhere."""
    header = {"train_key": train_key, "method": info["method"], "config_hash": info["config_hash"],
              "class": f"{type(model).__module__}.{type(model).__qualname__}"}
    return model_to_bytes(model, header)


class ModelEntry(NamedTuple):
    """A fitted model as the models table lists it."""

    path: Path
    fit_seconds: float
    sha256: str | None
    method: str
    config_hash: str


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


class Claims:
    """This process's claims on the jobs of one store, kept alive by a heartbeat thread while the block runs
    and released when it ends (also on an error or Ctrl-C); a killed process's claims expire after ``ttl``
    seconds without a heartbeat (at once when it ran on this host). ::

        with Claims(store) as claims:
            for job in claims.each(jobs, key=lambda j: j.train_key):
                ...  # this process alone works on ``job`` until the loop moves on

    ``each`` yields the items whose claim it gets, tries those another live process holds again after the
    others (every ``poll`` seconds), and ends when every item has been yielded once. An item a second process
    finished meanwhile is still yielded: check the store before working on it."""

    def __init__(self, store: Store, claimant: str | None = None, *, ttl: float | None = None,
                 beat: float | None = None):
        self.store = store
        self.id = claimant or claimant_id()
        self.ttl = claim_ttl() if ttl is None else float(ttl)
        self.beat = min(HEARTBEAT_S, self.ttl / 4) if beat is None else float(beat)
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Claims":
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"claims-heartbeat-{self.id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.release()
        except BenchInputError as err:  # the store went away: the claims expire on their own
            log.warning("could not release the claims of %s: %s", self.id, err)

    def _beat(self) -> None:
        while not self._stop.wait(self.beat):
            try:
                self.heartbeat()
            except Exception as exc:  # a busy or vanished store: try again at the next beat
                log.warning("claims heartbeat of %s failed: %s", self.id, exc)

    def claim(self, keys: list[str]) -> bool:
        ok = self.store.claim(keys, self.id, ttl=self.ttl)
        if ok:
            self.held.update(keys)
        return ok

    def release(self, keys: list[str] | None = None) -> int:
        n = self.store.release(None if keys is None else list(keys), self.id)
        self.held.difference_update(self.held if keys is None else set(keys))
        return n

    def heartbeat(self) -> int:
        n = self.store.heartbeat(self.id)
        if n < len(self.held):
            log.warning("%d claim(s) of %s were taken over by another process (no heartbeat for %.0f s?)",
                        len(self.held) - n, self.id, self.ttl)
        return n

    def each(self, items, key, *, poll: float = 2.0) -> Iterator:
        pending = list(items)
        while pending:
            waiting, progressed = [], False
            for item in pending:
                k = key(item)
                if not self.claim([k]):
                    waiting.append(item)
                    continue
                progressed = True
                try:
                    yield item
                finally:
                    try:
                        self.release([k])
                    except BenchInputError as err:  # the block's end releases (or the claim expires)
                        log.warning("could not release the claim on %s: %s", k, err)
            if waiting and not progressed:
                log.info("waiting for %d job(s) another process is working on", len(waiting))
                time.sleep(poll)
            pending = waiting


def provenance_of(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the rows' fitted models read beyond their config (``Method.provenance``, kept in each row's
    environment): per key, the distinct values in row order."""
    out: dict[str, list[str]] = {}
    for r in rows:
        env = json.loads(r["env"]) if r.get("env") else {}
        for k, v in (env.get("provenance") or {}).items():
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out


def drop_experiment(store: Store, method: str, config: str, *, committed=None, apply: bool = False) -> dict[str, list]:
    """Remove one superseded experiment — ``method`` under the config hash starting with ``config`` — from the
    store (its rows of every protocol and dataset, and its fitted models) and its committed files, which
    ``committed`` knows: an object with ``configs(method)`` (the config hashes, 8 characters, that have files)
    and ``files(method, config8)`` (an experiment's files), e.g. ``bench.leaderboard.LeaderboardFiles(folder)``.
    The prefix must name exactly one config of that method, in the
    store or among the committed files (which know 8 characters: a longer prefix must match a stored hash).
    ``apply`` False lists what would go and deletes nothing. Returns {"config": [hash], "rows": [(protocol, fold, seed)], "models": [path], "files": [path]}."""
    if len(config) < 4:
        raise BenchInputError(f"--config {config!r}: give at least 4 characters of the config hash")
    hashes, prefix = _experiment_config(store, method, config, committed)
    keys, models = _experiment_rows(store, method, hashes)
    files: list[Path] = committed.files(method, prefix) if committed is not None else []
    if apply:
        _delete_experiment(store, method, hashes, models, files)
    return {"config": [hashes[0] if hashes else prefix], "rows": keys, "models": models,
            "files": [str(f) for f in files]}


def _where_configs(hashes: list[str]) -> str:
    return f"method=? AND config_hash IN ({', '.join('?' * len(hashes))})"


def _experiment_rows(store: Store, method: str, hashes: list[str]) -> tuple[list[tuple], list[str]]:
    """The (protocol, fold, seed) of the stored rows of ``method`` under ``hashes`` and their models' paths."""
    if not hashes:
        return [], []
    where = _where_configs(hashes)
    with store._connect() as con:
        keys = [tuple(r) for r in con.execute(f"SELECT protocol, fold, seed FROM runs WHERE {where} "
                                              "ORDER BY protocol, seed, fold", (method, *hashes))]
        models = [r[0] for r in con.execute(f"SELECT path FROM models WHERE {where}", (method, *hashes))]
    return keys, models


def _delete_experiment(store: Store, method: str, hashes: list[str], models: list[str], files: list[Path]) -> None:
    if hashes:
        where = _where_configs(hashes)
        with store._connect() as con:
            con.execute(f"DELETE FROM runs WHERE {where}", (method, *hashes))
            con.execute(f"DELETE FROM models WHERE {where}", (method, *hashes))
    folder = (store.root / "models").resolve()
    for rel in models:
        path = (store.root / str(rel)).resolve()
        if path.parent != folder:  # a listed path outside models/ (an edited store) is never deleted
            log.warning("not deleting %s: listed as a model but outside %s", path, folder)
            continue
        _unlink(path)
    for f in files:
        _unlink(Path(f))


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise BenchInputError(f"the experiment's rows were removed from the store, but {path} could not be deleted "
                              f"({exc.strerror or exc}); delete it by hand") from None


def _experiment_config(store: Store, method: str, config: str, committed) -> tuple[list[str], str]:
    """(the stored config hashes of ``method`` that ``config`` names — at most one —, its 8 characters); an input
    error unless exactly one config starts with ``config`` in the store or among the ``committed`` files."""
    filed = committed.configs(method) if committed is not None else set()
    with store._connect() as con:
        stored = {r[0] for r in con.execute("SELECT DISTINCT config_hash FROM runs WHERE method=?", (method,))}
        stored |= {r[0] for r in con.execute("SELECT DISTINCT config_hash FROM models WHERE method=?", (method,))}
    full = {h for h in stored if h.startswith(config)}
    if len(config) <= 8:
        short = {h[:8] for h in full} | {h for h in filed if h.startswith(config)}
    else:  # committed files know 8 characters: they follow a stored hash the whole prefix names
        short = {h[:8] for h in full}
    if not short:
        known = sorted({h[:8] for h in stored | filed})
        raise BenchInputError(f"no experiment of method {method!r} with a config hash starting {config!r}"
                              + (f" (its configs: {', '.join(known)})" if known else
                                 f" (no rows of {method!r} in {store.root}"
                                 + (f" or {committed}" if committed is not None else "") + ")"))
    if len(short) > 1 or len(full) > 1:
        names = sorted(full) if len(full) > 1 else sorted(short)
        raise BenchInputError(f"--config {config!r} matches {len(names)} configs of {method!r} "
                              f"({', '.join(names)}): give more characters")
    prefix = next(iter(short))
    sharing = sorted(h for h in stored if h[:8] == prefix)
    if committed is not None and len(sharing) > 1:
        raise BenchInputError(f"configs {', '.join(sharing)} of {method!r} share the 8 characters {prefix} that "
                              f"name committed files: drop them from the store one by one, leaving the committed files out")
    return sorted(full), prefix
