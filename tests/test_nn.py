"""The deep-learning engine: survival heads on hand-computed cases, the segmentation loss, balanced batches,
the trainer (resume, early stopping, EMA, AMP), the inverse of the image pipeline, and config errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.nn.losses import CoxHead, DiscreteHead, cox_loss, labels_from_logits, make_head, segmentation_loss
from bench.nn.trainer import BalancedBatchSampler, Trainer, TrainConfig


# -- Cox -------------------------------------------------------------------------------------------------------
def test_cox_loss_by_hand():
    lp = torch.tensor([0.0, math.log(2.0), 0.0], requires_grad=True)
    time, event = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0])
    # event at 1: 0 − log(1 + 2 + 1); event at 2: log 2 − log(2 + 1); mean over the two events
    want = -((0 - math.log(4)) + (math.log(2) - math.log(3))) / 2
    got = cox_loss(lp, time, event)
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert torch.isfinite(lp.grad).all()


def test_cox_loss_breslow_ties_match_the_numpy_likelihood():
    from bench.survival import _neg_partial_loglik

    rng = np.random.default_rng(0)
    t = rng.integers(1, 6, 30).astype(float)  # many ties
    e = rng.random(30) < 0.6
    z = rng.normal(size=30)
    want = _neg_partial_loglik(1.0, z, t, e) / e.sum()
    got = cox_loss(torch.tensor(z), torch.tensor(t), torch.tensor(e.astype(float)))
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_cox_loss_keeps_a_censoring_tied_with_an_event_in_the_risk_set():
    from bench.survival import _neg_partial_loglik

    # the censored patient (lp 1) is at risk at the event's time: −(0 − log(e + 1))
    got = cox_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert got.item() == pytest.approx(math.log(math.e + 1), rel=1e-6)
    rng = np.random.default_rng(5)
    for _ in range(20):
        t = rng.integers(1, 4, 8).astype(float)
        e = rng.random(8) < 0.5
        e[0] = True
        z = rng.normal(size=8)
        want = _neg_partial_loglik(1.0, z, t, e) / e.sum()
        assert cox_loss(torch.tensor(z), torch.tensor(t), torch.tensor(e.astype(float))).item() == pytest.approx(want, rel=1e-6)


def test_cox_loss_agrees_with_torchsurv_without_ties():
    from torchsurv.loss.cox import neg_partial_log_likelihood

    rng = np.random.default_rng(6)
    t = torch.tensor(rng.permutation(40) + 1.0)
    e = torch.tensor(rng.random(40) < 0.5)
    lp = torch.tensor(rng.normal(size=40))
    ref = neg_partial_log_likelihood(lp, e, t, ties_method="breslow", reduction="sum") / e.sum()
    assert cox_loss(lp, t, e.double()).item() == pytest.approx(ref.item(), rel=1e-6)


def test_cox_loss_without_events_is_zero_with_a_gradient():
    lp = torch.tensor([0.3, -0.2], requires_grad=True)
    loss = cox_loss(lp, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    loss.backward()
    assert loss.item() == 0 and lp.grad is not None


def test_cox_head_curves_ignore_a_constant_shift_of_the_log_hazard():
    rng = np.random.default_rng(1)
    t, e, lp = rng.exponential(100, 50), rng.random(50) < 0.5, rng.normal(size=(50, 1))
    a, b = CoxHead(20), CoxHead(20)
    a.fit_baseline(lp, t, e)
    b.fit_baseline(lp + 7.0, t, e)
    ra, sa, ta = a.predict(lp[:5])
    rb, sb, tb = b.predict(lp[:5] + 7.0)
    np.testing.assert_allclose(sa, sb, atol=1e-10)
    np.testing.assert_array_equal(ta, tb)
    assert np.all(np.diff(sa, axis=1) <= 1e-12)
    # a higher log-hazard never survives longer
    order = np.argsort(ra)
    assert np.all(np.diff(sa[order, -1]) <= 1e-12)


# -- discrete time ----------------------------------------------------------------------------------------------
def test_nnet_survival_likelihood_by_hand():
    head = DiscreteHead("hazard", edges=[0, 10, 20, 30])
    # event at 15: survived interval 0, failed in 1; censored at 26 (past the midpoint 25 of the last
    # interval): survived all three; censored at 24: survived the first two; an event exactly on the last
    # edge fails in the last interval; an event after it survived all three
    out = torch.tensor([[0.5, -0.3, 1.2]] * 5, requires_grad=True)
    time, event = torch.tensor([15.0, 26.0, 24.0, 30.0, 31.0]), torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    p = torch.sigmoid(torch.tensor([0.5, -0.3, 1.2]))
    want = -(torch.log(p[0]) + torch.log(1 - p[1]) + torch.log(p).sum() + torch.log(p[:2]).sum()
             + torch.log(p[:2]).sum() + torch.log(1 - p[2]) + torch.log(p).sum()) / 5
    got = head.loss(out, time, event)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    risk, surv, times = head.predict(out.detach().numpy()[:1])
    np.testing.assert_allclose(surv[0], torch.cumprod(p, 0).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(times, [10, 20, 30])
    s = surv[0]
    assert risk[0] == pytest.approx(-(10 * 1 + 10 * s[0] + 10 * s[1]))  # minus the restricted mean


def test_pmf_likelihood_by_hand_and_beyond_the_grid():
    head = DiscreteHead("pmf", edges=[0, 10, 20])
    phi = torch.tensor([[0.2, -0.4]] * 4)
    pmf = torch.softmax(torch.tensor([0.2, -0.4, 0.0]), 0)
    # event at 5 → interval 0; censored at 15 → outlived interval 0; censored at 5 → no term;
    # event at 25 (after the last edge) → censored at the end of interval 1
    time, event = torch.tensor([5.0, 15.0, 5.0, 25.0]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    want = -(torch.log(pmf[0]) + torch.log(1 - pmf[0]) + 0 + torch.log(pmf[2])) / 4
    assert head.loss(phi, time, event).item() == pytest.approx(want.item(), rel=1e-5)
    _, surv, _ = head.predict(phi.numpy()[:1])
    np.testing.assert_allclose(surv[0], [1 - pmf[0], pmf[2]], rtol=1e-5)


def test_mtlr_is_the_pmf_of_the_reverse_cumulative_sum():
    mtlr, pmf = DiscreteHead("mtlr", edges=[0, 10, 20, 30]), DiscreteHead("pmf", edges=[0, 10, 20, 30])
    phi = torch.tensor([[0.3, -0.1, 0.7], [1.0, 0.0, -1.0]])
    rev = torch.flip(torch.cumsum(torch.flip(phi, [1]), 1), [1])
    t, e = torch.tensor([12.0, 28.0]), torch.tensor([1.0, 0.0])
    assert mtlr.loss(phi, t, e).item() == pytest.approx(pmf.loss(rev, t, e).item(), rel=1e-6)
    np.testing.assert_allclose(mtlr.survival(phi.numpy()), pmf.survival(rev.numpy()), rtol=1e-6)


def test_deephit_mixes_likelihood_and_pycox_ranking():
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import DeepHitSingleLoss

    rng = np.random.default_rng(2)
    head = DiscreteHead("pmf", edges=[0, 10, 20, 30, 40], alpha=0.3, sigma=0.2)
    t = torch.tensor(rng.uniform(10.5, 39, 12))  # no censoring before the first edge: every row is kept
    e = torch.tensor((rng.random(12) < 0.5).astype(float))
    phi = torch.tensor(rng.normal(size=(12, 4)), dtype=torch.float32)
    idx, ev = head._index_targets(t.numpy(), e.numpy())
    assert (idx >= 0).all()
    ref = DeepHitSingleLoss(alpha=0.3, sigma=0.2)(phi, torch.tensor(idx), torch.tensor(ev),
                                                   torch.tensor(pair_rank_mat(idx, ev), dtype=torch.float32))
    assert head.loss(phi, t, e).item() == pytest.approx(ref.item(), rel=1e-5)


def test_quantile_edges_and_make_head():
    head = make_head("mtlr", n_bins=4)
    t = np.arange(1, 101, dtype=float)
    head.setup(t, np.ones(100))
    assert head.n_outputs == 4 and head.edges_[0] == 0 and head.edges_[-1] == 100
    with pytest.raises(ValueError, match="choose one of"):
        make_head("weibull")
    out = np.random.default_rng(0).normal(size=(6, 4))
    np.testing.assert_allclose(head.risk(out), head.predict(out)[0])


def test_a_method_config_without_ranking_settings_gets_the_plain_pmf_head():
    from baselines.deepmts import DeepMTS
    from bench.config import resolve_config
    from bench.method import RunContext

    for name, want in (("pmf", "pmf"), ("deephit", "deephit"), ("cox", "cox")):
        cfg = resolve_config("deepmts", DeepMTS, "smoke", [f'head="{name}"'])
        assert DeepMTS(RunContext(config=cfg)).make_head().name == want


# -- segmentation ------------------------------------------------------------------------------------------------
def test_segmentation_loss_and_labels():
    mask = torch.zeros(2, 1, 8, 8, 8, dtype=torch.uint8)
    mask[0, 0, 2:5, 2:5, 2:5] = 1
    mask[1, 0, 4:7, 4:7, 4:7] = 2
    perfect = torch.cat([(mask == 1), (mask == 2)], 1).float() * 40 - 20
    for kind in ("dice", "dicefocal"):
        fn = segmentation_loss(kind)
        assert fn(perfect, mask).item() < 1e-3
        assert fn(-perfect, mask).item() > 0.9
    assert torch.equal(labels_from_logits(perfect), mask[:, 0])


# -- balanced batches ---------------------------------------------------------------------------------------------
def test_balanced_batches_are_half_events_seeded_and_change_per_epoch():
    events = np.array([True] * 5 + [False] * 45)
    s = BalancedBatchSampler(events, 8, 10, seed=3)
    first = list(s)
    assert all(sum(events[b]) == 4 and len(b) == 8 for b in first)
    assert first == list(BalancedBatchSampler(events, 8, 10, seed=3))
    s.set_epoch(1)
    assert list(s) != first
    only = BalancedBatchSampler(np.zeros(10, bool), 4, 3, seed=0)
    assert all(len(b) == 4 for b in only)
    # an odd size gives the extra place to an event; a batch of one is an event
    assert all(sum(events[b]) == 2 for b in BalancedBatchSampler(events, 3, 5, seed=0))
    assert all(events[b].all() for b in BalancedBatchSampler(events, 1, 5, seed=0))
    # without replacement within a pass: the first 45 // 4 batches use distinct censored patients
    censored = [i for b in BalancedBatchSampler(events, 8, 11, seed=1) for i in b if not events[i]]
    assert len(set(censored)) == len(censored) == 44


# -- trainer ----------------------------------------------------------------------------------------------------
class _Toy(torch.utils.data.Dataset):
    """Cox data with one informative feature."""

    def __init__(self, n=64, seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 3)).astype(np.float32)
        self.time = rng.exponential(np.exp(-self.x[:, 0]) * 100).astype(np.float32)
        self.events = rng.random(n) < 0.6
        self.transform = None

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"id": str(i), "x": torch.from_numpy(self.x[i]), "time": torch.tensor(self.time[i]),
                "event": torch.tensor(float(self.events[i]))}


def _toy_step(model, batch):
    return {"loss": cox_loss(model(batch["x"])[:, 0], batch["time"], batch["event"])}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_a_killed_training_resumes_exactly(tmp_path):
    cfg = TrainConfig(epochs=5, batch_size=8, lr=1e-2, schedule="cosine", warmup_epochs=1, grad_clip=1.0)
    data = _Toy()
    whole, hist = Trainer(cfg, seed=4).fit(_model(), data, _toy_step)

    calls = {"n": 0}

    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] > 2 * 8 + 3:  # dies in the third epoch (8 batches per epoch)
            raise KeyboardInterrupt
        return _toy_step(model, batch)

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, seed=4, checkpoint=ckpt).fit(_model(), data, dying)
    assert ckpt.is_file()
    trainer = Trainer(cfg, seed=4, checkpoint=ckpt)
    resumed, hist2 = trainer.fit(_model(), data, _toy_step)
    assert trainer.resumed_from == 2 and not ckpt.exists()
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    np.testing.assert_allclose(hist["loss"], hist2["loss"])
    assert hist["loss"][-1] < hist["loss"][0]


def test_early_stopping_keeps_the_best_epoch():
    scores = iter([0.6, 0.7, 0.65, 0.64, 0.63, 0.62, 0.61])
    seen = {}

    def validate(model):
        s = next(scores)
        seen[s] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"score": s}

    cfg = TrainConfig(epochs=7, batch_size=8, lr=1e-2, patience=2)
    model, hist = Trainer(cfg, seed=0).fit(_model(), _Toy(), _toy_step, validate)
    assert hist["epoch"] == [1, 2, 3, 4] and hist["best_epoch"] == 2
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, seen[0.7][k])


def test_ema_weights_are_returned_and_cpu_bf16_autocast_trains():
    dtypes = []

    def step(model, batch):
        out = model(batch["x"])
        dtypes.append(out.dtype)
        return {"loss": cox_loss(out[:, 0], batch["time"], batch["event"])}

    raw = _model()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, ema=0.5, amp="bf16", keep="last")
    model, hist = Trainer(cfg, seed=0).fit(raw, _Toy(), step)
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"]))
    assert set(dtypes) == {torch.bfloat16}  # autocast was on
    assert model is not raw  # the EMA copy, whose weights differ from the raw ones
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), raw.state_dict().values()))
    assert "train.lr" in " ".join(TrainConfig(lr=-1).problems())
    assert "train.keep" in " ".join(TrainConfig(keep="first").problems())


def test_a_validation_split_without_events_falls_back_to_the_latest_epoch():
    cfg = TrainConfig(epochs=5, batch_size=8, lr=1e-2, patience=2)
    model, hist = Trainer(cfg, seed=0).fit(_model(), _Toy(), _toy_step, lambda m: {"score": float("nan")})
    assert hist["epoch"] == [1, 2, 3, 4, 5] and hist["best_epoch"] == 5


def test_a_run_killed_after_early_stopping_does_not_train_on(tmp_path):
    scores = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    cfg = TrainConfig(epochs=6, batch_size=8, lr=1e-2, patience=2)
    ckpt = tmp_path / "c.pt"

    class Killed(Exception):
        pass

    class KeepCheckpoint(Trainer):  # dies after the checkpoint of the stopping epoch, before cleanup
        def _save(self, *a):
            super()._save(*a)
            if a[-1]["stopped"]:
                raise Killed

    it = iter(scores)
    with pytest.raises(Killed):
        KeepCheckpoint(cfg, seed=0, checkpoint=ckpt).fit(_model(), _Toy(), _toy_step, lambda m: {"score": next(it)})
    _, hist = Trainer(cfg, seed=0, checkpoint=ckpt).fit(_model(), _Toy(), _toy_step, lambda m: {"score": 0.99})
    assert hist["epoch"] == [1, 2, 3] and hist["best_epoch"] == 1


def test_a_diverging_loss_is_reported():
    def bad(model, batch):
        return {"loss": model(batch["x"]).sum() * float("nan")}

    with pytest.raises(FloatingPointError, match="train.lr"):
        Trainer(TrainConfig(epochs=1), seed=0).fit(_model(), _Toy(), bad)


# -- pipeline inverse -------------------------------------------------------------------------------------------
def test_a_segmentation_goes_back_onto_the_native_grid(synthetic_smoke, tmp_path):
    import SimpleITK as sitk

    from bench.data.pipeline import PipelineConfig, load, to_native
    from bench.metrics import dice

    cfg = PipelineConfig(spacing_mm=2.0, size=(64, 64, 64))
    pid = synthetic_smoke.ids[0]
    files = synthetic_smoke.images[pid]
    boxed = load(files, cfg, tmp_path)
    native = to_native(boxed["mask"], boxed["origin"], cfg, files.ct)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(files.mask)))
    assert native.shape == ref.shape
    assert dice(native, ref)[1] > 0.8  # 2 mm round trip of the primary


# -- config ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item, match", [
    ("train.lr=-1", "train.lr"), ("crop=[30,30,30]", "multiple of 16"), ("crop=[64,64,64]", "no larger than box"),
    ('train.optimizer="lion"', "choose one of"), ('head="weibull"', "head"),
])
def test_bad_deep_configs_are_input_errors(item, match):
    from baselines.deepmts import DeepMTS
    from bench.config import resolve_config
    from bench.errors import BenchInputError

    with pytest.raises(BenchInputError, match=match):
        resolve_config("deepmts", DeepMTS, "smoke", [item])


def test_tmss_reads_the_clinical_token_and_the_ablation_does_not():
    from baselines.tmss import TMSS, TMSSImage, TMSSNet

    c = TMSS.configs["smoke"]
    hidden, fs, dense = TMSS.dims(c)
    kw = dict(patch=c["patch"], depth=c["depth"], heads=c["heads"], hidden=hidden, feature_size=fs, dropout=0.0,
              surv_dense=dense, surv_dropout=0.2)
    x = torch.rand(2, 2, 32, 32, 32)
    torch.manual_seed(0)
    with_token = TMSSNet((32, 32, 32), 5, 6, **kw).eval()
    a, b = with_token(x, torch.zeros(2, 5))["surv"], with_token(x, torch.ones(2, 5))["surv"]
    assert not torch.allclose(a, b)
    image_only = TMSSNet((32, 32, 32), 0, 6, **kw).eval()
    assert image_only.clinical is None
    assert TMSSImage.configs["quick"]["clinical"] is False and "clinical" not in TMSSImage.consumes
    assert TMSS.check_network(c | {"crop": [24, 24, 24]})
    assert TMSS.check_network(c | {"train": c["train"] | {"batch_size": 1}})  # BatchNorm in the survival layers
    assert dense == [32, 16] and TMSS.dims(TMSS.configs["paper"])[2] == [512, 128]
    assert isinstance(with_token.survival_layer, torch.nn.Linear) and with_token.surv[-1] is with_token.survival_layer


def test_tmss_clinical_dropout_hides_the_clinical_values_in_training_only():
    from baselines.tmss import TMSS, TMSSNet

    c = TMSS.configs["smoke"]
    hidden, fs, _ = TMSS.dims(c)
    kw = dict(patch=c["patch"], depth=c["depth"], heads=c["heads"], hidden=hidden, feature_size=fs, dropout=0.0)
    x = torch.rand(4, 2, 32, 32, 32)
    torch.manual_seed(0)
    net = TMSSNet((32, 32, 32), 5, 6, clinical_dropout=1.0, **kw)
    net.train()
    a, b = net(x, torch.zeros(4, 5))["surv"], net(x, torch.ones(4, 5))["surv"]
    assert torch.allclose(a, b)  # every patient's token saw zeros
    net.eval()
    assert not torch.allclose(net(x, torch.zeros(4, 5))["surv"], net(x, torch.ones(4, 5))["surv"])
    torch.manual_seed(1)
    half = TMSSNet((32, 32, 32), 5, 6, clinical_dropout=0.5, **kw).train()
    torch.manual_seed(2)
    a = half(x.repeat(8, 1, 1, 1, 1), torch.zeros(32, 5))["surv"]
    torch.manual_seed(2)
    b = half(x.repeat(8, 1, 1, 1, 1), torch.ones(32, 5))["surv"]
    same = torch.isclose(a, b).all(1)
    assert 0 < int(same.sum()) < 32  # some patients dropped, some not
    # the quick config's value reaches the network; the ablation has no token to drop
    from baselines.tmss import TMSSImage
    from bench.method import RunContext

    m = TMSS(RunContext(config=TMSS.configs["quick"], scale="quick", progress=False))
    m.head_ = m.make_head()
    assert m.build_network(5).clinical_dropout == 0.5
    assert "clinical_dropout" not in TMSSImage.configs["quick"] and "clinical_dropout" not in TMSS.configs["paper"]


def test_surv_l2_shrinks_the_last_survival_layer(synthetic_smoke, tmp_path):
    """``surv_l2`` (TMSS's MTLR regulariser C1) enters the loss: the same smoke training with a large C1 ends with
    a smaller last survival layer than without it; a network without ``survival_layer`` is refused."""
    from baselines.deepmts import DeepMTS
    from baselines.tmss import TMSS
    from bench.method import RunContext

    ids = list(synthetic_smoke.ids)
    train = synthetic_smoke.cohort(ids[:24], with_outcomes=True, name="train")
    val = synthetic_smoke.cohort(ids[24:32], with_outcomes=True, name="val")
    norms = {}
    for l2 in (0.0, 1000.0):
        cfg = TMSS.configs["smoke"] | {"surv_l2": l2, "seg_weight": 0.0}
        cfg["train"] = cfg["train"] | {"epochs": 2, "steps_per_epoch": 3, "lr": 0.05, "warmup_epochs": 0,
                                       "schedule": "constant", "weight_decay": 0.0}
        m = TMSS(RunContext(config=cfg, scale="smoke", cache_dir=tmp_path / str(l2), progress=False))
        m.fit(train, val)
        norms[l2] = float(m.net_.survival_layer.weight.detach().norm())
    assert norms[1000.0] < 0.5 * norms[0.0], norms
    cfg = DeepMTS.configs["smoke"] | {"surv_l2": 1.0}
    with pytest.raises(TypeError, match="survival_layer"):
        DeepMTS(RunContext(config=cfg, scale="smoke", cache_dir=tmp_path / "d", progress=False)).fit(train, val)


def test_the_deep_methods_run_from_the_command_line_and_report_their_training(tmp_path):
    """The issue's command at smoke scale, then `bench report` shows the stored per-epoch logs."""
    from helpers import run_bench

    res = tmp_path / "results"
    done = run_bench("run", "--method", "deepmts,tmss", "--protocol", "clean", "--scale", "smoke",
                     "--results", str(res))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "10 job(s) run" in done.stdout and "dice_gtvp" in done.stdout
    report = run_bench("report", "deepmts", "--protocol", "clean", "--results", str(res))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "2 epoch(s); weights of epoch 2 kept" in report.stdout and "seg_loss: first" in report.stdout
