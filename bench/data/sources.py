"""The dataset registry: ``--dataset NAME[:ARG]`` names a loader registered in the entry-point group
``bench.datasets`` (survbench's own — synthetic, demo, hecktor2022, manifest — exactly as an outside package
registers one) or in this process with ``register_dataset``.

A loader is a callable ``load(arg: str, *, scale: str, progress: bool) -> Dataset``: ``arg`` is what follows
the first colon ('' when none), ``scale`` the run's scale (a loader may ignore it). Whatever it returns passes
``bench.data.dataset.check_dataset`` before the harness uses it.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Callable

from bench.data.dataset import Dataset, check_dataset
from bench.errors import BenchInputError, did_you_mean
from bench.registry import entry_points_by_name, package_of

GROUP = "bench.datasets"
Loader = Callable[..., Dataset]

_decorated: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader under ``name`` in this process (notebooks, tests); it wins over an entry point."""
    if not name or ":" in name or "/" in name:
        raise BenchInputError(f"dataset name {name!r}: must be non-empty, without ':' or '/'")

    def decorate(fn: Loader) -> Loader:
        _decorated[name] = fn
        return fn

    return decorate


def unregister_dataset(name: str) -> None:
    _decorated.pop(name, None)


def available() -> dict[str, str]:
    """Every registered dataset name and where its loader lives (``module:function``), without importing."""
    found = {name: eps[0].value for name, eps in entry_points_by_name(GROUP).items()}
    found |= {name: f"{fn.__module__}:{fn.__qualname__}" for name, fn in _decorated.items()}
    return dict(sorted(found.items()))


def _loader(name: str) -> Loader:
    if name in _decorated:
        return _decorated[name]
    eps = entry_points_by_name(GROUP).get(name)
    if not eps:
        raise KeyError(name)
    if len(eps) > 1:
        raise BenchInputError(f"dataset {name!r} is registered by several packages "
                              f"({', '.join(f'{package_of(e)}: {e.value}' for e in eps)}): uninstall one")
    module_name, _, attr = eps[0].value.partition(":")
    try:
        return getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BenchInputError(f"dataset {name!r} (from package {package_of(eps[0])}) cannot be loaded from "
                              f"{eps[0].value!r}: {exc}") from exc


def load(spec: str, scale: str, *, progress: bool = True) -> Dataset:
    """The dataset of ``spec`` (``NAME[:ARG]``, or a bare HECKTOR folder path), loaded and checked."""
    name, _, arg = spec.partition(":")
    try:
        loader = _loader(name)
    except KeyError:
        if Path(spec).expanduser().is_dir():
            name, arg, loader = "hecktor2022", spec, _loader("hecktor2022")
        else:
            names = available()
            raise BenchInputError(f"--dataset {spec!r}: {name!r} is not a registered dataset nor an existing folder"
                                  f"{did_you_mean(name, names)} (registered: {', '.join(names) or 'none'}; "
                                  f"see docs/datasets.md)") from None
    return check_dataset(loader(arg, scale=scale, progress=progress), f"--dataset {name}:{arg}" if arg else name)


# survbench's own loaders, registered in pyproject.toml like any plugin's.

def synthetic_spec(arg: str, scale: str) -> tuple[str, int]:
    """(scale, seed) of ``synthetic[:SCALE[:[vN:]SEED]]`` (``arg`` is what follows the first colon); the scale
    defaults to the run's. The recorded name, ``synthetic:SCALE:vN:SEED``, is accepted for this generator only."""
    from bench.data import _seed
    from bench.data.synthetic import GENERATOR_VERSION
    from bench.scales import SYNTHETIC_SCALES, synthetic_scale

    spec = f"synthetic:{arg}"
    scale_text, _, seed_text = arg.partition(":")
    version, _, rest = seed_text.partition(":")
    if version.startswith("v"):  # the recorded name, synthetic:SCALE:vN:SEED, is accepted as a spec
        if version[1:] != GENERATOR_VERSION:
            raise BenchInputError(f"--dataset {spec}: generator {version} is not this harness's "
                                  f"(v{GENERATOR_VERSION}); its records stay readable, its cohort cannot be "
                                  f"generated here")
        seed_text = rest
    chosen = synthetic_scale(scale_text or scale)
    if chosen not in SYNTHETIC_SCALES:
        raise BenchInputError(f"--dataset {spec}: unknown synthetic scale {chosen!r} "
                              f"(choose {', '.join(SYNTHETIC_SCALES)})")
    return chosen, _seed(spec, seed_text)


def load_synthetic(arg: str, *, scale: str, progress: bool = True) -> Dataset:
    """``synthetic[:SCALE[:[vN:]SEED]]``: the synthetic PET/CT cohort, generated into the cache on first use."""
    from bench.data import synthetic_name, synthetic_root
    from bench.data.hecktor import load_hecktor

    chosen, seed = synthetic_spec(arg, scale)
    return load_hecktor(synthetic_root(chosen, seed, progress=progress), name=synthetic_name(chosen, seed))


def demo_path(seed: int) -> Path:
    """Where the demo cohort of ``seed`` is generated (the cache's datasets/)."""
    from bench.data import cache_dir
    from bench.data.demo import GENERATOR_VERSION

    return cache_dir() / "datasets" / f"demo-v{GENERATOR_VERSION}-seed{seed}"


def load_demo(arg: str, *, scale: str, progress: bool = True) -> Dataset:
    """``demo[:SEED]``: the clinical-only demo cohort (two CSVs, no images)."""
    from bench.data import _seed
    from bench.data.demo import write_demo
    from bench.data.hecktor import load_hecktor

    seed = _seed(f"demo:{arg}", arg)
    return load_hecktor(write_demo(demo_path(seed), seed), name=f"demo:{seed}")


def load_hecktor2022(arg: str, *, scale: str, progress: bool = True) -> Dataset:
    """``hecktor2022:PATH``: a folder in the HECKTOR 2022 training layout."""
    from bench.data.hecktor import load_hecktor

    if not arg:
        raise BenchInputError("--dataset hecktor2022:PATH needs a folder path after the colon")
    return load_hecktor(arg, name=f"hecktor2022:{Path(arg).expanduser().resolve()}")
