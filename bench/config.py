"""Resolve a method's config: its ``configs[scale]`` plus ``--set key=value`` overrides.

Values are parsed as TOML (``--set lr=1e-4``, ``--set layers=[32,16]``, ``--set name="x"``); a bare word
that is not TOML is taken as a string. Dotted keys reach into nested tables. An unknown key or a value of
the wrong type is an input error: a typo must not silently run the default.
"""
from __future__ import annotations

import copy
import tomllib
from typing import Any

from bench.errors import BenchInputError
from bench.hashing import content_hash
from bench.method import Method


def parse_set(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BenchInputError(f"--set {item!r}: expected key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _compatible(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if default is None:
        return True
    return isinstance(value, type(default))


def resolve_config(name: str, cls: type[Method], scale: str, overrides: list[str] | None = None) -> dict:
    if scale not in cls.configs:
        raise BenchInputError(
            f"method {name!r} has no config for scale {scale!r} (it has: {', '.join(cls.configs)})"
        )
    config = copy.deepcopy(cls.configs[scale])
    for item in overrides or []:
        key, value = parse_set(item)
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a table)"
                where = ".".join(parts[:depth]) or "the top level"
                raise BenchInputError(
                    f"--set {item!r}: method {name!r} has no config key {part!r} at {where} "
                    f"(known keys: {known})"
                )
            if depth < len(parts) - 1:
                node = node[part]
        default = node[parts[-1]]
        if not _compatible(default, value):
            raise BenchInputError(
                f"--set {item!r}: {key} of method {name!r} expects {type(default).__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
        node[parts[-1]] = float(value) if isinstance(default, float) else value
    complaints = cls.check_config(config)
    if complaints:
        raise BenchInputError(f"method {name!r} config (scale {scale}): " + "; ".join(complaints))
    return config


def below_minimum(config: dict[str, Any], minimums: dict[str, float]) -> list[str]:
    """``check_config`` helper: a complaint for every key whose value is below its minimum."""
    return [f"{key} = {config[key]} must be >= {low}" for key, low in minimums.items() if not config[key] >= low]


def config_hash(name: str, cls: type[Method], config: dict) -> str:
    """Identity of a trained model's recipe: method, its code version and every config value."""
    return content_hash({"method": name, "version": cls.version, "config": config})


def overrides_by_method(items: list[str], classes: dict[str, type[Method]], scale: str) -> dict[str, list[str]]:
    """Route ``--set`` items to methods: ``METHOD:key=value`` targets one method; a plain ``key=value``
    goes to every selected method whose config has that top-level key, and must match at least one."""
    routed: dict[str, list[str]] = {name: [] for name in classes}
    for item in items:
        key = item.partition("=")[0]
        if ":" in key:
            target, _, rest = item.partition(":")
            if target not in classes:
                raise BenchInputError(f"--set {item!r}: method {target!r} is not among those being run")
            routed[target].append(rest)
            continue
        top = key.strip().split(".")[0]
        users = [n for n, c in classes.items() if top in c.configs.get(scale, {})]
        if not users:
            raise BenchInputError(
                f"--set {item!r}: no selected method has a config key {top!r} at scale {scale!r}"
                f" (see `bench list -v`)"
            )
        for n in users:
            routed[n].append(item)
    return routed
