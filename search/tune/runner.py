"""``run_search``: the library API behind ``fsearch run`` (the CLI only parses and displays).

Opens (or resumes) the study, loads the data once, queues the known-best preset into a new
study, plans the job's time (:mod:`search.plan`), then runs its two stages with the
:class:`~search.tune.objective.Objective`, here or in several worker processes
(:mod:`search.tune.workers`): the screen (sampled trials, pruned) and the finals (the best screen
trials, diverse, trained again for longer: :mod:`search.tune.finals`). After every trial the
study's dashboard note (the search summary, :mod:`search.store.notes`) is rewritten.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search.data import Splits
from search.defaults import KNOWN_BEST_PRESET, WARM_START_PRESETS
from search.device import describe, resolve_device
from search.plan import Plan, make_plan
from search.store.artifacts import artifact_dir, open_store
from search.store.notes import name_objective
from search.store.record import FINALS_PASSED_OVER, PLAN, PRESET, TrialRecord, best_trial
from search.store.storage import open_storage
from search.store.study import create_or_resume
from search.throughput import Throughput, measured_throughput
from search.train import MAX_SEED
from search.tune.calibrate import calibrate
from search.tune.clock import Deadline
from search.tune.events import Lanes
from search.tune.finals import enqueue_finals, plan_finals, screen_end
from search.tune.objective import TrialObserver
from search.tune.samplers import make_sampler
from search.tune.session import (
    LocalTickets,
    SearchOptions,
    Stage,
    TrialEndCallback,
    load_search_splits,
    optimize_here,
    prior_of,
    pruner_for,
)
from search.tune.workers import WorkerSpec, plan_workers, run_workers
from space import PRESETS, preset_config
from space.model import model_size

REFERENCE_PRESET = KNOWN_BEST_PRESET  # the plan's times are estimated for a network of this size


@dataclass(frozen=True)
class SearchReport:
    """What one ``run_search`` call did (the CLI prints it; ``--json`` dumps it)."""

    study: optuna.Study
    device: str
    wall_seconds: float
    counts: dict[str, int]  # trials of this run by state (screen and finals together), and skipped draws
    best: FrozenTrial | None  # the study's answer: best of its longest fidelity (search.store.record.best_trial)
    workers: int = 1
    problems: tuple[str, ...] = ()  # one line per worker that did not end cleanly
    plan: Plan | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time of the screen and the finals
    # Screen trials passed over as finalists: too costly, at their measured speed, for the finals' time left
    passed_over: tuple[int, ...] = ()


def _sampler_seed(seed: int, already: int, lane: int) -> int:
    """Lane 0 (and a lone process) draws from ``seed``, moved on by the trials a resumed study has,
    so a resumed run does not replay the first run's draws (modulo 2**32, the samplers' range); other workers
    get seeds of their own."""
    if lane == 0:
        return (seed + already) % (MAX_SEED + 1)
    return int(np.random.SeedSequence([seed, already, lane]).generate_state(1)[0] & 0x7FFFFFFF)


def _describe_workers(specs: list[WorkerSpec]) -> str:
    devices = sorted({spec.device for spec in specs})
    threads = f", {specs[0].threads} thread{'s' * (specs[0].threads > 1)} each" if devices == ["cpu"] else ""
    return f"{len(specs)} workers on {', '.join(devices)}{threads}"


def _make_plan(opts: SearchOptions, splits: Splits, device: torch.device, specs: list[WorkerSpec]) -> Plan | None:
    """The time plan, from this machine's measured speed on the reference configuration (None without a budget)."""
    if opts.budget_minutes is None:
        return None
    reference = preset_config(REFERENCE_PRESET)
    throughput = calibrate(
        reference, splits, runtime=opts.runtime(device), worker_threads=specs[0].threads,
        evals_per_epoch=opts.evals_per_epoch,
    )  # fmt: skip
    return make_plan(
        budget_s=opts.budget_minutes * 60, workers=len(specs), train_images=len(splits.train),
        reference_mmacs=model_size(reference.arch).macs / 1e6, throughput=throughput, screen_epochs=opts.max_epochs,
        finalists=opts.finalists,
    )  # fmt: skip


