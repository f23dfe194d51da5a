"""The staged search on tiny data: a time plan, a screen, finalists trained again for longer, and an
export that picks by the longest fidelity and follows the plan. The machine's speed is faked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search import plan as plan_module
from search.model.best import export_best, pick_trial, planned_epochs
from search.model.retrain import RetrainOptions, retrain
from search.plan import TAIL_S, Plan
from search.runtime import Runtime
from search.speed import ExportTiming, export_seconds_per_image, export_timing
from search.store import record
from search.store.notes import study_note
from search.store.record import TrialRecord
from search.tune import finals as finals_module
from search.tune.clock import Deadline
from search.tune.finals import candidates
from search.tune.runner import run_search
from search.tune.session import SearchOptions
from space import PRESETS, preset_config
from tests.support import queue_trials, staged_options


def test_finalists_are_trained_again_with_their_parameters_at_the_longer_fidelity(
    tiny_data_dir: Path, tmp_path: Path, fast_machine: None
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path)
    # Three small, different networks (queued: random draws at this cap would mostly be skipped).
    lenet_sgd = PRESETS["lenet5"] | {"optimizer": "sgd", "sgd_lr": 0.05, "weight_decay": 1e-4, "batch_size": 128}
    lenet_flip = PRESETS["lenet5"] | {"flip": True, "crop_pad": 1, "activation": "gelu"}
    queue_trials(opts.storage, [PRESETS["lenet5"], lenet_sgd, lenet_flip])
    plans: list[Plan] = []
    report = run_search(opts, on_plan=plans.append)
    # Planned, re-planned after the screen, and once more when the search ended (shown when it reads otherwise):
    # the export gets what the budget has left then.
    assert report.plan is not None and [p.finalists for p in plans][:2] == [2, 2] and len(plans) in (2, 3)
    assert report.plan.export_s == pytest.approx(opts.budget_minutes * 60 - TAIL_S - report.wall_seconds, abs=1.0)
    assert report.study.user_attrs[record.PLAN] == report.plan.as_dict()
    trials = report.study.trials
    screen = [t for t in trials if TrialRecord(t).stage == "screen"]
    finals = [t for t in trials if TrialRecord(t).stage == "final"]
    assert len(screen) == 3 and len(finals) == 2 and report.counts["finals"] == 2
    for final in finals:
        parent = trials[TrialRecord(final).parent]  # type: ignore[index]
        assert final.params == parent.params and final.state == TrialState.COMPLETE
        assert TrialRecord(final).max_epochs == report.plan.final_epochs == 3
        assert TrialRecord(final).epochs_run == 3 and TrialRecord(parent).epochs_run == 1
        # The screen validates twice an epoch for its pruner; an unpruned finalist once an epoch.
        assert TrialRecord(parent).reports_per_epoch == 2
        assert TrialRecord(final).reports_per_epoch == 1 and len(final.intermediate_values) == 3
    assert report.best is not None and TrialRecord(report.best).stage == "final"
    assert report.study.user_attrs[record.PLAN]["finalists"] == 2


def test_a_leader_too_slow_for_the_finals_is_passed_over_and_the_run_says_so(
    tiny_data_dir: Path, tmp_path: Path, fast_machine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path)
    lenet_sgd = PRESETS["lenet5"] | {"optimizer": "sgd", "sgd_lr": 0.05, "weight_decay": 1e-4, "batch_size": 128}
    lenet_flip = PRESETS["lenet5"] | {"flip": True, "crop_pad": 1, "activation": "gelu"}
    queue_trials(opts.storage, [PRESETS["lenet5"], lenet_sgd, lenet_flip])
    leader: list[int] = []  # the screen's best, as the finals rank them; measured as far too slow to train again
    real_choose = finals_module.choose_affordable

    def spy(trials: list[Any], k: int, **kw: Any) -> Any:
        leader.append(candidates(trials)[0].number)
        return real_choose(trials, k, **kw)

    monkeypatch.setattr(finals_module, "choose_affordable", spy)
    monkeypatch.setattr(TrialRecord, "effective_mmacs", lambda rec, _: 1e9 if rec.trial.number in leader else 1.0)
    report = run_search(opts)
    finals = [t for t in report.study.trials if TrialRecord(t).stage == "final"]
    assert leader and report.passed_over == (leader[0],) and len(finals) == 2
    assert leader[0] not in {TrialRecord(t).parent for t in finals}
    assert report.study.user_attrs[record.FINALS_PASSED_OVER] == [leader[0]]
    assert f"passed over trial {leader[0]}" in study_note(report.study)


def test_without_finals_the_replan_at_the_screens_end_is_not_shown(
    tiny_data_dir: Path, tmp_path: Path, fast_machine: None
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path, finalists=0)
    queue_trials(opts.storage, [PRESETS["lenet5"]])
    plans: list[Plan] = []
    report = run_search(opts, on_plan=plans.append)
    # The first plan, then the plan after the search (what the export gets); the replan at the screen's end says
    # nothing more when no finals follow, so it is saved but not shown.
    assert plans and not plans[0].searched and all(p.searched for p in plans[1:])
    assert report.plan is not None and report.plan.searched and report.plan.finalists == 0


def test_export_best_takes_the_best_finalist_and_the_plans_epochs(
    tiny_data_dir: Path, tmp_path: Path, fast_machine: None
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path, finalists=1)
    queue_trials(opts.storage, [PRESETS["lenet5"]])
    run_search(opts)
    study = optuna.load_study(study_name="staged", storage=opts.storage)
    plan = Plan.from_dict(study.user_attrs[record.PLAN])
    chosen = pick_trial(study, None)
    assert TrialRecord(chosen).stage == "final"
    # The export's share of the budget: 3 epochs on 60,000 images of LeNet-5 at the size its speed implies.
    rec = TrialRecord(chosen)
    size = plan.throughput.effective_mmacs(rec.images_per_wall_second, rec.macs / 1e6)
    assert size > 0 and rec.images_per_wall_second > 0
    study.set_user_attr(record.PLAN, plan.as_dict() | {"export_s": 3 * 60_000 * size * plan.throughput.export})
    schedule = planned_epochs(study, chosen)
    assert schedule.rule["plan_export_epochs"] == 3 and schedule.epochs == 3  # the curve's rule alone asks for more
    # export-best times the trial itself: what the timing says decides (for a machine TIMING_MARGIN faster), not the
    # estimate from the search.
    export_s = study.user_attrs[record.PLAN]["export_s"]
    seconds = {True: (export_s / 3.0 / 60_000,), False: (export_s / 3.4 / 60_000,)}  # by channels_last
    timed = planned_epochs(study, chosen, timing=lambda: ExportTiming(seconds))
    assert timed.epochs == 4  # 3.4 epochs fit as timed, 4.1 on a machine TIMING_MARGIN (1.2) faster
    assert timed.rule["export_epoch_seconds_timed"] == pytest.approx(export_s / 3.4, abs=0.1)
    assert timed.time_limit_s == export_s  # the training keeps to the plan's share
    # ... and it trains in the memory format that was timed faster, which the rule records with both timings.
    assert timed.channels_last is False and timed.rule["memory_format"] == "contiguous"
    assert timed.rule["epoch_seconds_by_format"]["channels_last"] == pytest.approx(export_s / 3.0, abs=0.1)
    assert timed.rule["epoch_seconds_timings"]["contiguous"] == [pytest.approx(export_s / 3.4, abs=0.1)]
    assert schedule.channels_last is None  # not timed: the runtime's default
    fast = planned_epochs(study, chosen, timing=lambda: ExportTiming({True: (export_s / 1000 / 60_000,)})).rule
    assert fast["plan_export_epochs"] == plan_module.MAX_EXPORT_EPOCHS  # at most 45, whatever the time affords
    # export-best trains within the plan's time for the export; epochs given by hand lift that limit.
    study.set_user_attr(record.PLAN, plan.as_dict() | {"export_s": 2.0})
    out = RetrainOptions(out=tmp_path / "best", data_dir=tiny_data_dir, device="cpu", verify_data=False)
    report = export_best(study="staged", storage=opts.storage, opts=out)
    assert report.metrics["time_limit_s"] == 2.0 == report.provenance["epochs_rule"]["plan_export_seconds"]
    # The export trained in the memory format its timing chose, of the two it timed on the CPU.
    rule = report.provenance["epochs_rule"]
    assert report.metrics["memory_format"] == rule["memory_format"]
    assert set(rule["epoch_seconds_by_format"]) == {"channels_last", "contiguous"}
    # The plan's time counts from export-best's start: its timing and the data loading come out of the training's.
    assert report.metrics["train_time_limit_s"] < 2.0
    assert export_best(study="staged", storage=opts.storage, opts=out, epochs=1).metrics["time_limit_s"] is None


def test_an_export_epoch_is_timed_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from search import speed

    monkeypatch.setattr(speed, "TIMED_IMAGES", 256)  # enough to order two networks 50x apart in MACs
    small, large = (export_seconds_per_image(preset_config(p), Runtime()) for p in ("lenet5", "fsearch-w1"))
    assert 0 < small < large  # LeNet-5 has 0.4M MACs, fsearch-w1 19.1M


def test_the_export_trains_in_the_memory_format_timed_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    from search import speed

    timed: list[tuple[str, bool | None]] = []

    def fake(cfg: Any, runtime: Runtime) -> float:
        timed.append((runtime.device.type, runtime.channels_last))
        return {True: 2e-3, False: 1e-3, None: 5e-3}[runtime.channels_last]

    monkeypatch.setattr(speed, "export_seconds_per_image", fake)
    cfg = preset_config("lenet5")
    on_cpu = export_timing(cfg, Runtime(channels_last=True))  # both formats, whatever the runtime asks
    assert timed == [("cpu", True), ("cpu", False)]  # both formats, on the CPU
    assert on_cpu == ExportTiming({True: (2e-3,), False: (1e-3,)})
    assert (on_cpu.channels_last, on_cpu.memory_format, on_cpu.seconds_per_image) == (False, "contiguous", 1e-3)
    assert on_cpu.by_format == {"channels_last": 2e-3, "contiguous": 1e-3}
    timed.clear()
    twice = export_timing(cfg, Runtime(), rounds=2)
    assert timed == [("cpu", True), ("cpu", False), ("cpu", False), ("cpu", True)]  # twice each, ABBA
    assert twice.timings_by_format == {"channels_last": (2e-3, 2e-3), "contiguous": (1e-3, 1e-3)}
    assert ExportTiming({True: (1e-3,), False: (1e-3,)}).channels_last  # a tie keeps the first timed
    timed.clear()
    on_cuda = export_timing(cfg, Runtime(device=torch.device("cuda")))  # its default alone (nothing runs here)
    assert timed == [("cuda", True)] and on_cuda.channels_last and on_cuda.by_format == {"channels_last": 2e-3}
    timed.clear()
    on_mps = export_timing(cfg, Runtime(device=torch.device("mps"), channels_last=True))  # the format asked for
    assert timed == [("mps", True)] and on_mps.channels_last
    with pytest.raises(ValueError, match="rounds"):
        export_timing(cfg, Runtime(), rounds=0)


def test_a_drift_in_the_machines_speed_does_not_choose_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that speeds up while it is timed (a VM's neighbours going quiet) favours whatever is timed last;
    the rounds' order, channels_last, contiguous, contiguous, channels_last, gives both formats the same mean
    time on the clock, so a steady drift changes both means alike."""
    from search import speed

    calls: list[bool | None] = []

    def speeding_up(cfg: Any, runtime: Runtime) -> float:  # channels_last 5% faster; each timing 0.2 s faster
        calls.append(runtime.channels_last)
        return {True: 1.0, False: 1.05}[bool(runtime.channels_last)] - 0.2 * (len(calls) - 1)

    monkeypatch.setattr(speed, "export_seconds_per_image", speeding_up)
    cfg = preset_config("lenet5")
    assert not export_timing(cfg, Runtime(), rounds=1).channels_last  # one round each: the later one looks faster
    calls.clear()
    two = export_timing(cfg, Runtime(), rounds=2)
    assert two.channels_last and two.seconds == pytest.approx({True: 0.7, False: 0.75})
    calls.clear()
    assert export_timing(cfg, Runtime(), rounds=4).channels_last  # ABBA ABBA


