"""The events a worker process sends its parent, and both ends of them.

A worker trains in its own process and cannot touch the parent's display. Its :class:`QueueObserver`
puts what the display needs on a multiprocessing queue as ``(kind, lane, payload)``: ``start``,
``step``, ``epoch`` and ``end`` of a trial, and ``user_error`` or ``crash`` when the worker fails.
The parent's :class:`Relay` reads them and hands each to the worker's lane or the trial-end
callback. :class:`StopRequest` is how a signal reaches training, in a worker or in-process: at the next event.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from typing import TYPE_CHECKING, Any, Protocol

from search.errors import Interrupted

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from search.train import EpochStats
    from search.tune.objective import TrialObserver
    from search.tune.session import TrialEndCallback

STEP_EVENT_EVERY_S = 0.25  # progress-bar updates a worker sends at most this often


class Lanes(Protocol):
    """A display with one lane (current trial and epoch bar) per worker."""

    def lane(self, index: int) -> TrialObserver: ...


class StopRequest:
    """SIGINT/SIGTERM, acted on at the next safe point.

    A raise from the handler itself can land in a weakref callback or a finaliser (an import lock's,
    SQLAlchemy's), where Python prints the exception and swallows it: the search would go on training.
    So the handler records the signal, and the observer's calls (each batch, each report, each trial
    start) raise it inside the objective, so Optuna marks the trial failed. A worker's handler only
    records: later signals (Ctrl+C reaches a worker from the terminal and again from the parent) change
    nothing. The in-process search's handler (``raise_at_once``) also raises at once, as Python's own
    Ctrl+C does, so that it stops work that has no safe points (loading the data); the record is the
    fallback for a raise that was swallowed.
    """

    def __init__(self, *, raise_at_once: bool = False) -> None:
        self.signum: int | None = None
        self.raise_at_once = raise_at_once

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if self.raise_at_once:
            raise Interrupted(signum)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


class CheckedObserver:
    """A :class:`~search.tune.objective.TrialObserver` whose every call first raises the signal ``stop`` has
    recorded: the safe points of :class:`StopRequest`, around the in-process display's observer or a worker's
    :class:`QueueObserver`."""

    def __init__(self, inner: TrialObserver, stop: StopRequest) -> None:
        self.inner, self.stop = inner, stop

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.stop.check()
        self.inner.trial_started(number, params)

    def step(self, done: int, total: int) -> None:
        self.stop.check()
        self.inner.step(done, total)

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        self.stop.check()
        self.inner.epoch_ended(number, stats)


class CheckedLanes:
    """:class:`Lanes` whose observers are :class:`CheckedObserver`: with several workers, the parent's
    safe points are the workers' events it relays."""

    def __init__(self, inner: Lanes, stop: StopRequest) -> None:
        self.inner, self.stop = inner, stop

    def lane(self, index: int) -> TrialObserver:
        return CheckedObserver(self.inner.lane(index), self.stop)


class QueueObserver:
    """A worker's :class:`~search.tune.objective.TrialObserver` that sends its events to the parent.
    The worker wraps it in a :class:`CheckedObserver`, which stops the worker at the first event after a
    signal."""

    def __init__(self, events: Any, lane: int) -> None:
        self.events, self.lane, self._last_step = events, lane, 0.0
        self.number: int | None = None  # the trial started and not yet ended

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.number = number
        self.events.put(("start", self.lane, (number, params)))

    def step(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last_step >= STEP_EVENT_EVERY_S or done == total:
            self._last_step = now
            self.events.put(("step", self.lane, (done, total)))

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        # The validation logits stay here: the display needs the numbers only.
        self.events.put(("epoch", self.lane, (number, dataclasses.replace(stats, val_logits=None))))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.number = None
        self.events.put(("end", self.lane, trial))

    def interrupted(self, study: optuna.Study) -> None:
        """Send the end of the trial an interrupt has just failed, as of any trial: Optuna calls no callback
        for a trial that a KeyboardInterrupt ends, and the parent's display would never hear of it."""
        from optuna.trial import TrialState

        if self.number is None:  # between trials: none was failed
            return
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number == self.number:
                self(study, trial)


class Relay:
    """The parent's side: hands each event to the lane it belongs to, or to the trial-end callback."""

    def __init__(self, study: optuna.Study, lanes: Lanes | None, on_trial_end: TrialEndCallback | None) -> None:
        self.study, self.lanes, self.on_trial_end = study, lanes, on_trial_end
        self.user_errors: list[str] = []
        self.crashes: list[str] = []

    def handle(self, kind: str, lane: int, payload: Any) -> None:
        if kind == "user_error":
            self.user_errors.append(payload)
        elif kind == "crash":
            self.crashes.append(payload)
        elif kind == "end":
            if self.on_trial_end is not None:
                self.on_trial_end(self.study, payload)
        elif self.lanes is not None:
            observer = self.lanes.lane(lane)
            if kind == "start":
                observer.trial_started(*payload)
            elif kind == "step":
                observer.step(*payload)
            elif kind == "epoch":
                observer.epoch_ended(*payload)

    def drain(self, events: Any, wait: float) -> None:
        """Handle every event there is, waiting up to ``wait`` seconds for the first."""
        try:
            item = events.get(timeout=wait) if wait > 0 else events.get_nowait()
            while True:
                self.handle(*item)
                item = events.get_nowait()
        except queue.Empty:
            pass
