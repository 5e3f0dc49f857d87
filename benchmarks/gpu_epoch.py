"""One paper-scale training epoch of each deep method, with mixed precision: seconds, images/s, peak memory.

Not a test: a measurement for a machine with a GPU. It feeds random tensors of each method's paper input shape
(the GPU machine has no images and no SimpleITK) through the harness's own parts — the method's network
(``build_network``), its survival head and losses (``training_step``), ``bench.nn.Trainer`` with the paper
config's optimiser, schedule, EMA, clipping, balanced batches and AMP (``amp = auto``: bf16 where the GPU has
it). Left out: the image pipeline and augmentation (CPU work the cache makes cheap) and the per-epoch
validation pass. For the foundation encoders it times the frozen embedding and a masked-image-modelling
pretraining step at paper size.

An epoch is ``steps_per_epoch`` batches when the paper config fixes it (AdaMSS: 200 per stage), else one
pass over ``--n-train`` patients (default 313: HECKTOR 2022's 489 training patients, 4/5 per fold, less the
20 % validation hold-out). Each measurement runs 3 warm-up steps first (cuDNN autotuning, allocator), then
the timed epoch; ``--max-steps`` caps the timed steps (the epoch time is then extrapolated and says so).

    python benchmarks/gpu_epoch.py --device cuda --out gpu_epoch.json
    python benchmarks/gpu_epoch.py --scale smoke --device cpu --methods deepmts   # a check that it runs

Needs torch, numpy, pandas, MONAI (+ einops) and pycox/torchtuples (the MTLR and DeepHit losses); not the
registry: methods are imported from their modules (``METHODS``; tests check it against the registry).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from importlib import import_module
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = {"deepmts": "baselines.deepmts:DeepMTS", "tmss": "baselines.tmss:TMSS",
           "deepmts-daft": "proposed.fm:DeepMTSDAFT", "fm-ctpet": "proposed.fm:FMCTPET",
           "adamss": "proposed.adamss:AdaMSS", "robsurv": "proposed.robsurv:RobSurv"}
ENCODERS = ("ct-fm", "pet-fm")
N_CLINICAL = 12  # width of the encoded clinical vector (HECKTOR's columns one-hot); its cost is negligible
WARMUP = 3


def method_class(name: str):
    module, cls = METHODS[name].split(":")
    return getattr(import_module(module), cls)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


class RandomCohort:
    """n patients of random PET/CT (a bank of ``bank`` volumes on the device, reused), random masks with
    labels 0/1/2, outcomes with ~25 % events and a tabular vector; ``events`` feeds the balanced sampler."""

    def __init__(self, n: int, crop_zyx, n_tab: int, device: str, *, bank: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.n, self.device = n, device
        self.events = rng.random(n) < 0.25
        self.time = torch.as_tensor(rng.exponential(900.0, n) + 30.0, dtype=torch.float32, device=device)
        self.event = torch.as_tensor(self.events, dtype=torch.float32, device=device)
        self.tab = torch.randn(n, n_tab, generator=g).to(device) if n_tab else None
        self.image = torch.randn(bank, 2, *crop_zyx, generator=g).to(device)
        u = torch.rand(bank, 1, *crop_zyx, generator=g)
        self.mask = ((u < 0.03).to(torch.uint8) + (u < 0.01).to(torch.uint8)).to(device)

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: list[int]) -> dict:
        i = torch.as_tensor(idx, device=self.device)
        b = i % len(self.image)
        out = {"image": self.image[b], "mask": self.mask[b], "time": self.time[i], "event": self.event[i]}
        if self.tab is not None:
            out["clinical"] = self.tab[i]
        return out


class _Loader:
    def __init__(self, data: RandomCohort, batch_sampler):
        self.data, self.sampler = data, batch_sampler

    def __iter__(self):
        for idx in self.sampler:
            yield self.data.batch(idx)

    def __len__(self) -> int:
        return len(self.sampler)


def _loader_fn(data, *, batch_size, shuffle, seed, num_workers, batch_sampler):
    return _Loader(data, batch_sampler)


def _epoch_steps(train: dict, n: int) -> int:
    return int(train["steps_per_epoch"]) or max(1, math.ceil(n / int(train["batch_size"])))


def bench_method(name: str, scale: str, device: str, n_train: int, max_steps: int) -> dict:
    from bench.method import RunContext
    from bench.nn.trainer import Trainer, TrainConfig, amp_dtype

    cls = method_class(name)
    config = copy.deepcopy(cls.configs[scale])
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(config=config, scale=scale, device=device, cache_dir=Path(tmp), progress=False,
                         method_name=name)
        m = cls(ctx)
        m.head_ = m.make_head()
        rng = np.random.default_rng(1)
        m.head_.setup(rng.exponential(900.0, 400) + 30.0, rng.random(400) < 0.25)
        n_tab = (N_CLINICAL if config.get("clinical") else 0) + m.n_extra_inputs()
        torch.manual_seed(0)
        net = m.build_network(n_tab)
        crop = tuple(int(v) for v in reversed(config["crop"]))
        data = RandomCohort(n_train, crop, n_tab, device)
        out = {"method": name, "scale": scale, "crop_xyz": list(config["crop"]), "spacing_mm": config["spacing_mm"],
               "parameters_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2), "stages": []}
        for st in m.stages():
            table = dict(st["train"])
            steps = _epoch_steps(table, n_train)
            timed = min(steps, max_steps) if max_steps else steps
            step = m.training_step(st)
            warm = TrainConfig.from_dict(table | {"epochs": 1, "steps_per_epoch": WARMUP, "patience": 0,
                                                  "keep": "last"})
            net, _ = Trainer(warm, device=device, progress=False).fit(net, data, step, None, loader_fn=_loader_fn)
            _reset_peak(device)
            cfg = TrainConfig.from_dict(table | {"epochs": 1, "steps_per_epoch": timed, "patience": 0, "keep": "last"})
            _sync(device)
            t0 = time.perf_counter()
            net, hist = Trainer(cfg, device=device, progress=False).fit(net, data, step, None, loader_fn=_loader_fn)
            _sync(device)
            sec = time.perf_counter() - t0
            bs = int(table["batch_size"])
            out["stages"].append({
                "stage": st["name"] or "train", "batch_size": bs, "epoch_steps": steps, "timed_steps": timed,
                "amp": str(amp_dtype(table["amp"], device)).replace("torch.", ""),
                "seconds_timed": round(sec, 2), "epoch_seconds": round(sec * steps / timed, 1),
                "extrapolated": timed < steps, "images_per_s": round(timed * bs / sec, 1),
                "peak_gib": _peak_gib(device), "loss": round(float(hist["loss"][-1]), 4)})
            print(f"{name:>13} {out['stages'][-1]['stage']:>12}: {timed}/{steps} steps × {bs} in {sec:.1f} s "
                  f"({timed * bs / sec:.1f} images/s, peak {_peak_gib(device)} GiB)", flush=True)
        # inference: the prediction pass (no gradient, autocast), batches of the last stage's size
        net.eval()
        bs = int(m.stages()[-1]["train"]["batch_size"])
        from bench.nn.trainer import autocast

        dtype = amp_dtype(m.stages()[-1]["train"]["amp"], device)
        n_inf = 4 if max_steps else 10
        with torch.no_grad(), autocast(device, dtype):
            m._forward(net, data.batch([j % len(data) for j in range(bs)]))
            _sync(device)
            t0 = time.perf_counter()
            for k in range(n_inf):
                m._forward(net, data.batch([(k * bs + j) % len(data) for j in range(bs)]))
            _sync(device)
        out["inference_images_per_s"] = round(n_inf * bs / (time.perf_counter() - t0), 1)
        return out


def bench_encoder(name: str, scale: str, device: str, max_steps: int) -> dict:
    from bench.nn.trainer import autocast
    from proposed.fm_encoders import (encoder_config, load_encoder, masked_decoder, masked_step, pretrain_dtype,
                                      reconstruction_target)

    cfg = encoder_config(name, scale)
    torch.manual_seed(0)
    enc = load_encoder(name, cfg, None).to(device)
    shape = (cfg["box"][2], cfg["box"][1], cfg["box"][0]) if "box" in cfg else (cfg["img_size"],) * 3
    dtype = pretrain_dtype(device)
    p = cfg["pretrain"]
    bs = int(p["batch_size"])
    x = torch.randn(bs, 1, *shape, device=device)
    out = {"encoder": name, "scale": scale, "input_zyx": list(shape), "dim": enc.dim,
           "parameters_M": round(sum(q.numel() for q in enc.parameters()) / 1e6, 2),
           "amp": str(dtype).replace("torch.", "")}
    # frozen embedding
    enc.eval()
    n = 4 if max_steps else 20
    with torch.no_grad(), autocast(device, dtype):
        enc(x)
        _reset_peak(device)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            enc(x)
        _sync(device)
    out["embed_images_per_s"] = round(n * bs / (time.perf_counter() - t0), 1)
    out["embed_peak_gib"] = _peak_gib(device)
    # pretraining steps (masked-image modelling, Adam), as bench pretrain runs them
    enc.train()
    dec = masked_decoder(enc).to(device)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=float(p["lr"]))
    gen = torch.Generator().manual_seed(0)
    steps = min(int(p["steps_per_epoch"]), max_steps) if max_steps else 20
    target_fn = reconstruction_target(name, cfg)

    def one():
        masked_step(enc, dec, opt, x, p, gen, dtype, target_fn)

    for _ in range(WARMUP):
        one()
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    _sync(device)
    sec = time.perf_counter() - t0
    total = int(p["epochs"]) * int(p["steps_per_epoch"])
    out |= {"pretrain_steps_timed": steps, "pretrain_s_per_step": round(sec / steps, 4),
            "pretrain_images_per_s": round(steps * bs / sec, 1), "pretrain_peak_gib": _peak_gib(device),
            "pretrain_total_steps": total, "pretrain_estimated_minutes": round(total * sec / steps / 60, 1)}
    print(f"{name:>13} embed {out['embed_images_per_s']} images/s; pretrain {sec / steps:.3f} s/step × {bs} "
          f"(peak {out['pretrain_peak_gib']} GiB, {total} steps ≈ {out['pretrain_estimated_minutes']} min)", flush=True)
    return out


def _write(path: Path | None, res: dict) -> None:
    """After every method, so a run cut short keeps what it measured."""
    if path is not None:
        path.write_text(json.dumps(res, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="paper", choices=("smoke", "quick", "paper"))
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    ap.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated (empty: none)")
    ap.add_argument("--n-train", type=int, default=313, help="training patients behind one epoch")
    ap.add_argument("--max-steps", type=int, default=0, help="cap on timed steps per stage (0: the whole epoch)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    a = ap.parse_args(argv)
    torch.backends.cudnn.benchmark = a.device == "cuda"  # as bench.nn.Trainer sets it (for the encoders too)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_epoch: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    names = [s for s in a.methods.split(",") if s]
    unknown = [s for s in names if s not in METHODS]
    if unknown:
        print(f"gpu_epoch: unknown method(s) {unknown}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": a.device,
           "gpu": torch.cuda.get_device_name() if a.device == "cuda" else platform.processor() or "cpu",
           "cudnn_benchmark": a.device == "cuda", "n_train": a.n_train}  # the Trainer turns it on for CUDA
    print(json.dumps(env), flush=True)
    res = {"env": env, "methods": [], "encoders": []}
    for name in [s for s in a.encoders.split(",") if s]:
        try:
            res["encoders"].append(bench_encoder(name, a.scale, a.device, a.max_steps))
        except Exception as exc:
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            res["encoders"].append({"encoder": name, "error": f"{type(exc).__name__}: {exc}"})
        _write(a.out, res)
    for name in names:
        try:
            res["methods"].append(bench_method(name, a.scale, a.device, a.n_train, a.max_steps))
        except Exception as exc:  # one method failing (e.g. out of memory) must not lose the others' numbers
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            res["methods"].append({"method": name, "error": f"{type(exc).__name__}: {exc}"})
        if a.device == "cuda":
            torch.cuda.empty_cache()
        _write(a.out, res)
    failed = [r for r in res["methods"] + res["encoders"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
