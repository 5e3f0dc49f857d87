"""bench.metrics against the reference libraries (scikit-survival, lifelines, pycox) on the same inputs.

Layout: real bundled data sets (a Cox model fitted on a train half gives realistic risks and survival curves on
the test half), adversarial inputs, library quirks (each such test says "Quirk" in its docstring), dice,
the bootstrap, holm, and the import check. Reference values are always computed here from the libraries on the
very same arrays; nothing is hard-coded except the hand-computed dice / holm fixtures.
"""
from __future__ import annotations

import functools
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.metrics as M

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-6


# ----------------------------------------------------------------------------------------------- helpers
def _y(event, time):
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event).astype(bool), np.asarray(time, dtype=float))


def _surv_at(surv, grid, times):
    """Step 'post': value at the last grid time <= t, clipped to the first grid time (our own oracle)."""
    idx = np.clip(np.searchsorted(grid, times, side="right") - 1, 0, len(grid) - 1)
    return np.asarray(surv)[:, idx]


def _pycox_antolini(time, event, surv, grid):
    from pycox.evaluation import EvalSurv

    ev = EvalSurv(pd.DataFrame(np.asarray(surv, float).T, index=np.asarray(grid, float)),
                  np.asarray(time, float), np.asarray(event).astype(int), censor_surv=None)
    return ev.concordance_td("antolini")


def _harrell_oracle(time, event, risk):
    """The contract's definition, pair by pair (exact ties in risk count 1/2)."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if j != i and (time[j] > time[i] or (time[j] == time[i] and not event[j])):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den if den else np.nan


class _Strict:
    """Context: a MetricWarning on valid, realistic input is a failure."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", M.MetricWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _call_recording(fn, *args, **kw):
    """Call fn, never letting it raise; return (value, [MetricWarning messages])."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*args, **kw)
    msgs = [str(w.message) for w in rec if issubclass(w.category, M.MetricWarning)]
    return out, msgs


def _assert_nan_with_reason(value, msgs, pattern):
    assert np.isnan(value), f"expected NaN, got {value!r}"
    assert msgs, "expected a MetricWarning saying why the value is NaN"
    assert any(re.search(pattern, m, re.I) for m in msgs), f"no MetricWarning matching {pattern!r}: {msgs}"


# ------------------------------------------------------------------------------------------ real data
def _numeric(df, cols):
    return df[cols].astype(float).to_numpy()


def _load(name):
    """(X numeric, event bool, time float) for one bundled data set."""
    if name in ("whas500", "gbsg2", "veterans", "aids", "flchain"):
        from sksurv import datasets as d

        loader, cols = {
            "whas500": (d.load_whas500, ["age", "bmi", "diasbp", "hr", "los", "sysbp"]),
            "gbsg2": (d.load_gbsg2, ["age", "estrec", "pnodes", "progrec", "tsize"]),
            "veterans": (d.load_veterans_lung_cancer, ["Age_in_years", "Karnofsky_score", "Months_from_Diagnosis"]),
            "aids": (d.load_aids, ["age", "cd4", "priorzdv"]),
            "flchain": (d.load_flchain, ["age", "kappa", "lambda"]),
        }[name]
        X, y = loader()
        ev_field, t_field = y.dtype.names
        X, event, time = _numeric(X, cols), y[ev_field].astype(bool), y[t_field].astype(float)
        if name == "flchain":  # 7874 rows: a fixed subsample keeps the O(n^2) references fast
            keep = np.random.default_rng(7).choice(len(time), 800, replace=False)
            X, event, time = X[keep], event[keep], time[keep]
        return X, event, time
    from lifelines import datasets as ld

    if name == "rossi":  # integer weeks: many tied times, mixed events at the same time
        df = ld.load_rossi()
        return _numeric(df, ["fin", "age", "race", "wexp", "mar", "paro", "prio"]), df.arrest.to_numpy().astype(bool), \
            df.week.to_numpy().astype(float)
    if name == "larynx":
        df = ld.load_larynx()
        return _numeric(df, ["age", "Stage_II", "Stage_III", "Stage_IV"]), df.death.to_numpy().astype(bool), \
            df.time.to_numpy().astype(float)
    raise KeyError(name)


DATASETS = ["whas500", "gbsg2", "veterans", "aids", "flchain", "rossi", "larynx"]


@functools.lru_cache(maxsize=None)
def real(name):
    """Cox model fitted on a fixed random train half; risks and survival curves on the test half.

    Test rows at or beyond the last training time are dropped, so every reference (whose IPCW needs the training
    censoring KM at the test times) is defined; the beyond-follow-up case is tested separately.
    The survival grid is the training event times (the Breslow baseline only steps there).
    """
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, event, time = _load(name)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    perm = np.random.default_rng(0).permutation(len(time))
    tr, te = perm[: len(perm) // 2], perm[len(perm) // 2:]
    te = te[time[te] < time[tr].max()]
    model = CoxPHSurvivalAnalysis(alpha=1e-3).fit(X[tr], _y(event[tr], time[tr]))
    grid = np.unique(time[tr][event[tr]])
    cols = np.searchsorted(model.unique_times_, grid)
    assert np.array_equal(model.unique_times_[cols], grid)
    surv = model.predict_survival_function(X[te], return_array=True)[:, cols]
    return dict(time=time[te], event=event[te].astype(int), risk=model.predict(X[te]), surv=surv, grid=grid,
                train_time=time[tr], train_event=event[tr].astype(int))


def _horizons(d, q=(25, 50, 75)):
    return np.unique(np.percentile(d["time"][d["event"] == 1], q))


# ----------------------------------------------------------------------------------- Harrell's C
@pytest.mark.parametrize("name", DATASETS)
def test_harrell_matches_sksurv_and_lifelines_real(name):
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    d = real(name)
    with _Strict():
        ours = M.cindex_harrell(d["time"], d["event"], d["risk"])
    assert isinstance(ours, float)
    ref = concordance_index_censored(d["event"].astype(bool), d["time"], d["risk"])[0]
    np.testing.assert_allclose(ours, ref, atol=ATOL)
    np.testing.assert_allclose(ours, concordance_index(d["time"], -d["risk"], d["event"]), atol=ATOL)


@pytest.mark.parametrize("name", DATASETS)
def test_harrell_integer_risks_many_ties_real(name):
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    d = real(name)
    risk = np.round(d["risk"] * 2)  # a handful of integer levels: most pairs tied in risk
    ours = M.cindex_harrell(d["time"], d["event"], risk)
    np.testing.assert_allclose(ours, concordance_index_censored(d["event"].astype(bool), d["time"], risk)[0], atol=ATOL)
    np.testing.assert_allclose(ours, concordance_index(d["time"], -risk, d["event"]), atol=ATOL)


def _tied_cases(seed, low, high, risk_levels, count=150):
    """150 small random samples full of tied times and risks, with the pair-by-pair oracle's Harrell C
    (samples without a comparable pair are skipped)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(low, high))
        t = rng.integers(1, 5, n).astype(float)
        e = rng.integers(0, 2, n)
        r = rng.integers(0, risk_levels, n).astype(float)
        want = _harrell_oracle(t, e, r)
        if not np.isnan(want):
            yield t, e, r, want


