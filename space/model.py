"""Build a PyTorch CNN from an :class:`~space.config.Architecture` (no Optuna here).

One builder reads the architecture as data, in the style of timm: a tuple of block configs
becomes ``features``; the head flattens (or global-average-pools) and runs the dense layers.
Geometry is checked before any layer is allocated, so an impossible or absurd configuration
fails with :class:`ArchitectureError` instead of a shape error deep inside a forward pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from torch import nn

from space.config import HEADS, PADDINGS, POOLS, Architecture
from space.summary import layer_summary

# Guards against configurations no Fashion-MNIST CNN needs (and that would allocate gigabytes). A
# config can come from a study database or a config.json that someone else wrote: every bound is
# checked by arithmetic on the config, before a single layer is allocated.
MAX_CHANNELS = 4096
MAX_DENSE = 16384
MAX_BLOCKS = 16
MAX_CONVS = 8
MAX_DENSE_LAYERS = 8
MAX_IMAGE_SIZE = 1024
MAX_PARAMETERS = 200_000_000  # 800 MB of float32 weights; the search space's largest network has 113M
MAX_MACS = 20_000_000_000  # per image; the search space's costliest network needs 8.1G


class ArchitectureError(ValueError):
    """The architecture cannot be built (collapsing geometry, absurd sizes)."""


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ArchitectureError(f"unknown activation {name!r}")


def feature_shape(arch: Architecture) -> tuple[int, int]:
    """(channels, side) after the conv blocks; raises if the image collapses."""
    side, channels = arch.image_size, arch.in_channels
    if not 1 <= side <= MAX_IMAGE_SIZE or not 1 <= channels <= MAX_CHANNELS or len(arch.blocks) > MAX_BLOCKS:
        raise ArchitectureError(
            f"input {channels}x{side}x{side} or {len(arch.blocks)} blocks out of range "
            f"(at most {MAX_CHANNELS} channels, side {MAX_IMAGE_SIZE}, {MAX_BLOCKS} blocks)"
        )
    for i, block in enumerate(arch.blocks):
        if not 1 <= block.filters <= MAX_CHANNELS or not 1 <= block.convs <= MAX_CONVS:
            raise ArchitectureError(f"block {i}: filters/convs out of range ({block.filters}, {block.convs})")
        if block.kernel not in (1, 3, 5, 7):
            raise ArchitectureError(f"block {i}: kernel must be 1, 3, 5 or 7, not {block.kernel}")
        if block.padding not in PADDINGS or block.pool not in POOLS:
            raise ArchitectureError(f"block {i}: unknown padding {block.padding!r} or pool {block.pool!r}")
        for _ in range(block.convs):
            if block.padding == "valid":
                side -= block.kernel - 1
            if side < 1:
                raise ArchitectureError(f"block {i}: the image shrinks to nothing")
        if block.pool != "none":
            if side < 2:
                raise ArchitectureError(f"block {i}: cannot pool a {side}x{side} map")
            side //= 2
        channels = block.filters
    return channels, side


def build_model(arch: Architecture) -> nn.Sequential:
    """The network for ``arch``: ``features`` (conv blocks) then ``head`` (dense layers)."""
    channels, side = feature_shape(arch)
    if len(arch.dense) > MAX_DENSE_LAYERS or any(not 1 <= d <= MAX_DENSE for d in (*arch.dense, arch.num_classes)):
        raise ArchitectureError(
            f"at most {MAX_DENSE_LAYERS} dense layers of 1..{MAX_DENSE} units (classes included), "
            f"got {arch.dense[: MAX_DENSE_LAYERS + 1]} and {arch.num_classes} classes"
        )
    if not (0 <= arch.conv_dropout < 1 and 0 <= arch.dense_dropout < 1):
        raise ArchitectureError("dropout rates must be in [0, 1)")
    if arch.head not in HEADS:
        raise ArchitectureError(f"unknown head {arch.head!r}")
    size = model_size(arch)
    if size.parameters > MAX_PARAMETERS or size.macs > MAX_MACS:
        raise ArchitectureError(
            f"the network would have {size.parameters:,} parameters and {size.macs:,} MACs per image, over the "
            f"limits of {MAX_PARAMETERS:,} and {MAX_MACS:,}"
        )
    flat = channels if arch.head == "gap" else channels * side * side
    widths = [flat, *arch.dense]

    layers: list[nn.Module] = []
    in_ch = arch.in_channels
    for block in arch.blocks:
        for _ in range(block.convs):
            pad = block.kernel // 2 if block.padding == "same" else 0
            # A conv followed by batch norm needs no bias: BN's shift does its job.
            layers.append(nn.Conv2d(in_ch, block.filters, block.kernel, padding=pad, bias=not arch.batch_norm))
            if arch.batch_norm:
                layers.append(nn.BatchNorm2d(block.filters))
            layers.append(_activation(arch.activation))
            in_ch = block.filters
        if block.pool != "none":
            layers.append(nn.MaxPool2d(2) if block.pool == "max" else nn.AvgPool2d(2))
            if arch.conv_dropout > 0:
                layers.append(nn.Dropout(arch.conv_dropout))

    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1)] if arch.head == "gap" else []
    head.append(nn.Flatten())
    for width_in, width_out in zip(widths, arch.dense, strict=False):
        head += [nn.Linear(width_in, width_out), _activation(arch.activation)]
        if arch.dense_dropout > 0:
            head.append(nn.Dropout(arch.dense_dropout))
    head.append(nn.Linear(widths[-1], arch.num_classes))
    return nn.Sequential(nn.Sequential(*layers), nn.Sequential(*head))


@dataclass(frozen=True)
class ModelSize:
    """What :func:`build_model` would build, counted without building it."""

    parameters: int
    macs: int  # multiply-accumulates of one forward pass on one image, as count_macs counts them


def model_size(arch: Architecture) -> ModelSize:
    """Parameters and MACs of ``build_model(arch)`` by arithmetic on the config alone (nothing is allocated).

    Call it on an architecture :func:`feature_shape` accepts (``build_model`` does both).
    """
    channels, side = arch.in_channels, arch.image_size
    parameters = macs = 0
    for block in arch.blocks:
        for _ in range(block.convs):
            side -= block.kernel - 1 if block.padding == "valid" else 0
            weights = channels * block.filters * block.kernel * block.kernel
            parameters += weights + block.filters * (2 if arch.batch_norm else 1)  # BN scale+shift, or a bias
            macs += weights * side * side
            channels = block.filters
        side //= 1 if block.pool == "none" else 2
    flat = channels if arch.head == "gap" else channels * side * side
    for width_in, width_out in itertools.pairwise([flat, *arch.dense, arch.num_classes]):
        parameters += width_in * width_out + width_out
        macs += width_in * width_out
    return ModelSize(parameters=parameters, macs=macs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, arch: Architecture) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    return sum(layer.macs for layer in layer_summary(model, arch))
