"""Run every (method, protocol, fold, seed) job: split, fit (or reuse a fitted model), predict, score, store.

A ``Job`` is one training — (method, config, dataset, split, fold, seed, train-side corruption) — with the
protocols its model scores, so protocols that differ only in test-side corruption (clean, noisy10 …
noisy100) share one fitted model per fold, in this run and in later ones (the model is stored). Each job
goes through three steps, usable on their own (the contract test does): ``obtain_model`` (the stored model
or a new fit), ``job_predictions`` (test and training predictions as stored arrays) and ``score_job``.
Finished rows are skipped; a job killed half-way is redone.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm.auto import tqdm

from bench.config import config_hash, overrides_by_method, resolve_config
from bench.compact import history_json, quantise_predictions
from bench.corruptions import corrupted_files, corruption_manifest
from bench.data import Dataset, cache_dir, check_images
from bench.env import environment, pinned_threads, threads
from bench.errors import BenchInputError, PredictionError
from bench.faults import fault_point
from bench.hashing import content_hash
from bench.method import Method, Prediction, RunContext, method_resources
from bench.metrics import METRICS_VERSION, dice_counts
from bench.protocols import Protocol
from bench.scales import SCALES
from bench.registry import get_method
from bench.scoring import Scored, bootstrap_seed, score
from bench.splits import Fold, SplitPlan, split_plan
from bench.store import Claims, RunKey, Store, unpack_arrays

log = logging.getLogger("bench.runner")
IMAGE_INPUTS = ("ct", "pet", "mask")


def resolve_device(device: str) -> str:
    """``auto`` → cuda when a GPU is visible, else cpu (torch is imported only when a GPU might exist)."""
    if device not in ("auto", "cpu", "cuda"):
        raise BenchInputError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    gpu_visible = shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0")
    if gpu_visible:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    if device == "cuda":
        raise BenchInputError("--device cuda: no CUDA GPU is available here (use --device auto or cpu)")
    return "cpu"


@dataclass
class MethodPlan:
    name: str
    cls: type[Method]
    config: dict[str, Any]
    config_hash: str


@dataclass
class RunReport:
    keys: list[tuple[RunKey, str]] = field(default_factory=list)  # (key, protocol name)
    ran: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    fits: int = 0
    reused_models: int = 0
    rescored: int = 0
    skipped_methods: list[str] = field(default_factory=list)


def check_dataset_fits(name: str, cls: type[Method], dataset: Dataset) -> None:
    needs_images = [c for c in cls.consumes if c in IMAGE_INPUTS]
    if needs_images and dataset.images is None:
        raise BenchInputError(
            f"method {name!r} consumes {needs_images} but dataset {dataset.name} has no images "
            f"(no imagesTr/ folder); choose a clinical-only method or a dataset with images"
        )
    if "groundtruth" in cls.consumes and not dataset.has_groundtruth:
        raise BenchInputError(
            f"method {name!r} is a ceiling that reads the true risk of a synthetic cohort, and dataset "
            f"{dataset.name} has no ground truth (groundtruth/oracle.csv); run it on --dataset synthetic[:SCALE]"
        )
    if "mask" in cls.consumes and any(f.mask is None for f in (dataset.images or {}).values()):
        raise BenchInputError(f"method {name!r} needs reference masks but dataset {dataset.name} has no labelsTr/")


def method_info(cls: type[Method]) -> dict[str, Any]:
    """What a leaderboard must say about a row, stored with every job (no method import needed later)."""
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "version": cls.version, "consumes": list(cls.consumes),
            "produces": list(cls.produces), "needs_mask_at_test": bool(cls.needs_mask_at_test),
            "ceiling": bool(cls.ceiling), "family": cls.family}


def plan_methods(names: list[str], scale: str, overrides: list[str]) -> list[MethodPlan]:
    if scale not in SCALES:
        raise BenchInputError(f"--scale {scale!r}: choose one of {', '.join(SCALES)}")
    classes = {n: get_method(n) for n in names}
    routed = overrides_by_method(overrides, classes, scale)
    plans = []
    for n, cls in classes.items():
        cfg = resolve_config(n, cls, scale, routed[n])
        plans.append(MethodPlan(n, cls, cfg, config_hash(n, cls, cfg)))
    return plans


def _train_key(plan: MethodPlan, dataset: Dataset, protocol: Protocol, fold: Fold, seed: int) -> str:
    return content_hash({
        "method": plan.name, "config_hash": plan.config_hash, "dataset": dataset.fingerprint,
        "split": protocol.split_hash, "fold": fold.index, "seed": seed, "train_corruption": protocol.train_corruption,
    }, 24)


@dataclass(frozen=True)
class Job:
    """One training — a method's (fold, run seed) under one split and train-side corruption — and the
    protocols its fitted model scores, each with its store key."""

    plan: MethodPlan
    fold: Fold
    seed: int
    fit_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    train_key: str
    protocols: tuple[tuple[Protocol, RunKey], ...]

    @property
    def train_ids(self) -> list[str]:
        return list(self.fit_ids) + list(self.val_ids)

    @property
    def split_hash(self) -> str:
        return self.protocols[0][0].split_hash

    @property
    def train_corruption(self) -> dict | None:
        return self.protocols[0][0].train_corruption

    @property
    def name(self) -> str:
        return f"{self.plan.name} {self.fold.name} seed {self.seed}"


def make_job(plan: MethodPlan, dataset: Dataset, splits: SplitPlan, fold: Fold, seed: int,
             protocols: list[Protocol]) -> Job:
    """The job that fits ``plan`` on ``fold`` (run seed ``seed``) and scores ``protocols`` (one split and
    train-side corruption) with it."""
    fit_ids, val_ids = splits.fit_val(fold, seed)
    keys = tuple((pr, RunKey(plan.name, plan.config_hash, dataset.fingerprint, pr.hash, fold.index, seed))
                 for pr in protocols)
    return Job(plan, fold, seed, tuple(fit_ids), tuple(val_ids), _train_key(plan, dataset, protocols[0], fold, seed),
               keys)


def method_context(plan: MethodPlan, *, scale: str, seed: int, device: str, progress: bool) -> RunContext:
    return RunContext(config=plan.config, scale=scale, seed=seed, device=device, progress=progress,
                      cache_dir=cache_dir() / "methods" / plan.name,
                      logger=logging.getLogger(f"bench.method.{plan.name}"), method_name=plan.name)


def score_job(pr: Protocol, predictions: dict, fold: Fold) -> Scored:
    """Every metric ``pr`` reports, on the fold's shared bootstrap resamples; notes go to the log."""
    scored = score(pr.metrics, predictions, boot_seed=bootstrap_seed(pr.metrics, pr.split_hash, fold.index))
    for note in scored.notes:
        log.info("%s", note)
    return scored


