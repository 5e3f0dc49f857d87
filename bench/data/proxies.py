"""Image proxies of the synthetic cohort's latent traits, measured on what the quick deep methods see.

Each proxy reads one patient through the quick image pipeline (32³ voxels at 3 mm, centred on the PET hot
region) with the reference GTVp resampled onto that box, so a number here is a number about the inputs a
benchmarked image method gets, not about the generator's internals:

- ``pet_volume_cc`` — the unfitted PET-volume statistic: voxels with SUV >= 2.5 that are face-connected to
  the hottest voxel of the box (the first in raster order among ties at the pipeline's SUV ceiling), in cc
  (no mask read).
- ``suv_cov`` — the proxy of PET heterogeneity h: sd / mean of SUV inside the reference GTVp.
- ``ct_texture_hu`` — the proxy of the CT latent g: the robust sd (interquartile range / 1.349) of HU inside
  the reference GTVp. Robust, because the GTVp borders air and fat, and a few partial-volume voxels there
  would otherwise outweigh the tumour's own texture.
- ``gtvn_cold_fraction`` / ``gtvn_hypodense_fraction`` — proxies of node necrosis: the share of the reference
  GTVn below SUV 1.5 on PET and below 25 HU on CT.
- ``pet_tumour_cnr`` / ``ct_tumour_cnr`` — the primary tumour's contrast-to-noise on each modality against a
  two-voxel shell around it (what a corruption leaves of the tumour's visibility).

``corrupted`` applies the noise corruptions of ``bench.corruptions`` (CT Gaussian σ × range, PET Poisson
at a count level per unit SUV) to the native images first, as a protocol does. ``SYNTH_TARGETS`` is the
spec's table of targets; benchmarks/synthetic_targets.py computes it over seeds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.data.pipeline import PipelineConfig, process_images
from bench.hashing import content_hash

QUICK_PIPELINE = PipelineConfig(spacing_mm=3.0, size=(32, 32, 32))
PET_VOLUME_THRESHOLD_SUV = 2.5
PROXIES_VERSION = "1"  # bump on any change to what a proxy measures: result files record it

# Severity 5 of the two noise corruptions: CT σ = 0.1 × the image's range (RobSurv's "high"); PET counts per
# unit SUV calibrated on development seeds 5-9 (benchmarks/synthetic_targets.py --calibrate; result in
# benchmarks/results/synthetic-v3-calibration.json).
SEVERITY5 = {"ct-noise": 0.1, "pet-noise": 0.15}

# The spec's targets (mean over seeds 0-4 at quick scale), keyed as benchmarks/synthetic_targets.py names them:
# (">=" | "<=" | "==" | "in", bound).
SYNTH_TARGETS = {
    "oracle_c": (">=", 0.80),
    "fine_drop": (">=", 0.08),
    "pet_volume_c": ("<=", 0.62),
    "coxph_harrell": ("in", (0.60, 0.66)),
    "rho_suv_cov_h": (">=", 0.6),
    "rho_ct_texture_g": (">=", 0.6),
    "rho_suv_cov_h_s5": ("<=", 0.3),
    "rho_ct_texture_g_s5": ("<=", 0.3),
    "rho_pet_volume_clean_s5": (">=", 0.8),
    "frailty_sd": ("==", 0.2),
    "rho_h_g": ("<=", 0.3),
    "share_fine": (">=", 0.25),
    "share_clinical": ("in", (0.25, 0.35)),
    "share_volume": ("<=", 0.20),
}


# Checks of the project's own beside the spec's table: node necrosis must be visible on both modalities
# (AUROC of the GTVn cold / hypodense share for the necrosis flag, over patients with a GTVn).
VISIBILITY_CHECKS = {
    "auc_necrosis_pet": (">=", 0.7),
    "auc_necrosis_ct": (">=", 0.7),
}


def definition() -> dict[str, Any]:
    """What the proxies and the severity-5 noise are: result files store its hash, so a changed definition
    makes them stale."""
    return {"version": PROXIES_VERSION, "pipeline": QUICK_PIPELINE.key(), "pet_volume_threshold_suv":
            PET_VOLUME_THRESHOLD_SUV, "severity5": SEVERITY5, "targets": SYNTH_TARGETS, "checks": VISIBILITY_CHECKS}


def meets(op: str, bound, value) -> bool:
    if value is None or value != value:
        return False
    if op == "in":
        return bound[0] <= value <= bound[1]
    return {">=": value >= bound - 1e-12, "<=": value <= bound + 1e-12, "==": abs(value - bound) < 1e-9}[op]


def pet_volume_cc(pet_suv: np.ndarray, spacing_mm: float) -> float:
    from scipy.ndimage import label

    hot = pet_suv >= PET_VOLUME_THRESHOLD_SUV
    if not hot.any():
        return 0.0
    lab, _ = label(hot)
    peak = np.unravel_index(int(np.argmax(pet_suv)), pet_suv.shape)
    return float(np.count_nonzero(lab == lab[peak])) * spacing_mm ** 3 / 1000.0


def suv_cov(pet_suv: np.ndarray, mask: np.ndarray) -> float:
    v = pet_suv[mask == 1].astype(np.float64)
    return float(v.std() / v.mean()) if v.size >= 2 and v.mean() > 0 else float("nan")


def ct_texture_hu(ct_hu: np.ndarray, mask: np.ndarray) -> float:
    v = ct_hu[mask == 1].astype(np.float64)
    if v.size < 4:
        return float("nan")
    q1, q3 = np.percentile(v, [25, 75])
    return float((q3 - q1) / 1.349)


def tumour_cnr(image: np.ndarray, mask: np.ndarray, shell_voxels: int = 2) -> float:
    """Contrast-to-noise of the primary tumour: (mean inside the reference GTVp − mean of a shell of
    ``shell_voxels`` around it, outside every label) / sd of that shell; NaN without both."""
    from scipy.ndimage import binary_dilation

    tumour = mask == 1
    if not tumour.any():
        return float("nan")
    shell = binary_dilation(tumour, iterations=shell_voxels) & (mask == 0)
    bg = image[shell].astype(np.float64)
    if bg.size < 4 or bg.std() == 0:
        return float("nan")
    return float((image[tumour].astype(np.float64).mean() - bg.mean()) / bg.std())


def necrosis_fractions(pet_suv: np.ndarray, ct_hu: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Fractions of the reference GTVn that are cold on PET (SUV < 1.5) and hypodense on CT (< 25 HU);
    NaN without a GTVn."""
    nodes = mask == 2
    if not nodes.any():
        return float("nan"), float("nan")
    return float(np.mean(pet_suv[nodes] < 1.5)), float(np.mean(ct_hu[nodes] < 25.0))


