"""``bench``: the command line, a thin face over the library.

Exit codes: 0 ok; 2 bad input (a message naming what and where, no traceback); 1 internal error.
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import sys
from pathlib import Path

import click

from bench import faults
from bench.commands import CommandGroup
from bench.errors import BenchInputError
from bench.scales import RENAMED, RUN_HELP, SCALES, SYNTHETIC_HELP, SYNTHETIC_SCALES, synthetic_scale

RESULTS_HELP = "Results directory (SQLite store, splits, fitted models)."
RAY_ADDRESS_HELP = ("auto (a cluster started on this machine with `ray start --head`, or $RAY_ADDRESS), HOST:PORT "
                    "of a cluster's head, or local (a one-machine Ray started for this run)")


_FILE_SYSTEM = {errno.EACCES: "permission denied", errno.EPERM: "not permitted", errno.EROFS: "read-only file system",
                errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "disk quota exceeded"}


def input_error(exc: BaseException) -> str | None:
    """The message for an error that is bad input or a file-system or database problem, not a bug (exit 2);
    None for anything else. The library raises BenchInputError naming the file; the SQLite and OSError cases
    are the safety net for a path it did not foresee."""
    if isinstance(exc, BenchInputError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return (f"SQLite: {exc} — a results store (runs.sqlite under --results) is damaged, locked or read-only; "
                f"it was left as it is")
    if isinstance(exc, OSError) and exc.errno in _FILE_SYSTEM:
        where = exc.filename if exc.filename is not None else "a file"
        return f"cannot use {where}: {_FILE_SYSTEM[exc.errno]} ({exc.strerror or exc}); fix that or choose another path"
    return None


class BenchGroup(CommandGroup):
    """Turns BenchInputError into exit 2 with a clean message, wherever it is raised; its commands include
    those other packages register in the entry-point group ``bench.commands``."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (BenchInputError, sqlite3.Error, OSError) as exc:
            message = input_error(exc)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished jobs are stored; run the same command again to resume", err=True)
            sys.exit(130)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="survbench", prog_name="bench")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool) -> None:
    """survbench — train and score survival methods on PET/CT + clinical cohorts, the same way for all.

    \b
    Typical use:
      bench list                                   registered methods
      bench protocols                              shipped protocols
      bench run --method coxph --protocol clean    run, store and summarise
      bench results --format csv > runs.csv        one row per (method, protocol, fold, seed)
    """
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"quiet": quiet}
    if os.environ.get(faults.ENV):
        faults.parse(os.environ[faults.ENV])  # a mistyped fault point is exit 2 before any work


# --- methods --------------------------------------------------------------------------------------------
@cli.command("list")
@click.option("-v", "--verbose", is_flag=True,
              help="Import each method to show what it consumes/produces, its scales and what one fit asks of a machine.")
def list_cmd(verbose: bool) -> None:
    """List registered methods (entry points of group bench.methods) without importing them."""
    from tabulate import tabulate

    from bench.registry import available

    entries = available()
    if not entries:
        click.echo("no methods registered")
        return
    if not verbose:
        rows = [(e.name, e.package, e.target) for e in entries.values()]
        click.echo(tabulate(rows, headers=["method", "package", "entry point"], tablefmt="simple"))
        return
    from bench.method import method_resources

    def per_fit(cls, scale: str) -> str:  # Method.resources, as --executor ray asks for them
        try:
            r = method_resources(cls, scale)
        except BenchInputError as exc:
            return f"invalid: {exc}"
        return f"{r.cpus} CPU" + (f", {r.gpus:g} GPU" if r.gpus else "") + f", {r.memory_gb:g} GiB"

    rows = []
    for e in entries.values():
        try:
            cls = e.load()
        except BenchInputError as exc:
            rows.append((e.name, e.package, f"cannot load: {exc}", "", "", "", "", ""))
            continue
        rows.append((
            e.name, e.package, ",".join(cls.consumes), ",".join(cls.produces), ",".join(cls.configs),
            "yes" if cls.needs_mask_at_test else "", per_fit(cls, "quick"), per_fit(cls, "paper"),
        ))
    click.echo(tabulate(rows, headers=["method", "package", "consumes", "produces", "scales", "mask at test",
                                       "per fit (quick)", "per fit (paper)"]))


