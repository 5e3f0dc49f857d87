"""The corruption suite's summaries: where a record sits in the type × severity grid, and what a method keeps.

A record's place is read from its protocol's content (the corruption ``kind`` and ``severity``), never from
its name. Per experiment (method, config, split) the suite view holds the fold-mean primary metric on the
clean protocol, its pooled CI, and the same mean per (type, severity); summaries over that view are
registered ``SummarySpec``s of axis ``corruption_suite`` (bench.metric_registry):

- retained discrimination R = (C − 0.5) / (C_clean − 0.5) per (type, severity), averaged over severities per
  type and over types (mRD); undefined when the clean CI includes 0.5 (nothing to retain);
- corruption error relative to a reference method, as ImageNet-C's mCE: per type Σ(1 − C) / Σ(1 − C_ref)
  over the severities both ran, averaged over types.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUITE_KINDS = ("ct-noise", "pet-noise", "blur", "misregistration", "suv-calibration", "ct-metal", "missing-modality")
SUITE_TYPES = ("ct-noise", "pet-noise", "blur", "misregistration", "suv-calibration", "ct-metal", "missing-pet",
               "missing-ct")
REFERENCE_METHOD = "radiomics-cox"  # the fixed reference of the relative corruption error
IMAGE_INPUTS = ("ct", "pet")
NO_IMAGE = "n/a — no image input"


def suite_point(corruption: dict[str, Any] | None) -> tuple[str, int] | None:
    """(type, severity) of a suite protocol's corruption; a missing modality is one level (severity 1).
    None for anything else (clean, the noise-fraction sweep, a corruption of another kind)."""
    if not corruption or corruption.get("kind") not in SUITE_KINDS:
        return None
    if corruption["kind"] == "missing-modality":
        return f"missing-{corruption.get('modality')}", 1
    return corruption["kind"], int(corruption["severity"])


def reads_images(rec: dict[str, Any]) -> bool:
    """Whether the record's method reads an image (a clinical method's corruption cells are "n/a")."""
    return any(c in IMAGE_INPUTS for c in (rec.get("method_info") or {}).get("consumes", []))


@dataclass
class SuitePoints:
    """One experiment's view of the suite (what suite summaries compute from)."""

    method: str
    clean: float
    clean_ci: tuple[float, float] | None
    by_type: dict[str, dict[int, float]] = field(default_factory=dict)
    reference: dict[str, dict[int, float]] | None = None  # the reference method's by_type (same split)
    records: dict[tuple[str, int], dict] = field(default_factory=dict)  # (type, severity) -> record

    def discriminates(self) -> bool:
        """Whether the clean CI excludes 0.5 (there is discrimination to retain)."""
        return self.clean_ci is not None and not (self.clean_ci[0] <= 0.5 <= self.clean_ci[1]) and self.clean > 0.5

    def retained(self, typ: str, severity: int) -> float:
        if not self.discriminates() or severity not in self.by_type.get(typ, {}):
            return float("nan")
        return (self.by_type[typ][severity] - 0.5) / (self.clean - 0.5)

    def retained_by_type(self) -> dict[str, float]:
        return {t: float(np.mean([self.retained(t, s) for s in sorted(by)])) for t, by in self.by_type.items() if by}


def mean_retained(points: SuitePoints) -> float:
    per_type = points.retained_by_type()
    return float(np.mean(list(per_type.values()))) if per_type else float("nan")


def relative_corruption_error(points: SuitePoints) -> float:
    if not points.reference:
        return float("nan")
    ratios = []
    for typ, by in points.by_type.items():
        ref = points.reference.get(typ, {})
        both = sorted(set(by) & set(ref))
        denominator = sum(1 - ref[s] for s in both)
        if both and denominator > 0:
            ratios.append(sum(1 - by[s] for s in both) / denominator)
    return float(np.mean(ratios)) if ratios else float("nan")


def _fmt(value: float, _points) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def _split_key(rec: dict) -> str:
    return json.dumps(rec.get("split", {}), sort_keys=True)


def suite_experiments(recs: list[dict], primary: str, mean_of, corruption_of) -> dict[tuple, SuitePoints]:
    """{(method, config, split): SuitePoints} for every experiment with a clean record and at least one
    suite record. ``mean_of(rec)`` gives a record's fold-mean primary metric; ``corruption_of(rec)`` its
    protocol's corruption content (None when not known here)."""
    clean, placed = {}, {}
    for r in recs:
        c = corruption_of(r)
        if c is None:
            continue
        key = (r["method"], r["config_hash"], _split_key(r))
        if c.get("kind") == "none":
            clean[key] = r
        elif suite_point(c):
            placed.setdefault(key, {})[suite_point(c)] = r
    out = {}
    for key, cells in placed.items():
        if key not in clean:
            continue
        base = clean[key]
        ci = base.get("ci", {}).get(primary)
        pts = SuitePoints(key[0], mean_of(base), tuple(ci) if ci else None)
        for (typ, sev), r in cells.items():
            pts.by_type.setdefault(typ, {})[sev] = mean_of(r)
            pts.records[(typ, sev)] = r
        out[key] = pts
    for key, pts in out.items():  # the reference method's view on the same split, for relative errors
        ref = next((p for k, p in out.items() if k[0] == REFERENCE_METHOD and k[2] == key[2]), None)
        pts.reference = ref.by_type if ref is not None else None
    return out