def proxies_of_box(box: dict[str, np.ndarray], cfg: PipelineConfig = QUICK_PIPELINE) -> dict[str, float]:
    """The proxies of one pipeline output (``process``'s dict, with its mask), by name."""
    lo, hi = cfg.ct_window
    ct_hu = box["ct"].astype(np.float64) * (hi - lo) + lo
    pet_suv = box["pet"].astype(np.float64) * cfg.pet_suv_max
    cold, hypodense = necrosis_fractions(pet_suv, ct_hu, box["mask"])
    return {"pet_volume_cc": pet_volume_cc(pet_suv, cfg.spacing_mm), "suv_cov": suv_cov(pet_suv, box["mask"]),
            "ct_texture_hu": ct_texture_hu(ct_hu, box["mask"]), "gtvn_cold_fraction": cold,
            "gtvn_hypodense_fraction": hypodense, "pet_tumour_cnr": tumour_cnr(pet_suv, box["mask"]),
            "ct_tumour_cnr": tumour_cnr(ct_hu, box["mask"])}


def read_images(files):
    import SimpleITK as sitk

    return sitk.ReadImage(str(files.ct)), sitk.ReadImage(str(files.pet)), sitk.ReadImage(str(files.mask))


def corrupted(image, noise: str, amount: float, rng: np.random.Generator):
    """A copy of a SimpleITK image with ``noise`` ('ct-noise': σ × range; 'pet-noise': counts per SUV)."""
    import SimpleITK as sitk

    from bench.corruptions import ct_gaussian, pet_poisson

    arr = sitk.GetArrayFromImage(image)
    fn = {"ct-noise": ct_gaussian, "pet-noise": pet_poisson}[noise]
    out = sitk.GetImageFromArray(fn(arr, amount, rng))
    out.CopyInformation(image)
    return out


def patient_proxies(files, *, corruptions: dict[str, tuple[str, float]] | None = None, key: str = "",
                    cfg: PipelineConfig = QUICK_PIPELINE) -> dict[str, Any]:
    """Proxies of one patient, clean and under each named corruption: ``corruptions`` maps a label to
    (noise, amount); results are keyed ``<proxy>`` (clean) and ``<proxy>@<label>``. The noise realisation
    is drawn from (``key``, label), e.g. key = dataset seed and patient id."""
    ct, pet, mask = read_images(files)
    out = proxies_of_box(process_images(ct, pet, mask, cfg), cfg)
    for name, (noise, amount) in (corruptions or {}).items():
        rng = np.random.default_rng(int(content_hash([key, name], 16), 16))
        c2 = corrupted(ct, noise, amount, rng) if noise == "ct-noise" else ct
        p2 = corrupted(pet, noise, amount, rng) if noise == "pet-noise" else pet
        out |= {f"{k}@{name}": v for k, v in proxies_of_box(process_images(c2, p2, mask, cfg), cfg).items()}
    return out
