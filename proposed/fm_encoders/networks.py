"""The two encoder networks and their official checkpoint layouts.

**CT-FM** (Pai et al., 2025): MONAI ``SegResEncoder`` (init filters 32, ``blocks_down`` [1, 2, 2, 4, 4], batch
norm, ReLU); the embedding is the global average of the last (stride-16) level: 512 features at paper size.
Checkpoint layouts read: the bare ``SegResEncoder`` keys of ``project-lighter/ct_fm_feature_extractor``
(``conv_init.weight``, ``layers.{i}.blocks.{j}.conv1.weight``, …) and the ``encoder.``-prefixed keys of the legacy
full SegResNetDS file (``pretrained_segresnet.torch``), also under ``backbone.``; nested under ``state_dict`` /
``model_state_dict`` / ``model`` as well. Written: bare keys.

**PET-FM** (SegAnyPET, adapted from SAM-Med3D's ``vit_b_ori`` image encoder): a 3D ViT-B — Conv3d patch
embedding (16³, 1 channel → 768), absolute position embedding on the 8³ token grid (channels last), 12
pre-norm blocks (LayerNorm eps 1e-6, multi-head attention with qkv bias and decomposed relative position
bias along d/h/w, MLP ×4 with GELU), windowed attention (window 14, the grid zero-padded to a multiple of it)
except in the global blocks 2, 5, 8, 11, and the neck (1×1×1 conv → LayerNorm3d → 3×3×3 conv → LayerNorm3d,
384 channels), kept for the checkpoint but not used: the embedding is the mean of the last block's tokens
(768 features), as in the FM paper. Checkpoint layout: SAM-Med3D's training checkpoint,
``{"model_state_dict": {"image_encoder.<key>": …}}`` (also a bare state dict, with or without the
``image_encoder.`` prefix). Written: that layout.

Every encoder has ``dim`` (embedding width), ``stride`` (input voxels per feature-map cell along an axis),
``feature_map(x)``, ``forward(x)`` (the embedding), ``official_state_dict()`` and ``module_key(key)`` (a
checkpoint key → this module's key, or None for keys of other parts of the published model).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchInputError


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

