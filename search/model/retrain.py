"""Retrain a configuration on all 60,000 training images, test it once, write a model directory.

The library API behind ``fsearch export-best`` and ``fsearch train --preset``. It trains with
the one training loop (:func:`search.train.train`) with no validation split, reads the test
set only after training has finished, evaluates on it exactly once, and writes into ``out``:

- ``model.safetensors`` and ``config.json`` (see :mod:`search.model.export`);
- ``metrics.json``: test accuracy and loss, per-class precision/recall/F1, confusion matrix,
  training time; with ``tta`` the model ships flip test-time augmentation (:mod:`search.model.tta`):
  the figures are those of the averaged model, and the plain network's accuracy and loss stand beside
  them under ``plain``;
- ``history.csv``, ``confusion_matrix.png``, ``training_curves.png``;
- ``model.onnx`` / ``model.torchscript.pt`` when asked for (see :mod:`search.model.graph`).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.data import CLASSES, ImageSet, Splits, check_split, load_splits, load_test, resolve_data_dir
from search.device import resolve_device
from search.errors import ConfigError
from search.metrics import classification_metrics, plot_confusion_matrix, plot_training_curves, write_history
from search.model.export import CONFIG_FILE, WEIGHTS_FILE, save_model, write_json
from search.model.graph import GRAPH_FILES, check_formats, export_graph
from search.model.tta import FLIP, with_tta
from search.paths import make_output_dir, preset_dir
from search.runtime import Runtime
from search.train import EpochCallback, StepCallback, TrainResult, check_seed, evaluate, seed_everything, train
from space import PRESETS, TrialConfig, build_model, count_parameters, preset_config

StartCallback = Callable[[TrialConfig], None]
GRAPH_SAMPLE = 256  # test images the exported graphs are checked on
MIN_TRAIN_LIMIT_S = 1.0  # what a time limit leaves the training when the set-up before it has used it all


@dataclass(frozen=True)
class RetrainOptions:
    """Where the data is, where to run, where to write, and what else to produce."""

    out: Path
    data_dir: Path | None = None
    device: str = "auto"
    seed: int = 0
    verify_data: bool = True
    formats: tuple[str, ...] = ()
    # Ship flip test-time augmentation: the saved model, its graphs and its test figures average each image
    # with its mirror image (search.model.tta); the plain figures are recorded beside them.
    tta: bool = False
    # Seconds the training may take (export-best: the plan's time for the export); None: all its epochs.
    time_limit_s: float | None = None
    # time.perf_counter() when time_limit_s began to count (export-best: its start, so that its timing and the
    # data loading come out of the plan's time), in this process; None: when the training starts.
    limit_from: float | None = None
    # The memory format to train in (export-best: the one timed faster); None: the runtime's default.
    channels_last: bool | None = None
    # CUDA graphs of the training step (Runtime.cuda_graphs); None: on for CUDA.
    cuda_graphs: bool | None = None

    def runtime(self) -> Runtime:
        """How the retraining trains (and ``export-best`` times it): the one home of device, format and graphs."""
        return Runtime(device=resolve_device(self.device), channels_last=self.channels_last,
                       cuda_graphs=self.cuda_graphs)  # fmt: skip


@dataclass(frozen=True)
class ExportReport:
    """What a retraining produced (the CLI prints it; ``--json`` dumps it)."""

    directory: Path
    files: tuple[str, ...]
    epochs: float  # trained: fewer than configured, and fractional, when the time limit ended the training
    seed: int
    device: str
    train_seconds: float
    metrics: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory), "files": list(self.files), "epochs": self.epochs, "seed": self.seed,
            "device": self.device, "train_seconds": self.train_seconds, "test_accuracy": self.test_accuracy,
            "test_loss": self.metrics["loss"], "test_time_augmentation": self.metrics.get("test_time_augmentation"),
            "plain_test_accuracy": (self.metrics.get("plain") or {}).get("accuracy"), "provenance": self.provenance,
        }  # fmt: skip


def versions() -> dict[str, str]:
    """Versions of the software that trained the model (recorded in config.json)."""
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchvision", "optuna", "safetensors", "fsearch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def check_epochs(epochs: int) -> None:
    """The one check of ``--epochs`` (export-best, train, and a config passed to :func:`retrain`)."""
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")


def retrain(
    cfg: TrialConfig,
    opts: RetrainOptions,
    *,
    provenance: dict[str, Any],
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    on_start: StartCallback | None = None,
) -> ExportReport:
    """Train ``cfg`` on the full training set, evaluate once on the test set, write ``opts.out``.

    ``provenance`` says where the configuration came from (study and trial, or preset); the
    seed, the device and the software versions are added here. ``on_start`` is called with the
    config once the data is loaded, just before training (a display sizes its bars there).
    """
    check_formats(opts.formats)
    if opts.tta and not cfg.train.augment.flip:
        raise ConfigError(
            "--tta averages each image with its mirror image, but this model does not train with flips; drop --tta"
        )
    check_epochs(cfg.train.epochs)
    check_seed(opts.seed)
    data_dir = resolve_data_dir(opts.data_dir)
    runtime = opts.runtime()
    device = runtime.device
    # val_size=0: every training image trains; nothing is held out, and the test set stays unread.
    splits = load_splits(data_dir, device=device, val_size=0, seed=opts.seed, verify=opts.verify_data)
    check_split(data_dir, "test", verify=opts.verify_data)  # a corrupt test file fails now, not after training
    make_output_dir(opts.out)  # and a folder that cannot be made (made once the data is good: no empty folder)
    seed_everything(opts.seed)
    model = build_model(cfg.arch)
    if on_start is not None:
        on_start(cfg)
    started = time.perf_counter()
    limit = opts.time_limit_s
    if limit is not None and opts.limit_from is not None:
        limit = max(limit - (started - opts.limit_from), MIN_TRAIN_LIMIT_S)
    result = train(model, cfg.train, splits, runtime=runtime, seed=opts.seed, on_epoch_end=on_epoch_end,
                   on_step=on_step, time_limit_s=limit)  # fmt: skip
    wall = time.perf_counter() - started

    # The test set is read only now, after training, and evaluated on once.
    test = load_test(data_dir, device=device, verify=opts.verify_data)
    tta = FLIP if opts.tta else None
    metrics = held_out_metrics(model, test, splits, runtime, tta=tta)
    metrics |= {
        "train_seconds": round(result.train_seconds, 3), "wall_seconds": round(wall, 3),
        "images_per_second": round(result.images_per_second, 1), "epochs": result.epochs_run,
        "train_images": len(splits.train), "time_limit_s": opts.time_limit_s,
        "train_time_limit_s": None if limit is None else round(limit, 3), "time_limited": result.time_limited,
        "memory_format": runtime.memory_format,
    }  # fmt: skip
    provenance = provenance | {"seed": opts.seed, "device": runtime.describe(), "versions": versions()}
    files = _write(opts.out, model, cfg, splits, metrics, result, provenance)
    # Graphs last: a failed export or check must not cost the trained model, which is saved by now.
    shipped = with_tta(model, tta)  # the graphs compute what the test figures measured
    graphs = {fmt: export_graph(fmt, opts.out, shipped, mean=splits.mean, std=splits.std, sample=test.x[:GRAPH_SAMPLE])
              for fmt in opts.formats}  # fmt: skip
    if graphs:
        meta = json.loads((opts.out / CONFIG_FILE).read_text(encoding="utf-8"))
        write_json(opts.out / CONFIG_FILE, meta | {"graphs": {fmt: path.name for fmt, path in graphs.items()}})
    return ExportReport(
        directory=opts.out, files=(*files, *(p.name for p in graphs.values())), epochs=result.epochs_run,
        seed=opts.seed, device=provenance["device"], train_seconds=result.train_seconds, metrics=metrics,
        provenance=provenance,
    )  # fmt: skip


def held_out_metrics(
    model: nn.Module, data: ImageSet, splits: Splits, runtime: Runtime, *, tta: str | None
) -> dict[str, Any]:
    """The metrics of one evaluation on held-out images, of the model as it ships with test-time augmentation
    ``tta`` (None: the plain network); with one, the plain network's accuracy and loss under ``plain``. The
    test set for the export, the validation split for ``benchmarks/recipe.py``."""
    ev = evaluate(with_tta(model, tta), data, mean=splits.mean, std=splits.std, runtime=runtime)
    metrics = classification_metrics(ev.logits, data.y, CLASSES) | {"test_time_augmentation": tta}
    if tta is not None:
        plain = evaluate(model, data, mean=splits.mean, std=splits.std, runtime=runtime)
        metrics["plain"] = {"accuracy": plain.accuracy, "loss": plain.loss}
    return metrics


def _write(
    out: Path, model: nn.Module, cfg: TrialConfig, splits: Splits, metrics: dict[str, Any], result: TrainResult,
    provenance: dict[str, Any],
) -> tuple[str, ...]:  # fmt: skip
    """The model directory (made by :func:`retrain` before training), metrics.json, history.csv and the two plots;
    returns the file names."""
    for name in GRAPH_FILES.values():
        (out / name).unlink(missing_ok=True)  # no stale graph from an earlier export of another model
    extra = {
        "parameters": count_parameters(model), "train_images": len(splits.train), "epochs": result.epochs_run,
        "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"],
        "test_time_augmentation": metrics["test_time_augmentation"],
        "plain_test_accuracy": metrics["plain"]["accuracy"] if "plain" in metrics else None,
        "graphs": {}, "graph_input": "float32 (N, 1, 28, 28) pixels in [0, 1]; normalisation inside the graph",
        "provenance": provenance,
    }  # fmt: skip
    save_model(out, model, cfg=cfg, mean=splits.mean, std=splits.std, classes=CLASSES, extra=extra)
    write_json(out / "metrics.json", metrics)
    write_history(out / "history.csv", result.history)
    plot_confusion_matrix(out / "confusion_matrix.png", metrics["confusion_matrix"], CLASSES,
                          title=f"Test set: accuracy {metrics['accuracy']:.4f}")  # fmt: skip
    plot_training_curves(out / "training_curves.png", result.history, test_accuracy=metrics["accuracy"])
    return (WEIGHTS_FILE, CONFIG_FILE, "metrics.json", "history.csv", "confusion_matrix.png", "training_curves.png")


def retrain_preset(
    name: str,
    opts: RetrainOptions | None = None,
    *,
    epochs: int | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    on_start: StartCallback | None = None,
) -> ExportReport:
    """Retrain a preset (``space.PRESETS``) by the same path as ``export-best``; ``opts.out``
    defaults to ``studies/presets/<name>``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    if epochs is not None:
        check_epochs(epochs)
    opts = opts or RetrainOptions(out=preset_dir(name))
    cfg = preset_config(name, epochs=epochs)
    provenance = {"source": "preset", "preset": name, "params": PRESETS[name], "epochs": cfg.train.epochs}
    return retrain(cfg, opts, provenance=provenance, on_epoch_end=on_epoch_end, on_step=on_step, on_start=on_start)
