"""Scale of η's coefficients for the synthetic cohort, chosen on development seeds only.

Two factors: m multiplies the clinical coefficients (HPV, age, pack-years, ECOG: ``ETA_GROUPS["clinical"]``),
moving the clinical Cox model's C and the clinical share of var(η) together; k multiplies every coefficient
but the frailty's (whose sd the spec fixes), growing the whole signal with the shares unchanged. For each
(m, k) of the grid and each development seed, the cohort's outcomes are redrawn with the scaled coefficients
(the images, and so the measured volumes, do not depend on η: they come from the cached cohort of the current
config, ``images_config_hash`` in the result), the two CSVs are written to a scratch folder and the harness's coxph runs on them as `bench run
--method coxph --protocol clean` does (5 folds, Harrell C). The rule: among the points whose mean clinical
share stays <= 0.34 (0.01 inside the spec's 0.35) and whose mean coxph C reaches the centre of the spec's
band (0.63), the one with the smallest k, then the smallest m.

    python benchmarks/synthetic_eta_scale.py --seeds 5-9 --out benchmarks/results/synthetic-v3-eta-scale.json

About 4 s per (point, seed) on 2 cores once the cohorts are cached.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # synthetic_targets, beside this script

TARGET = 0.63  # the centre of the spec's 0.60-0.66 band for coxph's Harrell C
MAX_SHARE = 0.34  # clinical share of var(η): the spec's 0.35 less a margin


CLINICAL_FIELDS = ("hpv", "age", "pack_years", "ecog")  # the Coefficients fields of ETA_GROUPS["clinical"]
# The coefficients the scale multiplies: those tuned on seeds 5-9 before the scale was chosen. The generator's
# defaults (bench.data.synthetic.Coefficients) are these times the chosen (m, k); a test keeps them so.
BASE = {"hpv": -1.2, "age": 0.035, "pack_years": 0.01, "ecog": 0.8, "log2_mtv_primary": 0.25,
        "log2_mtv_nodes": 0.2, "node_necrosis": 1.3, "heterogeneity": 2.4, "ct_latent": 2.4, "suvmax_z": 0.1,
        "low_neck_node": 0.2, "frailty_sd": 0.2}


def scaled_coefficients(m: float, k: float):
    from bench.data.synthetic import Coefficients

    return Coefficients(**{f: v if f == "frailty_sd" else v * k * (m if f in CLINICAL_FIELDS else 1.0)
                           for f, v in BASE.items()})


def measure(seed: int, m: float, k: float, scale: str = "quick") -> dict:
    from bench.data import cache_dir
    from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, GROUNDTRUTH_FILE
    from bench.data.synthetic import ETA_GROUPS, _draw_cohort, _outcomes, default_path, generate, scale_config
    from bench.metrics import cindex_harrell
    from synthetic_targets import _harness_coxph

    cfg = scale_config(scale)
    root = generate(default_path(cache_dir() / "datasets", scale, seed), cfg, seed, progress=False)
    measured = pd.read_csv(root / GROUNDTRUTH_FILE)[["PatientID", "mtv_primary_cc", "mtv_nodes_cc"]]
    cfg_k = replace(cfg, coefficients=scaled_coefficients(m, k))
    pats, centres = _draw_cohort(cfg_k, seed)
    clinical, endpoint, truth = _outcomes(cfg_k, seed, pats, centres, measured)
    with tempfile.TemporaryDirectory() as tmp:
        clinical.to_csv(Path(tmp) / CLINICAL_FILE, index=False)
        endpoint.to_csv(Path(tmp) / ENDPOINT_FILE, index=False)
        folds = _harness_coxph(scale, f"hecktor2022:{tmp}")
    t, e = endpoint.RFS.to_numpy(float), endpoint.Relapse.to_numpy(bool)
    var = truth[[f"eta_{k}" for ks in ETA_GROUPS.values() for k in ks]].var(ddof=1)
    share = float(sum(var[f"eta_{k}"] for k in ETA_GROUPS["clinical"]) / var.sum())
    return {"seed": seed, "m": m, "k": k, "coxph_harrell": float(np.mean(folds)), "coxph_harrell_folds": folds,
            "oracle_c": cindex_harrell(t, e, truth.eta.to_numpy()), "share_clinical": share}


def main(argv=None) -> int:
    from synthetic_targets import _seeds

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="5-9")
    ap.add_argument("--clinical", default="1,1.1,1.15", help="values of m (clinical coefficients)")
    ap.add_argument("--all", default="1,1.1,1.2,1.3", help="values of k (every coefficient)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if set(_seeds(a.seeds)) & set(range(5)):
        ap.error("seeds 0-4 are the benchmark's: the scale is chosen on development seeds only")
    points = [(float(m), float(k)) for k in a.all.split(",") for m in a.clinical.split(",")]
    rows = [measure(seed, m, k) for m, k in points for seed in _seeds(a.seeds)]
    table = []
    for m, k in points:
        mine = [r for r in rows if (r["m"], r["k"]) == (m, k)]
        table.append({"m": m, "k": k, **{key: float(np.mean([r[key] for r in mine]))
                                         for key in ("coxph_harrell", "share_clinical", "oracle_c")}})
    ok = [p for p in table if p["coxph_harrell"] >= TARGET and p["share_clinical"] <= MAX_SHARE]
    chosen = min(ok, key=lambda p: (p["k"], p["m"])) if ok else None
    from bench.data.synthetic import GENERATOR_VERSION, scale_config

    result = {"seeds": _seeds(a.seeds), "base": BASE, "generator_version": GENERATOR_VERSION,
              "images_config_hash": scale_config("quick").hash(), "target": TARGET, "max_share": MAX_SHARE, "points": table,
              "chosen": chosen and {"m": chosen["m"], "k": chosen["k"]}, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    for p in table:
        print(f"m {p['m']:<5g} k {p['k']:<5g} coxph {p['coxph_harrell']:.3f}  clinical share {p['share_clinical']:.3f}  "
              f"oracle {p['oracle_c']:.3f}")
    print("chosen:", result["chosen"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
