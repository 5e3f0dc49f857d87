"""Radiomics + clinical penalised Cox models: ``radiomics-cox`` (filtered features, fixed elastic net) and
``lasso-cox`` (every usable feature, lasso penalty chosen by an inner cross-validation).

Both read PyRadiomics features of CT and PET inside the reference GTVp, GTVn and their union
(``bench.features.radiomics``) at training *and test* time, so they declare ``needs_mask_at_test``; the
leaderboards flag them. Features and every filter are fitted on the training fold only (``FeatureInputs``).
The model is scikit-survival's ``CoxnetSurvivalAnalysis``; its Breslow baseline gives the survival curves.
"""
from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.util import Surv

from baselines.coxph import curves_at
from baselines.tabular import (FEATURE_RESOURCES, RADIOMICS_PAPER, RADIOMICS_QUICK, RADIOMICS_SMOKE, FeatureInputs,
                               feature_config_problems, warm_radiomics)
from bench import BenchInputError, Cohort, Method, Prediction
from bench.config import below_minimum
from bench.metrics import cindex_harrell
from bench.survival import event_time_grid

_INNER_LOG = logging.getLogger("bench.features.inner")  # the inner folds' feature fits: warnings only
_INNER_LOG.setLevel(logging.WARNING)


class _CoxnetMethod(Method):
    consumes = ("ct", "pet", "mask", "clinical")
    family = "feature"
    produces = ("risk", "survival")
    needs_mask_at_test = True
    resources = FEATURE_RESOURCES
    warm_cache = warm_radiomics

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = feature_config_problems(config)
        if not 0 < config["l1_ratio"] <= 1:
            problems.append(f"l1_ratio = {config['l1_ratio']} must be in (0, 1] (1 is the lasso)")
        return problems + below_minimum(config, {"n_times": 2})

    def _inputs(self, train: Cohort) -> tuple[np.ndarray, np.ndarray]:
        self.inputs_ = FeatureInputs(self.config, logger=self.ctx.logger, progress=self.ctx.progress).fit(train)
        out = train.outcomes
        y = Surv.from_arrays(event=out["event"].astype(bool).to_numpy(), time=out["time"].to_numpy(float))
        self.times_ = event_time_grid(out["time"].to_numpy(), out["event"].to_numpy(), self.config["n_times"])
        return self.inputs_.transform(train), y

    def predict(self, cohort: Cohort) -> Prediction:
        x = self.inputs_.transform(cohort)
        risk = self.model_.predict(x, alpha=self.alpha_)
        survival, times = curves_at(self.model_.predict_survival_function(x, alpha=self.alpha_), self.times_)
        return Prediction(risk=risk, survival=survival, times=times)


class RadiomicsCox(_CoxnetMethod):
    """Radiomics-signature Cox model: redundancy-filtered, univariately selected radiomics + clinical,
    elastic-net Cox at a fixed penalty.

    Config: ``radiomics`` (feature classes, regions, bin widths, resampling; see RadiomicsSettings),
    ``corr_max`` (redundancy filter), ``select_k`` (most relevant features kept), ``alpha`` and ``l1_ratio``
    (the Coxnet penalty: alpha · (l1_ratio·|β|₁ + (1 − l1_ratio)/2·|β|²)), ``clinical`` (append the clinical
    table), ``n_times`` (survival grid). Scales differ only in the feature classes (smoke: shape and first
    order on GTVp and the union; quick: + GLCM, GLSZM, every region, 2 mm; paper: all seven classes at 1 mm).
    """

    version = "1"
    _base = {"corr_max": 0.8, "select_k": 10, "alpha": 0.05, "l1_ratio": 0.5, "clinical": True, "n_times": 100}
    configs = {"smoke": _base | {"radiomics": RADIOMICS_SMOKE, "select_k": 5},
               "quick": _base | {"radiomics": RADIOMICS_QUICK},
               "paper": _base | {"radiomics": RADIOMICS_PAPER}}

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = super().check_config(config)
        if not config["alpha"] > 0:
            problems.append(f"alpha = {config['alpha']} must be > 0")
        return problems

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train  # no early stopping: every training patient counts
        x, y = self._inputs(data)
        self.alpha_ = float(self.config["alpha"])
        self.model_ = CoxnetSurvivalAnalysis(alphas=[self.alpha_], l1_ratio=self.config["l1_ratio"],
                                             fit_baseline_model=True).fit(x, y)


