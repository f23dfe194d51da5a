"""Options and helpers shared by the command modules (typer annotations, choice checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from search.store.study import DEFAULT_STUDY

StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOpt = Annotated[str, typer.Option("--storage", help="Optuna storage URL (SQLite, PostgreSQL, ...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Folder holding FashionMNIST/raw/*.gz.", show_default="$FSEARCH_DATA_DIR or the cache"),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
VerifyOpt = Annotated[bool, typer.Option(help="Check the dataset files' md5 sums.")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs to train.", min=1, show_default="see above")]
FormatOpt = Annotated[
    list[str] | None, typer.Option("--format", help="Also export a graph: onnx or torchscript (repeatable).")
]
TtaOpt = Annotated[bool, typer.Option(help="Also report test accuracy with flip test-time augmentation.")]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Artifact store folder (confusion matrices, exported models).",
        show_default="artifacts/ beside a SQLite file, else studies/artifacts",
    ),
]
ModelOpt = Annotated[Path, typer.Option("--model", help="Model directory written by export-best or train.")]
DEFAULT_MODEL = Path("studies") / DEFAULT_STUDY / "best"
GRAPH_FORMATS = ("onnx", "torchscript")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=name)
    return value
