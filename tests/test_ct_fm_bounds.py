"""benchmarks/ct_fm_probe_bounds.py: the CT-FM probe bounds run end to end at smoke scale and write what the
README quotes (histogram probes per window, the random encoder's probe, the supervised encoder's probes)."""
from __future__ import annotations

import json

import numpy as np

from helpers import load_script


def _script():
    return load_script("benchmarks/ct_fm_probe_bounds.py")


def test_histogram_features_count_the_voxels_of_each_window():
    mod = _script()
    hu = np.array([[-1000.0, -100.0, 0.0, 40.0, 45.0, 1000.0]])
    x = (hu + 1000.0) / 3000.0  # the FM window mapped to 0…1, as the encoder reads it
    h = mod.histogram_features(x, (-1000.0, 2000.0), (-200.0, 300.0), bins=5)  # 100 HU bins
    assert h.tolist() == [[0.0, 1.0, 3.0, 0.0, 0.0]]  # −100 | 0, 40, 45 (air and bone outside the window)
    assert mod.histogram_features(x, (-1000.0, 2000.0), (-1000.0, 2000.0), bins=3).sum() == 6


def test_bounds_script_runs_at_smoke_scale(tmp_path):
    out = tmp_path / "bounds.json"
    assert _script().main(["--scale", "smoke", "--steps", "2", "--every", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["scale"] == "smoke" and res["corpus"].startswith("synthetic:smoke:")
    assert len(res["histogram"]) == 3
    for probes in [*res["histogram"].values(), res["random_init"]]:
        assert set(probes) == {"log_mtv", "eta", "necrosis"}
        assert all(np.isfinite(v[0]) and v[1] >= 0 for v in probes.values())
    assert list(res["supervised"]) == ["0", "1", "2"]
    assert all(np.isfinite(r["train_r2"]) and np.isfinite(r["held_out_r2"]) for r in res["supervised"].values())


def test_readme_quotes_the_committed_bounds():
    """The README's CT-FM bounds are the committed result file's numbers (rounded as quoted)."""
    from helpers import ROOT

    res = json.loads((ROOT / "benchmarks" / "results" / "cpu-2026-12-01-ct-fm-bounds.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    soft = res["histogram"]["soft_tissue -200…300 HU"]["log_mtv"][0]
    fm = res["histogram"]["fm_window -1000…2000 HU"]["log_mtv"][0]
    last = res["supervised"][str(max(map(int, res["supervised"])))]
    assert f"(R² {soft:.2f}; in the FM window's 75 HU bins {fm:.2f})" in readme
    assert (f"{last['train_r2']:.2f} on that half and {last['held_out_r2']:.2f} on the other".replace("-", "−")
            in readme)
