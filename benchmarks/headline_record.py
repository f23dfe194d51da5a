"""The committed record of one headline run: what ``docs/measurements/staged-*.json`` hold, built from the run's folder.

    python -m benchmarks.headline_record D --what TEXT --concurrent TEXT [--commit REV] [--cpu-note TEXT]
                                         --out FILE  (under docs/measurements/)

``D`` is the ``--headline-dir`` of ``python -m benchmarks.bench --headline ... --out D/bench.json > D/log.txt``: the
harness's JSON (kept whole under ``bench``), the plan lines of the run's log (the time plan at the start and each
replan, which only the log shows), the export's epochs rule from ``D/best/config.json`` (``export_epochs_rule``: its
own timing of an epoch and the epochs the plan's time held; null without that file), and every trial of the run's
SQLite study (``trials_of_the_study``, the evidence the readers in ``benchmarks/`` derive from). What the run cannot
know is given by hand: what the run was for (``--what``) and what else ran beside it (``--concurrent``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.store.record import TrialRecord

STUDY = "bench"  # the study name benchmarks.bench gives the headline's search
SOURCE = (
    "the raw JSON that benchmarks/bench.py wrote (unchanged under 'bench'); the plan lines from the run's log; "
    "trials read from the run's SQLite study"
)
# A log line's time stamp, "[13:01:01] "; the lines the console wrapped start with spaces instead.
STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s")
# A plan's message, up to the next plan's: the console leaves out the stamp of a message logged in the same second
# as the one before, so two plans can read as one message.
PLAN_LINE = re.compile(r"plan for \d+ min: .*?(?= plan for \d+ min: | the screen now ends by |$)")
# The display's line when the screen's end moves (search/cli/display.py, screen_moved), up to the next such line.
MOVE_LINE = re.compile(r"the screen now ends by \d\d:\d\d: .*?(?= plan for \d+ min: | the screen now ends by |$)")


class RecordError(ValueError):
    """A headline folder this module cannot build a record from (missing file, no headline, no study)."""


def log_messages(text: str) -> list[str]:
    """The log's messages, one string each: a wrapped message's continuation lines joined to it."""
    messages: list[str] = []
    for line in text.splitlines():
        if STAMP.match(line):
            messages.append(STAMP.sub("", line).strip())
        elif line.startswith(" ") and line.strip() and messages:
            messages[-1] += " " + line.strip()
        elif line.strip():
            messages.append(line.strip())
    return [" ".join(m.split()) for m in messages]


def plan_lines(text: str) -> list[str]:
    """Each time plan the run's log shows, in order (the first is the plan at the start)."""
    return [match.group(0) for m in log_messages(text) for match in PLAN_LINE.finditer(m)]


def screen_moves(text: str) -> list[str]:
    """Each move of the screen's end the run's log shows, in order."""
    return [match.group(0) for m in log_messages(text) for match in MOVE_LINE.finditer(m)]


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    """One trial as the records keep it: its stage, provenance, size (MACs and parameters), measured speed (training
    images/s, and per second of the whole training call, evaluation included: what a cost model is fitted to; 0 for
    a trial never trained), epochs, value, learning curve and params."""
    r = TrialRecord(t)
    return {
        "number": t.number, "state": t.state.name.lower(), "stage": r.stage, "drawn_by": r.drawn_by,
        "near": r.near, "preset": r.preset, "parent": r.parent, "mmacs": round(r.macs / 1e6, 2),
        "mparams": round(r.parameters / 1e6, 3), "images_per_second": round(r.images_per_second, 1),
        "images_per_wall_second": round(r.images_per_wall_second, 1), "epochs_run": r.epochs_run,
        "value": t.value, "curve": [v for _, v in sorted(t.intermediate_values.items())], "reason": r.reason,
        "flip_tta": r.flip_tta, "params": t.params,
    }  # fmt: skip


