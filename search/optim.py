"""The optimiser and the learning-rate schedule of a :class:`~space.config.TrainConfig`, for the loop."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from space.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names over ``model``'s parameters; with ``fused``, each step is one fused kernel per
    parameter group (``Runtime.use_fused_optimizer``: on CUDA) rather than torch's default multi-tensor kernels."""
    # No weight decay on biases and normalisation parameters (the usual practice).
    # None, not False, when off: torch then picks its default (multi-tensor kernels on CUDA); an explicit False
    # would also turn those off.
    fuse = True if fused else None
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fuse)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=fuse)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, fused=fuse)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``cfg`` names, stepped once per batch over ``total_steps``."""
    if cfg.schedule == "onecycle":
        # Under 8 steps OneCycleLR's warm-up is degenerate (it divides by zero at 4: tiny data); a longer
        # nominal schedule is harmless there.
        steps = max(total_steps, 8)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        )
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _step: 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


class Pace:
    """Moves the learning-rate schedule on after each step, and says when training is done.

    Without a time limit the schedule's position is the steps done. With one it is the larger of the
    steps done and the share of the limit used, times the total steps: a machine slower than planned
    (a busy or noisy one: epochs on the project's VM vary by a fifth) goes through the whole schedule,
    annealing included, within the limit instead of overrunning it, and one on time trains exactly as
    without a limit. Schedules are closed-form in their step, so skipping positions is safe.
    """

    def __init__(self, sched: torch.optim.lr_scheduler.LRScheduler, total_steps: int, limit_s: float | None):
        if limit_s is not None and limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {limit_s}")
        self.sched = sched
        self.total = total_steps
        self.limit_s = limit_s
        self.started = time.perf_counter()
        self.elapsed = 0.0  # seconds from the start to the last advance (read only with a limit)

    def seconds_left(self) -> float | None:
        """Seconds the time limit left at the last :meth:`advance` (0 once past it); None without a limit."""
        if self.limit_s is None:
            return None
        return max(0.0, self.limit_s - self.elapsed)

    def advance(self, steps_done: int) -> bool:
        """Bring the schedule to its position after ``steps_done`` steps; False once it is complete."""
        position = steps_done
        if self.limit_s is not None:
            self.elapsed = time.perf_counter() - self.started
            used = self.elapsed / self.limit_s
            position = max(position, math.floor(used * self.total))
        if position >= self.total:
            return False
        while self.sched.last_epoch < position:
            self.sched.step()
        return True
