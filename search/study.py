"""Study storage: URL handling, samplers and pruners by name, create/resume, summaries.

The default storage is ``sqlite:///studies/fsearch.db``. SQLite gets a long busy timeout and
WAL journaling so a dashboard can read while a search writes. Any Optuna RDB URL is accepted.
A read-only command never creates a database as a side effect of a typo.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from search.errors import ConfigError, StorageError
from space import SPACE_VERSION

DEFAULT_STORAGE = "sqlite:///studies/fsearch.db"
DEFAULT_STUDY = "fashion-mnist"
SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("hyperband", "median", "sha", "none")
SQLITE_BUSY_TIMEOUT_S = 60


def _sqlite_path(url: sqlalchemy.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def open_storage(url: str, *, create: bool) -> RDBStorage:
    """An Optuna RDB storage for ``url``; with ``create=False`` the database must already exist."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(
            f"bad storage URL {url!r}; use e.g. sqlite:///studies/fsearch.db or postgresql://user:pw@host/db"
        ) from None
    engine_kwargs: dict[str, Any] = {}
    path = _sqlite_path(parsed)
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if path is not None:
        if not path.exists() and not create:
            raise StorageError(f"no study database at {path}; run 'fsearch run' first or pass --storage")
        if not path.parent.is_dir():
            if create and url == DEFAULT_STORAGE:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StorageError(f"folder {path.parent} for the SQLite database does not exist; create it first")
    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ImportError, ModuleNotFoundError) as exc:
        raise StorageError(f"no database driver for {parsed.drivername!r} ({exc.name}); install it") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(f"unknown database kind {parsed.drivername!r} in the storage URL") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot open storage {parsed.render_as_string()}: {exc.__class__.__name__}") from None
    if path is not None:
        # WAL lets readers (the dashboard) work while a search writes; the mode persists in the file.
        with storage.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        # Pooled connections opened before the switch still run in rollback mode: start afresh.
        storage.engine.dispose()
    return storage


def make_sampler(name: str, *, seed: int | None) -> optuna.samplers.BaseSampler:
    """A sampler by name; TPE is multivariate and grouped because the space is conditional."""
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=10, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles the numeric parameters; categorical/conditional ones fall back to random.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, max_resource: int) -> optuna.pruners.BasePruner:
    """A pruner by name; ``max_resource`` is the number of reports a full trial makes."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")


def create_or_resume(
    storage: RDBStorage, name: str, *, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner
) -> optuna.Study:
    """Create the study, or load it to resume; refuse one made with another search space."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner,
            load_if_exists=True,
        )  # fmt: skip
    except ValueError as exc:  # e.g. an existing multi-objective study of the same name
        raise StorageError(f"study {name!r} cannot be used: {exc}") from None
    version = study.user_attrs.get("space_version")
    if version is None:
        study.set_user_attr("space_version", SPACE_VERSION)
    elif version != SPACE_VERSION:
        raise StorageError(
            f"study {name!r} was made with search space v{version}, this fsearch has v{SPACE_VERSION}; "
            f"use another --study name"
        )
    return study


def load_study(storage: RDBStorage, name: str, storage_url: str) -> optuna.Study:
    """An existing study, or one clear error listing the ones there are."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        known = f" (studies there: {', '.join(names)})" if names else ""
        raise StorageError(f"study {name!r} not found in {storage_url}{known}; run 'fsearch run --study {name}' first")
    return optuna.load_study(study_name=name, storage=storage)


def study_summaries(storage: RDBStorage) -> list[dict[str, Any]]:
    """One dict per study: trial counts by state and the best value."""
    rows = []
    for summary in storage.get_all_studies():
        trials = storage.get_all_trials(summary._study_id, deepcopy=False)
        counts = {state.name.lower(): 0 for state in TrialState}
        for t in trials:
            counts[t.state.name.lower()] += 1
        best = best_trial(trials)
        rows.append(
            {
                "study": summary.study_name,
                "trials": len(trials),
                **counts,
                "best_value": best.value if best else None,
                "best_trial": best.number if best else None,
            }
        )
    return rows


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    return max(done, key=lambda t: t.value or 0.0) if done else None


def top_trials(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best completed trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: t.value or 0.0, reverse=True)[:n]


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """A JSON-friendly view of a trial."""
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": t.value,
        "params": t.params,
        "user_attrs": t.user_attrs,
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "duration_seconds": t.duration.total_seconds() if t.duration else None,
    }
