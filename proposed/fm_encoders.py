"""Foundation-model encoders for the FM variants (``proposed.fm``): architectures shaped like the public CT and
PET foundation models, their official checkpoint layouts, self-supervised pretraining by the harness on an
external corpus, and frozen feature extraction with a cache.

**CT-FM** (Pai et al., 2025): MONAI ``SegResEncoder`` (init filters 32, ``blocks_down`` [1, 2, 2, 4, 4], batch
norm, ReLU); the embedding is the global average of the last (stride-16) level: 512 features at paper size.
Input convention of the FM paper (seed): HU clipped to −1000…2000 and scaled to 0…1 (the image pipeline's
``ct_window``; CT-FM's own scripts use −1024…2048). Checkpoint layouts read: the bare ``SegResEncoder`` keys
of ``project-lighter/ct_fm_feature_extractor`` (``conv_init.weight``, ``layers.{i}.blocks.{j}.conv1.weight``, …)
and the ``encoder.``-prefixed keys of the legacy full SegResNetDS file (``pretrained_segresnet.torch``), also
under ``backbone.``; nested under ``state_dict`` / ``model_state_dict`` / ``model`` as well. Written: bare keys.

**PET-FM** (SegAnyPET, adapted from SAM-Med3D's ``vit_b_ori`` image encoder): a 3D ViT-B — Conv3d patch
embedding (16³, 1 channel → 768), absolute position embedding on the 8³ token grid (channels last), 12
pre-norm blocks (LayerNorm eps 1e-6, multi-head attention with qkv bias and decomposed relative position
bias along d/h/w, MLP ×4 with GELU), windowed attention (window 14, the grid zero-padded to a multiple of it)
except in the global blocks 2, 5, 8, 11, and the neck (1×1×1 conv → LayerNorm3d → 3×3×3 conv → LayerNorm3d,
384 channels), kept for the checkpoint but not used: the embedding is the mean of the last block's tokens
(768 features), as in the FM paper. Input convention of the FM paper: PET clipped at its 0.5 and 99.5
percentiles and min–max scaled to 0…1 (SAM-Med3D itself z-normalises over voxels > 0). Checkpoint layout:
SAM-Med3D's training checkpoint, ``{"model_state_dict": {"image_encoder.<key>": …}}`` (also a bare state
dict, with or without the ``image_encoder.`` prefix). Written: that layout.

Weights (``weights`` in the encoder config): a file path (official layout; a missing file or one that does
not match the architecture is a clear error naming the keys), ``"random"`` (the untrained control), or
``"pretrain"`` (default): the harness pretrains the encoder itself — masked-image modelling (SimMIM-style:
random cubes of ``mask_patch`` voxels zeroed with probability ``mask_ratio``, a 1×1×1 conv + voxel shuffle
reconstructs the image from the encoder's last map, L1 on the masked voxels; for CT-FM the target is the
soft-tissue window of the same voxels, ``reconstruction_target``) on an *external* corpus, the
synthetic cohort of the same scale generated with ``corpus_seed`` (never the benchmark's seed-0 patients),
and caches the weights (``<cache>/fm/<encoder>-<hash>.pt``, official layout) with a card (loss per epoch,
linear-probe check, seconds). The probe: ridge regression from the frozen features to the log total tumour
volume, to the true log-hazard η and to necrosis present (the corpus's ground truth), fitted on half the
corpus, R² on the other half, averaged over 10 random halvings, against the same probe on the randomly
initialised encoder. Pretraining is seeded throughout: on the same device type, torch build and CPU thread count
(both in the card) it repeats bit for bit; another thread count gives other bits (same losses to print
precision); CUDA kernels are not bit-reproducible.

Features: the encoder's embedding of each patient's pipeline box (its own spacing, box and intensity
convention), cached per (pipeline entry — content-hashed images, so a corrupted image gets its own —,
weights hash, encoder architecture) under ``<cache>/fm-features/``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchInputError
from bench.nn.trainer import autocast

log = logging.getLogger("bench.fm")
FM_VERSION = "2"  # bump when pretraining or extraction changes: part of every cache key and of the FM variants'
# method version (2: seeded flips, so pretraining repeats bit for bit on one set-up; CT-FM's soft-tissue target)

# -- encoder configs per scale -------------------------------------------------------------------------------
_PRETRAIN = {"corpus_seed": 1, "epochs": 30, "batch_size": 8, "steps_per_epoch": 24, "lr": 1e-3,
             "mask_ratio": 0.6, "mask_patch": 8}
_CT_TARGET = {"target_window": [-200.0, 300.0]}  # CT-FM's reconstruction target: soft tissue (reconstruction_target)
ENCODERS: dict[str, dict[str, dict[str, Any]]] = {
    "ct-fm": {
        "paper": {"init_filters": 32, "blocks_down": [1, 2, 2, 4, 4], "spacing_mm": 1.0, "box": [128, 128, 48],
                  "ct_window": [-1000.0, 2000.0], "weights": "pretrain",
                  "pretrain": _PRETRAIN | _CT_TARGET | {"epochs": 100, "batch_size": 4, "steps_per_epoch": 200,
                                                     "mask_patch": 16}},
        "quick": {"init_filters": 8, "blocks_down": [1, 1, 1, 1, 1], "spacing_mm": 3.0, "box": [48, 48, 16],
                  "ct_window": [-1000.0, 2000.0], "weights": "pretrain", "pretrain": _PRETRAIN | _CT_TARGET},
        "smoke": {"init_filters": 4, "blocks_down": [1, 1, 1, 1, 1], "spacing_mm": 6.0, "box": [16, 16, 16],
                  "ct_window": [-1000.0, 2000.0], "weights": "pretrain",
                  "pretrain": _PRETRAIN | _CT_TARGET | {"epochs": 3, "steps_per_epoch": 4, "batch_size": 4,
                                                       "mask_patch": 4}},
    },
    "pet-fm": {
        "paper": {"img_size": 128, "patch": 16, "dim": 768, "depth": 12, "heads": 12, "mlp_ratio": 4.0,
                  "out_chans": 384, "window": 14, "global_blocks": [2, 5, 8, 11], "spacing_mm": 1.0,
                  "weights": "pretrain", "pretrain": _PRETRAIN | {"epochs": 100, "batch_size": 4,
                                                                   "steps_per_epoch": 200, "mask_patch": 16}},
        "quick": {"img_size": 32, "patch": 8, "dim": 96, "depth": 4, "heads": 4, "mlp_ratio": 4.0,
                  "out_chans": 48, "window": 2, "global_blocks": [1, 3], "spacing_mm": 4.0,
                  "weights": "pretrain", "pretrain": dict(_PRETRAIN)},
        "smoke": {"img_size": 16, "patch": 8, "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2.0,
                  "out_chans": 8, "window": 0, "global_blocks": [], "spacing_mm": 8.0, "weights": "pretrain",
                  "pretrain": _PRETRAIN | {"epochs": 3, "steps_per_epoch": 4, "batch_size": 4}},
    },
}
PET_CLIP = (0.5, 99.5)  # percentiles, then min–max to [0, 1]
PET_SUV_RANGE = 1000.0  # the pipeline's SUV scale for the PET encoder: no clipping before the percentiles


# -- CT-FM ---------------------------------------------------------------------------------------------------
class CTFMEncoder(nn.Module):
    """MONAI SegResEncoder; embedding = global average of the last level."""

    def __init__(self, init_filters: int = 32, blocks_down=(1, 2, 2, 4, 4)):
        super().__init__()
        from monai.networks.nets.segresnet_ds import SegResEncoder

        self.encoder = SegResEncoder(spatial_dims=3, init_filters=int(init_filters), in_channels=1,
                                     blocks_down=tuple(int(b) for b in blocks_down))
        self.dim = int(init_filters) * 2 ** (len(blocks_down) - 1)
        self.stride = 2 ** (len(blocks_down) - 1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean((2, 3, 4))

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}

    def module_key(self, key: str) -> str | None:
        for prefix in ("module.", "model.", "backbone.", "encoder."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        return f"encoder.{key}"


# -- PET-FM --------------------------------------------------------------------------------------------------
class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of (B, C, D, H, W)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(1, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)  # (B, D, H, W, C)


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1, self.lin2, self.act = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def _axis_bias(table: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size, head_dim): the table row for every (query, key) offset q − k along one axis."""
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


