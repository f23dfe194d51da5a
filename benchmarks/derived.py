"""What the readers of the committed headline records share: their options, the records they read, the record
they write, and the rank correlation (which the harness also records per run). ``side_by_side.py``,
``fidelity_rank.py`` and ``flip_tta.py`` derive evidence from ``docs/measurements/staged-*.json`` and train
nothing, so their own record names no machine or seed; this module imports no torch, so neither do they."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDS = Path("docs/measurements")


def winner_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """The row of ``trials_of_the_study`` of a headline record's exported trial; None without an export or its row."""
    number = (record.get("bench", {}).get("headline", {}).get("export_best") or {}).get("trial")
    return next((t for t in record.get("trials_of_the_study", []) if t["number"] == number), None)


def options(description: str) -> argparse.Namespace:
    """``--records`` (the folder read), ``--out`` (the record written, if any), ``--commit`` (named in it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=Path, default=RECORDS)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--commit", default=None, help="the commit the records were read at, for --out's record")
    return parser.parse_args()


def rows_of(folder: Path, read: Callable[[dict[str, Any]], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``read`` of each headline record in ``folder`` (file-name order), with the record's name; Nones left out."""
    rows = []
    for path in sorted(folder.glob("staged-*.json")):
        row = read(json.loads(path.read_text()))
        if row is not None:
            rows.append({"record": path.name} | row)
    return rows


def report(args: argparse.Namespace, *, module: str, what: str, summary: dict[str, Any], rows: dict[str, Any]) -> None:
    """Print ``summary``; with ``--out``, write it with ``rows`` and the provenance every record carries."""
    print(json.dumps(summary))
    if args.out is None:
        return
    out = {
        "what": what,
        "command": f"python -m benchmarks.{module} --commit {args.commit} --out {args.out}",
        "commit": args.commit,
        "machine": "none: derived from the committed records, each of which names its machine",
        "seed": None,
        "concurrent": "nothing: reads JSON files, trains nothing",
        "summary": summary,
    } | rows
    args.out.write_text(json.dumps(out, indent=1) + "\n")


def read_ratios(doc: str, *, module: str, what: str, read: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """The ``main`` of a reader whose rows each carry a ``ratio`` (``doc``: its module docstring, whose first
    paragraph describes its options): :func:`report` of their count, least, median and greatest."""
    args = options(doc.split("\n\n")[0])
    rows = rows_of(args.records, read)
    ratios = [r["ratio"] for r in rows]
    summary: dict[str, Any] = {"runs": len(rows)}
    if ratios:
        summary |= {"ratio_min": min(ratios), "ratio_median": statistics.median(ratios), "ratio_max": max(ratios)}
    report(args, module=module, what=what, summary=summary, rows={"rows": rows})


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None for fewer than 2 pairs or no spread.

    With 2 pairs it is +1 when they keep their order and -1 when it flips: the default run's 2 finalists give that
    much, and pooling runs (``fidelity_rank.py``) gives more.
    """
    if len(xs) < 2:
        return None

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return round(cov / var, 3) if var else None
