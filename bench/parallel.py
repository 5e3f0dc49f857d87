"""A process pool that Ctrl-C can stop: workers ignore SIGINT, and an interrupted map cancels what is
queued and ends the workers instead of waiting on them."""
from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable


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
