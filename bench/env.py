"""The environment recorded with every run: versions, git commit, device, machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator

PACKAGES = ("survbench", "numpy", "pandas", "scikit-learn", "scikit-survival", "lifelines", "pycox", "torch", "monai")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(device: str) -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.node(),
        "device": device,
        "git_commit": git_commit(),
        "packages": {p: _version(p) for p in PACKAGES},
        "threads": threads(),
    }


THREADS_ENV = "BENCH_THREADS"  # the thread count a job is pinned to (bench.env.pinned_threads)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", THREADS_ENV)


@contextmanager
def pinned_threads(n: int) -> Iterator[int]:
    """Run a job with ``n`` CPU threads, the same way under every executor, so a CPU fit repeats bit for bit
    wherever it runs: the BLAS/OpenMP pools already loaded (threadpoolctl), torch's intra-op threads when torch
    is loaded, the variables libraries loaded later read, and ``BENCH_THREADS`` (bench.parallel.available_cpus,
    so process pools such as radiomics extraction use as many workers). Everything is restored afterwards."""
    from threadpoolctl import threadpool_limits

    n = max(1, int(n))
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    os.environ.update({k: str(n) for k in _THREAD_VARS})
    limits = threadpool_limits(limits=n)
    try:
        if torch is not None:
            torch.set_num_threads(n)
        yield n
    finally:
        limits.restore_original_limits()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        torch = sys.modules.get("torch")  # perhaps imported by the job itself
        if torch is not None:
            torch.set_num_threads(torch_before if torch_before is not None else _default_torch_threads())


def _default_torch_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads() -> dict:
    """CPU parallelism, which decides whether a CPU training repeats bit for bit: the cores this process may use,
    OMP_NUM_THREADS, and torch's intra-op threads when torch is loaded (not imported for this alone; the runner
    records it again when a job finishes, after the method's fit has loaded its libraries)."""
    torch = sys.modules.get("torch")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cpu_count": cores, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "torch": torch.get_num_threads() if torch is not None else None}
    if os.environ.get(THREADS_ENV):
        out["pinned"] = int(os.environ[THREADS_ENV])
    return out
