"""The synthetic cohort's targets (../shared/specs/synthetic-cohort.md, "Version 3"), measured over seeds.

For each seed: generate the cohort (cached under $BENCH_CACHE_DIR like `bench run` does; timed when it is
generated here), read every patient through the quick image pipeline clean and under severity 5 of the
matching noise (bench.data.proxies), run the clinical coxph exactly as the harness does (`bench run --method
coxph --protocol clean`, 5 folds, Harrell C), and compute each target from ground truth and images alone —
no benchmarked image method takes part. Writes one JSON: per seed, the mean over seeds, each target with its
bound and whether the mean meets it.

    python benchmarks/synthetic_targets.py --seeds 5-9 --calibrate --out benchmarks/results/synthetic-v3-calibration.json
    python benchmarks/synthetic_targets.py --seeds 0-4 --out benchmarks/results/synthetic-v3-targets.json
    python benchmarks/synthetic_targets.py --seeds 0 --pictures docs/images

Development seeds 5–9 calibrate (``--calibrate`` also scans the PET-noise count level of severity 5 and
reports the largest one whose mean h-proxy ρ stays <= 0.25, a margin under the target's 0.3); seeds 0–4 are
only asserted. Resumable: per-seed results are kept beside the output until the run completes (and reused
only by a run of the same generator, config, proxy definitions and options). Every seed records its
generation and total seconds, the worker count and the machine's CPU count.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data.proxies import SEVERITY5, SYNTH_TARGETS, VISIBILITY_CHECKS, definition, meets, patient_proxies  # noqa: E402,E501
from bench.hashing import content_hash  # noqa: E402

CALIBRATION_COUNTS = (1.0, 0.5, 0.3, 0.25, 0.2, 0.15, 0.1)  # PET counts per unit SUV scanned by --calibrate
CALIBRATION_MARGIN = 0.25  # severity 5 is the least noise whose mean ρ(SUV CoV, h) on seeds 5-9 is <= this


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _proxy_job(args):
    pid, files, corruptions, key = args
    return {"PatientID": pid, **patient_proxies(files, corruptions=corruptions, key=key)}


def _auc(score: pd.Series, label: pd.Series) -> float:
    """AUROC of a proxy for a binary latent, over patients where the proxy exists (e.g. those with a GTVn)."""
    from sklearn.metrics import roc_auc_score

    ok = score.notna().to_numpy()
    y = label.to_numpy()[ok]
    return float(roc_auc_score(y, score.to_numpy()[ok])) if 0 < y.sum() < len(y) else float("nan")


def _harness_coxph(scale: str, dataset: str) -> list[float]:
    """coxph under `clean` as `bench run` runs it on ``dataset``: Harrell C per fold."""
    bench = str(Path(sys.executable).with_name("bench"))
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([bench, "-q", "run", "--method", "coxph", "--protocol", "clean", "--scale", scale,
                              "--dataset", dataset, "--results", tmp], capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"bench run coxph failed on {dataset}:\n{run.stderr}")
        rows = json.loads(subprocess.run([bench, "results", "--results", tmp, "--format", "json"],
                                         capture_output=True, text=True, check=True).stdout)
    return [float(r["cindex_harrell"]) for r in sorted(rows, key=lambda r: r["fold"])]


def measure_seed(scale: str, seed: int, *, pet_counts=(SEVERITY5["pet-noise"],), workers: int = 2,
                 coxph: bool = True, progress: bool = True, frames: dict | None = None) -> dict:
    """Every quantity of the spec's table for one seed (and the ρ under each PET count level asked);
    ``frames``, when given, receives the per-patient proxies and ground truth."""
    from scipy.stats import spearmanr

    from bench.data import cache_dir, synthetic_name
    from bench.data.hecktor import GROUNDTRUTH_FILE, load_hecktor
    from bench.data.synthetic import ETA_GROUPS, default_path, generate, is_complete, scale_config
    from bench.metrics import cindex_harrell
    from bench.parallel import progress_map

    cfg = scale_config(scale)
    root = default_path(cache_dir() / "datasets", scale, seed)
    t0 = time.perf_counter()
    fresh = not is_complete(root, cfg, seed)
    generate(root, cfg, seed, workers=workers, progress=progress)
    gen_s = time.perf_counter() - t0 if fresh else None
    ds = load_hecktor(root, name=synthetic_name(scale, seed))
    truth = pd.read_csv(root / GROUNDTRUTH_FILE).set_index("PatientID").loc[list(ds.ids)]
    corruptions = {f"pet{c:g}": ("pet-noise", float(c)) for c in pet_counts}
    corruptions["ct5"] = ("ct-noise", SEVERITY5["ct-noise"])
    rows: list[dict] = []
    progress_map(_proxy_job, [(pid, ds.images[pid], corruptions, f"{scale}:{seed}:{pid}") for pid in ds.ids],
                 rows.append, desc=f"proxies seed {seed}", workers=workers, progress=progress)
    px = pd.DataFrame(rows).set_index("PatientID").loc[list(ds.ids)]
    t = ds.outcomes.loc[list(ds.ids), "time"].to_numpy(float)
    e = ds.outcomes.loc[list(ds.ids), "event"].to_numpy(bool)
    eta = truth["eta"].to_numpy(float)
    fine = sum(truth[f"eta_{k}"] for k in ETA_GROUPS["fine"]).to_numpy(float)
    terms = truth[[f"eta_{k}" for ks in ETA_GROUPS.values() for k in ks]]
    var = terms.var(ddof=1)
    shares = {g: float(sum(var[f"eta_{k}"] for k in ks) / var.sum()) for g, ks in ETA_GROUPS.items()}
    rho = lambda a, b: float(spearmanr(a, b, nan_policy="omit")[0])  # noqa: E731
    centres = json.loads((root / "groundtruth" / "centres.json").read_text())
    c5 = f"pet{SEVERITY5['pet-noise']:g}"
    out = {
        "seed": seed, "n": len(ds.ids), "events": int(e.sum()), "generation_seconds": gen_s, "workers": workers,
        "cpu_count": os.cpu_count(),
        "oracle_c": cindex_harrell(t, e, eta),
        "fine_drop": cindex_harrell(t, e, eta) - cindex_harrell(t, e, eta - fine + fine.mean()),
        "pet_volume_c": cindex_harrell(t, e, px["pet_volume_cc"].to_numpy(float)),
        "rho_suv_cov_h": rho(px["suv_cov"], truth["h"]),
        "rho_ct_texture_g": rho(px["ct_texture_hu"], truth["g"]),
        "rho_suv_cov_h_s5": rho(px[f"suv_cov@{c5}"], truth["h"]),
        "rho_ct_texture_g_s5": rho(px["ct_texture_hu@ct5"], truth["g"]),
        "rho_pet_volume_clean_s5": rho(px["pet_volume_cc"], px[f"pet_volume_cc@{c5}"]),
        "rho_h_g": abs(rho(truth["h"], truth["g"])),
        "rho_suv_cov_g": rho(px["suv_cov"], truth["g"]), "rho_ct_texture_h": rho(px["ct_texture_hu"], truth["h"]),
        "rho_pet_volume_true_volume": rho(px["pet_volume_cc"], truth["mtv_primary_cc"]),
        "auc_necrosis_pet": _auc(px["gtvn_cold_fraction"], truth["node_necrosis"]),
        "auc_necrosis_ct": _auc(px["gtvn_hypodense_fraction"], truth["node_necrosis"]),
        "frailty_sd": float(np.std([c["frailty"] for c in centres.values()], ddof=1)),
        "share_clinical": shares["clinical"], "share_volume": shares["volume"], "share_fine": shares["fine"],
        "share_other": shares["other"], "node_necrosis_rate": float(truth["node_necrosis"].mean()),
        "pet_counts_scan": {f"{c:g}": {"rho_suv_cov_h": rho(px[f"suv_cov@pet{c:g}"], truth["h"]),
                                       "rho_pet_volume_clean": rho(px["pet_volume_cc"], px[f"pet_volume_cc@pet{c:g}"])}
                            for c in pet_counts},
    }
    if coxph:
        folds = _harness_coxph(scale, f"synthetic:{scale}:{seed}")
        out |= {"coxph_harrell_folds": folds, "coxph_harrell": float(np.mean(folds))}
    if frames is not None:
        frames["proxies"], frames["truth"], frames["root"] = px, truth, root
    out["seconds"] = time.perf_counter() - t0
    return out


def draw_pictures(scale: str, seed: int, out_dir: Path, *, workers: int = 2) -> list[Path]:
    """docs pictures: `bench data show` of one patient per scanner archetype — the one that shows most (a
    necrotic node if any, then the largest h + g), named with its h, g and necrosis in the title — and each
    latent against its image proxy (clean and at severity 5 of the matching noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    from bench.data.hecktor import load_hecktor
    from bench.data.show import show_patient

    frames: dict = {}
    measure_seed(scale, seed, workers=workers, coxph=False, progress=False, frames=frames)
    px, truth, root = frames["proxies"], frames["truth"], frames["root"]
    ds = load_hecktor(root)
    centres = json.loads((root / "groundtruth" / "centres.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for arch in sorted({c["archetype"] for c in centres.values()}):
        # the patient of this archetype's centres that shows most: a necrotic node if any, then the largest h + g
        mine = truth[[ds.centres[p] in centres and centres[ds.centres[p]]["archetype"] == arch for p in truth.index]]
        pid = (mine.node_necrosis * 10 + mine.h + mine.g).idxmax()
        c = centres[ds.centres[pid]]
        written.append(show_patient(ds.images[pid], f"{pid} — {arch} PET, {'contrast' if c['contrast'] else 'no contrast'} "
                                    f"CT; h {mine.h[pid]:.2f}, g {mine.g[pid]:.2f}, "
                                    f"{'a necrotic node' if mine.node_necrosis[pid] else 'no necrotic node'}",
                                    out_dir / f"synthetic-v3-{arch}.png"))
    c5 = f"pet{SEVERITY5['pet-noise']:g}"
    panels = [("h", "suv_cov", f"suv_cov@{c5}", "PET heterogeneity h", "SUV CoV in GTVp",
               f"PET noise s5 ({SEVERITY5['pet-noise']:g} counts/SUV)"),
              ("g", "ct_texture_hu", "ct_texture_hu@ct5", "CT latent g", "CT robust sd in GTVp (HU)",
               f"CT noise s5 (σ {SEVERITY5['ct-noise']:g} × range)"),
              ("mtv_primary_cc", "pet_volume_cc", f"pet_volume_cc@{c5}", "true GTVp volume (cc)",
               "PET volume SUV ≥ 2.5 (cc)", "PET noise s5")]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (lat, clean, noisy, xl, yl, nl) in zip(axes, panels):
        ax.scatter(truth[lat], px[clean], s=6, alpha=0.6, label=f"clean (ρ {spearmanr(truth[lat], px[clean])[0]:.2f})")
        ax.scatter(truth[lat], px[noisy], s=6, alpha=0.4, label=f"{nl} (ρ {spearmanr(truth[lat], px[noisy])[0]:.2f})")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        if lat == "mtv_primary_cc":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax = axes[3]
    nodes = px["gtvn_cold_fraction"].notna()
    necrotic = truth["node_necrosis"].astype(bool)
    data = [px.loc[nodes & ~necrotic, "gtvn_cold_fraction"], px.loc[nodes & necrotic, "gtvn_cold_fraction"],
            px.loc[nodes & ~necrotic, "gtvn_hypodense_fraction"], px.loc[nodes & necrotic, "gtvn_hypodense_fraction"]]
    ax.boxplot(data, tick_labels=["PET\nno necr.", "PET\nnecrotic", "CT\nno necr.", "CT\nnecrotic"])
    ax.set_ylabel("share of GTVn cold (SUV<1.5) / hypodense (<25 HU)")
    ax.set_title("node necrosis", fontsize=9)
    fig.suptitle(f"synthetic cohort v3, {scale} seed {seed}: each latent against its image proxy on the quick "
                 f"pipeline (32³ at 3 mm)", fontsize=10)
    fig.tight_layout()
    path = out_dir / "synthetic-v3-latents.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return written + [path]


def summarise(per_seed: list[dict]) -> dict:
    keys = [k for k in per_seed[0] if isinstance(per_seed[0][k], (int, float)) and k not in ("seed",)
            and all(isinstance(r.get(k), (int, float)) for r in per_seed)]
    mean = {k: float(np.mean([r[k] for r in per_seed])) for k in keys}
    checks = {}
    for k, (op, bound) in (SYNTH_TARGETS | VISIBILITY_CHECKS).items():
        v = mean.get(k)
        checks[k] = {"target": [op, bound], "mean": v, "met": meets(op, bound, v)}
    return {"mean": mean, "targets": checks, "all_met": all(c["met"] for c in checks.values())}


LABELS = {
    "oracle_c": "C(η), the oracle (Harrell, all patients)",
    "fine_drop": "C(η) − C(η with h, g, necrosis at their means)",
    "pet_volume_c": "unfitted PET-volume statistic, C",
    "coxph_harrell": "coxph on the clinical table, 5-fold Harrell C",
    "rho_suv_cov_h": "ρ(SUV CoV in GTVp, h), clean",
    "rho_ct_texture_g": "ρ(CT texture in GTVp, g), clean",
    "rho_suv_cov_h_s5": "ρ(SUV CoV in GTVp, h), PET noise severity 5",
    "rho_ct_texture_g_s5": "ρ(CT texture in GTVp, g), CT noise severity 5",
    "rho_pet_volume_clean_s5": "ρ(PET-volume statistic clean, PET noise severity 5)",
    "frailty_sd": "realised centre frailty sd",
    "rho_h_g": "\\|ρ(h, g)\\|",
    "share_fine": "share of var(η): h, g, necrosis",
    "share_clinical": "share of var(η): clinical",
    "share_volume": "share of var(η): volumes",
    "auc_necrosis_pet": "AUROC of node necrosis from the cold share of GTVn (ours)",
    "auc_necrosis_ct": "AUROC of node necrosis from the hypodense share of GTVn (ours)",
}


def markdown_table(targets: dict, calibration: dict) -> str:
    """The README's table: each target, its bound, the mean over the benchmark seeds and over the
    development seeds (from the two result files)."""
    def bound(op, b):
        return f"{b[0]:g}–{b[1]:g}" if op == "in" else f"{op} {b:g}".replace(">=", "≥").replace("<=", "≤").replace("==", "=")

    lines = ["| quantity | target | seeds 0–4 | seeds 5–9 (calibration) |", "|---|---|---|---|"]
    for key, (op, b) in (SYNTH_TARGETS | VISIBILITY_CHECKS).items():
        lines.append(f"| {LABELS[key]} | {bound(op, b)} | {targets['targets'][key]['mean']:.3f} | "
                     f"{calibration['targets'][key]['mean']:.3f} |")
    return "\n".join(lines)


def finish(per_seed: list[dict], scale: str, *, calibrate: bool) -> dict:
    """The result file's content. With ``calibrate``: choose PET severity 5 from the scan, and report the
    severity-5 quantities at the chosen level."""
    severity5 = dict(SEVERITY5)
    calibration = None
    if calibrate:
        levels = list(per_seed[0]["pet_counts_scan"])
        scan = {c: float(np.mean([r["pet_counts_scan"][c]["rho_suv_cov_h"] for r in per_seed])) for c in levels}
        vol = {c: float(np.mean([r["pet_counts_scan"][c]["rho_pet_volume_clean"] for r in per_seed])) for c in levels}
        ok = [c for c in levels if scan[c] <= CALIBRATION_MARGIN]
        chosen = max(ok, key=float) if ok else None
        calibration = {"rho_suv_cov_h_by_counts_per_suv": scan, "rho_pet_volume_clean_by_counts_per_suv": vol,
                       "margin": CALIBRATION_MARGIN, "chosen": float(chosen) if chosen else None}
        if chosen:
            severity5["pet-noise"] = float(chosen)
            for r in per_seed:
                r["rho_suv_cov_h_s5"] = r["pet_counts_scan"][chosen]["rho_suv_cov_h"]
                r["rho_pet_volume_clean_s5"] = r["pet_counts_scan"][chosen]["rho_pet_volume_clean"]
    result = {"scale": scale, "seeds": [r["seed"] for r in per_seed], **provenance(scale), "severity5": severity5,
              **summarise(per_seed), "per_seed": per_seed}
    if calibration:
        result["pet_noise_calibration"] = calibration
    return result


def provenance(scale: str) -> dict:
    """What was measured: generator version, config hash and the proxies' definition hash."""
    from bench.data.synthetic import GENERATOR_VERSION, scale_config

    return {"generator_version": GENERATOR_VERSION, "config_hash": scale_config(scale).hash(),
            "proxies_hash": content_hash(definition(), 12)}


def run_stamp(scale: str, pet_counts, coxph: bool) -> dict:
    """What a per-seed row depends on: a kept row is reused only under the same stamp."""
    return {"scale": scale, **provenance(scale), "pet_counts": [float(c) for c in pet_counts], "coxph": coxph}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-4", help="e.g. 0-4 (assert) or 5-9 (calibrate)")
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--calibrate", action="store_true", help="also scan PET-noise count levels for severity 5")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-coxph", action="store_true", help="skip the clinical coxph runs (its target is then absent)")
    ap.add_argument("--out", type=Path, help="the result JSON (required unless --pictures only)")
    ap.add_argument("--pictures", type=Path, help="write the docs pictures of the first seed to this folder")
    a = ap.parse_args(argv)
    if a.pictures:
        for p in draw_pictures(a.scale, _seeds(a.seeds)[0], a.pictures, workers=a.workers):
            print(p)
        if not a.out:
            return 0
    if not a.out:
        ap.error("--out is required")
    counts = sorted(set(CALIBRATION_COUNTS) | {SEVERITY5["pet-noise"]}, reverse=True) if a.calibrate \
        else (SEVERITY5["pet-noise"],)
    # finished seeds are kept beside the output and reused only by a run that measures the same thing
    stamp = run_stamp(a.scale, counts, not a.no_coxph)
    partial = a.out.with_suffix(".partial.json")
    saved = json.loads(partial.read_text()) if partial.is_file() else {}
    done = {r["seed"]: r for r in saved.get("rows", [])} if saved.get("stamp") == stamp else {}
    for seed in _seeds(a.seeds):
        if seed in done:
            continue
        done[seed] = measure_seed(a.scale, seed, pet_counts=counts, workers=a.workers, coxph=not a.no_coxph)
        partial.write_text(json.dumps({"stamp": stamp, "rows": list(done.values())}, indent=1))
        print(json.dumps({k: v for k, v in done[seed].items() if not isinstance(v, (dict, list))}), flush=True)
    result = finish([done[s] for s in _seeds(a.seeds)], a.scale, calibrate=a.calibrate)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    for k, c in result["targets"].items():
        print(f"{k:28s} {c['target'][0]} {c['target'][1]!s:12s} mean {c['mean'] if c['mean'] is None else round(c['mean'], 3)!s:8s} "
              f"{'met' if c['met'] else 'NOT MET'}")
    if a.calibrate:
        print("PET severity 5 (counts per SUV) by mean ρ(SUV CoV, h):", result["pet_noise_calibration"])
        if result["severity5"] != SEVERITY5:
            print(f"set bench.data.proxies.SEVERITY5 to {result['severity5']}")
    return 0 if result["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
