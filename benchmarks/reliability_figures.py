"""Reliability figures (issue 25): faults injected and survived, bad inputs answered with exit 2, data-lost
checks and the job and fit counts of concurrent runs, from one run of the reliability tests.

Collects (``pytest --collect-only -q``) and runs tests/test_reliability.py and the three hostile-input files in
one pytest process with a JUnit report; the reliability tests write what each fault and concurrency case
saw to ``BENCH_RELIABILITY_OUT`` (a scratch folder). Hostile cases are classified from their test's source:
answered by ``bench`` with exit 2, refused by the library with a ``BenchInputError``, or another check.

``--pre-fix TREE`` also runs the same cases against a checkout of the commit before the fixes (``git worktree
add /tmp/pre25 dd88dbd``), importing its ``bench`` first (PYTHONPATH): the fault points do not exist there, so
each fault case stops the process from outside (SIGKILL, or SIGINT for Ctrl-C) at the moment its point names,
seen from the files it writes; the hostile test files run with the names the old code lacks set to None.

    python benchmarks/reliability_figures.py [--pre-fix /tmp/pre25]

writes benchmarks/results/reliability.json (a later run without --pre-fix keeps its pre-fix part) and
reliability.md. About 3 minutes on 2 cores, and as much again for --pre-fix.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
BENCH = PYTHON.with_name("bench")
RELIABILITY = "tests/test_reliability.py"
HOSTILE = ("tests/test_hostile_store.py", "tests/test_hostile_data.py", "tests/test_hostile_models.py",
           "tests/test_compact_records.py")
MIXED = ("test_compact_records.py",)  # files whose bad-input cases are the tests named "...refused..."
RESULTS = ROOT / "benchmarks" / "results"
KEY = ("method", "config_hash", "dataset_fp", "protocol_hash", "fold", "seed")
COMPARED = ("protocol", "fold_name", "status", "metrics", "notes", "corruption", "predictions", "manifest",
            "bootstrap")
CONCURRENCY = "concurrent runs and finished rows (no input)"
SUMMARY = re.compile(r"(\d+) job\(s\) run, (\d+) already done, (\d+) model\(s\) fitted, (\d+) reused")


# --- the suite on this tree ----------------------------------------------------------------------------------------
def collect(files: list[str], cwd: Path, env: dict) -> list[str]:
    out = subprocess.run([str(PYTHON), "-m", "pytest", "--collect-only", "-q", *files], cwd=cwd, env=env,
                         capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def run_tests(files: list[str], cwd: Path, env: dict, junit: Path) -> dict[str, dict]:
    """Outcome (passed, failed, error, skipped), seconds and first message line of every test, by node id."""
    subprocess.run([str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *files],
                   cwd=cwd, env=env, capture_output=True, text=True)
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            child = case.find(kind)
            if child is not None:
                outcome = "failed" if kind == "failure" else kind
                text = (child.get("message") or child.text or "").strip()
                message = text.splitlines()[0][:200] if text else ""
                break
        found[f"{path}::{case.get('name')}"] = {"outcome": outcome, "seconds": round(float(case.get("time", 0)), 2),
                                                "message": message}
    return found


def hostile_kinds(path: Path) -> dict[str, str]:
    """How each test of a hostile file expects the bad input to be answered, read from its source; the tests of
    claims, finished rows and two runs at once are no input and are counted apart (``CONCURRENCY``)."""
    text = path.read_text()
    kinds = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            src = ast.get_source_segment(text, node) or ""
            if path.name in MIXED and "refused" not in node.name:
                continue  # a test of that file that tries no bad input
            if re.search(r"claim|two_|finished_row", node.name):
                kinds[node.name] = CONCURRENCY
            elif "returncode == 2" in src or "exit_code" in src:
                kinds[node.name] = "bench exits 2 (message naming file, column or patient; no traceback)"
            elif "pytest.raises(BenchInputError" in src:
                kinds[node.name] = "refused by the library (BenchInputError, exit 2 from bench)"
            else:
                kinds[node.name] = "other check (damage detected, named or repaired; nothing of it runs)"
    return kinds


def suite() -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="reliability-"))
    env = os.environ | {"BENCH_RELIABILITY_OUT": str(scratch / "cases")}
    env.pop("BENCH_FAULT", None)
    files = [RELIABILITY, *HOSTILE]
    t0 = time.perf_counter()
    ids = collect(files, ROOT, env)
    outcomes = run_tests(files, ROOT, env, scratch / "junit.xml")
    cases = {p.stem: json.loads(p.read_text()) for p in sorted((scratch / "cases").glob("*.json"))}
    kinds = {f: hostile_kinds(ROOT / f) for f in HOSTILE}
    hostile = {}
    for node in ids:
        path, name = node.split("::", 1)
        if path in kinds and name.split("[")[0] in kinds[path]:
            hostile[node] = {"kind": kinds[path][name.split("[")[0]], **outcomes.get(node, {"outcome": "not run"})}
    shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": round(time.perf_counter() - t0), "collected": len(ids),
            "outcomes": {k: v["outcome"] for k, v in outcomes.items()},
            "reliability_seconds": round(sum(v["seconds"] for k, v in outcomes.items() if k.startswith(RELIABILITY))),
            "cases": cases, "hostile": hostile}


# --- the same cases against the code before the fixes ------------------------------------------------------------
def protocols(folder: Path) -> dict[str, Path]:
    """The reliability suite's small protocols (tests/helpers.py), written under ``folder``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import reliability_protocols

    return reliability_protocols(folder)


