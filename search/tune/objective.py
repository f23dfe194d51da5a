"""The only Optuna-aware training glue: suggest -> build -> train, reporting and pruning.

Per epoch the objective reports validation accuracy and asks the pruner; a pruned, diverged
or out-of-memory trial ends as PRUNED with its reason in the ``pruned_reason`` user attribute,
so the study goes on. Each trial records what it cost (parameters, MACs, seconds, images/s),
gets a dashboard note with its architecture, and, once complete, a PNG of its validation
confusion matrix in the study's artifact store (when ``ObjectiveSettings.artifacts`` is set).
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np
import optuna
import torch

from search.data import CLASSES, ImageSet, Splits
from search.errors import signal_number
from search.metrics import averaged
from search.runtime import Runtime
from search.store import record
from search.store.record import set_attr
from search.train import DivergedError, EpochStats, TrainResult, evaluate, seed_everything, train
from search.tune.clock import Deadline
from search.tune.samplers import OneSamplerPerTrial, PriorBandSampler
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
    cap_source: str = "--max-mmacs"  # where that cap comes from, for the skipped trial's reason
    evals_per_epoch: int = 1  # validation reports per epoch: the pruner's resource unit
    explore_epochs: float | None = None  # a random draw stops here (search.tune.pruners.explore_epochs)
    stage: str = "screen"  # recorded on each trial (search.tune.session.Stage)
    deadline: Deadline | None = None  # a trial still training when it passes stops at its next report
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
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt as exc:
            # Optuna marks the trial failed and re-raises. The reason is a courtesy to `show` and the dashboard:
            # an interrupt may have landed mid-call to the storage, so a write that fails here is let go.
            with contextlib.suppress(Exception):
                set_attr(trial, record.FAIL_REASON, f"interrupted ({signal.Signals(signal_number(exc)).name})")
            raise
        except Exception as exc:
            # Optuna marks the trial failed and the search goes on; keep the reason where users look.
            set_attr(trial, record.FAIL_REASON, f"{type(exc).__name__}: {exc}")
            raise

    def _run(self, trial: optuna.Trial) -> float:
        settings = self.settings
        cfg = suggest(trial, epochs=settings.max_epochs)
        seed = trial_seed(settings.seed, trial.number)
        feature_shape(cfg.arch)  # an architecture that shrinks the image away fails here, by its name
        size = model_size(cfg.arch)  # by arithmetic: an over-budget draw is skipped without allocating it
        macs = size.macs
        set_attr(trial, record.SEED, seed)
        set_attr(trial, record.PARAMETERS, size.parameters)
        set_attr(trial, record.MACS, macs)
        set_attr(trial, record.FLOPS, 2 * macs)
        set_attr(trial, record.DEVICE, settings.runtime.describe())
        set_attr(trial, record.REPORTS_PER_EPOCH, settings.evals_per_epoch)
        set_attr(trial, record.VAL_IMAGES, len(self.splits.val or ()))  # export-best's noise level of a report
        set_attr(trial, record.MAX_EPOCHS, settings.max_epochs)
        set_attr(trial, record.STAGE, settings.stage)
        for key, value in _how_drawn(trial).items():
            if value is not None:
                set_attr(trial, key, value)
        # One cost rule for every trial: a queued preset over the cap is skipped like a sampled draw.
        if settings.max_mmacs is not None and macs > settings.max_mmacs * 1e6:
            set_attr(trial, record.OVER_BUDGET, True)  # not counted as one of the --trials
            cap = f"the {settings.max_mmacs:.3g}M cap ({settings.cap_source})"
            _prune(trial, f"{macs / 1e6:.1f}M MACs per image is over {cap}")
        self.observer.trial_started(trial.number, trial.params)  # after the cost check: a skipped draw never shows
        # Free what the previous trial left before this one allocates: a pruned or failed trial's exception holds
        # its frames (model, optimiser state, batches) until the collector runs. After the cost check: a skipped
        # draw allocates nothing, and a full collection costs it more than everything else it does.
        _release_memory(settings.runtime.device)
        seed_everything(seed)
        model = build_model(cfg.arch)
        if settings.notes:
            from optuna_dashboard import save_note

            save_note(trial, summary_markdown(model, cfg.arch, title=f"Trial {trial.number}: architecture"))

        spent = {"seconds": 0.0, "images": 0}
        # A random draw is stopped at the pruner's second rung (None: trained like any other).
        explore_until = settings.explore_epochs if _explores(trial) else None
        if explore_until is not None:
            set_attr(trial, record.EXPLORE, True)

        reports: list[EpochStats] = []

        def on_epoch_end(stats: EpochStats) -> None:
            reports.append(stats)
            spent["seconds"] += stats.seconds
            spent["images"] += stats.images
            epochs = stats.epochs_done
            set_attr(trial, record.EPOCHS_RUN, epochs)
            set_attr(trial, record.TRAIN_SECONDS, round(spent["seconds"], 3))
            set_attr(trial, record.IMAGES_PER_SECOND, round(spent["images"] / max(spent["seconds"], 1e-9), 1))
            self.observer.epoch_ended(trial.number, stats)
            assert stats.val_acc is not None
            trial.report(stats.val_acc, stats.report)  # step = report index (epochs x evals_per_epoch)
            if trial.should_prune():
                _prune(trial, f"pruned at epoch {epochs:.1f}: val acc {stats.val_acc:.4f} behind the others")
            if explore_until is not None and explore_until <= epochs < settings.max_epochs:
                _prune(trial, f"random draw: measured to epoch {epochs:g} for the sampler, then stopped")
            if settings.deadline is not None and settings.deadline.passed() and epochs < settings.max_epochs:
                # Not pruned: the trial completes with what it measured, so a stage cut short still has an answer.
                set_attr(trial, record.CUT_SHORT, f"stopped at epoch {epochs:g}: the {settings.stage}'s time was up")
                raise _TimeUp

        started = time.perf_counter()
        try:
            try:
                result = train(
                    model, cfg.train, self.splits, runtime=settings.runtime, seed=seed,
                    on_epoch_end=on_epoch_end, on_step=self.observer.step, evals_per_epoch=settings.evals_per_epoch,
                )  # fmt: skip
            except _TimeUp:
                result = TrainResult(history=tuple(reports))
            if cfg.train.augment.flip:
                self._record_flip_tta(trial, model, result)
        except DivergedError as exc:
            _prune(trial, str(exc), cause=exc)
        except torch.OutOfMemoryError as exc:
            _prune(trial, f"out of memory on {settings.runtime.device}", cause=exc)
        finally:
            set_attr(trial, record.WALL_SECONDS, round(time.perf_counter() - started, 3))
            del model
            _release_memory(settings.runtime.device)
        best = result.best
        if best is None or best.val_acc is None or not math.isfinite(best.val_acc):
            # Optuna would record an infinite value as a completed trial, and the study's best with it.
            raise RuntimeError(f"training ended without a finite validation accuracy ({best and best.val_acc})")
        set_attr(trial, record.BEST_EPOCH, best.epochs_done)
        if settings.artifacts is not None and best.val_logits is not None:
            self._upload_confusion(trial, best, settings.artifacts)
        return best.val_acc

    def _record_flip_tta(self, trial: optuna.Trial, model: torch.nn.Module, result: TrainResult) -> None:
        """The trained model's last validation accuracy alone and averaged with the mirror images (one more pass
        over the validation images): the evidence ``export-best`` ships flip test-time augmentation on
        (:mod:`search.model.tta`). The two are the same weights on the same images, so they compare exactly."""
        val = self.splits.val
        last = result.history[-1] if result.history else None
        if val is None or last is None or last.val_logits is None or last.val_acc is None:
            return
        s = self.settings
        mirrored = evaluate(model, ImageSet(val.x.flip(-1), val.y), mean=self.splits.mean, std=self.splits.std,
                            runtime=s.runtime)  # fmt: skip
        y = val.y.cpu()
        plain_right = last.val_logits.argmax(1) == y
        flip_right = averaged(last.val_logits, mirrored.logits).argmax(1) == y
        set_attr(trial, record.FLIP_TTA, {
            "epochs": last.epochs_done, "plain": last.val_acc, "flip": round(float(flip_right.double().mean()), 6),
            # The images that decide the difference (McNemar's discordant pairs): what validation_says weighs.
            "flip_only": int((flip_right & ~plain_right).sum()), "plain_only": int((plain_right & ~flip_right).sum()),
        })  # fmt: skip

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


class _TimeUp(Exception):
    """The stage's deadline passed: stop training, keep what was measured."""


def _prune(trial: optuna.Trial, reason: str, *, cause: BaseException | None = None) -> NoReturn:
    """End the trial as PRUNED, its reason kept where users look (the display, the dashboard)."""
    set_attr(trial, record.PRUNED_REASON, reason)
    raise optuna.TrialPruned(reason) from cause


def _explores(trial: optuna.Trial) -> bool:
    """Whether the sampler drew this trial at random (the `random` mode: stopped at the second rung)."""
    sampler = trial.study.sampler
    return isinstance(sampler, OneSamplerPerTrial) and sampler.explores(trial.number)


def _how_drawn(trial: optuna.Trial) -> dict[str, Any]:
    """How the sampler drew this trial (prior, incumbent, tpe, random) and, for an incumbent draw, near which trial,
    when the sampler says (None where it does not)."""
    sampler = trial.study.sampler
    if not isinstance(sampler, PriorBandSampler):
        return {}
    return {record.DRAWN_BY: sampler.mode(trial.number), record.NEAR: sampler.anchor(trial.number)}


def _release_memory(device: torch.device) -> None:
    """Give the accelerator's cached memory back between trials."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
