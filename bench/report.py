"""``bench report METHOD --protocol P``: everything stored about one method under one protocol, as text."""
from __future__ import annotations

import json

import numpy as np

from bench.errors import BenchInputError
from bench.results import results_frame
from bench.store import Store, provenance_of

SHOWN = ["cindex_td", "cindex_harrell", "cindex_uno", "td_auc", "ibs", "dice_gtvp", "dice_gtvn", "logrank_p"]


def _curves(model) -> list[str]:
    """Per-epoch logs a fitted model kept (``history_``: {column: values}), summarised."""
    history = getattr(model, "history_", None)
    if not isinstance(history, dict) or not history:
        return []
    series = {c: v for c, v in history.items() if isinstance(v, list) and v and c != "epoch"}
    n = len(history.get("epoch") or next(iter(series.values()), []))
    kept = "" if "kept_epoch" not in history else (
        f"; weights of epoch {history['kept_epoch']} kept (best validation epoch {history.get('best_epoch')})")
    lines = [f"    {n} epoch(s){kept}"]
    for c, v in series.items():
        if isinstance(v[0], (int, float)):
            line = f"      {c}: first {v[0]:.4g}, last {v[-1]:.4g}"
            if c not in ("lr", "seconds") and np.isfinite(np.asarray(v, float)).any():
                higher = "loss" not in c  # losses: lower is better; scores (C-index, Dice): higher
                line += f", best {(np.nanmax(v) if higher else np.nanmin(v)):.4g}"
            lines.append(line)
    return lines


def method_report(store: Store, method: str, protocol: str) -> str:
    from tabulate import tabulate

    every = store.rows()
    rows = [r for r in every if r["method"] == method and r["protocol"] == protocol]
    if not rows:
        stored = sorted({(r["method"], r["protocol"]) for r in every})
        hint = ", ".join(f"{m}/{p}" for m, p in stored[:12]) or "none"
        raise BenchInputError(f"no stored runs of method {method!r} under protocol {protocol!r} in {store.root} "
                              f"(stored: {hint})")
    frame = results_frame(store, rows=rows)
    out = []
    for cfg in sorted({r["config_hash"] for r in rows}):
        mine = [r for r in rows if r["config_hash"] == cfg]
        first = mine[0]
        env = json.loads(first["env"]) if first.get("env") else {}
        out += [f"# {method} under {protocol} (config {cfg}, dataset {first['dataset']}, scale {first['scale']})", "",
                "config:", *[f"  {k} = {json.dumps(v)}" for k, v in sorted(json.loads(first["config"]).items())], "",
                "environment:", f"  python {env.get('python')}, {env.get('platform')}, device {env.get('device')}, "
                f"git {env.get('git_commit')}",
                "  " + ", ".join(f"{k} {v}" for k, v in sorted((env.get("packages") or {}).items()) if v), ""]
        named = provenance_of(mine)
        if named:
            out += ["inputs beyond the config:", *[f"  {k}: {'; '.join(sorted(v))}" for k, v in sorted(named.items())], ""]
        f = frame[frame.config_hash == cfg].sort_values(["seed", "fold"])
        cols = [c for c in SHOWN if c in f and f[c].notna().any()]
        table = f[["fold_name", "seed", "status"] + cols + ["fit_seconds", "model_reused"]].copy()
        for c in cols:
            table[c] = table[c].map(lambda v: "" if v != v else (f"{v:.3g}" if c == "logrank_p" else f"{v:.3f}"))
        table["fit_seconds"] = table["fit_seconds"].map(lambda v: "" if v != v else f"{v:.1f}")
        out += ["per fold:", tabulate(table, headers="keys", showindex=False, disable_numparse=True), ""]
        out.append("corruption:")
        for r in sorted(mine, key=lambda r: (r["seed"], r["fold"])):
            c = json.loads(r["corruption"]) if r.get("corruption") else {}
            if c.get("kind", "none") == "none":
                out.append(f"  {r['fold_name']}: none")
            else:
                out.append(f"  {r['fold_name']}: {c['kind']} on {', '.join(c['apply_to'])}, fraction {c['fraction']}, "
                           f"{c['n_corrupted']} test patient(s) corrupted, seed {c['seed']}, "
                           f"inputs {'affected' if c.get('affects_inputs') else 'not read by this method'}")
        notes = sorted({r["notes"] for r in mine if r.get("notes")})
        if notes:
            out += ["", "notes:", *[f"  {n}" for n in notes]]
        curves = []
        for r in sorted(mine, key=lambda r: (r["seed"], r["fold"])):
            try:
                loaded = store.load_model(r["train_key"], **_trusted(r)) if r.get("train_key") else None
            except BenchInputError as exc:  # one refused model: say so for its fold, report the rest
                curves += [f"  {r['fold_name']} seed {r['seed']}: model not read ({exc})"]
                continue
            lines = _curves(loaded[0]) if loaded else []
            if lines:
                curves += [f"  {r['fold_name']} seed {r['seed']}:", *lines]
        out += ["", "training curves:", *(curves or ["  (this method keeps no per-epoch log)"]), ""]
    return "\n".join(out).rstrip() + "\n"


def _trusted(row: dict) -> dict:
    """What reading this row's stored model may rebuild: as the runner allows it for the installed method,
    else the classes of the package the row's method class came from."""
    from bench.registry import get_method
    from bench.runner import trusted_by

    try:
        return trusted_by(get_method(row["method"]))
    except BenchInputError:
        cls = (json.loads(row["env"]).get("method") or {}).get("class", "") if row.get("env") else ""
        return {"trusted_packages": (cls.split(".")[0] + ".",)} if cls else {}
