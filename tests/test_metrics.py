"""The figures a trial and an export draw (the rest of the default suite writes a placeholder instead: see
``_placeholder_figures`` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import search.metrics
from search.data import CLASSES
from search.train import EpochStats


def _pixels(path: Path) -> tuple[tuple[int, int], int]:
    """The image's size and how many different colours it holds."""
    with Image.open(path) as image:
        return image.size, len(image.convert("RGB").getcolors(maxcolors=1 << 24) or ())


@pytest.mark.real_figures
def test_a_confusion_matrix_is_drawn_with_its_classes_and_counts(tmp_path: Path) -> None:
    confusion = [[90 if i == j else i + j for j in range(10)] for i in range(10)]
    search.metrics.plot_confusion_matrix(tmp_path / "cm.png", confusion, CLASSES, title="validation")
    size, colours = _pixels(tmp_path / "cm.png")
    assert size == (880, 770)  # 8 x 7 inches at 110 dpi
    assert colours > 50  # the heat map's shades, the labels and the counts, not a blank page


@pytest.mark.real_figures
@pytest.mark.parametrize("validation", [True, False])
def test_training_curves_are_drawn_with_or_without_validation(tmp_path: Path, validation: bool) -> None:
    history = [
        EpochStats(epoch=e, train_loss=1 / e, train_acc=0.5 + e / 10, val_loss=1.2 / e if validation else None,
                   val_acc=0.4 + e / 10 if validation else None, lr=0.01, seconds=1.0, images=300)
        for e in (1, 2, 3)
    ]  # fmt: skip
    search.metrics.plot_training_curves(tmp_path / "curves.png", history, test_accuracy=0.71)
    size, colours = _pixels(tmp_path / "curves.png")
    assert size == (1100, 440) and colours > 50


def test_every_module_that_holds_a_figure_is_patched_in_the_default_suite() -> None:
    """The default suite's placeholder figures reach the callers that import a figure by name, found, not listed."""
    from tests.conftest import FIGURES, figure_sites

    sites = {(module.__name__, name) for module, name, _ in figure_sites()}
    assert {("search.metrics", name) for name in FIGURES} <= sites
    assert ("search.model.retrain", "plot_training_curves") in sites  # imported by name there
