"""A dataset plugin: the Veterans' Administration lung cancer trial (bundled with scikit-survival, so it loads
offline), clinical only, with the cell type as the grouping that leave-one-centre-out holds out."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from bench.data.dataset import Dataset, to_days


def load_veterans(arg: str, *, scale: str, progress: bool = True) -> Dataset:
    """``--dataset example-veterans``; ``arg`` and ``scale`` are not used."""
    import sksurv.datasets
    from sksurv.datasets import load_veterans_lung_cancer

    x, y = load_veterans_lung_cancer()
    ids = pd.Index([f"VA{i:03d}" for i in range(len(x))], name="PatientID")
    x = x.set_axis(ids)
    outcomes = pd.DataFrame({"time": to_days(pd.Series(y["Survival_in_days"], index=ids), "days"),
                             "event": y["Status"].astype(int)}, index=ids)
    clinical = pd.DataFrame({
        "Age": x["Age_in_years"].astype(float), "Karnofsky": x["Karnofsky_score"].astype(float),
        "Months from diagnosis": x["Months_from_Diagnosis"].astype(float),
        "Prior therapy": x["Prior_therapy"].astype("string").astype("category"),
        "Treatment": x["Treatment"].astype("string").astype("category"),
    }, index=ids)
    centres = x["Celltype"].astype(str).rename("centre")
    fingerprint = hashlib.sha256(pd.util.hash_pandas_object(pd.concat([x.astype(str), outcomes], axis=1)).values
                                 .tobytes()).hexdigest()[:16]
    return Dataset(name="example-veterans", root=Path(sksurv.datasets.__file__).parent / "data", clinical=clinical, outcomes=outcomes, centres=centres,
                   images=None, fingerprint=fingerprint)
