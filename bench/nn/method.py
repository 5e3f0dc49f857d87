"""``ImageSurvivalMethod``: what every deep PET/CT method shares, so a new one writes only its network.

A subclass sets ``configs`` and implements ``build_network(n_clinical) -> nn.Module`` whose
``forward(image, clinical)`` returns ``{"surv": (B, head.n_outputs), "seg": (B, 2, Z, Y, X) logits}`` (``seg``
only for segmenting methods), optionally ``"losses"`` (name → weighted scalar, added to the training loss
and logged per epoch; a network computes them in training mode only) and ``"logs"`` (name → scalar, logged
only). A network may also define ``epoch_logs() -> dict`` (statistics it gathered over a training epoch,
e.g. codebook use), stored per epoch with the run. This class does the rest:

- inputs: the image pipeline (``spacing_mm``, ``box`` in voxels x, y, z, centred on the PET hot region, never
  on a reference mask) through the shared cache; training crops ``crop`` voxels at random inside the box with
  MONAI flips and intensity jitter (``augment``); validation and prediction use the centred crop; the clinical
  table, when ``clinical`` is on, through the train-fitted ``bench.clinical.ClinicalEncoder``;
- the loss: ``surv_weight`` × the survival head's loss (``bench.nn.losses``) + ``seg_weight`` × the
  segmentation loss (MONAI Dice or Dice + Focal on GTVp/GTVn) for batches that carry a mask, + ``surv_l2``/2 ×
  the squared weights of the network's ``survival_layer`` (the last layer before the head; torchmtlr's ``C1``
  regulariser, which TMSS uses) when ``surv_l2`` > 0;
- training: ``bench.nn.Trainer`` with the ``train`` table (epochs, lr, schedule, EMA, clipping, early
  stopping on the validation split's Harrell C, balanced batches, AMP on CUDA, checkpoint/resume);
- outputs: risk and survival curve from the head on its own grid (a Cox head's Breslow baseline is fitted on
  the training patients' outputs after training); a segmenting method's label map is pasted back into the box
  and resampled (nearest neighbour) onto the patient's native CT grid, where the harness scores Dice.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import ClassVar

import numpy as np

from bench.method import Method, Prediction

def _zyx(xyz) -> tuple[int, int, int]:
    return tuple(int(v) for v in reversed(list(xyz)))


class ImageSurvivalMethod(Method):
    consumes: ClassVar[tuple[str, ...]] = ("ct", "pet", "mask")
    family: ClassVar[str] = "deep"
    produces: ClassVar[tuple[str, ...]] = ("risk", "survival", "segmentation")
    # One GPU per fit at paper scale; smaller fits share one. The CPUs are torch's threads on a CPU and the
    # image pipeline's process pool.
    resources: ClassVar[dict[str, dict[str, float]]] = {
        "smoke": {"cpus": 2, "gpus": 0.25, "memory_gb": 2.0},
        "quick": {"cpus": 2, "gpus": 0.5, "memory_gb": 6.0},
        "paper": {"cpus": 8, "gpus": 1, "memory_gb": 32.0},
    }

    def warm_cache(self, cohort) -> None:
        """The cohort's volumes through the image pipeline, into the shared cache."""
        from bench.data import cache_dir
        from bench.data.pipeline import preprocess

        preprocess(dict(cohort.image_files), self.pipeline_config(), cache_dir(), progress=self.ctx.progress)

    # -- config --------------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: dict) -> list[str]:
        from bench.nn.losses import HEADS
        from bench.nn.trainer import TrainConfig

        problems = []
        try:
            problems += TrainConfig.from_dict(config["train"]).problems()
        except Exception as exc:  # unknown keys
            problems.append(str(exc))
        box, crop = config["box"], config["crop"]
        if len(box) != 3 or len(crop) != 3 or any(int(c) < 1 or int(c) > int(b) for b, c in zip(box, crop)):
            problems.append(f"crop {crop} must be 3 positive sizes no larger than box {box} (voxels x, y, z)")
        if not config["spacing_mm"] > 0:
            problems.append(f"spacing_mm = {config['spacing_mm']} must be > 0")
        if not config["width"] > 0:
            problems.append(f"width = {config['width']} must be > 0")
        if config["head"] not in HEADS:
            problems.append(f"head = {config['head']!r}: choose one of {', '.join(HEADS)}")
        for key in ("surv_weight", "seg_weight", "surv_l2"):
            if key in config and not config[key] >= 0:
                problems.append(f"{key} = {config[key]} must be >= 0")
        if config.get("seg_loss", "dice") not in ("dice", "dicefocal"):
            problems.append(f"seg_loss = {config['seg_loss']!r}: choose dice or dicefocal")
        return problems + cls.check_network(config)

    @classmethod
    def check_network(cls, config: dict) -> list[str]:
        """Complaints about the network part of the config (sizes a network cannot take)."""
        return []

    @property
    def segments(self) -> bool:
        return "segmentation" in self.produces

    def pipeline_config(self):
        from bench.data.pipeline import PipelineConfig

        c = self.config
        return PipelineConfig(spacing_mm=float(c["spacing_mm"]), size=tuple(int(v) for v in c["box"]))

    def make_head(self):
        from bench.nn.losses import make_head

        c = self.config
        return make_head(c["head"], **{k: c[k] for k in ("n_times", "edges", "n_bins", "alpha", "sigma") if k in c})

    def build_network(self, n_clinical: int):
        """The network; ``n_clinical`` is the width of the tabular vector beside the image (the clinical
        encoding when ``clinical`` is on, plus ``n_extra_inputs()``), 0 when there is none."""
        raise NotImplementedError(f"{type(self).__name__}.build_network")

    # -- data ----------------------------------------------------------------------------------------------
    def _dataset(self, cohort, *, train: bool, tabular: bool = True):
        from bench.data import cache_dir
        from bench.data.torchdata import CentreCrop, PetCtDataset, augmentation

        crop = _zyx(self.config["crop"])
        augment = self.config.get("augment", True)
        # training: a random crop (+ flips and intensity jitter unless ``augment`` is off); otherwise the centre
        flips = augment and self.config.get("flips", True)
        # masks ride along only for a segmenting method (a survival-only one needs none, and data may lack them)
        with_mask = cohort.has_outcomes and self.segments
        transform = (augmentation(with_mask=with_mask, crop=crop, flips=flips, jitter=augment)
                     if train else CentreCrop(crop))
        clinical = self._tabular(cohort) if tabular else None
        return PetCtDataset(cohort, self.pipeline_config(), cache_dir(), transform=transform, clinical=clinical,
                            progress=self.ctx.progress, masks=self.segments)

    def _tabular(self, cohort):
        """The vector beside the image: the clinical encoding (when ``clinical``), then ``extra_inputs`` (zeros
        until the method can compute them, e.g. during AdaMSS's stage I); None when both are empty."""
        parts = []
        if getattr(self, "clinical_", None) is not None:
            parts.append(np.asarray(self.clinical_.transform(cohort.clinical), dtype=np.float32))
        k = self.n_extra_inputs()
        if k:
            extra = self.extra_inputs(cohort)
            extra = np.zeros((len(cohort), k), np.float32) if extra is None else np.asarray(extra, np.float32)
            if extra.shape != (len(cohort), k):
                raise ValueError(f"{type(self).__name__}.extra_inputs gave shape {extra.shape}, "
                                 f"expected ({len(cohort)}, {k})")
            parts.append(extra)
        return np.hstack(parts) if parts else None

    def n_extra_inputs(self) -> int:
        """How many features ``extra_inputs`` appends to the clinical vector (fixed before training, because
        the network is built once)."""
        return 0

    def extra_inputs(self, cohort) -> np.ndarray | None:
        """Features (n, ``n_extra_inputs()``) appended to the clinical vector, e.g. radiomics of predicted
        contours; None while they cannot be computed yet (zeros are fed). Datasets are rebuilt after every
        stage, so a stage may make them available to the next."""
        return None

    def _forward(self, net, batch):
        return net(batch["image"], batch.get("clinical"))

    def _outputs(self, net, dataset, masks: list | None = None) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Network outputs over a dataset in order: survival outputs (n, k) and, for segmenting methods,
        label maps on the crop grid; the reference masks (crop grid) are appended to ``masks`` when given."""
        import torch

        from bench.data.torchdata import loader
        from bench.nn.losses import labels_from_logits
        from bench.nn.trainer import amp_dtype, autocast, to_device

        device = self.ctx.device
        net.eval()
        surv, segs = [], [] if self.segments else None
        table = self.stages()[-1]["train"]
        with torch.no_grad(), autocast(device, amp_dtype(table["amp"], device)):
            for batch in loader(dataset, batch_size=table["batch_size"], shuffle=False):
                out = self._forward(net, to_device(batch, device))
                surv.append(out["surv"].float().cpu().numpy())
                if segs is not None:
                    segs.extend(labels_from_logits(out["seg"]).cpu().numpy())
                if masks is not None and "mask" in batch:
                    masks.extend(batch["mask"][:, 0].numpy())
        return np.concatenate(surv), segs

    # -- fit / predict ---------------------------------------------------------------------------------------
    def _checkpoint_path(self, train_data, val_data):
        """Keyed by everything that shapes the training: method, code version, config, seed, device and
        precision, and the patients' pipeline cache entries (content-hashed images, so regenerated or
        corrupted images give a new key)."""
        from bench.hashing import content_hash
        from bench.nn.trainer import amp_dtype

        key = content_hash({"method": self.ctx.method_name or type(self).__name__, "version": self.version,
                            "config": self.config, "seed": self.ctx.seed, "device": self.ctx.device,
                            "amp": str(amp_dtype(self.stages()[-1]["train"]["amp"], self.ctx.device)),
                            "train": [p.name for p in train_data.paths.values()],
                            "val": [] if val_data is None else [p.name for p in val_data.paths.values()]}, 24)
        return self.ctx.cache_dir / "checkpoints" / f"{key}.pt"

    def stages(self) -> list[dict]:
        """The training stages, run in order, each starting from the previous one's kept weights: dicts with
        ``name``, ``train`` (the TrainConfig table), ``surv_weight``, ``seg_weight`` and ``score`` (what the
        validation split scores for early stopping and the best epoch: ``cindex`` — Harrell's C — or ``dice``
        — the mean validation Dice of GTVp and GTVn). One joint stage by default; AdaMSS trains segmentation,
        then survival."""
        c = self.config
        return [{"name": "", "train": c["train"], "surv_weight": float(c.get("surv_weight", 1.0)),
                 "seg_weight": float(c.get("seg_weight", 1.0)), "score": "cindex"}]

    def after_stage(self, name: str, net, train) -> None:
        """Called with the kept network (a CPU copy) and the training cohort after each stage (e.g. to keep
        the network, or to fit inputs of the next stage on the training patients)."""

    def training_step(self, stage: dict):
        """The loss of one training batch for a stage (see ``stages``): ``step(model, batch)`` → {"loss",
        its parts...}, as ``bench.nn.Trainer`` takes it. Needs ``head_`` (set up on the training outcomes)."""
        from bench.nn.losses import segmentation_loss

        c, head = self.config, self.head_
        surv_w, seg_w = float(stage["surv_weight"]), float(stage["seg_weight"])
        seg_loss = segmentation_loss(c.get("seg_loss", "dice")) if self.segments else None
        surv_l2 = float(c.get("surv_l2", 0.0))

        def step(model, batch):
            o = self._forward(model, batch)
            parts, loss = {}, 0.0
            if surv_w > 0:
                parts["surv_loss"] = head.loss(o["surv"], batch["time"], batch["event"])
                loss = surv_w * parts["surv_loss"]
                if surv_l2 > 0:
                    loss = loss + 0.5 * surv_l2 * model.survival_layer.weight.float().pow(2).sum()
            if seg_loss is not None and seg_w > 0 and "mask" in batch:
                parts["seg_loss"] = seg_loss(o["seg"], batch["mask"])
                loss = loss + seg_w * parts["seg_loss"]
            for name, value in o.get("losses", {}).items():
                parts[name] = value
                loss = loss + value
            for name, value in o.get("logs", {}).items():
                parts[name] = value.detach()
            return {"loss": loss, **parts}
        return step

    def fit(self, train, val) -> None:
        net = self._build(train)
        net, histories = self._train_stages(net, train, val)
        self.history_ = self._merged_history(histories)
        if hasattr(self.head_, "fit_baseline"):  # Cox: Breslow baseline on every training patient
            self._fit_baseline(net, train, val)
        self.net_ = net.cpu()

    def _build(self, train):
        """Fit the clinical encoder and set up the head on the training patients, then build the network
        (seeded by the run seed)."""
        import torch

        from bench.clinical import ClinicalEncoder

        c = self.config
        self.clinical_ = ClinicalEncoder().fit(train.clinical) if c.get("clinical") else None
        n_clinical = (self.clinical_.n_features_ if self.clinical_ is not None else 0) + self.n_extra_inputs()
        out = train.outcomes
        self.head_ = self.make_head()
        self.head_.setup(out["time"].to_numpy(), out["event"].to_numpy())
        torch.manual_seed(self.ctx.seed)
        net = self.build_network(n_clinical)
        if float(c.get("surv_l2", 0.0)) > 0 and not isinstance(getattr(net, "survival_layer", None), torch.nn.Linear):
            raise TypeError(f"{type(self).__name__}: surv_l2 needs the network to expose its last survival layer "
                            f"as `survival_layer` (an nn.Linear)")
        return net

    def _datasets(self, train, val):
        """(training dataset, validation dataset or None without validation patients)."""
        return self._dataset(train, train=True), (self._dataset(val, train=False) if len(val) else None)

    def _validation(self, score: str, val_data, outcomes):
        """``validate(model)`` for the Trainer: the early-stopping score of the validation split."""
        head = self.head_

        def validate(model):
            """Early-stopping score of the validation split: Harrell's C (NaN without an event there) or
            the mean Dice of GTVp and GTVn (on the crop); the other is logged beside it."""
            from bench.metrics import cindex_harrell, dice_aggregate

            masks: list = []
            surv_out, segs = self._outputs(model, val_data, masks)
            res = {"score": float("nan")}
            if outcomes["event"].any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res["cindex"] = cindex_harrell(outcomes["time"].to_numpy(), outcomes["event"].to_numpy(),
                                                   head.risk(surv_out))
            if segs is not None and len(masks) == len(segs):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    d = dice_aggregate(segs, masks)
                res |= {"dice_gtvp": d[1], "dice_gtvn": d[2]}
                if score == "dice":
                    res["score"] = float(np.nanmean([d[1], d[2]]))
            if score == "cindex":
                res["score"] = res.pop("cindex", float("nan"))
            return res
        return validate

    def _train_stages(self, net, train, val):
        """Run ``stages()`` in order; returns the last stage's kept network and each stage's history. A
        finished stage other than the last is saved beside the checkpoint, so a kill of the next one does
        not retrain it; those files are removed once every stage has run."""
        train_data, val_data = self._datasets(train, val)
        val_outcomes = val.outcomes.loc[list(val.ids)] if len(val) else None
        stages = self.stages()
        histories = {}
        base = self._checkpoint_path(train_data, val_data)
        for i, st in enumerate(stages):
            name, last = st["name"] or "train", i == len(stages) - 1
            done = _done_path(base, st)
            if not last and done.is_file():
                net, histories[name] = self._load_stage(net, done)
            else:
                ckpt = base if len(stages) == 1 else base.with_name(f"{base.stem}.{name}.pt")
                validate = self._validation(st["score"], val_data, val_outcomes) if val_data is not None else None
                net, histories[name] = self._train_stage(net, st, i, train_data, validate, ckpt)
                if not last:
                    _save_stage(done, net, histories[name])
            self.after_stage(st["name"], copy.deepcopy(net).cpu(), train)
            if not last and self.n_extra_inputs():  # the next stage may see new extra inputs
                train_data, val_data = self._datasets(train, val)
        for st in stages[:-1]:
            _done_path(base, st).unlink(missing_ok=True)
        return net, histories

    def _train_stage(self, net, stage: dict, index: int, train_data, validate, checkpoint):
        from bench.nn.trainer import Trainer, TrainConfig

        trainer = Trainer(TrainConfig.from_dict(stage["train"]), device=self.ctx.device, seed=self.ctx.seed + index,
                          checkpoint=checkpoint, logger=self.ctx.logger, progress=self.ctx.progress,
                          desc=" ".join(filter(None, [self.ctx.method_name or type(self).__name__, stage["name"]])))
        return trainer.fit(net, train_data, self.training_step(stage), validate)

    @staticmethod
    def _load_stage(net, done):
        import torch

        saved = torch.load(done, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["model"])
        return net, saved["history"]

    def _merged_history(self, histories: dict) -> dict:
        """The last stage's history, with earlier stages' series under ``<stage>_<series>``."""
        stages = self.stages()
        history = dict(histories[stages[-1]["name"] or "train"])
        for st in stages[:-1]:
            for k, v in histories[st["name"] or "train"].items():
                history[f"{st['name']}_{k}"] = v
        return history

    def _fit_baseline(self, net, train, val) -> None:
        """The head's baseline (a Cox head's Breslow estimate) on every training patient's outputs."""
        every = train.union(val) if len(val) else train
        surv_out, _ = self._outputs(net, self._dataset(every, train=False))
        o = every.outcomes.loc[list(every.ids)]
        self.head_.fit_baseline(surv_out, o["time"].to_numpy(), o["event"].to_numpy())

    def segmentation_labels(self, data, labels):
        """The label maps (crop grid) predicted for ``data``, given those of the survival network (``labels``;
        None for a method that does not segment).
        A method that segments with a network of its own (AdaMSS: the stage-I network) overrides this; it must
        leave every network it moves to the device back on the CPU, since the store pickles the fitted model."""
        return labels

    def predict(self, cohort) -> Prediction:
        try:
            net = self.net_.to(self.ctx.device)
            data = self._dataset(cohort, train=False)
            surv_out, segs = self._outputs(net, data)
            segs = self.segmentation_labels(data, segs)
        finally:  # the fitted model is pickled by the store: keep it on the CPU whatever happens
            self.net_ = self.net_.cpu()
        risk, surv, times = self.head_.predict(surv_out)
        segmentation = None
        if segs is not None:
            segmentation = self._to_native(cohort, data, segs)
        return Prediction(risk=risk, survival=surv, times=times, segmentation=segmentation)

    def _to_native(self, cohort, data, segs) -> dict[str, np.ndarray]:
        from bench.data.pipeline import load, to_native
        from bench.data.torchdata import centre_slices

        cfg = self.pipeline_config()
        box = _zyx(cfg.size)
        sl = centre_slices(box, _zyx(self.config["crop"]))
        files = cohort.image_files
        out = {}
        for pid, seg in zip(data.ids, segs):
            full = np.zeros(box, np.uint8)
            full[sl] = seg
            origin = load(files[pid], cfg, data.cache, path=data.paths[pid])["origin"]
            out[pid] = to_native(full, origin, cfg, files[pid].ct)
        return out


def _done_path(base, stage: dict):
    """Where a finished stage other than the last is kept until every stage has run."""
    return base.with_name(f"{base.stem}.{stage['name'] or 'train'}.done.pt")


def _save_stage(done, net, history) -> None:
    import torch

    from bench.fsutil import atomic_path

    with atomic_path(done, ".pt") as tmp:
        torch.save({"model": net.state_dict(), "history": history}, tmp)


def width(channels, factor: float, minimum: int = 4) -> list[int]:
    """Channel counts scaled by a width multiplier (paper width = 1), never below ``minimum``."""
    return [max(minimum, int(math.ceil(c * factor))) for c in channels]
