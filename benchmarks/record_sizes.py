"""Size of the committed leaderboard folder and of one run row, at two commits (compact run records, issue 25).

Reads sizes from git (``git ls-tree -r -l``), so any commit can be measured without checking it out:

    python benchmarks/record_sizes.py --before 160bbb9 --after HEAD

writes benchmarks/results/record-sizes.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def sizes(commit: str) -> dict[str, int]:
    out = subprocess.run(["git", "ls-tree", "-r", "-l", commit, "leaderboards/"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    files = {}
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        files[path] = int(meta.split()[3])
    return files


def summary(files: dict[str, int]) -> dict:
    rows = np.array([s for p, s in files.items() if p.startswith("leaderboards/runs/") and "/splits/" not in p])
    part = {name: sum(s for p, s in files.items() if p.startswith(f"leaderboards/{name}/"))
            for name in ("runs", "records")}
    return {"leaderboards_bytes": sum(files.values()), "runs_bytes": part["runs"], "records_bytes": part["records"],
            "other_bytes": sum(files.values()) - part["runs"] - part["records"], "rows": int(len(rows)),
            "row_mean_bytes": float(rows.mean()), "row_median_bytes": float(np.median(rows)),
            "row_max_bytes": int(rows.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default="HEAD")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "record-sizes.json")
    args = ap.parse_args()
    result = {}
    for label, commit in (("before", args.before), ("after", args.after)):
        sha = subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip()
        result[label] = {"commit": sha, **summary(sizes(commit))}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    keys = [k for k in result["before"] if k != "commit"]
    print(f"{'':22} {'before ' + result['before']['commit']:>16} {'after ' + result['after']['commit']:>16}")
    for k in keys:
        print(f"{k:22} {result['before'][k]:>16,.0f} {result['after'][k]:>16,.0f}")


if __name__ == "__main__":
    main()