def test_harrell_random_ties_match_oracle_and_sksurv():
    from sksurv.metrics import concordance_index_censored

    for t, e, r, want in _tied_cases(seed=3, low=3, high=15, risk_levels=3):
        got = M.cindex_harrell(t, e, r)
        np.testing.assert_allclose(got, want, atol=ATOL, err_msg=f"t={t} e={e} r={r}")
        np.testing.assert_allclose(got, concordance_index_censored(e.astype(bool), t, r)[0], atol=ATOL)


def test_harrell_tied_times_mixed_events_hand():
    """Event vs censored at the same time is comparable; two events at the same time are not."""
    t = np.array([1.0, 1.0, 1.0, 2.0])
    e = np.array([1, 1, 0, 0])
    r = np.array([2.0, 0.0, 1.0, 5.0])
    # comparable: (0,2) conc, (0,3) disc, (1,2) disc, (1,3) disc ; (0,1) tied events -> not comparable
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), 1 / 4, atol=ATOL)


def test_harrell_all_risks_tied_is_half():
    d = real("veterans")
    np.testing.assert_allclose(M.cindex_harrell(d["time"], d["event"], np.zeros_like(d["risk"])), 0.5, atol=ATOL)


def test_harrell_n2():
    np.testing.assert_allclose(M.cindex_harrell(np.array([1.0, 2.0]), np.array([1, 0]), np.array([1.0, 0.0])), 1.0)
    np.testing.assert_allclose(M.cindex_harrell(np.array([1.0, 2.0]), np.array([1, 1]), np.array([0.0, 1.0])), 0.0)


def test_harrell_single_event():
    from sksurv.metrics import concordance_index_censored

    t = np.array([3.0, 1.0, 2.0, 4.0, 5.0])
    e = np.array([0, 0, 1, 0, 0])
    r = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), concordance_index_censored(e.astype(bool), t, r)[0])
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), 2 / 3)


def test_quirk_sksurv_tied_tol_vs_exact_ties():
    """Quirk: sksurv's concordance_index_censored treats |risk_i - risk_j| <= 1e-8 (tied_tol) as a tie (1/2);
    we (and lifelines) compare exactly. risk = [1, 1 + 1e-9, 0.5], all events at t = 1, 2, 3:
    ours = lifelines = 2/3, sksurv = 5/6."""
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    t, e, r = np.array([1.0, 2.0, 3.0]), np.array([1, 1, 1]), np.array([1.0, 1.0 + 1e-9, 0.5])
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), 2 / 3, atol=1e-12)
    np.testing.assert_allclose(concordance_index(t, -r, e), 2 / 3, atol=1e-12)
    np.testing.assert_allclose(concordance_index_censored(e.astype(bool), t, r)[0], 5 / 6, atol=1e-12)
    # with tied_tol=0 sksurv agrees with us
    np.testing.assert_allclose(concordance_index_censored(e.astype(bool), t, r, tied_tol=0)[0], 2 / 3, atol=1e-12)


def test_quirk_lifelines_tied_times():
    """Quirk hunt: lifelines.utils.concordance_index(time, -risk, event) treats tied times exactly like the
    contract / sksurv: an event and a censoring at the same time form a comparable pair (the event should have
    the higher risk), two events at the same time are not comparable, two censorings never. Checked here on
    150 random cases with heavy ties in time and risk: no difference (so no lifelines tied-time quirk exists in
    lifelines 0.30). The only differences are (a) no 1e-8 risk tolerance (see the sksurv quirk) and (b) with no
    admissible pair lifelines raises ZeroDivisionError('No admissable pairs in the dataset.')."""
    from lifelines.utils import concordance_index

    # event at 1 vs censored at 1: comparable and concordant when the event has the higher risk
    assert concordance_index(np.array([1.0, 1.0]), -np.array([2.0, 1.0]), np.array([1, 0])) == 1.0
    assert concordance_index(np.array([1.0, 1.0]), -np.array([1.0, 2.0]), np.array([1, 0])) == 0.0
    np.testing.assert_allclose(M.cindex_harrell(np.array([1.0, 1.0]), np.array([1, 0]), np.array([2.0, 1.0])), 1.0)
    np.testing.assert_allclose(M.cindex_harrell(np.array([1.0, 1.0]), np.array([1, 0]), np.array([1.0, 2.0])), 0.0)
    with pytest.raises(ZeroDivisionError):  # two events at the same time: no admissible pair
        concordance_index(np.array([1.0, 1.0]), -np.array([2.0, 1.0]), np.array([1, 1]))
    for t, e, r, want in _tied_cases(seed=11, low=2, high=20, risk_levels=4):
        np.testing.assert_allclose(concordance_index(t, -r, e), want, atol=1e-12)
        np.testing.assert_allclose(M.cindex_harrell(t, e, r), want, atol=ATOL)


def test_quirk_harrell_no_comparable_pairs():
    """Quirk: with no comparable pair sksurv 0.28 is inconsistent: all censored -> ValueError('All samples are
    censored'); only event is the last time -> NoComparablePairException; all events tied -> NaN with a numpy
    RuntimeWarning; lifelines raises ZeroDivisionError in all three. Ours: NaN + MetricWarning in all three."""
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    t = np.array([1.0, 2.0, 3.0])
    r = np.array([0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="censored"):
        concordance_index_censored(np.zeros(3, bool), t, r)
    with pytest.raises(NoComparablePairException):
        concordance_index_censored(np.array([False, False, True]), t, r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(concordance_index_censored(np.ones(3, bool), np.ones(3), r)[0])
    for tt, ee in [(t, np.zeros(3, int)), (t, np.array([0, 0, 1])), (np.ones(3), np.ones(3, int))]:
        val, msgs = _call_recording(M.cindex_harrell, tt, ee, r)
        _assert_nan_with_reason(val, msgs, r"event|pair|compar")


# ---------------------------------------------------------------------------------------- Uno's C
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("use_tau", [False, True])
def test_uno_matches_sksurv_real(name, use_tau):
    from sksurv.metrics import concordance_index_ipcw

    d = real(name)
    tau = float(np.percentile(d["time"], 60)) if use_tau else None
    with _Strict():
        ours = M.cindex_uno(d["time"], d["event"], d["risk"], d["train_time"], d["train_event"], tau=tau)
    ref = concordance_index_ipcw(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]), d["risk"],
                                 tau=tau)[0]
    assert isinstance(ours, float)
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def _toy_train_test(seed=5, n_test=40, n_train=80, ties=True):
    rng = np.random.default_rng(seed)
    tt = rng.exponential(10, n_train)
    te = (rng.random(n_train) < 0.6).astype(int)
    t = rng.uniform(0.5, 0.9 * tt.max(), n_test)
    if ties:
        tt, t = np.ceil(tt), np.ceil(t)
    e = (rng.random(n_test) < 0.6).astype(int)
    r = -np.log(t) + rng.normal(0, 0.8, n_test)
    return tt, te, t, e, r


