"""The screen's end moves earlier while the finals of its leaders need more time than planned
(search.tune.finals.screen_end, search.tune.clock, the runner's wiring); a faked throughput, hand-made trials."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.plan import START_S, Plan, least_screen_s, make_plan, replan
from search.store import record
from search.store.record import TrialRecord
from search.throughput import Throughput
from search.tune import runner
from search.tune.clock import Deadline
from search.tune.finals import screen_end
from search.tune.runner import run_search
from space import PRESETS
from tests.spawned import read_deadline_when_told
from tests.support import queue_trials, staged_options

EXPORT_C = 1 / (1550 * 19.1)  # the 2-core CPU's order of magnitude (as in test_plan.py)
CPU = Throughput(worker=EXPORT_C * 1.7, export=EXPORT_C / 1.2)
SPACE = {"a": CategoricalDistribution([1, 2, 3]), "b": CategoricalDistribution([1, 2, 3]),
         "c": CategoricalDistribution([1, 2, 3]), "d": CategoricalDistribution([1, 2, 3]),
         "lr": FloatDistribution(1e-4, 1.0, log=True)}  # fmt: skip


def _plan() -> Plan:
    return make_plan(
        budget_s=3600, workers=2, train_images=50_000, reference_mmacs=19.1, throughput=CPU, screen_epochs=5
    )


def _screen_trial(number: int, value: float, *, costs: float, measured: Throughput) -> optuna.trial.FrozenTrial:
    """A completed screen trial whose measured speed (two workers side by side) is that of a network of ``costs``
    million MACs at ``measured``."""
    ips = 1.0 / (costs * measured.worker)
    params = {k: (number % 3) + 1 for k in "abcd"} | {"lr": 10.0 ** -(number % 4 + 1)}
    t = create_trial(
        state=TrialState.COMPLETE, value=value, params=params, distributions=SPACE,
        intermediate_values={5: value}, user_attrs={
            record.MAX_EPOCHS: 5, record.MACS: 10e6, record.IMAGES_PER_SECOND: ips, record.TRAIN_SECONDS: 100.0,
            record.WALL_SECONDS: 100.0,
        },
    )  # fmt: skip
    t.number = number
    return t


def _fits(plan: Plan, end: float, trials: list[optuna.trial.FrozenTrial], measured: Throughput) -> bool:
    """Whether the finals of ``trials`` fit after a screen that ends at ``end`` and runs an epoch of the slowest
    of them over."""
    late = max(plan.train_images / TrialRecord(t).images_per_wall_second for t in trials)
    mmacs = [TrialRecord(t).effective_mmacs(measured) for t in trials]
    return replan(plan, elapsed_s=end + late, throughput=measured, finals_mmacs=mmacs).finalists == plan.finalists


def test_finals_as_costly_as_planned_leave_the_screen_its_planned_end() -> None:
    plan = _plan()
    assert plan.finalists == 2 and plan.final_epochs == 15
    trials = [_screen_trial(i, 0.9 - i / 100, costs=plan.reference_mmacs, measured=plan.throughput) for i in range(3)]
    assert screen_end(trials, plan, measured=plan.throughput) == START_S + plan.screen_s
    assert screen_end(trials[:1], plan, measured=plan.throughput) == START_S + plan.screen_s  # one: no finals yet


def test_costlier_leaders_take_their_finals_time_from_the_screen_to_the_second() -> None:
    plan = _plan()
    measured = plan.throughput
    trials = [_screen_trial(i, 0.9 - i / 100, costs=1.6 * plan.reference_mmacs, measured=measured) for i in range(3)]
    end = screen_end(trials, plan, measured=measured)
    planned = START_S + plan.screen_s
    assert not _fits(plan, planned, trials[:2], measured)  # at the planned end there would be no finals
    assert START_S + least_screen_s(plan.budget_s) < end < planned - 60
    assert _fits(plan, end, trials[:2], measured) and not _fits(plan, end + 2.0, trials[:2], measured)
    # Leaders a little costlier than planned, whose finals still fit (with fewer epochs), move nothing.
    cheaper = [_screen_trial(i, 0.9 - i / 100, costs=1.4 * plan.reference_mmacs, measured=measured) for i in range(3)]
    assert screen_end(cheaper, plan, measured=measured) == planned


def test_a_leader_too_costly_even_for_the_shortest_screen_leaves_it_to_the_finals_choice() -> None:
    plan = _plan()
    trials = [_screen_trial(i, 0.9 - i / 100, costs=20 * plan.reference_mmacs, measured=CPU) for i in range(3)]
    assert screen_end(trials, plan, measured=CPU) == START_S + plan.screen_s


def test_a_worker_process_sees_the_deadline_its_parent_moves() -> None:
    ctx = multiprocessing.get_context("spawn")
    deadline, told, out = Deadline(1000.0), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=read_deadline_when_told, args=(deadline, told, out))
    proc.start()
    deadline.move_to(500.0)  # after the worker started
    told.set()
    assert out.get(timeout=60) == 500.0
    proc.join(30)
    assert not Deadline(time.time() + 60).passed() and Deadline(time.time() - 1).passed()


@pytest.mark.usefixtures("fast_machine")
def test_a_screen_whose_end_moves_to_now_stops_and_the_finals_still_run(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path, trials=3)
    lenet_flip = PRESETS["lenet5"] | {"flip": True, "crop_pad": 1, "activation": "gelu"}
    queue_trials(opts.storage, [PRESETS["lenet5"], lenet_flip, PRESETS["lenet5"] | {"batch_size": 128}])
    seen: list[int] = []

    def now_after_two(trials: list[optuna.trial.FrozenTrial], plan: Plan, *, measured: Throughput) -> float:
        done = len([t for t in trials if t.state == TrialState.COMPLETE])
        seen.append(done)  # the screen's trials so far, each time one ends
        return (time.time() - started - 1.0) if done >= 2 else START_S + plan.screen_s

    monkeypatch.setattr(runner, "screen_end", now_after_two)
    moves: list[tuple[float, str]] = []
    started = time.time()
    report = run_search(opts, on_screen_end=lambda end, why: moves.append((end, why)))
    screen = [t for t in report.study.trials if TrialRecord(t).stage == "screen" and t.state == TrialState.COMPLETE]
    finals = [t for t in report.study.trials if TrialRecord(t).stage == "final"]
    assert seen == [1, 2] and len(screen) == 2  # no third screen trial after the end moved to now
    assert len(moves) == 1 and moves[0][0] <= time.time() and "finals" in moves[0][1]
    assert len(finals) == 2 and all(t.state == TrialState.COMPLETE for t in finals)
    # The preset the screen had no time for was not trained as a finalist: it waits for the next run's screen.
    unstarted = [t for t in report.study.trials if t.state == TrialState.FAIL]
    assert len(unstarted) == 1 and "queued again" in TrialRecord(unstarted[0]).reason
    waiting = report.study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"]["batch_size"] == 128
    assert waiting[0].number > max(t.number for t in finals)
