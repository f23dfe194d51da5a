"""Choosing the finalists: the best screen trials, diverse, to be trained again at a longer fidelity.

The screen's order is known to invert at longer training (augmentation and capacity rank the
other way round after 5 epochs than after 30: ``docs/defaults.md``), so the finals do not take
the top of one ranking: after the best screen trial, each next finalist is the best one that
differs from every finalist already chosen in at least ``MIN_DISTANCE`` parameters. And while no
finalist trains with geometric augmentation (rotation, crop or flip: the kind that ranks low after
5 epochs and high after 15 and 30), the next one is the best screen trial that does, if one trained
as far as the best. A finalist too costly for the time left, at the speed its screen trial measured, is passed
over (:func:`choose_affordable`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from search.plan import START_S, Plan, fewest_finalists, least_screen_s, replan
from search.store import record
from search.store.record import TrialRecord
from search.throughput import Throughput
from space import SpaceMismatch, replay

MIN_DISTANCE = 4  # parameters in which a finalist must differ from each one chosen before it
# Quantities within 25% of each other count as the same value: floats (rates) and integers drawn on a log scale
# (widths: 26 and 27 filters are one network, not two; docs/defaults.md, the finals). Counts (blocks, convolutions,
# crop padding) and choices are compared exactly.
NUMBER_TOLERANCE = 0.25


def _scaled(dist: BaseDistribution | None) -> bool:
    """Whether a parameter is a quantity, compared within ``NUMBER_TOLERANCE``."""
    return isinstance(dist, FloatDistribution) or (isinstance(dist, IntDistribution) and dist.log)


def _differs(a: Any, b: Any, *, scaled: bool) -> bool:
    if scaled:  # a Float or log-Int distribution: both values are numbers
        return bool(abs(a - b) / max(abs(a), abs(b), 1e-12) > NUMBER_TOLERANCE)
    return bool(a != b)


def distance(a: FrozenTrial, b: FrozenTrial) -> int:
    """Parameters that differ between two trials' configurations (one that only one of them has counts)."""
    dists = a.distributions | b.distributions
    return sum(
        1 for key in a.params.keys() | b.params.keys()
        if key not in a.params or key not in b.params
        or _differs(a.params[key], b.params[key], scaled=_scaled(dists.get(key)))
    )  # fmt: skip


def rank_key(t: FrozenTrial) -> tuple[float, float]:
    """Screen trials by how far they got (a completed trial beats one pruned earlier), then by accuracy."""
    steps = t.intermediate_values
    last = max(steps) if steps else 0
    value = t.value if t.value is not None else (steps[last] if steps else 0.0)
    return (float(last), float(value))


