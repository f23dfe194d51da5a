"""How fast this machine trains: seconds per image per million MACs, measured, for the time plan.

A short run of the one training loop on the prior configuration, once with the threads a worker
process gets and once with all of them (the export's process). The worker's run evaluates as a
search trial does (``evals_per_epoch`` passes over a validation part in the trial's proportion to
the training images), and both are timed whole, evaluation included: on a CPU that trains in bf16
and evaluates in fp32, evaluation is a fifth or more of a trial's time, and a plan that left it out
promised finals it could not keep (docs/runs.md). The export's run has no validation, as export-best
has none. Training time scales with the MACs of the network to first order; the plan rescales by
each trial's MACs.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from search.data import ImageSet, Splits
from search.plan import Throughput
from search.train import Runtime, train
from space import TrialConfig, build_model
from space.model import model_size

CALIBRATION_IMAGES = 2048  # per run, after a warm-up of a quarter of that


def _seconds_per_image_mmac(
    cfg: TrialConfig, splits: Splits, runtime: Runtime, threads: int, *, evals_per_epoch: int
) -> float:
    """Wall seconds per training image per million MACs; ``evals_per_epoch`` 0: no evaluation."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mmacs = model_size(cfg.arch).macs / 1e6
        one_epoch = dataclasses.replace(cfg.train, epochs=1)
        seconds = 0.0
        for n in (CALIBRATION_IMAGES // 4, CALIBRATION_IMAGES):  # the first run warms up (allocator, kernels)
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
        return seconds / (n * mmacs)
    finally:
        torch.set_num_threads(before)


def calibrate(
    cfg: TrialConfig, splits: Splits, *, device: torch.device, worker_threads: int, evals_per_epoch: int
) -> Throughput:
    """The throughput of ``cfg`` on ``device``: in a worker (``worker_threads``, evaluating ``evals_per_epoch``
    times an epoch) and in the export (all threads, no evaluation)."""
    runtime = Runtime(device=device)
    all_threads = torch.get_num_threads()
    export = _seconds_per_image_mmac(cfg, splits, runtime, all_threads, evals_per_epoch=0)
    threads = all_threads if device.type != "cpu" else min(worker_threads, all_threads)
    worker = _seconds_per_image_mmac(cfg, splits, runtime, threads, evals_per_epoch=evals_per_epoch)
    return Throughput(worker=worker, export=export)