def _rescore(store: Store, key: RunKey, pr: Protocol, fold: Fold, seed: int) -> bool:
    """A finished row scored with older metric definitions: rescore it from its stored predictions. On any
    error the row is kept as it was (and the error logged); True when it was rescored."""
    row = store.row(key)
    if not row or not row["predictions"]:
        return False
    try:
        scored = score_job(pr, unpack_arrays(row["predictions"]), fold)
    except Exception:  # a damaged old record must not stop the sweep
        log.error("could not rescore %s / %s / fold %s / seed %s; kept as it was:\n%s",
                  key.method, pr.name, fold.index, seed, traceback.format_exc())
        return False
    store.rescore(key, metrics=scored.metrics, notes=scored.notes, manifest=scored.manifest,
                  bootstrap=scored.replicates)
    return True


@dataclass
class JobOutcome:
    ran: int = 0
    fitted: bool = False
    reused: bool = False
    failed: list[str] = field(default_factory=list)


@dataclass
class Sweep:
    """A sweep ready to run: the store, the jobs left to do (finished rows already counted in ``report``),
    the environment recorded with every row, and the run-wide settings every job shares."""

    store: Store
    report: RunReport
    jobs: list[Job]
    env: dict
    dataset: Dataset
    scale: str
    device: str
    progress: bool


