"""CUDA graphs for the training step: the model's forward and backward captured once, replayed every step.

On a GPU a small network's training step is bound by launching its kernels one at a time from Python, not by the
arithmetic (docs/gpu.md has the measurements). ``torch.cuda.make_graphed_callables`` captures the model's forward
and backward in training mode as two CUDA graphs; each step then copies its batch into the graph's input and replays
them, one launch each. The augmentation, the loss and the optimiser's step stay eager (with a fused optimiser, one
launch per parameter group). Evaluation runs the model in eval mode, which calls its own forward, uncaptured.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from search.runtime import Runtime


@contextmanager
def training_graphs(model: nn.Module, runtime: Runtime, batch_shape: Sequence[int]) -> Iterator[float]:
    """Within the block, ``model`` in training mode replays CUDA graphs captured for batches of ``batch_shape``
    (a no-op unless ``runtime.use_cuda_graphs``); after it, ``model`` is a plain module again. Yields the seconds
    the capture took (0 without one): a one-time cost that a timing of a few steps must not spread over them.

    The capture runs the model a few times on random inputs (warm-up, then capture); its batch norm running
    statistics are put back afterwards, so the captured model starts from exactly the state it was given.
    """
    if not runtime.use_cuda_graphs:
        yield 0.0
        return
    # Two warnings torch gives once per process with graphed callables, harmless here, would only garble the
    # search's live display: the capture's warm-up makes the parameters' gradient accumulators on a side stream and
    # replays feed them on the default stream (a synchronisation per step, inside the measured speed-up: docs/gpu.md);
    # and the backward replay's first cuBLAS call sets the device's context itself. Filtered within the block only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
        warnings.filterwarnings("ignore", message="Attempting to run cuBLAS, but there was no current CUDA context")
        setup_s = _capture(model, runtime, batch_shape)
        try:
            yield setup_s
        finally:
            # make_graphed_callables replaced the instance's forward: drop it, and free its graphs now (they sit in
            # a reference cycle), while no capture is under way.
            model.__dict__.pop("forward", None)
            gc.collect()


def _capture(model: nn.Module, runtime: Runtime, batch_shape: Sequence[int]) -> float:
    """Capture ``model``'s training forward and backward for batches of ``batch_shape``; the seconds it took."""
    started = time.perf_counter()
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    sample = torch.randn(tuple(batch_shape), device=runtime.device)
    if runtime.use_channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.train()
    # No garbage collection during the capture: an earlier model's graphs, left in a reference cycle, destroyed
    # mid-capture invalidate it (seen on an H200 when one process trained twice in a row: docs/gpu.md).
    collecting = gc.isenabled()
    gc.disable()
    try:
        # Autocast's weight cache cannot live in a graph: torch asks for cache_enabled=False during the capture.
        with torch.autocast(runtime.device.type, runtime.amp_dtype, enabled=runtime.use_amp, cache_enabled=False):
            torch.cuda.make_graphed_callables(model, (sample,))
    finally:
        if collecting:
            gc.enable()
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(saved[name])
    model.train(was_training)
    return time.perf_counter() - started
