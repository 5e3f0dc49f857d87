"""``bench plan``: what a sweep would run and what it would cost, printed before anything runs.

A sweep on a cluster is booked in GPU-hours and waited for in wall time; both follow from its job graph and
from measured epoch times, so this command works them out without running, fitting or generating anything.

The job graph is the runner's (``bench.runner._pending_jobs``): protocols are grouped by split hash and
train-side corruption, one fit per (method, group, fold, seed), and each fit predicts the training fold once
and the test fold once per protocol of its group. Patients per fold come from the dataset's own folds
(``bench.splits.make_folds``; no split file is written) when the dataset is on disk; a generated cohort
(synthetic, demo) that does not exist yet is not generated: its declared centres and sizes stand in, and
the output says so.

Costs come only from measurement files (``benchmarks/results/*.json``, or ``--measurements``), each named
where it is used. GPU measurements are those of ``benchmarks/gpu_epoch.py``: per method and training stage
the seconds of a timed run of steps (an epoch is ``steps_per_epoch`` batches when the config fixes it, else
ceil(training patients / batch size) — ``bench.nn.Trainer``'s rule, so a fold's own training patients set
its steps), inference images per second, and per foundation encoder its pretraining and embedding rates.
A method without a measurement of its own borrows one only where ``ESTIMATED_FROM`` records that its
network is the measured one (checked in the method code) and says so; otherwise it is "not measured".
One fit's GPU-seconds = Σ over its stages of seconds per step × steps per epoch × the stage's epochs (the
maximum: early stopping may end sooner); its predictions = (training patients + test patients × protocols)
/ inference images per second. A method whose ``resources`` declare no GPU at the scale runs on CPUs. Wall time on N
GPUs: the one-off encoder work first, one piece after another on the driver (the caches are built there before
the fan-out), then the fits scheduled longest first onto the GPU that frees first (LPT), one GPU per fit.
"""
from __future__ import annotations

import heapq
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bench.errors import BenchInputError
from bench.hashing import content_hash
from bench.method import method_resources
from bench.scales import RUN_HELP, SCALES

IMAGE_INPUTS = ("ct", "pet", "mask")
DEFAULT_MEASUREMENTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

# A method measured through another one: only where the code shows the network it trains is the measured
# one (the reason is printed with every estimate). Ablations that remove a part of the network are not
# here: the full network's time is only an upper bound for them.
ESTIMATED_FROM: dict[str, tuple[str, str]] = {
    "tmss-image": ("tmss", "TMSSImage is TMSS with clinical = false: the same ViT/UNETR network, one token "
                           "fewer (no clinical token)"),
    "robsurv-no-patchfuse": ("robsurv", "the same VQ encoders, codebooks, decoders and ResNet/CBAM branches; "
                                        "only the fusion of the 64 latent tokens is a concatenation and "
                                        "projection instead of cross-attention"),
    "fm-ct": ("fm-ctpet", "the same DeepMTS-DAFT network; the frozen CT-FM embedding is a cached input and "
                          "only its projection differs (512 wide instead of 256 + 256)"),
    "fm-pet": ("fm-ctpet", "the same DeepMTS-DAFT network; the frozen PET-FM embedding is a cached input and "
                           "only its projection differs (128 wide instead of 256 + 256)"),
}
# Measured networks whose cost bounds a method from above (it computes a subset of them), for the totals'
# "at most" line; not an estimate.
BOUNDED_BY: dict[str, tuple[str, str]] = {
    "robsurv-no-continuous": ("robsurv", "drops robsurv's two ResNet-18/CBAM branches on the 128³ crop"),
    "robsurv-no-vq": ("robsurv", "drops robsurv's codebooks and both VQ decoders"),
}
# Config keys of a training table that do not change the cost of one step (epochs and steps are counted).
_STEP_NEUTRAL = {"epochs", "steps_per_epoch", "patience", "keep", "lr", "weight_decay", "warmup_epochs", "schedule",
                 "step_every", "milestones", "factors"}


# --- the cohort and its folds ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoldSize:
    name: str
    train: int  # the training fold: fit + validation hold-out
    val: int
    test: int

    @property
    def fit(self) -> int:
        return self.train - self.val


@dataclass
class PlanCohort:
    """The patients a sweep would split: a loaded dataset, or the declared sizes of a generated cohort that
    is not on disk yet (``dataset`` None)."""

    name: str
    centres: dict[str, int]
    declared: bool
    has_images: bool
    has_groundtruth: bool
    note: str
    dataset: Any = None

    @property
    def patients(self) -> int:
        return sum(self.centres.values())


def _validation_size(n_train: int, fraction: float) -> int:
    return int(round(fraction * n_train))  # bench.splits.carve_validation's hold-out size