@pytest.mark.parametrize("seed", range(6))
def test_uno_tied_times_and_integer_risks_match_sksurv(seed):
    from sksurv.metrics import concordance_index_ipcw

    tt, te, t, e, r = _toy_train_test(seed)
    t = np.minimum(t, tt.max() - 1)
    for risk in (r, np.round(r)):
        ours = M.cindex_uno(t, e, risk, tt, te)
        np.testing.assert_allclose(ours, concordance_index_ipcw(_y(te, tt), _y(e, t), risk)[0], atol=ATOL)


def test_uno_train_without_censoring_matches_sksurv():
    """No censoring in training -> G == 1 -> Uno's C equals Harrell's C (sksurv's event.all() branch)."""
    from sksurv.metrics import concordance_index_ipcw

    tt, te, t, e, r = _toy_train_test(1)
    te = np.ones_like(te)
    t = np.minimum(t, tt.max() - 1)
    ours = M.cindex_uno(t, e, r, tt, te)
    np.testing.assert_allclose(ours, concordance_index_ipcw(_y(te, tt), _y(e, t), r)[0], atol=ATOL)
    np.testing.assert_allclose(ours, M.cindex_harrell(t, e, r), atol=ATOL)


def test_uno_all_risks_tied_is_half():
    d = real("gbsg2")
    val = M.cindex_uno(d["time"], d["event"], np.ones_like(d["risk"]), d["train_time"], d["train_event"])
    np.testing.assert_allclose(val, 0.5, atol=ATOL)


@pytest.mark.parametrize("last_train", ["censored", "event"])
def test_quirk_uno_test_events_beyond_training_followup(last_train):
    """Quirk: sksurv concordance_index_ipcw raises ValueError when a test event lies beyond the last training
    time: 'censoring survival function is zero at one or more time points' when the last training time is a
    censoring (G fell to 0), 'time must be smaller than largest observed time point' when it is an event (G
    undefined after it). Ours returns a number computed on the test events inside the training follow-up, plus a
    MetricWarning. Expected number: sksurv with tau = last training time (events at or beyond it get no weight as
    the earlier member of a pair; they remain later partners of earlier events)."""
    from sksurv.metrics import concordance_index_ipcw

    rng = np.random.default_rng(2)
    tt = rng.uniform(0, 10, 60)
    te = (rng.random(60) < 0.6).astype(int)
    te[np.argmax(tt)] = int(last_train == "event")
    t = rng.uniform(0, 14, 40)  # about 30 % of the test times lie beyond the training follow-up
    e = (rng.random(40) < 0.7).astype(int)
    r = -t + rng.normal(0, 3, 40)
    assert (e[t > tt.max()] == 1).any()
    with pytest.raises(ValueError, match="censoring survival function is zero" if last_train == "censored"
                       else "smaller than largest observed"):
        concordance_index_ipcw(_y(te, tt), _y(e, t), r)
    val, msgs = _call_recording(M.cindex_uno, t, e, r, tt, te)
    assert np.isfinite(val), val
    assert msgs and any(re.search(r"follow|beyond|train|outside|last|censoring", m, re.I) for m in msgs), msgs
    ref = concordance_index_ipcw(_y(te, tt), _y(e, t), r, tau=tt.max())[0]
    np.testing.assert_allclose(val, ref, atol=ATOL)


# ------------------------------------------------------------------------------ Antolini's C_td
@pytest.mark.parametrize("name", DATASETS)
def test_cindex_td_matches_pycox_real(name):
    d = real(name)
    with _Strict():
        ours = M.cindex_td(d["time"], d["event"], d["surv"], d["grid"])
    assert isinstance(ours, float)
    np.testing.assert_allclose(ours, _pycox_antolini(d["time"], d["event"], d["surv"], d["grid"]), atol=ATOL)


def test_cindex_td_off_grid_times_and_clipping_match_pycox():
    """Times before the first grid time take the first column; times between grid points take the last grid
    time <= t; times after the last grid time take the last column (pycox steps='post')."""
    rng = np.random.default_rng(4)
    n = 50
    grid = np.array([2.0, 3.5, 5.0, 8.0])
    t = rng.uniform(0, 12, n).round(1)
    e = (rng.random(n) < 0.7).astype(int)
    haz = np.exp(rng.normal(size=n))
    surv = np.exp(-np.outer(haz, grid) / 6)
    surv[:, 1] = np.round(surv[:, 1], 1)  # ties inside one column
    np.testing.assert_allclose(M.cindex_td(t, e, surv, grid), _pycox_antolini(t, e, surv, grid), atol=ATOL)


def test_cindex_td_crossing_curves_hand():
    """Antolini uses each pair's survival at the earlier event time T_i, so crossing curves matter."""
    grid = np.array([1.0, 2.0, 3.0])
    surv = np.array([[0.9, 0.5, 0.1],    # patient 0: good early, bad late
                     [0.6, 0.55, 0.5]])  # patient 1
    # event for 0 at 2.5 (uses column t=2): S0=0.5 < S1=0.55 -> concordant
    np.testing.assert_allclose(M.cindex_td(np.array([2.5, 3.0]), np.array([1, 0]), surv, grid), 1.0)
    # event for 0 at 1.5 (uses column t=1): S0=0.9 > S1=0.6 -> discordant
    np.testing.assert_allclose(M.cindex_td(np.array([1.5, 3.0]), np.array([1, 0]), surv, grid), 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_cindex_td_surv_ties_tied_times_match_pycox(seed):
    """Surv curves with many ties (2 decimals, integer times, mixed events at the same time)."""
    rng = np.random.default_rng(seed)
    n = 40
    grid = np.arange(1.0, 11.0)
    t = rng.integers(1, 11, n).astype(float)
    e = (rng.random(n) < 0.6).astype(int)
    haz = np.exp(rng.integers(-1, 2, n))
    surv = np.round(np.exp(-np.outer(haz, grid) / 8), 2)
    np.testing.assert_allclose(M.cindex_td(t, e, surv, grid), _pycox_antolini(t, e, surv, grid), atol=ATOL)


def test_quirk_cindex_td_identical_curves_count_zero():
    """Quirk: pycox's concordance_td('antolini') counts a tie in predicted survival as NOT concordant (0, not 1/2;
    concordant iff S_i(T_i) < S_j(T_i) strictly, as in Antolini et al.). So identical curves give 0.0, not 0.5
    ('adj_antolini' would give 1/2 for ties). We follow pycox 'antolini'."""
    d = real("veterans")
    surv = np.tile(d["surv"][:1], (len(d["time"]), 1))
    ref = _pycox_antolini(d["time"], d["event"], surv, d["grid"])
    assert ref == 0.0
    np.testing.assert_allclose(M.cindex_td(d["time"], d["event"], surv, d["grid"]), ref, atol=ATOL)


# ---------------------------------------------------------------------------------- td AUC
@pytest.mark.parametrize("name", DATASETS)
def test_td_auc_matches_sksurv_real(name):
    from sksurv.metrics import cumulative_dynamic_auc

    d = real(name)
    hz = _horizons(d)
    with _Strict():
        aucs, mean = M.td_auc(d["time"], d["event"], d["risk"], hz, d["train_time"], d["train_event"])
    ref_aucs, ref_mean = cumulative_dynamic_auc(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]),
                                                d["risk"], hz)
    assert isinstance(mean, float) and np.shape(aucs) == hz.shape
    np.testing.assert_allclose(aucs, ref_aucs, atol=ATOL)
    np.testing.assert_allclose(mean, ref_mean, atol=ATOL)


