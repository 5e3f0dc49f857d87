"""Foundation-model encoders for the FM variants (``proposed.fm``): architectures shaped like the public CT and
PET foundation models, their official checkpoint layouts, self-supervised pretraining by the harness on an
external corpus, and frozen feature extraction with a cache.

Modules:

- ``networks``: ``CTFMEncoder`` (MONAI SegResEncoder) and ``PETFMEncoder`` (SAM-Med3D's 3D ViT image encoder),
  reading and writing their official checkpoint layouts (``save_official``, ``load_official``, ``file_hash``);
- ``specs``: one ``EncoderSpec`` per encoder in ``SPECS`` (builder, embedding width, pipeline box and input
  convention, reconstruction target, default config per scale) and the functions that look them up by name;
- ``pretraining``: masked-image modelling on the external corpus with ``bench.nn.Trainer``, the weights cache
  and its card, ``resolve_weights``;
- ``probe``: the card's linear probe of the frozen features against the random encoder;
- ``features``: the encoder inputs of a cohort and the cached frozen embeddings (``cohort_features``);
- ``cli``: ``bench pretrain``, added to ``bench`` through the entry-point group ``bench.commands``.

The names below are importable from this package; each submodule is imported on first use, so loading the
``bench pretrain`` command (``bench --help``) does not import torch.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "networks": ("CTFMEncoder", "LayerNorm3d", "PETFMEncoder", "_Block", "file_hash", "load_official",
                 "save_official"),
    "specs": ("ENCODERS", "EncoderSpec", "FM_VERSION", "PET_CLIP", "PET_SUV_RANGE", "SPECS", "build_encoder",
              "encoder_config", "encoder_dim", "encoder_input", "get_spec", "load_encoder", "pipeline_for",
              "reconstruction_target"),
    "features": ("EncoderImages", "RandomFlips", "cohort_features", "embed", "without_masks"),
    "probe": ("PROBE_MIN_R2", "PROBE_SPLITS", "PROBE_TARGETS", "PROBE_VERSION", "PROBE_WINS", "probe_r2",
              "probe_summary", "probe_targets", "probe_verdict", "run_probe"),
    "pretraining": ("MaskedImageModel", "card", "corpus", "masked_decoder", "masked_loss", "masked_step",
                    "pretrain", "pretrain_dtype", "resolve_weights", "unlabelled"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(n for n in _MODULE_OF if not n.startswith("_"))


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