def declared_folds(split: dict, centres: dict[str, int]) -> list[FoldSize]:
    """Fold sizes of ``split`` over a cohort known only by its centre sizes: k-fold test folds of n/k
    patients (the first n mod k one larger), one fold per centre, or the named centres."""
    n, frac, kind = sum(centres.values()), float(split["val_fraction"]), split["kind"]
    if kind == "kfold":
        k = int(split["n_folds"])
        if n < 2 * k:
            raise BenchInputError(f"the cohort has {n} patients: too few for {k}-fold CV")
        tests = [n // k + (i < n % k) for i in range(k)]
        return [FoldSize(f"fold{i}", n - t, _validation_size(n - t, frac), t) for i, t in enumerate(tests)]
    present = sorted(c for c, m in centres.items() if m > 0)
    if kind == "loco":
        if len(present) < 2:
            raise BenchInputError(f"leave-one-centre-out needs >= 2 centres, the cohort has {present}")
        return [FoldSize(c, n - centres[c], _validation_size(n - centres[c], frac), centres[c]) for c in present]
    if kind == "center-split":
        for role in ("train_centres", "test_centres"):
            empty = [c for c in split[role] if c not in present]
            if empty:
                raise BenchInputError(f"centre(s) {empty} named in split.{role} have no patients in the cohort "
                                      f"(centres: {present})")
        train = sum(centres[c] for c in split["train_centres"])
        test = sum(centres[c] for c in split["test_centres"])
        return [FoldSize("+".join(split["test_centres"]), train, _validation_size(train, frac), test)]
    raise BenchInputError(f"unknown split kind {kind!r}")


def dataset_folds(dataset, split: dict) -> list[FoldSize]:
    """The fold sizes of ``split`` on a loaded dataset (its real folds; nothing written)."""
    from bench.splits import make_folds

    frac = float(split["val_fraction"])
    return [FoldSize(f.name, len(f.train), _validation_size(len(f.train), frac), len(f.test))
            for f in make_folds(dataset, split)]


def plan_cohort(spec: str | None, scale: str) -> PlanCohort:
    """The cohort ``--dataset`` names. The synthetic and demo cohorts are generated on first use by ``bench
    run``; here an existing one is loaded and a missing one is described by its declared sizes."""
    from bench.data import DEFAULT_DATASET, _seed, cache_dir, load_dataset, synthetic_name

    spec = spec or f"{DEFAULT_DATASET}:{scale}"
    name, _, arg = spec.partition(":")
    declared = None
    if name == "synthetic":
        from bench.data.sources import synthetic_spec
        from bench.data.synthetic import default_path, is_complete, scale_config

        chosen, seed = synthetic_spec(arg, scale)  # as the loader reads it
        cfg = scale_config(chosen)
        if not is_complete(default_path(cache_dir() / "datasets", chosen, seed), cfg, seed):
            declared = PlanCohort(synthetic_name(chosen, seed), dict(cfg.centres), True, True, True,
                                  f"not generated yet: the declared centre sizes of the synthetic {chosen} scale "
                                  f"(bench.data.synthetic.scale_config), not its folds")
    elif name == "demo":
        from bench.data.demo import CENTRES
        from bench.data.demo import is_complete as demo_complete
        from bench.data.sources import demo_path

        seed = _seed(f"demo:{arg}", arg)
        if not demo_complete(demo_path(seed), seed):
            declared = PlanCohort(f"demo:{seed}", dict(CENTRES), True, False, False,
                                  "not generated yet: the declared centre sizes of the demo cohort "
                                  "(bench.data.demo.CENTRES), not its folds")
    if declared is not None:
        return declared
    ds = load_dataset(spec, scale, progress=False)
    centres = {str(c): int(n) for c, n in ds.centres.value_counts().sort_index().items()}
    return PlanCohort(ds.name, centres, False, ds.images is not None, bool(ds.has_groundtruth),
                      f"{len(ds.ids)} patients on disk, fingerprint {ds.fingerprint}: its own folds", ds)


@dataclass
class Group:
    """Protocols that share one fitted model per (method, fold, seed): the same split and train-side
    corruption."""

    protocols: list
    folds: list[FoldSize]

    @property
    def split(self) -> dict:
        return self.protocols[0].split


def protocol_groups(protocols: list, cohort: PlanCohort) -> list[Group]:
    """``bench.runner._pending_jobs``'s grouping, in the order the protocols were given."""
    groups: dict[tuple, list] = defaultdict(list)
    for pr in protocols:
        groups[(pr.split_hash, content_hash(pr.train_corruption))].append(pr)
    out = []
    for members in groups.values():
        split = members[0].split
        if cohort.dataset is not None:
            folds = dataset_folds(cohort.dataset, split)
        else:
            try:
                folds = declared_folds(split, cohort.centres)
            except BenchInputError as exc:
                raise BenchInputError(f"--protocol {members[0].name} on {cohort.name}: {exc}") from None
        out.append(Group(members, folds))
    return out


# --- measurements ------------------------------------------------------------------------------------------
@dataclass
class GPUMeasure:
    file: Path
    env: dict
    entry: dict


class Measurements:
    """The measurement files of one folder: GPU epoch timings (``benchmarks/gpu_epoch.py``'s output; the
    cuDNN-autotuned runs first, as ``bench.nn.Trainer`` turns autotuning on) and CPU timings."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.gpu: list[tuple[Path, dict]] = []
        self.other: list[tuple[Path, Any]] = []
        files = sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []
        for path in files:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # not a measurement this command can read
            env = data.get("env") if isinstance(data, dict) else None
            if isinstance(env, dict) and env.get("device") == "cuda" and isinstance(data.get("methods"), list):
                self.gpu.append((path, data))
            else:
                self.other.append((path, data))
        self.gpu.sort(key=lambda pd: (not pd[1]["env"].get("cudnn_benchmark", False), pd[0].name))

    def method(self, name: str) -> GPUMeasure | None:
        for path, data in self.gpu:
            for m in data["methods"]:
                if isinstance(m, dict) and m.get("method") == name and "error" not in m and m.get("stages"):
                    return GPUMeasure(path, data["env"], m)
        return None

    def encoder(self, name: str) -> GPUMeasure | None:
        for path, data in self.gpu:
            for e in data.get("encoders") or []:
                if isinstance(e, dict) and e.get("encoder") == name and "error" not in e:
                    return GPUMeasure(path, data["env"], e)
        return None

    def cpu_fit(self, name: str) -> tuple[Path, str] | None:
        """A method's CPU fit seconds per fold as a results file tables them (``fit s/fold`` in the stored
        summaries of benchmarks/bundled_tables.py), with what they were measured on."""
        for path, data in self.other:
            if not (isinstance(data, dict) and data.get("method") == name and isinstance(data.get("tables"), dict)):
                continue
            seconds, sizes = [], []
            for table in data["tables"].values():
                seconds += _table_column(table.get("summary") or [], "fit s/fold")
                sizes.append(table.get("patients"))
            if seconds:
                sizes = [s for s in sizes if isinstance(s, int)]
                return path, (f"{name} fits took {min(seconds):g}–{max(seconds):g} s per fold on the "
                              f"{len(data['tables'])} tables of {path.name} ({min(sizes)}–{max(sizes)} patients), "
                              f"not on this cohort")
        return None

    def radiomics(self) -> tuple[Path, dict] | None:
        for path, data in self.other:
            if isinstance(data, dict) and "without_diagnostics_s" in data and "radiomics" in str(data.get("what")):
                return path, data
        return None


def _table_column(lines: list[str], header: str) -> list[float]:
    """The numbers under ``header`` in a tabulate 'simple' table given as its lines."""
    if len(lines) < 3 or header not in lines[0]:
        return []
    start = lines[0].index(header)
    out = []
    for line in lines[2:]:
        cell = line[start:start + len(header) + 8].strip().split(" ")[-1] if len(line) > start else ""
        try:
            out.append(float(cell))
        except ValueError:
            pass
    return out


# --- one method's cost -------------------------------------------------------------------------------------
@dataclass
class FitJob:
    method: str
    fold: str
    seed: int
    protocols: int
    train_seconds: float
    predict_seconds: float
    val_seconds: float  # the per-epoch validation passes, reported apart (not in the measured epochs)

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.predict_seconds


@dataclass
class MethodCost:
    method: str
    family: str
    device: str  # "gpu" or "cpu"
    fits: int
    predictions: int
    epochs: str
    source: str
    jobs: list[FitJob] = field(default_factory=list)
    estimated_from: str | None = None
    bound_seconds: float | None = None  # an upper bound when not measured (BOUNDED_BY)
    bounded_by: str | None = None

    @property
    def measured(self) -> bool:
        return self.device == "gpu" and bool(self.jobs)

    def total(self, part: str) -> float | None:
        if not self.measured:
            return None
        return sum(getattr(j, part) for j in self.jobs)


def _differences(a: Any, b: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a[k], b[k], path + (k,)) if k in a and k in b else [path + (k,)]
        return out
    return [] if a == b else [path]


def _step_neutral(config: dict, path: tuple) -> bool:
    """Whether changing ``path`` leaves the seconds of one training step as measured: a training table's
    schedule keys, and an encoder's weights or pretraining length (one-off work, counted apart)."""
    parent = config
    for k in path[:-1]:
        parent = parent.get(k) if isinstance(parent, dict) else None
    if not isinstance(parent, dict):
        return False
    if "batch_size" in parent and "epochs" in parent and path[-1] in _STEP_NEUTRAL:
        return True
    if len(path) >= 2 and str(path[0]).endswith("_fm"):
        return path[1:] == ("weights",) or path[1:] in (("pretrain", "epochs"), ("pretrain", "steps_per_epoch"))
    return False


