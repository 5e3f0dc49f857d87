"""Survival heads and losses, and the segmentation loss (torch).

A head is a small object: ``n_outputs`` (network outputs per patient), ``setup(time, event)`` on the training
outcomes (time grid, interval edges), ``loss(out, time, event)`` for a batch, ``risk(out)`` and ``predict(out)``
→ (risk, survival (n, T), times (T,)) as numpy on the head's own grid. The likelihoods come from the libraries
made for them where they exist: pycox (PMF, MTLR, DeepHit ranking); the Cox partial likelihood (Breslow ties;
checked against torchsurv and numpy) and the AdaMSS/DeepMTS discrete-time likelihood (Gensheimer &
Narasimhan's nnet-survival form on fixed interval edges) are written here. Every head is checked on tiny hand-computed cases in tests/test_nn.py.

Risk: the Cox head's risk is its log-hazard; a discrete head's risk is minus the restricted mean survival
time over its grid (AdaMSS predicts the expected survival time and ranks by it), so higher = earlier event.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.survival import event_time_grid

HEADS = ("cox", "discrete", "deephit", "mtlr", "pmf")


def _f(x) -> torch.Tensor:
    return x.float().reshape(-1)


def cox_loss(log_hz: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood with Breslow ties, divided by the number of events:
    −Σ_{i: event} [lp_i − log Σ_{j: T_j ≥ T_i} exp(lp_j)] / #events. Every patient with T_j ≥ T_i is in the
    risk set, tied events and tied censorings included. Written out (an n × n mask, fine for a batch) because
    torchsurv's path for event-tie-free batches drops a censoring tied with an event from the risk set; the
    tests check it against torchsurv where they agree and against the numpy likelihood everywhere. A batch
    without an event has no likelihood term: 0, with a gradient, instead of NaN."""
    log_hz, time, event = _f(log_hz), _f(time), _f(event).bool()
    if not bool(event.any()):
        return (log_hz * 0).sum()
    at_risk = time[None, :] >= time[:, None]  # row i: who is at risk at T_i
    log_den = log_hz[None, :].masked_fill(~at_risk, float("-inf")).logsumexp(1)
    return -(log_hz - log_den)[event].sum() / event.sum()


def quantile_cuts(time: np.ndarray, event: np.ndarray, n_bins: int) -> np.ndarray:
    """``n_bins`` interval edges after 0: quantiles of the training event times (TMSS, DeepHit), so every
    interval holds about as many events. Starts at 0."""
    t = np.asarray(time, float)[np.asarray(event, bool)]
    t = t if len(t) else np.asarray(time, float)
    q = np.quantile(t, np.linspace(0, 1, n_bins + 1)[1:], method="linear")
    return np.unique(np.concatenate([[0.0], q]))


