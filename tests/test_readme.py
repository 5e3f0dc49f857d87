"""The README's tour is run as written, so it cannot rot."""
from __future__ import annotations

import re
import shlex

from helpers import ROOT, run_bench

README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```")[1]
    commands = [l.split("#")[0].strip() for l in first_block.splitlines()[1:] if l.strip()]
    assert commands == ["make bench", "make test"]


def test_makefile_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^bench:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "torch==2.13.0" in makefile


def test_tour_commands_run(tmp_path):
    commands = re.findall(r"^\$ (bench .+)$", README, re.M)
    assert len(commands) >= 6
    for command in commands:
        done = run_bench(*shlex.split(command)[1:], cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "results" / "runs.sqlite").is_file()


V2, V3 = "synthetic:quick:0", "synthetic:quick:v3:0"
_COLUMNS = {  # header → (dataset, protocol, metric)
    "clean": (V2, "clean", "cindex_td"), "C-td clean": (V2, "clean", "cindex_td"),
    "1-year td-AUROC": (V2, "clean", "td_auc_1y"), "DSC GTVp": (V2, "clean", "dice_gtvp"),
    "DSC GTVn": (V2, "clean", "dice_gtvn"),
    "C-td clean (v3)": (V3, "clean", "cindex_td"), "C-td loco (v3)": (V3, "loco", "cindex_td"),
}


def test_measured_numbers_in_the_readme_are_the_committed_records():
    """Every 'method | C-td …' row of the README's measured tables states what the committed record of that
    method says (mean ± sd (95 % CI) as the leaderboard prints it), in every column whose header names a
    metric: generator v2's clean records for the plain headers, v3's records for the '(v3)' ones."""
    from bench import leaderboard as lb

    records = {(r["dataset"], r["protocol"], r["method"]): r for r in lb.load_records(ROOT / "leaderboards")}
    checked = cells_checked = 0
    header: list[str] = []
    headers: set[str] = set()
    for line in README.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if len(cells) < 2 or not re.match(r"^\d\.\d{3} ± \d\.\d{3}", cells[1]):
            continue
        method = cells[0].split()[0]
        row_checked = False
        for name, cell in zip(header[1:], cells[1:]):
            if name in _COLUMNS and (_COLUMNS[name][0], _COLUMNS[name][1], method) in records:
                dataset, protocol, metric = _COLUMNS[name]
                expected = lb._cell(records[(dataset, protocol, method)], metric, False)
                assert re.match(r"^(\d\.\d{3} ± \d\.\d{3}|—)", cell), (method, name, cell)
                assert cell == expected or expected.startswith(cell), (method, name, cell, expected)
                cells_checked += 1
                headers.add(name)
                row_checked = True
        checked += row_checked
    assert checked >= 10 and cells_checked >= checked
    assert headers >= {"clean", "C-td clean", "DSC GTVp", "DSC GTVn", "C-td clean (v3)", "C-td loco (v3)"}, headers


def test_the_readme_cohort_table_is_the_committed_target_files():
    import json

    import numpy as np

    from helpers import load_script

    mod = load_script("benchmarks/synthetic_targets.py")
    res = ROOT / "benchmarks" / "results"
    targets = json.loads((res / "synthetic-v3-targets.json").read_text())
    calibration = json.loads((res / "synthetic-v3-calibration.json").read_text())
    assert mod.markdown_table(targets, calibration) in README
    seconds = [r["generation_seconds"] for r in targets["per_seed"] if r["generation_seconds"]]
    total = [r["seconds"] for r in targets["per_seed"] if r["generation_seconds"]]
    assert seconds and f"generation takes {np.mean(seconds):.0f} s" in README
    assert f"({np.mean(total):.0f} s per seed on 2 cores" in README
    assert all(r["workers"] == 2 and r["cpu_count"] == 2 for r in targets["per_seed"])
    shares = targets["targets"]
    pct = {k: f"{100 * shares[k]['mean']:.0f} %" for k in ("share_clinical", "share_volume", "share_fine")}
    assert (f"ECOG: {pct['share_clinical']} of var(η)" in README and f"nodal volume: {pct['share_volume']})" in README
            and f"image traits ({pct['share_fine']})" in README)
    from bench.data.proxies import SEVERITY5

    assert f"PET Poisson noise at {SEVERITY5['pet-noise']:g} counts per unit SUV" in README
    first = json.loads((res / "superseded" / "synthetic-v3-targets-eta-scale-1.json").read_text())
    assert f"the clinical Cox band ({first['targets']['coxph_harrell']['mean']:.3f})" in README
    scan = calibration["pet_noise_calibration"]["rho_suv_cov_h_by_counts_per_suv"]
    assert f"ρ {scan['1']:.2f} at even 1 count per SUV" in README
