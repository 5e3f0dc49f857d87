"""A third-party plugin: pip-install the example package and use it without touching survbench."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, run_bench

EXAMPLE = ROOT / "examples" / "survbench-example-plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    target = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_installed_plugin_is_listed_with_its_package(plugin_env):
    listing = run_bench("list", env=plugin_env)
    assert listing.returncode == 0, listing.stderr
    line = next(l for l in listing.stdout.splitlines() if l.startswith("example-age-cox"))
    assert "survbench-example-plugin" in line and "survbench_example.method:AgeCox" in line


def test_installed_plugin_runs(plugin_env, tiny_dataset_dir, tmp_path):
    done = run_bench("run", "--method", "example-age-cox,coxph", "--protocol", "clean", "--scale", "smoke",
                     "--dataset", f"hecktor2022:{tiny_dataset_dir}", "--results", str(tmp_path), env=plugin_env)
    assert done.returncode == 0, done.stderr
    assert "example-age-cox" in done.stdout and "10 job(s) run" in done.stdout
