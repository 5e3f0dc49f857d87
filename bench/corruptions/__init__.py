"""Corrupted test images: which patients a protocol corrupts, how, and the corrupted images themselves.

Selection: each patient has a uniform draw u from (dataset fingerprint, seed, patient id) and is corrupted iff
u < fraction, so noisy10 ⊂ noisy20 ⊂ … ⊂ noisy100 and the choice does not depend on the fold; the corruption
suite's protocols have fraction 1 (every test patient).

Kinds (``bench.corruptions.kinds``, one object per type): ``noise`` — the noisyNN sweep — gives CT Gaussian
noise with σ = level × (max − min) of that CT and PET Poisson noise at a named count level (the SUV image
scaled to expected counts, Poisson counts drawn and scaled back); the suite kinds are ct-noise, pet-noise,
blur, misregistration, suv-calibration, ct-metal and missing-modality, each with its parameters as named
numbers in the protocol file. All act on the native images, before any resampling
(``bench.corruptions.artefacts``).

Realisations (``bench.corruptions.files``): one per (dataset fingerprint, seed, patient, type, parameters),
drawn from a generator keyed by exactly that, written once to the cache and reused by every protocol, fold
and method; only the modality a type rewrites is a new file. A corrupted patient's cohort entry points at
those files; a clinical-only method's inputs are untouched, which the manifest records
(``bench.corruptions.selection.corruption_manifest``).
"""
from bench.corruptions.artefacts import ct_gaussian, pet_poisson
from bench.corruptions.files import cached_intact, corrupted_files, corrupted_images, realisation_name
from bench.corruptions.kinds import (SUITE_KINDS, TYPES, apply_type, describe, realisations, suite_severity,
                                    suite_type)
from bench.corruptions.selection import corruption_manifest, noise_rng, selected, selection_draw

NOISE_VERSION = TYPES["ct-noise"].version  # the noise recipe's version, in every noise realisation's file name

__all__ = [
    "NOISE_VERSION", "SUITE_KINDS", "TYPES", "apply_type", "cached_intact", "corrupted_files", "corrupted_images",
    "corruption_manifest", "describe", "ct_gaussian", "noise_rng", "pet_poisson", "realisation_name", "realisations",
    "selected", "selection_draw", "suite_severity", "suite_type",
]
