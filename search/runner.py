"""``run_search``: the library API behind ``fsearch run`` (the CLI only parses and displays).

Opens (or resumes) the study, loads the data once, optionally enqueues the reference presets,
and runs ``study.optimize`` with the :class:`~search.objective.Objective`. After every trial the
study's dashboard note (the search summary, :mod:`search.notes`) is rewritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.artifacts import artifact_dir
from search.data import default_data_dir, load_splits
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
from search.notes import name_objective, save_study_note
from search.objective import Objective, ObjectiveSettings, TrialObserver
from search.study import (
    DEFAULT_STORAGE,
    DEFAULT_STUDY,
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
from space import PRESETS

WARM_START_PRESETS = ("cnn3", "cnn2", "lenet5")


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
    warm_start: bool = False
    verify_data: bool = True
    artifacts: bool = True  # upload each completed trial's validation confusion matrix
    artifact_dir: Path | None = None  # None: beside the SQLite file, else studies/artifacts

    def validate(self) -> None:
        """Fail at once, with the option's name, on values that cannot work."""
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if self.max_epochs < 1:
            raise ConfigError(f"--max-epochs must be at least 1, got {self.max_epochs}")
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


TrialEndCallback = Callable[[optuna.Study, FrozenTrial], None]
MAX_SKIPS_PER_TRIAL = 20  # over-budget draws allowed per requested trial before giving up


class _StopAfterTrained:
    """Stop the study after ``n`` trials that trained; over-budget draws (skipped in
    milliseconds, recorded as pruned so the sampler learns to avoid them) do not count."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.trained = 0
        self.skipped = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("over_budget"):
            self.skipped += 1
        else:
            self.trained += 1
        if self.trained >= self.n or self.skipped >= MAX_SKIPS_PER_TRIAL * self.n:
            study.stop()


def _update_study_note(study: optuna.Study, trial: FrozenTrial) -> None:
    if not trial.user_attrs.get("over_budget"):  # a skipped draw changes nothing worth rewriting
        save_study_note(study)


def run_search(
    opts: SearchOptions, *, observer: TrialObserver | None = None, on_trial_end: TrialEndCallback | None = None
) -> SearchReport:
    """Run ``opts.trials`` more trials of ``opts.study``; a KeyboardInterrupt fails the running trial."""
    opts.validate()
    started = time.perf_counter()
    device = resolve_device(opts.device)
    data_dir = opts.data_dir if opts.data_dir is not None else default_data_dir()
    if opts.data_dir is not None and not opts.data_dir.is_dir():
        raise ConfigError(f"data dir {opts.data_dir} does not exist; pass a folder holding FashionMNIST/raw/*.gz")
    # The data is verified before the study is opened: a corrupt file leaves no new, empty study behind.
    splits = load_splits(
        data_dir, device=device, val_size=opts.val_size, train_subset=opts.train_subset,
        seed=opts.seed, verify=opts.verify_data,
    )  # fmt: skip
    storage = open_storage(opts.storage, create=True)
    study = create_or_resume(
        storage, opts.study,
        sampler=make_sampler(opts.sampler, seed=opts.seed),
        pruner=make_pruner(opts.pruner, max_resource=opts.max_epochs * opts.evals_per_epoch),
    )  # fmt: skip
    name_objective(study)
    already = len(study.trials)
    if already:
        # A resumed study must not replay the random draws of the first run.
        study.sampler = make_sampler(opts.sampler, seed=opts.seed + already)
    if opts.warm_start:
        for name in WARM_START_PRESETS:
            study.enqueue_trial(PRESETS[name], user_attrs={"preset": name}, skip_if_exists=True)
    settings = ObjectiveSettings(
        max_epochs=opts.max_epochs,
        seed=opts.seed,
        runtime=Runtime(device=device),
        max_mmacs=opts.max_mmacs,
        evals_per_epoch=opts.evals_per_epoch,
        artifacts=artifact_dir(opts.storage, opts.artifact_dir) if opts.artifacts else None,
    )
    objective = Objective(splits=splits, settings=settings, observer=observer)
    start_number = already
    callbacks: list[TrialEndCallback] = [_StopAfterTrained(opts.trials), _update_study_note]
    if on_trial_end is not None:
        callbacks.append(on_trial_end)
    # catch: an exception inside one trial fails that trial (reason recorded), not the search.
    study.optimize(objective, timeout=opts.timeout, callbacks=callbacks, catch=(Exception,))
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.number >= start_number]
    skipped = [t for t in mine if t.user_attrs.get("over_budget")]
    counts = {
        s.name.lower(): sum(t.state == s and not t.user_attrs.get("over_budget") for t in mine)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    counts["skipped"] = len(skipped)
    return SearchReport(
        study=study,
        device=describe(device),
        wall_seconds=time.perf_counter() - started,
        counts=counts,
        best=best_trial(trials),
    )