def prepare_sweep(plans: list[MethodPlan], protocols: list[Protocol], dataset: Dataset, *, scale: str,
                  seeds: list[int], results_dir: Path, device: str = "cpu", progress: bool = True,
                  skip_unfit: bool = False, executor: str = "local") -> Sweep:
    """Every check that needs no fit (the dataset serves the methods, images are sound, stored models match
    the store, no fold would mix two models), then the jobs left to do. Bad input raises here, before any
    work, whichever executor runs the jobs."""
    store = Store(results_dir)
    report = RunReport()
    if skip_unfit:  # `--method all`: leave out what this dataset cannot serve, and say so
        fitting = []
        for p in plans:
            try:
                check_dataset_fits(p.name, p.cls, dataset)
                fitting.append(p)
            except BenchInputError as exc:
                report.skipped_methods.append(f"{p.name}: {exc}")
        plans = fitting
    for p in plans:
        check_dataset_fits(p.name, p.cls, dataset)
        method_resources(p.cls, scale)  # a malformed declaration is bad input before any work
    if any(c in IMAGE_INPUTS for p in plans for c in p.cls.consumes):
        check_images(dataset, progress=progress)  # damaged or inconsistent images: exit 2 before any fit
    env = environment(device) | {"executor": executor}
    jobs = _pending_jobs(plans, protocols, dataset, seeds, store, results_dir, report)
    _refuse_mixed_fits(jobs, store, results_dir)
    return Sweep(store, report, jobs, env, dataset, scale, device, progress)


def run_jobs(
    plans: list[MethodPlan],
    protocols: list[Protocol],
    dataset: Dataset,
    *,
    scale: str,
    seeds: list[int],
    results_dir: Path,
    device: str = "cpu",
    progress: bool = True,
    skip_unfit: bool = False,
) -> RunReport:
    """The local executor: every pending job in this process, one after another."""
    sweep = prepare_sweep(plans, protocols, dataset, scale=scale, seeds=seeds, results_dir=results_dir,
                          device=device, progress=progress, skip_unfit=skip_unfit)
    store, report = sweep.store, sweep.report
    bar = tqdm(total=sum(len(j.protocols) for j in sweep.jobs), desc="bench run", unit="job",
               disable=not progress or None, leave=False)
    try:
        with Claims(store) as claims:  # another `bench run` on this store takes the jobs this one holds
            for job in claims.each(sweep.jobs, key=lambda j: j.train_key):
                job = still_pending(job, store, report, on_skipped=lambda: bar.update(1))
                if job is None:
                    continue
                bar.set_postfix_str(job.name)
                ctx = method_context(job.plan, scale=scale, seed=job.seed, device=device, progress=progress)
                with pinned_threads(job_threads(job.plan, scale)):
                    outcome = run_job(job, dataset, store, ctx, sweep.env, on_scored=lambda: bar.update(1))
                report.ran += outcome.ran
                report.fits += outcome.fitted
                report.reused_models += outcome.reused
                report.failed += outcome.failed
    finally:
        bar.close()
    return report


def job_threads(plan: MethodPlan, scale: str) -> int:
    """The CPU threads a job of ``plan`` is pinned to under any executor: the CPUs its method declares for
    the scale (bench.method.method_resources)."""
    return method_resources(plan.cls, scale).cpus


def still_pending(job: Job, store: Store, report: RunReport, on_skipped=lambda: None) -> Job | None:
    """The job without the protocols another process finished since the sweep was planned (counted as
    skipped); None when none is left."""
    left = tuple((pr, key) for pr, key in job.protocols if store.state(key)[0] != "done")
    for _ in range(len(job.protocols) - len(left)):
        report.skipped += 1
        on_skipped()
    return dataclasses.replace(job, protocols=left) if left else None


def _pending_jobs(plans, protocols, dataset, seeds, store: Store, results_dir: Path, report: RunReport) -> list[Job]:
    """Every training job with at least one unfinished protocol. Finished (method, protocol, fold, seed) rows
    are counted as skipped (and rescored when their metric definitions are older); protocols that differ only
    in test-side corruption share a job, so one fitted model per fold serves them all."""
    split_plans = {pr.split_hash: split_plan(dataset, pr.split, results_dir, seeds) for pr in protocols}
    groups: dict[tuple, list[Protocol]] = defaultdict(list)
    for pr in protocols:
        groups[(pr.split_hash, content_hash(pr.train_corruption))].append(pr)
    jobs = []
    for plan in plans:
        for group in groups.values():
            splits = split_plans[group[0].split_hash]
            for seed in seeds:
                for fold in splits.folds:
                    job = make_job(plan, dataset, splits, fold, seed, group)
                    pending = []
                    for pr, key in job.protocols:
                        report.keys.append((key, pr.name))
                        status, version = store.state(key)
                        if status != "done":
                            pending.append(pr)
                            continue
                        if version != METRICS_VERSION:
                            report.rescored += _rescore(store, key, pr, fold, seed)
                        report.skipped += 1
                    if pending:
                        jobs.append(make_job(plan, dataset, splits, fold, seed, pending))
    return jobs


