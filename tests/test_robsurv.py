"""RobSurv: the vector quantiser (lookup, straight-through, codebook loss, dead-code restart, EMA, use stats),
the patching, each Table-2 ablation switch really changing the network, and the design card's command."""
from __future__ import annotations

import pytest
import torch

from proposed.robsurv import (CBAM, Quantizer, RobSurv, RobSurvNet, RobSurvNoContinuous, RobSurvNoPatchFuse,
                              RobSurvNoVQ, _patches)


def test_quantizer_snaps_to_the_nearest_entry_and_passes_gradients_straight_through():
    qz = Quantizer(3, 2, commitment=0.25)
    with torch.no_grad():
        qz.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    z = torch.tensor([[0.9, 1.2], [-1.5, 0.1], [0.1, -0.1]]).T.reshape(1, 2, 3, 1, 1).requires_grad_()
    q, loss, idx = qz(z)
    assert idx.tolist() == [1, 2, 0]
    assert torch.allclose(q.reshape(2, 3).T, torch.tensor([[1.0, 1.0], [-2.0, 0.0], [0.0, 0.0]]))
    # codebook loss + 0.25 × commitment, both the mean squared distance here
    d = ((torch.tensor([[0.9, 1.2], [-1.5, 0.1], [0.1, -0.1]]) - torch.tensor([[1.0, 1.0], [-2.0, 0.0], [0.0, 0.0]])) ** 2).mean()
    assert float(loss.detach()) == pytest.approx(1.25 * float(d), rel=1e-5)
    q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through: d q / d z = identity
    loss2 = qz(z.detach())[1]
    loss2.backward()
    assert qz.codebook.weight.grad[1].abs().sum() > 0  # the codebook loss moves the chosen entries


def test_use_statistics_and_dead_code_restart():
    torch.manual_seed(0)
    qz = Quantizer(8, 4, restart_after=2).train()
    with torch.no_grad():
        qz.codebook.weight.copy_(torch.randn(8, 4) * 0.01)
        qz.codebook.weight[7] = 100.0  # far away: never chosen
    z = torch.randn(2, 4, 2, 2, 2)
    qz(z)
    stats = qz.epoch_stats()
    assert 0 < stats["codes_used"] < 1 and stats["perplexity"] >= 1
    assert float(qz.counts.sum()) == 0  # reset for the next epoch
    qz(z)  # second step: entries idle for 2 steps are re-seeded from this batch's encoder outputs
    assert float(qz.codebook.weight[7].detach().abs().max()) < 50
    flat = z.movedim(1, -1).reshape(-1, 4)
    assert any(torch.allclose(qz.codebook.weight[7], row) for row in flat)


def test_ema_codebook_moves_without_gradients_and_stays_healthy():
    """MONAI's EMA starts cluster sizes at 0, which blows entries up by 1/(1 − decay) on the first step and
    collapses the codebook; started at 1, entries stay near the data and the use stays spread."""
    torch.manual_seed(0)
    qz = Quantizer(64, 4, mode="ema", decay=0.99).train()
    before = qz.weight.detach().clone()
    for _ in range(30):
        q, loss, idx = qz(torch.randn(4, 4, 4, 4, 4))
    assert not torch.allclose(before, qz.weight) and loss.ndim == 0 and idx.shape == (256,)
    assert float(qz.weight.norm(dim=1).max()) < 10
    stats = qz.epoch_stats()
    assert stats["perplexity"] > 20 and stats["codes_effective"] == pytest.approx(stats["perplexity"] / 64)
    # with a restart too: idle entries are re-seeded in the EMA buffers as well
    qz = Quantizer(64, 4, mode="ema", restart_after=1).train()
    z = torch.randn(1, 4, 2, 2, 2)
    idx = qz(z)[2]
    dead = torch.ones(64, dtype=torch.bool)
    dead[idx] = False
    flat = z.movedim(1, -1).reshape(-1, 4)
    assert int((qz.idle > 0).sum()) == 0 and torch.allclose(qz.ema.ema_w[dead], qz.weight[dead])
    assert all(any(torch.allclose(w, row) for row in flat) for w in qz.weight[dead])
    with pytest.raises(ValueError, match="loss or ema"):
        Quantizer(4, 2, mode="kmeans")


def test_checkpoints_keep_idle_steps_not_epoch_counts_and_eval_changes_nothing():
    qz = Quantizer(8, 4, restart_after=3)
    keys = set(qz.state_dict())
    assert "idle" in keys and "counts" not in keys
    net = RobSurvNet(tuple(RobSurv.configs["smoke"]["crop"][::-1]), 5, RobSurv.configs["smoke"]).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(torch.rand(2, 2, 16, 16, 16))
    assert set(out) == {"surv"}  # no losses, no decoders at prediction
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert net.epoch_logs() == {"beta1": 0.5, "beta2": 0.5}  # nothing counted in eval mode


def test_the_loss_weights_are_the_papers():
    c = RobSurv.configs["paper"]
    assert (c["vq_weight"], c["fusion_weight"], c["surv_weight"]) == (1.0, 0.5, 2.0)  # γ1, γ2, γ3 (eq. 14)
    assert (c["commitment"], c["recon"], c["beta3"], c["codebook_size"]) == (0.25, 1.0, 0.5, 1024)
    assert (c["d_model"], c["d_k"], c["fuse_patch"], c["downsample"], c["crop"]) == (256, 64, 2, 4, [128] * 3)
    assert (c["train"]["lr"], c["train"]["batch_size"], c["train"]["optimizer"]) == (1e-4, 2, "adam")
    torch.manual_seed(0)
    net = RobSurvNet((16, 16, 16), 5, RobSurv.configs["smoke"]).train()
    out = net(torch.rand(2, 2, 16, 16, 16))
    logs, losses = out["logs"], out["losses"]
    losses, logs = {k: v.detach() for k, v in losses.items()}, {k: v.detach() for k, v in logs.items()}
    assert float(losses["fusion_loss"]) == pytest.approx(0.5 * float(logs["align_loss"] + logs["preserve_loss"]))
    assert float(losses["vq_loss"]) == pytest.approx(float(logs["quant_loss"] + logs["recon_loss"]))


