"""``bench data verify``: check a HECKTOR 2022 folder thoroughly — every CSV problem the loader finds, then
every image read and compared: readable, 3-D, plausible spacing, mask on the CT grid with labels in
{0, 1, 2}, PET overlapping the CT's field of view. Every problem names its patient and file."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.errors import BenchInputError

SPACING_RANGE_MM = (0.2, 12.0)


def _geometry(img) -> tuple:
    return img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection()


def _bounds(img) -> tuple[np.ndarray, np.ndarray]:
    corners = [img.TransformIndexToPhysicalPoint([i * (s - 1) for i, s in zip(c, img.GetSize())])
               for c in np.ndindex(2, 2, 2)]
    pts = np.asarray(corners)
    return pts.min(0), pts.max(0)


def check_patient(pid: str, files) -> list[str]:
    import SimpleITK as sitk

    problems, images = [], {}
    for kind, path in (("CT", files.ct), ("PET", files.pet), ("mask", files.mask)):
        if path is None:
            continue
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            problems.append(f"{path}: patient {pid}: {kind} cannot be read ({first[:120]})")
            continue
        if img.GetDimension() != 3:
            problems.append(f"{path}: patient {pid}: {kind} is {img.GetDimension()}-D, expected 3-D")
            continue
        sp = img.GetSpacing()
        if not all(SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in sp):
            problems.append(f"{path}: patient {pid}: {kind} spacing {tuple(round(s, 3) for s in sp)} mm is outside "
                            f"{SPACING_RANGE_MM[0]}–{SPACING_RANGE_MM[1]} mm")
        images[kind] = img
    ct, pet, mask = images.get("CT"), images.get("PET"), images.get("mask")
    if mask is not None:
        labels = set(np.unique(sitk.GetArrayViewFromImage(mask)).tolist())
        if not labels <= {0, 1, 2}:
            problems.append(f"{files.mask}: patient {pid}: labels {sorted(labels)}, expected only 0, 1 (GTVp), 2 (GTVn)")
        if ct is not None:
            gm, gc = _geometry(mask), _geometry(ct)
            if gm[0] != gc[0] or not np.allclose(gm[1], gc[1], atol=1e-3) or not np.allclose(gm[2], gc[2], atol=1e-2) \
                    or not np.allclose(gm[3], gc[3], atol=1e-4):
                problems.append(f"{files.mask}: patient {pid}: mask geometry (size {gm[0]}, spacing "
                                f"{tuple(round(s, 3) for s in gm[1])}) differs from the CT's (size {gc[0]}, spacing "
                                f"{tuple(round(s, 3) for s in gc[1])}); the mask must be on the CT grid")
    if ct is not None and pet is not None:
        (clo, chi), (plo, phi) = _bounds(ct), _bounds(pet)
        overlap = np.clip(np.minimum(chi, phi) - np.maximum(clo, plo), 0, None)
        ct_extent = np.maximum(chi - clo, 1e-6)
        if np.prod(overlap / ct_extent) < 0.5:
            problems.append(f"{files.pet}: patient {pid}: PET covers {np.prod(overlap / ct_extent):.0%} of the CT's "
                            f"field of view (origins or directions disagree?)")
    return problems


def _files_on_disk(root: Path) -> dict:
    """Every patient with a CT in imagesTr/, with whichever PET and mask exist (the CSVs may be broken)."""
    from bench.data.cohort import ImageFiles

    out = {}
    for ct in sorted((root / "imagesTr").glob("*__CT.nii.gz")):
        pid = ct.name[: -len("__CT.nii.gz")]
        pet = root / "imagesTr" / f"{pid}__PT.nii.gz"
        mask = root / "labelsTr" / f"{pid}.nii.gz"
        out[pid] = ImageFiles(ct, pet if pet.is_file() else None, mask if mask.is_file() else None)
    return out


def verify(path: str | Path, *, progress: bool = True) -> tuple[int, list[str], list[str]]:
    """(patients, problems, notes). Every problem is listed: the loader's CSV and file checks first, then
    the checks of every image found on disk (run even when the CSVs are broken)."""
    from tqdm.auto import tqdm

    from bench.data.hecktor import load_hecktor

    root = Path(path).expanduser()
    if not root.is_dir():
        return 0, [f"{root}: no such folder"], []
    problems: list[str] = []
    notes: list[str] = []
    n = 0
    try:
        n = len(load_hecktor(root, max_listed=None).ids)
    except BenchInputError as exc:
        problems += [ln.strip()[2:] for ln in str(exc).splitlines()[1:] if ln.strip().startswith("- ")] or [str(exc)]
    if not (root / "imagesTr").is_dir():
        notes.append("no imagesTr/ folder: a clinical-only dataset, no image was checked")
        return n, problems, notes
    files = _files_on_disk(root)
    if not files:
        notes.append("imagesTr/ holds no <id>__CT.nii.gz file: no image was checked")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # SimpleITK releases the GIL
        results = pool.map(lambda item: check_patient(*item), files.items())
        for res in tqdm(results, total=len(files), desc="verify", unit="patient",
                        disable=not progress or None, leave=False):
            problems.extend(res)
    return n, problems, notes