def _scored_without_model(job: Job, store: Store) -> list[str]:
    """Protocols that differ only in test-side corruption are scored with one fitted model per fold, so that
    clean and noisy columns differ by the noise alone. The protocols this job's model already scored when
    that model is not in this store (rows imported from another machine: models are not exported): a new
    fit would score the rest with another model. Empty when the job may fit."""
    scored = store.scored_protocols(job.train_key)
    return [] if not scored or store.has_model(job.train_key) else scored


def trusted_by(cls: type[Method]) -> dict[str, Any]:
    """What reading a stored model of ``cls`` may rebuild beyond bench.model_io's allow-list: classes of the
    method's own package, and the functions it names in ``trusted_globals``."""
    return {"trusted_packages": (cls.__module__.split(".")[0] + ".",),
            "trusted_globals": frozenset(cls.trusted_globals)}


def _refuse_mixed_fits(jobs: list[Job], store: Store, results_dir: Path) -> None:
    """Refuse, before any work, every job whose stored model does not match the store, and every job whose
    fold would mix two fitted models; name them and the way out."""
    for job in jobs:
        store.check_model(job.train_key)
    mixed: dict[tuple[str, str], list[str]] = defaultdict(list)
    for job in jobs:
        scored = _scored_without_model(job, store)
        if scored:
            mixed[(job.plan.name, job.plan.config_hash[:8])].append(
                f"{job.fold.name} seed {job.seed} ({', '.join(scored)})")
    if mixed:
        lines = [f"  {name} (config {cfg}): {'; '.join(folds)}" for (name, cfg), folds in mixed.items()]
        raise BenchInputError(
            "these folds have finished rows scored by a fitted model that is not in "
            f"{results_dir} (imported rows? fitted models are not exported), so a new fit would score the "
            "protocols asked for now with another model than theirs:\n" + "\n".join(lines) + "\nRun these "
            "protocols in the store that holds that model, or redo the experiment here with every protocol "
            "(`bench store drop METHOD --config HASH8`, then `bench run`). Nothing was run.")


@dataclass
class FittedModel:
    method: Method
    fit_seconds: float
    reused: bool
    train_images: dict  # noisy image files of the training patients, under a train-side corruption


def train_images_of(job: Job, dataset: Dataset) -> dict:
    """The training patients' corrupted image files under the job's train-side corruption (empty without
    one, or for a method that reads no image)."""
    uses_images = any(c in ("ct", "pet") for c in job.plan.cls.consumes)
    return (corrupted_files(dataset, job.train_corruption, job.train_ids, cache_dir() / "corrupted")
            if uses_images and job.train_corruption else {})


def fit_model(job: Job, dataset: Dataset, ctx: RunContext, train_images: dict) -> FittedModel:
    """A new fit of the job's method on its fold (seeded by the run seed); nothing is stored."""
    cls = job.plan.cls
    method = cls(ctx)
    truth = "groundtruth" in cls.consumes
    train = dataset.cohort(list(job.fit_ids), with_outcomes=True, name=f"{job.fold.name}/train",
                           replace_images=train_images, with_groundtruth=truth)
    val = dataset.cohort(list(job.val_ids), with_outcomes=True, name=f"{job.fold.name}/val",
                         replace_images=train_images, with_groundtruth=truth)
    _seed_everything(job.seed)
    t0 = time.perf_counter()
    method.fit(train, val)
    return FittedModel(method, time.perf_counter() - t0, False, train_images)


def model_info(job: Job, dataset: Dataset, fit_seconds: float) -> dict[str, Any]:
    """What the store's models table keeps about a fitted model of ``job``."""
    return {"method": job.plan.name, "config_hash": job.plan.config_hash, "dataset_fp": dataset.fingerprint,
            "split_hash": job.split_hash, "fold": job.fold.index, "seed": job.seed,
            "train_corruption": job.train_corruption, "fit_seconds": fit_seconds}


