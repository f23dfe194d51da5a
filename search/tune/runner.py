"""``run_search``: the library API behind ``fsearch run`` (the CLI only parses and displays).

Opens (or resumes) the study, loads the data once, optionally enqueues the reference presets,
and runs ``study.optimize`` with the :class:`~search.tune.objective.Objective`, here or in several
worker processes (:mod:`search.tune.workers`). After every trial the study's dashboard note (the
search summary, :mod:`search.store.notes`) is rewritten.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search.data import Splits, default_data_dir, load_splits
from search.defaults import (
    DEFAULT_EVALS_PER_EPOCH,
    DEFAULT_MAX_EPOCHS,
    DEFAULT_MAX_MMACS,
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TRAIN_SUBSET,
    DEFAULT_TRIALS,
    DEFAULT_VAL_SIZE,
)
from search.device import describe, resolve_device
from search.errors import ConfigError
from search.store.artifacts import artifact_dir
from search.store.notes import name_objective, save_study_note
from search.store.study import (
    DEFAULT_STORAGE,
    DEFAULT_STUDY,
    GRACE_PERIOD_S,
    PRUNERS,
    SAMPLERS,
    best_trial,
    check_storage,
    create_or_resume,
    make_pruner,
    make_sampler,
    open_storage,
)
from search.train import Runtime
from search.tune.objective import Objective, ObjectiveSettings, TrialObserver
from search.tune.workers import Lanes, LocalTickets, Tickets, TrialEndCallback, WorkerSpec, plan_workers, run_workers
from space import PRESETS

WARM_START_PRESETS = ("cnn3", "cnn2", "lenet5")  # --warm-start: the references
KNOWN_BEST_PRESETS = ("fsearch-w1",)  # --known-best (default): the best configuration fsearch has measured


@dataclass(frozen=True)
class SearchOptions:
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
    workers: int | None = 1  # worker processes; None = auto (the CLI's default, see search.tune.workers)
    grace_period: int = GRACE_PERIOD_S  # seconds without a heartbeat before a trial counts as dead
    warm_start: bool = False
    known_best: bool = False  # queue KNOWN_BEST_PRESETS first (the CLI default): the sampler starts from a good one
    verify_data: bool = True
    artifacts: bool = True  # upload each completed trial's validation confusion matrix
    artifact_dir: Path | None = None  # None: beside the SQLite file, else studies/artifacts

    def validate(self) -> None:
        """Fail at once, with the option's name, on values that cannot work."""
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.max_epochs < 1:
            raise ConfigError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 or auto, got {self.workers}")
        if self.grace_period < 2:
            raise ConfigError(f"--grace-period must be at least 2 seconds, got {self.grace_period}")
        if self.evals_per_epoch < 1:
            raise ConfigError(f"--evals-per-epoch must be at least 1, got {self.evals_per_epoch}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout}")
        if self.train_subset is not None and self.train_subset < 1:
            raise ConfigError(f"--train-subset must be positive, got {self.train_subset}")
        if self.val_size < 1:
            raise ConfigError(f"--val-size must be positive, got {self.val_size}")
        if self.max_mmacs is not None and self.max_mmacs <= 0:
            raise ConfigError(f"--max-mmacs must be positive, got {self.max_mmacs}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}")
        if not self.study.strip():
            raise ConfigError("--study must not be empty")
        check_storage(self.storage, create=True)  # a bad URL fails now, before the data is loaded


@dataclass(frozen=True)
class SearchReport:
    study: optuna.Study
    device: str
    wall_seconds: float
    counts: dict[str, int]  # trials of this run by state
    best: FrozenTrial | None  # best of the whole study
    workers: int = 1
    problems: tuple[str, ...] = ()  # one line per worker that did not end cleanly


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
        if trial.user_attrs.get("over_budget"):
            self.skipped += 1
            if self.skipped >= self.max_skips:
                study.stop()
        elif not self.tickets.take():
            study.stop()


def _update_study_note(study: optuna.Study, trial: FrozenTrial) -> None:
    if trial.user_attrs.get("over_budget"):  # a skipped draw changes nothing worth rewriting
        return
    # Another worker may write a first page of the note at the same moment (a duplicate key): the
    # note is a summary that the next trial rewrites, never a reason to stop a worker.
    with contextlib.suppress(optuna.exceptions.StorageInternalError):
        save_study_note(study)


def _load_splits(opts: SearchOptions, device: torch.device, *, verify: bool) -> Splits:
    data_dir = opts.data_dir if opts.data_dir is not None else default_data_dir()
    if opts.data_dir is not None and not opts.data_dir.is_dir():
        raise ConfigError(f"data dir {opts.data_dir} does not exist; pass a folder holding FashionMNIST/raw/*.gz")
    return load_splits(
        data_dir, device=device, val_size=opts.val_size, train_subset=opts.train_subset,
        seed=opts.seed, verify=verify,
    )  # fmt: skip


def _pruner(opts: SearchOptions) -> optuna.pruners.BasePruner:
    return make_pruner(opts.pruner, max_resource=opts.max_epochs * opts.evals_per_epoch)


def _sampler_seed(seed: int, already: int, lane: int) -> int:
    """Lane 0 (and a lone process) draws from ``seed``, moved on by the trials a resumed study has,
    so a resumed run does not replay the first run's draws; other workers get seeds of their own."""
    if lane == 0:
        return seed + already
    return int(np.random.SeedSequence([seed, already, lane]).generate_state(1)[0] & 0x7FFFFFFF)


