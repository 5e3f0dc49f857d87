"""DeepSurv: a Cox partial-likelihood MLP (pycox ``CoxPH`` on a torchtuples ``MLPVanilla``) on clinical +
radiomics features.

Inputs are the train-fitted ``FeatureInputs`` of ``radiomics-cox`` (radiomics inside the reference
contours, so ``needs_mask_at_test``). Training stops early on the validation split's partial-likelihood
loss and keeps the best weights (torchtuples ``EarlyStopping``); survival curves are pycox's Breslow
estimate on the training fold, evaluated at quantiles of the training event times.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from baselines.tabular import (FEATURE_RESOURCES, RADIOMICS_PAPER, RADIOMICS_QUICK, RADIOMICS_SMOKE, FeatureInputs,
                               feature_config_problems, warm_radiomics)
from bench import Cohort, Method, Prediction
from bench.config import below_minimum
from bench.survival import event_time_grid


def _batch_size(wanted: int, n: int) -> int:
    """The batch size nearest ``wanted`` whose last batch is not a single patient (BatchNorm cannot train on
    one sample, and a Cox loss has no pairs in it)."""
    if n <= wanted:
        return n
    for delta in range(wanted):
        for b in (wanted + delta, wanted - delta):
            if 2 <= b <= n and n % b != 1:
                return b
    return n


class _CoxLoss:
    """pycox's Cox partial likelihood (Breslow), but 0 (with a gradient) on a batch without events, where
    pycox divides 0 by 0 and the weights become NaN."""

    def __call__(self, log_h, durations, events):
        from pycox.models.loss import cox_ph_loss

        if float(events.sum()) == 0:
            return (log_h * 0).sum()
        return cox_ph_loss(log_h, durations, events)


class DeepSurv(Method):
    """Katzman et al. (2018) DeepSurv on tabular features.

    Config: ``radiomics``, ``corr_max``, ``select_k``, ``clinical`` as for radiomics-cox; ``hidden`` (layer
    widths), ``dropout``, ``batch_norm``, ``lr`` and ``weight_decay`` (AdamW, decoupled decay), ``batch_size``,
    ``epochs`` (an upper bound), ``patience`` (epochs without a better validation loss), ``n_times``.
    Smoke trains 3 epochs. It runs on the CPU at every scale: a few thousand parameters.
    """

    consumes = ("ct", "pet", "mask", "clinical")
    family = "feature"
    produces = ("risk", "survival")
    needs_mask_at_test = True
    resources = FEATURE_RESOURCES
    warm_cache = warm_radiomics
    version = "2"  # history: CHANGELOG.md
    _base = {"corr_max": 0.8, "select_k": 20, "clinical": True, "hidden": [32, 32], "dropout": 0.2,
             "batch_norm": True, "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 64, "epochs": 300,
             "patience": 30, "n_times": 100}
    configs = {"smoke": _base | {"radiomics": RADIOMICS_SMOKE, "select_k": 5, "epochs": 3, "patience": 2},
               "quick": _base | {"radiomics": RADIOMICS_QUICK},
               "paper": _base | {"radiomics": RADIOMICS_PAPER}}

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        problems = feature_config_problems(config)
        if not config["hidden"] or any((not isinstance(h, int)) or h < 1 for h in config["hidden"]):
            problems.append(f"hidden = {config['hidden']} must be a non-empty list of positive integers")
        if not 0 <= config["dropout"] < 1:
            problems.append(f"dropout = {config['dropout']} must be in [0, 1)")
        for key in ("lr",):
            if not config[key] > 0:
                problems.append(f"{key} = {config[key]} must be > 0")
        return problems + below_minimum(config, {"weight_decay": 0, "epochs": 1, "patience": 1, "batch_size": 2,
                                                  "n_times": 2})

    def fit(self, train: Cohort, val: Cohort) -> None:
        import torch
        import torchtuples as tt
        from pycox.models import CoxPH

        torch.manual_seed(self.ctx.seed % 2**32)
        cfg = self.config
        self.inputs_ = FeatureInputs(cfg, logger=self.ctx.logger, progress=self.ctx.progress).fit(train)
        x = self.inputs_.transform(train).astype("float32")
        out = train.outcomes
        y = (out["time"].to_numpy("float32"), out["event"].to_numpy("float32"))
        val_data = None
        if len(val) and val.outcomes["event"].sum() > 0:
            vo = val.outcomes
            val_data = (self.inputs_.transform(val).astype("float32"),
                        (vo["time"].to_numpy("float32"), vo["event"].to_numpy("float32")))
        net = tt.practical.MLPVanilla(x.shape[1], list(cfg["hidden"]), 1, batch_norm=cfg["batch_norm"],
                                      dropout=cfg["dropout"] or None, output_bias=False)
        self.model_ = CoxPH(net, torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
                            loss=_CoxLoss())
        with tempfile.TemporaryDirectory() as tmp:
            callbacks = [tt.callbacks.EarlyStopping(patience=cfg["patience"], file_path=Path(tmp) / "best.pt")] \
                if val_data is not None else []
            batch = _batch_size(cfg["batch_size"], len(x))
            log = self.model_.fit(x, y, batch, cfg["epochs"], callbacks=callbacks, verbose=False, val_data=val_data)
        self.model_.callbacks = None  # the early-stopping callback holds a lambda: the store pickles the model
        self.history_ = log.to_pandas().reset_index(names="epoch").to_dict(orient="list")
        self.model_.compute_baseline_hazards(x, y)
        self.times_ = event_time_grid(y[0], y[1], cfg["n_times"])
        self.ctx.logger.info("deepsurv: %d epochs (best val loss %s)", len(self.history_["epoch"]),
                             f"{min(self.history_['val_loss']):.4f}" if "val_loss" in self.history_ else "n/a")

    def predict(self, cohort: Cohort) -> Prediction:
        x = self.inputs_.transform(cohort).astype("float32")
        self.model_.net.eval()
        risk = np.asarray(self.model_.predict(x), dtype=float).ravel()
        surv = self.model_.predict_surv_df(x)  # rows: baseline-hazard times, columns: patients
        grid = surv.index.to_numpy(float)
        # a step function: S at each grid time is its value at the last baseline time at or before it
        pos = np.searchsorted(grid, self.times_, side="right") - 1
        values = surv.to_numpy().T
        survival = np.where(pos[None, :] >= 0, values[:, np.clip(pos, 0, None)], 1.0)
        return Prediction(risk=risk, survival=survival, times=self.times_)
