"""The search space: ``suggest(trial)`` is the only place in fsearch that calls ``trial.suggest_*``.

Conditional parameters are conditional: a block's parameters exist only if the block does,
``padding`` only for shallow nets (valid padding would collapse a deep net's 28x28 input),
dense widths only for the dense layers that exist, the weight decay only for optimisers that
decouple it, the learning rate per optimiser family (Adam and SGD live on different scales).

Compute-aware bounds: the first blocks run at full resolution, so their width is capped lower;
each pooling halves the side and quarters the cost, so later blocks may be wider. The other
ranges are priors that pay off within a few epochs: a 50-trial search cannot afford learning
rates that diverge or regularisation too strong to fit in its budget.

Epochs are not searched: they are a fidelity set by the search (``--max-epochs``) and by
``export-best``, and are passed in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from optuna.trial import BaseTrial, FixedTrial

from space.config import (
    ACTIVATIONS,
    HEADS,
    OPTIMIZERS,
    PADDINGS,
    POOLS,
    SCHEDULES,
    Architecture,
    Augment,
    ConvBlock,
    Padding,
    TrainConfig,
    TrialConfig,
)

# Bump when the meaning of a parameter changes: studies record it and export-best checks it.
SPACE_VERSION = "3"  # 3: augmentation gained rotation

T = TypeVar("T")


def _pick(trial: BaseTrial, name: str, choices: tuple[T, ...]) -> T:
    """``suggest_categorical`` keeping the choices' type (e.g. a ``Literal``)."""
    return cast(T, trial.suggest_categorical(name, list(choices)))  # type: ignore[arg-type]


# Width range per block index: capped by the cost at that resolution; later blocks are floored
# because narrow deep blocks starve the head (block 0 keeps 6 so LeNet-5 stays a point of the space).
MIN_FILTERS = (6, 16, 24, 32)
MAX_FILTERS = (64, 128, 256, 256)
# Batch 512 converges too slowly for a few-epoch budget (docs/space.md).
BATCH_SIZES = (64, 128, 256)


def suggest_architecture(trial: BaseTrial) -> Architecture:
    n_blocks = trial.suggest_int("n_blocks", 1, 4)
    kernel = trial.suggest_categorical("kernel", [3, 5])
    # 'valid' padding shrinks every conv after the first block (LeNet-5 on 28x28 does exactly
    # this: its first conv is padded to stand in for the original 32x32 input).
    padding: Padding = _pick(trial, "padding", PADDINGS) if n_blocks <= 2 else "same"
    blocks = []
    for i in range(n_blocks):
        blocks.append(
            ConvBlock(
                filters=trial.suggest_int(f"b{i}_filters", MIN_FILTERS[i], MAX_FILTERS[i], log=True),
                convs=trial.suggest_int(f"b{i}_convs", 1, 3),
                kernel=kernel,
                padding="same" if i == 0 else padding,
                pool=_pick(trial, f"b{i}_pool", POOLS),
            )
        )
    head = _pick(trial, "head", HEADS)
    dense_layers = trial.suggest_int("dense_layers", 0, 2)
    dense = tuple(trial.suggest_int(f"dense{j}_units", 32, 512, log=True) for j in range(dense_layers))
    return Architecture(
        blocks=tuple(blocks),
        dense=dense,
        activation=_pick(trial, "activation", ACTIVATIONS),
        batch_norm=trial.suggest_categorical("batch_norm", [True, False]),
        conv_dropout=trial.suggest_float("conv_dropout", 0.0, 0.25),
        dense_dropout=trial.suggest_float("dense_dropout", 0.0, 0.5) if dense_layers else 0.0,
        head=head,
    )


def suggest_training(trial: BaseTrial, *, epochs: int) -> TrainConfig:
    optimizer = _pick(trial, "optimizer", OPTIMIZERS)
    if optimizer == "sgd":
        lr = trial.suggest_float("sgd_lr", 5e-3, 0.2, log=True)
    else:
        lr = trial.suggest_float("adam_lr", 2e-4, 5e-3, log=True)
    # Plain Adam couples weight decay with the gradient (L2); the references use none.
    weight_decay = 0.0 if optimizer == "adam" else trial.suggest_float("weight_decay", 1e-5, 5e-2, log=True)
    return TrainConfig(
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
        epochs=epochs,
        schedule=_pick(trial, "schedule", SCHEDULES),
        label_smoothing=trial.suggest_float("label_smoothing", 0.0, 0.1),
        augment=Augment(
            crop_pad=trial.suggest_int("crop_pad", 0, 2),
            flip=trial.suggest_categorical("flip", [True, False]),
            erasing=trial.suggest_float("erasing", 0.0, 0.25),
            # Degrees either way. Categorical, not a float range: "no rotation" stays a common draw (1 in 4)
            # instead of a point of measure zero, and 10 is the reference lenet-aug's RandomRotation(10).
            rotate=float(_pick(trial, "rotate", (0, 5, 10, 15))),
        ),
    )


def suggest(trial: BaseTrial, *, epochs: int) -> TrialConfig:
    """Sample (or, with a ``FixedTrial``, replay) one configuration of the search space."""
    return TrialConfig(arch=suggest_architecture(trial), train=suggest_training(trial, epochs=epochs))


class SpaceMismatch(ValueError):
    """Parameters this search space cannot replay: a value out of its range, or one missing or unknown to it."""


def replay(params: Mapping[str, Any], *, epochs: int, number: int = 0) -> TrialConfig:
    """The configuration that ``params`` (a trial's, a preset's) stand for: :func:`suggest` with a ``FixedTrial``,
    the one home of "parameters to configuration" (the export, the finals and the presets all replay through it).
    Strict, so that a trial of another space is refused rather than built as something else: ``FixedTrial`` only
    warns about a value outside this space's range, and ignores parameters the space never asks for."""
    fixed = FixedTrial(dict(params), number=number)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            cfg = suggest(fixed, epochs=epochs)
    except (ValueError, UserWarning) as exc:
        raise SpaceMismatch(str(exc)) from None
    extra = sorted(set(params) - set(fixed.params))
    if extra:
        raise SpaceMismatch(f"parameters it does not know: {', '.join(extra)}")
    return cfg
