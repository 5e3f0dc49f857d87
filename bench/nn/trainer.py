"""The training loop every deep method shares.

``Trainer(TrainConfig, device=..., seed=..., checkpoint=path).fit(model, train_data, step, validate)``:

- device: "cpu" or "cuda" (the harness resolves ``--device auto``); mixed precision on CUDA (``amp``: auto =
  bf16 where the GPU supports it, else fp16 with a gradient scaler; off on the CPU unless asked for);
- optimiser Adam / AdamW / SGD, learning-rate schedule (constant, cosine, step or multistep, after linear warm-up),
  gradient clipping by norm, an exponential moving average of the weights (``torch.optim.swa_utils``),
  validated and kept instead of the raw weights when on;
- balanced batches: each batch holds events and censored patients in equal numbers (drawn without
  replacement within an epoch, cycling), seeded by (seed, epoch);
- early stopping on the validation split: ``validate(model)`` returns a dict with ``score`` (higher is
  better); the best epoch's weights are kept (``keep = "best"``; ``"last"`` keeps the final weights, e.g.
  after a cosine decay), and training stops after ``patience`` epochs without a better score (0: never);
- determinism: torch's RNG, the sampler and the augmentation state are seeded from (seed, epoch) at the start
  of every epoch, so a resumed training continues exactly as an uninterrupted one (on the CPU);
- checkpoints: after each epoch the whole state (weights, optimiser, schedule, EMA, scaler, history, best
  weights) is written atomically to ``checkpoint``; a training started again with the same checkpoint path
  resumes after the last finished epoch; the file is removed when training ends;
- a progress bar with the loss, and one log line per epoch; ``history`` holds the per-epoch losses, their
  parts, the validation numbers, the learning rate and the seconds, stored with the fitted model.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.errors import BenchInputError
from bench.faults import fault_point

OPTIMISERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "multistep")
AMP = ("auto", "bf16", "fp16", "off")
KEEP = ("best", "last")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    steps_per_epoch: int = 0  # 0: one pass over the training patients (ceil(n / batch_size))
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_epochs: int = 0
    step_every: int = 10  # "step" schedule: lr × 0.1 every this many epochs
    milestones: tuple = ()  # "multistep" schedule: from epoch milestones[i] on (0-based), lr × factors[i]
    factors: tuple = ()
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema: float = 0.0  # EMA decay of the weights (e.g. 0.999); 0 = off
    patience: int = 0  # epochs without a better validation score before stopping; 0 = run every epoch
    keep: str = "best"  # weights returned: "best" validation epoch, or "last" epoch (e.g. after a cosine decay)
    balanced: bool = True  # equal numbers of events and censored patients in each batch
    amp: str = "auto"
    workers: int = 0  # DataLoader worker processes

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BenchInputError(f"train config: unknown key(s) {unknown} (known: {sorted(known)})")
        return cls(**d)

    def problems(self) -> list[str]:
        out = []
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                out.append(f"train.{key} = {getattr(self, key)} must be >= 1")
        for key in ("steps_per_epoch", "warmup_epochs", "patience", "workers", "weight_decay", "grad_clip"):
            if getattr(self, key) < 0:
                out.append(f"train.{key} = {getattr(self, key)} must be >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            out.append(f"train.lr = {self.lr} must be a positive number")
        if not 0 <= self.ema < 1:
            out.append(f"train.ema = {self.ema} must be in [0, 1)")
        if self.step_every < 1:
            out.append(f"train.step_every = {self.step_every} must be >= 1")
        if self.schedule == "multistep":
            ms, fs = list(self.milestones), list(self.factors)
            if not ms or len(ms) != len(fs) or ms != sorted(ms) or any(m < 1 for m in ms) or any(f <= 0 for f in fs):
                out.append(f"train.milestones = {ms} and train.factors = {fs}: a multistep schedule needs "
                           f"increasing epochs >= 1 and as many positive factors")
        for key, allowed in (("optimizer", OPTIMISERS), ("schedule", SCHEDULES), ("amp", AMP), ("keep", KEEP)):
            if getattr(self, key) not in allowed:
                out.append(f"train.{key} = {getattr(self, key)!r}: choose one of {', '.join(allowed)}")
        return out


def amp_dtype(amp: str, device: str) -> torch.dtype | None:
    """The autocast dtype for this setting and device (None: full precision)."""
    if amp == "off" or (amp == "auto" and device != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class BalancedBatchSampler(torch.utils.data.Sampler):
    """Batches of ``batch_size`` indices, half events and half censored (an odd size gives the extra place
    to an event, so a batch of one is an event), each group drawn without replacement and starting a fresh
    permutation when it runs out, ``n_batches`` per epoch; seeded by (seed, epoch). With only one group
    present, plain shuffled batches."""

    def __init__(self, events, batch_size: int, n_batches: int, seed: int = 0):
        self.events = np.asarray(events, bool)
        self.batch_size, self.n_batches, self.seed, self.epoch = batch_size, n_batches, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = [np.flatnonzero(self.events), np.flatnonzero(~self.events)]
        groups = [g for g in groups if len(g)]
        n_event = (self.batch_size + 1) // 2 if len(groups) == 2 else self.batch_size
        takes = [n_event, self.batch_size - n_event] if len(groups) == 2 else [self.batch_size]
        queues = [list(rng.permutation(g)) for g in groups]
        for _ in range(self.n_batches):
            batch = []
            for q, (g, take) in enumerate(zip(groups, takes)):
                for _ in range(take):
                    if not queues[q]:
                        queues[q] = list(rng.permutation(g))
                    batch.append(int(queues[q].pop()))
            yield [batch[i] for i in rng.permutation(len(batch))]


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        e = epoch - cfg.warmup_epochs
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(e / span, 1.0)))
        if cfg.schedule == "step":
            return 0.1 ** (e // cfg.step_every)
        if cfg.schedule == "multistep":
            passed = [f for m, f in zip(cfg.milestones, cfg.factors) if epoch >= m]
            return passed[-1] if passed else 1.0
        return 1.0
    return factor


def _optimiser(cfg: TrainConfig, params):
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def autocast(device: str, dtype: torch.dtype | None):
    """torch.autocast for this device, on only when there is a dtype (see ``amp_dtype``)."""
    return torch.autocast("cuda" if device == "cuda" else "cpu", dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict, device: str) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@dataclass
class _Fit:
    """One call of ``Trainer.fit``: the model, what trains it, and ``history`` / ``state`` (what a checkpoint
    carries besides the weights and the optimiser)."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: Any
    sampler: BalancedBatchSampler
    loader: Any
    n_batches: int
    history: dict[str, list]
    state: dict[str, Any]

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validated and kept: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model


