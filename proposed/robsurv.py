"""RobSurv (seed ../shared/seeds/robsurv.txt): robust multi-modal survival prediction with dual vector
quantisation (DualVQ), patch-wise CT↔PET cross-attention (DualPatchFuse), a continuous ResNet + CBAM path and a
DeepHit-style hybrid survival loss.

Architecture (``bench.nn.ImageSurvivalMethod`` does data, training and outputs):
- **DualVQ**, per modality (CT, PET), its own encoder, codebook and decoder. The encoder has five 3D conv layers
  and five residual blocks (MONAI ``Convolution`` / ``ResidualUnit``, instance norm): a stem conv, then four
  transitions (residual block + conv, ``vq_channels``), then a last residual block, and a linear 1×1×1 conv
  before the codebook (VQ-GAN's quant_conv; the decoder starts with its mirror). ``downsample`` of the four
  transition convs have stride 2: paper 4 (128³ → 8³ × 512), quick 2 (32³ → 8³). Each latent vector snaps
  to the nearest of ``codebook_size`` (1024) entries by Euclidean distance, with the straight-through
  estimator. ``codebook = "loss"`` learns the entries (initialised uniform in ±1/entries, as in VQ-VAE) by
  the paper's codebook loss ‖sg[z_e] − e‖² plus α1 = ``commitment`` (0.25) × ‖z_e − sg[e]‖². ``"ema"`` uses
  MONAI's ``EMAQuantizer`` (EMA updates, decay ``ema_decay``) instead, its cluster sizes started at 1.
  ``dead_code_restart = N`` (0 = off) re-seeds an entry unused for N training steps with a random encoder
  output of the current batch: the remedy for a collapsing codebook. Codebook health per epoch and modality:
  ``codes_used`` (entries chosen at least once), ``perplexity`` and ``codes_effective`` (perplexity / entries,
  the measure the 5 % line applies to). The decoder mirrors the encoder
  (transposed convs) and reconstructs the modality. L_q = Σ_m codebook + α1 commitment + α2 = ``recon`` (1)
  × MSE(reconstruction, input).
- **Continuous path**: per modality a ResNet-18-style 3D network (MONAI ``ResNet``, basic blocks [2, 2, 2, 2],
  ``resnet_channels``, ``resnet_norm`` batch as in ResNet); the two last feature maps are concatenated and pass CBAM (Woo et al. 2018: channel
  attention from average- and max-pooled descriptors through a shared MLP, reduction ``cbam_reduction``, then
  spatial attention, a 7³ conv on the channel-wise average and max). Global average pooling then gives F_cont.
- **DualPatchFuse** on the quantised latents: 2³ patches (``fuse_patch``) → 64 tokens per modality, a linear
  projection to ``d_model`` (256) = E_CT, E_PET plus a learned position embedding. Per modality, Q and K are
  projections to ``d_k`` (64) and V a projection to ``d_model``. A_CT→PET = softmax(Q_CT K_PETᵀ/√d_k) V_PET,
  and the same the other way. F = β1·(A_CT→PET + E_CT) + β2·(A_PET→CT + E_PET), with β1 and β2 learnable
  (initialised 0.5). L_align = −mean_i cos(Q_CT[i], K_PET[i]). L_preserve = mean_i ‖F − E_CT‖₂ + β3 ·
  mean_i ‖F − E_PET‖₂, with β3 = ``beta3`` (0.5, fixed). L_fusion = L_align + L_preserve. A Transformer
  (``fuse_depth`` layers, ``fuse_heads`` heads, MONAI ``TransformerBlock``) then fuses the tokens, and their
  mean gives F_disc.
- **Survival**: [F_disc, F_cont] → Linear(``fused_dim``) → ReLU → Dropout → ``n_bins`` outputs; DeepHit loss
  (pycox likelihood + ranking, ``alpha``, ``sigma``) on intervals at quantiles of the training event times;
  risk = −(restricted mean survival time).
- Total loss (eq. 14): γ1 = ``vq_weight`` (1) × L_q + γ2 = ``fusion_weight`` (0.5) × L_fusion + γ3 =
  ``surv_weight`` (2) × L_surv. Adam.

Ablations (the paper's Table 2), as config switches and registered variants:
- ``patch_fuse = false`` (``robsurv-no-patchfuse``): the two token sets are concatenated per patch and projected
  to ``d_model``. There is no cross-attention and no L_fusion; the Transformer stays.
- ``continuous = false`` (``robsurv-no-continuous``): no ResNet/CBAM path; survival reads F_disc only.
- ``dualvq = false`` (``robsurv-no-vq``): no codebook, no decoder and no L_q; DualPatchFuse reads the
  encoders' continuous latents z_e.

Every choice the seed leaves open is a config field:
- residual block widths: ``vq_channels`` (32…512) and ``resnet_channels`` (64…512);
- where CBAM sits: on the concatenated last ResNet maps;
- the Transformer depth and heads: 2 and 8;
- V in d_model, so that A + E is defined (the seed gives A in d_k);
- the reductions of the losses: means;
- n_bins (10), alpha (0.2) and sigma (0.1): pycox's DeepHit defaults;
- the fused width (256) and dropout (0.1);
- epochs, schedule and early stopping;
- at every scale (the paper states none of these): gradient clipping at norm 5, balanced event/censored
  batches, random flips and intensity jitter, bf16/fp16 autocast on CUDA (``train.amp``).

In the run history ``surv_loss`` is the unweighted DeepHit loss; ``vq_loss`` and ``fusion_loss`` are the weighted
terms added to it (γ1 L_q, γ2 L_fusion); ``quant_loss``, ``recon_loss``, ``align_loss`` and ``preserve_loss``
are their unweighted parts.

The crop is centred on the PET hot region found from the images, never on a mask. RobSurv does not segment.

Scales:
- ``paper``: 128³ crop of a 144³ box at 1 mm, width 1, downsample 4 (8³ latent), batch 2, Adam 1e-4, 100 epochs,
  early stopping (patience 20) on the validation C-index, keeping the best epoch.
- ``quick`` (CPU): 32³ crop of a 40³ box at 3 mm, width 0.125 (VQ channels 4…64, ResNet 8…64, stem stride 2
  and no max pool, so the last ResNet map is 2³), downsample 2 (8³ latent, so 64 tokens as in the paper),
  d_model 256, d_k 64, 1024 codes, batch 8 balanced, Adam 1e-3 with one warm-up epoch and a cosine decay,
  14 epochs × 24 steps, last epoch kept, ``dead_code_restart`` 10 steps: without the restart the codebook
  collapses within the first epochs. The narrow width and the stride-2 stem keep a CPU epoch affordable (a
  wider network with a stride-1 stem costs several times as much per step). Paper scale keeps the restart
  off (the paper names no remedy): watch ``codes_effective`` in ``bench report`` and set it when the
  codebook collapses.
- ``smoke``: 16³ at 6 mm, width 1/16, 64 codes, 2 epochs × 2 steps.
The measurements behind the quick choices: docs/method-notes.md.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.nn import ImageSurvivalMethod, width


# -- DualVQ ------------------------------------------------------------------------------------------------------
class Quantizer(nn.Module):
    """Nearest-entry vector quantiser with the straight-through estimator, codebook use bookkeeping and an
    optional dead-code restart. ``mode = "loss"``: entries learn from the codebook loss (VQ-VAE); ``"ema"``:
    MONAI's ``EMAQuantizer`` moves them by exponential moving averages."""

    def __init__(self, n_codes: int, dim: int, *, commitment: float = 0.25, mode: str = "loss", decay: float = 0.99,
                 restart_after: int = 0):
        super().__init__()
        self.n_codes, self.dim, self.commitment, self.mode = n_codes, dim, commitment, mode
        self.restart_after = int(restart_after)
        if mode == "ema":
            from monai.networks.layers.vector_quantizer import EMAQuantizer

            self.ema = EMAQuantizer(spatial_dims=3, num_embeddings=n_codes, embedding_dim=dim,
                                    commitment_cost=commitment, decay=decay, ddp_sync=False)
            # MONAI starts the cluster sizes at 0 without a bias correction, so the first update divides every
            # entry by ~(1 − decay) × its count and the codebook collapses; start each entry as one member
            self.ema.ema_cluster_size.fill_(1.0)
            self.ema.ema_w.copy_(self.ema.embedding.weight.data)
        elif mode == "loss":
            self.codebook = nn.Embedding(n_codes, dim)
            nn.init.uniform_(self.codebook.weight, -1.0 / n_codes, 1.0 / n_codes)
        else:
            raise ValueError(f"codebook mode {mode!r}: choose loss or ema")
        self.register_buffer("idle", torch.zeros(n_codes, dtype=torch.long))  # steps since last use
        self.register_buffer("counts", torch.zeros(n_codes), persistent=False)  # use over the current epoch

    @property
    def weight(self) -> torch.Tensor:
        return self.ema.embedding.weight if self.mode == "ema" else self.codebook.weight

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, C, Z, Y, X) → (quantised z with straight-through gradients, loss, code indices (B·Z·Y·X,))."""
        with torch.autocast(z.device.type, enabled=False):  # distances in float32 under mixed precision
            return self._quantise(z.float())

    def _quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = z.movedim(1, -1).reshape(-1, self.dim)
        if self.mode == "ema":
            q, loss, idx = self.ema(z)  # commitment only; the entries follow EMAs in training mode
            idx = idx.reshape(-1)
        else:
            w = self.codebook.weight
            dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ w.t() + w.pow(2).sum(1)[None]
            idx = dist.argmin(1)
            qf = w[idx]
            loss = F.mse_loss(qf, flat.detach()) + self.commitment * F.mse_loss(flat, qf.detach())
            q = (flat + (qf - flat).detach()).reshape(*z.shape[:1], *z.shape[2:], self.dim).movedim(-1, 1)
        if self.training:
            with torch.no_grad():
                used = torch.bincount(idx, minlength=self.n_codes)
                self.counts += used.float()
                self.idle += 1
                self.idle[used > 0] = 0
                if self.restart_after > 0:
                    self._restart(flat.detach())
        return q, loss, idx

    @torch.no_grad()
    def _restart(self, flat: torch.Tensor) -> None:
        dead = (self.idle >= self.restart_after).nonzero().flatten()
        if not len(dead):
            return
        pick = flat[torch.randint(len(flat), (len(dead),), device=flat.device)]
        self.weight.data[dead] = pick
        if self.mode == "ema":
            self.ema.ema_w.data[dead] = pick
            self.ema.ema_cluster_size.data[dead] = 1.0
        self.idle[dead] = 0

    def epoch_stats(self) -> dict[str, float]:
        """Codebook health over the epoch, then the counts reset: ``codes_used`` (fraction of entries chosen at
        least once), ``perplexity`` of their use and ``codes_effective`` = perplexity / entries, the fraction
        of the codebook in effective use (a collapse shows here even when stray entries are still touched
        now and then: the 5 % health line is drawn on it)."""
        total = float(self.counts.sum())
        if total == 0:
            return {}
        p = self.counts / total
        perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
        out = {"codes_used": float((self.counts > 0).float().mean()), "perplexity": perplexity,
               "codes_effective": perplexity / self.n_codes}
        self.counts.zero_()
        return out


def _res(c: int) -> nn.Module:
    from monai.networks.blocks import ResidualUnit

    return ResidualUnit(3, c, c, strides=1, subunits=2, norm="instance", act=("leakyrelu", {"inplace": True}))


def _conv(cin: int, cout: int, stride: int, transposed: bool = False) -> nn.Module:
    from monai.networks.blocks import Convolution

    return Convolution(3, cin, cout, strides=stride, kernel_size=3, norm="instance",
                       act=("leakyrelu", {"inplace": True}), is_transposed=transposed)


class VQEncoder(nn.Module):
    """Five conv layers and five residual blocks: stem conv, 4 × (residual block, conv), residual block."""

    def __init__(self, channels: list[int], downsample: int):
        super().__init__()
        layers = [_conv(1, channels[0], 1)]
        for i in range(4):
            layers += [_res(channels[i]), _conv(channels[i], channels[i + 1], 2 if i < downsample else 1)]
        layers.append(_res(channels[4]))
        # a linear 1×1×1 conv before the codebook (VQ-GAN's quant_conv): latents are not clipped by the activation
        layers.append(nn.Conv3d(channels[4], channels[4], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class VQDecoder(nn.Module):
    """The encoder mirrored: residual block, 4 × (transposed conv, residual block), a 1-channel output conv."""

    def __init__(self, channels: list[int], downsample: int):
        super().__init__()
        from monai.networks.blocks import Convolution

        layers = [nn.Conv3d(channels[4], channels[4], 1), _res(channels[4])]  # post_quant_conv, then the mirror
        for i in range(3, -1, -1):
            up = 2 if i < downsample else 1
            layers += [_conv(channels[i + 1], channels[i], up, transposed=up > 1), _res(channels[i])]
        layers.append(Convolution(3, channels[0], 1, kernel_size=1, conv_only=True))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


# -- continuous path -----------------------------------------------------------------------------------------------
class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018) in 3D: channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.spatial = nn.Conv3d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x):
        avg, mx = x.mean((2, 3, 4)), x.amax((2, 3, 4))
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))[:, :, None, None, None]
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(s))


class ResNetFeatures(nn.Module):
    """MONAI's 3D ResNet-18 layout (basic blocks [2, 2, 2, 2]) up to its last feature map."""

    def __init__(self, channels: list[int], stem_stride: int, max_pool: bool, norm: str = "batch"):
        super().__init__()
        from monai.networks.nets import ResNet

        self.net = ResNet("basic", [2, 2, 2, 2], channels, spatial_dims=3, n_input_channels=1, conv1_t_size=7,
                          conv1_t_stride=stem_stride, no_max_pool=not max_pool, feed_forward=False, norm=norm)

    def forward(self, x):
        n = self.net
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


