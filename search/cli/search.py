"""``fsearch run``, ``studies`` and ``show``: the search and its study, as thin typer commands."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from search.cli.common import (
    ArtifactsOpt,
    CudaGraphsOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    StorageOpt,
    StudyOpt,
    VerifyOpt,
    command,
    stop_on_signals,
)
from search.defaults import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_EVALS_PER_EPOCH,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_MAX_MMACS,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TRAIN_SUBSET,
    DEFAULT_TRIALS,
    DEFAULT_VAL_SIZE,
    FIXED_IN_DRAWS,
    KNOWN_BEST_PRESET,
    WARM_START_PRESETS,
)
from search.errors import ConfigError
from search.paths import DEFAULT_STORAGE, DEFAULT_STUDY
from search.store.storage import GRACE_PERIOD_S, mask_url
from search.tune.events import CheckedLanes, CheckedObserver
from search.tune.pruners import PRUNERS
from search.tune.samplers import SAMPLERS

commands = typer.Typer()
_FIXED = ", ".join(f"{name}={str(value).lower()}" for name, value in FIXED_IN_DRAWS.items())  # the --sampler help


def _names(presets: tuple[str, ...]) -> str:
    return " and ".join([", ".join(presets[:-1]), presets[-1]]) if len(presets) > 1 else "".join(presets)


@command(commands)
def run(
    trials: Annotated[
        int, typer.Option(help="Screen trials to train and add to the study (at most: the plan's time may end it).")
    ] = DEFAULT_TRIALS,
    budget: Annotated[
        float,
        typer.Option(
            help="Minutes for the whole job, this search and export-best: the plan shares them out "
            "(screen, finals, export epochs). 0 = no plan: the screen runs all --trials, no finals."
        ),
    ] = DEFAULT_BUDGET_MINUTES,
    finalists: Annotated[
        int | None,
        typer.Option(
            help="Best screen trials trained again at the finals' fidelity; 0 = none. By default the plan's: as "
            "many as the workers (at least 2), none when they would cut the export below its 30 epochs.",
            show_default="plan",
        ),
    ] = None,
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    sampler: Annotated[
        str, typer.Option(help=f"One of {', '.join(SAMPLERS)}. Every drawn trial takes {_FIXED}.")
    ] = DEFAULT_SAMPLER,
    pruner: Annotated[str, typer.Option(help=f"One of {', '.join(PRUNERS)}.")] = DEFAULT_PRUNER,
    max_epochs: Annotated[int, typer.Option(help="Epochs a trial may train (the pruner's top rung).")] = (
        DEFAULT_MAX_EPOCHS
    ),
    evals_per_epoch: Annotated[
        int, typer.Option(help="Validation reports per epoch: more lets the pruner stop bad trials sooner.")
    ] = DEFAULT_EVALS_PER_EPOCH,
    train_subset: Annotated[
        int, typer.Option(help="Train each trial on this many images of the training split; 0 = all.")
    ] = DEFAULT_TRAIN_SUBSET or 0,
    val_size: Annotated[int, typer.Option(help="Validation images held out of the training set.")] = (DEFAULT_VAL_SIZE),
    max_mmacs: Annotated[
        float, typer.Option(help="Skip architectures above this many million MACs per image; 0 = no cap.")
    ] = DEFAULT_MAX_MMACS,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler, the split and every trial's training.")] = 0,
    workers: Annotated[
        str,
        typer.Option(
            envvar="FSEARCH_WORKERS",
            help="Worker processes on this study: a number, or auto (2 on a CPU of 2+ cores, 4 per GPU).",
        ),
    ] = "auto",
    grace_period: Annotated[
        int, typer.Option(help="Seconds without a heartbeat before a running trial is failed and retried.")
    ] = GRACE_PERIOD_S,
    warm_start: Annotated[
        bool, typer.Option(help=f"Queue the reference presets {_names(WARM_START_PRESETS)} as the first trials.")
    ] = False,
    known_best: Annotated[
        bool,
        typer.Option(
            help=f"Queue the hand-written preset {KNOWN_BEST_PRESET} as a new study's first trial: a known "
            "good configuration, not one found by this search. It is ranked with the search's trials."
        ),
    ] = True,
    cuda_graphs: CudaGraphsOpt = None,
    verify_data: VerifyOpt = True,
    artifacts: ArtifactsOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search the space: train --trials more trials in the study (running it again resumes the study).

    Architectures over --max-mmacs, or too large for the plan's export to train for 15 epochs (--max-epochs if
    more) in its time, are skipped when drawn and do not count as trials. The defaults and why they were chosen:
    docs/defaults.md.
    """
    from search.cli.display import SearchDisplay
    from search.tune.runner import run_search
    from search.tune.session import SearchOptions

    opts = SearchOptions(
        workers=_parse_workers(workers), grace_period=grace_period,
        study=study, storage=storage, trials=trials, timeout=timeout, data_dir=data_dir, device=device,
        cuda_graphs=cuda_graphs,
        sampler=sampler, pruner=pruner, max_epochs=max_epochs, evals_per_epoch=evals_per_epoch,
        train_subset=train_subset or None,
        val_size=val_size, max_mmacs=max_mmacs or None,
        seed=seed, warm_start=warm_start, known_best=known_best, verify_data=verify_data, artifact_dir=artifacts,
        budget_minutes=budget or None, finalists=finalists,
    )  # fmt: skip
    opts.validate()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the live display reports every trial
    console = Console(stderr=json_out, log_path=False)
    header = f"fsearch · study {study} · {mask_url(storage)}"
    # `kill` (SIGTERM) ends a search like Ctrl+C: the running trial is failed and the study saved. Both are
    # raised at once and again at the observer's next call, should the first raise have been swallowed.
    interrupted = (
        "Interrupted: the running trial was marked failed and the study is saved; run the same command again to resume."
    )
    with (
        stop_on_signals(interrupted) as stop,
        SearchDisplay(console, total_trials=trials, max_epochs=opts.max_epochs, header=header) as display,
    ):
        report = run_search(
            opts, observer=CheckedObserver(display, stop), on_trial_end=display, lanes=CheckedLanes(display, stop),
            on_plan=display.show_plan, on_screen_end=display.screen_moved,
        )  # fmt: skip
        stop.check()  # a signal the last trial's end swallowed: still the exit code of one
    if json_out:
        from search.store.record import trial_record

        out = {
            "study": study, "storage": mask_url(storage), "device": report.device, "wall_seconds": report.wall_seconds,
            "workers": report.workers, "this_run": report.counts, "stage_seconds": report.stage_seconds,
            "finals_passed_over": list(report.passed_over),
            "plan": report.plan.as_dict() if report.plan else None,
            "best": trial_record(report.best) if report.best else None,
        }  # fmt: skip
        typer.echo(json.dumps(out, indent=2))
    else:
        _print_summary(console, report)
    for problem in report.problems:
        Console(stderr=True).print(f"Error: {problem}", markup=False)
    if report.problems:
        raise typer.Exit(1)


