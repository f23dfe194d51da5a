"""The training loop: learns, reports every epoch, stops on divergence, reproducible, augments on the batch."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from search.augment import normalize, prepare_batch, random_crop, random_erase, random_flip
from search.data import Splits
from search.runtime import Runtime
from search.train import DivergedError, EpochStats, evaluate, train
from space import Architecture, Augment, ConvBlock, TrainConfig, build_model

CPU = Runtime(device=torch.device("cpu"))
SMALL = Architecture(blocks=(ConvBlock(8), ConvBlock(16)), dense=(32,), batch_norm=True)


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "epochs": 3}
    return TrainConfig(**(base | kw))  # type: ignore[arg-type]


def test_train_learns_the_tiny_task_and_reports_each_epoch(tiny_splits: Splits) -> None:
    seen: list[EpochStats] = []
    result = train(build_model(SMALL), _cfg(), tiny_splits, runtime=CPU, seed=0, on_epoch_end=seen.append)
    assert [s.epoch for s in result.history] == [1, 2, 3] and seen == list(result.history)
    assert result.epochs_run == 3
    assert result.best is not None and result.best.val_acc is not None
    assert result.best.val_acc >= 0.9  # the bar's row gives the class away
    assert all(s.images == (200 // 32) * 32 and s.seconds > 0 for s in result.history)
    assert result.images_per_second > 0


def test_evaluating_twice_per_epoch_reports_half_epochs(tiny_splits: Splits) -> None:
    result = train(build_model(SMALL), _cfg(epochs=2), tiny_splits, runtime=CPU, seed=0, evals_per_epoch=2)
    assert [s.epochs_done for s in result.history] == [0.5, 1.0, 1.5, 2.0]
    assert [s.report for s in result.history] == [1, 2, 3, 4]
    assert [s.epoch for s in result.history] == [1, 1, 2, 2]
    assert sum(s.images for s in result.history) == 2 * (200 // 32) * 32  # every step counted once
    assert result.epochs_run == 2
    with pytest.raises(ValueError, match="evals_per_epoch"):
        train(build_model(SMALL), _cfg(), tiny_splits, runtime=CPU, seed=0, evals_per_epoch=0)


def test_same_seed_same_run(tiny_splits: Splits) -> None:
    cfg = _cfg(epochs=1, augment=Augment(crop_pad=2, flip=True, erasing=0.3), schedule="onecycle")
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the model's initialisation is the caller's; train() seeds the rest
        runs.append(train(build_model(SMALL), cfg, tiny_splits, runtime=CPU, seed=7).history[0])
    assert runs[0].train_loss == runs[1].train_loss and runs[0].val_acc == runs[1].val_acc


def test_an_exception_from_the_callback_stops_training(tiny_splits: Splits) -> None:
    class Stop(Exception):
        pass

    def stop_after_first(stats: EpochStats) -> None:
        raise Stop

    with pytest.raises(Stop):
        train(build_model(SMALL), _cfg(), tiny_splits, runtime=CPU, seed=0, on_epoch_end=stop_after_first)


def test_divergence_raises(tiny_splits: Splits) -> None:
    cfg = _cfg(optimizer="sgd", lr=1e12, epochs=2)
    arch = Architecture(blocks=(ConvBlock(8),), dense=())
    with pytest.raises(DivergedError, match="non-finite"):
        train(build_model(arch), cfg, tiny_splits, runtime=CPU, seed=0)


class _Clock:
    """A stand-in for the ``time`` module of search.optim: every reading is ``tick`` seconds after the last."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_a_run_that_keeps_its_time_limit_is_the_run_without_one(tiny_splits: Splits) -> None:
    cfg = _cfg(epochs=2, schedule="cosine")
    runs = []
    for limit in (None, 1e6):
        torch.manual_seed(0)
        runs.append(train(build_model(SMALL), cfg, tiny_splits, runtime=CPU, seed=0, time_limit_s=limit))
    assert [(s.train_loss, s.val_acc, s.lr) for s in runs[0].history] == [
        (s.train_loss, s.val_acc, s.lr) for s in runs[1].history
    ]
    assert not runs[0].time_limited and not runs[1].time_limited and runs[1].epochs_run == 2
    # Each evaluation says what the limit leaves, for a display to say where it ends; nothing without one.
    assert [s.time_left_s for s in runs[0].history] == [None, None]
    left = [s.time_left_s for s in runs[1].history]
    assert all(x is not None and 0 < x < 1e6 for x in left) and left[0] > left[1]  # type: ignore[operator]


