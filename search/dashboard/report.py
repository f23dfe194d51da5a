"""The dashboard's main plots as static files, for people without a browser session on the server.

``write_report`` draws each plot twice with Optuna's visualisation module: interactive HTML with
plotly (one shared ``plotly.min.js`` beside the pages, so they work offline) and a PNG with
its matplotlib twin (no kaleido needed), plus an ``index.html`` that shows the PNGs, links the
interactive pages and carries the study's summary note.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search.errors import StorageError
from search.store.notes import study_note

PARALLEL_PARAMS = 6  # axes of the parallel-coordinates plot: the most important parameters
PLOTS = ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate")
TITLES = {
    "optimization_history": "Optimization history: validation accuracy per trial, best so far",
    "param_importances": "Parameter importances for the validation accuracy",
    "intermediate_values": "Learning curves: validation accuracy at each report (pruned trials stop early)",
    "parallel_coordinate": f"Parallel coordinates: the {PARALLEL_PARAMS} most important parameters, completed trials",
}


@dataclass(frozen=True)
class Report:
    directory: Path
    files: tuple[str, ...]
    skipped: dict[str, str]  # plot -> why it could not be drawn (e.g. too few completed trials)


def _plotters(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    from optuna import visualization
    from optuna.visualization import matplotlib

    return getattr(visualization, f"plot_{name}"), getattr(matplotlib, f"plot_{name}")


def _save_png(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(11, 6)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)  # pyplot keeps every figure alive until closed


def _draw(study: optuna.Study, name: str, out: Path) -> None:
    interactive, static = _plotters(name)
    kwargs: dict[str, Any] = {"target_name": "validation accuracy"} if name != "intermediate_values" else {}
    if name == "parallel_coordinate":
        kwargs["params"] = _top_params(study)
    figure = interactive(study, **kwargs)
    figure.update_layout(title=TITLES[name])
    # "directory": one plotly.min.js beside the pages, referenced by each (offline, 4 MB once).
    figure.write_html(out / f"{name}.html", include_plotlyjs="directory")
    _save_png(static(study, **kwargs), out / f"{name}.png")


def _top_params(study: optuna.Study, k: int = PARALLEL_PARAMS) -> list[str] | None:
    """The ``k`` most important parameters (all of them with fewer than 2 completed trials).

    Every axis of a parallel-coordinates plot must fit on one page; two dozen conditional
    parameters do not.
    """
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    return list(optuna.importance.get_param_importances(study))[:k]


def write_report(study: optuna.Study, out: Path) -> Report:
    """Write the plots of ``study`` into ``out`` (HTML and PNG each) and an index page."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        raise StorageError(f"study {study.study_name!r} has no completed trial to plot; run a search first")
    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    drawn: list[str] = []
    with warnings.catch_warnings():
        # Optuna's experimental-API notices and its remarks on tiny studies ("less than 2 trials"): noise here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name in PLOTS:
            if name == "param_importances" and len(done) < 2:
                skipped[name] = "needs at least 2 completed trials"
                continue
            try:
                _draw(study, name, out)
            except (ValueError, RuntimeError) as exc:  # e.g. no parameter shared by every trial
                skipped[name] = f"{type(exc).__name__}: {exc}"
                continue
            drawn.append(name)
    (out / "index.html").write_text(_index(study, drawn, skipped), encoding="utf-8")
    files = ["index.html", *(f"{n}.{ext}" for n in drawn for ext in ("html", "png"))]
    if drawn:
        files.append("plotly.min.js")
    return Report(directory=out, files=tuple(files), skipped=skipped)


def _index(study: optuna.Study, drawn: list[str], skipped: dict[str, str]) -> str:
    name = html.escape(study.study_name)
    parts = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>fsearch report: {name}</title>',
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
        "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style></head><body>",
        f"<h1>fsearch report: {name}</h1>",
        f"<pre>{html.escape(study_note(study))}</pre>",
    ]
    for plot in drawn:
        parts += [
            f"<h2>{html.escape(TITLES[plot])}</h2>",
            f'<p><a href="{plot}.html">interactive version</a></p>',
            f'<img src="{plot}.png" alt="{html.escape(TITLES[plot])}">',
        ]
    for plot, why in skipped.items():
        parts.append(f"<h2>{html.escape(TITLES[plot])}</h2><p>Not drawn: {html.escape(why)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
