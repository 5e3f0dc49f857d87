"""The oracle: the synthetic cohort's true linear predictor η as the risk — a ceiling, not a method.

It consumes ``groundtruth`` (``groundtruth/oracle.csv``, outside the HECKTOR layout, written by the
synthetic generator), so no other method can see what it sees; on a dataset without ground truth (any
real data) the run stops with exit 2 before anything is trained. Leaderboards flag its row as a ceiling.
It learns nothing: ``fit`` only checks the training cohort carries the truth, the same at every scale.
"""
from __future__ import annotations

import numpy as np

from bench.data.cohort import Cohort
from bench.method import Method, Prediction


class Oracle(Method):
    """Risk = the true log-hazard η of the synthetic cohort (its C-index is the best any method can expect)."""

    consumes = ("groundtruth",)
    family = "reference"
    produces = ("risk",)
    configs = {"smoke": {}, "quick": {}, "paper": {}}
    ceiling = True

    def fit(self, train: Cohort, val: Cohort) -> None:
        train.groundtruth  # raises if absent
        self.fitted_ = True

    def predict(self, cohort: Cohort) -> Prediction:
        eta = cohort.groundtruth.loc[list(cohort.ids), "eta"].to_numpy(dtype=float)
        return Prediction(risk=np.asarray(eta))
