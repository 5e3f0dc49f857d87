"""Time of one radiomics pass (one patient, one modality, the quick settings) with and without PyRadiomics'
diagnostics (``additionalInfo``), on patients of the quick synthetic cohort, and whether the features agree.

The diagnostics (image and mask hashes, connected components, spacing checks) are dropped from every table, so
``bench.features.radiomics`` builds its extractor without them. This script measures what that saves and checks
that every feature is bit-identical:

    python benchmarks/radiomics_speed.py --patients 20 --out benchmarks/results/radiomics-speed.json

Single process (no pool), so the per-pass time is what one core does; a table uses one process per core.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_passes(ds, ids, settings, diagnostics: bool) -> tuple[dict, float]:
    import bench.features.radiomics as radiomics

    built = radiomics._extractor

    def extractor(*args):
        e = built(*args)
        e.settings["additionalInfo"] = diagnostics
        return e

    radiomics._extractor = extractor
    try:
        out, t0 = {}, time.perf_counter()
        for pid in ids:
            for modality in settings.modalities:
                out[f"{pid}/{modality}"] = radiomics.extract_modality(ds.images[pid], settings, modality)
        return out, (time.perf_counter() - t0) / (len(ids) * len(settings.modalities))
    finally:
        radiomics._extractor = built


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2, help="alternating timed rounds per setting (best kept)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "radiomics-speed.json")
    args = ap.parse_args(argv)

    from baselines.tabular import RADIOMICS_QUICK
    from bench.data import cache_dir, synthetic_name
    from bench.data.hecktor import load_hecktor
    from bench.data.synthetic import default_path, generate, scale_config
    from bench.features.radiomics import RadiomicsSettings

    root = default_path(cache_dir() / "datasets", "quick", 0)
    generate(root, scale_config("quick"), 0, progress=True)
    ds = load_hecktor(root, name=synthetic_name("quick", 0))
    ids = list(ds.ids)[: args.patients]
    settings = RadiomicsSettings.from_config(RADIOMICS_QUICK)
    best = {True: float("inf"), False: float("inf")}
    features = {}
    for _ in range(args.repeats):
        for diagnostics in (True, False):
            features[diagnostics], seconds = timed_passes(ds, ids, settings, diagnostics)
            best[diagnostics] = min(best[diagnostics], seconds)
    identical = json.dumps(features[True], sort_keys=True) == json.dumps(features[False], sort_keys=True)
    result = {
        "what": "seconds per radiomics pass (one patient, one modality), quick settings, one process",
        "dataset": ds.name, "patients": len(ids), "modalities": list(settings.modalities),
        "repeats": args.repeats, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "with_diagnostics_s": round(best[True], 4), "without_diagnostics_s": round(best[False], 4),
        "speed_up": round(best[True] / best[False], 2), "features_identical": identical,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
