"""Pruners by name, in reports: a trial reports ``evals_per_epoch`` times per epoch.

The default, successive halving, keeps a quarter of the trials at each rung: rungs at reports
1 and 4 (half an epoch and two epochs at the default two reports per epoch), and never stops a
trial that is behind the cut by less than the noise of its validation accuracy
(:class:`HalvingWithinNoise`). The choice of the reduction factor and the tolerance: ``docs/defaults.md``.
"""

from __future__ import annotations

import math

import optuna
from optuna.study import StudyDirection

from search.errors import ConfigError
from search.store.record import TrialRecord

PRUNERS = ("hyperband", "median", "sha", "none")
SHA_MIN_RESOURCE = 1  # reports before the first rung
SHA_REDUCTION = 4  # a quarter of the trials goes on at each rung
# The random draws are measured up to the successive-halving pruner's second rung (report
# 4) and then stopped, so that the sampler ranks them all at the same step (search.tune.samplers).
EXPLORE_REPORTS = SHA_MIN_RESOURCE * SHA_REDUCTION


RUNG_KEY = "completed_rung_"  # where Optuna's successive halving keeps a trial's value at each rung


class HalvingWithinNoise(optuna.pruners.BasePruner):
    """Successive halving that keeps a trial whose value at a rung is within one standard error of the cut.

    Optuna's successive halving stops a trial below the cut of its rung (the value a quarter of the trials there
    reach; the best one while fewer than eight have), however small the gap. One standard error of an accuracy
    on the validation images (binomial: sqrt(p (1 - p) / n), 0.34 points at 87% on 10,000) is the least gap that
    says a trial is behind rather than level; with few trials at a rung, draws around the prior were stopped
    within it of the preset (``docs/defaults.md``). A kept trial goes on to the next rung and is judged there again.
    """

    def __init__(self, *, min_resource: int, reduction_factor: int) -> None:
        self._halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                               reduction_factor=reduction_factor)  # fmt: skip
        self._reduction = reduction_factor

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not self._halving.prune(study, trial):
            return False
        value = float(trial.intermediate_values[trial.last_step]) if trial.last_step is not None else math.nan
        if math.isnan(value) or study.direction != StudyDirection.MAXIMIZE:
            return True
        trials = study.get_trials(deepcopy=False)
        mine = next((t for t in trials if t.number == trial.number), trial)  # with the rung just recorded
        rungs = [int(key.removeprefix(RUNG_KEY)) for key in mine.system_attrs if key.startswith(RUNG_KEY)]
        if not rungs:
            return True
        key = f"{RUNG_KEY}{max(rungs)}"
        others = [float(t.system_attrs[key]) for t in trials if key in t.system_attrs and t.number != trial.number]
        competing = sorted([*others, value], reverse=True)  # as Optuna ranks them
        cut = competing[max(len(competing) // self._reduction - 1, 0)]
        return value < cut - TrialRecord(trial).noise(cut)


def check_pruner(name: str) -> None:
    if name not in PRUNERS:
        raise ConfigError(f"unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")


def make_pruner(name: str, *, max_resource: int) -> optuna.pruners.BasePruner:
    """A pruner by name; ``max_resource`` is the number of reports a full trial makes."""
    check_pruner(name)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3)
    if name == "sha":
        # No bootstrap count: the first trials at a rung are compared with the later ones, not stopped.
        return HalvingWithinNoise(min_resource=SHA_MIN_RESOURCE, reduction_factor=SHA_REDUCTION)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def explore_epochs(evals_per_epoch: int) -> float:
    """Epochs after which a random draw is stopped: the pruner's second rung in epochs."""
    return EXPLORE_REPORTS / evals_per_epoch
