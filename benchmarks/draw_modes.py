"""Which of PriorBand's modes drew the screen's best trials? Read from the committed headline records.

    python -m benchmarks.draw_modes [--commit REV --out docs/measurements/draw-modes-cpu.json]

Each headline record (``docs/measurements/staged-*.json``) lists its study's trials with the mode that drew each
(``drawn_by``: ``prior``, ``incumbent``, ``tpe``, ``random``; none for a queued preset, recorded here as
``preset``). Per screen this counts each mode's draws, the draws that trained (over-budget draws never do) and how
many of the screen's 3 best completed trials (by validation accuracy, at the screen's full epochs) and its leader
each mode drew. Screens run again at a later commit with the same draws and values count once (the first record in
file-name order). Records without modes (the `--no-known-best` runs before PriorBand drew them) are left out. The
evidence is validation accuracy only; no test figure is read. Trains nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks.derived import options, report, rows_of

TOP = 3  # a screen's best trials counted per mode


def _mode(trial: dict[str, Any]) -> str:
    return trial.get("drawn_by") or ("preset" if trial.get("preset") else "unknown")


def screen_best(screen: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """The screen's full epochs (the most any completed trial ran) and its best ``TOP`` trials completed at them."""
    completed = [t for t in screen if t.get("state") == "complete" and t.get("value") is not None]
    full = max((t.get("epochs_run") or 0.0 for t in completed), default=0.0)
    return full, sorted((t for t in completed if (t.get("epochs_run") or 0.0) == full), key=lambda t: -t["value"])[:TOP]


def screen_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """One screen's draws, trained draws, top-``TOP`` trials and leader per mode; None without recorded modes."""
    screen = [t for t in record.get("trials_of_the_study") or [] if t.get("stage") == "screen"]
    if not any(t.get("drawn_by") for t in screen):
        return None
    _, best = screen_best(screen)
    return {
        "commit": record.get("commit"), "seed": record.get("seed"),
        "key": [[t["number"], t.get("value")] for t in screen],
        "draws": dict(Counter(_mode(t) for t in screen)),
        "trained": dict(Counter(_mode(t) for t in screen if t.get("epochs_run"))),
        "top": dict(Counter(_mode(t) for t in best)),
        "leader": _mode(best[0]) if best else None,
        "leader_val": round(best[0]["value"], 4) if best else None,
    }  # fmt: skip


def distinct(screens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The screens without those that repeat an earlier one's trials and values (``key`` dropped)."""
    seen, kept = set(), []
    for screen in screens:
        key = repr(screen.pop("key"))
        if key not in seen:
            seen.add(key)
            kept.append(screen)
    return kept


def by_mode(screens: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode over the screens: draws, trained, in a top 3, leaders, and top-3 places per trained draw."""
    modes = sorted({m for s in screens for m in s["draws"]})
    out = {}
    for mode in modes:
        trained = sum(s["trained"].get(mode, 0) for s in screens)
        top = sum(s["top"].get(mode, 0) for s in screens)
        out[mode] = {
            "draws": sum(s["draws"].get(mode, 0) for s in screens), "trained": trained, f"top{TOP}": top,
            "leaders": sum(s["leader"] == mode for s in screens),
            f"top{TOP}_per_trained": round(top / trained, 3) if trained else None,
        }  # fmt: skip
    return out


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    screens = distinct(rows_of(args.records, screen_of))
    summary = {"screens": len(screens), "by_mode": by_mode(screens)}
    what = f"per PriorBand mode: draws, trained draws, places in the screen's best {TOP} and leaders, per screen"
    report(args, module="draw_modes", what=what, summary=summary, rows={"screens": screens})


if __name__ == "__main__":
    main()
