"""The corruption types of the suite, each one object: its parameters (named numbers of the protocol file),
the modalities it rewrites, what it draws per patient and the function that applies it.

A protocol's ``[corruption]`` table names one kind. ``noise`` (the noisyNN fraction sweep) is the two noise
types at once — CT Gaussian and PET Poisson at the file's chosen levels — so a noisyNN patient and the
ct-noise / pet-noise suite protocols with the same parameters and seed share one realisation. The suite kinds
are one type each; ``missing-modality`` names its modality and has no severity.

``apply`` takes the images of the modalities the type rewrites (SimpleITK, native grid), the parameters, the
per-patient draws (``draw``, recorded in the run's corruption manifest) and the realisation's generator, and
returns the rewritten images on the same grid. Nothing here reads a file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.corruptions import artefacts as art

SUITE_KINDS = ("ct-noise", "pet-noise", "blur", "misregistration", "suv-calibration", "ct-metal", "missing-modality")
DRAW_DIGITS = 6  # per-patient draws are rounded (and applied rounded) so the manifest states them exactly


@dataclass(frozen=True)
class Param:
    """One named parameter of a corruption type and the values it may take; called on a value, returns a
    complaint or None (the protocol schema's check)."""

    lo: float = 0.0
    hi: float = math.inf
    lo_open: bool = False
    integer: bool = False
    options: tuple[str, ...] = ()

    def __call__(self, v: Any) -> str | None:
        if self.options:
            return None if v in self.options else f"must be one of {list(self.options)}"
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if self.integer and not (number and isinstance(v, int)):
            return f"must be an integer in [{self.lo:g}, {self.hi:g}]"
        if not number or not (v > self.lo if self.lo_open else v >= self.lo) or v > self.hi:
            return f"must be a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        return None

    def normalise(self, v: Any) -> Any:
        """The value as it enters keys and hashes: 5 and 5.0 are one parameter."""
        return v if self.options or self.integer else float(v)


def _sitk_apply(image, fn: Callable[[np.ndarray], np.ndarray]):
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(fn(sitk.GetArrayFromImage(image)))
    out.CopyInformation(image)
    return out


def _zyx(image) -> tuple[float, float, float]:
    sx, sy, sz = image.GetSpacing()
    return sz, sy, sx


def _ct_noise(images, p, draws, rng):
    return {"ct": _sitk_apply(images["ct"], lambda a: art.ct_gaussian(a, p["sigma_x_range"], rng))}


def _pet_noise(images, p, draws, rng):
    return {"pet": _sitk_apply(images["pet"], lambda a: art.pet_poisson(a, p["counts_per_suv"], rng))}


def _blur(images, p, draws, rng):
    pet, ct = images["pet"], images["ct"]
    return {"pet": _sitk_apply(pet, lambda a: art.gaussian_psf(a, p["pet_fwhm_mm"], _zyx(pet))),
            "ct": _sitk_apply(ct, lambda a: art.ct_slab(a, p["ct_slab_mm"], ct.GetSpacing()[2]))}


def _misregistration_draws(p, rng) -> dict[str, list[float]]:
    return {"direction": [round(float(v), DRAW_DIGITS) for v in art.unit_vector(rng)],
            "axis": [round(float(v), DRAW_DIGITS) for v in art.unit_vector(rng)]}


def _misregistration(images, p, draws, rng):
    shift = [p["translation_mm"] * d for d in draws["direction"]]
    return {"pet": art.rigid_move(images["pet"], shift, draws["axis"], p["rotation_deg"])}


def _suv_calibration(images, p, draws, rng):
    return {"pet": _sitk_apply(images["pet"], lambda a: (a.astype(np.float64) * p["factor"]).astype(np.float32))}


def _ct_metal(images, p, draws, rng):
    ct = images["ct"]
    return {"ct": _sitk_apply(ct, lambda a: art.metal_streaks(a, _zyx(ct), p["sources"], p["amplitude_hu"], rng))}


def _missing(images, p, draws, rng):
    if p["modality"] == "pet":
        return {"pet": _sitk_apply(images["pet"], lambda a: np.zeros(a.shape, np.float32))}
    return {"ct": _sitk_apply(images["ct"], lambda a: art.like_input(np.full(a.shape, art.AIR_HU), a.dtype))}


@dataclass(frozen=True)
class CorruptionType:
    """One corruption type: ``parameters`` (name → Param, the protocol file's named numbers), ``modalities``
    (what it rewrites, from its parameters), ``apply``, optional per-patient ``draw`` (from the realisation's
    generator, before ``apply`` uses it), whether protocols give it a ``severity``, a one-line ``describe``,
    and the ``version`` of its recipe (part of every realisation's file name: bump it when the output
    changes)."""

    name: str
    parameters: dict[str, Param]
    modalities: Callable[[dict[str, Any]], tuple[str, ...]]
    apply: Callable[..., dict[str, Any]]
    describe: Callable[[dict[str, Any], dict[str, Any]], str]
    version: str = "1"
    draw: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None = None
    has_severity: bool = True


def _vec(v) -> str:
    return "(" + ", ".join(f"{x:+.2f}" for x in v) + ")"


TYPES: dict[str, CorruptionType] = {t.name: t for t in (
    CorruptionType(
        "ct-noise", {"sigma_x_range": Param(0.0, 1.0, lo_open=True)}, lambda p: ("ct",), _ct_noise,
        lambda p, d: f"CT + Gaussian noise, σ = {p['sigma_x_range']:g} × the CT's range", version="2"),
    CorruptionType(
        "pet-noise", {"counts_per_suv": Param(0.0, 1e6, lo_open=True)}, lambda p: ("pet",), _pet_noise,
        lambda p, d: f"PET Poisson noise at {p['counts_per_suv']:g} expected counts per unit SUV", version="2"),
    CorruptionType(
        "blur", {"pet_fwhm_mm": Param(0.0, 100.0), "ct_slab_mm": Param(0.0, 100.0)}, lambda p: ("ct", "pet"), _blur,
        lambda p, d: f"PET convolved with a Gaussian PSF of FWHM {p['pet_fwhm_mm']:g} mm; CT averaged over "
                     f"{p['ct_slab_mm']:g} mm slabs"),
    CorruptionType(
        "misregistration", {"translation_mm": Param(0.0, 500.0), "rotation_deg": Param(0.0, 180.0)},
        lambda p: ("pet",), _misregistration,
        lambda p, d: (f"PET moved {p['translation_mm']:g} mm along {_vec(d['direction'])} and rotated "
                      f"{p['rotation_deg']:g}° about {_vec(d['axis'])} through its centre") if d else
                     f"PET moved {p['translation_mm']:g} mm and rotated {p['rotation_deg']:g}°",
        draw=_misregistration_draws),
    CorruptionType(
        "suv-calibration", {"factor": Param(0.0, 10.0, lo_open=True)}, lambda p: ("pet",), _suv_calibration,
        lambda p, d: f"PET SUV × {p['factor']:g} (a calibration error)"),
    CorruptionType(
        "ct-metal", {"sources": Param(1, 64, integer=True), "amplitude_hu": Param(0.0, 5000.0, lo_open=True)},
        lambda p: ("ct",), _ct_metal,
        lambda p, d: f"CT dental-filling streaks: {p['sources']} source(s), streak amplitude {p['amplitude_hu']:g} HU"),
    CorruptionType(
        "missing-modality", {"modality": Param(options=("pet", "ct"))}, lambda p: (p["modality"],), _missing,
        lambda p, d: (f"{p['modality'].upper()} missing: replaced by its background "
                      f"({'SUV 0' if p['modality'] == 'pet' else 'air, −1000 HU'}) on the same grid"),
        has_severity=False),
)}


def parameters(corruption: dict[str, Any]) -> dict[str, Any]:
    """A suite corruption's parameters (the type's named numbers), normalised."""
    spec = TYPES[corruption["kind"]]
    return {k: spec.parameters[k].normalise(corruption[k]) for k in spec.parameters}


def realisations(corruption: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (type, parameters) realisations a corruption applies to a selected patient: two for ``noise``
    (CT Gaussian and PET Poisson at the chosen levels), one for a suite kind, none for ``none``."""
    kind = corruption["kind"]
    if kind == "none":
        return []
    if kind == "noise":
        return [("ct-noise", {"sigma_x_range": float(corruption["ct_sigma"][corruption["ct_level"]])}),
                ("pet-noise", {"counts_per_suv": float(corruption["pet_counts_per_suv"][corruption["pet_level"]])})]
    return [(kind, parameters(corruption))]


def suite_type(corruption: dict[str, Any]) -> str | None:
    """The suite type a corruption applies, as pages name it (``missing-pet`` / ``missing-ct`` for a missing
    modality); None for ``none`` and ``noise``."""
    kind = corruption.get("kind")
    if kind not in TYPES:
        return None
    return f"missing-{corruption['modality']}" if kind == "missing-modality" else kind


def suite_severity(corruption: dict[str, Any]) -> int | None:
    """A suite corruption's severity (1 to 5); None for a missing modality (one level) and outside the suite."""
    return corruption.get("severity") if corruption.get("kind") in TYPES else None


def describe(corruption: dict[str, Any], draws: dict[str, Any] | None = None) -> str:
    """One line on what the corruption does to a selected patient (with that patient's ``draws``)."""
    if corruption["kind"] == "noise":
        c = corruption
        return (f"CT + Gaussian noise σ = {c['ct_sigma'][c['ct_level']]:g} × range ({c['ct_level']}), PET Poisson at "
                f"{c['pet_counts_per_suv'][c['pet_level']]:g} counts/SUV ({c['pet_level']})")
    if corruption["kind"] not in TYPES:
        return "none"
    severity = suite_severity(corruption)
    text = TYPES[corruption["kind"]].describe(parameters(corruption), draws or {})
    return f"{suite_type(corruption)}{f' severity {severity}' if severity else ''}: {text}"


def apply_type(name: str, params: dict[str, Any], images: dict[str, Any], rng: np.random.Generator
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply corruption type ``name`` to in-memory images ({"ct": …, "pet": …}, SimpleITK, those it rewrites
    at least): (the rewritten images, the per-patient draws)."""
    spec = TYPES[name]
    draws = spec.draw(params, rng) if spec.draw else {}
    return spec.apply(images, params, draws, rng), draws
