"""Export a cohort in the HECKTOR 2022 layout (the synthetic one, as generated) as DICOM studies, so the DICOM
import can be tested end to end and shown on data whose truth is known (docs/dicom.md).

Per patient, under ``<out>/<PatientID>/``, one study in one frame of reference:

    CT/CT-NNNN.dcm   CT Image Storage, one file per slice, unsigned 16-bit with RescaleIntercept -1024
                     (signed with intercept 0 when the HU do not fit), slope 1: the HU come back exactly
    PT/PT-NNNN.dcm   PET Image Storage, Units BQML, DecayCorrection START, unsigned 16-bit with a per-slice
                     RescaleSlope (slice maximum / 65535); Bq/ml = SUV x dose decayed to the series start / weight (g)
    RTSTRUCT.dcm     RT Structure Set Storage: ROIs "GTVp" (label 1) and "GTVn" (label 2, when there is one)

and the two HECKTOR CSVs beside the patient folders. Contours follow voxel *boundaries*: each closed planar
polygon traces the outer edges of a connected region of one axial slice (holes as contours of their own), with
its vertices at voxel corners, so no voxel centre lies on a contour and the even-odd "centre inside" rule of
the import gives back exactly the mask that was traced.

UIDs are ``pydicom.uid.generate_uid`` with the source's fingerprint and the patient as entropy, acquisition
times, weights and doses are drawn from the same: the same cohort exports to the same bytes.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.dicom import (CT_IMAGE_STORAGE, PET_IMAGE_STORAGE, RT_STRUCTURE_SET_STORAGE, check_empty_target,
                              staged_folder)
from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE
from bench.errors import BenchInputError
from bench.hashing import content_hash

EXPORTER_VERSION = "1"
MARKER = ".complete"
F18_HALF_LIFE_S = 6586.2
STUDY_DATE = "20200115"
PET_SERIES_TIME = "103000"
CT_SERIES_TIME = "102500"
DEFAULT_WEIGHT_KG = 75.0
STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"  # what an RTSTRUCT's referenced study is an instance of


def ds_text(value: float) -> str:
    """``value`` as a DICOM decimal string (at most 16 characters)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


# --- contours ---------------------------------------------------------------------------------------------

def trace_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """The closed outlines, along pixel edges, of the foreground of a 2-D ``mask`` (rows j, columns i), each
    an (n, 2) array of (i, j) voxel-index coordinates of its corners (half-integers), collinear corners
    dropped. Every boundary edge lies on exactly one outline, so the even-odd rule over all of them gives back
    ``mask`` whatever the nesting (holes, islands in holes, regions touching at a corner)."""
    m = np.pad(np.asarray(mask, bool), 1)
    fg = m[1:-1, 1:-1]
    # directed edges between corner points (x, y) = (i, j) .. (i+1, j+1) of pixel (j, i), foreground on one side
    sides = (((m[:-2, 1:-1]), (0, 0), (1, 0)),   # above is background: top edge, left to right
             ((m[1:-1, 2:]), (1, 0), (1, 1)),    # right: down
             ((m[2:, 1:-1]), (1, 1), (0, 1)),    # below: right to left
             ((m[1:-1, :-2]), (0, 1), (0, 0)))   # left: up
    nxt: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for neighbour, (a0, b0), (a1, b1) in sides:
        jj, ii = np.nonzero(fg & ~neighbour)
        for i, j in zip(ii.tolist(), jj.tolist()):
            nxt.setdefault((i + a0, j + b0), []).append((i + a1, j + b1))
    loops = []
    for start in sorted(nxt):
        while nxt.get(start):
            loop, here, heading = [start], start, None
            while True:
                options = nxt[here]
                if heading is not None and len(options) > 1:  # a pinch: turn towards the foreground, so
                    # regions that touch at a corner get outlines of their own
                    options.sort(key=lambda p: -(heading[0] * (p[1] - here[1]) - heading[1] * (p[0] - here[0])))
                step = options.pop(0)
                heading = (step[0] - here[0], step[1] - here[1])
                here = step
                if here == start:
                    break
                loop.append(here)
            pts = np.array(loop, float)
            turn = np.roll(pts, -1, 0) - pts
            before = pts - np.roll(pts, 1, 0)
            keep = (turn[:, 0] * before[:, 1] - turn[:, 1] * before[:, 0]) != 0
            loops.append(pts[keep] - 0.5)
    return loops


