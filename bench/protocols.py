"""Protocols: versioned TOML files that fix the split, the corruption and the metrics of a run.

Shipped protocols live in the top-level ``protocols/`` folder (package data); a user may pass the path of
their own file. Every key is checked: an unknown key or a bad value is an error naming the file and key.
The corruption kinds are ``none``, ``noise`` (the noisyNN fraction sweep) and the corruption suite's types,
whose parameters each type declares (``bench.corruptions.kinds``); a suite file also names the reference
method it is expected to move and may carry the measured effect (``[corruption.effect]``).
The content hash (of the parsed content, so comments do not count) is stored with every run.
"""
from __future__ import annotations

import difflib
import functools
import math
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from bench.corruptions.kinds import SUITE_KINDS, TYPES, suite_severity, suite_type
from bench.errors import BenchInputError, did_you_mean
from bench.fsutil import safe_name
from bench.hashing import content_hash
from bench.metric_registry import get_metric

# The version of the shipped protocol suite as a whole (protocols and corruption recipes): bump when a
# shipped protocol's meaning changes; pages cite it with the hash of the protocols their records ran.
SUITE_VERSION = "2.0"
SPLIT_KINDS = ("kfold", "loco", "center-split")
CORRUPTION_KINDS = ("none", "noise", *SUITE_KINDS)
LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    split: dict[str, Any]
    corruption: dict[str, Any]
    metrics: dict[str, Any]
    source: str  # path or "builtin:<name>"

    def content(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "description": self.description,
            "split": self.split, "corruption": self.corruption, "metrics": self.metrics,
        }

    @property
    def hash(self) -> str:
        return content_hash(self.content())

    @property
    def split_hash(self) -> str:
        return content_hash(self.split)

    @property
    def corrupts(self) -> bool:
        return self.corruption["kind"] != "none"

    @property
    def corruption_type(self) -> str | None:
        """The suite type of the corruption (``missing-pet`` / ``missing-ct`` for a missing modality), read
        from the content; None for no corruption and for the noise-fraction sweep."""
        return suite_type(self.corruption)

    @property
    def severity(self) -> int | None:
        """The suite severity (1 to 5), read from the content; None for a missing modality (one level) and
        outside the suite."""
        return suite_severity(self.corruption)

    @property
    def train_corruption(self) -> dict[str, Any] | None:
        """The corruption that reaches training data (part of the fitted-model key), if any."""
        if self.corrupts and "train" in self.corruption["apply_to"]:
            return self.corruption
        return None


# --- validation -------------------------------------------------------------------------------------
Check = Callable[[Any], str | None]  # returns a complaint or None


