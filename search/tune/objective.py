"""The only Optuna-aware training glue: suggest -> build -> train, reporting and pruning.

Per epoch the objective reports validation accuracy and asks the pruner; a pruned, diverged
or out-of-memory trial ends as PRUNED with its reason in the ``pruned_reason`` user attribute,
so the study goes on. Each trial records what it cost (parameters, MACs, seconds, images/s),
gets a dashboard note with its architecture, and, once complete, a PNG of its validation
confusion matrix in the study's artifact store (when ``ObjectiveSettings.artifacts`` is set).
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch

from search.data import CLASSES, Splits
from search.device import describe
from search.store.study import EXPLORE_ATTR, EXPLORE_EPOCHS
from search.train import DivergedError, EpochStats, Runtime, seed_everything, train
from space import build_model, suggest, summary_markdown
from space.model import feature_shape, model_size


class TrialObserver(Protocol):
    """What a live display wants to know about the running trial (all optional to act on)."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def epoch_ended(self, number: int, stats: EpochStats) -> None: ...


class _Silent:
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        pass

    def step(self, done: int, total: int) -> None:
        pass

    def epoch_ended(self, number: int, stats: EpochStats) -> None:
        pass


@dataclass(frozen=True)
class ObjectiveSettings:
    """Fidelity and runtime of the trials of one search."""

    max_epochs: int
    seed: int
    runtime: Runtime = field(default_factory=Runtime)
    max_mmacs: float | None = None  # configurations above this many mega-MACs per image are skipped
    evals_per_epoch: int = 1  # validation reports per epoch: the pruner's resource unit
    artifacts: Path | None = None  # artifact store folder: a completed trial uploads its val confusion matrix
    notes: bool = True  # save each trial's architecture as an optuna-dashboard note


def trial_seed(study_seed: int, number: int) -> int:
    """A training seed derived from the study seed and the trial number (same on any worker)."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0] & 0x7FFFFFFF)


class Objective:
    """Callable passed to ``study.optimize``: returns the trial's best validation accuracy."""

    def __init__(self, *, splits: Splits, settings: ObjectiveSettings, observer: TrialObserver | None = None) -> None:
        if splits.val is None:
            raise ValueError("a search needs a validation split")
        self.splits = splits
        self.settings = settings
        self.observer: TrialObserver = observer or _Silent()

    def __call__(self, trial: optuna.Trial) -> float:
        # Free what the previous trial left before this one allocates: a pruned or failed trial's
        # exception holds its frames (model, optimiser state, batches) until the collector runs.
        _release_memory(self.settings.runtime.device)
        try:
            return self._run(trial)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as exc:
            # Optuna marks the trial failed and the search goes on; keep the reason where users look.
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise

    def _run(self, trial: optuna.Trial) -> float:
        settings = self.settings
        cfg = suggest(trial, epochs=settings.max_epochs)
        seed = trial_seed(settings.seed, trial.number)
        self.observer.trial_started(trial.number, trial.params)
        feature_shape(cfg.arch)  # an architecture that shrinks the image away fails here, by its name
        size = model_size(cfg.arch)  # by arithmetic: an over-budget draw is skipped without allocating it
        macs = size.macs
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("parameters", size.parameters)
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("flops", 2 * macs)
        trial.set_user_attr("device", describe(settings.runtime.device))
        trial.set_user_attr("reports_per_epoch", settings.evals_per_epoch)
        trial.set_user_attr("val_images", len(self.splits.val or ()))  # export-best's noise level of a report
        trial.set_user_attr("max_epochs", settings.max_epochs)
        # Enqueued presets (--warm-start) are trained whatever they cost: they were asked for.
        over = settings.max_mmacs is not None and macs > settings.max_mmacs * 1e6
        if over and "preset" not in trial.user_attrs:
            reason = f"{macs / 1e6:.1f}M MACs per image is over the --max-mmacs budget of {settings.max_mmacs:g}M"
            trial.set_user_attr("pruned_reason", reason)
            trial.set_user_attr("over_budget", True)  # not counted as one of the --trials
            raise optuna.TrialPruned(reason)
        seed_everything(seed)
        model = build_model(cfg.arch)
        if settings.notes:
            from search.store.notes import save_trial_note

            save_trial_note(trial, summary_markdown(model, cfg.arch, title=f"Trial {trial.number}: architecture"))

        spent = {"seconds": 0.0, "images": 0}
        explore = bool(trial.user_attrs.get(EXPLORE_ATTR))  # set by the sampler (search.store.study.RandomUntilTrained)

        def on_epoch_end(stats: EpochStats) -> None:
            spent["seconds"] += stats.seconds
            spent["images"] += stats.images
            epochs = stats.epochs_done
            trial.set_user_attr("epochs_run", epochs)
            trial.set_user_attr("train_seconds", round(spent["seconds"], 3))
            trial.set_user_attr("images_per_second", round(spent["images"] / max(spent["seconds"], 1e-9), 1))
            self.observer.epoch_ended(trial.number, stats)
            assert stats.val_acc is not None
            trial.report(stats.val_acc, stats.report)  # step = report index (epochs x evals_per_epoch)
            if trial.should_prune():
                reason = f"pruned at epoch {epochs:.1f}: val acc {stats.val_acc:.4f} behind the others"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)
            if explore and epochs >= EXPLORE_EPOCHS and epochs < settings.max_epochs:
                reason = f"random start-up trial: measured to epoch {epochs:g} for the sampler, then stopped"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)

        started = time.perf_counter()
        try:
            result = train(
                model, cfg.train, self.splits, runtime=settings.runtime, seed=seed,
                on_epoch_end=on_epoch_end, on_step=self.observer.step, evals_per_epoch=settings.evals_per_epoch,
            )  # fmt: skip
        except DivergedError as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        except torch.OutOfMemoryError as exc:
            reason = f"out of memory on {settings.runtime.device}"
            trial.set_user_attr("pruned_reason", reason)
            raise optuna.TrialPruned(reason) from exc
        finally:
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - started, 3))
            del model
            _release_memory(settings.runtime.device)
        best = result.best
        if best is None or best.val_acc is None or not math.isfinite(best.val_acc):
            # Optuna would record an infinite value as a completed trial, and the study's best with it.
            raise RuntimeError(f"training ended without a finite validation accuracy ({best and best.val_acc})")
        trial.set_user_attr("best_epoch", best.epochs_done)
        if settings.artifacts is not None and best.val_logits is not None:
            self._upload_confusion(trial, best, settings.artifacts)
        return best.val_acc

    def _upload_confusion(self, trial: optuna.Trial, best: EpochStats, folder: Path) -> None:
        """The validation confusion matrix of the trial's best report, as a PNG artifact of the trial."""
        from search.metrics import classification_metrics, plot_confusion_matrix
        from search.store.artifacts import open_store, upload

        assert best.val_logits is not None
        assert self.splits.val is not None
        confusion = classification_metrics(best.val_logits, self.splits.val.y, CLASSES)["confusion_matrix"]
        title = f"Trial {trial.number}, validation at epoch {best.epochs_done:g}: accuracy {best.val_acc:.4f}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "val_confusion_matrix.png"
            plot_confusion_matrix(path, confusion, CLASSES, title=title)
            upload(open_store(folder, create=True), path, trial)


def _release_memory(device: torch.device) -> None:
    """Give the accelerator's cached memory back between trials."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
