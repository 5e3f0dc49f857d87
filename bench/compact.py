"""Compact run records: what a finished row keeps, and how a row file carries it in a few kilobytes.

Predictions are quantised *before* scoring (``quantise_predictions``): risks and survival curves as float32,
events as bytes, integer-valued times and overlap counts as integers. The stored arrays are then exactly what
was scored, so rescoring a stored row gives its stored metrics bit for bit.

A row file (``bench store export``) leaves out what can be regenerated from the row itself:
- the bootstrap replicates (rescoring the stored predictions on the row's resample seed regenerates them),
- the per-patient corruption manifest (``bench.corruptions.corruption_manifest`` regenerates it from the
  dataset fingerprint, the protocol's corruption and the patient ids; the file keeps its summary),
- the metric definitions in the scoring manifest (the metric registry writes them again).
Import regenerates all three and refuses a row whose regenerated metrics, manifest or corruption summary
differ from what the file says (``regenerate``).

Survival curves are most of a row's bytes. ``encode_curves`` stores them losslessly as a separable
log-cumulative-hazard fit, log(-log S[i, t]) ≈ a[i] + b[t] (exact for a proportional-hazards curve such as a
Cox or Breslow one), plus the integer difference between each float32 value's bits and the fit's; the
residuals are mostly zero and compress to almost nothing. A sha256 of the curves guards the decoding.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from typing import Any

import numpy as np

from bench.errors import BenchInputError

FLOAT32 = ("risk", "train_risk", "survival")  # predictions, quantised before scoring
EVENTS = ("event", "train_event")
INTEGRAL = ("time", "train_time", "dice_inter", "dice_size")  # kept as integers when every value is one
CURVES_FORMAT = "log-log separable fit + float32 bit residuals"
# corruption-manifest parts a row file leaves out: regenerated from the ids and the protocol
CORRUPTION_PER_PATIENT = ("patients", "train_corrupted")


# --- predictions --------------------------------------------------------------------------------------------
def _narrow_integral(a: np.ndarray) -> np.ndarray:
    """``a`` as the smallest signed integer type that holds it exactly, or ``a`` unchanged."""
    if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.array_equal(a, np.round(a)):
        for t in (np.int16, np.int32, np.int64):
            info = np.iinfo(t)
            if a.min() >= info.min and a.max() <= info.max:
                return a.astype(t)
    return a


def quantise_predictions(pred: dict[str, Any]) -> dict[str, Any]:
    """The prediction arrays as they are stored and scored: float32 risks and curves, uint8 events, integer
    times and counts where exact; ids, grid times and anything else unchanged."""
    out = {}
    for k, v in pred.items():
        if v is None:
            out[k] = None
            continue
        a = np.asarray(v)
        if k in FLOAT32:
            a = a.astype(np.float32)
        elif k in EVENTS:
            a = a.astype(bool).astype(np.uint8)
        elif k in INTEGRAL:
            a = _narrow_integral(a)
        out[k] = a
    return out


def is_quantised(pred: dict[str, np.ndarray]) -> bool:
    """Whether stored predictions were quantised before scoring (rows scored before compact records were not)."""
    return all(pred[k].dtype == np.float32 for k in FLOAT32 if k in pred)


# --- survival curves in a row file -------------------------------------------------------------------------
def _fit_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float32 bits of exp(-exp(a[i] + b[t])), 0 where that is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.exp(-np.exp(a.astype(np.float64)[:, None] + b.astype(np.float64)[None, :]))
    s = np.where(np.isfinite(s), s, 0.0).astype(np.float32)
    return s.view(np.uint32)


def _digest(s: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(s, dtype=np.float32).tobytes()).hexdigest()


def encode_curves(s: np.ndarray) -> dict[str, np.ndarray]:
    """float32 curves (patients × times) as fit parameters, bit residuals and a digest (see module doc)."""
    s = np.ascontiguousarray(s, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.log(-np.log(s.astype(np.float64)))
    ll[~np.isfinite(ll)] = np.nan
    n, m = s.shape
    b = np.zeros(m)
    a = np.zeros(n)
    if np.isfinite(ll).any():
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: fit 0 there
            b = np.nan_to_num(np.nanmean(ll, axis=0))
            a = np.nan_to_num(np.nanmean(ll - b[None, :], axis=1))
    a, b = a.astype(np.float32), b.astype(np.float32)
    resid = s.view(np.uint32) - _fit_bits(a, b)  # modulo 2**32: exact whatever the fit
    return {"curve_a": a, "curve_b": b, "curve_resid": resid.view(np.int32),
            "curve_sha256": np.frombuffer(bytes.fromhex(_digest(s)), dtype=np.uint8)}


def decode_curves(parts: dict[str, np.ndarray], what: str) -> np.ndarray:
    a, b, resid, digest = (parts[k] for k in ("curve_a", "curve_b", "curve_resid", "curve_sha256"))
    if resid.shape != (len(a), len(b)) or resid.dtype != np.int32 or a.dtype != np.float32 or b.dtype != np.float32:
        raise BenchInputError(f"{what}: survival curves are not encoded as {CURVES_FORMAT}")
    s = (_fit_bits(a, b) + resid.view(np.uint32)).view(np.float32)
    if _digest(s) != bytes(digest).hex():
        raise BenchInputError(f"{what}: the survival curves decode to other values than were written (damaged "
                              f"file, or this machine computes exp/log differently); nothing was imported")
    return s


def encode_predictions(arrays: dict[str, np.ndarray], *, compress: bool = True) -> bytes:
    """Stored predictions as a row file's npz (``compress`` False: members stored, for a compressor that sees
    the whole archive): the curves through ``encode_curves``."""
    out = {k: v for k, v in arrays.items() if k != "survival"}
    if "survival" in arrays:
        out.update(encode_curves(arrays["survival"]))
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **out)
    return buf.getvalue()


def decode_predictions(arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """The stored predictions from a row file's arrays (``encode_predictions`` undone)."""
    parts = [k for k in arrays if k.startswith("curve_")]
    out = {k: v for k, v in arrays.items() if not k.startswith("curve_")}
    if parts:
        if sorted(parts) != ["curve_a", "curve_b", "curve_resid", "curve_sha256"]:
            raise BenchInputError(f"{what}: survival curves are not encoded as {CURVES_FORMAT}")
        out["survival"] = decode_curves(arrays, what)
    return out


