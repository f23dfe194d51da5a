"""One search process: the options of a search, and the loop that runs trials of a study here.

:func:`optimize_here` is the body of every worker, the lone one of ``fsearch run --workers 1``
and each process of :mod:`search.tune.workers`: it builds the objective from the options and
runs ``study.optimize`` until the ``--trials`` tickets run out. :class:`SearchOptions` is the
frozen configuration that flows from the CLI (or a library caller) to every worker.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import optuna
from optuna.trial import FrozenTrial

from search.data import Splits, load_splits, resolve_data_dir
from search.defaults import (
    DEFAULT_BUDGET_MINUTES,
    DEFAULT_EVALS_PER_EPOCH,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_MAX_MMACS,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TRAIN_SUBSET,
    DEFAULT_TRIALS,
    DEFAULT_VAL_SIZE,
    KNOWN_BEST_PRESET,
)
from search.device import resolve_device
from search.errors import ConfigError
from search.paths import DEFAULT_STORAGE, DEFAULT_STUDY
from search.plan import Plan
from search.runtime import Runtime
from search.store.artifacts import artifact_dir
from search.store.notes import save_study_note
from search.store.record import TrialRecord
from search.store.storage import GRACE_PERIOD_S, check_grace_period, check_storage, open_storage
from search.train import check_seed
from search.tune.clock import Deadline, StopAtDeadline
from search.tune.objective import Objective, ObjectiveSettings, TrialObserver
from search.tune.pruners import check_pruner, explore_epochs, make_pruner
from search.tune.samplers import check_sampler, make_sampler
from space import PRESETS

if TYPE_CHECKING:
    import torch

TrialEndCallback = Callable[["optuna.Study", "FrozenTrial"], None]  # an Optuna trial-end callback


class Tickets(Protocol):
    """The ``--trials`` budget: ``take`` is True while a trial may still start."""

    def take(self) -> bool: ...


class LocalTickets:
    """The budget of a search in this process: a plain counter."""

    def __init__(self, n: int) -> None:
        self.left = n

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs, with the CLI's defaults (``fsearch run --help`` explains each)."""

    study: str = DEFAULT_STUDY
    storage: str = DEFAULT_STORAGE
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    data_dir: Path | None = None
    device: str = "auto"
    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_PRUNER
    max_epochs: int = DEFAULT_MAX_EPOCHS
    evals_per_epoch: int = DEFAULT_EVALS_PER_EPOCH
    train_subset: int | None = DEFAULT_TRAIN_SUBSET
    val_size: int = DEFAULT_VAL_SIZE
    max_mmacs: float | None = DEFAULT_MAX_MMACS
    seed: int = 0
    workers: int | None = None  # worker processes; None = auto (see search.tune.workers.plan_workers)
    grace_period: int = GRACE_PERIOD_S  # seconds without a heartbeat before a trial counts as dead
    warm_start: bool = False
    known_best: bool = True  # a new study's first trial is the hand-written preset fsearch-w1 (search.tune.runner)
    verify_data: bool = True
    artifacts: bool = True  # upload each completed trial's validation confusion matrix
    artifact_dir: Path | None = None  # None: beside the SQLite file, else studies/artifacts
    # The whole job's budget (this search and export-best), shared out by a time plan (search.plan);
    # None: no plan (the screen runs --trials trials, then no finals).
    budget_minutes: float | None = DEFAULT_BUDGET_MINUTES
    finalists: int | None = None  # None: as the plan decides; 0: no finals
    cuda_graphs: bool | None = None  # CUDA graphs of the training step (Runtime.cuda_graphs); None: on for CUDA

    def runtime(self, device: torch.device) -> Runtime:
        """How the search's workers train on ``device``, and so how the plan's calibration times them."""
        return Runtime(device=device, cpu_eval_amp=True, cuda_graphs=self.cuda_graphs)

    def validate(self) -> None:
        """Fail at once, with the option's name, on values that cannot work."""
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.max_epochs < 1:
            raise ConfigError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 or auto, got {self.workers}")
        check_grace_period(self.grace_period)
        if self.evals_per_epoch < 1:
            raise ConfigError(f"--evals-per-epoch must be at least 1, got {self.evals_per_epoch}")
        _check_positive_finite("--timeout", self.timeout)
        if self.train_subset is not None and self.train_subset < 1:
            raise ConfigError(f"--train-subset must be positive, got {self.train_subset}")
        if self.val_size < 1:
            raise ConfigError(f"--val-size must be positive, got {self.val_size}")
        _check_positive_finite("--budget", self.budget_minutes)
        check_seed(self.seed)
        if self.finalists is not None and self.finalists < 0:
            raise ConfigError(f"--finalists must be 0 or more, got {self.finalists}")
        _check_positive_finite("--max-mmacs", self.max_mmacs)
        check_sampler(self.sampler)
        check_pruner(self.pruner)
        if not self.study.strip():
            raise ConfigError("--study must not be empty")
        check_storage(self.storage, create=True)  # a bad URL fails now, before the data is loaded


