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


_COLUMNS = {"clean": "cindex_td", "C-td clean": "cindex_td", "1-year td-AUROC": "td_auc_1y",
            "DSC GTVp": "dice_gtvp", "DSC GTVn": "dice_gtvn"}


def test_measured_numbers_in_the_readme_are_the_committed_records():
    """Every 'method | C-td …' row of the README's measured tables states what the committed clean record of
    that method says (mean ± sd (95 % CI) as the leaderboard prints it), in every column whose header names a
    clean metric (C-td, 1-year td-AUROC, DSC)."""
    from bench import leaderboard as lb

    records = {r["method"]: r for r in lb.load_records(ROOT / "leaderboards")
               if r["protocol"] == "clean" and r["dataset"] == "synthetic:quick:0"}
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
        if method not in records:
            continue
        for name, cell in zip(header[1:], cells[1:]):
            if name in _COLUMNS:
                expected = lb._cell(records[method], _COLUMNS[name], False)
                assert re.match(r"^(\d\.\d{3} ± \d\.\d{3}|—)", cell), (method, name, cell)
                assert cell == expected or expected.startswith(cell), (method, name, cell, expected)
                cells_checked += 1
                headers.add(name)
        checked += 1
    assert checked >= 8 and cells_checked >= checked
    assert headers >= {"clean", "C-td clean", "DSC GTVp", "DSC GTVn"}, headers
