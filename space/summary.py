"""A layer-by-layer summary of a built network: output shapes, parameters and MACs (no Optuna here).

One forward pass of a single zero image with hooks on the leaf modules gives every layer's
output shape; parameters are counted per module; multiply-accumulates are counted for
convolutions and linear layers (the rest is negligible). :func:`space.model.count_macs` is the
total of this table, so the summary and the recorded ``macs`` always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from space.config import Architecture


@dataclass(frozen=True)
class Layer:
    """One leaf module of the network as it runs on one image."""

    name: str  # e.g. "features.0"
    kind: str  # e.g. "Conv2d 1→32, 3x3, pad 1"
    output: tuple[int, ...]  # without the batch dimension
    parameters: int
    macs: int


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k, p = module.kernel_size, module.padding
        pad = f", pad {p[0]}" if isinstance(p, tuple) and p[0] else ""
        return f"Conv2d {module.in_channels}→{module.out_channels}, {k[0]}x{k[1]}{pad}"
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, nn.Dropout):
        return f"Dropout {module.p:.3g}"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return f"{type(module).__name__} 2x2"
    return type(module).__name__


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        return out[0].numel() * k
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def layer_summary(model: nn.Module, arch: Architecture) -> list[Layer]:
    """The leaf modules in execution order, from one forward pass of a zero image (eval mode)."""
    rows: list[Layer] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        rows.append(
            Layer(
                name=names[module], kind=_describe(module), output=tuple(out.shape[1:]),
                parameters=sum(p.numel() for p in module.parameters(recurse=False)), macs=_macs(module, out),
            )
        )  # fmt: skip

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, arch.in_channels, arch.image_size, arch.image_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def summary_markdown(model: nn.Module, arch: Architecture, *, title: str = "Architecture") -> str:
    """The summary as a markdown table with a totals line (for notes and reports)."""
    rows = layer_summary(model, arch)
    params = sum(p.numel() for p in model.parameters())
    macs = sum(r.macs for r in rows)
    lines = [
        f"### {title}",
        "",
        f"**{params:,} parameters · {macs / 1e6:.2f} M MACs ({2 * macs / 1e6:.2f} MFLOPs) per image**",
        "",
        "| # | layer | output | parameters | MACs |",
        "|---:|---|---|---:|---:|",
        f"| | input | {arch.in_channels}x{arch.image_size}x{arch.image_size} | | |",
    ]
    for i, r in enumerate(rows):
        shape = "x".join(str(d) for d in r.output)
        lines.append(f"| {i} | {r.kind} | {shape} | {r.parameters:,} | {r.macs:,} |")
    lines.append(f"| | **total** | | **{params:,}** | **{macs:,}** |")
    return "\n".join(lines) + "\n"
