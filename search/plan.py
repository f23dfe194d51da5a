"""The time plan of a search: how the whole job's budget (search and export) is shared out.

``fsearch run`` measures how fast this machine trains the prior configuration (seconds per
image per million MACs, ``calibrate``), then plans three stages:

1. the **screen**: up to ``--trials`` sampled trials at a short fidelity (``--max-epochs``),
   pruned by successive halving; it stops at its deadline whatever is left of ``--trials``, or before it when
   they are done (on a GPU, in a minute or two of an hour's plan); it skips networks too large for the export
   to train ``MIN_EXPORT_EPOCHS`` in its time, or the reference's size if larger (``Plan.screen_cap``);
2. the **finals**: the best few screen trials, chosen for diversity, trained again with the same parameters on the same
   split at a longer fidelity (``final_epochs``), whose ranking matches the export's training better than the screen's;
3. the **export** (``fsearch export-best``): the best finalist retrained on all training images for ``export_epochs``
   epochs, fewer when the winner is costlier than the plan assumed, more (up to ``MAX_EXPORT_EPOCHS``) when cheaper.

Optuna cannot pause a trial and resume it later at a longer fidelity, so a finalist is a new trial with its screen
trial's parameters (user attributes ``stage=final``, ``parent=<number>``). The plan is stored on the study (user
attribute ``plan``) so that ``export-best`` follows it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from search.throughput import Throughput

FINAL_EPOCHS = 15  # the validation recipe table: the ranking after 15 epochs matches 30 (docs/defaults.md)
EXPORT_EPOCHS = 30  # the reference's epochs the plan sizes the export's time for: twice the finals' (docs/defaults.md)
# A winner whose export's time holds more epochs than that (smaller than the reference, or a search that ended early)
# trains up to this many in it; the plan takes no time from the screen for them (docs/defaults.md, export-best).
MAX_EXPORT_EPOCHS = 45
# The export's time is at least these epochs of the reference when the screen's share leaves room for them: below
# 15 an export epoch gains more validation accuracy than a screen's minute finds (docs/defaults.md, the time plan).
# Nor does the screen admit a larger network whose export would train fewer, unless no larger than the reference
# (Plan.screen_cap): at equal time on validation, sizes either way of the reference did worse (docs/defaults.md).
MIN_EXPORT_EPOCHS = 15
# export-best times one epoch of its configuration on a few thousand images, and that timing was up to a fifth off the
# epochs then trained, either way (docs/defaults.md). It sizes its epochs for a machine this much faster than timed:
# on such a machine they end at the plan's time, on a slower one Pace ends the schedule there, so no time is left over.
TIMING_MARGIN = 1.2
MAX_FINALISTS = 8
MIN_SCREEN_SHARE = 0.3  # the screen keeps at least this share of the budget (finals and export shrink first)
# Seconds outside training. Before the screen: process start-up, data loading, calibration. After the search:
# its close, and the export's process start-up, test evaluation and saving; the export's data loading and timing
# count within its share (export-best's time limit runs from its start). docs/defaults.md gives the evidence.
START_S = 30.0
TAIL_S = 90.0
OVERHEAD_S = START_S + TAIL_S
# Workers side by side train slower than the calibration, which times one worker with the other cores idle (they
# share memory bandwidth and caches): the first plan counts the finals this much slower, and replan then uses the
# speed the screen measured. The evidence, and why it stays: docs/defaults.md, the time plan.
SIDE_BY_SIDE = 1.3
# The export trains slower than its calibration (fsearch-w1, a few thousand images, all the threads) says: the plan
# counts it this much slower, and export-best then times the chosen network itself (docs/defaults.md, the time plan).
EXPORT_SLOWER = 1.2


@dataclass(frozen=True)
class Plan:
    """How the budget is shared out; every time is in seconds from the start of ``fsearch run``."""

    budget_s: float
    workers: int
    train_images: int  # images of the search's training split (screen and finals)
    reference_mmacs: float  # the configuration the times are estimated for (the prior's size)
    throughput: Throughput
    screen_epochs: int
    final_epochs: int
    finalists: int
    export_epochs: int
    screen_s: float
    finals_s: float
    export_s: float
    # The throughput as calibrated before the screen, before SIDE_BY_SIDE and replan (which keep it): what
    # benchmarks/side_by_side.py compares the screen's measured speed with. None in plans stored before it was kept.
    calibrated: Throughput | None = None
    # Set by after_search: the screen is over, so its cost cap no longer says anything about the export.
    searched: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        calibrated = data.get("calibrated")
        return cls(**(data | {
            "throughput": Throughput(**data["throughput"]),
            "calibrated": Throughput(**calibrated) if calibrated is not None else None,
        }))  # fmt: skip

    def screen_end_s(self) -> float:
        """The screen's end in seconds from the start of ``fsearch run``: ``START_S``, then the screen's time."""
        return START_S + self.screen_s

    def export_epochs_for(self, mmacs: float) -> int:
        """The export's epochs for a winner of ``mmacs`` at the calibrated speed (``export_epochs_within``)."""
        return self.export_epochs_within(self.throughput.export_epoch_s(mmacs))

    def export_epochs_within(self, epoch_s: float) -> int:
        """The export's epochs when one epoch takes ``epoch_s``: the export's time over ``epoch_s``, rounded to the
        nearest whole epoch, at least 1 and at most ``MAX_EXPORT_EPOCHS``. Rounded, not floored: the export keeps to
        its time (:class:`~search.optim.Pace` anneals the schedule to end at the limit), so the last part of an
        epoch is trained rather than left unused. A winner smaller than the reference trains more epochs than
        ``export_epochs`` (the reference's) in the same time: with a short budget the time is the limit."""
        return _export_epochs(self.export_s, epoch_s, cap=MAX_EXPORT_EPOCHS, rounded=True)

    def export_epochs_timed(self, timed_epoch_s: float) -> int:
        """The export's epochs for an epoch timed at ``timed_epoch_s`` (``export-best``'s timing): as many as the
        export's time holds on a machine ``TIMING_MARGIN`` faster than timed. The export keeps to its time
        whatever the count, so a count on the high side costs nothing; one on the low side leaves time unused."""
        return self.export_epochs_within(timed_epoch_s / TIMING_MARGIN)

    def fewest_export_epochs(self) -> int:
        """The fewest epochs the export may train a network the screen admits (:func:`_fewest_export_epochs`)."""
        return _fewest_export_epochs(self.screen_epochs)

    def screen_cap(self) -> tuple[float, int]:
        """The screen's cost cap: the largest network (million MACs per image) it admits, and the fewest epochs its
        export then trains in the export's time at the plan's speed. That is ``fewest_export_epochs``, or the
        reference's size while the reference trains at least the screen's epochs (docs/defaults.md, one cost rule).
        A quotient a rounding error short of a whole epoch counts as it (the slack)."""

        def largest(epochs: int) -> float:
            return self.export_s / max(epochs * self.throughput.export_epoch_s(1.0), 1e-12) * (1 + 1e-9)

        fewest = self.fewest_export_epochs()
        if largest(fewest) < self.reference_mmacs <= largest(self.screen_epochs):
            return self.reference_mmacs, _whole(largest(1) / self.reference_mmacs)
        return largest(fewest), fewest

    def with_export_time(self, export_s: float) -> Plan:
        """This plan with ``export_s`` seconds for the export, and the epochs (at most ``MAX_EXPORT_EPOCHS``: the
        time the search left over trains the reference longer too) that they afford a network of its size."""
        epoch_s = self.throughput.export_epoch_s(self.reference_mmacs)
        epochs = _export_epochs(export_s, epoch_s, cap=MAX_EXPORT_EPOCHS)
        return dataclasses.replace(self, export_s=export_s, export_epochs=epochs)

    def after_search(self, elapsed_s: float) -> Plan:
        """The plan once the search has ended after ``elapsed_s``: the export gets what the budget has left,
        the finals' slack included, and keeps at least half its share when they overran."""
        export_s = max(0.5 * self.export_s, self.budget_s - elapsed_s - TAIL_S)
        return dataclasses.replace(self.with_export_time(export_s), searched=True)

    def describe(self) -> str:
        """One line for the live display and the log."""

        def m(seconds: float) -> str:
            return f"{seconds / 60:.0f} min"

        finals = f"{self.finalists} finalists x {self.final_epochs} epochs" if self.finalists else "no finals"
        return (
            f"plan for {m(self.budget_s)}: screen up to {m(self.screen_s)} at {self.screen_epochs} epochs, {finals} "
            f"({m(self.finals_s)}), export {self.export_words()} ({m(self.export_expected_s())})"
        )

    def export_expected_s(self) -> float:
        """The seconds the export is expected to train: its time, or less where its epochs reach their cap first (on
        a GPU an hour's budget leaves ``MAX_EXPORT_EPOCHS`` of the reference a few minutes of it)."""
        if self.export_epochs < self.fewest_export_epochs():  # the time is the limit (export_words)
            return self.export_s
        return min(self.export_s, self.export_epochs * self.throughput.export_epoch_s(self.reference_mmacs))

    def export_words(self) -> str:
        """The export's epochs, or, when the reference network does not fit ``fewest_export_epochs`` in the export's
        time, the screen's cost cap and the fewest epochs its export trains (``screen_cap``) while the screen is to
        come, and after the search what export-best will do: time the winner and train what its time holds."""
        if self.export_epochs >= self.fewest_export_epochs():
            return f"{self.export_epochs} epochs"
        if self.searched:
            return "of the winner, the epochs its time holds"
        mmacs, epochs = self.screen_cap()
        return f"of networks up to {mmacs:.1f}M MACs, {epochs}+ epochs"


