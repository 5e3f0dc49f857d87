"""The oracle ceiling: the true η on a synthetic cohort; refused on data without ground truth; the
ground truth reaches no other method."""
import numpy as np
import pandas as pd
import pytest

from bench.data.hecktor import GROUNDTRUTH_FILE
from bench.protocols import load_protocol
from bench.results import results_frame, summary_numbers
from bench.runner import plan_methods, run_jobs
from bench.store import Store
from helpers import run_bench


def test_oracle_reads_the_true_eta_and_tops_coxph(synthetic_smoke, tmp_path):
    plans = plan_methods(["oracle", "coxph"], "smoke", [])
    report = run_jobs(plans, [load_protocol("clean")], synthetic_smoke, scale="smoke", seeds=[0],
                      results_dir=tmp_path, progress=False)
    assert report.ran == 10 and not report.failed
    truth = pd.read_csv(synthetic_smoke.root / GROUNDTRUTH_FILE).set_index("PatientID")
    from bench.store import unpack_arrays

    for r in Store(tmp_path).rows():
        if r["method"] == "oracle":
            p = unpack_arrays(r["predictions"])
            np.testing.assert_allclose(p["risk"], truth.loc[list(p["ids"]), "eta"].to_numpy())
    numbers = summary_numbers(results_frame(Store(tmp_path))).set_index("method")
    assert numbers.loc["oracle", "cindex_harrell_mean"] > numbers.loc["coxph", "cindex_harrell_mean"]
    assert numbers.loc["oracle", "flags"].startswith("ceiling") and numbers.loc["coxph", "flags"] == ""


def test_no_other_method_sees_the_ground_truth(synthetic_smoke):
    cohort = synthetic_smoke.cohort(synthetic_smoke.ids[:5], with_outcomes=True)
    with pytest.raises(AttributeError, match="no ground truth"):
        cohort.groundtruth
    assert "eta" not in " ".join(cohort.clinical.columns)


def test_oracle_is_refused_without_ground_truth_and_skipped_by_all(tiny_clinical_dir, tmp_path):
    out = run_bench("run", "--method", "oracle", "--dataset", str(tiny_clinical_dir), "--scale", "smoke",
                    "--results", str(tmp_path / "r"))
    assert out.returncode == 2 and "no ground truth" in out.stderr and "Traceback" not in out.stderr
    out = run_bench("run", "--method", "all", "--dataset", str(tiny_clinical_dir), "--scale", "smoke",
                    "--results", str(tmp_path / "r2"))
    assert out.returncode == 0, out.stderr
    assert "skipped oracle" in out.stderr and "coxph" in out.stdout
