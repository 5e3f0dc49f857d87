"""Self-supervised pretraining of an encoder by the harness, on the shared trainer (``bench.nn.Trainer``).

Masked-image modelling (SimMIM-style): random cubes of ``mask_patch`` voxels are zeroed with probability
``mask_ratio``, a 1×1×1 convolution + voxel shuffle reconstructs the image from the encoder's last feature map,
and the loss is the L1 error on the masked voxels (of the encoder's reconstruction target: CT-FM's is the
soft-tissue window of its input, see ``specs``). The corpus is *external*: the synthetic cohort of the same
scale generated with ``corpus_seed`` (never the benchmark's seed-0 patients), read without masks and with
random flips. Adam at ``lr`` with a cosine decay over the epochs, ``steps_per_epoch`` batches of
``batch_size`` per epoch; the last epoch's weights are kept.

The weights are cached (``<cache>/fm/<encoder>-<hash>.pt``, official layout) with a card ``<weights>.json``
(loss per epoch, the linear probe of ``probe``, seconds, set-up). A killed pretraining resumes from the
trainer's per-epoch checkpoint beside the weights. Pretraining is seeded throughout (initialisation, batches,
flips and masks per epoch): on the same device type, torch build and CPU thread count (both in the card) it
repeats bit for bit; another thread count gives other bits; CUDA kernels are not bit-reproducible.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchInputError
from bench.nn.trainer import TrainConfig, Trainer, autocast
from proposed.fm_encoders.features import EncoderImages, RandomFlips, without_masks
from proposed.fm_encoders.networks import file_hash, load_official, save_official
from proposed.fm_encoders.probe import PROBE_VERSION, probe_summary, run_probe
from proposed.fm_encoders.specs import FM_VERSION, build_encoder, get_spec, load_encoder

log = logging.getLogger("bench.fm")


# -- the objective ---------------------------------------------------------------------------------------------
def _voxel_shuffle(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, s³, d, h, w) → (B, 1, d·s, h·s, w·s)."""
    b, _, d, h, w = x.shape
    return x.view(b, s, s, s, d, h, w).permute(0, 4, 1, 5, 2, 6, 3).reshape(b, 1, d * s, h * s, w * s)


