"""Reading image files without trusting them: a truncated or corrupt ``.nii.gz`` must not read as an image
that is half zeros, and a file that is not a 3-D image must be named as bad input, not fail inside a worker.

``integrity_problem(path)`` decompresses a ``.nii.gz`` completely (gzip checks its CRC and length at the end
of the stream) and compares the NIfTI header's data size with what the file holds; ``read_image`` and
``read_header`` run it, then SimpleITK, and raise ``ImageFileError`` (a ``BenchInputError``) naming the file
(and the patient, when given) for an unreadable, truncated, non-NIfTI or not 3-D image.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchInputError

_CHUNK = 1 << 20
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


class ImageFileError(BenchInputError):
    """An image file that cannot be used; ``kind`` says why in one word ("unreadable", "not 3-D")."""

    def __init__(self, message: str, kind: str = "unreadable"):
        super().__init__(message)
        self.kind = kind


def _where(path, what: str, pid: str | None) -> str:
    return f"{path}: patient {pid}: {what}" if pid is not None else f"{path}: {what}"


def _nifti_size_problem(head: bytes, total: int) -> str | None:
    """Why a (decompressed) NIfTI-1/2 stream of ``total`` bytes starting with ``head`` is not a whole image."""
    if len(head) < 348:
        return f"not a NIfTI image ({total} bytes, shorter than a NIfTI header)"
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
        if sizeof_hdr == 348 and head[344:347] == b"n+1":
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if sizeof_hdr == 540 and head[4:7] == b"n+2" and len(head) >= 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return "not a NIfTI-1/2 single-file image (no n+1/n+2 header)"
    n = dims[0]
    if not 1 <= n <= 7 or any(d < 1 for d in dims[1:n + 1]) or bitpix <= 0 or offset < 0:
        return f"damaged NIfTI header (dim {list(dims[:n + 1]) if 0 <= n <= 7 else dims[0]}, bitpix {bitpix})"
    expected = offset + int(np.prod(dims[1:n + 1], dtype=np.int64)) * bitpix // 8
    if total < expected:
        return f"truncated: {total} bytes of image data where the header announces {expected}"
    return None


def integrity_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a complete image file, or None. ``.nii.gz``: the whole gzip stream is decompressed
    (CRC and length checked) and its NIfTI header compared with the data it holds; ``.nii``: header against
    file size. Other formats are left to the image reader."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(_NIFTI_SUFFIXES):
        return None
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
            fh.seek(0)
            if magic != b"\x1f\x8b":  # not compressed (ITK reads such a .nii.gz too): check it as a .nii
                head = fh.read(544)
                fh.seek(0, 2)
                return _nifti_size_problem(head, fh.tell())
            head, total = b"", 0
            with gzip.GzipFile(fileobj=fh) as gz:
                for block in iter(lambda: gz.read(_CHUNK), b""):
                    if len(head) < 544:
                        head += block[: 544 - len(head)]
                    total += len(block)
    except EOFError:
        return "truncated: the gzip stream ends early"
    except (gzip.BadGzipFile, zlib.error) as exc:
        return f"damaged gzip stream ({exc})"
    except OSError as exc:
        return f"cannot be opened ({exc.strerror or exc})"
    return _nifti_size_problem(head, total)


@dataclass(frozen=True)
class Header:
    """An image's geometry, read from its header."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical (x, y, z) extent of the voxel centres: min and max corner."""
        d = np.asarray(self.direction, float).reshape(3, 3)
        corners = np.array([[i * (s - 1) for i, s in zip(c, self.size)] for c in np.ndindex(2, 2, 2)], float)
        pts = np.asarray(self.origin, float) + (corners * np.asarray(self.spacing, float)) @ d.T
        return pts.min(0), pts.max(0)


def _reader_error(exc: RuntimeError) -> str:
    text = str(exc).strip()
    return (text.splitlines()[-1] if text else "unreadable")[:160]


def read_header(path: str | Path, what: str = "image", pid: str | None = None, *, check: bool = True) -> Header:
    """The 3-D geometry of the image at ``path`` (after the full integrity check unless ``check`` is False);
    ``ImageFileError`` naming the file for a damaged, unreadable or not 3-D one."""
    import SimpleITK as sitk

    if check:
        problem = integrity_problem(path)
        if problem:
            raise ImageFileError(f"{_where(path, what, pid)} cannot be read ({problem})")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageFileError(f"{_where(path, what, pid)} cannot be read ({_reader_error(exc)})") from None
    if reader.GetDimension() != 3:
        raise ImageFileError(f"{_where(path, what, pid)} is {reader.GetDimension()}-D, expected 3-D", "not 3-D")
    return Header(tuple(int(s) for s in reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                  tuple(reader.GetDirection()))


def read_image(path: str | Path, what: str = "image", pid: str | None = None, *, check: bool = True):
    """The 3-D SimpleITK image at ``path``, after the full integrity check (unless ``check`` is False: the
    caller has just run it); ``ImageFileError`` naming the file (and ``pid``) otherwise."""
    import SimpleITK as sitk

    if check:
        problem = integrity_problem(path)
        if problem:
            raise ImageFileError(f"{_where(path, what, pid)} cannot be read ({problem})")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageFileError(f"{_where(path, what, pid)} cannot be read ({_reader_error(exc)})") from None
    if img.GetDimension() != 3:
        raise ImageFileError(f"{_where(path, what, pid)} is {img.GetDimension()}-D, expected 3-D", "not 3-D")
    return img
