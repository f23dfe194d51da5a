"""How fast this machine trains: seconds per image per million MACs, measured, for the time plan.

A short run of the one training loop on the prior configuration, once with the threads a worker
process gets and once with all of them (the export's process). The worker's run evaluates as a
search trial does (``evals_per_epoch`` passes over a validation part in the trial's proportion to
the training images), and both are timed whole, evaluation included: on a CPU that trained in bf16
and validated in fp32, evaluation was a fifth or more of a trial's time, and a plan that left it out
promised finals it could not keep (docs/runs.md). The export's run has no validation, as export-best
has none. Training time scales with the MACs of the network to first order; the plan rescales by
each trial's MACs.
"""

from __future__ import annotations

import torch

from search.data import Splits
from search.runtime import Runtime
from search.speed import seconds_per_image
from search.throughput import Throughput
from space import TrialConfig
from space.model import model_size


def calibrate(
    cfg: TrialConfig, splits: Splits, *, runtime: Runtime, worker_threads: int, evals_per_epoch: int
) -> Throughput:
    """The throughput of ``cfg`` trained as ``runtime`` says (the search's workers', ``SearchOptions.runtime``):
    in a worker (``worker_threads``, evaluating ``evals_per_epoch`` times an epoch) and in the export (all
    threads, no evaluation)."""
    mmacs = model_size(cfg.arch).macs / 1e6
    all_threads = torch.get_num_threads()
    export = seconds_per_image(cfg, splits, runtime, threads=all_threads, evals_per_epoch=0)
    threads = all_threads if runtime.device.type != "cpu" else min(worker_threads, all_threads)
    worker = seconds_per_image(cfg, splits, runtime, threads=threads, evals_per_epoch=evals_per_epoch)
    return Throughput(worker=worker / mmacs, export=export / mmacs)
