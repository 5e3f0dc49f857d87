"""The linear probe of a pretraining card: does a frozen encoder's embedding hold the corpus's tumour traits?

Ridge regression from the frozen features to the log total tumour volume, to the true log-hazard η and to
necrosis present (the synthetic corpus's ground truth), fitted on half the corpus and scored (R²) on the other
half, over ``PROBE_SPLITS`` random halvings, against the same probe on the randomly initialised encoder.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from proposed.fm_encoders.features import embed
from proposed.fm_encoders.specs import load_encoder

PROBE_VERSION = 5  # part of the card: a card with another probe version gets its probe redone
PROBE_WINS = 9  # "beats the random encoder": above it in at least this many of the PROBE_SPLITS halvings ...
PROBE_MIN_R2 = 0.05  # ... with a mean R² that explains at least 5 % of the target's variance
PROBE_SPLITS = 10
PROBE_TARGETS = {"log_mtv": "log(1 + total tumour volume, cc)", "eta": "the true log-hazard η",
                 "necrosis": "necrosis present (1/0: a necrotic primary core or a necrotic node; on CT a 15 HU core "
                             "in 40 HU tumour, while tumour against 45 HU muscle is nearly invisible)"}


def probe_r2(features: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Ridge regression (penalty by inner CV) from standardised features to ``target`` on one half of the
    patients; R² on the other half."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = np.random.default_rng(seed).permutation(len(target))
    a, b = idx[: len(idx) // 2], idx[len(idx) // 2:]
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(features[a], target[a])
    return float(model.score(features[b], target[b]))


def run_probe(name: str, cfg: dict, encoder: nn.Module, data, truth) -> dict:
    """Ridge probes from frozen features of ``data`` (the corpus's encoder inputs, no augmentation) to its
    ground truth ``truth`` (a table indexed by patient id): held-out R² averaged over ``PROBE_SPLITS`` random
    halvings, for the encoder and for the same architecture at its random initialisation (torch seed 0, the
    state pretraining started from)."""
    feats = {"pretrained": embed(encoder, data), "random_init": embed(load_encoder(name, cfg, None), data)}
    y = probe_targets(truth.loc[data.ids])
    out = {"version": PROBE_VERSION, "metric": f"held-out R², mean ± sd over {PROBE_SPLITS} random halvings",
           "targets": {}}
    for key, target in y.items():
        res, r2 = {}, {}
        for which, f in feats.items():
            r2[which] = np.array([probe_r2(f, target, seed=s) for s in range(PROBE_SPLITS)])
            res[which] = [round(float(r2[which].mean()), 4), round(float(r2[which].std()), 4)]
        wins, beats = probe_verdict(r2["pretrained"], r2["random_init"])
        out["targets"][key] = {"description": PROBE_TARGETS[key], **res, "wins": wins, "beats_random": beats}
    out["verdict"] = (f"beats the random encoder: R² above it on the same halving in ≥ {PROBE_WINS} of "
                      f"{PROBE_SPLITS}, and mean R² ≥ {PROBE_MIN_R2:g}")
    return out


def probe_targets(truth) -> dict[str, np.ndarray]:
    """The probe's targets (``PROBE_TARGETS``) from a synthetic cohort's ground-truth table, in its row order."""
    return {"log_mtv": np.log1p(truth["mtv_primary_cc"].to_numpy(float) + truth["mtv_nodes_cc"].to_numpy(float)),
            "eta": truth["eta"].to_numpy(float),
            "necrosis": ((truth["primary_necrotic"].to_numpy(float) > 0)
                         | (truth["node_necrosis"].to_numpy(float) > 0)).astype(float)}


def probe_verdict(pretrained, random_init) -> tuple[int, bool]:
    """(halvings on which the pretrained probe's R² is above the random encoder's, whether that makes it beat
    the random encoder: in at least ``PROBE_WINS`` of them, with a mean R² of at least ``PROBE_MIN_R2`` — a
    consistent but tiny edge is no usable information)."""
    a, b = np.asarray(pretrained, float), np.asarray(random_init, float)
    wins = int((a > b).sum())
    return wins, bool(wins >= PROBE_WINS and a.mean() >= PROBE_MIN_R2)


def probe_summary(c: dict) -> str:
    """One line per card: each target's probe R², pretrained against random init, and the verdict."""
    t = ((c.get("probe") or {}).get("targets")) or {}
    return "; ".join(f"probe R² {k} {v['pretrained'][0]:.3f} (random init {v['random_init'][0]:.3f}"
                     f"{', beats it' if v.get('beats_random') else ', does not beat it'})"
                     for k, v in t.items()) or "no probe"


