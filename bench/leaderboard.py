"""Leaderboards: small versioned run records exported from the store, and markdown (+ plots) rendered from
those records alone — so CI regenerates them without rerunning a model, and ``--check`` fails when the
committed pages are not what the committed records generate.

Layout under the output folder (default ``leaderboards/``)::

    README.md                       index: one line per dataset and page
    records/<dataset>/<protocol>__<method>__<config>.json   one record per experiment (pooled over folds)
    <dataset>/cv.md                 clean and noisy protocols: one table each, methods as rows
    <dataset>/robustness.md         C-td against the noise fraction, relative drop, area under the curve
    <dataset>/generalisation.md     leave-one-centre-out per held-out centre and pooled; the centre split
    <dataset>/plots/*.png           robustness curve; Kaplan-Meier curves of the risk groups; training loss

A record holds what the pages show: per-fold metrics (with the fold's test patients and events, and the
scoring notes that say why a metric is missing), the pooled bootstrap CI of every metric, the pooled
bootstrap replicates of the primary metric (for paired comparisons), the risk groups of the test
patients (for Kaplan-Meier plots and the pooled log-rank p), the method's flags, the protocol's version and
hash, the dataset fingerprint, the harness version and the newest run's finish time. Pages carry that time,
never the time of rendering, so rendering twice gives the same bytes.

Pages of a synthetic cohort (a dataset named ``synthetic:…`` or ``demo:…``, or a record saying
``"synthetic": true``) carry its generator and caveats; a real dataset's pages carry none of them. Rows whose
predictions were made outside survbench (``bench score``: config ``external = true``) are marked ⊕.
"""
from __future__ import annotations

import difflib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchInputError
from bench.fsutil import atomic_path, file_slug, name_problem, path_under, write_if_changed
from bench.metric_registry import MetricSpec, column_order, loaded_specs, spec_of_column
from bench.metrics import bootstrap_p_value, holm, percentile_interval
from bench.protocols import shipped_content
from bench.reported import reported
from bench.results import FLAGS, metric_columns, pooled_replicates, results_frame
from bench.store import Store, provenance_of, unpack_arrays
from bench.suite_summary import (NO_IMAGE, REFERENCE_METHOD, SUITE_TYPES, SuitePoints, reads_images, suite_experiments,
                                 suite_point)

log = logging.getLogger("bench.leaderboard")
RECORD_VERSION = 1
PRIMARY = "cindex_td"
LOGRANK = "logrank_p"
LOGRANK_HEADER = "pooled log-rank p"
SYNTHETIC_KINDS = ("synthetic", "demo")  # dataset kinds that are generated cohorts (they have a ground truth)
EXTERNAL_MARK = "⊕"
EXTERNAL_NOTE = "predictions made outside survbench (`bench score`); the harness did not train this model"
DAYS_PER_YEAR = 365.25


def is_synthetic(rec: dict) -> bool:
    """Whether the record's dataset is a generated cohort (one with a ground truth): the record's own
    ``synthetic`` field when it has one, else the kind its dataset name starts with (``synthetic:…``,
    ``demo:…``). A real dataset (``manifest:…``, ``hecktor2022:…``) gets none of a synthetic cohort's text."""
    flag = rec.get("synthetic")
    if isinstance(flag, bool):
        return flag
    return str(rec.get("dataset", "")).split(":")[0] in SYNTHETIC_KINDS


def is_external(rec: dict) -> bool:
    """Whether the record's predictions were made outside survbench (``bench score`` stores ``"external": true``
    in the rows' config and in the method facts of their environment; either is enough)."""
    config, info = rec.get("config"), rec.get("method_info")
    return any(isinstance(d, dict) and d.get("external") is True for d in (config, info))


def _columns(recs: list[dict]) -> list[tuple[str, str, MetricSpec | None]]:
    """(column, header, spec) of every metric column the records hold, in registry order; a column whose
    metric is not registered here keeps its stored name and no best mark."""
    present = {m for r in recs for f in r["folds"] for m in f["metrics"]}
    out = []
    for column in sorted(present, key=column_order):
        found = spec_of_column(column)
        out.append((column, found[1].label_of(column), found[1]) if found else (column, column, None))
    return out


DEFAULT_REFERENCE = "coxph"


def _dataset_note(name: str) -> list[str]:
    """Which generator made a synthetic cohort's records: v3 and later carry it in the name
    (``synthetic:quick:v3:0``); the names of v2's records have none."""
    parts = name.split(":")
    if parts[0] != "synthetic":
        return []
    version = next((f"v{p[1:]}" for p in parts[2:] if p.startswith("v")), "v2 or earlier (the name carries no version)")
    return [f"Synthetic cohort, generator {version}; numbers from different generator versions are not comparable.", ""]


def suite_version(recs: list[dict]) -> str:
    """What to cite for a page's numbers: the suite version, the dataset (a synthetic cohort's generator), the
    set of protocols its records ran (a hash of their names and content hashes) and the metrics version."""
    from bench.hashing import content_hash
    from bench.protocols import SUITE_VERSION

    parts = recs[0]["dataset"].split(":")
    generator = next((f"generator v{p[1:]}" for p in parts[2:] if p.startswith("v")),
                     "generator v2 or earlier") if parts[0] == "synthetic" else f"dataset `{recs[0]['dataset']}`"
    protocols = content_hash(sorted({(r["protocol"], r["protocol_hash"]) for r in recs}), 12)
    metrics = sorted({str(r.get("manifest", {}).get("metrics_version", "?")) for r in recs})
    current = all(shipped_content(r["protocol"], r["protocol_hash"]) is not None for r in recs)
    suite = f"survbench suite {SUITE_VERSION}" if current else \
        f"an earlier survbench suite (not every protocol is one shipped with suite {SUITE_VERSION})"
    return f"{suite} · {generator} · protocol set `{protocols}` · metrics v{', v'.join(metrics)}"


def dataset_slug(name: str) -> str:
    """``synthetic:quick:v3:0`` → ``synthetic-quick-v3-0`` (v2 records, named ``synthetic:quick:0``, keep
    ``synthetic-quick-0``); a real dataset's path becomes its folder name."""
    kind, _, rest = name.partition(":")
    if kind == "hecktor2022":
        return "hecktor2022-" + Path(rest).name
    return "-".join(p for p in name.split(":") if p).replace("/", "_")


# --- file names built from names in the data ----------------------------------------------------------------
# Protocol, method and config names come from stored rows, imported row files, records and users' protocol
# files; each must be one plain file-name component, and every path stays under the leaderboard folder.

def _name_fields(rec: dict) -> list[tuple[str, object]]:
    return [("method", rec.get("method")), ("protocol", rec.get("protocol")),
            ("config_hash", rec.get("config_hash")), ("dataset", rec.get("dataset"))]


def _unsafe_names(rec: dict) -> list[str]:
    """Why the record's names cannot build its file names: one entry per bad field."""
    out = []
    for field_name, value in _name_fields(rec):
        why = name_problem(value)
        if field_name == "dataset" and isinstance(value, str):  # its folder is the slug, not the name
            why = name_problem(dataset_slug(value))
        if why:
            out.append(f"{field_name} {value!r} cannot be used in a file name: it {why}")
    return out


