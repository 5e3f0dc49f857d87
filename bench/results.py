"""Stored runs as tables: one row per (method, protocol, fold, seed); mean ± sd summaries with fold-stratified
bootstrap CIs; paired comparisons of methods against a reference (Holm-corrected).

CIs and paired tests use the bootstrap replicates stored with each job: replicate b of every job of one
(split, fold, seed) scores the same patient resample, for every method and noise level. The pooled CI is
the 2.5/97.5 percentiles over b of the mean over jobs, i.e. a patient bootstrap stratified by fold.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.errors import BenchInputError
from bench.metric_registry import column_order
from bench.metrics import bootstrap_p_value, holm, percentile_interval
from bench.store import RunKey, Store, describe_row, unpack_arrays

ID_COLUMNS = ["method", "protocol", "protocol_version", "dataset", "scale", "fold", "fold_name", "seed", "status"]
TAIL_COLUMNS = ["fit_seconds", "predict_seconds", "model_reused", "config_hash", "protocol_hash", "dataset_fp",
                "finished_at", "flags", "notes", "error"]
# method fact stored with each job -> (text in summaries, mark on leaderboard pages)
FLAGS = {"ceiling": ("ceiling (reads the true risk)", "‡"),
         "needs_mask_at_test": ("reference contours at test time", "†")}


def method_flags(info: dict) -> str:
    """The flags of a row, from the method facts stored with its job."""
    return "; ".join(text for key, (text, _) in FLAGS.items() if info.get(key))


HIDDEN = ["bootstrap"]  # per-job replicates {metric: array}, only with with_bootstrap=True


def results_frame(store: Store, keys: list[RunKey] | None = None, *, with_bootstrap: bool = False,
                  rows: list[dict] | None = None) -> pd.DataFrame:
    """One row per job; ``rows``: the store's rows when the caller has already read them."""
    if rows is None:
        rows = store.rows() if keys is None else [r for r in (store.row(k) for k in keys) if r is not None]
    records = []
    for r in rows:
        rec = {c: r[c] for c in ID_COLUMNS}
        metrics = json.loads(r["metrics"]) if r["metrics"] else {}
        rec.update({k: (np.nan if v is None else v) for k, v in metrics.items()})
        rec.update({c: r[c] for c in TAIL_COLUMNS if c in r})
        rec["model_reused"] = None if r["model_reused"] is None else bool(r["model_reused"])
        rec["flags"] = method_flags(json.loads(r["env"]).get("method", {}) if r.get("env") else {})
        if with_bootstrap:
            rec["bootstrap"] = unpack_arrays(r["bootstrap"], f"{store.db_path}: the bootstrap replicates of "
                                             f"{describe_row(r)}") if r.get("bootstrap") else None
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    extra = HIDDEN if with_bootstrap else []
    if frame.empty:
        return pd.DataFrame(columns=ID_COLUMNS + TAIL_COLUMNS + extra)
    metric_cols = [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS + HIDDEN]
    return frame[ID_COLUMNS + sorted(metric_cols, key=column_order) + TAIL_COLUMNS + extra]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS + HIDDEN]


def pooled_replicates(jobs: pd.DataFrame, metric: str) -> np.ndarray | None:
    """Replicate b = mean over the jobs of their replicate b (a patient bootstrap stratified by fold, as
    every job of a fold shares its resamples). Jobs whose own value is NaN are left out, as they are of the
    mean; a resample where any remaining job is undefined is dropped (NaN), so the pooled replicate always
    averages the same jobs as the point estimate. None unless every remaining job has replicates."""
    if "bootstrap" not in jobs or jobs.empty or metric not in jobs:
        return None
    use = jobs[np.isfinite(jobs[metric].to_numpy(dtype=float))]
    if use.empty:
        return None
    reps = [b.get(metric) if isinstance(b, dict) else None for b in use["bootstrap"]]
    if any(r is None for r in reps) or len({len(r) for r in reps}) != 1:
        return None
    return np.vstack([np.asarray(r, dtype=float) for r in reps]).mean(axis=0)


GROUP = ["method", "protocol", "protocol_hash", "config_hash", "dataset", "dataset_fp", "scale"]


