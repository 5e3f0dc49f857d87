"""Survival and segmentation metrics: numpy (and scipy) in, floats out. No torch.

Conventions (../shared/specs/protocols-and-metrics.md):

- ``risk``: higher means an earlier event. ``surv``: shape (n_patients, n_times) on increasing ``surv_times``;
  a curve is read as a right-continuous step function — the value at time t is the value at the last grid
  time <= t, and before the first grid time the first value (pycox's ``steps='post'``, clipped).
- Comparable pair (Harrell, Uno, Antolini): patient i has an event and T_j > T_i, or T_j == T_i and j is
  censored. Ties in risk count 1/2 for Harrell and Uno (exact ties); Antolini counts strict S_i < S_j only.
- IPCW weights use G, the Kaplan–Meier estimate of the censoring distribution on the *training* outcomes,
  with scikit-survival's conventions: at a tied time deaths come before censorings, and G is evaluated at
  the time itself (right-continuous), not its left limit. G is undefined after the last training time
  (unless it has reached 0 there), so IPCW metrics only use test events inside the training follow-up.
- Degenerate input (no comparable pairs, no event before τ, a horizon outside follow-up, an empty group)
  returns NaN with a :class:`MetricWarning` that says why. Nothing here raises on data inside a sweep;
  malformed arguments (wrong shapes, NaN times) raise ``ValueError``.

Speed: the concordance indices are O(n log n) (a merge-sort tree counts, for every event, the later
patients with lower risk), C-td is O(n·T) for T grid times, the IPCW metrics O(n log n) per horizon. The
bootstrap resamples patients with replacement; for the pairwise metrics it scores all resamples at once as
quadratic forms in the resample counts (cᵀAc / cᵀDc), for the Brier score as a linear form, so 1 000
resamples cost about one matrix product. Both paths give identical numbers (tested).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator

import numpy as np

METRICS_VERSION = "2"  # bump when a definition changes: finished rows are rescored from their stored predictions

__all__ = [
    "MetricWarning", "cindex_harrell", "cindex_uno", "cindex_td", "td_auc", "integrated_brier", "dice",
    "dice_aggregate", "logrank_p", "bootstrap_replicates", "bootstrap_ci", "paired_compare", "holm",
    "bootstrap_p_value", "percentile_interval", "dice_counts",
    "surv_at", "METRICS_VERSION", "dice_replicates",
]


class MetricWarning(UserWarning):
    """A metric could not be computed (or only in part) on this input; the message says why."""


def _nan(reason: str) -> float:
    warnings.warn(reason, MetricWarning, stacklevel=3)
    return float("nan")


# --- argument checks ----------------------------------------------------------------------------------

def _outcomes(time: Any, event: Any, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    e = np.asarray(event)
    if t.ndim != 1 or e.ndim != 1 or len(t) != len(e):
        raise ValueError(f"{what}time and {what}event must be 1-D arrays of one length, got {t.shape} and {e.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{what}time has NaN or infinite values")
    if e.dtype != bool:
        ef = e.astype(float)
        if not np.all((ef == 0) | (ef == 1)):
            raise ValueError(f"{what}event must be 0/1 or boolean")
        e = ef == 1
    return t, e


def _per_patient(x: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1 or len(a) != n:
        raise ValueError(f"{what} must be 1-D with one value per patient ({n}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} has NaN or infinite values")
    return a


def _curves(surv: Any, surv_times: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(surv, dtype=float)
    g = np.asarray(surv_times, dtype=float)
    if g.ndim != 1 or len(g) == 0 or np.any(np.diff(g) <= 0) or not np.all(np.isfinite(g)):
        raise ValueError("surv_times must be a non-empty, finite, strictly increasing 1-D array")
    if s.shape != (n, len(g)):
        raise ValueError(f"surv must have shape (n_patients, n_times) = {(n, len(g))}, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("surv has NaN or infinite values")
    return s, g


def surv_at(surv: np.ndarray, surv_times: np.ndarray, times: Any) -> np.ndarray:
    """Survival curves read at ``times``: the value at the last grid time <= t, clipped to the first."""
    idx = np.clip(np.searchsorted(surv_times, np.asarray(times, dtype=float), side="right") - 1, 0, len(surv_times) - 1)
    return surv[:, idx]


PAIRWISE_MAX = 1500  # up to this many patients C-td uses the direct n × n form (IBS: up to n·K = 100 000)


# --- counting core: for each query, how many later patients have a lower value --------------------------

def _prefix_less(vals: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each query k: #{j < q_k : vals[j] < v_k}. ``vals``, ``v`` non-negative ints (ranks).

    Merge-sort tree, one vectorised level at a time: the prefix [0, q) is the union of one block of size
    2^k for every bit k set in q; at level k the values are sorted within blocks (key = block·Y + value), so
    one ``searchsorted`` counts the values below v inside the block. O((n + m) log² n), all in numpy.
    """
    n = len(vals)
    counts = np.zeros(len(q), dtype=np.int64)
    if n == 0 or len(q) == 0:
        return counts
    big = np.int64(max(int(vals.max()), int(v.max())) + 2)
    vals = vals.astype(np.int64)
    v = v.astype(np.int64)
    q = q.astype(np.int64)
    pos = np.arange(n, dtype=np.int64)
    k = 0
    while (1 << k) <= n:
        has = ((q >> k) & 1).astype(bool)
        if has.any():
            keys = np.sort((pos >> k) * big + vals)
            block = (q[has] >> k) - 1
            counts[has] += np.searchsorted(keys, block * big + v[has], side="left") - block * (1 << k)
        k += 1
    return counts