def record_path(out: Path, rec: dict) -> Path:
    """``records/<dataset>/<protocol>__<method>__<config8>.json`` under ``out`` (names checked first)."""
    return path_under(out, "records", dataset_slug(rec["dataset"]),
                      f"{rec['protocol']}__{rec['method']}__{rec['config_hash'][:8]}.json")


def km_plot_name(rec: dict) -> str:
    """``plots/km__<protocol>__<method>__<config8>.png``, relative to the dataset's folder."""
    return f"plots/km__{rec['protocol']}__{rec['method']}__{rec['config_hash'][:8]}.png"


# --- export: store → records -----------------------------------------------------------------------------

def _r(x: Any, digits: int = 5) -> Any:
    if x is None:
        return None
    x = float(x)
    return None if not np.isfinite(x) else round(x, digits)


def _km_groups(rows: list[dict], unpacked: dict[int, dict]) -> dict[str, list]:
    """Test patients of every fold (first seed): time, event and whether the risk is above the training
    fold's median risk (the log-rank split of the metrics). ``unpacked``: id(row) → its prediction arrays."""
    times, events, high, folds = [], [], [], []
    seed = min(r["seed"] for r in rows)
    for r in sorted(rows, key=lambda r: r["fold"]):
        p = unpacked.get(id(r))
        if r["seed"] != seed or p is None or "train_risk" not in p:
            continue
        threshold = float(np.median(p["train_risk"]))
        times += [float(t) for t in p["time"]]
        events += [int(e) for e in p["event"]]
        high += [int(v > threshold) for v in p["risk"]]
        folds += [int(r["fold"])] * len(p["risk"])
    return {"time": times, "event": events, "high": high, "fold": folds}


def _fold_facts(p: dict | None) -> dict:
    """A fold's test patients and events, from its stored predictions (the centre table of LOCO pages)."""
    if p is None or "event" not in p:
        return {}
    return {"n_test": int(len(p["event"])), "n_events": int(np.sum(np.asarray(p["event"]) > 0))}


def _fold_notes(notes: Any) -> dict:
    """Why a metric of the fold is missing or partial, as scoring noted it (``"metric: why"``, "; "-joined)."""
    return {"notes": notes.split("; ")} if isinstance(notes, str) and notes else {}


def _installed_method_info(name: str) -> dict:
    """Flags of a method whose stored jobs predate recording them: from the installed class, if any."""
    from bench.registry import get_method
    from bench.runner import method_info

    try:
        return method_info(get_method(name))
    except Exception:  # not installed here: the row shows no flags
        return {}


def _missing_folds(results_dir: Path, dataset_fp: str, protocol: dict, g) -> list[int]:
    """Folds of the experiment's split that some seed of ``g`` has not run: as many as the protocol's split
    section makes (k-fold: n_folds; centre split: one), and for leave-one-centre-out as the stored split file
    holds (checked: a damaged or inconsistent file is an input error naming it); empty when unknown."""
    from bench.splits import expected_fold_count, load_split_file, split_file

    split = protocol.get("split", {})
    n = expected_fold_count(split)
    path = split_file(results_dir, dataset_fp, split)
    if path.is_file():
        n = max(n or 0, len(load_split_file(path, split)[0]))
    if not n:
        return []
    return sorted({f for s, gs in g.groupby("seed") for f in set(range(n)) - set(int(v) for v in gs.fold)})


def _pooled_ci(g, metrics: list[str]) -> tuple[dict, dict]:
    """The pooled bootstrap CI of each metric whose spec keeps one, and the primary metric's pooled replicates."""
    ci, replicates = {}, {}
    for m in metrics:
        found = spec_of_column(m)
        pooled = pooled_replicates(g, m) if found and found[1].keeps_ci(m) else None
        if pooled is None:
            continue
        lo, hi = percentile_interval(pooled)
        ci[m] = [_r(lo), _r(hi)]
        if m == PRIMARY:
            replicates[m] = [_r(v, 4) for v in pooled]
    return ci, replicates


def _record(meta: dict, g, raw: list[dict], metrics: list[str]) -> dict:
    """The run record of one finished experiment: its jobs ``g`` (frame rows) and ``raw`` (store rows)."""
    first = raw[0]
    env = json.loads(first["env"]) if first.get("env") else {}
    ci, replicates = _pooled_ci(g, metrics)
    unpacked = {id(r): unpack_arrays(r["predictions"]) for r in raw if r.get("predictions")}
    by_key = {(int(r["fold"]), int(r["seed"])): unpacked.get(id(r)) for r in raw}
    record = {
        "record_version": RECORD_VERSION,
        "method": meta["method"], "config_hash": meta["config_hash"], "config": json.loads(first["config"]),
        "method_info": env.get("method") or _installed_method_info(meta["method"]),
        "protocol": meta["protocol"], "protocol_version": first["protocol_version"],
        "protocol_hash": meta["protocol_hash"], "split": json.loads(first["protocol_content"]).get("split", {}),
        "corruption": json.loads(first["protocol_content"]).get("corruption", {}),
        "dataset": meta["dataset"], "dataset_fp": meta["dataset_fp"], "scale": meta["scale"],
        "harness_version": (env.get("packages") or {}).get("survbench"),
        "git_commit": env.get("git_commit"),
        "newest_run": max(str(r["finished_at"]) for r in raw),
        "manifest": json.loads(first["manifest"]) if first.get("manifest") else {},
        "folds": [{"fold": int(r.fold), "fold_name": r.fold_name, "seed": int(r.seed),
                   "fit_seconds": _r(r.fit_seconds, 2), "metrics": {m: _r(getattr(r, m)) for m in metrics}}
                  | _fold_facts(by_key.get((int(r.fold), int(r.seed)))) | _fold_notes(r.notes)
                  for r in g.sort_values(["seed", "fold"]).itertuples()],
        "ci": ci, "replicates": replicates, "km": _km_groups(raw, unpacked),
    }
    provenance = provenance_of(raw)
    if provenance:
        record["provenance"] = provenance
    if env.get("centres"):  # what the dataset says of its centres (a synthetic cohort: scanner archetype)
        record["centres"] = env["centres"]
    histories = [{"fold": int(r["fold"]), "seed": int(r["seed"]), "series": json.loads(r["history"])}
                 for r in sorted(raw, key=lambda r: (r["seed"], r["fold"])) if r.get("history")]
    if histories:  # the fits' per-epoch training history (one fit per fold serves every protocol)
        record["history"] = histories
    return record


