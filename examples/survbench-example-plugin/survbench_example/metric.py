"""An outside metric: Harrell's C on the first two years of follow-up (early-event discrimination).

Follow-up is truncated at two years: an event after it counts as censored there, so the index asks only
whether the method orders the patients whose events come early. survbench finds it through the entry point
``cindex_harrell_2y`` of group ``bench.metrics``; a protocol's ``metrics.report`` can then name it.
"""
from __future__ import annotations

import numpy as np

from bench import MetricSpec, ScoreInputs
from bench.metrics import cindex_harrell

TRUNCATE_DAYS = 2 * 365.25


def harrell_2y(x: ScoreInputs) -> float:
    late = x.time > TRUNCATE_DAYS
    return cindex_harrell(np.minimum(x.time, TRUNCATE_DAYS), x.event & ~late, x.risk)


# bootstrap "patients" without a replicates function: survbench recomputes it on the fold's shared resamples.
HARRELL_2Y = MetricSpec(
    "cindex_harrell_2y", "Harrell C ≤2y",
    "Harrell's C with follow-up truncated at 2 years (events after it counted as censored at 2 years)",
    harrell_2y)
