"""The contract test: every registered method goes through the runner's own steps — obtain a model (fit and
store it), predict, score, and obtain it again from the store — at smoke scale, on the smoke synthetic cohort
(clinical data, CT, PET, masks and, for the oracle, ground truth)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.errors import OutcomeLeakError
from bench.method import FAMILIES, INPUTS, OUTPUTS
from bench.scales import SCALES
from bench.protocols import load_protocol, parse_protocol
from bench.registry import available
from bench.runner import (check_dataset_fits, job_predictions, make_job, method_context, obtain_model,
                          plan_methods, predict_cohort, score_job)
from bench.splits import split_plan
from bench.store import Store


def _protocol():
    content = load_protocol("clean").content()
    content["split"] = {"kind": "kfold", "n_folds": 3, "seed": 0, "stratify": ["event"], "val_fraction": 0.2}
    content["metrics"] = {**content["metrics"], "bootstrap": 0}
    return parse_protocol({**content, "name": "contract"}, "contract")


@pytest.mark.parametrize("name", list(available()))
def test_method_contract(name, synthetic_smoke, tmp_path):
    dataset = synthetic_smoke
    cls = available()[name].load()
    assert set(cls.consumes) <= set(INPUTS) and set(cls.produces) <= set(OUTPUTS) and "risk" in cls.produces
    assert set(SCALES) <= set(cls.configs), f"{name} must declare smoke, quick and paper configs"
    assert cls.family in FAMILIES
    check_dataset_fits(name, cls, dataset)
    protocol = _protocol()
    plan = plan_methods([name], "smoke", [])[0]
    splits = split_plan(dataset, protocol.split, tmp_path, [0])
    job = make_job(plan, dataset, splits, splits.folds[0], 0, [protocol])
    store = Store(tmp_path)
    ctx = method_context(plan, scale="smoke", seed=0, device="cpu", progress=False)

    model = obtain_model(job, dataset, store, ctx)
    assert not model.reused and store.has_model(job.train_key)
    test = dataset.cohort(list(job.fold.test), with_outcomes=False, with_mask=cls.needs_mask_at_test,
                          with_groundtruth="groundtruth" in cls.consumes)
    with pytest.raises(OutcomeLeakError):
        test.outcomes
    train_pred = predict_cohort(plan, model.method, dataset, job.train_ids, "train")
    predictions, _ = job_predictions(job, model, dataset, protocol, train_pred)
    assert len(predictions["risk"]) == len(job.fold.test)
    if "survival" in cls.produces:
        assert predictions["survival"] is not None and np.all(np.diff(predictions["survival"], axis=1) <= 1e-9)
    if "segmentation" in cls.produces:
        assert predictions["dice_inter"].shape == (len(job.fold.test), 2)
    scored = score_job(protocol, predictions, job.fold)
    assert 0.0 <= scored.metrics["cindex_harrell"] <= 1.0

    # the store pickles a fitted method so other protocols reuse it: the copy must predict the same
    again = obtain_model(job, dataset, store, ctx)
    assert again.reused and again.method.ctx is ctx
    repeat, _ = job_predictions(job, again, dataset, protocol, train_pred)
    np.testing.assert_allclose(repeat["risk"], predictions["risk"])
    if predictions["survival"] is not None:
        np.testing.assert_allclose(repeat["survival"], predictions["survival"])
