from __future__ import annotations

import pytest

from helpers import write_tiny_hecktor


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated datasets and caches go to a per-session temp dir, never the user's ~/.cache."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "bench-cache"))


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
    return write_tiny_hecktor(tmp_path_factory.mktemp("tiny") / "hecktor")


@pytest.fixture(scope="session")
def tiny_clinical_dir(tmp_path_factory):
    return write_tiny_hecktor(tmp_path_factory.mktemp("tinyclin") / "hecktor", images=False)


@pytest.fixture
def tiny_dataset(tiny_dataset_dir):
    from bench.data.hecktor import load_hecktor

    return load_hecktor(tiny_dataset_dir)


@pytest.fixture(scope="session")
def synthetic_smoke(tmp_path_factory):
    """The smoke synthetic cohort (40 patients, images, masks, ground truth), generated once per session."""
    from bench.data.hecktor import load_hecktor
    from bench.data import synthetic_name
    from bench.data.synthetic import generate, scale_config

    root = generate(tmp_path_factory.mktemp("synthetic") / "smoke", scale_config("smoke"), 0, progress=False)
    return load_hecktor(root, name=synthetic_name("smoke", 0))
