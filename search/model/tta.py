"""Flip test-time augmentation: a model that averages each image with its mirror image.

Fashion-MNIST's garments are left-right symmetric enough that a network trained with random
flips sees a mirrored image as just another sample; averaging the softmax over an image and its
mirror image removes part of its error at the cost of a second forward pass. Whether that helps
a given model is measured, never assumed: every completed trial that trained with flips records
its last validation accuracy alone and with the mirror images (user attribute ``flip_tta``, set by
:mod:`search.tune.objective`), and ``export-best`` ships the average only when it beat the plain
accuracy on the validation split (:func:`validation_says`). The test set plays no part in the choice.

A shipped model carries ``"test_time_augmentation": "flip"`` in its config.json; ``load_model``
then wraps the network in :class:`FlipAveraged`, so ``predict``, ``evaluate`` and the exported
ONNX/TorchScript graphs all compute what the headline test accuracy measured. The plain network's
test accuracy is recorded beside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search.metrics import averaged

FLIP = "flip"  # config.json's "test_time_augmentation" for a model that averages with mirror images


class FlipAveraged(nn.Module):
    """``model`` averaged over each image and its left-right mirror image.

    Returns the log of the mean softmax: log-probabilities, which are logits like any others (their
    softmax is the averaged probabilities, their argmax the averaged prediction)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.model(torch.cat([x, x.flip(-1)]))  # one batch of twice the images: one forward pass
        return averaged(both[: x.shape[0]], both[x.shape[0] :])


def with_tta(model: nn.Module, tta: str | None) -> nn.Module:
    """``model`` as it predicts with test-time augmentation ``tta`` (None: as it is)."""
    if tta is None:
        return model
    if tta != FLIP:
        raise ValueError(f"unknown test-time augmentation {tta!r}; fsearch knows {FLIP!r}")
    return FlipAveraged(model)


def validation_says(flip_attr: Any) -> bool:
    """Whether a trial's recorded ``flip_tta`` ({"plain": acc, "flip": acc} on its validation split, one
    model) shows the mirror-image average ahead of the plain accuracy. No record: no (nothing was measured)."""
    if not isinstance(flip_attr, dict):
        return False
    try:
        return float(flip_attr["flip"]) > float(flip_attr["plain"])
    except (KeyError, TypeError, ValueError):
        return False
