"""The reference models, and fsearch's own known good configurations, as parameters of the search space.

Presets are parameter dicts, not hand-built modules: ``preset_config`` replays them through
``replay`` (``suggest`` with Optuna's ``FixedTrial``), so a preset is built and trained by exactly the code
a searched trial uses, and ``fsearch run --warm-start`` can enqueue them as the first trials.
Parameter counts are the check that the builder reproduces each reference exactly.

Normalisation differs from some originals (they used ``Normalize(0.5, 0.5)``; fsearch always
uses the dataset's own mean and std), which does not change what the networks can learn.
What each preset is, and how the fsearch presets were measured: ``docs/space.md`` (Presets).
"""

from __future__ import annotations

from typing import Any

from space.config import TrialConfig
from space.sample import replay

_NO_AUG: dict[str, Any] = {
    "schedule": "constant",
    "label_smoothing": 0.0,
    "crop_pad": 0,
    "flip": False,
    "erasing": 0.0,
    "rotate": 0,
    "optimizer": "adam",
    "adam_lr": 1e-3,
    "activation": "relu",
    "batch_norm": False,
}


def _blocks(*specs: tuple[int, int, str]) -> dict[str, Any]:
    params: dict[str, Any] = {"n_blocks": len(specs)}
    for i, (filters, convs, pool) in enumerate(specs):
        params |= {f"b{i}_filters": filters, f"b{i}_convs": convs, f"b{i}_pool": pool}
    return params


def _dense(*units: int) -> dict[str, Any]:
    return {"dense_layers": len(units)} | {f"dense{j}_units": u for j, u in enumerate(units)}


PRESETS: dict[str, dict[str, Any]] = {
    # conv 6@5x5 pad 2 -> pool -> conv 16@5x5 valid -> pool -> FC 400-120-84-10: 61,706 parameters.
    "lenet5": _NO_AUG
    | _blocks((6, 1, "max"), (16, 1, "max"))
    | {"kernel": 5, "padding": "valid", "conv_dropout": 0.0, "head": "flatten", "batch_size": 64}
    | _dense(120, 84)
    | {"dense_dropout": 0.0},
    # conv 32 -> conv 64 -> pool -> dropout .25 -> FC 12,544-128 -> dropout .5 -> 10: 1,625,866 parameters.
    "cnn2": _NO_AUG
    | _blocks((32, 1, "none"), (64, 1, "max"))
    | {"kernel": 3, "padding": "same", "conv_dropout": 0.25, "head": "flatten", "batch_size": 128}
    | _dense(128)
    | {"dense_dropout": 0.5},
    # 3 x [conv 3x3 (32, 64, 128), pool] -> FC 1,152-256 -> dropout .5 -> 10.
    "cnn3": _NO_AUG
    | _blocks((32, 1, "max"), (64, 1, "max"), (128, 1, "max"))
    | {"kernel": 3, "conv_dropout": 0.0, "head": "flatten", "batch_size": 64}
    | _dense(256)
    | {"dense_dropout": 0.5},
    # As cnn3 with FC 1,152-128 and dropout .4.
    "cnn3-fc128": _NO_AUG
    | _blocks((32, 1, "max"), (64, 1, "max"), (128, 1, "max"))
    | {"kernel": 3, "conv_dropout": 0.0, "head": "flatten", "batch_size": 64}
    | _dense(128)
    | {"dense_dropout": 0.4},
    # conv 6@3x3 -> pool -> conv 16@3x3 -> pool -> FC 400-120-84-10, rotations up to 10 degrees and flips. The
    # reference's convs are both unpadded (28 -> 26 -> 13 -> 11 -> 5), 60,074 parameters; in this space a first
    # block is always padded, and one unpadded 3x3 conv after it leaves 6x6 (an FC of 576). Two unpadded 3x3 convs
    # in block 1 bring it back to 5x5 (28 -> 14 -> 12 -> 10 -> 5), so the FC stays 400-120-84-10, at the cost of
    # one more conv 16->16 3x3 (2,320 parameters; its two convs see 5x5, as LeNet-5's second conv does):
    # 60 + 880 + 2,320 + 48,120 + 10,164 + 850 = 62,394 parameters.
    "lenet-aug": _NO_AUG
    | _blocks((6, 1, "max"), (16, 2, "max"))
    | {"kernel": 3, "padding": "valid", "conv_dropout": 0.0, "head": "flatten", "batch_size": 64}
    | _dense(120, 84)
    | {"dense_dropout": 0.0, "flip": True, "rotate": 10},
    # Not a reference: the best trial of an earlier fsearch search (docs/space.md, Presets).
    "fsearch-r6": _blocks((22, 2, "max"))
    | {"kernel": 3, "padding": "same", "head": "flatten", "activation": "gelu", "batch_norm": True}
    | {"conv_dropout": 0.0161, "dense_dropout": 0.1619}
    | _dense(315)
    | {"optimizer": "sgd", "sgd_lr": 0.06599, "weight_decay": 0.001641, "batch_size": 64, "schedule": "cosine"}
    | {"label_smoothing": 0.08827, "crop_pad": 0, "flip": False, "erasing": 0.1935, "rotate": 0},
    # Not a reference: a VGG-style net written by hand (19.1M MACs, over the search's default --max-mmacs),
    # its augmentation picked by validation accuracy (docs/space.md, Presets). `fsearch run` queues it as a new
    # study's first trial (--known-best), and the search ranks it with its own trials at their fidelity.
    "fsearch-w1": _blocks((32, 2, "max"), (64, 2, "max"))
    | {"kernel": 3, "padding": "same", "head": "flatten", "activation": "gelu", "batch_norm": True}
    | {"conv_dropout": 0.05, "dense_dropout": 0.3}
    | _dense(256)
    | {"optimizer": "sgd", "sgd_lr": 0.05, "weight_decay": 5e-4, "batch_size": 128, "schedule": "cosine"}
    | {"label_smoothing": 0.1, "crop_pad": 1, "flip": True, "erasing": 0.0, "rotate": 0},
}

# Epochs of each preset when it is trained on its own (`fsearch train`): a reference's documented recipe, and
# for fsearch's own presets the epochs they were measured with.
PRESET_EPOCHS = {
    "lenet5": 20,
    "cnn2": 20,
    "cnn3": 10,
    "cnn3-fc128": 50,
    "lenet-aug": 5,
    "fsearch-r6": 11,
    "fsearch-w1": 30,
}


def preset_config(name: str, *, epochs: int | None = None) -> TrialConfig:
    """The :class:`TrialConfig` of a named preset, through the search space's own :func:`~space.sample.replay`."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return replay(PRESETS[name], epochs=epochs or PRESET_EPOCHS[name])
