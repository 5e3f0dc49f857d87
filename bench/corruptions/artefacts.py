"""The image artefacts themselves: one function per corruption type, on native images (CT in HU, PET in SUV).

Array functions take and return (z, y, x) numpy arrays as SimpleITK gives them; image functions take and
return SimpleITK images on the input's grid (geometry copied). A CT keeps its pixel type (integers rounded and
clipped, as a scanner stores them); a PET comes back as float32. Randomness comes only from the ``rng``
passed in, so a realisation is fixed by the key its caller draws the generator from.
"""
from __future__ import annotations

import math

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548: a Gaussian's FWHM over its sd
AIR_HU = -1000.0  # a missing CT's background
GAUSSIAN_TRUNCATE = 4.0  # MONAI's default kernel half-width, in sd

# Dental metal (``metal_streaks``): what a filling looks like and how its streaks fall off.
DENTAL_HU = 1500.0  # enamel, dentine and fillings: denser than cortical bone (about 1000 HU)
METAL_HU = 3071.0  # a filling saturates the CT scale (12-bit ceiling)
FILLING_RADIUS_MM = 2.0
STREAKS_PER_SOURCE = 8  # lines through a source, evenly spaced in angle, alternately bright and dark
STREAK_SD_MM = 1.0  # sd of a streak's profile across the line
STREAK_DECAY_MM = 40.0  # a streak's amplitude falls as exp(-distance / decay) from its source
STREAK_SLAB_SD_MM = 2.0  # streaks fade over the neighbouring slices as a Gaussian in z


