"""The metric registry: one ``MetricSpec`` per metric, read by everything that names metrics.

Protocol validation (which names ``metrics.report`` may hold), scoring (what to compute, on what, with which
bootstrap), results ordering, leaderboard columns (header, number format, which way is better, which CIs a
record keeps) and the CLI all look metrics up here, so a metric is added in one place. ``SummarySpec``s are
the metrics computed across protocols from per-protocol means (e.g. the area under a degradation curve).

The project's own metrics are defined below; an outside package registers its own through the entry-point
group ``bench.metrics`` (the entry point names a ``MetricSpec`` or ``SummarySpec`` object), or in process
with ``register_metric``. Listing names reads entry-point metadata only; the first lookup of a column's
metric (results tables, pages) imports every outside spec once, and one that cannot be imported is named
in a warning and otherwise left out.
"""
from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Any, Callable

import numpy as np

from bench import metrics as M
from bench import suite_summary as _suite
from bench.errors import BenchInputError, did_you_mean
from bench.registry import entry_points_by_name, package_of

log = logging.getLogger("bench.metric_registry")
GROUP = "bench.metrics"
NEEDS = ("risk", "curves", "segmentation")
SUMMARY_AXES = ("noise_fraction", "corruption_suite")
BOOTSTRAP_KINDS = ("patients", "none")
DAYS_PER_YEAR = 365.25
IBS_POINTS = 100


@dataclass
class ScoreInputs:
    """What a metric is computed from: one job's stored test predictions and outcomes, the training fold's
    outcomes and risks, the protocol's horizons, and the job's metric manifest (a metric may add to it what a
    reader needs to interpret its value, e.g. the threshold of a risk split)."""

    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray
    train_time: np.ndarray
    train_event: np.ndarray
    train_risk: np.ndarray
    horizons_years: list[float]
    survival: np.ndarray | None = None
    surv_times: np.ndarray | None = None
    segmentation: tuple[np.ndarray, np.ndarray] | None = None  # per patient and label: |A∩B|, |A|+|B|
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def horizons(self) -> np.ndarray:
        return np.asarray(self.horizons_years, dtype=float) * DAYS_PER_YEAR

    @property
    def ibs_grid(self) -> np.ndarray:
        return np.linspace(0.0, self.horizons[-1], IBS_POINTS + 1)[1:]

    def resampled(self, idx: np.ndarray) -> ScoreInputs:
        """The same job on the test patients ``idx`` (a bootstrap resample); training side unchanged."""
        seg = None if self.segmentation is None else tuple(a[idx] for a in self.segmentation)
        return replace(self, time=self.time[idx], event=self.event[idx], risk=self.risk[idx],
                       survival=None if self.survival is None else self.survival[idx], segmentation=seg,
                       manifest={})


Values = dict[str, float]


