"""The trial record: what the objective writes is what every reader reads, under one set of names."""

from __future__ import annotations

import optuna

from search.store import record
from search.store.record import TrialRecord, best_trial, exports, trained, trial_record


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 0.1}, user_attrs={record.PRESET: "fsearch-w1"})
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    record.set_attr(trial, record.REPORTS_PER_EPOCH, 2)
    record.set_attr(trial, record.EPOCHS_RUN, 1.5)
    for step, value in ((1, 0.5), (2, 0.6), (3, 0.7)):
        trial.report(value, step)
    study.tell(trial, 0.7)
    skipped = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    record.set_attr(skipped, record.OVER_BUDGET, True)
    record.set_attr(skipped, record.PRUNED_REASON, "over budget")
    study.tell(skipped, state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.65)
    return study


def test_readers_see_what_the_objective_wrote() -> None:
    study = _study()
    queued, skipped, sampled = study.trials
    rec = TrialRecord(queued)
    assert rec.origin == "preset fsearch-w1" and TrialRecord(sampled).origin == "sampled"
    assert rec.epochs_run == 1.5 and rec.reports_per_epoch == 2
    assert rec.curve() == {0.5: 0.5, 1.0: 0.6, 1.5: 0.7}  # step k is epoch k / reports_per_epoch
    assert TrialRecord(skipped).over_budget and TrialRecord(skipped).reason == "over budget"
    assert [t.number for t in trained(study.trials)] == [queued.number, sampled.number]
    assert best_trial(study.trials) is not None and best_trial(study.trials).number == queued.number  # type: ignore[union-attr]
    assert trial_record(queued)["origin"] == "preset fsearch-w1"


def test_queued_params_are_read_before_the_trial_runs() -> None:
    """What enqueue_finals re-queues and the sampler tells from a draw: a queued trial's parameters, while it waits."""
    study = _study()
    study.enqueue_trial({"x": 0.3})
    (waiting,) = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert record.queued_params(waiting) == {"x": 0.3} and waiting.params == {}  # nothing else has them yet
    queued, _, sampled = study.trials[:3]
    assert record.queued_params(queued) == {"x": 0.1} and record.queued_params(sampled) is None


def test_exports_are_read_newest_first_and_other_attributes_ignored() -> None:
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(f"{record.EXPORT_PREFIX}3", {"test_accuracy": 0.9, "exported_at": "2026-01-01T00:00:00"})
    study.set_user_attr(f"{record.EXPORT_PREFIX}5", {"test_accuracy": 0.93, "exported_at": "2026-02-01T00:00:00"})
    study.set_user_attr(record.SPACE_VERSION_ATTR, 9)
    assert [number for number, _ in exports(study)] == [5, 3]
