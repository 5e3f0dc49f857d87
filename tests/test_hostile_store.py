"""Trust nothing on disk (issue 25): hostile row files, damaged or empty stores, read-only folders, bad split
files, double finishes, and two `bench run` processes on one store."""
from __future__ import annotations

import base64
import io
import json
import lzma
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import bench
from bench.errors import BenchInputError
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.runner import plan_methods, run_jobs
from bench.row_files import export_rows, import_rows
from bench.store import Claims, RunKey, Store
from helpers import BENCH, run_bench


# --- a small finished store, made once and copied per test ---------------------------------------------------
@pytest.fixture(scope="module")
def clinical(tmp_path_factory):
    from bench.data.hecktor import load_hecktor
    from helpers import write_tiny_hecktor

    return load_hecktor(write_tiny_hecktor(tmp_path_factory.mktemp("hostile") / "hecktor", images=False))


@pytest.fixture(scope="module")
def base_store(clinical, tmp_path_factory):
    """coxph under clean on the tiny clinical cohort: 5 finished rows, their models and the split file."""
    results = tmp_path_factory.mktemp("base") / "results"
    run_jobs(plan_methods(["coxph"], "smoke", []), [load_protocol("clean")], clinical, scale="smoke", seeds=[0],
             results_dir=results, progress=False)
    return results


