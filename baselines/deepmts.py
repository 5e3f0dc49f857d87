"""DeepMTS (Meng et al., 2022): deep multi-task survival — a segmentation U-Net cascaded into a DenseNet that
predicts a Cox risk, trained jointly with Dice + Cox partial likelihood.

Architecture (``bench.nn.ImageSurvivalMethod`` does data, training and outputs):
- segmentation: an early-fusion 3D U-Net on 2-channel PET/CT, MONAI ``BasicUNet`` with channels
  8, 16, 32, 64, 128 (× ``width``), two sigmoid outputs (GTVp, GTVn);
- survival: a 3D DenseNet (MONAI ``DenseNet``, dense blocks 4/8/16, growth 16 × ``width``, initial features
  2 × growth) on CT, PET and the U-Net's two probability maps (4 channels, gradients flow back into the
  U-Net: the cascade is trained end to end), global pooling, one output = the log-hazard;
- loss ``seg_weight`` × Dice (MONAI, GTVp + GTVn) + ``surv_weight`` × Cox partial likelihood (Breslow ties);
  batches balanced between events and censored patients; Adam; early stopping on the validation split's
  Harrell C; survival curves from a Breslow baseline on the training patients' outputs.

Scales (every deviation from the paper is here):
- ``paper``: the published sizes — 128³ input (crop of a 144³ box at 1 mm), width 1, batch 8 balanced, Adam
  1e-4 constant. The spec gives no epoch count: 100 epochs, keeping the best validation epoch, patience 20,
  are our choice.
- ``quick`` (CPU): 32³ crop of a 40³ box at 3 mm (a 96 mm field around the PET hot region), width ½, batch
  8 balanced, Adam 3e-3 with one warm-up epoch and a cosine decay, 20 epochs × 24 steps, the last epoch's
  weights kept. The higher rate is needed with so few steps: at 1e-3 the U-Net segments far worse after the
  same number of steps (checked on training patients only, folds untouched).
- ``smoke``: 32³ crop at 6 mm (MONAI BasicUNet needs 32 to keep 2³ at its bottom), width ¼, 2 epochs × 2 steps (seconds; tests only).
Deviations at every scale: the crop is centred on the PET hot region found from the images (the harness
never uses reference masks at test time); the paper's DenseNet also received U-Net decoder features — here
it sees the images and the predicted masks, as the survbench spec describes.
The measurements behind the quick choices: docs/method-notes.md.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.nn import ImageSurvivalMethod, width

_TRAIN = {"epochs": 20, "batch_size": 8, "steps_per_epoch": 24, "lr": 3e-3, "weight_decay": 0.0,
          "optimizer": "adam", "schedule": "cosine", "warmup_epochs": 1, "step_every": 10, "grad_clip": 5.0,
          "ema": 0.0, "patience": 0, "keep": "last", "balanced": True, "amp": "auto", "workers": 0}
_BASE = {"head": "cox", "clinical": False, "seg_loss": "dice", "seg_weight": 1.0, "surv_weight": 1.0,
         "augment": True, "flips": True, "growth": 16, "blocks": [4, 8, 16], "unet": [8, 16, 32, 64, 128]}


class DeepMTSNet(nn.Module):
    def __init__(self, unet: list[int], growth: int, blocks: list[int], w: float):
        super().__init__()
        from monai.networks.nets import BasicUNet, DenseNet

        f = width(unet, w)
        self.seg = BasicUNet(spatial_dims=3, in_channels=2, out_channels=2, features=(*f, f[0]))
        g = width([growth], w)[0]
        self.surv = DenseNet(spatial_dims=3, in_channels=4, out_channels=1, init_features=2 * g, growth_rate=g,
                             block_config=tuple(blocks), bn_size=4)

    def forward(self, image: torch.Tensor, clinical=None) -> dict[str, torch.Tensor]:
        seg = self.seg(image)
        risk = self.surv(torch.cat([image, torch.sigmoid(seg)], dim=1))
        return {"surv": risk, "seg": seg}


class DeepMTS(ImageSurvivalMethod):
    consumes = ("ct", "pet", "mask")
    produces = ("risk", "survival", "segmentation")
    version = "2"  # history: CHANGELOG.md
    configs = {
        "smoke": _BASE | {"spacing_mm": 6.0, "box": [36, 36, 36], "crop": [32, 32, 32], "width": 0.25,
                          "train": _TRAIN | {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "patience": 0}},
        "quick": _BASE | {"spacing_mm": 3.0, "box": [40, 40, 40], "crop": [32, 32, 32], "width": 0.5,
                          "train": dict(_TRAIN)},
        "paper": _BASE | {"spacing_mm": 1.0, "box": [144, 144, 144], "crop": [128, 128, 128], "width": 1.0,
                          "train": _TRAIN | {"epochs": 100, "steps_per_epoch": 0, "lr": 1e-4, "schedule": "constant",
                                             "warmup_epochs": 0, "patience": 20, "keep": "best"}},
    }

    @classmethod
    def check_network(cls, config: dict) -> list[str]:
        if any(int(c) % 16 for c in config["crop"]):
            return [f"crop {config['crop']}: the U-Net downsamples 4 times, so every size must be a multiple of 16"]
        return []

    def build_network(self, n_clinical: int) -> nn.Module:
        c = self.config
        return DeepMTSNet(c["unet"], c["growth"], c["blocks"], c["width"])