def _stages(plan, scale: str) -> list[dict]:
    """The method's training stages (name, train table), as ``ImageSurvivalMethod.stages`` lists them."""
    from bench.method import RunContext

    cls = plan.cls
    if callable(getattr(cls, "stages", None)):
        method = cls(RunContext(config=plan.config, scale=scale, method_name=plan.name))
        return [{"name": st.get("name") or "train", "train": dict(st["train"])} for st in method.stages()]
    if isinstance(plan.config.get("train"), dict):
        return [{"name": "train", "train": dict(plan.config["train"])}]
    return []


def _epochs_text(stages: list[dict]) -> str:
    parts = []
    for st in stages:
        t = st["train"]
        text = str(t.get("epochs", "?"))
        if int(t.get("steps_per_epoch", 0) or 0):
            text += f"×{t['steps_per_epoch']} steps"
        if int(t.get("patience", 0) or 0):
            text += f" (patience {t['patience']})"
        parts.append(text)
    return " + ".join(parts)


def _gpu_rates(plan, scale: str, stages: list[dict], measure: GPUMeasure,
               default_config: dict) -> tuple[list[float], str]:
    """Seconds per training step of each stage, and where they come from; a ValueError says why ``measure``
    does not apply to this config (another scale, stage, crop, batch size or a --set that changes a step)."""
    e = measure.entry
    if e.get("scale") != scale:
        raise ValueError(f"measured at scale {e.get('scale')}, not {scale}")
    measured = e["stages"]
    if len(measured) != len(stages) or any(m.get("stage") != s["name"] for m, s in zip(measured, stages)):
        raise ValueError(f"measured stages {[m.get('stage') for m in measured]}, the method has "
                         f"{[s['name'] for s in stages]}")
    crop = plan.config.get("crop")
    if crop is not None and e.get("crop_xyz") is not None and list(crop) != list(e["crop_xyz"]):
        raise ValueError(f"measured with crop {e['crop_xyz']}, the config has {list(crop)}")
    for m, s in zip(measured, stages):
        if int(m["batch_size"]) != int(s["train"]["batch_size"]):
            raise ValueError(f"stage {s['name']}: measured at batch {m['batch_size']}, the config has "
                             f"{s['train']['batch_size']}")
    changed = [".".join(map(str, p)) for p in _differences(plan.config, default_config)
               if not _step_neutral(plan.config, p)]
    if changed:
        raise ValueError(f"measured with the default {scale} config; --set changed {', '.join(changed)}")
    per_step = []
    for m in measured:
        if m.get("timed_steps") and m.get("seconds_timed"):
            per_step.append(float(m["seconds_timed"]) / int(m["timed_steps"]))
        else:
            per_step.append(float(m["epoch_seconds"]) / int(m["epoch_steps"]))
    steps = ", ".join(f"{m.get('stage')} {p:.3g} s/step ({m['epoch_seconds']} s per {m['epoch_steps']}-step epoch)"
                      for m, p in zip(measured, per_step))
    detail = (f"{measure.file.name}: {e['method']} {steps} at n_train {measure.env.get('n_train')}, "
              f"{e['inference_images_per_s']} inference images/s")
    return per_step, detail


