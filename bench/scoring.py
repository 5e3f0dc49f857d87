"""Score one job: every metric its protocol reports, bootstrap replicates for the CIs, and a metric manifest.

Inputs are the stored per-patient predictions (so a stored run can be rescored later without refitting):
test ids/risk/time/event, optional survival curves, and the training fold's ids/risk/time/event. What each
metric computes, needs and bootstraps is its ``MetricSpec`` (bench.metric_registry).
"""
from __future__ import annotations

import logging
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import metrics as M
from bench.hashing import content_hash
from bench.metric_registry import BUILTIN, DAYS_PER_YEAR, MetricSpec, ScoreInputs, get_metric, horizon_key

log = logging.getLogger("bench.scoring")
__all__ = ["Scored", "score", "bootstrap_seed", "horizon_key", "DAYS_PER_YEAR", "NO_CURVES"]
# A stored prediction array (text) saying why the job has no survival curves and none may be derived: the metrics
# that need curves are then NaN with that reason (bench.external: predictions without S(t) or training risks).
NO_CURVES = "no_curves"


@dataclass
class Scored:
    metrics: dict[str, float | None]
    notes: list[str]
    manifest: dict[str, Any]
    replicates: dict[str, np.ndarray] = field(default_factory=dict)


def bootstrap_seed(protocol_metrics: dict, split_hash: str, fold: int) -> int:
    """One resample stream per (split, fold): every method, noise level and run seed of that fold is
    bootstrapped on the same patient resamples, so paired comparisons line up and extra run seeds do not
    pass for extra patients."""
    return int(content_hash({"bootstrap_seed": protocol_metrics.get("bootstrap_seed", 0), "split": split_hash,
                             "fold": fold}, 12), 16)


def _inputs(pred: dict[str, Any], years: list[float], manifest: dict) -> ScoreInputs:
    seg = None
    if "dice_inter" in pred:
        seg = (np.asarray(pred["dice_inter"], float), np.asarray(pred["dice_size"], float))
    return ScoreInputs(
        time=np.asarray(pred["time"], dtype=float), event=np.asarray(pred["event"]).astype(bool),
        risk=np.asarray(pred["risk"], dtype=float), train_time=np.asarray(pred["train_time"], dtype=float),
        train_event=np.asarray(pred["train_event"]).astype(bool),
        train_risk=np.asarray(pred["train_risk"], dtype=float), horizons_years=years, segmentation=seg,
        manifest=manifest)


def _attach_curves(x: ScoreInputs, pred: dict[str, Any], specs: list[MetricSpec], metrics: dict) -> None:
    """The method's survival curves, or a Breslow baseline from the training fold when a metric needs
    curves; without a training event there is none, and those metrics are NaN with the reason."""
    surv, times = pred.get("survival"), pred.get("times")
    if surv is not None:
        x.survival, x.surv_times = np.asarray(surv, dtype=float), np.asarray(times, dtype=float)
        x.manifest["survival_curves"] = {"source": "method"}
        return
    curved = [s.name for s in specs if "curves" in s.needs]
    if not curved:
        return
    if NO_CURVES in pred:  # predictions made elsewhere, with neither curves nor training risks to derive them
        why = str(pred[NO_CURVES])
        x.manifest["survival_curves"] = {"source": f"none: {why}"}
        for name in curved:
            metrics[name] = M._nan(f"{name}: n/a, {why}")
        return
    if x.train_event.any():
        from bench.survival import breslow_curves

        x.survival, x.surv_times, info = breslow_curves(x.train_time, x.train_event, x.train_risk, x.risk)
        x.manifest["survival_curves"] = info
        return
    x.manifest["survival_curves"] = {"source": "none: no event in the training fold, so no baseline"}
    for name in curved:
        metrics[name] = M._nan(f"{name}: the method gives no survival curves and the training fold "
                               f"has no event to fit a Breslow baseline")


def score(protocol_metrics: dict, pred: dict[str, Any], *, boot_seed: int) -> Scored:
    """Score one job from its stored prediction arrays (see module docstring)."""
    specs = [get_metric(name) for name in protocol_metrics["report"]]
    years = sorted(float(y) for y in protocol_metrics.get("horizons_years", [1, 2, 3, 5]))
    n_boot = int(protocol_metrics.get("bootstrap", 0))
    manifest: dict[str, Any] = {
        "metrics_version": M.METRICS_VERSION, "time_unit": "days", "horizons_years": years,
        "horizons_days": (np.asarray(years) * DAYS_PER_YEAR).tolist(),
        "definitions": {s.name: s.definition for s in specs},
        "bootstrap": {"n": n_boot, "seed": boot_seed, "kind": "patient resamples within the fold; pooled CI "
                      "= percentiles of the fold-mean over the same resample index"},
    }
    x = _inputs(pred, years, manifest)
    metrics: dict[str, float | None] = {}
    replicates: dict[str, np.ndarray] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", M.MetricWarning)
        _attach_curves(x, pred, specs, metrics)
        for spec in specs:
            if "curves" in spec.needs and x.survival is None:
                continue
            if "segmentation" in spec.needs and x.segmentation is None:
                manifest[spec.name] = "not applicable: the method outputs no segmentation"
                continue
            try:
                metrics.update(spec.values(x))
                if n_boot > 0:
                    replicates.update(spec.bootstrap_replicates(x, n_boot, boot_seed))
            except Exception as exc:
                if spec in BUILTIN:  # the project's own metrics raise only on malformed predictions
                    raise
                log.error("metric %s raised on this job:\n%s", spec.name, traceback.format_exc())
                metrics[spec.name] = M._nan(f"{spec.name}: the metric raised {type(exc).__name__}: {exc}")
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, M.MetricWarning)))
    clean = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in metrics.items()}
    return Scored(clean, notes, manifest, {k: np.asarray(v).astype(np.float32) for k, v in replicates.items()})