def workload(name: str, target: Path, proto: dict[str, Path], data: dict[str, Path]) -> list[str]:
    if name == "synthesis":
        return ["data", "synth", "--scale", "smoke", "--out", str(target)]
    if name == "clinical":
        return ["run", "-m", "coxph", "-p", f"{proto['rel-clean']},{proto['rel-noisy']}", "-d",
                f"hecktor2022:{data['clinical']}", "--scale", "smoke", "--results", str(target), "--device", "cpu"]
    return ["run", "-m", "deepmts", "-p", str(proto["rel-centre"]), "-d", f"hecktor2022:{data['images']}",
            "--scale", "smoke", "--results", str(target), "--device", "cpu"]


def bench(args: list[str], env: dict, logs: Path, stop_when: Callable[[], bool] | None = None,
          sig: int = signal.SIGKILL) -> tuple[int, str, str, bool]:
    """Run ``bench`` in its own session; with ``stop_when``, send ``sig`` (to the session, as a terminal's Ctrl-C
    or kill would) as soon as it holds. Returns (exit code, stdout, stderr, whether it was stopped)."""
    logs.mkdir(parents=True, exist_ok=True)
    stopped = False
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen([str(BENCH), *args], stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            while stop_when is not None and proc.poll() is None:
                if stop_when():
                    os.killpg(proc.pid, sig)
                    stopped = True
                    break
                time.sleep(0.01)
            proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return proc.returncode, (logs / "stdout").read_text(), (logs / "stderr").read_text(), stopped


def store_rows(results: Path) -> list[dict]:
    if not (results / "runs.sqlite").is_file():
        return []
    con = sqlite3.connect(f"file:{results / 'runs.sqlite'}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs")]
    except sqlite3.Error:
        return []
    finally:
        con.close()


