"""The search space and the model builder: configs, ``suggest``, ``build_model``, presets."""

from __future__ import annotations

from space.config import Architecture, Augment, ConvBlock, TrainConfig, TrialConfig, from_dict, to_dict
from space.model import ArchitectureError, build_model, count_macs, count_parameters
from space.presets import PRESETS, preset_config
from space.sample import SPACE_VERSION, suggest
from space.summary import Layer, layer_summary, summary_markdown

__all__ = [
    "PRESETS",
    "SPACE_VERSION",
    "Architecture",
    "ArchitectureError",
    "Augment",
    "ConvBlock",
    "Layer",
    "TrainConfig",
    "TrialConfig",
    "build_model",
    "count_macs",
    "count_parameters",
    "from_dict",
    "layer_summary",
    "preset_config",
    "suggest",
    "summary_markdown",
    "to_dict",
]
