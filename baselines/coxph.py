"""Clinical-only Cox proportional hazards: the reference row of every survival table.

Preprocessing is fitted on the training fold only: numeric columns get median imputation with a
missing-value indicator (missing HPV status is informative) and standardisation; categorical columns get
most-frequent imputation and one-hot encoding (unknown categories at test time are ignored). Columns that
are entirely missing in the training fold are dropped. The model is scikit-survival's
``CoxPHSurvivalAnalysis`` (Breslow ties) with a small ridge penalty ``alpha`` so rare one-hot levels and
collinear indicators cannot make the fit diverge; its Breslow baseline gives the survival curves.
"""
from __future__ import annotations

import numpy as np
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from bench import Cohort, Method, Prediction
from bench.clinical import as_object, clinical_preprocessor
from bench.config import below_minimum
from bench.survival import event_time_grid

_CONFIG = {"alpha": 0.1, "ties": "breslow", "n_iter": 100, "n_times": 100}


def curves_at(fns, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-survival step functions evaluated on ``grid`` clipped to their domain: (survival, times)."""
    times = np.unique(np.clip(grid, fns[0].domain[0], fns[0].domain[1]))
    return np.vstack([fn(times) for fn in fns]), times


def fit_clinical_encoding(clinical) -> tuple[list[str], object]:
    """The columns that hold a value in the training fold and the preprocessor fitted on them."""
    x = as_object(clinical)
    columns = [c for c in x.columns if x[c].notna().any()]
    return columns, clinical_preprocessor().fit(x[columns])


def fit_cox(config: dict, design: np.ndarray, outcomes) -> tuple[CoxPHSurvivalAnalysis, np.ndarray]:
    """The ridge Cox model (Breslow baseline) on ``design`` and the time grid of its survival curves."""
    y = Surv.from_arrays(event=outcomes["event"].astype(bool).to_numpy(), time=outcomes["time"].to_numpy())
    model = CoxPHSurvivalAnalysis(alpha=config["alpha"], ties=config["ties"], n_iter=config["n_iter"]).fit(design, y)
    return model, event_time_grid(outcomes["time"].to_numpy(), outcomes["event"].to_numpy(), config["n_times"])


class CoxPH(Method):
    """Cox PH on the clinical table (scikit-survival), ridge ``alpha``, Breslow ties and baseline.

    Same config at every scale: it is cheap to fit at any size. ``n_times``: points of the survival
    curve grid (quantiles of the training event times).
    """

    consumes = ("clinical",)
    family = "clinical"
    produces = ("risk", "survival")
    version = "2"  # history: CHANGELOG.md
    configs = {"smoke": dict(_CONFIG), "quick": dict(_CONFIG), "paper": dict(_CONFIG)}

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = []
        if not (np.isfinite(config["alpha"]) and config["alpha"] >= 0):
            problems.append(f"alpha = {config['alpha']} must be a finite number >= 0")
        if config["ties"] not in ("breslow", "efron"):
            problems.append(f"ties = {config['ties']!r} must be 'breslow' or 'efron'")
        return problems + below_minimum(config, {"n_iter": 1, "n_times": 2})

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train  # no early stopping: use every training patient
        self.columns_, self.pre_ = fit_clinical_encoding(data.clinical)
        design = self.pre_.transform(as_object(data.clinical)[self.columns_])
        self.model_, self.times_ = fit_cox(self.config, design, data.outcomes)

    def predict(self, cohort: Cohort) -> Prediction:
        x = self.pre_.transform(as_object(cohort.clinical)[self.columns_])
        risk = self.model_.predict(x)
        survival, times = curves_at(self.model_.predict_survival_function(x), self.times_)
        return Prediction(risk=risk, survival=survival, times=times)
