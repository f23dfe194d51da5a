"""The trial record: the user attributes fsearch writes on trials and studies, and their readers.

Optuna keeps a trial's parameters and values; everything else fsearch knows about a trial (what
it cost, why it stopped, where it came from) is a user attribute. Their names are spelled here
once: the objective writes them through :func:`set_attr`, and every reader (the live display,
the summary table, the study note, ``export-best``) goes through :class:`TrialRecord`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.defaults import DEFAULT_VAL_SIZE
from search.stats import accuracy_noise
from search.throughput import Throughput

# Trial attributes, written by the objective (search.tune.objective) unless said otherwise.
SEED = "seed"  # the trial's training seed
PARAMETERS = "parameters"  # trainable parameters of the network
MACS = "macs"  # multiply-accumulates per image, forward pass
FLOPS = "flops"
DEVICE = "device"
REPORTS_PER_EPOCH = "reports_per_epoch"  # step k of the learning curve is epoch k / reports_per_epoch
MAX_EPOCHS = "max_epochs"  # epochs the trial would run if never pruned
VAL_IMAGES = "val_images"  # images in the validation split it was scored on
EPOCHS_RUN = "epochs_run"
BEST_EPOCH = "best_epoch"
TRAIN_SECONDS = "train_seconds"  # training only, evaluation excluded
WALL_SECONDS = "wall_seconds"
IMAGES_PER_SECOND = "images_per_second"
PRUNED_REASON = "pruned_reason"
FAIL_REASON = "fail_reason"
CUT_SHORT = "cut_short"  # a trial that completed before its epochs because its stage's time was up: why
OVER_BUDGET = "over_budget"  # a draw skipped before training (over --max-mmacs): not one of the --trials
EXPLORE = "explore"  # a random draw, stopped at the pruner's second rung (search.tune.samplers)
PRESET = "preset"  # set when the trial was queued by hand (--known-best, --warm-start): the preset's name
STAGE = "stage"  # "screen" (short, pruned) or "final" (a finalist trained again at the long fidelity)
PARENT = "parent"  # a finalist's screen trial (same parameters)
# {"epochs", "plain", "flip", "flip_only", "plain_only"}: last validation alone and averaged with mirror images,
# and the images right only with / only without the average (no counts in trials recorded before them)
FLIP_TTA = "flip_tta"
DRAWN_BY = "drawn_by"  # how the sampler drew the trial: prior, incumbent, tpe or random (search.tune.samplers)
NEAR = "near"  # the trial an incumbent draw was drawn near (its anchor)

# Study attributes.
SPACE_VERSION_ATTR = "space_version"  # the search-space version the study's trials were drawn from
EXPORT_PREFIX = "export:"  # "export:<trial>": what export-best measured for that trial
# Screen trials that run's finals passed over: too costly, at their measured speed, for the time left (study attribute)
FINALS_PASSED_OVER = "finals_passed_over"
PLAN = "plan"  # the time plan of the latest run (search.plan.Plan.as_dict): export-best follows it


def queued_params(t: FrozenTrial) -> dict[str, Any] | None:
    """The parameters a queued trial (``study.enqueue_trial``) was given, or None for one a sampler drew. Optuna keeps
    them in a system attribute: no public API gives a trial's queued parameters before it runs."""
    return t.system_attrs.get("fixed_params")


def set_attr(trial: optuna.Trial, name: str, value: Any) -> None:
    """Write one record field of a running trial (``name`` is one of this module's constants)."""
    trial.set_user_attr(name, value)