def test_td_auc_single_horizon_mean_is_the_auc():
    from sksurv.metrics import cumulative_dynamic_auc

    d = real("whas500")
    hz = _horizons(d, (50,))
    aucs, mean = M.td_auc(d["time"], d["event"], d["risk"], hz, d["train_time"], d["train_event"])
    ref = cumulative_dynamic_auc(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]), d["risk"], hz)
    np.testing.assert_allclose(aucs, ref[0], atol=ATOL)
    np.testing.assert_allclose(mean, aucs[0], atol=ATOL)


@pytest.mark.parametrize("seed", range(4))
def test_td_auc_tied_times_integer_risks_match_sksurv(seed):
    from sksurv.metrics import cumulative_dynamic_auc

    tt, te, t, e, r = _toy_train_test(seed, n_test=60)
    t = np.minimum(t, tt.max() - 1)
    hz = np.unique(np.percentile(t[e == 1], [20, 50, 80]).round())
    hz = hz[(hz >= t.min()) & (hz < t.max())]
    for risk in (r, np.round(r)):
        aucs, mean = M.td_auc(t, e, risk, hz, tt, te)
        ref_aucs, ref_mean = cumulative_dynamic_auc(_y(te, tt), _y(e, t), risk, hz)
        np.testing.assert_allclose(aucs, ref_aucs, atol=ATOL)
        np.testing.assert_allclose(mean, ref_mean, atol=ATOL)


def test_td_auc_all_risks_tied_is_half():
    d = real("aids")
    aucs, mean = M.td_auc(d["time"], d["event"], np.zeros_like(d["risk"]), _horizons(d), d["train_time"],
                          d["train_event"])
    np.testing.assert_allclose(aucs, 0.5, atol=ATOL)
    np.testing.assert_allclose(mean, 0.5, atol=ATOL)


def test_td_auc_keeps_the_order_of_the_horizons():
    """Quirk: sksurv np.unique()s (sorts) the horizons; ours returns one AUC per horizon in the order given."""
    d = real("gbsg2")
    hz = _horizons(d)
    a1, m1 = M.td_auc(d["time"], d["event"], d["risk"], hz, d["train_time"], d["train_event"])
    a2, m2 = M.td_auc(d["time"], d["event"], d["risk"], hz[::-1], d["train_time"], d["train_event"])
    np.testing.assert_allclose(a2, a1[::-1], atol=ATOL)
    np.testing.assert_allclose(m2, m1, atol=ATOL)


def test_quirk_td_auc_horizons_outside_followup():
    """Quirk: sksurv cumulative_dynamic_auc raises ValueError('all times must be within follow-up time of test
    data: [min; max[') if any horizon is < min(test time) or >= max(test time). Ours: NaN at those horizons, a
    MetricWarning, the other horizons unchanged, and the mean over the valid horizons (== sksurv's mean on the
    valid horizons alone)."""
    from sksurv.metrics import cumulative_dynamic_auc

    d = real("whas500")
    ok = _horizons(d)
    tmin, tmax = d["time"].min(), d["time"].max()
    hz = np.r_[tmin - 1.0, ok, tmax, tmax + 100.0]
    y_tr, y_te = _y(d["train_event"], d["train_time"]), _y(d["event"], d["time"])
    with pytest.raises(ValueError, match="follow-up"):
        cumulative_dynamic_auc(y_tr, y_te, d["risk"], hz)
    (aucs, mean), msgs = _call_recording(M.td_auc, d["time"], d["event"], d["risk"], hz, d["train_time"],
                                         d["train_event"])
    ref_aucs, ref_mean = cumulative_dynamic_auc(y_tr, y_te, d["risk"], ok)
    assert len(aucs) == len(hz)
    assert np.isnan(aucs[0]) and np.isnan(aucs[-1]) and np.isnan(aucs[-2])
    np.testing.assert_allclose(aucs[1:-2], ref_aucs, atol=ATOL)
    np.testing.assert_allclose(mean, ref_mean, atol=ATOL)
    assert any(re.search(r"follow|outside|beyond|range|window", m, re.I) for m in msgs), msgs


def test_quirk_td_auc_horizon_without_cases():
    """Quirk: a horizon inside the follow-up before the first test event has no cases; sksurv returns NaN there
    (numpy 'invalid value' RuntimeWarning) and then a NaN mean. Ours: NaN + MetricWarning at that horizon and the
    mean over the others (== sksurv on the others)."""
    from sksurv.metrics import cumulative_dynamic_auc

    tt, te, t, e, r = _toy_train_test(8, ties=False)
    t = np.minimum(t, tt.max() - 1)
    e[np.argmin(t)] = 0  # the earliest test time is a censoring
    first_event = t[e == 1].min()
    ok = np.unique(np.percentile(t[e == 1], [40, 70]))
    hz = np.r_[t.min(), ok]
    assert t.min() < first_event
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_all = cumulative_dynamic_auc(_y(te, tt), _y(e, t), r, hz)
    assert np.isnan(ref_all[0][0]) and np.isnan(ref_all[1])
    ref_aucs, ref_mean = cumulative_dynamic_auc(_y(te, tt), _y(e, t), r, ok)
    (aucs, mean), msgs = _call_recording(M.td_auc, t, e, r, hz, tt, te)
    assert np.isnan(aucs[0]) and msgs, (aucs, msgs)
    np.testing.assert_allclose(aucs[1:], ref_aucs, atol=ATOL)
    np.testing.assert_allclose(mean, ref_mean, atol=ATOL)


def test_td_auc_no_valid_horizon_is_all_nan():
    d = real("veterans")
    (aucs, mean), msgs = _call_recording(M.td_auc, d["time"], d["event"], d["risk"],
                                         np.array([d["time"].max() + 1.0]), d["train_time"], d["train_event"])
    assert np.isnan(aucs).all()
    _assert_nan_with_reason(mean, msgs, r"follow|outside|beyond|range|window|horizon")


# ---------------------------------------------------------------------------- integrated Brier
@pytest.mark.parametrize("name", DATASETS)
def test_integrated_brier_default_grid_matches_sksurv_real(name):
    from sksurv.metrics import integrated_brier_score

    d = real(name)
    with _Strict():
        ours = M.integrated_brier(d["time"], d["event"], d["surv"], d["grid"], d["train_time"], d["train_event"])
    g = d["grid"]
    inside = (g >= d["time"].min()) & (g < d["time"].max())
    ref = integrated_brier_score(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]),
                                 d["surv"][:, inside], g[inside])
    assert isinstance(ours, float)
    np.testing.assert_allclose(ours, ref, atol=ATOL)


