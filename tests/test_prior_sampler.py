"""PriorBand around a known configuration (search.tune.samplers), without training: ask, suggest, tell."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from search.defaults import FIXED_IN_DRAWS
from search.store.record import OVER_BUDGET
from search.tune.near import NEAR_CHANGE, NEAR_STD
from search.tune.samplers import (
    FLOOR_PRIOR,
    FLOOR_RANDOM,
    PriorBandSampler,
    make_sampler,
    mode_weights,
)
from space.presets import PRESETS
from space.sample import suggest

W1 = PRESETS["fsearch-w1"]


def _forced(mode: str, *, seed: int = 0, prior: Mapping[str, Any] | None = W1) -> PriorBandSampler:
    """A PriorBand sampler that always picks ``mode``."""
    tpe = optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=0, seed=seed)
    random = optuna.samplers.RandomSampler(seed=seed)
    return PriorBandSampler(tpe, random, prior=prior, seed=seed, weights=lambda trained: {mode: 1.0})


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=sampler)


def _ask(study: optuna.Study, *, value: float | None = None, over_budget: bool = False) -> optuna.trial.FrozenTrial:
    """One trial of the real space: told ``value`` (or pruned, flagged over budget) or left running.

    The mode that drew it, and the trial an incumbent draw was near, are kept as the objective keeps them, in user
    attributes (``drawn_by``, ``near``).
    """
    trial = study.ask()
    suggest(trial, epochs=1)
    assert isinstance(study.sampler, PriorBandSampler)
    trial.set_user_attr("drawn_by", study.sampler.mode(trial.number))
    trial.set_user_attr("near", study.sampler.anchor(trial.number))
    if over_budget:
        trial.set_user_attr(OVER_BUDGET, True)
        study.tell(trial, state=TrialState.PRUNED)
    elif value is not None:
        study.tell(trial, value)
    return study.get_trials(deepcopy=False)[trial.number]  # study.trials deep-copies every trial: O(n^2) in a loop


def _distance(value: Any, base: Any, dist: BaseDistribution) -> float:
    """How far a numeric ``value`` is from ``base``, in fractions of the range (log range for log parameters)."""
    scale = math.log if dist.log else float
    return abs(scale(value) - scale(base)) / (scale(dist.high) - scale(dist.low))


def _close(value: Any, base: Any, dist: BaseDistribution) -> bool:
    """Within two perturbation stds of ``base`` (numeric, give or take a step), or equal to it (categorical)."""
    if isinstance(dist, CategoricalDistribution):
        return bool(value == base)
    step = (getattr(dist, "step", None) or 0) / (dist.high - dist.low) if not dist.log else 0
    return _distance(value, base, dist) <= 2 * NEAR_STD + step


def _shared(trials: list[optuna.trial.FrozenTrial], base: Mapping[str, Any], *, categorical: bool) -> list[Any]:
    """``(value, base value, distribution)`` of the drawn parameters ``base`` has too."""
    return [
        (value, base[name], t.distributions[name])
        for t in trials
        for name, value in t.params.items()
        if name in base and isinstance(t.distributions[name], CategoricalDistribution) == categorical
    ]


def _share_close(trials: list[optuna.trial.FrozenTrial], base: Mapping[str, Any], *, categorical: bool) -> float:
    """Of the parameters ``base`` has too, the share drawn close to it."""
    pairs = _shared(trials, base, categorical=categorical)
    return sum(_close(*pair) for pair in pairs) / len(pairs)


def _mean_distance(trials: list[optuna.trial.FrozenTrial], base: Mapping[str, Any]) -> float:
    pairs = _shared(trials, base, categorical=False)
    return sum(_distance(*pair) for pair in pairs) / len(pairs)


def test_prior_draws_are_near_the_prior() -> None:
    sampler = _forced("prior")
    study = _study(sampler)
    trials = [_ask(study) for _ in range(50)]
    assert {t.user_attrs["drawn_by"] for t in trials} == {"prior"}
    assert not any(sampler.explores(t.number) for t in trials)
    assert _share_close(trials, W1, categorical=False) > 0.85  # two stds: 0.95 expected
    assert _share_close(trials, W1, categorical=True) > 1 - NEAR_CHANGE - 0.1
    # Not by chance: random draws of the same space are far less often close to the prior.
    randoms = [_ask(s) for s in [_study(_forced("random"))] for _ in range(50)]
    assert _mean_distance(trials, W1) < 0.5 * _mean_distance(randoms, W1)
    assert _share_close(randoms, W1, categorical=True) < 0.6


def test_incumbent_draws_follow_the_best_completed_trial() -> None:
    lenet5, w1 = PRESETS["lenet5"], PRESETS["fsearch-w1"]  # 8 of their 11 categorical parameters differ
    sampler = _forced("incumbent", prior=PRESETS["cnn3"])
    study = _study(sampler)
    # No completed trial yet: drawn near the prior, and recorded as such.
    assert _ask(study, over_budget=True).user_attrs["drawn_by"] == "prior"
    for preset, value in (("lenet5", 0.80), ("fsearch-w1", 0.90), ("cnn2", 0.85)):
        study.enqueue_trial(PRESETS[preset])
        _ask(study, value=value)
    near_w1 = [_ask(study, value=0.1) for _ in range(30)]
    assert {t.user_attrs["drawn_by"] for t in near_w1} == {"incumbent"}
    assert _share_close(near_w1, w1, categorical=True) > 0.7
    assert _share_close(near_w1, lenet5, categorical=True) < 0.5
    assert _share_close(near_w1, w1, categorical=False) > 0.85
    study.enqueue_trial(lenet5)
    _ask(study, value=0.95)  # a new incumbent
    near_lenet5 = [_ask(study) for _ in range(30)]
    assert _share_close(near_lenet5, lenet5, categorical=True) > 0.7
    assert _share_close(near_lenet5, w1, categorical=True) < 0.5
    assert _share_close(near_lenet5, lenet5, categorical=False) > 0.85


def test_the_schedule_moves_from_random_and_prior_to_incumbent_and_tpe() -> None:
    stages = [mode_weights(n) for n in range(0, 101, 5)]
    assert all(math.isclose(sum(w.values()), 1.0) for w in stages)
    assert stages[0] == {"prior": 0.5, "incumbent": 0.0, "tpe": 0.0, "random": 0.5}
    assert mode_weights(9)["tpe"] == 0.0 < mode_weights(10)["tpe"]  # TPE once it has trials to learn from
    for early, late in itertools.pairwise(stages):
        assert late["random"] < early["random"] and late["prior"] < early["prior"]
        assert late["incumbent"] + late["tpe"] > early["incumbent"] + early["tpe"]
    assert stages[-1]["random"] >= FLOOR_RANDOM and stages[-1]["prior"] >= FLOOR_PRIOR
    assert stages[-1]["incumbent"] + stages[-1]["tpe"] > 0.7


def test_over_budget_draws_do_not_advance_the_stage() -> None:
    sampler = make_sampler("tpe", seed=0, prior=W1)
    assert isinstance(sampler, PriorBandSampler)
    study = _study(sampler)
    early = [_ask(study, over_budget=True) for _ in range(40)]
    assert {t.user_attrs["drawn_by"] for t in early} <= {"random", "prior"}
    for number in range(40):  # trained trials (told without parameters: the stage counts, nothing else)
        study.tell(study.ask(), 0.5 + number / 100)
    late = Counter(sampler.mode(study.ask().number) for _ in range(100))
    assert late["incumbent"] + late["tpe"] > 55  # 75 expected at 40 trained trials
    assert late["random"] > 0


def test_queued_trials_are_never_random_draws() -> None:
    sampler = _forced("random")
    study = _study(sampler)
    drawn = study.ask()
    assert sampler.mode(drawn.number) == "random" and sampler.explores(drawn.number)
    study.enqueue_trial({"n_blocks": 1})  # its other parameters are drawn, but it is still queued
    queued = study.ask()
    suggest(queued, epochs=1)
    assert sampler.mode(queued.number) is None and not sampler.explores(queued.number)
    for mode in ("prior", "incumbent", "tpe"):
        other = _forced(mode)
        assert not other.explores(_study(other).ask().number)


def _draws(seed: int) -> list[tuple[str | None, dict[str, Any]]]:
    sampler = make_sampler("tpe", seed=seed, prior=W1)
    assert isinstance(sampler, PriorBandSampler)
    study = _study(sampler)
    draws = []
    for _ in range(16):  # past TPE_STARTUP_TRAINED: all four modes
        trial = study.ask()
        suggest(trial, epochs=1)
        draws.append((sampler.mode(trial.number), trial.params))
        study.tell(trial, 0.5 + 0.01 * trial.params["n_blocks"] - 0.001 * trial.number)
    return draws


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    first = _draws(1)
    assert first == _draws(1)
    other = _draws(2)
    assert [m for m, _ in first] != [m for m, _ in other]
    assert [p for _, p in first] != [p for _, p in other]


@pytest.mark.parametrize("mode", [None, "prior", "incumbent"])
def test_every_draw_is_valid_for_the_space(mode: str | None) -> None:
    sampler = make_sampler("tpe", seed=3, prior=W1) if mode is None else _forced(mode)
    study = _study(sampler)
    for number in range(30):
        trial = study.ask()
        suggest(trial, epochs=1)  # raises on a parameter the space does not have
        for name, value in trial.params.items():
            dist = trial.distributions[name]
            assert dist._contains(dist.to_internal_repr(value)), (name, value)
        study.tell(trial, 0.5 + 0.01 * number)


def test_without_a_prior_the_incumbent_takes_the_priors_share() -> None:
    sampler = make_sampler("tpe", seed=0)
    assert isinstance(sampler, PriorBandSampler) and sampler.prior is None
    assert not isinstance(make_sampler("random", seed=0, prior=W1), PriorBandSampler)
    for trained in range(0, 61, 5):
        with_prior, without = mode_weights(trained), mode_weights(trained, prior=False)
        assert math.isclose(sum(without.values()), 1.0) and without["prior"] == 0.0
        assert without["random"] == with_prior["random"] and without["tpe"] == with_prior["tpe"]
        assert math.isclose(without["incumbent"], with_prior["incumbent"] + with_prior["prior"])
    assert sampler.weights(0) == mode_weights(0, prior=False)


def _stopped(study: optuna.Study, preset: str, curve: Mapping[int, float]) -> int:
    """Queue ``preset``, report ``curve`` and prune it (as the random draws are stopped); its trial number."""
    study.enqueue_trial(PRESETS[preset])
    trial = study.ask()
    suggest(trial, epochs=1)
    for step, value in curve.items():
        trial.report(value, step)
    study.tell(trial, state=TrialState.PRUNED)
    return trial.number


def test_without_a_prior_incumbent_draws_are_near_one_of_the_leaders_else_random() -> None:
    sampler = _forced("incumbent", prior=None)
    study = _study(sampler)
    # Nothing trained yet: a random draw, recorded and stopped early as one.
    first = _ask(study, over_budget=True)
    assert first.user_attrs["drawn_by"] == "random" and sampler.explores(study.ask().number)
    assert sampler.anchor(first.number) is None
    # Ranked as the finals rank: furthest report first, then accuracy. cnn3 is fourth, so never an anchor.
    w1 = _stopped(study, "fsearch-w1", {1: 0.80, 2: 0.86})
    lenet5 = _stopped(study, "lenet5", {1: 0.84})
    cnn2 = _stopped(study, "cnn2", {1: 0.70, 2: 0.82})
    _stopped(study, "cnn3", {1: 0.60})
    draws = [_ask(study) for _ in range(60)]
    assert {t.user_attrs["drawn_by"] for t in draws} == {"incumbent"}
    assert not any(sampler.explores(t.number) for t in draws)
    by_anchor = {n: [t for t in draws if t.user_attrs["near"] == n] for n in (w1, lenet5, cnn2)}
    assert sum(map(len, by_anchor.values())) == 60  # each of the three leaders, and only they
    assert min(map(len, by_anchor.values())) >= 10  # each as likely: 20 expected
    for number, near in by_anchor.items():
        base = study.trials[number].params
        assert _share_close(near, base, categorical=True) > 0.7
        assert _share_close(near, base, categorical=False) > 0.85
    assert _share_close(by_anchor[w1], study.trials[lenet5].params, categorical=True) < 0.5
    # A completed trial outranks every pruned one, whatever their curves: the third leader, lenet5, drops out.
    study.enqueue_trial(PRESETS["cnn3"])
    done = _ask(study, value=0.5).number
    anchors = {_ask(study).user_attrs["near"] for _ in range(40)}
    assert anchors == {done, w1, cnn2}


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes"])
@pytest.mark.parametrize("prior", [W1, None])
def test_every_drawn_trial_takes_the_fixed_choices_and_a_queued_one_keeps_its_own(
    name: str, prior: Mapping[str, Any] | None
) -> None:
    """``FIXED_IN_DRAWS``: whatever the sampler and its mode (random start, prior, incumbent, TPE), a drawn trial
    flips, has batch norm and a flatten head; a queued trial (a reference preset, a finalist) keeps the values it
    was queued with."""
    assert dict(FIXED_IN_DRAWS) == {"flip": True, "batch_norm": True, "head": "flatten"}
    study = _study(make_sampler(name, seed=0, prior=prior))
    study.enqueue_trial(PRESETS["cnn3"])  # a reference: no flips, no batch norm
    for number in range(24):  # past TPE's random start
        trial = study.ask()
        suggest(trial, epochs=1)
        drawn = number > 0
        assert trial.params["flip"] is drawn, (name, number)
        assert trial.params["batch_norm"] is drawn, (name, number)
        assert trial.params["head"] == "flatten", (name, number)
        study.tell(trial, 0.5 + 0.01 * trial.params["n_blocks"] - 0.001 * number)
    free = _study(make_sampler(name, seed=0, prior=prior, fixed={}))  # nothing fixed: every choice is drawn
    seen: dict[str, set[Any]] = {key: set() for key in FIXED_IN_DRAWS}
    for _ in range(40):
        trial = free.ask()
        suggest(trial, epochs=1)
        for key in seen:
            seen[key].add(trial.params[key])
        free.tell(trial, 0.5)
    assert seen == {"flip": {True, False}, "batch_norm": {True, False}, "head": {"flatten", "gap"}}
