"""A minimal method: lifelines Cox PH on two clinical columns, median-imputed on the training fold."""
from __future__ import annotations

import numpy as np
from lifelines import CoxPHFitter

from bench import Cohort, Method, Prediction

COLUMNS = ["Age", "Performance status"]


class AgeCox(Method):
    """Cox PH on age and ECOG performance status (lifelines), ridge ``penalizer``."""

    consumes = ("clinical",)
    produces = ("risk", "survival")
    configs = {
        "smoke": {"penalizer": 0.1},
        "quick": {"penalizer": 0.1},
        "paper": {"penalizer": 0.1},
    }

    def fit(self, train: Cohort, val: Cohort) -> None:
        data = train.union(val) if len(val) else train
        x = data.clinical[COLUMNS]
        self.medians_ = x.median()
        frame = x.fillna(self.medians_).join(data.outcomes)
        self.model_ = CoxPHFitter(penalizer=self.config["penalizer"]).fit(frame, "time", "event")

    def predict(self, cohort: Cohort) -> Prediction:
        x = cohort.clinical[COLUMNS].fillna(self.medians_)
        risk = self.model_.predict_log_partial_hazard(x).to_numpy()
        surv = self.model_.predict_survival_function(x)  # rows: times, columns: patients
        times = surv.index.to_numpy(dtype=float)
        keep = times > 0
        return Prediction(risk=risk, survival=surv.to_numpy().T[:, keep], times=times[keep])
