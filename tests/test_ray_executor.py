"""The Ray executor (issue 29) against a real Ray cluster that this module starts on this machine: a head on
loopback only with 2 CPUs and 2 logical GPUs (Ray schedules fractional GPUs on them; torch sees no CUDA, so the
work itself runs on the CPU), stopped when the module ends.

- a sweep under ``--executor ray`` gives the rows of the local executor bit for bit (metrics, notes, manifests,
  predictions, bootstrap replicates): coxph on two protocols sharing each fold's model, radiomics-cox (caches
  warmed on the driver before the fan-out), deepmts (a deep fit with a fractional GPU);
- a worker killed mid-fit (``epoch-checkpoint:kill``) or while scoring is retried by Ray, and the sweep ends
  with every row once, equal to the uninterrupted run;
- Ctrl-C on the driver (``row-written:interrupt``) exits 130 with claims released, and the next run resumes;
- without Ray installed, or without a cluster at ``--address``, ``bench run --executor ray`` is exit 2 with a
  message and no traceback, before a store is made.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.errors import BenchInputError
from bench.method import Method, method_resources
from bench.ray_executor import Cluster, check_feasible, task_options
from bench.runner import MethodPlan
from bench.store import Store
from helpers import RAY_LOOPBACK, free_port, processes_under, start_ray_head, stop_ray_head
from test_reliability import by_key, check_store, differences, summary
from test_reliability import bench as run_bench

LOOPBACK = RAY_LOOPBACK


@pytest.fixture(scope="module")
def cluster():
    """HOST:PORT of a Ray head started for this module (its processes, and only they, are ended after)."""
    temp = tempfile.mkdtemp(prefix="sbray", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        address, _ = start_ray_head(temp, cpus=2, gpus=2)
        yield address
    finally:
        stop_ray_head(temp)
        left = processes_under(temp)
        shutil.rmtree(temp, ignore_errors=True)
        assert left == [], f"Ray processes of the test cluster still running: {left}"


def ray_args(args: list[str], address: str) -> list[str]:
    return [*args, "--executor", "ray", "--address", address]


@pytest.fixture(scope="module")
def workloads(tmp_path_factory, tiny_clinical_dir, tiny_dataset_dir, synthetic_smoke):
    from helpers import reliability_protocols

    protocols = reliability_protocols(tmp_path_factory.mktemp("protocols"))
    two = f"{protocols['rel-clean']},{protocols['rel-noisy']}"

    def args(name: str, out: Path) -> list[str]:
        method, protocol, data = {
            "clinical": ("coxph", two, tiny_clinical_dir),
            "radiomics": ("radiomics-cox", two, synthetic_smoke.root),  # tumours in its masks
            "deep": ("deepmts", str(protocols["rel-centre"]), tiny_dataset_dir),
        }[name]
        return ["run", "-m", method, "-p", protocol, "-d", f"hecktor2022:{data}", "--scale", "smoke", "--results",
                str(out), "--device", "auto"]

    return args


@pytest.fixture(scope="module")
def local_reference(workloads, tmp_path_factory):
    """The local executor's rows for a workload (made on first use)."""
    made: dict[str, list[dict]] = {}

    def get(name: str) -> list[dict]:
        if name not in made:
            base = tmp_path_factory.mktemp(f"local-{name}")
            done = run_bench(workloads(name, base / "out"), base / "cache", base / "logs")
            assert done.returncode == 0, done.stderr[-3000:]
            made[name] = check_store(base / "out")
        return made[name]

    return get


def envs(rows: list[dict]) -> dict[tuple, dict]:
    return {k: json.loads(r["env"]) for k, r in by_key(rows).items()}


