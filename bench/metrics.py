"""Survival metrics (numpy in, float out; ``risk``: higher = earlier event).

Degenerate input gives NaN with a warning that says why; a metric never raises inside a sweep.
"""
from __future__ import annotations

import warnings

import numpy as np


class MetricWarning(UserWarning):
    """A metric could not be computed on this input (the message says why); its value is NaN."""


def _nan(reason: str) -> float:
    warnings.warn(reason, MetricWarning, stacklevel=3)
    return float("nan")


def cindex_harrell(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C; ties in risk count 1/2 (scikit-survival's ``concordance_index_censored``)."""
    from sksurv.metrics import concordance_index_censored

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    if not event.any():
        return _nan("cindex_harrell: no events, so no comparable pairs")
    try:
        return float(concordance_index_censored(event, time, risk)[0])
    except (ValueError, ZeroDivisionError) as exc:
        return _nan(f"cindex_harrell: no comparable pairs ({exc})")


# Metric key -> function(time, event, risk, **context); the runner scores every key listed here that the
# protocol reports. Metrics not implemented yet are recorded as missing, never guessed.
SCORERS = {
    "cindex_harrell": lambda time, event, risk, **_: cindex_harrell(time, event, risk),
}
