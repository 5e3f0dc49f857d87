"""Numbers the source papers report, shown beside what the harness measures — never mixed with it.

They were measured on real cohorts (named in ``source``) with each paper's own splits, so they are not
comparable with results on the synthetic cohort; leaderboards label them as reported.
"""
from __future__ import annotations

# (method, protocol) -> (value, metric, source)
REPORTED: dict[tuple[str, str], tuple[float, str, str]] = {
    ("robsurv", "clean"): (0.771, "C-td", "RobSurv paper, HECKTOR 2022"),
    ("robsurv", "noisy50"): (0.742, "C-td", "RobSurv paper, HECKTOR 2022"),
    ("adamss", "center-split"): (0.804, "C-index", "AdaMSS paper, HECKTOR 2022 OPC centre split"),
    ("deepmts-daft", "clean"): (0.616, "C-index", "FM for HNSCC paper, 5-fold CV"),
    ("fm-ct", "clean"): (0.715, "C-index", "FM for HNSCC paper, 5-fold CV"),
    ("fm-pet", "clean"): (0.736, "C-index", "FM for HNSCC paper, 5-fold CV"),
    ("fm-ctpet", "clean"): (0.743, "C-index", "FM for HNSCC paper, 5-fold CV"),
}


def reported(method: str, protocol: str) -> str:
    """"0.771 (C-td, RobSurv paper, HECKTOR 2022)" or "" where the paper reports nothing for this row."""
    hit = REPORTED.get((method, protocol))
    return "" if hit is None else f"{hit[0]:.3f} ({hit[1]}, {hit[2]})"