MAX_SEED = 2**32 - 1


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _table(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be a table"


def _int_in(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = _number(v) and isinstance(v, int) and lo <= v <= hi
        return None if ok else f"must be an integer in [{lo}, {hi}]"

    return check


def _fraction(lo_open: bool, hi: float) -> Check:
    def check(v: Any) -> str | None:
        ok = _number(v) and (v > 0 if lo_open else v >= 0) and v <= hi
        return None if ok else f"must be a number in {'(' if lo_open else '['}0, {hi}]"

    return check


def _one_of(options: tuple[str, ...]) -> Check:
    return lambda v: None if v in options else f"must be one of {list(options)}"


def _subset_of(options: tuple[str, ...], nonempty: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, list) or not all(x in options for x in v) or len(set(v)) != len(v):
            return f"must be a list of distinct values from {list(options)}"
        if nonempty and not v:
            return "must not be empty"
        return None

    return check


def _str_list(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        return "must be a non-empty list of strings"
    return None


def _levels(v: Any) -> str | None:
    if not isinstance(v, dict) or set(v) != set(LEVELS):
        return f"must be a table with exactly the keys {list(LEVELS)}"
    if not all(_number(x) and x > 0 for x in v.values()):
        return "values must be positive numbers"
    return None


def _horizons(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(_number(x) and x > 0 for x in v)
    return None if ok and sorted(v) == v else "must be an increasing list of positive numbers (years)"


TOP = {"name": _text, "version": _text, "description": _text, "split": _table, "corruption": _table,
       "metrics": _table}
SPLIT_COMMON = {"kind": _one_of(SPLIT_KINDS), "seed": _int_in(0, MAX_SEED), "val_fraction": _fraction(False, 0.5)}
SPLIT = {
    "kfold": {**SPLIT_COMMON, "n_folds": _int_in(2, 100), "stratify": _subset_of(("event", "centre"), nonempty=False)},
    "loco": dict(SPLIT_COMMON),
    "center-split": {**SPLIT_COMMON, "train_centres": _str_list, "test_centres": _str_list},
}
def _named_numbers(v: Any) -> str | None:
    if not isinstance(v, dict) or not v:
        return "must be a non-empty table of named numbers"
    bad = sorted(k for k, x in v.items() if not _number(x))
    return f"values must be finite numbers ({', '.join(bad)} are not)" if bad else None


SELECTION = {"kind": _one_of(CORRUPTION_KINDS), "fraction": _fraction(True, 1.0), "seed": _int_in(0, MAX_SEED),
             "apply_to": _subset_of(("train", "test"))}
CORRUPTION = {
    "none": {"kind": _one_of(CORRUPTION_KINDS)},
    "noise": {
        **SELECTION, "ct_level": _one_of(LEVELS), "pet_level": _one_of(LEVELS),
        "ct_sigma": _levels, "pet_counts_per_suv": _levels,
    },
    # the suite: one type each, its parameters the type's own (bench.corruptions.kinds), the reference method
    # it is expected to move named before any run
    **{kind: {**SELECTION, "expected_to_move": _text, **({"severity": _int_in(1, 5)} if t.has_severity else {}),
              **t.parameters} for kind, t in TYPES.items()},
}
CORRUPTION_OPTIONAL = {kind: {"effect": _named_numbers} for kind in SUITE_KINDS}  # measured post-pipeline effect


def _distinct_names(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v) or len(set(v)) != len(v):
        return "must be a non-empty list of distinct metric names (see `bench metrics`)"
    return None


# Metric names are checked one by one against the registry (bench.metric_registry) after the table's shape,
# so an outside metric is reportable as soon as it is registered and a typo gets "did you mean".
METRICS = {
    "primary": _text, "report": _distinct_names, "horizons_years": _horizons,
    "bootstrap": _int_in(0, 1_000_000), "bootstrap_seed": _int_in(0, MAX_SEED),
    "logrank_split": _one_of(("train-median",)),
}


def _check_table(table: dict, schema: dict[str, Check], where: str, source: str,
                 optional: dict[str, Check] | None = None) -> None:
    allowed = schema | (optional or {})
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BenchInputError(f"protocol {source}: unknown key {where}{key!r}{hint}; allowed: {sorted(allowed)}")
    for key, check in allowed.items():
        if key not in table:
            if key in schema:
                raise BenchInputError(f"protocol {source}: missing key {where}{key!r}")
            continue
        complaint = check(table[key])
        if complaint:
            raise BenchInputError(f"protocol {source}: {where}{key} = {table[key]!r} {complaint}")


def parse_protocol(data: dict[str, Any], source: str) -> Protocol:
    _check_table(data, TOP, "", source)
    safe_name(data["name"], f"protocol {source}: name")  # it names stored records and plots
    split, corruption, metrics = data["split"], data["corruption"], data["metrics"]
    kind = split.get("kind")
    if not isinstance(kind, str) or kind not in SPLIT:
        raise BenchInputError(f"protocol {source}: split.kind = {kind!r} must be one of {list(SPLIT_KINDS)}")
    _check_table(split, SPLIT[kind], "split.", source)
    if kind == "center-split":
        both = set(split["train_centres"]) & set(split["test_centres"])
        if both:
            raise BenchInputError(f"protocol {source}: split centres {sorted(both)} are both train and test")
    ckind = corruption.get("kind")
    if not isinstance(ckind, str) or ckind not in CORRUPTION:
        raise BenchInputError(
            f"protocol {source}: corruption.kind = {ckind!r} must be one of {list(CORRUPTION_KINDS)}"
            f"{did_you_mean(ckind, CORRUPTION_KINDS) if isinstance(ckind, str) else ''}"
        )
    _check_table(corruption, CORRUPTION[ckind], "corruption.", source, CORRUPTION_OPTIONAL.get(ckind))
    _check_table(metrics, METRICS, "metrics.", source)
    if metrics["primary"] not in metrics["report"]:
        raise BenchInputError(f"protocol {source}: metrics.primary {metrics['primary']!r} is not in metrics.report")
    for name in metrics["report"]:
        try:
            get_metric(name)
        except BenchInputError as exc:
            raise BenchInputError(f"protocol {source}: metrics.report {name!r}: {exc}") from None
    return Protocol(data["name"], data["version"], data["description"], split, corruption, metrics, source)


def _builtin_dir():
    return resources.files("protocols")


def builtin_names() -> list[str]:
    names = [p.name[:-5] for p in _builtin_dir().iterdir() if p.name.endswith(".toml")]
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> tuple:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1)


def _load_text(text: str, source: str) -> Protocol:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchInputError(f"protocol {source}: not valid TOML ({exc})") from None
    return parse_protocol(data, source)


def load_protocol(spec: str) -> Protocol:
    """A shipped protocol by name (``noisy50``) or a user's TOML file by path (ends in .toml or has a /;
    a shipped name always means the shipped file, whatever lies in the current folder)."""
    names = builtin_names()
    path = Path(spec).expanduser()
    if spec not in names and (spec.endswith(".toml") or "/" in spec or os.sep in spec or path.is_file()):
        if not path.is_file():
            raise BenchInputError(f"protocol file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise BenchInputError(f"protocol file {path} cannot be read as UTF-8 text ({exc})") from None
        return _load_text(text, str(path))
    if spec not in names:
        raise BenchInputError(f"unknown protocol {spec!r}{did_you_mean(spec, names)} (shipped: {', '.join(names)}; or pass a .toml path)")
    resource = _builtin_dir() / f"{spec}.toml"
    protocol = _load_text(resource.read_text(), f"builtin:{spec}")
    if protocol.name != spec:
        raise BenchInputError(f"protocol builtin:{spec}: its name field is {protocol.name!r}, expected {spec!r}")
    return protocol


@functools.lru_cache(maxsize=None)
def _shipped(name: str) -> Protocol | None:
    return load_protocol(name) if name in builtin_names() else None


def shipped_content(name: str, protocol_hash: str) -> dict[str, Any] | None:
    """The content of the shipped protocol ``name`` if its hash is ``protocol_hash`` (a stored run's
    protocol, read back from the file that made it), else None."""
    protocol = _shipped(name)
    return protocol.content() if protocol is not None and protocol.hash == protocol_hash else None


# Names that stand for several shipped protocols on the command line (`bench run -p clean,noisy,suite-s135`).
GROUPS = {
    "noisy": "the noise-fraction sweep noisy10 … noisy100",
    "suite": "every corruption-suite protocol (each type at severities 1–5, missing-pet, missing-ct)",
    "suite-s135": "the corruption suite at severities 1, 3 and 5, with missing-pet and missing-ct",
}


def group_members(group: str) -> list[str]:
    """The shipped protocols a group name stands for, in natural order."""
    shipped = [load_protocol(n) for n in builtin_names()]
    if group == "noisy":
        return [p.name for p in shipped if p.corruption["kind"] == "noise"]
    suite = [p for p in shipped if p.corruption["kind"] in SUITE_KINDS]
    if group == "suite-s135":
        suite = [p for p in suite if p.severity in (None, 1, 3, 5)]
    return [p.name for p in suite]


def resolve_protocols(spec: str) -> list[Protocol]:
    """The protocols of a comma-separated ``--protocol`` value: shipped names, group names (``GROUPS``) and
    paths of user files; the same protocol named twice counts once."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise BenchInputError("--protocol is empty")
    names = [m for n in names for m in (group_members(n) if n in GROUPS else [n])]
    protocols = [load_protocol(n) for n in names]
    seen: dict[str, str] = {}
    for p in protocols:
        if p.name in seen and seen[p.name] != p.hash:
            raise BenchInputError(f"two different protocols are both named {p.name!r}")
        seen[p.name] = p.hash
    return list({p.hash: p for p in protocols}.values())


def protocol_text(spec: str) -> str:
    """The file text of a protocol (after validating it), for `bench protocols show`."""
    protocol = load_protocol(spec)
    if protocol.source.startswith("builtin:"):
        return (_builtin_dir() / f"{protocol.name}.toml").read_text()
    return Path(protocol.source).read_text()
