"""Benchmark: search trials per hour with 1 worker process and with 2, on this machine.

Both runs train exactly the same trials: ``--trials`` configurations are drawn once from the
search space (random sampler, seeded, over-budget draws left out) and queued in two fresh
studies, then each study is searched with the same fidelity (``--max-epochs``, ``--train-subset``)
and no pruning, once by 1 process using every core's thread and once by N processes of
cores/N threads each (``fsearch run --workers N``).

    python benchmarks/workers.py --data-dir ../shared/data [--trials 12] [--max-epochs 1] [--train-subset 10000]

Prints JSON: wall seconds and trials/hour of each, and their ratio. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from search.data import ensure_files
from search.defaults import DEFAULT_MAX_MMACS
from search.tune.runner import run_search
from search.tune.session import SearchOptions
from space import suggest
from space.model import model_size


def draw_configs(n: int, *, seed: int, max_mmacs: float) -> list[dict[str, Any]]:
    """``n`` parameter sets of the search space under the MAC budget (what the search would train)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    configs: list[dict[str, Any]] = []
    while len(configs) < n:
        trial = study.ask()
        cfg = suggest(trial, epochs=1)
        if model_size(cfg.arch).macs <= max_mmacs * 1e6:
            configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def timed_search(
    configs: list[dict[str, Any]], *, workers: int, data_dir: Path, folder: Path, max_epochs: int, subset: int
) -> float:
    storage = f"sqlite:///{folder / f'workers-{workers}.db'}"
    study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
    for params in configs:
        study.enqueue_trial(params)
    opts = SearchOptions(
        study="bench", storage=storage, trials=len(configs), data_dir=data_dir, device="cpu", pruner="none",
        max_epochs=max_epochs, train_subset=subset, workers=workers, artifacts=False, known_best=False,
    )  # fmt: skip
    started = time.perf_counter()
    report = run_search(opts)
    wall = time.perf_counter() - started
    trained = report.counts["complete"] + report.counts["pruned"] + report.counts["fail"]
    states = "".join(t.state.name[0] for t in report.study.trials)
    assert trained == len(configs), (workers, report.counts, report.problems, states)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="the parallel run's worker processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_files(args.data_dir, download=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = draw_configs(args.trials, seed=args.seed, max_mmacs=DEFAULT_MAX_MMACS)
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, args.workers):
            walls[workers] = timed_search(
                configs, workers=workers, data_dir=args.data_dir, folder=Path(tmp),
                max_epochs=args.max_epochs, subset=args.train_subset,
            )  # fmt: skip
    per_hour = {w: len(configs) / s * 3600 for w, s in walls.items()}
    result = {
        "trials": len(configs),
        "max_epochs": args.max_epochs,
        "train_subset": args.train_subset,
        "wall_seconds": {f"{w} workers": round(s, 1) for w, s in walls.items()},
        "trials_per_hour": {f"{w} workers": round(p, 1) for w, p in per_hour.items()},
        "ratio": round(per_hour[args.workers] / per_hour[1], 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