@cli.command("metrics")
@click.option("-v", "--verbose", is_flag=True, help="Also print each metric's definition.")
def metrics_cmd(verbose: bool) -> None:
    """List registered metrics: survbench's own and those of installed packages (entry points of group
    bench.metrics). A protocol's metrics.report may name any per-job metric; summary metrics are computed
    across protocols on the leaderboard pages."""
    from tabulate import tabulate

    from bench.metric_registry import MetricSpec, available

    rows, definitions = [], []
    for entry in available().values():
        try:
            spec = entry.load()
        except BenchInputError as exc:
            rows.append((entry.name, entry.package, f"cannot load: {exc}", "", "", "", ""))
            continue
        per_job = isinstance(spec, MetricSpec)
        rows.append((spec.name, entry.package, "per job" if per_job else f"across protocols ({spec.axis})",
                     spec.label, "higher" if spec.higher_is_better else "lower",
                     ",".join(spec.needs) if per_job else "", spec.bootstrap if per_job else ""))
        definitions.append(f"{spec.name}: {spec.definition}")
    click.echo(tabulate(rows, headers=["metric", "package", "kind", "label", "better", "needs", "bootstrap"],
                        disable_numparse=True))
    if verbose:
        click.echo("\n" + "\n".join(definitions))


# --- protocols ------------------------------------------------------------------------------------------
@cli.group("protocols", invoke_without_command=True)
@click.pass_context
def protocols_cmd(ctx: click.Context) -> None:
    """List the shipped protocols; `bench protocols show NAME` prints one."""
    if ctx.invoked_subcommand is not None:
        return
    from tabulate import tabulate

    from bench.protocols import builtin_names, load_protocol

    rows = []
    for n in builtin_names():
        p = load_protocol(n)
        corruption = p.corruption_type or (p.corruption["kind"] if p.corrupts else "-")
        rows.append((p.name, p.version, p.split["kind"], corruption, p.severity or "-",
                     p.corruption.get("fraction", "-") if p.corrupts else "-", p.hash, p.description))
    click.echo(tabulate(rows, headers=["protocol", "version", "split", "corruption", "severity", "fraction", "hash",
                                       "description"], disable_numparse=True))


@protocols_cmd.command("show")
@click.argument("name")
def protocols_show(name: str) -> None:
    """Print protocol NAME (or a TOML file path) and its content hash."""
    from bench.protocols import load_protocol, protocol_text

    p = load_protocol(name)
    click.echo(f"# {p.source}  hash {p.hash}")
    click.echo(protocol_text(name).rstrip())


# --- data -----------------------------------------------------------------------------------------------
@cli.group("data")
def data_cmd() -> None:
    """Datasets: generate the synthetic PET/CT cohort or the clinical demo cohort, look at a patient."""


@data_cmd.command("synth")
@click.option("--scale", type=click.Choice(SYNTHETIC_SCALES + tuple(RENAMED)), default="quick", show_default=True,
              help=SYNTHETIC_HELP)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write (default: the cache, where `bench run` finds it).")
@click.option("--workers", type=int, default=None, help="Processes (default: every core).")
@click.option("--format", "fmt", type=click.Choice(["nifti", "dicom"]), default="nifti", show_default=True,
              help="dicom: generate the NIfTI cohort (in the cache), then export it as DICOM studies (CT, PET, "
                   "RTSTRUCT) with the two CSVs to --out, for `bench data import-dicom` (docs/dicom.md).")
@click.pass_context
def data_synth(ctx, scale: str, seed: int, out: Path | None, workers: int | None, fmt: str) -> None:
    """Write the synthetic multi-centre head-and-neck PET/CT cohort in the HECKTOR 2022 layout.

    CT, PET and masks as NIfTI, the two CSVs, and the ground truth (linear predictor η and each term's
    contribution, the latent traits h and g, necrosis, true volumes) in groundtruth/ outside the layout.
    Same scale and seed → same bytes; a complete cohort is not rewritten, and a killed generation resumes
    with the patients already written. With --format dicom, the same cohort as DICOM studies instead.
    """
    import time

    from bench.data import cache_dir
    from bench.data.hecktor import load_hecktor
    from bench.data.synthetic import GENERATOR_VERSION, default_path, generate, scale_config

    if not 0 <= seed < 2**32:
        raise BenchInputError("--seed must be an integer in [0, 2**32)")
    scale = synthetic_scale(scale)
    if workers is not None and workers < 1:
        raise BenchInputError("--workers must be at least 1")
    nifti = default_path(cache_dir() / "datasets", scale, seed)
    target = (out or nifti) if fmt == "nifti" else nifti
    t0 = time.perf_counter()
    generate(target, scale_config(scale), seed, workers=workers, progress=not ctx.obj["quiet"])
    ds = load_hecktor(target)
    if fmt == "dicom":
        from bench.data.dicom_write import export_dicom
        from bench.data.hecktor import CLINICAL_FILE, ENDPOINT_FILE

        dicom = out or nifti.with_name(nifti.name + "-dicom")
        export_dicom(target, dicom, progress=not ctx.obj["quiet"])
        click.echo(f"{dicom}: DICOM (CT, PET in Bq/ml, RTSTRUCT) of {len(ds.ids)} patients exported from {target} "
                   f"({time.perf_counter() - t0:.1f} s); the CSVs are beside them. Import with:\n"
                   f"  bench data import-dicom {dicom} --out DIR --clinical {dicom / CLINICAL_FILE} "
                   f"--endpoints {dicom / ENDPOINT_FILE}")
        return
    events = int(ds.outcomes.event.sum())
    click.echo(f"{target}: generator v{GENERATOR_VERSION}, {len(ds.ids)} patients in {len(set(ds.centres.values))} "
               f"centres, {events} events ({events / len(ds.ids):.0%}), fingerprint {ds.fingerprint} "
               f"({time.perf_counter() - t0:.1f} s)")


