"""Does a trial's speed follow its MACs alone, or its parameters too? Read from the committed headline records.

    python -m benchmarks.cost_fit [--commit REV --out docs/measurements/cost-fit-cpu.json]

fsearch prices a trial by its MACs per image (the cost rule ``--max-mmacs``, the time plan's reference). Each
headline record since 9f4be18's seed-2 record lists, per screen trial, its MACs, its parameters and the images per
second it trained at (two workers side by side). Per CPU (the record's ``bench.machine.cpu``), this fits the
milliseconds per training image by least squares twice: on MACs alone (``a * MMACs + c``), and with the parameters
per image of a batch (``a * MMACs + b * Mparams / batch_size + c``: the optimiser's step touches every parameter
once per batch). It reports each fit's R², its median relative error, and, for the trials of more than
``HEAVY_MPARAMS`` million parameters, the median of measured over predicted time. Only times, no accuracy: nothing
here reads a validation or test figure. Trains nothing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from benchmarks.derived import options, report

HEAVY_MPARAMS = 3.0  # "parameter-heavy": above this many million parameters (fsearch-w1 has 0.87M)


def samples_of(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The screen trials of record ``name`` that trained at least an epoch and carry their size and speed."""
    cpu = record.get("bench", {}).get("machine", {}).get("cpu") or "unknown"
    return [
        {"cpu": cpu, "record": name, "trial": t["number"], "mmacs": t["mmacs"], "mparams": t["mparams"],
         "batch_size": t["params"]["batch_size"], "ms_per_image": 1e3 / t["images_per_second"]}
        for t in record.get("trials_of_the_study") or []
        if t.get("stage") == "screen" and (t.get("epochs_run") or 0) >= 1 and t.get("images_per_second")
        and t.get("mparams") is not None and t.get("mmacs") is not None and "batch_size" in (t.get("params") or {})
    ]  # fmt: skip


def fit(samples: list[dict[str, Any]], *, with_params: bool) -> dict[str, Any]:
    """Least squares of ms per image on MMACs (and Mparams per batch image); coefficients, R², median error."""
    columns = [[s["mmacs"] for s in samples]]
    if with_params:
        columns.append([s["mparams"] / s["batch_size"] for s in samples])
    x = np.array([*columns, [1.0] * len(samples)]).T
    y = np.array([s["ms_per_image"] for s in samples])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    predicted = x @ coef
    heavy = np.array([s["mparams"] > HEAVY_MPARAMS for s in samples])
    ratio = np.median(y[heavy] / predicted[heavy]) if heavy.any() else None
    names = ["ms_per_mmac", *(["ms_per_mparam_per_batch_image"] if with_params else []), "ms_constant"]
    return {
        "coefficients": {n: round(float(c), 5) for n, c in zip(names, coef, strict=True)},
        "r2": round(float(1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum()), 3),
        "median_relative_error": round(float(np.median(np.abs(predicted - y) / y)), 3),
        "heavy_measured_over_predicted": None if ratio is None else round(float(ratio), 3),
    }  # fmt: skip


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    paths = sorted(args.records.glob("staged-*.json"))
    samples = [s for path in paths for s in samples_of(json.loads(path.read_text()), path.name)]
    summary = {}
    for cpu in sorted({s["cpu"] for s in samples}):
        mine = [s for s in samples if s["cpu"] == cpu]
        if len(mine) < 10:
            continue
        summary[cpu] = {
            "trials": len(mine), "runs": len({s["record"] for s in mine}),
            "heavy_trials": sum(s["mparams"] > HEAVY_MPARAMS for s in mine),
            "macs_only": fit(mine, with_params=False), "macs_and_params": fit(mine, with_params=True),
        }  # fmt: skip
    what = "ms per training image of the screen trials, fitted on MACs alone and on MACs and parameters, per CPU"
    report(args, module="cost_fit", what=what, summary=summary, rows={"trials": samples})


if __name__ == "__main__":
    main()
