from __future__ import annotations

import numpy as np
import pytest

import bench
from bench.config import overrides_by_method, resolve_config
from bench.errors import BenchInputError


class M(bench.Method):
    configs = {"smoke": {"lr": 1e-3, "epochs": 2, "amp": False, "net": {"width": 8}, "name": "a"}}


class N(bench.Method):
    configs = {"smoke": {"alpha": 0.1}}


def test_set_values_are_toml_and_typed():
    cfg = resolve_config("m", M, "smoke", ["lr=1e-4", "epochs=5", "amp=true", "net.width=16", "name=b", "lr=1"])
    assert cfg == {"lr": 1.0, "epochs": 5, "amp": True, "net": {"width": 16}, "name": "b"}
    assert M.configs["smoke"]["net"]["width"] == 8  # defaults untouched


@pytest.mark.parametrize("item, message", [
    ("lrr=1", "no config key 'lrr'.*known keys: amp, epochs, lr, name, net"),
    ("net.depth=3", "no config key 'depth' at net"),
    ("epochs=2.5", "expects int, got float"),
    ("amp=1", "expects bool"),
    ("novalue", "expected key=value"),
])
def test_bad_set_is_an_input_error(item, message):
    with pytest.raises(BenchInputError, match=message):
        resolve_config("m", M, "smoke", [item])


def test_unknown_scale():
    with pytest.raises(BenchInputError, match="no config for scale 'paper'"):
        resolve_config("m", M, "paper", [])


def test_overrides_are_routed_to_the_methods_that_have_the_key():
    routed = overrides_by_method(["lr=1e-4", "n:alpha=1", "epochs=3"], {"m": M, "n": N}, "smoke")
    assert routed == {"m": ["lr=1e-4", "epochs=3"], "n": ["alpha=1"]}
    with pytest.raises(BenchInputError, match="no selected method has a config key 'beta'"):
        overrides_by_method(["beta=1"], {"m": M, "n": N}, "smoke")
    with pytest.raises(BenchInputError, match="'x' is not among"):
        overrides_by_method(["x:lr=1"], {"m": M}, "smoke")


def test_prediction_validation_names_the_method():
    ok = bench.Prediction(np.arange(3.0), np.full((3, 2), 0.5), np.array([1.0, 2.0]), method="m", n_expected=3)
    assert ok.risk.shape == (3,)
    with pytest.raises(bench.errors.PredictionError, match="method 'm': risk has 2 values but the cohort has 3"):
        bench.Prediction(np.arange(2.0), method="m", n_expected=3)
    with pytest.raises(bench.errors.PredictionError, match="method 'm': risk has 1 NaN"):
        bench.Prediction(np.array([1.0, np.nan]), method="m")
    with pytest.raises(bench.errors.PredictionError, match="must be 1-D"):
        bench.Prediction(np.ones((2, 2)), method="m")
    with pytest.raises(bench.errors.PredictionError, match="shape"):
        bench.Prediction(np.ones(3), np.ones((3, 3)), np.array([1.0, 2.0]), method="m")
    with pytest.raises(bench.errors.PredictionError, match="strictly increasing"):
        bench.Prediction(np.ones(3), np.ones((3, 2)), np.array([2.0, 1.0]), method="m")
    with pytest.raises(bench.errors.PredictionError, match=r"\[0, 1\]"):
        bench.Prediction(np.ones(3), np.full((3, 2), 1.5), np.array([1.0, 2.0]), method="m")
    with pytest.raises(bench.errors.PredictionError, match="together"):
        bench.Prediction(np.ones(3), np.full((3, 2), 0.5), method="m")
