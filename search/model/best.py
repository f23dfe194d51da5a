"""``export_best``: pick a trial of a study, replay it through ``suggest`` and retrain it.

The trial's parameters go through Optuna's ``FixedTrial`` into the same ``suggest`` the search
used, so the retrained model is built and trained by exactly the code that scored it. A study
made with another search space, an empty study and a study without a completed trial are
refused with one clear error before anything trains. The export is recorded on the study as
the user attribute ``export:<trial>`` (finished trials' attributes cannot change), its files
become study artifacts ``trial-<N>-*`` and the study's dashboard note shows the test result
beside the references.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from search.errors import StorageError
from search.model.epochs import default_epochs
from search.model.graph import check_formats
from search.model.retrain import ExportReport, RetrainOptions, StartCallback, check_epochs, retrain
from search.model.tta import validation_says
from search.paths import model_dir
from search.plan import Plan
from search.speed import ExportTiming, export_timing
from search.store import record
from search.store.artifacts import artifact_dir, open_store, upload
from search.store.notes import save_study_note
from search.store.record import TrialRecord, best_trial
from search.store.storage import mask_url
from search.store.study import check_space_version, open_study
from search.throughput import EXPORT_IMAGES
from search.train import EpochCallback, StepCallback, check_seed
from space import SpaceMismatch, TrialConfig
from space import replay as replay_params

# Files of the model directory uploaded as study artifacts, and their names there (after "trial-<N>-").
EXPORT_ARTIFACTS = {
    "confusion_matrix.png": "test_confusion_matrix.png", "training_curves.png": "training_curves.png",
    "metrics.json": "metrics.json", "model.safetensors": "model.safetensors", "config.json": "config.json",
}  # fmt: skip


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """The best completed trial, or trial ``number``; one clear error when there is none."""
    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise StorageError(f"study {name!r} has no trials; run 'fsearch run --study {name}' first")
    if number is None:
        best = best_trial(trials)
        if best is None:
            counts = Counter(t.state.name.lower() for t in trials)
            states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            raise StorageError(
                f"study {name!r} has no completed trial ({states}); run 'fsearch run --study {name}' to add trials"
            )
        return best
    found = [t for t in trials if t.number == number]
    if not found:
        raise StorageError(
            f"trial {number} not found in study {name!r} (trials 0-{trials[-1].number}); "
            f"see 'fsearch show --study {name}'"
        )
    if found[0].state != TrialState.COMPLETE:
        raise StorageError(
            f"trial {number} of study {name!r} is {found[0].state.name.lower()}, not complete; "
            f"pick a completed one (see 'fsearch show --study {name}')"
        )
    return found[0]


@dataclasses.dataclass(frozen=True)
class ExportSchedule:
    """How long the export trains: ``epochs`` (what ``rule`` says and why), and ``time_limit_s``, the plan's share
    of the study's time for the export (``None`` when the study has no plan) that export-best keeps to, counted
    from its start; ``channels_last``, the memory format timed faster (None: not timed, the runtime's default)."""

    epochs: int
    rule: dict[str, Any]
    time_limit_s: float | None
    channels_last: bool | None = None


def planned_epochs(
    study: optuna.Study, chosen: FrozenTrial, *, timing: Callable[[], ExportTiming] | None = None
) -> ExportSchedule:
    """The export's default epochs: the curve's rule (:func:`~search.model.epochs.default_epochs`), capped
    by what the export's share of the study's time plan affords; a trial still rising trains all that the share
    affords (at most ``MAX_EXPORT_EPOCHS``), even where the curve's rule asks for fewer. ``timing`` times the
    trial's export training on this machine (:func:`~search.speed.export_timing`; called only when the study has a
    plan), which then trains in the memory format timed faster; without it, the time is estimated for a network of
    the trial's size (as its measured speed in the search implies:
    :meth:`~search.throughput.Throughput.effective_mmacs`)."""
    epochs, rule = default_epochs(chosen)
    if (stored := study.user_attrs.get(record.PLAN)) is None:
        return ExportSchedule(epochs, rule, None)
    plan = Plan.from_dict(stored)
    channels_last = None
    if timing is not None:
        timed = timing()
        epoch_s, channels_last = EXPORT_IMAGES * timed.seconds_per_image, timed.channels_last
        affordable = plan.export_epochs_timed(epoch_s)
        rule = rule | {
            "export_epoch_seconds_timed": round(epoch_s, 1), "plan_export_seconds": plan.export_s,
            "memory_format": timed.memory_format,
            "epoch_seconds_by_format": {name: round(EXPORT_IMAGES * s, 1) for name, s in timed.by_format.items()},
            "epoch_seconds_timings": {name: [round(EXPORT_IMAGES * s, 1) for s in timings]
                                      for name, timings in timed.timings_by_format.items()},
        }  # fmt: skip
    else:
        affordable = plan.export_epochs_for(TrialRecord(chosen).effective_mmacs(plan.throughput))
    # A still-rising trial trains the epochs the plan's share affords (at most MAX_EXPORT_EPOCHS), more than the
    # curve's rule asks when the winner is cheap: the share is the export's either way, and an epoch not trained
    # buys nothing back. A trial that peaked keeps the curve's count, capped by the share.
    epochs = affordable if rule["still_rising"] else min(epochs, affordable)
    rule |= {
        "plan_rule": "still rising: plan_export_epochs; else the curve's epochs, at most plan_export_epochs",
        "plan_export_epochs": affordable, "epochs": epochs,
    }  # fmt: skip
    return ExportSchedule(epochs, rule, plan.export_s, channels_last)


def replay(trial: FrozenTrial, *, epochs: int, study: str) -> TrialConfig:
    """The trial's configuration (:func:`space.replay`); a trial of another search space is a ``StorageError``."""
    try:
        return replay_params(trial.params, epochs=epochs, number=trial.number)
    except SpaceMismatch as exc:
        raise StorageError(
            f"trial {trial.number} of study {study!r} does not fit this search space ({exc}); "
            f"export it with the fsearch version that made the study"
        ) from None


def export_best(
    *,
    study: str,
    storage: str,
    opts: RetrainOptions | None = None,
    trial: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    tta: bool | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_start: StartCallback | None = None,
    artifacts: Path | None = None,
) -> ExportReport:
    """Retrain trial ``trial`` (default: the best) of ``study`` on all training images and export it.

    ``opts.out`` defaults to ``studies/<study>/best``; ``seed`` (which replaces ``opts.seed``) to
    the trial's recorded seed; ``epochs`` to :func:`default_epochs`; ``tta`` (ship flip test-time augmentation,
    replacing ``opts.tta``) to what the trial's validation accuracy with and without it says
    (:func:`~search.model.tta.validation_says`). ``on_trial`` sees the chosen trial before the data
    is loaded; ``on_start`` the config just before training (the CLI shows both). ``artifacts`` is the
    artifact store folder (default: :func:`search.store.artifacts.artifact_dir` of the storage).
    """
    started = time.perf_counter()  # the plan's time for the export counts from here: timing and loading included
    if epochs is not None:
        check_epochs(epochs)
    if seed is not None:
        check_seed(seed)
    if opts is not None:  # fail on a --format that is unknown or whose packages are missing before anything else
        check_formats(opts.formats)
    found = open_study(storage, study)
    check_space_version(found, fix="export it with the fsearch version that made it")
    store = open_store(artifact_dir(storage, artifacts), create=True)  # made now, not after the training
    chosen = pick_trial(found, trial)
    chosen_record = TrialRecord(chosen)
    cfg = replay(chosen, epochs=epochs or 1, study=study)
    base = opts or RetrainOptions(out=model_dir(study))
    if epochs is None:
        # The plan's share for the export is kept by timing this very configuration here, not estimated.
        runtime = base.runtime()
        schedule = planned_epochs(found, chosen, timing=lambda: export_timing(cfg, runtime))
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=schedule.epochs))
        # The training keeps to the plan's time, whatever the machine's pace does after the timing.
        rule, time_limit, channels_last = schedule.rule, schedule.time_limit_s, schedule.channels_last
    else:  # epochs given by hand lift the plan's time limit
        rule, time_limit, channels_last = planned_epochs(found, chosen).rule, None, None
    if seed is None:
        seed = chosen_record.seed or 0
    measured = chosen_record.flip_tta
    ship_tta = tta if tta is not None else cfg.train.augment.flip and validation_says(measured)
    opts = dataclasses.replace(
        base, seed=seed, time_limit_s=time_limit, limit_from=started, tta=ship_tta, channels_last=channels_last
    )
    provenance = {
        "source": "study", "study": study, "storage": mask_url(storage), "trial": chosen.number,
        "origin": chosen_record.origin,
        "params": chosen.params, "search_val_accuracy": chosen.value, "search_user_attrs": chosen.user_attrs,
        "epochs": cfg.train.epochs, "epochs_from": "--epochs" if epochs else "default rule", "epochs_rule": rule,
        "test_time_augmentation": {
            "shipped": "flip" if ship_tta else None, "from": "validation" if tta is None else "--tta/--no-tta",
            "validation": measured,
        },
    }  # fmt: skip
    if on_trial is not None:
        on_trial(chosen)
    report = retrain(cfg, opts, provenance=provenance, on_epoch_end=on_epoch_end, on_step=on_step, on_start=on_start)
    found.set_user_attr(
        f"{record.EXPORT_PREFIX}{chosen.number}",
        {
            "test_accuracy": report.test_accuracy, "test_loss": report.metrics["loss"],
            "origin": chosen_record.origin,
            "test_time_augmentation": report.metrics.get("test_time_augmentation"),
            "plain_test_accuracy": (report.metrics.get("plain") or {}).get("accuracy"),
            "path": str(report.directory.resolve()), "epochs": report.epochs, "seed": seed,
            "device": report.device, "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )  # fmt: skip
    _publish(found, chosen.number, report, store)
    return report


def _publish(study: optuna.Study, number: int, report: ExportReport, store: FileSystemArtifactStore) -> None:
    """The export's files as study artifacts (a finished trial takes none) and the study note rewritten."""
    for name, shown in EXPORT_ARTIFACTS.items():
        if (report.directory / name).is_file():
            upload(store, report.directory / name, study, name=f"trial-{number}-{shown}")
    save_study_note(study)
