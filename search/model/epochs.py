"""How many epochs ``export-best`` retrains a trial for, read from the trial's validation curve."""

from __future__ import annotations

import math
import statistics
from typing import Any

from optuna.trial import FrozenTrial

from search.plan import MAX_EXPORT_EPOCHS
from search.store.record import TrialRecord
from search.throughput import EXPORT_IMAGES

MIN_EPOCHS, MAX_EPOCHS = 5, MAX_EXPORT_EPOCHS
RISING_FACTOR, PLATEAU_FACTOR = 6, 2


def default_epochs(trial: FrozenTrial) -> tuple[int, dict[str, Any]]:
    """The retraining's epochs from the trial's validation curve, and the rule's inputs.

    The search trained the trial for ``epochs_run`` epochs on the training split.
    If its validation accuracy had not dropped from its best by the end, it could have used more:
    retrain for 6x the epochs it ran, or, for a trial its stage's deadline cut short (``cut_short``), 6x the
    epochs it was to run (``max_epochs``), as for the trials that completed them: the deadline stopped it, not its
    curve. If it had dropped, it peaked at ``best_epoch``: retrain for 2x that. The result is clamped to [5, 45]
    (``MAX_EXPORT_EPOCHS``).

    "Dropped" compares epochs, not single reports: the mean of the last epoch's reports against the best
    epoch's mean (:func:`epoch_means`), by more than one standard error of an accuracy measured on the
    validation images (binomial: sqrt(p (1 - p) / n), 0.26 points at 93% on 10,000 images). A cosine
    schedule flattens every curve at its end, and a dip of a few images there is noise; so is the single
    highest of a trial's reports, picked out as the best. Why 6x, why the tolerance and why epoch means,
    with the runs that showed it: ``docs/defaults.md``.
    """
    rec = TrialRecord(trial)
    curve = rec.curve()
    means = epoch_means(curve)
    epochs_run = rec.epochs_run if rec.epochs_run is not None else float(max(curve, default=1))
    if means:
        best = max(means, key=means.__getitem__)  # the earliest of equal bests: the means are sorted by epoch
        best_epoch: float = best
        best_value = means[best]
        noise = rec.noise(best_value)
        still_rising = best_value - means[max(means)] <= noise
    else:  # no curve recorded: treat it as still rising
        best_epoch, still_rising = rec.best_epoch or epochs_run, True
    scheduled = rec.max_epochs if rec.cut_short and rec.max_epochs else epochs_run
    raw = RISING_FACTOR * scheduled if still_rising else PLATEAU_FACTOR * best_epoch
    epochs = min(max(round(raw), MIN_EPOCHS), MAX_EPOCHS)
    # Images per search epoch, for the record (the search does not store its --train-subset).
    seen = round(rec.images_per_second * rec.train_seconds / epochs_run) if rec.train_seconds else None
    rule = {
        "rule": f"{RISING_FACTOR}x epochs_run (max_epochs if the deadline cut it short) unless the last epoch's "
        f"mean report is more than one standard error below the best epoch's (then {PLATEAU_FACTOR}x best_epoch), "
        f"clamped to [{MIN_EPOCHS}, {MAX_EPOCHS}]",
        "epochs_run": epochs_run, "cut_short": rec.cut_short is not None, "scheduled_epochs": scheduled,
        "best_epoch": best_epoch, "still_rising": still_rising,
        "val_curve": {f"{k:g}": v for k, v in curve.items()},
        "epoch_means": {str(k): round(v, 6) for k, v in means.items()}, "search_images_per_epoch": seen,
        "retrain_images_per_epoch": EXPORT_IMAGES, "epochs": epochs,
    }  # fmt: skip
    return epochs, rule


def epoch_means(curve: dict[float, float]) -> dict[int, float]:
    """The mean of each epoch's validation reports, keyed by the epoch they fall in (a report after 2.5 epochs
    falls in epoch 3). With one report an epoch, the curve itself. The keys are whole steps over whole reports an
    epoch (:meth:`~search.store.record.TrialRecord.curve`), a division that is exact where it gives a whole number."""
    groups: dict[int, list[float]] = {}
    for epoch, value in curve.items():
        groups.setdefault(math.ceil(epoch), []).append(value)
    return {epoch: statistics.fmean(values) for epoch, values in sorted(groups.items())}
