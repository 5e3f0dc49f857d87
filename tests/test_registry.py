from __future__ import annotations

import subprocess
import sys

import pytest

import bench
from bench.errors import BenchInputError
from bench.registry import available, get_entry, get_method, register_method, resolve_names, unregister_method


def test_project_methods_come_from_entry_points():
    entry = available()["coxph"]
    assert entry.package == "survbench"
    assert entry.target == "baselines.coxph:CoxPH"
    assert get_method("coxph").__name__ == "CoxPH"


def test_listing_imports_no_method_module():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from bench.cli import cli\n"
        "r = CliRunner().invoke(cli, ['list'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'coxph' in r.output and 'survbench' in r.output, r.output\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('baselines', 'proposed', 'torch', 'sksurv')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_verbose_listing_imports_and_shows_capabilities():
    from click.testing import CliRunner

    from bench.cli import cli

    out = CliRunner().invoke(cli, ["list", "-v"]).output
    assert "clinical" in out and "risk,survival" in out and "smoke,quick,paper" in out
    # what one fit asks of a machine (Method.resources): a deep method a GPU at paper scale, coxph the defaults
    assert "8 CPU, 1 GPU, 32 GiB" in out and "1 CPU, 2 GiB" in out


def test_decorator_registers_in_process():
    @register_method("unit-test-method")
    class Tiny(bench.Method):
        configs = {"smoke": {}}

    try:
        assert available()["unit-test-method"].package == "<registered in process>"
        assert get_method("unit-test-method") is Tiny
        assert "unit-test-method" in resolve_names("all")
    finally:
        unregister_method("unit-test-method")
    assert "unit-test-method" not in available()


def test_decorator_rejects_bad_declarations():
    with pytest.raises(BenchInputError, match="not a subclass"):
        register_method("x")(object)
    with pytest.raises(BenchInputError, match="consumes"):
        @register_method("x")
        class Bad(bench.Method):
            consumes = ("xray",)
            configs = {"smoke": {}}
    with pytest.raises(BenchInputError, match="configs"):
        @register_method("x")
        class NoConfig(bench.Method):
            pass


def test_unknown_method_suggests_close_names():
    with pytest.raises(BenchInputError, match="did you mean 'coxph'"):
        get_entry("coxp")
    with pytest.raises(BenchInputError, match="unknown method 'zzz'"):
        resolve_names("coxph,zzz")


def test_all_expands_to_every_registered_method():
    assert resolve_names("all") == list(available())
    assert resolve_names("coxph,coxph") == ["coxph"]
