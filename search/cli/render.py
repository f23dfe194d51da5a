"""Rich renderings of a retraining report, test metrics and predictions (used by the CLI only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from search.model.predict import Failure, Prediction
from search.model.retrain import ExportReport


def metrics_table(m: dict[str, Any]) -> Table:
    """Per-class precision, recall, F1 and support, then the macro F1."""
    table = Table(title=f"Test set ({m['test_images']:,} images): accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f}")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in m["per_class"]:
        table.add_row(
            row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"])
        )
    table.add_row("macro F1", "", "", f"{m['macro_f1']:.4f}", "", style="bold")
    return table


def print_report(console: Console, report: ExportReport) -> None:
    """The test result of a retraining, its metrics table and where it was saved."""
    m = report.metrics
    tta = f" with flip TTA (plain network {m['plain']['accuracy']:.4f})" if m.get("plain") else ""
    limited = f" (the plan's {m['time_limit_s'] / 60:.0f} min ended it)" if m.get("time_limited") else ""
    console.print(
        f"[bold]test accuracy {m['accuracy']:.4f}[/] (loss {m['loss']:.4f}){tta} "
        f"after {report.epochs:g} epochs{limited} on {m['train_images']:,} images "
        f"in {report.train_seconds / 60:.1f} min on {report.device}"
    )
    console.print(metrics_table(m))
    console.print(f"Saved to {report.directory}: {', '.join(report.files)}", markup=False)


def predictions_table(results: list[Prediction | Failure], *, top: int, title: str) -> Table:
    """One row per readable image: the class, its confidence and, with ``top`` > 1, the runners-up."""
    table = Table(title=title)
    for col in ("image", "class", "confidence", *([f"top {top}"] if top > 1 else [])):
        table.add_column(col, overflow="fold")
    for r in results:
        if isinstance(r, Prediction):
            others = [" · ".join(f"{c} {p:.3f}" for c, p in r.top)] if top > 1 else []
            table.add_row(r.image, r.label, f"{r.confidence:.3f}", *others)
    return table
