"""Markdown notes shown by optuna-dashboard: a trial's architecture, a study's search and export.

The study note is rendered from the study alone (its trials and its ``export:<trial>`` user
attributes), so the search (after every trial) and ``export-best`` can both rewrite it without
losing each other's part. Notes are saved with optuna-dashboard's ``save_note``.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import save_note

from search.store.record import FINALS_PASSED_OVER, TrialRecord, best_trial, exports
from search.store.record import trained as trained_trials

# Documented test accuracies on Fashion-MNIST (../shared/REFERENCES.md), to put an export beside.
REFERENCES: tuple[tuple[str, float], ...] = (
    ("LeNet-5 (61,706 parameters)", 0.897),
    ("3-conv CNN 32/64/128", 0.914),
    ("2-conv CNN (1.6M parameters)", 0.9304),
    ("Google AutoML Vision (24 compute hours)", 0.939),
)


OBJECTIVE_NAME = "validation accuracy"


def name_objective(study: optuna.Study) -> None:
    """Label the objective in the dashboard's plots ("validation accuracy", not "Objective 0")."""
    with warnings.catch_warnings(), contextlib.suppress(optuna.exceptions.StorageInternalError):
        # (suppressed: a worker on another machine named it at the same moment)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAME])


def save_study_note(study: optuna.Study) -> None:
    """Rewrite the study's note from its current trials and exports."""
    save_note(study, study_note(study))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def pruning_savings(trials: list[FrozenTrial]) -> dict[str, float]:
    """Epochs and (estimated) training seconds that pruning saved, from the trials' user attributes.

    A pruned trial would have run ``max_epochs`` epochs (recorded by the objective; else the
    longest any trial ran) at the speed it showed until it was stopped.
    """
    records = [TrialRecord(t) for t in trials]
    longest = max((r.epochs_run for r in records if r.epochs_run is not None), default=0.0)
    saved_epochs = saved_seconds = spent_seconds = 0.0
    pruned = 0
    for r in records:
        done = r.epochs_run
        if r.trial.state != TrialState.PRUNED or done is None:
            continue
        full = r.max_epochs if r.max_epochs is not None else longest
        if done <= 0 or full <= done:
            continue
        pruned += 1
        saved_epochs += full - done
        saved_seconds += (full - done) * r.train_seconds / done
        spent_seconds += r.train_seconds
    return {"pruned": pruned, "saved_epochs": saved_epochs, "saved_seconds": saved_seconds, "spent": spent_seconds}


def _search_section(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    trained = trained_trials(trials)
    counts = {s: sum(t.state == s for t in trained) for s in TrialState}
    skipped = len(trials) - len(trained)
    lines = [f"## Search: {study.study_name}", "", "| | |", "|---|---|"]
    lines.append(
        f"| trials | {len(trained)}: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} running"
        + (f" ({skipped} over-budget draws skipped)" if skipped else "")
        + " |"
    )
    best = best_trial(trials)
    if best is not None:
        rec = TrialRecord(best)
        lines.append(
            f"| best | {rec.stage} trial {best.number} ({rec.origin}): validation accuracy **{best.value:.4f}**, "
            f"{rec.parameters:,} parameters, {rec.macs / 1e6:.2f} M MACs, "
            f"{_fmt(rec.epochs_run)} epochs, {rec.images_per_second:,.0f} images/s |"
        )
        params = ", ".join(f"`{k}`={_fmt(v)}" for k, v in best.params.items())
        lines.append(f"| best parameters | {params} |")
    if passed := study.user_attrs.get(FINALS_PASSED_OVER):
        lines.append(
            f"| finals | passed over {', '.join(f'trial {n}' for n in passed)}: too slow, at the speed its screen "
            "measured, for the finals' time left |"
        )
    starts = [t.datetime_start for t in trained if t.datetime_start]
    ends = [t.datetime_complete for t in trained if t.datetime_complete]
    train_s = sum(TrialRecord(t).train_seconds for t in trained)
    if starts and ends:
        span = (max(ends) - min(starts)).total_seconds()
        lines.append(f"| time | {_minutes(span)} from the first trial's start to the last one's end; "
                     f"{_minutes(train_s)} of training |")  # fmt: skip
    saved = pruning_savings(trained)
    if saved["pruned"]:
        would = saved["spent"] + saved["saved_seconds"]
        share = saved["saved_seconds"] / would if would else 0.0
        lines.append(
            f"| pruning | stopped {saved['pruned']:.0f} trials early, saving {saved['saved_epochs']:.1f} epochs, "
            f"≈ {_minutes(saved['saved_seconds'])} of training ({share:.0%} of what those trials would have cost) |"
        )
    else:
        lines.append("| pruning | no trial pruned yet |")
    devices = sorted({d for t in trained if (d := TrialRecord(t).device) is not None})
    if devices:
        lines.append(f"| device | {', '.join(devices)} |")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _export_section(number: int, export: dict[str, Any]) -> list[str]:
    acc = float(export["test_accuracy"])
    ours = f"**this search: trial {number}, exported**"
    rows = sorted([*REFERENCES, (ours, acc)], key=lambda r: r[1])
    lines = [
        f"## Exported model: trial {number}" + (f" ({export['origin']})" if export.get("origin") else ""),
        "",
        f"Retrained for {_fmt(export.get('epochs', '?'))} epochs on all 60,000 training images on "
        f"{export.get('device', '?')}, then measured once on the 10,000 test images: "
        f"**test accuracy {acc:.4f}** (loss {float(export.get('test_loss', 0.0)):.4f}"
        + (
            f"; with flip test-time augmentation, the plain network {export['plain_test_accuracy']:.4f}"
            if export.get("plain_test_accuracy") is not None
            else ""
        )
        + f"). Saved in `{export.get('path', '?')}` at {export.get('exported_at', '?')}; its files are the "
        f"study's artifacts `trial-{number}-*`.",
        "",
        "| model | test accuracy |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {'**' if name == ours else ''}{value:.2%}{'**' if name == ours else ''} |"
              for name, value in rows]  # fmt: skip
    return lines


def study_note(study: optuna.Study) -> str:
    """The study's note: the search summary, then each export beside the reference results."""
    trials = study.get_trials(deepcopy=False)
    lines = _search_section(study, trials)
    for number, export in exports(study):
        lines += ["", *_export_section(number, export)]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines += ["", f"_Written by fsearch at {now}._"]
    return "\n".join(lines) + "\n"
