"""Shared by the generated cohorts: Weibull proportional-hazards event times with the scale chosen for a
target event rate."""
from __future__ import annotations

import numpy as np


def weibull_times(eta: np.ndarray, u: np.ndarray, censor: np.ndarray, shape: float, event_rate: float,
                  scale_bounds: tuple[float, float], iterations: int) -> np.ndarray:
    """Latent event times T = λ (−log u · e^−η)^(1/ν) (inverse-transform sampling), with λ found by geometric
    bisection in ``scale_bounds`` so that about ``event_rate`` of patients have T <= their censoring time."""

    def times(scale: float) -> np.ndarray:
        return scale * (-np.log(u) * np.exp(-eta)) ** (1 / shape)

    lo, hi = scale_bounds
    for _ in range(iterations):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if np.mean(times(mid) <= censor) > event_rate else (lo, mid)
    return times(np.sqrt(lo * hi))
