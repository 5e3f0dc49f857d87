"""The Ray executor (``bench run --executor ray``) against the local one on this machine: equal rows, the wall
clock of each, a worker killed mid-fit, and Ctrl-C on the driver.

    .venv/bin/python benchmarks/ray_executor.py [--out benchmarks/results/ray-executor.json] [--repeats 2] [--keep]

A Ray head is started for the measurement on loopback only (2 CPUs, 2 logical GPUs: Ray schedules fractional GPUs
on them, torch sees no CUDA, so every fit runs on the CPU), in a short temp folder under /tmp; it is stopped at the
end (also on error) by ending the processes whose command line names that folder or that hold a file under it, and
only those (never `ray stop`, which would stop every cluster of this user). About 5 minutes on 2 cores.

1. equality and overhead: each workload --repeats times with ``--executor local`` (before the head is started) and
   as often with ``--executor ray``, each `bench run` in its own fresh BENCH_CACHE_DIR and --results; the wall clock
   of the process; every store compared row by row with the first local run's;
2. a killed worker: the deep workload under ray with ``BENCH_FAULT=epoch-checkpoint:kill@1`` (once across
   processes), compared with the local run;
3. Ctrl-C on the driver: the clinical workload under ray with ``BENCH_FAULT=row-written:interrupt@3``, then the
   same command again, compared with the local run.

The scratch folders are removed afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BENCH = str(BIN / "bench")
# the loopback-only, token-free Ray head of the tests (tests/helpers.py)
sys.path.insert(0, str(ROOT / "tests"))
from helpers import RAY_LOOPBACK as LOOPBACK, processes_under, start_ray_head, stop_ray_head  # noqa: E402
# never inherited from the shell that runs this script
DROPPED_ENV = ("BENCH_FAULT", "BENCH_FAULT_ONCE", "BENCH_CLAIM_TTL", "BENCH_CACHE_DIR", "RAY_ADDRESS")
KEY = ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed")
COMPARED = KEY + ("status", "metrics", "notes", "corruption", "predictions", "manifest", "bootstrap")
SUMMARY = re.compile(r"(\d+) job\(s\) run, (\d+) already done, (\d+) model\(s\) fitted, (\d+) reused")
PROCESS_TIMEOUT = 600

WHAT = {
    "equality": (
        "Each workload run twice from empty caches, once with --executor local (in-process, before the Ray head "
        "was started) and once with --executor ray against a fresh loopback Ray head with 2 CPUs and 2 logical GPUs "
        "(torch sees no CUDA: all work on the CPU); each `bench run` in its own fresh BENCH_CACHE_DIR and --results "
        "folder; wall_s is the wall clock of the `bench run` process (Python start-up, connecting to Ray, warming "
        "caches, fits, scoring). The two stores are compared row by row (runs.sqlite read-only) on " +
        ", ".join(COMPARED) + ". For the ray run, the rows' env JSON gives each worker's pid, gpu_ids and pinned "
        "threads."),
    "killed_worker": (
        "The deep workload (c) again under --executor ray, fresh cache and results, with "
        "BENCH_FAULT=epoch-checkpoint:kill@1 and BENCH_FAULT_ONCE=<marker>: the first worker to save a training "
        "checkpoint SIGKILLs itself (once across all processes). Ray retries the task in a new worker, which should "
        "resume from the checkpoint; the driver stores the result once. Rows compared with the local run of (c)."),
    "ctrl_c": (
        "The clinical workload (a) under --executor ray with BENCH_FAULT=row-written:interrupt@3: the driver raises "
        "KeyboardInterrupt (Ctrl-C) right after writing its 3rd row, cancelling the tasks in flight; expected exit "
        "130 with the claims released. Then the same command without the fault, in the same results folder and "
        "cache: it should run only the rows left and skip those done. Final rows compared with the local run of (a)."),
}


# --- processes --------------------------------------------------------------------------------------------------
def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}


def bench(args: list[str], cache: Path, logs: Path, **extra: str) -> dict:
    """Run ``bench`` in a session of its own (output to files: orphaned Ray or pool workers could hold a pipe open),
    its caches in ``cache``; whatever it leaves running is ended with its process group. The wall clock is that of
    the process."""
    env = base_env() | {"BENCH_CACHE_DIR": str(cache)} | extra
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([BENCH, *args], stdout=out, stderr=err, env=env, start_new_session=True, cwd=ROOT)
        try:
            proc.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            seconds = time.perf_counter() - t0
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    stdout, stderr = (logs / "stdout").read_text(errors="replace"), (logs / "stderr").read_text(errors="replace")
    found = SUMMARY.search(stdout)
    counts = dict(zip(("ran", "skipped", "fitted", "reused"), map(int, found.groups()))) if found else None
    return {"command": "bench " + " ".join(args), "env": extra, "returncode": proc.returncode,
            "wall_s": round(seconds, 2), "summary": counts,
            "warnings": warnings(stderr), "_stdout": stdout, "_stderr": stderr}


def warnings(stderr: str, limit: int = 12) -> list[str]:
    """Distinct warning lines a process printed (Ray's, Python's, bench's), shortened."""
    seen: list[str] = []
    for line in stderr.splitlines():
        if re.search(r"warn", line, re.I):
            short = re.sub(r"\s+", " ", line.strip())[:300]
            if short not in seen:
                seen.append(short)
    return seen[:limit] + ([f"... {len(seen) - limit} more"] if len(seen) > limit else [])


def start_head(temp: str) -> tuple[str, dict]:
    t0 = time.perf_counter()
    address, done = start_ray_head(temp, cpus=2, gpus=2)
    return address, {"command": " ".join(["ray", *done.args[1:]]), "returncode": done.returncode,
                     "seconds": round(time.perf_counter() - t0, 2), "warnings": warnings(done.stdout + done.stderr)}


# --- stores -----------------------------------------------------------------------------------------------------
def store_rows(results: Path) -> list[dict]:
    db = results / "runs.sqlite"
    if not db.is_file():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs")]
    finally:
        con.close()


def keyed(rows: list[dict]) -> dict[tuple, dict]:
    return {tuple(r[c] for c in KEY): r for r in rows}


def compare(got: list[dict], want: list[dict]) -> dict:
    """Row-by-row equality of two stores on COMPARED."""
    g, w = keyed(got), keyed(want)
    differing: dict[str, list[str]] = {}
    for k in sorted(g.keys() & w.keys(), key=str):
        cols = [c for c in COMPARED if g[k][c] != w[k][c]]
        if cols:
            differing[f"{k[0]} protocol {k[3]} fold {k[4]} seed {k[5]}"] = cols
    return {"rows": len(got), "reference_rows": len(want), "duplicate_keys": len(got) - len(g),
            "rows_equal": len(g.keys() & w.keys()) - len(differing), "rows_differing": len(differing),
            "missing": len(w.keys() - g.keys()), "extra": len(g.keys() - w.keys()),
            "differing": dict(list(differing.items())[:10])}


def workers(rows: list[dict]) -> dict:
    """Where the finished rows were computed, from their env JSON: the ray workers' pids, GPU ids and pinned
    threads (a row left running by an interrupted run has no worker yet)."""
    envs = [json.loads(r["env"]) for r in rows if r.get("env") and r["status"] == "done"]
    wk = [e.get("worker") or {} for e in envs]
    threads = sorted({json.dumps(e.get("threads"), sort_keys=True) for e in envs})
    return {
        "executor": sorted({str(e.get("executor")) for e in envs}),
        "worker_pids": sorted({w["pid"] for w in wk if "pid" in w}),
        "gpu_ids": sorted({json.dumps(w.get("gpu_ids")) for w in wk if "gpu_ids" in w}),
        "device": sorted({str(w.get("device")) for w in wk if w}),
        "node_ip": sorted({str(w.get("node_ip")) for w in wk if w}),
        "threads": [json.loads(t) for t in threads],
    }


def run_entry(run: dict, results: Path, reference: list[dict] | None = None) -> dict:
    rows = store_rows(results)
    entry = {k: v for k, v in run.items() if not k.startswith("_")}
    entry |= {"rows": len(rows), "rows_done": sum(r["status"] == "done" for r in rows),
              "fits": run["summary"]["fitted"] if run["summary"] else None}
    if any((json.loads(r["env"]) if r.get("env") else {}).get("worker") for r in rows):
        entry["workers"] = workers(rows)
    else:
        entry["threads"] = workers(rows)["threads"]
    if reference is not None:
        entry["vs_local"] = compare(rows, reference)
    return entry


# --- environment ------------------------------------------------------------------------------------------------
def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    versions = {}
    for pkg in ("survbench", "ray", "torch", "numpy", "scikit-survival", "lifelines", "monai"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    mem = None
    try:
        mem = round(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {"commit": git("rev-parse", "--short", "HEAD"), "tree_dirty": bool(git("status", "--porcelain")),
            "cpus": os.cpu_count(), "memory_gib": mem, "machine": platform.machine(),
            "processor": platform.processor() or None, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "date": time.strftime("%Y-%m-%d"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# --- the measurement --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray-executor.json")
    ap.add_argument("--keep", action="store_true", help="keep the scratch caches, stores and logs")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per workload and executor, each from empty "
                    "caches (the first is the one compared in full; the machine is shared, so times are noisy)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    env = environment()
    scratch = Path(tempfile.mkdtemp(prefix="rayx-", dir="/tmp"))
    temp = tempfile.mkdtemp(prefix="sbray", dir="/tmp")  # short: Ray's socket paths live under it
    print(f"scratch {scratch}, Ray temp dir {temp}", flush=True)

    smoke = scratch / "data" / "smoke"
    workloads = {
        "a": {"label": "coxph, clean+noisy (11 protocols), demo, 5 folds",
              "args": ["run", "-m", "coxph", "-p", "clean,noisy", "-d", "demo", "--scale", "smoke"]},
        "b": {"label": "radiomics-cox, clean+noisy10, synthetic smoke cohort, 5 folds",
              "args": ["run", "-m", "radiomics-cox", "-p", "clean,noisy10", "-d", f"hecktor2022:{smoke}",
                       "--scale", "smoke"]},
        "c": {"label": "deepmts, clean, synthetic smoke cohort, 5 folds",
              "args": ["run", "-m", "deepmts", "-p", "clean", "-d", f"hecktor2022:{smoke}", "--scale", "smoke"]},
    }

    def args_of(name: str, out: Path, executor: str, address: str | None = None) -> list[str]:
        extra = ["--executor", "ray", "--address", address] if executor == "ray" else ["--executor", "local"]
        return [*workloads[name]["args"], "--results", str(out), "--device", "auto", *extra]

    doc: dict = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "environment": env,
                 "workloads": {k: {"label": v["label"], "args": "bench " + " ".join(v["args"])}
                               for k, v in workloads.items()},
                 "shrunk": "nothing: the workloads as briefed (coxph on clean + noisy10..noisy100, radiomics-cox on "
                           "clean + noisy10, deepmts on clean, all --scale smoke) fit in the time, each run twice per "
                           "executor"}
    local: dict[str, list[dict]] = {}
    try:
        # the smoke cohort, once, outside every timed run's cache
        synth = bench(["data", "synth", "--scale", "smoke", "--out", str(smoke)], scratch / "data" / "cache",
                      scratch / "logs" / "synth")
        doc["dataset"] = {k: v for k, v in synth.items() if not k.startswith("_") and k != "summary"}
        if synth["returncode"]:
            raise SystemExit(f"bench data synth failed:\n{synth['_stderr'][-3000:]}")

        # 1. local runs (no Ray head running yet), then the same under ray; each repeat from empty caches
        eq: dict = {"what": WHAT["equality"], "repeats": args.repeats, "workloads": {}}
        doc["equality"] = eq
        for name in workloads:
            eq["workloads"][name] = {"label": workloads[name]["label"]}
            for i in range(args.repeats):
                base = scratch / f"local-{name}-{i}"
                print(f"[local {name} #{i + 1}] {workloads[name]['label']}", flush=True)
                run = bench(args_of(name, base / "out", "local"), base / "cache", base / "logs")
                if run["returncode"]:
                    print(run["_stderr"][-3000:])
                if i == 0:
                    local[name] = store_rows(base / "out")
                    eq["workloads"][name]["local"] = run_entry(run, base / "out")
                else:
                    eq["workloads"][name].setdefault("local_repeats", []).append(
                        run_entry(run, base / "out", local[name]))

        # the head
        address, head = start_head(temp)
        doc["ray_head"] = head | {
            "address": "127.0.0.1:<free port>", "num_cpus": 2, "num_gpus": 2,
            "stopping": "TERM then KILL to the processes whose command line names the temp dir or that hold a file "
                        "under it: Ray's ray::DashboardAgent and ray::RuntimeEnvAgent name neither in their command "
                        "line and outlive the raylet (orphaned to init) when only command lines are matched"}
        print(f"Ray head at {address} ({head['seconds']} s to start)", flush=True)

        for name in workloads:
            w = eq["workloads"][name]
            for i in range(args.repeats):
                base = scratch / f"ray-{name}-{i}"
                print(f"[ray {name} #{i + 1}] {workloads[name]['label']}", flush=True)
                run = bench(args_of(name, base / "out", "ray", address), base / "cache", base / "logs", **LOOPBACK)
                if run["returncode"]:
                    print(run["_stderr"][-3000:])
                if i == 0:
                    w["ray"] = run_entry(run, base / "out", local[name])
                else:
                    w.setdefault("ray_repeats", []).append(run_entry(run, base / "out", local[name]))
            lo = [w["local"]["wall_s"]] + [r["wall_s"] for r in w.get("local_repeats", [])]
            ra = [w["ray"]["wall_s"]] + [r["wall_s"] for r in w.get("ray_repeats", [])]
            w["wall_s"] = {"local": lo, "ray": ra, "local_min": min(lo), "ray_min": min(ra)}
            w["ray_over_local_min"] = round(min(ra) / min(lo), 2)
            w["ray_minus_local_min_s"] = round(min(ra) - min(lo), 1)

        # 2. a worker killed at its first epoch checkpoint
        base = scratch / "ray-c-killed"
        marker = base / "fired"
        base.mkdir(parents=True)
        print("[ray c, worker killed] BENCH_FAULT=epoch-checkpoint:kill@1", flush=True)
        run = bench(args_of("c", base / "out", "ray", address), base / "cache", base / "logs",
                    BENCH_FAULT="epoch-checkpoint:kill@1", BENCH_FAULT_ONCE=str(marker), **LOOPBACK)
        resumed = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in run["_stderr"].splitlines()
                   if "resuming from the checkpoint after epoch" in ln]
        entry = run_entry(run, base / "out", local["c"])
        doc["killed_worker"] = {"what": WHAT["killed_worker"], "run": entry, "fault_fired": marker.exists(),
                                "extra_s_over_fastest_ray_run": round(entry["wall_s"] - eq["workloads"]["c"]
                                                                      ["wall_s"]["ray_min"], 1),
                                "driver_stderr_says_resuming": bool(resumed), "resuming_lines": resumed[:4],
                                "claims_left": claims(base / "out")}

        # 3. Ctrl-C on the driver after its 3rd row, then the same command again
        base = scratch / "ray-a-ctrl-c"
        argv_a = args_of("a", base / "out", "ray", address)
        print("[ray a, Ctrl-C] BENCH_FAULT=row-written:interrupt@3", flush=True)
        stopped = bench(argv_a, base / "cache", base / "logs-stopped", BENCH_FAULT="row-written:interrupt@3",
                        **LOOPBACK)
        left = store_rows(base / "out")
        done_before = {k: r for k, r in keyed(left).items() if r["status"] == "done"}
        stop_entry = run_entry(stopped, base / "out")
        stop_entry |= {"rows_running": sum(r["status"] == "running" for r in left),
                       "models_saved": models_saved(base / "out"),
                       "claims_left": claims(base / "out"),
                       "says_interrupted": "interrupted" in stopped["_stderr"],
                       "traceback": "Traceback" in stopped["_stderr"],
                       "stderr_tail": stopped["_stderr"].strip().splitlines()[-3:]}
        print("[ray a, rerun]", flush=True)
        again = bench(argv_a, base / "cache", base / "logs-again", **LOOPBACK)
        again_entry = run_entry(again, base / "out", local["a"])
        after = keyed(store_rows(base / "out"))
        again_entry["rows_done_before_unchanged"] = sum(
            all(after.get(k, {}).get(c) == r[c] for c in COMPARED) for k, r in done_before.items())
        again_entry["claims_left"] = claims(base / "out")
        doc["ctrl_c"] = {"what": WHAT["ctrl_c"], "stopped": stop_entry, "rerun": again_entry}
    finally:
        stopped = stop_ray_head(temp)  # whether or not `ray start` got as far as returning
        doc.setdefault("ray_head", {}).update(processes_stopped=len(stopped), processes_stopped_names=stopped,
                                              processes_left=len(processes_under(temp)))
        shutil.rmtree(temp, ignore_errors=True)
        doc["total_wall_s"] = round(time.perf_counter() - t_start, 1)
        text = json.dumps(doc, indent=1) + "\n"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text.replace(str(scratch), "$SCRATCH").replace(temp, "$RAY_TEMP"))
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print_summary(doc)
    print(f"written: {args.out}")
    return 0


def models_saved(results: Path) -> int:
    con = sqlite3.connect(f"file:{results / 'runs.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    finally:
        con.close()


def claims(results: Path) -> int | None:
    if not (results / "runs.sqlite").is_file():
        return None
    from bench.store import Store

    return len(Store(results, readonly=True).claims())


def print_summary(doc: dict) -> None:
    eq = doc.get("equality", {}).get("workloads", {})
    print("\nworkload                                                 local s (min)   ray s (min)  ray/local  rows  "
          "equal  differ  fits l/r  ray workers: pids / gpu_ids / pinned threads")
    for name, w in eq.items():
        lo, ra = w.get("local"), w.get("ray")
        if not (lo and ra and "wall_s" in w):
            print(f"{name} {w['label'][:54]:54} incomplete")
            continue
        v, wk = ra["vs_local"], ra.get("workers", {})
        pinned = sorted({t.get("pinned") for t in wk.get("threads", []) if t})
        again = [r["vs_local"]["rows_differing"] for r in w.get("ray_repeats", []) + w.get("local_repeats", [])]
        t = w["wall_s"]
        print(f"{name} {w['label'][:54]:54} {'/'.join(f'{x:.1f}' for x in t['local']):>13} "
              f"{'/'.join(f'{x:.1f}' for x in t['ray']):>13} {w['ray_over_local_min']:9.2f} {v['rows']:5d} "
              f"{v['rows_equal']:6d} {v['rows_differing']:7d} {lo['fits']!s:>5}/{ra['fits']!s:<4} "
              f"{len(wk.get('worker_pids', []))} pid(s) / {','.join(wk.get('gpu_ids', []))} / {pinned}"
              + (f"  (repeats differing: {again})" if again else ""))
    k = doc.get("killed_worker")
    if k:
        r = k["run"]
        v = r["vs_local"]
        print(f"\nkilled worker (c): exit {r['returncode']}, fault fired {k['fault_fired']}, {r['wall_s']} s, rows "
              f"done {r['rows_done']}/{r['rows']}, equal to local {v['rows_equal']}/{v['reference_rows']} (differ "
              f"{v['rows_differing']}), resumed from checkpoint: {k['driver_stderr_says_resuming']}, "
              f"worker pids {r.get('workers', {}).get('worker_pids')}")
    c = doc.get("ctrl_c")
    if c:
        s, a = c["stopped"], c["rerun"]
        print(f"Ctrl-C (a): exit {s['returncode']} after {s['wall_s']} s, rows done at stop {s['rows_done']} "
              f"(running {s['rows_running']}), claims left {s['claims_left']}; rerun exit {a['returncode']} in "
              f"{a['wall_s']} s: {a['summary']}, equal to local {a['vs_local']['rows_equal']}/"
              f"{a['vs_local']['reference_rows']} (differ {a['vs_local']['rows_differing']})")
    print(f"total {doc.get('total_wall_s')} s")


if __name__ == "__main__":
    raise SystemExit(main())