def _describe_plan(plan: list[WorkerSpec]) -> str:
    devices = sorted({spec.device for spec in plan})
    threads = f", {plan[0].threads} thread{'s' * (plan[0].threads > 1)} each" if devices == ["cpu"] else ""
    return f"{len(plan)} workers on {', '.join(devices)}{threads}"


def join_study(
    opts: SearchOptions, *, device_name: str, sampler_seed: int, parallel: bool
) -> tuple[optuna.Study, Splits]:
    """A worker's view of the study the parent made, with its own sampler, and the data on its device."""
    device = resolve_device(device_name)
    splits = _load_splits(opts, device, verify=False)  # the parent verified the files
    storage = open_storage(opts.storage, create=False, grace_period=opts.grace_period)
    study = optuna.load_study(
        study_name=opts.study, storage=storage, pruner=_pruner(opts),
        sampler=make_sampler(opts.sampler, seed=sampler_seed, parallel=parallel),
    )  # fmt: skip
    return study, splits


def optimize_here(
    study: optuna.Study, opts: SearchOptions, splits: Splits, *, tickets: Tickets,
    observer: TrialObserver | None, on_trial_end: TrialEndCallback | None, timeout: float | None,
) -> None:  # fmt: skip
    """Run trials of ``study`` in this process while ``tickets`` last (the body of every worker)."""
    device = splits.train.x.device
    settings = ObjectiveSettings(
        max_epochs=opts.max_epochs,
        seed=opts.seed,
        runtime=Runtime(device=device),
        max_mmacs=opts.max_mmacs,
        evals_per_epoch=opts.evals_per_epoch,
        artifacts=artifact_dir(opts.storage, opts.artifact_dir) if opts.artifacts else None,
    )
    objective = Objective(splits=splits, settings=settings, observer=observer)
    callbacks: list[TrialEndCallback] = [_StopAfterTrained(tickets, opts.trials), _update_study_note]
    if on_trial_end is not None:
        callbacks.append(on_trial_end)
    if not tickets.take():
        return
    # catch: an exception inside one trial fails that trial (reason recorded), not the search.
    study.optimize(objective, timeout=timeout, callbacks=callbacks, catch=(Exception,))


def run_search(
    opts: SearchOptions, *, observer: TrialObserver | None = None, on_trial_end: TrialEndCallback | None = None,
    lanes: Lanes | None = None,
) -> SearchReport:  # fmt: skip
    """Run ``opts.trials`` more trials of ``opts.study``; a KeyboardInterrupt fails the running trial(s).

    One worker runs here, with ``observer``; several run as processes (:mod:`search.tune.workers`), each
    shown in its own lane of ``lanes``. ``on_trial_end`` is called here for every trial either way.
    """
    opts.validate()
    started = time.perf_counter()
    device = resolve_device(opts.device)
    plan = plan_workers(opts.workers, device, trials=opts.trials)
    # The data is verified before the study is opened: a corrupt file leaves no new, empty study behind.
    splits = _load_splits(opts, device if len(plan) == 1 else torch.device("cpu"), verify=opts.verify_data)
    storage = open_storage(opts.storage, create=True, grace_period=opts.grace_period)
    study = create_or_resume(
        storage, opts.study, sampler=make_sampler(opts.sampler, seed=opts.seed, parallel=len(plan) > 1),
        pruner=_pruner(opts),
    )  # fmt: skip
    name_objective(study)
    already = len(study.trials)
    # This run's trials: all but those finished or running before it (queued ones are this run's to train).
    earlier = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING}
    queued = (KNOWN_BEST_PRESETS if opts.known_best else ()) + (WARM_START_PRESETS if opts.warm_start else ())
    for name in queued:  # skip_if_exists: a resumed study does not train them again
        study.enqueue_trial(PRESETS[name], user_attrs={"preset": name}, skip_if_exists=True)
    lost: list[str] = []
    if len(plan) == 1:
        if already:  # a resumed study must not replay the random draws of the first run
            study.sampler = make_sampler(opts.sampler, seed=_sampler_seed(opts.seed, already, 0))
        optimize_here(
            study, opts, splits, tickets=LocalTickets(opts.trials), observer=observer, on_trial_end=on_trial_end,
            timeout=opts.timeout,
        )  # fmt: skip
    else:
        del splits  # each worker loads its own copy on its own device
        lost = run_workers(
            opts, plan, study=study, sampler_seeds=[_sampler_seed(opts.seed, already, i) for i in range(len(plan))],
            timeout=None if opts.timeout is None else max(1.0, opts.timeout - (time.perf_counter() - started)),
            lanes=lanes, on_trial_end=on_trial_end,
        )  # fmt: skip
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number not in earlier]
    skipped = [t for t in mine if t.user_attrs.get("over_budget")]
    counts = {
        s.name.lower(): sum(t.state == s and not t.user_attrs.get("over_budget") for t in mine)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    counts["skipped"] = len(skipped)
    return SearchReport(
        study=study,
        device=describe(device) if len(plan) == 1 else _describe_plan(plan),
        wall_seconds=time.perf_counter() - started,
        counts=counts,
        best=best_trial(trials),
        workers=len(plan),
        problems=tuple(lost),
    )
