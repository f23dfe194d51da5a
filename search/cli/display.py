"""The live display of ``fsearch run`` (rich): counts, best so far, current trial, epoch bar.

It implements :class:`~search.tune.objective.TrialObserver` (one lane per worker process, see
:mod:`search.tune.workers`) and an Optuna trial-end callback; the
objective and the runner know nothing of rich. Each finished trial also gets one log line, so
a non-interactive log (CI) shows the search too.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from search.train import EpochStats


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class SearchDisplay:
    """Context manager that renders the search live on ``console``."""

    def __init__(self, console: Console, *, total_trials: int, max_epochs: int, header: str) -> None:
        self.console = console
        self.max_epochs = max_epochs
        self.header = header
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.best: tuple[float, int] | None = None
        self.trials = Progress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console,
        )  # fmt: skip
        self.epochs = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=console,
        )  # fmt: skip
        self.trials_task = self.trials.add_task("trials", total=total_trials)
        self.lanes: dict[int, _Lane] = {}
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)

    def _status(self) -> Text:
        best = f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"
        c = self.counts
        return Text.assemble(
            (self.header + "\n", "bold"),
            f"complete {c['complete']} · pruned {c['pruned']} · failed {c['fail']} · ",
            (best, "green"),
        )

    def _render(self) -> Group:
        current = [lane.current for _, lane in sorted(self.lanes.items())]
        return Group(self._status(), *current, self.epochs, self.trials)

    def lane(self, index: int) -> _Lane:
        """The current trial and epoch bar of worker ``index`` (one lane when the search runs here)."""
        if index not in self.lanes:
            self.lanes[index] = _Lane(self, index)
            self.refresh()
        return self.lanes[index]

    def refresh(self) -> None:
        self.live.update(self._render())

    def __enter__(self) -> SearchDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    # TrialObserver (a search in this process has one lane)
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.lane(0).trial_started(number, params)

    def step(self, done: int, total: int) -> None:
        self.lane(0).step(done, total)

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        self.lane(0).epoch_ended(number, stats)

    # Optuna callback
    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = trial.state.name.lower()
        if trial.user_attrs.get("over_budget"):
            self.console.log(f"[dim]trial {trial.number} skipped: {trial.user_attrs.get('pruned_reason')}[/]")
            return
        self.counts[state] = self.counts.get(state, 0) + 1
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            if self.best is None or trial.value > self.best[0]:
                self.best = (trial.value, trial.number)
            detail = f"val acc {trial.value:.4f} in {trial.user_attrs.get('epochs_run', '?')} epochs"
        elif trial.state == TrialState.PRUNED:
            detail = trial.user_attrs.get("pruned_reason", "pruned")
        else:
            detail = trial.user_attrs.get("fail_reason", "failed")
        secs = trial.duration.total_seconds() if trial.duration else 0.0
        style = {"complete": "green", "pruned": "yellow"}.get(state, "red")
        self.console.log(f"trial {trial.number} [{style}]{state}[/]: {detail} ({secs:.0f}s)")
        self.trials.advance(self.trials_task)
        self.refresh()


class _Lane:
    """One worker's part of the display: its trial's parameters and its epoch bar."""

    def __init__(self, display: SearchDisplay, index: int) -> None:
        self.display, self.index = display, index
        self.prefix = f"w{index} " if index else ""
        self.current = Text("")
        self.task = display.epochs.add_task(f"{self.prefix}waiting", total=1, last="")

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.current = Text(f"{self.prefix}trial {number}: {format_params(params)}", style="dim")
        epochs = self.display.epochs
        epochs.reset(self.task, description=f"{self.prefix}epoch 1/{self.display.max_epochs}", total=1, last="")
        self.display.refresh()

    def step(self, done: int, total: int) -> None:
        self.display.epochs.update(self.task, completed=done, total=total)

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        # Mid-epoch evaluations (--evals-per-epoch) update the label but keep the epoch's bar going.
        max_epochs = self.display.max_epochs
        current = min(int(stats.epochs_done) + 1, max_epochs)
        last = f"val acc {stats.val_acc:.4f} @ epoch {stats.epochs_done:g}" if stats.val_acc is not None else ""
        self.display.epochs.update(self.task, description=f"{self.prefix}epoch {current}/{max_epochs}", last=last)