def _cube_mask(shape, patch: int, ratio: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """1 on random cubes of ``patch`` voxels (each with probability ``ratio``), drawn on the CPU from ``gen``
    (None: torch's global generator)."""
    b, _, d, h, w = shape
    coarse = (torch.rand(b, 1, d // patch, h // patch, w // patch, generator=gen) < ratio).float()
    return coarse.repeat_interleave(patch, 2).repeat_interleave(patch, 3).repeat_interleave(patch, 4)


def masked_decoder(encoder: nn.Module) -> nn.Module:
    """The pretraining head: a 1×1×1 convolution from the feature map to the stride³ voxels of each cell."""
    return nn.Conv3d(encoder.dim, encoder.stride ** 3, 1)


def masked_loss(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, mask: torch.Tensor,
                target: torch.Tensor | None = None) -> torch.Tensor:
    """Masked-image modelling: the L1 error of the reconstruction of the masked voxels (``mask`` = 1) from
    the image with them zeroed. ``target``: what is reconstructed (default: the image itself)."""
    rec = _voxel_shuffle(decoder(encoder.feature_map(x * (1 - mask))), encoder.stride)
    target = x if target is None else target
    return ((rec.float() - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedImageModel(nn.Module):
    """Encoder + reconstruction head; ``forward(x)`` draws a fresh cube mask (torch's global generator, which
    the trainer seeds per epoch) and returns the masked loss."""

    def __init__(self, encoder: nn.Module, mask_patch: int, mask_ratio: float, target_fn=None):
        super().__init__()
        self.encoder, self.decoder = encoder, masked_decoder(encoder)
        self.mask_patch, self.mask_ratio, self.target_fn = int(mask_patch), float(mask_ratio), target_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = _cube_mask(x.shape, self.mask_patch, self.mask_ratio).to(x.device)
        return masked_loss(self.encoder, self.decoder, x, mask, None if self.target_fn is None else self.target_fn(x))


def pretrain_dtype(device: str) -> torch.dtype | None:
    """Pretraining's autocast dtype: bf16 on a CUDA device that has it (no gradient scaler needed), full
    precision (None) otherwise."""
    return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else None


def masked_step(encoder: nn.Module, decoder: nn.Module, opt, x: torch.Tensor, p: dict, gen: torch.Generator,
                dtype: torch.dtype | None, target_fn=None) -> torch.Tensor:
    """One optimiser step of the objective on the batch ``x`` outside the trainer (``p``: the pretrain table;
    ``dtype``: autocast, None = full precision), for timing it alone. Returns the loss."""
    mask = _cube_mask(x.shape, int(p["mask_patch"]), float(p["mask_ratio"]), gen).to(x.device)
    target = None if target_fn is None else target_fn(x)
    with autocast(x.device.type, dtype):
        loss = masked_loss(encoder, decoder, x, mask, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train_config(p: dict, n_patients: int, device: str) -> TrainConfig:
    """The trainer's settings for the pretrain table ``p``."""
    amp = {None: "off", torch.bfloat16: "bf16"}[pretrain_dtype(device)]
    return TrainConfig(epochs=int(p["epochs"]), batch_size=min(int(p["batch_size"]), n_patients),
                       steps_per_epoch=int(p["steps_per_epoch"]), lr=float(p["lr"]), optimizer="adam",
                       schedule="cosine", keep="last", balanced=False, amp=amp)


# -- the corpus ------------------------------------------------------------------------------------------------
def corpus(scale: str, cfg: dict, progress: bool):
    """The external corpus: the synthetic cohort of ``scale`` generated with ``pretrain.corpus_seed``."""
    from bench.data import load_dataset

    seed = int(cfg["pretrain"]["corpus_seed"])
    if seed == 0:
        raise BenchInputError("encoder pretraining: corpus_seed = 0 is the benchmark's own synthetic cohort; "
                              "the corpus must be external (any other seed)")
    return load_dataset(f"synthetic:{scale}:{seed}", scale, progress=progress)


def unlabelled(dataset) -> dict:
    """The corpus's image files without masks: self-supervised pretraining reads no labels."""
    if dataset.images is None:
        raise BenchInputError(f"encoder pretraining: corpus {dataset.name} has no images")
    return without_masks(dataset.images)


class _TrainingImages(EncoderImages):
    """The corpus as the trainer reads it: {"id", "image"} items, randomly flipped."""

    def __getitem__(self, i: int) -> dict:
        return {"id": self.ids[i], "image": super().__getitem__(i)}


def _masked_image_step(model: MaskedImageModel, batch: dict) -> dict[str, torch.Tensor]:
    return {"loss": model(batch["image"])}


# -- pretraining and its cache ---------------------------------------------------------------------------------
def pretrain(name: str, scale: str, cfg: dict, *, cache: Path, device: str = "cpu", progress: bool = True,
             force: bool = False) -> Path:
    """Pretrain the encoder on the external corpus (masked-image modelling), or return the cached weights;
    writes ``<weights>.json``, the card (loss per epoch, probe R² pretrained vs random, seconds)."""
    from bench.fsutil import locked
    from bench.hashing import content_hash

    arch = {k: v for k, v in cfg.items() if k != "weights"}
    key = content_hash({"encoder": name, "scale": scale, "config": arch, "version": FM_VERSION}, 16)
    path = Path(cache) / "fm" / f"{name}-{key}.pt"
    with locked(path.with_suffix(".lock")):
        c = None if force else card(path)
        if path.is_file() and c is not None:
            if (c.get("probe") or {}).get("version") != PROBE_VERSION:  # an older card: redo only the probe
                ds = corpus(scale, cfg, progress)
                c["probe"] = run_probe(name, cfg, load_encoder(name, cfg, path),
                                       EncoderImages(name, unlabelled(ds), cfg, cache), ds.groundtruth())
                _write_card(path, c)
            return path
        t0 = time.perf_counter()
        ds = corpus(scale, cfg, progress)
        encoder, history, trainer = _train(name, cfg, unlabelled(ds), cache=cache, device=device, progress=progress,
                                           checkpoint=path.with_name(f"{path.stem}.checkpoint.pt"))
        save_official(encoder, path)
        c = _new_card(name, scale, cfg, ds.name, len(ds.images), history["loss"], trainer, path,
                      time.perf_counter() - t0)
        c["probe"] = run_probe(name, cfg, encoder, EncoderImages(name, unlabelled(ds), cfg, cache), ds.groundtruth())
        _write_card(path, c)
        loss = c["loss_per_epoch"]
        log.info("pretrain %s: loss %.4f → %.4f, %s, %.0f s", name, loss[0], loss[-1], probe_summary(c), c["seconds"])
        return path


def _new_card(name: str, scale: str, cfg: dict, corpus_name: str, n_patients: int, losses: list[float],
              trainer: Trainer, weights: Path, seconds: float) -> dict:
    """The card of freshly pretrained weights, without its probe: recipe, corpus, objective, loss per epoch,
    and the set-up that bit-for-bit repetition depends on."""
    p = cfg["pretrain"]
    windowed = get_spec(name).target(cfg) is not None
    return {"encoder": name, "scale": scale, "config": cfg, "fm_version": FM_VERSION, "corpus": corpus_name,
            "corpus_patients": n_patients, "objective": "masked-image modelling (masked L1"
            + (f" on the {p['target_window'][0]:g}…{p['target_window'][1]:g} HU window)" if windowed else ")"),
            "loss_per_epoch": [round(v, 5) for v in losses], "seconds": round(seconds, 1),
            "weights_sha256": file_hash(weights), "device": trainer.device,
            "precision": str(trainer.dtype or torch.float32).replace("torch.", ""),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def _write_card(weights: Path, c: dict) -> None:
    from bench.fsutil import atomic_path

    with atomic_path(weights.with_suffix(".json"), ".json") as tmp:
        tmp.write_text(json.dumps(c, indent=1))


def _train(name: str, cfg: dict, files: dict, *, cache: Path, device: str, progress: bool,
           checkpoint: Path) -> tuple[nn.Module, dict, Trainer]:
    """Masked-image modelling of the encoder (torch seed 0's initialisation, the probe's random control) on
    ``files`` with the shared trainer. Returns (the encoder on the CPU in eval mode, history, the trainer)."""
    p = cfg["pretrain"]
    data = _TrainingImages(name, files, cfg, cache, transform=RandomFlips(), progress=progress)
    model = MaskedImageModel(load_encoder(name, cfg, None), p["mask_patch"], p["mask_ratio"],
                             get_spec(name).target(cfg))
    trainer = Trainer(train_config(p, len(data), device), device=device, checkpoint=checkpoint, logger=log,
                      progress=progress, desc=f"pretrain {name}")
    model, history = trainer.fit(model, data, _masked_image_step)
    return model.encoder.cpu().eval(), history, trainer


def card(path: Path) -> dict | None:
    """The card written beside pretrained weights, or None."""
    p = Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else None


def resolve_weights(name: str, scale: str, cfg: dict, *, cache: Path, device: str = "cpu",
                    progress: bool = True) -> tuple[Path | None, str]:
    """(weights file or None for the random control, a description naming them for the run's record).

    ``weights`` in the encoder config: a file path (official layout; a missing file or one that does not
    match the architecture is a clear error naming the keys), ``"random"`` (the untrained control), or
    ``"pretrain"`` (the harness pretrains the encoder, cached)."""
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
