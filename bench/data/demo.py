"""A small clinical-only cohort in the HECKTOR 2022 layout (the two CSVs, no images).

The default dataset until the synthetic PET/CT cohort exists: it lets ``make bench`` and the tests run
the whole loading → split → fit → score → store path with no data. Seven centres with the HECKTOR task-2
sizes (489 patients), Weibull proportional hazards on clinical covariates plus an unobserved tumour-burden
term (so clinical models are informative but far from perfect), about 20 % events. A pure function of
``seed``: the same seed writes the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.hecktor import CLINICAL_COLUMNS, CLINICAL_FILE, ENDPOINT_FILE, HPV_COLUMN
from bench.data.simulate import weibull_times
from bench.fsutil import atomic_path

CENTRES = {"CHUM": 56, "CHUP": 44, "CHUS": 72, "CHUV": 47, "MDA": 197, "HGJ": 55, "HMR": 18}
CENTRE_IDS = {"CHUM": 1, "CHUP": 2, "CHUS": 3, "CHUV": 4, "MDA": 5, "HGJ": 6, "HMR": 7}
GENERATOR_VERSION = "2"
TARGET_EVENT_RATE = 0.20
WEIBULL_SHAPE = 0.8


def _simulate(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for centre, n in CENTRES.items():
        frailty = rng.normal(0.0, 0.2)
        hpv_rate = rng.uniform(0.4, 0.8)
        for k in range(1, n + 1):
            rows.append((f"{centre}-{k:03d}", centre, frailty, hpv_rate))
    n = len(rows)
    pid = [r[0] for r in rows]
    centre = [r[1] for r in rows]
    frailty = np.array([r[2] for r in rows])
    hpv = (rng.uniform(size=n) < np.array([r[3] for r in rows])).astype(float)
    age = np.round(rng.normal(62, 9, n))
    male = rng.uniform(size=n) < 0.8
    weight = np.round(rng.normal(np.where(male, 82, 68), 13), 1)
    tobacco = (rng.uniform(size=n) < 0.55).astype(float)
    alcohol = (rng.uniform(size=n) < 0.45).astype(float)
    ecog = rng.choice([0, 1, 2], size=n, p=[0.55, 0.35, 0.10]).astype(float)
    burden = rng.normal(0.0, 1.0, n)  # unobserved tumour burden: what images would add
    surgery = (rng.uniform(size=n) < 0.2).astype(float)
    chemo = (rng.uniform(size=n) < 0.8).astype(float)
    eta = (
        -0.9 * hpv + 0.03 * (age - 62) + 0.5 * tobacco + 0.6 * (ecog >= 1) + 0.7 * burden + frailty
    )
    censor = np.minimum(rng.uniform(400, 3000, n), rng.exponential(5000, n))
    u = rng.uniform(size=n)

    t = weibull_times(eta, u, censor, WEIBULL_SHAPE, TARGET_EVENT_RATE, (1.0, 1e7), 100)
    event = (t <= censor).astype(int)
    time = np.maximum(1, np.round(np.minimum(t, censor))).astype(int)

    # Missingness as in real registries: HPV ~30 %, a few smoking/alcohol/weight values.
    hpv_obs = np.where(rng.uniform(size=n) < 0.3, np.nan, hpv)
    tobacco = np.where(rng.uniform(size=n) < 0.25, np.nan, tobacco)
    alcohol = np.where(rng.uniform(size=n) < 0.3, np.nan, alcohol)
    weight = np.where(rng.uniform(size=n) < 0.05, np.nan, weight)
    ecog = np.where(rng.uniform(size=n) < 0.1, np.nan, ecog)
    clinical = pd.DataFrame(
        {
            "PatientID": pid,
            "Task 1": 1,
            "Task 2": 1,
            "CenterID": [CENTRE_IDS[c] for c in centre],
            "Gender": np.where(male, "M", "F"),
            "Age": age,
            "Weight": weight,
            "Tobacco": tobacco,
            "Alcohol": alcohol,
            "Performance status": ecog,
            HPV_COLUMN: hpv_obs,
            "Surgery": surgery,
            "Chemotherapy": chemo,
        }
    )[CLINICAL_COLUMNS]
    endpoint = pd.DataFrame({"PatientID": pid, "Relapse": event, "RFS": time})
    return clinical, endpoint


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, ".tmp") as tmp, open(tmp, "w", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")


def is_complete(out: str | Path, seed: int) -> bool:
    """Whether ``out`` holds the whole demo cohort of ``seed`` from this generator version."""
    done = Path(out) / ".complete"
    return done.is_file() and done.read_text().strip() == f"{GENERATOR_VERSION}:{seed}"


def write_demo(out: str | Path, seed: int = 0) -> Path:
    """Write the demo cohort to ``out`` unless a complete one is already there; return ``out``."""
    out = Path(out)
    done = out / ".complete"
    if is_complete(out, seed):
        return out
    out.mkdir(parents=True, exist_ok=True)
    clinical, endpoint = _simulate(seed)
    _write_atomic(clinical, out / CLINICAL_FILE)
    _write_atomic(endpoint, out / ENDPOINT_FILE)
    done.write_text(f"{GENERATOR_VERSION}:{seed}\n")
    return out