def _parse_workers(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--workers must be a number or auto, got {text!r}") from None


def _print_summary(console: Console, report: Any) -> None:
    from search.cli.display import trials_table
    from search.store.study import top_trials

    c = report.counts
    console.print(
        f"[bold]{escape(report.study.study_name)}[/]: this run {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed ({c['skipped']} over-budget draws skipped) "
        f"in {report.wall_seconds / 60:.1f} min on {report.device}"
    )
    table = trials_table("Best trials of the study", top_trials(report.study, 5), speed=True)
    console.print(table)
    if report.passed_over:
        numbers = ", ".join(map(str, report.passed_over))
        console.print(f"Passed over as finalists (too slow, as measured, for the finals' time left): trial {numbers}")
    if report.best is None and c["skipped"] and not (c["complete"] + c["pruned"] + c["fail"]):
        console.print(
            "[yellow]Every architecture drawn was over the cost cap; raise --max-mmacs (0 = no cap) or --budget.[/]"
        )
    elif report.best is None:
        console.print("[yellow]No trial completed yet; run again with more --trials or a larger --timeout.[/]")


@command(commands)
def studies(
    storage: StorageOpt = DEFAULT_STORAGE,
    repair: Annotated[
        bool,
        typer.Option(
            help="First fail the running trials whose workers are gone (no heartbeat for the grace period) "
            "and queue them to be retried by the next run."
        ),
    ] = False,
    grace_period: Annotated[
        int, typer.Option(help="With --repair: seconds without a heartbeat that make a trial stale.")
    ] = GRACE_PERIOD_S,
    json_out: JsonOpt = False,
) -> None:
    """List the studies in a storage: trials by state and the best value."""
    from search.store.storage import open_storage, repair_studies
    from search.store.study import study_summaries

    found = open_storage(storage, create=False, grace_period=grace_period if repair else None)
    if repair:
        for name, numbers in repair_studies(found).items():
            listed = ", ".join(map(str, numbers))
            Console(stderr=True).print(f"{name}: failed stale trial(s) {listed}; queued again", markup=False)
    rows = study_summaries(found)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Studies in {escape(mask_url(storage))}")
    for col in ("study", "trials", "complete", "pruned", "failed", "running", "best val acc", "best trial"):
        table.add_column(col)
    for r in rows:
        best = f"{r['best_value']:.4f}" if r["best_value"] is not None else "-"
        table.add_row(
            r["study"], str(r["trials"]), str(r["complete"]), str(r["pruned"]), str(r["fail"]),
            str(r["running"]), best, str(r["best_trial"] if r["best_trial"] is not None else "-"),
        )  # fmt: skip
    Console().print(table)


@command(commands)
def show(
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    top: Annotated[int, typer.Option(help="How many trials.", min=1)] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Print the best trials of a study, each configuration on one line; --json gives every parameter."""
    from search.cli.display import trials_table
    from search.store.record import trial_record
    from search.store.study import open_study, top_trials

    found = open_study(storage, study)
    best = top_trials(found, top)
    if json_out:
        typer.echo(json.dumps([trial_record(t) for t in best], indent=2))
        return
    title = f"Top {len(best)} of {len(found.trials)} trials in study {escape(repr(study))}"
    table = trials_table(title, best, speed=False)
    Console().print(table)