@dataclass
class _Runner:
    """Runs the stages of one ``run_search`` call, here (one worker) or in worker processes."""

    opts: SearchOptions
    study: optuna.Study
    specs: list[WorkerSpec]
    splits: Splits | None  # None when the workers load their own
    already: int  # trials the study had before this run
    observer: TrialObserver | None
    lanes: Lanes | None
    problems: list[str] = field(default_factory=list)

    def run(self, stage: Stage, *, timeout: float | None, on_trial_end: TrialEndCallback | None) -> None:
        if self.splits is not None:
            optimize_here(
                self.study, self.opts, self.splits, stage=stage, tickets=LocalTickets(stage.trials),
                observer=self.observer, on_trial_end=on_trial_end, timeout=timeout,
            )  # fmt: skip
            return
        self.problems += run_workers(
            self.opts, self.specs, stage=stage, study=self.study,
            sampler_seeds=[_sampler_seed(self.opts.seed, self.already, i) for i in range(len(self.specs))],
            timeout=timeout, lanes=self.lanes, on_trial_end=on_trial_end,
        )  # fmt: skip


def run_search(
    opts: SearchOptions, *, observer: TrialObserver | None = None, on_trial_end: TrialEndCallback | None = None,
    lanes: Lanes | None = None, on_plan: Callable[[Plan], None] | None = None,
    on_screen_end: Callable[[float, str], None] | None = None,
) -> SearchReport:  # fmt: skip
    """Run a screen of up to ``opts.trials`` more trials of ``opts.study``, then its finals; a
    KeyboardInterrupt fails the running trial(s).

    One worker runs here, with ``observer``; several run as processes (:mod:`search.tune.workers`), each
    shown in its own lane of ``lanes``. ``on_trial_end`` is called here for every trial either way, and
    ``on_plan`` with the time plan once it is made, and ``on_screen_end`` with the screen's end (wall clock) and
    why each time it moves.
    """
    opts.validate()
    started, started_wall = time.perf_counter(), time.time()
    device = resolve_device(opts.device)
    specs = plan_workers(opts.workers, device, trials=opts.trials)
    # The data is verified before the study is opened: a corrupt file leaves no new, empty study behind. It is
    # loaded on the first worker's device, where the plan's calibration times the reference configuration (the
    # workers load their own copies).
    splits = load_search_splits(opts, torch.device(specs[0].device), verify=opts.verify_data)
    storage = open_storage(opts.storage, create=True, grace_period=opts.grace_period)
    if opts.artifacts:  # a folder that cannot be made fails now, not every trial after its training
        open_store(artifact_dir(opts.storage, opts.artifact_dir), create=True)
    study = create_or_resume(
        storage, opts.study,
        sampler=make_sampler(opts.sampler, seed=opts.seed, parallel=len(specs) > 1, prior=prior_of(opts)),
        pruner=pruner_for(opts),
    )  # fmt: skip
    name_objective(study)
    already = len(study.trials)
    # This run's trials: all but those finished or running before it (queued ones are this run's to train).
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING}
    # The known-best preset starts a new study only: a study begun with --no-known-best stays without
    # it when resumed. --warm-start is asked for each time; skip_if_exists trains each preset once.
    queued = ((KNOWN_BEST_PRESET,) if opts.known_best and not already else ()) + (
        WARM_START_PRESETS if opts.warm_start else ()
    )
    for name in queued:
        study.enqueue_trial(PRESETS[name], user_attrs={PRESET: name}, skip_if_exists=True)
    plan = _make_plan(opts, splits, splits.train.x.device, specs)
    if plan is not None or study.user_attrs.get(PLAN) is not None:  # export-best follows the latest run's plan
        _save_plan(study, plan)
    shown: list[str] = []  # the plan lines shown so far: a line that reads as the last one is not shown again

    def show(p: Plan) -> None:
        line = p.describe()
        if on_plan is not None and shown[-1:] != [line]:
            shown.append(line)
            on_plan(p)

    if plan is not None:
        show(plan)
    if len(specs) == 1 and already:  # a resumed study must not replay the random draws of the first run
        study.sampler = make_sampler(opts.sampler, seed=_sampler_seed(opts.seed, already, 0), prior=prior_of(opts))
    runner = _Runner(
        opts, study, specs, splits if len(specs) == 1 else None, already, observer, lanes
    )  # fmt: skip
    del splits  # workers load their own copy on their own device
    # The screen stops starting trials at the plan's screen time (or --timeout) and stops a running one there; that
    # time moves earlier while the finals of its leaders need more than the plan assumed (finals.screen_end).
    deadline, screen_trial_end, timeout = None, on_trial_end, opts.timeout
    if plan is not None:
        deadline = Deadline(started_wall + plan.screen_end_s())
        screen_trial_end = _moving(deadline, plan, started_wall, earlier, on_trial_end, on_screen_end)
        timeout = _earliest(timeout, max(1.0, deadline.at - time.time()))
    stage_seconds = {}
    t0 = time.perf_counter()
    runner.run(Stage.screen(opts, deadline=deadline, plan=plan), timeout=timeout, on_trial_end=screen_trial_end)
    stage_seconds["screen"] = time.perf_counter() - t0
    finalists: list[FrozenTrial] = []
    passed_over: tuple[int, ...] = ()
    if plan is not None:  # what is left, at the speed the screen's trials showed, for the finalists chosen
        trials = study.get_trials(deepcopy=False)
        measured = _screen_throughput(trials, earlier, plan)
        finalists, passed, plan = plan_finals(
            _without_finals(trials), plan, elapsed_s=time.time() - started_wall, measured=measured
        )
        passed_over = tuple(t.number for t in passed)
        _save_plan(study, plan)
        with contextlib.suppress(optuna.exceptions.StorageInternalError):  # as _save_plan: the latest run's
            study.set_user_attr(FINALS_PASSED_OVER, list(passed_over))
    if plan is not None and finalists and not runner.problems:
        show(plan)  # the finals' share, replanned; without finals the plan shown next says all that is left
        enqueue_finals(study, finalists)
        t0 = time.perf_counter()
        stage = Stage(name="final", max_epochs=plan.final_epochs, trials=len(finalists), prune=False)
        runner.run(stage, timeout=None, on_trial_end=on_trial_end)
        stage_seconds["final"] = time.perf_counter() - t0
    if plan is not None:  # the export gets the time the search left, the finals' slack included
        ended = plan.after_search(time.time() - started_wall)
        _save_plan(study, ended)
        show(ended)
        plan = ended
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number not in earlier]
    counts = {
        s.name.lower(): sum(t.state == s and TrialRecord(t).trained for t in mine)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    counts["skipped"] = sum(TrialRecord(t).over_budget for t in mine)
    counts["finals"] = sum(TrialRecord(t).stage == "final" for t in mine)
    return SearchReport(
        study=study,
        device=describe(device) if len(specs) == 1 else _describe_workers(specs),
        wall_seconds=time.perf_counter() - started,
        counts=counts,
        best=best_trial(trials),
        workers=len(specs),
        problems=tuple(runner.problems),
        plan=plan,
        stage_seconds={k: round(v, 1) for k, v in stage_seconds.items()},
        passed_over=passed_over,
    )


def _earliest(*limits: float | None) -> float | None:
    found = [x for x in limits if x is not None]
    return min(found) if found else None


def _moving(
    deadline: Deadline, plan: Plan, started_wall: float, earlier: set[int], on_trial_end: TrialEndCallback | None,
    on_screen_end: Callable[[float, str], None] | None,
) -> TrialEndCallback:  # fmt: skip
    """A screen's trial-end callback: ``on_trial_end``, then the screen's end moved to where the finals of the
    leaders so far, at their measured speed, still fit after it (:func:`~search.tune.finals.screen_end`)."""

    def moved(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        if deadline.passed() or TrialRecord(trial).over_budget:
            return
        trials = study.get_trials(deepcopy=False)  # read once for the speed and the leaders
        end = started_wall + screen_end(
            _without_finals(trials), plan, measured=_screen_throughput(trials, earlier, plan)
        )
        if abs(end - deadline.at) >= 1.0:
            deadline.move_to(end)
            if on_screen_end is not None:
                planned = started_wall + plan.screen_end_s()
                why = "back to the plan's" if end >= planned else "the finals of its leaders need the time"
                on_screen_end(end, why)

    return moved


def _without_finals(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Screen trials not yet trained as finalists (a resumed study does not run a parent's finals twice)."""
    parents = {TrialRecord(t).parent for t in trials if TrialRecord(t).stage == "final"}
    return [t for t in trials if t.number not in parents]


def _screen_throughput(trials: list[FrozenTrial], earlier: set[int], plan: Plan) -> Throughput:
    """The throughput this run's screen trials (among ``trials``) showed (those that trained at least a second):
    images per second of each trial's whole training, evaluation included, with the other workers busy beside it."""
    samples = []
    for t in trials:
        rec = TrialRecord(t)
        if t.number not in earlier and rec.stage == "screen" and rec.wall_seconds >= 1.0:
            samples.append((rec.images_per_wall_second, rec.macs / 1e6))
    return measured_throughput(samples, plan.throughput)


def _save_plan(study: optuna.Study, plan: Plan | None) -> None:
    """Store the plan on the study (None clears an earlier run's); a worker on another machine writing its
    own at the same moment is a race the storage reports, not a reason to stop the search."""
    with contextlib.suppress(optuna.exceptions.StorageInternalError):
        study.set_user_attr(PLAN, plan.as_dict() if plan is not None else None)
