"""The embedded default dataset: a synthetic multi-centre head-and-neck PET/CT cohort in the HECKTOR 2022 layout.

Recipe: ../shared/specs/synthetic-cohort.md (its "Version 3" section). A pure function of (config, seed): the
same pair writes the same bytes. Three passes:

1. Cohort level (one process): centres draw a scanner archetype, SUV calibration, CT noise and slice
   thickness, contrast flag, HPV+ rate and a frailty (standardised over the centres to the configured sd);
   patients draw clinical data and latent tumour traits: primary volume and SUVmax, PET heterogeneity h, a
   CT-only latent g (independent of h), and nodes with level, size and necrosis (only a node large enough to
   hold a core of two PSF widths can be necrotic).
2. Patient level (parallel, seeded by (seed, patient id), one random stream per purpose): a crude neck
   (fat, muscle, airway, vertebra, carotids, tonsils, mandible and teeth) and the tumours are drawn on a fine
   "truth" grid in mm. h scales a log-uptake field of 1-2 PSF widths in the primary; g scales an attenuation
   texture field and the fine-scale irregularity of the primary's boundary; necrotic node cores are cold on
   PET and hypodense on CT (with an enhancing rim in contrast centres, where tumour also enhances). PET =
   activity blurred by the archetype's PSF, resampled to its voxel grid, Poisson counts, SUV calibration;
   CT = Hounsfield units resampled to the centre's grid plus Gaussian noise; the label map (1 GTVp, 2 GTVn)
   on the CT grid. The volumes the survival model uses are the label map's own voxel volumes.
3. Cohort level: η, the sum of the terms in ``eta_terms`` (coefficients in ``Coefficients``), Weibull
   proportional-hazards times with the scale found by bisection for ~20 % events, censoring, the two CSVs,
   and the ground truth (η, each term's contribution ``eta_<term>``, h, g, necrosis, true volumes) in
   ``groundtruth/oracle.csv`` outside the HECKTOR layout.

Every number is a default of ``SynthConfig`` (``Coefficients``, ``Appearance``); the calibration that chose
them and the targets they meet are in benchmarks/synthetic_targets.py and its result files.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.scales import SYNTHETIC_SCALES, synthetic_scale
from bench.data.hecktor import CLINICAL_COLUMNS, CLINICAL_FILE, ENDPOINT_FILE, GROUNDTRUTH_FILE, HPV_COLUMN
from bench.data.simulate import weibull_times
from bench.errors import BenchInputError
from bench.faults import fault_point
from bench.fsutil import atomic_path, locked
from bench.hashing import content_hash
from bench.parallel import process_map

GENERATOR_VERSION = "3"  # bump on any change to the output (cached cohorts are keyed by it)
CENTRES = {"CHUM": 56, "CHUP": 44, "CHUS": 72, "CHUV": 47, "MDA": 197, "HGJ": 55, "HMR": 18}
CENTRE_IDS = {c: i + 1 for i, c in enumerate(CENTRES)}

# PET scanner archetypes: voxel (x, y, z) mm, PSF FWHM range mm, count factor
ARCHETYPES = {
    "older-BGO": ((4.69, 4.69, 3.27), (7.0, 8.0), 0.6),
    "TOF-PMT": ((3.65, 3.65, 3.27), (6.0, 6.0), 1.0),
    "digital": ((4.0, 4.0, 4.0), (4.5, 5.0), 1.5),
}
SLICE_CHOICES = (1.25, 2.5, 3.27, 3.75)
NODE_LEVELS = {"II": 0.76, "III": 0.22, "IV": 0.07, "V": 0.06}

# The terms of η, grouped as the spec's variance shares are (``eta_<term>`` columns of the ground truth).
ETA_GROUPS = {
    "clinical": ("hpv", "age", "pack_years", "ecog"),
    "volume": ("mtv_primary", "mtv_nodes"),
    "fine": ("h", "g", "node_necrosis"),
    "other": ("suvmax", "low_neck_node", "frailty"),
}


@dataclass(frozen=True)
class Coefficients:
    """Log-hazard coefficients of η (per unit of each term)."""

    hpv: float = -1.584
    age: float = 0.0462  # per year above 62
    pack_years: float = 0.0132
    ecog: float = 1.056  # ECOG >= 1
    log2_mtv_primary: float = 0.3  # log2(MTVp / 15 cc)
    log2_mtv_nodes: float = 0.24  # log2(1 + nodal MTV in cc)
    node_necrosis: float = 1.56  # any node with a necrotic core
    heterogeneity: float = 2.88  # PET heterogeneity h ~ U(0, 1)
    ct_latent: float = 2.88  # CT-only latent g ~ U(0, 1): infiltrative margin and attenuation texture
    suvmax_z: float = 0.12
    low_neck_node: float = 0.24  # a level IV-V node
    frailty_sd: float = 0.2  # b_center: drawn, then standardised to exactly this sample sd (ddof 1)


@dataclass(frozen=True)
class Appearance:
    """How the latent tumour traits show in the images (the image side of η)."""

    pet_het_amplitude: float = 0.9  # sd of log SUV per unit h, before the PSF
    pet_het_scale_mm: float = 4.0  # Gaussian sigma of the heterogeneity field (blobs of 1-2 PSF widths)
    pet_profile_falloff: float = 0.2  # uptake falls as (1 - falloff · r²) from centre (r 0) to edge (r 1)
    ct_texture_hu: float = 40.0  # sd of tumour attenuation (HU) per unit g
    ct_texture_scale_mm: float = 2.5  # Gaussian sigma of the attenuation field
    margin_warp: float = 0.10  # smooth boundary irregularity of every tumour (fraction of the radius)
    margin_spicule: tuple[float, float] = (0.03, 0.10)  # fine-scale boundary irregularity: base + per unit g
    margin_spicule_scale_mm: float = 2.5
    muscle_hu: tuple[float, float] = (45.0, 55.0)  # without / with contrast enhancement
    tumour_hu_plain: tuple[float, float] = (-5.0, 5.0)  # tumour minus muscle, non-contrast centres
    tumour_hu_contrast: tuple[float, float] = (70.0, 100.0)  # enhancing tumour, contrast centres
    node_necrosis_prob: float = 0.7  # per node large enough to hold a resolvable core
    necrosis_core_fraction: float = 0.55  # core radius / node radius
    necrosis_min_core_mm: float = 16.0  # two PSF widths of the coarsest scanner
    necrosis_suv: float = 0.6
    necrosis_hu: tuple[float, float] = (10.0, 20.0)
    necrosis_rim_hu: float = 90.0  # enhancing rim around a necrotic core, contrast centres
    primary_necrosis_prob: float = 0.0  # kept off: a cold core in GTVp would swamp the h proxy
    teeth_hu: float = 2500.0  # enamel: gives the CT its real dynamic range (it sets the noise sigma x range)
    mandible_hu: float = 1000.0


@dataclass(frozen=True)
class SynthConfig:
    scale: str
    centres: dict = field(default_factory=lambda: dict(CENTRES))
    fov_mm: float = 128.0  # side of the head-and-neck box
    truth_spacing_mm: float = 2.0  # the fine grid the anatomy is drawn on
    ct_inplane_mm: float = 2.0  # 0.98 at paper scale
    ct_min_slice_mm: float = 2.0  # slice thickness: the centre's choice, at least this
    pet_spacing_scale: float = 1.0  # multiplies the archetype voxel (smoke uses coarser PET)
    counts_per_suv: float = 80.0  # expected counts per voxel per unit SUV before the archetype factor
    event_rate: float = 0.20
    weibull_shape: float = 0.8
    coefficients: Coefficients = field(default_factory=Coefficients)
    appearance: Appearance = field(default_factory=Appearance)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"generator_version": GENERATOR_VERSION}

    def hash(self) -> str:
        return content_hash(self.to_dict(), 16)


def scale_config(scale: str) -> SynthConfig:
    scale = synthetic_scale(scale)
    if scale not in SYNTHETIC_SCALES:
        raise ValueError(f"unknown synthetic scale {scale!r}; choose one of {', '.join(SYNTHETIC_SCALES)}")
    if scale == "smoke":
        return SynthConfig(scale, centres={"CHUM": 14, "CHUP": 13, "MDA": 13}, fov_mm=112.0, truth_spacing_mm=3.5,
                           ct_inplane_mm=3.5, ct_min_slice_mm=3.5, pet_spacing_scale=1.5)
    if scale == "paper":  # generated as "full" before the scales were one vocabulary: the name is hashed into
        # the cohort's identity and written to its config, so it stays, and cached cohorts stay valid
        return SynthConfig("full", fov_mm=200.0, truth_spacing_mm=1.5, ct_inplane_mm=0.98, ct_min_slice_mm=1.25)
    if scale == "large":
        return SynthConfig(scale, centres={c: 4 * n for c, n in CENTRES.items()})
    return SynthConfig(scale)


# --- pass 1: cohort-level draws -----------------------------------------------------------------------

def _standardised(values: np.ndarray, sd: float) -> np.ndarray:
    """Centred and scaled so the sample sd (ddof 1) is exactly ``sd`` (a single centre gets 0)."""
    if len(values) < 2:
        return np.zeros_like(values)
    v = values - values.mean()
    return v / v.std(ddof=1) * sd


def _draw_cohort(cfg: SynthConfig, seed: int) -> tuple[pd.DataFrame, dict[str, dict]]:
    rng = np.random.default_rng([seed, 1])
    look = cfg.appearance
    centres = {}
    for name in cfg.centres:
        arch = list(ARCHETYPES)[rng.integers(len(ARCHETYPES))]
        voxel, fwhm, factor = ARCHETYPES[arch]
        centres[name] = {
            "archetype": arch, "pet_voxel_mm": [v * cfg.pet_spacing_scale for v in voxel],
            "psf_fwhm_mm": float(rng.uniform(*fwhm)), "count_factor": factor,
            "suv_calibration": float(rng.uniform(0.90, 1.15)), "ct_noise_hu": float(rng.uniform(10, 30)),
            "ct_slice_mm": max(float(rng.choice(SLICE_CHOICES)), cfg.ct_min_slice_mm),
            "contrast": bool(rng.uniform() < 0.5), "hpv_rate": float(rng.uniform(0.4, 0.8)),
            "frailty_drawn": float(rng.normal(0.0, cfg.coefficients.frailty_sd)),
        }
    frailty = _standardised(np.array([c["frailty_drawn"] for c in centres.values()]), cfg.coefficients.frailty_sd)
    for c, f in zip(centres.values(), frailty):
        c["frailty"] = float(f)
    min_node_mm = look.necrosis_min_core_mm / look.necrosis_core_fraction  # node diameter holding such a core
    rows = []
    for name, n in cfg.centres.items():
        c = centres[name]
        for k in range(1, n + 1):
            hpv = rng.uniform() < c["hpv_rate"]
            male = rng.uniform() < 0.8
            smoker = rng.uniform() < (0.4 if hpv else 0.7)
            n_plus = rng.uniform() < (0.85 if hpv else 0.7)
            n_nodes = int(1 + rng.poisson(0.8)) if n_plus else 0
            levels = list(NODE_LEVELS)
            p = np.array(list(NODE_LEVELS.values()))
            nodes = []
            for _ in range(n_nodes):
                node = {"level": str(rng.choice(levels, p=p / p.sum())),
                        "diameter_mm": float(np.clip(np.exp(rng.normal(np.log(24.0), 0.35)), 8, 60)),
                        "side": int(rng.choice([-1, 1])), "suvmax": float(np.exp(rng.normal(np.log(6.0), 0.3)))}
                # only a node that can hold a core of >= two PSF widths gets one
                node["necrotic"] = bool(rng.uniform() < look.node_necrosis_prob) and node["diameter_mm"] >= min_node_mm
                nodes.append(node)
            rows.append({
                "PatientID": f"{name}-{k:03d}", "centre": name, "hpv": float(hpv), "male": male,
                "age": float(np.round(rng.normal(62, 9))), "smoker": smoker,
                "pack_years": float(rng.gamma(2.0, 15.0)) if smoker else 0.0,
                "alcohol": float(rng.uniform() < 0.45), "ecog": int(rng.choice([0, 1, 2], p=[0.55, 0.35, 0.10])),
                "weight": float(np.round(rng.normal(82 if male else 68, 13), 1)),
                "surgery": float(rng.uniform() < 0.2), "chemo": float(rng.uniform() < 0.8),
                "mtv_primary_target_cc": float(np.clip(np.exp(rng.normal(np.log(25.0), 0.8)), 1.5, 150.0)),
                "suvmax_primary": float(np.exp(rng.normal(np.log(11.0), 0.3))),
                "h": float(rng.uniform(0.0, 1.0)), "g": float(rng.uniform(0.0, 1.0)),
                "primary_necrotic": bool(rng.uniform() < look.primary_necrosis_prob),
                "primary_side": int(rng.choice([-1, 1])), "nodes": nodes,
            })
    return pd.DataFrame(rows), centres


# --- pass 2: one patient's images ---------------------------------------------------------------------

def _grid(fov: float, spacing: float) -> tuple[int, float]:
    n = int(round(fov / spacing))
    return n, -fov / 2 + spacing / 2  # size, first voxel centre


def _image(array_zyx: np.ndarray, spacing_xyz, origin_xyz):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing([float(s) for s in spacing_xyz])
    img.SetOrigin([float(o) for o in origin_xyz])
    return img


def _smooth_field(rng: np.random.Generator, shape, sigma_vox: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return f / (f.std() or 1.0)


def _ellipsoid(coords, centre, axes, warp=None) -> np.ndarray:
    z, y, x = coords
    d = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
    r = np.sqrt(d)
    if warp is not None:
        r = r * (1 + warp)
    return r


def _draw_neck(coords, contrast: bool, look: dict):
    """Hounsfield units, SUV and the masks the tumours must stay out of, on the truth grid."""
    z, y, x = coords
    shape = z.shape
    hu = np.full(shape, -1000.0, dtype=np.float32)
    suv = np.zeros(shape, dtype=np.float32)
    muscle_hu = look["muscle_hu"][1 if contrast else 0]
    body = (x / 58.0) ** 2 + (y / 48.0) ** 2 <= 1
    inner = (x / 50.0) ** 2 + (y / 40.0) ** 2 <= 1
    hu[body], suv[body] = -100.0, 0.3
    hu[inner], suv[inner] = muscle_hu, 0.8
    for side in (-1, 1):  # parapharyngeal fat planes, lateral to the oropharynx: where an infiltrative margin shows
        plane = (((x - side * 21.0) / 3.5) ** 2 + ((y - 9.0) / 9.0) ** 2 <= 1) & (z > -5) & (z < 45)
        hu[plane], suv[plane] = -100.0, 0.3
    airway = ((x / 9.0) ** 2 + ((y - 14.0) / 7.0) ** 2 <= 1) & (z > -60)
    hu[airway], suv[airway] = -1000.0, 0.0
    vertebra = (x / 13.0) ** 2 + ((y + 22.0) / 12.0) ** 2 <= 1
    cortex = vertebra & ~((x / 10.0) ** 2 + ((y + 22.0) / 9.0) ** 2 <= 1)
    hu[vertebra], suv[vertebra] = 300.0, 0.9
    hu[cortex] = 1000.0
    # mandible and teeth: an arch in front of the oral cavity, above the oropharynx
    arch_r = np.sqrt(x ** 2 + ((y - 8.0) / 1.1) ** 2)
    front = y > 8.0
    mandible = front & (np.abs(arch_r - 30.0) <= 3.5) & (z > 38) & (z <= 48)
    teeth = front & (np.abs(arch_r - 30.0) <= 3.0) & (z > 48) & (z <= 56)
    hu[mandible], suv[mandible] = look["mandible_hu"], 0.4
    hu[teeth], suv[teeth] = look["teeth_hu"], 0.3
    for side in (-1, 1):
        carotid = ((x - side * 24.0) / 4.0) ** 2 + ((y - 2.0) / 4.0) ** 2 <= 1
        hu[carotid], suv[carotid] = (200.0 if contrast else 40.0), 1.6
        tonsil = _ellipsoid(coords, (side * 14.0, 12.0, 28.0), (6.0, 7.0, 9.0)) <= 1
        hu[tonsil], suv[tonsil] = muscle_hu + 5.0, 3.4
    allowed = inner & ~airway & ~vertebra & ~mandible & ~teeth
    return hu, suv, allowed, muscle_hu


def render_patient(p: dict, centre: dict, cfg_dict: dict, seed: int, out: str) -> dict:
    """Draw, write (atomically) and measure one patient; returns the measured ground truth."""
    import SimpleITK as sitk

    cfg = cfg_dict
    look = cfg["appearance"]
    pid = p["PatientID"]
    pid_key = int(content_hash(pid, 8), 16)
    # one stream per purpose, so a change to one field's recipe leaves the other draws where they were
    rng, rng_h, rng_g, rng_shape, rng_acq = (np.random.default_rng([seed, 2, pid_key, k]) for k in range(5))
    fov, ts = cfg["fov_mm"], cfg["truth_spacing_mm"]
    n, first = _grid(fov, ts)
    ax = first + ts * np.arange(n)
    z, y_lps, x = np.meshgrid(ax, ax, ax, indexing="ij")  # voxel centres in LPS mm (+y = posterior)
    y = -y_lps  # the drawing below uses y = anterior
    coords = (z, y, x)
    contrast = bool(centre["contrast"])
    hu, suv, allowed, muscle_hu = _draw_neck(coords, contrast, look)
    label = np.zeros((n, n, n), dtype=np.uint8)
    # primary tumour: a warped ellipsoid at the oropharynx. Its boundary is smooth plus spiculated in
    # proportion to g; its uptake carries a heterogeneity field scaled by h; its attenuation carries an
    # independent texture field scaled by g (and enhances in contrast centres).
    het_h = _smooth_field(rng_h, (n, n, n), look["pet_het_scale_mm"] / ts)
    tex_g = _smooth_field(rng_g, (n, n, n), look["ct_texture_scale_mm"] / ts)
    warp = look["margin_warp"] * _smooth_field(rng_shape, (n, n, n), 6.0 / ts)
    spicule_amp = look["margin_spicule"][0] + look["margin_spicule"][1] * p["g"]
    spicule = spicule_amp * _smooth_field(rng_shape, (n, n, n), look["margin_spicule_scale_mm"] / ts)
    r_eq = (3 * p["mtv_primary_target_cc"] * 1000 / (4 * np.pi)) ** (1 / 3)
    elong = np.exp(rng.normal(0, 0.15, 3))
    elong /= np.prod(elong) ** (1 / 3)
    c_p = (p["primary_side"] * rng.uniform(10, 16), rng.uniform(6, 14), 18.0 + rng.normal(0, 4))
    r_smooth = _ellipsoid(coords, c_p, r_eq * elong, warp)
    r = r_smooth * (1 + spicule)
    tumour = (r <= 1) & allowed  # inside the neck; it narrows the airway, not fills it
    prof = np.clip(1 - look["pet_profile_falloff"] * r_smooth ** 2, 0.3, 1)
    suv[tumour] = (p["suvmax_primary"] * prof * np.exp(look["pet_het_amplitude"] * p["h"] * het_h))[tumour]
    if contrast:
        base = rng.uniform(*look["tumour_hu_contrast"])
    else:
        base = muscle_hu + rng.uniform(*look["tumour_hu_plain"])
    hu[tumour] = (base + look["ct_texture_hu"] * p["g"] * tex_g)[tumour]
    if p["primary_necrotic"]:
        core = tumour & (r_smooth <= 0.4)
        suv[core], hu[core] = look["necrosis_suv"], float(np.mean(look["necrosis_hu"]))
    label[tumour] = 1
    # nodes by level: z range, lateral offset, antero-posterior offset (mm)
    level_pos = {"II": (0, 22, 30, 2), "III": (-22, 0, 32, 4), "IV": (-50, -22, 30, 6), "V": (-30, 10, 38, -18)}
    node_hu = muscle_hu - 5.0 + (15.0 if contrast else 0.0)
    for node in p["nodes"]:
        z0, z1, lat, ap = level_pos[node["level"]]
        centre_n = (node["side"] * (lat + rng.normal(0, 3)), ap + rng.normal(0, 3), rng.uniform(z0, z1))
        rn = _ellipsoid(coords, centre_n, np.array([1.0, 1.0, 1.2]) * node["diameter_mm"] / 2, 0.5 * warp)
        nd = (rn <= 1) & (label == 0) & allowed
        suv[nd] = (node["suvmax"] * np.clip(1 - 0.4 * rn ** 2, 0.3, 1))[nd]
        hu[nd] = node_hu + 5.0 * tex_g[nd]
        if node["necrotic"]:
            core = nd & (rn <= look["necrosis_core_fraction"])
            suv[core] = look["necrosis_suv"]
            hu[core] = rng.uniform(*look["necrosis_hu"])
            if contrast:
                rim = nd & (rn > look["necrosis_core_fraction"]) & (rn <= look["necrosis_core_fraction"] + 0.2)
                hu[rim] = look["necrosis_rim_hu"]
        label[nd] = 2
    origin = (first, first, first)
    truth_hu = _image(hu, (ts, ts, ts), origin)
    truth_suv = _image(suv, (ts, ts, ts), origin)
    truth_label = _image(label, (ts, ts, ts), origin)

    def grid_like(spacing_xyz) -> "sitk.Image":
        size = [int(round(fov / s)) for s in spacing_xyz]
        ref = sitk.Image(size, sitk.sitkFloat32)
        ref.SetSpacing([float(s) for s in spacing_xyz])
        ref.SetOrigin([-fov / 2 + s / 2 for s in spacing_xyz])
        return ref

    # CT: resample, noise; label: nearest neighbour on the CT grid
    ct_ref = grid_like((cfg["ct_inplane_mm"], cfg["ct_inplane_mm"], centre["ct_slice_mm"]))
    ct = sitk.Resample(truth_hu, ct_ref, sitk.Transform(), sitk.sitkLinear, -1000.0)
    ct_arr = sitk.GetArrayFromImage(ct)
    ct_arr = ct_arr + rng_acq.normal(0, centre["ct_noise_hu"], ct_arr.shape)
    ct_out = _image(np.clip(np.round(ct_arr), -1024, 3071).astype(np.int16), ct_ref.GetSpacing(), ct_ref.GetOrigin())
    lab = sitk.Resample(truth_label, ct_ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    # PET: PSF blur on the truth grid, resample to the scanner voxel, Poisson counts, calibration
    sigma = centre["psf_fwhm_mm"] / 2.3548
    blurred = sitk.SmoothingRecursiveGaussian(truth_suv, sigma)
    pet_ref = grid_like(centre["pet_voxel_mm"])
    pet = sitk.GetArrayFromImage(sitk.Resample(blurred, pet_ref, sitk.Transform(), sitk.sitkLinear, 0.0))
    lam = np.clip(pet, 0, None) * cfg["counts_per_suv"] * centre["count_factor"]
    counts = rng_acq.poisson(lam)
    pet_suv = counts / (cfg["counts_per_suv"] * centre["count_factor"]) * centre["suv_calibration"]
    pet_out = _image(pet_suv.astype(np.float32), pet_ref.GetSpacing(), pet_ref.GetOrigin())

    lab_arr = sitk.GetArrayFromImage(lab)
    voxel_cc = float(np.prod(ct_ref.GetSpacing())) / 1000.0
    mtv_p = float(np.count_nonzero(lab_arr == 1)) * voxel_cc
    mtv_n = float(np.count_nonzero(lab_arr == 2)) * voxel_cc
    out_dir = Path(out)
    for img, rel in ((ct_out, f"imagesTr/{pid}__CT.nii.gz"), (pet_out, f"imagesTr/{pid}__PT.nii.gz"),
                     (lab, f"labelsTr/{pid}.nii.gz")):
        _write_image(img, out_dir / rel)
    return {"PatientID": pid, "mtv_primary_cc": mtv_p, "mtv_nodes_cc": mtv_n}


def _write_image(img, path: Path) -> None:
    import SimpleITK as sitk

    with atomic_path(path, ".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), True)


# --- pass 3: outcomes and files -----------------------------------------------------------------------

def _node_flags(pats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: any necrotic node; any node at level IV or V."""
    necrosis = np.array([any(nd["necrotic"] for nd in ns) for ns in pats.nodes], dtype=float)
    low = np.array([any(nd["level"] in ("IV", "V") for nd in ns) for ns in pats.nodes], dtype=float)
    return necrosis, low


