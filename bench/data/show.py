"""A picture of one patient: CT, PET and the mask outline in three planes through the primary tumour."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import BenchInputError


def show_patient(files, pid: str, out_png: str | Path) -> Path:
    """Write a 3 × 3 PNG (rows: CT with the mask outline, PET, CT with PET overlay; columns: axial, coronal,
    sagittal) through the centre of the primary tumour (or of the volume without a mask). ``out_png`` is the
    caller's choice; a name built from the patient id goes through ``default_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from bench.data.images import read_image

    if files is None or files.ct is None or files.pet is None:
        raise BenchInputError(f"patient {pid}: no CT/PET images to show")
    ct = sitk.DICOMOrient(read_image(files.ct, "CT", pid), "LPS")  # whole file checked: no half-zero image
    # everything on a 1 mm-ish isotropic version of the CT grid, for display only
    spacing = min(ct.GetSpacing())
    size = [int(round(sz * sp / spacing)) for sz, sp in zip(ct.GetSize(), ct.GetSpacing())]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing([spacing] * 3)
    ref.SetOrigin(ct.GetOrigin())
    ref.SetDirection(ct.GetDirection())
    ct_a = sitk.GetArrayFromImage(sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000.0))
    pet_img = read_image(files.pet, "PET", pid)
    pet_a = sitk.GetArrayFromImage(sitk.Resample(pet_img, ref, sitk.Transform(), sitk.sitkLinear, 0.0))
    mask_a = None
    if files.mask is not None:
        mask_a = sitk.GetArrayFromImage(sitk.Resample(read_image(files.mask, "mask", pid), ref, sitk.Transform(),
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
    return save_png(fig, out_png)


def save_png(fig, out_png: str | Path) -> Path:
    """Write a matplotlib figure (laid out tight) to ``out_png`` and close it; an unwritable path is a
    ``BenchInputError`` naming it as ``--out``."""
    import matplotlib.pyplot as plt

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


def default_png(pid: str, folder: str | Path = ".") -> Path:
    """``<folder>/<pid>.png``, refused when the id would lead out of ``folder``."""
    from bench.fsutil import path_under, safe_name

    return path_under(Path(folder), safe_name(pid, "patient id") + ".png")
