"""Reliability suite (issue 25): a run that dies, fails or is interrupted at any named moment leaves a store
and caches that the next run resumes to exactly the rows of a run that was never stopped; two runs on one
store share its jobs.

Fault injection, each a real ``bench`` process with ``BENCH_FAULT`` set (``bench.faults``), then a rerun
without it, compared with an uninterrupted reference run:

- ``synthesis`` (kill after 10 of 40 patients of the smoke cohort): the resumed cohort is byte for byte the
  uninterrupted one;
- ``image-pipeline`` (kill after 5 patients are preprocessed, deepmts) and ``epoch-checkpoint`` (kill after
  the first of two epochs, deepmts; the rerun resumes from that checkpoint); ``model-saved``, ``scoring``
  and ``row-written`` (kill, coxph on two protocols sharing each fold's model, a row finished before the
  kill left as it was): the store is readable and consistent after the kill, and after the rerun every row
  is there once with metrics, notes, manifests, predictions and bootstrap blobs equal, bit for bit, to the
  reference;
- ``row-written:interrupt`` (Ctrl-C: exit 130, claims released) and ``model-saved:raise`` (an unexpected
  error: its job's rows are failed, the sweep goes on, exit 1): the rerun completes them the same way.

Concurrency: two ``bench run`` processes started together on one store (every row once, each fold's model
fitted once across both); a killed claimant's job taken over by the next run — at once when the claimant
ran on this host (its process is gone), after ``BENCH_CLAIM_TTL`` when it ran on another host.

The ``bench.faults`` mechanism itself: syntax, actions, the n-th arrival, unknown names (a ValueError in
code, exit 2 for ``BENCH_FAULT``), and every listed point placed exactly once in the code.

With ``BENCH_RELIABILITY_OUT`` set to a folder, each fault and concurrency case writes what it saw there
as JSON (benchmarks/reliability_figures.py collects them).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from bench import faults
from bench.errors import BenchInputError
from bench.faults import FAULT_POINTS, InjectedFault, fault_point
from bench.store import Store
from helpers import BENCH, ROOT, reliability_protocols

KEY = ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed")
# what a resumed row must share with the uninterrupted run's (times, environment and history are allowed to differ)
COMPARED = KEY + ("protocol", "fold_name", "train_key", "status", "config", "protocol_content", "metrics", "notes",
                  "corruption", "predictions", "manifest", "bootstrap")
RUN_ENV = ("BENCH_FAULT", "BENCH_CLAIM_TTL")  # never inherited from the shell that runs the tests


# --- workloads ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def protocols(tmp_path_factory) -> dict[str, Path]:
    return reliability_protocols(tmp_path_factory.mktemp("protocols"))


def _workload(name: str, target: Path, protocols: dict[str, Path], clinical_dir: Path, image_dir: Path) -> list[str]:
    """``bench`` arguments of a workload writing to ``target``: clinical (coxph, 2 folds × 2 protocols: 4 rows,
    2 fits), deep (deepmts, one fold: one training of 2 epochs, one row) or synthesis (the smoke cohort)."""
    if name == "synthesis":
        return ["data", "synth", "--scale", "smoke", "--out", str(target)]
    if name == "clinical":
        return ["run", "-m", "coxph", "-p", f"{protocols['rel-clean']},{protocols['rel-noisy']}", "-d",
                f"hecktor2022:{clinical_dir}", "--scale", "smoke", "--results", str(target), "--device", "cpu"]
    return ["run", "-m", "deepmts", "-p", str(protocols["rel-centre"]), "-d", f"hecktor2022:{image_dir}",
            "--scale", "smoke", "--results", str(target), "--device", "cpu"]


def bench(args: list[str], cache: Path, logs: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the installed ``bench`` in a session of its own, its caches in ``cache``. Output goes to files in
    ``logs`` (a killed process's pool workers could hold a pipe open), and whatever the process leaves
    running (workers orphaned by a kill) is ended with its process group."""
    full_env = {k: v for k, v in os.environ.items() if k not in RUN_ENV} | {"BENCH_CACHE_DIR": str(cache)} | env
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen([BENCH, *args], stdout=out, stderr=err, env=full_env, start_new_session=True)
        try:
            proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, (logs / "stdout").read_text(),
                                       (logs / "stderr").read_text())


def rows(results: Path) -> list[dict]:
    """Every row of a store, read directly (no check that could hide a duplicate)."""
    con = sqlite3.connect(f"file:{results / 'runs.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs")]
    finally:
        con.close()


