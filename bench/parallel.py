"""A process pool that Ctrl-C can stop: workers ignore SIGINT, and an interrupted map cancels what is
queued and ends the workers instead of waiting on them."""
from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Sequence


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int, on_result: Callable[[Any], None]) -> None:
    """``on_result(fn(item))`` for every item, in order, computed in ``workers`` processes."""
    pool = ProcessPoolExecutor(workers, initializer=_ignore_sigint)
    try:
        for result in pool.map(fn, items):
            on_result(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    pool.shutdown()


def available_cpus() -> int:
    """CPU cores this process may use: its affinity mask (so a container or taskset limit is honoured), and no
    more than the threads a running job is pinned to (``BENCH_THREADS``, bench.env.pinned_threads)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    pinned = os.environ.get("BENCH_THREADS", "")
    return min(cores, int(pinned)) if pinned.isdigit() and int(pinned) >= 1 else cores


def progress_map(fn: Callable[[Any], Any], items: Sequence[Any], on_result: Callable[[Any], None], *, desc: str,
                 unit: str = "patient", workers: int | None = None, progress: bool = True) -> None:
    """``on_result(fn(item))`` for every item with a progress bar: in this process for one worker, else in
    a pool of ``workers`` processes (default: one per available core, at most one per item)."""
    from tqdm.auto import tqdm

    n = workers or max(1, min(len(items), available_cpus()))
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or not items or None, leave=False)

    def step(result: Any) -> None:
        on_result(result)
        bar.update(1)

    try:
        if n <= 1:
            for item in items:
                step(fn(item))
        elif items:
            process_map(fn, items, n, step)
    finally:
        bar.close()
