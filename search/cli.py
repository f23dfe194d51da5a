"""The ``fsearch`` command line: thin typer commands over the library, one error line per failure."""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from search.defaults import (
    DEFAULT_MAX_EPOCHS,
    DEFAULT_MAX_MMACS,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TRAIN_SUBSET,
    DEFAULT_TRIALS,
    DEFAULT_VAL_SIZE,
)
from search.errors import FsearchError
from search.study import DEFAULT_STORAGE, DEFAULT_STUDY, PRUNERS, SAMPLERS

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Search CNN architectures and training settings on Fashion-MNIST with Optuna.",
)  # fmt: skip

StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOpt = Annotated[str, typer.Option("--storage", help="Optuna storage URL (SQLite, PostgreSQL, ...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """fsearch: search CNNs for Fashion-MNIST; see each command's --help."""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=name)
    return value


@app.command()
def run(
    trials: Annotated[int, typer.Option(help="Trials to train and add to the study.")] = DEFAULT_TRIALS,
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder holding FashionMNIST/raw/*.gz [default: $FSEARCH_DATA_DIR or cache]")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = DEFAULT_SAMPLER,
    pruner: Annotated[str, typer.Option(help=f"One of {', '.join(PRUNERS)}.")] = DEFAULT_PRUNER,
    max_epochs: Annotated[int, typer.Option(help="Epochs a trial may train (the pruner's top rung).")] = (
        DEFAULT_MAX_EPOCHS
    ),
    train_subset: Annotated[
        int, typer.Option(help="Train each trial on this many images of the training split; 0 = all.")
    ] = DEFAULT_TRAIN_SUBSET,
    val_size: Annotated[int, typer.Option(help="Validation images held out of the training set.")] = (DEFAULT_VAL_SIZE),
    max_mmacs: Annotated[
        float, typer.Option(help="Skip architectures above this many million MACs per image; 0 = no cap.")
    ] = DEFAULT_MAX_MMACS,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler, the split and every trial's training.")] = 0,
    warm_start: Annotated[bool, typer.Option(help="Enqueue the reference presets as the first trials.")] = False,
    verify_data: Annotated[bool, typer.Option(help="Check the dataset files' md5 sums.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Search: add TRIALS trials to the study (a second run resumes it)."""
    from search.progress import SearchDisplay
    from search.runner import (
        SearchOptions,
        run_search,
    )

    _choice("--sampler", sampler, SAMPLERS)
    _choice("--pruner", pruner, PRUNERS)
    opts = SearchOptions(
        study=study, storage=storage, trials=trials, timeout=timeout, data_dir=data_dir, device=device,
        sampler=sampler, pruner=pruner, max_epochs=max_epochs, train_subset=train_subset or None,
        val_size=val_size, max_mmacs=max_mmacs or None,
        seed=seed, warm_start=warm_start, verify_data=verify_data,
    )  # fmt: skip
    opts.validate()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the live display reports every trial
    console = Console(stderr=json_out, log_path=False)
    header = f"fsearch · study {study} · {storage}"
    # `kill` (SIGTERM) ends a search like Ctrl+C: the running trial is failed and the study saved.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with SearchDisplay(console, total_trials=trials, max_epochs=opts.max_epochs, header=header) as display:
            report = run_search(opts, observer=display, on_trial_end=display)
    except KeyboardInterrupt:
        Console(stderr=True).print(
            "Interrupted: the running trial was marked failed and the study is saved; "
            "run the same command again to resume.", markup=False,
        )  # fmt: skip
        raise typer.Exit(130) from None
    if json_out:
        from search.study import trial_record

        out = {
            "study": study, "storage": storage, "device": report.device, "wall_seconds": report.wall_seconds,
            "this_run": report.counts, "best": trial_record(report.best) if report.best else None,
        }  # fmt: skip
        typer.echo(json.dumps(out, indent=2))
        return
    _print_summary(console, report)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_summary(console: Console, report: Any) -> None:
    from search.progress import format_params
    from search.study import top_trials

    c = report.counts
    console.print(
        f"[bold]{report.study.study_name}[/]: this run {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed ({c['skipped']} over-budget draws skipped) "
        f"in {report.wall_seconds / 60:.1f} min on {report.device}"
    )
    table = Table(title="Best trials of the study")
    for col in ("trial", "val acc", "epochs", "params", "MMACs", "img/s", "configuration"):
        table.add_column(col, overflow="fold")
    for t in top_trials(report.study, 5):
        ua = t.user_attrs
        table.add_row(
            str(t.number), f"{t.value:.4f}", str(ua.get("epochs_run", "")), f"{ua.get('parameters', 0):,}",
            f"{ua.get('macs', 0) / 1e6:.1f}", f"{ua.get('images_per_second', 0):,.0f}", format_params(t.params),
        )  # fmt: skip
    console.print(table)
    if report.best is None and c["skipped"] and not (c["complete"] + c["pruned"] + c["fail"]):
        console.print("[yellow]Every architecture drawn was over the --max-mmacs budget; raise it (0 = no cap).[/]")
    elif report.best is None:
        console.print("[yellow]No trial completed yet; run again with more --trials or a larger --timeout.[/]")


@app.command()
def studies(storage: StorageOpt = DEFAULT_STORAGE, json_out: JsonOpt = False) -> None:
    """List the studies in a storage: trials by state and the best value."""
    from search.study import open_storage, study_summaries

    rows = study_summaries(open_storage(storage, create=False))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Studies in {storage}")
    for col in ("study", "trials", "complete", "pruned", "failed", "running", "best val acc", "best trial"):
        table.add_column(col)
    for r in rows:
        best = f"{r['best_value']:.4f}" if r["best_value"] is not None else "-"
        table.add_row(
            r["study"], str(r["trials"]), str(r["complete"]), str(r["pruned"]), str(r["fail"]),
            str(r["running"]), best, str(r["best_trial"] if r["best_trial"] is not None else "-"),
        )  # fmt: skip
    Console().print(table)


@app.command()
def show(
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    top: Annotated[int, typer.Option(help="How many trials.", min=1)] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Print the best trials of a study with their parameters."""
    from search.progress import format_params
    from search.study import load_study, open_storage, top_trials, trial_record

    found = load_study(open_storage(storage, create=False), study, storage)
    best = top_trials(found, top)
    if json_out:
        typer.echo(json.dumps([trial_record(t) for t in best], indent=2))
        return
    table = Table(title=f"Top {len(best)} of {len(found.trials)} trials in study {study!r}")
    for col in ("trial", "val acc", "epochs", "params", "MMACs", "train s", "configuration"):
        table.add_column(col, overflow="fold")
    for t in best:
        ua = t.user_attrs
        table.add_row(
            str(t.number), f"{t.value:.4f}", str(ua.get("epochs_run", "")), f"{ua.get('parameters', 0):,}",
            f"{ua.get('macs', 0) / 1e6:.1f}", f"{ua.get('train_seconds', 0):.0f}", format_params(t.params),
        )  # fmt: skip
    Console().print(table)


DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Folder holding FashionMNIST/raw/*.gz.", show_default="$FSEARCH_DATA_DIR or the cache"),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
VerifyOpt = Annotated[bool, typer.Option(help="Check the dataset files' md5 sums.")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs to train.", min=1, show_default="see above")]
FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", help="Also export a graph: onnx or torchscript (repeatable).")
]
TtaOpt = Annotated[bool, typer.Option(help="Also report test accuracy with flip test-time augmentation.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Model directory written by export-best or train.")]
DEFAULT_MODEL = Path("studies") / DEFAULT_STUDY / "best"
GRAPH_FORMATS = ("onnx", "torchscript")


@app.command("export-best")
def export_best(
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    trial: Annotated[int | None, typer.Option(help="Export this trial number instead of the best.")] = None,
    epochs: EpochsOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.", show_default="studies/<study>/best")] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option(help="Training seed.", show_default="the trial's seed")] = None,
    formats: FormatOpt = None,
    tta: TtaOpt = False,
    verify_data: VerifyOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Retrain the best trial (or --trial N) on all 60,000 training images, test it once, save it.

    Default epochs: 3x the epochs the trial ran if its validation accuracy was still rising at
    its last epoch, else 2x its best epoch, clamped to 5..40.
    """
    from search.best import default_out
    from search.best import export_best as run_export
    from search.retrain import RetrainOptions

    fmts = tuple(_choice("--format", f, GRAPH_FORMATS) for f in formats or ())
    opts = RetrainOptions(
        out=out or default_out(study), data_dir=data_dir, device=device, verify_data=verify_data,
        formats=fmts, tta=tta,
    )  # fmt: skip
    console = Console(stderr=json_out, log_path=False)

    def announce(t: Any) -> None:
        console.print(f"[bold]{study}[/]: retraining trial {t.number} (val acc {t.value:.4f}) on all training images")

    _retrain(console, json_out, lambda bars: run_export(
        study=study, storage=storage, opts=opts, trial=trial, epochs=epochs, seed=seed, on_trial=announce,
        on_start=lambda cfg: bars.start(cfg.train.epochs), on_epoch_end=bars.on_epoch_end, on_step=bars.on_step,
    ))  # fmt: skip


@app.command("train")
def train_preset(
    preset: Annotated[str, typer.Option(help="lenet5, cnn2, cnn3 or cnn3-fc128.", show_default=False)],
    epochs: EpochsOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.", show_default="studies/presets/<preset>")] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    formats: FormatOpt = None,
    tta: TtaOpt = False,
    verify_data: VerifyOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Retrain a reference preset on all training images and export it like export-best does.

    Default epochs: the preset's documented recipe (lenet5 20, cnn2 20, cnn3 10, cnn3-fc128 50).
    """
    from search.retrain import RetrainOptions, preset_out, retrain_preset

    fmts = tuple(_choice("--format", f, GRAPH_FORMATS) for f in formats or ())
    opts = RetrainOptions(
        out=out or preset_out(preset), data_dir=data_dir, device=device, seed=seed, verify_data=verify_data,
        formats=fmts, tta=tta,
    )  # fmt: skip
    console = Console(stderr=json_out, log_path=False)
    _retrain(console, json_out, lambda bars: retrain_preset(
        preset, opts, epochs=epochs, on_start=lambda cfg: bars.start(cfg.train.epochs),
        on_epoch_end=bars.on_epoch_end, on_step=bars.on_step,
    ))  # fmt: skip


def _retrain(console: Console, json_out: bool, run_with: Callable[[Any], Any]) -> None:
    """Run a retraining with live bars, then print its report (or JSON); Ctrl+C exits 130."""
    from search.render import print_report
    from search.retrain_progress import TrainingProgress

    try:
        with TrainingProgress(console) as bars:
            report = run_with(bars)
    except KeyboardInterrupt:
        Console(stderr=True).print("Interrupted: the retraining stopped; the model was not saved.", markup=False)
        raise typer.Exit(130) from None
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(console, report)


@app.command()
def evaluate(
    model: ModelOpt = DEFAULT_MODEL,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    verify_data: VerifyOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Re-measure a saved model on the 10,000 test images and print its metrics."""
    from search.predict import evaluate_saved, load
    from search.render import metrics_table

    metrics = evaluate_saved(load(model, device=device), data_dir=data_dir, verify=verify_data)
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    console = Console()
    console.print(metrics_table(metrics))
    recorded = metrics.get("recorded_test_accuracy")
    if recorded is not None:
        console.print(f"recorded at export: {recorded:.4f} · now: {metrics['accuracy']:.4f} on {metrics['device']}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="PNG or JPEG files.", show_default=False)],
    model: ModelOpt = DEFAULT_MODEL,
    top: Annotated[int, typer.Option(help="Show the K most probable classes.", min=1)] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (the CPU is fastest for a few).")] = (
        "cpu"
    ),
    json_out: JsonOpt = False,
) -> None:
    """Classify images with a saved model: the class and its confidence (softmax), top-K on request.

    Images are made to look like Fashion-MNIST: grayscale, inverted when the border is light,
    trimmed, resized to fit 28x28 with the aspect ratio kept, and padded (see search/imageio.py).
    """
    from search.predict import Failure, load, predict_files
    from search.render import predictions_table

    results = predict_files(load(model, device=device), images, top=top)
    failures = [r for r in results if isinstance(r, Failure)]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for failure in failures:
        err.print(f"Error: {failure.error}", markup=False)
    if json_out:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
    elif len(failures) < len(results):
        Console().print(predictions_table(results, top=top, title=f"Predictions of {model}"))
    if failures:
        raise typer.Exit(2)


def _is_usage_error(exc: Exception) -> bool:
    """Typer's (click's) usage errors: bad option values, unknown options, missing arguments."""
    return callable(getattr(exc, "format_message", None)) and getattr(exc, "exit_code", None) == 2


def main() -> None:
    """Entry point: run the app and turn every user error into one line and exit code 2."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    debug = "--debug" in sys.argv[1:]
    try:
        rv = app(standalone_mode=False, prog_name="fsearch")
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(1)
    except FsearchError as exc:
        if debug:
            err.print(traceback.format_exc(), markup=False)
        err.print(f"Error: {exc}", markup=False)
        sys.exit(2)
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "fsearch"
        err.print(f"Error: {exc.format_message()}; see '{cmd} --help'", markup=False)  # type: ignore[attr-defined]
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