@data_cmd.command("show")
@click.argument("patient")
@click.option("--dataset", "-d", default="synthetic:quick", show_default=True, help="As for `bench run`.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: PATIENT.png in the current folder).")
def data_show(patient: str, dataset: str, out: Path | None) -> None:
    """Write a PNG of PATIENT: CT with the GTVp/GTVn outlines, PET, and both fused, in three planes."""
    from bench.data import load_dataset
    from bench.data.show import default_png, show_patient

    ds = load_dataset(dataset)
    if patient not in ds.ids:
        raise BenchInputError(f"patient {patient!r} is not in {ds.name} (e.g. {', '.join(list(ds.ids)[:3])})")
    png = show_patient((ds.images or {}).get(patient), patient, out or default_png(patient))
    click.echo(str(png))


@cli.command("corrupt")
@click.option("--protocol", "-p", required=True,
              help="A protocol that corrupts images, e.g. noisy50 or misregistration-s3.")
@click.option("--patient", required=True, help="Patient id.")
@click.option("--dataset", "-d", default="synthetic:quick", show_default=True, help="As for `bench run`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
def corrupt_cmd(protocol: str, patient: str, dataset: str, out: Path) -> None:
    """Write what PATIENT's test images become under PROTOCOL (the exact files the runner hands to methods:
    each modality the corruption rewrites, as PATIENT__CT.nii.gz / PATIENT__PT.nii.gz) and PATIENT__PROTOCOL.png,
    clean beside corrupted CT and PET on one axial slice through the PET hot region, so a person can look at
    them; says so when the patient is not in the corrupted fraction."""
    import shutil

    from bench.corruptions import corrupted_images, corruption_manifest, describe, selected, selection_draw
    from bench.corruptions.render import axial_slice, comparison_png, slice_position
    from bench.data import cache_dir, load_dataset
    from bench.fsutil import output_errors, path_under, safe_name, writable_dir
    from bench.protocols import load_protocol

    pr = load_protocol(protocol)
    if not pr.corrupts:
        raise BenchInputError(f"--protocol {protocol}: it corrupts nothing (corruption kind 'none')")
    ds = load_dataset(dataset)
    if patient not in ds.ids:
        raise BenchInputError(f"--patient {patient!r} is not in {ds.name}")
    if ds.images is None:
        raise BenchInputError(f"{ds.name} has no images to corrupt")
    c = pr.corruption
    u = selection_draw(ds.fingerprint, c["seed"], patient)
    if not selected(ds.fingerprint, c, patient):
        click.echo(f"{patient} is not corrupted under {pr.name}: its draw u = {u:.3f} >= fraction {c['fraction']}")
        return
    clean = ds.images[patient]
    files = corrupted_images(clean, ds.fingerprint, c, patient, cache_dir() / "corrupted")
    entry = corruption_manifest(ds.fingerprint, c | {"apply_to": ["test"]}, [patient], affects_inputs=True)
    draws = {k: v for k, v in entry["patients"][patient].items() if k not in ("u", "corrupted", "ct", "pet")}
    safe_name(patient, "--patient")
    writable_dir(out, "--out")
    written = []
    with output_errors(out, "--out"):
        for src, before, name in ((files.ct, clean.ct, f"{patient}__CT.nii.gz"),
                                  (files.pet, clean.pet, f"{patient}__PT.nii.gz")):
            if Path(src) != Path(before):
                shutil.copyfile(src, path_under(out, name))
                written.append(name)
        point, where = slice_position(clean, files, patient)
        text = describe(c, draws)
        png = comparison_png(axial_slice(clean, patient, point), axial_slice(files, patient, point),
                             f"{patient} under {pr.name}: {text}", where, path_under(out, f"{patient}__{pr.name}.png"))
    click.echo(f"{patient} under {pr.name} (u = {u:.3f} < {c['fraction']}): {text} → {out}/ "
               f"({', '.join(written + [png.name])})")


@data_cmd.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def data_verify(ctx, path: Path) -> None:
    """Check a HECKTOR 2022 folder: files present and readable, CSV columns and types, ids matching, CT/PET/mask
    geometry consistent, labels in {0, 1, 2}, every .nii.gz complete. Lists the problems with their patient and
    file (20 of each kind, then how many more); exit 2 if any."""
    from bench.data.hecktor import MAX_LISTED_PROBLEMS, listed
    from bench.data.verify import verify

    n, problems, notes = verify(path, progress=not ctx.obj["quiet"])
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if problems:
        click.echo(f"{path}: {len(problems)} problem(s) ({MAX_LISTED_PROBLEMS} of each kind listed):", err=True)
        click.echo("\n".join(f"  - {line}" for line in listed(problems, MAX_LISTED_PROBLEMS)), err=True)
        sys.exit(2)
    click.echo(f"{path}: OK ({n} patients{', images not checked' if notes else ''})")


@data_cmd.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@click.option("--seed", type=int, default=0, show_default=True)
def data_demo(out: Path, seed: int) -> None:
    """Write the clinical-only demo cohort (HECKTOR 2022 CSVs, 489 patients, 7 centres) to OUT."""
    from bench.data.demo import write_demo
    from bench.data.hecktor import load_hecktor

    write_demo(out, seed)
    ds = load_hecktor(out)
    click.echo(f"wrote {out}: {len(ds.ids)} patients, {ds.outcomes.event.sum()} events, "
               f"{ds.centres.nunique()} centres, fingerprint {ds.fingerprint}")


@data_cmd.command("import-dicom")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (new or empty; written all at once, nothing when there is a problem).")
@click.option("--roi-map", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML file of ROI-name patterns: [gtvp] patterns = [...], [gtvn] patterns = [...] "
                   "(default: ^gtv[-_ ]?p|primary and ^gtv[-_ ]?n|node, case-insensitive).")
@click.option("--clinical", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Clinical table (HECKTOR 2022 columns), copied in; with --endpoints.")
@click.option("--endpoints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Endpoint table (PatientID, Relapse, RFS), copied in; with --clinical.")
@click.pass_context
def data_import_dicom(ctx, src: Path, out: Path, roi_map: Path | None, clinical: Path | None,
                      endpoints: Path | None) -> None:
    """Turn a folder of DICOM studies (CT, PET, RTSTRUCT; grouped by PatientID) into the dataset layout: CT in
    HU, PET in SUVbw from its tags, GTVp/GTVn masks on the CT grid from the RTSTRUCT, a provenance file per
    patient and study.toml. With the two tables, OUT is also a HECKTOR 2022 folder (--dataset hecktor2022:OUT).
    Every problem is listed with its patient and file, and nothing is written (exit 2). See docs/dicom.md."""
    from bench.data.dicom import MANIFEST_FILE, import_dicom, load_roi_map
    from bench.data.hecktor import load_hecktor

    result = import_dicom(src, out, roi_map=load_roi_map(roi_map), clinical=clinical, endpoints=endpoints,
                          progress=not ctx.obj["quiet"])
    click.echo(f"{out}: {len(result.patients)} patient(s) imported, {len(result.with_mask)} with GTVp/GTVn masks "
               f"({len(result.skipped)} non-DICOM file(s) skipped)")
    if result.not_in_tables:
        click.echo(f"note: {len(result.not_in_tables)} imported patient(s) are not in the endpoint table and are not "
                   f"part of the dataset: {', '.join(result.not_in_tables[:10])}", err=True)
    if result.has_tables:
        ds = load_hecktor(out)
        click.echo(f"{out}: a HECKTOR 2022 folder of {len(ds.ids)} patients, fingerprint {ds.fingerprint}; use "
                   f"--dataset hecktor2022:{out}")
    else:
        click.echo(f"note: no --clinical/--endpoints: {out / MANIFEST_FILE} lists the images, its [dataset] section "
                   f"is commented out; add the two tables and uncomment it", err=True)


# --- run ------------------------------------------------------------------------------------------------
def _echo_summary(results: Path, keys: list, header: str) -> None:
    """The summary table `bench run` and `bench score` end with: the stored rows of ``keys``, under ``header``."""
    from tabulate import tabulate

    from bench.metric_registry import run_summary_columns
    from bench.results import results_frame, summarise
    from bench.store import Store

    frame = results_frame(Store(results), keys, with_bootstrap=True)
    summary = summarise(frame, metrics=run_summary_columns())
    click.echo(header)
    click.echo(tabulate(summary, headers="keys", showindex=False) if not summary.empty else "no results")


@cli.command("run")
@click.option("--method", "-m", "method", required=True, help="Method name(s), comma-separated, or 'all' (see `bench list`).")
@click.option("--protocol", "-p", "protocol", default="clean", show_default=True,
              help="Protocol name(s), comma-separated, or a TOML file path (see `bench protocols`); groups: "
                   "noisy (noisy10…noisy100), suite (every corruption-suite protocol), suite-s135 (severities 1, "
                   "3, 5 and the missing modalities).")
@click.option("--dataset", "-d", default=None,
              help="synthetic[:SCALE[:SEED]] (default: the synthetic PET/CT cohort of the run's scale, "
                   "generated on first use), demo[:SEED] (clinical only) or hecktor2022:PATH.")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True, help=RUN_HELP)
@click.option("--seed", default="0", show_default=True, help="Training seed(s), comma-separated.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field (TOML value); METHOD:KEY=VALUE targets one method. Repeatable.")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA where a GPU is visible (under --executor ray: where the worker was given one).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: every job in this process, one after another. ray: the jobs as tasks on a Ray cluster, "
                   "each asking for the CPUs/GPUs its method declares (needs survbench[ray]; docs/cluster.md).")