def check_store(results: Path) -> list[dict]:
    """The store is whole: SQLite's integrity check passes and every row reads back through ``Store``."""
    con = sqlite3.connect(f"file:{results / 'runs.sqlite'}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    Store(results, readonly=True).rows()
    return rows(results)


def by_key(found: list[dict]) -> dict[tuple, dict]:
    keyed = {tuple(r[c] for c in KEY): r for r in found}
    assert len(keyed) == len(found), "duplicate rows"
    return keyed


def differences(found: list[dict], reference: list[dict]) -> list[str]:
    """What differs between two stores' rows: missing or extra keys, and compared columns that are not equal."""
    got, want = by_key(found), by_key(reference)
    out = [f"missing {k}" for k in want.keys() - got.keys()] + [f"extra {k}" for k in got.keys() - want.keys()]
    for k in want.keys() & got.keys():
        out += [f"{k}: {c}" for c in COMPARED if got[k][c] != want[k][c]]
    return out


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def summary(done: subprocess.CompletedProcess) -> dict[str, int]:
    """The counts `bench run` prints at the end: rows run and already done, models fitted and reused."""
    found = re.search(r"(\d+) job\(s\) run, (\d+) already done, (\d+) model\(s\) fitted, (\d+) reused", done.stdout)
    assert found, done.stdout + done.stderr[-3000:]
    return dict(zip(("ran", "skipped", "fitted", "reused"), map(int, found.groups())))


def record(name: str, doc: dict) -> None:
    """What a case saw, for benchmarks/reliability_figures.py, when ``BENCH_RELIABILITY_OUT`` names a folder."""
    folder = os.environ.get("BENCH_RELIABILITY_OUT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True))


@pytest.fixture(scope="module")
def reference(protocols, tiny_clinical_dir, tiny_dataset_dir, tmp_path_factory):
    """An uninterrupted run of a workload (made on first use): its store's rows, or a cohort's file digests."""
    made: dict[str, object] = {}

    def get(workload: str):
        if workload not in made:
            base = tmp_path_factory.mktemp(f"reference-{workload}")
            done = bench(_workload(workload, base / "out", protocols, tiny_clinical_dir, tiny_dataset_dir),
                         base / "cache", base / "logs")
            assert done.returncode == 0, done.stderr[-3000:]
            made[workload] = digests(base / "out") if workload == "synthesis" else check_store(base / "out")
        return made[workload]

    return get


# --- fault injection ----------------------------------------------------------------------------------------------
# id: (workload, BENCH_FAULT, exit code, rows finished when it stopped, rows failed when it stopped)
FAULTS = {
    "synthesis": ("synthesis", "synthesis:kill@10", -signal.SIGKILL, None, None),
    "image-pipeline": ("deep", "image-pipeline:kill@5", -signal.SIGKILL, 0, 0),
    "epoch-checkpoint": ("deep", "epoch-checkpoint:kill@1", -signal.SIGKILL, 0, 0),
    "model-saved": ("clinical", "model-saved:kill@2", -signal.SIGKILL, 2, 0),
    "scoring": ("clinical", "scoring:kill@2", -signal.SIGKILL, 1, 0),
    "row-written": ("clinical", "row-written:kill@3", -signal.SIGKILL, 3, 0),
    "row-written:interrupt": ("clinical", "row-written:interrupt@1", 130, 1, 0),
    "model-saved:raise": ("clinical", "model-saved:raise@1", 1, 2, 2),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_run_stopped_at_a_fault_point_resumes_to_the_uninterrupted_result(
        case, protocols, tiny_clinical_dir, tiny_dataset_dir, reference, tmp_path):
    workload, spec, code, finished, failed = FAULTS[case]
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = _workload(workload, out, protocols, tiny_clinical_dir, tiny_dataset_dir)
    stopped = bench(args, cache, tmp_path / "stopped", BENCH_FAULT=spec)
    assert stopped.returncode == code, (stopped.returncode, stopped.stderr[-3000:])
    assert "Traceback" not in stopped.stderr or code == 1, stopped.stderr[-3000:]
    seen = {"case": case, "fault": spec, "exit": stopped.returncode}

    if workload == "synthesis":
        assert not (out / ".complete").exists()
        assert len(list((out / "groundtruth" / "patients").glob("*.json"))) == 10
        again = bench(args, cache, tmp_path / "again")
        assert again.returncode == 0, again.stderr[-3000:]
        want = reference("synthesis")
        got = digests(out)
        assert got == want, sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))[:10]
        record(f"fault-{case}", seen | {"files": len(got), "identical": True})
        return

    left = check_store(out)
    assert sum(r["status"] == "done" for r in left) == finished, [(r["protocol"], r["fold"], r["status"]) for r in left]
    assert sum(r["status"] == "failed" for r in left) == failed
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp")]
    if code == 130:
        assert "interrupted" in stopped.stderr and Store(out, readonly=True).claims() == []  # released on Ctrl-C
    if case == "epoch-checkpoint":
        assert len(list((cache / "methods" / "deepmts" / "checkpoints").glob("*.pt"))) == 1
    finished_before = {k: r for k, r in by_key(left).items() if r["status"] == "done"}

    again = bench(args, cache, tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    want, got = reference(workload), check_store(out)
    assert differences(got, want) == []
    assert all(by_key(got)[k] == r for k, r in finished_before.items())  # finished rows are left as they were
    ran = summary(again)
    assert ran["ran"] == len(want) - finished and ran["skipped"] == finished, again.stdout
    if case in ("model-saved", "scoring", "model-saved:raise"):
        assert ran["reused"] == 1  # the model stored before the stop is used, not fitted again
    if case == "epoch-checkpoint":
        assert "resuming from the checkpoint after epoch 1" in again.stderr
    record(f"fault-{case}", seen | {"rows_finished_at_stop": finished, "rows_failed_at_stop": failed,
                                    "rows_after_resume": len(got), "rows_expected": len(want), "duplicates": 0,
                                    "missing": 0, "identical": True})


# --- concurrent runs ---------------------------------------------------------------------------------------------
def test_two_bench_runs_started_together_share_the_jobs(tiny_clinical_dir, tmp_path):
    """coxph on clean and noisy10 (5 folds: 10 rows, 5 fits), two processes on one store at the same time."""
    out = tmp_path / "out"
    args = ["run", "-m", "coxph", "-p", "clean,noisy10", "-d", f"hecktor2022:{tiny_clinical_dir}", "--scale",
            "smoke", "--results", str(out), "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in RUN_ENV} | {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([BENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    done = [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs)]
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    counts = [summary(d) for d in done]
    found = check_store(out)
    by_key(found)
    assert len(found) == 10 and {r["status"] for r in found} == {"done"}
    assert sum(c["ran"] for c in counts) == 10  # every row finished by exactly one of them
    assert sum(c["fitted"] for c in counts) == 5  # every fold's model fitted once, whichever process did it
    assert len(list((out / "models").glob("*.model"))) == 5 and Store(out, readonly=True).claims() == []
    record("concurrent-runs", {"processes": counts, "rows": len(found), "jobs": 10, "fits": 5,
                               "fits_done": sum(c["fitted"] for c in counts), "duplicates": 0})


@pytest.mark.parametrize("where", ["this host", "another host"])
def test_the_job_of_a_killed_claimant_is_taken_over(where, protocols, tiny_clinical_dir, tiny_dataset_dir, tmp_path):
    """A run killed holding its claim on fold 1's job (its model stored, its rows not finished). On this host
    the next run sees the process is gone and takes the job at once; a claimant on another host cannot be
    checked, so the job waits until its heartbeat is ``BENCH_CLAIM_TTL`` seconds old."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = _workload("clinical", out, protocols, tiny_clinical_dir, tiny_dataset_dir)
    killed = bench(args, cache, tmp_path / "killed", BENCH_FAULT="model-saved:kill@2")
    assert killed.returncode == -signal.SIGKILL
    (claim,) = Store(out, readonly=True).claims()
    assert claim["claimant"].startswith(socket.gethostname() + ":")
    ttl = 3600.0 if where == "this host" else 3.0
    if where == "another host":
        with sqlite3.connect(out / "runs.sqlite") as con:
            con.execute("UPDATE claims SET claimant = 'elsewhere.example:' || claimant, heartbeat = ?", (time.time(),))
        con.close()
    t0 = time.perf_counter()
    again = bench(args, cache, tmp_path / "again", BENCH_CLAIM_TTL=str(ttl))
    waited = time.perf_counter() - t0
    assert again.returncode == 0, again.stderr[-3000:]
    assert "taking over the claim" in again.stderr
    counts = summary(again)
    found = check_store(out)
    by_key(found)
    assert len(found) == 4 and {r["status"] for r in found} == {"done"} and Store(out, readonly=True).claims() == []
    assert counts == {"ran": 2, "skipped": 2, "fitted": 0, "reused": 1}  # the killed run's model, not a new fit
    if where == "another host":
        assert waited >= ttl
    record(f"claim-takeover-{where.replace(' ', '-')}", {"ttl_s": ttl, "waited_s": round(waited, 1), "rows": len(found),
                                                         "fits": len(list((out / "models").glob("*.model"))),
                                                         "second_run": counts})


# --- the mechanism -------------------------------------------------------------------------------------------------
@pytest.fixture
def fault_env(monkeypatch):
    faults.reset()
    yield lambda spec: monkeypatch.setenv("BENCH_FAULT", spec)
    faults.reset()


def test_a_point_fires_on_its_nth_arrival_with_its_action(fault_env):
    fault_env("scoring:raise@3")
    fault_point("scoring")
    fault_point("row-written")  # another point: not counted, does nothing
    fault_point("scoring")
    with pytest.raises(InjectedFault, match="scoring"):
        fault_point("scoring")
    fault_point("scoring")  # fired once; the fourth arrival passes
    faults.reset()
    fault_env("row-written:interrupt")
    with pytest.raises(KeyboardInterrupt):
        fault_point("row-written")
    assert faults.parse("model-saved") == ("model-saved", "kill", 1)
    assert faults.parse("synthesis:kill@12") == ("synthesis", "kill", 12)


def test_with_bench_fault_once_only_the_first_process_to_reach_the_point_fails(fault_env, monkeypatch, tmp_path):
    """A task retried in a new worker (bench.ray_executor) must not die again at the point that killed it."""
    marker = tmp_path / "fired"
    fault_env("scoring:raise")
    monkeypatch.setenv("BENCH_FAULT_ONCE", str(marker))
    with pytest.raises(InjectedFault):
        fault_point("scoring")
    assert marker.exists()
    faults.reset()  # as a new process: its first arrival
    fault_point("scoring")  # the marker exists: it passes


def test_without_bench_fault_every_point_is_a_no_op(monkeypatch):
    monkeypatch.delenv("BENCH_FAULT", raising=False)
    for name in FAULT_POINTS:
        fault_point(name)


@pytest.mark.parametrize("spec, words", [
    ("row-writen", "did you mean 'row-written'"), ("scoring:explode", "action 'explode'"),
    ("scoring@0", "@0 must be a positive"), ("scoring@x", "@x must be"), (":kill", "'' is not a fault point"),
])
def test_a_bad_bench_fault_is_an_input_error(fault_env, spec, words):
    fault_env(spec)
    with pytest.raises(BenchInputError, match=re.escape(words)):
        fault_point("scoring")


def test_a_bad_bench_fault_makes_bench_exit_2(tiny_clinical_dir, protocols, tmp_path):
    args = _workload("clinical", tmp_path / "out", protocols, tiny_clinical_dir, tiny_clinical_dir)
    done = bench(args, tmp_path / "cache", tmp_path / "logs", BENCH_FAULT="model-save")
    assert done.returncode == 2 and "BENCH_FAULT='model-save'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # refused before any work: no store, no fit


def test_an_unlisted_point_in_code_is_a_value_error(monkeypatch):
    monkeypatch.delenv("BENCH_FAULT", raising=False)
    with pytest.raises(ValueError, match="not a fault point"):
        fault_point("row-writen")


def test_every_listed_point_is_placed_once_and_every_placed_point_is_listed():
    """Once in the code a local run goes through; the Ray executor's driver writes the store itself, so it
    places the two points between its writes (model-saved, row-written) once more, and nothing else."""
    calls = re.compile(r"""fault_point\(["']([^"']+)["']\)""")
    placed: dict[str, list[str]] = {}
    for path in sorted((ROOT / "bench").rglob("*.py")):
        if path.name == "faults.py":
            continue
        for name in calls.findall(path.read_text()):
            placed.setdefault(name, []).append(str(path.relative_to(ROOT)))
    ray_driver = "bench/ray_executor.py"
    assert {n: [p for p in ps if p == ray_driver] for n, ps in placed.items() if ray_driver in ps} == {
        "model-saved": [ray_driver], "row-written": [ray_driver]}
    local = {n: [p for p in ps if p != ray_driver] for n, ps in placed.items()}
    assert {n: len(p) for n, p in local.items()} == {n: 1 for n in FAULT_POINTS}, placed
    assert set(FAULTS[c][1].split(":")[0].split("@")[0] for c in FAULTS) == set(FAULT_POINTS)  # each one tested
