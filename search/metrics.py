"""Test-set metrics, the per-epoch history and the plots of a retrained model.

Metrics are computed with torch from the logits that :func:`search.train.evaluate` returns:
per-class precision, recall and F1, and the confusion matrix (rows: true class, columns:
predicted). Plots use matplotlib's Agg canvas directly (no pyplot, so no global figure state
and no display needed); matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from search.train import EpochStats

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images")


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A class never predicted (or absent) has precision (recall) 0, not NaN: JSON has no NaN.
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall/F1/support and the confusion matrix, JSON-ready."""
    logits, labels = logits.float().cpu(), labels.cpu()
    k = len(classes)
    pred = logits.argmax(1)
    confusion = torch.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    tp = confusion.diag().double()
    precision = _safe_div(tp, confusion.sum(0).double())
    recall = _safe_div(tp, confusion.sum(1).double())
    f1 = _safe_div(2 * precision * recall, precision + recall)
    per_class = [
        {
            "class": name, "precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6), "support": int(confusion[i].sum()),
        }
        for i, name in enumerate(classes)
    ]  # fmt: skip
    return {
        "test_images": len(labels),
        "accuracy": float((pred == labels).double().mean()) if len(labels) else 0.0,
        "loss": float(F.cross_entropy(logits, labels)) if len(labels) else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def averaged(logits: torch.Tensor, mirrored_logits: torch.Tensor) -> torch.Tensor:
    """The log of the mean softmax of each image's logits and its mirror image's: what
    :class:`search.model.tta.FlipAveraged` returns, from logits already computed (the search's validation
    reuses its last report's)."""
    probs = (torch.softmax(logits.float(), dim=1) + torch.softmax(mirrored_logits.float(), dim=1)) / 2
    return torch.log(probs.clamp_min(1e-12))


def write_history(path: Path, history: Sequence[EpochStats]) -> None:
    """One CSV row per epoch: loss and accuracy (validation columns empty when there was none)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HISTORY_FIELDS)
        for e in history:
            writer.writerow(
                [
                    e.epoch, f"{e.train_loss:.6f}", f"{e.train_acc:.6f}",
                    "" if e.val_loss is None else f"{e.val_loss:.6f}", "" if e.val_acc is None else f"{e.val_acc:.6f}",
                    f"{e.lr:.6g}", f"{e.seconds:.3f}", e.images,
                ]
            )  # fmt: skip


def plot_confusion_matrix(path: Path, confusion: list[list[int]], classes: Sequence[str], *, title: str) -> None:
    """A heat map of the confusion matrix with the counts written in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins, not layout="constrained": that halves the time of a plot (~0.6 s here), which a
    # search pays for every completed trial's confusion matrix.
    fig = Figure(figsize=(8, 7))
    fig.subplots_adjust(left=0.17, bottom=0.18, right=0.97, top=0.94)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    matrix = torch.tensor(confusion, dtype=torch.float64)
    image = ax.imshow(matrix.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = float(matrix.max()) / 2 if matrix.numel() else 0.0
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")  # fmt: skip
    fig.savefig(path, dpi=110)


def plot_training_curves(path: Path, history: Sequence[EpochStats], *, test_accuracy: float | None) -> None:
    """Training loss and accuracy per epoch (validation too when there was one), test accuracy marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4))
    fig.subplots_adjust(left=0.07, bottom=0.13, right=0.98, top=0.91, wspace=0.22)  # fixed: see above
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [e.epoch for e in history]
    loss_ax.plot(epochs, [e.train_loss for e in history], marker="o", label="train")
    acc_ax.plot(epochs, [e.train_acc for e in history], marker="o", label="train (augmented batches)")
    if any(e.val_acc is not None for e in history):
        loss_ax.plot(epochs, [e.val_loss for e in history], marker="o", label="validation")
        acc_ax.plot(epochs, [e.val_acc for e in history], marker="o", label="validation")
    if test_accuracy is not None and epochs:
        acc_ax.scatter([epochs[-1]], [test_accuracy], marker="*", s=160, color="C3", zorder=3,
                       label=f"test {test_accuracy:.4f}")  # fmt: skip
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch ({sum(e.images for e in history[:1]):,} images per epoch)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=110)