def summary(headline: dict[str, Any], plans: list[str], moves: list[str] | None = None) -> dict[str, Any]:
    """The figures a reader wants first: stages' wall time, plans (and ``moves`` of the screen's end, where it moved),
    winner, finalists, export and test accuracy."""
    search, stages, export = headline["search"], headline["stages"], headline["export_best"]
    return {
        "total_wall_seconds": headline["total_wall_seconds"], "search_wall_seconds": search["wall_seconds"],
        "stage_seconds": search.get("stage_seconds"), "export_wall_seconds": export["wall_seconds"], "plans": plans,
        "winner": {"trial": export["trial"], "origin": export["origin"], "val_accuracy": search["val_accuracy"]},
        "finalists": stages["finalists"], "spearman_screen_vs_final": stages["spearman_screen_vs_final"],
        "trials_by_stage": stages["trials_by_stage"], "export_epochs": export["epochs"],
        "test_accuracy": export["test_accuracy"], "test_time_augmentation": export.get("test_time_augmentation"),
        "plain_test_accuracy": export.get("plain_test_accuracy"), "tta_decision": export.get("tta_decision"),
        # Recorded since the finals can pass a trial over; an older record lacks it, and its summary stays as it was.
        **({"finals_passed_over": stages["finals_passed_over"]} if "finals_passed_over" in stages else {}),
        **({"screen_end_moves": moves} if moves else {}),
    }  # fmt: skip


def machine_text(bench: dict[str, Any], cpu_note: str | None) -> str:
    """The machine in words, from what the harness read of it (and the plan's calibrated export speed)."""
    m = bench["machine"]
    cpu = m["cpu"] + (f"; {cpu_note}" if cpu_note else "")
    gpu = (m.get("device") or "a CUDA GPU") if m.get("cuda_available") else "no GPU"  # the GPU's name since 799c608
    system = m["platform"].split("-")[0]
    text = (
        f"{m['cpu_count']}-core CPU ({cpu}), {gpu}, {system}, Python {m['python']}, "
        f"torch {m['torch'].split('+')[0]} ({m['torch_threads']} threads), Optuna {m['optuna']}"
    )
    calibrated = (bench["headline"]["stages"].get("plan") or {}).get("calibrated") or {}
    if "export" in calibrated:
        text += f"; calibrated export speed {calibrated['export']:.3g} s/image/MMAC (the plan's calibrated throughput)"
    return text


def build(
    folder: Path, *, what: str, concurrent: str, commit: str | None = None, cpu_note: str | None = None
) -> dict[str, Any]:
    """The record of the headline run kept in ``folder`` (see the module's docstring)."""
    paths = {name: folder / name for name in ("bench.json", "log.txt", "bench.db")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise RecordError(f"not a headline folder: missing {', '.join(missing)}")
    bench = json.loads(paths["bench.json"].read_text())
    if "headline" not in bench:
        raise RecordError(f"{paths['bench.json']} has no headline run (run benchmarks.bench with --headline)")
    commit = commit or bench.get("commit")
    if not commit:
        raise RecordError("the harness recorded no commit (an older benchmarks/bench.py): give --commit")
    try:
        study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{paths['bench.db']}")
    except KeyError:
        raise RecordError(f"{paths['bench.db']} holds no study {STUDY!r}") from None
    headline = bench["headline"]
    # The export's own epochs rule (its timing of an epoch, the plan's time, the epochs that time held), which only
    # the exported model's config.json keeps: the harness's JSON has the epochs trained, not what was planned.
    exported = folder / "best" / "config.json"
    export_rule = json.loads(exported.read_text())["provenance"].get("epochs_rule") if exported.is_file() else None
    # The command as anyone would type it: the folder named D, the interpreter as `python`.
    command = re.sub(r"^\S*python3?(?=\s)", "python", bench["command"]).replace(str(folder), "D")
    return {
        "what": what, "command": command, "commit": commit, "machine": machine_text(bench, cpu_note),
        "seed": headline["search"]["seed"], "concurrent": concurrent, "source": SOURCE,
        "summary": summary(headline, plan_lines(log := paths["log.txt"].read_text()), screen_moves(log)),
        "bench": bench, "export_epochs_rule": export_rule,
        "trials_of_the_study": [trial_row(t) for t in study.get_trials(deepcopy=False)],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the run's --headline-dir (bench.json, log.txt, bench.db)")
    parser.add_argument("--what", required=True, help="what the run was: options, seed, the rules it ran at")
    parser.add_argument("--concurrent", required=True, help="what else ran on the machine beside it")
    parser.add_argument("--commit", help="the code it ran at (default: what the harness recorded)")
    parser.add_argument("--cpu-note", help="what the CPU's name leaves out, e.g. 'AVX-512 + AMX: bf16 autocast'")
    parser.add_argument("--out", type=Path, required=True, help="the record to write")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        record = build(args.folder, what=args.what, concurrent=args.concurrent, commit=args.commit,
                       cpu_note=args.cpu_note)  # fmt: skip
    except RecordError as exc:
        raise SystemExit(f"Error: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: {len(record['trials_of_the_study'])} trials, test {record['summary']['test_accuracy']}")


if __name__ == "__main__":
    main()