def export_records(results_dir: Path, out: Path) -> list[Path]:
    """One record per finished experiment (method, config, protocol, dataset, scale) in the store; an
    experiment with unfinished jobs is left out (and its older record, if any, kept). Returns the paths
    written."""
    store = Store(results_dir, readonly=True)
    stored = store.rows()
    frame = results_frame(store, with_bootstrap=True, rows=stored)
    if frame.empty:
        raise BenchInputError(f"--results {results_dir}: no stored runs to build a leaderboard from (run `bench run` first)")
    rows = {(r["method"], r["config_hash"], r["protocol_hash"], r["dataset_fp"], r["fold"], r["seed"]): r
            for r in stored}
    metrics = metric_columns(frame)
    written = []
    group = ["method", "config_hash", "protocol", "protocol_hash", "dataset", "dataset_fp", "scale"]
    for key, g in frame.groupby(group, sort=True):
        if not (g.status == "done").all():
            continue
        meta = dict(zip(group, key))
        raw = [rows[(meta["method"], meta["config_hash"], meta["protocol_hash"], meta["dataset_fp"], f, s)]
               for f, s in zip(g.fold, g.seed)]
        first = raw[0]
        missing = _missing_folds(results_dir, meta["dataset_fp"], json.loads(first["protocol_content"]), g)
        if missing:  # a sweep cut between folds: the experiment is not finished, whatever its started jobs say
            log.warning("leaderboard: %s under %s left out, fold(s) %s not run yet (run `bench run` again to finish)",
                        meta["method"], meta["protocol"], missing)
            continue
        unsafe = _unsafe_names(meta)
        if unsafe:
            raise BenchInputError(f"--results {results_dir}: the stored runs of {meta['method']!r} under protocol "
                                  f"{meta['protocol']!r}: {'; '.join(unsafe)} (rename it in the protocol file or "
                                  f"method registration and run again); no record was written for it")
        scored = set().union(*(json.loads(r["metrics"] or "{}") for r in raw))
        record = _record(meta, g, raw, [m for m in metrics if m in scored])  # its own metrics, not the store's
        path = record_path(out, meta)
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        if write_if_changed(path, text):
            written.append(path)
    return written


def load_records(out: Path) -> list[dict]:
    records = []
    for path in sorted((out / "records").glob("*/*.json")):
        try:
            rec = json.loads(path.read_text())
        except ValueError as exc:
            raise BenchInputError(f"{path}: not a readable run record ({exc})") from None
        if not isinstance(rec, dict) or rec.get("record_version") != RECORD_VERSION:
            version = rec.get("record_version") if isinstance(rec, dict) else None
            raise BenchInputError(f"{path}: record_version {version!r}, this harness reads "
                                  f"{RECORD_VERSION}; re-export it with `bench leaderboard --results DIR`")
        unsafe = _unsafe_names(rec)
        if unsafe:  # its names build the plot's and pages' file names
            raise BenchInputError(f"{path}: not a usable run record: {'; '.join(unsafe)}")
        records.append(rec)
    return records


# --- rendering: records → markdown ------------------------------------------------------------------------

@dataclass
class Page:
    path: str  # relative to the output folder
    text: str
    plots: list[tuple[str, Any]]  # (relative path, draw function taking the path)


def _summary(rec: dict, metric: str) -> tuple[float, float, int]:
    v = np.array([f["metrics"].get(metric) for f in rec["folds"]], dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.mean()) if len(v) else np.nan, float(v.std(ddof=1)) if len(v) > 1 else np.nan, len(v))


def _cell(rec: dict, metric: str, bold: bool, spec: MetricSpec | None = None) -> str:
    mean, sd, n = _summary(rec, metric)
    if n == 0:
        return "—"
    text = format(mean, spec.number_format if spec else ".3f")
    if n > 1 and (spec is None or spec.show_sd):
        text += f" ± {sd:.3f}"
    if bold:
        text = f"**{text}**"
    if metric in rec.get("ci", {}):
        lo, hi = rec["ci"][metric]
        text += f" ({lo:.3f}–{hi:.3f})"
    return text


def _label(rec: dict) -> str:
    info = rec.get("method_info", {})
    return _name(rec) + "".join(f" {mark}" for key, (_, mark) in FLAGS.items() if info.get(key))


def _name(rec: dict) -> str:
    """The method's name, with ⊕ when the harness did not make its predictions."""
    return rec["method"] + (f" {EXTERNAL_MARK}" if is_external(rec) else "")


# --- the pooled log-rank test (the table's column and the Kaplan-Meier plot's title) ----------------------

def pooled_logrank(rec: dict) -> tuple[float, str | None]:
    """The log-rank p of the record's risk groups — each fold's test patients split at that fold's
    training-median risk, the test patients of every fold (first seed) pooled into one test — and, when it
    is n/a, why. The Kaplan-Meier plot shows the same groups and the same p."""
    from bench.metrics import MetricWarning, logrank_p

    km = rec.get("km") or {}
    t, e, h = (km.get(k) or [] for k in ("time", "event", "high"))
    if not t or not len(t) == len(e) == len(h):
        return float("nan"), "the record keeps no test predictions to pool"
    high = np.asarray(h, dtype=int)
    if high.all() or not high.any():
        return float("nan"), "every test patient falls in one risk group (every prediction on one side of the " \
                             "training-median risk)"
    if not np.any(e):
        return float("nan"), "no events among the test patients"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        p = logrank_p(np.asarray(t, float), np.asarray(e, float), high, 0.5)
    return (p, None) if np.isfinite(p) else (float("nan"), "no event while both risk groups were at risk")


def _value(rec: dict, metric: str) -> tuple[float, int]:
    """What a table cell shows (fold mean; the log-rank column: the pooled p) and how many values it is made of."""
    if metric == LOGRANK:
        p = pooled_logrank(rec)[0]
        return p, int(np.isfinite(p))
    mean, _, n = _summary(rec, metric)
    return mean, n


def _table_cell(rec: dict, metric: str, bold: bool, spec: MetricSpec | None) -> str:
    if metric != LOGRANK:
        return _cell(rec, metric, bold, spec)
    p = pooled_logrank(rec)[0]
    if not np.isfinite(p):
        return "—"
    text = format(p, spec.number_format if spec else ".3g")
    return f"**{text}**" if bold else text


# --- why a value is n/a -----------------------------------------------------------------------------------

def _years(y: float) -> str:
    return f"{y:g} year" + ("" if y == 1 else "s")


def _horizon_of(rec: dict, column: str) -> float | None:
    """The td-AUROC horizon (years) a column needs: its own, or for the mean the first of the protocol's."""
    if column.startswith("td_auc_") and column.endswith("y"):
        try:
            return float(column[7:-1])
        except ValueError:
            return None
    if column == "td_auc":
        years = (rec.get("manifest") or {}).get("horizons_years") or []
        return min(float(y) for y in years) if years else None
    return None


def _fold_last_time(rec: dict, fold: int) -> float | None:
    """The longest test follow-up (days) of one fold, from the record's risk-group data."""
    km = rec.get("km") or {}
    times = [t for t, f in zip(km.get("time") or [], km.get("fold") or []) if f == fold]
    return max(times) if times else None


def _why_na(rec: dict, column: str, fold: dict) -> tuple[str, float | None]:
    """Why ``column`` has no value in ``fold``: (reason, the fold's longest test time when the reason is a
    follow-up shorter than the horizon)."""
    found = spec_of_column(column)
    name = found[1].name if found else column
    horizon = _horizon_of(rec, column)
    if horizon is not None:
        last = _fold_last_time(rec, fold["fold"])
        if last is not None and last <= horizon * DAYS_PER_YEAR:
            what = f"the first horizon, {_years(horizon)}" if column == "td_auc" else _years(horizon)
            return f"follow-up ends before {what}", last
    stated = (rec.get("manifest") or {}).get(name)
    if isinstance(stated, str):
        return stated, None
    notes = [n for n in fold.get("notes") or [] if n.startswith((f"{column}:", f"{name}:"))]
    if horizon is not None and column != "td_auc":
        notes = [n for n in notes if f"horizon {horizon * DAYS_PER_YEAR:g} " in n]
    elif column == "td_auc":
        notes = [n for n in notes if "no horizon" in n] or notes
    if notes:
        return notes[0].split(":", 1)[1].strip(), None
    return "no value stored, and the run record says no more", None


