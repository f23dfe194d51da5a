"""How long this machine takes to train a configuration: a short run of the one training loop, timed.

The time plan (:mod:`search.tune.calibrate`) times the reference configuration this way before a
search, and ``export-best`` times the chosen trial itself before its export, so that the export's
epochs fit what the plan left for it whatever the trial's speed per MAC (an estimate scaled from other
processes and other networks was off by a fifth: docs/runs.md), and trains it in the memory format timed faster.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from search.data import ImageSet, Splits
from search.runtime import Runtime
from search.train import train
from space import TrialConfig, build_model

TIMED_IMAGES = 2048  # per timing, after a warm-up run of a quarter of that
# On the CPU the export times both memory formats this many times each and keeps the faster mean; more than one
# round goes ABBA (ABBAAB...), so a steady drift of the machine's speed slows or speeds both alike. One: two rounds
# chose the faster format no more often, at twice the seconds (docs/training.md).
TIMING_ROUNDS = 1


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
            result = train(model, one_epoch, part, runtime=runtime, seed=0, evals_per_epoch=max(1, evals_per_epoch))
            # A capture of CUDA graphs is paid once per run, not per image: left out of a timing this short.
            seconds = time.perf_counter() - started - result.setup_seconds
        return seconds / n
    finally:
        torch.set_num_threads(before)


def random_splits(n: int, device: torch.device, *, classes: int = 10) -> Splits:
    """``n`` random 28x28 training images (no validation) on ``device``, normalised as real images are: a stand-in
    for the data where only speed is measured (the loop's speed does not depend on the pixels)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    mean, std = float(x.float().mean()), float(x.float().std())
    return Splits(train=ImageSet(x.to(device), y.to(device)), val=None, mean=mean, std=std)


def export_seconds_per_image(cfg: TrialConfig, runtime: Runtime) -> float:
    """Wall seconds per training image of ``cfg`` as ``export-best`` trains it with ``runtime``: all threads, no
    validation, on random images (``random_splits``)."""
    splits = random_splits(TIMED_IMAGES, runtime.device, classes=cfg.arch.num_classes)
    return seconds_per_image(cfg, splits, runtime, threads=torch.get_num_threads(), evals_per_epoch=0)


@dataclass(frozen=True)
class ExportTiming:
    """How fast ``export-best`` trains a configuration on this machine: each memory format's timings in seconds
    per image, keyed by ``channels_last``. The export trains in the format of the lowest mean (the first timed, on
    a tie); everything else is derived from the timings, so the choice and its evidence cannot disagree."""

    timings: Mapping[bool, tuple[float, ...]]

    @property
    def seconds(self) -> dict[bool, float]:
        """Each format's mean seconds per image."""
        return {cl: statistics.fmean(s) for cl, s in self.timings.items()}

    @property
    def channels_last(self) -> bool:
        seconds = self.seconds
        return min(seconds, key=lambda cl: seconds[cl])

    @property
    def seconds_per_image(self) -> float:
        return self.seconds[self.channels_last]

    @property
    def memory_format(self) -> str:
        return Runtime(channels_last=self.channels_last).memory_format

    @property
    def by_format(self) -> dict[str, float]:
        """Mean seconds per image of each memory format timed, by name (recorded in the export's rule)."""
        return {Runtime(channels_last=cl).memory_format: s for cl, s in self.seconds.items()}

    @property
    def timings_by_format(self) -> dict[str, tuple[float, ...]]:
        """Every timing of each memory format, by name, in the order taken (recorded in the export's rule)."""
        return {Runtime(channels_last=cl).memory_format: s for cl, s in self.timings.items()}


def export_timing(cfg: TrialConfig, runtime: Runtime, *, rounds: int = TIMING_ROUNDS) -> ExportTiming:
    """Time ``cfg`` as the export trains it with ``runtime`` (:func:`export_seconds_per_image`); on the CPU in both
    memory formats, whatever ``runtime`` asks, ``rounds`` times each in the order channels_last, contiguous,
    contiguous, channels_last (and so on), keeping the faster mean. Neither format wins everywhere: on 2-core CPUs
    the export's networks trained faster in one or the other depending on their widths and the CPU's instructions
    (batch norm's channels_last kernels; measured by ``benchmarks/memory_format.py``, figures in docs/training.md).
    Elsewhere the runtime's own format is timed once, alone (by default channels_last on CUDA, contiguous on
    MPS)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    on_cpu = runtime.device.type == "cpu"
    timed: dict[bool, list[float]] = {True: [], False: []} if on_cpu else {runtime.use_channels_last: []}
    for r in range(rounds if on_cpu else 1):
        for cl in list(timed) if r % 2 == 0 else reversed(timed):
            timed[cl].append(export_seconds_per_image(cfg, dataclasses.replace(runtime, channels_last=cl)))
    return ExportTiming({cl: tuple(s) for cl, s in timed.items()})