@pytest.mark.parametrize("name", DATASETS)
def test_integrated_brier_off_grid_horizons_match_sksurv_real(name):
    from sksurv.metrics import integrated_brier_score

    d = real(name)
    hz = np.unique(np.linspace(*np.percentile(d["time"], [10, 90]), 15))
    ours = M.integrated_brier(d["time"], d["event"], d["surv"], d["grid"], d["train_time"], d["train_event"],
                              horizons=hz)
    ref = integrated_brier_score(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]),
                                 _surv_at(d["surv"], d["grid"], hz), hz)
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def test_integrated_brier_horizons_before_first_grid_time_use_first_column():
    from sksurv.metrics import integrated_brier_score

    tt, te, t, e, _ = _toy_train_test(6, ties=False)
    t = np.minimum(t, tt.max() - 1)
    grid = np.array([4.0, 6.0, 9.0])
    rng = np.random.default_rng(0)
    surv = np.exp(-np.outer(np.exp(rng.normal(size=len(t))), grid) / 10)
    hz = np.array([t.min() + 0.01, 2.0, 5.0, 7.5])
    hz = np.unique(hz[(hz >= t.min()) & (hz < t.max())])
    assert hz.min() < grid[0] and len(hz) >= 3
    ours = M.integrated_brier(t, e, surv, grid, tt, te, horizons=hz)
    ref = integrated_brier_score(_y(te, tt), _y(e, t), _surv_at(surv, grid, hz), hz)
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def test_integrated_brier_surv_with_ties_matches_sksurv():
    from sksurv.metrics import integrated_brier_score

    d = real("rossi")
    surv = np.round(d["surv"], 1)
    ours = M.integrated_brier(d["time"], d["event"], surv, d["grid"], d["train_time"], d["train_event"])
    inside = (d["grid"] >= d["time"].min()) & (d["grid"] < d["time"].max())
    ref = integrated_brier_score(_y(d["train_event"], d["train_time"]), _y(d["event"], d["time"]),
                                 surv[:, inside], d["grid"][inside])
    np.testing.assert_allclose(ours, ref, atol=ATOL)


def test_quirk_integrated_brier_fewer_than_two_times():
    """Quirk: sksurv integrated_brier_score raises ValueError('At least two time points must be given') for one
    time and ValueError('all times must be within follow-up ...') outside the window; ours: NaN + MetricWarning."""
    from sksurv.metrics import integrated_brier_score

    d = real("whas500")
    y_tr, y_te = _y(d["train_event"], d["train_time"]), _y(d["event"], d["time"])
    hz1 = _horizons(d, (50,))
    with pytest.raises(ValueError, match="two"):
        integrated_brier_score(y_tr, y_te, _surv_at(d["surv"], d["grid"], hz1), hz1)
    args = (d["time"], d["event"], d["surv"], d["grid"], d["train_time"], d["train_event"])
    val, msgs = _call_recording(M.integrated_brier, *args, horizons=hz1)
    _assert_nan_with_reason(val, msgs, r"two|2|time|horizon")
    far = np.array([d["time"].max() + 1.0, d["time"].max() + 2.0])
    val, msgs = _call_recording(M.integrated_brier, *args, horizons=far)
    _assert_nan_with_reason(val, msgs, r"two|2|time|horizon|follow|window")
    # default grid with < 2 grid times inside the test window
    val, msgs = _call_recording(M.integrated_brier, *args[:2], d["surv"][:, :1], d["grid"][:1], *args[4:])
    _assert_nan_with_reason(val, msgs, r"two|2|time|horizon|follow|window")


@pytest.mark.parametrize("last_train", ["censored", "event"])
def test_quirk_td_auc_and_ibs_with_test_times_beyond_training(last_train):
    """Quirk: sksurv cumulative_dynamic_auc raises when any test *event* lies after the last training time, and
    integrated_brier_score raises when any test time does (G is evaluated at every test time), even for
    horizons well inside the training follow-up. At horizons t < last training time such patients are only ever
    controls (T > t), so their own G is never needed: ours must equal sksurv on the same data with those times
    moved to just after the last horizon (which changes no case/control status and no KM value at a horizon)."""
    from sksurv.metrics import cumulative_dynamic_auc, integrated_brier_score

    rng = np.random.default_rng(21)
    tt = rng.uniform(0, 10, 80)
    te = (rng.random(80) < 0.6).astype(int)
    te[np.argmax(tt)] = int(last_train == "event")
    t = rng.uniform(0, 14, 50)
    e = (rng.random(50) < 0.7).astype(int)
    e[np.argmax(t)] = 1
    r = -t + rng.normal(0, 3, 50)
    grid = np.linspace(0.5, 9.5, 19)
    surv = np.exp(-np.outer(np.exp(r / 3), grid) / 10)
    hz = np.array([2.0, 4.0, 6.0, 8.0])
    moved = np.where(t > hz.max(), np.minimum(t, (hz.max() + tt.max()) / 2), t)
    y_tr, y_moved = _y(te, tt), _y(e, moved)
    with pytest.raises(ValueError):
        cumulative_dynamic_auc(y_tr, _y(e, t), r, hz)
    if last_train == "event":  # with G(last) == 0 sksurv's Brier silently uses infinite weights instead
        with pytest.raises(ValueError):
            integrated_brier_score(y_tr, _y(e, t), _surv_at(surv, grid, hz), hz)
    aucs, mean = M.td_auc(t, e, r, hz, tt, te)
    ref_aucs, ref_mean = cumulative_dynamic_auc(y_tr, y_moved, r, hz)
    np.testing.assert_allclose(aucs, ref_aucs, atol=ATOL)
    np.testing.assert_allclose(mean, ref_mean, atol=ATOL)
    ibs = M.integrated_brier(t, e, surv, grid, tt, te, horizons=hz)
    np.testing.assert_allclose(ibs, integrated_brier_score(y_tr, y_moved, _surv_at(surv, grid, hz), hz), atol=ATOL)


# ------------------------------------------------------------------------------------------- log-rank
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("q", [30, 50, 80])
def test_logrank_matches_lifelines_real(name, q):
    from lifelines.statistics import logrank_test

    d = real(name)
    thr = float(np.percentile(d["risk"], q))
    g = d["risk"] > thr
    ref = logrank_test(d["time"][g], d["time"][~g], d["event"][g], d["event"][~g]).p_value
    with _Strict():
        ours = M.logrank_p(d["time"], d["event"], d["risk"], thr)
    assert isinstance(ours, float)
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=1e-6)


def test_logrank_integer_risk_threshold_is_strict():
    """g = risk > threshold: patients with risk == threshold go to the low group."""
    from lifelines.statistics import logrank_test

    d = real("rossi")
    risk = np.round(d["risk"])
    thr = float(np.median(risk))
    g = risk > thr
    assert (risk == thr).any()
    ref = logrank_test(d["time"][g], d["time"][~g], d["event"][g], d["event"][~g]).p_value
    np.testing.assert_allclose(M.logrank_p(d["time"], d["event"], risk, thr), ref, atol=ATOL, rtol=1e-6)