class _Attention(nn.Module):
    """Multi-head self-attention on a (B, D, H, W, C) grid with a decomposed relative position bias: for
    every axis a learned table over offsets, contracted with the query and added to the logits."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int, int], qkv_bias: bool = True):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * grid[0] - 1, self.head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[1] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[2] - 1, self.head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        n, nh, hd = d * h * w, self.heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, n, 3, nh, hd).permute(2, 0, 3, 1, 4).reshape(3, b * nh, n, hd).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        rq = q.reshape(b * nh, d, h, w, hd)
        bias_d = torch.einsum("bdhwc,dkc->bdhwk", rq, _axis_bias(self.rel_pos_d, d))
        bias_h = torch.einsum("bdhwc,hkc->bdhwk", rq, _axis_bias(self.rel_pos_h, h))
        bias_w = torch.einsum("bdhwc,wkc->bdhwk", rq, _axis_bias(self.rel_pos_w, w))
        logits = (logits.view(b * nh, d, h, w, d, h, w) + bias_d[..., :, None, None]
                  + bias_h[..., None, :, None] + bias_w[..., None, None, :]).view(b * nh, n, n)
        out = logits.softmax(-1) @ v
        return self.proj(out.view(b, nh, d, h, w, hd).permute(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, c))


class _Block(nn.Module):
    """Pre-norm transformer block; ``window`` > 0: attention inside cubes of that many tokens (the grid
    zero-padded at the end of each axis to a multiple of it)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, grid: tuple[int, int, int], window: int):
        super().__init__()
        self.window = int(window)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, (self.window,) * 3 if self.window else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, x = x, self.norm1(x)
        if self.window:
            b, d, h, w, c = x.shape
            s = self.window
            pd, ph, pw = (-d) % s, (-h) % s, (-w) % s
            x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
            D, H, W = d + pd, h + ph, w + pw
            x = x.view(b, D // s, s, H // s, s, W // s, s, c).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, s, s, s, c)
            x = self.attn(x)
            x = x.view(b, D // s, H // s, W // s, s, s, s, c).permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, D, H, W, c)
            x = x[:, :d, :h, :w].contiguous()
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PETFMEncoder(nn.Module):
    """SAM-Med3D-shaped 3D ViT image encoder; embedding = mean of the last block's tokens."""

    def __init__(self, img_size: int = 128, patch: int = 16, dim: int = 768, depth: int = 12, heads: int = 12,
                 mlp_ratio: float = 4.0, out_chans: int = 384, window: int = 14, global_blocks=(2, 5, 8, 11)):
        super().__init__()
        g = int(img_size) // int(patch)
        self.dim, self.stride = int(dim), int(patch)
        self.patch_embed = _PatchEmbed(int(patch), int(dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, g, int(dim)))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        glob = set(int(i) for i in global_blocks)
        self.blocks = nn.ModuleList(_Block(int(dim), int(heads), float(mlp_ratio), (g, g, g),
                                           0 if (i in glob or not window) else int(window)) for i in range(int(depth)))
        self.neck = nn.Sequential(nn.Conv3d(int(dim), int(out_chans), 1, bias=False), LayerNorm3d(int(out_chans)),
                                  nn.Conv3d(int(out_chans), int(out_chans), 3, padding=1, bias=False),
                                  LayerNorm3d(int(out_chans)))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return x  # (B, D, H, W, C)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x).permute(0, 4, 1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x).flatten(1, 3).mean(1)

    def official_state_dict(self) -> dict[str, Any]:
        return {"model_state_dict": {f"image_encoder.{k}": v.detach().cpu() for k, v in self.state_dict().items()}}

    def module_key(self, key: str) -> str | None:
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("image_encoder."):
            return key[len("image_encoder."):]
        if key.split(".")[0] in ("prompt_encoder", "mask_decoder"):
            return None
        return key


def build_encoder(name: str, cfg: dict) -> nn.Module:
    if name == "ct-fm":
        return CTFMEncoder(cfg["init_filters"], cfg["blocks_down"])
    if name == "pet-fm":
        return PETFMEncoder(cfg["img_size"], cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"], cfg["mlp_ratio"],
                            cfg["out_chans"], cfg["window"], cfg["global_blocks"])
    raise BenchInputError(f"unknown encoder {name!r}: choose one of {', '.join(ENCODERS)}")


def encoder_config(name: str, scale: str, overrides: dict | None = None) -> dict:
    if name not in ENCODERS:
        raise BenchInputError(f"unknown encoder {name!r}: choose one of {', '.join(ENCODERS)}")
    cfg = json.loads(json.dumps(ENCODERS[name][scale]))
    for k, v in (overrides or {}).items():
        if k == "pretrain" and isinstance(v, dict):
            cfg["pretrain"] |= v
        elif k not in cfg:
            raise BenchInputError(f"{name}: unknown encoder setting {k!r} (known: {', '.join(sorted(cfg))})")
        else:
            cfg[k] = v
    return cfg


# -- checkpoints ---------------------------------------------------------------------------------------------
def save_official(encoder: nn.Module, path: Path) -> Path:
    """Write the encoder's weights in its official checkpoint layout (atomically). Serialised through memory,
    so that equal weights give equal bytes (saved to a path, the archive would carry the temporary file's
    random name) and the sha256 the rows name identifies the weights."""
    import io

    from bench.fsutil import atomic_path

    buf = io.BytesIO()
    torch.save(encoder.official_state_dict(), buf)
    with atomic_path(Path(path), ".pt") as tmp:
        Path(tmp).write_bytes(buf.getvalue())
    return Path(path)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchInputError(f"encoder weights {path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchInputError(f"encoder weights {path}: expected a state dict of tensors (optionally under "
                              f"'model_state_dict' or 'state_dict')")
    return obj


def load_official(encoder: nn.Module, path: str | Path, name: str = "encoder") -> nn.Module:
    """Load a checkpoint in the official layout into ``encoder``; every weight of the encoder must be there
    with its shape, or a clear error names what is missing or different."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchInputError(f"{name} weights: no file at {path} (give an existing checkpoint path, or "
                              f"weights = \"pretrain\" to let the harness pretrain the encoder)")
    raw = _read_state(path)
    mapped = {}
    for k, v in raw.items():
        mk = encoder.module_key(k)
        if mk is not None:
            mapped[mk] = v
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in mapped]
    wrong = [f"{k} {tuple(mapped[k].shape)} ≠ {tuple(v.shape)}" for k, v in expected.items()
             if k in mapped and tuple(mapped[k].shape) != tuple(v.shape)]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:4]}")
        if wrong:
            parts.append(f"{len(wrong)} of another shape, e.g. {wrong[:3]}")
        raise BenchInputError(f"{name} weights {path} do not match the configured architecture "
                              f"({type(encoder).__name__}): " + "; ".join(parts))
    encoder.load_state_dict({k: mapped[k] for k in expected})
    return encoder


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- images ----------------------------------------------------------------------------------------------------
def pipeline_for(name: str, cfg: dict):
    """The image pipeline setting an encoder reads: its spacing and box, its intensity convention."""
    from bench.data.pipeline import PipelineConfig

    if name == "ct-fm":
        return PipelineConfig(spacing_mm=float(cfg["spacing_mm"]), size=tuple(int(v) for v in cfg["box"]),
                              ct_window=tuple(float(v) for v in cfg["ct_window"]))
    return PipelineConfig(spacing_mm=float(cfg["spacing_mm"]), size=(int(cfg["img_size"]),) * 3,
                          pet_suv_max=PET_SUV_RANGE)


def encoder_input(name: str, entry: dict) -> np.ndarray:
    """(1, z, y, x) float32 from a pipeline entry: CT as windowed by the pipeline; PET clipped at its
    percentiles ``PET_CLIP`` and min–max scaled."""
    if name == "ct-fm":
        return entry["ct"][None].astype(np.float32)
    pet = entry["pet"].astype(np.float32)
    lo, hi = np.percentile(pet, PET_CLIP)
    return np.clip((pet - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)[None].astype(np.float32)


class _Images(torch.utils.data.Dataset):
    def __init__(self, name: str, files: dict, pcfg, cache: Path, *, flips: bool = False, progress: bool = False):
        from bench.data.pipeline import cache_path, preprocess

        self.name, self.files, self.pcfg, self.cache, self.flips = name, files, pcfg, Path(cache), flips
        self.rng = np.random.default_rng(0)  # the flips' own seeded stream (pretraining repeats on one set-up)
        self.ids = list(files)
        preprocess(files, pcfg, self.cache, progress=progress)
        self.paths = {i: cache_path(files[i], pcfg, self.cache) for i in self.ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        from bench.data.pipeline import load

        pid = self.ids[i]
        x = encoder_input(self.name, load(self.files[pid], self.pcfg, self.cache, path=self.paths[pid]))
        if self.flips:
            for axis in (1, 2, 3):
                if self.rng.random() < 0.5:
                    x = np.flip(x, axis)
        return torch.from_numpy(np.ascontiguousarray(x))


def _voxel_shuffle(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, s³, d, h, w) → (B, 1, d·s, h·s, w·s)."""
    b, _, d, h, w = x.shape
    return x.view(b, s, s, s, d, h, w).permute(0, 4, 1, 5, 2, 6, 3).reshape(b, 1, d * s, h * s, w * s)


def _cube_mask(shape, patch: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    b, _, d, h, w = shape
    coarse = (torch.rand(b, 1, d // patch, h // patch, w // patch, generator=gen) < ratio).float()
    return coarse.repeat_interleave(patch, 2).repeat_interleave(patch, 3).repeat_interleave(patch, 4)


def masked_decoder(encoder: nn.Module) -> nn.Module:
    """The pretraining head: a 1×1×1 convolution from the feature map to the stride³ voxels of each cell."""
    return nn.Conv3d(encoder.dim, encoder.stride ** 3, 1)


def masked_loss(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, mask: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
    """Masked-image modelling: the L1 error of the reconstruction of the masked voxels (``mask`` = 1) from
    the image with them zeroed. ``target``: what is reconstructed (default: the image itself; CT-FM's is the
    soft-tissue window of the same image, ``reconstruction_target``)."""
    rec = _voxel_shuffle(decoder(encoder.feature_map(x * (1 - mask))), encoder.stride)
    target = x if target is None else target
    return ((rec.float() - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def reconstruction_target(name: str, cfg: dict):
    """The pretraining target as a function of the encoder's input, or None (the input itself).

    CT-FM: its input keeps the FM convention (HU −1000…2000 → 0…1), where tumour (40 HU, necrotic core 15 HU)
    against muscle (45 HU) differs by 0.002–0.008 and an L1 on the input is all air, bone and fat edges; the
    target re-windows the same voxels to ``pretrain.target_window`` (HU, default soft tissue −200…300), so the
    objective weighs the soft-tissue contrast the tumour shows (measured: a 40-bin intensity histogram of the
    quick box predicts log tumour volume with held-out R² 0.56 in the soft-tissue window and −0.03 in the FM
    window)."""
    tw = (cfg.get("pretrain") or {}).get("target_window")
    if name != "ct-fm" or tw is None:
        return None
    try:
        tlo, thi = (float(v) for v in tw)
    except (TypeError, ValueError):
        tlo = thi = float("nan")
    if not tlo < thi:
        raise BenchInputError(f"ct-fm pretrain.target_window = {tw!r}: give [low, high] HU with low < high")
    lo, hi = (float(v) for v in cfg["ct_window"])

    def target(x: torch.Tensor) -> torch.Tensor:
        return ((x * (hi - lo) + lo - tlo) / (thi - tlo)).clamp(0.0, 1.0)

    return target


def pretrain_dtype(device: str) -> torch.dtype | None:
    """Pretraining's autocast dtype: bf16 on a CUDA device that has it (no gradient scaler needed), full
    precision (None) otherwise."""
    return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else None


def masked_step(encoder: nn.Module, decoder: nn.Module, opt, x: torch.Tensor, p: dict, gen: torch.Generator,
                dtype: torch.dtype | None, target_fn=None) -> torch.Tensor:
    """One pretraining step on the batch ``x``: fresh cube mask (``p``: the pretrain table), masked loss under
    autocast (``dtype``; None = full precision; ``target_fn``: ``reconstruction_target``), backward, optimiser
    step. Returns the loss."""
    mask = _cube_mask(x.shape, int(p["mask_patch"]), float(p["mask_ratio"]), gen).to(x.device)
    target = None if target_fn is None else target_fn(x)
    with autocast(x.device.type, dtype):
        loss = masked_loss(encoder, decoder, x, mask, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def embed(encoder: nn.Module, data, *, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
    encoder.eval().to(device)
    out = []
    for i in range(0, len(data), batch_size):
        x = torch.stack([data[j] for j in range(i, min(len(data), i + batch_size))]).to(device)
        out.append(encoder(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def probe_r2(features: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Ridge regression (penalty by inner CV) from standardised features to ``target`` on one half of the
    patients; R² on the other half."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = np.random.default_rng(seed).permutation(len(target))
    a, b = idx[: len(idx) // 2], idx[len(idx) // 2:]
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(features[a], target[a])
    return float(model.score(features[b], target[b]))


# -- pretraining -----------------------------------------------------------------------------------------------
def _corpus(scale: str, cfg: dict, progress: bool):
    from bench.data import RUN_SCALE_TO_SYNTHETIC, load_dataset

    seed = int(cfg["pretrain"]["corpus_seed"])
    if seed == 0:
        raise BenchInputError("encoder pretraining: corpus_seed = 0 is the benchmark's own synthetic cohort; "
                              "the corpus must be external (any other seed)")
    return load_dataset(f"synthetic:{RUN_SCALE_TO_SYNTHETIC[scale]}:{seed}", scale, progress=progress)


def pretrain(name: str, scale: str, cfg: dict, *, cache: Path, device: str = "cpu", progress: bool = True,
             force: bool = False) -> Path:
    """Pretrain the encoder on the external corpus (masked-image modelling), or return the cached weights;
    writes ``<weights>.json``, the card (loss per epoch, probe R² pretrained vs random, seconds)."""
    from bench.fsutil import atomic_path, locked
    from bench.hashing import content_hash

    p = cfg["pretrain"]
    arch = {k: v for k, v in cfg.items() if k != "weights"}
    key = content_hash({"encoder": name, "scale": scale, "config": arch, "version": FM_VERSION}, 16)
    path = Path(cache) / "fm" / f"{name}-{key}.pt"
    card_path = path.with_suffix(".json")
    with locked(path.with_suffix(".lock")):
        if path.is_file() and card_path.is_file() and not force:
            c = json.loads(card_path.read_text())
            if (c.get("probe") or {}).get("version") != PROBE_VERSION:  # an older card: redo only the probe
                c["probe"] = _probe(name, cfg, load_encoder(name, cfg, path), _corpus(scale, cfg, progress), cache)
                with atomic_path(card_path, ".json") as tmp:
                    tmp.write_text(json.dumps(c, indent=1))
            return path
        t0 = time.perf_counter()
        corpus = _corpus(scale, cfg, progress)
        data = _Images(name, _unlabelled(corpus), pipeline_for(name, cfg), cache, flips=True, progress=progress)
        encoder = load_encoder(name, cfg, None).train()  # torch seed 0: the probe's random control starts here too
        decoder = masked_decoder(encoder)
        dtype = pretrain_dtype(device)
        target_fn = reconstruction_target(name, cfg)
        params = list(encoder.parameters()) + list(decoder.parameters())
        opt = torch.optim.Adam(params, lr=float(p["lr"]))
        steps = int(p["epochs"]) * int(p["steps_per_epoch"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + np.cos(np.pi * min(t, steps) / steps)))
        gen = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)
        encoder.to(device).train()
        decoder.to(device).train()
        losses = []
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"pretrain {name}", disable=not progress, leave=False)
        for epoch in range(int(p["epochs"])):
            total = 0.0
            for _ in range(int(p["steps_per_epoch"])):
                pick = rng.choice(len(data), size=min(int(p["batch_size"]), len(data)), replace=False)
                x = torch.stack([data[int(j)] for j in pick]).to(device)
                loss = masked_step(encoder, decoder, opt, x, p, gen, dtype, target_fn)
                sched.step()
                value = loss.item()
                total += value
                bar.update()
                bar.set_postfix(loss=f"{value:.4f}")
            losses.append(total / int(p["steps_per_epoch"]))
            log.info("pretrain %s epoch %d/%d: masked L1 %.4f", name, epoch + 1, int(p["epochs"]), losses[-1])
        bar.close()
        encoder.cpu().eval()
        save_official(encoder, path)
        c = {"encoder": name, "scale": scale, "config": cfg, "fm_version": FM_VERSION, "corpus": corpus.name,
             "corpus_patients": len(data), "objective": "masked-image modelling (masked L1"
             + (f" on the {p['target_window'][0]:g}…{p['target_window'][1]:g} HU window)" if target_fn else ")"),
             "loss_per_epoch": [round(v, 5) for v in losses],
             "seconds": round(time.perf_counter() - t0, 1), "weights_sha256": file_hash(path),
             "device": device, "precision": str(dtype or torch.float32).replace("torch.", ""),
             "torch": torch.__version__, "threads": torch.get_num_threads()}
        c["probe"] = _probe(name, cfg, encoder, corpus, cache)
        with atomic_path(card_path, ".json") as tmp:
            tmp.write_text(json.dumps(c, indent=1))
        log.info("pretrain %s: loss %.4f → %.4f, %s, %.0f s", name, losses[0], losses[-1], probe_summary(c), c["seconds"])
        return path


PROBE_VERSION = 5  # 3: + necrosis, the tumour trait the synthetic CT shows; 4: paired verdict; 5: R² >= PROBE_MIN_R2
PROBE_WINS = 9  # "beats the random encoder": above it in at least this many of the PROBE_SPLITS halvings ...
PROBE_MIN_R2 = 0.05  # ... with a mean R² that explains at least 5 % of the target's variance
PROBE_SPLITS = 10
PROBE_TARGETS = {"log_mtv": "log(1 + total tumour volume, cc)", "eta": "the true log-hazard η",
                 "necrosis": "necrosis present (1/0: a necrotic primary core or a necrotic node; on CT a 15 HU core "
                             "in 40 HU tumour, while tumour against 45 HU muscle is nearly invisible)"}


def _probe(name: str, cfg: dict, encoder: nn.Module, corpus, cache: Path) -> dict:
    """Ridge probes from frozen features of the corpus images (no augmentation) to its ground truth (log total
    tumour volume, the true risk η, necrosis present): held-out R² averaged over ``PROBE_SPLITS`` random halvings, for the
    encoder and for the same architecture at its random initialisation (torch seed 0, the state pretraining
    started from)."""
    data = _Images(name, _unlabelled(corpus), pipeline_for(name, cfg), cache)
    feats = {"pretrained": embed(encoder, data), "random_init": embed(load_encoder(name, cfg, None), data)}
    y = probe_targets(corpus.groundtruth().loc[data.ids])
    out = {"version": PROBE_VERSION, "metric": f"held-out R², mean ± sd over {PROBE_SPLITS} random halvings",
           "targets": {}}
    for key, target in y.items():
        res, r2 = {}, {}
        for which, f in feats.items():
            r2[which] = np.array([probe_r2(f, target, seed=s) for s in range(PROBE_SPLITS)])
            res[which] = [round(float(r2[which].mean()), 4), round(float(r2[which].std()), 4)]
        wins, beats = probe_verdict(r2["pretrained"], r2["random_init"])
        out["targets"][key] = {"description": PROBE_TARGETS[key], **res, "wins": wins, "beats_random": beats}
    out["verdict"] = (f"beats the random encoder: R² above it on the same halving in ≥ {PROBE_WINS} of "
                      f"{PROBE_SPLITS}, and mean R² ≥ {PROBE_MIN_R2:g}")
    return out


def probe_targets(truth) -> dict[str, np.ndarray]:
    """The probe's targets (``PROBE_TARGETS``) from a synthetic cohort's ground-truth table, in its row order."""
    return {"log_mtv": np.log1p(truth["mtv_primary_cc"].to_numpy(float) + truth["mtv_nodes_cc"].to_numpy(float)),
            "eta": truth["eta"].to_numpy(float),
            "necrosis": ((truth["primary_necrotic"].to_numpy(float) > 0)
                         | (truth["node_necrosis"].to_numpy(float) > 0)).astype(float)}


def probe_verdict(pretrained, random_init) -> tuple[int, bool]:
    """(halvings on which the pretrained probe's R² is above the random encoder's, whether that makes it beat
    the random encoder: in at least ``PROBE_WINS`` of them, with a mean R² of at least ``PROBE_MIN_R2`` — a
    consistent edge of R² 0.005 over −0.006 is no usable information)."""
    a, b = np.asarray(pretrained, float), np.asarray(random_init, float)
    wins = int((a > b).sum())
    return wins, bool(wins >= PROBE_WINS and a.mean() >= PROBE_MIN_R2)


def probe_summary(c: dict) -> str:
    t = ((c.get("probe") or {}).get("targets")) or {}
    return "; ".join(f"probe R² {k} {v['pretrained'][0]:.3f} (random init {v['random_init'][0]:.3f}"
                     f"{', beats it' if v.get('beats_random') else ', does not beat it'})"
                     for k, v in t.items()) or "no probe"


def _unlabelled(dataset) -> dict:
    """The corpus's image files without masks: self-supervised pretraining reads no labels."""
    from bench.data import ImageFiles

    if dataset.images is None:
        raise BenchInputError(f"encoder pretraining: corpus {dataset.name} has no images")
    return {i: ImageFiles(f.ct, f.pet, None) for i, f in dataset.images.items()}


def card(path: Path) -> dict | None:
    p = Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else None


# -- frozen features -------------------------------------------------------------------------------------------
def encoder_dim(name: str, cfg: dict) -> int:
    if name == "ct-fm":
        return int(cfg["init_filters"]) * 2 ** (len(cfg["blocks_down"]) - 1)
    return int(cfg["dim"])


def resolve_weights(name: str, scale: str, cfg: dict, *, cache: Path, device: str = "cpu",
                    progress: bool = True) -> tuple[Path | None, str]:
    """(weights file or None for the random control, a description naming them for the run's record)."""
    w = str(cfg.get("weights", "pretrain"))
    if w == "random":
        return None, f"{name}: random initialisation (torch seed 0), no pretraining"
    if w == "pretrain":
        path = pretrain(name, scale, cfg, cache=cache, device=device, progress=progress)
        c = card(path) or {}
        return path, (f"{name}: pretrained by the harness on {c.get('corpus', '?')} (masked-image modelling, "
                      f"sha256 {file_hash(path)[:12]})")
    path = Path(w).expanduser()
    load_official(build_encoder(name, cfg), path, name)  # a clear error now, not in the middle of a run
    return path, f"{name}: {path.name} (sha256 {file_hash(path)[:12]})"


def load_encoder(name: str, cfg: dict, weights: Path | None) -> nn.Module:
    torch.manual_seed(0)
    enc = build_encoder(name, cfg)
    if weights is not None:
        load_official(enc, weights, name)
    return enc.eval()


def cohort_features(name: str, cfg: dict, weights: Path | None, cohort, *, cache: Path, device: str = "cpu",
                    progress: bool = True) -> np.ndarray:
    """(n, dim) frozen embeddings of the cohort's patients, cached per (pipeline entry, weights)."""
    from bench.data import ImageFiles
    from bench.fsutil import atomic_path

    from bench.hashing import content_hash

    arch = content_hash({k: v for k, v in cfg.items() if k not in ("weights", "pretrain")}, 8)
    tag = f"{file_hash(weights)[:16] if weights is not None else 'random-seed0'}-{arch}"
    folder = Path(cache) / "fm-features" / f"{name}-v{FM_VERSION}-{tag}"
    files = {i: ImageFiles(f.ct, f.pet, None) for i, f in cohort.image_files.items()}
    data = _Images(name, files, pipeline_for(name, cfg), cache, progress=progress)
    paths = {pid: folder / f"{data.paths[pid].stem}.npy" for pid in data.ids}
    todo = [pid for pid in data.ids if not paths[pid].is_file()]
    if todo:
        t0 = time.perf_counter()
        sub = _Images(name, {i: files[i] for i in todo}, pipeline_for(name, cfg), cache)
        feats = embed(load_encoder(name, cfg, weights), sub, device=device)
        for pid, f in zip(todo, feats):
            with atomic_path(paths[pid], ".npy") as tmp:
                np.save(tmp, f.astype(np.float32))
        log.info("%s features: %d patient(s) embedded in %.1f s, %d from the cache", name, len(todo),
                 time.perf_counter() - t0, len(data.ids) - len(todo))
    return np.stack([np.load(paths[pid]) for pid in data.ids])
