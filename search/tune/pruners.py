"""Pruners by name, in reports: a trial reports ``evals_per_epoch`` times per epoch.

The default, successive halving, keeps a quarter of the trials at each rung: rungs at reports
1 and 4 (half an epoch and two epochs at the default two reports per epoch). The choice of the
reduction factor is measured in ``docs/defaults.md``.
"""

from __future__ import annotations

import optuna

from search.errors import ConfigError

PRUNERS = ("hyperband", "median", "sha", "none")
SHA_MIN_RESOURCE = 1  # reports before the first rung
SHA_REDUCTION = 4  # a quarter of the trials goes on at each rung
# The random start-up trials are measured up to the successive-halving pruner's second rung (report
# 4) and then stopped, so that the sampler ranks them all at the same step (search.tune.samplers).
EXPLORE_REPORTS = SHA_MIN_RESOURCE * SHA_REDUCTION


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
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=SHA_MIN_RESOURCE, reduction_factor=SHA_REDUCTION)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def explore_epochs(evals_per_epoch: int) -> float:
    """Epochs after which a random start-up trial is stopped: the pruner's second rung in epochs."""
    return EXPLORE_REPORTS / evals_per_epoch