@click.option("--address", default="auto", show_default=True, metavar="auto|HOST:PORT|local",
              help="With --executor ray: " + RAY_ADDRESS_HELP + ".")
@click.pass_context
def run_cmd(ctx, method, protocol, dataset, scale, seed, overrides, results, device, executor, address) -> None:
    """Run every (method, protocol, fold, seed) job, store the results and print a summary.

    Finished jobs are skipped, so a killed run picks up where it stopped. Protocols that differ only in
    test-side corruption share one fitted model per fold. With --executor ray the same jobs run on a Ray
    cluster and this process alone writes the store; the rows are those a local run gives.
    """
    from tabulate import tabulate

    from bench.data import load_dataset
    from bench.protocols import resolve_protocols
    from bench.registry import resolve_names
    from bench.runner import plan_methods, resolve_device, run_jobs

    seeds = parse_seeds(seed)
    names = resolve_names(method)
    protocols = resolve_protocols(protocol)
    plans = plan_methods(names, scale, list(overrides))
    if executor == "ray":
        from bench.ray_executor import import_ray

        import_ray()  # not installed: say so before the dataset is loaded or generated
    elif address != "auto":
        raise BenchInputError(f"--address {address}: only with --executor ray")
    ds = load_dataset(dataset, scale, progress=not ctx.obj["quiet"])
    every = any(part.strip() == "all" for part in method.split(","))
    if executor == "ray":
        from bench.ray_executor import run_jobs_ray

        dev = device  # each worker resolves it on its own node
        report, where = run_jobs_ray(plans, protocols, ds, scale=scale, seeds=seeds, results_dir=results,
                                     device=device, progress=not ctx.obj["quiet"], skip_unfit=every, address=address)
    else:
        dev = resolve_device(device)
        report = run_jobs(plans, protocols, ds, scale=scale, seeds=seeds, results_dir=results, device=dev,
                          progress=not ctx.obj["quiet"], skip_unfit=every)
        where = "local executor"
    for skipped in report.skipped_methods:
        click.echo(f"skipped {skipped}", err=True)
    _echo_summary(results, [k for k, _ in report.keys],
                  f"\ndataset {ds.name} ({len(ds.ids)} patients, fingerprint {ds.fingerprint}), scale {scale}, "
                  f"device {dev}, {where}")
    click.echo(f"\n{report.ran} job(s) run, {report.skipped} already done, {report.fits} model(s) fitted, "
               f"{report.reused_models} reused; results in {results}/")
    if report.rescored:
        click.echo(f"{report.rescored} finished job(s) rescored from their stored predictions "
                   f"(scored with older metric definitions, or before DSC intervals existed)")
    click.echo("All metrics, per horizon: `bench results --summary`; paired tests: `bench results --compare METHOD`.")
    if report.failed:
        click.echo(f"{len(report.failed)} job(s) failed (see the log above and `bench results`):", err=True)
        for f in report.failed:
            click.echo(f"  - {f}", err=True)
        sys.exit(1)


