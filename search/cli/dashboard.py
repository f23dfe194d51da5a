"""``fsearch dashboard`` and ``report``: the study in optuna-dashboard, or as static plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from search.cli.common import ArtifactsOpt, JsonOpt, StorageOpt, StudyOpt, command
from search.paths import DEFAULT_STORAGE, DEFAULT_STUDY

commands = typer.Typer()


@command(commands)
def dashboard(
    study: Annotated[str | None, typer.Option("--study", help="Open this study's page.", show_default=False)] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Address to listen on; other than loopback, anyone there can see it.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Serve optuna-dashboard on the study storage: learning curves, parameters, notes and artifacts.

    Safe beside a running search on the same SQLite file. Ctrl+C stops it.
    """
    from search.dashboard.server import is_loopback, make_app, serve, study_path
    from search.store.storage import mask_url

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    app = make_app(storage, artifacts=artifacts)
    page = study_path(storage, study)

    def ready(base: str) -> None:
        if not is_loopback(host):
            console.print(
                f"[yellow]Warning: the dashboard has no authentication; anyone who can reach {base} can read "
                "and edit the studies in this storage.[/]"
            )
        # stdout, flushed: a script (or a test) reads the URL from here.
        typer.echo(f"optuna-dashboard on {mask_url(storage)}: {base}{page}")
        console.print("Ctrl+C stops it.")

    try:
        serve(app, host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:
        console.print("Dashboard stopped.")
        raise typer.Exit(130) from None


@command(commands)
def report(
    study: StudyOpt = DEFAULT_STUDY,
    storage: StorageOpt = DEFAULT_STORAGE,
    out: Annotated[Path | None, typer.Option(help="Output folder.", show_default="studies/<study>/report")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the study's plots as static HTML and PNG files, with an index.html that shows them all.

    The plots: the optimization history (hand-queued presets marked), parameter importances, learning
    curves by epoch and parallel coordinates of the most important parameters.
    """
    from search.dashboard.report import write_report
    from search.paths import report_dir
    from search.store.study import open_study

    found = open_study(storage, study)
    written = write_report(found, out or report_dir(study))
    if json_out:
        out_json = {"directory": str(written.directory), "files": list(written.files), "skipped": written.skipped}
        typer.echo(json.dumps(out_json, indent=2))
        return
    console = Console()
    for name, why in written.skipped.items():
        console.print(f"[yellow]{name} not drawn: {why}[/]")
    console.print(f"Report of study {study!r}: {written.directory / 'index.html'} ({len(written.files)} files)")