def eta_terms(cfg: SynthConfig, pats: pd.DataFrame, centres: dict) -> pd.DataFrame:
    """Each term's contribution to η (coefficient × term), one column per term of ``ETA_GROUPS``; η is
    their row sum. ``pats``: the cohort draws with the measured volumes (``mtv_primary_cc``, ``mtv_nodes_cc``)."""
    c = cfg.coefficients
    df = pats  # the cohort draws with measured volumes
    node_necrosis, low_node = _node_flags(df)
    suv_z = (np.log(df.suvmax_primary) - np.log(11.0)) / 0.3
    return pd.DataFrame({
        "hpv": c.hpv * df.hpv, "age": c.age * (df.age - 62), "pack_years": c.pack_years * df.pack_years,
        "ecog": c.ecog * (df.ecog >= 1),
        "mtv_primary": c.log2_mtv_primary * np.log2(np.maximum(df.mtv_primary_cc, 0.1) / 15.0),
        "mtv_nodes": c.log2_mtv_nodes * np.log2(1 + df.mtv_nodes_cc),
        "h": c.heterogeneity * df.h, "g": c.ct_latent * df.g, "node_necrosis": c.node_necrosis * node_necrosis,
        "suvmax": c.suvmax_z * suv_z, "low_neck_node": c.low_neck_node * low_node,
        "frailty": df.centre.map(lambda k: centres[k]["frailty"]),
    }).astype(float).set_index(df.PatientID.to_numpy())