def method_cost(plan, scale: str, groups: list[Group], seeds: list[int], measurements: Measurements) -> MethodCost:
    from bench.config import resolve_config

    cls = plan.cls
    family = getattr(cls, "family", "other")
    fits = sum(len(g.folds) for g in groups) * len(seeds)
    predictions = sum(len(g.folds) * len(g.protocols) for g in groups) * len(seeds)
    gpu = method_resources(cls, scale).gpus > 0  # what the method declares a fit needs (Method.resources)
    if not gpu:
        return _cpu_cost(plan, scale, family, fits, predictions, measurements)
    stages = _stages(plan, scale)
    cost = MethodCost(plan.name, family, "gpu", fits, predictions, _epochs_text(stages), "")
    measure, source_name, why = measurements.method(plan.name), plan.name, ""
    if measure is None and plan.name in ESTIMATED_FROM:
        source_name, why = ESTIMATED_FROM[plan.name]
        measure = measurements.method(source_name)
    default = resolve_config(plan.name, cls, scale, [])
    if measure is None:
        cost.source = f"not measured: no entry for {plan.name} in the GPU files of {shown(measurements.folder)}"
        if plan.name in BOUNDED_BY:
            ref_name, reason = BOUNDED_BY[plan.name]
            ref = measurements.method(ref_name)
            try:
                per_step, _ = _gpu_rates(plan, scale, stages, ref, default) if ref else (None, "")
            except ValueError:
                per_step = None
            if per_step is not None:
                rate = float(ref.entry["inference_images_per_s"])
                cost.bounded_by = ref_name
                cost.bound_seconds = sum(j.seconds for j in _fit_jobs(plan.name, stages, per_step, rate, groups, seeds))
                cost.source += f" ({reason}, so {ref_name}'s time, {ref.file.name}, is only an upper bound)"
        return cost
    try:
        per_step, detail = _gpu_rates(plan, scale, stages, measure, default)
    except ValueError as exc:
        cost.source = f"not measured: {measure.file.name} has {source_name}, but {exc}"
        return cost
    rate = float(measure.entry["inference_images_per_s"])
    cost.source = detail if source_name == plan.name else f"estimated from {source_name} ({why}); {detail}"
    cost.estimated_from = None if source_name == plan.name else source_name
    cost.jobs = _fit_jobs(plan.name, stages, per_step, rate, groups, seeds)
    return cost