def test_retraining_trains_in_the_memory_format_it_is_given(tiny_data_dir: Path, tmp_path: Path) -> None:
    cfg = preset_config("lenet5", epochs=1)
    for channels_last, name in ((False, "contiguous"), (True, "channels_last")):
        out = RetrainOptions(out=tmp_path / name, data_dir=tiny_data_dir, device="cpu", verify_data=False,
                             channels_last=channels_last)  # fmt: skip
        assert retrain(cfg, out, provenance={}).metrics["memory_format"] == name


def test_a_finished_screen_trial_is_not_a_finalist_twice(
    tiny_data_dir: Path, tmp_path: Path, fast_machine: None
) -> None:
    opts = staged_options(tiny_data_dir, tmp_path, finalists=1, trials=1)
    queue_trials(opts.storage, [PRESETS["lenet5"]])
    run_search(opts)
    queue_trials(opts.storage, [PRESETS["lenet5"] | {"flip": True}])
    second = run_search(opts)  # resumed: trial 0 has had its final; the new screen trial is the finalist
    parents = [TrialRecord(t).parent for t in second.study.trials if TrialRecord(t).stage == "final"]
    assert parents.count(0) == 1


def test_a_trial_still_training_at_the_deadline_completes_with_what_it_measured(tiny_splits: Any) -> None:
    import time

    from search.tune.objective import Objective, ObjectiveSettings

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(PRESETS["lenet5"])
    settings = ObjectiveSettings(max_epochs=3, seed=0, deadline=Deadline(time.time() - 1))
    study.optimize(Objective(splits=tiny_splits, settings=settings), n_trials=1)
    [t] = study.trials
    assert t.state == TrialState.COMPLETE and t.user_attrs["epochs_run"] == 1
    assert t.user_attrs[record.CUT_SHORT] == "stopped at epoch 1: the screen's time was up"
    assert t.value == t.intermediate_values[1]


