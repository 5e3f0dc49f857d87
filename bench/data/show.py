"""A picture of one patient: CT, PET and the mask outline in three planes through the primary tumour."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import BenchInputError


def show_patient(files, pid: str, out_png: str | Path) -> Path:
    """Write a 3 × 3 PNG (rows: CT with the mask outline, PET, CT with PET overlay; columns: axial, coronal,
    sagittal) through the centre of the primary tumour (or of the volume without a mask)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    if files is None or files.ct is None or files.pet is None:
        raise BenchInputError(f"patient {pid}: no CT/PET images to show")
    try:
        ct = sitk.DICOMOrient(sitk.ReadImage(str(files.ct)), "LPS")
    except RuntimeError as exc:
        raise BenchInputError(f"{files.ct}: patient {pid}: cannot read the CT ({str(exc).strip().splitlines()[-1]})") from None
    if ct.GetDimension() != 3:
        raise BenchInputError(f"{files.ct}: patient {pid}: the CT is {ct.GetDimension()}-D, expected 3-D")
    # everything on a 1 mm-ish isotropic version of the CT grid, for display only
    spacing = min(ct.GetSpacing())
    size = [int(round(sz * sp / spacing)) for sz, sp in zip(ct.GetSize(), ct.GetSpacing())]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([spacing] * 3)
    ref.SetOrigin(ct.GetOrigin())
    ref.SetDirection(ct.GetDirection())
    ct_a = sitk.GetArrayFromImage(sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000.0))
    try:
        pet_img = sitk.ReadImage(str(files.pet))
    except RuntimeError as exc:
        raise BenchInputError(f"{files.pet}: patient {pid}: cannot read the PET ({str(exc).strip().splitlines()[-1]})") from None
    pet_a = sitk.GetArrayFromImage(sitk.Resample(pet_img, ref, sitk.Transform(), sitk.sitkLinear, 0.0))
    mask_a = None
    if files.mask is not None:
        mask_a = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(files.mask)), ref, sitk.Transform(),
                                                      sitk.sitkNearestNeighbor, 0))
    where = np.argwhere(mask_a == 1) if mask_a is not None and (mask_a == 1).any() else None
    centre = where.mean(axis=0).round().astype(int) if where is not None else np.array(ct_a.shape) // 2

    def planes(a):  # LPS arrays: axial rows run anterior → posterior (anterior up); z flipped so superior is up
        z, y, x = centre
        return [a[z], np.flipud(a[:, y, :]), np.flipud(a[:, :, x])]

    fig, axes = plt.subplots(3, 3, figsize=(10, 10))
    suv_max = max(float(pet_a.max()), 1.0)  # the full range: heterogeneity inside a tumour stays visible
    for j, (c, p) in enumerate(zip(planes(ct_a), planes(pet_a))):
        axes[0, j].imshow(c, cmap="gray", vmin=-200, vmax=300)
        axes[1, j].imshow(p, cmap="hot", vmin=0, vmax=suv_max)
        axes[2, j].imshow(c, cmap="gray", vmin=-200, vmax=300)
        axes[2, j].imshow(np.ma.masked_less(p, 1.5), cmap="hot", alpha=0.6, vmin=0, vmax=suv_max)
    if mask_a is not None:
        for j, m in enumerate(planes(mask_a)):
            for row in (0, 2):
                axes[row, j].contour(m == 1, levels=[0.5], colors="cyan", linewidths=1)
                axes[row, j].contour(m == 2, levels=[0.5], colors="lime", linewidths=1)
    for j, name in enumerate(("axial", "coronal", "sagittal")):
        axes[0, j].set_title(name)
    for i, name in enumerate(("CT + GTVp (cyan) / GTVn (green)", "PET (SUV)", "CT + PET")):
        axes[i, 0].set_ylabel(name)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"{pid}")
    fig.tight_layout()
    out_png = Path(out_png)
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=80)
    except OSError as exc:
        raise BenchInputError(f"--out {out_png}: cannot write the PNG ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return out_png
