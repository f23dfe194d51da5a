"""Options and helpers shared by the command modules (typer annotations, choice checks)."""

from __future__ import annotations

import contextlib
import inspect
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from search.defaults import GRAPH_FORMATS
from search.errors import signal_number
from search.tune.events import StopRequest

StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOpt = Annotated[str, typer.Option("--storage", help="Optuna storage URL (SQLite, PostgreSQL, ...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Folder holding FashionMNIST/raw/*.gz.", show_default="$FSEARCH_DATA_DIR or the cache"),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
CudaGraphsOpt = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graphs/--no-cuda-graphs",
        help="CUDA only: replay each training step's forward and backward as CUDA graphs (docs/gpu.md).",
        show_default="on for CUDA",
    ),
]
VerifyOpt = Annotated[bool, typer.Option(help="Check the dataset files' md5 sums.")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs to train.", show_default="see above")]
FormatOpt = Annotated[
    list[str] | None,
    typer.Option("--format", help=f"Also export a graph: {' or '.join(GRAPH_FORMATS)} (repeatable)."),
]
TtaOpt = Annotated[
    bool,
    typer.Option(
        help="Ship flip test-time augmentation: the model averages each image with its mirror image in predict, "
        "evaluate and the graphs; the plain network's test accuracy is reported beside."
    ),
]
ExportTtaOpt = Annotated[
    bool | None,
    typer.Option(
        "--tta/--no-tta",
        help="Ship flip test-time augmentation (the model averages each image with its mirror image), or not.",
        show_default="as the trial's validation accuracy with and without it says",
    ),
]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Artifact store folder (confusion matrices, exported models).",
        show_default="artifacts/ beside a SQLite file, else studies/artifacts",
    ),
]
ModelOpt = Annotated[Path, typer.Option("--model", help="Model directory written by export-best or train.")]
F = TypeVar("F", bound=Callable[..., Any])


def command(app: typer.Typer, name: str | None = None, *, doc: str | None = None) -> Callable[[F], F]:
    """``app.command(name)`` whose help is the function's docstring (or ``doc``) with each paragraph joined
    into one line, so that typer wraps it to the terminal: its rich help keeps the source's line breaks
    after the first paragraph."""

    def register(fn: F) -> F:
        paragraphs = inspect.cleandoc(doc or fn.__doc__ or "").split("\n\n")
        app.command(name, help="\n\n".join(" ".join(p.split()) for p in paragraphs))(fn)
        return fn

    return register


@contextlib.contextmanager
def stop_on_signals(interrupted: str) -> Iterator[StopRequest]:
    """Ctrl+C and `kill` (SIGTERM) raised at once and recorded, so that the training's callbacks can raise them
    again should the first raise be swallowed (:class:`~search.tune.events.StopRequest`). Either ends the block
    with the one line ``interrupted`` on stderr and the shell's exit code, 128 + the signal's number (130 for
    Ctrl+C, 143 for SIGTERM). The caller's handlers are put back after. SIGINT is left alone in a process started
    with it ignored (a background job of a non-interactive shell): that choice of its parent's is kept, as
    Python itself keeps it."""
    stop = StopRequest(raise_at_once=True)
    handled = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handled.append(signal.SIGINT)
    previous = {s: signal.signal(s, stop) for s in handled}
    try:
        yield stop
    except KeyboardInterrupt as exc:
        Console(stderr=True).print(interrupted, markup=False)
        raise typer.Exit(128 + signal_number(exc)) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
