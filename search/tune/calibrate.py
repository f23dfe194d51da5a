"""How fast this machine trains: seconds per image per million MACs, measured, for the time plan.

A short run of the one training loop on the prior configuration (no validation), once with the
threads a worker process gets and once with all of them (the export's process). Training time
scales with the MACs of the network to first order; the plan rescales by each trial's MACs.
"""

from __future__ import annotations

import dataclasses

import torch

from search.data import ImageSet, Splits
from search.plan import Throughput
from search.train import Runtime, train
from space import TrialConfig, build_model
from space.model import model_size

CALIBRATION_IMAGES = 2048  # per run, after a warm-up of a quarter of that


def _seconds_per_image_mmac(cfg: TrialConfig, splits: Splits, runtime: Runtime, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        mmacs = model_size(cfg.arch).macs / 1e6
        one_epoch = dataclasses.replace(cfg.train, epochs=1)
        speeds = []
        for n in (CALIBRATION_IMAGES // 4, CALIBRATION_IMAGES):  # the first run warms up (allocator, kernels)
            n = min(n, len(splits.train))
            part = Splits(train=ImageSet(splits.train.x[:n], splits.train.y[:n]), val=None, mean=splits.mean,
                          std=splits.std)  # fmt: skip
            speeds.append(train(build_model(cfg.arch), one_epoch, part, runtime=runtime, seed=0).images_per_second)
        return 1.0 / (speeds[-1] * mmacs)
    finally:
        torch.set_num_threads(before)


def calibrate(cfg: TrialConfig, splits: Splits, *, device: torch.device, worker_threads: int) -> Throughput:
    """The throughput of ``cfg`` on ``device``: in a worker (``worker_threads``) and in the export."""
    runtime = Runtime(device=device)
    all_threads = torch.get_num_threads()
    export = _seconds_per_image_mmac(cfg, splits, runtime, all_threads)
    if device.type != "cpu" or worker_threads >= all_threads:
        return Throughput(worker=export, export=export)
    return Throughput(worker=_seconds_per_image_mmac(cfg, splits, runtime, worker_threads), export=export)
