"""Error types that map to the CLI's exit codes.

``BenchInputError`` is bad input from the user (a file, field, patient, method or protocol name): the CLI
prints its message and exits 2 without a traceback. Anything else is an internal error (exit 1).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """" — did you mean 'a', 'b'?" for the registered names close to a mistyped one, else ""."""
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" — did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class BenchInputError(Exception):
    """Bad input: the message names what and where, and what to do about it."""


class PredictionError(ValueError):
    """A method returned a prediction that breaks the contract (shape, NaN, length): a bug in the method,
    recorded as a failed job (the sweep goes on), not bad user input."""

    def __init__(self, method: str, detail: str):
        super().__init__(f"method {method!r}: {detail}")
        self.method, self.detail = method, detail


class OutcomeLeakError(AttributeError):
    """Reading outcomes on a cohort handed to ``predict`` (test outcomes must not leak)."""