def _check_positive_finite(flag: str, value: float | None) -> None:
    """An optional number that must be positive and finite when given (NaN fails too: it compares false)."""
    if value is not None and not 0 < value < math.inf:
        raise ConfigError(f"{flag} must be positive and finite, got {value:g}")


MAX_SKIPS_PER_TRIAL = 20  # over-budget draws allowed per requested trial before giving up


class _StopAfterTrained:
    """Stop when the ``--trials`` tickets run out: a trial that trained uses one, and the next
    trial needs a new one. Over-budget draws (skipped in milliseconds, recorded as pruned so the
    sampler learns to avoid them) use none."""

    def __init__(self, tickets: Tickets, n: int) -> None:
        self.tickets = tickets
        self.max_skips = MAX_SKIPS_PER_TRIAL * n
        self.skipped = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if TrialRecord(trial).over_budget:
            self.skipped += 1
            if self.skipped >= self.max_skips:
                study.stop()
        elif not self.tickets.take():
            study.stop()


def _update_study_note(study: optuna.Study, trial: FrozenTrial) -> None:
    if TrialRecord(trial).over_budget:  # a skipped draw changes nothing worth rewriting
        return
    # Another worker may write a first page of the note at the same moment (a duplicate key): the
    # note is a summary that the next trial rewrites, never a reason to stop a worker.
    with contextlib.suppress(optuna.exceptions.StorageInternalError):
        save_study_note(study)


def load_search_splits(opts: SearchOptions, device: torch.device, *, verify: bool) -> Splits:
    """The training and validation splits of a search, on ``device``."""
    return load_splits(
        resolve_data_dir(opts.data_dir), device=device, val_size=opts.val_size, train_subset=opts.train_subset,
        seed=opts.seed, verify=verify,
    )  # fmt: skip


def prior_of(opts: SearchOptions) -> dict[str, Any] | None:
    """The sampler's prior: the known-best preset's parameters with ``--known-best``; none without (the
    search then knows nothing hand-written)."""
    return PRESETS[KNOWN_BEST_PRESET] if opts.known_best else None


def pruner_for(opts: SearchOptions) -> optuna.pruners.BasePruner:
    return make_pruner(opts.pruner, max_resource=opts.max_epochs * opts.evals_per_epoch)


def join_study(
    opts: SearchOptions, *, device_name: str, sampler_seed: int, parallel: bool
) -> tuple[optuna.Study, Splits]:
    """A worker's view of the study the parent made, with its own sampler, and the data on its device."""
    device = resolve_device(device_name)
    splits = load_search_splits(opts, device, verify=False)  # the parent verified the files
    storage = open_storage(opts.storage, create=False, grace_period=opts.grace_period)
    study = optuna.load_study(
        study_name=opts.study, storage=storage, pruner=pruner_for(opts),
        sampler=make_sampler(opts.sampler, seed=sampler_seed, parallel=parallel, prior=prior_of(opts)),
    )  # fmt: skip
    return study, splits