def summary_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Per experiment — (method, protocol content, config, dataset, scale), pooled over folds and seeds —
    the number of done/total jobs and, per metric, mean, sd and how many folds had a value."""
    if frame.empty:
        return pd.DataFrame()
    metrics = metric_columns(frame)
    out = []
    for key, g in frame.groupby(GROUP, sort=True):
        done = g[g.status == "done"]
        rec = dict(zip(GROUP, key)) | {"done": len(done), "jobs": len(g)}
        for m in metrics:
            v = done[m].dropna().to_numpy(dtype=float)
            rec[f"{m}_mean"] = v.mean() if len(v) else np.nan
            rec[f"{m}_sd"] = v.std(ddof=1) if len(v) > 1 else np.nan
            rec[f"{m}_n"] = len(v)
            rec[f"{m}_low"], rec[f"{m}_high"] = percentile_interval(pooled_replicates(done, m))
        rec["fit_seconds_mean"] = done.fit_seconds.mean() if len(done) else np.nan
        rec["flags"] = next((f for f in g.get("flags", ()) if f), "")  # frames built by hand may lack it
        out.append(rec)
    return pd.DataFrame(out)


def summarise(frame: pd.DataFrame, metrics: list[str] | None = None, ci: str | None = "cindex_td") -> pd.DataFrame:
    """``summary_numbers`` formatted for reading: "mean ± sd", with "(n=k)" when some folds had no value,
    and the 95 % CI of ``ci``; config, dataset and scale columns appear only when they differ between rows."""
    numbers = summary_numbers(frame)
    if numbers.empty:
        return numbers
    present = metric_columns(frame)
    metrics = present if metrics is None else [m for m in metrics if m in present]
    shown = ["method", "protocol"] + [c for c in ("config_hash", "dataset", "scale", "protocol_hash")
                                      if numbers[c].nunique() > 1]
    rows = []
    for _, r in numbers.iterrows():
        rec = {c: r[c] for c in shown} | {"folds": f"{r['done']}/{r['jobs']}"}
        for m in metrics:
            n, mean, sd = r[f"{m}_n"], r[f"{m}_mean"], r[f"{m}_sd"]
            text = "n/a" if n == 0 else f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {sd:.3f}"
            rec[m] = text + (f" (n={n})" if 0 < n < r["done"] else "")
            if m == ci:
                lo, hi = r[f"{m}_low"], r[f"{m}_high"]
                rec[f"{m} 95% CI"] = "n/a" if np.isnan(lo) else f"{lo:.3f}–{hi:.3f}"
        rec["fit s/fold"] = "n/a" if np.isnan(r["fit_seconds_mean"]) else f"{r['fit_seconds_mean']:.1f}"
        rec["flags"] = r["flags"]
        rows.append(rec)
    table = pd.DataFrame(rows)
    return table if table["flags"].astype(bool).any() else table.drop(columns="flags")


def compare(frame: pd.DataFrame, reference: str, metric: str = "cindex_td") -> pd.DataFrame:
    """Every (method, config) against the reference on the same jobs (protocol, dataset, scale, fold,
    seed): the mean paired difference of ``metric``, its fold-stratified bootstrap 95 % CI and two-sided
    p-value, and the p-value Holm-corrected over the comparisons within each protocol.

    ``reference`` is ``METHOD`` or ``METHOD@CONFIG`` (a prefix of the config hash), needed when the store
    holds several configs of METHOD. Needs a ``with_bootstrap=True`` frame."""
    if frame.empty or metric not in frame:
        return pd.DataFrame()
    done = frame[frame.status == "done"]
    method, _, cfg = reference.partition("@")
    refs = done[(done.method == method) & done.config_hash.astype(str).str.startswith(cfg)]
    if refs.empty:
        raise BenchInputError(f"--compare {reference!r}: no finished runs of that method"
                              f"{' and config' if cfg else ''} in this store")
    configs = sorted(set(refs.config_hash))
    if len(configs) > 1:
        raise BenchInputError(f"--compare {reference!r}: the store holds {len(configs)} configs of {method} "
                              f"({', '.join(c[:8] for c in configs)}); name one as {method}@CONFIG")
    ref_config = configs[0]
    job = ["protocol_hash", "dataset_fp", "scale", "fold", "seed"]
    out = []
    for (protocol, phash, dfp, scale), g in done.groupby(["protocol", "protocol_hash", "dataset_fp", "scale"]):
        ref = g[(g.method == method) & (g.config_hash == ref_config)]
        if ref.empty:
            continue
        rows = []
        others = g[~((g.method == method) & (g.config_hash == ref_config))]
        for (other, chash), mg in others.groupby(["method", "config_hash"]):
            pair = mg.merge(ref, on=job, suffixes=("", "_ref"))
            both = pair[np.isfinite(pair[metric].to_numpy(float)) & np.isfinite(pair[f"{metric}_ref"].to_numpy(float))]
            if both.empty:
                continue
            diff = (both[metric] - both[f"{metric}_ref"]).to_numpy(dtype=float)
            reps_a = pooled_replicates(both, metric)
            reps_b = pooled_replicates(
                both[[f"{metric}_ref", "bootstrap_ref"]].rename(columns=lambda c: c.removesuffix("_ref")), metric)
            d = None if reps_a is None or reps_b is None else reps_a - reps_b
            lo, hi = percentile_interval(d)
            rows.append({"protocol": protocol, "method": other, "config_hash": chash, "reference": method,
                         "reference_config": ref_config, "metric": metric, "jobs": len(both),
                         "diff": float(diff.mean()), "low": lo, "high": hi,
                         "p": np.nan if d is None else bootstrap_p_value(d), "protocol_hash": phash,
                         "dataset_fp": dfp, "scale": scale})
        if rows:
            for r, a in zip(rows, holm([r["p"] for r in rows])):
                r["p_holm"] = a
            out.extend(rows)
    return pd.DataFrame(out)
