"""The one training loop of fsearch (no Optuna here).

The search, the preset retraining and ``export-best`` all call :func:`train`. It takes a
model, a :class:`~space.config.TrainConfig`, the data splits and a :class:`Runtime`, and
reports each epoch to ``on_epoch_end``; a callback that wants the run stopped (a pruner)
raises, and the exception propagates unchanged.

Speed, in airbench's style: the dataset is already on the device as uint8; batches are
index slices of a ``randperm``; augmentation and normalisation run per batch on the device;
evaluation runs under ``inference_mode`` in large batches; channels_last on CUDA and the CPU
(measured faster on both, ``benchmarks/loop_vs_dataloader.py``). Training steps run under bf16
autocast on CUDA (fp16 where bf16 is unsupported) and on a CPU with native bf16 instructions
(AVX512-BF16 or AMX; on the project's 2-core EPYC, 1.5x the images/s of fp32, ``docs/training.md``);
on a CPU without them bf16 is emulated and slower, so off. On the CPU the search's validation runs under
the same autocast (``Runtime.cpu_eval_amp``); other evaluation stays fp32, as ``predict`` and the ONNX
graph compute. On CUDA the optimiser's step is fused, and the model's forward and backward can be replayed as
CUDA graphs (:mod:`search.graphs`); ``search/runtime.py`` says which are on where, ``docs/gpu.md`` why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from search.augment import prepare_batch
from search.data import ImageSet, Splits
from search.errors import ConfigError
from search.graphs import training_graphs
from search.optim import Pace, make_optimizer, make_scheduler
from search.runtime import Runtime
from space.config import TrainConfig

# The largest seed every consumer takes: Optuna's samplers seed numpy's legacy generator (0 to 2**32 - 1).
MAX_SEED = 2**32 - 1
NONFINITE_CHECK_EVERY = 50  # steps between loss checks (each check syncs with the device)
EVAL_BATCH_SIZE = 2048  # images per forward pass when evaluating (no gradients: memory is not the limit)


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochStats:
    """One evaluation: at the end of an epoch, or of a part of one (``evals_per_epoch`` > 1)."""

    epoch: int  # 1-based: the epoch this evaluation falls in
    train_loss: float  # over the steps since the previous evaluation
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float  # training time since the previous evaluation, evaluation excluded
    images: int  # images trained on since the previous evaluation
    report: int = 0  # 1-based index of this evaluation in the run (= epoch when evals_per_epoch is 1)
    epochs_done: float = 0.0  # epochs trained so far, e.g. 1.5 (an int when whole)
    # Seconds the run's time limit leaves at this evaluation (None without one): a display can say where it ends.
    time_left_s: float | None = None
    # The validation logits (CPU) this evaluation computed anyway: a confusion matrix of the best report costs
    # nothing more. Not part of the stats' identity.
    val_logits: torch.Tensor | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class TrainResult:
    history: tuple[EpochStats, ...]
    # True when ``time_limit_s`` ended the run before its epochs were done (its schedule ran on the clock).
    time_limited: bool = False
    # Seconds spent before the first step on a one-time setup (capturing CUDA graphs), in no epoch's seconds.
    setup_seconds: float = 0.0

    @property
    def epochs_run(self) -> float:
        """Epochs trained (fractional when stopped after part of an epoch)."""
        return self.history[-1].epochs_done if self.history else 0

    @property
    def train_seconds(self) -> float:
        return sum(e.seconds for e in self.history)

    @property
    def images_per_second(self) -> float:
        return sum(e.images for e in self.history) / max(self.train_seconds, 1e-9)

    @property
    def best(self) -> EpochStats | None:
        scored = [e for e in self.history if e.val_acc is not None]
        return max(scored, key=lambda e: e.val_acc or 0.0) if scored else None


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    logits: torch.Tensor  # (N, classes) float32 on the CPU


EpochCallback = Callable[[EpochStats], None]
StepCallback = Callable[[int, int], None]


def check_seed(seed: int) -> None:
    """The one check of ``--seed`` (run, export-best, train): a seed the samplers and the split can take."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be within 0..{MAX_SEED}, got {seed}")


def seed_everything(seed: int) -> None:
    """Seed torch on every device (model init, batch order, augmentation, dropout)."""
    torch.manual_seed(seed)


def prepare_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    model = model.to(runtime.device)
    if runtime.use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def evaluate(model: nn.Module, data: ImageSet, *, mean: float, std: float, runtime: Runtime) -> Evaluation:
    """Loss, accuracy and logits on ``data``, without gradients, in large batches."""
    was_training = model.training
    model.eval()
    chunks = []
    with torch.inference_mode(), torch.autocast(runtime.device.type, runtime.amp_dtype, enabled=runtime.eval_amp):
        for start in range(0, len(data), EVAL_BATCH_SIZE):
            x = prepare_batch(data.x[start : start + EVAL_BATCH_SIZE], None, mean, std)
            if runtime.use_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            chunks.append(model(x).float())
    model.train(was_training)
    logits = torch.cat(chunks) if chunks else torch.empty(0, 10, device=runtime.device)
    loss = F.cross_entropy(logits, data.y).item() if len(data) else float("nan")
    accuracy = (logits.argmax(1) == data.y).float().mean().item() if len(data) else float("nan")
    return Evaluation(loss=loss, accuracy=accuracy, logits=logits.cpu())


