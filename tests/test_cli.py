"""End to end, as a user runs it: the installed `bench` script on a HECKTOR-layout folder the test writes."""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from helpers import run_bench


@pytest.fixture(scope="module")
def e2e(tiny_dataset_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("e2e") / "results"
    done = run_bench("run", "--method", "coxph", "--protocol", "clean,noisy50,loco", "--dataset",
                     f"hecktor2022:{tiny_dataset_dir}", "--scale", "smoke", "--results", str(results))
    return done, results


def test_run_prints_a_summary_and_stores_every_job(e2e):
    done, results = e2e
    assert done.returncode == 0, done.stderr
    assert "cindex_harrell" in done.stdout and "5/5" in done.stdout and "3/3" in done.stdout
    assert "13 job(s) run, 0 already done, 8 model(s) fitted" in done.stdout
    assert (results / "runs.sqlite").is_file() and list((results / "splits").glob("*.json"))


def test_rerun_skips_finished_jobs(e2e, tiny_dataset_dir):
    _, results = e2e
    again = run_bench("run", "-m", "coxph", "-p", "clean,noisy50,loco", "-d", f"hecktor2022:{tiny_dataset_dir}",
                      "--scale", "smoke", "--results", str(results))
    assert again.returncode == 0 and "0 job(s) run, 13 already done" in again.stdout


def test_results_export_csv_json_table(e2e):
    _, results = e2e
    csv = run_bench("results", "--results", str(results), "--format", "csv")
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert len(frame) == 13 and set(frame.protocol) == {"clean", "noisy50", "loco"}
    assert {"method", "protocol", "fold", "seed", "cindex_harrell", "status"} <= set(frame.columns)
    assert frame.cindex_harrell.between(0, 1).all()
    records = json.loads(run_bench("results", "--results", str(results), "--format", "json").stdout)
    assert len(records) == 13
    table = run_bench("results", "--results", str(results), "--summary")
    assert table.returncode == 0 and "loco" in table.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "-m", "coxp"], "did you mean 'coxph'"),
    (["run", "-m", "coxph", "-p", "noisy55"], "did you mean 'noisy50'"),
    (["run", "-m", "coxph", "--set", "alpah=1"], "no selected method has a config key 'alpah'"),
    (["run", "-m", "coxph", "--set", "alpha=[1]"], "expects float"),
    (["run", "-m", "coxph", "--seed", "x"], "--seed 'x'"),
    (["results", "--results", "/nonexistent/dir"], "no results store"),
    (["protocols", "show", "nope"], "unknown protocol"),
])
def test_bad_input_exits_2_with_a_message_and_no_traceback(args, message, tmp_path):
    done = run_bench(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr


def test_protocols_listing_and_show():
    listing = run_bench("protocols")
    assert listing.returncode == 0 and "noisy100" in listing.stdout and "center-split" in listing.stdout
    shown = run_bench("protocols", "show", "noisy50")
    assert shown.returncode == 0 and "fraction = 0.5" in shown.stdout and "hash" in shown.stdout


def test_help_explains_the_commands():
    out = run_bench("run", "--help").stdout
    for flag in ("--method", "--protocol", "--dataset", "--scale", "--seed", "--set", "--results", "--device"):
        assert flag in out


def test_a_failing_method_job_exits_1_and_is_recorded(tiny_dataset_dir, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, bench\n"
        "from bench.cli import main\n"
        "@bench.register_method('broken')\n"
        "class Broken(bench.Method):\n"
        "    configs = {'smoke': {}}\n"
        "    def fit(self, train, val):\n"
        "        raise RuntimeError('internal failure in fit')\n"
        f"sys.argv = ['bench', 'run', '-m', 'broken', '--scale', 'smoke', '-d', 'hecktor2022:{tiny_dataset_dir}',"
        f" '--results', '{tmp_path}']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "internal failure in fit" in done.stderr and "5 job(s) failed" in done.stderr
    csv = run_bench("results", "--results", str(tmp_path), "--format", "csv").stdout
    assert csv.count("failed") == 5


def test_data_demo_writes_a_hecktor_folder(tmp_path):
    done = run_bench("data", "demo", "--out", str(tmp_path / "demo"), "--seed", "1")
    assert done.returncode == 0 and "489 patients" in done.stdout and "7 centres" in done.stdout
    run = run_bench("run", "-m", "coxph", "-d", f"hecktor2022:{tmp_path / 'demo'}", "--results", str(tmp_path / "r"))
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("args, message", [
    (["run", "-m", "coxph", "--set", "alpha=-1"], "alpha = -1.0 must be a finite number >= 0"),
    (["run", "-m", "coxph", "--set", "ties=foo"], "ties = 'foo'"),
    (["run", "-m", "coxph", "--seed", ","], "--seed is empty"),
    (["run", "-m", "coxph", "--seed", "99999999999999999999"], "seeds must lie in"),
    (["run", "-m", "coxph", "-d", "demo:-5"], "seed must be an integer"),
    (["run", "-m", "coxph", "-d", "synthetic:smoke:x"], "seed must be an integer"),
])
def test_more_bad_input_exits_2(args, message, tmp_path):
    done = run_bench(*args, "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "r" / "models").exists()  # nothing trained before the error


def test_duplicate_seeds_run_once(tiny_dataset_dir, tmp_path):
    done = run_bench("run", "-m", "coxph", "--seed", "0,0", "--scale", "smoke", "-d",
                     f"hecktor2022:{tiny_dataset_dir}", "--results", str(tmp_path))
    assert done.returncode == 0 and "5 job(s) run" in done.stdout


def test_store_export_and_import_carry_finished_runs(tiny_dataset_dir, tmp_path):
    ds = f"hecktor2022:{tiny_dataset_dir}"
    assert run_bench("run", "-m", "coxph", "--scale", "smoke", "-d", ds, "--results", str(tmp_path / "a")).returncode == 0
    out = run_bench("store", "export", "--results", str(tmp_path / "a"), "--out", str(tmp_path / "rows"))
    assert out.returncode == 0 and "5 row file(s) written" in out.stdout, out.stderr
    back = run_bench("store", "import", str(tmp_path / "rows"), "--results", str(tmp_path / "b"))
    assert back.returncode == 0 and "5 row(s) imported" in back.stdout, back.stderr
    again = run_bench("run", "-m", "coxph", "--scale", "smoke", "-d", ds, "--results", str(tmp_path / "b"))
    assert again.returncode == 0 and "0 job(s) run, 5 already done" in again.stdout
    bad = run_bench("store", "import", str(tmp_path / "nothing"), "--results", str(tmp_path / "b"))
    assert bad.returncode == 2 and "no such folder of run rows" in bad.stderr and "Traceback" not in bad.stderr


def test_store_drop_removes_one_superseded_experiment_and_nothing_else(tiny_dataset_dir, tmp_path):
    ds = f"hecktor2022:{tiny_dataset_dir}"
    res, lb = tmp_path / "results", tmp_path / "lb"
    for extra in ([], ["--set", "alpha=0.5"]):
        done = run_bench("run", "-m", "coxph", "--scale", "smoke", "-d", ds, "--results", str(res), *extra)
        assert done.returncode == 0, done.stderr[-2000:]
    assert run_bench("store", "export", "--results", str(res), "--out", str(lb / "runs")).returncode == 0
    assert run_bench("leaderboard", "--results", str(res), "--out", str(lb)).returncode == 0
    records = sorted((lb / "records").glob("*/*coxph*.json"))
    assert len(records) == 2
    old = records[0].stem.rsplit("__", 1)[-1]
    keep = records[1].stem.rsplit("__", 1)[-1]
    before = sorted(p.relative_to(lb) for p in lb.rglob("*") if p.is_file())
    # without --yes: a listing, nothing changes
    dry = run_bench("store", "drop", "coxph", "--config", old, "--results", str(res), "--leaderboards", str(lb))
    assert dry.returncode == 0 and "would remove 5 stored row(s)" in dry.stdout and "add --yes" in dry.stdout
    assert sorted(p.relative_to(lb) for p in lb.rglob("*") if p.is_file()) == before
    # unknown or ambiguous configs are clear errors
    bad = run_bench("store", "drop", "coxph", "--config", "zzzz", "--results", str(res))
    assert bad.returncode == 2 and f"its configs: {', '.join(sorted([old, keep]))}" in bad.stderr
    assert "Traceback" not in bad.stderr
    gone = run_bench("store", "drop", "coxph", "--config", old, "--results", str(res), "--leaderboards", str(lb),
                     "--yes")
    assert gone.returncode == 0 and "removed 5 stored row(s)" in gone.stdout, gone.stderr
    left = sorted(p.relative_to(lb) for p in lb.rglob("*") if p.is_file())
    assert not [p for p in left if old in p.name] and [p for p in left if keep in p.name]
    assert len([p for p in left if p.parts[0] == "runs" and keep in p.name]) == 5
    # the store keeps the other experiment: a rerun of it does nothing, of the dropped one runs again
    again = run_bench("run", "-m", "coxph", "--scale", "smoke", "-d", ds, "--results", str(res), "--set", "alpha=0.5")
    base = run_bench("run", "-m", "coxph", "--scale", "smoke", "-d", ds, "--results", str(res))
    outs = [again.stdout, base.stdout]
    assert sorted("0 job(s) run, 5 already done" in o for o in outs) == [False, True], outs
    assert sorted(o.startswith("5 job(s) run") or "\n5 job(s) run" in o for o in outs) == [False, True], outs


# -- commands from other packages (entry-point group bench.commands) -------------------------------------------
_PLUGIN = '''
import click

from bench.errors import BenchInputError


@click.command()
@click.option("--fail", is_flag=True)
@click.pass_context
def hello(ctx, fail):
    """Say hello from outside survbench."""
    if fail:
        raise BenchInputError("hello: asked to fail")
    click.echo(f"hello from a plugin (quiet={ctx.obj['quiet']})")


NOT_A_COMMAND = 42
'''
_ENTRY_POINTS = """[bench.commands]
hello = survbench_test_commands:hello
run = survbench_test_commands:hello
broken = survbench_test_missing_module:cmd
notcmd = survbench_test_commands:NOT_A_COMMAND
"""


@pytest.fixture
def outside_package(tmp_path, monkeypatch):
    """An installed package (module + dist-info on sys.path) that registers commands: one that works, one named
    like a built-in, one whose module is missing, one that is not a click command."""
    (tmp_path / "survbench_test_commands.py").write_text(_PLUGIN)
    info = tmp_path / "survbench_test_commands-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: survbench-test-commands\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_command_from_an_outside_package_runs_through_bench(outside_package):
    from click.testing import CliRunner

    from bench.cli import cli

    r = CliRunner().invoke(cli, ["-q", "hello"])
    assert r.exit_code == 0 and "hello from a plugin (quiet=True)" in r.stdout, r.output
    listing = CliRunner().invoke(cli, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert "Say hello from outside survbench." in listing.stdout and "pretrain" in listing.stdout, listing.stdout
    # BenchInputError raised by an outside command: exit 2, the message, no traceback
    r = CliRunner().invoke(cli, ["hello", "--fail"])
    assert r.exit_code == 2 and "error: hello: asked to fail" in r.stderr and "Traceback" not in r.output


def test_a_broken_or_clashing_outside_command_is_named_and_breaks_nothing(outside_package):
    from click.testing import CliRunner

    from bench.cli import cli

    listing = CliRunner().invoke(cli, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert "cannot be used: run `bench broken` to see why" in listing.stdout
    assert "Plugin commands left out" in listing.stdout and "built-in command of bench" in listing.stdout
    r = CliRunner().invoke(cli, ["broken", "--any", "thing"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert ("command 'broken' ('survbench_test_missing_module:cmd' of package survbench-test-commands) cannot be "
            "loaded: ModuleNotFoundError" in r.stderr)
    r = CliRunner().invoke(cli, ["notcmd"])
    assert r.exit_code == 2 and "is int, not a click command" in r.stderr
    # the built-in keeps its name and works; the clash is said on stderr
    r = CliRunner().invoke(cli, ["run", "--help"])
    assert r.exit_code == 0 and "--protocol" in r.stdout, r.output
    assert "warning: the command 'run' from 'survbench_test_commands:hello'" in r.stderr
    assert CliRunner().invoke(cli, ["hello"]).exit_code == 0


_LAZY_CHECK = """
import sys
from click.testing import CliRunner
from bench.cli import cli

def loaded(package):
    return [m for m in sys.modules if m.split(".")[0] == package]

assert CliRunner().invoke(cli, ["protocols"]).exit_code == 0
assert not loaded("proposed"), "a built-in command imported proposed"
shown = CliRunner().invoke(cli, ["--help"]).output
assert "pretrain     Pretrain a foundation-model" in shown, shown
assert not loaded("torch"), "bench --help imported torch"
"""


def test_commands_of_other_packages_load_only_when_used():
    """`bench pretrain` is proposed/'s command (entry point): a built-in command does not import it, and
    `bench --help` lists it without importing torch."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _LAZY_CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_pretrain_names_an_unknown_encoder():
    done = run_bench("pretrain", "--encoder", "ct-fm,mri-fm", "--scale", "smoke")
    assert done.returncode == 2 and "--encoder 'ct-fm,mri-fm': choose from ct-fm, pet-fm" in done.stderr
    assert "Traceback" not in done.stderr
