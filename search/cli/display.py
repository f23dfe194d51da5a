"""The live display of ``fsearch run`` (rich): counts, best so far, current trial, epoch bar.

It implements :class:`~search.tune.objective.TrialObserver` (one lane per worker process, see
:mod:`search.tune.workers`) and an Optuna trial-end callback; the objective and the runner know
nothing of rich. Each trial that trains also gets one log line, so a non-interactive log (CI)
shows the search too. Over-budget draws are only counted: a default search skips dozens of
them in milliseconds, and a line each would bury the trials that trained.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
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
from rich.table import Table
from rich.text import Text

from search.plan import Plan
from search.store.record import TrialRecord
from search.train import EpochStats


def _num(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def describe_params(params: Mapping[str, Any]) -> str:
    """The key architecture and training choices of a trial in one line, most telling first, e.g.
    ``conv 32x2 64x2 · fc 256 · gelu bn · sgd 0.05 cosine bs128 · crop 1 flip``.

    A conv block is its filters, with ``xN`` when it has N > 1 convolutions; ``k5`` marks 5x5 kernels
    (3x3 otherwise); the learning rate follows the optimiser; augmentations are named when in use.
    Dropouts, weight decay, label smoothing and pooling are left out: ``fsearch show --json`` and the
    dashboard have them all.
    """
    p = params
    blocks = [
        f"{p.get(f'b{i}_filters', '?')}" + (f"x{p[f'b{i}_convs']}" if p.get(f"b{i}_convs", 1) != 1 else "")
        for i in range(int(p.get("n_blocks", 0)))
    ]
    kernel = [f"k{p['kernel']}"] if p.get("kernel", 3) != 3 else []  # 3x3 unless said otherwise
    parts = [" ".join(["conv", *blocks, *kernel])]
    dense = [str(p.get(f"dense{j}_units", "?")) for j in range(int(p.get("dense_layers", 0)))]
    head = ["gap"] if p.get("head") == "gap" else []
    if head or dense:
        parts.append(" ".join([*head, *(["fc", "-".join(dense)] if dense else [])]))
    parts.append(" ".join([str(p.get("activation", "?")), *(["bn"] if p.get("batch_norm") else [])]))
    optimizer = str(p.get("optimizer", "?"))
    lr = p.get("sgd_lr" if optimizer == "sgd" else "adam_lr")
    train = [optimizer, *([_num(lr)] if lr is not None else []), str(p.get("schedule", "?"))]
    if "batch_size" in p:
        train.append(f"bs{p['batch_size']}")
    parts.append(" ".join(train))
    augment = [f"crop {p['crop_pad']}"] if p.get("crop_pad") else []
    augment += ["flip"] if p.get("flip") else []
    augment += [f"erase {_num(p['erasing'])}"] if p.get("erasing") else []
    augment += [f"rotate {_num(p['rotate'])}"] if p.get("rotate") else []
    parts.append(" ".join(augment) or "no augmentation")
    return " · ".join(parts)


def describe_trial(trial: FrozenTrial) -> str:
    """:func:`describe_params`, led by where the trial came from: a finalist names its screen trial, a
    trial queued by hand its preset, a sampled one how the sampler drew it (when it says) and near which trial."""
    r = TrialRecord(trial)
    lead = [f"final of {r.parent}"] if r.stage == "final" else []
    near = f" near {r.near}" if r.near is not None else ""
    lead += [f"preset {r.preset}"] if r.preset else [f"{r.drawn_by} draw{near}"] if r.drawn_by else []
    return " · ".join([*lead, describe_params(trial.params)])


def _clock(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%H:%M")


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def one_line(text: str, style: str = "") -> Text:
    """``text`` on a single line, cut with an ellipsis where the terminal ends."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def trials_table(title: str, trials: Sequence[FrozenTrial], *, speed: bool) -> Table:
    """One row per trial with its configuration on one line; ``speed``: images/s, else training seconds."""
    table = Table(title=title)
    for col in ("trial", "val acc", "epochs", "params", "MMACs", "img/s" if speed else "train s"):
        table.add_column(col, justify="right", no_wrap=True)
    # Wrappable, so that it is the column that gives way at 80 columns; its cells stay one line each.
    table.add_column("configuration")
    for t in trials:
        r = TrialRecord(t)
        timing = f"{r.images_per_second:,.0f}" if speed else f"{r.train_seconds:.0f}"
        table.add_row(
            str(t.number), f"{t.value:.4f}" if t.value is not None else "-",
            f"{r.epochs_run:g}" if r.epochs_run is not None else "", _count(r.parameters), f"{r.macs / 1e6:.1f}",
            timing, one_line(describe_trial(t)),
        )  # fmt: skip
    return table


