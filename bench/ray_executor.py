"""The Ray executor (``bench run --executor ray``): the jobs of a sweep as Ray tasks on a cluster.

The same jobs as the local executor (bench.runner: one fit per training key, every test-side protocol that
shares it predicted and scored by the same model), the same checks before any work, the same fault points.
What differs is where a job runs:

- the driver (this process) prepares the sweep, builds the caches every job reads (corrupted images, the
  image pipeline, feature tables, embeddings; ``Method.warm_cache``) once, then submits one task per job,
  asking for the CPUs, GPUs and memory its method declares for the scale (``Method.resources``);
- a task fits the model (or reads the stored one the driver hands it), predicts and scores every protocol of
  the job, pinned to the declared CPUs as a local job is, and returns the rows and the fitted model as bytes;
  it writes nothing to the store;
- the driver is the only writer of the store: it saves the returned model, then finishes each row, as the
  local executor does. A task whose worker dies (``kill -9``, a lost node) is retried by Ray; its result
  arrives once, so no row is written twice. Ctrl-C cancels the tasks in flight and leaves their rows unfinished
  for the next run, like a local run stopped mid-job.

Workers read the dataset, the caches and the stored models' bytes from the paths the driver has: a cluster
needs those on shared storage (docs/cluster.md), and ``BENCH_CACHE_DIR`` is passed to every worker.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.data import Dataset, cache_dir
from bench.corruptions import corrupted_files
from bench.env import pinned_threads
from bench.errors import BenchInputError, PredictionError
from bench.faults import fault_point
from bench.method import Resources, method_resources
from bench.parallel import available_cpus
from bench.runner import (FittedModel, Job, MethodPlan, RunReport, Sweep, fail_job, fit_model, job_rows,
                          job_threads, method_context, model_info, prepare_sweep, refuse_second_model, resolve_device,
                          start_rows, still_pending, train_images_of, trusted_by)
from bench.store import Claims, RunKey, model_bytes

log = logging.getLogger("bench.ray")

# What a worker needs from the driver's environment (a cluster's workers start from `ray start`'s).
FORWARDED_ENV = ("BENCH_CACHE_DIR", "BENCH_FAULT", "BENCH_FAULT_ONCE")
RETRIES = 3  # a task whose worker died is tried again this many times (a bug in a method is not retried)
MAX_IN_FLIGHT = 256  # tasks submitted ahead of the results; the cluster queues what it cannot start yet


def import_ray():
    """The ``ray`` module, or an input error saying how to get it."""
    try:
        import ray
    except ImportError:
        raise BenchInputError("--executor ray needs Ray, an optional extra of survbench: "
                              "pip install 'survbench[ray]' (or run with --executor local)") from None
    return ray


def connect(address: str, *, quiet: bool = False):
    """Connect this process to the Ray cluster at ``address`` (auto, HOST:PORT or local: bench.cli's
    RAY_ADDRESS_HELP); an input error naming the address when there is none."""
    ray = import_ray()
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env.setdefault("BENCH_CACHE_DIR", str(cache_dir().resolve()))
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING,
                              "log_to_driver": not quiet, "configure_logging": True}
    if ray.is_initialized():
        ray.shutdown()
    if address != "local":
        _probe(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise BenchInputError(
            f"--address {address}: could not connect to a Ray cluster ({str(exc).splitlines()[0] if str(exc) else exc}); "
            f"start one with `ray start --head` (docs/cluster.md) or use --address local. A cluster that uses token "
            f"authentication also needs RAY_AUTH_MODE=token and its token here (Ray does not turn it on for an "
            f"explicit address)") from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address where nothing listens (Ray itself would retry for minutes). ``auto`` is
    resolved as Ray resolves it ($RAY_ADDRESS, then the cluster `ray start` last recorded on this machine)."""
    hostport = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            hostport = canonicalize_bootstrap_address(address)
        except Exception:  # noqa: BLE001 - Ray's own lookup failed or moved: let ray.init report it
            return
        if not hostport:
            raise BenchInputError("--address auto: no Ray cluster was started on this machine and $RAY_ADDRESS is "
                                  "not set; start one with `ray start --head` (docs/cluster.md), give its HOST:PORT, "
                                  "or use --address local")
    if hostport.startswith("ray://"):
        raise BenchInputError(f"--address {address}: Ray Client addresses (ray://) are not supported; give the head's "
                              f"HOST:PORT (the driver must share the cluster's storage)")
    host, _, port = hostport.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:6379
    if not host or not port.isdigit():
        raise BenchInputError(f"--address {address}: expected auto, local or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BenchInputError(f"--address {address}: nothing answers at {hostport} ({exc.strerror or exc}); is the "
                              f"head running (`ray start --head --port {port}`, docs/cluster.md)?") from None