def train(
    model: nn.Module,
    cfg: TrainConfig,
    splits: Splits,
    *,
    runtime: Runtime,
    seed: int,
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    evals_per_epoch: int = 1,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.epochs`` epochs on ``splits.train``, validating on ``splits.val``.

    Validation runs ``evals_per_epoch`` times per epoch (at even step intervals), each time
    handing an :class:`EpochStats` to ``on_epoch_end``; more than one lets a pruner stop a hopeless
    trial after part of an epoch. Raises :class:`DivergedError` when the loss stops being finite;
    whatever ``on_epoch_end`` raises (e.g. a pruning signal) propagates after the stats are recorded.

    ``time_limit_s`` keeps the run within that many seconds (see :class:`~search.optim.Pace`): a run on time is the
    same as without it; one that falls behind anneals sooner and ends at the limit, mid-epoch if need be.
    """
    if evals_per_epoch < 1:
        raise ValueError(f"evals_per_epoch must be at least 1, got {evals_per_epoch}")
    seed_everything(seed)
    model = prepare_model(model, runtime)
    data = splits.train
    n = len(data)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch  # the last partial batch is dropped (keeps batch norm stable)
    evals_per_epoch = min(evals_per_epoch, steps_per_epoch)
    # Evaluate after these steps of each epoch (the last one ends the epoch).
    eval_after = {round(steps_per_epoch * (k + 1) / evals_per_epoch) for k in range(evals_per_epoch)}
    total_steps = steps_per_epoch * cfg.epochs
    opt = make_optimizer(model, cfg, fused=runtime.use_fused_optimizer)
    sched = make_scheduler(opt, cfg, total_steps)
    use_scaler = runtime.use_amp and runtime.amp_dtype == torch.float16
    scaler = torch.amp.GradScaler(enabled=use_scaler)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[EpochStats] = []
    pace = Pace(sched, total_steps, time_limit_s)

    step = 0
    with training_graphs(model, runtime, (batch, *data.x.shape[1:])) as setup_s:  # no-op unless use_cuda_graphs
        for step in range(1, total_steps + 1):
            epoch, i = divmod(step - 1, steps_per_epoch)
            epoch += 1
            if i == 0:  # each epoch sees the images in a new order
                model.train()
                order = torch.randperm(n, device=runtime.device)
                since = _Window(runtime.device)
            idx = order[i * batch : (i + 1) * batch]
            x = prepare_batch(data.x[idx], cfg.augment, splits.mean, splits.std)
            y = data.y[idx]
            if runtime.use_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(runtime.device.type, runtime.amp_dtype, enabled=runtime.use_amp):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            # Flush the gradients by setting them to None: cheaper than zeroing them.
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            lr = opt.param_groups[0]["lr"]  # the rate this step used (the scheduler moves it on next)
            since.add(loss.detach(), logits.detach(), y)
            more = pace.advance(step)
            if step % NONFINITE_CHECK_EVERY == 0 and not torch.isfinite(since.loss_sum):
                raise DivergedError(f"loss became non-finite at epoch {epoch}, step {step}")
            if on_step is not None:
                on_step(i + 1, steps_per_epoch)
            if i + 1 in eval_after or not more:
                stats = since.close(
                    model, splits, runtime, epoch=epoch, report=len(history) + 1,
                    epochs_done=epoch - 1 + (i + 1) / steps_per_epoch, lr=lr, time_left_s=pace.seconds_left(),
                )  # fmt: skip
                history.append(stats)
                if on_epoch_end is not None:
                    on_epoch_end(stats)
                model.train()
                since = _Window(runtime.device)
            if not more:
                break
    return TrainResult(history=tuple(history), time_limited=step < total_steps, setup_seconds=setup_s)


def _tidy(epochs: float) -> float:
    """Epochs done, as an int when whole (``3``, not ``3.0``, in user attributes and JSON)."""
    rounded = round(epochs, 4)
    return int(rounded) if rounded.is_integer() else rounded


class _Window:
    """Training loss and accuracy summed on the device since the last evaluation (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)

    def close(
        self, model: nn.Module, splits: Splits, runtime: Runtime, *, epoch: int, report: int, epochs_done: float,
        lr: float, time_left_s: float | None,
    ) -> EpochStats:  # fmt: skip
        """Stop the clock, check the loss, validate; the stats of this window."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.started
        train_loss = self.loss_sum.item() / self.seen
        if not math.isfinite(train_loss):
            raise DivergedError(f"loss became non-finite in epoch {epoch}")
        val = evaluate(model, splits.val, mean=splits.mean, std=splits.std, runtime=runtime) if splits.val else None
        return EpochStats(
            epoch=epoch, train_loss=train_loss, train_acc=self.correct.item() / self.seen,
            val_loss=val.loss if val else None, val_acc=val.accuracy if val else None, lr=lr,
            seconds=seconds, images=self.seen, report=report, epochs_done=_tidy(epochs_done),
            time_left_s=time_left_s, val_logits=val.logits if val else None,
        )  # fmt: skip
