"""Use a saved model: classify image files (``fsearch predict``), re-measure it (``fsearch evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search.data import CLASSES, load_test, resolve_data_dir
from search.device import describe
from search.errors import ConfigError, ImageError, ModelError, one_line
from search.metrics import classification_metrics
from search.model.export import CONFIG_FILE, LoadedModel
from search.model.images import read_image
from search.runtime import Runtime
from search.train import evaluate, prepare_model

BATCH = 1024  # images per forward pass when many files are given


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, most probable first."""

    image: str
    top: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image, "class": self.label, "confidence": self.confidence,
            "top": [{"class": c, "probability": p} for c, p in self.top],
        }  # fmt: skip


@dataclass(frozen=True)
class Failure:
    """An image that could not be read, with the one-line reason."""

    image: str
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error}


def predict_files(loaded: LoadedModel, files: Sequence[Path | str], *, top: int = 1) -> list[Prediction | Failure]:
    """One result per image file, in order; unreadable images become :class:`Failure` and the rest go on."""
    paths = [Path(f) for f in files]
    if not 1 <= top <= len(loaded.classes):
        raise ConfigError(f"--top must be within 1..{len(loaded.classes)}, got {top}")
    images: dict[int, torch.Tensor] = {}
    results: list[Prediction | Failure | None] = []
    for i, path in enumerate(paths):
        try:
            images[i] = read_image(path)
            results.append(None)
        except ImageError as exc:
            error = one_line(str(exc))
            if (path / CONFIG_FILE).is_file():  # `fsearch predict MODEL IMAGE...`: the model named as an image
                error = f"{path}: a saved model's folder, not an image; name the model with --model"
            results.append(Failure(image=str(path), error=error))
    order = list(images)
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        probs = loaded.probabilities(torch.stack([images[i] for i in chunk]))
        values, indices = probs.topk(top, dim=1)
        for row, i in enumerate(chunk):
            top_k = tuple(
                (loaded.classes[int(c)], round(float(p), 6)) for p, c in zip(values[row], indices[row], strict=True)
            )
            results[i] = Prediction(image=str(paths[i]), top=top_k)
    return [r for r in results if r is not None]


def evaluate_saved(loaded: LoadedModel, *, data_dir: Path | None, verify: bool = True) -> dict[str, Any]:
    """The saved model's metrics on the 10,000 test images (on its device), beside the recorded ones."""
    if tuple(loaded.classes) != CLASSES:
        raise ModelError(f"{loaded.directory} was not trained on Fashion-MNIST's classes; it cannot be evaluated here")
    device = next(loaded.model.parameters()).device
    runtime = Runtime(device=device)
    test = load_test(resolve_data_dir(data_dir), device=device, verify=verify)
    model = prepare_model(loaded.model, runtime)
    ev = evaluate(model, test, mean=loaded.mean, std=loaded.std, runtime=runtime)
    metrics = classification_metrics(ev.logits, test.y, loaded.classes)
    return metrics | {
        "model": str(loaded.directory), "device": describe(device),
        "recorded_test_accuracy": loaded.meta.get("test_accuracy"),
    }  # fmt: skip