# --- manifests ------------------------------------------------------------------------------------------------
def compact_corruption(manifest: dict[str, Any]) -> dict[str, Any]:
    """The corruption manifest without its per-patient parts (regenerated on import)."""
    return {k: v for k, v in manifest.items() if k not in CORRUPTION_PER_PATIENT}


def compact_manifest(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The scoring manifest without the metric definitions (the registry writes them again)."""
    return None if manifest is None else {k: v for k, v in manifest.items() if k != "definitions"}


def history_json(history: dict | None) -> str | None:
    """A fit's per-epoch training history as JSON: series of numbers (4 significant digits), or None."""
    if not history:
        return None
    out = {}
    for name, series in history.items():
        try:
            values = [float(v) for v in series]
        except (TypeError, ValueError):
            continue  # a series of non-numbers (e.g. stage names) is not a curve to plot
        out[str(name)] = [float(f"{v:.4g}") if math.isfinite(v) else None for v in values]
    return json.dumps(out, sort_keys=True) if out else None


# --- regeneration --------------------------------------------------------------------------------------------
def regenerate(row: dict[str, Any], predictions: dict[str, np.ndarray], what: str):
    """Rescore a carried row from its predictions and rebuild its corruption manifest. Returns (Scored, full
    corruption manifest); ``BenchInputError`` naming ``what`` when they differ from what the row says."""
    from bench.corruptions import corruption_manifest
    from bench.hashing import content_hash
    from bench.scoring import bootstrap_seed, score

    protocol = json.loads(row["protocol_content"])
    manifest = json.loads(row["manifest"]) if row["manifest"] else {}
    seed = bootstrap_seed(protocol["metrics"], content_hash(protocol["split"]), row["fold"])
    if (manifest.get("bootstrap") or {}).get("seed") != seed:
        raise BenchInputError(f"{what}: its bootstrap seed is not the one its protocol and fold give ({seed}); "
                              f"nothing was imported")
    try:
        scored = score(protocol["metrics"], dict(predictions), boot_seed=seed)
    except BenchInputError as exc:
        raise BenchInputError(f"{what}: cannot be rescored here ({exc})") from None
    stored = json.loads(row["metrics"])
    if scored.metrics != stored:
        diff = sorted(k for k in set(stored) | set(scored.metrics) if stored.get(k) != scored.metrics.get(k))
        raise BenchInputError(f"{what}: its predictions score differently from its stored metrics ({', '.join(diff)}): "
                              f"the file was edited or damaged, or the metrics changed; nothing was imported")
    if compact_manifest(scored.manifest) != compact_manifest(manifest):
        raise BenchInputError(f"{what}: rescoring gives another scoring manifest than the file's; nothing was imported")
    corruption = json.loads(row["corruption"])
    full = corruption_manifest(row["dataset_fp"], protocol["corruption"], [str(i) for i in predictions["ids"]],
                               affects_inputs=bool(corruption.get("affects_inputs")),
                               train_ids=[str(i) for i in predictions.get("train_ids", [])])
    if compact_corruption(full) != compact_corruption(corruption):
        raise BenchInputError(f"{what}: its corruption summary differs from the one its protocol and patients give; "
                              f"nothing was imported")
    return scored, full