# -- DualPatchFuse ---------------------------------------------------------------------------------------------------
def _patches(z: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, Z, Y, X) → (B, Z/p·Y/p·X/p, C·p³) non-overlapping p³ patches."""
    b, c, d, h, w = z.shape
    z = z.reshape(b, c, d // p, p, h // p, p, w // p, p)
    return z.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (d // p) * (h // p) * (w // p), c * p ** 3)


class DualPatchFuse(nn.Module):
    def __init__(self, in_dim: int, n_tokens: int, d_model: int, d_k: int, *, cross: bool, beta3: float,
                 depth: int, heads: int):
        super().__init__()
        from monai.networks.blocks import TransformerBlock

        self.cross, self.beta3 = cross, beta3
        self.embed = nn.ModuleDict({m: nn.Linear(in_dim, d_model) for m in ("ct", "pet")})
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        if cross:
            self.q = nn.ModuleDict({m: nn.Linear(d_model, d_k) for m in ("ct", "pet")})
            self.k = nn.ModuleDict({m: nn.Linear(d_model, d_k) for m in ("ct", "pet")})
            self.v = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in ("ct", "pet")})
            self.beta = nn.Parameter(torch.tensor([0.5, 0.5]))
        else:
            self.merge = nn.Linear(2 * d_model, d_model)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, 4 * d_model, heads, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.scale = 1.0 / math.sqrt(d_k)

    def forward(self, tokens_ct: torch.Tensor, tokens_pet: torch.Tensor) -> tuple[torch.Tensor, dict]:
        e_ct, e_pet = self.embed["ct"](tokens_ct) + self.pos, self.embed["pet"](tokens_pet) + self.pos
        losses = {}
        if self.cross:
            q_ct, k_ct, v_ct = self.q["ct"](e_ct), self.k["ct"](e_ct), self.v["ct"](e_ct)
            q_pet, k_pet, v_pet = self.q["pet"](e_pet), self.k["pet"](e_pet), self.v["pet"](e_pet)
            a_ct_pet = torch.softmax(q_ct @ k_pet.transpose(1, 2) * self.scale, -1) @ v_pet
            a_pet_ct = torch.softmax(q_pet @ k_ct.transpose(1, 2) * self.scale, -1) @ v_ct
            fused = self.beta[0] * (a_ct_pet + e_ct) + self.beta[1] * (a_pet_ct + e_pet)
            align = -F.cosine_similarity(q_ct, k_pet, dim=-1).mean()
            preserve = (fused - e_ct).norm(dim=-1).mean() + self.beta3 * (fused - e_pet).norm(dim=-1).mean()
            losses = {"align": align, "preserve": preserve}
        else:
            fused = self.merge(torch.cat([e_ct, e_pet], -1))
        x = fused
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x).mean(1), losses


# -- the network ----------------------------------------------------------------------------------------------------
class RobSurvNet(nn.Module):
    def __init__(self, crop_zyx: tuple[int, int, int], n_out: int, c: dict):
        super().__init__()
        w = float(c["width"])
        self.dualvq, self.continuous = bool(c["dualvq"]), bool(c["continuous"])
        vq_ch = width(c["vq_channels"], w, 4)
        down, p = int(c["downsample"]), int(c["fuse_patch"])
        self.encoders = nn.ModuleDict({m: VQEncoder(vq_ch, down) for m in ("ct", "pet")})
        if self.dualvq:
            self.quantizers = nn.ModuleDict({m: Quantizer(int(c["codebook_size"]), vq_ch[4],
                                                          commitment=float(c["commitment"]), mode=c["codebook"],
                                                          decay=float(c["ema_decay"]),
                                                          restart_after=int(c["dead_code_restart"]))
                                             for m in ("ct", "pet")})
            self.decoders = nn.ModuleDict({m: VQDecoder(vq_ch, down) for m in ("ct", "pet")})
        latent = [s // 2 ** down for s in crop_zyx]
        n_tokens = math.prod(s // p for s in latent)
        d_model = int(c["d_model"])
        self.fuse = DualPatchFuse(vq_ch[4] * p ** 3, n_tokens, d_model, int(c["d_k"]), cross=bool(c["patch_fuse"]),
                                  beta3=float(c["beta3"]), depth=int(c["fuse_depth"]), heads=int(c["fuse_heads"]))
        feat = d_model
        if self.continuous:
            res_ch = width(c["resnet_channels"], w, 4)
            self.resnets = nn.ModuleDict({m: ResNetFeatures(res_ch, int(c["resnet_stem_stride"]), bool(c["max_pool"]),
                                                            c["resnet_norm"])
                                          for m in ("ct", "pet")})
            self.cbam = CBAM(2 * res_ch[-1], int(c["cbam_reduction"]))
            feat += 2 * res_ch[-1]
        fused = int(c["fused_dim"])
        self.head = nn.Sequential(nn.Linear(feat, fused), nn.ReLU(inplace=True), nn.Dropout(float(c["dropout"])),
                                  nn.Linear(fused, n_out))
        self.patch, self.recon_w, self.vq_w = p, float(c["recon"]), float(c["vq_weight"])
        self.fusion_w = float(c["fusion_weight"])

    def forward(self, image: torch.Tensor, clinical=None) -> dict:
        mods = {"ct": image[:, :1], "pet": image[:, 1:2]}  # the pipeline's channel order: CT, PET
        tokens, quant, recon_loss, logs = {}, 0.0, 0.0, {}
        for m, x in mods.items():
            z = self.encoders[m](x)
            if self.dualvq:
                q, q_loss, _ = self.quantizers[m](z)
                if self.training:
                    quant = quant + q_loss
                    recon_loss = recon_loss + F.mse_loss(self.decoders[m](q).float(), x.float())
                z = q
            tokens[m] = _patches(z, self.patch)
        f_disc, fusion = self.fuse(tokens["ct"], tokens["pet"])
        feats = [f_disc]
        if self.continuous:
            maps = torch.cat([self.resnets[m](x) for m, x in mods.items()], 1)
            feats.append(self.cbam(maps).mean((2, 3, 4)))
        out = {"surv": self.head(torch.cat(feats, 1))}
        if self.training:
            losses = {}
            if self.dualvq:
                losses["vq_loss"] = self.vq_w * (quant + self.recon_w * recon_loss)
                logs["quant_loss"], logs["recon_loss"] = quant, recon_loss  # codebook + α1·commitment; MSE
            if fusion:
                losses["fusion_loss"] = self.fusion_w * (fusion["align"] + fusion["preserve"])
                logs["align_loss"], logs["preserve_loss"] = fusion["align"], fusion["preserve"]
            out["losses"], out["logs"] = losses, logs
        return out

    def epoch_logs(self) -> dict[str, float]:
        """Codebook health over the epoch (fraction of entries used, perplexity) and the fusion weights β1, β2."""
        out = {}
        if self.dualvq:
            for m, qz in self.quantizers.items():
                out |= {f"{k}_{m}": v for k, v in qz.epoch_stats().items()}
        if self.fuse.cross:
            beta = self.fuse.beta.detach()
            out |= {"beta1": float(beta[0]), "beta2": float(beta[1])}
        return out


_TRAIN = {"epochs": 20, "batch_size": 8, "steps_per_epoch": 24, "lr": 1e-3, "weight_decay": 0.0,
          "optimizer": "adam", "schedule": "cosine", "warmup_epochs": 1, "step_every": 10, "grad_clip": 5.0,
          "ema": 0.0, "patience": 0, "keep": "last", "balanced": True, "amp": "auto", "workers": 0}
_BASE = {"head": "deephit", "n_bins": 10, "alpha": 0.2, "sigma": 0.1, "clinical": False, "augment": True,
         "flips": True, "surv_weight": 2.0, "vq_weight": 1.0, "fusion_weight": 0.5, "commitment": 0.25,
         "recon": 1.0, "beta3": 0.5, "codebook_size": 1024, "codebook": "loss", "ema_decay": 0.99,
         "dead_code_restart": 0, "vq_channels": [32, 64, 128, 256, 512], "downsample": 4, "fuse_patch": 2,
         "d_model": 256, "d_k": 64, "fuse_depth": 2, "fuse_heads": 8, "resnet_channels": [64, 128, 256, 512],
         "resnet_stem_stride": 2, "max_pool": True, "resnet_norm": "batch", "cbam_reduction": 16, "fused_dim": 256, "dropout": 0.1,
         "dualvq": True, "patch_fuse": True, "continuous": True}


class RobSurv(ImageSurvivalMethod):
    consumes = ("ct", "pet")
    produces = ("risk", "survival")
    version = "2"  # history: CHANGELOG.md
    configs = {
        "smoke": _BASE | {"spacing_mm": 6.0, "box": [20, 20, 20], "crop": [16, 16, 16], "width": 0.0625,
                          "downsample": 2, "codebook_size": 64, "d_model": 32, "d_k": 8, "fuse_depth": 1,
                          "fuse_heads": 2, "resnet_stem_stride": 1, "max_pool": False, "fused_dim": 16,
                          "n_bins": 5, "train": _TRAIN | {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4}},
        "quick": _BASE | {"spacing_mm": 3.0, "box": [40, 40, 40], "crop": [32, 32, 32], "width": 0.125,
                          "downsample": 2, "resnet_stem_stride": 2, "max_pool": False, "dead_code_restart": 10,
                          "train": _TRAIN | {"epochs": 14}},
        "paper": _BASE | {"spacing_mm": 1.0, "box": [144, 144, 144], "crop": [128, 128, 128], "width": 1.0,
                          "train": _TRAIN | {"epochs": 100, "steps_per_epoch": 0, "batch_size": 2, "lr": 1e-4,
                                             "schedule": "constant", "warmup_epochs": 0, "patience": 20,
                                             "keep": "best"}},
    }

    @classmethod
    def check_network(cls, config: dict) -> list[str]:
        out = []
        down, p = int(config["downsample"]), int(config["fuse_patch"])
        if not 0 <= down <= 4:
            out.append(f"downsample = {down} must be 0…4 (the encoder has four transitions)")
        elif p < 1 or any(int(s) % (2 ** down * p) for s in config["crop"]):
            out.append(f"crop {config['crop']} must be a multiple of 2^downsample × fuse_patch = {2 ** down * p} "
                       f"on every axis")
        if len(config["vq_channels"]) != 5:
            out.append(f"vq_channels {config['vq_channels']} must list 5 widths (stem and four transitions)")
        if len(config["resnet_channels"]) != 4:
            out.append(f"resnet_channels {config['resnet_channels']} must list 4 widths (ResNet-18 stages)")
        if config["resnet_norm"] not in ("batch", "instance"):
            out.append(f"resnet_norm = {config['resnet_norm']!r}: choose batch or instance")
        if config["codebook"] not in ("loss", "ema"):
            out.append(f"codebook = {config['codebook']!r}: choose loss or ema")
        if int(config["codebook_size"]) < 2:
            out.append(f"codebook_size = {config['codebook_size']} must be >= 2")
        if int(config["d_model"]) % int(config["fuse_heads"]):
            out.append(f"d_model = {config['d_model']} must be a multiple of fuse_heads = {config['fuse_heads']}")
        if config["head"] != "deephit":
            out.append(f"head = {config['head']!r}: RobSurv's survival loss is DeepHit's (head = deephit)")
        return out

    def build_network(self, n_clinical: int) -> nn.Module:
        crop_zyx = tuple(int(v) for v in reversed(self.config["crop"]))
        return RobSurvNet(crop_zyx, self.head_.n_outputs, self.config)


def _variant(name: str, doc: str, **switch) -> type:
    cls = type(name, (RobSurv,), {"__doc__": doc, "__module__": __name__,
                                  "configs": {s: c | switch for s, c in RobSurv.configs.items()}})
    return cls


RobSurvNoPatchFuse = _variant("RobSurvNoPatchFuse", "RobSurv without DualPatchFuse (Table 2): tokens concatenated, "
                              "no cross-attention, no fusion loss.", patch_fuse=False)
RobSurvNoContinuous = _variant("RobSurvNoContinuous", "RobSurv without the continuous ResNet/CBAM branch (Table 2).",
                               continuous=False)
RobSurvNoVQ = _variant("RobSurvNoVQ", "RobSurv without DualVQ (Table 2): no codebooks, decoders or L_q; "
                       "DualPatchFuse reads the continuous latents.", dualvq=False)