@pytest.mark.parametrize("workload", ["clinical", "radiomics", "deep"])
def test_a_sweep_on_ray_equals_the_local_executors_bit_for_bit(workload, cluster, workloads, local_reference,
                                                               tmp_path):
    out = tmp_path / "out"
    done = run_bench(ray_args(workloads(workload, out), cluster), tmp_path / "cache", tmp_path / "logs", **LOOPBACK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Ray cluster at" in done.stdout and "2 GPU(s)" in done.stdout
    got, want = check_store(out), local_reference(workload)
    assert differences(got, want) == []
    counts = summary(done)
    assert counts["ran"] == len(want) and counts["fitted"] == len({r["train_key"] for r in want})
    mine, theirs = envs(got), envs(want)
    for key, env in mine.items():
        assert env["executor"] == "ray" and theirs[key]["executor"] == "local"
        assert env["worker"]["executor"] == "ray" and env["worker"]["node_ip"] == "127.0.0.1"
        assert env["worker"]["device"] == "cpu"  # logical GPUs: torch sees no CUDA
        # pinned the same way under both executors: the method's declared CPUs
        assert env["threads"]["pinned"] == theirs[key]["threads"]["pinned"]
        assert env["threads"]["omp_num_threads"] == theirs[key]["threads"]["omp_num_threads"] == \
            str(env["threads"]["pinned"])
        assert env["threads"]["torch"] in (None, env["threads"]["pinned"])  # torch: loaded by deep methods only
        # a deep fit asks for a fraction of a GPU and gets one; a clinical or feature fit asks for none
        assert bool(env["worker"]["gpu_ids"]) == (workload == "deep")
    if workload == "radiomics":  # the driver built the feature cache before the fan-out
        assert list((tmp_path / "cache" / "features" / "radiomics").glob("*.json"))
    # a second run under ray finds everything done
    again = run_bench(ray_args(workloads(workload, out), cluster), tmp_path / "cache", tmp_path / "again", **LOOPBACK)
    assert again.returncode == 0 and summary(again)["ran"] == 0 and summary(again)["skipped"] == len(want)


@pytest.mark.parametrize("workload, fault", [("deep", "epoch-checkpoint:kill@1"), ("clinical", "scoring:kill@1")])
def test_a_worker_killed_mid_job_is_retried_and_the_sweep_completes(workload, fault, cluster, workloads,
                                                                    local_reference, tmp_path):
    """kill -9 of the worker process at a fault point, once across processes (``BENCH_FAULT_ONCE``): Ray runs
    the task again in a new worker and the driver stores its result once."""
    out, marker = tmp_path / "out", tmp_path / "fired"
    done = run_bench(ray_args(workloads(workload, out), cluster), tmp_path / "cache", tmp_path / "logs",
                     BENCH_FAULT=fault, BENCH_FAULT_ONCE=str(marker), **LOOPBACK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.exists()  # the fault fired: a worker was killed
    got, want = check_store(out), local_reference(workload)
    assert differences(got, want) == []  # no row missing, none twice, every value as uninterrupted
    assert summary(done)["ran"] == len(want)
    pids = {json.loads(r["env"])["worker"]["pid"] for r in got}
    assert pids and Store(out, readonly=True).claims() == []
    if workload == "deep":  # the retry resumed from the checkpoint the killed attempt saved (its log is streamed)
        assert "resuming from the checkpoint after epoch 1" in done.stderr, done.stderr[-3000:]


def test_ctrl_c_on_the_driver_leaves_a_store_the_next_run_resumes(cluster, workloads, local_reference, tmp_path):
    out = tmp_path / "out"
    args = ray_args(workloads("clinical", out), cluster)
    stopped = run_bench(args, tmp_path / "cache", tmp_path / "stopped", BENCH_FAULT="row-written:interrupt@1",
                        **LOOPBACK)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "interrupted" in stopped.stderr and "Traceback" not in stopped.stderr
    left = check_store(out)
    assert sum(r["status"] == "done" for r in left) == 1 and Store(out, readonly=True).claims() == []
    finished = {k: r for k, r in by_key(left).items() if r["status"] == "done"}
    again = run_bench(args, tmp_path / "cache", tmp_path / "again", **LOOPBACK)
    assert again.returncode == 0, again.stderr[-3000:]
    got, want = check_store(out), local_reference("clinical")
    assert differences(got, want) == []
    assert all(by_key(got)[k] == r for k, r in finished.items())
    assert summary(again)["ran"] == len(want) - 1 and summary(again)["skipped"] == 1


def test_the_local_and_ray_executors_share_one_store(cluster, workloads, local_reference, tmp_path):
    """Half a sweep locally, the rest on the cluster: the stored models are handed to the workers (no refit)."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = workloads("clinical", out)
    first = [a if a != args[4] else args[4].split(",")[0] for a in args]  # only the first protocol
    assert run_bench(first, cache, tmp_path / "first").returncode == 0
    rest = run_bench(ray_args(args, cluster), cache, tmp_path / "rest", **LOOPBACK)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert summary(rest) == {"ran": 2, "skipped": 2, "fitted": 0, "reused": 2}
    assert differences(check_store(out), local_reference("clinical")) == []


# --- bad input -----------------------------------------------------------------------------------------------------
def test_without_ray_installed_the_ray_executor_is_exit_2(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    done = CliRunner().invoke(cli, ["run", "-m", "coxph", "-d", "demo", "--scale", "smoke", "--results",
                                    str(tmp_path / "out"), "--executor", "ray"])
    assert done.exit_code == 2, done.output
    assert "survbench[ray]" in done.output and "--executor local" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "out").exists()


def test_no_cluster_at_the_address_is_exit_2_at_once(tmp_path):
    t0 = time.perf_counter()
    done = run_bench(["run", "-m", "coxph", "-d", "demo", "--scale", "smoke", "--results", str(tmp_path / "out"),
                      "--executor", "ray", "--address", f"127.0.0.1:{free_port()}"], tmp_path / "cache",
                     tmp_path / "logs", **LOOPBACK)
    assert done.returncode == 2 and "nothing answers at 127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "out").exists()
    local = run_bench(["run", "-m", "coxph", "-d", "demo", "--scale", "smoke", "--results", str(tmp_path / "out"),
                       "--address", "127.0.0.1:1"], tmp_path / "cache", tmp_path / "logs2")
    assert local.returncode == 2 and "only with --executor ray" in local.stderr


class Greedy(Method):
    resources = {"smoke": {"cpus": 8, "gpus": 0, "memory_gb": 1.0}}


def _plan(cls) -> MethodPlan:
    return MethodPlan("greedy", cls, {}, "0" * 16)


def test_a_method_no_node_can_run_is_refused_before_any_work():
    small = Cluster([{"CPU": 2.0, "GPU": 2.0, "memory": 8 * 2**30}])
    with pytest.raises(BenchInputError, match=r"greedy asks for 8 CPU\(s\).*more than any node"):
        check_feasible([_plan(Greedy)], "smoke", "auto", small)
    with pytest.raises(BenchInputError, match="--device cuda: the Ray cluster has no GPU"):
        check_feasible([], "smoke", "cuda", Cluster([{"CPU": 4.0}]))


def test_gpus_are_asked_for_only_where_the_run_may_use_them():
    from bench.registry import get_method

    res = method_resources(get_method("deepmts"), "quick")
    with_gpus, without = Cluster([{"CPU": 2.0, "GPU": 1.0}]), Cluster([{"CPU": 2.0}])
    assert task_options(res, "auto", with_gpus)["num_gpus"] == 0.5
    assert task_options(res, "cpu", with_gpus)["num_gpus"] == 0
    assert task_options(res, "auto", without)["num_gpus"] == 0
    assert task_options(res, "auto", with_gpus)["num_cpus"] == 2


@pytest.mark.parametrize("declared, words", [
    ({"smoke": {"cpus": 0}}, "cpus = 0 must be a whole number >= 1"),
    ({"smoke": {"cpus": 1.5}}, "cpus = 1.5"),
    ({"smoke": {"gpus": 1.5}}, "gpus = 1.5 must be >= 0, and whole above 1"),
    ({"smoke": {"memory_gb": 0}}, "memory_gb = 0 must be > 0"),
    ({"smoke": {"tpus": 1}}, "unknown key(s) ['tpus']"),
    ({"smoke": 4}, "must be {scale: {cpus, gpus, memory_gb}}"),
])
def test_a_malformed_resources_declaration_is_an_input_error_naming_the_class(declared, words):
    cls = type("Odd", (Method,), {"resources": declared})
    with pytest.raises(BenchInputError) as err:
        method_resources(cls, "smoke")
    assert words in str(err.value) and "Odd.resources" in str(err.value)


def test_an_undeclared_method_gets_the_defaults():
    assert method_resources(Method, "paper").as_dict() == {"cpus": 1, "gpus": 0.0, "memory_gb": 2.0}
    assert method_resources(type("Half", (Method,), {"resources": {"quick": {"gpus": 0.5}}}), "quick").gpus == 0.5


# --- the driver's cache warming ------------------------------------------------------------------------------------
class Warmed(Method):
    """Records the device and cohorts its caches are warmed with; ``fail`` makes warm_cache raise."""

    consumes = ("ct", "pet", "clinical")
    configs = {"smoke": {}}
    seen: list = []
    fail = False

    def warm_cache(self, cohort):
        type(self).seen.append((self.ctx.device, cohort.name, len(cohort)))
        if type(self).fail:
            raise RuntimeError("boom in warm_cache")


@pytest.fixture
def warmed():
    from bench.registry import register_method, unregister_method

    register_method("warm-test")(Warmed)
    Warmed.seen, Warmed.fail = [], False
    yield Warmed
    unregister_method("warm-test")


def _sweep(dataset, results):
    from bench.protocols import load_protocol
    from bench.runner import plan_methods, prepare_sweep

    return prepare_sweep(plan_methods(["warm-test", "coxph"], "smoke", []), [load_protocol("clean")], dataset,
                         scale="smoke", seeds=[0], results_dir=results, device="auto", progress=False, executor="ray")


def test_the_driver_warms_each_image_methods_caches_on_its_own_resolved_device(warmed, tiny_dataset, tmp_path):
    """--device auto is resolved on the driver for the warming (a method must never see "auto"), once per
    cohort the jobs build: the training patients with outcomes and as predicted, and the test patients."""
    from bench.ray_executor import warm_caches

    sweep = _sweep(tiny_dataset, tmp_path)
    assert warm_caches(sweep) == 3
    assert [(d, n) for d, n, _ in warmed.seen] == [("cpu", "warm-test/warm-train"),
                                                    ("cpu", "warm-test/warm-train-predict"),
                                                    ("cpu", "warm-test/warm-test")]
    assert {j.plan.name for j in sweep.jobs} == {"warm-test", "coxph"}


def test_a_failing_warm_cache_fails_that_methods_jobs_and_the_sweep_goes_on(warmed, tiny_dataset, tmp_path):
    from bench.ray_executor import warm_caches

    warmed.fail = True
    sweep = _sweep(tiny_dataset, tmp_path)
    warm_caches(sweep)
    assert {j.plan.name for j in sweep.jobs} == {"coxph"} and len(sweep.report.failed) == 5
    rows = Store(tmp_path).rows()
    assert len(rows) == 5 and {r["status"] for r in rows} == {"failed"}
    assert all("warming the caches of warm-test failed" in r["error"] and "boom" in r["error"] for r in rows)