def _fit_jobs(name: str, stages: list[dict], per_step: list[float], rate: float, groups: list[Group],
              seeds: list[int]) -> list[FitJob]:
    """Every fit of one method with its GPU-seconds: training (the trainer's steps per epoch on the fold's fit
    patients), predictions (training fold once, test fold once per protocol) and validation passes."""
    jobs = []
    for g in groups:
        for seed in seeds:
            for f in g.folds:
                train = val = 0.0
                for st, sec in zip(stages, per_step):
                    t = st["train"]
                    steps = int(t.get("steps_per_epoch", 0) or 0) or max(1, math.ceil(f.fit / int(t["batch_size"])))
                    train += sec * steps * int(t["epochs"])
                    val += f.val * int(t["epochs"]) / rate
                predict = (f.train + f.test * len(g.protocols)) / rate
                jobs.append(FitJob(name, f.name, seed, len(g.protocols), train, predict, val))
    return jobs


def _cpu_cost(plan, scale: str, family: str, fits: int, predictions: int, measurements: Measurements) -> MethodCost:
    source = f"no GPU ({family} method); CPU time per fit not measured"
    measured = measurements.cpu_fit(plan.name)
    if measured is not None:
        source = f"no GPU ({family} method); CPU: {measured[1]}"
    uses_images = any(c in ("ct", "pet") for c in plan.cls.consumes)
    radiomics = measurements.radiomics()
    if family == "feature" and uses_images and radiomics is not None:
        path, data = radiomics
        measured_at = next((s for s in SCALES if f"{s} settings" in str(data.get("what", ""))), None)
        if measured_at == scale:
            source += (f"; radiomics {data['without_diagnostics_s']:g} s per patient and modality, once per image "
                       f"({path.name}, one process)")
        else:
            source += f"; radiomics at {scale} settings not measured ({path.name} is at {measured_at} settings)"
    return MethodCost(plan.name, family, "cpu", fits, predictions, "-", source)


# --- one-off encoder work ----------------------------------------------------------------------------------
@dataclass
class OneOff:
    what: str
    seconds: float | None
    source: str
    chain: str  # work in one chain runs in order (an encoder's pretraining, then its embeddings)


def _encoders(config: dict) -> list[tuple[str, str, dict]]:
    """(encoder, modality, encoder config) of the frozen foundation encoders a config feeds on (``fm`` lists
    the modalities; ``<modality>_fm`` holds each encoder's config, named ``<modality>-fm``)."""
    out = []
    for m in config.get("fm") or []:
        enc = config.get(f"{m}_fm")
        if isinstance(enc, dict) and enc:
            out.append((f"{m}-fm", str(m), enc))
    return out


def _images_to_embed(modality: str, protocols: list, patients: int) -> tuple[int, int]:
    """(images at most, distinct corruption realisations): every patient's clean image, plus one image per
    patient for each distinct corruption realisation among ``protocols`` that rewrites ``modality`` (an
    upper bound: a realisation reaches only its selected patients)."""
    from bench.corruptions.kinds import TYPES, realisations

    seen = set()
    for pr in protocols:
        for kind, params in realisations(pr.corruption):
            if modality in TYPES[kind].modalities(params):
                seen.add((kind, json.dumps(params, sort_keys=True), pr.corruption.get("seed")))
    return patients * (1 + len(seen)), len(seen)


def encoder_work(plans: list, protocols: list, cohort: PlanCohort, scale: str,
                 measurements: Measurements) -> list[OneOff]:
    from bench.config import resolve_config

    work, done = [], set()
    for plan in plans:
        if method_resources(plan.cls, scale).gpus == 0:
            continue
        defaults = {name: enc for name, _, enc in _encoders(resolve_config(plan.name, plan.cls, scale, []))}
        for name, modality, enc in _encoders(plan.config):
            key = (name, content_hash({k: v for k, v in enc.items() if k != "weights"}), str(enc.get("weights")))
            if key in done:
                continue
            done.add(key)
            measure = measurements.encoder(name)
            m = None if measure is None else measure.entry
            missing = f"not measured: no {name} measurement in the GPU files of {shown(measurements.folder)}"
            if m is not None and m.get("scale") != scale:
                missing = f"not measured: {measure.file.name} has {name} at scale {m.get('scale')}, not {scale}"
                m = None
            changed = [".".join(map(str, p)) for p in _differences(enc, defaults.get(name, {}))
                       if p[:1] != ("weights",) and p not in (("pretrain", "epochs"), ("pretrain", "steps_per_epoch"))]
            if m is not None and changed:
                missing = (f"not measured: {measure.file.name} has {name} with its default {scale} config; --set "
                           f"changed {', '.join(changed)}")
                m = None
            where = "" if measure is None else measure.file.name
            if measure is not None and measure.file != measurements.gpu[0][0]:
                where += f" (no {name} entry in {measurements.gpu[0][0].name})"
            if str(enc.get("weights", "pretrain")) == "pretrain":
                p = enc.get("pretrain") or {}
                steps = int(p.get("epochs", 0)) * int(p.get("steps_per_epoch", 0))
                if m is None or not m.get("pretrain_total_steps"):
                    work.append(OneOff(f"{name} pretraining ({steps} steps)", None, missing, name))
                else:
                    minutes = float(m["pretrain_estimated_minutes"]) * steps / int(m["pretrain_total_steps"])
                    work.append(OneOff(f"{name} pretraining ({steps} steps)", minutes * 60,
                                       f"{where}: pretrain_estimated_minutes {m['pretrain_estimated_minutes']} for "
                                       f"{m['pretrain_total_steps']} steps ({m['pretrain_s_per_step']} s/step); "
                                       f"skipped when its weights are cached", name))
            images, realised = _images_to_embed(modality, protocols, cohort.patients)
            what = f"{name} embeddings (≤ {images} images: clean + {realised} corrupted {modality.upper()} sets)"
            if m is None or not m.get("embed_images_per_s"):
                work.append(OneOff(what, None, missing, name))
            else:
                work.append(OneOff(what, images / float(m["embed_images_per_s"]),
                                   f"{where}: {m['embed_images_per_s']} images/s", name))
    return work


