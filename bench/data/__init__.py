"""Datasets: the HECKTOR 2022 layout loader, the built-in demo cohort and the ``--dataset`` spec parser.

Dataset specs:
    demo[:SEED]          clinical-only demo cohort in the HECKTOR 2022 layout, generated on first use
                         into the cache directory (the default until the synthetic PET/CT cohort lands)
    hecktor2022:PATH     a folder in the HECKTOR 2022 training layout
    PATH                 same as hecktor2022:PATH
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.data.cohort import Cohort, ImageFiles
from bench.data.hecktor import Dataset, load_hecktor
from bench.errors import BenchInputError

DEFAULT_DATASET = "demo"
DATASET_KINDS = ("demo[:SEED]", "hecktor2022:PATH")

__all__ = ["Cohort", "Dataset", "ImageFiles", "cache_dir", "load_dataset", "DEFAULT_DATASET"]


def cache_dir() -> Path:
    """Where generated datasets and caches live: $BENCH_CACHE_DIR, else ~/.cache/survbench."""
    root = os.environ.get("BENCH_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "survbench"


def load_dataset(spec: str | None) -> Dataset:
    """Resolve a ``--dataset`` spec (see the module docstring) to a loaded, validated ``Dataset``."""
    spec = spec or DEFAULT_DATASET
    kind, _, arg = spec.partition(":")
    if kind == "demo":
        from bench.data.demo import GENERATOR_VERSION, write_demo

        try:
            seed = int(arg) if arg else 0
        except ValueError:
            seed = -1
        if not 0 <= seed < 2**32:
            raise BenchInputError(f"--dataset {spec}: the demo seed must be an integer in [0, 2**32)")
        root = write_demo(cache_dir() / "datasets" / f"demo-v{GENERATOR_VERSION}-seed{seed}", seed)
        return load_hecktor(root, name=f"demo:{seed}")
    if kind == "hecktor2022":
        if not arg:
            raise BenchInputError("--dataset hecktor2022:PATH needs a folder path after the colon")
        return load_hecktor(arg, name=f"hecktor2022:{Path(arg).expanduser().resolve()}")
    if Path(spec).expanduser().is_dir():
        return load_hecktor(spec, name=f"hecktor2022:{Path(spec).expanduser().resolve()}")
    raise BenchInputError(
        f"--dataset {spec!r}: not a known dataset kind nor an existing folder (kinds: {', '.join(DATASET_KINDS)})"
    )
