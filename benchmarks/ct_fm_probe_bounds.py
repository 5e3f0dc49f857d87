"""CT-FM at quick scale: what can a linear probe find in the synthetic CT at all? Bounds for the encoder probe.

The pretraining card's probe (``proposed.fm_encoders.probe``) asks whether ridge regression on the frozen, pooled
CT-FM embedding predicts the corpus's tumour traits (log tumour volume, true log-hazard η, necrosis) better than
on the randomly initialised encoder. At quick scale it does not.
This script measures, on the same corpus (the external ``synthetic:quick:<corpus_seed>`` cohort), the same
pipeline box and the same probe:

- ``histogram``: the probe on a 40-bin intensity histogram of the box in a HU window (no learning): is the
  information in the voxels at all, and how wide must the intensity resolution be?
- ``random_init``: the probe on the random encoder's pooled embedding (the card's control).
- ``supervised``: an upper bound for any pretraining: the same encoder trained *with labels* (mean-squared error
  of log tumour volume from the pooled embedding, Adam, batch 16) on half A of halving 0, then the probe fitted
  on the frozen features of half A and scored on half B; printed every ``--every`` steps.

    OMP_NUM_THREADS=2 python benchmarks/ct_fm_probe_bounds.py --out ct_fm_bounds.json

The committed result is ``benchmarks/results/cpu-2026-12-01-ct-fm-bounds.json``; the README quotes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def histogram_features(x: np.ndarray, fm_window, window, bins: int = 40) -> np.ndarray:
    """(n, bins) voxel counts of each box (``x``: encoder inputs, the FM window mapped to 0…1) in the HU
    ``window``."""
    lo, hi = fm_window
    hu = x.reshape(len(x), -1) * (hi - lo) + lo
    return np.stack([np.histogram(v, bins=bins, range=tuple(window))[0] for v in hu]).astype(float)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600, help="supervised training steps")
    ap.add_argument("--every", type=int, default=150, help="probe the supervised encoder every this many steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scale", default="quick", help="encoder and corpus scale (smoke: the test's)")
    ap.add_argument("--init-filters", type=int, default=None, help="encoder width (default: the quick config's)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    import torch
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    from bench.data import cache_dir
    from proposed import fm_encoders as F

    cfg = F.encoder_config("ct-fm", a.scale)
    if a.init_filters:
        cfg = cfg | {"init_filters": a.init_filters}
    corpus = F.corpus(a.scale, cfg, True)
    data = F.EncoderImages("ct-fm", F.unlabelled(corpus), cfg, cache_dir(), progress=True)
    x = torch.stack([data[i] for i in range(len(data))])
    targets = F.probe_targets(corpus.groundtruth().loc[data.ids])
    out = {"scale": a.scale, "corpus": corpus.name, "patients": len(data), "config": cfg, "probe": "held-out R², mean ± sd over "
           f"{F.PROBE_SPLITS} random halvings (supervised: halving 0 only)", "histogram": {}}

    def probe_all(features) -> dict:
        r = {k: np.array([F.probe_r2(features, y, seed=s) for s in range(F.PROBE_SPLITS)]) for k, y in targets.items()}
        return {k: [round(float(v.mean()), 4), round(float(v.std()), 4)] for k, v in r.items()}

    for label, window in (("fm_window", cfg["ct_window"]), ("soft_tissue", [-200.0, 300.0]),
                          ("narrow", [-50.0, 150.0])):
        out["histogram"][f"{label} {window[0]:g}…{window[1]:g} HU"] = probe_all(
            histogram_features(x.numpy(), cfg["ct_window"], window))
    random_init = F.load_encoder("ct-fm", cfg, None)
    out["random_init"] = probe_all(F.embed(random_init, data))
    print(json.dumps(out, indent=1, ensure_ascii=False), flush=True)

    y_all = targets["log_mtv"]
    idx = np.random.default_rng(0).permutation(len(x))  # halving 0 of probe_r2
    half_a, half_b = idx[: len(idx) // 2], idx[len(idx) // 2:]
    y = torch.tensor((y_all - y_all[half_a].mean()) / y_all[half_a].std(), dtype=torch.float32)
    enc = F.load_encoder("ct-fm", cfg, None).train()  # torch seed 0
    head = nn.Linear(enc.dim, 1)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=a.lr)
    rng = np.random.default_rng(0)

    def probe_frozen() -> dict:
        f = F.embed(enc, data)
        enc.train()
        m = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(f[half_a], y_all[half_a])
        return {"train_r2": round(float(m.score(f[half_a], y_all[half_a])), 4),
                "held_out_r2": round(float(m.score(f[half_b], y_all[half_b])), 4)}

    t0 = time.perf_counter()
    out["supervised"] = {"0": probe_frozen()}
    for step in range(1, a.steps + 1):
        j = rng.choice(half_a, min(16, len(half_a)), replace=False)
        loss = ((head(enc(x[j])).squeeze(1) - y[j]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.every == 0 or step == a.steps:
            out["supervised"][str(step)] = probe_frozen() | {"seconds": round(time.perf_counter() - t0)}
            print("supervised", step, out["supervised"][str(step)], flush=True)
    a.out.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
