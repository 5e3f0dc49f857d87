"""Score predictions made outside survbench (``bench score``): models that cannot be plugins.

A CSV gives one row per test patient of every fold of a protocol — the folds of the stored split plan, the
same ones every method of that results folder is scored on (``bench.splits.split_plan``, exactly as the
runner uses it) — and ``score_external`` stores one finished row per fold, as ``bench run`` would: the same
predictions arrays (quantised before scoring), the same metrics on the same bootstrap resamples
(``bench.runner.score_job``), the same protocol hash, split and corruption manifest, so ``bench results``,
``bench store export``/``import`` and ``bench leaderboard`` treat the row like any other. What marks it as
external: its config ``{"external": true, "predictions_sha256": …, "convention": …}`` (kept in its record),
``"external": true`` in the method facts stored with its environment, and a note.

The CSV (UTF-8, comma-separated, header on line 1; a byte-order mark and padded cells are accepted):

- ``PatientID`` and ``fold``: the protocol's fold name (``fold0`` … for k-fold, the held-out centre for
  leave-one-centre-out, the test centres joined by ``+`` for a centre split). ``bench score --template``
  writes the expected rows. Every test patient of every fold appears exactly once, in its fold.
- the score: ``risk`` (convention ``survbench``; higher = earlier event), or ``Prediction`` (convention
  ``hecktor``, see below). A risk must be a finite number.
- optional survival columns ``S(<t>)``, t in days (``S(365)``, ``S(730.5)``): the survival probability at t,
  in [0, 1] and non-increasing in t along each row. Folds may have grids of their own: a column left empty
  for every patient of a fold is not part of that fold's grid (a column empty for only some is an error).
  The curves are read as right-continuous steps (as for any method). Without them the metrics that need
  curves (C-td, IBS) use curves derived from the risk by a Breslow baseline on the training fold — as for a
  risk-only plugin — when training predictions are given, and are n/a (with a note) otherwise. td-AUROC is
  computed from the risk, as for every method, so it needs no curves.

Training-side predictions (``--train-predictions``, the same format, one row per training patient of each
fold: a patient appears once per fold it trains in; ``--train-template`` writes them) give the training-fold
median risk the log-rank split is made at (and the Breslow baseline). Without them the groups are split at
the test fold's median risk instead, and the row's notes say so; the stored training risks are then that
threshold repeated (the largest float32 not above the median, which splits the fold's float32 risks exactly
as the median does), so every later reading of the row — rescoring, import, the Kaplan–Meier plot of the
leaderboard — splits where the scoring did. Training times and events always come from the dataset.

HECKTOR 2022 convention (``--convention hecktor``), as the challenge published it: Task 2 submissions give
per patient a ``Prediction`` that is *anti-concordant* with RFS — a risk score (a predicted time is submitted
multiplied by −1) — and the evaluator (the challenge organisers' repository voreille/hecktor,
``src/aicrowd_evaluator/survival_metrics.py``, lifelines' ``concordance_index`` adapted to missing values)
computes the C-index of −Prediction, the predicted time, against RFS with every pair that involves a missing
(NaN) prediction counted as a tie (½). Here risk = Prediction, so Harrell's C is lifelines'
``concordance_index(RFS, -Prediction, Relapse)``. A missing (empty or NaN) prediction is allowed; since survbench
stores one finite risk per patient, from which every metric and every later rescore is computed, all the
missing predictions of a fold are set to one value, the median of the fold's given predictions (0 when none is
given): missing patients tie with each other (½ per pair, as in the challenge) and sit in the middle of the
others' ranking, whereas the challenge's evaluator also counts their pairs with scored patients as ½ — the
one place where the two differ; the row's notes give the count. A NaN risk under the survbench convention is
an error.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.compact import quantise_predictions
from bench.data import Dataset
from bench.errors import BenchInputError, did_you_mean
from bench.fsutil import atomic_path, safe_name
from bench.hashing import content_hash
from bench.metrics import METRICS_VERSION
from bench.protocols import Protocol
from bench.scoring import NO_CURVES
from bench.splits import Fold, SplitPlan
from bench.store import RunKey, Store, strict_json, unpack_arrays

CONVENTIONS = ("survbench", "hecktor")
ID_COLUMN, FOLD_COLUMN = "PatientID", "fold"
SCORE_COLUMN = {"survbench": "risk", "hecktor": "Prediction"}
SCORE_MEANING = {"survbench": "a risk, higher = earlier event",
                 "hecktor": "a risk score, anti-concordant with RFS (HECKTOR 2022: a predicted time goes in "
                            "multiplied by -1)"}
SURVIVAL_COLUMN = re.compile(r"S\((.*)\)")
VERSION = "1"  # of this reading of external predictions, stored with the method facts of each row
NOTE = "external predictions"  # every note this module adds starts with it (kept when a row is rescored)
MAX_CSV_BYTES = 256 << 20
MAX_LISTED = 20  # problems listed in one error, then how many more
FLOAT32_MAX = float(np.finfo(np.float32).max)  # risks are stored (and scored) as float32


# --- reading a predictions file ------------------------------------------------------------------------------
@dataclass
class FoldTable:
    """One fold's rows of a predictions file, in the order of ``ids`` (the fold's patients of that side)."""

    ids: list[str]
    risk: np.ndarray  # float64, finite (missing HECKTOR predictions already set to the tie value)
    survival: np.ndarray | None = None  # (n, T): the fold's own grid
    times: np.ndarray | None = None  # (T,) days, increasing
    missing: int = 0  # HECKTOR predictions that were missing (NaN) and set to the tie value


@dataclass
class PredictionFile:
    path: Path
    sha256: str
    convention: str
    side: str  # "test" or "training"
    folds: dict[int, FoldTable]  # by fold index

    @property
    def has_curves(self) -> bool:
        return any(t.survival is not None for t in self.folds.values())


def _fold_ids(splits: SplitPlan, fold: Fold, side: str, seed: int) -> list[str]:
    """The patients one side of a fold holds, in the order the runner stores them: the test patients, or the
    training patients as fit + validation patients of run seed ``seed``."""
    if side == "test":
        return list(fold.test)
    fit, val = splits.fit_val(fold, seed)
    return list(fit) + list(val)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fmt(v: float) -> str:
    """A number as written to a CSV: the shortest text that reads back as the same float64."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _header(row: list[str], convention: str) -> tuple[dict[str, int], list[tuple[float, str, int]], list[str]]:
    """(position of PatientID, fold and the score column; survival columns as (t, name, position) sorted by t;
    problems)."""
    score = SCORE_COLUMN[convention]
    problems, pos, surv = [], {}, []
    seen: dict[str, int] = {}
    for i, raw in enumerate(row):
        name = raw.strip()
        if name in seen:
            problems.append(f"line 1: column {name!r} appears twice (columns {seen[name] + 1} and {i + 1})")
            continue
        seen[name] = i
        if name in (ID_COLUMN, FOLD_COLUMN, score):
            pos[name] = i
            continue
        m = SURVIVAL_COLUMN.fullmatch(name)
        if m:
            t = _number(m.group(1))
            if t is None or not math.isfinite(t) or t < 0:
                problems.append(f"line 1: column {name!r}: {m.group(1)!r} is not a time in days (a finite "
                                f"number >= 0)")
            else:
                surv.append((t, name, i))
            continue
        other = next((c for c, s in SCORE_COLUMN.items() if s == name and c != convention), None)
        hint = (f" (the {other} convention's score column: use --convention {other})" if other else
                did_you_mean(name, [ID_COLUMN, FOLD_COLUMN, score, "S(365)"]))
        if convention == "hecktor" and name.lower() == score.lower():
            hint = f" — the HECKTOR 2022 convention names it {score!r}: {SCORE_MEANING['hecktor']}"
        problems.append(f"line 1: unknown column {name!r}{hint}; expected {ID_COLUMN}, {FOLD_COLUMN}, {score} "
                        f"({SCORE_MEANING[convention]}) and optional S(<days>) survival columns")
    for need in (ID_COLUMN, FOLD_COLUMN, score):
        if need not in pos:
            problems.append(f"line 1: no {need!r} column" + (f" ({SCORE_MEANING[convention]})" if need == score
                                                            else ""))
    surv.sort()
    for (t1, n1, _), (t2, n2, _) in zip(surv, surv[1:]):
        if t1 == t2:
            problems.append(f"line 1: columns {n1!r} and {n2!r} name the same time ({_fmt(t1)} days)")
    return pos, surv, problems


