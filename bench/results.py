"""Stored runs as tables: one row per (method, protocol, fold, seed), and mean ± sd summaries."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.store import RunKey, Store

ID_COLUMNS = ["method", "protocol", "protocol_version", "dataset", "scale", "fold", "fold_name", "seed", "status"]
TAIL_COLUMNS = ["fit_seconds", "predict_seconds", "model_reused", "config_hash", "protocol_hash", "dataset_fp",
                "finished_at"]


def results_frame(store: Store, keys: list[RunKey] | None = None) -> pd.DataFrame:
    rows = store.rows() if keys is None else [r for r in (store.row(k) for k in keys) if r is not None]
    records = []
    for r in rows:
        rec = {c: r[c] for c in ID_COLUMNS}
        metrics = json.loads(r["metrics"]) if r["metrics"] else {}
        rec.update({k: (np.nan if v is None else v) for k, v in metrics.items()})
        rec.update({c: r[c] for c in TAIL_COLUMNS})
        rec["model_reused"] = None if r["model_reused"] is None else bool(r["model_reused"])
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=ID_COLUMNS + TAIL_COLUMNS)
    metric_cols = [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS]
    return frame[ID_COLUMNS + sorted(metric_cols) + TAIL_COLUMNS]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS + TAIL_COLUMNS]


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over folds (and seeds) per (method, protocol), with counts of done/failed jobs."""
    if frame.empty:
        return pd.DataFrame()
    out = []
    metrics = metric_columns(frame)
    for (method, protocol), g in frame.groupby(["method", "protocol"], sort=True):
        done = g[g.status == "done"]
        rec = {"method": method, "protocol": protocol, "folds": f"{len(done)}/{len(g)}"}
        for m in metrics:
            v = done[m].dropna().to_numpy(dtype=float)
            if len(v) == 0:
                rec[m] = "n/a"
            elif len(v) == 1:
                rec[m] = f"{v[0]:.3f}"
            else:
                rec[m] = f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
        rec["fit s/fold"] = f"{done.fit_seconds.mean():.1f}" if len(done) else "n/a"
        out.append(rec)
    return pd.DataFrame(out)
