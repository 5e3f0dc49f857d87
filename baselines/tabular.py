"""Train-fitted tabular inputs of the feature baselines: the clinical table plus radiomics features.

``FeatureInputs.fit(train)`` learns everything from the training cohort only:

1. radiomics features of every training patient (``bench.features.radiomics``, cached per patient);
2. drop features that are missing for every training patient or constant on them;
3. median imputation; binary features (region present) standardised; every other feature mapped through
   the training quantiles to a normal score (radiomics features are heavy-tailed: volumes span three
   decades), clipped at ±3;
4. relevance = |Harrell C − ½| of each feature alone on the training outcomes; a greedy redundancy filter
   keeps a feature only if its correlation with every more relevant kept one is below ``corr_max``;
5. the ``select_k`` most relevant survivors (0 = all of them);
6. the clinical table through the same train-fitted preprocessing as ``coxph``, appended unfiltered
   (``clinical = false`` leaves it out).

``transform(cohort)`` applies that to any cohort (its own features: a corrupted image is another file and
gets its own features). Radiomics reads the reference contours, so the methods built on this declare
``needs_mask_at_test``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, QuantileTransformer, StandardScaler

from bench.clinical import as_object, clinical_preprocessor
from bench.data import cache_dir
from bench.features.radiomics import ExtractionStats, RadiomicsSettings, cohort_features
from bench.metrics import cindex_harrell

CLIP = 3.0


# Radiomics extraction runs in a process pool as wide as the job's CPUs (bench.parallel.available_cpus).
FEATURE_RESOURCES = {scale: {"cpus": 2, "gpus": 0, "memory_gb": 4.0} for scale in ("smoke", "quick", "paper")}


def warm_radiomics(method, cohort) -> None:
    """``Method.warm_cache`` of the methods that read ``FeatureInputs``: the cohort's radiomics in the cache."""
    FeatureInputs(method.config, logger=method.ctx.logger, progress=method.ctx.progress).radiomics(cohort)


def feature_config_problems(config: dict[str, Any]) -> list[str]:
    """Complaints about the keys every feature baseline shares (``radiomics`` table, filters)."""
    from bench.errors import BenchInputError

    problems = []
    try:
        RadiomicsSettings.from_config(config["radiomics"])
    except BenchInputError as exc:
        problems.append(str(exc))
    if not 0 < config["corr_max"] <= 1:
        problems.append(f"corr_max = {config['corr_max']} must be in (0, 1] (1 keeps correlated features)")
    if config["select_k"] < 0:
        problems.append(f"select_k = {config['select_k']} must be >= 0 (0 keeps every filtered feature)")
    return problems


def _clip(x):
    return np.clip(x, -CLIP, CLIP)


def _numeric_transformer(n: int, binary: list[str], continuous: list[str]) -> ColumnTransformer:
    normal = make_pipeline(
        SimpleImputer(strategy="median"),
        QuantileTransformer(output_distribution="normal", n_quantiles=max(2, min(1000, n)), subsample=10**9),
        FunctionTransformer(_clip, feature_names_out="one-to-one"),
    )
    return ColumnTransformer([
        ("binary", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), binary),
        ("continuous", normal, continuous),
    ])


class FeatureInputs:
    """Clinical + selected radiomics features, every choice fitted on the training cohort."""

    def __init__(self, config: dict[str, Any], *, logger: logging.Logger | None = None, progress: bool = True):
        self.settings = RadiomicsSettings.from_config(config["radiomics"])
        self.corr_max = float(config["corr_max"])
        self.select_k = int(config["select_k"])
        self.use_clinical = bool(config.get("clinical", True))
        self.logger = logger or logging.getLogger("bench.features")
        self.progress = progress

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("logger", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.logger = logging.getLogger("bench.features")
        self.progress = False

    def radiomics(self, cohort) -> pd.DataFrame:
        stats = ExtractionStats()
        frame = cohort_features(cohort, self.settings, cache_dir(), progress=self.progress, stats=stats)
        self.logger.info("radiomics for %s: %d patient(s) computed, %d from the cache, %.1f s", cohort.name,
                         stats.computed, stats.cached, stats.seconds)
        return frame

    def fit(self, cohort) -> FeatureInputs:
        rad = self.radiomics(cohort)
        usable = [c for c in rad.columns if rad[c].notna().any() and rad[c].nunique(dropna=True) > 1]
        rad = rad[usable]
        binary = [c for c in usable if rad[c].nunique(dropna=True) == 2]
        continuous = [c for c in usable if c not in binary]
        self.numeric_ = _numeric_transformer(len(rad), binary, continuous).fit(rad)
        self.numeric_columns_ = binary + continuous  # the ColumnTransformer's output order
        z = pd.DataFrame(self.numeric_.transform(rad), columns=self.numeric_columns_, index=rad.index)
        out = cohort.outcomes
        time, event = out["time"].to_numpy(float), out["event"].to_numpy(bool)
        relevance = {c: abs(cindex_harrell(time, event, z[c].to_numpy()) - 0.5) for c in z.columns}
        relevance = {c: (0.0 if not np.isfinite(r) else r) for c, r in relevance.items()}
        order = sorted(z.columns, key=lambda c: (-relevance[c], c))
        corr = np.abs(np.corrcoef(z[order].to_numpy(), rowvar=False)) if len(order) > 1 else np.zeros((1, 1))
        corr = np.nan_to_num(corr, nan=0.0)
        kept: list[int] = []
        for i in range(len(order)):
            if all(corr[i, j] < self.corr_max for j in kept):
                kept.append(i)
                if self.select_k and len(kept) == self.select_k:
                    break
        self.radiomics_columns_ = [order[i] for i in kept]
        self.relevance_ = {c: relevance[c] for c in self.radiomics_columns_}
        self.n_radiomics_total_ = len(rad.columns)
        if self.use_clinical:
            x = as_object(cohort.clinical)
            self.clinical_columns_ = [c for c in x.columns if x[c].notna().any()]
            self.clinical_ = clinical_preprocessor().fit(x[self.clinical_columns_])
            clinical_names = list(self.clinical_.get_feature_names_out())
        else:
            clinical_names = []
        self.names_ = [f"radiomics:{c}" for c in self.radiomics_columns_] + [f"clinical:{c}" for c in clinical_names]
        self.logger.info("features: %d radiomics of %d kept (corr < %.2f, top %s) + %d clinical columns",
                         len(self.radiomics_columns_), len(rad.columns), self.corr_max, self.select_k or "all",
                         len(clinical_names))
        return self

    def transform(self, cohort) -> np.ndarray:
        rad = self.radiomics(cohort).reindex(columns=self.numeric_.feature_names_in_)
        z = pd.DataFrame(self.numeric_.transform(rad), columns=self.numeric_columns_, index=rad.index)
        parts = [z[self.radiomics_columns_].to_numpy(float)]
        if self.use_clinical:
            parts.append(np.asarray(self.clinical_.transform(as_object(cohort.clinical)[self.clinical_columns_]),
                                    dtype=float))
        return np.hstack(parts)


RADIOMICS_QUICK = {"classes": ["shape", "firstorder", "glcm", "glszm"], "regions": ["gtvp", "gtvn", "union"],
                   "modalities": ["ct", "pet"], "ct_bin_width": 25.0, "pet_bin_width": 0.5, "resample_mm": 2.0,
                   "min_voxels": 8}
RADIOMICS_SMOKE = RADIOMICS_QUICK | {"classes": ["shape", "firstorder"], "regions": ["gtvp", "union"]}
RADIOMICS_PAPER = RADIOMICS_QUICK | {"classes": ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"],
                                     "resample_mm": 1.0}