class LassoCox(_CoxnetMethod):
    """Lasso Cox on every usable radiomics feature + clinical, the penalty chosen by inner cross-validation.

    The regularisation path (``n_alphas`` values down to ``alpha_min_ratio`` × the largest) is fitted on the
    training fold; ``inner_folds``-fold CV inside it (stratified by event; the feature inputs refitted on each
    inner training part, so the CV is nested) scores each alpha by the held-out Harrell C, and the best mean
    wins (``one_se = true``: the largest alpha within one standard error of it).
    No redundancy filter or univariate selection by default (``corr_max = 1``, ``select_k = 0``): the lasso
    selects. ``l1_ratio`` 1 is the lasso (a little ridge, e.g. 0.9, stabilises correlated features).
    """

    version = "2"  # history: CHANGELOG.md
    _base = {"corr_max": 1.0, "select_k": 0, "l1_ratio": 1.0, "n_alphas": 30, "alpha_min_ratio": 0.02,
             "inner_folds": 5, "one_se": False, "clinical": True, "n_times": 100}
    configs = {"smoke": _base | {"radiomics": RADIOMICS_SMOKE, "inner_folds": 3, "n_alphas": 10},
               "quick": _base | {"radiomics": RADIOMICS_QUICK},
               "paper": _base | {"radiomics": RADIOMICS_PAPER}}

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = super().check_config(config)
        if not 0 < config["alpha_min_ratio"] < 1:
            problems.append(f"alpha_min_ratio = {config['alpha_min_ratio']} must be in (0, 1)")
        return problems + below_minimum(config, {"n_alphas": 2, "inner_folds": 2})

    def _path(self, x, y, alphas=None, baseline=False):
        return CoxnetSurvivalAnalysis(
            l1_ratio=self.config["l1_ratio"], alphas=alphas, n_alphas=self.config["n_alphas"],
            alpha_min_ratio=self.config["alpha_min_ratio"], fit_baseline_model=baseline,
        ).fit(x, y)

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train
        x, y = self._inputs(data)
        n_events = int(y["event"].sum())
        if self.config["inner_folds"] > min(n_events, len(y) - n_events):
            raise BenchInputError(
                f"lasso-cox: inner_folds = {self.config['inner_folds']} but the training fold has {n_events} events "
                f"and {len(y) - n_events} censored patients; lower inner_folds (--set lasso-cox:inner_folds=K)")
        alphas = self._path(x, y).alphas_
        folds = StratifiedKFold(self.config["inner_folds"], shuffle=True, random_state=self.ctx.seed % 2**32)
        scores = np.full((self.config["inner_folds"], len(alphas)), np.nan)
        ids = np.asarray(data.ids)
        for k, (fit_idx, held_idx) in enumerate(folds.split(x, y["event"])):
            # nested: the inputs (imputation, quantile scaling, any outcome-driven selection) are refitted on the
            # inner training part, so the inner held-out patients shape neither them nor the path
            inputs = FeatureInputs(self.config, logger=_INNER_LOG, progress=False).fit(data.subset(ids[fit_idx]))
            x_fit, x_held = (inputs.transform(data.subset(ids[i])) for i in (fit_idx, held_idx))
            try:
                inner = self._path(x_fit, y[fit_idx], alphas=alphas)
            except ArithmeticError:  # a path that diverges on this inner fold scores nothing
                continue
            for j, a in enumerate(inner.alphas_):
                scores[k, j] = cindex_harrell(y["time"][held_idx], y["event"][held_idx],
                                              inner.predict(x_held, alpha=a))
        mean = np.nanmean(scores, axis=0)
        if not np.isfinite(mean).any():
            raise ArithmeticError("lasso-cox: no alpha of the path could be scored by the inner cross-validation")
        best = int(np.nanargmax(mean))
        if self.config["one_se"]:
            se = np.nanstd(scores[:, best], ddof=1) / np.sqrt(np.sum(np.isfinite(scores[:, best])))
            best = int(np.min(np.flatnonzero(mean >= mean[best] - se)))  # alphas decrease along the path
        self.alpha_ = float(alphas[best])
        self.inner_cindex_ = mean.tolist()
        self.model_ = self._path(x, y, alphas=alphas, baseline=True)
        coef = self.model_.coef_[:, best]
        self.selected_ = [n for n, c in zip(self.inputs_.names_, coef) if c != 0]
        self.ctx.logger.info("lasso-cox: alpha %.4g (inner C %.3f), %d of %d features non-zero", self.alpha_,
                             mean[best], len(self.selected_), len(coef))