def integrity(results: Path) -> str:
    con = sqlite3.connect(f"file:{results / 'runs.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        con.close()


def compare_rows(got: list[dict], want: list[dict]) -> dict:
    keyed = {tuple(r[c] for c in KEY): r for r in got}
    ref = {tuple(r[c] for c in KEY): r for r in want}
    differing = [k for k in ref.keys() & keyed.keys() if any(keyed[k].get(c) != ref[k].get(c) for c in COMPARED)]
    return {"rows": len(got), "expected": len(want), "duplicates": len(got) - len(keyed),
            "missing": len(ref.keys() - keyed.keys()), "differing": len(differing),
            "not_done": sum(r["status"] != "done" for r in got)}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _done_rows(results: Path, n: int) -> Callable[[], bool]:
    return lambda: sum(r["status"] == "done" for r in store_rows(results)) >= n


def _files(folder: Path, pattern: str, n: int) -> Callable[[], bool]:
    return lambda: len(list(folder.glob(pattern))) >= n


# case: (workload, condition(out, cache) -> stop_when, signal, which fault point it stands for)
PRE_FIX_CASES = {
    "synthesis": ("synthesis", lambda out, cache: _files(out / "groundtruth" / "patients", "*.json", 10),
                  signal.SIGKILL),
    "image-pipeline": ("deep", lambda out, cache: _files(cache / "pipeline", "*.npz", 5), signal.SIGKILL),
    "epoch-checkpoint": ("deep", lambda out, cache: _files(cache / "methods" / "deepmts" / "checkpoints", "*.pt", 1),
                         signal.SIGKILL),
    "model-saved": ("clinical", lambda out, cache: _files(out / "models", "[!.]*", 1), signal.SIGKILL),
    "row-written": ("clinical", lambda out, cache: _done_rows(out, 3), signal.SIGKILL),
    "row-written:interrupt": ("clinical", lambda out, cache: _done_rows(out, 1), signal.SIGINT),
}


def pre_fix_cases(tree: Path, scratch: Path) -> dict:
    """Each fault case against ``tree``: stopped from outside, rerun, compared with an uninterrupted run of the
    same code; then two runs started together on one store."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import write_tiny_hecktor

    data = {"clinical": write_tiny_hecktor(scratch / "data" / "clinical", images=False),
            "images": write_tiny_hecktor(scratch / "data" / "images")}
    proto = protocols(scratch / "protocols")
    base_env = {k: v for k, v in os.environ.items() if k not in ("BENCH_FAULT", "BENCH_CLAIM_TTL")}
    base_env["PYTHONPATH"] = str(tree)

    def env_for(cache: Path) -> dict:
        return base_env | {"BENCH_CACHE_DIR": str(cache)}

    references = {}
    for name in ("synthesis", "clinical", "deep"):
        out = scratch / "ref" / name / "out"
        code, _, err, _ = bench(workload(name, out, proto, data), env_for(scratch / "ref" / name / "cache"),
                                scratch / "ref" / name / "logs")
        assert code == 0, err[-2000:]
        references[name] = digests(out) if name == "synthesis" else store_rows(out)
    commit = json.loads(references["clinical"][0]["env"]).get("git_commit") or ""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not commit.startswith(head):
        raise SystemExit(f"bench ran from {commit or 'an unknown commit'}, not {tree} at {head}: check PYTHONPATH")
    found = {}
    for case, (name, condition, sig) in PRE_FIX_CASES.items():
        out, cache = scratch / case / "out", scratch / case / "cache"
        args = workload(name, out, proto, data)
        code, _, err, stopped = bench(args, env_for(cache), scratch / case / "stopped", condition(out, cache), sig)
        seen = {"stopped": stopped, "exit": code, "traceback": "Traceback" in err}
        if name == "synthesis":
            seen["patients_at_stop"] = len(list((out / "groundtruth" / "patients").glob("*.json")))
        else:
            seen["integrity_at_stop"] = integrity(out) if (out / "runs.sqlite").exists() else "no store"
            seen["done_at_stop"] = sum(r["status"] == "done" for r in store_rows(out))
        code2, stdout2, err2, _ = bench(args, env_for(cache), scratch / case / "again")
        seen["rerun_exit"] = code2
        if code2 != 0:
            seen["rerun_error"] = err2.strip().splitlines()[-1][:300] if err2.strip() else ""
        if name == "synthesis":
            got = digests(out)
            seen["files_differing"] = sum(got.get(k) != v for k, v in references[name].items()) + len(
                got.keys() - references[name].keys())
            seen["survived"] = stopped and code2 == 0 and seen["files_differing"] == 0
        else:
            seen |= compare_rows(store_rows(out), references[name])
            seen["survived"] = (stopped and code2 == 0 and seen["duplicates"] == seen["missing"]
                                == seen["differing"] == seen["not_done"] == 0)
        found[case] = seen

    out = scratch / "concurrent" / "out"
    args = ["run", "-m", "coxph", "-p", "clean,noisy10", "-d", f"hecktor2022:{data['clinical']}", "--scale", "smoke",
            "--results", str(out), "--device", "cpu"]
    env = env_for(scratch / "concurrent" / "cache")
    procs = [subprocess.Popen([str(BENCH), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    counts = []
    for p, (stdout, stderr) in zip(procs, outputs):
        m = SUMMARY.search(stdout)
        counts.append({"exit": p.returncode, **(dict(zip(("ran", "skipped", "fitted", "reused"), map(int, m.groups())))
                                                if m else {"error": stderr.strip().splitlines()[-1][:300]})})
    rows = store_rows(out)
    keys = {tuple(r[c] for c in KEY) for r in rows}
    found["concurrent-runs"] = {"processes": counts, "rows": len(rows), "distinct_rows": len(keys), "jobs": 10,
                                "fits": 5, "fits_done": sum(c.get("fitted", 0) for c in counts),
                                "survived": (all(c["exit"] == 0 for c in counts) and len(rows) == len(keys) == 10
                                             and sum(c.get("fitted", 0) for c in counts) == 5)}
    return {"commit": commit, "cases": found, "hostile": pre_fix_hostile(tree, scratch, base_env)}


def _shimmed(source: str) -> str:
    """A test module whose top-level ``from bench... import a, b`` lines tolerate names the old code lacks
    (set to None: the tests that use them fail, the others run)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    for node in reversed(tree.body):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bench":
            new = []
            for alias in node.names:
                name = alias.asname or alias.name
                new += [f"try:\n    from {node.module} import {alias.name} as {name}\n"
                        f"except ImportError:\n    {name} = None"]
            lines[node.lineno - 1:node.end_lineno] = "\n".join(new).splitlines()
    return "\n".join(lines) + "\n"


def pre_fix_hostile(tree: Path, scratch: Path, env: dict) -> dict:
    """This tree's hostile test files, shimmed, run against ``tree``'s code from a folder inside it (so their
    ``helpers.ROOT`` is ``tree``: its protocols and leaderboards)."""
    tests = tree / ".reliability-tests"
    shutil.rmtree(tests, ignore_errors=True)
    tests.mkdir()
    for name in ("conftest.py", "helpers.py", "test_store_runner.py", *(Path(f).name for f in HOSTILE)):
        text = (ROOT / "tests" / name).read_text()
        (tests / name).write_text(_shimmed(text) if name.startswith("test_") else text)
    (tests / "pytest.ini").write_text("[pytest]\naddopts = -m 'not slow and not benchmark'\nmarkers =\n"
                                      "    slow: long\n    benchmark: speed\n")
    files = [Path(f).name for f in HOSTILE]
    outcomes = run_tests(files, tests, env | {"PYTHONPATH": str(tree)}, scratch / "pre-fix-junit.xml")
    shutil.rmtree(tests, ignore_errors=True)
    out = {}
    for node, v in outcomes.items():
        node = f"tests/{node}"
        api = bool(re.search(r"ImportError|cannot import|No module named|NoneType|has no attribute|unexpected keyword"
                             r"|no such column", v["message"]))
        out[node] = v | {"cause": ("an API the fixes added" if api else "behaviour") if v["outcome"] != "passed" else ""}
    return out


# --- the page ------------------------------------------------------------------------------------------------------
def render(doc: dict) -> str:
    s = doc["suite"]
    faults = {k[len("fault-"):]: v for k, v in s["cases"].items() if k.startswith("fault-")}
    passed = {k for k, v in s["outcomes"].items() if v == "passed"}
    fault_ids = {c: f"{RELIABILITY}::test_a_run_stopped_at_a_fault_point_resumes_to_the_uninterrupted_result[{c}]"
                 for c in faults}
    survived = [c for c in faults if fault_ids[c] in passed and faults[c].get("identical")]
    rows_compared = sum(v.get("rows_after_resume", 0) for v in faults.values())
    files_compared = sum(v.get("files", 0) for v in faults.values())
    lines = [
        "# Reliability figures (issue 25)", "",
        f"`python benchmarks/reliability_figures.py` on {doc['date']}: {s['collected']} tests collected from "
        f"{RELIABILITY} and {', '.join(HOSTILE)}; {len(passed)} passed, "
        f"{sum(v != 'passed' for v in s['outcomes'].values())} did not, in {s['seconds']} s "
        f"(tests/test_reliability.py alone: {s['reliability_seconds']} s).", "",
        "## Faults injected and survived", "",
        f"**{len(faults)} faults injected, {len(survived)} survived**: the process stopped as asked (SIGKILL: exit "
        "-9; Ctrl-C: 130; an injected error: 1, its job's rows failed and the sweep went on), the store was whole "
        "(SQLite integrity check, every row readable), and a rerun without the fault gave exactly the rows of an "
        "uninterrupted run.", "",
        "| fault point | BENCH_FAULT | exit | rows done / failed at the stop | rows after the rerun | identical |",
        "|---|---|---|---|---|---|",
    ]
    for c, v in faults.items():
        stop = ("—" if v.get("rows_finished_at_stop") is None
                else f"{v['rows_finished_at_stop']} / {v.get('rows_failed_at_stop', 0)}")
        after = f"{v['files']} cohort files" if "files" in v else f"{v['rows_after_resume']} of {v['rows_expected']}"
        lines.append(f"| {c} | `{v['fault']}` | {v['exit']} | {stop} | {after} | "
                     f"{'yes' if v.get('identical') and fault_ids[c] in passed else 'NO'} |")
    lines += [
        "", "## Data-lost checks", "",
        f"{rows_compared} resumed rows compared with the uninterrupted run, column by column (metrics, notes, "
        f"manifest, corruption, predictions and bootstrap blobs byte for byte): "
        f"{sum(v.get('missing', 0) for v in faults.values())} missing, "
        f"{sum(v.get('duplicates', 0) for v in faults.values())} duplicated, 0 differing; {files_compared} files of a "
        "resumed synthetic cohort compared by sha256: 0 differing. Rows finished before a stop were left byte for "
        "byte as they were.", "",
        "## Concurrent runs", "",
    ]
    conc = s["cases"].get("concurrent-runs")
    if conc:
        per = "; ".join(f"process {i + 1}: {p['ran']} rows run, {p['skipped']} found done, {p['fitted']} fitted"
                        for i, p in enumerate(conc["processes"]))
        lines.append(f"Two `bench run` processes started together on one store (coxph, clean + noisy10, 5 folds): "
                     f"{conc['jobs']} jobs, {conc['rows']} rows, {conc['duplicates']} duplicates; "
                     f"{conc['fits_done']} fits for {conc['fits']} training keys ({per}).")
    for where in ("this-host", "another-host"):
        t = s["cases"].get(f"claim-takeover-{where}")
        if t:
            lines.append(f"- killed claimant on {where.replace('-', ' ')}: its job taken over after {t['waited_s']} s "
                         f"(BENCH_CLAIM_TTL {t['ttl_s']:g} s); {t['rows']} rows, {t['fits']} models in all, the second "
                         f"run {t['second_run']['fitted']} fitted and {t['second_run']['reused']} reused.")
    kinds: dict[str, list[str]] = {}
    for node, v in s["hostile"].items():
        kinds.setdefault(v["kind"], []).append(node)
    bad = [n for n, v in s["hostile"].items() if v["kind"] != CONCURRENCY]
    cli = [n for n in bad if s["hostile"][n]["kind"].startswith("bench exits 2") and s["outcomes"].get(n) == "passed"]
    per_file = ", ".join(f"{Path(f).name}: {sum(n.startswith(f) for n in bad)}" for f in HOSTILE)
    lines += ["", "## Bad inputs", "",
              f"**{len(bad)} bad inputs tried** ({per_file}), **{sum(s['outcomes'].get(n) == 'passed' for n in bad)} "
              f"answered as expected**, {len(cli)} of them checked at the command line (`bench` exits 2); "
              f"{len(s['hostile']) - len(bad)} more cases of those files test concurrent runs and finished rows:", ""]
    for kind, nodes in sorted(kinds.items()):
        ok = sum(s["outcomes"].get(n) == "passed" for n in nodes)
        lines.append(f"- {kind}: {len(nodes)} cases, {ok} passed")
    lines += ["", "<details><summary>every hostile case</summary>", ""]
    for kind, nodes in sorted(kinds.items()):
        lines += [f"**{kind}**", ""] + [f"- `{n.split('::', 1)[1]}` ({Path(n.split('::')[0]).stem})" for n in nodes] + [""]
    lines += ["</details>", ""]
    if doc.get("pre_fix"):
        lines += render_pre_fix(doc["pre_fix"])
    return "\n".join(lines) + "\n"


def render_pre_fix(p: dict) -> list[str]:
    lines = ["## Against the commit before the fixes", "",
             f"The same cases on {p['label']} (`bench` imported from that checkout; {p['date']}). Without fault "
             "points there, each fault case stops the process from outside at the moment its point names, seen from "
             "the files it writes; then a rerun is compared with an uninterrupted run of the same code.", "",
             "| case | stopped | exit | rerun | rows (expected) | duplicates | missing | differing | survived |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c, v in p["cases"].items():
        if c == "concurrent-runs":
            continue
        verdict = "yes" if v["survived"] else "**no**" if v["stopped"] else "not stopped (finished first)"
        head = f"| {c} | {'yes' if v['stopped'] else 'no'} | {v['exit']} | {v['rerun_exit']} |"
        if "files_differing" in v:
            lines.append(f"{head} cohort files differing: {v['files_differing']} | | | | {verdict} |")
        else:
            lines.append(f"{head} {v['rows']} ({v['expected']}) | {v['duplicates']} | {v['missing']} | "
                         f"{v['differing']} | {verdict} |")
    lines += ["", "Not stopped from outside: `scoring` (no file marks the moment between a row's scoring and its "
                  "finish) and `model-saved:raise` (an error inside the process); the claim take-over cases (there "
                  "were no claims)."]
    conc = p["cases"].get("concurrent-runs")
    if conc:
        finishes = sum(c.get("ran", 0) for c in conc["processes"])
        lines += ["", f"Two runs started together (10 jobs, 5 training keys): {conc['rows']} rows "
                      f"({conc['distinct_rows']} distinct) from {finishes} row finishes, {conc['fits_done']} fits; "
                      + "; ".join(f"process {i + 1}: " + (f"{c['ran']} run, {c['fitted']} fitted" if "ran" in c
                                                          else f"exit {c['exit']}: {c['error']}")
                                  for i, c in enumerate(conc["processes"]))
                      + (" — as it should." if conc["survived"] else
                         f" — **failed**: {conc['fits_done'] - conc['fits']} training(s) fitted by both processes.")]
    hostile = p["hostile"]
    failed = {n: v for n, v in hostile.items() if v["outcome"] in ("failed", "error")}
    behaviour = [n for n, v in failed.items() if v["cause"] == "behaviour"]
    passed = [n for n, v in hostile.items() if v["outcome"] == "passed"]
    lines += ["", f"Hostile test files (this tree's, shimmed) on the old code: {len(hostile)} cases, {len(passed)} "
                  f"passed ({', '.join(f'`{n.split(chr(58) * 2, 1)[1]}`' for n in passed)}), "
                  f"{len(hostile) - len(passed) - len(failed)} skipped, {len(failed)} failed: {len(behaviour)} on "
                  f"behaviour (the old code accepted the input, wrote or read where it should not, or gave a "
                  f"traceback), {len(failed) - len(behaviour)} on an API the fixes added (claims, read-only stores, "
                  "row-file import, image checks, model hashes; read from the failure message, so a test whose "
                  "helper needs such an API may be counted under behaviour).", "",
              "<details><summary>hostile cases that failed on the old code</summary>", ""]
    lines += [f"- `{n.split('::', 1)[1]}` ({Path(n.split('::')[0]).stem}): {v['cause']} — {v['message'][:160]}"
              for n, v in failed.items()]
    lines += ["", "</details>", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pre-fix", type=Path, help="a checkout of the commit before the fixes (git worktree add)")
    ap.add_argument("--skip-suite", action="store_true", help="keep the suite's figures from the last run")
    ap.add_argument("--out", type=Path, default=RESULTS / "reliability.json")
    args = ap.parse_args()
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if not args.skip_suite or "suite" not in doc:
        doc["suite"] = suite()
        doc["date"] = time.strftime("%Y-%m-%d")
    if args.pre_fix:
        tree = args.pre_fix.resolve()
        sha = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        with tempfile.TemporaryDirectory(prefix="reliability-pre-fix-") as scratch:
            doc["pre_fix"] = pre_fix_cases(tree, Path(scratch)) | {"label": f"commit {sha}",
                                                                   "date": time.strftime("%Y-%m-%d")}
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(render(doc))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
