"""Image checks. ``bench data verify`` checks a HECKTOR 2022 folder thoroughly — every CSV problem the loader
finds, then every image: complete (the whole ``.nii.gz`` decompressed, CRC and length checked), readable,
3-D, plausible spacing, mask on the CT grid with labels in {0, 1, 2}, PET overlapping the CT's field of view.
``check_images`` runs the same per-patient checks before a run fits anything, and remembers the patients
that passed by the content of their files, so a second run costs a stat and a small read per file. Every
problem names its patient and file."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.data.hecktor import MAX_LISTED_PROBLEMS, Problem, listed
from bench.data.images import Header, ImageFileError, read_header, read_image
from bench.errors import BenchInputError

SPACING_RANGE_MM = (0.2, 12.0)
LABELS = {0, 1, 2}
MIN_PET_COVER = 0.5
CHECK_VERSION = "1"  # part of the key of every remembered pass: bump when check_patient checks more


def _same_grid(a: Header, b: Header) -> bool:
    return (a.size == b.size and np.allclose(a.spacing, b.spacing, atol=1e-3)
            and np.allclose(a.origin, b.origin, atol=1e-2) and np.allclose(a.direction, b.direction, atol=1e-4))


def check_patient(pid: str, files) -> list[Problem]:
    """Every problem of one patient's CT, PET and mask (None entries skipped), each naming file and patient."""
    problems: list[Problem] = []
    headers: dict[str, Header] = {}
    mask_labels = None
    for kind, path in (("CT", files.ct), ("PET", files.pet), ("mask", files.mask)):
        if path is None:
            continue
        try:
            if kind == "mask":  # the label set needs the voxels; the CT and PET only their headers
                import SimpleITK as sitk

                img = read_image(path, kind, pid)
                mask_labels = set(np.unique(sitk.GetArrayViewFromImage(img)).tolist())
                header = Header(tuple(img.GetSize()), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
            else:
                header = read_header(path, kind, pid)
        except ImageFileError as exc:
            problems.append(Problem(str(exc), exc.kind))
            continue
        sp = header.spacing
        if not all(SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in sp):
            problems.append(Problem(f"{path}: patient {pid}: {kind} spacing {tuple(round(s, 3) for s in sp)} mm is "
                                    f"outside {SPACING_RANGE_MM[0]}–{SPACING_RANGE_MM[1]} mm", "spacing"))
        headers[kind] = header
    ct, pet, mask = headers.get("CT"), headers.get("PET"), headers.get("mask")
    if mask_labels is not None and not mask_labels <= LABELS:
        problems.append(Problem(f"{files.mask}: patient {pid}: labels {sorted(mask_labels)}, expected only 0, "
                                f"1 (GTVp), 2 (GTVn)", "labels"))
    if mask is not None and ct is not None and not _same_grid(mask, ct):
        problems.append(Problem(
            f"{files.mask}: patient {pid}: mask geometry (size {mask.size}, spacing "
            f"{tuple(round(s, 3) for s in mask.spacing)}) differs from the CT's (size {ct.size}, spacing "
            f"{tuple(round(s, 3) for s in ct.spacing)}); the mask must be on the CT grid", "mask geometry"))
    if ct is not None and pet is not None:
        (clo, chi), (plo, phi) = ct.bounds(), pet.bounds()
        overlap = np.clip(np.minimum(chi, phi) - np.maximum(clo, plo), 0, None)
        cover = float(np.prod(overlap / np.maximum(chi - clo, 1e-6)))
        if cover < MIN_PET_COVER:
            problems.append(Problem(f"{files.pet}: patient {pid}: PET covers {cover:.0%} of the CT's field of view "
                                    f"(origins or directions disagree?)", "PET position"))
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


def _workers() -> int:
    from bench.parallel import available_cpus

    return available_cpus()


def verify(path: str | Path, *, progress: bool = True) -> tuple[int, list[str], list[str]]:
    """(patients, problems, notes). Every problem is returned (a ``Problem``: text with a ``kind``; list them
    with ``bench.data.hecktor.listed``): the loader's CSV and file checks first, then the checks of every
    image found on disk (run even when the CSVs are broken)."""
    from tqdm.auto import tqdm

    from bench.data.hecktor import load_hecktor

    root = Path(path).expanduser()
    if not root.is_dir():
        return 0, [Problem(f"{root}: no such folder", "file missing")], []
    problems: list[str] = []
    notes: list[str] = []
    n = 0
    try:
        n = len(load_hecktor(root, max_listed=None).ids)
    except BenchInputError as exc:
        problems += getattr(exc, "problems", None) or [Problem(str(exc))]
    if not (root / "imagesTr").is_dir():
        notes.append("no imagesTr/ folder: a clinical-only dataset, no image was checked")
        return n, problems, notes
    files = _files_on_disk(root)
    if not files:
        notes.append("imagesTr/ holds no <id>__CT.nii.gz file: no image was checked")
    with ThreadPoolExecutor(max_workers=_workers()) as pool:  # zlib and SimpleITK release the GIL
        results = pool.map(lambda item: check_patient(*item), files.items())
        for res in tqdm(results, total=len(files), desc="verify", unit="patient",
                        disable=not progress or None, leave=False):
            problems.extend(res)
    return n, problems, notes


def check_images(dataset, ids=None, *, cache: Path | None = None, progress: bool = True) -> int:
    """Check the images of patients ``ids`` (default: all) of ``dataset`` as ``bench data verify`` does —
    complete and readable 3-D files, labels in {0, 1, 2}, mask on the CT grid, PET over the CT — and raise
    ``BenchInputError`` listing the problems (each naming patient and file) when any is found. A patient
    that passed is remembered under ``<cache>/checks/images/`` by the sha256 of its files (memoised by their
    stat, shared with the image pipeline's cache keys), so a second run reads no image. Returns the number
    of patients checked now; a clinical-only dataset (no images) has nothing to check."""
    from tqdm.auto import tqdm

    from bench.fsutil import atomic_path, file_digest
    from bench.hashing import content_hash

    if dataset.images is None:
        return 0
    if cache is None:
        from bench.data import cache_dir

        cache = cache_dir()
    memo = Path(cache) / "pipeline" / "file-hashes"
    passed = Path(cache) / "checks" / "images"
    ids = list(dataset.ids if ids is None else ids)

    def one(pid: str) -> tuple[list[Problem], bool]:
        files = dataset.images[pid]
        digests = {}
        for kind, path in (("CT", files.ct), ("PET", files.pet), ("mask", files.mask)):
            try:
                digests[kind] = None if path is None else file_digest(Path(path), memo)
            except OSError as exc:
                return [Problem(f"{path}: patient {pid}: {kind} cannot be read ({exc.strerror or exc})",
                                "unreadable")], True
        marker = passed / f"{content_hash({'check': CHECK_VERSION} | digests, 24)}.ok"
        if marker.is_file():
            return [], False
        found = check_patient(pid, files)
        if not found:
            with atomic_path(marker, ".ok") as tmp:
                tmp.write_text(f"{pid}\n")
        return found, True

    problems: list[Problem] = []
    checked = 0
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for found, fresh in tqdm(pool.map(one, ids), total=len(ids), desc="image check", unit="patient",
                                 disable=not progress or None, leave=False):
            problems += found
            checked += fresh
    if problems:
        lines = "\n".join(f"  - {line}" for line in listed(problems, MAX_LISTED_PROBLEMS))
        raise BenchInputError(f"dataset {dataset.name}: {len(problems)} image problem(s), nothing was run (`bench data "
                              f"verify {dataset.root}` checks the whole folder):\n{lines}")
    return checked


__all__ = ["check_images", "check_patient", "verify", "SPACING_RANGE_MM"]
