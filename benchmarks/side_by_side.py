"""How much slower the screen's workers train side by side than the calibration that planned them.

    python -m benchmarks.side_by_side [--commit REV --out docs/measurements/side-by-side-cpu.json]

Reads the committed headline records (``docs/measurements/staged-*.json``) of 2-worker runs whose first plan had
finals: that plan's finals minutes give the calibrated worker speed (seconds per image per million MACs of the
reference, to the minute's rounding), and the plan stored at the run's end holds the speed the screen measured
(``replan``). Their ratio is the evidence for ``search.plan.SIDE_BY_SIDE``. Trains nothing.

Records of 58a0c7c and later were planned at ``SIDE_BY_SIDE`` times the calibrated seconds: for them the ratio is
the measured speed over the plan's (about 1 where the rule holds), not over the calibration. The committed
``side-by-side-cpu.json`` was read at 406d01e, before any of them; a new reading should keep the two apart.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

RECORDS = Path("docs/measurements")
FINALS = re.compile(r"(\d+) finalists x (\d+) epochs \((\d+) min\)")


def ratio_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The calibrated and measured worker speeds of one headline record, None if its first plan had no finals."""
    plans = record.get("summary", {}).get("plans") or []
    plan = record.get("bench", {}).get("headline", {}).get("stages", {}).get("plan")
    found = FINALS.search(plans[0]) if plans else None
    if not found or not plan or plan["workers"] < 2:
        return None
    finalists, epochs, minutes = map(int, found.groups())
    rounds = -(-finalists // plan["workers"])
    calibrated = minutes * 60 / (rounds * epochs * plan["train_images"] * plan["reference_mmacs"])
    measured = plan["throughput"]["worker"]
    return {
        "commit": record.get("commit"), "first_plan": plans[0], "calibrated_worker": calibrated,
        "measured_worker": measured, "ratio": round(measured / calibrated, 3),
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