def test_quirk_logrank_degenerate():
    """Quirk: lifelines logrank_test returns p = 1.0 when there are no events at all and p = NaN (no warning)
    when one group is empty. Ours: NaN + MetricWarning in both."""
    from lifelines.statistics import logrank_test

    t = np.array([1.0, 2.0, 3.0, 4.0])
    r = np.array([0.0, 1.0, 2.0, 3.0])
    assert logrank_test(t[:2], t[2:], np.zeros(2), np.zeros(2)).p_value == 1.0
    assert np.isnan(logrank_test(t, t[:0], np.ones(4), np.ones(0)).p_value)
    val, msgs = _call_recording(M.logrank_p, t, np.zeros(4, int), r, 1.5)
    _assert_nan_with_reason(val, msgs, r"event")
    val, msgs = _call_recording(M.logrank_p, t, np.ones(4, int), r, 10.0)
    _assert_nan_with_reason(val, msgs, r"group|empty")
    val, msgs = _call_recording(M.logrank_p, t, np.ones(4, int), r, -10.0)
    _assert_nan_with_reason(val, msgs, r"group|empty")


# ---------------------------------------------------------------------- degenerate: never raise
_GRID = np.arange(1.0, 11.0)


def _surv_from_risk(risk):
    return np.exp(-np.outer(np.exp(np.asarray(risk, float)), _GRID) / 10.0)


_TRAIN_T = np.r_[np.arange(0.5, 12.0, 0.5), 12.0]
_TRAIN_E = (np.arange(len(_TRAIN_T)) % 2).astype(int)

DEGENERATE = {  # name: (time, event, risk)
    "n0": (np.zeros(0), np.zeros(0, int), np.zeros(0)),
    "n1": (np.array([5.0]), np.array([1]), np.array([0.3])),
    "all_censored": (np.arange(1.0, 7.0), np.zeros(6, int), np.linspace(0, 1, 6)),
    "all_times_tied_events": (np.full(6, 5.0), np.ones(6, int), np.linspace(0, 1, 6)),
    "single_event_last": (np.arange(1.0, 7.0), np.array([0, 0, 0, 0, 0, 1]), np.linspace(0, 1, 6)),
}
_NAN_EXPECTED = {  # which metrics must give NaN (with a reason) on which degenerate case
    "cindex_harrell": set(DEGENERATE),
    "cindex_uno": set(DEGENERATE),
    "cindex_td": set(DEGENERATE),
    "td_auc": set(DEGENERATE),
    "integrated_brier": {"n0", "n1", "all_times_tied_events"},
    "logrank_p": {"n0", "n1", "all_censored"},
}


def _run_metric(metric, t, e, r, train_t=_TRAIN_T, train_e=_TRAIN_E):
    s = _surv_from_risk(r)
    if metric == "cindex_harrell":
        return M.cindex_harrell(t, e, r)
    if metric == "cindex_uno":
        return M.cindex_uno(t, e, r, train_t, train_e)
    if metric == "cindex_td":
        return M.cindex_td(t, e, s, _GRID)
    if metric == "td_auc":
        return M.td_auc(t, e, r, np.array([3.0]), train_t, train_e)
    if metric == "integrated_brier":
        return M.integrated_brier(t, e, s, _GRID, train_t, train_e)
    if metric == "logrank_p":
        return M.logrank_p(t, e, r, 0.5)
    raise KeyError(metric)


@pytest.mark.parametrize("metric", list(_NAN_EXPECTED))
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_degenerate_input_gives_nan_with_reason_never_raises(metric, case):
    t, e, r = DEGENERATE[case]
    out, msgs = _call_recording(_run_metric, metric, t, e, r)
    val = out[1] if metric == "td_auc" else out
    if metric == "td_auc":
        assert len(out[0]) == 1
    if case in _NAN_EXPECTED[metric]:
        _assert_nan_with_reason(val, msgs, r".{10,}")
    elif np.isnan(val):
        assert msgs, "NaN without a MetricWarning"


EXTRA_DEGENERATE = {  # anything goes, but NaN must come with a MetricWarning and nothing may raise
    "n2": (np.array([1.0, 2.0]), np.array([1, 0]), np.array([1.0, 0.0])),
    "all_risks_tied": (np.arange(1.0, 9.0), np.array([1, 0] * 4), np.zeros(8)),
    "all_times_tied_mixed": (np.full(6, 4.0), np.array([1, 0, 1, 0, 1, 0]), np.linspace(0, 1, 6)),
    "int_risks": (np.arange(1.0, 11.0), np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 0]),
                  np.array([3, 3, 2, 2, 2, 1, 1, 0, 0, 0.0])),
    "beyond_train": (np.array([2.0, 5.0, 13.0, 20.0]), np.array([1, 1, 1, 1]), np.array([3.0, 2.0, 1.0, 0.0])),
}


@pytest.mark.parametrize("metric", list(_NAN_EXPECTED))
@pytest.mark.parametrize("case", list(EXTRA_DEGENERATE))
@pytest.mark.parametrize("train", ["normal", "all_events", "all_censored"])
def test_awkward_input_never_raises(metric, case, train):
    t, e, r = EXTRA_DEGENERATE[case]
    tr_e = {"normal": _TRAIN_E, "all_events": np.ones_like(_TRAIN_E), "all_censored": np.zeros_like(_TRAIN_E)}[train]
    out, msgs = _call_recording(_run_metric, metric, t, e, r, _TRAIN_T, tr_e)
    val = out[1] if metric == "td_auc" else out
    if metric == "td_auc" and np.isnan(out[0]).any():
        assert msgs
    assert isinstance(val, float)
    if np.isnan(val):
        assert msgs, "NaN without a MetricWarning"


def test_all_times_tied_mixed_events_harrell_and_uno():
    """All times tied: only (event, censored) pairs are comparable."""
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw

    t, e, r = EXTRA_DEGENERATE["all_times_tied_mixed"]
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), _harrell_oracle(t, e, r), atol=ATOL)
    np.testing.assert_allclose(M.cindex_harrell(t, e, r), concordance_index_censored(e.astype(bool), t, r)[0])
    np.testing.assert_allclose(M.cindex_uno(t, e, r, _TRAIN_T, _TRAIN_E),
                               concordance_index_ipcw(_y(_TRAIN_E, _TRAIN_T), _y(e, t), r)[0], atol=ATOL)


# ------------------------------------------------------------------------------------------------ dice
def _dice_fixture():
    true = np.zeros((4, 4), int)
    true[0:2, 0:2] = 1  # 4 px
    true[2:4, 2:4] = 2  # 4 px
    pred = np.zeros((4, 4), int)
    pred[0:2, 0:3] = 1  # 6 px, 4 overlap
    pred[3, 2:4] = 2    # 2 px, 2 overlap
    return pred, true


def test_dice_hand_computed():
    pred, true = _dice_fixture()
    with _Strict():
        out = M.dice(pred, true)
    assert set(out) == {1, 2}
    np.testing.assert_allclose(out[1], 2 * 4 / (6 + 4))
    np.testing.assert_allclose(out[2], 2 * 2 / (2 + 4))
    out3d = M.dice(np.stack([pred, pred]), np.stack([true, np.zeros_like(true)]))
    np.testing.assert_allclose(out3d[1], 2 * 4 / (12 + 4))
    np.testing.assert_allclose(out3d[2], 2 * 2 / (4 + 4))
    np.testing.assert_allclose(M.dice(true, true)[1], 1.0)
    assert set(M.dice(pred, true, labels=(2,))) == {2}