def obtain_model(job: Job, dataset: Dataset, store: Store, ctx: RunContext) -> FittedModel:
    """The job's fitted model: the stored one when this store has it, else fitted now and stored."""
    train_images = train_images_of(job, dataset)
    stored = store.load_model(job.train_key, **trusted_by(job.plan.cls))
    if stored is not None:
        method, fit_seconds = stored
        return FittedModel(method.attach(ctx), fit_seconds, True, train_images)
    refuse_second_model(job, store)
    model = fit_model(job, dataset, ctx, train_images)
    store.save_model(job.train_key, model.method, model_info(job, dataset, model.fit_seconds))
    fault_point("model-saved")
    return model


def refuse_second_model(job: Job, store: Store) -> None:
    """Refuse to fit a job whose fold has rows scored by a model that is gone from the store (listed when
    the sweep started, gone now): a new fit would mix two models in one fold."""
    earlier = _scored_without_model(job, store)
    if earlier:
        raise BenchInputError(f"{job.name}: the fitted model that scored {', '.join(earlier)} cannot be read "
                              f"from {store.model_path(job.train_key)}; a new fit would mix two models in one "
                              f"fold (to redo the experiment: `bench store drop {job.plan.name} --config "
                              f"{job.plan.config_hash[:8]}`, then `bench run` with every protocol)")


def job_predictions(job: Job, model: FittedModel, dataset: Dataset, protocol: Protocol,
                    train_pred: Prediction) -> tuple[dict[str, Any], float]:
    """The stored arrays of one protocol's test predictions (and the training fold's, for the metrics that
    need them), and the seconds the test prediction took."""
    cls = job.plan.cls
    uses_images = any(c in ("ct", "pet") for c in cls.consumes)
    test = list(job.fold.test)
    test_images = (corrupted_files(dataset, protocol.corruption, test, cache_dir() / "corrupted")
                   if uses_images and protocol.corrupts and "test" in protocol.corruption["apply_to"] else {})
    t0 = time.perf_counter()
    pred = predict_cohort(job.plan, model.method, dataset, test, f"{job.fold.name}/test", test_images)
    seconds = time.perf_counter() - t0
    outcomes = dataset.outcomes
    predictions = {
        "ids": np.asarray(test, dtype=str), "risk": pred.risk,
        "time": outcomes.loc[test, "time"].to_numpy(), "event": outcomes.loc[test, "event"].to_numpy(),
        "survival": pred.survival, "times": pred.times,
        "train_ids": np.asarray(job.train_ids, dtype=str), "train_risk": train_pred.risk,
        "train_time": outcomes.loc[job.train_ids, "time"].to_numpy(),
        "train_event": outcomes.loc[job.train_ids, "event"].to_numpy(),
    }
    if pred.segmentation is not None:
        predictions["dice_inter"], predictions["dice_size"] = _segmentation_counts(job.plan.name, pred, dataset, test)
    return quantise_predictions(predictions), seconds  # stored as scored: a rescore gives the same metrics


def start_rows(job: Job, dataset: Dataset, store: Store, scale: str, env: dict) -> None:
    """Mark every row of the job running, with what its record keeps about the run."""
    plan = job.plan
    for pr, key in job.protocols:
        store.start(key, {
            "fold_name": job.fold.name, "protocol": pr.name, "protocol_version": pr.version,
            "dataset": dataset.name, "scale": scale, "train_key": job.train_key, "config": plan.config,
            "protocol_content": pr.content(), "env": env | {"method": method_info(plan.cls)}
            | ({"centres": dataset.centre_facts()} if pr.split["kind"] in ("loco", "center-split") else {}),
        })


def job_rows(job: Job, model: FittedModel, dataset: Dataset) -> Iterator[tuple[RunKey, dict[str, Any]]]:
    """Each of the job's protocols, predicted with ``model`` and scored: ``(key, what Store.finish stores)``,
    one at a time (a caller storing each as it comes keeps what was finished before a stop)."""
    plan, fold = job.plan, job.fold
    uses_images = any(c in ("ct", "pet") for c in plan.cls.consumes)
    provenance = {str(k): str(v) for k, v in (model.method.provenance() or {}).items()}
    history = history_json(model.method.training_history())
    train_pred = predict_cohort(plan, model.method, dataset, job.train_ids, f"{fold.name}/train-predict",
                                model.train_images)
    for pr, key in job.protocols:
        manifest = corruption_manifest(dataset.fingerprint, pr.corruption, fold.test,
                                       affects_inputs=uses_images, train_ids=job.train_ids)
        predictions, predict_seconds = job_predictions(job, model, dataset, pr, train_pred)
        scored = score_job(pr, predictions, fold)
        fault_point("scoring")
        yield key, dict(metrics=scored.metrics, notes=scored.notes, corruption=manifest,
                        fit_seconds=model.fit_seconds, predict_seconds=predict_seconds, model_reused=model.reused,
                        predictions=predictions, manifest=scored.manifest, bootstrap=scored.replicates,
                        provenance=provenance, threads=threads(), history=history)