@dataclass(frozen=True)
class Cluster:
    """The alive nodes' resources as Ray reports them."""

    nodes: list[dict[str, float]]

    @property
    def cpus(self) -> float:
        return sum(n.get("CPU", 0) for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.get("GPU", 0) for n in self.nodes)

    def describe(self) -> str:
        return f"{len(self.nodes)} node(s), {self.cpus:g} CPU(s), {self.gpus:g} GPU(s)"

    def fits(self, cpus: float, gpus: float, memory: float) -> bool:
        return any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus and n.get("memory", float("inf")) >= memory
                   for n in self.nodes)


def cluster_of(ray) -> Cluster:
    return Cluster([dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")])


def task_options(res: Resources, device: str, cluster: Cluster) -> dict[str, Any]:
    """The Ray resources of one job: its CPUs, its memory, and its GPUs when the run may use a GPU (device
    auto or cuda) and the cluster has one; ``--device cpu`` asks for none."""
    gpus = res.gpus if device != "cpu" and cluster.gpus > 0 else 0.0
    return {"num_cpus": res.cpus, "num_gpus": gpus, "memory": int(res.memory_gb * 2**30),
            "max_retries": RETRIES, "retry_exceptions": False}


def check_feasible(plans: list[MethodPlan], scale: str, device: str, cluster: Cluster) -> None:
    """Refuse, before any work, a method no node of the cluster can run (Ray would wait for it forever), and
    ``--device cuda`` on a cluster without GPUs."""
    if device == "cuda" and cluster.gpus == 0:
        raise BenchInputError(f"--device cuda: the Ray cluster has no GPU ({cluster.describe()}); use --device auto "
                              f"or cpu")
    for plan in plans:
        res = method_resources(plan.cls, scale)
        opts = task_options(res, device, cluster)
        if not cluster.fits(opts["num_cpus"], opts["num_gpus"], opts["memory"]):
            raise BenchInputError(
                f"method {plan.name} asks for {res.cpus} CPU(s), {opts['num_gpus']:g} GPU(s) and {res.memory_gb:g} "
                f"GiB per fit at scale {scale}, more than any node of "
                f"the Ray cluster has ({cluster.describe()}; per node: "
                + "; ".join(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU, {n.get('memory', 0) / 2**30:.1f} GiB"
                            for n in cluster.nodes)
                + f"); lower it with `{plan.cls.__qualname__}.resources` or add a bigger node")


# --- caches, once, before the fan-out -------------------------------------------------------------------------
def warm_caches(sweep: Sweep) -> int:
    """Build on the driver what the jobs' fits and predictions read from images, so no two workers compute
    it: the corrupted image sets of the sweep's protocols, then each image method's ``warm_cache`` on the
    training and test cohorts exactly as the jobs will build them, on the driver's own device. Bad input stops
    the sweep (exit 2, as locally); a method's own error fails that method's jobs, which are left out of the
    fan-out, and the sweep goes on. Returns the cohorts warmed."""
    dataset = sweep.dataset
    device = resolve_device("cpu" if sweep.device == "cpu" else "auto")  # the workers resolve theirs
    by_method: dict[str, list[Job]] = defaultdict(list)
    for job in sweep.jobs:
        if any(c in ("ct", "pet") for c in job.plan.cls.consumes):
            by_method[job.plan.name].append(job)
    warmed = 0
    for name, jobs in by_method.items():
        try:
            warmed += _warm_method(jobs, sweep, device)
        except BenchInputError:
            raise
        except Exception as exc:  # a method's own bug: its jobs fail, the others run
            err = traceback.format_exc()
            for job in jobs:
                start_rows(job, dataset, sweep.store, sweep.scale, sweep.env)
                sweep.report.failed += fail_job(job, sweep.store, exc, f"warming the caches of {name} failed:\n{err}")
            sweep.jobs = [j for j in sweep.jobs if j.plan.name != name]
    return warmed


def _warm_method(jobs: list[Job], sweep: Sweep, device: str) -> int:
    dataset, plan = sweep.dataset, jobs[0].plan
    cls, name = plan.cls, plan.name
    method = cls(method_context(plan, scale=sweep.scale, seed=0, device=device, progress=sweep.progress))
    cohorts = []
    train_sets: dict[str, tuple[dict | None, set[str]]] = {}
    test_sets: dict[str, tuple[dict | None, set[str]]] = {}
    for job in jobs:
        train_sets.setdefault(repr(job.train_corruption), (job.train_corruption, set()))[1].update(job.train_ids)
        for pr, _ in job.protocols:
            tests = pr.corruption if pr.corrupts and "test" in pr.corruption["apply_to"] else None
            test_sets.setdefault(repr(tests), (tests, set()))[1].update(job.fold.test)
    truth = "groundtruth" in cls.consumes
    for corruption, ids in train_sets.values():
        ids = sorted(ids)
        images = corrupted_files(dataset, corruption, ids, cache_dir() / "corrupted") if corruption else {}
        cohorts.append(dataset.cohort(ids, with_outcomes=True, name=f"{name}/warm-train", replace_images=images,
                                      with_groundtruth=truth))
        cohorts.append(dataset.cohort(ids, with_outcomes=False, with_mask=cls.needs_mask_at_test,
                                      name=f"{name}/warm-train-predict", replace_images=images,
                                      with_groundtruth=truth))
    for corruption, ids in test_sets.values():
        ids = sorted(ids)
        images = corrupted_files(dataset, corruption, ids, cache_dir() / "corrupted") if corruption else {}
        cohorts.append(dataset.cohort(ids, with_outcomes=False, with_mask=cls.needs_mask_at_test,
                                      name=f"{name}/warm-test", replace_images=images, with_groundtruth=truth))
    with pinned_threads(available_cpus()):
        for cohort in cohorts:
            method.warm_cache(cohort)
    return len(cohorts)


# --- one job on a worker -----------------------------------------------------------------------------------
@dataclass
class TaskResult:
    """What a task hands back: the model it fitted (bytes, None when it read the stored one) and the finished
    rows, ``(key, what Store.finish stores)``, plus where it ran."""

    model: bytes | None
    fit_seconds: float
    rows: list[tuple[RunKey, dict[str, Any]]]
    worker: dict[str, Any] = field(default_factory=dict)


def worker_device(device: str) -> str:
    """The device a task trains on: cuda when the run allows it and this worker was given a GPU torch can see."""
    if device == "cpu":
        return "cpu"
    import ray

    if ray.get_gpu_ids():
        import torch

        if torch.cuda.is_available():
            return "cuda"
    if device == "cuda":
        raise BenchInputError(f"--device cuda: the worker on {socket.gethostname()} was given no CUDA GPU it can use")
    return "cpu"


def _worker_logging(level: int) -> None:
    """The driver's log level for bench's loggers in this worker (Ray streams a worker's stderr to the driver,
    each line prefixed with the task and process)."""
    logger = logging.getLogger("bench")
    logger.setLevel(level)
    if not any(getattr(h, "_bench_worker", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._bench_worker = True
        logger.addHandler(handler)
        logger.propagate = False


def run_task(job: Job, dataset: Dataset, scale: str, device: str, stored: tuple[bytes, float] | None,
             cwd: str, log_level: int = logging.INFO) -> TaskResult:
    """One job on a worker: fit (or read ``stored``), predict, score; nothing is written to the store."""
    import ray

    from bench.model_io import load_model

    _worker_logging(log_level)
    if cwd and os.path.isdir(cwd):  # relative dataset paths mean what they meant to the driver
        os.chdir(cwd)
    dev = worker_device(device)
    ctx = method_context(job.plan, scale=scale, seed=job.seed, device=dev, progress=False)
    with pinned_threads(job_threads(job.plan, scale)):
        train_images = train_images_of(job, dataset)
        if stored is not None:
            blob, fit_seconds = stored
            _, method = load_model(blob, f"the stored model of {job.name}", extra_packages=trusted_by(job.plan.cls)
                                   ["trusted_packages"], extra_globals=trusted_by(job.plan.cls)["trusted_globals"])
            model = FittedModel(method.attach(ctx), fit_seconds, True, train_images)
        else:
            model = fit_model(job, dataset, ctx, train_images)
        rows = list(job_rows(job, model, dataset))
        fitted = None if model.reused else model_bytes(job.train_key, model.method,
                                                       model_info(job, dataset, model.fit_seconds))
    worker = {"executor": "ray", "node": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
              "pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "device": dev}
    return TaskResult(fitted, model.fit_seconds, rows, worker)


# --- the driver ------------------------------------------------------------------------------------------------
def run_jobs_ray(plans: list[MethodPlan], protocols, dataset: Dataset, *, scale: str, seeds: list[int],
                 results_dir: Path, device: str = "auto", progress: bool = True, skip_unfit: bool = False,
                 address: str = "auto") -> tuple[RunReport, str]:
    """The sweep as Ray tasks on the cluster at ``address``; the report (as the local executor's) and a line
    describing the cluster."""
    import_ray()  # absent: an input error before anything is prepared
    if address != "local":
        _probe(address)  # no cluster there: said before the store is created
    sweep = prepare_sweep(plans, protocols, dataset, scale=scale, seeds=seeds, results_dir=results_dir,
                          device=device, progress=progress, skip_unfit=skip_unfit, executor="ray")
    ray = connect(address, quiet=not progress)
    try:
        cluster = cluster_of(ray)
        check_feasible(list({j.plan.name: j.plan for j in sweep.jobs}.values()), scale, device, cluster)
        where = f"Ray cluster at {address}: {cluster.describe()}"
        if sweep.jobs:
            warm_caches(sweep)
        _drive(ray, sweep, cluster)
    finally:
        ray.shutdown()
    return sweep.report, where


def _drive(ray, sweep: Sweep, cluster: Cluster) -> None:
    store, report = sweep.store, sweep.report
    task = ray.remote(run_task)
    dataset_ref = ray.put(sweep.dataset)
    cwd = os.getcwd()
    pending = list(sweep.jobs)
    in_flight: dict[Any, Job] = {}
    bar = tqdm(total=sum(len(j.protocols) for j in sweep.jobs), desc="bench run (ray)", unit="job",
               disable=not sweep.progress or None, leave=False)
    try:
        with Claims(store) as claims:  # another `bench run` on this store (either executor) takes other jobs
            while pending or in_flight:
                waiting = []
                for job in pending:
                    if len(in_flight) >= MAX_IN_FLIGHT or not claims.claim([job.train_key]):
                        waiting.append(job)
                        continue
                    left = still_pending(job, store, report, on_skipped=lambda: bar.update(1))
                    if left is None:  # another process finished it meanwhile
                        claims.release([job.train_key])
                        continue
                    job = left
                    in_flight[_submit(task, job, sweep, store, dataset_ref, cwd, cluster)] = job
                pending = waiting
                bar.set_postfix_str(f"{len(in_flight)} running, {len(pending)} queued")
                if not in_flight:
                    time.sleep(1.0)  # every pending job is held by another process
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=2.0)
                for ref in ready:
                    job = in_flight.pop(ref)
                    try:
                        _collect(ray, ref, job, sweep, bar)
                    finally:
                        claims.release([job.train_key])
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()


def _submit(task, job: Job, sweep: Sweep, store, dataset_ref, cwd: str, cluster: Cluster):
    """Mark the job's rows running and hand it to the cluster with the stored model's bytes, when there is one."""
    start_rows(job, sweep.dataset, store, sweep.scale, sweep.env)
    try:
        stored = store.model_blob(job.train_key)  # a model file changed since the sweep was planned: refused
        if stored is None:
            refuse_second_model(job, store)
    except BenchInputError as exc:
        for _, key in job.protocols:
            store.fail(key, str(exc))
        raise
    opts = task_options(method_resources(job.plan.cls, sweep.scale), sweep.device, cluster)
    level = logging.getLogger("bench").getEffectiveLevel()
    return task.options(name=job.name, **opts).remote(job, dataset_ref, sweep.scale, sweep.device, stored, cwd,
                                                      level)


def _collect(ray, ref, job: Job, sweep: Sweep, bar) -> None:
    """Store what a finished task returned (its model, then each row), or record why it failed."""
    store, report = sweep.store, sweep.report
    try:
        result: TaskResult = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
        if isinstance(cause, BenchInputError):
            for _, key in job.protocols:
                store.fail(key, str(cause))
            raise cause from None
        err = str(cause) if isinstance(cause, PredictionError) else str(exc)
        _failed(job, sweep, err, bar)
        return
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:  # retries used up
        _failed(job, sweep, f"the Ray task of {job.name} was lost after {RETRIES} retries: {exc}", bar)
        return
    except ray.exceptions.RayError as exc:  # the cluster could not run it (runtime environment, scheduling, ...)
        _failed(job, sweep, f"Ray could not run the task of {job.name}: {exc}", bar)
        return
    if result.model is not None:
        store.save_model_bytes(job.train_key, result.model, model_info(job, sweep.dataset, result.fit_seconds))
        report.fits += 1
        fault_point("model-saved")
    else:
        report.reused_models += 1
    for key, row in result.rows:
        report.ran += store.finish(key, **row, worker=result.worker)
        fault_point("row-written")
        bar.update(1)


def _failed(job: Job, sweep: Sweep, err: str, bar) -> None:
    failed = fail_job(job, sweep.store, None, err)
    sweep.report.failed += failed
    bar.update(len(failed))
