"""Where and how the training loop runs: the device, the memory format, autocast and the CUDA-only speed-ups.

A :class:`Runtime` is independent of what is trained (that is the :class:`~space.config.TrainConfig`): the
search, ``export-best`` and the benchmarks build one per process and hand it to :func:`search.train.train`.
Each option is ``None`` by default, meaning what was chosen for the device by measurement; the benchmarks
set them explicitly to measure their gain (``docs/training.md``, ``docs/gpu.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from search.device import cpu_has_native_bf16, describe


@dataclass(frozen=True)
class Runtime:
    """Where and how to run, independent of what is trained."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # None: on for CUDA and the CPU, off on MPS. The loop benchmark turns it off to measure its gain.
    channels_last: bool | None = None
    # None: on for CUDA and for a CPU with native bf16 (cpu_has_native_bf16), off on MPS.
    amp: bool | None = None
    # Evaluate under the same autocast on the CPU too. The search's validation does (on the project's EPYC
    # 1.8x faster, accuracy within 3 images in 10,000: docs/training.md); the test set, predict and ONNX
    # stay fp32. On CUDA evaluation always follows ``use_amp``.
    cpu_eval_amp: bool = False
    # The optimiser's step as one fused kernel per parameter group (torch's ``fused=True``) instead of a few
    # multi-tensor ones. None: on CUDA only, where a step of a small network is bound by kernel launches; the CPU
    # keeps the loop its measurements were made with.
    fused_optimizer: bool | None = None
    # Capture the model's training forward and backward as CUDA graphs (torch.cuda.make_graphed_callables) and
    # replay them each step: one launch instead of one per layer. CUDA only. None: on for CUDA, where the loop is
    # bound by kernel launches (docs/gpu.md has the measurements and the capture's one failure, since fixed).
    cuda_graphs: bool | None = None

    @property
    def use_amp(self) -> bool:
        """Whether training steps run under bf16 (or fp16) autocast (never on MPS)."""
        native = self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_native_bf16())
        return native if self.amp is None else self.amp and self.device.type in ("cuda", "cpu")

    @property
    def eval_amp(self) -> bool:
        """Autocast in evaluation: on CUDA, and on the CPU with ``cpu_eval_amp`` (else fp32, as predict computes)."""
        return self.use_amp and (self.device.type == "cuda" or self.cpu_eval_amp)

    @property
    def use_channels_last(self) -> bool:
        if self.channels_last is None:
            return self.device.type in ("cuda", "cpu")
        return self.channels_last

    @property
    def use_fused_optimizer(self) -> bool:
        return self.device.type == "cuda" if self.fused_optimizer is None else self.fused_optimizer

    @property
    def use_cuda_graphs(self) -> bool:
        return self.device.type == "cuda" and (self.cuda_graphs is None or self.cuda_graphs)

    @property
    def memory_format(self) -> str:
        """The memory format of the images and the conv weights, by name (recorded with an export)."""
        return "channels_last" if self.use_channels_last else "contiguous"

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16

    def describe(self) -> str:
        """The device, the autocast its training steps use and the CUDA graphs: recorded with each trial and export."""
        precision = "bf16" if self.amp_dtype == torch.bfloat16 else "fp16"
        return (
            describe(self.device)
            + (f", {precision} autocast" if self.use_amp else "")
            + (", CUDA graphs" if self.use_cuda_graphs else "")
        )