def read_predictions(path: Path, splits: SplitPlan, *, convention: str = "survbench", side: str = "test",
                     seed: int = 0, dataset: Dataset | None = None, option: str = "--predictions") -> PredictionFile:
    """A predictions file checked against the folds of ``splits``; ``BenchInputError`` naming the file, and for
    each problem its line, patient and what is wrong (at most ``MAX_LISTED``, then how many more)."""
    if convention not in CONVENTIONS:
        raise BenchInputError(f"--convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise BenchInputError(f"{option} {path}: larger than {MAX_CSV_BYTES >> 20} MB, not a predictions file")
        data = path.read_bytes()
    except OSError as exc:
        raise BenchInputError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchInputError(f"{option} {path}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BenchInputError(f"{option} {path}: the file is empty (expected a header line: {ID_COLUMN},"
                              f"{FOLD_COLUMN},{SCORE_COLUMN[convention]}[,S(<days>)…])") from None
    except csv.Error as exc:
        raise BenchInputError(f"{option} {path}: line 1 is not CSV ({exc})") from None
    pos, surv, problems = _header(header, convention)
    if problems:
        raise BenchInputError(_listing(path, option, problems))
    score = SCORE_COLUMN[convention]
    by_name = {f.name: f for f in splits.folds}
    members = {f.index: {p: k for k, p in enumerate(_fold_ids(splits, f, side, seed))} for f in splits.folds}
    tested_in = {p: f.name for f in splits.folds for p in f.test}
    known = set(dataset.ids) if dataset is not None else None
    seen: dict[tuple, int] = {}  # (patient,) for the test side, (patient, fold) for the training side -> line
    rows: dict[int, dict[str, tuple[int, float, list[float | None]]]] = {f.index: {} for f in splits.folds}
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                problems.append(f"line {line}: {len(cells)} cell(s), the header has {len(header)}")
                continue
            pid, fold_name = cells[pos[ID_COLUMN]].strip(), cells[pos[FOLD_COLUMN]].strip()
            who = f"line {line}: patient {pid}"
            if not pid:
                problems.append(f"line {line}: no {ID_COLUMN}")
                continue
            if known is not None and pid not in known:
                problems.append(f"{who} is not in dataset {dataset.name}")
                continue
            fold = by_name.get(fold_name)
            if fold is None:
                problems.append(f"{who}: fold {fold_name!r} is not a fold of this protocol (its folds: "
                                f"{', '.join(by_name)})")
                continue
            if pid not in members[fold.index]:
                if side == "test":
                    where = tested_in.get(pid)
                    problems.append(f"{who} is in fold {fold_name} here, but the protocol tests it in fold {where}"
                                    if where else f"{who} is tested in no fold of this protocol (it only trains)")
                else:
                    problems.append(f"{who} is not a training patient of fold {fold_name} (it is tested there)")
                continue
            dup = (pid,) if side == "test" else (pid, fold_name)
            if dup in seen:
                problems.append(f"{who} appears again{' in fold ' + fold_name if side != 'test' else ''} "
                                f"(first on line {seen[dup]})")
                continue
            seen[dup] = line
            raw = cells[pos[score]].strip()
            value = _number(raw) if raw else math.nan
            if value is None or math.isinf(value) or (math.isnan(value) and convention == "survbench"):
                what = "empty" if not raw else "NaN" if value is not None and math.isnan(value) else repr(raw)
                problems.append(f"{who}: {score} is {what}, not a finite number"
                                + (" (a missing prediction is only allowed under --convention hecktor)"
                                   if convention == "survbench" and value is not None else ""))
                continue
            if abs(value) > FLOAT32_MAX:
                problems.append(f"{who}: {score} is {raw}, beyond float32 (|{score}| <= {FLOAT32_MAX:.4g}): risks are "
                                f"stored as float32, so rescale them")
                continue
            curve = []
            bad = False
            for t, name, i in surv:
                cell = cells[i].strip()
                if not cell:
                    curve.append(None)
                    continue
                s = _number(cell)
                if s is None or not (0.0 <= s <= 1.0):
                    problems.append(f"{who}: {name} is {cell!r}, not a survival probability in [0, 1]")
                    bad = True
                    break
                curve.append(s)
            if bad:
                continue
            given = [(t, name, s) for (t, name, _), s in zip(surv, curve) if s is not None]
            rise = next(((a, b) for a, b in zip(given, given[1:]) if b[2] > a[2]), None)
            if rise:
                (_, n1, s1), (_, n2, s2) = rise
                problems.append(f"{who}: the survival curve is not monotone: {n2} = {_fmt(s2)} > {n1} = "
                                f"{_fmt(s1)} (S(t) must not increase with t)")
                continue
            rows[fold.index][pid] = (line, value, curve)
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: not CSV ({exc})")
    if not problems:  # a patient on a bad line would be reported twice
        problems += [f"patient {p} of fold {f.name} is missing (every {side} patient of every fold must appear "
                     f"{'once' if side == 'test' else 'once per fold it trains in'})"
                     for f in splits.folds for p in members[f.index] if p not in rows[f.index]]
    folds = {}
    if not problems:
        for f in splits.folds:
            folds[f.index] = _fold_table(f, list(members[f.index]), rows[f.index], surv, problems)
    if surv and not problems:
        empty = [f.name for f in splits.folds if folds[f.index].survival is None]
        if empty and len(empty) < len(splits.folds):
            problems.append(f"fold(s) {', '.join(empty)} give no survival value while other folds do: give S(t) "
                            f"for every fold or for none")
    if problems:
        raise BenchInputError(_listing(path, option, problems))
    return PredictionFile(path, hashlib.sha256(data).hexdigest(), convention, side, folds)


def _fold_table(fold: Fold, ids: list[str], got: dict, surv: list, problems: list[str]) -> FoldTable:
    """One fold's rows as arrays in the order of ``ids``; a survival column filled for only some of the fold's
    patients is a problem."""
    values = np.array([got[p][1] for p in ids], dtype=float)
    missing = int(np.isnan(values).sum())
    if missing:  # HECKTOR convention only: one shared value, so missing predictions tie with each other
        given = values[~np.isnan(values)]
        values = np.where(np.isnan(values), float(np.median(given)) if len(given) else 0.0, values)
    columns = []
    for j, (t, name, _) in enumerate(surv):
        filled = [p for p in ids if got[p][2][j] is not None]
        if filled and len(filled) < len(ids):
            p = next(p for p in ids if got[p][2][j] is None)
            problems.append(f"line {got[p][0]}: patient {p}: {name} is empty, but other patients of fold "
                            f"{fold.name} give it (leave a column empty for a whole fold, or fill it)")
        elif filled:
            columns.append(j)
    table = FoldTable(ids, values, missing=missing)
    if columns:
        table.times = np.array([surv[j][0] for j in columns], dtype=float)
        table.survival = np.array([[got[p][2][j] for j in columns] for p in ids], dtype=float)
    return table


def _listing(path: Path, option: str, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = f"\n  … and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (f"{option} {path}: {len(problems)} problem(s); nothing was stored:\n"
            + "\n".join(f"  - {p}" for p in shown) + more)


# --- templates and exports ------------------------------------------------------------------------------------
def write_template(out: Path, splits: SplitPlan, *, side: str = "test", convention: str = "survbench",
                   seed: int = 0) -> list[tuple[str, int]]:
    """Write the rows a predictions file must have (PatientID and fold filled in, the score empty) to ``out``;
    returns (fold name, patients) per fold."""
    if convention not in CONVENTIONS:
        raise BenchInputError(f"--convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([ID_COLUMN, FOLD_COLUMN, SCORE_COLUMN[convention]])
    counts = []
    for f in splits.folds:
        ids = sorted(_fold_ids(splits, f, side, seed))
        w.writerows([p, f.name, ""] for p in ids)
        counts.append((f.name, len(ids)))
    _write_text(out, buf.getvalue())
    return counts


def predictions_csv(stored: list[tuple[str, dict[str, np.ndarray]]], out: Path, *, side: str = "test",
                    convention: str = "survbench") -> None:
    """Write stored predictions — (fold name, the stored arrays of that fold's row), e.g. a ``bench run``
    method's — as a predictions file ``bench score`` reads back to the same arrays: the risks (training risks
    for ``side="training"``) and, on the test side, the survival curves on each fold's own grid."""
    rows, times = [], set()
    for _, arrays in stored:
        if side == "test" and arrays.get("survival") is not None:
            times |= {float(t) for t in arrays["times"]}
    grid = sorted(times)
    col = {t: j for j, t in enumerate(grid)}
    for name, arrays in stored:
        ids = arrays["ids"] if side == "test" else arrays["train_ids"]
        risk = arrays["risk"] if side == "test" else arrays["train_risk"]
        surv = arrays.get("survival") if side == "test" else None
        for k, (pid, r) in enumerate(zip(ids, risk)):
            cells = [""] * len(grid)
            if surv is not None:
                for t, s in zip(arrays["times"], surv[k]):
                    cells[col[float(t)]] = _fmt(s)
            rows.append([str(pid), name, _fmt(float(r))] + cells)  # both conventions read a risk
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([ID_COLUMN, FOLD_COLUMN, SCORE_COLUMN[convention]] + [f"S({_fmt(t)})" for t in grid])
    w.writerows(rows)
    _write_text(out, buf.getvalue())


def _write_text(out: Path, text: str) -> None:
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
    except OSError as exc:
        raise BenchInputError(f"cannot write {out} ({exc.strerror or exc})") from None


# --- scoring and storing --------------------------------------------------------------------------------------
def external_config_hash(name: str, scale: str) -> str:
    """The config hash of an external model's rows: one experiment per (name, scale), whatever file each
    protocol's rows were scored from (so its clean and noisy rows form one curve on the robustness page); the
    stored config says which file that was."""
    return content_hash({"method": name, "external": True, "scale": scale})


def method_facts(has_curves: bool) -> dict[str, Any]:
    """The method facts stored with an external row's environment (a plugin's are ``runner.method_info``)."""
    return {"class": "external", "version": VERSION, "consumes": [],
            "produces": ["risk"] + (["survival"] if has_curves else []), "needs_mask_at_test": False,
            "ceiling": False, "family": "other", "external": True}


def check_name(name: str) -> str:
    """``--name``: usable in file names and not a registered method's."""
    from bench.registry import available

    safe_name(name, "--name")
    entry = available().get(name)
    if entry is not None:
        raise BenchInputError(f"--name {name!r} is a registered method (package {entry.package}); rows scored from "
                              f"predictions made elsewhere need a name of their own")
    return name


@dataclass
class ScoreReport:
    config_hash: str
    keys: list[RunKey] = field(default_factory=list)
    scored: int = 0
    skipped: int = 0  # finished rows from the same file: nothing to do
    rescored: int = 0  # finished rows scored with older metric definitions, rescored from their predictions
    notes: list[str] = field(default_factory=list)


def _conflicts(store: Store, name: str, protocol: Protocol, dataset: Dataset, config_hash: str, config: dict,
               keys: dict[int, RunKey], results_dir: Path, scale: str) -> set[int]:
    """Refuse a name that holds ``bench run`` rows, and a file other than the one this name's finished rows
    under this protocol were scored from; the folds already finished from this very file."""
    done = set()
    by_key = {}
    for r in store.method_rows(name):
        try:
            stored = strict_json(r["config"]) if r["config"] else {}
        except ValueError:
            stored = {}
        if not (isinstance(stored, dict) and stored.get("external") is True):
            raise BenchInputError(
                f"--name {name!r}: {results_dir} holds rows of {name!r} produced by `bench run` (config "
                f"{r['config_hash'][:8]}, protocol {r['protocol']}); predictions made elsewhere need a name of "
                f"their own")
        by_key[(r["config_hash"], r["dataset_fp"], r["protocol_hash"], r["fold"], r["seed"])] = (r, stored)
    for index, key in keys.items():
        found = by_key.get((key.config_hash, key.dataset_fp, key.protocol_hash, key.fold, key.seed))
        if found is None or found[0]["status"] != "done":
            continue
        row, stored = found
        if stored != config:
            old = stored.get("predictions_sha256", "?")
            raise BenchInputError(
                f"{name!r} already has finished rows under protocol {protocol.name} on {dataset.name} (scale "
                f"{scale}) scored from another predictions file (sha256 {str(old)[:12]}…, {stored.get('convention')} "
                f"convention{', with training predictions' if 'train_predictions_sha256' in stored else ''}); "
                f"this one is {config['predictions_sha256'][:12]}… ({config['convention']} convention"
                f"{', with training predictions' if 'train_predictions_sha256' in config else ''}). A finished row "
                f"is final: remove that experiment with `bench store drop {name} --config {config_hash[:8]} "
                f"--results {results_dir} --yes` (it removes the rows of {name!r} at this scale under every "
                f"protocol and dataset), then score each file again — or store this one under another --name. Nothing was stored.")
        done.add(index)
    return done


def _train_threshold(risk: np.ndarray, n_train: int) -> np.ndarray:
    """Training risks standing for "split at the test fold's median": the largest float32 not above the median
    of the fold's float32 risks, repeated, so that ``risk > median(train_risk)`` groups the fold's risks exactly
    as ``risk > median(risk)`` does (no float32 risk lies strictly between the two)."""
    q = np.asarray(risk, dtype=np.float32).astype(float)
    m = float(np.median(q))
    f = np.float32(m)
    if float(f) > m:
        f = np.nextafter(f, np.float32(-np.inf))
    return np.full(n_train, f, dtype=np.float32)


def fold_predictions(fold: Fold, test: FoldTable, train: FoldTable | None, train_ids: list[str],
                     dataset: Dataset) -> tuple[dict[str, Any], list[str]]:
    """The stored arrays of one fold (as ``runner.job_predictions`` makes them, quantised) and the notes that
    say how they were made."""
    outcomes = dataset.outcomes
    notes = []
    if train is not None:
        train_risk = train.risk
    else:
        train_risk = _train_threshold(test.risk, len(train_ids))
        notes.append(f"{NOTE}: no training-fold predictions (--train-predictions), so logrank_p splits the "
                     f"patients at the test fold's median risk, not the training fold's")
    pred = {
        "ids": np.asarray(test.ids, dtype=str), "risk": test.risk,
        "time": outcomes.loc[test.ids, "time"].to_numpy(), "event": outcomes.loc[test.ids, "event"].to_numpy(),
        "survival": test.survival, "times": test.times,
        "train_ids": np.asarray(train_ids, dtype=str), "train_risk": train_risk,
        "train_time": outcomes.loc[train_ids, "time"].to_numpy(),
        "train_event": outcomes.loc[train_ids, "event"].to_numpy(),
    }
    if test.survival is None and train is None:
        pred[NO_CURVES] = np.asarray("the external predictions give no survival curves (S(t) columns) and no "
                                     "training-fold risks (--train-predictions) to derive them from")
    elif test.survival is None:
        notes.append(f"{NOTE}: no S(t) columns, so the metrics that need survival curves use curves derived from "
                     f"the risk by a Breslow baseline on the training predictions, as for a risk-only method")
    for what, table in (("", test), ("training ", train)):
        if table is not None and table.missing:
            notes.append(f"{NOTE}: {table.missing} missing (NaN) {what}prediction(s) of {fold.name} set to the "
                         f"fold's median prediction, so they tie with each other (the HECKTOR 2022 evaluator counts "
                         f"every pair with a missing prediction as a tie)")
    return quantise_predictions(pred), notes


def score_external(name: str, protocol: Protocol, dataset: Dataset, predictions: Path, *, results_dir: Path,
                   scale: str, seed: int = 0, convention: str = "survbench",
                   train_predictions: Path | None = None) -> ScoreReport:
    """Check ``predictions`` (and ``train_predictions``) against the protocol's stored folds, score every fold as
    ``bench run`` would and store one finished row per fold under method ``name``. Folds already finished from
    the same file are skipped; anything wrong is a ``BenchInputError`` and nothing is stored."""
    from bench.corruptions import corruption_manifest
    from bench.env import environment
    from bench.runner import score_job
    from bench.splits import split_plan

    from bench.scales import SCALES

    check_name(name)
    if scale not in SCALES:
        raise BenchInputError(f"--scale {scale!r}: choose one of {', '.join(SCALES)}")
    if not 0 <= seed < 2**32:
        raise BenchInputError(f"--seed {seed}: seeds must lie in [0, 2**32)")
    splits = split_plan(dataset, protocol.split, results_dir, [seed])
    test = read_predictions(predictions, splits, convention=convention, side="test", seed=seed, dataset=dataset)
    train = (read_predictions(train_predictions, splits, convention=convention, side="training", seed=seed,
                              dataset=dataset, option="--train-predictions")
             if train_predictions is not None else None)
    config: dict[str, Any] = {"external": True, "predictions_sha256": test.sha256, "convention": convention}
    if train is not None:
        config["train_predictions_sha256"] = train.sha256
    chash = external_config_hash(name, scale)
    report = ScoreReport(chash)
    keys = {f.index: RunKey(name, chash, dataset.fingerprint, protocol.hash, f.index, seed) for f in splits.folds}
    report.keys = list(keys.values())
    store = Store(results_dir)
    done = _conflicts(store, name, protocol, dataset, chash, config, keys, results_dir, scale)
    report.skipped = len(done)
    for f in splits.folds:  # finished rows scored with older metric definitions: rescored, as `bench run` does
        if f.index in done and store.state(keys[f.index])[1] != METRICS_VERSION:
            report.rescored += _rescore(store, keys[f.index], protocol, f)
    pending = []
    for f in splits.folds:  # every fold scored before anything is written
        if f.index in done:
            continue
        train_ids = _fold_ids(splits, f, "training", seed)
        arrays, notes = fold_predictions(f, test.folds[f.index], None if train is None else train.folds[f.index],
                                         train_ids, dataset)
        notes = [f"{NOTE} scored by `bench score` (sha256 {test.sha256[:12]}, {convention} convention)"] + notes
        pending.append((f, train_ids, arrays, notes, score_job(protocol, arrays, f)))
    env = environment("cpu") | {"method": method_facts(test.has_curves)}
    if protocol.split["kind"] in ("loco", "center-split"):
        env["centres"] = dataset.centre_facts()
    for f, train_ids, arrays, notes, scored in pending:
        key = keys[f.index]
        store.start(key, {
            "fold_name": f.name, "protocol": protocol.name, "protocol_version": protocol.version,
            "dataset": dataset.name, "scale": scale, "config": config, "protocol_content": protocol.content(),
            "train_key": content_hash({"external": name, "config_hash": chash, "dataset": dataset.fingerprint,
                                       "split": protocol.split_hash, "fold": f.index, "seed": seed}, 24),
            "env": env,
        })
        manifest = corruption_manifest(dataset.fingerprint, protocol.corruption, f.test, affects_inputs=True,
                                       train_ids=train_ids)
        # no fit or prediction ran here: 0 s (NULL would be read as a number by report tables)
        finished = store.finish(key, metrics=scored.metrics, notes=notes + scored.notes, corruption=manifest,
                                predictions=arrays, fit_seconds=0.0, predict_seconds=0.0, model_reused=False,
                                manifest=scored.manifest, bootstrap=scored.replicates)
        if not finished:  # another `bench score` finished this fold meanwhile: from this very file, or refused
            theirs = store.row(key)
            if theirs is None or strict_json(theirs["config"] or "{}") != config:
                raise BenchInputError(f"another `bench score` stored {name!r} {f.name} under {protocol.name} from "
                                      f"another file while this one ran; see `bench results --results "
                                      f"{results_dir}` and remove what is wrong with `bench store drop {name} "
                                      f"--config {chash[:8]} --results {results_dir} --yes`")
        report.scored += finished
        report.skipped += not finished  # another process stored this very row first
        report.notes += [n for n in notes[1:] + scored.notes if n not in report.notes]
    return report


def _rescore(store: Store, key: RunKey, protocol: Protocol, fold: Fold) -> bool:
    """Rescore a finished external row from its stored predictions (newer metric definitions), keeping the
    notes that say how its predictions were made."""
    from bench.runner import score_job

    row = store.row(key)
    if not row or not row["predictions"]:
        return False
    scored = score_job(protocol, unpack_arrays(row["predictions"], f"{store.db_path}: {key.method} {fold.name}"),
                       fold)
    kept = [n for n in (row["notes"] or "").split("; ") if n.startswith(NOTE)]
    store.rescore(key, metrics=scored.metrics, notes=kept + scored.notes, manifest=scored.manifest,
                  bootstrap=scored.replicates)
    return True


def stored_fold_predictions(store: Store, method: str, protocol_hash: str, *, seed: int = 0,
                            config_hash: str | None = None) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(fold name, stored arrays) of every finished fold of ``method`` under one protocol (one config), in fold
    order: what ``predictions_csv`` writes out."""
    rows = [r for r in store.rows("done") if r["method"] == method and r["protocol_hash"] == protocol_hash
            and r["seed"] == seed and (config_hash is None or r["config_hash"].startswith(config_hash))]
    configs = sorted({r["config_hash"] for r in rows})
    if len(configs) > 1:
        raise BenchInputError(f"{method} has {len(configs)} configs under that protocol ({', '.join(c[:8] for c in configs)}); "
                              f"name one")
    return [(r["fold_name"], unpack_arrays(r["predictions"])) for r in sorted(rows, key=lambda r: r["fold"])]


__all__ = ["CONVENTIONS", "SCORE_COLUMN", "read_predictions", "write_template", "predictions_csv", "score_external",
           "external_config_hash", "check_name", "stored_fold_predictions", "ScoreReport", "PredictionFile",
           "FoldTable"]
