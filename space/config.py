"""Frozen configuration dataclasses: what a trial decides, as plain data.

A trial's parameters become a :class:`TrialConfig` exactly once, in :func:`space.sample.suggest`.
Everything downstream (the model builder, the training loop, the exporter) reads these
dataclasses and never sees an Optuna ``Trial``. They serialise to JSON-friendly dicts so a
checkpoint can carry the configuration it was trained with (see :func:`to_dict`/:func:`from_dict`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Activation = Literal["relu", "gelu", "silu", "leaky_relu"]
Pool = Literal["max", "avg", "none"]
Padding = Literal["same", "valid"]
Head = Literal["flatten", "gap"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "onecycle"]

ACTIVATIONS: tuple[Activation, ...] = ("relu", "gelu", "silu", "leaky_relu")
POOLS: tuple[Pool, ...] = ("max", "avg", "none")
PADDINGS: tuple[Padding, ...] = ("same", "valid")
HEADS: tuple[Head, ...] = ("flatten", "gap")
OPTIMIZERS: tuple[Optimizer, ...] = ("adam", "adamw", "sgd")
SCHEDULES: tuple[Schedule, ...] = ("constant", "cosine", "onecycle")


@dataclass(frozen=True)
class ConvBlock:
    """``convs`` convolutions of ``filters`` channels, then an optional 2x2 pooling.

    ``padding='same'`` keeps the spatial size; ``'valid'`` shrinks it by ``kernel - 1`` per conv.
    """

    filters: int
    convs: int = 1
    kernel: int = 3
    padding: Padding = "same"
    pool: Pool = "max"


@dataclass(frozen=True)
class Architecture:
    """A plain CNN: conv blocks, then a head (flatten or global average pool) and dense layers.

    ``conv_dropout`` follows every pooling; ``dense_dropout`` follows every hidden dense layer.
    """

    blocks: tuple[ConvBlock, ...]
    dense: tuple[int, ...] = (128,)
    activation: Activation = "relu"
    batch_norm: bool = False
    conv_dropout: float = 0.0
    dense_dropout: float = 0.0
    head: Head = "flatten"
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10


@dataclass(frozen=True)
class Augment:
    """Per-batch augmentation done on the device, in this order: rotation, crop, flip, erasing.

    ``rotate`` is the largest angle in degrees either way; ``crop_pad`` pads with zeros (the background).
    """

    crop_pad: int = 0
    flip: bool = False
    erasing: float = 0.0
    # Last, with a default: configs saved before rotation existed load unchanged (no rotation).
    rotate: float = 0.0

    @property
    def geometric(self) -> bool:
        """Whether the images are moved or mirrored (rotation, crop or flip), the augmentation that ranks
        low after a few epochs and high after many (docs/defaults.md, the finals). Erasing alone is not."""
        return self.rotate > 0 or self.crop_pad > 0 or self.flip


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, learning-rate schedule, regularisation, batch size, epochs."""

    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 10
    schedule: Schedule = "constant"
    label_smoothing: float = 0.0
    augment: Augment = field(default_factory=Augment)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial decides: the architecture and how to train it."""

    arch: Architecture
    train: TrainConfig


def to_dict(cfg: TrialConfig) -> dict[str, Any]:
    """A JSON-friendly dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> TrialConfig:
    """Rebuild a :class:`TrialConfig` from :func:`to_dict` output, strictly.

    A config.json may come from anywhere, so every value is checked against its field's type
    before anything is built: unknown keys, a string where a number belongs, a bool where an
    integer belongs, a non-finite float or a value outside a ``Literal`` raise ``TypeError`` or
    ``ValueError`` naming the field (sizes are bounded later, by :func:`space.model.build_model`).
    """
    _fields(TrialConfig, data, "config", nested=("arch", "train"))  # no unknown keys at the top either
    arch = _fields(Architecture, data["arch"], "arch", nested=("blocks", "dense"))
    arch["blocks"] = tuple(
        ConvBlock(**_fields(ConvBlock, b, f"arch.blocks[{i}]")) for i, b in enumerate(_items(data["arch"], "blocks"))
    )
    arch["dense"] = tuple(_check(d, int, f"arch.dense[{j}]") for j, d in enumerate(_items(data["arch"], "dense")))
    train = _fields(TrainConfig, data["train"], "train", nested=("augment",))
    train["augment"] = Augment(**_fields(Augment, data["train"].get("augment", {}), "train.augment"))
    return TrialConfig(arch=Architecture(**arch), train=TrainConfig(**train))


def _items(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list | tuple):
        raise TypeError(f"arch.{key} must be a list, not {type(value).__name__}")
    return list(value)


def _fields(cls: type, data: Any, where: str, *, nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scalar fields of dataclass ``cls`` from ``data``, each checked against its annotation."""
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise TypeError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    return {k: _check(v, hints[k], f"{where}.{k}") for k, v in data.items() if k not in nested}


def _check(value: Any, hint: Any, where: str) -> Any:
    if typing.get_origin(hint) is Literal:
        if not isinstance(value, str) or value not in typing.get_args(hint):
            raise ValueError(f"{where} must be one of {', '.join(typing.get_args(hint))}, not {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TypeError(f"{where} must be a finite number, not {value!r}")
        return float(value)
    raise TypeError(f"{where}: unexpected field type {hint!r}")  # a new field type: teach _check about it
