"""Samplers by name, and PriorBand around a known configuration (the prior) or the best trial so far.

``tpe`` (the default) is :class:`PriorBandSampler`: per trial, a draw at random, near a known good configuration (the
prior, if there is one), near the best trial so far (the incumbent; without a prior, one of the best few) or from
multivariate, grouped TPE (the space is conditional). The prior is where the search starts looking, not an answer it
keeps; without one, the incumbent takes its place. Why random draws stop early and the stage counts trained
trials: ``docs/defaults.md``. Every sampler draws ``FIXED_IN_DRAWS`` as given. The draws near a configuration:
:mod:`search.tune.near`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.defaults import FIXED_IN_DRAWS
from search.errors import ConfigError
from search.store.record import TrialRecord, queued_params
from search.tune.finals import rank_key
from search.tune.near import NearSampler

SAMPLERS = ("tpe", "random", "cmaes", "gp")
TPE_STARTUP_TRAINED = 10  # trained trials before TPE draws any (over-budget draws not counted)

Mode = Literal["prior", "incumbent", "tpe", "random"]
MODES: tuple[Mode, ...] = ("prior", "incumbent", "tpe", "random")
# PriorBand's stage schedule (mode_weights). Its lowest rung (eta 3) draws 1 / (1 + 3**0) at random, the rest
# from the prior; two rungs up its random share is 1 / (1 + 3**2), which is the floor here.
START_RANDOM = START_PRIOR = 0.5
FLOOR_RANDOM = FLOOR_PRIOR = 0.1  # never less: a wrong prior or a lucky incumbent must not end the exploring
HALF_LIFE = 10  # trained trials after which the start's surplus of random and prior draws has halved
# Without a prior, an incumbent draw is near one of this many leaders (by the finals' ranking), taken alike: not
# only the first random draw to lead, whose neighbours then held the lead (docs/defaults.md).
ANCHORS_WITHOUT_PRIOR = 3


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


def leaders(trained: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    """The ``k`` trials of ``trained`` ahead: completed trials first, then those stopped at the furthest epoch (the
    random draws stop at 2 epochs: at first, those), each by the finals' ranking (furthest report, then accuracy)."""
    ranked = [t for t in trained if t.state == TrialState.COMPLETE or t.intermediate_values]
    return sorted(ranked, key=lambda t: (t.state == TrialState.COMPLETE, *rank_key(t)), reverse=True)[:k]


def _incumbent(trained: list[FrozenTrial]) -> FrozenTrial | None:
    """The first of the :func:`leaders` if it completed (the best completed trial), None while none has."""
    ahead = leaders(trained, 1)
    return ahead[0] if ahead and ahead[0].state == TrialState.COMPLETE else None


class PriorBandSampler(OneSamplerPerTrial):
    """PriorBand's sampling around a known configuration, per trial one mode of :data:`MODES`.

    ``prior`` draws near the prior, ``incumbent`` near the best completed trial that trained (while there is none:
    near the prior), ``tpe`` from ``sampler`` and ``random`` from ``random``; how likely each is depends on the stage
    of the search (``weights``, :func:`mode_weights`). Without a prior, ``incumbent`` draws near one of the
    ``ANCHORS_WITHOUT_PRIOR`` :func:`leaders` of the trials that reported, each as likely (at random while none
    has). Only ``random`` trials explore (are stopped early); the others train like any other trial. :meth:`anchor`
    says which trial an ``incumbent`` draw was near.
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
        self._anchors: dict[int, int] = {}  # by trial number, the trial an incumbent draw is near

    def _seed_rngs(self, seed: int | None) -> None:
        # Three streams: which mode a trial gets, and which leader an incumbent draw is near, do not depend on how
        # many parameters earlier trials drew (spawn's first two children are those of spawn(2): the same seed
        # draws the same modes and parameters as before the anchor stream).
        mode_seed, draw_seed, anchor_seed = np.random.SeedSequence(seed).spawn(3)
        self._mode_rng, self._draw_rng = np.random.default_rng(mode_seed), np.random.default_rng(draw_seed)
        self._anchor_rng = np.random.default_rng(anchor_seed)

    def _choose(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number in self._queued:
            return self.random  # only for parameters the queued dict lacks; not an exploring trial
        finished = [t for t in _finished(study) if TrialRecord(t).trained]
        weights = self.weights(len(finished))
        p = np.array([weights.get(mode, 0.0) for mode in MODES])
        mode = MODES[int(self._mode_rng.choice(len(MODES), p=p / p.sum()))]
        base = self.prior
        if mode == "incumbent":
            if self.prior is not None:
                incumbent = _incumbent(finished)
            else:
                ahead = leaders(finished, ANCHORS_WITHOUT_PRIOR)
                incumbent = ahead[int(self._anchor_rng.integers(len(ahead)))] if ahead else None
            if incumbent is not None:
                base = incumbent.params
                self._anchors[trial.number] = incumbent.number
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

    def anchor(self, number: int) -> int | None:
        """The trial that running trial ``number`` was drawn near, if the ``incumbent`` mode drew it."""
        return self._anchors.get(number)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._modes.pop(trial.number, None)
        self._anchors.pop(trial.number, None)
        super().after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._seed_rngs(None)