def candidates(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Screen trials that trained and reported, best first."""
    screened = [
        t for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values
        and (r := TrialRecord(t)).trained and r.stage == "screen"
    ]  # fmt: skip
    return sorted(screened, key=rank_key, reverse=True)


def geometric(t: FrozenTrial) -> bool:
    """Whether the trial's configuration trains with rotation, crop or flip (False for parameters of
    another space, which :func:`space.replay` refuses)."""
    try:
        return replay(t.params, epochs=1, number=t.number).train.augment.geometric
    except SpaceMismatch:
        return False


def choose_finalists(trials: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    """Up to ``k`` finalists: the best screen trial, then the best of those far enough from all chosen,
    and when none is far enough, the best remaining. While no finalist has geometric augmentation, the
    next is the best one that has, among those that trained as far as the best (if any)."""
    ranked = candidates(trials)
    furthest = rank_key(ranked[0])[0] if ranked else 0.0
    moves = {t.number: geometric(t) for t in ranked}  # replayed once per candidate, not once per pick
    chosen: list[FrozenTrial] = []
    while ranked and len(chosen) < k:
        far = [t for t in ranked if all(distance(t, c) >= MIN_DISTANCE for c in chosen)]
        pool = far or ranked
        if chosen and not any(moves[c.number] for c in chosen):
            moved = [t for t in ranked if rank_key(t)[0] == furthest and moves[t.number]]
            in_pool = {t.number for t in pool}
            pool = [t for t in moved if t.number in in_pool] or moved or pool
        pick = pool[0]
        chosen.append(pick)
        ranked = [t for t in ranked if t.number != pick.number and t.params != pick.params]
    return chosen


def choose_affordable(
    trials: list[FrozenTrial], k: int, *, cost: Callable[[FrozenTrial], float],
    fits: Callable[[list[FrozenTrial]], bool], assumed: float,
) -> tuple[list[FrozenTrial], list[FrozenTrial]]:  # fmt: skip
    """The finalists (:func:`choose_finalists`), and the screen trials passed over for their cost, best first.

    While the finals of those chosen do not ``fit`` the time left and the costliest of them (``cost``: million
    MACs as its measured speed implies) is costlier than the plan ``assumed``, they are chosen again without it: a
    leader too slow for the finals would otherwise cost the run its finals (docs/defaults.md, the finals). When the
    finals do not fit though none is costlier than assumed, the time left is what is short, and when fewer are chosen
    than finals need (:func:`~search.plan.fewest_finalists`), the number is: either way the chosen are returned as
    they are, and the plan has no finals."""
    passed: list[FrozenTrial] = []
    pool = list(trials)
    while True:
        chosen = choose_finalists(pool, k)
        if not chosen or fits(chosen) or len(chosen) < fewest_finalists(k):
            return chosen, passed
        costliest = max(chosen, key=cost)
        if cost(costliest) <= assumed:
            return chosen, passed
        passed.append(costliest)
        pool = [t for t in pool if t.number != costliest.number]


def plan_finals(
    trials: list[FrozenTrial], plan: Plan, *, elapsed_s: float, measured: Throughput
) -> tuple[list[FrozenTrial], list[FrozenTrial], Plan]:
    """After the screen: the finalists among ``trials`` (:func:`choose_affordable`, each at the size its measured
    speed implies), the screen trials passed over, and the plan for what is left (``replan`` at ``measured``, the
    screen ended ``elapsed_s`` after the run's start), which may have no finals."""

    def cost(t: FrozenTrial) -> float:
        return TrialRecord(t).effective_mmacs(measured) or plan.reference_mmacs

    def replanned(chosen: list[FrozenTrial]) -> Plan:
        return replan(plan, elapsed_s=elapsed_s, throughput=measured, finals_mmacs=[cost(t) for t in chosen])

    finalists, passed = choose_affordable(
        trials, plan.finalists, cost=cost, fits=lambda chosen: replanned(chosen).finalists > 0,
        assumed=plan.reference_mmacs,
    )  # fmt: skip
    done = replanned(finalists)
    return finalists[: done.finalists], passed, done


def screen_end(trials: list[FrozenTrial], plan: Plan, *, measured: Throughput) -> float:
    """When the screen should end, in seconds from the run's start: the plan's end, or earlier when the finals of
    the finalists chosen among ``trials`` so far (:func:`choose_finalists`), at the speed their screen trials
    measured, would not fit the time that end leaves, less an epoch of the slowest of them for the screen's
    overrun (``replan``: all the planned finalists, for at least twice the screen's epochs). Then the latest end
    at which they fit, if one after the screen's least share (``MIN_SCREEN_SHARE``) does; if none does, the plan's
    end, and :func:`choose_affordable` passes them over.

    A leader costlier than the plan assumed thus takes its finals' time from the screen rather than cost the run
    its finals: without them the export is picked at the screen's fidelity, whose order is known to invert
    (docs/defaults.md, the finals). Where the finals fit, however few their epochs, nothing moves."""
    planned = plan.screen_end_s()
    chosen = choose_finalists(trials, plan.finalists)
    if not plan.finalists or len(chosen) < plan.finalists:
        return planned
    records = [TrialRecord(t) for t in chosen]
    mmacs = [rec.effective_mmacs(measured) or plan.reference_mmacs for rec in records]
    # The screen ends late by up to a report of the trials still training then (each stops at its next one): the
    # finals must fit an epoch of the slowest finalist later (57951be's screen ran 37 s over and lost its finals).
    late = max((plan.train_images / ips for rec in records if (ips := rec.images_per_wall_second) > 0), default=0.0)

    def fits(end: float) -> bool:
        done = replan(plan, elapsed_s=end + late, throughput=measured, finals_mmacs=mmacs)
        return done.finalists == plan.finalists

    earliest = START_S + min(plan.screen_s, least_screen_s(plan.budget_s))
    if fits(planned) or not fits(earliest):
        return planned
    lo, hi = earliest, planned  # they fit at lo, not at hi: bisect to the second
    while hi - lo > 1.0:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def enqueue_finals(study: optuna.Study, finalists: list[FrozenTrial]) -> None:
    """Queue each finalist as a new trial with its screen trial's parameters and provenance.

    A trial still queued for the screen (a preset the screen ended before it started) would be taken first, and
    trained as a finalist: each is failed, with its reason, and queued again behind the finalists, for the next
    run's screen."""
    left = []
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        with warnings.catch_warnings():  # told at once: no heartbeat needed (optuna warns of it outside optimize)
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()  # the queue's first: this one
        trial.set_user_attr(record.FAIL_REASON, "the screen ended before it started: queued again after the finals")
        study.tell(trial, state=TrialState.FAIL)
        left.append((record.queued_params(waiting) or {}, waiting.user_attrs))
    for parent in finalists:
        rec = TrialRecord(parent)
        attrs: dict[str, Any] = {record.STAGE: "final", record.PARENT: parent.number}
        if rec.preset:
            attrs[record.PRESET] = rec.preset
        if rec.drawn_by:
            attrs[record.DRAWN_BY] = rec.drawn_by
        if rec.near is not None:
            attrs[record.NEAR] = rec.near
        study.enqueue_trial(parent.params, user_attrs=attrs, skip_if_exists=False)
    for params, attrs in left:
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
