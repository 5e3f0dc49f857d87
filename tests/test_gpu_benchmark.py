"""benchmarks/gpu_epoch.py: the GPU measurement script runs (smoke scale, CPU), names the registered classes,
refuses bad input, and the README's GPU table states what its committed results file says."""
import json
import re
from pathlib import Path

import pytest

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_epoch():
    return load_script("benchmarks/gpu_epoch.py")


def test_methods_are_the_registered_classes(gpu_epoch):
    from bench.registry import get_method

    for name in gpu_epoch.METHODS:
        assert gpu_epoch.method_class(name) is get_method(name), name


def test_smoke_epoch_on_the_cpu_measures_every_stage(gpu_epoch, tmp_path):
    out = tmp_path / "r.json"
    rc = gpu_epoch.main(["--scale", "smoke", "--device", "cpu", "--methods", "deepmts,adamss", "--encoders", "pet-fm",
                         "--n-train", "12", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    by = {m["method"]: m for m in res["methods"]}
    assert [s["stage"] for s in by["adamss"]["stages"]] == ["segmentation", "survival"]
    for m in by.values():
        for st in m["stages"]:
            # smoke: 2 fixed steps per epoch, all of them timed, a finite loss
            assert st["epoch_steps"] == st["timed_steps"] == 2 and not st["extrapolated"]
            assert st["images_per_s"] > 0 and st["loss"] == st["loss"]
            assert st["peak_gib"] is None  # no CUDA here
        assert m["inference_images_per_s"] > 0
    (enc,) = res["encoders"]
    assert enc["encoder"] == "pet-fm" and enc["embed_images_per_s"] > 0 and enc["pretrain_s_per_step"] > 0


def test_bad_input_exits_2(gpu_epoch, capsys):
    assert gpu_epoch.main(["--scale", "smoke", "--device", "cpu", "--methods", "nosuch"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_readme_gpu_table_is_the_committed_result():
    res = json.loads((ROOT / "benchmarks" / "results" / "h200-2026-11-29.json").read_text())
    by = {m["method"]: m for m in res["methods"]}
    readme = (ROOT / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and re.search(r"\d+ steps", cells[4]):
            rows[cells[0].split()[0]] = cells
    assert set(rows) == {"deepmts", "tmss", "deepmts-daft", "adamss", "robsurv"}
    for name, cells in rows.items():
        m = by[name]
        st = m["stages"][0]
        assert f"{st['epoch_steps']} steps" in cells[4], name
        assert cells[3].split()[0] == str(st["batch_size"]), name
        assert str(st["epoch_seconds"]) in re.findall(r"\d+\.\d", cells[4]), name
        assert cells[5].split()[0] == f"{st['images_per_s']:.0f}", name
        assert cells[6] == f"{st['peak_gib']:.1f} GiB", name
        assert cells[7].split()[0] == f"{m['inference_images_per_s']:.0f}", name
        assert cells[2].split()[0] == f"{m['parameters_M']:.1f}", name
    fm = by["fm-ctpet"]["stages"][0]
    assert str(fm["epoch_seconds"]) in re.findall(r"\d+\.\d", rows["deepmts-daft"][4])
