"""Datasets: the HECKTOR 2022 layout loader, the built-in demo cohort and the ``--dataset`` spec parser.

Dataset specs (NAME[:ARG], resolved through the entry-point group ``bench.datasets``, bench.data.sources):
    synthetic[:SCALE[:[vN:]SEED]]  the synthetic multi-centre PET/CT cohort (bench.data.synthetic), generated on
                              first use into the cache directory; SCALE smoke|quick|paper|large (bench.scales;
                              "full" is read as paper). The default: the run's own scale.
                              Recorded as synthetic:SCALE:vVERSION:SEED (the generator version)
    demo[:SEED]               the clinical-only demo cohort (the two CSVs, no images)
    hecktor2022:PATH          a folder in the HECKTOR 2022 training layout
    manifest:FILE.toml        tables, columns, time unit, centre and images declared in a TOML manifest
    PATH                      same as hecktor2022:PATH
    OTHER:ARG                 a dataset an installed package registers (docs/datasets.md)
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.data.cohort import Cohort, ImageFiles
from bench.data.dataset import Dataset
from bench.data.hecktor import load_hecktor
from bench.errors import BenchInputError
from bench.scales import SYNTHETIC_SCALES, synthetic_scale

DEFAULT_DATASET = "synthetic"
DATASET_KINDS = ("synthetic[:SCALE[:SEED]]", "demo[:SEED]", "hecktor2022:PATH", "manifest:FILE.toml")

__all__ = ["Cohort", "Dataset", "ImageFiles", "cache_dir", "check_images", "load_dataset", "synthetic_name",
           "DEFAULT_DATASET"]


def check_images(dataset: Dataset, ids=None, *, progress: bool = True) -> int:
    """Before a run fits anything: the images of ``ids`` (default all) complete, 3-D, labels in {0, 1, 2},
    mask on the CT grid, PET over the CT — else ``BenchInputError`` naming patient and file. Patients that
    passed are remembered by file content under the cache (see ``bench.data.verify.check_images``)."""
    from bench.data.verify import check_images as check

    return check(dataset, ids, progress=progress)


def cache_dir() -> Path:
    """Where generated datasets and caches live: $BENCH_CACHE_DIR, else ~/.cache/survbench."""
    root = os.environ.get("BENCH_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "survbench"


def _seed(spec: str, text: str) -> int:
    try:
        seed = int(text) if text else 0
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:
        raise BenchInputError(f"--dataset {spec}: the seed must be an integer in [0, 2**32)")
    return seed


def synthetic_root(scale: str, seed: int, *, progress: bool = True) -> Path:
    """The cached synthetic cohort of this scale and seed, generated first if needed."""
    from bench.data.synthetic import default_path, generate, scale_config

    path = default_path(cache_dir() / "datasets", scale, seed)
    return generate(path, scale_config(scale), seed, progress=progress)


def synthetic_name(scale: str, seed: int) -> str:
    """The recorded name of a synthetic cohort: it carries the generator version, so records, pages and
    their paths of one generator never mix with another's (``synthetic:quick:v3:0`` → pages under
    ``synthetic-quick-v3-0``)."""
    from bench.data.synthetic import GENERATOR_VERSION

    return f"synthetic:{scale}:v{GENERATOR_VERSION}:{seed}"


def load_dataset(spec: str | None, run_scale: str = "quick", *, progress: bool = True) -> Dataset:
    """Resolve a ``--dataset`` spec ``NAME[:ARG]`` through the dataset registry (entry-point group
    ``bench.datasets``; see ``bench.data.sources``) to a loaded, checked ``Dataset``; a bare folder path is
    read as ``hecktor2022:PATH``."""
    from bench.data.sources import load

    return load(spec or f"{DEFAULT_DATASET}:{run_scale}", run_scale, progress=progress)
