"""Speed of the synthetic cohort generator and the image-pipeline cache (pytest-benchmark, marked benchmark).

Run: .venv/bin/python -m pytest tests/benchmarks/test_data_speed.py -m benchmark -p no:cacheprovider

- generate the smoke cohort (40 patients) from scratch, and re-run it on a complete cohort (a no-op);
- one quick-scale patient rendered (the unit of the 489-patient cohort's parallel generation);
- the image pipeline for one patient: from NIfTI (cold) versus from the npz cache (warm) — side by side,
  the cache is what the second epoch and the second method pay.
"""
import itertools
import shutil

import pytest

from bench.data.hecktor import load_hecktor
from bench.data.pipeline import PipelineConfig, load, process
from bench.data.synthetic import _draw_cohort, generate, render_patient, scale_config

pytestmark = pytest.mark.benchmark
counter = itertools.count()


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("s") / "smoke", scale_config("smoke"), 0, progress=False)


@pytest.mark.benchmark(group="synthetic: generate")
def test_generate_smoke_from_scratch(benchmark, tmp_path):
    def run():
        out = tmp_path / f"g{next(counter)}"
        generate(out, scale_config("smoke"), 0, progress=False)
        shutil.rmtree(out)

    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.benchmark(group="synthetic: generate")
def test_generate_smoke_when_complete(benchmark, smoke_dir):
    benchmark(generate, smoke_dir, scale_config("smoke"), 0, progress=False)


@pytest.mark.benchmark(group="synthetic: one quick patient")
def test_render_one_quick_patient(benchmark, tmp_path):
    cfg = scale_config("quick")
    pats, centres = _draw_cohort(cfg, 0)
    p = pats.to_dict("records")[0]
    benchmark.pedantic(render_patient, args=(p, centres[p["centre"]], cfg.to_dict(), 0, str(tmp_path)),
                       rounds=5, iterations=1)


@pytest.mark.benchmark(group="pipeline: one patient")
def test_pipeline_from_nifti(benchmark, smoke_dir):
    ds = load_hecktor(smoke_dir)
    benchmark(process, ds.images[ds.ids[0]], PipelineConfig(spacing_mm=2.0, size=(48, 48, 48)))


@pytest.mark.benchmark(group="pipeline: one patient")
def test_pipeline_from_cache(benchmark, smoke_dir, tmp_path):
    ds = load_hecktor(smoke_dir)
    cfg = PipelineConfig(spacing_mm=2.0, size=(48, 48, 48))
    load(ds.images[ds.ids[0]], cfg, tmp_path)
    benchmark(load, ds.images[ds.ids[0]], cfg, tmp_path)
