"""Random survival forest (scikit-survival) on radiomics + clinical features.

Reads PyRadiomics features inside the reference contours at training and test time
(``needs_mask_at_test``). The same train-fitted feature inputs as ``radiomics-cox`` (``FeatureInputs``),
with a looser filter by default: a forest copes with more, and correlated, features.
"""
from __future__ import annotations

import numpy as np
from sksurv.ensemble import RandomSurvivalForest
from sksurv.util import Surv

from baselines.tabular import (FEATURE_RESOURCES, RADIOMICS_PAPER, RADIOMICS_QUICK, RADIOMICS_SMOKE, FeatureInputs,
                               feature_config_problems, warm_radiomics)
from bench import Cohort, Method, Prediction
from bench.config import below_minimum
from bench.parallel import available_cpus


class RSF(Method):
    """Random survival forest (log-rank splits), risk = the forest's summed cumulative hazard.

    Config: ``radiomics``, ``corr_max``, ``select_k``, ``clinical`` as for radiomics-cox; ``n_estimators``,
    ``min_samples_leaf``, ``max_features`` ("sqrt", "log2" or "all") or ``max_features_fraction`` (in (0, 1];
    used when > 0), ``n_jobs`` (0 = every core this process may use). The survival curve is the forest's own,
    on the training event times. Defaults (10 features, leaf 20, sqrt) were chosen by out-of-bag C on the
    training parts of two folds. Smoke grows 20 trees with leaves of 3 (its folds hold ~30 patients).
    """

    consumes = ("ct", "pet", "mask", "clinical")
    family = "feature"
    produces = ("risk", "survival")
    needs_mask_at_test = True
    resources = FEATURE_RESOURCES
    warm_cache = warm_radiomics
    version = "1"
    _base = {"corr_max": 0.9, "select_k": 10, "n_estimators": 500, "min_samples_leaf": 20,
             "max_features": "sqrt", "max_features_fraction": 0.0, "n_jobs": 0, "clinical": True}
    configs = {"smoke": _base | {"radiomics": RADIOMICS_SMOKE, "n_estimators": 20, "min_samples_leaf": 3},
               "quick": _base | {"radiomics": RADIOMICS_QUICK},
               "paper": _base | {"radiomics": RADIOMICS_PAPER, "n_estimators": 1000}}

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = feature_config_problems(config)
        problems += below_minimum(config, {"n_estimators": 1, "min_samples_leaf": 1, "n_jobs": 0})
        if config["max_features"] not in ("sqrt", "log2", "all"):
            problems.append(f"max_features = {config['max_features']!r} must be 'sqrt', 'log2' or 'all'")
        if not 0 <= config["max_features_fraction"] <= 1:
            problems.append(f"max_features_fraction = {config['max_features_fraction']} must be in [0, 1] "
                            f"(0: use max_features)")
        return problems

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train  # out-of-bag, not a hold-out, is the forest's check
        self.inputs_ = FeatureInputs(self.config, logger=self.ctx.logger, progress=self.ctx.progress).fit(data)
        out = data.outcomes
        y = Surv.from_arrays(event=out["event"].astype(bool).to_numpy(), time=out["time"].to_numpy(float))
        mf = self.config["max_features_fraction"] or {"all": None}.get(self.config["max_features"],
                                                                         self.config["max_features"])
        self.model_ = RandomSurvivalForest(
            n_estimators=self.config["n_estimators"], min_samples_leaf=self.config["min_samples_leaf"],
            max_features=mf,
            n_jobs=self.config["n_jobs"] or available_cpus(), random_state=self.ctx.seed % 2**32,
        ).fit(self.inputs_.transform(data), y)

    def predict(self, cohort: Cohort) -> Prediction:
        x = self.inputs_.transform(cohort)
        risk = self.model_.predict(x)
        survival = self.model_.predict_survival_function(x, return_array=True)
        return Prediction(risk=risk, survival=survival, times=np.asarray(self.model_.unique_times_, float))
