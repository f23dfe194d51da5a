"""The live progress of one retraining (``export-best``, ``train``): an epoch bar and a step bar.

Driven by :func:`search.train.train`'s ``on_step`` / ``on_epoch_end`` callbacks, so the library
knows nothing of rich. The bars appear once :meth:`TrainingProgress.start` is told how many
epochs will run; each finished epoch also gets a log line, so a non-interactive log shows it.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from search.train import EpochStats
from search.tune.events import StopRequest


class TrainingProgress:
    """Context manager rendering the retraining on ``console``. Each step and epoch first raises a signal ``stop``
    recorded (the safe points of :class:`~search.tune.events.StopRequest`)."""

    def __init__(self, console: Console, stop: StopRequest) -> None:
        self.console, self.stop = console, stop
        self.progress = Progress(
            TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
            console=console, transient=True,
        )  # fmt: skip
        self.epochs = 0
        self.epoch_task: TaskID | None = None
        self.step_task: TaskID | None = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.epoch_task is not None:
            self.progress.stop()

    def start(self, epochs: int) -> None:
        """Show the bars for a run of ``epochs`` epochs."""
        self.epochs = epochs
        self.epoch_task = self.progress.add_task("epochs", total=epochs, last="")
        self.step_task = self.progress.add_task("steps", total=1, last="")
        self.progress.start()

    def on_step(self, done: int, total: int) -> None:
        self.stop.check()
        if self.step_task is not None:
            self.progress.update(self.step_task, completed=done, total=total)

    def on_epoch_end(self, stats: EpochStats) -> None:
        self.stop.check()
        line = f"train loss {stats.train_loss:.4f} · train acc {stats.train_acc:.4f}"
        self.console.log(f"epoch {stats.epoch}/{self.epochs}: {line} ({stats.seconds:.1f}s){self.ends_near(stats)}")
        if self.epoch_task is not None and self.step_task is not None:
            self.progress.update(self.epoch_task, completed=stats.epoch, last=line)
            self.progress.reset(self.step_task, total=1, last="")

    def ends_near(self, stats: EpochStats) -> str:
        """Where the time limit ends the run at this epoch's pace, when that is short of the epochs planned: the
        schedule runs on the clock (:class:`~search.optim.Pace`), so on a machine slower than timed the count
        planned is not the count trained, and the line says so ("" otherwise). A retraining evaluates once an
        epoch, so ``stats.seconds`` is the last epoch's."""
        if stats.time_left_s is None or stats.seconds <= 0:
            return ""
        at_pace = stats.epochs_done + stats.time_left_s / stats.seconds
        if at_pace >= self.epochs - 0.5:
            return ""
        return f"; at this pace the time limit ends training near epoch {at_pace:.0f}"
