"""``Cohort``: the read-only view of a set of patients that a method sees.

Outcomes exist on training and validation cohorts only; reading them on a cohort handed to ``predict``
raises, so test outcomes cannot leak into a model. Reference masks are hidden from test cohorts unless the
method declares ``needs_mask_at_test``. Ground truth of a synthetic cohort is reachable only by a method that consumes
``groundtruth`` (the oracle ceiling row).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import OutcomeLeakError


@dataclass(frozen=True)
class ImageFiles:
    """Paths of one patient's images in the HECKTOR 2022 layout (listed, never read eagerly)."""

    ct: Path
    pet: Path
    mask: Path | None


class Cohort:
    """A set of patients: ids, centres, clinical table, (outcomes), image file listing."""

    def __init__(
        self,
        ids: Iterable[str],
        centres: pd.Series,
        clinical: pd.DataFrame,
        outcomes: pd.DataFrame | None,
        images: Mapping[str, ImageFiles] | None = None,
        name: str = "cohort",
        groundtruth: pd.DataFrame | None = None,
    ):
        self._ids = np.asarray(list(ids), dtype=object)
        self._centres = centres.loc[self._ids]
        self._clinical = clinical.loc[self._ids]
        self._outcomes = None if outcomes is None else outcomes.loc[self._ids]
        self._images = None if images is None else {i: images[i] for i in self._ids}
        self._groundtruth = None if groundtruth is None else groundtruth.loc[self._ids]
        self.name = name

    @property
    def ids(self) -> np.ndarray:
        return self._ids.copy()

    @property
    def centres(self) -> np.ndarray:
        return self._centres.to_numpy(dtype=object).copy()

    @property
    def clinical(self) -> pd.DataFrame:
        """Typed clinical features indexed by patient id; missing values stay missing."""
        return self._clinical.copy()

    @property
    def has_outcomes(self) -> bool:
        return self._outcomes is not None

    @property
    def outcomes(self) -> pd.DataFrame:
        """``time`` (days) and ``event`` (0/1); training and validation cohorts only."""
        if self._outcomes is None:
            raise OutcomeLeakError(
                f"cohort {self.name!r} is a prediction cohort: its outcomes are hidden from methods"
            )
        return self._outcomes.copy()

    @property
    def image_files(self) -> dict[str, ImageFiles]:
        """Per-patient image paths; the reference mask is None where the method may not see it."""
        if self._images is None:
            raise AttributeError(f"cohort {self.name!r} has no images (a clinical-only dataset)")
        return dict(self._images)

    @property
    def groundtruth(self) -> pd.DataFrame:
        """A synthetic cohort's hidden truth (η, true volumes, ...): only for methods that declare
        ``consumes = ("groundtruth",)`` — the oracle ceiling — and never on real data."""
        if self._groundtruth is None:
            raise AttributeError(f"cohort {self.name!r} carries no ground truth (only a method that consumes "
                                 f"'groundtruth' gets it, on a dataset that has it)")
        return self._groundtruth.copy()

    @property
    def has_images(self) -> bool:
        return self._images is not None

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"Cohort({self.name!r}, n={len(self)}, outcomes={self.has_outcomes})"

    def subset(self, ids: Iterable[str], name: str | None = None) -> Cohort:
        ids = list(ids)
        unknown = [i for i in ids if i not in self._centres.index]
        if unknown:
            raise KeyError(f"patient(s) not in cohort {self.name!r}: {unknown[:5]}")
        return Cohort(ids, self._centres, self._clinical, self._outcomes, self._images, name or self.name,
                      self._groundtruth)

    def with_masks(self, masks: Mapping[str, Path | str], name: str | None = None) -> Cohort:
        """The same patients with other mask files (e.g. a model's predicted contours, for radiomics); every
        patient needs one."""
        files = self.image_files
        missing = [i for i in self._ids if i not in masks]
        if missing:
            raise KeyError(f"no mask given for {len(missing)} patient(s) of cohort {self.name!r}, e.g. {missing[:3]}")
        images = {i: ImageFiles(f.ct, f.pet, Path(masks[i])) for i, f in files.items()}
        return Cohort(self._ids, self._centres, self._clinical, self._outcomes, images, name or self.name,
                      self._groundtruth)

    def union(self, other: Cohort, name: str | None = None) -> Cohort:
        if self.has_outcomes != other.has_outcomes:
            raise ValueError("cannot join a cohort with outcomes to one without")
        overlap = set(self._ids) & set(other._ids)
        if overlap:
            raise ValueError(f"cohorts overlap on {len(overlap)} patient(s), e.g. {sorted(overlap)[:3]}")
        ids = list(self._ids) + list(other._ids)
        centres = pd.concat([self._centres, other._centres])
        clinical = pd.concat([self._clinical, other._clinical])
        outcomes = None if self._outcomes is None else pd.concat([self._outcomes, other._outcomes])
        images = None
        if self._images is not None and other._images is not None:
            images = {**self._images, **other._images}
        truth = None
        if self._groundtruth is not None and other._groundtruth is not None:
            truth = pd.concat([self._groundtruth, other._groundtruth])
        return Cohort(ids, centres, clinical, outcomes, images, name or f"{self.name}+{other.name}", truth)