def _export_epochs(seconds: float, epoch_s: float, *, cap: int = EXPORT_EPOCHS, rounded: bool = False) -> int:
    """The export's whole epochs of ``epoch_s`` that fit ``seconds`` (the nearest whole number when ``rounded``):
    at least 1, at most ``cap``."""
    epochs = max(seconds, 0.0) / max(epoch_s, 1e-9)
    return max(1, min(cap, round(epochs) if rounded else _whole(epochs)))


def _export_time(seconds: float, epoch_s: float, *, fewest: int, cap: int = EXPORT_EPOCHS) -> float:
    """The export's seconds out of ``seconds``, for a reference epoch of ``epoch_s``: whole epochs of the reference
    (none spent on a fraction of one) when at least ``fewest`` fit; else all of ``seconds``, and the screen's cap
    follows from them (``Plan.screen_cap``)."""
    epochs = _export_epochs(seconds, epoch_s, cap=cap)
    return epochs * epoch_s if epochs >= fewest else max(seconds, 0.0)


def _fewest_export_epochs(screen_epochs: int) -> int:
    """``MIN_EXPORT_EPOCHS``, or the screen's epochs if more: an export of fewer would ship a network trained less
    than anything measured."""
    return max(screen_epochs, MIN_EXPORT_EPOCHS)


