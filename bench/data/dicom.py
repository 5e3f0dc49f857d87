"""Import a folder of DICOM studies (CT, PET, RTSTRUCT) into the dataset layout (docs/dicom.md).

    DIR/imagesTr/<PatientID>__CT.nii.gz   int16 Hounsfield units, the CT grid
    DIR/imagesTr/<PatientID>__PT.nii.gz   float32 SUVbw, the PET's own grid
    DIR/labelsTr/<PatientID>.nii.gz       uint8 0 background, 1 GTVp, 2 GTVn on the CT grid (from an RTSTRUCT)
    DIR/provenance/<PatientID>.json       series and study UIDs, the SUV factor and its inputs, ROI names, files
    DIR/study.toml                        the manifest; with the two tables DIR is also a HECKTOR 2022 folder

Files are grouped by their PatientID tag, not by folder. Every problem (a missing tag, PET units without a
conversion, an RTSTRUCT whose ROIs match no pattern, several CT series for one patient, uneven slices …) is
collected over the whole folder with its patient and file, then raised together as one ``BenchInputError``;
the output is written in a temporary folder beside DIR and renamed into place only when there was none, so a
failed import leaves nothing behind.

The SUV factor follows the vendor-neutral recipe of the QIBA/UWMadison pseudo-code: BQML pixel values times
weight (g) over the injected dose decayed from the injection to the scan start (``DecayCorrection`` START)
or not decayed (ADMIN); the scan start is the series date/time unless an acquisition is earlier (then the
earliest acquisition, as for a post-processed series).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE, IMAGES_DIR, LABELS_DIR, Problem, listed
from bench.errors import BenchInputError
from bench.fsutil import name_problem

MANIFEST_FILE = "study.toml"
PROVENANCE_DIR = "provenance"
LABELS = {1: "GTVp", 2: "GTVn"}
DEFAULT_ROI_PATTERNS = {1: (r"^gtv[-_ ]?p|primary",), 2: (r"^gtv[-_ ]?n|node",)}
ROI_MAP_SECTIONS = {"gtvp": 1, "gtvn": 2}

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # a DICOMDIR: an index, not an image

# Slices whose gap differs from the series' median gap by more than this (relative, plus an absolute 5 µm for
# positions written with few decimals) are a missing slice or a second series mixed in.
SPACING_TOLERANCE = 0.01
SPACING_TOLERANCE_MM = 0.005
PHILIPS_SUV_FACTOR = (0x7053, 0x1000)  # Philips private SUV scale factor (PET Units CNTS)


# --- the ROI map ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoiMap:
    """Which ROI names become which label: case-insensitive regular expressions, searched in the name."""

    patterns: dict[int, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROI_PATTERNS))

    def labels(self, name: str) -> list[int]:
        """The labels whose patterns match ``name`` (none, one, or — ambiguous — both)."""
        return [lab for lab, pats in self.patterns.items()
                if any(re.search(p, name.strip(), re.IGNORECASE) for p in pats)]

    def describe(self) -> dict[str, list[str]]:
        return {LABELS[lab]: list(p) for lab, p in sorted(self.patterns.items())}


def load_roi_map(path: str | Path | None) -> RoiMap:
    """The defaults, with each section of the TOML file at ``path`` (``[gtvp] patterns = [...]``,
    ``[gtvn] patterns = [...]``) replacing that label's patterns; ``BenchInputError`` naming the file for an
    unknown section or key, a pattern list that is not a list of strings, or a pattern that does not compile."""
    import tomllib

    if path is None:
        return RoiMap()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchInputError(f"--roi-map {path}: file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchInputError(f"--roi-map {path}: not a readable TOML file ({exc})") from None
    patterns = dict(DEFAULT_ROI_PATTERNS)
    for section, body in data.items():
        if section not in ROI_MAP_SECTIONS:
            raise BenchInputError(f"--roi-map {path}: unknown section [{section}]; use [gtvp] and/or [gtvn]")
        if not isinstance(body, dict) or set(body) != {"patterns"}:
            raise BenchInputError(f"--roi-map {path}: [{section}] must hold exactly one key, patterns = [...]")
        pats = body["patterns"]
        if not isinstance(pats, list) or not pats or not all(isinstance(p, str) and p for p in pats):
            raise BenchInputError(f"--roi-map {path}: [{section}] patterns must be a non-empty list of strings")
        for p in pats:
            try:
                re.compile(p)
            except re.error as exc:
                raise BenchInputError(f"--roi-map {path}: [{section}] pattern {p!r} is not a regular expression "
                                      f"({exc})") from None
        patterns[ROI_MAP_SECTIONS[section]] = tuple(pats)
    return RoiMap(patterns)


# --- publishing a folder all at once ----------------------------------------------------------------------

def check_empty_target(out: Path, option: str = "--out") -> None:
    """Refuse an ``out`` that is a file or a folder with something in it (nothing is ever merged into one)."""
    if out.exists() and not out.is_dir():
        raise BenchInputError(f"{option} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise BenchInputError(f"{option} {out}: the folder is not empty; choose a new or empty folder "
                              f"(nothing was written)")


@contextmanager
def staged_folder(out: Path, option: str = "--out") -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into; renamed to ``out`` when the block ends without an
    exception, removed otherwise, so ``out`` appears complete or not at all."""
    out = Path(out)
    check_empty_target(out, option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    except OSError as exc:
        raise BenchInputError(f"{option} {out}: cannot create a folder beside it ({exc.strerror or exc})") from None
    try:
        yield tmp
        check_empty_target(out, option)  # something may have been written there meanwhile
        if out.is_dir():
            out.rmdir()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- reading headers --------------------------------------------------------------------------------------

@dataclass
class DicomFile:
    """What grouping needs of one file (read without its pixels)."""

    path: Path
    rel: str
    pid: str
    modality: str
    sop_class: str
    study: str
    series: str


class _Problems(list):
    """The problems found so far, each naming its file and patient."""

    def add(self, where: Path | str, pid: str | None, text: str, kind: str) -> None:
        who = f"patient {pid}: " if pid is not None else ""
        self.append(Problem(f"{where}: {who}{text}", kind))


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _scan(src: Path, problems: _Problems) -> tuple[dict[str, list[DicomFile]], list[str]]:
    """Every DICOM file under ``src`` grouped by PatientID, and the files skipped as not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    by_patient: dict[str, list[DicomFile]] = {}
    skipped: list[str] = []
    series_owner: dict[str, tuple[str, str]] = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = str(path.relative_to(src))
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            skipped.append(rel)
            continue
        except Exception as exc:  # a damaged file: pydicom raises many kinds
            problems.add(path, None, f"unreadable DICOM file ({type(exc).__name__}: {exc})", "unreadable file")
            continue
        meta = getattr(ds, "file_meta", None)
        sop_class = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta is not None else "")
        if sop_class == MEDIA_DIRECTORY_STORAGE or "DirectoryRecordSequence" in ds:
            skipped.append(rel)
            continue
        pid = _text(ds, "PatientID")
        if not pid:
            problems.add(path, None, "missing PatientID (0010,0020): the patient cannot be told", "missing tag")
            continue
        why = name_problem(pid)
        if why:
            problems.add(path, None, f"PatientID {pid!r} cannot name a file: it {why}", "PatientID")
            continue
        series = _text(ds, "SeriesInstanceUID")
        if not series:
            problems.add(path, pid, "missing SeriesInstanceUID (0020,000E)", "missing tag")
            continue
        modality = _text(ds, "Modality").upper()
        owner = series_owner.setdefault(series, (pid, modality))
        if owner != (pid, modality):
            problems.add(path, pid, f"mixed series: series {series} holds {owner[1]} files of patient {owner[0]} "
                         f"and this {modality} file", "mixed series")
            continue
        by_patient.setdefault(pid, []).append(DicomFile(path, rel, pid, modality, sop_class,
                                                        _text(ds, "StudyInstanceUID"), series))
    return by_patient, skipped


# --- image series -----------------------------------------------------------------------------------------

@dataclass
class Volume:
    """A series as a 3-D array (z, y, x) of rescaled values with its geometry (LPS, mm)."""

    array: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray  # 3x3, columns: the row, column and slice directions
    datasets: list  # pydicom datasets, sorted along the slice normal
    files: list[DicomFile]

    def image(self, array: np.ndarray):
        """``array`` (z, y, x), on this volume's grid, as a SimpleITK image."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(array)
        img.SetOrigin([float(v) for v in self.origin])
        img.SetSpacing([float(v) for v in self.spacing])
        img.SetDirection([float(v) for v in self.direction.ravel()])
        return img

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (i, j, k) of physical points (n, 3)."""
        return ((points - self.origin) @ self.direction) / self.spacing


def _floats(ds, keyword: str, n: int) -> np.ndarray | None:
    value = ds.get(keyword)
    try:
        out = np.array([float(v) for v in value], float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.all(np.isfinite(out)) else None


def _read_series(files: list[DicomFile], what: str, pid: str, problems: _Problems) -> Volume | None:
    """The series ``files`` as a volume, or None after adding its problems (missing geometry tags, a
    multi-frame file, mixed sizes or orientations, a duplicated, missing or sheared slice)."""
    import pydicom

    n0 = len(problems)
    datasets = []
    for f in files:
        try:
            ds = pydicom.dcmread(f.path)
        except Exception as exc:
            problems.add(f.path, pid, f"{what} slice unreadable ({type(exc).__name__}: {exc})", "unreadable file")
            continue
        missing = [f"{k} {t}" for k, t in (("ImagePositionPatient", "(0020,0032)"),
                                            ("ImageOrientationPatient", "(0020,0037)"),
                                            ("PixelSpacing", "(0028,0030)"), ("Rows", "(0028,0010)"),
                                            ("Columns", "(0028,0011)"), ("PixelData", "(7FE0,0010)"))
                   if ds.get(k) in (None, "")]
        if missing:
            problems.add(f.path, pid, f"{what} slice: missing {', '.join(missing)}", "missing tag")
            continue
        if int(ds.get("NumberOfFrames") or 1) != 1:
            problems.add(f.path, pid, f"{what}: multi-frame (enhanced) images are not supported; export the "
                         f"series as one file per slice", "unsupported")
            continue
        datasets.append((f, ds))
    if len(problems) > n0:
        return None
    if len(datasets) < 2:
        problems.add(files[0].path, pid, f"{what} series {files[0].series} has {len(datasets)} slice(s); a volume "
                     f"needs at least 2", "series")
        return None
    first_f, first = datasets[0]
    iop0, ps0 = _floats(first, "ImageOrientationPatient", 6), _floats(first, "PixelSpacing", 2)
    shape0 = (int(first.Rows), int(first.Columns))
    if iop0 is None or ps0 is None or np.any(ps0 <= 0):
        problems.add(first_f.path, pid, f"{what}: ImageOrientationPatient or PixelSpacing is not valid", "geometry")
        return None
    row, col = iop0[:3], iop0[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        problems.add(first_f.path, pid, f"{what}: ImageOrientationPatient {iop0.tolist()} is not two orthogonal "
                     f"unit vectors", "geometry")
        return None
    normal = np.cross(row, col)
    positions, ipps = [], []
    for f, ds in datasets:
        iop, ps, ipp = (_floats(ds, "ImageOrientationPatient", 6), _floats(ds, "PixelSpacing", 2),
                        _floats(ds, "ImagePositionPatient", 3))
        if iop is None or ipp is None or np.abs(iop - iop0).max() > 1e-4:
            problems.add(f.path, pid, f"mixed series: {what} slice orientation differs from {first_f.path}",
                         "mixed series")
        elif ps is None or np.abs(ps - ps0).max() > 1e-4 or (int(ds.Rows), int(ds.Columns)) != shape0:
            problems.add(f.path, pid, f"mixed series: {what} slice size or pixel spacing differs from "
                         f"{first_f.path}", "mixed series")
        else:
            ipps.append(ipp)
            positions.append(float(ipp @ normal))
    if len(problems) > n0:
        return None
    order = np.argsort(positions, kind="stable")
    datasets = [datasets[k] for k in order]
    pos = np.asarray(positions)[order]
    ipps = np.asarray(ipps)[order]
    steps = np.diff(pos)
    same = np.flatnonzero(steps < 1e-3)
    for k in same:
        problems.add(datasets[k + 1][0].path, pid, f"{what}: two slices at the same position {pos[k]:.3f} mm (also "
                     f"{datasets[k][0].path}): a duplicated slice or two series mixed in one", "mixed series")
    if same.size:
        return None
    median = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - median) > SPACING_TOLERANCE * median + SPACING_TOLERANCE_MM)
    for k in off[:5]:
        problems.add(datasets[k + 1][0].path, pid, f"{what}: inconsistent slice spacing: {steps[k]:.4g} mm from "
                     f"{datasets[k][0].path} where the series' spacing is {median:.4g} mm (a missing slice?)",
                     "slice spacing")
    shear = ipps - ipps[0] - np.outer(pos - pos[0], normal)
    if np.abs(shear).max() > SPACING_TOLERANCE_MM + 1e-3 * float(np.abs(pos[-1] - pos[0])):
        problems.add(datasets[-1][0].path, pid, f"{what}: slices are not stacked along the slice normal (gantry tilt "
                     f"or shear); resample the series first", "geometry")
    if len(problems) > n0:
        return None
    planes = []
    for f, ds in datasets:
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # compressed without a decoder, damaged pixel data
            problems.add(f.path, pid, f"{what}: pixel data cannot be decoded ({type(exc).__name__}: {exc})",
                         "unreadable file")
            continue
        slope = float(ds.get("RescaleSlope") if ds.get("RescaleSlope") not in (None, "") else 1.0)
        intercept = float(ds.get("RescaleIntercept") if ds.get("RescaleIntercept") not in (None, "") else 0.0)
        planes.append(pixels.astype(np.float64) * slope + intercept)
    if len(problems) > n0:
        return None
    spacing = np.array([ps0[1], ps0[0], (pos[-1] - pos[0]) / (len(pos) - 1)])
    return Volume(np.stack(planes), ipps[0], spacing, np.column_stack([row, col, normal]),
                  [ds for _, ds in datasets], [f for f, _ in datasets])


# --- SUV --------------------------------------------------------------------------------------------------

def _date(text: str) -> date | None:
    s = str(text or "").strip().replace(".", "")
    if len(s) != 8 or not s.isdigit():
        return None
    try:
        return date(int(s[:4]), int(s[4:6]), int(s[6:]))
    except ValueError:
        return None


def _time(text: str) -> timedelta | None:
    """A DICOM TM (HH[MM[SS[.FFFFFF]]], or the old HH:MM:SS) as the time since midnight."""
    s = str(text or "").strip().replace(":", "")
    main, _, frac = s.partition(".")
    if len(main) not in (2, 4, 6) or not main.isdigit() or (frac and not frac.isdigit()):
        return None
    hh, mm, ss = int(main[:2]), int(main[2:4] or 0), int(main[4:6] or 0)
    if hh > 23 or mm > 59 or ss > 60:
        return None
    return timedelta(hours=hh, minutes=mm, seconds=ss + (float("0." + frac) if frac else 0.0))


def _datetime(text: str) -> datetime | None:
    """A DICOM DT (YYYYMMDD[HH[MM[SS[.F]]]][±ZZZZ]); the UTC offset is dropped (one site, one clock)."""
    m = re.fullmatch(r"(\d{8})([\d.]*)([+-]\d{4})?", str(text or "").strip())
    if not m:
        return None
    d = _date(m[1])
    t = _time(m[2]) if m[2] else timedelta(0)
    return None if d is None or t is None else datetime(d.year, d.month, d.day) + t


def _at(d: str, t: str) -> datetime | None:
    day, time = _date(d), _time(t)
    return None if day is None or time is None else datetime(day.year, day.month, day.day) + time


def _positive(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _private_float(ds, tag: tuple[int, int]) -> float | None:
    """A vendor-private number, whatever VR the file gave it (DS, FD, or UN bytes of either)."""
    import struct

    elem = ds.get(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        try:
            return _positive(value.decode("ascii").strip("\x00 "))
        except (UnicodeDecodeError, ValueError):
            return _positive(struct.unpack("<d", value)[0]) if len(value) == 8 else None
    if not isinstance(value, str) and hasattr(value, "__len__"):  # a multi-valued element: its first value
        value = value[0] if len(value) else None
    return _positive(value)


class SUVError(Exception):
    """The SUV factor cannot be computed; ``issues`` lists (text, kind) pairs."""

    def __init__(self, issues: list[tuple[str, str]]):
        super().__init__("; ".join(t for t, _ in issues))
        self.issues = issues


def suv_factor(datasets: list) -> tuple[float, dict]:
    """The factor that turns the rescaled pixel values of a PET series (``datasets``, pydicom, any order) into
    SUVbw, and the inputs it came from (for the provenance file); ``SUVError`` listing every tag missing or
    wrong. BQML: weight (g) / (dose decayed to the scan start; not decayed for DecayCorrection ADMIN); GML:
    already SUVbw; CNTS: only with the Philips SUV scale factor (7053,1000)."""
    first = datasets[0]
    units = _text(first, "Units").upper()
    mixed = sorted({_text(ds, "Units").upper() for ds in datasets} - {units})
    if mixed:
        raise SUVError([(f"mixed series: PET Units {units!r} and {mixed} in one series", "mixed series")])
    if units == "GML":
        return 1.0, {"units": units, "formula": "SUVbw = value (Units GML are SUVbw already)"}
    if units == "CNTS":
        factor = _private_float(first, PHILIPS_SUV_FACTOR)
        if factor is None:
            raise SUVError([("PET Units CNTS cannot be converted to SUVbw: no Philips SUV scale factor (7053,1000); "
                             "export the series in BQML", "PET units")])
        return factor, {"units": units, "philips_suv_scale_factor": factor,
                        "formula": "SUVbw = value x (7053,1000)"}
    if units != "BQML":
        raise SUVError([(f"PET Units {units or 'missing'!r} cannot be converted to SUVbw: supported are BQML, GML, "
                         f"and CNTS with the Philips SUV scale factor (7053,1000)", "PET units")])
    issues: list[tuple[str, str]] = []
    weight = _positive(first.get("PatientWeight"))
    if weight is None:
        issues.append(("missing or non-positive PatientWeight (0010,1030): SUVbw needs the weight in kg",
                       "missing tag"))
    decay = _text(first, "DecayCorrection").upper()
    if decay not in ("START", "ADMIN"):
        issues.append((f"DecayCorrection (0054,1102) is {decay or 'missing'!r}: only START and ADMIN are supported",
                       "missing tag" if not decay else "PET units"))
    seq = first.get("RadiopharmaceuticalInformationSequence")
    item = seq[0] if seq else None
    if item is None:
        issues.append(("missing RadiopharmaceuticalInformationSequence (0054,0016): no injected dose", "missing tag"))
        raise SUVError(issues)
    dose = _positive(item.get("RadionuclideTotalDose"))
    if dose is None:
        issues.append(("missing or non-positive RadionuclideTotalDose (0018,1074): SUVbw needs the injected dose in Bq",
                       "missing tag"))
    inputs = {"units": units, "decay_correction": decay, "patient_weight_kg": weight, "injected_dose_bq": dose,
              "radiopharmaceutical": _text(item, "Radiopharmaceutical") or None}
    if decay == "START":
        half_life = _positive(item.get("RadionuclideHalfLife"))
        if half_life is None:
            issues.append(("missing or non-positive RadionuclideHalfLife (0018,1075)", "missing tag"))
        scan, scan_source = _scan_start(datasets)
        if scan is None:
            issues.append(("missing or unreadable SeriesDate/SeriesTime and AcquisitionDate/AcquisitionTime: no scan "
                           "start to decay the dose to", "missing tag"))
        injection, injection_source = None, None
        if _text(item, "RadiopharmaceuticalStartDateTime"):
            injection, injection_source = _datetime(_text(item, "RadiopharmaceuticalStartDateTime")), \
                "RadiopharmaceuticalStartDateTime"
        elif _text(item, "RadiopharmaceuticalStartTime") and scan is not None:
            start = _time(_text(item, "RadiopharmaceuticalStartTime"))
            if start is not None:
                injection = datetime(scan.year, scan.month, scan.day) + start
                injection_source = "RadiopharmaceuticalStartTime on the scan date"
                if injection > scan:  # injected before midnight, scanned after
                    injection -= timedelta(days=1)
                    injection_source += " (the day before: the scan crosses midnight)"
        if injection is None:
            issues.append(("missing or unreadable RadiopharmaceuticalStartDateTime (0018,1078) and "
                           "RadiopharmaceuticalStartTime (0018,1072): no injection time", "missing tag"))
        if issues:
            raise SUVError(issues)
        elapsed = (scan - injection).total_seconds()
        if elapsed < 0:
            raise SUVError([(f"the injection ({injection.isoformat()}) is after the scan start ({scan.isoformat()})",
                             "PET timing")])
        decayed = dose * 2.0 ** (-elapsed / half_life)
        inputs |= {"half_life_s": half_life, "injection": injection.isoformat(), "injection_source": injection_source,
                   "scan_start": scan.isoformat(), "scan_start_source": scan_source, "decay_time_s": elapsed,
                   "decayed_dose_bq": decayed,
                   "formula": "SUVbw = Bq/ml x weight_g / (dose x 2^(-decay_time / half_life))"}
    else:
        if issues:
            raise SUVError(issues)
        decayed = dose
        inputs |= {"decayed_dose_bq": dose, "formula": "SUVbw = Bq/ml x weight_g / dose (decay-corrected to ADMIN)"}
    factor = weight * 1000.0 / decayed
    return factor, inputs | {"suv_factor": factor}


def _scan_start(datasets: list) -> tuple[datetime | None, str | None]:
    """The series date/time, unless an acquisition is earlier (a series re-created after the scan): then the
    earliest acquisition date/time."""
    first = datasets[0]
    series = _at(_text(first, "SeriesDate"), _text(first, "SeriesTime"))
    acquisitions = [a for ds in datasets if (a := _at(_text(ds, "AcquisitionDate") or _text(ds, "SeriesDate"),
                                                      _text(ds, "AcquisitionTime")))]
    earliest = min(acquisitions) if acquisitions else None
    if series is not None and (earliest is None or series <= earliest):
        return series, "SeriesDate/SeriesTime"
    if earliest is not None:
        return earliest, "earliest AcquisitionDate/AcquisitionTime (the series time is later or missing)"
    return None, None


# --- RTSTRUCT ---------------------------------------------------------------------------------------------

def fill_polygon(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels (rows j, columns i) whose centres (i, j) lie inside the closed polygon ``xy`` (n, 2) of
    continuous (i, j) indices, by the even-odd rule on a scan line through each row of centres."""
    out = np.zeros(shape, bool)
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo, hi = max(0, math.ceil(y0.min())), min(shape[0] - 1, math.floor(y0.max()))
    if hi < lo:
        return out
    rows = np.arange(lo, hi + 1, dtype=float)[:, None]
    crosses = ((y0 <= rows) & (rows < y1)) | ((y1 <= rows) & (rows < y0))  # half-open: a vertex counts once
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(crosses, x0 + (rows - y0) * (x1 - x0) / (y1 - y0), np.inf)
    xs.sort(axis=1)
    cols = np.arange(shape[1], dtype=float)
    for r, line in zip(range(lo, hi + 1), xs):
        line = line[np.isfinite(line)]
        if line.size:
            out[r] = np.searchsorted(line, cols, side="right") % 2 == 1
    return out


def _rasterise(path: Path, pid: str, ct: Volume, roi_map: RoiMap, problems: _Problems
               ) -> tuple[np.ndarray, dict] | None:
    """The label map of the RTSTRUCT at ``path`` on the CT grid (contours XOR-ed per slice, so holes stay
    holes; GTVp wins where both overlap), and what was used; None after adding its problems."""
    import pydicom

    n0 = len(problems)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        problems.add(path, pid, f"RTSTRUCT unreadable ({type(exc).__name__}: {exc})", "unreadable file")
        return None
    ct_for = _text(ct.datasets[0], "FrameOfReferenceUID")
    names = {int(r.ROINumber): (_text(r, "ROIName"), _text(r, "ReferencedFrameOfReferenceUID"))
             for r in ds.get("StructureSetROISequence") or [] if r.get("ROINumber") is not None}
    contours = {int(c.ReferencedROINumber): c for c in ds.get("ROIContourSequence") or []
                if c.get("ReferencedROINumber") is not None}
    used: dict[int, list[tuple[int, str, str]]] = {1: [], 2: []}  # label: (ROI number, name, frame of reference)
    unmatched = []
    for number, (name, roi_for) in sorted(names.items()):
        labels = roi_map.labels(name)
        if len(labels) > 1:
            problems.add(path, pid, f"ROI {name!r} matches both the GTVp and GTVn patterns; rename it or pass a "
                         f"--roi-map that tells them apart", "ROI")
        elif labels:
            used[labels[0]].append((number, name, roi_for))
        else:
            unmatched.append(name)
    if not any(used.values()) and len(problems) == n0:
        rois = sorted(n for n, _ in names.values())
        problems.add(path, pid, f"no ROI matches the GTVp or GTVn patterns (ROIs: {rois}; patterns: "
                     f"{roi_map.describe()}); name them or pass --roi-map", "ROI")
    nz, ny, nx = ct.array.shape
    mask = np.zeros((nz, ny, nx), np.uint8)
    roi_voxels: dict[str, int] = {}
    for label in (1, 2):
        layer = np.zeros((nz, ny, nx), bool)
        for number, name, roi_for in used[label]:
            if roi_for and ct_for and roi_for != ct_for:
                problems.add(path, pid, f"ROI {name!r} is drawn in frame of reference {roi_for}, the CT is in "
                             f"{ct_for}", "ROI")
                continue
            roi = np.zeros((nz, ny, nx), bool)
            for contour in (contours.get(number) and contours[number].get("ContourSequence")) or []:
                if _text(contour, "ContourGeometricType").upper() not in ("CLOSED_PLANAR", ""):
                    continue  # points and open lines enclose nothing
                data = _floats(contour, "ContourData", len(contour.get("ContourData") or []))
                if data is None or data.size < 9 or data.size % 3:
                    problems.add(path, pid, f"ROI {name!r}: a contour with unreadable ContourData", "ROI")
                    continue
                ijk = ct.to_index(data.reshape(-1, 3))
                k = int(round(float(np.median(ijk[:, 2]))))
                if np.ptp(ijk[:, 2]) > 0.5:
                    problems.add(path, pid, f"ROI {name!r}: a contour is not in one axial CT slice", "ROI")
                    continue
                if not 0 <= k < nz:
                    problems.add(path, pid, f"ROI {name!r}: a contour at z = {data[2]:.2f} mm lies outside the CT "
                                 f"slices", "ROI")
                    continue
                roi[k] ^= fill_polygon(ijk[:, :2], (ny, nx))
            count = int(roi.sum())
            if count == 0:
                problems.add(path, pid, f"ROI {name!r} is empty: no contour covers a CT voxel centre", "empty ROI")
            roi_voxels[name] = count
            layer |= roi
        mask[layer & (mask == 0)] = label
    if len(problems) > n0:
        return None
    info = {"sop_instance_uid": _text(ds, "SOPInstanceUID"), "series_instance_uid": _text(ds, "SeriesInstanceUID"),
            "study_instance_uid": _text(ds, "StudyInstanceUID"),
            "rois": {LABELS[lab]: [n for _, n, _ in used[lab]] for lab in (1, 2)},
            "roi_voxels": roi_voxels, "unmatched_rois": sorted(unmatched), "patterns": roi_map.describe(),
            "rule": "a CT voxel is in an ROI when its centre lies inside its contours (even-odd over the contours "
                    "of a slice); GTVp wins where GTVp and GTVn overlap",
            "voxels": {LABELS[lab]: int((mask == lab).sum()) for lab in (1, 2)}}
    return mask, info


# --- the import -------------------------------------------------------------------------------------------

@dataclass
class ImportResult:
    """What an import wrote: the patients, those with a mask, the non-DICOM files skipped, whether the tables
    came with it, and imported patients the endpoint table leaves out."""

    out: Path
    patients: list[str]
    with_mask: list[str]
    skipped: list[str]
    has_tables: bool
    not_in_tables: list[str]


def manifest_text(name: str, *, tables: bool, mask: bool, drop: list[str] = ()) -> str:
    """``study.toml``: where the images are and, when the tables are there, which columns are id, time,
    event and centre (the HECKTOR 2022 ones) and which are bookkeeping, not features (``drop``)."""
    quote = json.dumps  # a TOML basic string: JSON's escapes are TOML's
    dataset = [
        "[dataset]",
        f"name = {quote(name)}",
        f"tables = [{quote(CLINICAL_FILE)}, {quote(ENDPOINT_FILE)}]",
        'id = "PatientID"', 'time = "RFS"', 'event = "Relapse"', 'centre = "CenterID"', 'time_unit = "days"',
    ] + ([f"drop = [{', '.join(quote(c) for c in drop)}]"] if drop else [])
    head = ["# Written by `bench data import-dicom`; provenance/<PatientID>.json says where each image came from."]
    if not tables:
        head += ["# No tables yet: copy the clinical table and the endpoint table into this folder under the two",
                 "# names below (or rerun import-dicom with --clinical and --endpoints), then uncomment [dataset]."]
        dataset = [f"# {line}" for line in dataset]
    images = ["[images]", f"ct = {quote(IMAGES_DIR + '/{id}__CT.nii.gz')}",
              f"pet = {quote(IMAGES_DIR + '/{id}__PT.nii.gz')}"]
    if mask:
        images.append(f"mask = {quote(LABELS_DIR + '/{id}.nii.gz')}")
    return "\n".join(head + dataset + [""] + images) + "\n"


def _folder(files: list[DicomFile]) -> Path:
    """The folder that holds all of ``files``."""
    return Path(os.path.commonpath([f.path.parent for f in files]))


def _one_series(files: list[DicomFile], what: str, pid: str, problems: _Problems, where: Path
                ) -> list[DicomFile] | None:
    """The files of the single series of this kind, or None after a problem (several series, or none: the
    problem then names ``where``, the patient's folder)."""
    series: dict[str, list[DicomFile]] = {}
    for f in files:
        series.setdefault(f.series, []).append(f)
    if len(series) > 1:
        listing = "; ".join(f"{uid} (study {fs[0].study}, {len(fs)} file(s), e.g. {fs[0].path})"
                            for uid, fs in series.items())
        problems.add(files[0].path.parent, pid, f"{len(series)} {what} series for one patient: {listing}; keep one "
                     f"(import each study into its own folder)", "several series")
        return None
    if not series:
        problems.add(where, pid, f"no {what} series among the patient's files", "series missing")
        return None
    return next(iter(series.values()))


def _import_patient(pid: str, files: list[DicomFile], src: Path, tmp: Path, roi_map: RoiMap,
                    problems: _Problems, write: bool) -> bool | None:
    """Convert one patient into ``tmp`` (when ``write``); True with a mask, False without, None after problems."""
    import SimpleITK as sitk

    n0 = len(problems)
    by_kind: dict[str, list[DicomFile]] = {"CT": [], "PT": [], "RTSTRUCT": [], "SEG": []}
    ignored = []
    for f in files:
        kind = {CT_IMAGE_STORAGE: "CT", PET_IMAGE_STORAGE: "PT", RT_STRUCTURE_SET_STORAGE: "RTSTRUCT",
                SEGMENTATION_STORAGE: "SEG"}.get(f.sop_class)
        if kind is None and f.modality in ("CT", "PT", "RTSTRUCT", "SEG") and not f.sop_class:
            kind = f.modality
        (by_kind[kind] if kind else ignored).append(f)
    ct_files = _one_series(by_kind["CT"], "CT", pid, problems, _folder(files))
    pt_files = _one_series(by_kind["PT"], "PET", pid, problems, _folder(files))
    rs_files = by_kind["RTSTRUCT"]
    if len(rs_files) > 1:
        listing = ", ".join(str(f.path) for f in rs_files)
        problems.add(rs_files[0].path.parent, pid, f"{len(rs_files)} RTSTRUCT files ({listing}); keep one",
                     "several series")
    if by_kind["SEG"] and not rs_files:
        problems.add(by_kind["SEG"][0].path, pid, "DICOM-SEG is not supported: export the segmentation as an "
                     "RTSTRUCT, or remove the file to import the images without a mask", "unsupported")
    ct = _read_series(ct_files, "CT", pid, problems) if ct_files else None
    pet = _read_series(pt_files, "PET", pid, problems) if pt_files else None
    factor = inputs = None
    if pet is not None:
        try:
            factor, inputs = suv_factor(pet.datasets)
        except SUVError as exc:
            for text, kind in exc.issues:
                problems.add(pet.files[0].path, pid, text, kind)
    labels = None
    if ct is not None and len(rs_files) == 1:
        labels = _rasterise(rs_files[0].path, pid, ct, roi_map, problems)
    if len(problems) > n0:
        return None
    if write:
        hu = np.clip(np.rint(ct.array), -32768, 32767).astype(np.int16)
        sitk.WriteImage(ct.image(hu), str(tmp / IMAGES_DIR / f"{pid}__CT.nii.gz"), True)
        suv = (pet.array * factor).astype(np.float32)
        sitk.WriteImage(pet.image(suv), str(tmp / IMAGES_DIR / f"{pid}__PT.nii.gz"), True)
        if labels is not None:
            sitk.WriteImage(ct.image(labels[0]), str(tmp / LABELS_DIR / f"{pid}.nii.gz"), True)
        rel = lambda fs: [f.rel for f in fs]  # noqa: E731
        record = {
            "PatientID": pid, "source": str(src),
            "study_instance_uids": sorted({f.study for f in files if f.study}),
            "ct": _series_record(ct) | {"files": rel(ct.files)},
            "pet": _series_record(pet) | {"suv": inputs, "files": rel(pet.files)},
            "rtstruct": (labels[1] | {"file": rs_files[0].rel}) if labels is not None else None,
            "ignored_files": rel(ignored) + rel(by_kind["SEG"]),
        }
        (tmp / PROVENANCE_DIR / f"{pid}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return labels is not None


def _series_record(vol: Volume) -> dict:
    first = vol.datasets[0]
    return {"series_instance_uid": _text(first, "SeriesInstanceUID"),
            "study_instance_uid": _text(first, "StudyInstanceUID"),
            "frame_of_reference_uid": _text(first, "FrameOfReferenceUID"), "modality": _text(first, "Modality"),
            "manufacturer": _text(first, "Manufacturer") or None, "slices": len(vol.datasets),
            "size_xyz": [int(vol.array.shape[2]), int(vol.array.shape[1]), int(vol.array.shape[0])],
            "spacing_mm": vol.spacing.tolist(), "origin_mm": vol.origin.tolist(),
            "direction": vol.direction.ravel().tolist()}


def _check_tables(clinical: Path | None, endpoints: Path | None) -> None:
    if (clinical is None) != (endpoints is None):
        raise BenchInputError("--clinical and --endpoints go together: give both tables, or neither")
    for option, path in (("--clinical", clinical), ("--endpoints", endpoints)):
        if path is not None and not Path(path).is_file():
            raise BenchInputError(f"{option} {path}: file not found")


def import_dicom(src: str | Path, out: str | Path, *, roi_map: RoiMap | None = None, clinical: str | Path | None = None,
                 endpoints: str | Path | None = None, progress: bool = False) -> ImportResult:
    """Turn the DICOM studies under ``src`` into the dataset layout at ``out`` (see the module docstring).
    ``clinical``/``endpoints`` (both or neither): HECKTOR 2022 tables, copied in under their HECKTOR names
    and checked with ``load_hecktor``. ``BenchInputError`` listing every problem, with nothing written, if
    there is any; ``out`` must be new or empty."""
    from tqdm.auto import tqdm

    from bench.data.hecktor import load_hecktor

    src, out = Path(src), Path(out)
    roi_map = roi_map or RoiMap()
    if not src.is_dir():
        raise BenchInputError(f"{src}: not a folder (import-dicom reads a folder of DICOM files)")
    _check_tables(clinical and Path(clinical), endpoints and Path(endpoints))
    check_empty_target(out)
    problems = _Problems()
    by_patient, skipped = _scan(src, problems)
    if not by_patient and not problems:
        raise BenchInputError(f"{src}: no DICOM files found ({len(skipped)} other file(s) skipped)")
    with staged_folder(out) as tmp:
        for sub in (IMAGES_DIR, LABELS_DIR, PROVENANCE_DIR):
            (tmp / sub).mkdir()
        with_mask = []
        results = {}
        for pid in tqdm(sorted(by_patient), desc="import-dicom", unit="patient", disable=not progress or None,
                        leave=False):
            results[pid] = _import_patient(pid, by_patient[pid], src, tmp, roi_map, problems, write=not problems)
            if results[pid]:
                with_mask.append(pid)
        without = [pid for pid, r in results.items() if r is False]
        if with_mask and without:
            for pid in without:
                problems.add(_folder(by_patient[pid]), pid, f"no RTSTRUCT, while {len(with_mask)} other patient(s) "
                             f"have one: the layout needs a mask for every patient or for none", "mask missing")
        not_in_tables: list[str] = []
        if clinical is not None and not problems:
            shutil.copyfile(clinical, tmp / CLINICAL_FILE)
            shutil.copyfile(endpoints, tmp / ENDPOINT_FILE)
            try:
                ds = load_hecktor(tmp)
            except BenchInputError as exc:
                for p in getattr(exc, "problems", [str(exc)]):
                    problems.append(Problem(str(p).replace(str(tmp), str(out)), getattr(p, "kind", "tables")))
            else:
                not_in_tables = sorted(set(by_patient) - set(ds.ids))
        if problems:
            text = "\n".join(f"  - {line}" for line in listed(problems))
            exc = BenchInputError(f"import-dicom {src}: {len(problems)} problem(s); nothing was written to "
                                  f"{out}:\n{text}")
            exc.problems = list(problems)
            raise exc
        if not with_mask:
            (tmp / LABELS_DIR).rmdir()
        bookkeeping = [c for c in ("Task 1", "Task 2") if clinical is not None
                       and c in pd.read_csv(tmp / CLINICAL_FILE, nrows=0).columns.str.strip()]
        (tmp / MANIFEST_FILE).write_text(manifest_text(out.name, tables=clinical is not None, mask=bool(with_mask),
                                                       drop=bookkeeping))
    return ImportResult(out, sorted(by_patient), with_mask, skipped, clinical is not None, not_in_tables)


__all__ = ["import_dicom", "ImportResult", "RoiMap", "load_roi_map", "suv_factor", "SUVError", "fill_polygon",
           "manifest_text", "staged_folder", "check_empty_target", "DEFAULT_ROI_PATTERNS", "MANIFEST_FILE",
           "PROVENANCE_DIR"]