class SearchDisplay:
    """Context manager that renders the search live on ``console``."""

    def __init__(self, console: Console, *, total_trials: int, max_epochs: int, header: str) -> None:
        self.console = console
        self.max_epochs = max_epochs
        self.header = header
        self.total_trials = total_trials
        self.counts = {"complete": 0, "pruned": 0, "fail": 0}
        self.skipped = 0  # over-budget draws: counted, not logged
        self.plan_started: float | None = None
        self.plan_line = ""
        self.shown_plan: tuple[Plan, float] | None = None  # the plan shown last, and when its finals end
        self.best: tuple[float, int] | None = None
        self.trials = Progress(
            TextColumn("[bold]trials"), BarColumn(bar_width=None), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=console,
        )  # fmt: skip
        self.trials_task = self.trials.add_task("trials", total=total_trials)
        self.lanes: dict[int, _Lane] = {}
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)

    def _status(self) -> Text:
        c = self.counts
        counts = f"complete {c['complete']} · pruned {c['pruned']} · failed {c['fail']}"
        skipped = f" · skipped {self.skipped} over budget" if self.skipped else ""
        best = f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "best -"
        plan = ("\n" + self.plan_line) if self.plan_line else ""
        return Text.assemble(
            (self.header, "bold"), "\n", counts, skipped, "\n", (best, "green"), (plan, "dim"),
            no_wrap=True, overflow="ellipsis",
        )  # fmt: skip

    def _render(self) -> Group:
        lanes = [part for _, lane in sorted(self.lanes.items()) for part in (lane.current, lane.bar)]
        return Group(self._status(), *lanes, self.trials)

    def lane(self, index: int) -> _Lane:
        """The current trial and epoch bar of worker process ``index``, labelled with its number."""
        return self._lane(index, label=f"worker {index}")

    def _lane(self, index: int, *, label: str) -> _Lane:
        if index not in self.lanes:
            self.lanes[index] = _Lane(self, label)
            self.refresh()
        return self.lanes[index]

    def show_plan(self, plan: Plan) -> None:
        """The time plan, once made, after the screen and when the search ends: a log line, a status line with the
        stages' clock times, and the finals added to the trials bar."""
        self.console.log(plan.describe())
        now = time.time()
        if self.plan_started is None:
            self.plan_started = now
        screen_end = self.plan_started + plan.screen_s
        finals_end = max(now, screen_end) + plan.finals_s
        self.shown_plan = (plan, finals_end)
        self._plan_line(screen_end)
        self.trials.update(self.trials_task, total=self.total_trials + plan.finalists)

    def screen_moved(self, end: float, why: str) -> None:
        """The screen's end moved (``run_search``'s ``on_screen_end``, wall clock): a log line, and the status
        line's screen time; the finals and the export keep their planned ends (the move gives the finals time)."""
        self.console.log(f"the screen now ends by {_clock(end)}: {why}")
        self._plan_line(end)

    def _plan_line(self, screen_end: float) -> None:
        if self.shown_plan is None:
            return
        plan, finals_end = self.shown_plan
        export_end = finals_end + plan.export_expected_s()
        self.plan_line = (
            f"screen by {_clock(screen_end)} · {plan.finalists} finalists x {plan.final_epochs} epochs to "
            f"{_clock(finals_end)} · then export-best, {plan.export_words()} to {_clock(export_end)}"
        )
        self.refresh()

    def refresh(self) -> None:
        self.live.update(self._render())

    def __enter__(self) -> SearchDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    # TrialObserver: a search in this process has one lane, and needs no label.
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self._lane(0, label="").trial_started(number, params)

    def step(self, done: int, total: int) -> None:
        self._lane(0, label="").step(done, total)

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        self._lane(0, label="").epoch_ended(number, stats)

    # Optuna callback
    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        record = TrialRecord(trial)
        if record.over_budget:
            self.skipped += 1
            self.refresh()
            return
        state = trial.state.name.lower()
        self.counts[state] = self.counts.get(state, 0) + 1
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            if self.best is None or trial.value > self.best[0]:
                self.best = (trial.value, trial.number)
            epochs = f"{record.epochs_run:g}" if record.epochs_run is not None else "?"
            detail = f"val acc {trial.value:.4f} in {epochs} epoch{'' if epochs == '1' else 's'}"
        else:
            detail = record.reason or "no reason recorded"
        secs = trial.duration.total_seconds() if trial.duration else 0.0
        style = {"complete": "green", "pruned": "yellow"}.get(state, "red")
        self.console.log(f"trial {trial.number} [{style}]{state}[/]: {detail} ({secs:.0f}s)")
        self.trials.advance(self.trials_task)
        self.refresh()


class _Lane:
    """One worker's part of the display: its trial's configuration on one line, its epoch bar below."""

    def __init__(self, display: SearchDisplay, label: str) -> None:
        self.display = display
        self.prefix = f"{label} · " if label else ""
        self.current = one_line(f"{self.prefix}waiting", style="dim")
        self.bar = Progress(
            TextColumn("  {task.description}"), BarColumn(bar_width=None), TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=display.console,
        )  # fmt: skip
        self.task = self.bar.add_task("epoch", total=1, last="")

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.current = one_line(f"{self.prefix}trial {number}: {describe_params(params)}", style="dim")
        self.bar.reset(self.task, description=f"epoch 1/{self.display.max_epochs}", total=1, last="")
        self.display.refresh()

    def step(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        # Mid-epoch evaluations (--evals-per-epoch) update the label but keep the epoch's bar going.
        max_epochs = self.display.max_epochs
        current = min(int(stats.epochs_done) + 1, max_epochs)
        last = f"val acc {stats.val_acc:.4f} @ epoch {stats.epochs_done:.3g}" if stats.val_acc is not None else ""
        self.bar.update(self.task, description=f"epoch {current}/{max_epochs}", last=last)