def least_screen_s(budget_s: float) -> float:
    """The screen's least time in a plan of ``budget_s``: ``MIN_SCREEN_SHARE`` of the usable time."""
    return MIN_SCREEN_SHARE * max(0.0, budget_s - OVERHEAD_S)


def _whole(epochs: float) -> int:
    """Whole epochs that fit (a quotient a rounding error short of an integer counts as that integer)."""
    return math.floor(epochs + 1e-9)


def fewest_finalists(asked: int) -> int:
    """Two finalists at least (a lone one is the screen's best again: it decides nothing), or one if one was asked."""
    return max(1, min(2, asked))


def _finals(
    room: float, *, asked: int, available: int, round_epoch_s: Callable[[int], float], screen_epochs: int
) -> tuple[int, int, float]:
    """(finalists, epochs, seconds) of the largest finals that fit ``room``: ``asked`` finalists, or as many of
    the ``available`` candidates as there are, then fewer finalists (not below :func:`fewest_finalists`), then fewer
    epochs, down to twice the screen's (below that a final says little the screen did not). ``round_epoch_s(n)``:
    the seconds one epoch of the first ``n`` finalists takes, in rounds of the workers."""
    for n in range(min(asked, available), fewest_finalists(asked) - 1, -1):
        per_epoch = round_epoch_s(n)
        epochs = min(FINAL_EPOCHS, _whole(room / max(per_epoch, 1e-9)))
        if epochs >= 2 * screen_epochs:
            return n, epochs, epochs * per_epoch
    return 0, FINAL_EPOCHS, 0.0


def _rounds(mmacs: Sequence[float], n: int, workers: int) -> float:
    """Million MACs that set the pace of ``n`` finalists run ``workers`` at a time: each round's largest."""
    return sum(max(mmacs[i : min(i + workers, n)]) for i in range(0, n, workers))


