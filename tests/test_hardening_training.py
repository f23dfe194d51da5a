"""Training faults: NaN/Inf loss, out of memory, an exception in one trial: that trial ends, the study goes on.

A pruned or failed trial records its reason, the search continues with the next trial, the study's
best value stays finite, and the accelerator's cache is emptied between trials once the previous
trial's tensors are really gone. CUDA is simulated on the CPU by test doubles.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from search.data import Splits
from search.runtime import Runtime
from search.train import DivergedError, EpochStats, TrainResult, train
from search.tune import objective
from search.tune.objective import Objective, ObjectiveSettings
from search.tune.runner import run_search
from space import PRESETS, build_model, preset_config
from tests.support import tiny_options

LENET = preset_config("lenet5", epochs=1)


class Broken(nn.Module):
    """A linear model whose loss is NaN (logits times NaN) or +inf (the true class can never win)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.flatten(1))
        if self.kind == "nan":
            return out * torch.tensor(float("nan"))
        # Every class but 0 gets -inf: images of the other nine classes have an infinite loss.
        return torch.cat([out[:, :1], torch.full_like(out[:, 1:], float("-inf"))], dim=1)


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_a_non_finite_loss_stops_training(kind: str, tiny_splits: Splits) -> None:
    with pytest.raises(DivergedError, match="loss became non-finite"):
        train(Broken(kind), LENET.train, tiny_splits, runtime=Runtime(), seed=0)


def test_a_diverging_trial_is_pruned_and_the_study_goes_on(
    tiny_splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def build(arch: Any) -> nn.Module:
        built.append("broken" if not built else "real")
        return Broken("nan") if len(built) == 1 else build_model(arch)

    monkeypatch.setattr(objective, "build_model", build)
    study = optuna.create_study(direction="maximize")
    for _ in range(3):
        study.enqueue_trial(PRESETS["lenet5"])
    study.optimize(Objective(splits=tiny_splits, settings=ObjectiveSettings(max_epochs=1, seed=0)), n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["pruned_reason"].startswith("loss became non-finite")
    assert math.isfinite(study.best_value)


def _stats(val_acc: float) -> EpochStats:
    return EpochStats(
        epoch=1, train_loss=0.5, train_acc=0.5, val_loss=0.5, val_acc=val_acc, lr=1e-3, seconds=0.1, images=100,
        report=1, epochs_done=1.0,
    )  # fmt: skip


def test_out_of_memory_prunes_the_trial_and_the_memory_is_released_before_the_next(
    tiny_splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    models: list[weakref.ref[nn.Module]] = []
    emptied: list[list[bool]] = []  # at each empty_cache call: which earlier trials' models are gone

    def fake_train(model: nn.Module, cfg: Any, splits: Splits, **kwargs: Any) -> TrainResult:
        models.append(weakref.ref(model))
        activations = torch.zeros(64, 1024)  # noqa: F841  (held by this frame, so by the exception)
        if len(models) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        kwargs["on_epoch_end"](_stats(0.5))
        return TrainResult(history=(_stats(0.5),))

    monkeypatch.setattr(objective, "train", fake_train)
    monkeypatch.setattr("search.runtime.describe", lambda device: "cuda:0 (simulated)")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append([ref() is None for ref in models]))
    settings = ObjectiveSettings(max_epochs=1, seed=0, runtime=Runtime(device=torch.device("cuda")))
    study = optuna.create_study(direction="maximize")
    for _ in range(3):
        study.enqueue_trial(PRESETS["lenet5"])
    study.optimize(Objective(splits=tiny_splits, settings=settings), n_trials=3, catch=(Exception,))

    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["pruned_reason"] == "out of memory on cuda"
    assert math.isfinite(study.best_value)
    # Trial 0 ends while its exception still holds the model (emptied[1]); by the start of trial 1 it is gone.
    assert emptied[:3] == [[], [False], [True]]
    assert all(emptied[-1])  # and so is every model by the end of the search


def test_an_exception_or_a_non_finite_result_fails_one_trial_and_the_search_goes_on(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[Any] = [0.6, ValueError("boom in the training loop"), float("inf"), float("nan"), 0.7]

    def fake_train(model: nn.Module, cfg: Any, splits: Splits, **kwargs: Any) -> TrainResult:
        outcome = results.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return TrainResult(history=(_stats(outcome),))

    monkeypatch.setattr(objective, "train", fake_train)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    queued = optuna.create_study(storage=storage, study_name="faults", direction="maximize")
    for _ in range(5):  # small known networks: the draws themselves are not what is tested here
        queued.enqueue_trial(PRESETS["lenet5"])
    opts = tiny_options(tiny_data_dir, storage, study="faults", trials=5)
    report = run_search(opts)
    trained = [t for t in report.study.trials if not t.user_attrs.get("over_budget")]
    assert [t.state for t in trained] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.FAIL,
                                          TrialState.COMPLETE]  # fmt: skip
    reasons = [t.user_attrs.get("fail_reason") for t in trained[1:4]]
    assert reasons == [
        "ValueError: boom in the training loop",
        "RuntimeError: training ended without a finite validation accuracy (inf)",
        "RuntimeError: training ended without a finite validation accuracy (nan)",
    ]
    assert report.study.best_value == 0.7 and report.best is not None and report.best.value == 0.7


def test_a_trial_enqueued_with_absurd_sizes_fails_before_allocating_and_the_search_goes_on(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the study database can enqueue parameters; out-of-range ones still pass Optuna."""
    monkeypatch.setattr(objective, "train", lambda *a, **k: TrainResult(history=(_stats(0.5),)))
    storage = f"sqlite:///{tmp_path / 's.db'}"
    hostile = optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    hostile.enqueue_trial(PRESETS["lenet5"] | {"b0_filters": 10**6, "dense0_units": 10**9})
    opts = tiny_options(tiny_data_dir, storage, study="shared")
    with pytest.warns(UserWarning, match="out of range"):
        report = run_search(opts)
    first = report.study.trials[0]
    assert first.state == TrialState.FAIL and first.params["b0_filters"] == 10**6
    assert first.user_attrs["fail_reason"] == "ArchitectureError: block 0: filters/convs out of range (1000000, 1)"
    assert report.counts["complete"] == 1 and math.isfinite(report.study.best_value)
