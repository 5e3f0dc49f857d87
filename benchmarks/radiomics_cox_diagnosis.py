"""Why a corruption does or does not move radiomics-cox: what its fitted model reads, and what a corruption does
to that, on a development cohort (seed 5 by default), never on the benchmark's test folds.

radiomics-cox (quick config) is fitted on one half of the cohort's patients; on the other half, clean and under
each protocol given, the script reports

- the model's linear predictor: Spearman ρ between clean and corrupted, and Harrell's C (clean and corrupted);
- its parts: the share of the clean linear predictor's variance carried by CT intensity/texture, PET
  intensity/texture, shape and clinical inputs, and each part's ρ clean ↔ corrupted;
- every selected feature: its coefficient, ρ with the latent traits h (PET) and g (CT) clean and corrupted, and
  ρ clean ↔ corrupted;
- the suite calibration's proxies (SUV CoV, CT texture) on the same patients, for comparison with what the
  model reads.

    python benchmarks/radiomics_cox_diagnosis.py --seed 5 --out benchmarks/results/radiomics-cox-diagnosis.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROTOCOLS = ("ct-noise-s1", "ct-noise-s2", "ct-noise-s3", "ct-noise-s4", "ct-noise-s5", "pet-noise-s1",
             "pet-noise-s3", "pet-noise-s5", "misregistration-s1", "misregistration-s3", "misregistration-s5")


def _rho(a, b) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None
    return round(float(spearmanr(a[ok], b[ok])[0]), 3)


def _group(name: str) -> str:
    if name.startswith("clinical:"):
        return "clinical"
    feature = name.split(":", 1)[1]
    if "_shape_" in feature or feature.endswith("_present"):
        return "shape"
    return "ct" if feature.startswith("ct_") else "pet" if feature.startswith("pet_") else "other"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=5, help="development cohort seed (not 0, the benchmark's)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "radiomics-cox-diagnosis.json")
    args = ap.parse_args(argv)
    if args.seed == 0:
        ap.error("seed 0 is the benchmark cohort; diagnose on a development seed (5-9)")

    from baselines.radiomics_cox import RadiomicsCox
    from bench.config import resolve_config
    from bench.corruptions import corrupted_files
    from bench.data import cache_dir, synthetic_name
    from bench.data.hecktor import GROUNDTRUTH_FILE, load_hecktor
    from bench.data.pipeline import process_images
    from bench.data.proxies import QUICK_PIPELINE, proxies_of_box, read_images
    from bench.data.synthetic import default_path, generate, scale_config
    from bench.metrics import cindex_harrell
    from bench.method import RunContext
    from bench.protocols import load_protocol

    t0 = time.perf_counter()
    root = default_path(cache_dir() / "datasets", "quick", args.seed)
    generate(root, scale_config("quick"), args.seed, progress=True)
    ds = load_hecktor(root, name=synthetic_name("quick", args.seed))
    ids = list(ds.ids)
    train, test = ids[0::2], ids[1::2]
    truth = pd.read_csv(root / GROUNDTRUTH_FILE, dtype={"PatientID": str}).set_index("PatientID").loc[test]
    out = ds.outcomes.loc[test]

    method = RadiomicsCox(RunContext(config=resolve_config("radiomics-cox", RadiomicsCox, "quick"), scale="quick",
                                     cache_dir=cache_dir(), progress=True, method_name="radiomics-cox"))
    method.fit(ds.cohort(train, with_outcomes=True, name="train"), ds.cohort([], with_outcomes=True, name="val"))
    names = method.inputs_.names_
    coef = np.asarray(method.model_.coef_)[:, 0]
    chosen = [i for i, c in enumerate(coef) if c != 0]

    def inputs(replace=None, name="test"):
        return method.inputs_.transform(ds.cohort(test, with_outcomes=False, name=name, replace_images=replace))

    def proxies(files):
        rows = {}
        for pid in test:
            f = files.get(pid, ds.images[pid])
            ct, pet, mask = read_images(f)
            rows[pid] = proxies_of_box(process_images(ct, pet, mask, QUICK_PIPELINE), QUICK_PIPELINE)
        return pd.DataFrame.from_dict(rows, orient="index")

    x_clean = inputs()
    lp_clean = x_clean @ coef
    groups = sorted({_group(names[i]) for i in chosen})
    part = {g: x_clean[:, [i for i in chosen if _group(names[i]) == g]] @ coef[[i for i in chosen if _group(names[i]) == g]]
            for g in groups}
    px_clean = proxies({})
    result = {
        "what": __doc__.split("\n\n")[0], "dataset": ds.name, "train": len(train), "test": len(test),
        "clean": {"harrell_c": round(float(cindex_harrell(out["time"], out["event"], lp_clean)), 3),
                  "variance_share": {g: round(float(np.var(part[g]) / np.var(lp_clean)), 3) for g in groups},
                  "rho_part_h": {g: _rho(part[g], truth["h"]) for g in groups},
                  "rho_part_g": {g: _rho(part[g], truth["g"]) for g in groups},
                  "rho_suv_cov_h": _rho(px_clean["suv_cov"], truth["h"]),
                  "rho_ct_texture_g": _rho(px_clean["ct_texture_hu"], truth["g"])},
        "features": [{"name": names[i], "group": _group(names[i]), "coef": round(float(coef[i]), 4),
                      "rho_h": _rho(x_clean[:, i], truth["h"]), "rho_g": _rho(x_clean[:, i], truth["g"])}
                     for i in sorted(chosen, key=lambda i: -abs(coef[i]))],
        "protocols": {},
    }
    for name in args.protocols.split(","):
        corruption = load_protocol(name).corruption
        files = corrupted_files(ds, corruption, test, cache_dir() / "corrupted")
        x = inputs(files, name)
        lp = x @ coef
        px = proxies(files)
        entry = {
            "harrell_c": round(float(cindex_harrell(out["time"], out["event"], lp)), 3),
            "rho_lp_clean": _rho(lp_clean, lp),
            "rho_part_clean": {g: _rho(part[g], x[:, [i for i in chosen if _group(names[i]) == g]]
                                       @ coef[[i for i in chosen if _group(names[i]) == g]]) for g in groups},
            "rho_suv_cov_clean": _rho(px_clean["suv_cov"], px["suv_cov"]),
            "rho_ct_texture_clean": _rho(px_clean["ct_texture_hu"], px["ct_texture_hu"]),
            "features": {names[i]: {"rho_clean": _rho(x_clean[:, i], x[:, i]), "rho_h": _rho(x[:, i], truth["h"]),
                                    "rho_g": _rho(x[:, i], truth["g"])} for i in chosen if _group(names[i]) in ("ct", "pet")},
        }
        result["protocols"][name] = entry
        print(f"{name:20s} C {entry['harrell_c']:.3f} (clean {result['clean']['harrell_c']:.3f})  "
              f"ρ LP {entry['rho_lp_clean']}  parts {entry['rho_part_clean']}", flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["clean"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
