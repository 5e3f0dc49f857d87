"""Foundation-model variants: DAFT, the CT-FM / PET-FM encoders and their checkpoint layouts, pretraining,
the frozen-feature cache, and the DeepMTS + DAFT network reading the embeddings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.errors import BenchInputError
from proposed.fm import DAFT, FMCT, FMPET, DeepMTSDAFT, DeepMTSDAFTNet, FMCTPET
from proposed.fm_encoders import (
    ENCODERS, FM_VERSION, SPECS, PETFMEncoder, _Block, build_encoder, card, cohort_features, encoder_config,
    encoder_dim, encoder_input, file_hash, load_official, masked_decoder, masked_loss, pretrain, probe_r2,
    probe_verdict, reconstruction_target, resolve_weights, save_official,
)


# -- DAFT ------------------------------------------------------------------------------------------------------
def test_daft_starts_as_identity_with_the_bottleneck_of_the_description():
    torch.manual_seed(0)
    daft = DAFT(channels=40, n_tabular=9, reduction=7)
    assert daft.mlp[0].out_features == (40 + 9) // 7 and daft.mlp[2].out_features == 80
    f, tab = torch.randn(3, 40, 4, 4, 4), torch.randn(3, 9)
    torch.testing.assert_close(daft(f, tab), f)
    # after one step it conditions on the table: two patients with the same image map differ
    opt = torch.optim.SGD(daft.parameters(), lr=0.5)
    daft(f, tab).pow(2).mean().backward()
    opt.step()
    same = f[:1].expand(2, -1, -1, -1, -1)
    out = daft(same, torch.stack([tab[0], tab[1]]))
    assert not torch.allclose(out[0], out[1])


# -- checkpoints -----------------------------------------------------------------------------------------------
def _rand(enc):
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_()
    return enc


def test_ct_fm_official_layouts_load_and_reload(tmp_path):
    cfg = encoder_config("ct-fm", "smoke")
    enc = _rand(build_encoder("ct-fm", cfg))
    path = save_official(enc, tmp_path / "ct.pt")
    raw = torch.load(path, weights_only=True)
    assert "conv_init.weight" in raw and "layers.0.blocks.0.conv1.weight" in raw  # bare SegResEncoder keys
    x = torch.rand(2, 1, 16, 16, 16)
    loaded = load_official(build_encoder("ct-fm", cfg), path)
    torch.testing.assert_close(loaded.eval()(x), enc.eval()(x))
    # the legacy full-network file: encoder.-prefixed keys beside decoder keys, nested under state_dict
    legacy = {"state_dict": {**{f"encoder.{k}": v for k, v in raw.items()}, "up_layers.0.weight": torch.zeros(1)}}
    torch.save(legacy, tmp_path / "legacy.pt")
    torch.testing.assert_close(load_official(build_encoder("ct-fm", cfg), tmp_path / "legacy.pt").eval()(x),
                               enc.eval()(x))


def test_ct_fm_paper_architecture_has_the_published_shape():
    enc = build_encoder("ct-fm", encoder_config("ct-fm", "paper"))
    assert enc.dim == 512
    keys = enc.official_state_dict()
    assert tuple(keys["conv_init.weight"].shape) == (32, 1, 3, 3, 3)
    assert sum(k.endswith("conv1.weight") and k.startswith("layers.4.blocks.") for k in keys) == 4


def test_pet_fm_official_layout_loads_and_reloads(tmp_path):
    cfg = encoder_config("pet-fm", "smoke")
    enc = _rand(build_encoder("pet-fm", cfg))
    path = save_official(enc, tmp_path / "pet.pth")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model_state_dict"}
    assert "image_encoder.patch_embed.proj.weight" in raw["model_state_dict"]
    assert "image_encoder.blocks.0.attn.rel_pos_d" in raw["model_state_dict"]
    x = torch.rand(2, 1, 16, 16, 16)
    torch.testing.assert_close(load_official(build_encoder("pet-fm", cfg), path)(x), enc.eval()(x))
    # SAM-Med3D's whole model: prompt encoder and mask decoder keys are skipped; a bare dict loads too
    whole = {**raw["model_state_dict"], "mask_decoder.iou_token.weight": torch.zeros(1, 4)}
    torch.save({"model_state_dict": whole}, tmp_path / "whole.pth")
    load_official(build_encoder("pet-fm", cfg), tmp_path / "whole.pth")
    torch.save({k[len("image_encoder."):]: v for k, v in raw["model_state_dict"].items()}, tmp_path / "bare.pth")
    torch.testing.assert_close(load_official(build_encoder("pet-fm", cfg), tmp_path / "bare.pth")(x), enc.eval()(x))


def test_pet_fm_paper_architecture_has_sam_med3d_shapes():
    enc = build_encoder("pet-fm", encoder_config("pet-fm", "paper"))
    sd = enc.state_dict()
    assert enc.dim == 768 and tuple(sd["pos_embed"].shape) == (1, 8, 8, 8, 768)
    assert tuple(sd["patch_embed.proj.weight"].shape) == (768, 1, 16, 16, 16)
    assert tuple(sd["blocks.0.attn.rel_pos_d"].shape) == (27, 64)  # window 14: 2·14 − 1 offsets
    assert tuple(sd["blocks.2.attn.rel_pos_d"].shape) == (15, 64)  # global block: 2·8 − 1
    assert tuple(sd["neck.1.weight"].shape) == (384,) and len([k for k in sd if k.startswith("blocks.11.")]) > 0
    assert 85e6 < sum(v.numel() for v in sd.values()) < 100e6


def test_weights_that_are_missing_or_do_not_match_are_clear_errors(tmp_path):
    cfg = encoder_config("ct-fm", "smoke")
    with pytest.raises(BenchInputError, match="no file at"):
        load_official(build_encoder("ct-fm", cfg), tmp_path / "nope.pt", "ct-fm")
    save_official(build_encoder("ct-fm", cfg), tmp_path / "small.pt")
    with pytest.raises(BenchInputError, match=r"do not match the configured architecture.*another shape"):
        load_official(build_encoder("ct-fm", encoder_config("ct-fm", "quick")), tmp_path / "small.pt", "ct-fm")
    save_official(build_encoder("pet-fm", encoder_config("pet-fm", "smoke")), tmp_path / "pet.pt")
    with pytest.raises(BenchInputError, match="missing, e.g."):
        load_official(build_encoder("ct-fm", cfg), tmp_path / "pet.pt", "ct-fm")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(BenchInputError, match="not a readable PyTorch checkpoint"):
        load_official(build_encoder("ct-fm", cfg), tmp_path / "junk.pt", "ct-fm")
    # a path in the method config is checked before any training
    with pytest.raises(BenchInputError, match="no file at"):
        resolve_weights("ct-fm", "smoke", cfg | {"weights": str(tmp_path / "nope.pt")}, cache=tmp_path)


def test_each_encoder_is_described_by_one_spec():
    """Everything that differs between the encoders comes from its spec: config, network, width, pipeline box,
    input convention, reconstruction target."""
    assert list(SPECS) == list(ENCODERS) == ["ct-fm", "pet-fm"]
    for name, spec in SPECS.items():
        for scale in ("smoke", "quick", "paper"):
            cfg = encoder_config(name, scale)
            assert cfg == spec.configs[scale] and cfg is not spec.configs[scale]
            assert encoder_dim(name, cfg) == build_encoder(name, cfg).dim
    smoke = encoder_config("pet-fm", "smoke")
    assert SPECS["pet-fm"].pipeline(smoke).size == (16, 16, 16) and SPECS["pet-fm"].target(smoke) is None
    with pytest.raises(BenchInputError, match="unknown encoder 'mri-fm': choose one of ct-fm, pet-fm"):
        encoder_config("mri-fm", "smoke")
    with pytest.raises(BenchInputError, match="unknown encoder setting 'nope'"):
        encoder_config("ct-fm", "smoke", {"nope": 1})


def test_windowed_attention_is_global_attention_when_the_window_covers_the_grid():
    torch.manual_seed(0)
    glob = _Block(16, 2, 2.0, (3, 3, 3), window=0)
    win = _Block(16, 2, 2.0, (3, 3, 3), window=3)
    with torch.no_grad():
        for p in glob.parameters():
            p.normal_(0, 0.3)
    win.load_state_dict(glob.state_dict())
    x = torch.randn(2, 3, 3, 3, 16)
    torch.testing.assert_close(win(x), glob(x))
    # window 2 on a 4-grid: each 2³ cube attends only within itself
    win2 = _Block(16, 2, 2.0, (4, 4, 4), window=2)
    x = torch.randn(1, 4, 4, 4, 16)
    y = win2(x)
    x2 = x.clone()
    x2[:, 2:, 2:, 2:] += 1.0  # change one cube: the others' outputs are unchanged
    y2 = win2(x2)
    torch.testing.assert_close(y2[:, :2], y[:, :2])
    assert not torch.allclose(y2[:, 2:, 2:, 2:], y[:, 2:, 2:, 2:])


def test_pet_input_is_clipped_at_percentiles_and_scaled():
    pet = np.zeros((10, 10, 10), np.float32)
    pet[5, 5, 5] = 1000.0  # one hot voxel above the 99.5th percentile
    pet[:5] = 2.0
    x = encoder_input("pet-fm", {"pet": pet})
    assert x.shape == (1, 10, 10, 10) and x.min() == 0.0 and x.max() == 1.0
    assert x[0, 5, 5, 5] == 1.0 and x[0, 0, 0, 0] == 1.0  # 2.0 is the 99.5th percentile here


# -- the probe and pretraining ---------------------------------------------------------------------------------
def test_probe_verdict_asks_for_a_consistent_win_above_zero():
    rand = np.linspace(-0.02, 0.02, 10)
    assert probe_verdict(rand + 0.05, rand) == (10, True)
    assert probe_verdict(rand - 0.04, rand - 0.041) == (10, False)  # above the random encoder, but R² below 0
    assert probe_verdict(rand + 0.011, rand) == (10, False)  # a consistent edge, but R² 0.011: no usable signal
    above = rand + 0.2
    above[[0, 1]] = -0.05  # above it in 8 of 10 halvings only
    assert probe_verdict(above, rand) == (8, False)
    above[1] = 0.5
    assert probe_verdict(above, rand) == (9, True)


def test_probe_r2_separates_informative_from_noise_features():
    rng = np.random.default_rng(0)
    target = rng.normal(size=80)
    informative = np.c_[target + 0.1 * rng.normal(size=80), rng.normal(size=(80, 5))]
    assert probe_r2(informative, target) > 0.9
    assert probe_r2(rng.normal(size=(80, 6)), target) < 0.2


def test_pretraining_lowers_the_loss_caches_resumes_and_never_reads_the_benchmark_cohort(tmp_path, monkeypatch):
    cfg = encoder_config("pet-fm", "smoke")
    path = pretrain("pet-fm", "smoke", cfg, cache=tmp_path, progress=False)
    c = card(path)
    assert c["corpus"] == "synthetic:smoke:v3:1" and c["corpus_patients"] == 40
    assert c["loss_per_epoch"][-1] < c["loss_per_epoch"][0]
    assert c["weights_sha256"] == file_hash(path) and c["torch"] == torch.__version__ and c["threads"] >= 1
    assert set(c["probe"]["targets"]) == {"log_mtv", "eta", "necrosis"}
    assert set(c["probe"]["targets"]["eta"]) == {"description", "pretrained", "random_init", "wins", "beats_random"}
    assert all(isinstance(t["beats_random"], bool) for t in c["probe"]["targets"].values())
    load_official(build_encoder("pet-fm", cfg), path)  # written in the official layout
    mtime = path.stat().st_mtime_ns
    assert pretrain("pet-fm", "smoke", cfg, cache=tmp_path, progress=False) == path and path.stat().st_mtime_ns == mtime
    w, desc = resolve_weights("pet-fm", "smoke", cfg, cache=tmp_path, progress=False)
    assert w == path and "synthetic:smoke:v3:1" in desc and file_hash(path)[:12] in desc
    # pretraining repeats bit for bit (seeded masks, batches and flips per epoch; bytes independent of the file
    # name), so the sha256 a leaderboard row names can be reproduced; a killed pretraining resumes from the
    # trainer's checkpoint to the same weights
    from bench.nn.trainer import Trainer

    class Killed(Exception):
        pass

    def save_then_die(self, *a):
        save(self, *a)
        if a[-1]["epoch"] == 2:
            raise Killed

    save = Trainer._save
    monkeypatch.setattr(Trainer, "_save", save_then_die)
    with pytest.raises(Killed):
        pretrain("pet-fm", "smoke", cfg, cache=tmp_path / "again", progress=False)
    monkeypatch.setattr(Trainer, "_save", save)
    assert len(list((tmp_path / "again" / "fm").glob("*.checkpoint.pt"))) == 1
    again = pretrain("pet-fm", "smoke", cfg, cache=tmp_path / "again", progress=False)
    assert file_hash(again) == file_hash(path) and not list((tmp_path / "again" / "fm").glob("*.checkpoint.pt"))
    with pytest.raises(BenchInputError, match="corpus_seed = 0"):
        pretrain("pet-fm", "smoke", encoder_config("pet-fm", "smoke", {"pretrain": {"corpus_seed": 0}}), cache=tmp_path)


def test_features_are_cached_per_image_and_a_corrupted_image_gets_its_own(synthetic_smoke, tmp_path):
    from bench.corruptions import corrupted_files
    from bench.protocols import load_protocol

    cfg = encoder_config("ct-fm", "smoke")
    ids = list(synthetic_smoke.ids[:6])
    cohort = synthetic_smoke.cohort(ids, with_outcomes=False)
    a = cohort_features("ct-fm", cfg, None, cohort, cache=tmp_path, progress=False)
    assert a.shape == (6, 64) and np.isfinite(a).all()
    folder = next((tmp_path / "fm-features").glob("ct-fm-*"))
    assert len(list(folder.glob("*.npy"))) == 6
    np.testing.assert_array_equal(cohort_features("ct-fm", cfg, None, cohort, cache=tmp_path, progress=False), a)
    noise = load_protocol("noisy100").corruption
    replaced = corrupted_files(synthetic_smoke, noise, ids[:2], tmp_path / "noisy")
    noisy = synthetic_smoke.cohort(ids, with_outcomes=False, replace_images=replaced)
    b = cohort_features("ct-fm", cfg, None, noisy, cache=tmp_path, progress=False)
    assert len(list(folder.glob("*.npy"))) == 8
    np.testing.assert_array_equal(b[2:], a[2:])
    assert not np.allclose(b[:2], a[:2])


# -- the network and method ------------------------------------------------------------------------------------
def test_fm_columns_reach_the_survival_output():
    torch.manual_seed(0)
    cfg = DeepMTSDAFT.configs["smoke"] | {"width": 0.25}
    net = DeepMTSDAFTNet(cfg, n_clinical=5, fm_dims=[64, 16], proj=[8, 0]).eval()
    image = torch.rand(2, 2, 32, 32, 32)
    tab = torch.randn(2, 5 + 64 + 16)
    out = net(image, tab)
    assert out["surv"].shape == (2, 1) and out["seg"].shape == (2, 2, 32, 32, 32)
    for cols in (slice(5, 69), slice(69, 85)):
        moved = tab.clone()
        moved[:, cols] += 1.0
        assert not torch.allclose(net(image, moved)["surv"], out["surv"])
    assert net.survival_layer.in_features == net.daft.channels + 8 + 16


def test_fm_config_problems_are_named():
    problems = DeepMTSDAFT.check_network(DeepMTSDAFT.configs["smoke"] | {"fm": ["ct", "ct", "mri"]})
    assert any("list each of" in p for p in problems)
    assert any("empty ct_fm" in p and "use the fm-ct" in p for p in problems)  # the recipe must be hashed
    assert FMCT.version == f"{DeepMTSDAFT.version}+fm{FM_VERSION}" and FM_VERSION == "3"
    problems = FMCTPET.check_network(FMCTPET.configs["smoke"] | {"ct_fm": {"nope": 1}, "clinical": False})
    assert any("ct_fm: unknown setting" in p for p in problems) and any("clinical = false" in p for p in problems)
    assert FMCTPET.check_network(FMCTPET.configs["paper"]) == []
    assert json.dumps(ENCODERS)  # configs are plain data (hashed into cache keys)


def test_fm_ctpet_runs_from_the_command_line_and_its_row_names_the_weights(tmp_path):
    """Smoke run of the CT+PET variant: pretraining on first use, features, training, and the leaderboard row
    naming which encoder weights it read."""
    from helpers import run_bench

    res = tmp_path / "results"
    done = run_bench("run", "--method", "fm-ctpet", "--protocol", "clean", "--scale", "smoke", "--results", str(res))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "5 job(s) run" in done.stdout
    lb = run_bench("leaderboard", "--results", str(res), "--out", str(tmp_path / "lb"))
    assert lb.returncode == 0, lb.stderr[-2000:]
    cv = (tmp_path / "lb" / "synthetic-smoke-v3-0" / "cv.md").read_text()
    assert "ct-fm weights: pretrained by the harness on synthetic:smoke:v3:1" in cv
    assert "pet-fm weights: pretrained by the harness on synthetic:smoke:v3:1" in cv
    rep = run_bench("report", "fm-ctpet", "--protocol", "clean", "--results", str(res))
    assert rep.returncode == 0 and "inputs beyond the config" in rep.stdout and "sha256" in rep.stdout


def test_random_encoders_of_different_sizes_do_not_share_cached_features(synthetic_smoke, tmp_path):
    ids = list(synthetic_smoke.ids[:3])
    cohort = synthetic_smoke.cohort(ids, with_outcomes=False)
    small = cohort_features("ct-fm", encoder_config("ct-fm", "smoke"), None, cohort, cache=tmp_path, progress=False)
    wide = cohort_features("ct-fm", encoder_config("ct-fm", "smoke", {"init_filters": 8}), None, cohort,
                           cache=tmp_path, progress=False)
    assert small.shape == (3, 64) and wide.shape == (3, 128)


def test_ct_fm_reconstructs_the_soft_tissue_window_of_its_input():
    """CT-FM's input keeps the FM window (−1000…2000 HU → 0…1); its pretraining target re-windows the same
    voxels to −200…300 HU, where tumour (40 HU) and necrosis (15 HU) differ from muscle (45 HU)."""
    cfg = encoder_config("ct-fm", "quick")
    fn = reconstruction_target("ct-fm", cfg)
    hu = torch.tensor([-1000.0, -200.0, 15.0, 45.0, 300.0, 2000.0])
    x = (hu + 1000.0) / 3000.0
    torch.testing.assert_close(fn(x), torch.tensor([0.0, 0.0, 0.43, 0.49, 1.0, 1.0]))
    assert reconstruction_target("pet-fm", encoder_config("pet-fm", "quick")) is None
    no_window = cfg | {"pretrain": {k: v for k, v in cfg["pretrain"].items() if k != "target_window"}}
    assert reconstruction_target("ct-fm", no_window) is None
    for bad in ([300, -200], [0], "soft"):
        with pytest.raises(BenchInputError, match="target_window"):
            reconstruction_target("ct-fm", cfg | {"pretrain": cfg["pretrain"] | {"target_window": bad}})
    # the loss reads the target on the masked voxels only
    enc = build_encoder("ct-fm", encoder_config("ct-fm", "smoke")).eval()
    dec = masked_decoder(enc)
    xb = torch.rand(1, 1, 16, 16, 16)
    mask = torch.zeros_like(xb)
    mask[..., :8, :, :] = 1.0
    target = xb.clone()
    same = masked_loss(enc, dec, xb, mask, target)
    target[..., 8:, :, :] += 5.0  # unmasked voxels: no effect
    torch.testing.assert_close(masked_loss(enc, dec, xb, mask, target), same)
    target[..., :8, :, :] += 5.0
    assert masked_loss(enc, dec, xb, mask, target) > same + 1.0
    torch.testing.assert_close(masked_loss(enc, dec, xb, mask), masked_loss(enc, dec, xb, mask, xb))


def test_fm_variant_configs_carry_their_encoder_recipe(tmp_path):
    """The encoder's config is part of each FM variant's config: a changed encoder default is a new
    experiment (another config hash), and every encoder setting is reachable by --set."""
    from bench.config import config_hash, resolve_config

    for cls, mods in ((FMCT, ["ct"]), (FMPET, ["pet"]), (FMCTPET, ["ct", "pet"])):
        for scale in ("smoke", "quick", "paper"):
            cfg = cls.configs[scale]
            assert cfg["fm"] == mods
            for m in mods:
                name = {"ct": "ct-fm", "pet": "pet-fm"}[m]
                assert cfg[f"{m}_fm"] == encoder_config(name, scale)
    assert DeepMTSDAFT.configs["quick"]["ct_fm"] == {}  # the base row reads no encoder
    base = resolve_config("fm-ct", FMCT, "quick")
    path = str(tmp_path / "ct_fm.pt")
    cfg = resolve_config("fm-ct", FMCT, "quick", [f"ct_fm.weights={path}"])
    assert cfg["ct_fm"]["weights"] == path
    assert config_hash("fm-ct", FMCT, cfg) != config_hash("fm-ct", FMCT, base)
    window = resolve_config("fm-ct", FMCT, "quick", ["ct_fm.pretrain.target_window=[-160, 240]"])
    assert config_hash("fm-ct", FMCT, window) != config_hash("fm-ct", FMCT, base)


def test_a_missing_weights_path_given_by_set_is_a_clear_error(tmp_path):
    from helpers import run_bench

    done = run_bench("run", "--method", "fm-ct", "--scale", "smoke", "--set",
                     f"fm-ct:ct_fm.weights={tmp_path / 'ct_fm.pt'}", "--results", str(tmp_path / "res"))
    assert done.returncode == 2 and "ct-fm weights: no file at" in done.stderr and "Traceback" not in done.stderr
