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


def test_outside_metric_is_scored_stored_exported_and_on_a_page(plugin_env, tiny_dataset_dir, tmp_path):
    """The example package's metric (entry point of bench.metrics) named in a user protocol's report."""
    import json

    from bench.protocols import protocol_text

    listing = run_bench("metrics", env=plugin_env)
    assert listing.returncode == 0, listing.stderr
    line = next(l for l in listing.stdout.splitlines() if l.startswith("cindex_harrell_2y"))
    assert "survbench-example-plugin" in line and "per job" in line

    text = protocol_text("clean").replace('report = ["cindex_td",', 'report = ["cindex_td", "cindex_harrell_2y",')
    text = text.replace('name = "clean"', 'name = "clean-early"').replace("bootstrap = 1000", "bootstrap = 50")
    protocol = tmp_path / "clean-early.toml"
    protocol.write_text(text)
    results = tmp_path / "results"
    done = run_bench("run", "--method", "coxph", "--protocol", str(protocol), "--scale", "smoke",
                     "--dataset", f"hecktor2022:{tiny_dataset_dir}", "--results", str(results), env=plugin_env)
    assert done.returncode == 0, done.stderr

    table = run_bench("results", "--results", str(results), "--format", "json", env=plugin_env)
    rows = json.loads(table.stdout)
    values = [r["cindex_harrell_2y"] for r in rows]
    assert len(values) == 5 and all(v is None or 0.0 <= v <= 1.0 for v in values) and any(v is not None for v in values)
    cols = list(rows[0])
    assert cols.index("cindex_harrell_2y") > cols.index("logrank_p")  # outside metrics after the project's own

    exported = tmp_path / "exported"
    assert run_bench("store", "export", "--results", str(results), "--out", str(exported), env=plugin_env).returncode == 0
    row_files = list(exported.rglob("*.json"))
    assert row_files and all("cindex_harrell_2y" in json.loads(p.read_text())["metrics"] for p in row_files
                             if "metrics" in json.loads(p.read_text()))

    boards = tmp_path / "boards"
    made = run_bench("leaderboard", "--results", str(results), "--out", str(boards), env=plugin_env)
    assert made.returncode == 0, made.stderr
    record = json.loads(next((boards / "records").rglob("clean-early__coxph__*.json")).read_text())
    assert "cindex_harrell_2y" in record["ci"]  # bootstrapped on the shared resamples, so it has a CI
    page = next(boards.rglob("cv.md")).read_text()
    assert "Harrell C ≤2y" in page
    # without the package, the stored column still renders under its own name
    bare = run_bench("leaderboard", "--out", str(boards), "--check")
    assert bare.returncode == 1 and "cindex_harrell_2y" in bare.stdout


def test_installed_dataset_plugin_runs_clean_and_loco(plugin_env, tmp_path):
    """The example package's dataset (entry point of bench.datasets) is found by name and run like a built-in
    one, its grouping column held out centre by centre."""
    done = run_bench("run", "--method", "coxph", "--protocol", "clean,loco", "--dataset", "example-veterans",
                     "--results", str(tmp_path), env=plugin_env)
    assert done.returncode == 0, done.stderr
    assert "dataset example-veterans (137 patients" in done.stdout
    assert "9 job(s) run" in done.stdout  # 5 folds + one per cell type (4)
    missing = run_bench("run", "--method", "coxph", "--dataset", "example-veteran", "--results", str(tmp_path),
                        env=plugin_env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "'example-veteran' is not a registered dataset" in missing.stderr and "example-veterans" in missing.stderr