# --- scheduling --------------------------------------------------------------------------------------------
def lpt(durations: list[float], n: int) -> float:
    """Makespan of ``durations`` on ``n`` identical machines, longest first onto the least-loaded machine."""
    if n < 1:
        raise BenchInputError(f"--gpus {n}: give at least 1")
    loads = [0.0] * min(n, max(1, len(durations)))
    heapq.heapify(loads)
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads) if durations else 0.0


# --- the plan ----------------------------------------------------------------------------------------------
def _hours(seconds: float | None, digits: int = 3) -> float | None:
    return None if seconds is None else round(seconds / 3600, digits)


def build_plan(names: list[str], protocol_spec: str, dataset: str | None, scale: str, seeds: list[int],
               overrides: list[str], gpus: int, measurements_dir: Path, *, every: bool = False) -> dict:
    """The plan as numbers (``--format json`` prints it; the text is rendered from it)."""
    from bench.protocols import resolve_protocols
    from bench.runner import check_dataset_fits, plan_methods

    if gpus < 1:
        raise BenchInputError(f"--gpus {gpus}: give at least 1")
    protocols = resolve_protocols(protocol_spec)
    plans = plan_methods(names, scale, overrides)
    cohort = plan_cohort(dataset, scale)
    skipped = []
    fitting = []
    for p in plans:
        try:
            if cohort.dataset is not None:
                check_dataset_fits(p.name, p.cls, cohort.dataset)
            else:
                _check_declared_fits(p.name, p.cls, cohort)
            fitting.append(p)
        except BenchInputError as exc:
            if not every:
                raise
            skipped.append(f"{p.name}: {exc}")
    plans = fitting
    groups = protocol_groups(protocols, cohort)
    if not Path(measurements_dir).is_dir():
        raise BenchInputError(f"--measurements {measurements_dir}: no such folder of measurement files")
    measurements = Measurements(measurements_dir)
    costs = [method_cost(p, scale, groups, seeds, measurements) for p in plans]
    one_off = encoder_work(plans, protocols, cohort, scale, measurements)
    return _assemble(cohort, groups, seeds, scale, gpus, costs, one_off, measurements, skipped)


def _check_declared_fits(name: str, cls, cohort: PlanCohort) -> None:
    needs_images = [c for c in cls.consumes if c in IMAGE_INPUTS]
    if needs_images and not cohort.has_images:
        raise BenchInputError(f"method {name!r} consumes {needs_images} but {cohort.name} has no images")
    if "groundtruth" in cls.consumes and not cohort.has_groundtruth:
        raise BenchInputError(f"method {name!r} reads the ground truth of a synthetic cohort, which {cohort.name} "
                              f"has not")