def _missing(rec: dict, column: str) -> tuple[list[tuple[str, str, float | None]], int]:
    """The folds where ``column`` is n/a, as (fold name, reason, longest test time), and how many values the
    cell is made of when complete (folds; the pooled log-rank p: one)."""
    if column == LOGRANK:
        p, why = pooled_logrank(rec)
        return ([] if np.isfinite(p) else [("pooled", why or "n/a", None)]), 1
    out = []
    for f in rec["folds"]:
        v = f["metrics"].get(column)
        if v is None or not np.isfinite(v):
            out.append((str(f.get("fold_name") or f["fold"]), *_why_na(rec, column, f)))
    return out, len(rec["folds"])


def _reason_text(group: list[tuple[str, str, float | None]]) -> str:
    last = [t for _, _, t in group if t is not None]
    return group[0][1] + (f" (longest test time {max(last):.0f} days)" if last else "")


def _na_message(recs: list[dict], column: str, shown: bool) -> str | None:
    """One note for ``column``: why it is left out of the table, or why some of its cells are "—" or
    averages over fewer folds than the others; None when every cell is complete."""
    whole: dict[str, list[tuple[str, list]]] = {}
    partial = []
    for r in recs:
        miss, total = _missing(r, column)
        if not miss:
            continue
        if len(miss) >= total:
            by: dict[str, list] = {}
            for item in miss:
                by.setdefault(item[1], []).append(item)
            text = "; ".join(_reason_text(g) for g in by.values())
            whole.setdefault(text, []).append((f"`{_name(r)}`", miss))
            continue
        by = {}
        for item in miss:
            by.setdefault(item[1], []).append(item)
        for g in by.values():
            folds = ", ".join(dict.fromkeys(n for n, _, _ in g))
            partial.append(f"`{_name(r)}` n/a in {folds}: {_reason_text(g)}, so its cell averages the other "
                           f"{total - len(miss)} fold(s)")
    if not whole and not partial:
        return None
    if not shown:
        if len(whole) == 1:
            return f"left out, n/a for every row: {next(iter(whole))}"
        return "left out, n/a for every row: " + "; ".join(
            f"{text} ({', '.join(dict.fromkeys(m for m, _ in rows))})" for text, rows in whole.items())
    parts = [f"— for {', '.join(dict.fromkeys(m for m, _ in rows))}: {text}" for text, rows in whole.items()]
    return "; ".join(parts + partial)