class Trainer:
    """The shared training loop; see the module docstring for what it does."""

    def __init__(self, cfg: TrainConfig, *, device: str = "cpu", seed: int = 0, checkpoint: Path | None = None,
                 logger: logging.Logger | None = None, progress: bool = True, desc: str = "train"):
        self.cfg, self.device, self.seed = cfg, device, seed
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.log = logger or logging.getLogger("bench.nn")
        self.progress, self.desc = progress, desc
        self.dtype = amp_dtype(cfg.amp, device)
        self.resumed_from: int | None = None  # epoch a checkpoint resumed at (None: started fresh)

    def _epoch_seed(self, epoch: int) -> int:
        return (self.seed * 100_003 + epoch * 7919 + 17) % 2**31

    def fit(self, model: torch.nn.Module, train_data, step: Callable[[torch.nn.Module, dict], dict[str, torch.Tensor]],
            validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
            loader_fn: Callable | None = None) -> tuple[torch.nn.Module, dict[str, list]]:
        """Train ``model`` on ``train_data`` (a dataset of dicts with an ``id``; ``events`` for balancing and a
        ``transform`` with ``set_random_state`` are used when present); ``step(model, batch)`` returns
        {"loss": scalar, other parts...}. Returns (the model holding the kept weights, history)."""
        from tqdm.auto import tqdm

        run = self._start(model, train_data, loader_fn)
        self._resume(run)
        bar = tqdm(total=self.cfg.epochs, initial=run.state["epoch"], desc=self.desc, unit="epoch", leave=False,
                   disable=not self.progress or None)
        try:
            last = run.state["epoch"] if run.state["stopped"] else self.cfg.epochs  # an early-stopped run stays stopped
            for epoch in range(run.state["epoch"], last):
                if self._epoch(run, epoch, train_data, step, validate, bar):
                    break
        finally:
            bar.close()
        return self._finish(run)

    def _start(self, model: torch.nn.Module, train_data, loader_fn: Callable | None) -> _Fit:
        """Model on the device, optimiser, schedule, gradient scaler, EMA, balanced sampler and loader."""
        from bench.data.torchdata import loader as make_loader

        cfg = self.cfg
        if self.device == "cuda":
            # cuDNN picks each 3D convolution's algorithm by timing it once, which pays off over the many
            # batches of one input shape; CUDA runs are not bit-reproducible either way
            torch.backends.cudnn.benchmark = True
        model = model.to(self.device)
        opt = _optimiser(cfg, [p for p in model.parameters() if p.requires_grad])
        ema = None
        if cfg.ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        n = len(train_data)
        n_batches = cfg.steps_per_epoch or max(1, math.ceil(n / cfg.batch_size))
        events = getattr(train_data, "events", None)
        groups = events if cfg.balanced and events is not None else np.zeros(n, bool)  # one group: plain shuffle
        sampler = BalancedBatchSampler(groups, cfg.batch_size, n_batches, self.seed)
        dl = (loader_fn or make_loader)(train_data, batch_size=cfg.batch_size, shuffle=False, seed=self.seed,
                                        num_workers=cfg.workers, batch_sampler=sampler)
        return _Fit(model=model, opt=opt, sched=torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg)),
                    scaler=torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16 and self.device == "cuda"),
                    ema=ema, sampler=sampler, loader=dl, n_batches=n_batches,
                    history={"epoch": [], "loss": [], "lr": [], "seconds": []},
                    state={"epoch": 0, "best_score": -math.inf, "best_epoch": -1, "best_weights": None, "bad": 0,
                           "stopped": False})

    def _resume(self, run: _Fit) -> None:
        """Continue from the checkpoint of an interrupted training, when there is one."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return
        saved = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        run.model.load_state_dict(saved["model"])
        run.opt.load_state_dict(saved["optimizer"])
        run.sched.load_state_dict(saved["scheduler"])
        run.scaler.load_state_dict(saved["scaler"])
        if run.ema is not None and saved.get("ema") is not None:
            run.ema.load_state_dict(saved["ema"])
        run.history, run.state = saved["history"], saved["state"]
        self.resumed_from = run.state["epoch"]
        self.log.info("%s: resuming from the checkpoint after epoch %d (%s)", self.desc, run.state["epoch"],
                      self.checkpoint)

    def _epoch(self, run: _Fit, epoch: int, train_data, step, validate, bar) -> bool:
        """One epoch: seed, train, record, validate, keep the best weights, checkpoint. True: stop early."""
        t0 = time.perf_counter()
        self._seed_epoch(run, epoch, train_data)
        self._train_epoch(run, epoch, step)
        run.sched.step()
        score = self._score(run, epoch, validate)
        self._keep_best(run, epoch, score)
        history, state = run.history, run.state
        history["seconds"].append(time.perf_counter() - t0)
        state["epoch"] = epoch + 1
        stop = self.cfg.patience > 0 and state["bad"] >= self.cfg.patience
        state["stopped"] = stop  # a run killed after this save must not train on when resumed
        self._save(run.model, run.opt, run.sched, run.scaler, run.ema, history, state)
        bar.set_postfix({"loss": f"{history['loss'][-1]:.4f}"} | ({"val": f"{score:.4f}"} if validate else {}))
        bar.update(1)
        self.log.info("%s epoch %d/%d: %s (%.1f s)%s", self.desc, epoch + 1, self.cfg.epochs,
                      ", ".join(f"{k} {history[k][-1]:.4f}" for k in history if k not in ("epoch", "seconds", "lr")),
                      history["seconds"][-1], " — early stop" if stop else "")
        return stop

    def _seed_epoch(self, run: _Fit, epoch: int, train_data) -> None:
        """torch's RNG, the sampler and the augmentation state from (seed, epoch): a resumed training draws
        what an uninterrupted one would."""
        es = self._epoch_seed(epoch)
        torch.manual_seed(es)
        run.sampler.set_epoch(epoch)
        transform = getattr(train_data, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=es)

    def _train_epoch(self, run: _Fit, epoch: int, step) -> None:
        """Every batch of one epoch; appends the epoch's mean loss parts, learning rate and the model's own
        epoch logs to the history."""
        cfg, model, opt, scaler = self.cfg, run.model, run.opt, run.scaler
        model.train()
        sums: dict[str, float] = {}
        for batch in run.loader:
            batch = to_device(batch, self.device)
            opt.zero_grad(set_to_none=True)
            with autocast(self.device, self.dtype):
                parts = step(model, batch)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.desc}: the training loss became {loss.item()} in epoch "
                                         f"{epoch + 1} (try a lower train.lr or train.grad_clip)")
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if run.ema is not None:
                run.ema.update_parameters(model)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        history = run.history
        history["epoch"].append(epoch + 1)
        history["lr"].append(opt.param_groups[0]["lr"])
        for k, v in sums.items():
            history.setdefault(k, [np.nan] * epoch).append(v / run.n_batches)
        # a model may keep its own per-epoch statistics (e.g. codebook use) and hand them over here
        for k, v in (model.epoch_logs() if hasattr(model, "epoch_logs") else {}).items():
            history.setdefault(k, [np.nan] * epoch).append(float(v))

    def _score(self, run: _Fit, epoch: int, validate) -> float:
        """The epoch's validation score (its numbers go into the history), or minus the training loss."""
        if validate is None:
            return -run.history["loss"][-1]
        evaluated = run.evaluated
        evaluated.eval()
        with torch.no_grad(), autocast(self.device, self.dtype):
            val = validate(evaluated)
        for k, v in val.items():
            run.history.setdefault(f"val_{k}", [np.nan] * epoch).append(float(v))
        return float(val.get("score", np.nan))

    def _keep_best(self, run: _Fit, epoch: int, score: float) -> None:
        """Keep the weights of a better epoch; count the epochs without one (early stopping)."""
        state = run.state
        improved = np.isfinite(score) and score > state["best_score"]
        unscored = not np.isfinite(score) and not np.isfinite(state["best_score"])
        if improved or unscored:
            # without any finite score yet (a validation split without events), the latest weights
            # stand in for the best and the epoch does not count towards early stopping
            if self.cfg.keep == "best":  # "last" returns the final weights: no copy to carry
                state["best_weights"] = copy.deepcopy({k: v.detach().cpu()
                                                       for k, v in run.evaluated.state_dict().items()})
            state["best_epoch"] = epoch + 1
            state["best_score"] = score if improved else state["best_score"]
            state["bad"] = 0
            if unscored and epoch == 0:
                self.log.warning("%s: the validation score is not defined (no event in the validation "
                                 "split?); early stopping and best-epoch selection fall back to the "
                                 "latest epoch", self.desc)
        elif np.isfinite(score):
            state["bad"] += 1

    def _finish(self, run: _Fit) -> tuple[torch.nn.Module, dict[str, list]]:
        """The kept weights in the returned model, the kept epoch in the history; the checkpoint removed."""
        final = run.evaluated
        if self.cfg.keep == "best":
            final.load_state_dict(run.state["best_weights"])
        history = run.history
        history["best_epoch"] = run.state["best_epoch"]
        history["kept_epoch"] = run.state["best_epoch"] if self.cfg.keep == "best" else run.state["epoch"]
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)
        return final, history

    def _save(self, model, opt, sched, scaler, ema, history, state) -> None:
        if self.checkpoint is None:
            return
        from bench.fsutil import atomic_path

        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.checkpoint, ".pt") as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(), "ema": None if ema is None else ema.state_dict(),
                        "history": history, "state": state, "config": asdict(self.cfg)}, tmp)
        fault_point("epoch-checkpoint")
