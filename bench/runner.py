"""Run every (method, protocol, fold, seed) job: split, fit (or reuse a fitted model), predict, score, store.

Jobs are grouped by training key — (method, config, dataset, split, fold, seed, train-side corruption) —
so protocols that differ only in test-side corruption (clean, noisy10 … noisy100) share one fitted model
per fold, in this run and in later ones (the model is stored). Finished jobs are skipped; a job killed
half-way is redone.
"""
from __future__ import annotations

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
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.config import config_hash, overrides_by_method, resolve_config
from bench.corruptions import corrupted_files, corruption_manifest
from bench.data import Dataset, cache_dir
from bench.env import environment, threads
from bench.errors import BenchInputError, PredictionError
from bench.hashing import content_hash
from bench.method import SCALES, Method, Prediction, RunContext
from bench.metrics import METRICS_VERSION, dice_counts
from bench.protocols import Protocol
from bench.registry import get_method
from bench.scoring import bootstrap_seed, score
from bench.splits import Fold, split_plan
from bench.store import RunKey, Store, unpack_arrays

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
            "ceiling": bool(cls.ceiling)}


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


def _score(pr: Protocol, predictions: dict, fold: Fold):
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
        scored = _score(pr, unpack_arrays(row["predictions"]), fold)
    except Exception:  # a damaged old record must not stop the sweep
        log.error("could not rescore %s / %s / fold %s / seed %s; kept as it was:\n%s",
                  key.method, pr.name, fold.index, seed, traceback.format_exc())
        return False
    store.rescore(key, metrics=scored.metrics, notes=scored.notes, manifest=scored.manifest,
                  bootstrap=scored.replicates)
    return True


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
    env = environment(device)
    split_plans = {pr.split_hash: split_plan(dataset, pr.split, results_dir, seeds) for pr in protocols}
    groups: dict[tuple, list[Protocol]] = defaultdict(list)
    for pr in protocols:
        groups[(pr.split_hash, content_hash(pr.train_corruption))].append(pr)

    # Every (method, protocol, fold, seed) job; skip the finished ones.
    todo: list[tuple[MethodPlan, tuple, Fold, int, list[tuple[Protocol, RunKey]]]] = []
    for plan in plans:
        for gkey, group in groups.items():
            folds = split_plans[group[0].split_hash].folds
            for seed in seeds:
                for fold in folds:
                    pending = []
                    for pr in group:
                        key = RunKey(plan.name, plan.config_hash, dataset.fingerprint, pr.hash, fold.index, seed)
                        report.keys.append((key, pr.name))
                        status, version = store.state(key)
                        if status == "done":
                            if version != METRICS_VERSION:
                                report.rescored += _rescore(store, key, pr, fold, seed)
                            report.skipped += 1
                        else:
                            pending.append((pr, key))
                    if pending:
                        todo.append((plan, gkey, fold, seed, pending))

    _refuse_mixed_fits(todo, dataset, store, results_dir)
    n_jobs = sum(len(t[4]) for t in todo)
    bar = tqdm(total=n_jobs, desc="bench run", unit="job", disable=not progress or None, leave=False)
    try:
        for plan, _, fold, seed, pending in todo:
            bar.set_postfix_str(f"{plan.name} {fold.name} seed {seed}")
            _run_fold(plan, pending, fold, seed, dataset, split_plans[pending[0][0].split_hash], store, env,
                      scale, device, report, bar)
    finally:
        bar.close()
    return report


def _refuse_mixed_fits(todo, dataset, store: Store, results_dir: Path) -> None:
    """Protocols that differ only in test-side corruption are scored with one fitted model per fold, so that
    clean and noisy columns differ by the noise alone. When some of them are finished but their model is not in
    this store (rows imported from another machine: models are not exported), a new fit would score the rest
    with another model; refuse that before any work, naming the folds and the way out."""
    mixed: dict[tuple[str, str], list[str]] = defaultdict(list)
    for plan, _, fold, seed, pending in todo:
        train_key = _train_key(plan, dataset, pending[0][0], fold, seed)
        scored = store.scored_protocols(train_key)
        if scored and not store.has_model(train_key):
            mixed[(plan.name, plan.config_hash[:8])].append(f"{fold.name} seed {seed} ({', '.join(scored)})")
    if mixed:
        lines = [f"  {name} (config {cfg}): {'; '.join(folds)}" for (name, cfg), folds in mixed.items()]
        raise BenchInputError(
            "these folds have finished rows scored by a fitted model that is not in "
            f"{results_dir} (imported rows? fitted models are not exported), so a new fit would score the "
            "protocols asked for now with another model than theirs:\n" + "\n".join(lines) + "\nRun these "
            "protocols in the store that holds that model, or redo the experiment here with every protocol "
            "(`bench store drop METHOD --config HASH8`, then `bench run`). Nothing was run.")


