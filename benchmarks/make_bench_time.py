"""Wall time of `make bench` (or another make target) from an empty cache: a fresh BENCH_CACHE_DIR, a fresh
results store and leaderboard folder, the installed .venv (installation is not part of the benchmark).

    python benchmarks/make_bench_time.py --target bench --out benchmarks/results/make-bench.json

Each target's entry in the output file is replaced; the others are kept. The scratch folders are removed
afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "make-bench.json")
    ap.add_argument("--scratch", type=Path, default=None, help="where the empty cache and store go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch cache, store and pages")
    args = ap.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="make-bench-", dir=args.scratch))
    env = os.environ | {"BENCH_CACHE_DIR": str(scratch / "cache")}
    log = scratch / "make.log"
    cmd = ["make", args.target, f"RESULTS={scratch / 'results'}", f"BOARDS={scratch / 'leaderboards'}"]
    t0 = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    summary = re.findall(r"^(\d+) job\(s\) run, (\d+) already done, (\d+) model\(s\) fitted", text, re.M)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    entry = {
        "command": " ".join(cmd[:2]), "returncode": done.returncode, "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 1), "jobs": sum(int(s[0]) for s in summary) if summary else None,
        "fits": sum(int(s[2]) for s in summary) if summary else None, "cpus": os.cpu_count(),
        "machine": platform.machine(), "commit": commit, "empty_cache": True,
        "date": time.strftime("%Y-%m-%d"),
    }
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.target] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    if done.returncode:
        print(text[-3000:])
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
