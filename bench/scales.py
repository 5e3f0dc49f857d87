"""One scale vocabulary for runs and synthetic cohorts.

A run's scale picks each method's config (``Method.configs[scale]``) and, by default, the synthetic cohort
of the same name: ``smoke`` (seconds, for tests), ``quick`` (a laptop CPU), ``paper`` (published input
sizes and training lengths, for a GPU). The synthetic generator has one more size, ``large``: the quick
recipe with four times the patients, for comparisons that need power; runs on it use quick configs
unless told otherwise.
"""
from __future__ import annotations

SCALES = ("smoke", "quick", "paper")
SYNTHETIC_SCALES = SCALES + ("large",)
RENAMED = {"full": "paper"}  # the paper-scale cohort's earlier name, still accepted

RUN_HELP = "smoke: seconds (tests); quick: a CPU; paper: published sizes, for a GPU."
SYNTHETIC_HELP = ("smoke: 40 patients, 3 centres, coarse voxels (seconds); quick: 489 patients, 7 centres, "
                  "2 mm CT over a 128 mm box; paper: 489 patients, 0.98 mm CT over 200 mm; large: the quick "
                  "recipe at 1 956 patients, for comparisons that need power.")


def synthetic_scale(name: str) -> str:
    """A synthetic cohort size by name (``full`` is read as ``paper``); unknown names are returned as they
    are, for the caller to refuse with its own context."""
    return RENAMED.get(name, name)
