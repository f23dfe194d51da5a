"""Which choices of the space never reach a screen's best? Read from the committed headline records.

    python -m benchmarks.dead_choices [--commit REV --out docs/measurements/dead-choices-cpu.json]

For each value of the space's discrete parameters (``CHOICES``), over the screen trials the samplers drew (queued
presets and finalists left out) that trained: how many there were, how many completed the screen's full epochs,
the best of those, how many places in their screen's 3 best completed trials (any trial, presets included) they
took, and their share of the screens' training seconds (epochs times the 50,000 training images over the images
per second recorded; records without a speed count no seconds). A screen run again at a later commit with the
same draws and values counts once. Validation accuracy only; no test figure is read. Trains nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.derived import options, report, rows_of
from benchmarks.draw_modes import TOP, distinct, screen_best
from search.defaults import DEFAULT_VAL_SIZE
from search.throughput import EXPORT_IMAGES

CHOICES = ("batch_norm", "head", "activation", "optimizer", "schedule", "batch_size", "n_blocks", "kernel",
           "dense_layers", "crop_pad", "rotate")  # fmt: skip
# The choices that never took a place in a screen's best 3 and that FIXED_IN_DRAWS (search/defaults.py) now rules
# out of the draws; the augmentation choices that never did either (crop 2, rotation 15) stay: docs/defaults.md.
NEVER_KEPT = (("batch_norm", False), ("head", "gap"))
TRAIN_IMAGES = EXPORT_IMAGES - DEFAULT_VAL_SIZE  # a screen trial's training split: all but the validation images


def _seconds(trial: dict[str, Any]) -> float:
    speed = trial.get("images_per_second")
    return (trial.get("epochs_run") or 0.0) * TRAIN_IMAGES / speed if speed else 0.0


def screen_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """One screen's drawn trials that trained, with what :func:`by_choice` counts; None without such trials."""
    screen = [t for t in record.get("trials_of_the_study") or [] if t.get("stage") == "screen" and "params" in t]
    drawn = [t for t in screen if t.get("preset") is None and t.get("epochs_run")]
    if not drawn:
        return None
    full, best = screen_best(screen)
    top = {t["number"] for t in best}
    return {
        "key": [[t["number"], t.get("value")] for t in screen],
        "seconds": round(sum(_seconds(t) for t in screen), 1),
        "draws": [
            {"params": {k: t["params"].get(k) for k in CHOICES}, "seconds": round(_seconds(t), 1),
             "full": t.get("state") == "complete" and (t.get("epochs_run") or 0.0) == full and full > 0,
             "value": t.get("value"), "top": t["number"] in top}
            for t in drawn
        ],
    }  # fmt: skip


def by_choice(screens: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``parameter=value`` over the screens: trained draws, completed at full epochs, best value, top-3 places
    and share of all the screens' training seconds."""
    total = sum(s["seconds"] for s in screens) or 1.0
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"trained": 0, "full": 0, "best": None, f"top{TOP}": 0,
                                                          "seconds": 0.0})  # fmt: skip
    for screen in screens:
        for draw in screen["draws"]:
            for name, value in draw["params"].items():
                if value is None:
                    continue
                row = acc[f"{name}={value}"]
                row["trained"] += 1
                row["seconds"] += draw["seconds"]
                row[f"top{TOP}"] += draw["top"]
                if draw["full"]:
                    row["full"] += 1
                    row["best"] = max(row["best"] or 0.0, round(draw["value"], 4))
    return {k: v | {"seconds": round(v["seconds"] / total, 3)} for k, v in sorted(acc.items())}


def never_kept(screens: list[dict[str, Any]]) -> dict[str, Any]:
    """The drawn trials with a choice of ``NEVER_KEPT`` (the draws ``FIXED_IN_DRAWS`` now rules out): how many,
    and their share of the screens' trained draws and training seconds; per screen and in all."""

    def hit(draw: dict[str, Any]) -> bool:
        return any(draw["params"].get(k) == v for k, v in NEVER_KEPT)

    rows = [{"record": s["record"], "trained": len(s["draws"]), "never_kept": sum(map(hit, s["draws"])),
             "seconds": s["seconds"], "never_kept_seconds": round(sum(d["seconds"] for d in s["draws"] if hit(d)), 1)}
            for s in screens]  # fmt: skip
    trained, seconds = sum(r["trained"] for r in rows), sum(r["seconds"] for r in rows) or 1.0
    hits = sum(r["never_kept"] for r in rows)
    total = {"choices": [f"{k}={v}" for k, v in NEVER_KEPT], "draws": hits, "of_trained": trained,
             "share_of_draws": round(hits / trained, 3) if trained else None,
             "share_of_seconds": round(sum(r["never_kept_seconds"] for r in rows) / seconds, 3)}  # fmt: skip
    return {"total": total, "rows": rows}


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    screens = distinct(rows_of(args.records, screen_of))
    kept = never_kept(screens)
    summary = {"screens": len(screens), "by_choice": by_choice(screens), "never_kept": kept["total"]}
    what = (f"per value of the space's discrete parameters: the screens' drawn trials that trained, completed, best, "
            f"places in the screen's best {TOP}, share of training seconds")  # fmt: skip
    report(args, module="dead_choices", what=what, summary=summary, rows={"screens": kept["rows"]})


if __name__ == "__main__":
    main()
