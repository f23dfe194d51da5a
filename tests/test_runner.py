"""The search end to end on tiny data: trials land in SQLite, get pruned, resume, survive Ctrl+C."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search import data
from search.errors import ConfigError
from search.train import MAX_SEED, DivergedError, EpochStats
from search.tune import objective, session
from search.tune.objective import Objective, ObjectiveSettings, trial_seed
from search.tune.runner import _sampler_seed, run_search
from search.tune.samplers import OneSamplerPerTrial
from search.tune.session import SearchOptions
from space import PRESETS
from tests.support import tiny_options

RECORDED = {"seed", "parameters", "macs", "flops", "device", "epochs_run", "train_seconds", "images_per_second"}


def _opts(data_dir: Path, tmp_path: Path, **kw: Any) -> SearchOptions:
    return tiny_options(data_dir, f"sqlite:///{tmp_path / 'search.db'}", **kw)


def _queue_lenet5(storage: str, n: int) -> None:
    """Queue ``n`` trials of a small known network on study "tiny", for tests about something other
    than the draws (at the MAC cap many random draws are skipped first, each costing a trial)."""
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    for _ in range(n):
        study.enqueue_trial(PRESETS["lenet5"])


def test_a_search_records_every_trial_and_a_second_run_resumes(tiny_data_dir: Path, tmp_path: Path) -> None:
    first = run_search(_opts(tiny_data_dir, tmp_path, trials=2))
    trained = [t for t in first.study.trials if not t.user_attrs.get("over_budget")]
    assert len(trained) == 2 and first.counts["complete"] == 2
    for t in trained:
        assert set(t.user_attrs) >= RECORDED, t.user_attrs
        reports = 2 if t.params["batch_size"] <= 100 else 1  # two reports an epoch, if it has two steps (200 images)
        assert t.user_attrs["epochs_run"] == 1 and t.intermediate_values.keys() == set(range(1, reports + 1))
        assert 0.0 <= t.value <= 1.0  # type: ignore[operator]
    before = {t.number: (t.params, t.value) for t in first.study.trials}

    # A study begun without the known-best preset stays without it when resumed with the default.
    second = run_search(_opts(tiny_data_dir, tmp_path, trials=1, known_best=True))
    trials = second.study.trials
    assert not any("preset" in t.user_attrs for t in trials)
    assert {t.number: (t.params, t.value) for t in trials if t.number in before} == before  # kept as they were
    assert sum(not t.user_attrs.get("over_budget") for t in trials) == 3  # --trials adds that many
    new_params = [t.params for t in trials if t.number not in before and not t.user_attrs.get("over_budget")]
    assert new_params and all(p not in [v[0] for v in before.values()] for p in new_params)


def test_over_budget_draws_are_skipped_and_not_counted(tiny_data_dir: Path, tmp_path: Path) -> None:
    report = run_search(_opts(tiny_data_dir, tmp_path, trials=1, max_mmacs=1.5))
    skipped = [t for t in report.study.trials if t.user_attrs.get("over_budget")]
    assert skipped and report.counts["skipped"] == len(skipped)
    reason = "over the 1.5M cap (--max-mmacs)"
    assert all(t.state == TrialState.PRUNED and reason in t.user_attrs["pruned_reason"] for t in skipped)
    assert report.counts["complete"] + report.counts["pruned"] + report.counts["fail"] == 1


def test_a_budget_nothing_fits_gives_up_instead_of_spinning(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "MAX_SKIPS_PER_TRIAL", 4)  # 20 by default, each a trial in SQLite
    report = run_search(_opts(tiny_data_dir, tmp_path, trials=2, max_mmacs=0.01))
    assert report.counts["skipped"] == 4 * 2 and report.best is None  # per trial asked for


def test_warm_start_queues_the_presets_first_under_the_same_cost_rule(tiny_data_dir: Path, tmp_path: Path) -> None:
    report = run_search(_opts(tiny_data_dir, tmp_path, trials=1, warm_start=True, max_mmacs=1.0))
    cnn3, cnn2, lenet5 = report.study.trials[:3]
    assert [t.user_attrs.get("preset") for t in (cnn3, cnn2, lenet5)] == ["cnn3", "cnn2", "lenet5"]
    # cnn3 and cnn2 are over the 1M-MAC cap: skipped like any sampled draw; LeNet-5 (0.4M) trains.
    assert all(t.user_attrs.get("over_budget") and t.state == TrialState.PRUNED for t in (cnn3, cnn2))
    assert lenet5.state == TrialState.COMPLETE and "over_budget" not in lenet5.user_attrs


class _PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def _objective(tiny_splits: data.Splits, **kw: Any) -> Objective:
    return Objective(splits=tiny_splits, settings=ObjectiveSettings(max_epochs=3, seed=0, **kw))


class _FirstIsRandom(OneSamplerPerTrial):
    """A sampler that says trial 0 was a random draw (the parameters are queued presets)."""

    def _choose(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        return self.random

    def explores(self, number: int) -> bool:
        return number == 0


def test_a_random_start_up_trial_is_measured_to_its_rung_then_stopped(tiny_splits: data.Splits) -> None:
    random = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=_FirstIsRandom(random, random))
    study.enqueue_trial(PRESETS["lenet5"])
    study.enqueue_trial(PRESETS["lenet5"])
    study.optimize(_objective(tiny_splits, explore_epochs=2.0), n_trials=2)
    explored, full = study.trials
    assert explored.state == TrialState.PRUNED and explored.user_attrs["epochs_run"] == 2
    assert explored.user_attrs["explore"] is True
    assert explored.user_attrs["pruned_reason"].startswith("random draw: measured to epoch 2")
    assert full.state == TrialState.COMPLETE and full.user_attrs["epochs_run"] == 3
    assert "explore" not in full.user_attrs


def test_the_objective_stops_a_trial_the_pruner_rejects(tiny_splits: data.Splits) -> None:
    study = optuna.create_study(direction="maximize", pruner=_PruneEverything())
    study.enqueue_trial(PRESETS["lenet5"])
    study.optimize(_objective(tiny_splits, evals_per_epoch=2), n_trials=1)
    [t] = study.trials
    assert t.state == TrialState.PRUNED
    assert 0 < t.user_attrs["epochs_run"] < 1 and list(t.intermediate_values) == [1]  # stopped mid-epoch
    assert t.user_attrs["pruned_reason"].startswith(f"pruned at epoch {t.user_attrs['epochs_run']:.1f}: val acc")
    assert t.user_attrs["reports_per_epoch"] == 2


def test_a_diverging_trial_is_pruned_with_its_reason(tiny_splits: data.Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    def diverge(*args: Any, **kwargs: Any) -> None:
        raise DivergedError("loss became non-finite at epoch 1, step 50")

    monkeypatch.setattr(objective, "train", diverge)
    study = optuna.create_study(direction="maximize")
    study.optimize(_objective(tiny_splits), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert study.trials[0].user_attrs["pruned_reason"] == "loss became non-finite at epoch 1, step 50"


def test_ctrl_c_fails_the_running_trial_and_the_next_run_resumes(tiny_data_dir: Path, tmp_path: Path) -> None:
    class InterruptAtFirstEpoch:
        def trial_started(self, number: int, params: dict[str, Any]) -> None:
            pass

        def step(self, done: int, total: int) -> None:
            pass

        def epoch_ended(self, number: int, stats: EpochStats) -> None:
            raise KeyboardInterrupt

    opts = _opts(tiny_data_dir, tmp_path, trials=2)
    _queue_lenet5(opts.storage, 3)
    with pytest.raises(KeyboardInterrupt):
        run_search(opts, observer=InterruptAtFirstEpoch())
    study = optuna.load_study(study_name="tiny", storage=opts.storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    resumed = run_search(opts)
    assert [t.state for t in resumed.study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def test_a_search_never_reads_the_test_set(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real = data.read_split

    def spy(data_dir: Path, split: str, **kw: Any) -> data.ImageSet:
        read.append(split)
        return real(data_dir, split, **kw)

    monkeypatch.setattr(data, "read_split", spy)
    opts = _opts(tiny_data_dir, tmp_path, trials=1)
    _queue_lenet5(opts.storage, 1)
    assert run_search(opts).counts["complete"] == 1
    assert read == ["train"]


def test_trial_seeds_are_derived_from_the_study_seed_and_number() -> None:
    assert trial_seed(0, 5) == trial_seed(0, 5)
    assert len({trial_seed(0, n) for n in range(100)}) == 100
    assert trial_seed(1, 5) != trial_seed(0, 5)


def test_a_resumed_studys_sampler_seed_stays_within_what_the_samplers_take() -> None:
    # Lane 0 moves its seed on by the trials the study has: the largest --seed wraps round instead of
    # overflowing numpy's legacy seeding (which Optuna's samplers use) once the study has trials.
    assert _sampler_seed(7, 3, 0) == 10
    assert _sampler_seed(MAX_SEED, 3, 0) == 2
    optuna.samplers.RandomSampler(seed=_sampler_seed(MAX_SEED, 3, 0))
    assert 0 <= _sampler_seed(MAX_SEED, 3, 1) <= MAX_SEED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trials": 0}, "--trials must be at least 1"),
        ({"max_epochs": 0}, "--max-epochs must be at least 1"),
        ({"timeout": -1.0}, "--timeout must be positive"),
        ({"train_subset": -5}, "--train-subset must be positive"),
        ({"sampler": "bohb"}, "unknown sampler 'bohb'"),
        ({"study": " "}, "--study must not be empty"),
        ({"seed": -1}, "--seed must be within 0..4294967295"),
    ],
)
def test_options_are_validated_before_anything_runs(
    tiny_data_dir: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_search(_opts(tiny_data_dir, tmp_path, **change))
    assert not (tmp_path / "search.db").exists()


def test_the_library_defaults_are_the_command_line_defaults() -> None:
    # fsearch run's defaults: the known-best preset starts a new study; --workers auto.
    opts = SearchOptions()
    assert opts.known_best is True and opts.workers is None


def test_a_search_freezes_what_survives_each_trial_and_unfreezes_when_it_ends(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    """The objective's collections before and after each trial scan only what the trial created: the rest of the
    heap is frozen before the first trial and after each one; the search leaves the collector unfrozen, unless
    its caller had frozen the heap before (then that stays)."""
    _queue_lenet5(f"sqlite:///{tmp_path / 'search.db'}", 3)
    gc.unfreeze()
    frozen: list[int] = []
    run_search(_opts(tiny_data_dir, tmp_path), on_trial_end=lambda study, trial: frozen.append(gc.get_freeze_count()))
    assert len(frozen) == 2 and min(frozen) > 1000  # torch, optuna and the data are out of the collector's sight
    assert gc.get_freeze_count() == 0
    gc.freeze()  # as the test suite does before each test
    before = gc.get_freeze_count()
    run_search(_opts(tiny_data_dir, tmp_path, trials=1))
    assert gc.get_freeze_count() >= before > 0
