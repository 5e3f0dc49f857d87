"""AdaMSS (seed ../shared/seeds/adamss.txt; Meng et al.): adaptive multi-modality segmentation-to-survival
learning from PET/CT — an adaptive-fusion encoder with fusion gates at five scales, an attention-gated decoder,
segmentation first (stage I), then survival (stage II).

Architecture (``bench.nn.ImageSurvivalMethod`` does data, training and outputs):
- **Ada-fusion encoder**: three branches of residual blocks (MONAI ``ResidualUnit``, ``block_convs`` 3×3×3
  convs with BatchNorm and ReLU and a residual connection) with 2× max pooling between blocks: B_PET and B_CT
  (1 channel in, ``enc_channels`` 8→16→32→64→128) and B_Fuse (PET/CT in, ``fuse_channels`` 16→…→256).
  After B_Fuse's block i, a fusion gate: F_pc = 3×3×3 conv (+ BN, ReLU) of [F_pet, F_ct], then [F_pc, F_fuse]
  → 1×1×1 conv to two maps, zero-initialised so the softmax starts at w_pc = w_fuse = 0.5 everywhere →
  w_pc·F_pc + w_fuse·F_fuse, which feeds B_Fuse's next block and the decoder's skip.
- **Ada-focus decoder**: four up-stages (transposed conv ×2); the skip passes a MONAI ``AttentionBlock`` gated
  by the upsampled features, is concatenated with them and goes through a residual block (128, 64, 32, 16
  channels at width 1); the last feeds the segmentation head (1×1×1 conv, two sigmoid channels: GTVp, GTVn).
- **Survival head**: global average pooling of the four decoder outputs (240 features at width 1; + the
  train-fitted clinical encoding when ``clinical``) → Dropout 0.5 → Linear 128 → ReLU → Dropout 0.5 → Linear
  ``n_bins`` (the last layer is ``survival_layer``; L2 ``surv_l2`` = 0.1 on it). Discrete-time NLL
  (nnet-survival, ``bench.nn.losses.DiscreteHead("hazard")``) on the paper's 10 intervals, ``edges`` [0, 300,
  600, 900, 1100, 1300, 1500, 2100, 2700, 3500, 6000] days. Prediction: the expected survival time over the
  intervals (risk = its negative) and the survival curve.
- **Segmentation-to-survival learning**: stage I (``stage1``) trains segmentation only (MONAI Dice + Focal,
  α 0.25, γ 2), keeping the epoch with the best validation Dice; stage II (``stage2``) starts from it and
  trains survival only, keeping the epoch with the best validation C-index. Balanced event/censored batches
  in both stages. The segmentation reported (and scored with Dice) is the stage-I network's, as in the paper
  (whose radiomics come from the stage-I masks).
- **Clinical and radiomics inputs** (config switches, both off by default as in the paper's ablations; its
  best number uses both): ``clinical`` appends the train-fitted clinical encoding to the pooled features;
  ``radiomics`` appends ``radiomics_k`` PyRadiomics features of the stage-I network's contours. After stage I,
  that network segments every training patient; the contours are written as NIfTI on each patient's CT grid
  (cached per network weights and image) and ``baselines.tabular.FeatureInputs`` extracts the
  ``radiomics_features`` classes from CT and PET inside GTVp, GTVn and their union, normal-scores them, drops
  redundant ones (correlation of the normal scores — rank-based, like the paper's Spearman — above
  ``radiomics_corr_max`` 0.7) and keeps the ``radiomics_k`` (10) most relevant by univariate C-index, all on
  the training patients. Deviations: the paper's pool of 1,456 features includes wavelet-filtered images;
  ours are computed on the original images only (the classes named per scale). The paper selects by LASSO, which gives a variable count; the network is
  built before stage I, so the count is fixed here (zeros pad when fewer survive the filter). Validation and
  test patients get their features from their own stage-I contours, never from a reference mask. During
  stage I (survival head untrained) zeros stand in.
- **Fusion-gate weights**: the mean w_fuse of each of the five gates over every training epoch is stored in
  the run's history (``gate{i}_fuse``; w_pc = 1 − w_fuse), for stage I under ``segmentation_``; ``bench
  report`` shows where each started (0.5) and ended.

Choices the seed leaves open (config fields): ``block_convs`` (2), the F_pc conv's norm and activation
(BN + ReLU), the attention gate's inner width (half the skip's channels), transposed-conv upsampling, ReLU
between the survival layers, the L2 on the last survival layer only.

Scales:
- ``paper``: 112³ random crops of a 160³ box at 1 mm, width 1, batch 2 (one event, one censored), Adam;
  stage I 50 epochs × 200 steps at 1e-4, × 0.5 from step 4 000 and × 0.1 from step 8 000; stage II 50 × 200
  at 5e-5, × 0.2 and × 0.02 at the same steps; validation every 200 steps, best epoch kept.
- ``quick`` (CPU): 32³ crop of a 40³ box at 3 mm, width ½, batch 8 balanced; stage I 10 × 24 steps, Adam 3e-3
  with warm-up and cosine decay, last epoch kept; stage II 10 × 24 steps, Adam 1e-3 cosine, last epoch kept.
- ``smoke``: 16³ at 6 mm, width 1/8, 2 × 2 steps per stage.
Deviation at every scale: the crop is centred on the PET hot region found from the images, never on a mask.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from baselines.tabular import RADIOMICS_PAPER, RADIOMICS_QUICK, RADIOMICS_SMOKE
from bench.nn import ImageSurvivalMethod, width

EDGES = [0, 300, 600, 900, 1100, 1300, 1500, 2100, 2700, 3500, 6000]


def _block(cin: int, cout: int, n: int) -> nn.Module:
    from monai.networks.blocks import ResidualUnit

    return ResidualUnit(3, cin, cout, strides=1, subunits=n, norm="batch", act="relu")


class FusionGate(nn.Module):
    """w_pc·F_pc + w_fuse·F_fuse with F_pc a 3×3×3 conv of [F_pet, F_ct] and (w_pc, w_fuse) a softmax of two
    1×1×1 conv maps of [F_pc, F_fuse], zero-initialised (0.5 / 0.5 at the start)."""

    def __init__(self, c_pet: int, c_ct: int, c_fuse: int):
        super().__init__()
        from monai.networks.blocks import Convolution

        self.pc = Convolution(3, c_pet + c_ct, c_fuse, kernel_size=3, norm="batch", act="relu")
        self.weights = nn.Conv3d(2 * c_fuse, 2, 1)
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        self.register_buffer("fuse_sum", torch.zeros(()), persistent=False)
        self.register_buffer("fuse_n", torch.zeros(()), persistent=False)

    def forward(self, f_pet, f_ct, f_fuse):
        f_pc = self.pc(torch.cat([f_pet, f_ct], 1))
        w = torch.softmax(self.weights(torch.cat([f_pc, f_fuse], 1)).float(), 1).to(f_pc.dtype)
        if self.training:
            with torch.no_grad():
                self.fuse_sum += w[:, 1].float().mean()
                self.fuse_n += 1
        return w[:, :1] * f_pc + w[:, 1:] * f_fuse

    def epoch_mean(self) -> float | None:
        """Mean w_fuse over the training batches since the last call (then reset)."""
        if float(self.fuse_n) == 0:
            return None
        m = float(self.fuse_sum / self.fuse_n)
        self.fuse_sum.zero_()
        self.fuse_n.zero_()
        return m


class AdaMSSNet(nn.Module):
    def __init__(self, n_clinical: int, n_out: int, c: dict):
        super().__init__()
        from monai.networks.blocks import Convolution
        from monai.networks.nets.attentionunet import AttentionBlock

        w, n = float(c["width"]), int(c["block_convs"])
        enc = width(c["enc_channels"], w, 2)
        fus = width(c["fuse_channels"], w, 2)
        self.pool = nn.MaxPool3d(2)
        self.pet = nn.ModuleList(_block(1 if i == 0 else enc[i - 1], enc[i], n) for i in range(5))
        self.ct = nn.ModuleList(_block(1 if i == 0 else enc[i - 1], enc[i], n) for i in range(5))
        self.fuse = nn.ModuleList(_block(2 if i == 0 else fus[i - 1], fus[i], n) for i in range(5))
        self.gates = nn.ModuleList(FusionGate(enc[i], enc[i], fus[i]) for i in range(5))
        # decoder: stage i (3 … 0) upsamples to scale i, gates skip i, and outputs fus[i] channels
        self.ups = nn.ModuleList(Convolution(3, fus[i + 1], fus[i], strides=2, kernel_size=3, is_transposed=True,
                                             norm="batch", act="relu") for i in range(3, -1, -1))
        self.attn = nn.ModuleList(AttentionBlock(3, max(1, fus[i] // 2), fus[i], fus[i]) for i in range(3, -1, -1))
        self.dec = nn.ModuleList(_block(2 * fus[i], fus[i], n) for i in range(3, -1, -1))
        self.seg = nn.Conv3d(fus[0], 2, 1)
        n_feat = sum(fus[:4]) + n_clinical
        hidden = int(c["surv_hidden"])
        self.survival_layer = nn.Linear(hidden, n_out)
        self.surv = nn.Sequential(nn.Dropout(float(c["surv_dropout"])), nn.Linear(n_feat, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(float(c["surv_dropout"])), self.survival_layer)
        self.n_clinical = n_clinical

    def forward(self, image: torch.Tensor, clinical: torch.Tensor | None = None) -> dict:
        ct, pet = image[:, :1], image[:, 1:2]  # the pipeline's channel order: CT, PET
        skips, f_fuse = [], image
        for i in range(5):
            if i:
                pet, ct, f_fuse = self.pool(pet), self.pool(ct), self.pool(f_fuse)
            pet, ct = self.pet[i](pet), self.ct[i](ct)
            f_fuse = self.gates[i](pet, ct, self.fuse[i](f_fuse))
            skips.append(f_fuse)
        d, pooled = skips[4], []
        for up, attn, dec, skip in zip(self.ups, self.attn, self.dec, reversed(skips[:4])):
            d = up(d)
            d = dec(torch.cat([d, attn(d, skip)], 1))
            pooled.append(d.mean((2, 3, 4)))
        if self.n_clinical and clinical is None:  # segmentation alone (AdaMSS's contours) reads no tabular input
            clinical = d.new_zeros(d.shape[0], self.n_clinical)
        feats = torch.cat(pooled + ([clinical.to(d.dtype)] if self.n_clinical else []), 1)
        return {"surv": self.surv(feats), "seg": self.seg(d)}

    def epoch_logs(self) -> dict[str, float]:
        out = {}
        for i, g in enumerate(self.gates, 1):
            m = g.epoch_mean()
            if m is not None:
                out[f"gate{i}_fuse"] = m
        return out


_STAGE1 = {"epochs": 10, "batch_size": 8, "steps_per_epoch": 24, "lr": 3e-3, "weight_decay": 0.0,
           "optimizer": "adam", "schedule": "cosine", "warmup_epochs": 1, "grad_clip": 5.0, "ema": 0.0,
           "patience": 0, "keep": "last", "balanced": True, "amp": "auto", "workers": 0}
_STAGE2 = _STAGE1 | {"lr": 1e-3}
_PAPER1 = _STAGE1 | {"epochs": 50, "batch_size": 2, "steps_per_epoch": 200, "lr": 1e-4, "schedule": "multistep",
                     "milestones": [20, 40], "factors": [0.5, 0.1], "warmup_epochs": 0, "grad_clip": 0.0,
                     "keep": "best"}
_PAPER2 = _PAPER1 | {"lr": 5e-5, "factors": [0.2, 0.02]}
_BASE = {"head": "discrete", "edges": EDGES, "clinical": False, "radiomics": False, "radiomics_k": 10,
         "radiomics_corr_max": 0.7, "radiomics_features": RADIOMICS_QUICK, "seg_loss": "dicefocal", "surv_l2": 0.1,
         "augment": True, "flips": True, "block_convs": 2, "enc_channels": [8, 16, 32, 64, 128],
         "fuse_channels": [16, 32, 64, 128, 256], "surv_hidden": 128, "surv_dropout": 0.5}


class AdaMSS(ImageSurvivalMethod):
    consumes = ("ct", "pet", "mask")
    produces = ("risk", "survival", "segmentation")
    version = "1"
    configs = {
        "smoke": _BASE | {"spacing_mm": 6.0, "box": [20, 20, 20], "crop": [16, 16, 16], "width": 0.125,
                          "surv_hidden": 16, "radiomics_features": RADIOMICS_SMOKE, "radiomics_k": 4,
                          "stage1": _STAGE1 | {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4},
                          "stage2": _STAGE2 | {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4}},
        "quick": _BASE | {"spacing_mm": 3.0, "box": [40, 40, 40], "crop": [32, 32, 32], "width": 0.5,
                          "stage1": dict(_STAGE1), "stage2": dict(_STAGE2)},
        "paper": _BASE | {"spacing_mm": 1.0, "box": [160, 160, 160], "crop": [112, 112, 112], "width": 1.0,
                          "radiomics_features": RADIOMICS_PAPER,
                          "stage1": dict(_PAPER1), "stage2": dict(_PAPER2)},
    }

    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        # the base class checks one ``train`` table; AdaMSS has one per stage
        problems = []
        for stage in ("stage1", "stage2"):
            problems += [p.replace("train.", f"{stage}.") for p in super().check_config(config | {"train": config[stage]})
                         if p.startswith("train") or "train config" in p]
        return problems + [p for p in super().check_config(config | {"train": config["stage1"]})
                           if not (p.startswith("train") or "train config" in p)]

    @classmethod
    def check_network(cls, config: dict) -> list[str]:
        out = []
        if any(int(s) % 16 for s in config["crop"]):
            out.append(f"crop {config['crop']} must be a multiple of 16 on every axis (four 2× poolings)")
        if len(config["enc_channels"]) != 5 or len(config["fuse_channels"]) != 5:
            out.append("enc_channels and fuse_channels must list 5 widths (one per scale)")
        if config["head"] != "discrete":
            out.append(f"head = {config['head']!r}: AdaMSS's survival loss is the discrete-time NLL (head = discrete)")
        if config["radiomics"]:
            from baselines.tabular import feature_config_problems

            out += [f"radiomics: {p}" for p in feature_config_problems(
                {"radiomics": config["radiomics_features"], "corr_max": config["radiomics_corr_max"],
                 "select_k": config["radiomics_k"]})]
            if int(config["radiomics_k"]) < 1:
                out.append(f"radiomics_k = {config['radiomics_k']} must be >= 1 when radiomics is on")
        if int(config["stage1"]["batch_size"]) < 2 or int(config["stage2"]["batch_size"]) < 2:
            out.append("batch_size must be >= 2 in both stages (BatchNorm)")
        return out

    def stages(self) -> list[dict]:
        c = self.config
        return [{"name": "segmentation", "train": c["stage1"], "surv_weight": 0.0, "seg_weight": 1.0,
                 "score": "dice"},
                {"name": "survival", "train": c["stage2"], "surv_weight": 1.0, "seg_weight": 0.0, "score": "cindex"}]

    def after_stage(self, name: str, net, train) -> None:
        if name == "segmentation":
            self.seg_net_ = net
            if self.config["radiomics"]:
                self._fit_radiomics(train)

    def segmentation_labels(self, data, labels):
        return self._stage1_labels(data)  # the segmentation is the stage-I network's, as in the paper

    def _stage1_labels(self, data):
        """The stage-I network's label maps (crop grid) for ``data``."""
        try:
            _, segs = self._outputs(self.seg_net_.to(self.ctx.device), data)
        finally:  # the store pickles the fitted model: keep it on the CPU
            self.seg_net_ = self.seg_net_.cpu()
        return segs

    def build_network(self, n_clinical: int) -> nn.Module:
        return AdaMSSNet(n_clinical, self.head_.n_outputs, self.config)

    # -- radiomics of the stage-I contours ------------------------------------------------------------------
    def n_extra_inputs(self) -> int:
        return int(self.config["radiomics_k"]) if self.config["radiomics"] else 0

    def _fit_radiomics(self, train) -> None:
        from baselines.tabular import FeatureInputs

        c = self.config
        self.radiomics_ = FeatureInputs({"radiomics": c["radiomics_features"], "corr_max": c["radiomics_corr_max"],
                                         "select_k": int(c["radiomics_k"]), "clinical": False},
                                        logger=self.ctx.logger, progress=self.ctx.progress)
        self.radiomics_.fit(self._predicted_contours(train))
        self.ctx.logger.info("adamss: radiomics of the stage-I contours, %d feature(s) kept: %s",
                             len(self.radiomics_.radiomics_columns_), ", ".join(self.radiomics_.radiomics_columns_))

    def extra_inputs(self, cohort):
        if getattr(self, "radiomics_", None) is None:
            return None  # stage I: the survival head is not trained yet, zeros stand in
        x = self.radiomics_.transform(self._predicted_contours(cohort))
        k = self.n_extra_inputs()
        return np.hstack([x, np.zeros((len(x), k - x.shape[1]))]) if x.shape[1] < k else x

    def _predicted_contours(self, cohort):
        """``cohort`` with the stage-I network's GTVp/GTVn contours as its masks, written as NIfTI on each
        patient's CT grid under ``<cache>/adamss-contours/<network hash>/`` (keyed by the pipeline entry, so
        a corrupted image gets its own contour)."""
        import hashlib

        from bench.data.pipeline import save_label

        state = self.seg_net_.state_dict()
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode())
            h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
        folder = self.ctx.cache_dir / "adamss-contours" / h.hexdigest()[:20]
        data = self._dataset(cohort, train=False, tabular=False)
        paths = {pid: folder / f"{data.paths[pid].stem}.nii.gz" for pid in data.ids}
        todo = [pid for pid in data.ids if not paths[pid].is_file()]
        if todo:
            sub = cohort.subset(todo)
            sub_data = self._dataset(sub, train=False, tabular=False)
            files = sub.image_files
            for pid, seg in self._to_native(sub, sub_data, self._stage1_labels(sub_data)).items():
                save_label(seg, files[pid].ct, paths[pid])
        return cohort.with_masks(paths)
