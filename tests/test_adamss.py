"""AdaMSS: fusion gates start at 0.5/0.5 and move, two-stage training (segmentation, then survival) that resumes
after a kill between the stages, the stage-I network segments, the paper's piecewise learning rate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from proposed.adamss import EDGES, AdaMSS, AdaMSSNet, FusionGate


def test_a_fusion_gate_starts_half_and_half():
    g = FusionGate(2, 2, 4).eval()
    f_pet, f_ct, f_fuse = torch.rand(1, 2, 4, 4, 4), torch.rand(1, 2, 4, 4, 4), torch.rand(1, 4, 4, 4, 4)
    out = g(f_pet, f_ct, f_fuse)
    assert torch.allclose(out, 0.5 * g.pc(torch.cat([f_pet, f_ct], 1)) + 0.5 * f_fuse)
    g.train()
    g(f_pet, f_ct, f_fuse)
    assert g.epoch_mean() == pytest.approx(0.5) and g.epoch_mean() is None  # reset after reading


def test_the_network_shapes_and_the_papers_settings():
    c = AdaMSS.configs["paper"]
    net = AdaMSSNet(0, 10, c)
    assert sum(m.out_channels for m in net.dec) == 240  # GAP of the four decoder outputs: 128 + 64 + 32 + 16
    assert c["edges"] == EDGES and len(EDGES) == 11 and c["surv_l2"] == 0.1 and c["crop"] == [112] * 3
    assert (c["stage1"]["lr"], c["stage2"]["lr"], c["stage1"]["batch_size"]) == (1e-4, 5e-5, 2)
    small = AdaMSSNet(3, 10, AdaMSS.configs["smoke"]).eval()
    out = small(torch.rand(2, 2, 16, 16, 16), torch.rand(2, 3))
    assert out["surv"].shape == (2, 10) and out["seg"].shape == (2, 2, 16, 16, 16)


def test_multistep_learning_rate_follows_the_paper():
    from bench.nn.trainer import TrainConfig, _lr_lambda

    cfg = TrainConfig.from_dict(AdaMSS.configs["paper"]["stage2"])
    f = _lr_lambda(cfg)
    assert [f(e) for e in (0, 19, 20, 39, 40, 49)] == [1.0, 1.0, 0.2, 0.2, 0.02, 0.02]
    bad = TrainConfig.from_dict({"schedule": "multistep", "milestones": [20, 10], "factors": [0.5, 0.1]})
    assert any("multistep" in p for p in bad.problems())


def test_two_stages_resume_after_a_kill_between_them(synthetic_smoke, tmp_path, monkeypatch):
    from bench.method import RunContext
    from bench.nn import trainer as trainer_mod

    ids = list(synthetic_smoke.ids)
    train = synthetic_smoke.cohort(ids[:24], with_outcomes=True, name="train")
    val = synthetic_smoke.cohort(ids[24:32], with_outcomes=True, name="val")
    ctx = RunContext(config=AdaMSS.configs["smoke"], scale="smoke", cache_dir=tmp_path, progress=False)
    real_fit, calls = trainer_mod.Trainer.fit, []

    def killed_in_stage_two(self, *a, **k):
        calls.append(self.desc)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies during stage II
        return real_fit(self, *a, **k)

    monkeypatch.setattr(trainer_mod.Trainer, "fit", killed_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        AdaMSS(ctx).fit(train, val)
    assert list((tmp_path / "checkpoints").glob("*.segmentation.done.pt"))
    m = AdaMSS(ctx)
    m.fit(train, val)  # stage I is read back, only stage II trains
    assert [c.split()[-1] for c in calls] == ["segmentation", "survival", "survival"]
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # everything cleaned up at the end
    h = m.history_
    assert "segmentation_seg_loss" in h and "surv_loss" in h and "seg_loss" not in h
    assert "segmentation_val_dice_gtvp" in h and "val_score" in h
    for i in range(1, 6):  # the gates' mean weights per epoch, both stages, and they moved off 0.5
        assert len(h[f"gate{i}_fuse"]) == 2 and len(h[f"segmentation_gate{i}_fuse"]) == 2
    assert any(abs(h[f"gate{i}_fuse"][-1] - 0.5) > 1e-4 for i in range(1, 6))
    # the stage-I network is kept for segmentation; survival comes from the stage-II one
    assert m.seg_net_ is not m.net_
    assert any(not torch.equal(a, b) for a, b in zip(m.seg_net_.state_dict().values(), m.net_.state_dict().values()))
    test = synthetic_smoke.cohort(ids[32:36], with_outcomes=False, name="test")
    pred = m.predict(test)
    assert len(pred.risk) == 4 and pred.segmentation is not None and len(pred.segmentation) == 4
    data = m._dataset(test, train=False)  # predict's label maps come from the stage-I network, through the hook
    stage1 = m._outputs(m.seg_net_, data)[1]
    assert all(np.array_equal(a, b) for a, b in zip(m.segmentation_labels(data, None), stage1))


def test_radiomics_of_the_stage_one_contours_feed_stage_two(synthetic_smoke, tmp_path):
    import SimpleITK as sitk

    from bench.method import RunContext

    ids = list(synthetic_smoke.ids)
    train = synthetic_smoke.cohort(ids[:24], with_outcomes=True, name="train")
    val = synthetic_smoke.cohort(ids[24:32], with_outcomes=True, name="val")
    test = synthetic_smoke.cohort(ids[32:36], with_outcomes=False, name="test")
    config = AdaMSS.configs["smoke"] | {"radiomics": True, "clinical": True}
    m = AdaMSS(RunContext(config=config, scale="smoke", cache_dir=tmp_path, progress=False))
    m.fit(train, val)
    k = config["radiomics_k"]
    n_clinical = m.clinical_.n_features_
    assert m.net_.surv[1].in_features == sum(m.net_.dec[i].out_channels for i in range(4)) + n_clinical + k
    # the stage-I contours of the training and validation patients, on each patient's CT grid
    contours = sorted((tmp_path / "adamss-contours").rglob("*.nii.gz"))
    assert len(contours) == 32
    ct = sitk.ReadImage(str(train.image_files[ids[0]].ct))
    first = m._predicted_contours(train.subset(ids[:1])).image_files[ids[0]].mask
    assert sitk.ReadImage(str(first)).GetSize() == ct.GetSize()
    assert sitk.ReadImage(str(first)).GetSpacing() == pytest.approx(ct.GetSpacing())
    # stage II sees the radiomics features: exactly the train-fitted transform of those contours, padded to k
    x = m._tabular(test)
    assert x.shape == (4, n_clinical + k)
    rad = m.radiomics_.transform(m._predicted_contours(test))
    assert rad.shape[1] <= k and np.allclose(x[:, n_clinical:n_clinical + rad.shape[1]], rad)
    assert len(sorted((tmp_path / "adamss-contours").rglob("*.nii.gz"))) == 36  # test contours written once
    pred = m.predict(test)
    assert len(pred.risk) == 4 and np.isfinite(pred.risk).all()


def test_radiomics_config_is_checked():
    bad = AdaMSS.configs["smoke"] | {"radiomics": True, "radiomics_k": 0, "radiomics_corr_max": 2.0}
    problems = AdaMSS.check_config(bad)
    assert any("radiomics_k" in p for p in problems) and any("corr_max" in p for p in problems)
    assert not AdaMSS.check_config(AdaMSS.configs["smoke"] | {"radiomics": True})