def _outcomes(cfg: SynthConfig, seed: int, pats: pd.DataFrame, centres: dict, measured: pd.DataFrame
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    df = pats.merge(measured, on="PatientID", how="left")
    n = len(df)
    rng = np.random.default_rng([seed, 3])
    terms = eta_terms(cfg, df, centres)
    eta = terms.sum(axis=1).to_numpy(float)
    node_necrosis, low_node = _node_flags(df)
    frailty = terms["frailty"].to_numpy()
    censor = np.minimum(rng.uniform(400, 3000, n), rng.exponential(5000, n))
    u = rng.uniform(size=n)

    t = weibull_times(eta, u, censor, cfg.weibull_shape, cfg.event_rate, (1.0, 1e9), 200)
    event = (t <= censor).astype(int)
    rfs = np.maximum(1, np.round(np.minimum(t, censor))).astype(int)
    miss = lambda p: rng.uniform(size=n) < p  # noqa: E731
    clinical = pd.DataFrame({
        "PatientID": df.PatientID, "Task 1": 1, "Task 2": 1, "CenterID": df.centre.map(CENTRE_IDS),
        "Gender": np.where(df.male, "M", "F"), "Age": df.age, "Weight": np.where(miss(0.05), np.nan, df.weight),
        "Tobacco": np.where(miss(0.25), np.nan, df.smoker.astype(float)),
        "Alcohol": np.where(miss(0.3), np.nan, df.alcohol),
        "Performance status": np.where(miss(0.1), np.nan, df.ecog.astype(float)),
        HPV_COLUMN: np.where(miss(0.3), np.nan, df.hpv), "Surgery": df.surgery, "Chemotherapy": df.chemo,
    })[CLINICAL_COLUMNS]
    endpoint = pd.DataFrame({"PatientID": df.PatientID, "Relapse": event, "RFS": rfs})
    truth = pd.DataFrame({
        "PatientID": df.PatientID, "eta": eta, "h": df.h, "g": df.g, "mtv_primary_cc": df.mtv_primary_cc,
        "mtv_nodes_cc": df.mtv_nodes_cc, "n_nodes": df.nodes.map(len), "node_necrosis": node_necrosis,
        "primary_necrotic": df.primary_necrotic.astype(int), "low_neck_node": low_node,
        "suvmax_primary_latent": df.suvmax_primary, "hpv_true": df.hpv, "pack_years": df.pack_years,
        "frailty": frailty, "event_time_latent": t, "censor_time": censor,
        **{f"eta_{k}": terms[k].to_numpy() for k in terms.columns},
    })
    return clinical, endpoint, truth


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, ".tmp") as tmp, open(tmp, "w", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n", float_format="%.10g")


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path, ".tmp") as tmp:
        tmp.write_text(text)