def _run_fold(plan, pending, fold, seed, dataset, splits, store, env, scale, device, report, bar) -> None:
    protocol0 = pending[0][0]
    train_key = _train_key(plan, dataset, protocol0, fold, seed)
    for pr, key in pending:
        store.start(key, {
            "fold_name": fold.name, "protocol": pr.name, "protocol_version": pr.version, "dataset": dataset.name,
            "scale": scale, "train_key": train_key, "config": plan.config, "protocol_content": pr.content(),
            "env": env | {"method": method_info(plan.cls)},
        })
    ctx = RunContext(
        config=plan.config, scale=scale, seed=seed, device=device,
        cache_dir=cache_dir() / "methods" / plan.name, logger=logging.getLogger(f"bench.method.{plan.name}"),
        method_name=plan.name,
    )
    fit_ids, val_ids = splits.fit_val(fold, seed)
    noisy_dir = cache_dir() / "corrupted"
    uses_images = any(c in ("ct", "pet") for c in plan.cls.consumes)
    try:
        train_noise = (corrupted_files(dataset, protocol0.train_corruption, list(fit_ids) + list(val_ids), noisy_dir)
                       if uses_images and protocol0.train_corruption else {})
        stored = store.load_model(train_key)
        reused = stored is not None
        earlier = [] if reused else store.scored_protocols(train_key)
        if earlier:  # listed but unreadable: the same refusal as _refuse_mixed_fits
            raise BenchInputError(f"{plan.name} {fold.name} seed {seed}: the fitted model that scored "
                                  f"{', '.join(earlier)} cannot be read from "
                                  f"{store.model_path(train_key)}; a new fit would mix two models in one fold "
                                  f"(to redo the experiment: `bench store drop {plan.name} --config "
                                  f"{plan.config_hash[:8]}`, then `bench run` with every protocol)")
        if reused:
            method, fit_seconds = stored
            method.ctx = ctx
            report.reused_models += 1
        else:
            method = plan.cls(ctx)
            truth = "groundtruth" in plan.cls.consumes
            train = dataset.cohort(fit_ids, with_outcomes=True, name=f"{fold.name}/train", replace_images=train_noise,
                                   with_groundtruth=truth)
            val = dataset.cohort(val_ids, with_outcomes=True, name=f"{fold.name}/val", replace_images=train_noise,
                                 with_groundtruth=truth)
            _seed_everything(seed)
            t0 = time.perf_counter()
            method.fit(train, val)
            fit_seconds = time.perf_counter() - t0
            store.save_model(train_key, method, {
                "method": plan.name, "config_hash": plan.config_hash, "dataset_fp": dataset.fingerprint,
                "split_hash": protocol0.split_hash, "fold": fold.index, "seed": seed,
                "train_corruption": protocol0.train_corruption, "fit_seconds": fit_seconds,
            })
            report.fits += 1
        provenance = {str(k): str(v) for k, v in (method.provenance() or {}).items()}
        train_ids = list(fit_ids) + list(val_ids)
        train_pred = _predict(plan, method, dataset, train_ids, f"{fold.name}/train-predict", train_noise)
        outcomes = dataset.outcomes
        for pr, key in pending:
            manifest = corruption_manifest(
                dataset.fingerprint, pr.corruption, fold.test,
                affects_inputs=uses_images, train_ids=train_ids,
            )
            test_noise = (corrupted_files(dataset, pr.corruption, fold.test, noisy_dir)
                          if uses_images and pr.corrupts and "test" in pr.corruption["apply_to"] else {})
            t0 = time.perf_counter()
            pred = _predict(plan, method, dataset, list(fold.test), f"{fold.name}/test", test_noise)
            predict_seconds = time.perf_counter() - t0
            test_time = outcomes.loc[list(fold.test), "time"].to_numpy()
            test_event = outcomes.loc[list(fold.test), "event"].to_numpy()
            predictions = {
                "ids": np.asarray(fold.test, dtype=str), "risk": pred.risk, "time": test_time,
                "event": test_event, "survival": pred.survival, "times": pred.times,
                "train_ids": np.asarray(train_ids, dtype=str), "train_risk": train_pred.risk,
                "train_time": outcomes.loc[train_ids, "time"].to_numpy(),
                "train_event": outcomes.loc[train_ids, "event"].to_numpy(),
            }
            if pred.segmentation is not None:
                predictions["dice_inter"], predictions["dice_size"] = _segmentation_counts(plan.name, pred, dataset, fold.test)
            scored = _score(pr, predictions, fold)
            store.finish(
                key, metrics=scored.metrics, notes=scored.notes, corruption=manifest, fit_seconds=fit_seconds,
                predict_seconds=predict_seconds, model_reused=reused, predictions=predictions,
                manifest=scored.manifest, bootstrap=scored.replicates, provenance=provenance, threads=threads(),
            )
            report.ran += 1
            bar.update(1)
    except BenchInputError as exc:
        for _, key in pending:
            store.fail(key, str(exc))
        raise
    except Exception as exc:  # a method's own bug: record it, go on with the sweep, exit 1 at the end
        err = str(exc) if isinstance(exc, PredictionError) else traceback.format_exc()
        for _, key in pending:
            if store.fail(key, err):
                report.failed.append(f"{plan.name} / {key.protocol_hash[:8]} / {fold.name} / seed {seed}")
                bar.update(1)
        log.error("method %s failed on %s (seed %s):\n%s", plan.name, fold.name, seed, err)


def _predict(plan: MethodPlan, method: Method, dataset: Dataset, ids: list[str], name: str,
             replace_images: dict | None = None) -> Prediction:
    cohort = dataset.cohort(ids, with_outcomes=False, with_mask=plan.cls.needs_mask_at_test, name=name,
                            replace_images=replace_images, with_groundtruth="groundtruth" in plan.cls.consumes)
    try:
        pred = method.predict(cohort)
    except PredictionError as exc:  # built inside the method, perhaps without its registered name
        raise PredictionError(plan.name, exc.detail) from None
    if not isinstance(pred, Prediction):
        raise PredictionError(plan.name, f"predict() must return a bench.Prediction, got {type(pred).__name__}")
    # Re-validate against this cohort and name the method in any message.
    return Prediction(pred.risk, pred.survival, pred.times, pred.segmentation, method=plan.name, n_expected=len(ids))


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
