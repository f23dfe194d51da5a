"""The dashboard's main plots as static files, for people without a browser session on the server.

``write_report`` draws each plot twice: interactive HTML with Optuna's plotly module (one shared
``plotly.min.js`` beside the pages, so they work offline) and a PNG with matplotlib (no kaleido
needed), plus an ``index.html`` that shows the PNGs, links the interactive pages and carries the
study's summary note.

The PNGs of the optimization history and the learning curves are drawn here rather than by
Optuna's matplotlib twins, which cannot mark the trials queued by hand (user attribute
``preset``), draw curves by report rather than by epoch, and give every trial a legend entry: a
50-trial study's legend outgrew its plot.
"""

from __future__ import annotations

import html
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.errors import StorageError
from search.paths import make_output_dir
from search.store.notes import study_note
from search.store.record import TrialRecord

PARALLEL_PARAMS = 6  # axes of the parallel-coordinates plot: the most important parameters
NAMED_CURVES = 5  # learning curves named in the legend (the best completed trials); the others are grey
PRESET_COLOR = "#d62728"  # trials queued by hand: a red star wherever a plot marks them
CURVE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")  # neither red nor grey
PLOTS = ("optimization_history", "param_importances", "intermediate_values", "parallel_coordinate")
TITLES = {
    "optimization_history": "Optimization history: validation accuracy per trial, best so far",
    "param_importances": "Parameter importances for the validation accuracy",
    "intermediate_values": "Learning curves: validation accuracy by epoch (pruned trials stop early)",
    "parallel_coordinate": f"Parallel coordinates: the {PARALLEL_PARAMS} most important parameters, completed trials",
}


@dataclass(frozen=True)
class Report:
    directory: Path
    files: tuple[str, ...]
    skipped: dict[str, str]  # plot -> why it could not be drawn (e.g. too few completed trials)


def _draw(study: optuna.Study, name: str, out: Path) -> None:
    from optuna import visualization
    from optuna.visualization import matplotlib

    kwargs: dict[str, Any] = {"target_name": "validation accuracy"} if name != "intermediate_values" else {}
    if name == "parallel_coordinate":
        kwargs["params"] = _top_params(study)
    figure = getattr(visualization, f"plot_{name}")(study, **kwargs)
    figure.update_layout(title=TITLES[name])
    if name == "optimization_history":
        _mark_presets_html(study, figure)
        _history_png(study, out / f"{name}.png")
    elif name == "intermediate_values":
        _by_epoch_html(study, figure)
        _curves_png(study, out / f"{name}.png")
    else:
        _save_png(getattr(matplotlib, f"plot_{name}")(study, **kwargs), out / f"{name}.png")
    # "directory": one plotly.min.js beside the pages, referenced by each (offline, 4 MB once).
    figure.write_html(out / f"{name}.html", include_plotlyjs="directory")


def _save_png(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(11, 6)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)  # pyplot keeps every figure alive until closed


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]


def _preset(trial: FrozenTrial) -> str | None:
    """The preset's name for a trial queued by hand (--known-best, --warm-start), else None."""
    return TrialRecord(trial).preset


def _curve(trial: FrozenTrial) -> tuple[list[float], list[float]]:
    """The trial's learning curve as (epochs, validation accuracies)."""
    curve = TrialRecord(trial).curve()
    return list(curve), list(curve.values())


def _png(path: Path, draw: Callable[[Any], None], *, title: str, xlabel: str) -> None:
    """One figure in the style of Optuna's matplotlib plots, drawn without pyplot (no global figures)."""
    import matplotlib.style
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.style.context("ggplot"):
        figure = Figure(figsize=(11, 6))
        ax = figure.subplots()
        draw(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        if xlabel == "trial":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best", fontsize="small")
        figure.savefig(path, dpi=100, bbox_inches="tight")


def _history_png(study: optuna.Study, path: Path) -> None:
    done = sorted(_completed(study), key=lambda t: t.number)
    best = [max(t.value or 0.0 for t in done[: i + 1]) for i in range(len(done))]
    sampled = [t for t in done if not _preset(t)]
    queued = [t for t in done if _preset(t)]

    def draw(ax: Any) -> None:
        ax.step([t.number for t in done], best, where="post", color="#1f77b4", alpha=0.5, label="best so far")
        ax.scatter([t.number for t in sampled], [t.value for t in sampled], color="#1f77b4", label="sampled trial")
        if queued:
            values = [t.value for t in queued]
            ax.scatter([t.number for t in queued], values, marker="*", s=220, color=PRESET_COLOR, zorder=3,
                       label="queued by hand (preset)")  # fmt: skip
            for t in queued:
                ax.annotate(_preset(t), (t.number, t.value or 0.0), xytext=(9, -4), textcoords="offset points")

    _png(path, draw, title=f"{TITLES['optimization_history']} (completed trials)", xlabel="trial")


def named_curves(study: optuna.Study) -> set[int]:
    """The trials whose learning curves get a legend entry: the ``NAMED_CURVES`` best completed ones and
    those queued by hand (a legend of every trial grows taller than the plot)."""
    best = sorted(_completed(study), key=lambda t: t.value or 0.0, reverse=True)[:NAMED_CURVES]
    queued = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values and _preset(t)]
    return {t.number for t in best + queued}


def _curves_png(study: optuna.Study, path: Path) -> None:
    curves = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    named = named_curves(study)

    def draw(ax: Any) -> None:
        others = [t for t in curves if t.number not in named]
        for i, t in enumerate(others):
            ax.plot(*_curve(t), color="#8c8c8c", alpha=0.45, linewidth=0.8, marker=".", markersize=3,
                    label="other trials" if i == 0 else None)  # fmt: skip
        colors = itertools.cycle(CURVE_COLORS)
        for t in sorted((t for t in curves if t.number in named), key=lambda t: t.number):
            epochs, values = _curve(t)
            done = t.state == TrialState.COMPLETE and t.value is not None
            value = f"{t.value:.4f}" if done else f"{t.state.name.lower()} at epoch {epochs[-1]:g}"
            if _preset(t):
                ax.plot(epochs, values, color=PRESET_COLOR, linewidth=2, marker="*", markersize=10,
                        label=f"trial {t.number}, preset {_preset(t)}: {value}")  # fmt: skip
            else:
                ax.plot(
                    epochs, values, color=next(colors), linewidth=1.8, marker=".", label=f"trial {t.number}: {value}"
                )

    _png(path, draw, title=TITLES["intermediate_values"], xlabel="epoch")


def _mark_presets_html(study: optuna.Study, figure: Any) -> None:
    """Add the trials queued by hand to Optuna's interactive history, as labelled stars of their own."""
    queued = [t for t in _completed(study) if _preset(t)]
    if queued:
        figure.add_scatter(
            x=[t.number for t in queued], y=[t.value for t in queued], mode="markers+text",
            name="queued by hand (preset)", text=[_preset(t) for t in queued], textposition="middle right",
            marker={"symbol": "star", "size": 16, "color": PRESET_COLOR},
        )  # fmt: skip


def _by_epoch_html(study: optuna.Study, figure: Any) -> None:
    """Put Optuna's interactive learning curves (one trace per trial, named ``Trial<n>``) on an epoch axis."""
    trials = {f"Trial{t.number}": t for t in study.get_trials(deepcopy=False)}
    for trace in figure.data:
        if trace.name in trials:
            trace.x = _curve(trials[trace.name])[0]
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(title_text="validation accuracy")


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
    make_output_dir(out)
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
