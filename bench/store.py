"""The results store: one SQLite file plus fitted models (bench.model_io's format), under the results directory.

``runs``: one row per (method, config hash, dataset fingerprint, protocol hash, fold, seed) with status,
timings, environment, metrics, the corruption manifest and the per-patient predictions (an npz blob), so
every metric can be recomputed later. A row is written ``running`` when its job starts and completed in one
transaction when it ends: a killed job is redone on the next run, a finished one is skipped, and the UNIQUE
key means two runs never duplicate a row.

``models``: fitted models keyed apart from evaluations by (method, config hash, dataset fingerprint, split,
fold, seed, train-side corruption), so protocols that differ only in test-side corruption reuse one model.
"""
from __future__ import annotations

import io
import json
import hashlib
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.errors import BenchInputError
from bench.fsutil import atomic_path, write_if_changed
from bench.model_io import dump_model, read_header
from bench.model_io import load_model as load_model_bytes

SCHEMA_VERSION = 2  # bump on a table change and migrate older stores in Store.__init__ (history: CHANGELOG.md)
DB_NAME = "runs.sqlite"

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
    manifest TEXT, bootstrap BLOB,
    UNIQUE (method, config_hash, dataset_fp, protocol_hash, fold, seed)
);
CREATE TABLE IF NOT EXISTS models (
    train_key TEXT PRIMARY KEY, method TEXT NOT NULL, config_hash TEXT NOT NULL, dataset_fp TEXT NOT NULL,
    split_hash TEXT NOT NULL, fold INTEGER NOT NULL, seed INTEGER NOT NULL, train_corruption TEXT,
    path TEXT NOT NULL, fit_seconds REAL, created_at TEXT NOT NULL, sha256 TEXT
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


WHERE_KEY = "method=? AND config_hash=? AND dataset_fp=? AND protocol_hash=? AND fold=? AND seed=?"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pack_arrays(arrays: dict[str, np.ndarray | None]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    return buf.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class Store:
    def __init__(self, results_dir: str | Path, *, create: bool = True):
        self.root = Path(results_dir)
        self.db_path = self.root / DB_NAME
        if not create and not self.db_path.is_file():
            raise BenchInputError(f"no results store at {self.db_path} (run `bench run --results {self.root}` first)")
        if self.root.exists() and not self.root.is_dir():
            raise BenchInputError(f"--results {self.root} exists and is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchInputError(f"--results {self.root}: cannot create the directory ({exc})") from None
        try:
            with self._connect() as con:
                con.executescript(SCHEMA)
                row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) == 1:  # v1 → v2: two new columns; old rows are rescored by the next run
                    cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
                    for col, kind in (("manifest", "TEXT"), ("bootstrap", "BLOB")):
                        if col not in cols:
                            con.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
                    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise BenchInputError(
                        f"results store {self.db_path} has schema version {row[0]}, this harness writes "
                        f"{SCHEMA_VERSION}; use another --results directory"
                    )
        except sqlite3.DatabaseError as exc:
            raise BenchInputError(
                f"{self.db_path} is not a usable results database ({exc}); it was left untouched — "
                f"use another --results directory"
            ) from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            with con:  # one transaction: committed on success, rolled back on error
                yield con
        finally:
            con.close()

    # --- evaluation rows ------------------------------------------------------------------------------
    def state(self, key: RunKey) -> tuple[str | None, str | None]:
        """(status, metrics version the row was scored with) in one query; (None, None) for no row, and a
        None version for a row scored before metric manifests existed. A row with a Dice score but no Dice
        bootstrap (scored before DSC intervals existed) reports version None, so the runner rescores it."""
        with self._connect() as con:
            row = con.execute(f"SELECT status, json_extract(manifest, '$.metrics_version'), "
                              f"(json_type(metrics, '$.dice_gtvp') IS NOT NULL "
                              f"OR json_type(metrics, '$.dice_gtvn') IS NOT NULL) "
                              f"AND json_extract(manifest, '$.bootstrap.n') > 0 "
                              f"AND json_extract(manifest, '$.bootstrap.dice') IS NULL "
                              f"FROM runs WHERE {WHERE_KEY}", key.as_tuple()).fetchone()
        if not row:
            return None, None
        return row[0], None if row[2] else row[1]

    def start(self, key: RunKey, info: dict[str, Any]) -> None:
        """Mark a job running (replacing a stale running/failed row of a killed or failed attempt)."""
        with self._connect() as con:
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
               threads: dict | None = None) -> None:
        with self._connect() as con:
            # kept with the environment: what the fitted model read beyond its config; the CPU threads once the
            # method has loaded its libraries (torch is often imported by fit itself)
            for path, value in (("$.provenance", provenance), ("$.threads", threads)):
                if value:
                    con.execute(f"UPDATE runs SET env=json_set(coalesce(env, '{{}}'), '{path}', json(?)) WHERE {WHERE_KEY}",
                                (json.dumps(value), *key.as_tuple()))
            con.execute(
                f"""UPDATE runs SET status='done', error=NULL, finished_at=?, fit_seconds=?, predict_seconds=?,
                    model_reused=?, metrics=?, notes=?, corruption=?, predictions=?, manifest=?, bootstrap=?
                    WHERE {WHERE_KEY}""",
                (now(), fit_seconds, predict_seconds, int(model_reused), json.dumps(metrics), "; ".join(notes) or None,
                 json.dumps(corruption), pack_arrays(predictions), json.dumps(manifest),
                 pack_arrays(bootstrap) if bootstrap else None, *key.as_tuple()),
            )

    def rescore(self, key: RunKey, *, metrics: dict, notes: list[str], manifest: dict,
                bootstrap: dict[str, np.ndarray] | None) -> None:
        """Replace the scores of a finished row (same predictions, newer metric definitions)."""
        with self._connect() as con:
            con.execute(
                f"UPDATE runs SET metrics=?, notes=?, manifest=?, bootstrap=? WHERE {WHERE_KEY} AND status='done'",
                (json.dumps(metrics), "; ".join(notes) or None, json.dumps(manifest),
                 pack_arrays(bootstrap) if bootstrap else None, *key.as_tuple()),
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
        query = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY method, protocol, seed, fold"
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(query, (status,) if status else ())]

    def row(self, key: RunKey) -> dict[str, Any] | None:
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            r = con.execute(f"SELECT * FROM runs WHERE {WHERE_KEY}", key.as_tuple()).fetchone()
        return dict(r) if r else None

    # --- fitted models --------------------------------------------------------------------------------
    def scored_protocols(self, train_key: str) -> list[str]:
        """The protocols of the finished rows that a fitted model (``train_key``) scored, here or in the store
        they were imported from."""
        with self._connect() as con:
            return sorted({r[0] for r in con.execute(
                "SELECT protocol FROM runs WHERE train_key=? AND status='done'", (train_key,))})

    def _model_entry(self, train_key: str) -> tuple[Path, float, str | None] | None:
        """(file, fit seconds, sha256) of the model listed for ``train_key``, or None when none is listed. The
        listed path must lie in this store's models/ folder: a row pointing elsewhere is refused."""
        with self._connect() as con:
            hashed = "sha256" in {r[1] for r in con.execute("PRAGMA table_info(models)")}
            row = con.execute(f"SELECT path, fit_seconds, {'sha256' if hashed else 'NULL'} FROM models "
                              f"WHERE train_key=?", (train_key,)).fetchone()
        if row is None:
            return None
        models = (self.root / "models").resolve()
        path = (self.root / str(row[0])).resolve()
        if path.parent != models:
            raise BenchInputError(f"{self.db_path}: the model of training key {train_key} is listed at {row[0]!r}, "
                                  f"outside {models}; the store is damaged or was edited — use another --results")
        return path, float(row[1] or 0.0), row[2]

    def has_model(self, train_key: str) -> bool:
        entry = self._model_entry(train_key)
        return entry is not None and entry[0].is_file()

    def model_path(self, train_key: str) -> Path:
        return self.root / "models" / f"{train_key}.model"

    def _model_bytes(self, train_key: str, entry: tuple[Path, float, str | None]) -> bytes:
        """The model file's bytes after checking them against the store: its sha256 and the training key in
        its header. A mismatch, or a model stored as a plain pickle by an older survbench, is refused."""
        path, _, sha = entry
        data = path.read_bytes()
        refit = (f"refit it: `bench store drop METHOD --config HASH8 --results {self.root}` (the method and config "
                 f"of training key {train_key}), then `bench run` with every protocol")
        if sha is None or hashlib.sha256(data).hexdigest() != sha:
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
        if entry is not None and entry[0].is_file():
            self._model_bytes(train_key, entry)

    def load_model(self, train_key: str, *, trusted_packages: tuple[str, ...] = (),
                   trusted_globals: frozenset[str] = frozenset()) -> tuple[Any, float] | None:
        """The stored fitted model and the seconds its fit took, or None when none is listed or its file is
        gone. A file that does not match the store, or holds anything outside the allow-list of
        ``bench.model_io``, is refused."""
        entry = self._model_entry(train_key)
        if entry is None or not entry[0].is_file():
            return None
        data = self._model_bytes(train_key, entry)
        _, model = load_model_bytes(data, str(entry[0]), extra_packages=trusted_packages,
                                    extra_globals=trusted_globals)
        return model, entry[1]

    def save_model(self, train_key: str, model: Any, info: dict[str, Any]) -> None:
        path = self.model_path(train_key)
        header = {"train_key": train_key, "method": info["method"], "config_hash": info["config_hash"],
                  "class": f"{type(model).__module__}.{type(model).__qualname__}"}
        with atomic_path(path, ".tmp") as tmp:
            dump_model(model, tmp, header)
            sha = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        with self._connect() as con:
            _ensure_model_hash_column(con)  # a store made before models were hashed
            con.execute(
                """INSERT OR REPLACE INTO models (train_key, method, config_hash, dataset_fp, split_hash, fold,
                   seed, train_corruption, path, fit_seconds, created_at, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
                (train_key, info["method"], info["config_hash"], info["dataset_fp"], info["split_hash"],
                 info["fold"], info["seed"], json.dumps(info["train_corruption"]),
                 str(path.relative_to(self.root)), info["fit_seconds"], now(), sha),
            )


def _ensure_model_hash_column(con: sqlite3.Connection) -> None:
    """Stores made before models were hashed lack the column; their models (plain pickles) are refused."""
    if "sha256" not in {r[1] for r in con.execute("PRAGMA table_info(models)")}:
        con.execute("ALTER TABLE models ADD COLUMN sha256 TEXT")


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


# --- finished rows as files: carry a results store between machines (or sessions) through git -------------
ROW_FORMAT = "survbench-run-row"
ROW_FORMAT_VERSION = 1
_BLOBS = ("predictions", "bootstrap")
_ROW_COLUMNS = ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed", "fold_name", "protocol",
                "protocol_version", "dataset", "scale", "train_key", "status", "error", "started_at", "finished_at",
                "fit_seconds", "predict_seconds", "model_reused", "config", "protocol_content", "env", "metrics",
                "notes", "corruption", "predictions", "manifest", "bootstrap")


def file_slug(text: str) -> str:
    """A name as it appears in a file name: letters, digits, -, _ and . kept, anything else a dash."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "x"


def row_filename(row: dict[str, Any]) -> str:
    """``<dataset>/<method>__<protocol>__<config8>-<dataset8>-<protocol8>__fold<k>__seed<s>.json``."""
    return (f"{file_slug(row['dataset'] or row['dataset_fp'])}/{file_slug(row['method'])}__{file_slug(row['protocol'])}__"
            f"{row['config_hash'][:8]}-{row['dataset_fp'][:8]}-{row['protocol_hash'][:8]}__"
            f"fold{row['fold']}__seed{row['seed']}.json")


def export_rows(store: Store, out: Path) -> tuple[int, int]:
    """Write every finished row of ``store`` as one JSON file under ``out`` (blobs base64), and the stored
    splits under ``out/splits``. A file whose content is unchanged is not rewritten, so committing the folder
    after each sweep only adds what is new. Returns (files written, files unchanged)."""
    import base64

    out = Path(out)
    written = same = 0
    for row in store.rows("done"):
        doc = {"format": ROW_FORMAT, "version": ROW_FORMAT_VERSION,
               "row": {c: (base64.b64encode(row[c]).decode() if c in _BLOBS and row[c] is not None else row[c])
                       for c in _ROW_COLUMNS}}
        text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
        if write_if_changed(out / row_filename(row), text):
            written += 1
        else:
            same += 1
    for split in sorted((store.root / "splits").glob("*.json")):
        write_if_changed(out / "splits" / split.name, split.read_text())
    return written, same


def _read_row_file(path: Path) -> dict[str, Any]:
    import base64
    import binascii

    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchInputError(f"{path}: not a readable run-row file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != ROW_FORMAT or not isinstance(doc.get("row"), dict):
        raise BenchInputError(f"{path}: not a survbench run-row file (no format {ROW_FORMAT!r})")
    if doc.get("version") != ROW_FORMAT_VERSION:
        raise BenchInputError(f"{path}: run-row format version {doc.get('version')!r}, this harness reads "
                              f"{ROW_FORMAT_VERSION}")
    row = doc["row"]
    missing = [c for c in _ROW_COLUMNS if c not in row]
    if missing:
        raise BenchInputError(f"{path}: run row lacks {', '.join(missing)}")
    if row["status"] != "done":
        raise BenchInputError(f"{path}: run row has status {row['status']!r}; only finished rows are carried")
    try:
        for c in _BLOBS:
            if row[c] is not None:
                row[c] = base64.b64decode(row[c], validate=True)
        if row["predictions"] is None:
            raise ValueError("no predictions")
        unpack_arrays(row["predictions"])
    except (binascii.Error, ValueError, TypeError, OSError) as exc:
        raise BenchInputError(f"{path}: run row's predictions are unreadable ({exc})") from None
    return row


def import_rows(store: Store, src: Path) -> tuple[int, int]:
    """Insert the finished rows filed under ``src`` (by :func:`export_rows`) into ``store``: a row the store
    already has finished is left as it is; a running or failed row of the same job is replaced. Every file is
    read and checked before anything is written, so a bad file changes nothing. Splits under ``src/splits``
    missing from the store are copied. Returns (rows imported, rows already there)."""
    src = Path(src)
    if not src.is_dir():
        raise BenchInputError(f"{src}: no such folder of run rows")
    rows = [_read_row_file(p) for p in sorted(src.glob("*/*.json")) if p.parent.name != "splits"]
    imported = kept = 0
    with store._connect() as con:
        for row in rows:
            key = RunKey(**{f: row[f] for f in RunKey.__dataclass_fields__}).as_tuple()
            old = con.execute(f"SELECT status FROM runs WHERE {WHERE_KEY}", key).fetchone()
            if old and old[0] == "done":
                kept += 1
                continue
            con.execute(f"DELETE FROM runs WHERE {WHERE_KEY}", key)
            con.execute(f"INSERT INTO runs ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' * len(_ROW_COLUMNS))})",
                        tuple(row[c] for c in _ROW_COLUMNS))
            imported += 1
    for split in sorted((src / "splits").glob("*.json")):
        target = store.root / "splits" / split.name
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_text(split.read_text())
    return imported, kept


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
    for rel in models:
        (store.root / rel).unlink(missing_ok=True)
    for f in files:
        f.unlink(missing_ok=True)


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
