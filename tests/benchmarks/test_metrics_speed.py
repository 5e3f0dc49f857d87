"""Speed of ``bench.metrics`` side by side with the libraries that compute the same metric.

How to run (the default ``addopts`` deselect these with ``-m 'not slow and not benchmark'``)::

    .venv/bin/python -m pytest tests/benchmarks -m benchmark -p no:cacheprovider \\
        --benchmark-columns=min,median,mean,rounds --benchmark-group-by=group,param:n \\
        --benchmark-sort=mean

Each benchmark group is one (metric, n): ``ours`` beside scikit-survival, lifelines, pycox and torchsurv,
whichever of them has that metric. n = 500, 5 000 and 50 000 patients. The whole run takes about eight
minutes on two cores; most of it is the libraries' O(n²) implementations at n = 50 000, which run a
single round (``benchmark.pedantic``), and torchsurv's own 1 000-resample bootstrap (~1 min). Every
library call finishes at 50 000 within ~2.5 min, but two need a lot of memory there and are skipped, with
the reason, on a machine that has less available: pycox's Brier score (~14 GB, its censor_surv='km' frame)
and torchsurv's C-td (~16.5 GB, its n x n input).
``--benchmark-json=FILE`` keeps the numbers; ``extra_info["value"]`` holds each call's result, so one
can check that the implementations agree.

Targets:

- each of our metrics at least as fast as the fastest library with the same metric at n = 50 000;
- ``cindex_td`` (Antolini) at least 10x faster than pycox's ``concordance_td('antolini')``;
- ``bootstrap_ci`` with 1 000 resamples at n = 500 well under a second (Harrell's C and C-td).

Inputs are synthetic and fixed-seed (see ``_cohort``): continuous times with about 30 % rounded to whole
days (ties), about 60 % events, a risk score correlated with the time, training outcomes from the same
generator with another seed and a longer administrative follow-up (so that scikit-survival's IPCW
metrics accept every test time), Weibull survival curves S = exp(-H0(t) exp(risk)) on a fixed grid of
100 times, and IPCW horizons at the 20/40/60/80 % quantiles of the test event times. Conversions each
library needs (structured arrays, DataFrames, torch tensors, torchsurv's n x n C-td matrix) happen
outside the timed region; everything the library does itself (fitting the censoring Kaplan-Meier,
IPC weights, grouping for the log-rank test) is timed.
"""
from __future__ import annotations

import gc
import time as _clock
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

NS = (500, 5_000, 50_000)
WARM_N = 500  # every call is run once at this size first: numba JIT, lazy imports, torch's first call
GRID = np.linspace(30.0, 1500.0, 100)  # the survival curves' fixed time grid (days)
LAMBDA, SHAPE = 1000.0, 1.2  # Weibull baseline: H0(t) = (t / LAMBDA) ** SHAPE
TEST_ADMIN, TRAIN_ADMIN = 1800.0, 2200.0  # administrative end of follow-up; training covers the test times
SLOW_CALL_S = 0.3  # a call slower than this runs a few pedantic rounds instead of pytest-benchmark's calibration


# --- synthetic data -------------------------------------------------------------------------------------