def test_dice_label_missing_from_prediction_is_zero():
    pred, true = _dice_fixture()
    pred[pred == 2] = 0
    with _Strict():
        np.testing.assert_allclose(M.dice(pred, true)[2], 0.0)


def test_dice_label_absent_from_both_is_nan_with_warning():
    pred, true = _dice_fixture()
    out, msgs = _call_recording(M.dice, pred, true, labels=(1, 2, 3))
    np.testing.assert_allclose(out[1], 0.8)
    _assert_nan_with_reason(out[3], msgs, r"3|label|absent|empty")


def test_dice_aggregate_hand_computed_differs_from_mean():
    pred_a, true_a = _dice_fixture()
    true_b = np.zeros((4, 4), int)
    true_b[0, 0] = 1            # one voxel of label 1, missed; label 2 absent in both for patient b
    pred_b = np.zeros((4, 4), int)
    with _Strict():
        agg = M.dice_aggregate([pred_a, pred_b], [true_a, true_b])
    np.testing.assert_allclose(agg[1], 2 * (4 + 0) / ((6 + 4) + (0 + 1)))  # 8/11, mean of per-patient would be 0.4
    np.testing.assert_allclose(agg[2], 2 * (2 + 0) / ((2 + 4) + 0))


def test_dice_aggregate_patients_with_different_volume_shapes():
    """HECKTOR volumes differ in shape from patient to patient: the masks are a list, not one array."""
    pred_a, true_a = _dice_fixture()
    true_b = np.zeros((3, 2, 5), int)
    true_b[0, 0, :3] = 2
    pred_b = np.zeros((3, 2, 5), int)
    pred_b[0, 0, 1:] = 2
    agg = M.dice_aggregate([pred_a, pred_b], [true_a, true_b])
    np.testing.assert_allclose(agg[1], 0.8)
    np.testing.assert_allclose(agg[2], 2 * (2 + 2) / ((2 + 4) + (4 + 3)))


def test_dice_aggregate_label_absent_everywhere_is_nan():
    pred, true = _dice_fixture()
    out, msgs = _call_recording(M.dice_aggregate, [pred, pred], [true, true], labels=(1, 5))
    np.testing.assert_allclose(out[1], 0.8)
    _assert_nan_with_reason(out[5], msgs, r"5|label|absent|empty")


# ------------------------------------------------------------------------------------------- bootstrap
@functools.lru_cache(maxsize=None)
def _boot_data(n=60):
    rng = np.random.default_rng(123)
    tt = np.round(rng.exponential(10, 120), 1)
    te = (rng.random(120) < 0.6).astype(int)
    tt[np.argmax(tt)] += 50.0  # training follow-up well beyond every test time
    t = np.round(rng.uniform(0.2, 25, n), 1)
    e = (rng.random(n) < 0.65).astype(int)
    risk = -np.log(t) + rng.normal(0, 0.7, n)
    grid = np.unique(np.round(np.quantile(tt[te == 1], np.linspace(0, 1, 25)), 1))
    surv = np.exp(-np.outer(np.exp(risk), grid) / 8)
    strata = rng.integers(0, 3, n)
    return dict(t=t, e=e, risk=risk, surv=surv, grid=grid, tt=tt, te=te, strata=strata)


def _boot_cases():
    d = _boot_data()
    hz = np.array([3.0, 8.0, 15.0])
    train = dict(train_time=d["tt"], train_event=d["te"])
    return {
        "cindex_harrell": (M.cindex_harrell, (d["t"], d["e"], d["risk"]), {}),
        "cindex_uno": (M.cindex_uno, (d["t"], d["e"], d["risk"]), dict(train)),
        "cindex_uno_tau": (M.cindex_uno, (d["t"], d["e"], d["risk"]), dict(train, tau=12.0)),
        "cindex_td": (M.cindex_td, (d["t"], d["e"], d["surv"]), dict(surv_times=d["grid"])),
        "td_auc": (M.td_auc, (d["t"], d["e"], d["risk"]), dict(train, horizons=hz)),
        "integrated_brier": (M.integrated_brier, (d["t"], d["e"], d["surv"]), dict(train, surv_times=d["grid"])),
        "integrated_brier_hz": (M.integrated_brier, (d["t"], d["e"], d["surv"]),
                                dict(train, surv_times=d["grid"], horizons=np.linspace(2, 18, 9))),
        "logrank_p": (M.logrank_p, (d["t"], d["e"], d["risk"]), dict(threshold=float(np.median(d["risk"])))),
    }


def _point(metric, arrays, kw):
    out = metric(*arrays, **kw)
    return out[1] if isinstance(out, tuple) else out


BOOT = ["cindex_harrell", "cindex_uno", "cindex_uno_tau", "cindex_td", "td_auc", "integrated_brier",
        "integrated_brier_hz", "logrank_p"]


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("key", BOOT)
def test_bootstrap_fast_equals_plain_loop(key, stratified):
    metric, arrays, kw = _boot_cases()[key]
    strata = _boot_data()["strata"] if stratified else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        fast = M.bootstrap_replicates(metric, *arrays, n=200, seed=7, strata=strata, fast=True, **kw)
        slow = M.bootstrap_replicates(metric, *arrays, n=200, seed=7, strata=strata, fast=False, **kw)
    assert fast.shape == slow.shape == (200,)
    assert np.isfinite(slow).mean() > 0.9
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


@pytest.mark.parametrize("stratified", [False, True])
def test_dice_replicates_are_the_aggregate_dice_of_the_shared_resamples(stratified):
    """DSC replicates: aggregate Dice on exactly the resamples every other metric of the fold uses (checked by
    resampling the per-patient counts with the plain bootstrap loop and the same seed)."""
    rng = np.random.default_rng(3)
    n = 40
    size = rng.integers(0, 400, size=(n, 2)).astype(float)
    size[:25, 1] = 0  # most patients have no node
    inter = np.floor(size / 2 * rng.random((n, 2)))
    strata = rng.integers(0, 3, n) if stratified else None
    fast = M.dice_replicates(inter, size, n=150, seed=11, strata=strata)
    for j in range(2):
        slow = M.bootstrap_replicates(lambda i, s: 2 * i.sum() / s.sum() if s.sum() else np.nan,
                                      inter[:, j], size[:, j], n=150, seed=11, strata=strata, fast=False)
        np.testing.assert_allclose(fast[:, j], slow, rtol=1e-12)
    full = 2 * inter.sum(0) / size.sum(0)
    assert fast.shape == (150, 2) and np.all(np.abs(np.nanmean(fast, 0) - full) < 0.05)
    with pytest.raises(ValueError):
        M.dice_replicates(np.zeros((0, 2)), np.zeros((0, 2)))