@dataclass(frozen=True)
class Stage:
    """One stage of a search: the screen (sampled, pruned) or the finals (queued, trained in full)."""

    name: str  # "screen" or "final"
    max_epochs: int
    trials: int  # the stage's tickets: trials that train
    prune: bool = True
    deadline: Deadline | None = None  # after it a trial stops at its next report, and no new one starts
    # The cost rule: a draw (or a queued preset) over this many million MACs per image is skipped untrained;
    # cap_source says where the cap comes from, in the skipped trial's reason. None: no cap.
    max_mmacs: float | None = None
    cap_source: str = "--max-mmacs"

    @classmethod
    def screen(cls, opts: SearchOptions, *, deadline: Deadline | None = None, plan: Plan | None = None) -> Stage:
        """The screen, its cost cap ``--max-mmacs``, lowered to what the plan's export can train for its fewest
        epochs when that is less (:meth:`~search.plan.Plan.screen_cap`). Finals have no cap of their
        own: they are screen trials that passed it."""
        cap, source = opts.max_mmacs, "--max-mmacs"
        if plan is not None:
            fits, epochs = plan.screen_cap()
            if cap is None or fits < cap:
                cap, minutes = fits, plan.export_s / 60
                source = f"the most the plan's {minutes:.0f}-min export trains {epochs} epochs of"
        return cls(
            name="screen", max_epochs=opts.max_epochs, trials=opts.trials, deadline=deadline, max_mmacs=cap,
            cap_source=source,
        )  # fmt: skip


@contextlib.contextmanager
def survivors_frozen() -> Iterator[TrialEndCallback]:
    """Freeze the heap now and, through the trial-end callback it yields, after each trial; at the end unfreeze it,
    unless the caller had frozen it before (:func:`freeze_survivors`). A caller's freeze stays: a process that
    freezes its heap (the test suite, before each test) would otherwise pay a full collection after each search."""
    caller_froze = gc.get_freeze_count() > 0
    freeze_survivors(None, None)
    try:
        yield freeze_survivors
    finally:
        if not caller_froze:
            gc.unfreeze()


def freeze_survivors(_study: optuna.Study | None, _trial: FrozenTrial | None) -> None:
    """Before the first trial and after each (a trial-end callback): collect what is garbage, then freeze what
    survives (torch, optuna, the data, what a trial imported lazily, the study's caches) out of the sight of
    later collections, so that the objective's collections before and after each trial scan only what that
    trial created. A full collection over a search process's heap took ~0.3 s on a 2-core CPU, twice a trial.
    When the search ends, ``survivors_frozen`` decides whether to unfreeze. A trial's own objects are garbage by
    now, collected before the freeze: its exception, which held its frames, has been handled. Refcounting still
    frees what is frozen."""
    gc.collect()
    gc.freeze()


def optimize_here(
    study: optuna.Study, opts: SearchOptions, splits: Splits, *, stage: Stage, tickets: Tickets,
    observer: TrialObserver | None, on_trial_end: TrialEndCallback | None, timeout: float | None,
) -> None:  # fmt: skip
    """Run trials of ``study`` in this process while ``tickets`` last (the body of every worker)."""
    device = splits.train.x.device
    settings = ObjectiveSettings(
        max_epochs=stage.max_epochs,
        seed=opts.seed,
        runtime=opts.runtime(device),
        max_mmacs=stage.max_mmacs,
        cap_source=stage.cap_source,
        # A finalist is never pruned: its curve needs one point an epoch, and validation passes cost
        # time a finalist can train instead (docs/defaults.md, the time plan).
        evals_per_epoch=opts.evals_per_epoch if stage.prune else 1,
        explore_epochs=explore_epochs(opts.evals_per_epoch) if stage.prune else None,
        artifacts=artifact_dir(opts.storage, opts.artifact_dir) if opts.artifacts else None,
        stage=stage.name,
        deadline=stage.deadline,
    )
    if not stage.prune:  # a finalist trains its full fidelity: there is nothing at that length to compare with
        study.pruner = optuna.pruners.NopPruner()
    objective = Objective(splits=splits, settings=settings, observer=observer)
    callbacks: list[TrialEndCallback] = [_StopAfterTrained(tickets, stage.trials), _update_study_note]
    if on_trial_end is not None:
        callbacks.append(on_trial_end)  # in a lone process it may move the deadline: the check comes after it
    if stage.deadline is not None:
        callbacks.append(StopAtDeadline(stage.deadline))
    if not tickets.take():
        return
    with survivors_frozen() as freeze:
        # catch: an exception inside one trial fails that trial (reason recorded), not the search.
        study.optimize(objective, timeout=timeout, callbacks=[*callbacks, freeze], catch=(Exception,))
