"""What flip test-time augmentation did on validation, pooled over the committed headline records.

    python -m benchmarks.flip_tta [--commit REV --out docs/measurements/flip-tta-cpu.json]

Every completed trial that trained with flips records its last validation accuracy alone and averaged with the
mirror images (``flip_tta``, docs/defaults.md). One trial's difference is a noisy reading: a few dozen of the
10,000 validation images change their answer. Pooled over the trials of the committed headline records
(``docs/measurements/staged-*.json``) the readings say what flip averaging does to a flip-trained network of
this space in general, which is the prior that export-best's rule weighs one trial's reading against. A trial
that appears in several records (the same parameters, stage and figures, e.g. a preset or a run re-recorded at a
later commit) counts once. Validation figures only: the records' test figures are not read. Trains nothing.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from benchmarks.derived import options, report, rows_of


def readings_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """A record's trials with a ``flip_tta`` reading: stage, epochs and flip less plain; None if it has none."""
    rows = []
    for t in record.get("trials_of_the_study") or []:
        measured = t.get("flip_tta")
        if isinstance(measured, dict) and {"plain", "flip"} <= measured.keys():
            rows.append({
                "trial": t["number"], "stage": t.get("stage"), "epochs": measured.get("epochs"),
                "plain": round(measured["plain"], 4), "flip": round(measured["flip"], 4),
                "gain": round(measured["flip"] - measured["plain"], 4), "params": t.get("params"),
            })  # fmt: skip
    return {"commit": record.get("commit"), "seed": record.get("seed"), "trials": rows} if rows else None


def pooled(gains: list[float]) -> dict[str, Any]:
    """Count, mean, median and spread of flip-less-plain gains (in accuracy, not points), and their signs."""
    if not gains:
        return {"trials": 0}
    return {
        "trials": len(gains), "mean": round(statistics.mean(gains), 5), "median": round(statistics.median(gains), 5),
        "stdev": round(statistics.stdev(gains), 5) if len(gains) > 1 else None,
        "ahead": sum(g > 0 for g in gains), "tied": sum(g == 0 for g in gains), "behind": sum(g < 0 for g in gains),
    }  # fmt: skip


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    records = rows_of(args.records, readings_of)
    seen: set[str] = set()
    distinct: list[dict[str, Any]] = []
    for rec in records:
        for t in rec["trials"]:
            key = json.dumps([t["params"], t["stage"], t["plain"], t["flip"]], sort_keys=True)
            if key not in seen:
                seen.add(key)
                distinct.append(t)
    summary = {stage: pooled([t["gain"] for t in distinct if t["stage"] == stage]) for stage in ("screen", "final")} | {
        "all": pooled([t["gain"] for t in distinct])
    }
    for rec in records:  # the parameters told the trials apart; the record lists the readings only
        rec["trials"] = [{k: v for k, v in t.items() if k != "params"} for t in rec["trials"]]
    what = "flip TTA's validation gain (flip less plain accuracy) of every distinct flip-trained trial, pooled"
    report(args, module="flip_tta", what=what, summary=summary, rows={"records": records})


if __name__ == "__main__":
    main()
