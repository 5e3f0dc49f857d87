"""The clinical table as model input: train-fitted imputation, scaling and one-hot encoding (scikit-learn).

Numeric columns: median imputation with a missing-value indicator (a missing HPV status is informative),
then standardisation. Categorical columns: most-frequent imputation and one-hot encoding (a category unseen
in training is ignored). Columns entirely missing in the training patients are dropped. Shared by the Cox
baselines, the feature methods and the deep methods' clinical inputs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def clinical_preprocessor() -> ColumnTransformer:
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include="number")),
            ("categorical", categorical, make_column_selector(dtype_include=["category", "object", "string"])),
        ],
        verbose_feature_names_out=False,
    )


def as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as plain objects with NaN for missing, which SimpleImputer/OneHotEncoder accept."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].astype(object).where(out[col].notna(), np.nan)
    return out


class ClinicalEncoder:
    """``fit(frame)`` on the training patients, then ``transform(frame)`` → float32 (n, n_features)."""

    def fit(self, frame: pd.DataFrame) -> "ClinicalEncoder":
        x = as_object(frame)
        self.columns_ = [c for c in x.columns if x[c].notna().any()]
        self.pre_ = clinical_preprocessor().fit(x[self.columns_])
        self.n_features_ = int(self.pre_.transform(x[self.columns_][:1]).shape[1])
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pre_.transform(as_object(frame)[self.columns_]), dtype=np.float32)
