"""Studies in a storage: create or resume one, open an existing one, list and summarise them.

A study records the search-space version its trials were drawn from; a study of another version
is refused (its parameters would mean something else here) with one clear line.
"""

from __future__ import annotations

import difflib
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from search.errors import StorageError
from search.store.record import SPACE_VERSION_ATTR, TrialRecord, best_trial
from search.store.storage import mask_url, open_storage
from space import SPACE_VERSION


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
    if study.user_attrs.get(SPACE_VERSION_ATTR) is None:
        try:
            study.set_user_attr(SPACE_VERSION_ATTR, SPACE_VERSION)
        except optuna.exceptions.StorageInternalError:  # a worker starting at the same moment wrote it
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    check_space_version(study, fix="use another --study name")
    return study


def check_space_version(study: optuna.Study, *, fix: str) -> None:
    """Refuse a study whose trials were drawn from another search space; ``fix`` ends the message."""
    version = study.user_attrs.get(SPACE_VERSION_ATTR)
    if version != SPACE_VERSION:
        made = f"search space v{version}" if version is not None else "no fsearch search space version"
        raise StorageError(f"study {study.study_name!r} was made with {made}, this fsearch has v{SPACE_VERSION}; {fix}")


def load_study(storage: RDBStorage, name: str, storage_url: str) -> optuna.Study:
    """An existing study, or one clear error listing the ones there are (and the likely one meant)."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        where = mask_url(storage_url)
        known = f" (studies there: {', '.join(names)})" if names else ""
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            raise StorageError(f"study {name!r} not found in {where}{known}; did you mean --study {close[0]}?")
        raise StorageError(f"study {name!r} not found in {where}{known}; run 'fsearch run --study {name}' first")
    return optuna.load_study(study_name=name, storage=storage)


def open_study(storage_url: str, name: str) -> optuna.Study:
    """The existing study ``name`` in the existing storage ``storage_url`` (read-only commands)."""
    return load_study(open_storage(storage_url, create=False), name, storage_url)


def study_summaries(storage: RDBStorage) -> list[dict[str, Any]]:
    """One dict per study: trial counts by state and the best value."""
    rows = []
    for summary in storage.get_all_studies():
        trials = storage.get_all_trials(storage.get_study_id_from_name(summary.study_name), deepcopy=False)
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


def top_trials(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best completed trials, best first: the study's answer (:func:`best_trial`, which compares trials
    cut short at equal epochs), then the longest fidelity first (finalists before screen trials: their accuracies
    are not comparable), then by validation accuracy."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    ranked = sorted(done, key=lambda t: (TrialRecord(t).max_epochs or 0.0, t.value or 0.0), reverse=True)
    best = best_trial(done)
    first = [best] if best is not None else []
    return (first + [t for t in ranked if t not in first])[: max(n, 0)]
