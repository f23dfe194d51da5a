"""How much slower the screen's workers train side by side than the calibration that planned them.

    python -m benchmarks.side_by_side [--commit REV --out docs/measurements/side-by-side-cpu.json]

Reads the committed headline records (``docs/measurements/staged-*.json``) of 2-worker runs whose first plan had
finals, and takes each one's calibrated worker speed (seconds per image per million MACs of the reference) from
the plan stored at the run's end, which keeps it (``Plan.calibrated``), or, in records from before it did, from the
first plan's finals minutes (to the minute's rounding). That stored plan also holds the speed the screen measured
(``replan``). Their ratio is the evidence for ``search.plan.SIDE_BY_SIDE``. Trains nothing.

Plans from 58a0c7c until ``Plan.calibrated`` counted the workers ``PLANNED_SLOWER`` times slower than calibrated:
for their records the first plan's speed is divided by it. ``git`` tells which records those are.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from benchmarks.derived import read_ratios

FINALS = re.compile(r"(\d+) finalists x (\d+) epochs \((\d+) min\)")
# From this commit until plans kept their calibration, the first plan counted the workers this much slower.
PLANNED_SLOWER_SINCE, PLANNED_SLOWER = "58a0c7c", 1.3


def planned_slower(commit: str | None) -> bool:
    """Whether ``commit`` descends from ``PLANNED_SLOWER_SINCE`` (False when git does not know it)."""
    if not commit:
        return False
    cmd = ["git", "merge-base", "--is-ancestor", PLANNED_SLOWER_SINCE, commit]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0  # noqa: S603


def ratio_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The calibrated and measured worker speeds of one headline record, None if its first plan had no finals."""
    plans = record.get("summary", {}).get("plans") or []
    plan = record.get("bench", {}).get("headline", {}).get("stages", {}).get("plan")
    found = FINALS.search(plans[0]) if plans else None
    if not found or not plan or plan["workers"] < 2:
        return None
    measured = plan["throughput"]["worker"]
    if plan.get("calibrated"):
        calibrated, source = plan["calibrated"]["worker"], "the plan's calibration"
    else:
        finalists, epochs, minutes = map(int, found.groups())
        rounds = -(-finalists // plan["workers"])
        calibrated = minutes * 60 / (rounds * epochs * plan["train_images"] * plan["reference_mmacs"])
        source = "the first plan's finals"
        if planned_slower(record.get("commit")):
            calibrated, source = calibrated / PLANNED_SLOWER, f"the first plan's finals / {PLANNED_SLOWER}"
    return {
        "commit": record.get("commit"), "first_plan": plans[0], "calibrated_worker": calibrated,
        "calibrated_from": source, "measured_worker": measured, "ratio": round(measured / calibrated, 3),
    }  # fmt: skip


WHAT = "the screen's measured worker speed over the first plan's calibrated one, per headline record"


def main() -> None:
    read_ratios(__doc__ or "", module="side_by_side", what=WHAT, read=ratio_of)


if __name__ == "__main__":
    main()
