"""``fsearch export-best``, ``train``, ``evaluate`` and ``predict``: from a trial to a usable model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from search.cli.common import (
    ArtifactsOpt,
    CudaGraphsOpt,
    DataDirOpt,
    DeviceOpt,
    EpochsOpt,
    ExportTtaOpt,
    FormatOpt,
    JsonOpt,
    ModelOpt,
    StorageOpt,
    StudyOpt,
    TtaOpt,
    VerifyOpt,
    command,
    stop_on_signals,
)
from search.paths import DEFAULT_MODEL, DEFAULT_STORAGE, DEFAULT_STUDY
from space import PRESETS
from space.presets import PRESET_EPOCHS

commands = typer.Typer()


@command(commands, "export-best")
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
    tta: ExportTtaOpt = None,
    cuda_graphs: CudaGraphsOpt = None,
    verify_data: VerifyOpt = True,
    artifacts: ArtifactsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Retrain the best trial (or --trial N) on all 60,000 training images, test it once, save it.

    Default epochs: 6x the epochs the trial ran (or was to run, if the search's deadline cut it short) if
    its validation accuracy (each epoch's reports averaged) had not dropped from its best by its last epoch
    (by more than the noise of its validation set), else 2x its best epoch, clamped to 5..45. With the
    study's time plan, a still-rising trial trains the epochs the export's share of the time holds (at most
    45), and no trial trains more (docs/defaults.md explains the rule).

    Flip test-time augmentation ships when the trial trained with flips, unless its validation accuracy
    with it was lower than without by more than noise; the test set is read once, after training, and
    never decides it.
    """
    from search.model.best import export_best as run_export
    from search.model.retrain import RetrainOptions
    from search.paths import model_dir

    fmts = tuple(formats or ())
    opts = RetrainOptions(
        out=out or model_dir(study), data_dir=data_dir, device=device, verify_data=verify_data, formats=fmts,
        cuda_graphs=cuda_graphs,
    )  # fmt: skip
    console = Console(stderr=json_out, log_path=False)

    def announce(t: Any) -> None:
        name = escape(study)  # a study name is printed as text, never read as rich markup
        from search.store.record import TrialRecord

        r = TrialRecord(t)
        what = f"{r.stage} trial {t.number} ({r.origin}, val acc {t.value:.4f} after {r.epochs_run:g} epochs)"
        console.print(f"[bold]{name}[/]: retraining {escape(what)} on all training images")

    _retrain(console, json_out, lambda bars: run_export(
        study=study, storage=storage, opts=opts, trial=trial, epochs=epochs, seed=seed, tta=tta,
        on_trial=announce, artifacts=artifacts,
        on_start=lambda cfg: bars.start(cfg.train.epochs), on_epoch_end=bars.on_epoch_end, on_step=bars.on_step,
    ))  # fmt: skip


_PRESET_EPOCHS = ", ".join(f"{name} {n}" for name, n in PRESET_EPOCHS.items())
_TRAIN_HELP = f"""Train a preset on all 60,000 training images, test it once and save it, like export-best.

The presets are the reference models and fsearch's own known good configurations (docs/space.md).

Default epochs: each preset's own ({_PRESET_EPOCHS}).
"""


@command(commands, "train", doc=_TRAIN_HELP)
def train_preset(
    preset: Annotated[str, typer.Option(help=f"One of {', '.join(PRESETS)}.", show_default=False)],
    epochs: EpochsOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder.", show_default="studies/presets/<preset>")] = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    formats: FormatOpt = None,
    tta: TtaOpt = False,
    cuda_graphs: CudaGraphsOpt = None,
    verify_data: VerifyOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Train a preset on all training images and export it like export-best (help: ``_TRAIN_HELP``)."""
    from search.model.retrain import RetrainOptions, retrain_preset
    from search.paths import preset_dir

    fmts = tuple(formats or ())
    opts = RetrainOptions(
        out=out or preset_dir(preset), data_dir=data_dir, device=device, seed=seed, verify_data=verify_data,
        formats=fmts, tta=tta, cuda_graphs=cuda_graphs,
    )  # fmt: skip
    console = Console(stderr=json_out, log_path=False)
    _retrain(console, json_out, lambda bars: retrain_preset(
        preset, opts, epochs=epochs, on_start=lambda cfg: bars.start(cfg.train.epochs),
        on_epoch_end=bars.on_epoch_end, on_step=bars.on_step,
    ))  # fmt: skip


def _retrain(console: Console, json_out: bool, run_with: Callable[[Any], Any]) -> None:
    """Run a retraining with live bars, then print its report (or JSON); Ctrl+C exits 130, `kill` 143."""
    from search.cli.bars import TrainingProgress
    from search.cli.render import print_report

    interrupted = "Interrupted: the retraining stopped; the model was not saved."
    with stop_on_signals(interrupted) as stop, TrainingProgress(console, stop) as bars:
        report = run_with(bars)
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(console, report)


@command(commands)
def evaluate(
    model: ModelOpt = DEFAULT_MODEL,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    verify_data: VerifyOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Re-measure a saved model on the 10,000 test images and print its metrics."""
    from search.cli.render import metrics_table
    from search.model.export import load_model
    from search.model.predict import evaluate_saved

    metrics = evaluate_saved(load_model(model, device=device), data_dir=data_dir, verify=verify_data)
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
        return
    console = Console()
    console.print(metrics_table(metrics))
    recorded = metrics.get("recorded_test_accuracy")
    if recorded is not None:
        console.print(f"recorded at export: {recorded:.4f} · now: {metrics['accuracy']:.4f} on {metrics['device']}")


@command(commands)
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
    trimmed, resized to fit 28x28 with the aspect ratio kept, and padded (see search/model/images.py).
    """
    from search.cli.render import predictions_table
    from search.model.export import load_model
    from search.model.predict import Failure, predict_files

    results = predict_files(load_model(model, device=device), images, top=top)
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