from bench.plan import plan_cmd  # noqa: E402 - a command of its own module, registered here

cli.add_command(plan_cmd)


@cli.command("score")
@click.option("--dataset", "-d", default=None, help="As for `bench run` (default: the synthetic cohort of --scale).")
@click.option("--protocol", "-p", "protocol", required=True,
              help="One protocol name or TOML file: its folds (the results folder's stored split) and metrics.")
@click.option("--predictions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV: PatientID, fold, risk (or Prediction under --convention hecktor), optional S(<days>) "
                   "survival columns; one row per test patient of every fold (see docs/score.md).")
@click.option("--name", default=None, help="Method name to store the rows under (not a registered method's).")
@click.option("--train-predictions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Optional CSV of the same format for the training patients of each fold: the log-rank split at "
                   "the training-fold median risk (else the test fold's median, noted) and Breslow curves.")
@click.option("--convention", type=click.Choice(["survbench", "hecktor"]), default="survbench", show_default=True,
              help="survbench: column risk, higher = earlier event. hecktor: HECKTOR 2022 Task 2, column Prediction "
                   "(a risk score, anti-concordant with RFS), a missing (NaN) prediction allowed and tied.")
@click.option("--template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an empty predictions file with PatientID and fold filled in, print the folds, and stop.")
@click.option("--train-template", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The same for --train-predictions (each training patient once per fold it trains in).")
@click.option("--scale", type=click.Choice(SCALES), default="quick", show_default=True,
              help="The scale the rows are stored under (the other methods' runs they are compared with).")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed the rows are stored under.")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
@click.pass_context
def score_cmd(ctx, dataset, protocol, predictions, name, train_predictions, convention, template, train_template,
              scale, seed, results) -> None:
    """Score predictions made elsewhere (a model that cannot be a plugin) with the metrics, CIs, stored rows,
    records and pages of `bench run`, on the same folds; the rows are marked external.

    Run with --template first to get the patients of each fold. Scoring the same file again changes nothing;
    another file under the same --name and protocol is refused (see `bench store drop`)."""
    from tabulate import tabulate

    from bench.data import load_dataset
    from bench.external import check_name, score_external, write_template
    from bench.protocols import load_protocol
    from bench.splits import split_plan

    if "," in protocol:
        raise BenchInputError(f"--protocol {protocol!r}: one protocol per predictions file")
    templates = [(t, side) for t, side in ((template, "test"), (train_template, "training")) if t is not None]
    if templates and (predictions is not None or train_predictions is not None):
        raise BenchInputError("--template/--train-template write empty files to fill in; score them in a second "
                              "call with --predictions")
    if not templates:
        missing = [opt for opt, v in (("--predictions", predictions), ("--name", name)) if v is None]
        if missing:
            raise BenchInputError(f"{' and '.join(missing)} missing: give the CSV to score and the name to store it "
                                  f"under (or --template OUT.csv to get an empty one)")
        check_name(name)
    if not 0 <= seed < 2**32:
        raise BenchInputError(f"--seed {seed}: seeds must lie in [0, 2**32)")
    pr = load_protocol(protocol)
    ds = load_dataset(dataset, scale, progress=not ctx.obj["quiet"])
    if templates:
        splits = split_plan(ds, pr.split, results, [seed])
        for out, side in templates:
            counts = write_template(out, splits, side=side, convention=convention, seed=seed)
            click.echo(f"{out}: {side} patients of {pr.name} on {ds.name} (split {splits.path.name}), fill in "
                       f"the {'Prediction' if convention == 'hecktor' else 'risk'} column:")
            click.echo(tabulate(counts, headers=["fold", "patients"], disable_numparse=True))
        return
    report = score_external(name, pr, ds, predictions, results_dir=results, scale=scale, seed=seed,
                            convention=convention, train_predictions=train_predictions)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    _echo_summary(results, report.keys,
                  f"\n{name} (external, config {report.config_hash[:8]}) under {pr.name} on {ds.name} "
                  f"({len(ds.ids)} patients, fingerprint {ds.fingerprint}), scale {scale}")
    click.echo(f"\n{report.scored} fold(s) scored, {report.skipped} already scored from this file; results in "
               f"{results}/")
    if report.rescored:
        click.echo(f"{report.rescored} finished fold(s) rescored from their stored predictions (older metric "
                   f"definitions)")



@cli.command("results")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--summary", is_flag=True,
              help="Mean ± sd over folds per (method, protocol), with the 95 % CI of the C-td-index from a "
                   "fold-stratified patient bootstrap (csv/json: every metric's _mean, _sd, _n, _low, _high).")
