"""Stored models are data: a planted payload, a swapped or edited model file, a path out of the store and an
older plain pickle are refused before any work, and nothing in them runs."""
from __future__ import annotations

import os
import pickle
import sqlite3

import numpy as np
import pytest

from bench.errors import BenchInputError
from bench.model_io import MAGIC, dump_model, load_model
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.runner import plan_methods, run_jobs
from bench.store import Store
from test_store_runner import Killer


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def fitted(tiny_dataset, tmp_path):
    register_method("killer")(Killer)
    Killer.kill_on_fit, Killer.fits = None, 0
    results = tmp_path / "results"
    run = lambda protocol: run_jobs(plan_methods(["killer"], "smoke", []), [load_protocol(protocol)], tiny_dataset,
                                    scale="smoke", seeds=[0], results_dir=results, progress=False)
    run("clean")
    yield results, run
    unregister_method("killer")


def _models(results):
    with sqlite3.connect(results / "runs.sqlite") as con:
        return con.execute("SELECT train_key, path, sha256, fold FROM models ORDER BY fold").fetchall()


def _set(results, train_key, **values):
    with sqlite3.connect(results / "runs.sqlite") as con:
        for k, v in values.items():
            con.execute(f"UPDATE models SET {k}=? WHERE train_key=?", (v, train_key))


def _hash(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_planted_payload_with_a_matching_hash_is_refused_and_never_runs(fitted, tmp_path):
    results, run = fitted
    key, path, _, _ = _models(results)[0]
    marker = tmp_path / "pwned"
    model = results / path
    dump_model(_Payload(marker), model, {"train_key": key})
    _set(results, key, sha256=_hash(model))  # an attacker who can write the store can fix the hash too
    with pytest.raises(BenchInputError, match="posix.system|os.system"):
        run("noisy50")
    assert not marker.exists()


def test_swapped_model_files_are_refused_before_any_work(fitted):
    results, run = fitted
    (k0, p0, h0, _), (k1, p1, h1, _) = _models(results)[:2]
    a, b = (results / p0).read_bytes(), (results / p1).read_bytes()
    (results / p0).write_bytes(b), (results / p1).write_bytes(a)
    done = Store(results).rows("done")
    with pytest.raises(BenchInputError, match="sha256"):
        run("noisy50")
    _set(results, k0, sha256=h1), _set(results, k1, sha256=h0)  # hashes swapped too: the header's key differs
    with pytest.raises(BenchInputError, match=f"fitted for training key '{k1}'"):
        run("noisy50")
    assert Store(results).rows("done") == done and Killer.fits == 5


def test_a_model_path_outside_the_store_and_an_old_pickle_are_refused(fitted, tmp_path):
    results, run = fitted
    key, path, _, _ = _models(results)[0]
    elsewhere = tmp_path / "elsewhere.model"
    elsewhere.write_bytes((results / path).read_bytes())
    _set(results, key, path="../elsewhere.model")
    with pytest.raises(BenchInputError, match="outside"):
        run("noisy50")
    _set(results, key, path=path)
    old = pickle.dumps(Killer.__new__(Killer))  # how survbench stored models before
    (results / path).write_bytes(old)
    _set(results, key, sha256=_hash(results / path))
    with pytest.raises(BenchInputError, match="older survbench"):
        run("noisy50")


def test_tensors_round_trip_without_torch_pickles_and_torch_load_is_refused(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    net[1].running_mean += 1.5
    path = tmp_path / "m.model"
    dump_model({"net": net, "half": torch.ones(2, dtype=torch.bfloat16)}, path, {"train_key": "k"})
    data = path.read_bytes()
    assert b"_load_from_bytes" not in data and b"torch.storage" not in data
    _, back = load_model(data, "m")
    x = torch.randn(4, 3)
    net.eval(), back["net"].eval()
    assert torch.equal(net(x), back["net"](x)) and back["half"].dtype == torch.bfloat16
    # a hand-made model that reaches torch's own unpickler (which allows arbitrary code) is refused
    evil = MAGIC + b'{"train_key": "k"}\n' + pickle.dumps(torch.ones(2))
    with pytest.raises(BenchInputError, match="not on the list"):
        load_model(evil, "evil")


def test_training_checkpoints_are_read_as_weights_only(tmp_path):
    """A checkpoint carrying a payload is refused by torch's weights-only reader; nothing runs."""
    import torch

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "c.pt"
    torch.save({"model": {}, "evil": _Payload(marker)}, ckpt)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)
    assert not marker.exists()
    src = open(__import__("bench.nn.trainer", fromlist=["x"]).__file__).read()
    assert "weights_only=False" not in src


def test_report_names_a_refused_model_and_reports_the_rest(fitted):
    from bench.report import method_report

    results, _ = fitted
    _, path, _, _ = _models(results)[0]
    (results / path).write_bytes(b"changed")
    text = method_report(Store(results), "killer", "clean")
    assert "model not read" in text and "does not match the sha256" in text and "corruption:" in text
