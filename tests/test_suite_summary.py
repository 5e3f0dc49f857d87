"""The corruption suite's summaries and page section (issue 26): type and severity read from content,
retained discrimination, the relative corruption error, "n/a — no image input", the named movers' paired
drops, and the plots."""
from __future__ import annotations

import numpy as np
import pytest

from bench.leaderboard import Page, _robustness_page, write
from bench.metric_registry import get_entry
from bench.suite_summary import NO_IMAGE, SuitePoints, mean_retained, relative_corruption_error, suite_point

SPLIT = {"kind": "kfold", "n_folds": 5, "seed": 2022}


def _record(method: str, corruption: dict, cs: list[float], *, consumes=("ct", "pet"), ci=None, shift=0.0) -> dict:
    rng = np.random.default_rng(abs(hash((method, str(corruption)))) % 2**32)
    base = np.random.default_rng(7).normal(0, 0.02, 1000)  # shared resamples: paired drops line up
    name = corruption.get("kind", "none") + (f"-s{corruption['severity']}" if "severity" in corruption else "")
    return {
        "method": method, "config_hash": f"{abs(hash(method)) % 16**16:016x}", "protocol": name,
        "protocol_version": "1.0", "protocol_hash": f"{abs(hash(name)) % 16**16:016x}", "split": SPLIT,
        "corruption": corruption, "dataset": "synthetic:quick:v3:0", "dataset_fp": "ab" * 8, "scale": "quick",
        "newest_run": "2026-12-03T00:00:00+00:00", "harness_version": "0.1.0", "manifest": {},
        "method_info": {"consumes": list(consumes)},
        "folds": [{"fold": k, "fold_name": f"fold{k}", "seed": 0, "metrics": {
            "cindex_td": c, "cindex_harrell": c - 0.01, "cindex_uno": c + 0.01}} for k, c in enumerate(cs)],
        "ci": {"cindex_td": ci or [float(np.mean(cs)) - 0.05, float(np.mean(cs)) + 0.05]},
        "replicates": {"cindex_td": list(float(np.mean(cs)) + base + shift * rng.normal(0, 0.001, 1000))},
        "km": {"time": [], "event": [], "high": [], "fold": []},
    }


def _kind(kind, severity=None, **kw):
    c = {"kind": kind, "seed": 2022, "fraction": 1.0, "apply_to": ["test"], **kw}
    if severity is not None:
        c["severity"] = severity
    return c


NONE = {"kind": "none"}


@pytest.fixture
def records():
    recs = []
    clean = {"radiomics-cox": 0.70, "mtv-cox": 0.66, "deep": 0.64, "coxph": 0.63, "flat": 0.52}
    drop = {"radiomics-cox": 0.03, "mtv-cox": 0.005, "deep": 0.02, "coxph": 0.0, "flat": 0.0}
    for m, c in clean.items():
        consumes = ("clinical",) if m == "coxph" else ("pet",) if m == "mtv-cox" else ("ct", "pet")
        ci = [0.45, 0.60] if m == "flat" else None
        recs.append(_record(m, NONE, [c] * 5, consumes=consumes, ci=ci))
        for sev in (1, 3, 5):
            for kind in ("ct-noise", "pet-noise"):
                named = "radiomics-cox"
                recs.append(_record(m, _kind(kind, sev, expected_to_move=named), [c - drop[m] * sev] * 5,
                                    consumes=consumes, ci=ci))
        recs.append(_record(m, _kind("missing-modality", modality="pet", expected_to_move="mtv-cox"),
                            [c - (0.15 if m == "mtv-cox" else drop[m])] * 5, consumes=consumes, ci=ci))
    return recs


def test_type_and_severity_come_from_content():
    assert suite_point(_kind("blur", 3)) == ("blur", 3)
    assert suite_point(_kind("missing-modality", modality="ct")) == ("missing-ct", 1)
    assert suite_point({"kind": "noise", "fraction": 0.5}) is None and suite_point({"kind": "none"}) is None


