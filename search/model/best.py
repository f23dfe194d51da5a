"""``export_best``: pick a trial of a study, replay it through ``suggest`` and retrain it.

The trial's parameters go through Optuna's ``FixedTrial`` into the same ``suggest`` the search
used, so the retrained model is built and trained by exactly the code that scored it. A study
made with another search space, an empty study and a study without a completed trial are
refused with one clear error before anything trains. The export is recorded on the study as
the user attribute ``export:<trial>`` (finished trials' attributes cannot change), its files
become study artifacts ``trial-<N>-*`` and the study's dashboard note shows the test result
beside the references.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from search.errors import ConfigError, StorageError
from search.model.graph import check_formats
from search.model.retrain import ExportReport, RetrainOptions, StartCallback, retrain, safe_name
from search.store.artifacts import artifact_dir, open_store, upload
from search.store.notes import save_study_note
from search.store.study import best_trial, load_study, mask_url, open_storage
from search.train import EpochCallback, StepCallback
from space import SPACE_VERSION, TrialConfig, suggest

MIN_EPOCHS, MAX_EPOCHS = 5, 40
VAL_IMAGES = 10_000  # the search's default validation split: for trials that did not record theirs
TRAIN_IMAGES = 60_000
RISING_FACTOR, PLATEAU_FACTOR = 6, 2
# Files of the model directory uploaded as study artifacts, and their names there (after "trial-<N>-").
EXPORT_ARTIFACTS = {
    "confusion_matrix.png": "test_confusion_matrix.png", "training_curves.png": "training_curves.png",
    "metrics.json": "metrics.json", "model.safetensors": "model.safetensors", "config.json": "config.json",
}  # fmt: skip


def default_out(study: str) -> Path:
    return Path("studies") / safe_name(study) / "best"


def default_epochs(trial: FrozenTrial) -> tuple[int, dict[str, Any]]:
    """The retraining's epochs from the trial's validation curve, and the rule's inputs.

    The search trained the trial for ``epochs_run`` epochs on a subset of the training split.
    If its validation accuracy had not dropped from its best by the end, it could have used more:
    retrain for 6x the epochs it ran. If it had dropped, it peaked at ``best_epoch``: retrain for
    2x that. The result is clamped to [5, 40].

    "Dropped" means by more than one standard error of an accuracy measured on the validation
    images (binomial: sqrt(p (1 - p) / n), 0.26 points at 93% on 10,000 images). A cosine
    schedule flattens every curve at its end, and a dip of a few images there is noise: run h2's
    known-best trial read 0.9307, 0.9304, 0.9295 over its last three reports, and the rule without
    the tolerance called it peaked at epoch 4 and retrained it for 8 epochs instead of 30.

    Why 6x: measured on the validation split (``python -m benchmarks.recipe``), configurations
    that were still rising after the search's 5 epochs kept gaining up to about 30 epochs
    (fsearch-r6: 0.9316 after 15, 0.9361 after 30, 0.9347 after 60; fsearch-w1's VGG-style net
    with full augmentation: 0.9371 after 15, 0.9452 after 30). Either factor also leans on the
    larger training set (60,000 images instead of the search's 50,000): more data overfits later.
    """
    # The search reports ``reports_per_epoch`` times per epoch: step k is epoch k / reports_per_epoch.
    per_epoch = int(trial.user_attrs.get("reports_per_epoch", 1))
    curve = {step / per_epoch: value for step, value in sorted(trial.intermediate_values.items())}
    epochs_run = float(trial.user_attrs.get("epochs_run", max(curve, default=1)))
    if curve:
        best_value = max(curve.values())
        best_epoch = min(epoch for epoch, value in curve.items() if value == best_value)
        n_val = int(trial.user_attrs.get("val_images", VAL_IMAGES))
        noise = math.sqrt(best_value * (1 - best_value) / n_val)
        still_rising = best_value - curve[max(curve)] <= noise
    else:  # no curve recorded: treat it as still rising
        best_epoch, still_rising = float(trial.user_attrs.get("best_epoch", epochs_run)), True
    raw = RISING_FACTOR * epochs_run if still_rising else PLATEAU_FACTOR * best_epoch
    epochs = min(max(round(raw), MIN_EPOCHS), MAX_EPOCHS)
    ua = trial.user_attrs
    # Images per search epoch, for the record (the search does not store its --train-subset).
    seen = None
    if {"train_seconds", "images_per_second"} <= ua.keys():
        seen = round(ua["images_per_second"] * ua["train_seconds"] / epochs_run)
    rule = {
        "rule": f"{RISING_FACTOR}x epochs_run unless the last report is more than one standard error below the "
        f"best (then {PLATEAU_FACTOR}x best_epoch), "
        f"clamped to [{MIN_EPOCHS}, {MAX_EPOCHS}]",
        "epochs_run": epochs_run, "best_epoch": best_epoch, "still_rising": still_rising,
        "val_curve": {f"{k:g}": v for k, v in curve.items()}, "search_images_per_epoch": seen,
        "retrain_images_per_epoch": TRAIN_IMAGES, "epochs": epochs,
    }  # fmt: skip
    return epochs, rule


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """The best completed trial, or trial ``number``; one clear error when there is none."""
    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise StorageError(f"study {name!r} has no trials; run 'fsearch run --study {name}' first")
    if number is None:
        best = best_trial(trials)
        if best is None:
            counts = Counter(t.state.name.lower() for t in trials)
            states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            raise StorageError(
                f"study {name!r} has no completed trial ({states}); run 'fsearch run --study {name}' to add trials"
            )
        return best
    found = [t for t in trials if t.number == number]
    if not found:
        raise StorageError(
            f"trial {number} not found in study {name!r} (trials 0-{trials[-1].number}); "
            f"see 'fsearch show --study {name}'"
        )
    if found[0].state != TrialState.COMPLETE:
        raise StorageError(
            f"trial {number} of study {name!r} is {found[0].state.name.lower()}, not complete; "
            f"pick a completed one (see 'fsearch show --study {name}')"
        )
    return found[0]


def replay(trial: FrozenTrial, *, epochs: int, study: str) -> TrialConfig:
    """The trial's configuration through ``suggest`` with a ``FixedTrial``; refuse foreign parameters."""
    fixed = FixedTrial(trial.params, number=trial.number)
    try:
        with warnings.catch_warnings():
            # FixedTrial only warns about a value outside this space's range: that is a mismatch here.
            warnings.simplefilter("error", UserWarning)
            cfg = suggest(fixed, epochs=epochs)
    except (ValueError, UserWarning) as exc:
        raise StorageError(
            f"trial {trial.number} of study {study!r} does not fit this search space ({exc}); "
            f"export it with the fsearch version that made the study"
        ) from None
    if set(fixed.params) != set(trial.params):
        extra = ", ".join(sorted(set(trial.params) - set(fixed.params)))
        raise StorageError(
            f"trial {trial.number} of study {study!r} has parameters this search space does not know ({extra}); "
            f"export it with the fsearch version that made the study"
        )
    return cfg


def export_best(
    *,
    study: str,
    storage: str,
    opts: RetrainOptions | None = None,
    trial: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    on_start: StartCallback | None = None,
    artifacts: Path | None = None,
) -> ExportReport:
    """Retrain trial ``trial`` (default: the best) of ``study`` on all training images and export it.

    ``opts.out`` defaults to ``studies/<study>/best``; ``seed`` (which replaces ``opts.seed``) to
    the trial's recorded seed; ``epochs`` to :func:`default_epochs`. ``on_trial`` sees the chosen trial before the data
    is loaded; ``on_start`` the config just before training (the CLI shows both). ``artifacts`` is the
    artifact store folder (default: :func:`search.store.artifacts.artifact_dir` of the storage).
    """
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    found = load_study(open_storage(storage, create=False), study, storage)
    space = found.user_attrs.get("space_version")
    if space != SPACE_VERSION:
        made = f"search space v{space}" if space is not None else "no fsearch search space version"
        raise StorageError(
            f"study {study!r} was made with {made}, this fsearch has v{SPACE_VERSION}; "
            f"export it with the fsearch version that made it"
        )
    if opts is not None:  # fail on a --format whose packages are missing before anything else
        check_formats(opts.formats)
    chosen = pick_trial(found, trial)
    auto_epochs, rule = default_epochs(chosen)
    cfg = replay(chosen, epochs=epochs or auto_epochs, study=study)
    if seed is None:
        seed = int(chosen.user_attrs.get("seed", 0))
    opts = dataclasses.replace(opts or RetrainOptions(out=default_out(study)), seed=seed)
    provenance = {
        "source": "study", "study": study, "storage": _redacted(storage), "trial": chosen.number,
        "params": chosen.params, "search_val_accuracy": chosen.value, "search_user_attrs": chosen.user_attrs,
        "epochs": cfg.train.epochs, "epochs_from": "--epochs" if epochs else "default rule", "epochs_rule": rule,
    }  # fmt: skip
    if on_trial is not None:
        on_trial(chosen)
    report = retrain(cfg, opts, provenance=provenance, on_epoch_end=on_epoch_end, on_step=on_step, on_start=on_start)
    found.set_user_attr(
        f"export:{chosen.number}",
        {
            "test_accuracy": report.test_accuracy, "test_loss": report.metrics["loss"],
            "tta_test_accuracy": (report.metrics.get("tta") or {}).get("accuracy"),
            "path": str(report.directory.resolve()), "epochs": report.epochs, "seed": seed,
            "device": report.device, "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    )  # fmt: skip
    _publish(found, chosen.number, report, artifact_dir(storage, artifacts))
    return report


def _publish(study: optuna.Study, number: int, report: ExportReport, folder: Path) -> None:
    """The export's files as study artifacts (a finished trial takes none) and the study note rewritten."""
    store = open_store(folder, create=True)
    for name, shown in EXPORT_ARTIFACTS.items():
        if (report.directory / name).is_file():
            upload(store, report.directory / name, study, name=f"trial-{number}-{shown}")
    save_study_note(study)


def _redacted(url: str) -> str:
    """The storage URL without a password (it lands in config.json): masked on the raw text, so an
    unescaped '@' in the password cannot make a parser print part of it."""
    return mask_url(url)