MARKER = ".complete"


def is_complete(out: Path, cfg: SynthConfig, seed: int) -> bool:
    marker = Path(out) / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    return info.get("config_hash") == cfg.hash() and info.get("seed") == seed


def _render_job(args: tuple) -> dict:
    return render_patient(*args)


def _check_target(out: Path) -> None:
    """Refuse to write into a folder that holds something other than a cohort of this generator."""
    if out.exists() and not out.is_dir():
        raise BenchInputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "groundtruth" / "config.json").is_file() \
            and not (out / "groundtruth" / "patients").is_dir():
        raise BenchInputError(f"--out {out}: the folder is not empty and is not a synthetic cohort; "
                              f"choose an empty or new folder (nothing was written)")


def generate(out: str | Path, cfg: SynthConfig, seed: int = 0, *, workers: int | None = None,
             progress: bool = True) -> Path:
    """Write the cohort to ``out`` unless a complete one with this config and seed is there (resumable:
    patients already written are kept when a killed generation is rerun). Concurrent calls on one folder
    wait for each other (a file lock), so the second finds the cohort complete."""
    out = Path(out)
    if is_complete(out, cfg, seed):
        return out
    _check_target(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchInputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    with locked(out / ".lock"):
        if is_complete(out, cfg, seed):
            return out
        return _generate_locked(out, cfg, seed, workers, progress)


def _generate_locked(out: Path, cfg: SynthConfig, seed: int, workers: int | None, progress: bool) -> Path:
    from tqdm.auto import tqdm

    (out / MARKER).unlink(missing_ok=True)
    for stale in out.rglob(".tmp-*"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    pats, centres = _draw_cohort(cfg, seed)
    done_dir = out / "groundtruth" / "patients"
    done_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"config_hash": cfg.hash(), "seed": seed}
    measured, todo = [], []
    for p in pats.to_dict("records"):
        f = done_dir / f"{p['PatientID']}.json"
        try:
            rec = json.loads(f.read_text()) if f.is_file() else None
        except ValueError:
            rec = None
        if rec and rec.get("stamp") == stamp:
            measured.append(rec["measured"])
        else:
            todo.append(p)
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    cfg_dict = cfg.to_dict()
    bar = tqdm(total=len(pats), initial=len(measured), desc=f"synthetic {cfg.scale}", unit="patient",
               disable=not progress or None, leave=False)

    def keep(rec: dict) -> None:
        _write_text(json.dumps({"stamp": stamp, "measured": rec}), done_dir / f"{rec['PatientID']}.json")
        measured.append(rec)
        bar.update(1)
        fault_point("synthesis")

    try:
        if workers == 1:
            for p in todo:
                keep(render_patient(p, centres[p["centre"]], cfg_dict, seed, str(out)))
        else:
            process_map(_render_job, [(p, centres[p["centre"]], cfg_dict, seed, str(out)) for p in todo], workers, keep)
    finally:
        bar.close()
    clinical, endpoint, truth = _outcomes(cfg, seed, pats, centres, pd.DataFrame(measured))
    _write_csv(clinical, out / CLINICAL_FILE)
    _write_csv(endpoint, out / ENDPOINT_FILE)
    _write_csv(truth, out / GROUNDTRUTH_FILE)
    _write_text(json.dumps(centres, indent=1, sort_keys=True) + "\n", out / "groundtruth" / "centres.json")
    _write_text(json.dumps(cfg.to_dict() | {"seed": seed}, indent=1) + "\n", out / "groundtruth" / "config.json")
    _write_text(json.dumps(stamp) + "\n", out / MARKER)
    return out


def default_path(root: Path, scale: str, seed: int) -> Path:
    cfg = scale_config(scale)
    return Path(root) / f"synthetic-{scale}-v{GENERATOR_VERSION}-{cfg.hash()[:8]}-seed{seed}"


__all__ = ["SynthConfig", "Coefficients", "Appearance", "ETA_GROUPS", "eta_terms", "scale_config", "generate", "render_patient", "default_path",
           "GENERATOR_VERSION", "is_complete", "replace"]
