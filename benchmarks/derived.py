"""What the readers of the committed headline records share: their options, the records they read, the record
they write. ``side_by_side.py`` and ``fidelity_rank.py`` derive evidence from ``docs/measurements/staged-*.json``
and train nothing, so their own record names no machine or seed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDS = Path("docs/measurements")


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
