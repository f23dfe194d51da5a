"""A stage's deadline that the parent process can bring forward while the stage runs.

The screen's end is planned before it starts, at the speed calibration measured on the reference network. When
the screen's leaders turn out slower than that (a network whose parameters, not its MACs, set its pace), the
finals of those leaders no longer fit the time the planned end leaves, and a run without finals ships the
screen's answer, whose order is known to invert at longer training. So after each screen trial the runner
works out how long the finals of the leaders so far need (:func:`search.tune.finals.screen_end`) and moves
this deadline to match; the workers read it at every report and before every trial.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


class Deadline:
    """A wall-clock time (``time.time()``) in shared memory: worker processes started with it (``spawn``) see
    the parent's moves."""

    def __init__(self, at: float) -> None:
        self._at = multiprocessing.get_context("spawn").Value("d", at)

    @property
    def at(self) -> float:
        return float(self._at.value)

    def move_to(self, at: float) -> None:
        self._at.value = at

    def passed(self) -> bool:
        return time.time() > self.at


class StopAtDeadline:
    """A trial-end callback: no new trial after the deadline (a trial running then stops at its next report)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, study: optuna.Study, _trial: FrozenTrial) -> None:
        if self.deadline.passed():
            study.stop()
