"""Method registry: entry points (group ``bench.methods``) plus an in-process decorator.

Listing reads entry-point metadata only, so ``bench list`` never imports a method module (deep methods
pull in torch and MONAI); a method's module is imported when it is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Callable

from bench.errors import BenchInputError, did_you_mean
from bench.fsutil import safe_name
from bench.method import FAMILIES, INPUTS, OUTPUTS, Method

GROUP = "bench.methods"

_decorated: dict[str, type[Method]] = {}


@dataclass(frozen=True)
class MethodEntry:
    """A registered method before import: its name, where it lives and which package provides it."""

    name: str
    target: str  # "package.module:Class"
    package: str  # distribution name, or "<registered in process>"
    _cls: type[Method] | None = None

    def load(self) -> type[Method]:
        if self._cls is not None:
            return self._cls
        module_name, _, attr = self.target.partition(":")
        try:
            module = import_module(module_name)
            cls = getattr(module, attr) if attr else module
        except (ImportError, AttributeError) as exc:
            raise BenchInputError(
                f"method {self.name!r} (from package {self.package}) cannot be loaded from "
                f"{self.target!r}: {exc}"
            ) from exc
        check_method_class(self.name, cls)
        return cls


def check_method_class(name: str, cls: object) -> None:
    """What every plugin must declare; a plugin author gets a message that says what is wrong."""
    safe_name(name, "method name")  # it names stored rows, records and plots
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchInputError(f"method {name!r}: {cls!r} is not a subclass of bench.Method")
    bad_in = [c for c in cls.consumes if c not in INPUTS]
    bad_out = [p for p in cls.produces if p not in OUTPUTS]
    if bad_in or bad_out or "risk" not in cls.produces:
        raise BenchInputError(
            f"method {name!r}: consumes must be a subset of {INPUTS} and produces of {OUTPUTS} including "
            f"'risk' (got consumes={cls.consumes}, produces={cls.produces})"
        )
    if cls.family not in FAMILIES:
        raise BenchInputError(f"method {name!r}: family must be one of {FAMILIES} (got {cls.family!r})")
    if not cls.configs or not all(isinstance(v, dict) for v in cls.configs.values()):
        raise BenchInputError(f"method {name!r}: configs must map each scale to a dict of settings")


def entry_points_by_name(group: str) -> dict[str, list[EntryPoint]]:
    """An entry-point group's entries by name, without importing any: several under one name where
    packages disagree; a distribution seen twice on sys.path counts once."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        same = [e for e in found.get(ep.name, []) if e.value == ep.value and package_of(e) == package_of(ep)]
        if not same:
            found.setdefault(ep.name, []).append(ep)
    return found


def package_of(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Register a ``Method`` subclass under ``name`` in this process (notebooks, tests)."""

    def decorate(cls: type[Method]) -> type[Method]:
        check_method_class(name, cls)
        _decorated[name] = cls
        return cls

    return decorate


def unregister_method(name: str) -> None:
    _decorated.pop(name, None)


def available() -> dict[str, MethodEntry]:
    """Every registered method by name, without importing any of them. Decorated ones win a clash."""
    found: dict[str, MethodEntry] = {}
    for ep in entry_points(group=GROUP):
        package = ep.dist.name if ep.dist is not None else "?"
        found[ep.name] = MethodEntry(ep.name, ep.value, package)
    for name, cls in _decorated.items():
        found[name] = MethodEntry(name, f"{cls.__module__}:{cls.__qualname__}", "<registered in process>", cls)
    return dict(sorted(found.items()))


def get_entry(name: str) -> MethodEntry:
    entries = available()
    if name in entries:
        return entries[name]
    raise BenchInputError(
        f"unknown method {name!r}{did_you_mean(name, entries)} (registered: {', '.join(entries) or 'none'}; see `bench list`)"
    )


def get_method(name: str) -> type[Method]:
    return get_entry(name).load()


def resolve_names(spec: str) -> list[str]:
    """``--method a,b`` or ``--method all`` to a list of names, each checked to exist."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise BenchInputError("--method is empty")
    if names == ["all"]:
        return list(available())
    for n in names:
        get_entry(n)
    return list(dict.fromkeys(names))