def test_retained_discrimination_and_relative_error_by_hand():
    pts = SuitePoints("m", 0.7, (0.65, 0.75), {"ct-noise": {1: 0.68, 5: 0.6}, "blur": {3: 0.7}},
                      reference={"ct-noise": {1: 0.66, 5: 0.55}, "blur": {3: 0.6}})
    r_ct = np.mean([(0.68 - 0.5) / 0.2, (0.6 - 0.5) / 0.2])
    assert mean_retained(pts) == pytest.approx(np.mean([r_ct, 1.0]))
    rce = np.mean([((1 - 0.68) + (1 - 0.6)) / ((1 - 0.66) + (1 - 0.55)), (1 - 0.7) / (1 - 0.6)])
    assert relative_corruption_error(pts) == pytest.approx(rce)
    flat = SuitePoints("f", 0.52, (0.45, 0.6), {"ct-noise": {1: 0.51}})
    assert np.isnan(mean_retained(flat))  # the clean CI includes 0.5: nothing to retain
    assert get_entry("mrd").load().cell(flat) == "n/a"


def test_the_robustness_page_gains_the_suite_section(records, tmp_path):
    page = _robustness_page("synthetic-quick-v3-0", records)
    assert isinstance(page, Page)
    text = page.text
    assert "## Corruption suite" in text and "### `ct-noise`" in text and "### `missing-pet`" in text
    coxph = next(line for line in text.splitlines() if line.startswith("| coxph"))
    assert NO_IMAGE in coxph and "0.630" in coxph
    deep = next(line for line in text.splitlines() if line.startswith("| deep"))
    assert "(below mtv-cox)" in deep  # an image method under the PET-volume reference row
    flat = next(line for line in text.splitlines() if line.startswith("| flat"))
    assert "n/a" in flat
    # R of radiomics-cox under ct-noise: mean over s1, s3, s5 of (0.7 - 0.03 s - 0.5) / 0.2
    expected = np.mean([(0.2 - 0.03 * s) / 0.2 for s in (1, 3, 5)])
    rad = next(line for line in text.splitlines() if line.startswith("| radiomics-cox"))
    assert f"{expected:.3f}" in rad
    assert "Expected movers" in text and "`mtv-cox`" in text
    mover = next(line for line in text.splitlines() if line.startswith("| `pet-noise-s5`"))
    assert "+0.150" in mover and mover.rstrip(" |").endswith("yes")
    write(tmp_path, [page])
    for rel, _ in page.plots:
        assert (tmp_path / rel).stat().st_size > 5000


def test_the_generalisation_page_gives_each_held_out_centre(tmp_path):
    from bench.leaderboard import _generalisation_page

    rec = _record("coxph", NONE, [0.6, 0.7], consumes=("clinical",))
    rec["split"] = {"kind": "loco", "seed": 2022}
    rec["folds"][0]["fold_name"], rec["folds"][1]["fold_name"] = "CHUM", "MDA"
    rec["km"] = {"time": [1, 2, 3, 4, 5], "event": [1, 0, 1, 1, 0], "high": [0, 1, 0, 1, 0], "fold": [0, 0, 1, 1, 1]}
    rec["centres"] = {"CHUM": {"scanner": "digital"}, "MDA": {"scanner": "legacy"}}
    text = _generalisation_page("x", [rec], "coxph").text
    assert "| CHUM     | 2          | 1        | digital   |" in text
    assert "| MDA      | 3          | 2        | legacy    |" in text


def test_a_synthetic_cohort_says_what_scanner_each_centre_has(tmp_path):
    from bench.data.hecktor import load_hecktor
    from bench.data.synthetic import generate, scale_config

    root = tmp_path / "synth"
    generate(root, scale_config("smoke"), 0, workers=1, progress=False)
    facts = load_hecktor(root).centre_facts()
    assert facts and all(set(v) == {"scanner", "PET voxel (mm)"} for v in facts.values())


def test_a_protocol_naming_no_method_is_listed_as_a_negative_control(records):
    for m in ("radiomics-cox", "deep"):
        clean = next(r for r in records if r["method"] == m and r["corruption"]["kind"] == "none")
        records.append(_record(m, _kind("blur", 5, expected_to_move="none"),
                               [f["metrics"]["cindex_td"] for f in clean["folds"]]))
    text = _robustness_page("x", records).text
    assert "Negative controls (`blur`)" in text and "### `blur`" in text
    assert not any(line.startswith("| `blur-s5`") for line in text.splitlines())  # no mover row for it
