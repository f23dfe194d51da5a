"""Samplers by name, and the random start that TPE learns from.

``tpe`` (the default) is TPE behind :class:`RandomUntilTrained`: random draws until ten trials
have trained, then multivariate, grouped TPE (the space is conditional). Why the start is
counted in trained trials, and why it is stopped early, is in ``docs/defaults.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.errors import ConfigError
from search.store.record import TrialRecord

SAMPLERS = ("tpe", "random", "cmaes", "gp")
TPE_STARTUP_TRAINED = 10  # random trials that train before TPE takes over (over-budget draws not counted)


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def make_sampler(name: str, *, seed: int | None, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """A sampler by name; TPE is multivariate and grouped because the space is conditional.

    ``parallel``: other workers run trials of the same study at the same time; TPE then counts
    their running trials as bad ("constant liar") so that workers do not all sample one region.
    """
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            tpe = optuna.samplers.TPESampler(
                multivariate=True, group=True, n_startup_trials=0, seed=seed, constant_liar=parallel
            )
        return RandomUntilTrained(tpe, optuna.samplers.RandomSampler(seed=seed), n_trained=TPE_STARTUP_TRAINED)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles the numeric parameters; categorical/conditional ones fall back to random.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed)
    check_sampler(name)
    raise AssertionError("unreachable")


class RandomUntilTrained(optuna.samplers.BaseSampler):
    """``random`` until ``n_trained`` trials have trained, then ``sampler`` (TPE).

    Optuna's own ``n_startup_trials`` counts every finished trial, and over-budget draws (recorded
    as pruned in milliseconds) would use it up after a few trials had trained; counting trained
    trials only gives TPE truly random ones to learn from.

    The objective asks :meth:`explores` and stops a random trial at the pruner's second rung: TPE
    ranks any completed trial above every pruned one, so a random trial that completed only
    because it came first would be copied as if it were the best; measured to the same step, the
    random trials are ranked by their accuracy.
    """

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, random: optuna.samplers.BaseSampler, *, n_trained: int
    ) -> None:
        self.sampler, self.random, self.n_trained = sampler, random, n_trained
        self._picked: dict[int, optuna.samplers.BaseSampler] = {}  # by trial number, chosen in before_trial
        self._fixed: set[int] = set()  # queued trials (fixed parameters) running now: not random draws

    def _current(self, study: optuna.Study) -> optuna.samplers.BaseSampler:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        trained = sum(TrialRecord(t).trained for t in done)
        return self.random if trained < self.n_trained else self.sampler

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        """The sampler chosen for ``trial`` once, when it began (not once per parameter)."""
        return self._picked.get(trial.number) or self._current(study)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, optuna.distributions.BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:  # fmt: skip
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._picked[trial.number] = self._current(study)
        # Queued trials (fixed parameters) are not random draws, whichever sampler is current.
        if "fixed_params" in trial.system_attrs:
            self._fixed.add(trial.number)
        self.sampler.before_trial(study, trial)

    def explores(self, number: int) -> bool:
        """Whether running trial ``number`` was drawn at random (a start-up trial), not by TPE or by hand."""
        return self._picked.get(number) is self.random and number not in self._fixed

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._picked.pop(trial.number, None)
        self._fixed.discard(trial.number)
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
        self.random.reseed_rng()