def test_bootstrap_plain_loop_is_the_metric_on_resampled_rows():
    """Any callable works (plain loop): the mean of row ids over resamples varies around the full-sample mean."""
    ids = np.arange(60.0)
    reps = M.bootstrap_replicates(lambda x: float(np.mean(x)), ids, n=200, seed=0, fast=False)
    assert reps.shape == (200,) and np.all((reps >= 0) & (reps <= 59)) and np.std(reps) > 1
    np.testing.assert_allclose(np.mean(reps), np.mean(ids), atol=2.0)


@pytest.mark.parametrize("fast", [True, False])
def test_bootstrap_strata_keep_their_sizes(fast):
    """A stratified resample keeps each stratum's size: the share of stratum 0 is the same in every replicate."""
    s = _boot_data()["strata"]
    reps = M.bootstrap_replicates(lambda g: float(np.mean(g == 0)), s, n=100, seed=1, strata=s, fast=fast)
    np.testing.assert_allclose(reps, np.mean(s == 0), atol=1e-12)
    names = np.array(["CHUM", "CHUP", "MDA"])[s]  # centre names as strata
    reps = M.bootstrap_replicates(lambda g: float(np.mean(g == "CHUM")), names, n=100, seed=1, strata=names, fast=fast)
    np.testing.assert_allclose(reps, np.mean(s == 0), atol=1e-12)
    reps = M.bootstrap_replicates(lambda g: float(np.mean(g == 0)), s, n=100, seed=1, fast=fast)
    assert np.std(reps) > 0


@pytest.mark.parametrize("key", BOOT)
def test_bootstrap_ci_point_is_the_metric(key):
    metric, arrays, kw = _boot_cases()[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        point, low, high = M.bootstrap_ci(metric, *arrays, n=200, seed=0, **kw)
    np.testing.assert_allclose(point, _point(metric, arrays, kw), atol=1e-12)
    assert low <= high


@pytest.mark.parametrize("key", ["cindex_harrell", "cindex_uno", "cindex_td", "td_auc", "integrated_brier"])
def test_bootstrap_ci_contains_point_and_matches_percentiles(key):
    metric, arrays, kw = _boot_cases()[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        point, low, high = M.bootstrap_ci(metric, *arrays, n=200, seed=3, **kw)
        reps = M.bootstrap_replicates(metric, *arrays, n=200, seed=3, **kw)
    assert low < point < high
    np.testing.assert_allclose([low, high], np.nanpercentile(reps, [2.5, 97.5]), atol=1e-9)


def test_bootstrap_reproducible_and_seed_dependent():
    metric, arrays, kw = _boot_cases()["cindex_harrell"]
    a = M.bootstrap_replicates(metric, *arrays, n=100, seed=5, **kw)
    b = M.bootstrap_replicates(metric, *arrays, n=100, seed=5, **kw)
    c = M.bootstrap_replicates(metric, *arrays, n=100, seed=6, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(M.bootstrap_ci(metric, *arrays, n=100, seed=5),
                                  M.bootstrap_ci(metric, *arrays, n=100, seed=5))


@pytest.mark.parametrize("key", ["cindex_harrell", "cindex_uno", "td_auc"])
def test_paired_compare_with_itself(key):
    metric, arrays, kw = _boot_cases()[key]
    diff, low, high, p = M.paired_compare(metric, arrays, arrays, n=200, seed=0, **kw)
    assert diff == 0.0 and low == 0.0 and high == 0.0
    assert p == 1.0


@pytest.mark.parametrize("key", ["cindex_harrell", "cindex_uno", "td_auc"])
@pytest.mark.parametrize("stratified", [False, True])
def test_paired_compare_against_much_worse_risk(key, stratified):
    metric, arrays, kw = _boot_cases()[key]
    d = _boot_data()
    rng = np.random.default_rng(99)
    good = -np.log(d["t"]) + rng.normal(0, 0.2, len(d["t"]))  # nearly perfect ranking
    arrays = (arrays[0], arrays[1], good)
    arrays_b = (arrays[0], arrays[1], rng.normal(size=len(d["t"])))  # noise
    strata = d["strata"] if stratified else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        diff, low, high, p = M.paired_compare(metric, arrays, arrays_b, n=300, seed=0, strata=strata, **kw)
    np.testing.assert_allclose(diff, _point(metric, arrays, kw) - _point(metric, arrays_b, kw), atol=1e-12)
    assert diff > 0.1 and 0 < low <= diff <= high
    assert p < 0.01


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(M.holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02], atol=1e-12)
    np.testing.assert_allclose(M.holm([0.5, 0.6]), [1.0, 1.0], atol=1e-12)  # capped at 1
    np.testing.assert_allclose(M.holm([0.02]), [0.02], atol=1e-12)
    np.testing.assert_allclose(M.holm([0.01, 0.01, 0.2]), [0.03, 0.03, 0.2], atol=1e-12)
    assert isinstance(M.holm([0.1, 0.2]), np.ndarray)


# ------------------------------------------------------------------------------------------- imports
def test_import_does_not_pull_torch():
    code = "import bench.metrics, sys; assert 'torch' not in sys.modules, 'bench.metrics imports torch'"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("seed", range(5))
def test_small_and_large_sample_paths_agree(seed, monkeypatch):
    """cindex_td and integrated_brier switch from the n x n / n x K matrix form to the sorted, per-column
    form above PAIRWISE_MAX patients; both must give the same number (ties in times, risks and curves)."""
    rng = np.random.default_rng(seed)
    n = 300
    time = rng.integers(1, 40, n).astype(float)
    event = rng.uniform(size=n) < 0.6
    grid = np.unique(rng.integers(0, 45, 25).astype(float))
    surv = np.round(np.sort(rng.uniform(size=(n, len(grid))), axis=1)[:, ::-1], 1)
    train_time = rng.integers(1, 50, 200).astype(float)
    train_event = rng.uniform(size=200) < 0.5
    small = (M.cindex_td(time, event, surv, grid),
             M.integrated_brier(time, event, surv, grid, train_time, train_event))
    monkeypatch.setattr(M, "PAIRWISE_MAX", 0)
    large_td = M.cindex_td(time, event, surv, grid)
    big = np.repeat(np.arange(n), 20)  # n·K above the IBS matrix-form limit; IPCW Brier is a mean over rows
    large = (large_td, M.integrated_brier(time[big], event[big], surv[big], grid, train_time, train_event))
    np.testing.assert_allclose(small, large, atol=1e-12)
    np.testing.assert_allclose(small[0], _pycox_antolini(time, event, surv, grid), atol=ATOL)


def test_cindex_td_says_how_many_pairs_tie(monkeypatch):
    """Tied curves at an event's time count as discordant (as in pycox); the warning quantifies it, in both
    the small and the large path."""
    time = np.arange(1.0, 41.0)
    event = np.ones(40, bool)
    grid = np.array([0.5, 20.5])
    surv = np.c_[np.ones(40), np.linspace(0.9, 0.1, 40)]  # every curve is 1 at the first grid time
    for limit in (1500, 0):
        monkeypatch.setattr(M, "PAIRWISE_MAX", limit)
        with pytest.warns(M.MetricWarning, match="tied survival at the event time"):
            value = M.cindex_td(time, event, surv, grid)
        np.testing.assert_allclose(value, _pycox_antolini(time, event, surv, grid), atol=ATOL)
