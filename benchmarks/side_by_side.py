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

import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

RECORDS = Path("docs/measurements")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--commit", default=None, help="the commit the records were read at, for --out's record")
    args = parser.parse_args()
    rows = []
    for path in sorted(args.records.glob("staged-*.json")):
        row = ratio_of(json.loads(path.read_text()))
        if row is not None:
            rows.append({"record": path.name} | row)
    ratios = [r["ratio"] for r in rows]
    summary = {"runs": len(rows)}
    if ratios:
        summary |= {"ratio_min": min(ratios), "ratio_median": statistics.median(ratios), "ratio_max": max(ratios)}
    print(json.dumps(summary))
    if args.out is not None:
        out = {
            "what": "the screen's measured worker speed over the first plan's calibrated one, per headline record",
            "command": f"python -m benchmarks.side_by_side --commit {args.commit} --out {args.out}",
            "commit": args.commit,
            "machine": "none: derived from the committed records, each of which names its machine",
            "seed": None,
            "concurrent": "nothing: reads JSON files, trains nothing",
            "summary": summary,
            "rows": rows,
        }
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