@dataclass(frozen=True)
class MetricSpec:
    """One metric.

    ``compute(inputs)`` returns the value (a float, stored under ``name``) or several named columns (e.g.
    the AUROC at each horizon). ``needs``: what the job must have — ``risk`` always, ``curves`` (survival
    curves: a method's own, else a Breslow baseline fitted on the training fold), ``segmentation`` (per-patient
    overlap counts; without them the metric is "not applicable" and left out). ``bootstrap``: ``patients``
    gives replicates on the fold's shared patient resamples (by ``replicates(inputs, n, seed)`` when given,
    else by recomputing on each resample), so CIs and paired tests line up across methods; ``none`` gives
    none. ``labels`` name the columns on pages (default: ``label`` for ``name``); ``column_label`` can name
    columns that depend on the protocol (horizons). ``ci_columns``: the columns whose pooled CI a leaderboard
    record keeps (default: every bootstrapped column). ``summary_columns``: those `bench run` prints.
    """

    name: str
    label: str
    definition: str
    compute: Callable[[ScoreInputs], float | Values]
    needs: tuple[str, ...] = ("risk",)
    higher_is_better: bool = True
    bootstrap: str = "patients"
    replicates: Callable[[ScoreInputs, int, int], dict[str, np.ndarray]] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    column_label: Callable[[str], str | None] | None = None
    column_rank: Callable[[str], float] | None = None
    ci_columns: tuple[str, ...] | None = None
    summary_columns: tuple[str, ...] | None = None
    number_format: str = ".3f"
    show_sd: bool = True

    def __post_init__(self) -> None:
        bad = [n for n in self.needs if n not in NEEDS]
        if bad or "risk" not in self.needs:
            raise BenchInputError(f"metric {self.name!r}: needs must be a subset of {NEEDS}, got {self.needs}")
        if self.bootstrap not in BOOTSTRAP_KINDS:
            raise BenchInputError(f"metric {self.name!r}: bootstrap must be one of {BOOTSTRAP_KINDS}")
        if not callable(self.compute):
            raise BenchInputError(f"metric {self.name!r}: compute must be callable")

    def label_of(self, column: str) -> str | None:
        """The page header of ``column`` if this metric produces it, else None."""
        if column == self.name:
            return self.label
        if column in self.labels:
            return self.labels[column]
        return self.column_label(column) if self.column_label else None

    def rank_of(self, column: str) -> float:
        if column in self.labels:
            return list(self.labels).index(column)
        return self.column_rank(column) if self.column_rank and column != self.name else -1.0

    def keeps_ci(self, column: str) -> bool:
        if self.bootstrap == "none":
            return False
        return self.ci_columns is None or column in self.ci_columns

    def run_summary(self) -> tuple[str, ...]:
        if self.summary_columns is not None:
            return self.summary_columns
        return tuple(self.labels) or (self.name,)

    def values(self, inputs: ScoreInputs) -> Values:
        out = self.compute(inputs)
        return dict(out) if isinstance(out, dict) else {self.name: out}

    def bootstrap_replicates(self, inputs: ScoreInputs, n: int, seed: int) -> dict[str, np.ndarray]:
        if self.bootstrap == "none" or n <= 0:
            return {}
        if self.replicates is not None:
            return self.replicates(inputs, n, seed)
        return _resampled_replicates(self, inputs, n, seed)


@dataclass(frozen=True)
class SummarySpec:
    """A metric computed across protocols: from the per-protocol mean of a job metric at each level of a
    protocol axis to one number per experiment. Axis ``noise_fraction`` (the fraction of corrupted test
    patients): ``compute(points)`` takes {level: mean} with at least two levels, the first the unperturbed
    one. Axis ``corruption_suite`` (types × severities): ``compute`` takes a ``bench.suite_summary.SuitePoints``.
    ``format(value, points)`` writes the page cell."""

    name: str
    label: str
    definition: str
    compute: Callable[[dict[float, float]], float]
    format: Callable[[float, dict[float, float]], str] = lambda v, _p: f"{v:.3f}"
    higher_is_better: bool = True
    axis: str = "noise_fraction"

    def __post_init__(self) -> None:
        if self.axis not in SUMMARY_AXES:
            raise BenchInputError(f"summary metric {self.name!r}: axis must be one of {SUMMARY_AXES}")
        if not callable(self.compute) or not callable(self.format):
            raise BenchInputError(f"summary metric {self.name!r}: compute and format must be callable")

    def cell(self, points: dict[float, float]) -> str:
        """The page cell for one experiment; a summary that fails on these points shows "n/a" (logged)."""
        try:
            return self.format(self.compute(points), points)
        except Exception as exc:  # an outside summary must not take a page down
            log.warning("summary metric %s failed on %s: %r", self.name, points, exc)
            return "n/a"