@click.option("--compare", "reference", metavar="METHOD[@CONFIG]",
              help="Paired comparison of every method (and config) against METHOD on the same folds and "
                   "patients: mean difference, bootstrap 95 % CI, p-value and Holm-corrected p-value per "
                   "protocol. With several configs of METHOD stored, name one by a config-hash prefix.")
@click.option("--metric", default="cindex_td", show_default=True, help="The metric --compare compares.")
def results_cmd(results: Path, fmt: str, summary: bool, reference: str | None, metric: str) -> None:
    """Export stored runs: one row per (method, protocol, fold, seed) with its metric columns."""
    from tabulate import tabulate

    from bench.results import compare, metric_columns, results_frame, summarise, summary_numbers
    from bench.store import Store

    if summary and reference:
        raise BenchInputError("--summary and --compare: choose one")
    frame = results_frame(Store(results, readonly=True), with_bootstrap=summary or bool(reference))
    if reference:
        if not frame.empty and metric not in metric_columns(frame):
            raise BenchInputError(f"--metric {metric!r}: not among the stored metrics "
                                  f"({', '.join(metric_columns(frame))})")
        frame = compare(frame, reference, metric)
        summary = True  # print as is
        if fmt == "table" and not frame.empty:
            frame = frame.round({"diff": 4, "low": 4, "high": 4}).assign(
                p=frame.p.map(lambda v: f"{v:.3g}"), p_holm=frame.p_holm.map(lambda v: f"{v:.3g}"))
    elif summary:  # numbers for csv/json (load into pandas), "mean ± sd" text for the table
        frame = summarise(frame) if fmt == "table" else summary_numbers(frame)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", indent=1))
    else:
        shown = frame if summary else frame.round(
            {c: 4 for c in metric_columns(frame)} | {"fit_seconds": 2, "predict_seconds": 2}
        ).assign(error=frame.error.fillna("").map(lambda e: e.strip().splitlines()[-1] if e.strip() else ""))
        empty = f"no finished runs of another method on the same folds as {reference}" if reference else "no runs stored"
        click.echo(tabulate(shown, headers="keys", showindex=False, disable_numparse=True)
                   if not frame.empty else empty)


