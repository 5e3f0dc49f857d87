"""DeepMTS + DAFT and its foundation-model variants (seed ../shared/seeds/fm-hnscc.txt; Zhang et al.):
``deepmts-daft`` (the base), ``fm-ct``, ``fm-pet`` and ``fm-ctpet`` (+ frozen CT-FM / PET-FM embeddings).

Architecture (``bench.nn.ImageSurvivalMethod`` does data, training and outputs):
- **DeepMTS** as in ``baselines/deepmts.py``: a MONAI ``BasicUNet`` segments GTVp/GTVn from 2-channel PET/CT;
  the cascaded survival network (CSN, a MONAI ``DenseNet``'s feature layers) reads PET, CT and the two
  probability maps.
- **DAFT** (dynamic affine feature-map transform; written from its description, the original code is GPL):
  after the CSN's last dense block (+ its final BatchNorm and ReLU) and before global average pooling,
  (α, β) = MLP([GAP(F), clinical]) with MLP = Linear(C + n → (C + n) / ``daft_reduction`` (7)) → ReLU →
  Linear(→ 2C), and F'_c = α_c · F_c + β_c. Our choice: the last Linear starts at zero with bias (1, 0), so
  DAFT starts as the identity and learns away from it.
- **Foundation-model embeddings** (``fm`` = [] | ["ct"] | ["pet"] | ["ct", "pet"]): frozen encoders
  (``proposed.fm_encoders``) embed each patient once (cached per patient image, encoder weights and input
  pipeline); each embedding goes through its own learned Linear projection to ``proj[modality]`` features
  (paper best: CT 512, PET 128, CT+PET 256 each; 0 = no projection) and is concatenated with GAP(F')
  right before the survival layer (one Linear → the Cox log-hazard).
- loss ``seg_weight`` (1) × Dice + ``surv_weight`` (2) × Cox partial likelihood (L = L_dice + 2·L_cox);
  balanced batches; the clinical table through the train-fitted encoder.

Scales:
- ``paper``: 80 × 80 × 48 crop of a 96 × 96 × 64 box at 1 mm, width 1, batch 8, Adam 1e-3 with 5 warm-up
  epochs and × 0.3 every 25 epochs, 100 epochs, EMA 0.999, the best validation epoch kept (the paper selects
  by validation C-index and 1-year AUROC; here by Harrell's C on the validation split carved from training).
- ``quick`` (CPU): DeepMTS's quick setting (32³ crop of a 40³ box at 3 mm, width ½, Adam 3e-3, warm-up and
  cosine decay, 20 epochs × 24 steps, last epoch kept), EMA off (0.999 averages over ~1000 steps; quick has
  480).
- ``smoke``: 32³ at 6 mm, width ¼, 2 epochs × 2 steps.
Deviation at every scale: the paper centres every crop (test patients included) on the reference-mask
centroid; the harness centres on the PET hot region found from the images and never reads a test mask.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.nn import ImageSurvivalMethod, width
from proposed.fm_encoders.features import cohort_features
from proposed.fm_encoders.pretraining import resolve_weights
from proposed.fm_encoders.specs import FM_VERSION, SPECS, encoder_config, encoder_dim


class DAFT(nn.Module):
    """F' = α ⊙ F + β per channel, (α, β) from [GAP(F), tabular] through a bottleneck MLP; starts as identity."""

    def __init__(self, channels: int, n_tabular: int, reduction: int = 7):
        super().__init__()
        hidden = max(1, (channels + n_tabular) // int(reduction))
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels + n_tabular, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[2].weight)
        with torch.no_grad():
            self.mlp[2].bias.zero_()
            self.mlp[2].bias[:channels] = 1.0

    def forward(self, f: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        pooled = f.mean(dim=tuple(range(2, f.ndim)))
        scale, shift = self.mlp(torch.cat([pooled, tabular.to(pooled.dtype)], 1)).split(self.channels, 1)
        shape = (*scale.shape, *([1] * (f.ndim - 2)))
        return scale.reshape(shape) * f + shift.reshape(shape)


class DeepMTSDAFTNet(nn.Module):
    """DeepMTS with DAFT on the CSN's last features; FM embeddings (the tabular vector after the clinical
    columns, ``fm_dims`` wide each) projected and concatenated before the survival layer."""

    def __init__(self, c: dict, n_clinical: int, fm_dims: list[int], proj: list[int]):
        super().__init__()
        from monai.networks.nets import BasicUNet, DenseNet

        w = float(c["width"])
        f = width(c["unet"], w)
        self.seg = BasicUNet(spatial_dims=3, in_channels=2, out_channels=2, features=(*f, f[0]))
        g = width([c["growth"]], w)[0]
        dense = DenseNet(spatial_dims=3, in_channels=4, out_channels=1, init_features=2 * g, growth_rate=g,
                         block_config=tuple(c["blocks"]), bn_size=4)
        self.csn = dense.features
        channels = dense.class_layers.out.in_features
        self.n_clinical = n_clinical
        self.daft = DAFT(channels, n_clinical, c["daft_reduction"]) if n_clinical else None
        self.fm_dims = list(fm_dims)
        self.proj = nn.ModuleList(nn.Linear(d, p) if p else nn.Identity() for d, p in zip(fm_dims, proj))
        n_feat = channels + sum(p or d for d, p in zip(fm_dims, proj))
        self.survival_layer = nn.Linear(n_feat, 1)

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        seg = self.seg(image)
        x = torch.relu(self.csn(torch.cat([image, torch.sigmoid(seg)], 1)))
        if self.daft is not None:
            x = self.daft(x, clinical[:, : self.n_clinical])
        feats, at = [x.mean((2, 3, 4))], self.n_clinical
        for d, proj in zip(self.fm_dims, self.proj):
            feats.append(proj(clinical[:, at: at + d].to(x.dtype)))
            at += d
        return {"surv": self.survival_layer(torch.cat(feats, 1)), "seg": seg}


_TRAIN = {"epochs": 20, "batch_size": 8, "steps_per_epoch": 24, "lr": 3e-3, "weight_decay": 0.0,
          "optimizer": "adam", "schedule": "cosine", "warmup_epochs": 1, "step_every": 10, "grad_clip": 5.0,
          "ema": 0.0, "patience": 0, "keep": "last", "balanced": True, "amp": "auto", "workers": 0}
_PAPER = _TRAIN | {"epochs": 100, "steps_per_epoch": 0, "lr": 1e-3, "warmup_epochs": 5, "schedule": "multistep",
                   "milestones": [25, 50, 75], "factors": [0.3, 0.09, 0.027], "ema": 0.999, "keep": "best"}
_BASE = {"head": "cox", "clinical": True, "seg_loss": "dice", "seg_weight": 1.0, "surv_weight": 2.0,
         "augment": True, "flips": True, "growth": 16, "blocks": [4, 8, 16], "unet": [8, 16, 32, 64, 128],
         "daft_reduction": 7, "fm": [], "proj": {"ct": 512, "pet": 128}, "ct_fm": {}, "pet_fm": {}}
_ENCODER = {"ct": "ct-fm", "pet": "pet-fm"}


class DeepMTSDAFT(ImageSurvivalMethod):
    """DeepMTS + DAFT on the clinical table (the FM paper's baseline); see the module docstring."""

    consumes = ("ct", "pet", "mask", "clinical")
    produces = ("risk", "survival", "segmentation")
    version = "1"
    configs = {
        "smoke": _BASE | {"spacing_mm": 6.0, "box": [36, 36, 36], "crop": [32, 32, 32], "width": 0.25,
                          "train": _TRAIN | {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4}},
        "quick": _BASE | {"spacing_mm": 3.0, "box": [40, 40, 40], "crop": [32, 32, 32], "width": 0.5,
                          "train": dict(_TRAIN)},
        "paper": _BASE | {"spacing_mm": 1.0, "box": [96, 96, 64], "crop": [80, 80, 48], "width": 1.0,
                          "train": dict(_PAPER)},
    }

    @classmethod
    def check_network(cls, config: dict) -> list[str]:
        out = []
        if any(int(c) % 16 for c in config["crop"]):
            out.append(f"crop {config['crop']}: the U-Net downsamples 4 times, so every size must be a multiple of 16")
        unknown = [m for m in config["fm"] if m not in _ENCODER]
        if unknown or len(set(config["fm"])) != len(config["fm"]):
            out.append(f"fm = {config['fm']}: list each of {', '.join(_ENCODER)} at most once")
        for m in config["fm"]:
            if m in _ENCODER and int(config["proj"].get(m, 0)) < 0:
                out.append(f"proj.{m} = {config['proj'][m]} must be >= 0 (0 = no projection)")
            if m in _ENCODER and not config[f"{m}_fm"]:
                out.append(f"fm = {config['fm']} with an empty {m}_fm: the {_ENCODER[m]} recipe would not be part "
                           f"of this config's hash (rows trained on other features would be resumed); use the "
                           f"fm-ct, fm-pet or fm-ctpet method, which carries it")
        for key, name in (("ct_fm", "ct-fm"), ("pet_fm", "pet-fm")):
            known = SPECS[name].configs["quick"]
            extra = sorted(set(config[key]) - set(known))
            if extra:
                out.append(f"{key}: unknown setting(s) {extra} (known: {', '.join(sorted(known))})")
        if not config["clinical"]:
            out.append("clinical = false: DAFT conditions on the clinical table (use deepmts for images only)")
        return out

    # -- foundation-model inputs -------------------------------------------------------------------------------
    def _encoder_cfg(self, modality: str) -> dict:
        return encoder_config(_ENCODER[modality], self.ctx.scale, self.config[f"{modality}_fm"])

    def n_extra_inputs(self) -> int:
        return sum(encoder_dim(_ENCODER[m], self._encoder_cfg(m)) for m in self.config["fm"])

    def fm_weights(self) -> dict[str, tuple]:
        """Per modality: (weights file or None, description); pretrained on first use (cached)."""
        from bench.data import cache_dir

        if getattr(self, "fm_weights_", None) is None:
            self.fm_weights_ = {}
            for m in self.config["fm"]:
                path, desc = resolve_weights(_ENCODER[m], self.ctx.scale, self._encoder_cfg(m), cache=cache_dir(),
                                             device=self.ctx.device, progress=self.ctx.progress)
                self.fm_weights_[m] = (path, desc)
                self.ctx.logger.info("%s", desc)
        return self.fm_weights_

    def provenance(self) -> dict[str, str]:
        return {f"{_ENCODER[m]} weights": desc.removeprefix(f"{_ENCODER[m]}: ")
                for m, (_, desc) in self.fm_weights().items()}

    def warm_cache(self, cohort) -> None:
        """The image pipeline, then the encoders' weights (pretrained once, when missing) and the cohort's
        frozen embeddings."""
        super().warm_cache(cohort)
        self.extra_inputs(cohort)

    def extra_inputs(self, cohort):
        from bench.data import cache_dir

        if not self.config["fm"]:
            return None
        return np.hstack([cohort_features(_ENCODER[m], self._encoder_cfg(m), self.fm_weights()[m][0], cohort,
                                          cache=cache_dir(), device=self.ctx.device, progress=self.ctx.progress)
                          for m in self.config["fm"]])

    def build_network(self, n_clinical: int) -> nn.Module:
        c = self.config
        dims = [encoder_dim(_ENCODER[m], self._encoder_cfg(m)) for m in c["fm"]]
        return DeepMTSDAFTNet(c, n_clinical - sum(dims), dims, [int(c["proj"].get(m, 0)) for m in c["fm"]])


def _with_encoders(modalities: list[str]) -> dict[str, dict]:
    """DeepMTS-DAFT's configs with ``fm`` = ``modalities`` and each encoder's full config of that scale
    written out under ``<modality>_fm``: the encoder recipe (architecture, input convention, pretraining) is
    part of the method's config hash, so a changed default starts a new experiment instead of resuming an old
    one, and every setting is reachable by ``--set`` (e.g. ``fm-ct:ct_fm.weights=/path/ct_fm.pt``)."""
    return {s: cfg | {"fm": list(modalities)} | {f"{m}_fm": encoder_config(_ENCODER[m], s) for m in modalities}
            for s, cfg in DeepMTSDAFT.configs.items()}


class _FMVariant(DeepMTSDAFT):
    """The FM variants' shared identity: a change in pretraining or extraction (``FM_VERSION``) is a new
    experiment."""

    version = f"{DeepMTSDAFT.version}+fm{FM_VERSION}"
    family = "foundation"


class FMCT(_FMVariant):
    """DeepMTS + DAFT + frozen CT-FM embedding, projected to 512 (the paper's best CT setting)."""

    configs = {s: cfg | {"proj": {"ct": 512}} for s, cfg in _with_encoders(["ct"]).items()}


class FMPET(_FMVariant):
    """DeepMTS + DAFT + frozen PET-FM embedding, projected to 128 (the paper's best PET setting)."""

    configs = {s: cfg | {"proj": {"pet": 128}} for s, cfg in _with_encoders(["pet"]).items()}


class FMCTPET(_FMVariant):
    """DeepMTS + DAFT + both embeddings, each projected to 256 (the paper's best CT+PET setting)."""

    configs = {s: cfg | {"proj": {"ct": 256, "pet": 256}} for s, cfg in _with_encoders(["ct", "pet"]).items()}