def _resampled_replicates(spec: MetricSpec, inputs: ScoreInputs, n: int, seed: int) -> dict[str, np.ndarray]:
    """Any metric on the shared resample stream: recompute it on each resample (NaN where undefined)."""
    rows: list[Values] = []
    n_patients = len(inputs.time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        with np.errstate(all="ignore"):
            for block in M._resamples(n_patients, n, seed, None, max(1, min(n, 2_000_000 // max(1, n_patients)))):
                for idx in block:
                    try:
                        rows.append(spec.values(inputs.resampled(idx)))
                    except (ValueError, ZeroDivisionError, FloatingPointError):
                        rows.append({})
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return {c: np.array([float(r.get(c, np.nan)) for r in rows]) for c in columns}


# --- the project's metrics ------------------------------------------------------------------------------

def horizon_key(years: float) -> str:
    return f"td_auc_{years:g}y"


def _horizon_years(column: str) -> float | None:
    if column.startswith("td_auc_") and column.endswith("y"):
        try:
            return float(column[7:-1])
        except ValueError:
            return None
    return None


def _patient_metric(fn: Callable, arrays: Callable[[ScoreInputs], tuple], kwargs: Callable[[ScoreInputs], dict],
                    name: str):
    """compute and replicates of a metric of bench.metrics whose per-patient arrays are resampled together
    (its fast bootstrap kernels are keyed on the function)."""
    def compute(x: ScoreInputs) -> float:
        return fn(*arrays(x), **kwargs(x))

    def replicates(x: ScoreInputs, n: int, seed: int) -> dict[str, np.ndarray]:
        return {name: M.bootstrap_replicates(fn, *arrays(x), n=n, seed=seed, **kwargs(x))}

    return compute, replicates


def _td_auc(x: ScoreInputs) -> Values:
    aucs, mean = M.td_auc(x.time, x.event, x.risk, horizons=x.horizons, train_time=x.train_time,
                          train_event=x.train_event)
    return {"td_auc": mean} | {horizon_key(y): a for y, a in zip(x.horizons_years, aucs)}


def _td_auc_replicates(x: ScoreInputs, n: int, seed: int) -> dict[str, np.ndarray]:
    reps = M.bootstrap_replicates(M.td_auc, x.time, x.event, x.risk, n=n, seed=seed, full=True,
                                  horizons=x.horizons, train_time=x.train_time, train_event=x.train_event)
    return {"td_auc": reps[:, -1]} | {horizon_key(y): reps[:, j] for j, y in enumerate(x.horizons_years)}


def _logrank(x: ScoreInputs) -> float:
    threshold = float(np.median(x.train_risk))
    x.manifest["logrank_threshold"] = threshold
    return M.logrank_p(x.time, x.event, x.risk, threshold)


DICE_LABELS = ("gtvp", "gtvn")  # label 1, label 2 of the HECKTOR masks


def _dice(x: ScoreInputs) -> Values:
    inter, size = x.segmentation
    out = {}
    for j, label in enumerate(DICE_LABELS):
        s = size[:, j].sum()
        out[f"dice_{label}"] = 2 * inter[:, j].sum() / s if s else M._nan(
            f"dice_{label}: the label is in no mask of this fold")
    return out


def _dice_replicates(x: ScoreInputs, n: int, seed: int) -> dict[str, np.ndarray]:
    reps = M.dice_replicates(*x.segmentation, n=n, seed=seed)
    x.manifest["bootstrap"]["dice"] = True
    return {f"dice_{label}": reps[:, j] for j, label in enumerate(DICE_LABELS)}


_td_c, _td_r = _patient_metric(M.cindex_td, lambda x: (x.time, x.event, x.survival),
                               lambda x: {"surv_times": x.surv_times}, "cindex_td")
_h_c, _h_r = _patient_metric(M.cindex_harrell, lambda x: (x.time, x.event, x.risk), lambda x: {}, "cindex_harrell")
_u_c, _u_r = _patient_metric(M.cindex_uno, lambda x: (x.time, x.event, x.risk),
                             lambda x: {"train_time": x.train_time, "train_event": x.train_event}, "cindex_uno")
_ibs_c, _ibs_r = _patient_metric(M.integrated_brier, lambda x: (x.time, x.event, x.survival),
                                 lambda x: {"surv_times": x.surv_times, "train_time": x.train_time,
                                            "train_event": x.train_event, "horizons": x.ibs_grid}, "ibs")

BUILTIN: tuple[MetricSpec, ...] = (
    MetricSpec("cindex_td", "C-td",
               "Antolini time-dependent C on survival curves (pycox concordance_td('antolini')); curves read "
               "as right-continuous steps, ties in S count 0", _td_c, needs=("risk", "curves"), replicates=_td_r),
    MetricSpec("cindex_harrell", "Harrell C",
               "Harrell's C on the risk; ties in risk count 1/2; an event is comparable with later "
               "times and censorings at its own time (scikit-survival concordance_index_censored)", _h_c,
               replicates=_h_r),
    MetricSpec("cindex_uno", "Uno C",
               "Uno's IPCW C, weights 1/G(T)^2 with G the censoring Kaplan-Meier of the training fold; "
               "tau = none, test events after the last training time left out (sksurv concordance_index_ipcw)",
               _u_c, replicates=_u_r),
    MetricSpec("td_auc", "td-AUROC (mean)",
               "cumulative/dynamic AUROC at each horizon (IPCW cases, controls alive after it), mean weighted "
               "by the test Kaplan-Meier (sksurv cumulative_dynamic_auc); horizons outside the test or "
               "training follow-up are NaN and left out of the mean", _td_auc, replicates=_td_auc_replicates,
               column_label=lambda c: None if _horizon_years(c) is None else f"AUROC {c[7:]}",
               column_rank=lambda c: _horizon_years(c) if _horizon_years(c) is not None else -1.0,
               ci_columns=("td_auc", "td_auc_1y"), summary_columns=("td_auc",)),
    MetricSpec("ibs", "IBS",
               "IPCW integrated Brier score (sksurv integrated_brier_score) on 100 equally spaced times in "
               "(0, last horizon], restricted to the test follow-up [min, max) and the training follow-up",
               _ibs_c, needs=("risk", "curves"), higher_is_better=False, replicates=_ibs_r),
    MetricSpec("dice", "DSC",
               "aggregate Dice per label over the fold's patients, 2*sum|A∩B| / sum(|A|+|B|) (HECKTOR)", _dice,
               needs=("risk", "segmentation"), replicates=_dice_replicates,
               labels={"dice_gtvp": "DSC GTVp", "dice_gtvn": "DSC GTVn"}),
    MetricSpec("logrank_p", "log-rank p",
               "log-rank p between risk > training-fold median risk and the rest (lifelines logrank_test)",
               _logrank, higher_is_better=False, bootstrap="none", summary_columns=(), number_format=".3g",
               show_sd=False),
)


def _relative_drop(points: dict[float, float]) -> float:
    last = max(points)
    return (points[0.0] - points[last]) / points[0.0]


def _degradation_area(points: dict[float, float]) -> float:
    fs = sorted(points)
    return float(np.trapezoid([points[f] for f in fs], fs) / (fs[-1] - fs[0]))


BUILTIN_SUMMARIES: tuple[SummarySpec, ...] = (
    SummarySpec("relative_drop", "relative drop",
                "(clean − worst) / clean of the fold-mean primary metric, worst = the largest noise fraction run",
                _relative_drop, format=lambda v, p: f"{100 * v:.1f} % (at {max(p):.0%})", higher_is_better=False),
    SummarySpec("degradation_auc", "area (mean C-td)",
                "trapezoid area under the fold-mean primary metric against the noise fraction, over the "
                "fractions run, divided by their range (1.0 = perfect at every level)", _degradation_area),
    SummarySpec("mrd", "mRD",
                "mean retained discrimination: R = (C − 0.5) / (C_clean − 0.5) of the fold-mean primary metric per "
                "(type, severity), averaged over severities per type, then over types; n/a when the clean CI "
                "includes 0.5", _suite.mean_retained, format=_suite._fmt, axis="corruption_suite"),
    SummarySpec("rce", f"rCE vs {_suite.REFERENCE_METHOD}",
                f"corruption error relative to {_suite.REFERENCE_METHOD} (ImageNet-C's mCE): per type Σ(1 − C) / "
                f"Σ(1 − C_ref) over the severities both ran, averaged over types; below 1 = fewer errors than the "
                f"reference", _suite.relative_corruption_error, format=_suite._fmt, higher_is_better=False,
                axis="corruption_suite"),
)


# --- registry -------------------------------------------------------------------------------------------

_in_process: dict[str, MetricSpec | SummarySpec] = {}
_loaded: dict[str, MetricSpec | SummarySpec] = {}
_failed: dict[str, BenchInputError] = {}  # entry points that could not be loaded: tried once
_warned: set[str] = set()  # and named once in a warning by the column lookups


@dataclass(frozen=True)
class MetricEntry:
    name: str
    target: str  # "package.module:OBJECT", or "<builtin>" / "<registered in process>"
    package: str
    _spec: MetricSpec | SummarySpec | None = None

    def load(self) -> MetricSpec | SummarySpec:
        if self._spec is not None:
            return self._spec
        if self.name in _loaded:
            return _loaded[self.name]
        if self.name in _failed:
            raise _failed[self.name]
        if self.target.startswith("<unusable>: "):
            _failed[self.name] = BenchInputError(f"metric {self.name!r}: {self.target.removeprefix('<unusable>: ')}")
            raise _failed[self.name]
        module_name, _, attr = self.target.partition(":")
        try:
            obj = getattr(import_module(module_name), attr) if attr else import_module(module_name)
            check_spec(self.name, obj)
        except Exception as exc:  # whatever an outside package's module raises on import
            detail = exc if isinstance(exc, BenchInputError) else f"{type(exc).__name__}: {exc}"
            _failed[self.name] = BenchInputError(f"metric {self.name!r} (from package {self.package}) cannot be "
                                                 f"loaded from {self.target!r}: {detail}")
            raise _failed[self.name] from None
        _loaded[self.name] = obj
        return obj


def check_spec(name: str, obj: object) -> None:
    if not isinstance(obj, (MetricSpec, SummarySpec)):
        raise BenchInputError(f"metric {name!r}: {obj!r} is not a bench.MetricSpec or bench.SummarySpec")
    if obj.name != name:
        raise BenchInputError(f"metric {name!r}: the spec is named {obj.name!r}; the entry point and the "
                              f"spec must use the same name")
    taken = next((s.name for s in BUILTIN if s.label_of(name) is not None), None)
    if taken or name in {s.name for s in BUILTIN_SUMMARIES}:
        raise BenchInputError(f"metric {name!r}: the name is survbench's own"
                              f"{f' (a column of {taken!r})' if taken else ''}; choose another name")


def register_metric(spec: MetricSpec | SummarySpec) -> MetricSpec | SummarySpec:
    """Register a metric in this process (notebooks, tests); an entry point does it for an installed package."""
    check_spec(spec.name, spec)
    _in_process[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    _in_process.pop(name, None)


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[MetricEntry, ...]:
    """The installed packages' metric entry points, read once per process (pages look columns up often)."""
    own = {s.name for s in BUILTIN + BUILTIN_SUMMARIES}
    out = []
    for name, eps in entry_points_by_name(GROUP).items():
        if name in own:
            log.warning("metric entry point %r (package %s) clashes with survbench's own metric; ignored",
                        name, ", ".join(package_of(ep) for ep in eps))
        elif len(eps) == 1:
            out.append(MetricEntry(name, eps[0].value, package_of(eps[0])))
        else:  # two packages claim one name: neither is used, and the entry says why when asked for
            packages = " and ".join(f"{package_of(ep)} ({ep.value})" for ep in eps)
            out.append(MetricEntry(name, f"<unusable>: registered by {packages}; uninstall one", packages))
    return tuple(out)


def available() -> dict[str, MetricEntry]:
    """Every registered metric and summary metric by name, in column order: the project's own first, then
    outside ones by name. Entry points are not imported."""
    found = {s.name: MetricEntry(s.name, "<builtin>", "survbench", s) for s in BUILTIN + BUILTIN_SUMMARIES}
    outside = {e.name: e for e in _installed() if e.name not in found}
    for name, spec in _in_process.items():
        outside[name] = MetricEntry(name, "<registered in process>", "<registered in process>", spec)
    return found | dict(sorted(outside.items()))


def get_entry(name: str) -> MetricEntry:
    entries = available()
    if name in entries:
        return entries[name]
    raise BenchInputError(f"unknown metric {name!r}{did_you_mean(name, entries)} (registered: {', '.join(entries)}; see `bench metrics`)")


def get_metric(name: str) -> MetricSpec:
    spec = get_entry(name).load()
    if not isinstance(spec, MetricSpec):
        raise BenchInputError(f"metric {name!r} is a summary across protocols, not a per-job metric")
    return spec


def loaded_specs(*, summaries: bool = False) -> list[MetricSpec | SummarySpec]:
    """Every registered spec of one kind, loaded, in registry order; an outside one that cannot be loaded is
    left out with a warning (pages and tables still render, its columns last under their own names)."""
    kind = SummarySpec if summaries else MetricSpec
    out = []
    for entry in available().values():
        try:
            spec = entry.load()
        except BenchInputError as exc:
            if entry.name not in _warned:
                _warned.add(entry.name)
                log.warning("%s", exc)
            continue
        if isinstance(spec, kind):
            out.append(spec)
    return out


def spec_of_column(column: str) -> tuple[int, MetricSpec] | None:
    """(registry position, spec) of the metric that produces ``column``."""
    for i, spec in enumerate(loaded_specs()):
        if spec.label_of(column) is not None:
            return i, spec
    return None


def column_order(column: str) -> tuple:
    """Sort key of a metric column: its metric's registry position, then its place within the metric."""
    found = spec_of_column(column)
    if found is None:
        return (len(loaded_specs()), 0.0, column)
    i, spec = found
    return (i, spec.rank_of(column), column)


def run_summary_columns() -> list[str]:
    return [c for s in loaded_specs() for c in s.run_summary()]


__all__ = ["MetricSpec", "SummarySpec", "ScoreInputs", "register_metric", "unregister_metric", "available",
           "get_metric", "get_entry", "loaded_specs", "column_order", "spec_of_column", "horizon_key"]