# --- datasets ---------------------------------------------------------------------------------------------

def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["survbench-dicom", EXPORTER_VERSION, *map(str, parts)])


def _base(sop_class: str, sop_uid: str, patient: dict, modality: str, series_uid: str, series_number: int,
          series_time: str, description: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime, ds.SeriesTime, ds.ContentTime = CT_SERIES_TIME, series_time, series_time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "survbench synthetic"
    ds.InstitutionName = patient["centre"]
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic head and neck PET/CT"
    ds.SeriesDescription = description
    ds.PatientName = patient["id"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = patient["sex"]
    if patient["age"] is not None:
        ds.PatientAge = f"{patient['age']:03d}Y"
    ds.StudyInstanceUID = patient["study_uid"]
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    return ds


def _image_plane(ds, img, k: int) -> None:
    """Geometry and pixel description of slice ``k`` of the SimpleITK image ``img``."""
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)
    ds.ImagePositionPatient = [ds_text(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k))]
    ds.ImageOrientationPatient = [ds_text(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    sx, sy, sz = img.GetSpacing()
    ds.PixelSpacing = [ds_text(sy), ds_text(sx)]  # row spacing (between rows), then column spacing
    ds.SliceThickness = ds_text(sz)
    ds.SliceLocation = ds.ImagePositionPatient[2]
    ds.InstanceNumber = k + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = img.GetSize()[1], img.GetSize()[0]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15


def _save(ds, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write_ct(img, patient: dict, folder: Path) -> list:
    import SimpleITK as sitk

    hu = sitk.GetArrayFromImage(img).astype(np.int32)
    unsigned = hu.min() >= -1024 and hu.max() <= 65535 - 1024
    stored = (hu + 1024).astype("<u2") if unsigned else np.clip(hu, -32768, 32767).astype("<i2")
    series = _uid(patient["identity"], patient["id"], "CT series")
    slices = []
    for k in range(hu.shape[0]):
        sop = _uid(patient["identity"], patient["id"], "CT", k)
        ds = _base(CT_IMAGE_STORAGE, sop, patient, "CT", series, 2, CT_SERIES_TIME, "CT")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = patient["frame_uid"]
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionDate, ds.AcquisitionTime = STUDY_DATE, CT_SERIES_TIME
        ds.KVP = "120"
        _image_plane(ds, img, k)
        ds.PixelRepresentation = 0 if unsigned else 1
        ds.RescaleIntercept = "-1024" if unsigned else "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        _save(ds, folder / "CT" / f"CT-{k + 1:04d}.dcm")
        slices.append(ds)
    return slices


def _write_pet(img, patient: dict, folder: Path) -> None:
    import SimpleITK as sitk

    suv = sitk.GetArrayFromImage(img).astype(np.float64)
    if suv.min() < 0:
        raise BenchInputError(f"patient {patient['id']}: the PET has negative SUV; the export writes unsigned values")
    acq = patient["acquisition"]
    bqml = suv * acq["decayed_dose_bq"] / (acq["weight_kg"] * 1000.0)
    series = _uid(patient["identity"], patient["id"], "PT series")
    info = _radiopharmaceutical(acq)
    for k in range(suv.shape[0]):
        top = float(bqml[k].max())
        slope = float(ds_text(top / 65535.0)) if top > 0 else 1.0
        stored = np.clip(np.rint(bqml[k] / slope), 0, 65535).astype("<u2")
        sop = _uid(patient["identity"], patient["id"], "PT", k)
        ds = _base(PET_IMAGE_STORAGE, sop, patient, "PT", series, 3, PET_SERIES_TIME, "PET AC")
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.FrameOfReferenceUID = patient["frame_uid"]
        ds.PositionReferenceIndicator = ""
        ds.AcquisitionDate, ds.AcquisitionTime = STUDY_DATE, PET_SERIES_TIME
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.Units = "BQML"
        ds.CountsSource = "EMISSION"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
        ds.DecayCorrection = "START"
        ds.RandomsCorrectionMethod = "DLYD"
        ds.ReconstructionMethod = "OSEM"
        ds.NumberOfSlices = suv.shape[0]
        ds.ImageIndex = k + 1
        ds.FrameReferenceTime = "0"
        ds.ActualFrameDuration = 180000
        ds.PatientWeight = ds_text(acq["weight_kg"])
        ds.RadiopharmaceuticalInformationSequence = [info]
        _image_plane(ds, img, k)
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = ds_text(slope)
        ds.PixelData = stored.tobytes()
        _save(ds, folder / "PT" / f"PT-{k + 1:04d}.dcm")


def _radiopharmaceutical(acq: dict):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.Radiopharmaceutical = "Fludeoxyglucose"
    item.RadiopharmaceuticalStartTime = acq["injection_time"]
    item.RadiopharmaceuticalStartDateTime = STUDY_DATE + acq["injection_time"]
    item.RadionuclideTotalDose = ds_text(acq["dose_bq"])
    item.RadionuclideHalfLife = ds_text(F18_HALF_LIFE_S)
    item.RadionuclidePositronFraction = "0.9673"
    return item


def _write_rtstruct(lab_img, ct_slices: list, patient: dict, folder: Path) -> list[str]:
    """The RTSTRUCT of the label map ``lab_img`` (on the CT grid); the ROI names written."""
    import SimpleITK as sitk
    from pydicom.dataset import Dataset

    labels = sitk.GetArrayFromImage(lab_img)
    sop = _uid(patient["identity"], patient["id"], "RTSTRUCT")
    ds = _base(RT_STRUCTURE_SET_STORAGE, sop, patient, "RTSTRUCT",
               _uid(patient["identity"], patient["id"], "RTSTRUCT series"), 4, CT_SERIES_TIME, "reference contours")
    ds.StructureSetLabel = "GTV"
    ds.StructureSetDate, ds.StructureSetTime = STUDY_DATE, CT_SERIES_TIME
    contour_images = []
    for s in ct_slices:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = s.SOPClassUID, s.SOPInstanceUID
        contour_images.append(ref)
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = ct_slices[0].SeriesInstanceUID
    series_ref.ContourImageSequence = contour_images
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_MANAGEMENT
    study_ref.ReferencedSOPInstanceUID = patient["study_uid"]
    study_ref.RTReferencedSeriesSequence = [series_ref]
    frame = Dataset()
    frame.FrameOfReferenceUID = patient["frame_uid"]
    frame.RTReferencedStudySequence = [study_ref]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    rois, roi_contours, observations, names = [], [], [], []
    for number, (label, name, colour) in enumerate(((1, "GTVp", [255, 0, 0]), (2, "GTVn", [0, 0, 255])), start=1):
        if not (labels == label).any():
            continue  # no node: no ROI (an ROI without contours is refused on import)
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, patient["frame_uid"], name
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(roi)
        contours = []
        for k in np.flatnonzero((labels == label).any(axis=(1, 2))):
            for loop in trace_outlines(labels[k] == label):
                points = [lab_img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(k)))
                          for x, y in loop]
                c = Dataset()
                ref = Dataset()
                ref.ReferencedSOPClassUID = ct_slices[k].SOPClassUID
                ref.ReferencedSOPInstanceUID = ct_slices[k].SOPInstanceUID
                c.ContourImageSequence = [ref]
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(points)
                c.ContourData = [ds_text(v) for p in points for v in p]
                contours.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = colour
        rc.ReferencedROINumber = number
        rc.ContourSequence = contours
        roi_contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType = "GTV"
        obs.ROIInterpreter = ""
        observations.append(obs)
        names.append(name)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = roi_contours
    ds.RTROIObservationsSequence = observations
    _save(ds, folder / "RTSTRUCT.dcm")
    return names


# --- the cohort -------------------------------------------------------------------------------------------

def acquisition(identity: str, pid: str, weight_kg: float | None) -> dict:
    """The PET acquisition a patient's DICOM records, drawn from (identity, patient): the weight from the
    clinical table (75 kg where it is missing), 3.0-4.5 MBq/kg of F-18 FDG injected 55-75 min before the series
    start, and the dose decayed to it — computed from the values exactly as the DICOM text holds them."""
    rng = np.random.default_rng(int(content_hash([identity, pid, "acquisition"], 12), 16))
    known = weight_kg is not None and math.isfinite(weight_kg) and weight_kg > 0
    weight = float(ds_text(weight_kg if known else DEFAULT_WEIGHT_KG))
    dose = float(ds_text(round(weight * rng.uniform(3.0, 4.5) * 1e6, -3)))
    delay_s = int(rng.integers(55 * 60, 75 * 60 + 1))
    series_s = int(PET_SERIES_TIME[:2]) * 3600 + int(PET_SERIES_TIME[2:4]) * 60 + int(PET_SERIES_TIME[4:])
    t = series_s - delay_s
    injection = f"{t // 3600:02d}{t // 60 % 60:02d}{t % 60:02d}"
    half_life = float(ds_text(F18_HALF_LIFE_S))
    return {"weight_kg": weight, "dose_bq": dose, "injection_time": injection, "decay_time_s": delay_s,
            "decayed_dose_bq": dose * 2.0 ** (-delay_s / half_life)}


def _patients(ds, ids: list[str]) -> list[dict]:
    clin = ds.clinical
    out = []
    for pid in ids:
        row = clin.loc[pid]
        sex = str(row.get("Gender", "")) if pd.notna(row.get("Gender", np.nan)) else ""
        age = row.get("Age", np.nan)
        weight = row.get("Weight", np.nan)
        out.append({"id": pid, "centre": str(ds.centres[pid]), "sex": sex if sex in ("M", "F") else "O",
                    "age": int(age) if pd.notna(age) and 0 <= age < 1000 else None,
                    "weight": float(weight) if pd.notna(weight) else None})
    return out


def export_dicom(source: str | Path, out: str | Path, *, patients: list[str] | None = None,
                 progress: bool = False) -> Path:
    """Write the cohort at ``source`` (HECKTOR 2022 layout with images) as DICOM to ``out`` (see the module
    docstring), all at once: into a folder beside ``out``, renamed when done. ``patients``: a subset (the two
    CSVs then hold those rows only). An ``out`` holding the same export is kept; another non-empty one is
    refused."""
    import SimpleITK as sitk
    from tqdm.auto import tqdm

    from bench.data.hecktor import load_hecktor

    source, out = Path(source), Path(out)
    ds = load_hecktor(source)
    if ds.images is None:
        raise BenchInputError(f"{source}: the cohort has no images to export")
    ids = list(ds.ids) if patients is None else list(patients)
    unknown = sorted(set(ids) - set(ds.ids))
    if unknown:
        raise BenchInputError(f"patient(s) {unknown[:10]} are not in {source}")
    stamp = {"exporter_version": EXPORTER_VERSION, "source_fingerprint": ds.fingerprint, "patients": ids}
    marker = out / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return out
        except ValueError:
            pass
    check_empty_target(out)
    with staged_folder(out) as tmp:
        for patient in tqdm(_patients(ds, ids), desc="DICOM export", unit="patient", disable=not progress or None,
                            leave=False):
            pid = patient["id"]
            files = ds.images[pid]
            patient |= {"identity": ds.fingerprint, "study_uid": _uid(ds.fingerprint, pid, "study"),
                        "frame_uid": _uid(ds.fingerprint, pid, "frame of reference"),
                        "acquisition": acquisition(ds.fingerprint, pid, patient["weight"])}
            folder = tmp / pid
            ct_slices = _write_ct(sitk.ReadImage(str(files.ct)), patient, folder)
            _write_pet(sitk.ReadImage(str(files.pet)), patient, folder)
            if files.mask is not None:
                _write_rtstruct(sitk.ReadImage(str(files.mask)), ct_slices, patient, folder)
        for name in (CLINICAL_FILE, ENDPOINT_FILE):
            table = pd.read_csv(source / name, dtype=str, keep_default_na=False)
            if patients is None:
                shutil.copyfile(source / name, tmp / name)
            else:
                table[table.PatientID.isin(ids)].to_csv(tmp / name, index=False, lineterminator="\n")
        (tmp / MARKER).write_text(json.dumps(stamp) + "\n")
    return out


__all__ = ["export_dicom", "trace_outlines", "acquisition", "F18_HALF_LIFE_S", "EXPORTER_VERSION"]