@cli.group("store")
def store_cmd() -> None:
    """Carry finished runs between results stores as plain files (e.g. commit them between sessions).

    A results store is one SQLite file and is not committed; `bench store export` files every finished
    (method, protocol, fold, seed) row as JSON, and `bench store import` puts them back, so a sweep cut
    between folds resumes elsewhere without redoing the folds it finished. Fitted models are not carried, so
    a fold with finished rows cannot take more protocols (noise levels) in another store: `bench run` refuses
    rather than refit and score them with a second model."""


@store_cmd.command("export")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write (one JSON file per finished row, grouped by dataset; splits/).")
def store_export(results: Path, out: Path) -> None:
    """Write every finished row of the store under --out (unchanged files are not rewritten)."""
    from bench.fsutil import output_errors, writable_dir
    from bench.row_files import export_rows
    from bench.store import Store

    store = Store(results, readonly=True)
    with output_errors(writable_dir(out, "--out"), "--out"):
        written, same = export_rows(store, out)
    click.echo(f"{written} row file(s) written, {same} unchanged, under {out}")


@store_cmd.command("import")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
def store_import(src: Path, results: Path) -> None:
    """Insert the finished rows filed under SRC into the store; rows it already finished are kept.

    A compact record (format 2) is rescored from its predictions to regenerate its bootstrap replicates,
    per-patient corruption entries and metric definitions; a row whose predictions do not give back its own
    metrics is refused, and nothing is imported."""
    from bench.row_files import import_rows
    from bench.store import Store

    imported, kept = import_rows(Store(results), src, progress=not click.get_current_context().obj["quiet"])
    click.echo(f"{imported} row(s) imported, {kept} already in {results}; `bench run` skips them")


@store_cmd.command("compact")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
def store_compact(results: Path) -> None:
    """Quantise the predictions of rows stored before compact records (float32 risks and curves) and rescore
    them from those, so that they can be exported. Prints how far each metric moved; rows already compact are
    left as they are."""
    from bench.row_files import compact_store
    from bench.store import Store

    report = compact_store(Store(results, create=False), progress=not click.get_current_context().obj["quiet"])
    click.echo(f"{report['rows']} row(s) rescored from quantised predictions, {report['kept']} already compact")
    if report["moved"]:
        click.echo("largest change per metric: " + ", ".join(f"{k} {v:.2g}" for k, v in sorted(report["moved"].items())))
    for what, why in report["failed"]:
        click.echo(f"  not converted: {what}: {why}", err=True)
    if report["failed"]:
        raise SystemExit(1)


@store_cmd.command("drop")
@click.argument("method")
@click.option("--config", "config", required=True,
              help="The experiment's config hash, or its first characters (as leaderboards print it: 8).")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
@click.option("--leaderboards", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also remove the experiment's committed files in this leaderboard folder: exported rows "
                   "(runs/), records (records/) and Kaplan-Meier plots; regenerate the pages afterwards with "
                   "`bench leaderboard --out` on it.")
