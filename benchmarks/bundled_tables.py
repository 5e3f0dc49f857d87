"""Five public survival tables, bundled with scikit-survival and lifelines (so offline), each written as a CSV
with a manifest that declares its id, time, event, time unit, numerically coded categories and a grouping
column as the centre; coxph is run on each under clean (5-fold CV) and loco (one fold per group), in one store.

    python benchmarks/bundled_tables.py --out benchmarks/results/bundled-tables.json [--work DIR]

Writes, per table, the manifest it used, the patients, events and groups, and every fold's C-td, Harrell's C
and Uno's C as the store holds them, with the pooled summary `bench results` prints.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(sys.executable).parent / "bench"

# name -> (loader, id prefix, time column, event column, time unit, centre column, categorical columns)
TABLES = {
    "gbsg2": ("sksurv:load_gbsg2", "time", "cens", "days", "tgrade", []),
    "whas500": ("sksurv:load_whas500", "lenfol", "fstat", "days", "gender", []),
    "flchain": ("sksurv:load_flchain", "futime", "death", "days", "sample.yr", ["flc.grp"]),
    "aids": ("sksurv:load_aids", "time", "censor", "days", "strat2", ["raceth", "txgrp"]),
    "rossi": ("lifelines:load_rossi", "week", "arrest", "weeks", "race", []),
}


def write_table(name: str, out: Path) -> Path:
    """The table as ``<out>/<name>/<name>.csv`` with ``study.toml``; returns the manifest's path."""
    import pandas as pd

    loader, time_col, event_col, unit, centre, categorical = TABLES[name]
    package, function = loader.split(":")
    if package == "sksurv":
        import sksurv.datasets

        x, y = getattr(sksurv.datasets, function)()
        frame = x.copy()
        frame[time_col] = y[time_col]
        frame[event_col] = y[event_col].astype(int)
    else:
        import lifelines.datasets

        frame = getattr(lifelines.datasets, function)()
    frame = frame.reset_index(drop=True)
    frame.insert(0, "id", [f"{name}{i:05d}" for i in range(len(frame))])
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    lines = ["[dataset]", f'name = "{name}"', f'tables = ["{name}.csv"]', 'id = "id"', f'time = "{time_col}"',
             f'event = "{event_col}"', f'time_unit = "{unit}"', f'centre = "{centre}"',
             f"categorical = {json.dumps(categorical)}", ""]
    (folder / "study.toml").write_text("\n".join(lines))
    return folder / "study.toml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bundled-tables.json")
    ap.add_argument("--work", type=Path, default=None, help="folder for the tables and the store (default: temp)")
    ap.add_argument("--tables", default=",".join(TABLES))
    args = ap.parse_args(argv)

    from bench.data.manifest import load_manifest_file
    from bench.store import Store

    work = args.work or Path(tempfile.mkdtemp(prefix="bundled-"))
    store = work / "results"
    result = {"what": __doc__.split("\n\n")[0], "method": "coxph", "protocols": ["clean", "loco"], "tables": {}}
    for name in args.tables.split(","):
        manifest = write_table(name, work / "tables")
        ds = load_manifest_file(manifest)
        t0 = time.perf_counter()
        done = subprocess.run([str(BENCH), "-q", "run", "--method", "coxph", "--protocol", "clean,loco",
                               "--dataset", f"manifest:{manifest}", "--results", str(store)],
                              capture_output=True, text=True)
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        entry = {"manifest": manifest.read_text(), "patients": len(ds.ids), "events": int(ds.outcomes["event"].sum()),
                 "groups": ds.centres.value_counts().sort_index().to_dict(), "seconds": round(time.perf_counter() - t0, 1),
                 "summary": done.stdout.strip().splitlines()[1:5]}
        rows = [r for r in Store(store, readonly=True).rows() if r["dataset"] == ds.name]
        for protocol in ("clean", "loco"):
            folds = sorted((r for r in rows if r["protocol"] == protocol), key=lambda r: r["fold"])
            entry[protocol] = [{"fold": r["fold_name"], **{k: round(json.loads(r["metrics"])[k], 4)
                                                           for k in ("cindex_td", "cindex_harrell", "cindex_uno")}}
                               for r in folds]
        result["tables"][name] = entry
        print(f"{name}: {entry['patients']} patients, {entry['events']} events, groups {entry['groups']}")
        for protocol in ("clean", "loco"):
            print(f"  {protocol}: " + ", ".join(f"{f['fold']} {f['cindex_harrell']:.3f}" for f in entry[protocol]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