def job_name(job: Job, key: RunKey) -> str:
    return f"{job.plan.name} / {key.protocol_hash[:8]} / {job.fold.name} / seed {job.seed}"


def fail_job(job: Job, store: Store, exc: BaseException | None, err: str | None = None) -> list[str]:
    """Record a method's own error (``err``, else ``exc`` as the message or the current traceback) on the job's
    unfinished rows; the names of the rows marked failed."""
    err = err or (str(exc) if isinstance(exc, PredictionError) else traceback.format_exc())
    failed = [job_name(job, key) for _, key in job.protocols if store.fail(key, err)]
    log.error("method %s failed on %s (seed %s):\n%s", job.plan.name, job.fold.name, job.seed, err)
    return failed


def run_job(job: Job, dataset: Dataset, store: Store, ctx: RunContext, env: dict, *,
            on_scored=lambda: None) -> JobOutcome:
    """Fit (or reuse) the job's model, then predict, score and store each of its protocols. Bad input stops
    the sweep (its rows marked failed); a method's own error is recorded on its rows and the sweep goes on."""
    outcome = JobOutcome()
    start_rows(job, dataset, store, ctx.scale, env)
    try:
        model = obtain_model(job, dataset, store, ctx)
        outcome.fitted, outcome.reused = not model.reused, model.reused
        for key, row in job_rows(job, model, dataset):
            finished = store.finish(key, **row)
            fault_point("row-written")
            outcome.ran += finished  # False: another process finished this row first (its row is kept)
            on_scored()
    except BenchInputError as exc:
        for _, key in job.protocols:
            store.fail(key, str(exc))
        raise
    except Exception as exc:  # a method's own bug: record it, go on with the sweep, exit 1 at the end
        failed = fail_job(job, store, exc)
        outcome.failed += failed
        for _ in failed:
            on_scored()
    return outcome


def predict_cohort(plan: MethodPlan, method: Method, dataset: Dataset, ids: list[str], name: str,
                   replace_images: dict | None = None) -> Prediction:
    """The method's prediction for patients ``ids``, checked against that cohort (the message names the
    method)."""
    cohort = dataset.cohort(ids, with_outcomes=False, with_mask=plan.cls.needs_mask_at_test, name=name,
                            replace_images=replace_images, with_groundtruth="groundtruth" in plan.cls.consumes)
    try:
        pred = method.predict(cohort)
    except PredictionError as exc:  # built inside the method, perhaps without its registered name
        raise PredictionError(plan.name, exc.detail) from None
    if not isinstance(pred, Prediction):
        raise PredictionError(plan.name, f"predict() must return a bench.Prediction, got {type(pred).__name__}")
    return pred.checked(plan.name, len(ids))


def _segmentation_counts(name: str, pred: Prediction, dataset: Dataset, ids) -> tuple[np.ndarray, np.ndarray]:
    """Per test patient and label (GTVp = 1, GTVn = 2): |pred ∩ ref| and |pred| + |ref|, against the reference
    mask on its own grid (a method returns its segmentation on that grid)."""
    import SimpleITK as sitk

    images = dataset.images or {}
    inter = np.zeros((len(ids), 2))
    size = np.zeros((len(ids), 2))
    for i, pid in enumerate(ids):
        files = images.get(pid)
        if files is None or files.mask is None:
            raise BenchInputError(f"method {name!r} segments, but patient {pid} has no reference mask to score it")
        if pid not in pred.segmentation:
            raise PredictionError(name, f"segmentation has no label map for patient {pid}")
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask)))
        seg = np.asarray(pred.segmentation[pid])
        if seg.shape != ref.shape:
            raise PredictionError(name, f"segmentation of {pid} has shape {seg.shape}, its reference mask {ref.shape}")
        for j, label in enumerate((1, 2)):
            inter[i, j], size[i, j] = dice_counts(seg, ref, label)
    return inter, size


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:  # seed torch only if a method already imported it
        sys.modules["torch"].manual_seed(seed)