def test_calibration_times_a_worker_with_its_evaluation_and_the_export_without(
    tiny_splits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's run validates as a screen trial does (the same share of validation images per training
    image, ``evals_per_epoch`` times); the export's run has no validation, as export-best has none."""
    from search import speed
    from search.tune import calibrate as calibrate_module
    from space import preset_config

    calls: list[tuple[int, int, int]] = []  # (training images, validation images, evals per epoch)
    real_train = speed.train

    def spy(model: Any, cfg: Any, splits: Any, **kw: Any) -> Any:
        calls.append((len(splits.train), len(splits.val) if splits.val else 0, kw["evals_per_epoch"]))
        return real_train(model, cfg, splits, **kw)

    monkeypatch.setattr(speed, "train", spy)
    monkeypatch.setattr(speed, "TIMED_IMAGES", 64)
    small = preset_config("lenet5", epochs=1)
    got = calibrate_module.calibrate(small, tiny_splits, runtime=SearchOptions().runtime(torch.device("cpu")),
                                     worker_threads=1, evals_per_epoch=2)  # fmt: skip
    assert got.worker > 0 and got.export > 0
    share = len(tiny_splits.val) / len(tiny_splits.train)
    assert [c[1] for c in calls[:2]] == [0, 0]  # the export: warm-up and timed run, no validation
    assert [c[2] for c in calls[2:]] == [2, 2]
    assert [c[1] for c in calls[2:]] == [max(1, round(c[0] * share)) for c in calls[2:]]
