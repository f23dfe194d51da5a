"""How much slower the exports trained than the calibration that planned them.

    python -m benchmarks.export_speed [--commit REV --out docs/measurements/export-speed-cpu.json]

Reads the committed headline records (``docs/measurements/staged-*.json``) whose export trained 2 epochs or more,
and compares the seconds an export epoch took (its training seconds over its epochs) with what the calibration
said one would take at the winner's MACs (all 60,000 images at the calibrated seconds per image per million
MACs: the plan's ``calibrated`` throughput where it keeps one, else the plan's own, which was the calibrated one
until the plan counted the export slower). Their ratio is the evidence for ``search.plan.EXPORT_SLOWER``: it holds
what MACs do not count (augmentation, the layers' shapes) and a 20-minute run against a timing of seconds.
Trains nothing.
"""

from __future__ import annotations

from typing import Any

from benchmarks.derived import read_ratios, winner_row
from search.throughput import EXPORT_IMAGES  # imports no torch

MIN_EPOCHS = 2  # a shorter export is mostly its first epoch's warm-up


def ratio_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """One record's export: its seconds an epoch over the calibrated estimate; None without a plan or an export."""
    headline = record.get("bench", {}).get("headline", {})
    plan = headline.get("stages", {}).get("plan")
    export = headline.get("export_best") or {}
    if not plan or not export.get("epochs") or export["epochs"] < MIN_EPOCHS:
        return None
    winner = winner_row(record)
    if winner is None or not winner.get("mmacs"):
        return None
    calibrated = (plan.get("calibrated") or plan["throughput"])["export"]
    epoch_s = export["train_seconds"] / export["epochs"]
    estimate = EXPORT_IMAGES * winner["mmacs"] * calibrated
    return {
        "commit": record.get("commit"), "winner_mmacs": winner["mmacs"], "epochs": export["epochs"],
        "epoch_seconds": round(epoch_s, 1), "calibrated_epoch_seconds": round(estimate, 1),
        "ratio": round(epoch_s / estimate, 3),
    }  # fmt: skip


WHAT = "an export epoch's measured seconds over the calibrated estimate at the winner's MACs, per headline record"


def main() -> None:
    read_ratios(__doc__ or "", module="export_speed", what=WHAT, read=ratio_of)


if __name__ == "__main__":
    main()
