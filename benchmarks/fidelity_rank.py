"""Does the screen's order of the finalists hold at the finals' fidelity? Read from the committed headline records.

    python -m benchmarks.fidelity_rank [--commit REV --out docs/measurements/fidelity-rank-cpu.json]

Each headline record (``docs/measurements/staged-*.json``) whose run trained finalists lists, per finalist, its
screen trial's validation accuracy (5 epochs) and its own (the finals' epochs, 10-15 depending on the code of the
time). Per run this gives Spearman's rank correlation of the two (with the default 2 finalists: +1 when they kept
the screen's order, -1 when it flipped) and whether the screen's leader also led the finals. Pooled over the runs
it gives the correlation over more configurations: once over every pair, and once over distinct configurations
(the same parameters, e.g. a preset, or one seed's screen trial re-run at a later commit, count once: the first
record in file-name order). A run's seed also draws its validation split, so pooled pairs mix splits. And per run
what the finals added: the finals' best validation accuracy less that of the first finalist (the screen's best,
trained to the same fidelity), summed up over the runs with 2 finalists or more. Trains nothing.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.derived import options, report, rows_of, spearman


def run_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """One run's finalists as (screen, final) validation pairs with their parameters; None without finals."""
    finals = [f for f in record.get("summary", {}).get("finalists") or [] if f.get("final_val") is not None]
    if not finals:
        return None
    params = {t["number"]: t.get("params") for t in record.get("trials_of_the_study") or []}
    screen = [f["screen_val"] for f in finals]
    final = [f["final_val"] for f in finals]
    return {
        "commit": record.get("commit"), "seed": record.get("seed"),
        "final_epochs": sorted({f["final_epochs"] for f in finals}),
        "pairs": [{"trial": f["trial"], "parent": f["parent"], "screen_val": round(f["screen_val"], 4),
                   "final_val": round(f["final_val"], 4), "params": params.get(f["trial"])} for f in finals],
        "spearman": spearman(screen, final),
        "screen_leader_won": screen.index(max(screen)) == final.index(max(final)),
        # What the finals added over exporting the screen's best: the finals' best less the first finalist's final.
        "finals_gain": round(max(final) - final[0], 4),
    }  # fmt: skip


def pooled(runs: list[dict[str, Any]], *, distinct: bool) -> dict[str, Any]:
    """Spearman over the runs' pairs together; with ``distinct``, each configuration's first pair only."""
    seen: set[str] = set()
    xs, ys = [], []
    for run in runs:
        for pair in run["pairs"]:
            key = json.dumps(pair["params"], sort_keys=True)
            if distinct and pair["params"] is not None and key in seen:
                continue
            seen.add(key)
            xs.append(pair["screen_val"])
            ys.append(pair["final_val"])
    return {"pairs": len(xs), "spearman": spearman(xs, ys)}


def gain_summary(gains: list[float]) -> dict[str, Any]:
    """Mean, median, largest and how many runs gained nothing (validation points as fractions)."""
    ordered = sorted(gains)
    mid = len(ordered) // 2
    median = (ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2) if ordered else None
    return {
        "runs": len(gains), "mean": round(sum(gains) / len(gains), 5) if gains else None,
        "median": median, "max": max(gains, default=None), "none": sum(g == 0 for g in gains),
    }  # fmt: skip


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    runs = rows_of(args.records, run_of)
    two_or_more = [r for r in runs if len(r["pairs"]) >= 2]
    summary = {
        "runs_with_finals": len(runs),
        "runs_with_2_or_more": len(two_or_more),
        "order_kept": sum(r["spearman"] == 1 for r in two_or_more),
        "screen_leader_won": sum(r["screen_leader_won"] for r in two_or_more),
        "pooled_all_pairs": pooled(runs, distinct=False),
        "pooled_distinct_configurations": pooled(runs, distinct=True),
        "finals_gain": gain_summary([r["finals_gain"] for r in two_or_more]),
    }
    what = "Spearman of the finalists' screen (5-epoch) and final validation accuracy, per run and pooled"
    report(args, module="fidelity_rank", what=what, summary=summary, rows={"runs": runs})


if __name__ == "__main__":
    main()
