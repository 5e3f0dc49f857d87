"""The plugin interface: ``Method``, what it returns (``Prediction``) and what it is given (``RunContext``).

A method is one small class (the scikit-learn habit): built as ``cls(ctx)``, trained with
``fit(train, val)`` and asked ``predict(cohort)``. Class attributes declare what it consumes and produces,
so the harness can check a dataset before training and flag rows on the leaderboards.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.errors import BenchInputError, PredictionError

if TYPE_CHECKING:
    from bench.data.cohort import Cohort

INPUTS = ("ct", "pet", "mask", "clinical", "groundtruth")  # groundtruth: the oracle ceiling only
OUTPUTS = ("risk", "survival", "segmentation")
FAMILIES = ("clinical", "feature", "deep", "foundation", "reference", "other")
# What one fit asks of a machine: CPU cores (also the threads it is pinned to, under either executor), GPUs
# (a fraction below 1 lets fits share one), memory in GiB. A key a method does not declare takes this default.
DEFAULT_RESOURCES: dict[str, float] = {"cpus": 1, "gpus": 0, "memory_gb": 2.0}


@dataclass
class RunContext:
    """What the harness hands a method: device, seed, scale, resolved config, a cache dir, a logger."""

    config: dict[str, Any]
    scale: str = "quick"
    seed: int = 0
    device: str = "cpu"
    cache_dir: Path = field(default_factory=lambda: Path(".cache"))
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("bench.method"))
    progress: bool = True
    method_name: str = ""


class Method:
    """Base class of every method plugin.

    Subclasses set ``consumes`` (subset of ct, pet, mask, clinical), ``produces`` (risk always; survival,
    segmentation where the model gives them) and ``configs = {scale: {...}}`` for smoke, quick and paper.
    ``needs_mask_at_test = True`` lets ``predict`` see reference contours (flagged on leaderboards).
    ``ceiling = True`` marks a row that is a bound, not a method (the oracle; flagged on leaderboards).
    ``family`` (one of FAMILIES) is what pages may group rows by: clinical tables only, engineered image
    features, deep image networks, pretrained foundation-model encoders, reference rows; "other" by default.
    Bump ``version`` when a code change alters results: it is part of the config hash.
    """

    consumes: ClassVar[tuple[str, ...]] = ("clinical",)
    produces: ClassVar[tuple[str, ...]] = ("risk",)
    configs: ClassVar[dict[str, dict[str, Any]]] = {}
    needs_mask_at_test: ClassVar[bool] = False
    ceiling: ClassVar[bool] = False
    family: ClassVar[str] = "other"
    version: ClassVar[str] = "1"
    # Functions (module.name) a fitted model of this method holds beyond bench.model_io's allow-list; the
    # classes of the method's own package are trusted already.
    trusted_globals: ClassVar[tuple[str, ...]] = ()
    # What one fit needs per scale, ``{scale: {"cpus": int, "gpus": float, "memory_gb": float}}``; missing
    # scales and keys take DEFAULT_RESOURCES (bench.method.method_resources), so a plugin may say nothing.
    resources: ClassVar[dict[str, dict[str, float]]] = {}

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def training_history(self) -> dict[str, list] | None:
        """The fit's per-epoch series (e.g. epoch, loss, val_loss, lr, seconds), kept with every row the fit
        scores and shown on the pages; None for a method that does not train in epochs. The default reads
        ``history_``, which bench.nn.Trainer-based methods set."""
        history = getattr(self, "history_", None)
        return history if isinstance(history, dict) else None

    def attach(self, ctx: RunContext) -> Method:
        """Give a fitted method, read back from the store, this run's context (device, logger, progress bars,
        cache); the context is not part of the model. A subclass that keeps device-bound state may extend it."""
        self.ctx = ctx
        return self

    @property
    def config(self) -> dict[str, Any]:
        return self.ctx.config

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> list[str]:
        """Complaints about a resolved config (e.g. a negative learning rate); empty when it is fine.
        Called before any training, so a bad ``--set`` value is an input error, not a crashed job."""
        return []

    def fit(self, train: Cohort, val: Cohort) -> None:
        raise NotImplementedError(f"{type(self).__name__}.fit")

    def predict(self, cohort: Cohort) -> Prediction:
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def warm_cache(self, cohort: Cohort) -> None:
        """Compute into the shared cache what ``fit`` and ``predict`` will read from ``cohort``'s images
        (preprocessed volumes, feature tables, embeddings), so that a sweep fanned out over workers finds it
        there instead of computing it in every worker. Called on an unfitted instance; the default does
        nothing (a method that caches nothing, or one that computes on the fly)."""

    def provenance(self) -> dict[str, str]:
        """Inputs of a fitted model that its config does not pin down, named for the record (e.g. which
        pretrained encoder weights it read: {"ct-fm weights": "… sha256 …"}). Stored with every run and
        printed under the leaderboard tables; empty by default."""
        return {}

    # A fitted method is stored (bench.model_io) so protocols that share a training reuse it; the context
    # (logger, progress bars) is not part of the model and is attached again after loading.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("ctx", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass
class Prediction:
    """A method's output for one cohort, validated on creation.

    ``risk`` (n,): higher means an earlier event. ``survival`` (n, T) on increasing ``times`` (T,), values
    in [0, 1]; optional for risk-only methods. ``segmentation``: optional per-patient label maps. The
    harness checks the length against the cohort and names the method in any complaint (``checked``);
    ``method`` and ``n_expected`` are accepted for plugins written before it did.
    """

    risk: np.ndarray
    survival: np.ndarray | None = None
    times: np.ndarray | None = None
    segmentation: dict[str, np.ndarray] | None = None
    method: str = "<method>"
    n_expected: int | None = None

    def checked(self, method: str, n_expected: int) -> Prediction:
        """This prediction validated for a cohort of ``n_expected`` patients, complaints naming ``method``."""
        return Prediction(self.risk, self.survival, self.times, self.segmentation, method=method,
                          n_expected=n_expected)

    def __post_init__(self) -> None:
        risk = np.asarray(self.risk, dtype=float)
        if risk.ndim == 2 and risk.shape[1] == 1:
            risk = risk[:, 0]
        if risk.ndim != 1:
            raise PredictionError(self.method, f"risk must be 1-D (n_patients,), got shape {risk.shape}")
        if self.n_expected is not None and len(risk) != self.n_expected:
            raise PredictionError(
                self.method, f"risk has {len(risk)} values but the cohort has {self.n_expected} patients"
            )
        if not np.all(np.isfinite(risk)):
            bad = int(np.sum(~np.isfinite(risk)))
            raise PredictionError(self.method, f"risk has {bad} NaN/inf value(s)")
        self.risk = risk
        if (self.survival is None) != (self.times is None):
            raise PredictionError(self.method, "survival and times must be given together")
        if self.survival is not None:
            surv = np.asarray(self.survival, dtype=float)
            times = np.asarray(self.times, dtype=float)
            if times.ndim != 1 or len(times) == 0:
                raise PredictionError(self.method, f"times must be a non-empty 1-D array, got shape {times.shape}")
            if np.any(np.diff(times) <= 0) or not np.all(np.isfinite(times)):
                raise PredictionError(self.method, "times must be finite and strictly increasing")
            if surv.shape != (len(risk), len(times)):
                raise PredictionError(
                    self.method, f"survival must have shape (n_patients, n_times) = {(len(risk), len(times))},"
                    f" got {surv.shape}"
                )
            if not np.all(np.isfinite(surv)):
                raise PredictionError(self.method, "survival has NaN/inf values")
            if surv.min() < -1e-6 or surv.max() > 1 + 1e-6:
                raise PredictionError(self.method, "survival values must lie in [0, 1]")
            self.survival = np.clip(surv, 0.0, 1.0)
            self.times = times
        if self.segmentation is not None and not isinstance(self.segmentation, dict):
            raise PredictionError(self.method, "segmentation must be a dict {patient id: label map}")


@dataclass(frozen=True)
class Resources:
    """What one fit of a method asks for at one scale (``Method.resources`` over DEFAULT_RESOURCES)."""

    cpus: int
    gpus: float
    memory_gb: float

    def as_dict(self) -> dict[str, float]:
        return {"cpus": self.cpus, "gpus": self.gpus, "memory_gb": self.memory_gb}


def method_resources(cls: type[Method], scale: str) -> Resources:
    """``cls``'s declared needs at ``scale``, defaults filled in; a declaration that is not a whole number
    of CPUs >= 1, GPUs >= 0 (a fraction only below 1, as a scheduler can share a GPU but not split two) and
    memory > 0 is an input error naming the class."""
    where = f"{cls.__module__}.{cls.__qualname__}.resources"
    declared = getattr(cls, "resources", None) or {}
    if not isinstance(declared, dict) or not all(isinstance(v, dict) for v in declared.values()):
        raise BenchInputError(f"{where} must be {{scale: {{cpus, gpus, memory_gb}}}}, got {declared!r}")
    spec = dict(DEFAULT_RESOURCES) | dict(declared.get(scale, {}))
    unknown = sorted(set(spec) - set(DEFAULT_RESOURCES))
    if unknown:
        raise BenchInputError(f"{where}[{scale!r}]: unknown key(s) {unknown}; known: {', '.join(DEFAULT_RESOURCES)}")
    cpus, gpus, memory = spec["cpus"], spec["gpus"], spec["memory_gb"]
    problems = []
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        problems.append(f"cpus = {cpus!r} must be a whole number >= 1")
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or not gpus >= 0 or (gpus > 1 and gpus != int(gpus)):
        problems.append(f"gpus = {gpus!r} must be >= 0, and whole above 1")
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not memory > 0:
        problems.append(f"memory_gb = {memory!r} must be > 0")
    if problems:
        raise BenchInputError(f"{where}[{scale!r}]: " + "; ".join(problems))
    return Resources(int(cpus), float(gpus), float(memory))
