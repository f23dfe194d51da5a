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
    started = time.perf_counter()
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    sample = torch.randn(tuple(batch_shape), device=runtime.device)
    if runtime.use_channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.train()
    # The capture's warm-up makes the parameters' gradient accumulators on a side stream and replays feed them on
    # the default stream: torch warns once per process (a synchronisation per step, inside the measured speed-up;
    # docs/gpu.md). The warning would only garble the search's live display.
    quiet = getattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch", None)  # torch >= 2.10
    if quiet is not None:
        quiet(False)
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
    try:
        yield time.perf_counter() - started
    finally:
        # make_graphed_callables replaced the instance's forward: drop it, and free its graphs now (they sit in a
        # reference cycle), while no capture is under way.
        model.__dict__.pop("forward", None)
        gc.collect()