def replan(
    plan: Plan, *, elapsed_s: float, throughput: Throughput, finals_mmacs: Sequence[float] | None = None
) -> Plan:
    """The plan for what is left after the screen, with the throughput it measured: the export keeps its
    planned share of it, the finals get the rest if they fit, and the export then takes whatever the finals
    leave (all of it without finals). ``finals_mmacs``: the MACs of the chosen finalists, best first (a
    finalist larger than the reference takes longer); None: the reference's."""
    left = max(0.0, plan.budget_s - elapsed_s - TAIL_S)
    export_epoch_s = throughput.export_epoch_s(plan.reference_mmacs)
    share = plan.export_s / max(plan.export_s + plan.finals_s, 1e-9)  # the export's share, as planned
    export_s = _export_time(left * share, export_epoch_s, fewest=plan.fewest_export_epochs(), cap=plan.export_epochs)
    mmacs = list(finals_mmacs) if finals_mmacs else [plan.reference_mmacs] * plan.finalists
    finalists, final_epochs, finals_s = _finals(
        left - export_s, asked=plan.finalists, available=len(mmacs), screen_epochs=plan.screen_epochs,
        round_epoch_s=lambda n: throughput.seconds(plan.train_images, _rounds(mmacs, n, plan.workers)),
    )  # fmt: skip
    done = dataclasses.replace(plan, throughput=throughput, screen_s=elapsed_s, finals_s=finals_s)
    done = dataclasses.replace(done, finalists=finalists, final_epochs=final_epochs)
    return done.with_export_time(max(export_s, left - finals_s))


def make_plan(
    *, budget_s: float, workers: int, train_images: int, reference_mmacs: float, throughput: Throughput,
    screen_epochs: int, finalists: int | None = None,
) -> Plan:  # fmt: skip
    """Share ``budget_s`` out: the export first (half of what the screen's minimum leaves, or what
    ``MIN_EXPORT_EPOCHS`` of the reference take if that is more; its epochs shrink to fit), then the finals
    (fewer finalists or fewer epochs), and the screen keeps the rest, at least ``MIN_SCREEN_SHARE`` of the budget.

    ``finalists`` None: as many as the workers run at once, at least 2 (one per worker, a round of finals), and
    none when they would leave the export fewer than ``EXPORT_EPOCHS`` of the reference (it takes their time).
    ``throughput``: as calibrated; the plan counts the export ``EXPORT_SLOWER`` times slower, and with several
    workers theirs ``SIDE_BY_SIDE`` times slower.
    """
    calibrated = throughput
    throughput = dataclasses.replace(throughput, export=throughput.export * EXPORT_SLOWER)
    if workers > 1:  # the screen's workers share memory bandwidth and caches, which calibration cannot see
        throughput = dataclasses.replace(throughput, worker=throughput.worker * SIDE_BY_SIDE)
    usable = max(0.0, budget_s - OVERHEAD_S)
    keep_for_screen = least_screen_s(budget_s)
    export_epoch_s = throughput.export_epoch_s(reference_mmacs)
    # The export may take half of what the screen keeps back, or more, up to all of it, where that is what
    # MIN_EXPORT_EPOCHS of the reference take (a slow machine or a short budget); its epochs shrink to fit.
    room = usable - keep_for_screen
    export_room = min(room, max(0.5 * room, MIN_EXPORT_EPOCHS * export_epoch_s))
    fewest = _fewest_export_epochs(screen_epochs)
    export_s = _export_time(export_room, export_epoch_s, fewest=fewest)
    export_epochs = _export_epochs(export_s, export_epoch_s)
    wanted = min(MAX_FINALISTS, finalists if finalists is not None else max(2, workers))
    n_finals, final_epochs, finals_s = _finals(
        room - export_s, asked=wanted, available=wanted, screen_epochs=screen_epochs,
        round_epoch_s=lambda n: math.ceil(n / workers) * throughput.seconds(train_images, reference_mmacs),
    )  # fmt: skip
    if n_finals and finalists is None and export_epochs < EXPORT_EPOCHS:
        # Finals beside an export short of its epochs: the export's epochs gain more (docs/defaults.md, the time
        # plan), so there are none, and the export takes their time up to EXPORT_EPOCHS; the screen, the rest.
        export_s = _export_time(
            min(room, export_s + finals_s, EXPORT_EPOCHS * export_epoch_s), export_epoch_s, fewest=fewest
        )
        export_epochs = _export_epochs(export_s, export_epoch_s)
        n_finals, final_epochs, finals_s = 0, FINAL_EPOCHS, 0.0
    return Plan(
        budget_s=budget_s, workers=workers, train_images=train_images, reference_mmacs=reference_mmacs,
        throughput=throughput, screen_epochs=screen_epochs, final_epochs=final_epochs, finalists=n_finals,
        export_epochs=export_epochs, screen_s=max(0.0, usable - export_s - finals_s), finals_s=finals_s,
        export_s=export_s, calibrated=calibrated,
    )  # fmt: skip