def _na_lines(recs: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """A note under a table for every column left out or with "—" cells: (column, header) pairs, shown or
    not; columns with the same note share one line."""
    shown = {m for m, _ in columns if any(_value(r, m)[1] for r in recs)}
    merged: dict[str, list[str]] = {}
    for m, header in columns:
        message = _na_message(recs, m, m in shown)
        if message:
            merged.setdefault(message, []).append(header)
    if not merged:
        return []
    return ["Values not shown (\"—\", or a column left out), and why:", ""] + [
        f"- {', '.join(headers)}: {message}." for message, headers in merged.items()]


def _table(recs: list[dict], protocol: str) -> str:
    from tabulate import tabulate

    columns = [(m, LOGRANK_HEADER if m == LOGRANK else h, spec) for m, h, spec in _columns(recs)]
    shown = [(m, h, spec) for m, h, spec in columns if any(_value(r, m)[1] for r in recs)]
    best = {}
    for m, _, spec in shown:
        if spec is None:
            continue
        up = spec.higher_is_better
        means = [(_value(r, m)[0], i) for i, r in enumerate(recs) if not r.get("method_info", {}).get("ceiling")]
        means = [(v, i) for v, i in means if np.isfinite(v)]
        if means:
            target = max(v for v, _ in means) if up else min(v for v, _ in means)
            best[m] = {i for v, i in means if v == target}
    rows = []
    for i, r in enumerate(recs):
        row = [_label(r), f"`{r['config_hash'][:8]}`", f"{len(r['folds'])}"]
        row += [_table_cell(r, m, i in best.get(m, set()), spec) for m, _, spec in shown]
        row.append(reported(r["method"], protocol) or "")
        rows.append(row)
    headers = ["method", "config", "jobs"] + [h for _, h, _ in shown] + ["reported (real data)"]
    text = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    notes = _na_lines(recs, [(m, h) for m, h, _ in columns])
    if notes:
        text += "\n\n" + "\n".join(notes)
    named = [f"- `{r['method']}` (`{r['config_hash'][:8]}`) {k}: " + "; ".join(v)
             for r in recs for k, v in sorted(r.get("provenance", {}).items())]
    if named:
        text += "\n\nInputs beyond the config (weights the rows read):\n\n" + "\n".join(named)
    return text


def _legend(recs: list[dict]) -> list[str]:
    """What the marks on the page's rows mean. A synthetic cohort's pages say that reported numbers (real
    data) are not comparable with it and what its ceiling reads; a real dataset's say neither."""
    if is_synthetic(recs[0]):
        lines = ["- † reads the reference contours at test time; ‡ a ceiling (reads the synthetic cohort's true "
                 "risk), not a method, left out of the bold best. Reported numbers come from the papers, on real "
                 "data: not comparable with a synthetic cohort."]
    else:
        marks = ["† reads the reference contours at test time"]
        if any((r.get("method_info") or {}).get("ceiling") for r in recs):
            marks.append("‡ a ceiling, not a method, left out of the bold best")
        lines = [f"- {'; '.join(marks)}. Reported numbers come from the papers, each on its own cohort and "
                 "splits (named in the cell)."]
    if any(is_external(r) for r in recs):
        lines.append(f"- {EXTERNAL_MARK} {EXTERNAL_NOTE}.")
    return lines


def _header(title: str, recs: list[dict], rows: list[dict] | None = None) -> list[str]:
    """The page's title and facts; ``rows``: every record whose row the page shows (default ``recs``)."""
    r0 = recs[0]
    newest = max(r["newest_run"] for r in recs)
    versions = sorted({r.get("harness_version") or "unknown" for r in recs})
    protocols = sorted({(r["protocol"], r["protocol_version"], r["protocol_hash"]) for r in recs})
    manifest = r0.get("manifest", {})
    lines = [
        f"# {title}", "",
        "<!-- generated by `bench leaderboard` from the run records in records/; do not edit by hand -->", "",
        f"- Dataset: `{r0['dataset']}` (fingerprint `{r0['dataset_fp']}`), scale `{r0['scale']}`",
        f"- Harness: survbench {', '.join(versions)}; newest run record {newest}",
        f"- Cite as: {suite_version(recs)}",
        "- Protocols: " + ", ".join(f"`{n}` v{v} (`{h[:12]}`)" for n, v, h in protocols),
        f"- Metrics (definitions version {manifest.get('metrics_version', '?')}, stored with every run): "
        "C-td = Antolini's time-dependent concordance; Harrell and Uno C; td-AUROC = cumulative/dynamic AUROC "
        "at the protocol's horizons; IBS = IPCW integrated Brier score. Cells: mean ± sd over folds (95 % CI, "
        "fold-stratified patient bootstrap), except the pooled log-rank p: one test on the test patients of "
        "every fold (first seed) pooled, each split at its fold's training-median risk — the p the Kaplan–Meier "
        "plots show.",
        *_legend(rows or recs), "",
    ]
    return lines


def _compare_lines(recs: list[dict], reference: str) -> list[str]:
    """Paired C-td differences against the reference (same folds and patients), Holm-corrected."""
    from tabulate import tabulate

    refs = [r for r in recs if r["method"] == reference and PRIMARY in r.get("replicates", {})]
    if not refs:
        return []
    ref = refs[0]
    rows, ps = [], []
    for r in recs:
        if r is ref or PRIMARY not in r.get("replicates", {}):
            continue
        if [(f["fold"], f["seed"]) for f in r["folds"]] != [(f["fold"], f["seed"]) for f in ref["folds"]]:
            continue
        a = np.asarray(r["replicates"][PRIMARY], float)
        b = np.asarray(ref["replicates"][PRIMARY], float)
        diff = _summary(r, PRIMARY)[0] - _summary(ref, PRIMARY)[0]
        lo, hi = percentile_interval(a - b)
        p = bootstrap_p_value(a - b)
        rows.append([_label(r), f"{diff:+.3f}", f"{lo:+.3f} – {hi:+.3f}", f"{p:.3g}"])
        ps.append(p)
    if not rows:
        return []
    for row, p in zip(rows, holm(np.asarray(ps))):
        row.append(f"{p:.3g}")
    return [f"Paired C-td difference against `{reference}` (same folds and patients; bootstrap CI and p, "
            "Holm-corrected over the rows):", "",
            tabulate(rows, headers=["method", "Δ C-td", "95 % CI", "p", "p (Holm)"], tablefmt="github",
                     disable_numparse=True), ""]


def _order(recs: list[dict]) -> list[dict]:
    return sorted(recs, key=lambda r: (-np.nan_to_num(_summary(r, PRIMARY)[0], nan=-1.0), r["method"], r["config_hash"]))


def _km_plot(rec: dict):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from lifelines import KaplanMeierFitter

        km = rec["km"]
        t, e, h = (np.asarray(km[k], float) for k in ("time", "event", "high"))
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
        for flag, name, colour in ((0, "low risk", "tab:blue"), (1, "high risk", "tab:red")):
            sel = h == flag
            if sel.any():
                KaplanMeierFitter(label=f"{name} (n={int(sel.sum())})").fit(t[sel] / 365.25, e[sel]).plot_survival_function(
                    ax=ax, color=colour)
        p = pooled_logrank(rec)[0]  # the table's "pooled log-rank p"
        ax.set_title(f"{rec['method']} · {rec['protocol']} · log-rank p = {p:.2g}", fontsize=9)
        ax.set_xlabel("years")
        ax.set_ylabel("event-free probability")
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    return draw


def training_plot_name(rec: dict) -> str:
    """``plots/training__<method>__<config8>.png``: the experiment's fits, whichever protocol shows them."""
    return f"plots/training__{rec['method']}__{rec['config_hash'][:8]}.png"


def training_loss_key(series: dict) -> str:
    """The training loss's name in a stored history: ``loss`` (bench.nn.Trainer) or ``train_loss`` (torchtuples,
    deepsurv)."""
    return "loss" if "loss" in series else "train_loss"


def _training_plot(rec: dict):
    """Loss per epoch, one line per fold (validation loss dashed where the fit kept one)."""
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
        for k, h in enumerate(rec["history"]):
            series = h["series"]
            colour = f"C{k % 10}"
            for name, style in ((training_loss_key(series), "-"), ("val_loss", "--")):
                y = [np.nan if v is None else v for v in series.get(name, [])]
                if y:
                    x = series.get("epoch") or list(range(1, len(y) + 1))
                    ax.plot(x[:len(y)], y, style, color=colour, lw=1,
                            label=f"fold {h['fold']}" + (f" seed {h['seed']}" if h["seed"] else "")
                            if name != "val_loss" else None)
        ax.set_title(f"{rec['method']} · training loss (dashed: validation)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    return draw


def _corruption_of(rec: dict) -> dict | None:
    """The corruption section of the record's protocol: kept in the record, or (records written before they
    kept it) read from the shipped protocol with the record's hash; None when not known here."""
    if rec.get("corruption"):
        return rec["corruption"]
    content = shipped_content(rec["protocol"], rec["protocol_hash"])
    return None if content is None else content["corruption"]


def _noise_point(rec: dict) -> tuple[str, float] | None:
    """Where a record sits on the noise-fraction axis, read from its protocol's content: (series, fraction).
    Series: the corruption's other parameters, so fractions of one noise recipe form one curve; "" for an
    uncorrupted protocol, which starts every curve. None for a protocol off that axis (train-side or other
    corruption) or whose content is not known here."""
    c = _corruption_of(rec)
    if c is None:
        return None
    if c["kind"] == "none":
        return "", 0.0
    if c["kind"] == "noise" and c["apply_to"] == ["test"]:
        return json.dumps({k: v for k, v in c.items() if k != "fraction"}, sort_keys=True), float(c["fraction"])
    return None


def _cv_page(slug: str, recs: list[dict], reference: str) -> Page:
    level = {r["protocol"]: (_noise_point(r) or ("", 2.0))[1] for r in recs}
    protocols = sorted(level, key=lambda p: (level[p], p))
    corrupted = any((_corruption_of(r) or {}).get("kind") != "none" for r in recs)
    lines = _header(f"{slug}: cross-validation" + (" (clean and noisy test images)" if corrupted else ""), recs)
    plots = []
    for protocol in protocols:
        group = _order([r for r in recs if r["protocol"] == protocol])
        lines += [f"## `{protocol}`", "", _table(group, protocol), ""]
        lines += _compare_lines(group, reference)
        km = []
        for r in group:
            if r["km"]["time"]:
                name = km_plot_name(r)
                plots.append((f"{slug}/{name}", _km_plot(r)))
                km.append(f"[{_name(r)}]({name})")
        if km:
            lines += ["Kaplan–Meier curves of the risk groups: " + " · ".join(km), ""]
        trained = [r for r in group if r.get("history") and level[protocol] == 0.0]
        for r in trained:
            plots.append((f"{slug}/{training_plot_name(r)}", _training_plot(r)))
        if trained:
            lines += ["Training loss per epoch and fold (one fit per fold serves every protocol): " + " · ".join(
                f"[{_name(r)}]({training_plot_name(r)})" for r in trained), ""]
    return Page(f"{slug}/cv.md", "\n".join(lines).rstrip() + "\n", plots)


def _noise_experiments(recs: list[dict]) -> dict[tuple, dict[float, dict]]:
    """{(method, config, split, noise recipe): {fraction: record}}, each with its clean record at 0.0 and at
    least one noisy fraction."""
    points = [(r, _noise_point(r)) for r in recs]
    clean = {(r["method"], r["config_hash"], json.dumps(r["split"], sort_keys=True)): r
             for r, p in points if p == ("", 0.0)}
    experiments: dict[tuple, dict[float, dict]] = {}
    for r, p in points:
        if p is None and _corruption_of(r) is None:
            log.warning("robustness page: %s under %s left out, its protocol (hash %s) is not a shipped one, so "
                        "its noise level is not known here", r["method"], r["protocol"], r["protocol_hash"][:12])
        if p is None or p[0] == "":
            continue
        exp = (r["method"], r["config_hash"], json.dumps(r["split"], sort_keys=True))
        if exp in clean:
            experiments.setdefault(exp + (p[0],), {0.0: clean[exp]})[p[1]] = r
    return experiments


def _robustness_plot(experiments: dict[tuple, dict[float, dict]]):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for _key, by in sorted(experiments.items()):
            fs = sorted(by)
            mean = [_summary(by[f], PRIMARY)[0] for f in fs]
            line, = ax.plot(fs, mean, marker="o", label=_label(by[fs[0]]))
            if all(PRIMARY in by[f].get("ci", {}) for f in fs):
                ax.fill_between(fs, [by[f]["ci"][PRIMARY][0] for f in fs], [by[f]["ci"][PRIMARY][1] for f in fs],
                                color=line.get_color(), alpha=0.15)
        ax.set_xlabel("fraction of noisy test patients")
        ax.set_ylabel("C-td (95 % CI band)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    return draw


def _robustness_page(slug: str, recs: list[dict]) -> Page | None:
    """C-td against the fraction of noisy test patients, and the corruption suite (types × severities), per
    method (and config), with the registered summary metrics of each axis."""
    experiments = _noise_experiments(recs)
    suite, suite_plots = _suite_lines(slug, recs)
    if not experiments and not suite:
        return None
    shown = [r for v in experiments.values() for r in v.values()] or recs
    rows = shown + [r for pts in _suite(recs).values() for r in pts.records.values()] if suite else shown
    lines = _header(f"{slug}: robustness to corrupted test images", shown, rows)
    plots = []
    if experiments:
        noise, plots = _noise_lines(slug, experiments)
        lines += noise
    lines += suite
    return Page(f"{slug}/robustness.md", "\n".join(lines).rstrip() + "\n", plots + suite_plots)


def _noise_lines(slug: str, experiments: dict[tuple, dict[float, dict]]) -> tuple[list[str], list]:
    """The noise-fraction sweep: C-td per fraction with the registered summaries of that axis, and a plot."""
    from tabulate import tabulate

    summaries = [s for s in loaded_specs(summaries=True) if s.axis == "noise_fraction"]
    fractions = sorted({f for v in experiments.values() for f in v})
    lines = ["A fraction of the test patients gets CT Gaussian and PET Poisson noise (training stays clean; one "
              "trained model per fold serves every fraction). Cells: C-td mean over folds. Relative drop: "
              "(clean − noisy100) / clean. Area: the trapezoid area under C-td against the fraction, over the "
              "fractions run (1.0 = perfect at every level; RobSurv reports a 3.8–4.5 % drop at 50 % noise on "
              "real data).", ""]
    rows = []
    for (method, cfg, *_), by in sorted(experiments.items(), key=lambda kv: -_summary(kv[1][0.0], PRIMARY)[0]):
        means = {f: _summary(r, PRIMARY)[0] for f, r in by.items()}
        row = [_label(by[0.0]), f"`{cfg[:8]}`"] + [f"{means[f]:.3f}" if f in means else "—" for f in fractions]
        row += [s.cell(means) for s in summaries]
        rows.append(row)
    headers = ["method", "config"] + [f"{f:.0%}" for f in fractions] + [s.label for s in summaries]
    lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
              "![C-td against the noise fraction](plots/robustness.png)", ""]
    return lines, [(f"{slug}/plots/robustness.png", _robustness_plot(experiments))]


# --- the corruption suite (types × severities) -----------------------------------------------------------
def _suite(recs: list[dict]) -> dict[tuple, SuitePoints]:
    return suite_experiments(recs, PRIMARY, lambda r: _summary(r, PRIMARY)[0], _corruption_of)


def _suite_types(experiments: dict[tuple, SuitePoints]) -> list[str]:
    found = {t for p in experiments.values() for t in p.by_type}
    return [t for t in SUITE_TYPES if t in found] + sorted(found - set(SUITE_TYPES))


def _triple(rec: dict | None) -> str:
    """C-td with Harrell and Uno beside it (fold means)."""
    if rec is None:
        return "—"
    parts = [_summary(rec, m)[0] for m in (PRIMARY, "cindex_harrell", "cindex_uno")]
    return " · ".join("—" if not np.isfinite(v) else f"{v:.3f}" for v in parts)


def _paired_drop(clean: dict, corrupt: dict) -> tuple[float, float, float] | None:
    """Clean minus corrupted fold-mean C-td of one method, with the bootstrap CI of the difference: both
    records are scored on the same folds, patients and resamples (the resample seed depends on split and
    fold, not on the corruption)."""
    a, b = clean.get("replicates", {}).get(PRIMARY), corrupt.get("replicates", {}).get(PRIMARY)
    if a is None or b is None or len(a) != len(b):
        return None
    if [(f["fold"], f["seed"]) for f in clean["folds"]] != [(f["fold"], f["seed"]) for f in corrupt["folds"]]:
        return None
    lo, hi = percentile_interval(np.asarray(a, float) - np.asarray(b, float))
    return _summary(clean, PRIMARY)[0] - _summary(corrupt, PRIMARY)[0], lo, hi


def _suite_lines(slug: str, recs: list[dict]) -> tuple[list[str], list]:
    """The robustness page's suite section: summaries, the protocols' named movers, one table per type, a
    heatmap of retained discrimination and C-td curves per type."""
    from tabulate import tabulate

    experiments = _suite(recs)
    if not experiments:
        return [], []
    types = _suite_types(experiments)
    summaries = [s for s in loaded_specs(summaries=True) if s.axis == "corruption_suite"]
    clean_of = {k: next(r for r in recs if r["method"] == k[0] and r["config_hash"] == k[1]
                        and json.dumps(r.get("split", {}), sort_keys=True) == k[2]
                        and (_corruption_of(r) or {}).get("kind") == "none") for k in experiments}
    order = sorted(experiments, key=lambda k: (-np.nan_to_num(experiments[k].clean, nan=-1.0), k[0], k[1]))
    mtv = max((experiments[k].clean for k in order if k[0] == "mtv-cox"), default=None)
    lines = ["## Corruption suite", "",
             "Every test patient's images get one corruption at one severity (training stays clean; one trained "
             "model per fold serves every protocol). Type and severity are read from each protocol's content. "
             "R = (C − 0.5) / (C_clean − 0.5) of the fold-mean C-td, averaged over the severities run per type; "
             "mRD = its mean over types (n/a when the clean CI includes 0.5); "
             f"rCE = per type Σ(1 − C) / Σ(1 − C) of `{REFERENCE_METHOD}` over the severities both ran, averaged "
             "over types (below 1: fewer errors than the reference). A method that reads no image shows "
             f"\"{NO_IMAGE}\". C-td counts tied predictions as discordant (Antolini's definition, as pycox "
             "computes it): a method whose prediction a corruption makes constant (mtv-cox without a PET) scores "
             "C-td 0 and R below 0, where Harrell's C beside it is 0.5.", ""]
    rows = []
    for k in order:
        pts, clean = experiments[k], clean_of[k]
        label = _label(clean)
        if mtv is not None and reads_images(clean) and k[0] != "mtv-cox" and pts.clean < mtv:
            label += " (below mtv-cox)"
        row = [label, f"`{k[1][:8]}`", _cell(clean, PRIMARY, False)]
        if not reads_images(clean):
            rows.append(row + [NO_IMAGE] * (len(types) + len(summaries)))
            continue
        per_type = pts.retained_by_type()
        row += [_fmt_r(per_type.get(t)) for t in types] + [s.cell(pts) for s in summaries]
        rows.append(row)
    headers = ["method", "config", "clean C-td"] + [f"R {t}" for t in types] + [s.label for s in summaries]
    lines += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    if mtv is not None:
        lines += ["\"(below mtv-cox)\": an image method whose clean C-td is below that of `mtv-cox`, the reference "
                  "row that reads only the metabolic volume, TLG and SUVmax of the PET.", ""]
    lines += _mover_lines(recs, experiments, clean_of)
    for typ in types:
        sevs = sorted({s for p in experiments.values() for s in p.by_type.get(typ, {})})
        trows = []
        for k in order:
            pts, clean = experiments[k], clean_of[k]
            if typ not in pts.by_type:
                continue
            if not reads_images(clean):
                trows.append([_label(clean), _triple(clean)] + [NO_IMAGE] * len(sevs))
                continue
            trows.append([_label(clean), _triple(clean)] + [_triple(pts.records.get((typ, s))) for s in sevs])
        levels = ["absent"] if typ.startswith("missing-") else [f"s{s}" for s in sevs]  # one level, no severity
        lines += [f"### `{typ}`", "", "Cells: C-td · Harrell · Uno (fold means).", "",
                  tabulate(trows, headers=["method", "clean"] + levels, tablefmt="github", disable_numparse=True), ""]
    lines += ["![retained discrimination per type and severity](plots/suite-heatmap.png)", "",
              "![C-td against severity, per type](plots/suite-curves.png)", ""]
    shown = {k: v for k, v in experiments.items() if reads_images(clean_of[k])}
    return lines, [(f"{slug}/plots/suite-heatmap.png", _suite_heatmap(shown, types)),
                   (f"{slug}/plots/suite-curves.png", _suite_curves(shown, types))]


def _fmt_r(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _mover_lines(recs: list[dict], experiments: dict[tuple, SuitePoints], clean_of: dict) -> list[str]:
    """Each suite protocol names, before any run, the method it is expected to move: that method's paired
    C-td drop (clean − corrupted, same folds and patients) with its bootstrap CI."""
    from tabulate import tabulate

    rows, controls = [], set()
    for k, pts in sorted(experiments.items(), key=lambda kv: kv[0]):
        for (typ, sev), r in sorted(pts.records.items()):
            named = (_corruption_of(r) or {}).get("expected_to_move")
            if named == "none":
                controls.add(typ)
            if named != k[0]:
                continue
            drop = _paired_drop(clean_of[k], r)
            if drop is None:
                continue
            d, lo, hi = drop
            rows.append([f"`{r['protocol']}`", f"`{named}`", f"{d:+.3f}", f"{lo:+.3f} – {hi:+.3f}",
                         "yes" if lo > 0 else "no"])
    lines = []
    if rows:
        lines += ["Expected movers: the method each protocol file names before any run, its paired C-td drop from "
                  "clean (same folds and patients; bootstrap 95 % CI), and whether the CI excludes 0.", "",
                  tabulate(rows, headers=["protocol", "named method", "drop", "95 % CI", "moved"], tablefmt="github",
                           disable_numparse=True), ""]
    if controls:
        lines += [f"Negative controls ({', '.join(f'`{t}`' for t in sorted(controls))}): their protocol files name "
                  "no method, because on the development cohorts these corruptions destroy nothing a reference row "
                  "reads (clean ↔ corrupted ρ of every proxy ≥ 0.8; the measured effect is in each file's "
                  "`[corruption.effect]`). A method that moves under one of them depends on something else.", ""]
    return lines


def _suite_columns(experiments: dict[tuple, SuitePoints], types: list[str]) -> list[tuple[str, int]]:
    return [(t, s) for t in types for s in sorted({s for p in experiments.values() for s in p.by_type.get(t, {})})]


def _suite_heatmap(experiments: dict[tuple, SuitePoints], types: list[str]):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = _suite_columns(experiments, types)
        keys = sorted(experiments, key=lambda k: (-np.nan_to_num(experiments[k].clean, nan=-1.0), k[0]))
        grid = np.array([[experiments[k].retained(t, s) for t, s in cols] for k in keys], dtype=float)
        fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(cols) + 2.5), 0.42 * len(keys) + 1.8), dpi=100)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.0, vmax=1.2, aspect="auto")
        ax.set_xticks(range(len(cols)), [f"{t} s{s}" for t, s in cols], rotation=90, fontsize=7)
        ax.set_yticks(range(len(keys)), [f"{k[0]} ({k[1][:8]})" for k in keys], fontsize=8)
        for i in range(len(keys)):
            for j in range(len(cols)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
        fig.colorbar(im, ax=ax, label="retained discrimination R")
        ax.set_title("R = (C − 0.5) / (C_clean − 0.5); blank: not run or no discrimination to retain", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    return draw


def _suite_curves(experiments: dict[tuple, SuitePoints], types: list[str]):
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(types)
        ncol = min(4, n)
        nrow = -(-n // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow + 0.6), dpi=100, squeeze=False)
        for ax, typ in zip(axes.flat, types):
            for k in sorted(experiments):
                by = experiments[k].by_type.get(typ)
                if not by:
                    continue
                xs = [0] + sorted(by)
                ax.plot(xs, [experiments[k].clean] + [by[s] for s in sorted(by)], marker="o", ms=3, lw=1,
                        label=f"{k[0]} ({k[1][:8]})")
            ax.set_title(typ, fontsize=9)
            ax.set_xlabel("severity (0 = clean)", fontsize=8)
            ax.set_ylabel("C-td", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), fontsize=7)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
    return draw


def _generalisation_page(slug: str, recs: list[dict], reference: str) -> Page | None:
    from tabulate import tabulate

    loco = [r for r in recs if r.get("split", {}).get("kind") == "loco"]
    split = [r for r in recs if r.get("split", {}).get("kind") == "center-split"]
    if not loco and not split:
        return None
    lines = _header(f"{slug}: generalisation across centres", loco + split)
    if loco:
        centres = sorted({f["fold_name"] for r in loco for f in r["folds"]})
        rows = []
        for r in _order(loco):
            by = {f["fold_name"]: f["metrics"].get(PRIMARY) for f in r["folds"]}
            rows.append([_label(r)] + [f"{by[c]:.3f}" if by.get(c) is not None else "—" for c in centres]
                        + [_cell(r, PRIMARY, False)])
        lines += ["## Leave one centre out", "", "C-td on each held-out centre, and pooled (mean ± sd over centres, "
                  "95 % CI).", "", tabulate(rows, headers=["method"] + centres + ["pooled"], tablefmt="github",
                                            disable_numparse=True), ""]
        lines += _loco_na_lines(_order(loco))
        lines += _centre_lines(loco, centres)
        lines += _compare_lines(_order(loco), reference)
    for protocol in sorted({r["protocol"] for r in split}):
        group = _order([r for r in split if r["protocol"] == protocol])
        lines += [f"## `{protocol}`", "", _table(group, protocol), ""]
    return Page(f"{slug}/generalisation.md", "\n".join(lines).rstrip() + "\n", [])


def _loco_na_lines(loco: list[dict]) -> list[str]:
    """Why a held-out centre's C-td is "—": one line per method and reason."""
    lines = []
    for r in loco:
        by: dict[str, list] = {}
        for item in _missing(r, PRIMARY)[0]:
            by.setdefault(item[1], []).append(item)
        for g in by.values():
            lines.append(f"- `{_name(r)}` on {', '.join(dict.fromkeys(n for n, _, _ in g))}: {_reason_text(g)}.")
    return ["C-td not shown (\"—\"), and why:", ""] + lines + [""] if lines else []


def _centre_counts(loco: list[dict]) -> tuple[dict[str, int], dict[str, int]]:
    """Test patients and events per held-out centre: from a record's risk-group data (its test patients),
    else from the per-fold counts newer records keep; empty when the records hold neither."""
    n: dict[str, int] = {}
    events: dict[str, int] = {}
    counted = next((r for r in loco if (r.get("km") or {}).get("time")), None)
    if counted is not None:
        names = {f["fold"]: f["fold_name"] for f in counted["folds"]}
        for fold, event in zip(counted["km"]["fold"], counted["km"]["event"]):
            c = names.get(fold)
            n[c], events[c] = n.get(c, 0) + 1, events.get(c, 0) + int(event)
        return n, events
    for r in loco:
        for f in r["folds"]:
            if "n_test" in f and f["fold_name"] not in n:
                n[f["fold_name"]], events[f["fold_name"]] = int(f["n_test"]), int(f.get("n_events", 0))
    return n, events


def _centre_lines(loco: list[dict], centres: list[str]) -> list[str]:
    """Each held-out centre's test patients and events (from the records) and what the dataset says of it (a
    synthetic cohort: its scanner archetype; a real dataset may say nothing, and still gets the counts)."""
    from tabulate import tabulate

    n, events = _centre_counts(loco)
    facts = next((r["centres"] for r in loco if r.get("centres")), {})
    if not n and not facts:
        return []
    keys = sorted({k for v in facts.values() for k in v})
    rows = [[c, n.get(c, "—"), events.get(c, "—")] + [facts.get(c, {}).get(k, "—") for k in keys] for c in centres]
    return ["Held-out centres: test patients, events" + (" and " + ", ".join(keys) if keys else "") + ".", "",
            tabulate(rows, headers=["centre", "patients", "events"] + keys, tablefmt="github",
                     disable_numparse=True), ""]


def render(out: Path, reference: str = DEFAULT_REFERENCE, records: list[dict] | None = None) -> list[Page]:
    """Every page the records under ``out`` generate (no file is written); ``records``: those records, when the
    caller has read them already."""
    records = load_records(out) if records is None else records
    if not records:
        raise BenchInputError(f"{out / 'records'}: no run records; export some with `bench leaderboard --results DIR`")
    pages = []
    index = ["# Leaderboards", "",
             "<!-- generated by `bench leaderboard` from the run records in records/; do not edit by hand -->", "",
             "Generated from the run records under `records/`. Reproduce them with `make bench` (or the "
             "`bench run` commands in the repository README), then `bench leaderboard`.", ""]
    for slug in sorted({dataset_slug(r["dataset"]) for r in records}):
        recs = [r for r in records if dataset_slug(r["dataset"]) == slug]
        cv = [r for r in recs if r.get("split", {}).get("kind") == "kfold"]
        made = []
        plain = [r for r in cv if suite_point(_corruption_of(r)) is None]  # the suite has its own section
        if plain:
            made.append(_cv_page(slug, plain, reference))
        if cv:
            robust = _robustness_page(slug, cv)
            if robust:
                made.append(robust)
        gen = _generalisation_page(slug, recs, reference)
        if gen:
            made.append(gen)
        index += [f"## `{recs[0]['dataset']}`", ""] + _dataset_note(recs[0]["dataset"]) \
            + [f"- [{Path(p.path).stem}]({p.path})" for p in made] + [""]
        pages += made
    pages.append(Page("README.md", "\n".join(index).rstrip() + "\n", []))
    return pages


def write(out: Path, pages: list[Page]) -> list[str]:
    """Write pages and draw their plots; returns the paths written."""
    done = []
    for page in pages:
        write_if_changed(path_under(out, page.path), page.text)
        done.append(page.path)
        for rel, draw in page.plots:
            plot = path_under(out, rel)
            plot.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(plot, ".png") as tmp:
                draw(tmp)
            done.append(rel)
    return done


def check(out: Path, pages: list[Page]) -> list[str]:
    """Differences between the committed pages and what the records generate (plots: existence only)."""
    problems = []
    for page in pages:
        target = path_under(out, page.path)
        have = target.read_text() if target.is_file() else ""
        if have != page.text:
            diff = difflib.unified_diff(have.splitlines(), page.text.splitlines(), f"committed/{page.path}",
                                        f"generated/{page.path}", lineterm="", n=1)
            problems.append("\n".join(list(diff)[:60]) or f"{page.path}: missing")
        for rel, _ in page.plots:
            if not path_under(out, rel).is_file():
                problems.append(f"{rel}: referenced plot missing")
    return problems


# --- the committed files of one experiment -----------------------------------------------------------------
# Every name carries the first 8 characters of the config hash:
#   runs/<dataset>/<method>__<protocol>__<config8>-<dataset8>-<protocol8>__fold<k>__seed<s>.json   run rows
#   records/<dataset>/<protocol>__<method>__<config8>.json                                        records
#   <dataset>/plots/km__<protocol>__<method>__<config8>.png                                       Kaplan-Meier
#   <dataset>/plots/training__<method>__<config8>.png                                             training loss
# `bench store drop --leaderboards` removes an experiment's files through LeaderboardFiles.

def experiment_files(out: Path, method: str, config_hash: str) -> list[Path]:
    """The files of ``method`` under ``config_hash`` (its first 8 characters name them) in the leaderboard
    folder ``out``: exported run rows, then records, then Kaplan-Meier plots."""
    m, h = file_slug(method), config_hash[:8]
    return (sorted(out.glob(f"runs/*/{m}__*__{h}-*.json")) + sorted(out.glob(f"records/*/*__{m}__{h}.json"))
            + sorted(out.glob(f"*/plots/*__{m}__{h}.png")))


def committed_configs(out: Path, method: str) -> set[str]:
    """The config hashes (8 characters) of ``method`` that have exported rows or records under ``out``."""
    m = file_slug(method)
    return ({p.stem.rsplit("__", 1)[-1] for p in out.glob(f"records/*/*__{m}__*.json")}
            | {p.name.split("__")[2].split("-")[0] for p in out.glob(f"runs/*/{m}__*.json")})


@dataclass(frozen=True)
class LeaderboardFiles:
    """The committed files of one leaderboard folder, as ``bench.store.drop_experiment`` asks for them."""

    out: Path

    def __str__(self) -> str:
        return str(self.out)

    def configs(self, method: str) -> set[str]:
        if not ((self.out / "records").is_dir() or (self.out / "runs").is_dir()):
            raise BenchInputError(f"--leaderboards {self.out}: no records/ or runs/ folder in it (give the leaderboard "
                                  f"folder itself, e.g. leaderboards, not leaderboards/runs)")
        return committed_configs(self.out, method)

    def files(self, method: str, config_hash: str) -> list[Path]:
        return experiment_files(self.out, method, config_hash)


__all__ = ["export_records", "load_records", "render", "write", "check", "dataset_slug", "LeaderboardFiles"]
