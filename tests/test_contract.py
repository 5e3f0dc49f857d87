"""The contract test: every registered method goes through fit → predict → score at smoke scale, on the
smoke synthetic cohort (clinical data, CT, PET, masks and — for the oracle — ground truth)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from bench.config import resolve_config
from bench.errors import OutcomeLeakError
from bench.method import INPUTS, OUTPUTS, SCALES, Prediction, RunContext
from bench.metrics import cindex_harrell
from bench.registry import available
from bench.runner import check_dataset_fits
from bench.splits import make_folds


@pytest.mark.parametrize("name", list(available()))
def test_method_contract(name, synthetic_smoke, tmp_path):
    tiny_dataset = synthetic_smoke
    cls = available()[name].load()
    assert set(cls.consumes) <= set(INPUTS) and set(cls.produces) <= set(OUTPUTS) and "risk" in cls.produces
    assert set(SCALES) <= set(cls.configs), f"{name} must declare smoke, quick and paper configs"
    check_dataset_fits(name, cls, tiny_dataset)
    fold = make_folds(tiny_dataset, {"kind": "kfold", "n_folds": 3, "seed": 0, "stratify": ["event"], "val_fraction": 0.2})[0]
    train_ids, val_ids = list(fold.train[:-4]), list(fold.train[-4:])
    ctx = RunContext(config=resolve_config(name, cls, "smoke"), scale="smoke", seed=0, cache_dir=tmp_path, method_name=name)
    method = cls(ctx)
    truth = "groundtruth" in cls.consumes
    method.fit(tiny_dataset.cohort(train_ids, with_outcomes=True, with_groundtruth=truth),
               tiny_dataset.cohort(val_ids, with_outcomes=True, with_groundtruth=truth))
    test = tiny_dataset.cohort(list(fold.test), with_outcomes=False, with_mask=cls.needs_mask_at_test,
                               with_groundtruth=truth)
    with pytest.raises(OutcomeLeakError):
        test.outcomes
    pred = method.predict(test)
    assert isinstance(pred, Prediction)
    Prediction(pred.risk, pred.survival, pred.times, pred.segmentation, method=name, n_expected=len(test))
    if "survival" in cls.produces:
        assert pred.survival is not None and np.all(np.diff(pred.survival, axis=1) <= 1e-9)
    if "segmentation" in cls.produces:
        assert pred.segmentation is not None and set(pred.segmentation) == set(test.ids)
    # the store pickles a fitted method so other protocols reuse it: the copy must predict the same
    again = pickle.loads(pickle.dumps(method))
    again.ctx = ctx  # as the runner does: the context is not part of the model
    again = again.predict(test)
    np.testing.assert_allclose(again.risk, pred.risk)
    if pred.survival is not None:
        np.testing.assert_allclose(again.survival, pred.survival)
    out = tiny_dataset.outcomes.loc[list(fold.test)]
    c = cindex_harrell(out.time.to_numpy(), out.event.to_numpy(), pred.risk)
    assert 0.0 <= c <= 1.0
