"""Named fault points: places in the code where a test (or a user checking a deployment) can make the process
die, fail or be interrupted on purpose, to check that what it leaves behind is resumed without loss.

A point is one call, ``fault_point("model-saved")``, at a moment worth dying at (between two writes that a
resume must reconcile). It does nothing unless the environment variable ``BENCH_FAULT`` names it::

    BENCH_FAULT=<point>[:<action>][@<n>]

``action`` is ``kill`` (the default: SIGKILL to this process — a power cut or ``kill -9``, no clean-up runs),
``raise`` (``InjectedFault``, a RuntimeError: an unexpected bug at that moment) or ``interrupt``
(KeyboardInterrupt: Ctrl-C). ``@n`` fires on the n-th time this process reaches the point (default 1).
The variable is read at every call (cheap), so a test can set it with monkeypatch. With ``BENCH_FAULT_ONCE``
naming a file, the fault fires only in the first process that gets to create that file: a task a cluster retries
in a new worker process (bench.ray_executor) then passes the point that killed its first attempt. Every point is listed in
``FAULT_POINTS``; calling ``fault_point`` with a name not listed is a ValueError (a typo in code is caught
by the tests), and a ``BENCH_FAULT`` that names no listed point or action is bad input (exit 2).
"""
from __future__ import annotations

import os
import signal
from collections import Counter

from bench.errors import BenchInputError, did_you_mean

ENV = "BENCH_FAULT"
ONCE_ENV = "BENCH_FAULT_ONCE"
ACTIONS = ("kill", "raise", "interrupt")

FAULT_POINTS: dict[str, str] = {
    "synthesis": "a synthetic-cohort patient has been written and recorded, the cohort is not complete",
    "image-pipeline": "a patient's preprocessed images are in the pipeline cache, other patients not yet",
    "epoch-checkpoint": "a training epoch's checkpoint has been saved, the training goes on",
    "model-saved": "a fitted model is in the store, no row it scores is finished",
    "scoring": "a protocol's predictions are scored, its row is not yet finished in the store",
    "row-written": "a protocol's row is finished in the store, the job's next protocol is not",
}


class InjectedFault(RuntimeError):
    """The error a ``raise`` fault point throws: an unexpected failure at a named moment."""


_reached: Counter = Counter()  # how often this process reached each point that BENCH_FAULT named


def parse(spec: str) -> tuple[str, str, int]:
    """``(point, action, n)`` of a ``BENCH_FAULT`` value; BenchInputError naming what is wrong."""
    rest, at, count = spec.strip().partition("@")
    point, _, action = rest.partition(":")
    action = action or "kill"
    usage = f"{ENV}={spec!r}: expected <point>[:<action>][@<n>]"
    if point not in FAULT_POINTS:
        raise BenchInputError(f"{usage}; {point!r} is not a fault point{did_you_mean(point, FAULT_POINTS)} "
                              f"(points: {', '.join(FAULT_POINTS)})")
    if action not in ACTIONS:
        raise BenchInputError(f"{usage}; action {action!r} is not one of {', '.join(ACTIONS)}")
    if at and not (count.isdigit() and int(count) >= 1):
        raise BenchInputError(f"{usage}; @{count} must be a positive whole number")
    return point, action, int(count) if at else 1


def fault_point(name: str) -> None:
    """Die, raise or be interrupted here when ``BENCH_FAULT`` names this point and this is the n-th time
    this process reaches it; otherwise nothing."""
    if name not in FAULT_POINTS:
        raise ValueError(f"fault_point({name!r}): not a fault point listed in bench.faults.FAULT_POINTS")
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, action, n = parse(spec)
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] != n or not _first_to_fire():
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "interrupt":
        raise KeyboardInterrupt(f"{ENV}: interrupted at fault point {name!r}")
    raise InjectedFault(f"{ENV}: injected fault at point {name!r}")


def _first_to_fire() -> bool:
    """True without ``BENCH_FAULT_ONCE``; with it, True only for the process that creates that file."""
    marker = os.environ.get(ONCE_ENV)
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def reset() -> None:
    """Forget how often each point was reached (a test that sets ``BENCH_FAULT`` more than once in one
    process)."""
    _reached.clear()
