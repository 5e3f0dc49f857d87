"""``bench pretrain``: a command this package adds to ``bench`` through the entry-point group ``bench.commands``
(see docs/commands.md). Only click is imported here; the encoders load when the command runs."""
from __future__ import annotations

import click

from bench.errors import BenchInputError
from bench.scales import SCALES


@click.command("pretrain")
@click.option("--encoder", "encoders", required=True, help="ct-fm, pet-fm or both (comma-separated).")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True,
              help="The encoder size and pretraining length of this scale (the one `bench run` uses).")
@click.option("--force", is_flag=True, help="Pretrain again even when cached weights exist.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.pass_context
def pretrain_cmd(ctx, encoders: str, scale: str, force: bool, device: str) -> None:
    """Pretrain a foundation-model encoder self-supervised (masked-image modelling) on the external corpus.

    The corpus is the synthetic cohort of this scale generated with another seed (corpus_seed 1), never the
    benchmark's patients. Weights are cached (official checkpoint layout) with a card: loss per epoch, and a
    linear probe (ridge, held-out R² on log tumour volume, the true risk η and necrosis) of the frozen features
    against the same probe on a randomly initialised encoder, with a verdict per target (above it on the same
    random halving in at least 9 of 10, and mean R² >= 0.05). `bench run --method fm-ct,...` pretrains on
    first use; this command does it ahead of time and prints the card."""
    from bench.data import cache_dir
    from bench.runner import resolve_device
    from proposed.fm_encoders.pretraining import pretrain
    from proposed.fm_encoders.specs import SPECS, encoder_config

    names = [n.strip() for n in encoders.split(",") if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown or not names:
        raise BenchInputError(f"--encoder {encoders!r}: choose from {', '.join(SPECS)}")
    dev = resolve_device(device)
    for name in names:
        path = pretrain(name, scale, encoder_config(name, scale), cache=cache_dir(), device=dev,
                        progress=not (ctx.obj or {}).get("quiet"), force=force)
        _echo_card(name, scale, path)


def _echo_card(name: str, scale: str, path) -> None:
    """The card of pretrained weights: where, which corpus and objective, the loss, the probe's verdicts."""
    from proposed.fm_encoders.networks import file_hash
    from proposed.fm_encoders.pretraining import card
    from proposed.fm_encoders.probe import PROBE_SPLITS

    c = card(path) or {}
    loss = c.get("loss_per_epoch") or [float("nan")]
    probe = c.get("probe", {})
    click.echo(f"{name} ({scale}): {path}\n  sha256 {file_hash(path)[:16]}, corpus {c.get('corpus')} "
               f"({c.get('corpus_patients')} patients), {c.get('objective')}\n"
               f"  loss {loss[0]:.4f} → {loss[-1]:.4f} over {len(loss)} epochs, {c.get('seconds')} s\n"
               f"  linear probe ({probe.get('metric')}):")
    for t in (probe.get("targets") or {}).values():
        (a, sa), (b, sb) = t["pretrained"], t["random_init"]
        verdict = (f"above it in {t['wins']} of {PROBE_SPLITS} halvings: "
                   f"{'beats' if t['beats_random'] else 'does NOT beat'} the random encoder")
        click.echo(f"    {t['description']}: pretrained {a:.3f} ± {sa:.3f}, random init {b:.3f} ± {sb:.3f}; "
                   f"{verdict}")
    if probe.get("verdict"):
        click.echo(f"  ({probe['verdict']})")
