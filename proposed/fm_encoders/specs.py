"""One spec per encoder: everything that differs between CT-FM and PET-FM, looked up by name in ``SPECS``.

A spec says how to build the network from its config, how wide its embedding is, which image pipeline box and
intensity convention it reads, what its pretraining reconstructs, and its default config per scale.

Input conventions (the FM paper's): CT-FM reads HU clipped to −1000…2000 and scaled to 0…1 (the image
pipeline's ``ct_window``; CT-FM's own scripts use −1024…2048). PET-FM reads PET clipped at its 0.5 and 99.5
percentiles and min–max scaled to 0…1 (SAM-Med3D itself z-normalises over voxels > 0).

Config keys shared by both encoders: ``spacing_mm``, ``weights`` (a checkpoint path, ``"random"`` or
``"pretrain"``) and ``pretrain`` (the masked-image-modelling recipe, ``proposed.fm_encoders.pretraining``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from bench.errors import BenchInputError
from proposed.fm_encoders.networks import CTFMEncoder, PETFMEncoder, load_official

# Part of every pretraining and feature cache key and of the FM variants' method version: bump it when
# pretraining or extraction changes what the weights or features are.
FM_VERSION = "3"

PET_CLIP = (0.5, 99.5)  # percentiles, then min–max to [0, 1]
PET_SUV_RANGE = 1000.0  # the pipeline's SUV scale for the PET encoder: no clipping before the percentiles

_PRETRAIN = {"corpus_seed": 1, "epochs": 30, "batch_size": 8, "steps_per_epoch": 24, "lr": 1e-3,
             "mask_ratio": 0.6, "mask_patch": 8}


@dataclass(frozen=True)
class EncoderSpec:
    """What makes one encoder: ``configs`` maps a scale to its default config (plain data, hashed into cache
    keys and the FM variants' configs); the callables take a resolved config (or, for ``input``, one image
    pipeline entry)."""

    name: str
    configs: dict[str, dict[str, Any]]
    build: Callable[[dict], nn.Module]
    dim: Callable[[dict], int]
    pipeline: Callable[[dict], Any]  # -> bench.data.pipeline.PipelineConfig: spacing, box, intensity scaling
    input: Callable[[dict], np.ndarray]  # pipeline entry -> (1, z, y, x) float32 in 0…1
    target: Callable[[dict], Callable | None] = field(default=lambda cfg: None)  # pretraining target, None: x


# -- CT-FM -----------------------------------------------------------------------------------------------------
def _ct_pipeline(cfg: dict):
    from bench.data.pipeline import PipelineConfig

    return PipelineConfig(spacing_mm=float(cfg["spacing_mm"]), size=tuple(int(v) for v in cfg["box"]),
                          ct_window=tuple(float(v) for v in cfg["ct_window"]))


def _ct_input(entry: dict) -> np.ndarray:
    return entry["ct"][None].astype(np.float32)


def _soft_tissue_target(cfg: dict):
    """CT-FM's reconstruction target as a function of its input, or None when ``pretrain.target_window`` is
    not set (then the input itself).

    The input keeps the FM convention (HU −1000…2000 → 0…1), where tumour (40 HU, necrotic core 15 HU) against
    muscle (45 HU) differs by a few thousandths, so an L1 on the input is dominated by air, bone and fat edges.
    The target re-windows the same voxels to ``pretrain.target_window`` (HU; soft tissue −200…300 by default),
    so the objective weighs the soft-tissue contrast the tumour shows."""
    tw = (cfg.get("pretrain") or {}).get("target_window")
    if tw is None:
        return None
    try:
        tlo, thi = (float(v) for v in tw)
    except (TypeError, ValueError):
        tlo = thi = float("nan")
    if not tlo < thi:
        raise BenchInputError(f"ct-fm pretrain.target_window = {tw!r}: give [low, high] HU with low < high")
    lo, hi = (float(v) for v in cfg["ct_window"])

    def target(x):
        return ((x * (hi - lo) + lo - tlo) / (thi - tlo)).clamp(0.0, 1.0)

    return target


_CT = {"ct_window": [-1000.0, 2000.0], "weights": "pretrain"}
_CT_PRETRAIN = _PRETRAIN | {"target_window": [-200.0, 300.0]}
CT_FM = EncoderSpec(
    name="ct-fm",
    configs={
        "paper": {"init_filters": 32, "blocks_down": [1, 2, 2, 4, 4], "spacing_mm": 1.0, "box": [128, 128, 48]}
        | _CT | {"pretrain": _CT_PRETRAIN | {"epochs": 100, "batch_size": 4, "steps_per_epoch": 200, "mask_patch": 16}},
        "quick": {"init_filters": 8, "blocks_down": [1, 1, 1, 1, 1], "spacing_mm": 3.0, "box": [48, 48, 16]}
        | _CT | {"pretrain": dict(_CT_PRETRAIN)},
        "smoke": {"init_filters": 4, "blocks_down": [1, 1, 1, 1, 1], "spacing_mm": 6.0, "box": [16, 16, 16]}
        | _CT | {"pretrain": _CT_PRETRAIN | {"epochs": 3, "steps_per_epoch": 4, "batch_size": 4, "mask_patch": 4}},
    },
    build=lambda c: CTFMEncoder(c["init_filters"], c["blocks_down"]),
    dim=lambda c: int(c["init_filters"]) * 2 ** (len(c["blocks_down"]) - 1),
    pipeline=_ct_pipeline,
    input=_ct_input,
    target=_soft_tissue_target,
)


# -- PET-FM ----------------------------------------------------------------------------------------------------
def _pet_pipeline(cfg: dict):
    from bench.data.pipeline import PipelineConfig

    return PipelineConfig(spacing_mm=float(cfg["spacing_mm"]), size=(int(cfg["img_size"]),) * 3,
                          pet_suv_max=PET_SUV_RANGE)


def _pet_input(entry: dict) -> np.ndarray:
    """PET clipped at its percentiles ``PET_CLIP`` and min–max scaled."""
    pet = entry["pet"].astype(np.float32)
    lo, hi = np.percentile(pet, PET_CLIP)
    return np.clip((pet - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)[None].astype(np.float32)


PET_FM = EncoderSpec(
    name="pet-fm",
    configs={
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
    build=lambda c: PETFMEncoder(c["img_size"], c["patch"], c["dim"], c["depth"], c["heads"], c["mlp_ratio"],
                                 c["out_chans"], c["window"], c["global_blocks"]),
    dim=lambda c: int(c["dim"]),
    pipeline=_pet_pipeline,
    input=_pet_input,
)

SPECS: dict[str, EncoderSpec] = {s.name: s for s in (CT_FM, PET_FM)}
ENCODERS: dict[str, dict[str, dict[str, Any]]] = {name: s.configs for name, s in SPECS.items()}  # name → scale → config


# -- by name ---------------------------------------------------------------------------------------------------
def get_spec(name: str) -> EncoderSpec:
    if name not in SPECS:
        raise BenchInputError(f"unknown encoder {name!r}: choose one of {', '.join(SPECS)}")
    return SPECS[name]


def encoder_config(name: str, scale: str, overrides: dict | None = None) -> dict:
    """A copy of the encoder's config at ``scale`` with ``overrides`` (``pretrain`` merged key by key)."""
    cfg = json.loads(json.dumps(get_spec(name).configs[scale]))
    for k, v in (overrides or {}).items():
        if k == "pretrain" and isinstance(v, dict):
            cfg["pretrain"] |= v
        elif k not in cfg:
            raise BenchInputError(f"{name}: unknown encoder setting {k!r} (known: {', '.join(sorted(cfg))})")
        else:
            cfg[k] = v
    return cfg


def build_encoder(name: str, cfg: dict) -> nn.Module:
    return get_spec(name).build(cfg)


def encoder_dim(name: str, cfg: dict) -> int:
    return get_spec(name).dim(cfg)


def pipeline_for(name: str, cfg: dict):
    """The image pipeline setting an encoder reads: its spacing and box, its intensity convention."""
    return get_spec(name).pipeline(cfg)


def encoder_input(name: str, entry: dict) -> np.ndarray:
    """(1, z, y, x) float32 from a pipeline entry, in the encoder's input convention."""
    return get_spec(name).input(entry)


def reconstruction_target(name: str, cfg: dict):
    """The pretraining target as a function of the encoder's input, or None (the input itself)."""
    return get_spec(name).target(cfg)


def load_encoder(name: str, cfg: dict, weights: Path | None) -> nn.Module:
    """The encoder at torch seed 0's initialisation, with ``weights`` (official layout) loaded when given."""
    import torch

    torch.manual_seed(0)
    enc = build_encoder(name, cfg)
    if weights is not None:
        load_official(enc, weights, name)
    return enc.eval()
