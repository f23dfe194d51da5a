"""The statistics of a validation accuracy (torch-free, so the CLI and the pruner import it without torch)."""

from __future__ import annotations

import math


def accuracy_noise(accuracy: float, images: int) -> float:
    """One standard error of an accuracy measured on ``images`` images (binomial: sqrt(p (1 - p) / n)): the least
    gap between two validation accuracies that says one is ahead (export-best's epoch rule, the screen's pruner)."""
    return math.sqrt(accuracy * (1 - accuracy) / max(images, 1))