@dataclass(frozen=True)
class TrialRecord:
    """Typed, read-only view of a finished or running trial's record."""

    trial: FrozenTrial

    def _get(self, name: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(name, default)

    @property
    def over_budget(self) -> bool:
        return bool(self._get(OVER_BUDGET, False))

    @property
    def trained(self) -> bool:
        """Whether the trial trained (over-budget draws never do)."""
        return not self.over_budget

    @property
    def preset(self) -> str | None:
        value = self._get(PRESET)
        return str(value) if value is not None else None

    @property
    def origin(self) -> str:
        """``preset <name>`` for a trial queued by hand (or a finalist of one), else ``sampled``
        (with how the sampler drew it, when it says)."""
        if self.preset:
            return f"preset {self.preset}"
        return f"sampled ({self.drawn_by})" if self.drawn_by else "sampled"

    @property
    def stage(self) -> str:
        return str(self._get(STAGE, "screen"))

    @property
    def parent(self) -> int | None:
        value = self._get(PARENT)
        return int(value) if value is not None else None

    @property
    def drawn_by(self) -> str | None:
        value = self._get(DRAWN_BY)
        return str(value) if value is not None else None

    @property
    def near(self) -> int | None:
        value = self._get(NEAR)
        return int(value) if value is not None else None

    @property
    def flip_tta(self) -> Any:
        """The trial's validation reading with and without mirror-image averaging (``FLIP_TTA``), None if it has
        none; kept as recorded, since :func:`search.model.tta.validation_says` reads readings of older forms too."""
        return self._get(FLIP_TTA)

    @property
    def epochs_run(self) -> float | None:
        value = self._get(EPOCHS_RUN)
        return float(value) if value is not None else None

    @property
    def cut_short(self) -> str | None:
        """Why the trial completed before its ``max_epochs`` (its stage's time was up), None if it did not."""
        value = self._get(CUT_SHORT)
        return str(value) if value is not None else None

    @property
    def train_seconds(self) -> float:
        return float(self._get(TRAIN_SECONDS, 0.0))

    @property
    def wall_seconds(self) -> float:
        return float(self._get(WALL_SECONDS, 0.0))

    @property
    def images_per_wall_second(self) -> float:
        """Images trained per second of the whole training call, evaluation included (what the plan needs)."""
        wall = self.wall_seconds
        return self.images_per_second * self.train_seconds / wall if wall > 0 else 0.0

    def effective_mmacs(self, throughput: Throughput) -> float:
        """The trial's size for a time plan: as its measured speed implies (``Throughput.effective_mmacs``)."""
        return throughput.effective_mmacs(self.images_per_wall_second, self.macs / 1e6)

    @property
    def images_per_second(self) -> float:
        return float(self._get(IMAGES_PER_SECOND, 0.0))

    @property
    def parameters(self) -> int:
        return int(self._get(PARAMETERS, 0))

    @property
    def macs(self) -> float:
        return float(self._get(MACS, 0.0))

    @property
    def max_epochs(self) -> float | None:
        value = self._get(MAX_EPOCHS)
        return float(value) if value is not None else None

    @property
    def reports_per_epoch(self) -> int:
        return int(self._get(REPORTS_PER_EPOCH, 1))

    @property
    def val_images(self) -> int | None:
        value = self._get(VAL_IMAGES)
        return int(value) if value is not None else None

    def noise(self, accuracy: float) -> float:
        """One standard error of ``accuracy`` on this trial's validation images (the default split's size for a
        trial that did not record its own): the least gap that says another value is ahead or behind."""
        return accuracy_noise(accuracy, self.val_images or DEFAULT_VAL_SIZE)

    @property
    def best_epoch(self) -> float | None:
        value = self._get(BEST_EPOCH)
        return float(value) if value is not None else None

    @property
    def seed(self) -> int | None:
        value = self._get(SEED)
        return int(value) if value is not None else None

    @property
    def device(self) -> str | None:
        value = self._get(DEVICE)
        return str(value) if value is not None else None

    @property
    def reason(self) -> str | None:
        """Why the trial was pruned, skipped or failed (None for a completed one)."""
        value = self._get(PRUNED_REASON) or self._get(FAIL_REASON)
        return str(value) if value is not None else None

    def curve(self) -> dict[float, float]:
        """The validation accuracy reported at each point, keyed by epochs trained."""
        per_epoch = self.reports_per_epoch
        return {step / per_epoch: value for step, value in sorted(self.trial.intermediate_values.items())}


def trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that trained (over-budget draws left out)."""
    return [t for t in trials if TrialRecord(t).trained]


# A trial cut short by its stage's deadline is compared with the leader at its own epochs, if it got
# at least this share of the leader's epochs (below that, the order of configurations is known to invert).
MIN_SHARE_COMPARED = 0.5


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The answer of a study: among completed trials of the longest fidelity (the most epochs a trial
    was to train: finalists before screen trials), the one with the highest validation accuracy at equal epochs.

    Accuracies after different numbers of epochs are not comparable (and rank configurations
    differently), so a screen trial never outranks a finalist whatever its value. Within a fidelity, the
    leader is the best of the trials that reported furthest; a trial cut short by the deadline (fewer reports,
    at least ``MIN_SHARE_COMPARED`` of the leader's epochs) takes the lead if it is ahead of the leader at its last
    report, the leader's best up to then: three epochs do not outrank two and a half by being longer.
    """
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    longest = max(TrialRecord(t).max_epochs or 0.0 for t in done)
    same = [t for t in done if (TrialRecord(t).max_epochs or 0.0) == longest]
    most = max(_reach(t) for t in same)
    leader = max((t for t in same if _reach(t) == most), key=lambda t: t.value or 0.0)
    shorter = [t for t in same if MIN_SHARE_COMPARED * most <= _reach(t) < most]
    for t in sorted(shorter, key=lambda t: (_reach(t), t.value or 0.0), reverse=True):
        if _best_until(t, _reach(t)) > _best_until(leader, _reach(t)):
            leader = t
    return leader


def _reach(t: FrozenTrial) -> float:
    """The epochs a trial had trained at its last report (0 if it reported none)."""
    return max(TrialRecord(t).curve(), default=0.0)


def _best_until(t: FrozenTrial, epochs: float) -> float:
    """A trial's best validation accuracy reported up to ``epochs`` (its value if it reported none)."""
    values = [v for e, v in TrialRecord(t).curve().items() if e <= epochs]
    return max(values) if values else float(t.value or 0.0)


def exports(study: optuna.Study) -> list[tuple[int, dict[str, Any]]]:
    """What export-best recorded on the study, as (trial number, record), newest first."""
    found = [
        (int(key.removeprefix(EXPORT_PREFIX)), value)
        for key, value in study.user_attrs.items()
        if key.startswith(EXPORT_PREFIX) and isinstance(value, dict) and "test_accuracy" in value
    ]
    return sorted(found, key=lambda e: str(e[1].get("exported_at", "")), reverse=True)


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """A JSON-friendly view of a trial (``fsearch show --json``, ``fsearch run --json``)."""
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": t.value,
        "origin": TrialRecord(t).origin,
        "params": t.params,
        "user_attrs": t.user_attrs,
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "duration_seconds": t.duration.total_seconds() if t.duration else None,
    }
