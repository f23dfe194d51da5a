"""fsearch: search CNN architectures and training settings on Fashion-MNIST with Optuna.

The library API; the ``fsearch`` command line is a thin shell over it::

    import search

    report = search.run_search(search.SearchOptions(trials=10))
    exported = search.export_best(study="fashion-mnist", storage="sqlite:///studies/fsearch.db")
    model = search.load_model("studies/fashion-mnist/best")
    for p in search.predict(model, ["shirt.png"], top=3):
        print(p.image, p.label, p.confidence)

Each name is imported on first use, so ``import search`` (and ``fsearch --help``) loads no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (module, attribute): the public API and where each piece lives.
_EXPORTS = {
    "SearchOptions": ("search.tune.session", "SearchOptions"),
    "SearchReport": ("search.tune.runner", "SearchReport"),
    "run_search": ("search.tune.runner", "run_search"),
    "RetrainOptions": ("search.model.retrain", "RetrainOptions"),
    "ExportReport": ("search.model.retrain", "ExportReport"),
    "export_best": ("search.model.best", "export_best"),
    "train_preset": ("search.model.retrain", "retrain_preset"),
    "LoadedModel": ("search.model.export", "LoadedModel"),
    "load_model": ("search.model.export", "load_model"),
    "Prediction": ("search.model.predict", "Prediction"),
    "Failure": ("search.model.predict", "Failure"),
    "predict": ("search.model.predict", "predict_files"),
    "evaluate": ("search.model.predict", "evaluate_saved"),
    "FsearchError": ("search.errors", "FsearchError"),
}

__all__ = [
    "ExportReport",
    "Failure",
    "FsearchError",
    "LoadedModel",
    "Prediction",
    "RetrainOptions",
    "SearchOptions",
    "SearchReport",
    "evaluate",
    "export_best",
    "load_model",
    "predict",
    "run_search",
    "train_preset",
]

if TYPE_CHECKING:
    from search.errors import FsearchError
    from search.model.best import export_best
    from search.model.export import LoadedModel, load_model
    from search.model.predict import Failure, Prediction
    from search.model.predict import evaluate_saved as evaluate
    from search.model.predict import predict_files as predict
    from search.model.retrain import ExportReport, RetrainOptions
    from search.model.retrain import retrain_preset as train_preset
    from search.tune.runner import SearchReport, run_search
    from search.tune.session import SearchOptions


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