def _cohort(n: int, seed: int, admin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, event, risk): Weibull proportional hazards with log-hazard lp, uniform censoring on
    [0, 3000] days and administrative censoring at ``admin``; ~30 % of times rounded to whole days;
    risk = lp + noise (Harrell's C about 0.70). About 62 % events."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(0.0, 1.0, n)
    t_event = LAMBDA * (rng.exponential(size=n) * np.exp(-lp)) ** (1.0 / SHAPE)
    stop = np.minimum(rng.uniform(0.0, 3000.0, n), admin)
    time = np.minimum(t_event, stop)
    event = t_event <= stop
    rounded = rng.random(n) < 0.3
    time[rounded] = np.maximum(1.0, np.round(time[rounded]))
    risk = lp + rng.normal(0.0, 0.5, n)
    return time, event, risk


@dataclass(frozen=True)
class Data:
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray
    train_time: np.ndarray
    train_event: np.ndarray
    surv: np.ndarray  # (n, len(GRID))
    grid: np.ndarray
    horizons: np.ndarray
    threshold: float  # log-rank split: risk above the median


@lru_cache(maxsize=None)
def _data(n: int) -> Data:
    time, event, risk = _cohort(n, seed=20240 + n, admin=TEST_ADMIN)
    train_time, train_event, _ = _cohort(n, seed=70000 + n, admin=TRAIN_ADMIN)
    surv = np.exp(-((GRID / LAMBDA) ** SHAPE)[None, :] * np.exp(risk)[:, None])
    horizons = np.quantile(time[event], [0.2, 0.4, 0.6, 0.8])
    assert time.min() < GRID[0] and GRID[-1] < time.max() < train_time.max()
    return Data(time, event, risk, train_time, train_event, surv, GRID.copy(), horizons,
                float(np.median(risk)))


@lru_cache(maxsize=None)
def _sksurv(n: int) -> tuple[Any, Any]:
    from sksurv.util import Surv

    d = _data(n)
    return Surv.from_arrays(d.event, d.time), Surv.from_arrays(d.train_event, d.train_time)


@lru_cache(maxsize=None)
def _torch(n: int) -> dict[str, Any]:
    # torchsurv's Kaplan-Meier works in float32 (float64 inputs fail in its weight update), so all float32.
    import torch

    d = _data(n)
    f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return {"time": f32(d.time), "event": torch.as_tensor(d.event), "risk": f32(d.risk),
            "train_time": f32(d.train_time), "train_event": torch.as_tensor(d.train_event),
            "surv": f32(d.surv), "grid": f32(d.grid), "horizons": f32(d.horizons)}


def _torch_td_matrix(n: int) -> Any:
    """torchsurv's time-dependent estimate: entry (i, j) = 1 - S_i(T_j), the curve read as a right-continuous
    step function on the grid (as pycox's steps='post'); n x n float32."""
    import torch

    d = _data(n)
    col = np.clip(np.searchsorted(d.grid, d.time, side="right") - 1, 0, len(d.grid) - 1)
    out = np.empty((n, n), dtype=np.float32)
    for start in range(0, n, 2_000):  # in row blocks: no n x n float64 intermediate
        out[start:start + 2_000] = 1.0 - d.surv[start:start + 2_000, col]
    return torch.from_numpy(out)


@lru_cache(maxsize=None)
def _pycox_frame(n: int) -> Any:
    import pandas as pd

    d = _data(n)
    return pd.DataFrame(d.surv.T, index=d.grid)


def _pycox_simps_shim() -> None:
    # pycox 0.3's EvalSurv.integrated_brier_score calls scipy.integrate.simps, which SciPy removed (1.14);
    # simpson is its replacement with the same (y, x) call. Patched here only, for this benchmark module.
    import scipy.integrate

    if not hasattr(scipy.integrate, "simps"):
        scipy.integrate.simps = scipy.integrate.simpson


# --- the implementations: impl -> maker(n) -> zero-argument call ---------------------------------------

def _ours(name: str) -> Callable[[int], Callable[[], Any]]:
    def maker(n: int) -> Callable[[], Any]:
        metrics = pytest.importorskip("bench.metrics")
        fn = getattr(metrics, name, None)
        if fn is None:
            pytest.skip(f"bench.metrics.{name} does not exist yet")
        d = _data(n)
        args = {
            "cindex_harrell": lambda: fn(d.time, d.event, d.risk),
            "cindex_uno": lambda: fn(d.time, d.event, d.risk, d.train_time, d.train_event),
            "cindex_td": lambda: fn(d.time, d.event, d.surv, d.grid),
            "td_auc": lambda: fn(d.time, d.event, d.risk, d.horizons, d.train_time, d.train_event),
            "integrated_brier": lambda: fn(d.time, d.event, d.surv, d.grid, d.train_time, d.train_event),
            "logrank_p": lambda: fn(d.time, d.event, d.risk, d.threshold),
        }
        return args[name]
    return maker


def _sk_harrell(n):
    from sksurv.metrics import concordance_index_censored

    d = _data(n)
    return lambda: concordance_index_censored(d.event, d.time, d.risk)[0]


def _ll_harrell(n):
    from lifelines.utils import concordance_index

    d = _data(n)
    return lambda: concordance_index(d.time, -d.risk, d.event)


def _ts_harrell(n):
    from torchsurv.metrics.cindex import ConcordanceIndex

    t = _torch(n)
    return lambda: ConcordanceIndex()(t["risk"], t["event"], t["time"])


def _sk_uno(n):
    from sksurv.metrics import concordance_index_ipcw

    y, y_train = _sksurv(n)
    risk = _data(n).risk
    return lambda: concordance_index_ipcw(y_train, y, risk)[0]


def _ts_uno(n):
    from torchsurv.metrics.cindex import ConcordanceIndex
    from torchsurv.stats.ipcw import get_ipcw

    t = _torch(n)

    def call():  # censoring KM fitted on the training outcomes, evaluated at the test times
        w = get_ipcw(t["train_event"], t["train_time"], t["time"])
        return ConcordanceIndex()(t["risk"], t["event"], t["time"], weight=w)
    return call


def _pycox_td(n):
    # EvalSurv without censor_surv: concordance_td never uses it, and censor_surv='km' would build an
    # (unique times x n) float64 frame (~13 GB at n = 50 000) that is no part of the C-td computation.
    from pycox.evaluation import EvalSurv

    d, frame = _data(n), _pycox_frame(n)
    event = d.event.astype(float)
    return lambda: EvalSurv(frame, d.time, event).concordance_td("antolini")


def _ts_td(n):
    from torchsurv.metrics.cindex import ConcordanceIndex

    t, est = _torch(n), _torch_td_matrix(n)
    return lambda: ConcordanceIndex()(est, t["event"], t["time"])


def _sk_auc(n):
    from sksurv.metrics import cumulative_dynamic_auc

    y, y_train = _sksurv(n)
    d = _data(n)
    return lambda: cumulative_dynamic_auc(y_train, y, d.risk, d.horizons)


def _ts_auc(n):
    from torchsurv.metrics.auc import Auc
    from torchsurv.stats.ipcw import get_ipcw

    t = _torch(n)

    def call():
        w = get_ipcw(t["train_event"], t["train_time"], t["time"])
        w_new = get_ipcw(t["train_event"], t["train_time"], t["horizons"])
        return Auc()(t["risk"], t["event"], t["time"], new_time=t["horizons"], weight=w, weight_new_time=w_new)
    return call


def _sk_ibs(n):
    from sksurv.metrics import integrated_brier_score

    y, y_train = _sksurv(n)
    d = _data(n)
    return lambda: integrated_brier_score(y_train, y, d.surv, d.grid)


def _ts_ibs(n):
    from torchsurv.metrics.brier_score import BrierScore
    from torchsurv.stats.ipcw import get_ipcw

    t = _torch(n)

    def call():
        w = get_ipcw(t["train_event"], t["train_time"], t["time"])
        w_new = get_ipcw(t["train_event"], t["train_time"], t["grid"])
        brier = BrierScore()
        brier(t["surv"], t["event"], t["time"], new_time=t["grid"], weight=w, weight_new_time=w_new)
        return brier.integral()
    return call


def _pycox_ibs(n):
    # pycox fits the censoring KM on the test set itself (censor_surv='km'); there is no train/test option.
    from pycox.evaluation import EvalSurv

    _pycox_simps_shim()
    d, frame = _data(n), _pycox_frame(n)
    event = d.event.astype(float)
    return lambda: EvalSurv(frame, d.time, event, censor_surv="km").integrated_brier_score(d.grid)


def _ll_logrank(n):
    from lifelines.statistics import logrank_test

    d = _data(n)

    def call():
        high = d.risk > d.threshold
        return logrank_test(d.time[high], d.time[~high], d.event[high], d.event[~high]).p_value
    return call


def _sk_logrank(n):
    from sksurv.compare import compare_survival

    y, _ = _sksurv(n)
    d = _data(n)
    return lambda: compare_survival(y, d.risk > d.threshold)[1]


@dataclass(frozen=True)
class Impl:
    make: Callable[[int], Callable[[], Any]]
    module: str | None = None  # importorskip'd before use
    single_round_at: tuple[int, ...] = ()  # known to take seconds here: one pedantic round, no probe call
    memory_gb: dict | None = None  # n -> peak GB it needs: skipped when less than that + 1 GB is available


IMPLS: dict[str, dict[str, Impl]] = {
    "cindex_harrell": {
        "ours": Impl(_ours("cindex_harrell")),
        "sksurv": Impl(_sk_harrell, "sksurv", single_round_at=(50_000,)),
        "lifelines": Impl(_ll_harrell, "lifelines"),
        "torchsurv": Impl(_ts_harrell, "torchsurv", single_round_at=(50_000,)),
    },
    "cindex_uno": {
        "ours": Impl(_ours("cindex_uno")),
        "sksurv": Impl(_sk_uno, "sksurv", single_round_at=(50_000,)),
        "torchsurv": Impl(_ts_uno, "torchsurv", single_round_at=(50_000,)),
    },
    "cindex_td": {
        "ours": Impl(_ours("cindex_td")),
        "pycox": Impl(_pycox_td, "pycox", single_round_at=(50_000,)),
        # its input is an n x n float32 matrix of 1 - S_i(T_j): 10 GB, peak ~16.5 GB and ~1.5 min at 50 000
        "torchsurv": Impl(_ts_td, "torchsurv", single_round_at=(50_000,), memory_gb={50_000: 16.5}),
    },
    "td_auc": {
        "ours": Impl(_ours("td_auc")),
        "sksurv": Impl(_sk_auc, "sksurv"),
        "torchsurv": Impl(_ts_auc, "torchsurv"),
    },
    "integrated_brier": {
        "ours": Impl(_ours("integrated_brier")),
        "sksurv": Impl(_sk_ibs, "sksurv"),
        # censor_surv='km' builds an (unique times x n) float64 frame: peak ~14 GB and ~50 s at n = 50 000
        "pycox": Impl(_pycox_ibs, "pycox", single_round_at=(50_000,), memory_gb={50_000: 14.0}),
        "torchsurv": Impl(_ts_ibs, "torchsurv"),
    },
    "logrank_p": {
        "ours": Impl(_ours("logrank_p")),
        "lifelines": Impl(_ll_logrank, "lifelines"),
        "sksurv": Impl(_sk_logrank, "sksurv"),
    },
}

def _value(result: Any) -> Any:
    """A JSON-friendly copy of a call's result for extra_info (checks that the implementations agree)."""
    if hasattr(result, "detach"):
        result = result.detach().cpu().numpy()
    if isinstance(result, tuple):
        return [_value(r) for r in result]
    arr = np.asarray(result, dtype=float)
    return float(arr) if arr.ndim == 0 else [float(x) for x in arr.ravel()]


def _timed_once(call: Callable[[], Any]) -> float:
    start = _clock.perf_counter()
    call()
    return _clock.perf_counter() - start


def _available_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _run(benchmark, metric: str, impl: str, n: int) -> None:
    spec = IMPLS[metric][impl]
    if spec.module:
        pytest.importorskip(spec.module)
    if spec.memory_gb and n in spec.memory_gb:
        gc.collect()  # a previous test's large inputs
        need, have = spec.memory_gb[n], _available_gb()
        if have is None or have < need + 1.0:
            pytest.skip(f"{impl} {metric} at n={n} needs ~{need:.0f} GB of memory; "
                        f"{'unknown' if have is None else f'{have:.1f} GB'} available")
    spec.make(WARM_N)()  # warm-up outside the timing (numba JIT, imports, first torch call)
    call = spec.make(n)  # conversions happen here, outside the timed region
    benchmark.extra_info.update(metric=metric, impl=impl, n=n)
    if n in spec.single_round_at:
        result = benchmark.pedantic(call, rounds=1, iterations=1)
    else:
        seconds = _timed_once(call)  # a probe, which also warms caches at this n
        if seconds > SLOW_CALL_S:
            rounds = int(min(5, max(1, 3.0 // seconds)))
            result = benchmark.pedantic(call, rounds=rounds, iterations=1)
        else:
            result = benchmark(call)
    benchmark.extra_info["value"] = _value(result)


def _params(metric: str):
    return [pytest.param(n, impl, id=f"{impl}-n{n}") for n in NS for impl in IMPLS[metric]]


# --- the benchmarks: one test per metric, parametrized over (n, implementation) -------------------------

@pytest.mark.benchmark(group="cindex_harrell")
@pytest.mark.parametrize(("n", "impl"), _params("cindex_harrell"))
def test_cindex_harrell(benchmark, n, impl):
    _run(benchmark, "cindex_harrell", impl, n)


@pytest.mark.benchmark(group="cindex_uno")
@pytest.mark.parametrize(("n", "impl"), _params("cindex_uno"))
def test_cindex_uno(benchmark, n, impl):
    _run(benchmark, "cindex_uno", impl, n)


@pytest.mark.benchmark(group="cindex_td")
@pytest.mark.parametrize(("n", "impl"), _params("cindex_td"))
def test_cindex_td(benchmark, n, impl):
    _run(benchmark, "cindex_td", impl, n)


@pytest.mark.benchmark(group="td_auc")
@pytest.mark.parametrize(("n", "impl"), _params("td_auc"))
def test_td_auc(benchmark, n, impl):
    _run(benchmark, "td_auc", impl, n)


@pytest.mark.benchmark(group="integrated_brier")
@pytest.mark.parametrize(("n", "impl"), _params("integrated_brier"))
def test_integrated_brier(benchmark, n, impl):
    _run(benchmark, "integrated_brier", impl, n)


@pytest.mark.benchmark(group="logrank_p")
@pytest.mark.parametrize(("n", "impl"), _params("logrank_p"))
def test_logrank_p(benchmark, n, impl):
    _run(benchmark, "logrank_p", impl, n)


# --- bootstrap: 1 000 resamples at n = 500 (target: well under a second) --------------------------------

def _ts_bootstrap_harrell(n):
    # torchsurv's own bootstrap interval of Harrell's C (Efron percentile, resamples with replacement)
    from torchsurv.metrics.cindex import ConcordanceIndex

    t = _torch(n)

    def call():
        cindex = ConcordanceIndex()
        point = cindex(t["risk"], t["event"], t["time"])
        return point, cindex.confidence_interval(method="bootstrap", n_bootstraps=1000)
    return call


@pytest.mark.benchmark(group="bootstrap_ci(cindex_harrell, 1000)")
@pytest.mark.parametrize("impl", ["ours", "torchsurv"])
@pytest.mark.parametrize("n", [500])
def test_bootstrap_cindex_harrell(benchmark, n, impl):
    if impl == "torchsurv":
        pytest.importorskip("torchsurv")
        _ts_bootstrap_harrell(WARM_N)  # imports only: a full warm-up would double its ~1 min
        call = _ts_bootstrap_harrell(n)
        benchmark.extra_info.update(metric="bootstrap_cindex_harrell", impl=impl, n=n)
        result = benchmark.pedantic(call, rounds=1, iterations=1)
        benchmark.extra_info["value"] = _value((result[0], *result[1]))
        return
    metrics = pytest.importorskip("bench.metrics")
    if not hasattr(metrics, "bootstrap_ci"):
        pytest.skip("bench.metrics.bootstrap_ci does not exist yet")
    d = _data(n)
    call = lambda: metrics.bootstrap_ci(metrics.cindex_harrell, d.time, d.event, d.risk, n=1000, seed=0)  # noqa: E731
    call()
    benchmark.extra_info.update(metric="bootstrap_cindex_harrell", impl=impl, n=n)
    benchmark.extra_info["value"] = _value(benchmark(call))


@pytest.mark.benchmark(group="bootstrap_ci(cindex_td, 1000)")
@pytest.mark.parametrize("impl", ["ours"])
@pytest.mark.parametrize("n", [500])
def test_bootstrap_cindex_td(benchmark, n, impl):
    metrics = pytest.importorskip("bench.metrics")
    if not hasattr(metrics, "bootstrap_ci") or not hasattr(metrics, "cindex_td"):
        pytest.skip("bench.metrics.bootstrap_ci / cindex_td do not exist yet")
    d = _data(n)
    call = lambda: metrics.bootstrap_ci(metrics.cindex_td, d.time, d.event, d.surv,  # noqa: E731
                                        surv_times=d.grid, n=1000, seed=0)
    call()
    benchmark.extra_info.update(metric="bootstrap_cindex_td", impl=impl, n=n)
    benchmark.extra_info["value"] = _value(benchmark(call))