@pytest.fixture
def store_dir(base_store, tmp_path):
    shutil.copytree(base_store, tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture(scope="module")
def row_files(base_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("rows")
    export_rows(Store(base_store, readonly=True), out)
    return out


def _one_row_folder(row_files: Path, dest: Path, edit) -> Path:
    """A copy of the exported rows where ``edit(row)`` changed the fold-2 file."""
    shutil.copytree(row_files, dest)
    victim = next(dest.glob("*/*fold2*.json"))
    doc = json.loads(victim.read_text())
    edit(doc["row"])
    victim.write_text(json.dumps(doc))
    return victim


def _no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr, done.stderr


# --- 1. import validates every column -----------------------------------------------------------------------
def _set(column, value):
    def edit(row):
        row[column] = value
    return edit


def _drop(column):
    def edit(row):
        del row[column]
    return edit


BAD_ROWS = {
    "metrics not JSON": ("metrics", _set("metrics", "{not json")),
    "metrics a list": ("metrics", _set("metrics", "[1, 2]")),
    "metrics a word": ("metrics", _set("metrics", '{"cindex_td": "high"}')),
    "metrics NaN": ("metrics", _set("metrics", '{"cindex_td": NaN}')),
    "manifest cut": ("manifest", _set("manifest", '{"metrics_version": ')),
    "env a string": ("env", _set("env", '"linux"')),
    "env.method a string": ("env", _set("env", '{"method": "coxph"}')),
    "env.provenance a list": ("env", _set("env", '{"provenance": [1, 2]}')),
    "config a list": ("config", _set("config", "[]")),
    "protocol_content null": ("protocol_content", _set("protocol_content", "null")),
    "corruption cut": ("corruption", _set("corruption", '{"kind": ')),
    "corruption without its fields": ("corruption", _set("corruption", '{"kind": "noise"}')),
    "fold a word": ("fold", _set("fold", "three")),
    "fold negative": ("fold", _set("fold", -1)),
    "fold a boolean": ("fold", _set("fold", True)),
    "seed a fraction": ("seed", _set("seed", 1.5)),
    "fit_seconds a word": ("fit_seconds", _set("fit_seconds", "fast")),
    "model_reused a word": ("model_reused", _set("model_reused", "yes")),
    "method missing": ("method", _set("method", None)),
    "method a number": ("method", _set("method", 5)),
    "config_hash a path": ("config_hash", _set("config_hash", "../../../../tmp/x")),
    "finished_at not a time": ("finished_at", _set("finished_at", "yesterday")),
    "notes a number": ("notes", _set("notes", 7)),
    "status unknown": ("status", _set("status", "weird")),
    "key column absent": ("protocol_hash", _drop("protocol_hash")),
    "predictions not base85": ("predictions", _set("predictions", "\\\\")),
    "predictions not xz": ("predictions", _set("predictions", base64.b85encode(b"plain bytes").decode())),
    "predictions without risk": ("predictions", lambda row: row.__setitem__(
        "predictions", base64.b85encode(lzma.compress(_npz(ids=np.array(["a"])))).decode())),
}


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_import_refuses_a_bad_column_before_importing_anything(case, row_files, tmp_path):
    column, edit = BAD_ROWS[case]
    victim = _one_row_folder(row_files, tmp_path / "rows", edit)
    with pytest.raises(BenchInputError) as err:
        import_rows(Store(tmp_path / "b"), tmp_path / "rows")
    assert victim.name in str(err.value) and column in str(err.value), str(err.value)
    assert Store(tmp_path / "b").rows() == []


def test_import_cli_names_file_and_column_and_the_store_stays_usable(row_files, tmp_path):
    victim = _one_row_folder(row_files, tmp_path / "rows", _set("metrics", '{"cindex_td": NaN}'))
    done = run_bench("store", "import", str(tmp_path / "rows"), "--results", str(tmp_path / "b"))
    assert done.returncode == 2 and victim.name in done.stderr and "metrics" in done.stderr, done.stderr
    _no_traceback(done)
    for args in (["results"], ["results", "--summary"]):
        again = run_bench(*args, "--results", str(tmp_path / "b"))
        assert again.returncode == 0, again.stderr


def _bomb(n_bytes: int) -> bytes:
    """An npz whose one member inflates to ``n_bytes`` of zeros (a few hundred kB compressed)."""
    buf = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (n_bytes // 8,)})
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("risk.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(n_bytes >> 20):
                fh.write(chunk)
    return buf.getvalue()


def _lying_header() -> bytes:
    """An npz member whose .npy header claims 10**11 float64 values (800 GB) over 8 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("risk.npy", header.getvalue() + bytes(8))
    return buf.getvalue()


@pytest.mark.parametrize("blob", ["bomb", "lying header"])
def test_import_refuses_a_zip_bomb_without_inflating_it(blob, row_files, tmp_path):
    data = _bomb(80 << 20) if blob == "bomb" else _lying_header()
    assert len(data) < 1 << 20
    victim = _one_row_folder(row_files, tmp_path / "rows",
                             _set("predictions", base64.b64encode(data).decode()))
    t0 = time.perf_counter()
    with pytest.raises(BenchInputError, match="predictions") as err:
        import_rows(Store(tmp_path / "b"), tmp_path / "rows")
    assert victim.name in str(err.value)
    assert time.perf_counter() - t0 < 5  # refused from the zip directory / .npy header, not by inflating it
    assert Store(tmp_path / "b").rows() == []


@pytest.mark.parametrize("column", ["metrics", "bootstrap"])
def test_a_bad_row_already_in_a_store_is_named_not_a_traceback(store_dir, column):
    value = '{"cindex_td": NaN' if column == "metrics" else _bomb(80 << 20)
    with sqlite3.connect(store_dir / "runs.sqlite") as con:
        con.execute(f"UPDATE runs SET {column}=? WHERE fold=1", (value,))
        config = con.execute("SELECT config_hash FROM runs").fetchone()[0]
    con.close()
    for args in (["results"], ["results", "--summary"], ["results", "--compare", "coxph"],
                 ["report", "coxph", "-p", "clean"], ["store", "export", "--out", str(store_dir.parent / "rows")]):
        done = run_bench(*args, "--results", str(store_dir))
        assert done.returncode == 2 and column in done.stderr and "fold1" in done.stderr, (args, done.stderr)
        _no_traceback(done)
    with pytest.raises(BenchInputError, match="bench store drop coxph"):
        Store(store_dir, readonly=True).rows()
    # the way out the message names works on the damaged store
    drop = run_bench("store", "drop", "coxph", "--config", config[:8], "--yes", "--results", str(store_dir))
    assert drop.returncode == 0, drop.stderr
    assert run_bench("results", "--results", str(store_dir)).stdout.strip() == "no runs stored"


# --- 2. SQLite and file-system errors ------------------------------------------------------------------------
def _scramble_pages(db: Path, first_page: int) -> None:
    """Random bytes over the start of every page from ``first_page`` (1-based) on, the header left intact."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    rng = np.random.default_rng(0)
    for start in range(page * (first_page - 1), len(data), page):
        lo = start + (100 if start == 0 else 0)
        data[lo:lo + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("first_page", [1, 2])
def test_random_bytes_in_the_database_are_an_input_error(store_dir, first_page):
    db = store_dir / "runs.sqlite"
    _scramble_pages(db, first_page)
    damaged = db.read_bytes()
    for args in (["results"], ["results", "--summary"], ["report", "coxph", "-p", "clean"],
                 ["store", "export", "--out", str(store_dir.parent / "rows")],
                 ["run", "-m", "coxph", "--scale", "smoke", "-d", "demo"]):
        done = run_bench(*args, "--results", str(store_dir))
        assert done.returncode == 2 and str(db) in done.stderr, (args, done.stderr)
        _no_traceback(done)
    assert db.read_bytes() == damaged


def test_random_bytes_in_any_page_give_exit_0_or_2_never_a_traceback(base_store, tmp_path):
    """200 random bytes in the middle of one page at a time (text, blobs, b-tree cells): every read command either
    reads the store or names it (exit 2); damage to text or blobs is caught where it is decoded."""
    from click.testing import CliRunner

    from bench.cli import cli

    clean = (base_store / "runs.sqlite").read_bytes()
    page = int.from_bytes(clean[16:18], "big")
    named = 0
    for k in range(1, len(clean) // page):
        shutil.rmtree(tmp_path / "r", ignore_errors=True)
        shutil.copytree(base_store, tmp_path / "r")
        data = bytearray(clean)
        data[k * page + 200:k * page + 400] = np.random.default_rng(k).integers(0, 256, 200, dtype=np.uint8).tobytes()
        (tmp_path / "r" / "runs.sqlite").write_bytes(bytes(data))
        for args in (["results"], ["results", "--summary"], ["results", "--compare", "coxph"]):
            got = CliRunner().invoke(cli, [*args, "--results", str(tmp_path / "r")])
            assert got.exit_code in (0, 2) and (got.exception is None or isinstance(got.exception, SystemExit)), \
                (k, args, got.output, got.exc_info)
            if got.exit_code == 2:
                assert str(tmp_path / "r") in got.output, got.output
                named += 1
    assert named  # some damage is visible (text that is not UTF-8, malformed pages, unreadable blobs)


def _readonly_runner():
    """How to run a command that cannot write to a chmod-ed folder: directly for a normal user, in a user
    namespace for root (where the folder's owner bits apply and root's override does not)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode != 0:
        pytest.skip("running as root without user namespaces: cannot make a read-only folder")
    return ["unshare", "--user"]


def _leave_wal(results: Path) -> None:
    """A committed row that sits in the write-ahead log (the writer was killed before its checkpoint)."""
    con = sqlite3.connect(results / "runs.sqlite")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("UPDATE runs SET notes='from the WAL' WHERE fold=0")
    con.commit()
    os._exit(0)


@pytest.mark.parametrize("wal", [False, True])
def test_a_read_only_folder_can_be_read(store_dir, tmp_path, wal):
    prefix = _readonly_runner()
    if wal:
        child = multiprocessing.get_context("fork").Process(target=_leave_wal, args=(store_dir,))
        child.start(), child.join()
        assert (store_dir / "runs.sqlite-wal").stat().st_size > 0
    before = sorted(p.name for p in store_dir.iterdir())
    modes = {p: p.stat().st_mode for p in [store_dir, *store_dir.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        runs = [
            ["results", "--format", "json"], ["results", "--summary"], ["report", "coxph", "-p", "clean"],
            ["store", "export", "--out", str(tmp_path / "rows")],
        ]
        outs = []
        for args in runs:
            done = subprocess.run([*prefix, BENCH, *args, "--results", str(store_dir)], capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, (args, done.stderr)
            outs.append(done.stdout)
        assert len(json.loads(outs[0])) == 5
        assert len([p for p in (tmp_path / "rows").glob("*/*.json") if p.parent.name != "splits"]) == 5
        if wal:
            assert any(r["notes"] == "from the WAL" for r in json.loads(outs[0]))
        # a writing command says what is wrong, without a traceback
        config = json.loads(outs[0])[0]["config_hash"][:8]
        done = subprocess.run([*prefix, BENCH, "store", "drop", "coxph", "--config", config, "--yes",
                               "--results", str(store_dir)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and str(store_dir) in done.stderr and "read-only" in done.stderr, done.stderr
        _no_traceback(done)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert sorted(p.name for p in store_dir.iterdir()) == before


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 20])
def test_an_empty_or_foreign_store_file_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "runs.sqlite"
    db.write_bytes(content)
    for args in (["results"], ["results", "--summary"], ["report", "coxph", "-p", "clean"],
                 ["store", "export", "--out", str(tmp_path / "rows")], ["store", "import", str(tmp_path),
                                                                       "--results", str(tmp_path)],
                 ["store", "drop", "coxph", "--config", "abcd"]):
        done = run_bench(*args, "--results", str(tmp_path))
        assert done.returncode == 2 and str(db) in done.stderr, (args, done.stderr)
        _no_traceback(done)
        assert db.read_bytes() == content
    with pytest.raises(BenchInputError, match="empty" if not content else "not a usable results database"):
        Store(tmp_path)
    assert db.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]


def test_a_foreign_sqlite_database_is_not_adopted(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:
        con.execute("CREATE TABLE photos (id INTEGER)")
    con.close()
    before = (tmp_path / "runs.sqlite").read_bytes()
    with pytest.raises(BenchInputError, match="not a survbench results store"):
        Store(tmp_path)
    with pytest.raises(BenchInputError, match="not a survbench results store"):
        Store(tmp_path, readonly=True)
    assert (tmp_path / "runs.sqlite").read_bytes() == before


def test_read_commands_create_nothing(tmp_path):
    for args in (["results"], ["store", "export", "--out", str(tmp_path / "rows")], ["report", "coxph", "-p", "clean"]):
        done = run_bench(*args, "--results", str(tmp_path / "none"))
        assert done.returncode == 2 and "no results store" in done.stderr, done.stderr
    assert not (tmp_path / "none").exists()


# --- 3. split files are checked when loaded --------------------------------------------------------------------
def _edit_split(path: Path, edit) -> str:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path.read_text()


def _train_on_test(data):
    for fold in data["folds"]:
        fold["train"] = fold["train"] + fold["test"]


def _three_of_five(data):
    data["folds"] = data["folds"][:3]
    data["val"] = {s: v[:3] for s, v in data["val"].items()}


def _tested_twice(data):
    """A patient of fold 1's test set moved into fold 0's test set as well (each fold still a partition)."""
    a, b = data["folds"][0], data["folds"][1]
    moved = b["test"][0]
    a["train"].remove(moved)
    a["test"].append(moved)
    data["val"]["0"][0] = [v for v in data["val"]["0"][0] if v != moved]


def _other_kind(data):
    data["split"] = {**data["split"], "kind": "loco"}


def _val_outside_train(data):
    data["val"]["0"][0] = data["val"]["0"][0][:-1] + [data["folds"][0]["test"][0]]


def _duplicated_patient(data):
    data["folds"][0]["train"].append(data["folds"][0]["train"][0])


@pytest.mark.parametrize("edit, words", [
    (_train_on_test, "both train and test"), (_three_of_five, "3 folds"), (_tested_twice, "tested"),
    (_other_kind, "split section"), (_val_outside_train, "validation"), (_duplicated_patient, "twice"),
])
def test_an_inconsistent_split_file_is_refused_and_kept(clinical, tmp_path, edit, words):
    from bench.splits import split_plan

    split = load_protocol("clean").split
    plan = split_plan(clinical, split, tmp_path, seeds=[0])
    text = _edit_split(plan.path, edit)
    with pytest.raises(BenchInputError, match=words) as err:
        split_plan(clinical, split, tmp_path, seeds=[0])
    assert str(plan.path) in str(err.value)
    assert plan.path.read_text() == text


def test_a_loco_split_file_must_hold_one_fold_per_centre(clinical, tmp_path):
    from bench.splits import split_plan

    split = load_protocol("loco").split
    plan = split_plan(clinical, split, tmp_path, seeds=[0])
    text = _edit_split(plan.path, lambda d: (d.__setitem__("folds", d["folds"][:2]),
                                             d.__setitem__("val", {s: v[:2] for s, v in d["val"].items()})))
    with pytest.raises(BenchInputError, match="2 folds"):
        split_plan(clinical, split, tmp_path, seeds=[0])
    assert plan.path.read_text() == text


def test_the_leaderboard_does_not_publish_three_of_five_folds(store_dir, tmp_path):
    from bench import leaderboard as lb

    with sqlite3.connect(store_dir / "runs.sqlite") as con:
        con.execute("DELETE FROM runs WHERE fold >= 3")
    con.close()
    split = next((store_dir / "splits").glob("*.json"))
    _edit_split(split, _three_of_five)
    try:
        written = lb.export_records(store_dir, tmp_path / "lb")
    except BenchInputError as exc:
        assert str(split) in str(exc)
        return
    assert written == []


class Ager(bench.Method):
    """Age as risk; counts its fits in a file (several processes) and can take its time."""

    consumes = ("clinical",)
    configs = {"smoke": {"w": 1.0}}
    log: str | None = None
    pause = 0.0

    def fit(self, train, val):
        if type(self).log:
            with open(type(self).log, "a") as fh:
                fh.write(f"{os.getpid()} {','.join(sorted(train.ids)[:2])}\n")
        time.sleep(type(self).pause)
        self.mean_ = float(train.clinical["Age"].mean())

    def predict(self, cohort):
        return bench.Prediction(cohort.clinical["Age"].fillna(self.mean_).to_numpy())


@pytest.fixture
def ager(tmp_path):
    register_method("ager")(Ager)
    Ager.log, Ager.pause = str(tmp_path / "fits.log"), 0.0
    yield Ager
    unregister_method("ager")


def _run_ager(dataset, results, protocols=("clean",)):
    return run_jobs(plan_methods(["ager"], "smoke", []), [load_protocol(p) for p in protocols], dataset,
                    scale="smoke", seeds=[0], results_dir=results, progress=False)


def test_a_run_on_a_three_fold_file_is_refused_before_any_fit(ager, clinical, tmp_path):
    from bench.splits import split_plan

    plan = split_plan(clinical, load_protocol("clean").split, tmp_path, seeds=[0])
    _edit_split(plan.path, _three_of_five)
    with pytest.raises(BenchInputError, match="3 folds"):
        _run_ager(clinical, tmp_path)
    assert not Path(Ager.log).exists()


# --- 4. finished rows are final; jobs are claimed ----------------------------------------------------------------
INFO = {"fold_name": "fold0", "protocol": "clean", "protocol_version": "1.0", "dataset": "d", "scale": "smoke",
        "train_key": "t", "config": {}, "protocol_content": {}, "env": {}}


def _finish(store: Store, key: RunKey, value: float) -> bool:
    return store.finish(key, metrics={"cindex_td": value}, notes=[], corruption={"kind": "none", "patients": {}},
                        predictions={"ids": np.array(["a"]), "risk": np.zeros(1), "time": np.ones(1),
                                     "event": np.ones(1, int)},
                        fit_seconds=1.0, predict_seconds=0.1, model_reused=False)


def test_a_finished_row_is_never_overwritten(tmp_path):
    store = Store(tmp_path)
    key = RunKey("m", "c" * 16, "d" * 16, "p" * 16, 0, 0)
    store.start(key, INFO)
    assert _finish(store, key, 0.7) is True
    first = store.row(key)
    assert _finish(store, key, 0.1) is False
    store.start(key, INFO)  # a late starter does not reopen it either
    assert store.row(key) == first and json.loads(first["metrics"]) == {"cindex_td": 0.7}
    assert _finish(store, RunKey("m", "c" * 16, "d" * 16, "p" * 16, 1, 0), 0.5) is False  # no such row


def test_claims_are_exclusive_heartbeaten_and_expire(tmp_path):
    store = Store(tmp_path)
    a, b = "host-a:1:aaaa", "host-b:2:bbbb"
    assert store.claim(["k1"], a, ttl=60) is True
    assert store.claim(["k1"], a, ttl=60) is True  # one's own claim
    assert store.claim(["k1"], b, ttl=60) is False
    assert store.claim(["k2", "k1"], b, ttl=60) is False and store.claim(["k2"], a, ttl=60) is True  # all or none
    assert store.release(["k2"], b) == 0 and store.release(["k2"], a) == 1
    assert store.claim(["k2"], b, ttl=60) is True
    # expiry: no heartbeat for longer than the ttl frees the claim
    time.sleep(0.3)
    assert store.claim(["k1"], b, ttl=0.2) is True
    assert store.release(["k1"], a) == 0  # the old claimant cannot release the new claim
    assert {c["job"]: c["claimant"] for c in store.claims()} == {"k1": b, "k2": b}
    # a heartbeat keeps claims alive
    time.sleep(0.3)
    assert store.heartbeat(b) == 2
    assert store.claim(["k1"], a, ttl=0.2) is False


def test_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path):
    import socket

    store = Store(tmp_path)
    child = subprocess.Popen(["true"])
    child.wait()
    dead = f"{socket.gethostname()}:{child.pid}:dead"
    assert store.claim(["k"], dead, ttl=3600) is True
    with Claims(store, ttl=3600) as mine:
        assert mine.claim(["k"]) is True  # its process is gone: no need to wait for the hour
    assert store.claim(["k"], "elsewhere:1:x", ttl=3600) is True  # released when the block ended
    assert store.claim(["k"], f"{socket.gethostname()}:{os.getpid()}:me", ttl=3600) is False  # another host's


def test_the_claims_context_beats_and_releases(tmp_path):
    store = Store(tmp_path)
    with Claims(store, ttl=0.6, beat=0.1) as mine:
        assert mine.claim(["k"])
        time.sleep(1.0)  # longer than the ttl: the heartbeat thread keeps the claim
        assert store.claim(["k"], "other:1:x", ttl=0.6) is False
    assert store.claims() == []  # released on leaving


def _claiming_worker(results: str, log: str, n: int) -> None:
    store = Store(results)
    with Claims(store, beat=0.2) as claims:
        for fold in claims.each(range(n), key=lambda f: f"job{f}", poll=0.05):
            key = RunKey("m", "c" * 16, "d" * 16, "p" * 16, fold, 0)
            if store.state(key)[0] == "done":
                continue
            store.start(key, INFO)
            with open(log, "a") as fh:
                fh.write(f"{fold} {os.getpid()}\n")
            time.sleep(0.25)
            assert _finish(store, key, 0.5)


def test_two_processes_share_claimed_jobs(tmp_path):
    Store(tmp_path / "r")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_claiming_worker, args=(str(tmp_path / "r"), str(tmp_path / "log"), 8))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    assert sorted(int(f) for f, _ in lines) == list(range(8))  # each job done exactly once
    assert len({pid for _, pid in lines}) == 2  # and both processes worked
    rows = Store(tmp_path / "r").rows()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"} and Store(tmp_path / "r").claims() == []


def _run_worker(results: str, dataset) -> None:
    _run_ager(dataset, Path(results), protocols=("clean", "noisy10"))


def test_two_bench_runs_on_one_store_fit_each_fold_once(ager, clinical, tmp_path):
    Ager.pause = 0.5
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_worker, args=(str(tmp_path / "r"), clinical)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    fits = Path(Ager.log).read_text().splitlines()
    rows = Store(tmp_path / "r").rows()
    keys = [(r["protocol"], r["fold"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 10 and {r["status"] for r in rows} == {"done"}
    assert len(fits) == 5, fits  # one fit per fold, shared by clean and noisy10, whichever process did it