@click.option("--yes", is_flag=True, help="Delete. Without it, list what would be deleted and change nothing.")
def store_drop(method: str, config: str, results: Path, leaderboards: Path | None, yes: bool) -> None:
    """Remove a superseded experiment (METHOD under one config) from the store and, with --leaderboards,
    from the committed leaderboard files. Other experiments, even of the same method, are untouched."""
    from bench.leaderboard import LeaderboardFiles
    from bench.store import Store, drop_experiment

    committed = None if leaderboards is None else LeaderboardFiles(leaderboards)
    out = drop_experiment(Store(results, create=False), method, config, committed=committed, apply=yes)
    verb = "removed" if yes else "would remove"
    click.echo(f"{method} config {out['config'][0]}: {verb} {len(out['rows'])} stored row(s), "
               f"{len(out['models'])} fitted model(s), {len(out['files'])} leaderboard file(s)")
    protocols = sorted({protocol for protocol, _fold, _seed in out["rows"]})
    if protocols:
        click.echo(f"  stored rows under: {', '.join(protocols)}")
    for f in out["files"]:
        click.echo(f"  {f}")
    if leaderboards is None:
        click.echo("  (no --leaderboards: committed rows of this experiment, if any, would come back with "
                   "`bench store import`)")
    if not yes:
        click.echo("nothing changed: add --yes to delete")


@cli.command("leaderboard")
@click.option("--results", type=click.Path(path_type=Path), default=None,
              help="Export the finished experiments of this results directory as run records first "
                   "(default: render the records already under --out).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboards"),
              show_default=True, help="Leaderboard folder: records/ in, markdown and plots out.")
@click.option("--reference", default="coxph", show_default=True,
              help="Method the paired comparisons are made against.")
@click.option("--check", is_flag=True,
              help="Write nothing: exit 1 and print the difference when the markdown under --out is not what "
                   "its records generate (plots: only that each referenced file exists).")
@click.option("--site", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build the static HTML site of the records under --out into this folder instead of the "
                   "markdown (sortable, filterable tables; a page per method; opens from file://).")
def leaderboard_cmd(results: Path | None, out: Path, reference: str, check: bool, site: Path | None) -> None:
    """Markdown leaderboards (and plots) generated from stored run records.

    Pages per dataset: cv.md (clean and noisy protocols), robustness.md (C-td against the noise fraction)
    and generalisation.md (leave-one-centre-out, centre split); README.md indexes them. With --site, the
    same views as a static website instead, plus one page per method (docs/site.md)."""
    import time

    from bench import leaderboard as lb
    from bench.fsutil import output_errors, writable_dir

    if site is not None:
        if check or results is not None:
            raise BenchInputError("--site builds from the records already under --out: leave out --check and --results")
        from bench.site import build_site

        t0 = time.perf_counter()
        with output_errors(writable_dir(site.resolve().parent, "--site"), "--site"):
            files = build_site(out, site, reference)
        pages = sum(f.suffix == ".html" for f in files)
        click.echo(f"{pages} page(s), {len(files)} file(s) written under {site} in {time.perf_counter() - t0:.1f} s; "
                   f"open {site / 'index.html'}", err=True)
        return

    if results is not None:
        if check:
            raise BenchInputError("--check compares the committed pages with their records: leave out --results")
        with output_errors(writable_dir(out, "--out"), "--out"):
            written = lb.export_records(results, out)
        click.echo(f"{len(written)} run record(s) written or updated under {out / 'records'}", err=True)
    pages = lb.render(out, reference)
    if check:
        problems = lb.check(out, pages)
        if problems:
            click.echo("\n".join(problems))
            click.echo(f"leaderboards under {out} are stale: run `bench leaderboard --out {out}` and commit", err=True)
            sys.exit(1)
        click.echo(f"{len(pages)} page(s) under {out} match their records", err=True)
        return
    with output_errors(writable_dir(out, "--out"), "--out"):
        done = lb.write(out, pages)
    click.echo("\n".join(done))
    index = out / "README.md"
    click.echo(f"{len(pages)} page(s) written under {out}; start at {index}", err=True)


@cli.command("report")
@click.argument("method")
@click.option("--protocol", "-p", required=True, help="Protocol name (as stored with the runs).")
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"), show_default=True, help=RESULTS_HELP)
def report_cmd(method: str, protocol: str, results: Path) -> None:
    """One method under one protocol: config, environment, per-fold metrics, corruption manifest and the
    training curves its fitted models kept."""
    from bench.report import method_report
    from bench.store import Store

    click.echo(method_report(Store(results, readonly=True), method, protocol))


def parse_seeds(spec: str) -> list[int]:
    """``--seed 0,1,2`` → [0, 1, 2]: integers in [0, 2**32), duplicates dropped, at least one."""
    try:
        seeds = list(dict.fromkeys(int(s) for s in spec.split(",") if s.strip()))
    except ValueError:
        raise BenchInputError(f"--seed {spec!r}: expected integers, comma-separated") from None
    if not seeds:
        raise BenchInputError("--seed is empty")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise BenchInputError(f"--seed {bad[0]}: seeds must lie in [0, 2**32)")
    return seeds


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (BenchInputError, sqlite3.Error, OSError) as exc:  # raised outside a command (e.g. while parsing)
        message = input_error(exc)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
