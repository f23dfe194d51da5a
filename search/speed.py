"""How long this machine takes to train a configuration: a short run of the one training loop, timed.

The time plan (:mod:`search.tune.calibrate`) times the reference configuration this way before a
search, and ``export-best`` times the chosen trial itself before its export, so that the export's
epochs fit what the plan left for it whatever the trial's speed per MAC (an estimate scaled from other
processes and other networks was off by a fifth: docs/runs.md).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from search.data import ImageSet, Splits
from search.train import Runtime, train
from space import TrialConfig, build_model

TIMED_IMAGES = 2048  # per timing, after a warm-up run of a quarter of that


def seconds_per_image(
    cfg: TrialConfig, splits: Splits, runtime: Runtime, *, threads: int, evals_per_epoch: int
) -> float:
    """Wall seconds per training image of ``cfg`` with ``threads`` threads, timed whole; with
    ``evals_per_epoch`` > 0 a validation part in the split's proportion is evaluated that often, as in a
    search trial (0: no evaluation, as in an export)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one_epoch = dataclasses.replace(cfg.train, epochs=1)
        seconds, n = 0.0, 1
        for n in (TIMED_IMAGES // 4, TIMED_IMAGES):  # the first run warms up (allocator, kernels)
            n = min(n, len(splits.train))
            val = None
            if evals_per_epoch and splits.val is not None:  # as many validation images per training image
                m = max(1, round(n * len(splits.val) / len(splits.train)))
                val = ImageSet(splits.val.x[:m], splits.val.y[:m])
            part = Splits(train=ImageSet(splits.train.x[:n], splits.train.y[:n]), val=val, mean=splits.mean,
                          std=splits.std)  # fmt: skip
            model = build_model(cfg.arch)
            started = time.perf_counter()
            train(model, one_epoch, part, runtime=runtime, seed=0, evals_per_epoch=max(1, evals_per_epoch))
            seconds = time.perf_counter() - started
        return seconds / n
    finally:
        torch.set_num_threads(before)


def export_seconds_per_image(cfg: TrialConfig, device: torch.device) -> float:
    """Wall seconds per training image of ``cfg`` as ``export-best`` trains it: all threads, no validation.
    Random images stand in for the data (the loop's speed does not depend on the pixels)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (TIMED_IMAGES, 1, 28, 28), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, cfg.arch.num_classes, (TIMED_IMAGES,), generator=gen)
    mean, std = float(x.float().mean()), float(x.float().std())  # normalised as real images are
    splits = Splits(train=ImageSet(x.to(device), y.to(device)), val=None, mean=mean, std=std)
    return seconds_per_image(cfg, splits, Runtime(device=device), threads=torch.get_num_threads(), evals_per_epoch=0)
