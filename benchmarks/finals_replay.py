"""Which finalists each committed run chose, and which the finals' rule of today chooses: replayed from its record.

    python -m benchmarks.finals_replay [--commit REV --out docs/measurements/finals-replay-cpu.json]

Reads the committed headline records (``docs/measurements/staged-*.json``) whose stored plan keeps its calibration
(``Plan.calibrated``) and whose first plan had finals. For each it makes the first plan again (``make_plan`` at the
calibrated speed; a record whose first plan, as shown, today's rules no longer make is listed as not replayed),
takes the replan's inputs from the stored plan (the screen's end, ``screen_s``, and the speed the screen measured,
``throughput``) and the screen trials from ``trials_of_the_study`` (parameters, learning curve, measured images/s),
and asks :func:`search.tune.finals.plan_finals` what it chooses now: the finalists, those passed over as too slow
for the time left (``choose_affordable``), and the replan; and where the screen's end rule of today
(:func:`search.tune.finals.screen_end`) would have ended that screen, given all its trials and the speed it measured
(the moves it would have made after each trial, with the trials then, a record cannot replay). Beside it, what the
run did (its finalists' parents, its plans). A record whose parameters the space of today no longer takes is listed
as such. Trains nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmarks.derived import options, report, rows_of
from search.plan import make_plan
from search.store import record
from search.throughput import Throughput
from search.tune.finals import plan_finals, screen_end
from space import suggest


def screen_trial(row: dict[str, Any]) -> FrozenTrial:
    """A screen trial of the space of today from a record's row: its parameters, its curve (a report a step), its
    end, and its measured speed and MACs as the time plan reads them (``TrialRecord.effective_mmacs``)."""
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(row["params"])
    trial = study.ask()
    suggest(trial, epochs=5)
    for step, value in enumerate(row["curve"], 1):
        trial.report(value, step)
    for key, value in {
        record.STAGE: "screen", record.EPOCHS_RUN: row["epochs_run"], record.MACS: row["mmacs"] * 1e6,
        # One second of training in one second of wall time: images/s as the record measured it, wall time included.
        record.TRAIN_SECONDS: 1.0, record.WALL_SECONDS: 1.0, record.IMAGES_PER_SECOND: row["images_per_wall_second"],
    }.items():  # fmt: skip
        trial.set_user_attr(key, value)
    if row["state"] == "complete":
        study.tell(trial, row["value"])
    else:
        study.tell(trial, state=TrialState.PRUNED)
    frozen = study.trials[0]
    frozen.number = row["number"]
    return frozen


def replay_of(rec: dict[str, Any]) -> dict[str, Any] | None:
    """One record's finals then and now; None without a stored calibration or without finals in its first plan."""
    stored = rec.get("bench", {}).get("headline", {}).get("stages", {}).get("plan")
    if not stored or not stored.get("calibrated"):
        return None
    first = make_plan(
        budget_s=stored["budget_s"], workers=stored["workers"], train_images=stored["train_images"],
        reference_mmacs=stored["reference_mmacs"], throughput=Throughput(**stored["calibrated"]),
        screen_epochs=stored["screen_epochs"],
    )  # fmt: skip
    if not first.finalists:
        return None
    summary = rec.get("summary", {})
    then = {
        "commit": rec.get("commit"), "seed": rec.get("seed"), "plans": summary.get("plans"),
        "finalists": [f["parent"] for f in summary.get("finalists") or []],
    }  # fmt: skip
    if first.describe() != (then["plans"] or [None])[0]:  # the plan's rules of today make another first plan
        return then | {"replayed": False, "why": f"today's first plan differs: {first.describe()}"}
    rows = [
        t for t in rec.get("trials_of_the_study", [])
        if t.get("stage") == "screen" and t.get("curve") and t.get("images_per_wall_second")
    ]  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a value of an older space outside today's range: refused below
            trials = [screen_trial(t) for t in rows]
    except (ValueError, KeyError, TypeError) as exc:
        return then | {"replayed": False, "why": f"{type(exc).__name__}: {exc}"}
    measured = Throughput(**stored["throughput"])
    finalists, passed, plan = plan_finals(trials, first, elapsed_s=stored["screen_s"], measured=measured)
    return then | {
        "replayed": True,
        # Seconds from the start: the first plan's screen end, where the screen ended, and where screen_end puts it.
        "screen_end": {"planned": round(first.screen_end_s()), "ended": round(stored["screen_s"]),
                       "rule": round(screen_end(trials, first, measured=measured))},
        "now": {"finalists": [t.number for t in finalists], "passed_over": [t.number for t in passed],
                "plan": plan.describe()},
        "as_recorded": [t.number for t in finalists] == then["finalists"],
        # The replan as the run showed it (its second plan): the replay's inputs are the run's own.
        "replan_as_shown": plan.describe() in (then["plans"] or [])[1:2],
    }  # fmt: skip


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs = rows_of(args.records, replay_of)
    replayed = [r for r in runs if r["replayed"]]
    summary = {
        "runs": len(runs), "replayed": len(replayed),
        # The rule of today chose the run's own finalists (where not, older rules chose them, or it passed one over).
        "as_recorded": [r["record"] for r in replayed if r["as_recorded"]],
        "passed_over": {r["record"]: r["now"]["passed_over"] for r in replayed if r["now"]["passed_over"]},
        # Runs whose screen the end rule of today would have ended a minute or more before it ended (minutes).
        "screen_ended_earlier": {
            r["record"]: round((r["screen_end"]["ended"] - r["screen_end"]["rule"]) / 60, 1)
            for r in replayed if r["screen_end"]["ended"] - r["screen_end"]["rule"] >= 60
        },
    }  # fmt: skip
    what = (
        "The finalists each committed run chose, those the finals' rule of today (choose_affordable) chooses, and "
        "where the screen's end rule of today (screen_end) ends each screen"
    )
    report(args, module="finals_replay", what=what, summary=summary, rows={"runs": runs})


if __name__ == "__main__":
    main()