def _suffix_less_equal(x: np.ndarray, q: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query k, over positions j >= q_k of ``x``: (#{x_j < v_k}, #{x_j == v_k})."""
    allv, inv = np.unique(np.concatenate([x, v]), return_inverse=True)
    xr, vr = inv[: len(x)], inv[len(x):]
    sx = np.sort(xr)
    total_lt = np.searchsorted(sx, vr, side="left")
    total_le = np.searchsorted(sx, vr, side="right")
    pre = _prefix_less(xr, np.concatenate([q, q]), np.concatenate([vr, vr + 1]))
    lt = total_lt - pre[: len(q)]
    le = total_le - pre[len(q):]
    return lt, le - lt


class _Pairs:
    """Comparable-pair structure of (time, event): patients ordered by time, events before censored at a
    tied time; event i is comparable with every patient at position >= q_i."""

    def __init__(self, time: np.ndarray, event: np.ndarray):
        self.n = len(time)
        _, trank = np.unique(time, return_inverse=True)
        key = trank.astype(np.int64) * 2 + (~event)
        self.order = np.argsort(key, kind="stable")
        skey = key[self.order]
        self.events = np.flatnonzero(event)
        self.q = np.searchsorted(skey, trank[self.events].astype(np.int64) * 2 + 1, side="left")
        self.comparable = self.n - self.q  # per event


def _comparable_matrix(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """D[i, j] = 1 when (i, j) is a comparable pair (i has the event first)."""
    later = time[None, :] > time[:, None]
    tied_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    return (event[:, None] & (later | tied_censored)).astype(float)


# --- concordance ------------------------------------------------------------------------------------------

def _weighted_harrell(time, event, risk, weights, what: str) -> float:
    pairs = _Pairs(time, event)
    w = weights[pairs.events]
    den = float(np.sum(w * pairs.comparable))
    if den <= 0:
        return _nan(f"{what}: no comparable pairs (need an event followed by a longer follow-up)")
    lt, eq = _suffix_less_equal(risk[pairs.order], pairs.q, risk[pairs.events])
    return float(np.sum(w * (lt + 0.5 * eq)) / den)


def cindex_harrell(time: Any, event: Any, risk: Any) -> float:
    """Harrell's C: the fraction of comparable pairs ordered correctly by risk; exact risk ties count 1/2.

    Equals scikit-survival's ``concordance_index_censored`` (which also counts risks within 1e-8 as tied)
    and the HECKTOR evaluator.
    """
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    if not e.any():
        return _nan("cindex_harrell: no events, so no comparable pairs")
    return _weighted_harrell(t, e, r, np.ones(len(t)), "cindex_harrell")


def _risk_table(time: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None):
    """Per unique time u (increasing): (u, patients with that time, deaths at it, number at risk T >= u),
    counting only the patients with ``weight`` (a 0/1 mask) when given."""
    u, inv = np.unique(time, return_inverse=True)
    w = np.ones(len(time)) if weight is None else np.asarray(weight, dtype=float)
    total = np.bincount(inv, weights=w, minlength=len(u))
    deaths = np.bincount(inv, weights=w * event, minlength=len(u))
    return u, total, deaths, total[::-1].cumsum()[::-1]


class _Censoring:
    """Kaplan–Meier of the censoring distribution (scikit-survival's conventions, see module doc)."""

    def __init__(self, train_time: np.ndarray, train_event: np.ndarray):
        if len(train_time) == 0:
            raise ValueError("train_time is empty: the IPCW metrics need the training outcomes")
        u, total, deaths, at_risk = _risk_table(train_time, train_event)
        cens = total - deaths
        denom = at_risk - deaths
        ratio = np.divide(cens, denom, out=np.zeros(len(u)), where=cens != 0)
        self.times = np.concatenate([[-np.inf], u])
        self.prob = np.concatenate([[1.0], np.cumprod(1.0 - ratio)])
        self.last = float(u[-1])

    def covers(self, t: Any) -> np.ndarray:
        """Where G is defined: up to the last training time, or everywhere once it has fallen to 0."""
        return (np.asarray(t, dtype=float) <= self.last) | (self.prob[-1] == 0)

    def __call__(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G(t), defined)."""
        t = np.asarray(t, dtype=float)
        g = self.prob[np.searchsorted(self.times, t, side="right") - 1]
        return np.where(t > self.last, 0.0, g), self.covers(t)


def _uno_weights(time, event, train_time, train_event, tau, what) -> np.ndarray:
    tt, te = _outcomes(train_time, train_event, "train_")
    cens = _Censoring(tt, te)
    g, defined = cens(time)
    use = event.copy()
    if tau is not None:
        use &= time < tau
    outside = use & ~defined
    if outside.any():
        warnings.warn(f"{what}: {int(outside.sum())} test event(s) after the last training time "
                      f"{cens.last:g} are left out (the censoring distribution is unknown there)",
                      MetricWarning, stacklevel=3)
    zero = use & defined & (g <= 0)
    if zero.any():
        warnings.warn(f"{what}: {int(zero.sum())} test event(s) where the censoring survival is 0 are left out",
                      MetricWarning, stacklevel=3)
    use &= defined & (g > 0)
    w = np.zeros(len(time))
    w[use] = 1.0 / g[use] ** 2
    return w


def cindex_uno(time: Any, event: Any, risk: Any, train_time: Any, train_event: Any, tau: float | None = None) -> float:
    """Uno's C: Harrell's pairs weighted by 1/G(T_i)² (G from the training outcomes), events before ``tau``.

    Equals scikit-survival's ``concordance_index_ipcw``. Where that raises (test events after the last
    training time), this leaves those events out with a :class:`MetricWarning`.
    """
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    if not e.any():
        return _nan("cindex_uno: no events, so no comparable pairs")
    w = _uno_weights(t, e, train_time, train_event, tau, "cindex_uno")
    if not w.any():
        return _nan(f"cindex_uno: no event before tau={tau} inside the training follow-up")
    return _weighted_harrell(t, e, r, w, "cindex_uno")


def cindex_td(time: Any, event: Any, surv: Any, surv_times: Any) -> float:
    """Antolini's time-dependent concordance: over comparable pairs (i, j), the fraction with
    S_i(T_i) < S_j(T_i) (both curves read at i's event time; ties count 0).

    Equals pycox's ``EvalSurv(...).concordance_td('antolini')``. O(n·T): for each grid column with events,
    patients in later grid intervals are counted against the sorted event values, and patients in the same
    interval through the merge-sort tree.
    """
    t, e = _outcomes(time, event)
    s, grid = _curves(surv, surv_times, len(t))
    if not e.any():
        return _nan("cindex_td: no events, so no comparable pairs")
    pairs = _Pairs(t, e)
    den = float(pairs.comparable.sum())
    if den <= 0:
        return _nan("cindex_td: no comparable pairs (need an event followed by a longer follow-up)")
    n, n_grid = s.shape
    col = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, n_grid - 1)
    if n <= PAIRWISE_MAX:  # small samples: one n × n comparison beats the per-column loop
        ev = pairs.events
        at_i = s[:, col[ev]].T  # at_i[k, j] = S_j at event k's grid time
        own = s[ev, col[ev]]
        te = t[ev][:, None]
        comparable = (t[None, :] > te) | ((t[None, :] == te) & ~e[None, :])
        _warn_tied_curves(int(np.count_nonzero(comparable & (at_i == own[:, None]))), den)
        return float(np.count_nonzero(comparable & (at_i > own[:, None])) / den)
    order = pairs.order
    sorted_time = t[order]
    bounds = np.concatenate([[0], np.searchsorted(sorted_time, grid[1:], side="left"), [n]])
    st = np.ascontiguousarray(s.T)
    pos_of = np.empty(n, dtype=np.int64)
    pos_of[order] = np.arange(n)
    ev, ev_q = pairs.events, pairs.q
    ev_col = col[ev]
    num = 0
    tied = 0
    for g in np.unique(ev_col):
        sel = ev_col == g
        members, q = ev[sel], ev_q[sel]
        row = st[g]
        si = row[members]
        lo, hi = bounds[g], bounds[g + 1]
        if hi < n:  # patients in later intervals are all comparable: count those with S_j > S_i
            later = row[order[hi:]]
            uq = np.unique(si)
            hist = np.bincount(np.searchsorted(uq, later, side="left"), minlength=len(uq) + 1)
            above = np.cumsum(hist[::-1])[::-1]  # above[m] = #{later values > uq[m-1]}
            num += int(above[np.searchsorted(uq, si) + 1].sum())
            equal = np.bincount(np.searchsorted(uq, later[np.isin(later, uq)]), minlength=len(uq))
            tied += int(equal[np.searchsorted(uq, si)].sum())
        # same interval: positions in [q_i, hi) with S_j > S_i (negate to count "less")
        block = -row[order[lo:hi]]
        lt, eq = _suffix_less_equal(block, q - lo, -si)
        num += int(lt.sum())
        tied += int(eq.sum())
    _warn_tied_curves(tied, den)
    return float(num / den)


def _warn_tied_curves(tied: int, den: float) -> None:
    """Antolini counts a comparable pair whose curves tie at the event time as discordant; say how many."""
    if tied > 0.01 * den:
        warnings.warn(f"cindex_td: {tied / den:.0%} of comparable pairs have tied survival at the event time, "
                      f"which Antolini's C counts as discordant (Harrell's C counts risk ties 1/2)",
                      MetricWarning, stacklevel=3)


# --- time-dependent AUC and Brier ---------------------------------------------------------------------

def _km_at(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Kaplan–Meier survival of (time, event) read at ``at`` (right-continuous)."""
    u, _, deaths, at_risk = _risk_table(time, event)
    km = np.cumprod(1.0 - deaths / at_risk)
    idx = np.searchsorted(u, at, side="right") - 1
    return np.where(idx >= 0, km[np.maximum(idx, 0)], 1.0)


def _mean_auc(aucs: np.ndarray, horizons: np.ndarray, km: np.ndarray) -> float:
    """Σ AUC_k ΔS_k / (1 − S_last) over the valid horizons in increasing order (S: test Kaplan–Meier)."""
    ok = np.isfinite(aucs)
    if not ok.any():
        return float("nan")
    if ok.sum() == 1:
        return float(aucs[ok][0])
    order = np.argsort(horizons[ok], kind="stable")
    aucs, s = aucs[ok][order], km[ok][order]
    keep = np.concatenate([[True], np.diff(horizons[ok][order]) > 0])  # a repeated horizon counts once
    aucs, s = aucs[keep], s[keep]
    d = -np.diff(np.concatenate([[1.0], s]))
    if 1.0 - s[-1] <= 0:
        return float("nan")
    return float(np.sum(aucs * d) / (1.0 - s[-1]))


def td_auc(time: Any, event: Any, risk: Any, horizons: Any, train_time: Any, train_event: Any
           ) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUROC at each horizon t: cases T_i <= t with an event (weight 1/G(T_i)), controls
    T_j > t; risk ties count 1/2. The mean weights each horizon by the drop of the test set's Kaplan–Meier
    (scikit-survival's ``cumulative_dynamic_auc``, which this equals).

    A horizon outside the test follow-up [min, max), after the training follow-up, or without cases is NaN
    with a :class:`MetricWarning`; the mean is over the remaining horizons (scikit-survival raises instead).
    """
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    h = np.atleast_1d(np.asarray(horizons, dtype=float))
    if h.ndim != 1 or len(h) == 0 or not np.all(np.isfinite(h)):
        raise ValueError("horizons must be a non-empty 1-D array of finite times")
    tt, te = _outcomes(train_time, train_event, "train_")
    if len(t) == 0:
        return np.full(len(h), np.nan), _nan("td_auc: the test sample is empty")
    cens = _Censoring(tt, te)
    g, defined = cens(t)
    aucs = np.full(len(h), np.nan)
    for k, hk in enumerate(h):
        reason = _horizon_problem(hk, t, cens)
        case = e & (t <= hk)
        control = t > hk
        if reason is None and not case.any():
            reason = "no event before it"
        if reason is None and np.any(g[case] <= 0):
            reason = "the censoring survival is 0 at a case's time"
        if reason is not None:
            warnings.warn(f"td_auc: horizon {hk:g} left out ({reason})", MetricWarning, stacklevel=2)
            continue
        w = 1.0 / g[case]
        rc, rn = r[case], np.sort(r[control])
        below = np.searchsorted(rn, rc, side="left")
        tied = np.searchsorted(rn, rc, side="right") - below
        aucs[k] = float(np.sum(w * (below + 0.5 * tied)) / (w.sum() * len(rn)))
    if not np.isfinite(aucs).any():
        return aucs, _nan("td_auc: no horizon inside the follow-up, so no mean AUC")
    return aucs, _mean_auc(aucs, h, _km_at(t, e, h))


def _horizon_problem(hk: float, t: np.ndarray, cens: _Censoring) -> str | None:
    if hk < t.min() or hk >= t.max():
        return f"outside the test follow-up [{t.min():g}, {t.max():g})"
    if not cens.covers(hk):
        return f"after the last training time {cens.last:g}"
    return None


def _brier_terms(t, e, s_at, times, cens) -> np.ndarray:
    """Per-patient, per-time IPCW Brier terms L[i, k] (the Brier score at t_k is the mean over i)."""
    g_t, _ = cens(times)
    g_y, _ = cens(t)
    inv_t = np.divide(1.0, g_t, out=np.zeros_like(g_t), where=g_t > 0)
    inv_y = np.divide(1.0, g_y, out=np.zeros_like(g_y), where=g_y > 0)
    case = e[:, None] & (t[:, None] <= times[None, :])
    control = t[:, None] > times[None, :]
    return s_at ** 2 * case * inv_y[:, None] + (1.0 - s_at) ** 2 * control * inv_t[None, :]


def _ibs_times(surv_times, horizons) -> np.ndarray:
    times = np.asarray(surv_times if horizons is None else horizons, dtype=float)
    times = np.unique(np.atleast_1d(times))
    if not np.all(np.isfinite(times)):
        raise ValueError("horizons must be finite")
    return times


def integrated_brier(time: Any, event: Any, surv: Any, surv_times: Any, train_time: Any, train_event: Any,
                     horizons: Any = None) -> float:
    """Integrated Brier score with IPCW (Graf), trapezoidal over the evaluation times divided by their span.

    Evaluation times: ``horizons`` if given, else the curve's own ``surv_times``; only those inside the
    test follow-up [min, max) and the training follow-up are used (at least two are needed). Equals
    scikit-survival's ``integrated_brier_score`` on those times (which raises when any test time is after
    the last training time; here those patients are controls with weight 1/G(t) and need no G of their own).
    """
    t, e = _outcomes(time, event)
    s, grid = _curves(surv, surv_times, len(t))
    tt, te = _outcomes(train_time, train_event, "train_")
    if len(t) == 0:
        return _nan("ibs: the test sample is empty")
    cens = _Censoring(tt, te)
    times = _ibs_times(grid, horizons)
    times = times[(times >= t.min()) & (times < t.max()) & cens.covers(times)]
    if len(times) < 2:
        return _nan("ibs: fewer than two evaluation times inside the test and training follow-up")
    if len(t) * len(times) <= 100_000:  # small: the n × K term matrix at once
        bs = _brier_terms(t, e, surv_at(s, grid, times), times, cens).mean(axis=0)
        return float(np.trapezoid(bs, times) / (times[-1] - times[0]))
    # Sorted by time, the cases at t_k are events among the first p_k patients and the controls the rest,
    # so each Brier score is two slice sums (no n × K masks).
    order = np.argsort(t, kind="stable")
    ts = t[order]
    s_sorted = np.ascontiguousarray(surv_at(s[order], grid, times).T)  # (K, n)
    g_t, _ = cens(times)
    g_y, _ = cens(ts)
    w_case = np.divide(1.0, g_y, out=np.zeros_like(g_y), where=g_y > 0) * e[order]
    inv_t = np.divide(1.0, g_t, out=np.zeros_like(g_t), where=g_t > 0)
    p = np.searchsorted(ts, times, side="right")
    bs = np.empty(len(times))
    for k, pk in enumerate(p):
        head, tail = s_sorted[k, :pk], 1.0 - s_sorted[k, pk:]
        # elementwise sums, not BLAS dot: tiny BLAS calls thrash when threads compete for cores
        bs[k] = (np.sum(head * head * w_case[:pk]) + inv_t[k] * np.sum(tail * tail)) / len(t)
    return float(np.trapezoid(bs, times) / (times[-1] - times[0]))


# --- log-rank and Dice ----------------------------------------------------------------------------------

def logrank_p(time: Any, event: Any, risk: Any, threshold: float) -> float:
    """Log-rank test p-value between the high-risk group (risk > threshold) and the rest.

    The usual two-group statistic (hypergeometric variance, tied times grouped), χ² with 1 df; equals
    lifelines' ``logrank_test``.
    """
    from scipy.special import chdtrc

    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    high = r > threshold
    if high.all() or not high.any():
        return _nan(f"logrank_p: every patient is in one risk group (threshold {threshold:g})")
    if not e.any():
        return _nan("logrank_p: no events")
    _, _, d, n = _risk_table(t, e)
    _, _, d_h, n_h = _risk_table(t, e, high)
    expected = d * n_h / n
    var = np.divide(d * (n_h / n) * (1 - n_h / n) * (n - d), n - 1, out=np.zeros_like(n), where=n > 1)
    v = var.sum()
    if v <= 0:
        return _nan("logrank_p: zero variance (no event while both groups were at risk)")
    return float(chdtrc(1, (d_h.sum() - expected.sum()) ** 2 / v))


def dice_counts(pred: np.ndarray, true: np.ndarray, label: int) -> tuple[int, int]:
    """(|A ∩ B|, |A| + |B|) for one label: what Dice, per patient or aggregated, is made of."""
    a, b = pred == label, true == label
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a) + np.count_nonzero(b))


def _mask_pair(pred_mask: Any, true_mask: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred_mask), np.asarray(true_mask)
    if p.shape != t.shape:
        raise ValueError(f"pred_mask shape {p.shape} differs from true_mask shape {t.shape}")
    return p, t


def dice(pred_mask: Any, true_mask: Any, labels: tuple[int, ...] = (1, 2)) -> dict[int, float]:
    """Per-label Dice 2|A∩B| / (|A| + |B|) of one patient; NaN (with a warning) when the label is in neither."""
    p, t = _mask_pair(pred_mask, true_mask)
    out = {}
    for label in labels:
        inter, size = dice_counts(p, t, label)
        out[label] = 2.0 * inter / size if size else _nan(f"dice: label {label} is in neither mask")
    return out


def dice_aggregate(pred_masks: Any, true_masks: Any, labels: tuple[int, ...] = (1, 2)) -> dict[int, float]:
    """HECKTOR's aggregate Dice per label: 2·Σ|A∩B| / Σ(|A| + |B|) over patients, so patients without the
    label (e.g. no nodes) add nothing instead of an undefined ratio."""
    pred_masks, true_masks = list(pred_masks), list(true_masks)
    if len(pred_masks) != len(true_masks):
        raise ValueError(f"{len(pred_masks)} predicted masks but {len(true_masks)} reference masks")
    inter = dict.fromkeys(labels, 0)
    size = dict.fromkeys(labels, 0)
    for pm, tm in zip(pred_masks, true_masks):
        p, t = _mask_pair(pm, tm)
        for label in labels:
            i, s = dice_counts(p, t, label)
            inter[label] += i
            size[label] += s
    return {label: (2.0 * inter[label] / size[label] if size[label]
                    else _nan(f"dice_aggregate: label {label} is in no mask")) for label in labels}


# --- bootstrap ------------------------------------------------------------------------------------------

def _resamples(n_patients: int, n: int, seed: int, strata: Any, chunk: int) -> Iterator[np.ndarray]:
    """Index blocks (rows = resamples) drawn with replacement, within strata when given. Both bootstrap
    paths consume this same stream, so they score identical resamples."""
    rng = np.random.default_rng(seed)
    groups = None
    if strata is not None:
        st = np.asarray(strata)
        if st.shape != (n_patients,):
            raise ValueError(f"strata must have one value per patient ({n_patients}), got shape {st.shape}")
        groups = [np.flatnonzero(st == s) for s in np.unique(st)]
    done = 0
    while done < n:
        rows = min(chunk, n - done)
        if groups is None:
            idx = rng.integers(0, n_patients, size=(rows, n_patients))
        else:
            idx = np.empty((rows, n_patients), dtype=np.int64)
            for members in groups:
                idx[:, members] = members[rng.integers(0, len(members), size=(rows, len(members)))]
        yield idx
        done += rows


def _counts(idx: np.ndarray, n_patients: int) -> np.ndarray:
    rows = idx.shape[0]
    flat = (idx + (np.arange(rows) * n_patients)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n_patients).reshape(rows, n_patients).astype(float)


def dice_replicates(inter: Any, size: Any, *, n: int = 1000, seed: int = 0, strata: Any = None) -> np.ndarray:
    """The aggregate Dice of each label, 2·Σ|A∩B| / Σ(|A|+|B|), on ``n`` patient resamples — the same
    resamples ``bootstrap_replicates`` draws for this seed: (n, labels). ``inter`` and ``size`` are per
    patient and label (|A∩B| and |A|+|B|). NaN where a resample holds no voxel of a label."""
    inter, size = np.asarray(inter, float), np.asarray(size, float)
    n_patients = len(inter)
    if n_patients == 0:
        raise ValueError("bootstrap of an empty sample")
    chunk = max(1, min(n, 2_000_000 // max(1, n_patients)))
    out = []
    for idx in _resamples(n_patients, n, seed, strata, chunk):
        c = _counts(idx, n_patients)
        num, den = 2.0 * (c @ inter), c @ size
        out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return np.concatenate(out)


def _quadratic(c: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    a = np.einsum("bi,bi->b", c @ num, c)
    b = np.einsum("bi,bi->b", c @ den, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _pair_score_matrix(risk_i_vs_j: np.ndarray, strict: bool) -> np.ndarray:
    return (risk_i_vs_j > 0).astype(float) + (0.0 if strict else 0.5 * (risk_i_vs_j == 0))


def _fast_harrell(c, time, event, risk):
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    d = _comparable_matrix(t, e)
    return _quadratic(c, d * _pair_score_matrix(r[:, None] - r[None, :], False), d)


def _fast_uno(c, time, event, risk, train_time, train_event, tau=None):
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        w = _uno_weights(t, e, train_time, train_event, tau, "cindex_uno")
    d = _comparable_matrix(t, e) * w[:, None]
    return _quadratic(c, d * _pair_score_matrix(r[:, None] - r[None, :], False), d)


def _fast_td(c, time, event, surv, surv_times):
    t, e = _outcomes(time, event)
    s, grid = _curves(surv, surv_times, len(t))
    col = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, len(grid) - 1)
    at_i = s[:, col].T  # at_i[i, j] = S_j at i's grid time
    d = _comparable_matrix(t, e)
    own = np.diagonal(at_i)
    return _quadratic(c, d * (at_i > own[:, None]), d)


def _replicate_bounds(c: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    present = c > 0
    return np.where(present, t, np.inf).min(axis=1), np.where(present, t, -np.inf).max(axis=1)


def _weighted_km_at(c: np.ndarray, t: np.ndarray, e: np.ndarray, at: np.ndarray) -> np.ndarray:
    u, inv = np.unique(t, return_inverse=True)
    onehot = np.zeros((len(t), len(u)))
    onehot[np.arange(len(t)), inv] = 1.0
    total = c @ onehot
    deaths = c @ (onehot * e[:, None])
    at_risk = total[:, ::-1].cumsum(axis=1)[:, ::-1]
    frac = np.divide(deaths, at_risk, out=np.zeros_like(deaths), where=at_risk > 0)
    km = np.cumprod(1.0 - frac, axis=1)
    idx = np.searchsorted(u, at, side="right") - 1
    return np.where(idx[None, :] >= 0, km[:, np.maximum(idx, 0)], 1.0)


def _fast_td_auc_full(c, time, event, risk, horizons, train_time, train_event):
    """(B, K + 1): the AUC at each horizon, then the mean, for every resample."""
    t, e = _outcomes(time, event)
    r = _per_patient(risk, len(t), "risk")
    h = np.atleast_1d(np.asarray(horizons, dtype=float))
    tt, te = _outcomes(train_time, train_event, "train_")
    cens = _Censoring(tt, te)
    g, _ = cens(t)
    lo, hi = _replicate_bounds(c, t)
    score = _pair_score_matrix(r[:, None] - r[None, :], False)
    out = np.full((c.shape[0], len(h) + 1), np.nan)
    for k, hk in enumerate(h):
        if not cens.covers(hk):
            continue
        case = e & (t <= hk)
        control = t > hk
        w = np.divide(1.0, g, out=np.zeros_like(g), where=g > 0) * case
        num = np.einsum("bi,bi->b", c @ (w[:, None] * score * control[None, :]), c)
        den = (c @ w) * (c @ control.astype(float))
        bad_case = (c @ (case & (g <= 0)).astype(float)) > 0
        ok = (hk >= lo) & (hk < hi) & ((c @ case.astype(float)) > 0) & ~bad_case & (den > 0)
        out[ok, k] = num[ok] / den[ok]
    km = _weighted_km_at(c, t, e, h)
    for b in range(c.shape[0]):
        out[b, -1] = _mean_auc(out[b, :-1], h, km[b])
    return out


def _fast_td_auc(c, *args, **kw):
    return _fast_td_auc_full(c, *args, **kw)[:, -1]


def _fast_ibs(c, time, event, surv, surv_times, train_time, train_event, horizons=None):
    t, e = _outcomes(time, event)
    s, grid = _curves(surv, surv_times, len(t))
    tt, te = _outcomes(train_time, train_event, "train_")
    cens = _Censoring(tt, te)
    times = _ibs_times(grid, horizons)
    times = times[cens.covers(times)]
    out = np.full(c.shape[0], np.nan)
    if len(times) < 2:
        return out
    bs = c @ _brier_terms(t, e, surv_at(s, grid, times), times, cens) / len(t)  # (B, K)
    lo, hi = _replicate_bounds(c, t)
    first = np.searchsorted(times, lo, side="left")  # first valid time index
    stop = np.searchsorted(times, hi, side="left")  # times[stop - 1] < hi
    seg = 0.5 * (bs[:, 1:] + bs[:, :-1]) * np.diff(times)[None, :]
    cum = np.concatenate([np.zeros((c.shape[0], 1)), seg.cumsum(axis=1)], axis=1)
    ok = stop - first >= 2
    rows = np.flatnonzero(ok)
    last = stop[rows] - 1
    out[rows] = (cum[rows, last] - cum[rows, first[rows]]) / (times[last] - times[first[rows]])
    return out


_FAST: dict[Callable, Callable] = {
    cindex_harrell: _fast_harrell, cindex_uno: _fast_uno, cindex_td: _fast_td,
    td_auc: _fast_td_auc, integrated_brier: _fast_ibs,
}
FAST_MAX_PATIENTS = 3000  # the bootstrap's pairwise kernels hold n² floats; above this the plain loop is used


def _summary(value: Any) -> float:
    """A metric's scalar: td_auc's (aucs, mean) → mean."""
    if isinstance(value, tuple):
        value = value[-1]
    return float(value)


def bootstrap_replicates(metric: Callable, *arrays: Any, n: int = 1000, seed: int = 0, strata: Any = None,
                         fast: bool = True, full: bool = False, **kw: Any) -> np.ndarray:
    """The metric on ``n`` patient resamples (with replacement; within ``strata`` when given).

    Positional ``arrays`` are per patient and resampled together (time, event, risk or surv); keyword
    arguments (``surv_times``, training outcomes, horizons, tau) are passed unchanged. Resamples where the
    metric is undefined are NaN (its warnings are silenced). The same ``seed`` gives the same resamples for
    every metric and method, so replicates can be paired. ``full=True`` with ``td_auc`` returns (n, K + 1):
    the AUC at each horizon and the mean. ``fast=False`` forces the plain loop (for testing).
    """
    if not arrays:
        raise ValueError("bootstrap needs the per-patient arrays")
    n_patients = len(np.asarray(arrays[0]))
    if n_patients == 0:
        raise ValueError("bootstrap of an empty sample")
    kernel = _FAST.get(metric) if fast and n_patients <= FAST_MAX_PATIENTS else None
    if full and metric is td_auc:
        kernel = _fast_td_auc_full if kernel is not None else None
    chunk = max(1, min(n, 2_000_000 // max(1, n_patients)))
    out = []
    arrays_np = [np.asarray(a) for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        with np.errstate(all="ignore"):
            for idx in _resamples(n_patients, n, seed, strata, chunk):
                if kernel is not None:
                    out.append(kernel(_counts(idx, n_patients), *arrays_np, **kw))
                    continue
                for row in idx:
                    value = metric(*(a[row] for a in arrays_np), **kw)
                    if full and isinstance(value, tuple):
                        out.append(np.concatenate([np.asarray(value[0], float), [value[1]]])[None, :])
                    else:
                        out.append(np.array([_summary(value)]))
    return np.concatenate(out, axis=0)


def percentile_interval(reps: np.ndarray | None, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite bootstrap replicates (NaN, NaN if none)."""
    if reps is None:
        return float("nan"), float("nan")
    reps = np.asarray(reps, dtype=float)
    finite = reps[np.isfinite(reps)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(finite, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(metric: Callable, *arrays: Any, n: int = 1000, seed: int = 0, strata: Any = None,
                 **kw: Any) -> tuple[float, float, float]:
    """(point, low, high): the metric and its 95 % percentile bootstrap interval over patient resamples.
    Resamples where the metric is undefined are dropped; NaN bounds when none is defined."""
    point = _summary(metric(*arrays, **kw))
    low, high = percentile_interval(bootstrap_replicates(metric, *arrays, n=n, seed=seed, strata=strata, **kw))
    return point, low, high


def paired_compare(metric: Callable, arrays_a: tuple, arrays_b: tuple, n: int = 1000, seed: int = 0,
                   strata: Any = None, **kw: Any) -> tuple[float, float, float, float]:
    """(diff, low, high, p) for metric(A) − metric(B) on the same patients: a paired bootstrap (both scored
    on the same resamples), percentile 95 % interval, and the two-sided bootstrap p-value
    2·min(P*(d <= 0), P*(d >= 0)) with the +1 correction, capped at 1."""
    na, nb = len(np.asarray(arrays_a[0])), len(np.asarray(arrays_b[0]))
    if na != nb:
        raise ValueError(f"paired_compare needs the same patients: {na} vs {nb}")
    diff = _summary(metric(*arrays_a, **kw)) - _summary(metric(*arrays_b, **kw))
    ra = bootstrap_replicates(metric, *arrays_a, n=n, seed=seed, strata=strata, **kw)
    rb = bootstrap_replicates(metric, *arrays_b, n=n, seed=seed, strata=strata, **kw)
    d = ra - rb
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return diff, float("nan"), float("nan"), _nan("paired_compare: the metric is undefined on every resample")
    low, high = percentile_interval(d)
    return diff, low, high, bootstrap_p_value(d)


def bootstrap_p_value(diffs: Any) -> float:
    """Two-sided p-value of "no difference" from bootstrap replicates of a difference:
    2·min(#(d <= 0) + 1, #(d >= 0) + 1) / (B + 1), capped at 1; NaN replicates are dropped."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return float("nan")
    return float(min(1.0, 2.0 * (min(np.sum(d <= 0), np.sum(d >= 0)) + 1) / (len(d) + 1)))


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