def _assemble(cohort, groups, seeds, scale, gpus, costs, one_off, measurements, skipped) -> dict:
    jobs = [j for c in costs if c.measured for j in c.jobs]
    fit_seconds = [j.seconds for j in jobs]
    chains: dict[str, float] = defaultdict(float)
    for w in one_off:
        if w.seconds is not None:
            chains[w.chain] += w.seconds
    one_off_s = sum(w.seconds for w in one_off if w.seconds is not None)
    gpu_s = sum(fit_seconds) + one_off_s
    # the driver builds every cache before the fan-out, one after another on its own device (bench.ray_executor)
    phase1, phase2 = sum(chains.values()), lpt(fit_seconds, gpus)
    unmeasured = [c for c in costs if c.device == "gpu" and not c.measured]
    bounded = [c for c in unmeasured if c.bound_seconds is not None]
    bound = sum(c.bound_seconds for c in bounded)
    methods = []
    for c in costs:
        methods.append({
            "method": c.method, "family": c.family, "device": c.device, "fits": c.fits,
            "predictions": c.predictions, "epochs": c.epochs,
            "gpu_hours": _hours(c.total("seconds")) if c.device == "gpu" else 0.0,
            "train_gpu_hours": _hours(c.total("train_seconds")) if c.device == "gpu" else 0.0,
            "predict_gpu_hours": _hours(c.total("predict_seconds")) if c.device == "gpu" else 0.0,
            "validation_gpu_hours": _hours(c.total("val_seconds")) if c.device == "gpu" else 0.0,
            "longest_fit_hours": _hours(max(j.seconds for j in c.jobs)) if c.measured else None,
            "measured": c.measured if c.device == "gpu" else None, "estimated_from": c.estimated_from,
            "upper_bound_gpu_hours": _hours(c.bound_seconds), "source": c.source,
            "jobs": [{"fold": j.fold, "seed": j.seed, "protocols": j.protocols, "train_s": round(j.train_seconds, 1),
                      "predict_s": round(j.predict_seconds, 1), "validation_s": round(j.val_seconds, 1)}
                     for j in c.jobs] if c.measured else [],
        })
    longest = max(fit_seconds, default=0.0)
    val_s = sum(j.val_seconds for j in jobs)
    return {
        "scale": scale, "seeds": seeds, "gpus": gpus,
        "dataset": {"name": cohort.name, "patients": cohort.patients, "centres": cohort.centres,
                    "sizes": "declared" if cohort.declared else "dataset", "note": cohort.note},
        "groups": [{"protocols": [p.name for p in g.protocols], "split": g.split["kind"],
                    "train_corruption": g.protocols[0].train_corruption is not None,
                    "folds": [{"name": f.name, "train": f.train, "fit": f.fit, "val": f.val, "test": f.test}
                              for f in g.folds]} for g in groups],
        "methods": methods,
        "one_off": [{"what": w.what, "gpu_hours": _hours(w.seconds), "source": w.source} for w in one_off],
        "skipped_methods": skipped,
        "totals": {
            "fits": sum(c.fits for c in costs), "predictions": sum(c.predictions for c in costs),
            "gpu_fits": sum(c.fits for c in costs if c.device == "gpu"),
            "gpu_hours": _hours(gpu_s), "fit_gpu_hours": _hours(sum(j.train_seconds for j in jobs)),
            "predict_gpu_hours": _hours(sum(j.predict_seconds for j in jobs)), "one_off_gpu_hours": _hours(one_off_s),
            "methods_counted": [c.method for c in costs if c.measured],
            "methods_not_measured": [c.method for c in unmeasured],
            "one_off_not_measured": [w.what for w in one_off if w.seconds is None],
            "not_measured_upper_bound_gpu_hours": _hours(bound) if bounded else None,
            "upper_bounded_by": sorted({c.bounded_by for c in bounded}),
            "upper_bounded_methods": [c.method for c in bounded],
            "validation_gpu_hours_not_included": _hours(val_s),
            "wall_hours": _hours(phase1 + phase2), "wall_one_off_hours": _hours(phase1),
            "wall_fits_hours": _hours(phase2), "lower_bound_hours": _hours(gpu_s / gpus),
            "longest_fit_hours": _hours(longest),
        },
        "sources": sorted(_sources_named(costs, one_off, measurements)),
    }


def _sources_named(costs, one_off, measurements: Measurements) -> set[str]:
    texts = " ".join([c.source for c in costs] + [w.source for w in one_off])
    return {shown(p) for p, _ in measurements.gpu + measurements.other if re.search(re.escape(p.name), texts)}


