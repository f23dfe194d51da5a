"""The search space and the model builder: configs, ``suggest``, ``build_model``, presets.

Each name is imported on first use: the configs, the space and the presets need no torch, so a
command's ``--help`` (which lists the presets) does not load it; ``build_model`` and friends do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "Architecture": "space.config", "Augment": "space.config", "ConvBlock": "space.config",
    "TrainConfig": "space.config", "TrialConfig": "space.config", "from_dict": "space.config",
    "to_dict": "space.config",
    "ArchitectureError": "space.model", "build_model": "space.model", "count_macs": "space.model",
    "count_parameters": "space.model",
    "PRESETS": "space.presets", "preset_config": "space.presets",
    "SPACE_VERSION": "space.sample", "SpaceMismatch": "space.sample", "replay": "space.sample",
    "suggest": "space.sample",
    "Layer": "space.summary", "layer_summary": "space.summary", "summary_markdown": "space.summary",
}  # fmt: skip

__all__ = [
    "PRESETS",
    "SPACE_VERSION",
    "Architecture",
    "ArchitectureError",
    "Augment",
    "ConvBlock",
    "Layer",
    "SpaceMismatch",
    "TrainConfig",
    "TrialConfig",
    "build_model",
    "count_macs",
    "count_parameters",
    "from_dict",
    "layer_summary",
    "preset_config",
    "replay",
    "suggest",
    "summary_markdown",
    "to_dict",
]

if TYPE_CHECKING:
    from space.config import Architecture, Augment, ConvBlock, TrainConfig, TrialConfig, from_dict, to_dict
    from space.model import ArchitectureError, build_model, count_macs, count_parameters
    from space.presets import PRESETS, preset_config
    from space.sample import SPACE_VERSION, SpaceMismatch, replay, suggest
    from space.summary import Layer, layer_summary, summary_markdown


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'space' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
