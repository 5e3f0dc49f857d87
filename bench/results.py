"""Stored runs as tables: one row per (method, protocol, fold, seed), and mean ± sd summaries."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.store import RunKey, Store

ID_COLUMNS = ["method", "protocol", "protocol_version", "dataset", "scale", "fold", "fold_name", "seed", "status"]
TAIL_COLUMNS = ["fit_seconds", "predict_seconds", "model_reused", "config_hash", "protocol_hash", "dataset_fp",
                "finished_at", "notes", "error"]


def results_frame(store: Store, keys: list[RunKey] | None = None) -> pd.DataFrame:
    rows = store.rows() if keys is None else [r for r in (store.row(k) for k in keys) if r is not None]
    records = []
    for r in rows:
        rec = {c: r[c] for c in ID_COLUMNS}
        metrics = json.loads(r["metrics"]) if r["metrics"] else {}
        rec.update({k: (np.nan if v is None else v) for k, v in metrics.items()})
        rec.update({c: r[c] for c in TAIL_COLUMNS if c in r})
        rec["model_reused"] = None if r["model_reused"] is None else bool(r["model_reused"])
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=ID_COLUMNS + TAIL_COLUMNS)
    metric_cols = [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS]
    return frame[ID_COLUMNS + sorted(metric_cols) + TAIL_COLUMNS]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS]


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
        rec["fit_seconds_mean"] = done.fit_seconds.mean() if len(done) else np.nan
        out.append(rec)
    return pd.DataFrame(out)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """``summary_numbers`` formatted for reading: "mean ± sd", with "(n=k)" when some folds had no value;
    config, dataset and scale columns appear only when they differ between rows."""
    numbers = summary_numbers(frame)
    if numbers.empty:
        return numbers
    metrics = metric_columns(frame)
    shown = ["method", "protocol"] + [c for c in ("config_hash", "dataset", "scale", "protocol_hash")
                                      if numbers[c].nunique() > 1]
    rows = []
    for _, r in numbers.iterrows():
        rec = {c: r[c] for c in shown} | {"folds": f"{r['done']}/{r['jobs']}"}
        for m in metrics:
            n, mean, sd = r[f"{m}_n"], r[f"{m}_mean"], r[f"{m}_sd"]
            text = "n/a" if n == 0 else f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {sd:.3f}"
            rec[m] = text + (f" (n={n})" if 0 < n < r["done"] else "")
        rec["fit s/fold"] = "n/a" if np.isnan(r["fit_seconds_mean"]) else f"{r['fit_seconds_mean']:.1f}"
        rows.append(rec)
    return pd.DataFrame(rows)
