"""The environment recorded with every run: versions, git commit, device, machine."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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


def threads() -> dict:
    """CPU parallelism, which decides whether a CPU training repeats bit for bit: the cores this process may use,
    OMP_NUM_THREADS, and torch's intra-op threads when torch is loaded (not imported for this alone; the runner
    records it again when a job finishes, after the method's fit has loaded its libraries)."""
    torch = sys.modules.get("torch")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_count": cores, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.get_num_threads() if torch is not None else None}