def like_input(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in the input's pixel type: integers rounded and clipped to the type's range, floats cast."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def ct_gaussian(ct: np.ndarray, sigma_x_range: float, rng: np.random.Generator) -> np.ndarray:
    """CT + N(0, (sigma_x_range · (max − min))²), in the input's dtype (integers rounded and clipped)."""
    a = ct.astype(np.float64)
    noisy = a + rng.normal(0.0, sigma_x_range * float(a.max() - a.min()), a.shape)
    return like_input(noisy, ct.dtype)


def pet_poisson(pet: np.ndarray, counts_per_suv: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson(max(SUV, 0) · counts_per_suv) / counts_per_suv, as float32."""
    lam = np.clip(pet.astype(np.float64), 0.0, None) * counts_per_suv
    return (rng.poisson(lam) / counts_per_suv).astype(np.float32)


def gaussian_psf(pet: np.ndarray, fwhm_mm: float, spacing_zyx) -> np.ndarray:
    """PET convolved with an isotropic Gaussian of ``fwhm_mm`` (sd = FWHM / 2.3548 mm, in voxels per axis),
    as float32: a lower-resolution scanner, whose PSF adds to the native one in quadrature. MONAI's
    ``GaussianSmooth`` does the convolution; the edges are padded by replication first, so activity that
    the field of view cuts off is not read as zero."""
    out = pet.astype(np.float32)
    if fwhm_mm <= 0:
        return out
    from monai.transforms import GaussianSmooth

    sigma = [fwhm_mm / FWHM_PER_SIGMA / float(s) for s in spacing_zyx]
    pad = [(int(math.ceil(GAUSSIAN_TRUNCATE * s)),) * 2 for s in sigma]
    padded = np.pad(out, pad, mode="edge")
    smooth = np.asarray(GaussianSmooth(sigma=sigma)(padded[None]))[0]
    return smooth[tuple(slice(p, p + n) for (p, _), n in zip(pad, out.shape))].astype(np.float32)


def slab_weights(slab_mm: float, slice_mm: float) -> np.ndarray:
    """Weights over neighbouring slices of a slab ``slab_mm`` thick centred on a slice: each slice (a box
    ``slice_mm`` thick) counts by how much of it lies inside the slab, so a fractional slab width counts
    too; a slab no thicker than a slice is that slice alone."""
    if slab_mm <= slice_mm:
        return np.ones(1)
    half = int(math.ceil((slab_mm / slice_mm - 1) / 2))
    centres = np.arange(-half, half + 1) * slice_mm
    overlap = np.clip(np.minimum(centres + slice_mm / 2, slab_mm / 2) - np.maximum(centres - slice_mm / 2,
                                                                                  -slab_mm / 2), 0, None)
    return overlap / overlap.sum()


def ct_slab(ct: np.ndarray, slab_mm: float, slice_mm: float) -> np.ndarray:
    """CT averaged over a slab ``slab_mm`` thick around every native slice (a box along z, ``slab_weights``;
    edge slices repeated): a thicker reconstruction, sampled back at the native slice positions. In the
    input's dtype."""
    from scipy.ndimage import convolve1d

    w = slab_weights(slab_mm, slice_mm)
    if len(w) == 1:
        return ct.copy()
    return like_input(convolve1d(ct.astype(np.float64), w, axis=0, mode="nearest"), ct.dtype)


def unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A direction drawn uniformly on the sphere."""
    while True:
        v = rng.normal(size=3)
        n = float(np.linalg.norm(v))
        if n > 1e-9:
            return v / n


def rigid_move(image, translation_mm, axis, angle_deg: float):
    """``image`` moved rigidly: rotated by ``angle_deg`` about ``axis`` through its physical centre, then
    translated by ``translation_mm`` (x, y, z in the image's physical frame); resampled on its own grid with
    linear interpolation, 0 outside, as float32."""
    import SimpleITK as sitk

    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])
    move = sitk.VersorRigid3DTransform()
    move.SetCenter(centre)
    if angle_deg:
        move.SetRotation([float(a) for a in axis], math.radians(angle_deg))
    move.SetTranslation([float(t) for t in translation_mm])
    # Resample maps each output point through the transform to the input: the inverse of the move.
    return sitk.Resample(image, image, move.GetInverse(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def dental_candidates(ct: np.ndarray) -> np.ndarray:
    """(z, y, x) indices where a dental filling can sit: voxels of at least ``DENTAL_HU`` (teeth and existing
    metal); a CT without any (a phantom, a crop below the mouth) falls back to its brightest 0.1 %."""
    where = np.argwhere(ct >= DENTAL_HU)
    if len(where):
        return where
    return np.argwhere(ct >= np.quantile(ct, 0.999))


def metal_streaks(ct: np.ndarray, spacing_zyx, sources: int, amplitude_hu: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Dental-filling streak artefacts: ``sources`` fillings at voxels drawn from ``dental_candidates``, each a
    ball of ``METAL_HU`` (radius ``FILLING_RADIUS_MM``) with ``STREAKS_PER_SOURCE`` lines through it across
    the axial slice, at evenly spaced angles from a drawn phase, alternately bright and dark, each of
    amplitude ``amplitude_hu`` × a drawn gain in [0.5, 1] × exp(−distance / ``STREAK_DECAY_MM``), Gaussian
    across the line (sd ``STREAK_SD_MM``) and fading over neighbouring slices (sd ``STREAK_SLAB_SD_MM``).
    In the input's dtype; nothing below −1024 HU."""
    sz, sy, sx = (float(s) for s in spacing_zyx)
    a = ct.astype(np.float64)
    candidates = dental_candidates(ct)
    picks = candidates[rng.choice(len(candidates), size=sources, replace=len(candidates) < sources)]
    nz, ny, nx = a.shape
    yy, xx = np.meshgrid(np.arange(ny) * sy, np.arange(nx) * sx, indexing="ij")
    zz = np.arange(nz) * sz
    added = np.zeros_like(a)
    filling = np.zeros(a.shape, bool)
    for z0, y0, x0 in picks:
        phase = rng.uniform(0.0, math.pi / STREAKS_PER_SOURCE)
        gains = rng.uniform(0.5, 1.0, STREAKS_PER_SOURCE)
        dy, dx = yy - y0 * sy, xx - x0 * sx
        pattern = np.zeros((ny, nx))
        for j in range(STREAKS_PER_SOURCE):
            theta = phase + j * math.pi / STREAKS_PER_SOURCE
            across = -math.sin(theta) * dx + math.cos(theta) * dy  # distance from the line through the source
            pattern += (1.0 if j % 2 == 0 else -1.0) * gains[j] * np.exp(-0.5 * (across / STREAK_SD_MM) ** 2)
        pattern *= amplitude_hu * np.exp(-np.hypot(dy, dx) / STREAK_DECAY_MM)
        dz = zz - z0 * sz
        near = np.flatnonzero(np.abs(dz) <= 3 * STREAK_SLAB_SD_MM)
        added[near] += np.exp(-0.5 * (dz[near] / STREAK_SLAB_SD_MM) ** 2)[:, None, None] * pattern
        filling[near] |= (dz[near, None, None] ** 2 + (dy ** 2 + dx ** 2)[None]) <= FILLING_RADIUS_MM ** 2
    out = a + added
    out[filling] = METAL_HU
    return like_input(np.clip(out, -1024.0, None), ct.dtype)
