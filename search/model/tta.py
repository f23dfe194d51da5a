"""Flip test-time augmentation: a model that averages each image with its mirror image.

Fashion-MNIST's garments are left-right symmetric enough that a network trained with random
flips sees a mirrored image as just another sample; averaging the softmax over an image and its
mirror image removes part of its error at the cost of a second forward pass. Whether that helps
a given model is measured, never assumed: every completed trial that trained with flips records
its last validation accuracy alone and with the mirror images (user attribute ``flip_tta``, set by
:mod:`search.tune.objective`), and ``export-best`` ships the average unless it was behind the plain
accuracy on the validation split by more than noise (:func:`validation_says`). The test set plays no
part in the choice.

A shipped model carries ``"test_time_augmentation": "flip"`` in its config.json; ``load_model``
then wraps the network in :class:`FlipAveraged`, so ``predict``, ``evaluate`` and the exported
ONNX/TorchScript graphs all compute what the headline test accuracy measured. The plain network's
test accuracy is recorded beside it.
"""

from __future__ import annotations

import math
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
    """Whether a trial's recorded ``flip_tta`` (its validation split, one model) lets flip TTA ship.

    It ships unless the mirror-image average was behind the plain network by more than the noise of the
    comparison: of the images whose answer it changed, ``plain_only`` (right only without it) exceeds
    ``flip_only`` (right only with it) by more than twice the binomial spread of their sum, a two-sigma
    McNemar (sign) test. A tie ships. One trial's reading rests on a few dozen images, while pooled over many
    trials flip averaging helps flip-trained networks of this space (docs/defaults.md), so a small deficit is
    read as noise, not as evidence against it. A reading recorded before the counts existed ships only when
    ``flip`` is above ``plain`` (the rule of its time). No record: no (nothing was measured)."""
    if not isinstance(flip_attr, dict):
        return False
    try:
        if "flip_only" in flip_attr and "plain_only" in flip_attr:
            gained, lost = int(flip_attr["flip_only"]), int(flip_attr["plain_only"])
            return lost - gained <= 2 * math.sqrt(lost + gained)
        return float(flip_attr["flip"]) > float(flip_attr["plain"])
    except (KeyError, TypeError, ValueError):
        return False