def test_patches_and_cbam():
    z = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4, 4)
    p = _patches(z, 2)
    assert p.shape == (1, 8, 16)
    assert torch.equal(p[0, 0], torch.cat([z[0, c, :2, :2, :2].flatten() for c in range(2)]))
    assert torch.equal(p[0, 7], torch.cat([z[0, c, 2:, 2:, 2:].flatten() for c in range(2)]))
    assert torch.equal(p[0, 1], torch.cat([z[0, c, :2, :2, 2:].flatten() for c in range(2)]))  # x fastest
    assert torch.equal(p[0, 2], torch.cat([z[0, c, :2, 2:, :2].flatten() for c in range(2)]))
    x = torch.rand(2, 8, 3, 3, 3)
    assert CBAM(8, 4)(x).shape == x.shape


@pytest.mark.parametrize("variant, gone", [
    (RobSurvNoPatchFuse, "fuse.q."), (RobSurvNoContinuous, "resnets."), (RobSurvNoVQ, "quantizers."),
])
def test_each_ablation_switch_changes_the_model(variant, gone):
    c_full, c_abl = RobSurv.configs["smoke"], variant.configs["smoke"]
    crop = tuple(c_full["crop"][::-1])
    torch.manual_seed(0)
    full = RobSurvNet(crop, 5, c_full)
    torch.manual_seed(0)
    ablated = RobSurvNet(crop, 5, c_abl)
    names_full = {n for n, _ in full.named_parameters()}
    names_abl = {n for n, _ in ablated.named_parameters()}
    assert any(n.startswith(gone) for n in names_full) and not any(n.startswith(gone) for n in names_abl)
    assert sum(p.numel() for p in ablated.parameters()) < sum(p.numel() for p in full.parameters())
    # the same weights wherever the two share a parameter, so an output difference comes from the switch
    ablated.load_state_dict({k: v for k, v in full.state_dict().items()
                             if k in ablated.state_dict() and ablated.state_dict()[k].shape == v.shape}, strict=False)
    x = torch.rand(2, 2, *crop)
    full.eval(), ablated.eval()
    o_full, o_abl = full(x), ablated(x)
    assert o_full["surv"].shape == o_abl["surv"].shape
    assert not torch.allclose(o_full["surv"], o_abl["surv"])
    # and the switched-off part matters in the full model: perturbing it changes the output
    with torch.no_grad():
        for n, prm in full.named_parameters():
            if n.startswith(gone):
                prm.add_(torch.randn_like(prm))
    assert not torch.allclose(full(x)["surv"], o_full["surv"])
    full.train(), ablated.train()
    o_full, o_abl = full(x), ablated(x)
    assert set(o_full["losses"]) != set(o_abl["losses"]) or variant is RobSurvNoContinuous
    if variant is RobSurvNoVQ:
        assert "vq_loss" not in o_abl["losses"] and not any(k.startswith("codes_used") for k in ablated.epoch_logs())
    if variant is RobSurvNoPatchFuse:
        assert "fusion_loss" not in o_abl["losses"]


def test_bad_robsurv_configs_are_input_errors():
    from bench.config import resolve_config
    from bench.errors import BenchInputError

    for item, match in [("crop=[12,12,12]", "multiple of"), ('codebook="kmeans"', "loss or ema"),
                        ('head="cox"', "deephit"), ("vq_channels=[4,8]", "5 widths")]:
        with pytest.raises(BenchInputError, match=match):
            resolve_config("robsurv", RobSurv, "smoke", [item])


def test_the_design_card_command_runs_and_stores_codebook_health(tmp_path):
    """`bench run --protocol noisy50 --method robsurv` at smoke scale; `bench report` shows the per-epoch
    codebook use and the fusion weights."""
    from helpers import run_bench

    res = tmp_path / "results"
    done = run_bench("run", "--protocol", "noisy50", "--method", "robsurv", "--scale", "smoke", "--results", str(res))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "robsurv" in done.stdout
    rep = run_bench("report", "robsurv", "--protocol", "noisy50", "--results", str(res))
    assert rep.returncode == 0, rep.stderr[-3000:]
    for key in ("codes_used_ct", "perplexity_pet", "vq_loss", "fusion_loss", "beta1"):
        assert key in rep.stdout, key


def test_a_survival_only_method_reads_no_masks(synthetic_smoke, tmp_path):
    """RobSurv neither segments nor consumes masks: its samples carry none, so data without masks trains too."""
    from bench.method import RunContext

    m = RobSurv(RunContext(config=RobSurv.configs["smoke"], scale="smoke", cache_dir=tmp_path, progress=False))
    m.clinical_ = None
    cohort = synthetic_smoke.cohort(list(synthetic_smoke.ids)[:4], with_outcomes=True, name="t")
    for train in (True, False):
        sample = m._dataset(cohort, train=train)[0]
        assert "mask" not in sample and tuple(sample["image"].shape) == (2, 16, 16, 16)
