"""``run_search``: the library API behind ``fsearch run`` (the CLI only parses and displays).

Opens (or resumes) the study, loads the data once, optionally enqueues the reference presets,
and runs ``study.optimize`` with the :class:`~search.tune.objective.Objective`, here or in several
worker processes (:mod:`search.tune.workers`). After every trial the study's dashboard note (the
search summary, :mod:`search.store.notes`) is rewritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search.device import describe, resolve_device
from search.store.notes import name_objective
from search.store.record import PRESET, TrialRecord, best_trial
from search.store.storage import open_storage
from search.store.study import create_or_resume
from search.tune.objective import TrialObserver
from search.tune.samplers import make_sampler
from search.tune.session import (
    LocalTickets,
    SearchOptions,
    TrialEndCallback,
    load_search_splits,
    optimize_here,
    pruner_for,
)
from search.tune.workers import Lanes, WorkerSpec, plan_workers, run_workers
from space import PRESETS

WARM_START_PRESETS = ("cnn3", "cnn2", "lenet5")  # --warm-start: the references
KNOWN_BEST_PRESETS = ("fsearch-w1",)  # --known-best (default): a hand-written configuration, queued first


@dataclass(frozen=True)
class SearchReport:
    """What one ``run_search`` call did (the CLI prints it; ``--json`` dumps it)."""

    study: optuna.Study
    device: str
    wall_seconds: float
    counts: dict[str, int]  # trials of this run by state
    best: FrozenTrial | None  # best of the whole study
    workers: int = 1
    problems: tuple[str, ...] = ()  # one line per worker that did not end cleanly


def _sampler_seed(seed: int, already: int, lane: int) -> int:
    """Lane 0 (and a lone process) draws from ``seed``, moved on by the trials a resumed study has,
    so a resumed run does not replay the first run's draws; other workers get seeds of their own."""
    if lane == 0:
        return seed + already
    return int(np.random.SeedSequence([seed, already, lane]).generate_state(1)[0] & 0x7FFFFFFF)


def _describe_plan(plan: list[WorkerSpec]) -> str:
    devices = sorted({spec.device for spec in plan})
    threads = f", {plan[0].threads} thread{'s' * (plan[0].threads > 1)} each" if devices == ["cpu"] else ""
    return f"{len(plan)} workers on {', '.join(devices)}{threads}"


def run_search(
    opts: SearchOptions, *, observer: TrialObserver | None = None, on_trial_end: TrialEndCallback | None = None,
    lanes: Lanes | None = None,
) -> SearchReport:  # fmt: skip
    """Run ``opts.trials`` more trials of ``opts.study``; a KeyboardInterrupt fails the running trial(s).

    One worker runs here, with ``observer``; several run as processes (:mod:`search.tune.workers`), each
    shown in its own lane of ``lanes``. ``on_trial_end`` is called here for every trial either way.
    """
    opts.validate()
    started = time.perf_counter()
    device = resolve_device(opts.device)
    plan = plan_workers(opts.workers, device, trials=opts.trials)
    # The data is verified before the study is opened: a corrupt file leaves no new, empty study behind.
    splits = load_search_splits(opts, device if len(plan) == 1 else torch.device("cpu"), verify=opts.verify_data)
    storage = open_storage(opts.storage, create=True, grace_period=opts.grace_period)
    study = create_or_resume(
        storage, opts.study, sampler=make_sampler(opts.sampler, seed=opts.seed, parallel=len(plan) > 1),
        pruner=pruner_for(opts),
    )  # fmt: skip
    name_objective(study)
    already = len(study.trials)
    # This run's trials: all but those finished or running before it (queued ones are this run's to train).
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING}
    # The known-best preset starts a new study only: a study begun with --no-known-best stays without
    # it when resumed. --warm-start is asked for each time; skip_if_exists trains each preset once.
    queued = (KNOWN_BEST_PRESETS if opts.known_best and not already else ()) + (
        WARM_START_PRESETS if opts.warm_start else ()
    )
    for name in queued:
        study.enqueue_trial(PRESETS[name], user_attrs={PRESET: name}, skip_if_exists=True)
    lost: list[str] = []
    if len(plan) == 1:
        if already:  # a resumed study must not replay the random draws of the first run
            study.sampler = make_sampler(opts.sampler, seed=_sampler_seed(opts.seed, already, 0))
        optimize_here(
            study, opts, splits, tickets=LocalTickets(opts.trials), observer=observer, on_trial_end=on_trial_end,
            timeout=opts.timeout,
        )  # fmt: skip
    else:
        del splits  # each worker loads its own copy on its own device
        lost = run_workers(
            opts, plan, study=study, sampler_seeds=[_sampler_seed(opts.seed, already, i) for i in range(len(plan))],
            timeout=None if opts.timeout is None else max(1.0, opts.timeout - (time.perf_counter() - started)),
            lanes=lanes, on_trial_end=on_trial_end,
        )  # fmt: skip
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number not in earlier]
    skipped = [t for t in mine if TrialRecord(t).over_budget]
    counts = {
        s.name.lower(): sum(t.state == s and TrialRecord(t).trained for t in mine)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    counts["skipped"] = len(skipped)
    return SearchReport(
        study=study,
        device=describe(device) if len(plan) == 1 else _describe_plan(plan),
        wall_seconds=time.perf_counter() - started,
        counts=counts,
        best=best_trial(trials),
        workers=len(plan),
        problems=tuple(lost),
    )
