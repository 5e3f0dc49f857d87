"""Survival curves for methods that predict only a risk score: a Breslow baseline fitted on the training fold.

The risk score is standardised on the training patients (z = (risk − mean) / sd), a one-covariate Cox slope
β is fitted on z by maximising the Breslow partial likelihood over β in [MIN_SLOPE, MAX_SLOPE] (a bounded
1-D search, so separation or a heavy-tailed score cannot make it diverge), and scikit-survival's
``BreslowEstimator`` gives the baseline survival S0 on the training event times: S_i(t) = S0(t) ** exp(β z_i).

- β is never below MIN_SLOPE, so a derived curve never reverses the method's own ranking (a risk that is
  inverted on the training fold yields nearly flat curves, not flipped ones), and never above MAX_SLOPE
  (a training fold the risk separates perfectly would otherwise push the baseline to 0). Either bound
  being hit is reported as a MetricWarning, so it is stored with the run.
- The curves depend on the risk's values through z, not only on its ranking: exp(risk) and risk give the
  same concordance but different calibration (IBS).
- Grid: the training event times (where S0 changes), thinned to at most MAX_GRID evenly spaced quantiles.
"""
from __future__ import annotations

import warnings

import numpy as np

from bench.metrics import MetricWarning

MIN_SLOPE = 1e-3
MAX_SLOPE = 10.0
MAX_GRID = 1000


def _neg_partial_loglik(beta: float, z: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """−log partial likelihood of one covariate, Breslow ties: every event at t sees the risk set T >= t."""
    lp = beta * z
    shift = lp.max()
    w = np.exp(lp - shift)
    order = np.argsort(-time, kind="stable")
    cum = np.cumsum(w[order])  # cum[k] = Σ w over the k+1 longest times
    ts = time[order]
    # risk set of time t = every patient with T >= t = the prefix of the descending order up to the last T == t
    last = len(ts) - np.searchsorted(ts[::-1], time[event], side="left") - 1
    return float(-(np.sum(lp[event]) - np.sum(np.log(cum[last]) + shift)))


def fit_slope(z: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[float, float | None]:
    """(β used, the maximum-likelihood slope or None when it lies beyond +MAX_SLOPE, i.e. separation).
    A slope at or below −MAX_SLOPE is reported as −MAX_SLOPE."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(_neg_partial_loglik, bounds=(-MAX_SLOPE, MAX_SLOPE), args=(z, time, event),
                          method="bounded", options={"xatol": 1e-6})
    fitted = float(res.x)
    if fitted > MAX_SLOPE - 1e-3:
        return MAX_SLOPE, None
    if fitted < -MAX_SLOPE + 1e-3:
        fitted = -MAX_SLOPE
    return min(max(fitted, MIN_SLOPE), MAX_SLOPE), fitted


def breslow_curves(train_time: np.ndarray, train_event: np.ndarray, train_risk: np.ndarray,
                   risk: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(surv (n, T), times (T,), info) for ``risk``. Needs at least one training event."""
    from sksurv.linear_model.coxph import BreslowEstimator

    train_time = np.asarray(train_time, dtype=float)
    train_event = np.asarray(train_event).astype(bool)
    train_risk = np.asarray(train_risk, dtype=float)
    if not train_event.any():
        raise ValueError("no event in the training fold, so no baseline hazard")
    centre = float(np.median(train_risk))
    scale = float(train_risk.std()) or 1.0
    z_train = (train_risk - centre) / scale
    z = (np.asarray(risk, dtype=float) - centre) / scale
    if np.ptp(z_train) > 0:
        beta, fitted = fit_slope(z_train, train_time, train_event)
    else:
        beta, fitted = MIN_SLOPE, 0.0
    if fitted is None:
        warnings.warn(f"derived survival curves: the risk separates the training fold, Cox slope capped at "
                      f"{MAX_SLOPE:g} per sd", MetricWarning, stacklevel=2)
    elif fitted < MIN_SLOPE:
        warnings.warn(f"derived survival curves: the risk does not rank the training fold (Cox slope "
                      f"{fitted:.3g} per sd), so the curves are nearly flat", MetricWarning, stacklevel=2)
    with np.errstate(over="ignore", divide="ignore"):
        breslow = BreslowEstimator().fit(beta * z_train, train_event, train_time)
    event_times = np.unique(train_time[train_event])
    if len(event_times) > MAX_GRID:
        event_times = np.unique(np.quantile(event_times, np.linspace(0, 1, MAX_GRID), method="nearest"))
    s0 = breslow.baseline_survival_(event_times)
    surv = s0[None, :] ** np.exp(np.clip(beta * z, -50, 50))[:, None]
    info = {"source": "derived: Breslow baseline on the training fold, S0(t)^exp(beta*z), z = risk centred on "
                      "its training median and scaled by its training sd, beta = one-covariate Cox slope in "
                      f"[{MIN_SLOPE:g}, {MAX_SLOPE:g}]",
            "beta": beta, "fitted_beta": fitted}
    return np.clip(surv, 0.0, 1.0), event_times, info


def event_time_grid(time: np.ndarray, event: np.ndarray, n_times: int) -> np.ndarray:
    """``n_times`` quantiles of the training event times (all times when there is no event).

    A Cox curve changes only at training event times: a grid point before the first event would give
    every patient S = 1 there, and Antolini's C-td counts such ties as discordant for every early test event.
    """
    times = np.asarray(time, float)[np.asarray(event, bool)]
    times = times if len(times) else np.asarray(time, float)
    return np.unique(np.quantile(times, np.linspace(0, 1, n_times), method="nearest"))
