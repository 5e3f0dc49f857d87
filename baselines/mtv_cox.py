"""Reference rows that read no contours: ``mtv-cox`` (PET burden alone) and ``clinical-mtv-cox`` (the clinical
table plus the same), Cox PH on three PET features.

Why: they are the simplest image signal a PET/CT benchmark can offer — gross metabolic burden — and the
floor an image method should clear. They read the PET through the same box the deep methods see (the image
pipeline, centred on the PET hot region) and never a reference mask, at training or at test time, so they
stay comparable under every corruption: texture corruptions (noise, blur, CT artefacts) barely move a volume
above a threshold, while SUV calibration and a missing PET move it directly.

Per patient, from the PET resampled into the pipeline box (``bench.data.pipeline``; SUV recovered from the
normalised box as ``pet × pet_suv_max``):

- MTV — metabolic tumour volume: the volume (cc) of the box's voxels with SUV >= ``threshold_suv`` (2.5);
- TLG — total lesion glycolysis: MTV × the mean SUV of those voxels, i.e. their summed SUV × voxel volume;
- SUVmax — the box's largest SUV;

all three 0 when the PET is empty (a missing PET is an image of SUV 0) or no voxel reaches the threshold.
The model inputs are log1p(MTV), log1p(TLG) and SUVmax, standardised on the training patients.

The pipeline clips SUV at ``pet_suv_max``. The deep methods' 20 would cap SUVmax and TLG of the hottest
tumours, so these rows raise it to 1000, a ceiling no PET reaches; the box (centre, size, spacing) does not
depend on it, so MTV is the one the quick deep methods' box gives. The PET box depends on the PET alone, so
the features are cached by the PET file's content (plus the box settings and ``FEATURES_VERSION``) under
``<cache>/features/mtv/``: a corruption of the CT alone reuses them, and the two methods, every fold and every
protocol share them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.preprocessing import StandardScaler

from baselines.coxph import CoxPH, curves_at, fit_clinical_encoding, fit_cox
from bench import BenchInputError, Cohort, Method, Prediction
from bench.clinical import as_object
from bench.data import ImageFiles, cache_dir
from bench.data.pipeline import PipelineConfig, process
from bench.fsutil import atomic_path, file_digest
from bench.hashing import content_hash
from bench.parallel import progress_map

FEATURES_VERSION = "1"  # bump when what a feature measures changes: it is part of every cache key
FEATURE_NAMES = ("mtv_cc", "tlg", "suv_max")  # as cached; the model reads log1p of the first two

# The quick pipeline's box (32³ at 3 mm, as bench.data.proxies.QUICK_PIPELINE) at quick and paper: the
# features are three numbers per patient, so a finer box buys nothing at paper; smoke is a coarser, smaller
# box for the tests.
_COX = {"alpha": 0.1, "ties": "breslow", "n_iter": 100, "n_times": 100}
_QUICK = _COX | {"spacing_mm": 3.0, "box": [32, 32, 32], "pet_suv_max": 1000.0, "threshold_suv": 2.5}
_CONFIGS = {"smoke": _QUICK | {"spacing_mm": 6.0, "box": [16, 16, 16]}, "quick": dict(_QUICK), "paper": dict(_QUICK)}


def pet_burden(pet_suv: np.ndarray, spacing_mm: float, threshold_suv: float = 2.5) -> tuple[float, float, float]:
    """(MTV in cc, TLG in SUV·cc, SUVmax) of a PET array in SUV on an isotropic grid of ``spacing_mm``; all
    three 0 when no voxel reaches ``threshold_suv`` (an empty or missing PET included)."""
    suv = np.asarray(pet_suv, dtype=np.float64)
    hot = suv >= threshold_suv
    if not hot.any():
        return 0.0, 0.0, 0.0
    voxel_cc = spacing_mm ** 3 / 1000.0
    return float(hot.sum() * voxel_cc), float(suv[hot].sum() * voxel_cc), float(suv.max())


def _box(config: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig(spacing_mm=float(config["spacing_mm"]), size=tuple(int(v) for v in config["box"]),
                          pet_suv_max=float(config["pet_suv_max"]))


def _cache_path(pet: Path, box: PipelineConfig, threshold_suv: float, cache: Path) -> Path:
    parts = {"pet": file_digest(Path(pet), Path(cache) / "pipeline" / "file-hashes"), "box": box.key(),
             "threshold_suv": threshold_suv, "version": FEATURES_VERSION}
    return Path(cache) / "features" / "mtv" / f"{content_hash(parts, 24)}.json"


def _cached(path: Path) -> list[float] | None:
    """The features stored at ``path``; None when missing or damaged (then they are recomputed)."""
    if path.is_file():
        try:
            values = [float(v) for v in json.loads(path.read_text())["features"]]
            if len(values) == len(FEATURE_NAMES):
                return values
        except (ValueError, KeyError, TypeError):
            pass
    return None


def patient_burden(files, config: dict[str, Any]) -> tuple[float, float, float]:
    """(MTV, TLG, SUVmax) of one patient's PET in ``config``'s box, no cache. The mask is never read (the
    pipeline would otherwise resample it too); the pipeline reads the CT as well, but the PET box does not
    depend on it."""
    box = _box(config)
    pet = process(ImageFiles(files.ct, files.pet, None), box)["pet"]
    return pet_burden(pet * box.pet_suv_max, box.spacing_mm, float(config["threshold_suv"]))


def _compute(args) -> tuple[str, list[float] | None, str | None]:
    pid, files, config, path = args
    try:
        values = list(patient_burden(files, config))
        with atomic_path(path, ".json") as tmp:
            tmp.write_text(json.dumps({"pet": str(files.pet), "features": values, "names": list(FEATURE_NAMES)}))
        return pid, values, None
    except Exception as exc:  # report which patient, in the parent
        return pid, None, f"{type(exc).__name__}: {exc}"


def burden_features(cohort: Cohort, config: dict[str, Any], *, progress: bool = True) -> tuple[np.ndarray, int]:
    """(n, 3) array of log1p(MTV), log1p(TLG), SUVmax for the cohort's patients in order, and how many were
    computed (the rest came from the cache)."""
    if not cohort.has_images:
        raise BenchInputError(f"mtv features need PET images, and cohort {cohort.name!r} has none")
    box, threshold = _box(config), float(config["threshold_suv"])
    cache = cache_dir()
    rows: dict[str, list[float]] = {}
    todo = []
    for pid, files in cohort.image_files.items():
        path = _cache_path(files.pet, box, threshold, cache)
        values = _cached(path)
        if values is None:
            todo.append((pid, files, config, path))
        else:
            rows[pid] = values
    failures: list[str] = []

    def collect(result) -> None:
        pid, values, err = result
        if err is not None:
            failures.append(f"{pid}: {err}")
        else:
            rows[pid] = values

    progress_map(_compute, todo, collect, desc="mtv features", progress=progress)
    if failures:
        raise BenchInputError(f"mtv features of cohort {cohort.name!r} failed for {len(failures)} patient(s): "
                              + "; ".join(failures[:5]))
    raw = np.asarray([rows[pid] for pid in cohort.ids], dtype=np.float64).reshape(len(cohort), 3)
    return np.column_stack([np.log1p(raw[:, 0]), np.log1p(raw[:, 1]), raw[:, 2]]), len(todo)


class _BurdenCox(Method):
    """Cox PH on the PET burden features, with the clinical table in front when ``with_clinical``."""

    family = "reference"
    produces = ("risk", "survival")
    needs_mask_at_test = False
    version = "1"
    configs = _CONFIGS
    with_clinical: ClassVar[bool] = False
    # the PET burden of a cohort is computed in a process pool as wide as the job's CPUs
    resources = {scale: {"cpus": 2, "gpus": 0, "memory_gb": 2.0} for scale in ("smoke", "quick", "paper")}

    def warm_cache(self, cohort: Cohort) -> None:
        burden_features(cohort, self.config, progress=self.ctx.progress)

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = CoxPH.check_config(config)
        box = config["box"]
        if not (isinstance(box, (list, tuple)) and len(box) == 3 and all(isinstance(v, int) and v > 0 for v in box)):
            problems.append(f"box = {box!r} must be three positive whole numbers of voxels (x, y, z)")
        if not (np.isfinite(config["spacing_mm"]) and config["spacing_mm"] > 0):
            problems.append(f"spacing_mm = {config['spacing_mm']} must be > 0")
        if not (np.isfinite(config["threshold_suv"]) and config["threshold_suv"] > 0):
            problems.append(f"threshold_suv = {config['threshold_suv']} must be > 0")
        elif not (np.isfinite(config["pet_suv_max"]) and config["pet_suv_max"] > config["threshold_suv"]):
            problems.append(f"pet_suv_max = {config['pet_suv_max']} must exceed threshold_suv = "
                            f"{config['threshold_suv']} (SUV above pet_suv_max is clipped)")
        return problems

    def _burden(self, cohort: Cohort) -> np.ndarray:
        t0 = time.perf_counter()
        x, computed = burden_features(cohort, self.config, progress=self.ctx.progress)
        self.ctx.logger.info("mtv features for %s: %d patient(s) computed, %d from the cache, %.1f s", cohort.name,
                             computed, len(cohort) - computed, time.perf_counter() - t0)
        return x

    def _design(self, cohort: Cohort, burden: np.ndarray) -> np.ndarray:
        x = self.scaler_.transform(burden)
        if not self.with_clinical:
            return x
        clinical = np.asarray(self.pre_.transform(as_object(cohort.clinical)[self.columns_]), dtype=float)
        return np.hstack([clinical, x])

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train  # no early stopping: use every training patient
        burden = self._burden(data)
        self.scaler_ = StandardScaler().fit(burden)
        if self.with_clinical:  # the clinical table encoded exactly as coxph encodes it
            self.columns_, self.pre_ = fit_clinical_encoding(data.clinical)
        self.model_, self.times_ = fit_cox(self.config, self._design(data, burden), data.outcomes)

    def predict(self, cohort: Cohort) -> Prediction:
        x = self._design(cohort, self._burden(cohort))
        risk = self.model_.predict(x)
        survival, times = curves_at(self.model_.predict_survival_function(x), self.times_)
        return Prediction(risk=risk, survival=survival, times=times)


class MTVCox(_BurdenCox):
    """PET burden reference row: Cox PH (scikit-survival, ridge ``alpha``, Breslow ties and baseline) on
    log1p(MTV), log1p(TLG) and SUVmax of the PET in the pipeline box; no CT value, contour or clinical
    variable enters it.

    A reference row, not a reproduction of a paper: the simplest image signal, immune to texture corruptions,
    moved by SUV calibration and a missing PET; an image method below it has learnt less than gross burden.
    Config: ``spacing_mm`` and ``box`` (the pipeline box: smoke 16³ at 6 mm; quick and paper 32³ at 3 mm, the
    quick pipeline's), ``pet_suv_max`` (the pipeline's SUV ceiling, 1000 at every scale), ``threshold_suv``
    (2.5, the MTV threshold), ``alpha``, ``ties``, ``n_iter`` and ``n_times`` as in ``coxph``.
    """

    consumes = ("pet",)


class ClinicalMTVCox(_BurdenCox):
    """Clinical + PET burden reference row: ``coxph``'s clinical encoding (train-fitted imputation,
    standardisation, one-hot) beside ``mtv-cox``'s three standardised PET features, one Cox PH model.

    What an image method must beat once it also reads the clinical table: the clinical Cox model plus the
    simplest image signal, no contours and no texture. Config and scales as ``mtv-cox``.
    """

    consumes = ("clinical", "pet")
    with_clinical = True