def shown(path: Path) -> str:
    """A path as the output names it: relative to the current folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- text --------------------------------------------------------------------------------------------------
def _range(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:3])}, …, {names[-1]} ({len(names)})"


def _num(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.2f}"


def render_text(plan: dict) -> str:
    from tabulate import tabulate

    t, ds = plan["totals"], plan["dataset"]
    n = plan["gpus"]
    out = [f"bench plan: scale {plan['scale']}, seed(s) {', '.join(map(str, plan['seeds']))}, {n} GPU(s); "
           f"nothing is run, fitted or generated",
           f"dataset {ds['name']}: {ds['patients']} patients in {len(ds['centres'])} centres — {ds['note']}", ""]
    rows = []
    for g in plan["groups"]:
        folds = g["folds"]
        rows.append((g["split"] + (" (train-side corruption)" if g["train_corruption"] else ""), len(folds),
                     _range([f["train"] for f in folds]), _range([f["fit"] for f in folds]),
                     _range([f["val"] for f in folds]), _range([f["test"] for f in folds]), _names(g["protocols"])))
    out.append("One fit per method, fold and seed serves every protocol of its group:")
    out.append(tabulate(rows, headers=["split", "folds", "train", "fit", "val", "test", "protocols"],
                        disable_numparse=True))
    out.append("")
    rows = []
    for m in plan["methods"]:
        gpu_h = "CPU" if m["device"] == "cpu" else _num(m["gpu_hours"])
        rows.append((m["method"], m["fits"], m["predictions"], m["epochs"], gpu_h, m["source"]))
    out.append(tabulate(rows, headers=["method", "fits", "predictions", "epochs", "GPU-h", "source"],
                        disable_numparse=True, maxcolwidths=[None, None, None, None, None, 90]))
    if plan["one_off"]:
        out.append("")
        out.append("One-off GPU work, before the fits (shared by every method that uses it):")
        out.append(tabulate([(w["what"], _num(w["gpu_hours"]), w["source"]) for w in plan["one_off"]],
                            headers=["work", "GPU-h", "source"], disable_numparse=True,
                            maxcolwidths=[None, None, 90]))
    for s in plan["skipped_methods"]:
        out.append(f"skipped {s}")
    out.append("")
    out.append(f"Totals: {t['fits']} fits ({t['gpu_fits']} on a GPU), {t['predictions']} predictions.")
    counted, missing = t["methods_counted"], t["methods_not_measured"]
    if t["gpu_fits"] and not counted:
        out.append(f"GPU-hours: not measured for the GPU method(s) at scale {plan['scale']}.")
    elif t["gpu_fits"]:
        out.append(f"GPU-hours: {t['gpu_hours']:.2f} = training {t['fit_gpu_hours']:.2f} + predictions "
                   f"{t['predict_gpu_hours']:.2f} + one-off {t['one_off_gpu_hours']:.2f}, over {len(counted)} of "
                   f"{len(counted) + len(missing)} GPU methods.")
        if missing:
            line = f"Not in the totals (not measured): {', '.join(missing)}"
            if t["upper_bounded_methods"]:
                line += (f"; at most {t['not_measured_upper_bound_gpu_hours']:.2f} GPU-h more for "
                         f"{', '.join(t['upper_bounded_methods'])} at the rate of "
                         f"{', '.join(t['upper_bounded_by'])}, whose network computes more than theirs")
            out.append(line + ".")
        if t["one_off_not_measured"]:
            out.append(f"One-off work not measured: {'; '.join(t['one_off_not_measured'])}.")
        out.append(f"Wall time on {n} GPU(s), one GPU per fit, longest first: {t['wall_hours']:.2f} h "
                   f"(the one-off work {t['wall_one_off_hours']:.2f} h, one piece after another on the driver's GPU, "
                   f"as caches are built before the fan-out, "
                   f"then the fits {t['wall_fits_hours']:.2f} h); "
                   f"lower bounds: GPU-hours / {n} = {t['lower_bound_hours']:.2f} h, longest fit "
                   f"{t['longest_fit_hours']:.2f} h.")
        out.append(f"Not included: a validation pass per epoch (≈ {t['validation_gpu_hours_not_included']:.2f} GPU-h "
                   f"more at the measured inference rates), the image pipeline, corrupted images, radiomics and the "
                   f"encoders' pretraining corpus (CPU); epochs are the configs' maximum (early stopping can end a "
                   f"fit sooner).")
    if plan["sources"]:
        out.append("Measurements read: " + ", ".join(plan["sources"]))
    return "\n".join(out)


# --- the command -------------------------------------------------------------------------------------------
@click.command("plan")
@click.option("--method", "-m", "method", required=True,
              help="Method name(s), comma-separated, or 'all' (see `bench list`).")
@click.option("--protocol", "-p", "protocol", default="clean", show_default=True,
              help="Protocol name(s), comma-separated, or a TOML file path; groups: noisy, suite, suite-s135 "
                   "(as for `bench run`).")
@click.option("--dataset", "-d", default=None,
              help="As for `bench run` (default: the synthetic cohort of the scale; when it is not generated yet, "
                   "its declared sizes).")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True, help=RUN_HELP)
@click.option("--seed", default="0", show_default=True, help="Training seed(s), comma-separated.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field (TOML value); METHOD:KEY=VALUE targets one method. Repeatable.")
@click.option("--gpus", type=int, default=1, show_default=True, help="GPUs the sweep is spread over (wall time).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--measurements", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_MEASUREMENTS,
              show_default="benchmarks/results of this checkout", help="Folder of measurement JSON files.")
def plan_cmd(method: str, protocol: str, dataset: str | None, scale: str, seed: str, overrides: tuple[str, ...],
             gpus: int, fmt: str, measurements: Path) -> None:
    """Print what `bench run` with these options would run — fits, predictions — and what it would cost in
    GPU-hours and wall time on --gpus GPUs, from measured epoch times; runs, fits and generates nothing."""
    from bench.cli import parse_seeds  # lazily: bench.cli registers this command
    from bench.registry import resolve_names

    if gpus < 1:
        raise BenchInputError(f"--gpus {gpus}: give at least 1")
    seeds = parse_seeds(seed)
    names = resolve_names(method)
    every = any(part.strip() == "all" for part in method.split(","))
    plan = build_plan(names, protocol, dataset, scale, seeds, list(overrides), gpus, measurements, every=every)
    click.echo(json.dumps(plan, indent=1) if fmt == "json" else render_text(plan))
