"""Pictures of a corruption: one axial slice through the PET hot region, clean beside corrupted.

The slice is chosen on the clean images (the pipeline's box centre, ``bench.data.pipeline.hot_centre``) and
the corrupted images are cut at the same physical position, so a moved, blurred or missing PET shows as
such; a corruption that leaves that slice alone (dental streaks, at the level of the teeth) is cut where it
changes the CT most. PET is resampled onto the CT grid for display only.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.show import save_png

CT_WINDOW = (-200.0, 300.0)  # HU shown from black to white (soft tissue)
METAL_WINDOW = (-1000.0, 2000.0)  # wide enough to show streaks and fillings


@dataclass(frozen=True)
class Slice:
    """One axial slice of CT (HU) and PET (SUV, on the CT grid), with the physical z it was cut at."""

    ct: np.ndarray
    pet: np.ndarray
    z_mm: float


def slice_position(clean, corrupted, pid: str) -> tuple[np.ndarray, str]:
    """Where to cut, and why: the physical (x, y, z) of the clean PET hot region (the pipeline's box centre);
    when the corruption leaves the CT slice there as it was but changes the CT elsewhere (dental streaks lie
    at the level of the teeth), the centre of the CT slice it changes most."""
    import SimpleITK as sitk

    from bench.data.images import read_image
    from bench.data.pipeline import PipelineConfig, hot_centre

    point = hot_centre(read_image(clean.pet, "PET", pid), PipelineConfig())
    if Path(clean.ct) == Path(corrupted.ct):
        return point, "through the PET hot region"
    before = sitk.DICOMOrient(read_image(clean.ct, "CT", pid), "LPS")
    change = np.abs(sitk.GetArrayFromImage(sitk.DICOMOrient(read_image(corrupted.ct, "CT", pid), "LPS"))
                    .astype(np.float64) - sitk.GetArrayFromImage(before)).sum(axis=(1, 2))
    k = int(round(before.TransformPhysicalPointToContinuousIndex([float(v) for v in point])[2]))
    if change[min(max(k, 0), len(change) - 1)] > 0 or not change.any():
        return point, "through the PET hot region"
    size = before.GetSize()
    return (np.asarray(before.TransformContinuousIndexToPhysicalPoint([(size[0] - 1) / 2, (size[1] - 1) / 2,
                                                                       float(np.argmax(change))])),
            "where the CT changes most (the PET hot region's slice is unchanged)")


def axial_slice(files, pid: str, point) -> Slice:
    """The axial CT slice through physical ``point`` and the PET resampled onto it."""
    import SimpleITK as sitk

    from bench.data.images import read_image

    ct = sitk.DICOMOrient(read_image(files.ct, "CT", pid), "LPS")
    pet = read_image(files.pet, "PET", pid)
    k = int(round(ct.TransformPhysicalPointToContinuousIndex([float(v) for v in point])[2]))
    k = min(max(k, 0), ct.GetSize()[2] - 1)
    ct_slice = ct[:, :, k:k + 1]
    pet_slice = sitk.Resample(pet, ct_slice, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    z_mm = ct.TransformIndexToPhysicalPoint([0, 0, k])[2]
    return Slice(sitk.GetArrayFromImage(ct_slice)[0].astype(np.float32), sitk.GetArrayFromImage(pet_slice)[0],
                 float(z_mm))


def suv_ceiling(pet: np.ndarray) -> float:
    """The top of the PET colour scale: the slice's maximum (at least SUV 1), so heterogeneity stays visible."""
    return max(float(pet.max()), 1.0)


def comparison_png(clean: Slice, corrupted: Slice, title: str, where: str, out_png: str | Path) -> Path:
    """A 2 × 3 PNG: rows CT and PET; columns clean, corrupted and corrupted − clean, on one colour scale per
    row (the clean image's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(10, 7))
    window = METAL_WINDOW if max(clean.ct.max(), corrupted.ct.max()) > 2000 else CT_WINDOW
    suv = suv_ceiling(clean.pet)
    for row, (a, b, kw, span) in enumerate((
            (clean.ct, corrupted.ct, dict(cmap="gray", vmin=window[0], vmax=window[1]), window[1] - window[0]),
            (clean.pet, corrupted.pet, dict(cmap="hot", vmin=0, vmax=suv), suv))):
        axes[row, 0].imshow(a, **kw)
        axes[row, 1].imshow(b, **kw)
        diff = axes[row, 2].imshow(b.astype(np.float64) - a, cmap="coolwarm", vmin=-span / 2, vmax=span / 2)
        fig.colorbar(diff, ax=axes[row, 2], fraction=0.046)
    for j, name in enumerate(("clean", "corrupted", "corrupted − clean")):
        axes[0, j].set_title(name)
    axes[0, 0].set_ylabel(f"CT (HU {window[0]:g} to {window[1]:g})")
    axes[1, 0].set_ylabel(f"PET (SUV 0 to {suv:.1f})")
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(textwrap.fill(title, 110) + f"\naxial slice z = {clean.z_mm:.1f} mm, {where}", fontsize=10)
    return save_png(fig, out_png)
