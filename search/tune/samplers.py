"""Samplers by name, and PriorBand around a known configuration (the prior) or the best trial so far.

``tpe`` (the default) is :class:`PriorBandSampler`: per trial, a draw at random, near a known good configuration (the
prior, if there is one), near the best trial so far (the incumbent) or from multivariate, grouped TPE (the space is
conditional). The prior is where the search starts looking, not an answer it keeps; without one, the incumbent takes
its place. Why random draws stop early and the stage counts trained trials: ``docs/defaults.md``. Every sampler
draws ``FIXED_IN_DRAWS`` as given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from search.defaults import FIXED_IN_DRAWS
from search.errors import ConfigError
from search.store.record import TrialRecord, queued_params
from search.tune.finals import rank_key

SAMPLERS = ("tpe", "random", "cmaes", "gp")
TPE_STARTUP_TRAINED = 10  # trained trials before TPE draws any (over-budget draws not counted)

Mode = Literal["prior", "incumbent", "tpe", "random"]
MODES: tuple[Mode, ...] = ("prior", "incumbent", "tpe", "random")
# PriorBand's stage schedule (mode_weights). Its lowest rung (eta 3) draws 1 / (1 + 3**0) at random, the rest
# from the prior; two rungs up its random share is 1 / (1 + 3**2), which is the floor here.
START_RANDOM = START_PRIOR = 0.5
FLOOR_RANDOM = FLOOR_PRIOR = 0.1  # never less: a wrong prior or a lucky incumbent must not end the exploring
HALF_LIFE = 10  # trained trials after which the start's surplus of random and prior draws has halved
# A draw near a value (the prior's or the incumbent's): a Gaussian of this fraction of the parameter's range
# (in log space for log parameters); a categorical parameter takes another choice with this probability.
# At these, a draw near fsearch-w1 changes 1.25 of its categorical choices on average and 80% fit the
# default --max-mmacs (at 0.15 / 0.2: 2.3 and 66%; docs/defaults.md, benchmarks/prior_draws.py).
NEAR_STD = 0.1
NEAR_CHANGE = 0.1


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def make_sampler(
    name: str, *, seed: int | None, parallel: bool = False, prior: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] = FIXED_IN_DRAWS,
) -> optuna.samplers.BaseSampler:  # fmt: skip
    """A sampler by name; TPE is multivariate and grouped because the space is conditional.

    ``parallel``: other workers run trials of the same study at the same time; TPE then counts
    their running trials as bad ("constant liar") so that workers do not all sample one region.
    ``prior``: a full parameter dict (a preset) that ``tpe`` (:class:`PriorBandSampler`) searches around as well as
    around its incumbent; without it, around the incumbent alone. The other samplers do not use it. ``fixed``:
    parameters every drawn trial takes as given (queued trials keep theirs). TPE's wrapper applies them itself:
    wrapped again in a PartialFixedSampler they would be hidden from the objective, which asks how each trial was
    drawn."""
    check_sampler(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        random = optuna.samplers.RandomSampler(seed=seed)
        if name == "tpe":
            tpe = optuna.samplers.TPESampler(
                multivariate=True, group=True, n_startup_trials=0, seed=seed, constant_liar=parallel
            )
            return PriorBandSampler(tpe, random, prior=prior, seed=seed, fixed=fixed)
        base: optuna.samplers.BaseSampler = random
        if name == "cmaes":  # CMA-ES handles the numeric parameters; categorical/conditional ones fall back to random
            base = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        elif name == "gp":
            base = optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.PartialFixedSampler(dict(fixed), base) if fixed else base


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


class OneSamplerPerTrial(optuna.samplers.BaseSampler):
    """Each trial, all its parameters, drawn by one sampler chosen when it begins (:meth:`_choose`).

    The objective asks :meth:`explores` and stops a random trial at the pruner's second rung: TPE
    ranks any completed trial above every pruned one, so a random trial that completed only
    because it came first would be copied as if it were the best; measured to the same step, the
    random trials are ranked by their accuracy. Queued trials (fixed parameters) never explore.
    """

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, random: optuna.samplers.BaseSampler, *,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.sampler, self.random = sampler, random
        self.fixed = dict(fixed or {})  # parameters every drawn trial takes as given (make_sampler's ``fixed``)
        self._picked: dict[int, optuna.samplers.BaseSampler] = {}  # by trial number, chosen in before_trial
        self._queued: set[int] = set()  # queued trials running now: not random draws

    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        """The sampler chosen for ``trial`` once, when it began (not once per parameter)."""
        if trial.number not in self._picked:  # a trial begun before this sampler was the study's
            self._picked[trial.number] = self._choose(study, trial)
        return self._picked[trial.number]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        space = self._for(study, trial).infer_relative_search_space(study, trial)
        return {name: dist for name, dist in space.items() if name not in self.fixed}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, optuna.distributions.BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:  # fmt: skip
        if param_name in self.fixed:
            return self.fixed[param_name]
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # Queued trials (fixed parameters) are not random draws, whichever sampler is chosen.
        if queued_params(trial) is not None:
            self._queued.add(trial.number)
        self._picked[trial.number] = self._choose(study, trial)
        self.sampler.before_trial(study, trial)

    def explores(self, number: int) -> bool:
        """Whether running trial ``number`` was drawn at random (an exploring trial), not by a model or by hand."""
        return self._picked.get(number) is self.random and number not in self._queued

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._picked.pop(trial.number, None)
        self._queued.discard(trial.number)
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
        self.random.reseed_rng()


def mode_weights(trained: int, *, prior: bool = True) -> dict[Mode, float]:
    """How likely each mode of :class:`PriorBandSampler` is once ``trained`` trials have trained.

    PriorBand (Mallik et al. 2023, "PriorBand: Practical Hyperparameter Optimization in the Age of
    Deep Learning") starts half at random, half from the prior, and moves weight from both to the
    incumbent as evidence comes in; piBO (Hvarfner et al. 2022) likewise lets the prior's weight
    decay with the trials seen. fsearch has no brackets to measure the stage by, so the stage is the
    trained trials: the random and prior shares decay from START to FLOOR with a half-life of
    HALF_LIFE trials, and what they give up goes to mutations of the incumbent and, from
    TPE_STARTUP_TRAINED trained trials on, half of it to TPE. Without a ``prior``, the best configuration known is
    the incumbent, and the prior's share is the incumbent's (docs/defaults.md says why).
    """
    decay = 0.5 ** (trained / HALF_LIFE)
    random = FLOOR_RANDOM + (START_RANDOM - FLOOR_RANDOM) * decay
    near_prior = FLOOR_PRIOR + (START_PRIOR - FLOOR_PRIOR) * decay
    earned = 1.0 - random - near_prior
    tpe = earned / 2 if trained >= TPE_STARTUP_TRAINED else 0.0
    if not prior:
        return {"prior": 0.0, "incumbent": earned - tpe + near_prior, "tpe": tpe, "random": random}
    return {"prior": near_prior, "incumbent": earned - tpe, "tpe": tpe, "random": random}


def draw_near(
    value: Any, distribution: BaseDistribution, rng: np.random.Generator, *, std: float = NEAR_STD,
    change: float = NEAR_CHANGE,
) -> Any:  # fmt: skip
    """A value of ``distribution`` near ``value``: PriorBand's draw from a prior centred on it (``std``: of the
    parameter's range; ``change``: the chance a categorical takes another choice)."""
    if isinstance(distribution, CategoricalDistribution):
        others = [c for c in distribution.choices if c != value]
        if len(others) < len(distribution.choices) and (not others or rng.random() >= change):
            return value
        return others[int(rng.integers(len(others)))]
    assert isinstance(distribution, IntDistribution | FloatDistribution)
    low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
    # Perturbed on the scale the parameter is uniform on (log for learning rates and widths).
    lo, hi, centre = (math.log(v) if log else float(v) for v in (low, high, min(max(float(value), low), high)))
    x = float(centre + rng.normal(0.0, std * (hi - lo)))
    x = min(max(math.exp(x) if log else x, low), high)
    if step is not None:
        x = min(low + round((x - low) / step) * step, high)
    return round(x) if isinstance(distribution, IntDistribution) else x


class NearSampler(optuna.samplers.BaseSampler):
    """Every parameter near ``base``'s (:func:`draw_near`); one that ``base`` lacks (a block it has not) from
    ``missing``."""

    def __init__(
        self, base: Mapping[str, Any], *, rng: np.random.Generator, missing: optuna.samplers.BaseSampler,
        std: float = NEAR_STD, change: float = NEAR_CHANGE,
    ) -> None:  # fmt: skip
        self.base, self.rng, self.missing, self.std, self.change = base, rng, missing, std, change

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if param_name not in self.base:
            return self.missing.sample_independent(study, trial, param_name, param_distribution)
        return draw_near(self.base[param_name], param_distribution, self.rng, std=self.std, change=self.change)


def _incumbent(study: optuna.Study, trained: list[FrozenTrial], *, completed_only: bool) -> FrozenTrial | None:
    """The best completed trial of ``trained``; if none has completed (and not ``completed_only``), the one ahead
    at the furthest epoch any has reported (the random draws stop at 2 epochs: their leader, at first)."""
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    completed = [t for t in trained if t.state == TrialState.COMPLETE and t.value is not None]
    if completed:
        return max(completed, key=lambda t: sign * cast(float, t.value))
    reported = [t for t in trained if t.intermediate_values]
    if completed_only or not reported:
        return None
    return max(reported, key=rank_key)  # the finals' ranking: furthest report, then its accuracy


class PriorBandSampler(OneSamplerPerTrial):
    """PriorBand's sampling around a known configuration, per trial one mode of :data:`MODES`.

    ``prior`` draws near the prior, ``incumbent`` near the best completed trial that trained (while there is none:
    near the prior, or without a prior near the trial ahead at the furthest epoch any has reported, else at random),
    ``tpe`` from ``sampler`` and ``random`` from ``random``; how likely each is depends on the stage of the search
    (``weights``, :func:`mode_weights`). Only ``random`` trials explore (are stopped early); the others train like
    any other trial.
    """

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, random: optuna.samplers.BaseSampler, *,
        prior: Mapping[str, Any] | None, seed: int | None,
        weights: Callable[[int], Mapping[Mode, float]] | None = None, fixed: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(sampler, random, fixed=fixed)
        self.prior = None if prior is None else dict(prior)
        self.weights = weights or (lambda trained: mode_weights(trained, prior=prior is not None))
        self._seed_rngs(seed)
        self._modes: dict[int, Mode] = {}  # by trial number, the mode that drew it (none for queued trials)

    def _seed_rngs(self, seed: int | None) -> None:
        # Two streams: which mode a trial gets does not depend on how many parameters earlier ones drew.
        mode_seed, draw_seed = np.random.SeedSequence(seed).spawn(2)
        self._mode_rng, self._draw_rng = np.random.default_rng(mode_seed), np.random.default_rng(draw_seed)

    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number in self._queued:
            return self.random  # only for parameters the queued dict lacks; not an exploring trial
        finished = [t for t in _finished(study) if TrialRecord(t).trained]
        weights = self.weights(len(finished))
        p = np.array([weights.get(mode, 0.0) for mode in MODES])
        mode = MODES[int(self._mode_rng.choice(len(MODES), p=p / p.sum()))]
        base = self.prior
        if mode == "incumbent":
            incumbent = _incumbent(study, finished, completed_only=self.prior is not None)
            if incumbent is not None:
                base = incumbent.params
            else:
                mode = "prior" if self.prior is not None else "random"
        self._modes[trial.number] = mode
        if mode == "tpe":
            return self.sampler
        if mode == "random" or base is None:
            return self.random
        return NearSampler(base, rng=self._draw_rng, missing=self.random)

    def mode(self, number: int) -> Mode | None:
        """The mode that drew running trial ``number``; None for a queued trial (or one not running here)."""
        return self._modes.get(number)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._modes.pop(trial.number, None)
        super().after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._seed_rngs(None)