def _rmst(surv: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Restricted mean survival time of right-continuous step curves S(t) (S = 1 before times[0]) up to
    the last grid time."""
    widths = np.diff(np.concatenate([[0.0], times]))
    before = np.concatenate([np.ones((len(surv), 1)), surv[:, :-1]], axis=1)  # S on [t_{k-1}, t_k)
    return (before * widths).sum(1)


class CoxHead:
    """One output: the log-hazard. Survival: Breslow baseline on the training patients (scikit-survival's
    ``BreslowEstimator`` on the network's training log-hazards), S_i(t) = S0(t)^exp(lp_i), on ``n_times``
    quantiles of the training event times."""

    n_outputs = 1
    name = "cox"

    def __init__(self, n_times: int = 100):
        self.n_times = n_times

    def setup(self, time, event) -> None:
        pass

    def loss(self, out, time, event):
        return cox_loss(out[:, 0], time, event)

    def fit_baseline(self, train_out: np.ndarray, time, event) -> None:
        from sksurv.linear_model.coxph import BreslowEstimator

        lp = np.asarray(train_out, float).reshape(len(train_out), -1)[:, 0]
        self.shift_ = float(np.median(lp))  # exp() of a centred lp cannot overflow
        self.breslow_ = BreslowEstimator().fit(lp - self.shift_, np.asarray(event, bool), np.asarray(time, float))
        self.times_ = event_time_grid(time, event, self.n_times)

    def risk(self, out: np.ndarray) -> np.ndarray:
        """The log-hazard itself (needs no baseline)."""
        return np.asarray(out, float).reshape(len(out), -1)[:, 0]

    def predict(self, out: np.ndarray):
        lp = self.risk(out)
        if not hasattr(self, "breslow_"):
            raise RuntimeError("CoxHead.predict before fit_baseline")
        s0 = self.breslow_.baseline_survival_(self.times_)
        surv = s0[None, :] ** np.exp(np.clip(lp - self.shift_, -50, 50))[:, None]
        return lp, np.clip(surv, 0, 1), self.times_


class DiscreteHead:
    """Discrete-time survival on interval edges ``[e_0 = 0, e_1, ..., e_K]``: K outputs.

    ``param``:
    - ``"hazard"`` (AdaMSS, DeepMTS's nnet-survival form): output k → conditional probability of surviving
      interval (e_k, e_{k+1}], sigmoid; likelihood of Gensheimer & Narasimhan (2019): an event in interval k
      counts survival of the intervals before it and failure in k; a censored patient counts every interval
      whose midpoint they outlived; an event after e_K counts survival of every interval. S(e_{k+1}) =
      Π_{j ≤ k} p_j. One deviation from nnet-survival: an event exactly on an edge fails in the interval that
      edge closes (nnet-survival moves it to the next one, so an event on the last edge had no failure term).
    - ``"pmf"`` (DeepHit): pycox's PMF parametrisation (softmax over K + 1, the last cell "beyond e_K");
      ``alpha`` < 1 adds pycox's DeepHit ranking loss with ``sigma``: loss = α·NLL + (1 − α)·rank.
    - ``"mtlr"``: pycox's MTLR (PMF after a reverse cumulative sum).
    For pmf/mtlr, output k is the interval (e_k, e_{k+1}]: an event goes to the interval holding it, a
    censoring to the last interval it outlived whole. ``edges``: fixed edges, or None to take ``n_bins``
    quantiles of the training event times (``setup``). Survival is reported at e_1 … e_K.
    """

    def __init__(self, param: str = "hazard", *, edges=None, n_bins: int = 10, alpha: float = 1.0,
                 sigma: float = 0.1):
        if param not in ("hazard", "pmf", "mtlr"):
            raise ValueError(f"param {param!r}: choose hazard, pmf or mtlr")
        self.param, self.n_bins, self.alpha, self.sigma = param, n_bins, alpha, sigma
        self.edges_ = None if edges is None else np.asarray(edges, float)
        self.fixed = edges is not None
        self.name = {"hazard": "discrete", "pmf": "deephit" if alpha < 1 else "pmf", "mtlr": "mtlr"}[param]

    @property
    def n_outputs(self) -> int:
        if self.edges_ is None:
            return self.n_bins
        return len(self.edges_) - 1

    def setup(self, time, event) -> None:
        if not self.fixed:
            self.edges_ = quantile_cuts(time, event, self.n_bins)
            if len(self.edges_) - 1 < self.n_bins:  # tied quantiles: pad the grid so the output size holds
                extra = np.linspace(self.edges_[-1], self.edges_[-1] * 1.5 + 1, self.n_bins - len(self.edges_) + 2)[1:]
                self.edges_ = np.concatenate([self.edges_, extra])

    # -- targets ---------------------------------------------------------------------------------------
    def _index_targets(self, time, event) -> tuple[np.ndarray, np.ndarray]:
        """Interval index (output column) and event flag for pycox's PMF/MTLR likelihoods: an event at t goes
        to the interval (e_{k-1}, e_k] that holds it; an event after e_K is censored at e_K; a censoring at t
        to the last interval it outlived whole (index −1 when it outlived none: no likelihood term)."""
        ends = self.edges_[1:]
        t = np.asarray(time, float)
        e = np.asarray(event, bool)
        k_event = np.searchsorted(ends, t, side="left")
        k_cens = np.searchsorted(ends, t, side="right") - 1
        late = e & (k_event >= len(ends))
        idx = np.where(e & ~late, k_event, np.where(late, len(ends) - 1, k_cens))
        return idx.astype(np.int64), (e & ~late).astype(np.float32)

    def _nnet_targets(self, time, event) -> tuple[np.ndarray, np.ndarray]:
        edges = self.edges_
        t = np.asarray(time, float)[:, None]
        e = np.asarray(event, bool)[:, None]
        upper, mid = edges[1:][None, :], (edges[:-1] + 0.5 * np.diff(edges))[None, :]
        survived = np.where(e, t > upper, t >= mid).astype(np.float32)
        first_after = (t <= upper) & e
        failed = np.zeros_like(survived)
        rows = np.where(first_after.any(1))[0]
        failed[rows, first_after[rows].argmax(1)] = 1.0
        return survived, failed

    def loss(self, out, time, event):
        from pycox.models import loss as L

        out = out.float()
        t, e = time.detach().cpu().numpy(), event.detach().cpu().numpy()
        if self.param == "hazard":
            s, f = (torch.as_tensor(a, device=out.device) for a in self._nnet_targets(t, e))
            # log(1 + s·(p − 1)) is log p where the interval was survived, else 0; log(1 − f·p) is log(1 − p)
            # at the failure interval, else 0. Written in log-sigmoid form for stability.
            ll = s * torch.nn.functional.logsigmoid(out) + f * torch.nn.functional.logsigmoid(-out)
            return -ll.sum(1).mean()
        idx, ev = self._index_targets(t, e)
        keep = idx >= 0  # a censoring before e_1 contributes log 1 = 0
        if not keep.any():
            return (out * 0).sum()
        o = out[torch.as_tensor(keep, device=out.device)]
        idx = torch.as_tensor(idx[keep], device=out.device)
        ev = torch.as_tensor(ev[keep], device=out.device)
        share = float(keep.mean())  # mean over the whole batch, as if dropped rows were there with 0
        if self.param == "mtlr":
            return L.nll_mtlr(o, idx, ev) * share
        nll = L.nll_pmf(o, idx, ev)
        if self.alpha >= 1:
            return nll * share
        from pycox.models.data import pair_rank_mat

        rank_mat = torch.as_tensor(pair_rank_mat(idx.cpu().numpy(), ev.cpu().numpy()), device=out.device,
                                   dtype=o.dtype)
        rank = L.rank_loss_deephit_single(o, idx, ev, rank_mat, self.sigma)
        return (self.alpha * nll + (1 - self.alpha) * rank) * share

    def survival(self, out: np.ndarray) -> np.ndarray:
        from pycox.models import utils

        o = torch.as_tensor(np.asarray(out, np.float32))
        if self.param == "hazard":
            return torch.cumprod(torch.sigmoid(o), 1).numpy()
        if self.param == "mtlr":
            o = utils.cumsum_reverse(o, dim=1)
        pmf = utils.pad_col(o).softmax(1)[:, :-1]
        return (1 - pmf.cumsum(1)).clamp(0, 1).numpy()

    def risk(self, out: np.ndarray) -> np.ndarray:
        """Minus the restricted mean survival time over the grid."""
        return -_rmst(self.survival(out).astype(float), self.edges_[1:])

    def predict(self, out: np.ndarray):
        surv = self.survival(out).astype(float)
        times = self.edges_[1:]
        return -_rmst(surv, times), surv, times


def make_head(name: str, **kw):
    """``cox`` | ``discrete`` (nnet-survival hazard, AdaMSS) | ``deephit`` | ``mtlr`` | ``pmf``; ``kw``: the
    head's settings that the method's config has (n_times, edges, n_bins, alpha, sigma), defaults otherwise."""
    if name == "cox":
        return CoxHead(kw.get("n_times", 100))
    param = {"discrete": "hazard", "deephit": "pmf", "mtlr": "mtlr", "pmf": "pmf"}.get(name)
    if param is None:
        raise ValueError(f"survival head {name!r}: choose one of {', '.join(HEADS)}")
    alpha = kw.get("alpha", 0.5 if name == "deephit" else 1.0)
    return DiscreteHead(param, edges=kw.get("edges"), n_bins=kw.get("n_bins", 10), alpha=alpha,
                        sigma=kw.get("sigma", 0.1))


# -- segmentation -------------------------------------------------------------------------------------------
LABELS = (1, 2)  # GTVp, GTVn


def one_hot(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, Z, Y, X) label map {0, 1, 2} → (B, 2, Z, Y, X) float channels GTVp, GTVn."""
    return torch.cat([(mask == lab) for lab in LABELS], dim=1).float()


def segmentation_loss(kind: str = "dice"):
    """MONAI's DiceLoss or DiceFocalLoss on two sigmoid channels (GTVp, GTVn), Dice pooled over the batch
    (``batch=True``, so a patient without nodes does not give an undefined Dice)."""
    from monai.losses import DiceFocalLoss, DiceLoss

    if kind == "dice":
        fn = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    elif kind == "dicefocal":
        fn = DiceFocalLoss(sigmoid=True, batch=True, gamma=2.0, alpha=0.25, smooth_nr=1e-5, smooth_dr=1e-5)
    else:
        raise ValueError(f"segmentation loss {kind!r}: choose dice or dicefocal")

    def loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return fn(logits.float(), one_hot(mask))

    return loss


def labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, ...) logits → (B, ...) uint8 label map: a voxel is GTVp or GTVn where that channel's sigmoid
    exceeds 0.5, the larger one where both do."""
    p = torch.sigmoid(logits.float())
    best = p.argmax(1)
    return torch.where(p.max(1).values > 0.5, best + 1, torch.zeros_like(best)).to(torch.uint8)