def test_a_run_behind_its_time_limit_anneals_sooner_and_ends_at_it(
    tiny_splits: Splits, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 epochs of 12 steps; the schedule reads the clock once a step and it moves 0.1 s a reading, so a
    # 1-second limit is used up after 10 steps, within the first epoch.
    monkeypatch.setattr("search.optim.time", _Clock(0.1))
    cfg = _cfg(epochs=3, batch_size=16, schedule="cosine", lr=1e-3)
    result = train(build_model(SMALL), cfg, tiny_splits, runtime=CPU, seed=0, evals_per_epoch=12, time_limit_s=1.0)
    assert result.time_limited and 0 < result.epochs_run < 1
    rates = [s.lr / cfg.lr for s in result.history]  # the rate of each step (one evaluation a step)
    assert rates[0] == pytest.approx(1.0) and all(a > b for a, b in pairwise(rates))
    assert rates[-1] < 0.1  # the schedule ran on the clock: annealed by the limit, not cut off at its top
    assert result.history[-1].time_left_s == 0.0  # the limit was used up: nothing left at the last evaluation
    with pytest.raises(ValueError, match="time_limit_s"):
        train(build_model(SMALL), cfg, tiny_splits, runtime=CPU, seed=0, time_limit_s=0)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_every_optimizer_and_schedule_runs(tiny_splits: Splits, optimizer: str, schedule: str) -> None:
    lr = 0.05 if optimizer == "sgd" else 1e-3
    # 200 images in batches of 16: 12 steps, each followed by an evaluation that reports the learning rate.
    cfg = _cfg(
        optimizer=optimizer, lr=lr, schedule=schedule, epochs=1, batch_size=16, weight_decay=1e-4, label_smoothing=0.1
    )
    result = train(build_model(SMALL), cfg, tiny_splits, runtime=CPU, seed=0, evals_per_epoch=12)
    assert len(result.history) == 12
    assert all(math.isfinite(s.train_loss) and s.train_loss > 0 for s in result.history)
    # The rate each step trained with, as a fraction of the configured one.
    rates = [s.lr / lr for s in result.history]
    if schedule == "constant":
        assert rates == pytest.approx([1.0] * 12)
    elif schedule == "cosine":  # from lr at the first step towards 0 after the last, falling all the way
        assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 11 / 12)))
        assert all(a > b for a, b in pairwise(rates))
    else:  # onecycle: warms up to lr in the first quarter, then anneals to far below it
        peak = rates.index(max(rates))
        assert 0 < peak < 6 and rates[peak] == pytest.approx(1.0)
        assert rates[0] < 0.6 and all(a < b for a, b in pairwise(rates[: peak + 1]))
        low = rates.index(min(rates))
        assert low > peak and rates[low] < 0.01 and all(a > b for a, b in pairwise(rates[peak : low + 1]))


def test_random_crop_shifts_within_the_padding() -> None:
    x = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 14, 14] = 255
    out = random_crop(x, 2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    rows, cols = (out[:, 0] == 255).nonzero()[:, 1], (out[:, 0] == 255).nonzero()[:, 2]
    assert int((out == 255).sum()) == 64  # every pixel moved, none lost (shift 2 < distance to the edge)
    assert rows.min() >= 12 and rows.max() <= 16 and cols.min() >= 12 and cols.max() <= 16
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 1


def test_random_flip_mirrors_about_half() -> None:
    x = torch.arange(28, dtype=torch.uint8).expand(200, 1, 28, 28)
    out = random_flip(x)
    flipped = (out[:, 0, 0, 0] == 27).sum().item()
    assert 60 < flipped < 140
    assert all(torch.equal(o, x[0]) or torch.equal(o, x[0].flip(-1)) for o in out)


def test_random_erase_zeroes_rectangles_with_probability_p() -> None:
    x = torch.ones(400, 1, 28, 28)
    out = random_erase(x, 0.5)
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert 0.35 < erased < 0.65
    assert (random_erase(x, 0.0) == x).all()


def test_prepare_batch_normalises_without_augmenting_for_evaluation() -> None:
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    out = prepare_batch(x, None, 0.3, 0.35)
    torch.testing.assert_close(out, (x.float() / 255 - 0.3) / 0.35)
    torch.testing.assert_close(normalize(x, 0.3, 0.35), out)


def test_autocast_follows_the_device_and_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast trains on CUDA and on a CPU that has bf16 in hardware; never on MPS or when turned off;
    evaluation on the CPU stays fp32 (as predict and the ONNX graph compute)."""
    for native in (True, False):
        monkeypatch.setattr("search.runtime.cpu_has_native_bf16", lambda native=native: native)
        cpu = Runtime(device=torch.device("cpu"))
        assert cpu.use_amp is native and not cpu.eval_amp and cpu.amp_dtype == torch.bfloat16
        assert Runtime(device=torch.device("cpu"), cpu_eval_amp=True).eval_amp is native  # the search's validation
        assert not Runtime(device=torch.device("cpu"), amp=False, cpu_eval_amp=True).eval_amp
        assert ("bf16 autocast" in cpu.describe()) is native
        assert not Runtime(device=torch.device("cpu"), amp=False).use_amp
        assert Runtime(device=torch.device("cpu"), amp=True).use_amp
        assert (
            not Runtime(device=torch.device("mps")).use_amp
            and not Runtime(device=torch.device("mps"), amp=True).use_amp
        )
    assert Runtime(device=torch.device("cuda")).use_amp and Runtime(device=torch.device("cuda")).eval_amp


@pytest.mark.parametrize("amp", [True, False])
def test_training_learns_with_and_without_bf16_autocast(tiny_splits: Splits, amp: bool) -> None:
    runtime = Runtime(device=torch.device("cpu"), amp=amp)
    model = build_model(SMALL)
    result = train(model, _cfg(), tiny_splits, runtime=runtime, seed=0)
    assert result.best is not None and (result.best.val_acc or 0.0) >= 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never changes the weights' type
    assert result.history[-1].val_logits is not None and result.history[-1].val_logits.dtype == torch.float32


def test_the_searchs_bf16_validation_agrees_with_fp32(tiny_splits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search validates under bf16 autocast where it trains so: the same model scores the same within a
    couple of images, and its logits come back fp32."""
    monkeypatch.setattr("search.runtime.cpu_has_native_bf16", lambda: True)
    model = build_model(SMALL)
    train(model, _cfg(), tiny_splits, runtime=Runtime(device=torch.device("cpu")), seed=0)
    assert tiny_splits.val is not None
    scores = [
        evaluate(model, tiny_splits.val, mean=tiny_splits.mean, std=tiny_splits.std,
                 runtime=Runtime(device=torch.device("cpu"), cpu_eval_amp=bf16))
        for bf16 in (False, True)
    ]  # fmt: skip
    assert abs(scores[0].accuracy - scores[1].accuracy) <= 2 / len(tiny_splits.val)
    assert scores[1].logits.dtype == torch.float32 and not torch.equal(scores[0].logits, scores[1].logits)
