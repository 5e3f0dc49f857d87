"""Score one job: every metric its protocol reports, bootstrap replicates for the CIs, and a metric manifest.

Inputs are the stored per-patient predictions (so a stored run can be rescored later without refitting):
test ids/risk/time/event, optional survival curves, and the training fold's ids/risk/time/event.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import metrics as M
from bench.hashing import content_hash

log = logging.getLogger("bench.scoring")
DAYS_PER_YEAR = 365.25
IBS_POINTS = 100
BOOTSTRAPPED = ("cindex_td", "cindex_harrell", "cindex_uno", "td_auc", "ibs")

DEFINITIONS = {
    "cindex_td": "Antolini time-dependent C on survival curves (pycox concordance_td('antolini')); curves read "
                 "as right-continuous steps, ties in S count 0",
    "cindex_harrell": "Harrell's C on the risk; ties in risk count 1/2; an event is comparable with later "
                      "times and censorings at its own time (scikit-survival concordance_index_censored)",
    "cindex_uno": "Uno's IPCW C, weights 1/G(T)^2 with G the censoring Kaplan-Meier of the training fold; "
                  "tau = none, test events after the last training time left out (sksurv concordance_index_ipcw)",
    "td_auc": "cumulative/dynamic AUROC at each horizon (IPCW cases, controls alive after it), mean weighted "
              "by the test Kaplan-Meier (sksurv cumulative_dynamic_auc); horizons outside the test or "
              "training follow-up are NaN and left out of the mean",
    "ibs": "IPCW integrated Brier score (sksurv integrated_brier_score) on 100 equally spaced times in "
           "(0, last horizon], restricted to the test follow-up [min, max) and the training follow-up",
    "logrank_p": "log-rank p between risk > training-fold median risk and the rest (lifelines logrank_test)",
    "dice": "aggregate Dice per label over the fold's patients, 2*sum|A∩B| / sum(|A|+|B|) (HECKTOR)",
}


@dataclass
class Scored:
    metrics: dict[str, float | None]
    notes: list[str]
    manifest: dict[str, Any]
    replicates: dict[str, np.ndarray] = field(default_factory=dict)


def horizon_key(years: float) -> str:
    return f"td_auc_{years:g}y"


def bootstrap_seed(protocol_metrics: dict, split_hash: str, fold: int) -> int:
    """One resample stream per (split, fold): every method, noise level and run seed of that fold is
    bootstrapped on the same patient resamples, so paired comparisons line up and extra run seeds do not
    pass for extra patients."""
    return int(content_hash({"bootstrap_seed": protocol_metrics.get("bootstrap_seed", 0), "split": split_hash,
                             "fold": fold}, 12), 16)


def score(protocol_metrics: dict, pred: dict[str, Any], *, boot_seed: int) -> Scored:
    """Score one job from its stored prediction arrays (see module docstring)."""
    report = list(protocol_metrics["report"])
    years = sorted(float(y) for y in protocol_metrics.get("horizons_years", [1, 2, 3, 5]))
    horizons = np.asarray(years) * DAYS_PER_YEAR
    n_boot = int(protocol_metrics.get("bootstrap", 0))
    t = np.asarray(pred["time"], dtype=float)
    e = np.asarray(pred["event"]).astype(bool)
    risk = np.asarray(pred["risk"], dtype=float)
    train_risk = np.asarray(pred["train_risk"], dtype=float)
    tt = np.asarray(pred["train_time"], dtype=float)
    te = np.asarray(pred["train_event"]).astype(bool)
    manifest: dict[str, Any] = {
        "metrics_version": M.METRICS_VERSION, "time_unit": "days", "horizons_years": years,
        "horizons_days": horizons.tolist(),
        "definitions": {k: DEFINITIONS[k] for k in report if k in DEFINITIONS},
        "bootstrap": {"n": n_boot, "seed": boot_seed, "kind": "patient resamples within the fold; pooled CI "
                      "= percentiles of the fold-mean over the same resample index"},
    }
    metrics: dict[str, float | None] = {}
    replicates: dict[str, np.ndarray] = {}
    ibs_grid = np.linspace(0.0, horizons[-1], IBS_POINTS + 1)[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.MetricWarning)
        surv, times = pred.get("survival"), pred.get("times")
        if surv is not None:
            surv, times = np.asarray(surv, dtype=float), np.asarray(times, dtype=float)
            manifest["survival_curves"] = {"source": "method"}
        elif any(k in report for k in ("cindex_td", "ibs")):
            if te.any():
                from bench.survival import breslow_curves

                surv, times, info = breslow_curves(tt, te, train_risk, risk)
                manifest["survival_curves"] = info
            else:
                manifest["survival_curves"] = {"source": "none: no event in the training fold, so no baseline"}
                for key in ("cindex_td", "ibs"):
                    if key in report:
                        metrics[key] = M._nan(f"{key}: the method gives no survival curves and the training fold "
                                              f"has no event to fit a Breslow baseline")
        calls = {
            "cindex_td": (M.cindex_td, (t, e, surv), {"surv_times": times}),
            "cindex_harrell": (M.cindex_harrell, (t, e, risk), {}),
            "cindex_uno": (M.cindex_uno, (t, e, risk), {"train_time": tt, "train_event": te}),
            "td_auc": (M.td_auc, (t, e, risk), {"horizons": horizons, "train_time": tt, "train_event": te}),
            "ibs": (M.integrated_brier, (t, e, surv),
                    {"surv_times": times, "train_time": tt, "train_event": te, "horizons": ibs_grid}),
        }
        for key in report:
            if key in ("cindex_td", "ibs") and surv is None:
                continue
            if key in calls:
                fn, args, kw = calls[key]
                value = fn(*args, **kw)
                if key == "td_auc":
                    aucs, mean = value
                    metrics["td_auc"] = mean
                    for y, a in zip(years, aucs):
                        metrics[horizon_key(y)] = a
                else:
                    metrics[key] = value
                if n_boot > 0 and key in BOOTSTRAPPED:
                    reps = M.bootstrap_replicates(fn, *args, n=n_boot, seed=boot_seed, full=key == "td_auc", **kw)
                    if key == "td_auc":
                        replicates["td_auc"] = reps[:, -1]
                        for j, y in enumerate(years):
                            replicates[horizon_key(y)] = reps[:, j]
                    else:
                        replicates[key] = reps
            elif key == "logrank_p":
                threshold = float(np.median(train_risk))
                metrics["logrank_p"] = M.logrank_p(t, e, risk, threshold)
                manifest["logrank_threshold"] = threshold
            elif key == "dice":
                if "dice_inter" in pred:
                    inter, size = np.asarray(pred["dice_inter"], float), np.asarray(pred["dice_size"], float)
                    for j, label in enumerate(("gtvp", "gtvn")):
                        s = size[:, j].sum()
                        metrics[f"dice_{label}"] = 2 * inter[:, j].sum() / s if s else M._nan(
                            f"dice_{label}: the label is in no mask of this fold")
                    if n_boot > 0:  # the same patient resamples as the survival metrics
                        reps = M.dice_replicates(inter, size, n=n_boot, seed=boot_seed)
                        for j, label in enumerate(("gtvp", "gtvn")):
                            replicates[f"dice_{label}"] = reps[:, j]
                        manifest["bootstrap"]["dice"] = True
                else:
                    manifest["dice"] = "not applicable: the method outputs no segmentation"
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, M.MetricWarning)))
    clean = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in metrics.items()}
    return Scored(clean, notes, manifest, {k: v.astype(np.float32) for k, v in replicates.items()})
