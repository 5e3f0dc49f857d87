"""Frozen features: an encoder's embedding of each patient's pipeline box, and their cache.

A patient's box is the encoder's own pipeline setting (spacing, box, intensity convention; see ``specs``).
Embeddings are cached per (pipeline entry — content-hashed images, so a corrupted image gets its own —,
weights hash, encoder architecture) under ``<cache>/fm-features/``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from proposed.fm_encoders.networks import file_hash
from proposed.fm_encoders.specs import FM_VERSION, get_spec, load_encoder

log = logging.getLogger("bench.fm")


class RandomFlips:
    """Flips each spatial axis of a (1, z, y, x) array with probability ½, from its own seeded stream;
    ``set_random_state`` is the hook the trainer and the data loader reseed it through."""

    def __init__(self, seed: int = 0):
        self.set_random_state(seed)

    def set_random_state(self, seed: int = 0) -> "RandomFlips":
        self.rng = np.random.default_rng(seed)
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for axis in (1, 2, 3):
            if self.rng.random() < 0.5:
                x = np.flip(x, axis)
        return x


class EncoderImages(torch.utils.data.Dataset):
    """The encoder inputs (1, z, y, x) of the patients in ``files`` (id → ``ImageFiles``), through the shared
    pipeline cache (filled on creation); ``transform`` (optional) is applied to each."""

    def __init__(self, name: str, files: dict, cfg: dict, cache: Path, *, transform=None, progress: bool = False):
        from bench.data.pipeline import cache_path, preprocess

        self.spec = get_spec(name)
        self.files, self.pcfg, self.cache, self.transform = files, self.spec.pipeline(cfg), Path(cache), transform
        self.ids = list(files)
        preprocess(files, self.pcfg, self.cache, progress=progress)
        self.paths = {i: cache_path(files[i], self.pcfg, self.cache) for i in self.ids}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> torch.Tensor:
        from bench.data.pipeline import load

        pid = self.ids[i]
        x = self.spec.input(load(self.files[pid], self.pcfg, self.cache, path=self.paths[pid]))
        if self.transform is not None:
            x = self.transform(x)
        return torch.from_numpy(np.ascontiguousarray(x))


def without_masks(files: dict) -> dict:
    """id → ``ImageFiles`` with the mask left out: an encoder reads images only."""
    from bench.data import ImageFiles

    return {i: ImageFiles(f.ct, f.pet, None) for i, f in files.items()}


@torch.no_grad()
def embed(encoder: nn.Module, data, *, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
    """(n, dim) embeddings of a dataset of encoder inputs, in eval mode."""
    encoder.eval().to(device)
    out = []
    for i in range(0, len(data), batch_size):
        x = torch.stack([data[j] for j in range(i, min(len(data), i + batch_size))]).to(device)
        out.append(encoder(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def cohort_features(name: str, cfg: dict, weights: Path | None, cohort, *, cache: Path, device: str = "cpu",
                    progress: bool = True) -> np.ndarray:
    """(n, dim) frozen embeddings of the cohort's patients, cached per (pipeline entry, weights)."""
    from bench.fsutil import atomic_path
    from bench.hashing import content_hash

    arch = content_hash({k: v for k, v in cfg.items() if k not in ("weights", "pretrain")}, 8)
    tag = f"{file_hash(weights)[:16] if weights is not None else 'random-seed0'}-{arch}"
    folder = Path(cache) / "fm-features" / f"{name}-v{FM_VERSION}-{tag}"
    files = without_masks(cohort.image_files)
    data = EncoderImages(name, files, cfg, cache, progress=progress)
    paths = {pid: folder / f"{data.paths[pid].stem}.npy" for pid in data.ids}
    todo = [pid for pid in data.ids if not paths[pid].is_file()]
    if todo:
        t0 = time.perf_counter()
        sub = EncoderImages(name, {i: files[i] for i in todo}, cfg, cache)
        feats = embed(load_encoder(name, cfg, weights), sub, device=device)
        for pid, f in zip(todo, feats):
            with atomic_path(paths[pid], ".npy") as tmp:
                np.save(tmp, f.astype(np.float32))
        log.info("%s features: %d patient(s) embedded in %.1f s, %d from the cache", name, len(todo),
                 time.perf_counter() - t0, len(data.ids) - len(todo))
    return np.stack([np.load(paths[pid]) for pid in data.ids])
