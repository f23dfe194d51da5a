"""What a search pays per trial besides training: the garbage collector's share.

    python -m benchmarks.trial_overhead --data-dir ../shared/data [--trials 8] [--rounds 2] [--out results.json]

The objective collects garbage before and after every trial that trains (a pruned trial's exception holds its
model until then). Over a search process's whole heap (torch, optuna, matplotlib) one full collection takes a
large part of a second on a 2-core CPU; ``optimize_here`` therefore freezes what survives each trial
(:func:`search.tune.session.survivors_frozen`). This times tiny trials (LeNet-5, one epoch on 300 training
images, 100 validation images, SQLite storage, one thread) with that freezing and without it, alternated in one
process so that both see the same machine, and one full collection of the unfrozen heap.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from benchmarks.bench import write_json
from search.data import load_splits
from search.tune.objective import Objective, ObjectiveSettings
from search.tune.session import survivors_frozen
from space import PRESETS


def _per_trial(splits: Any, storage: str, trials: int, *, freeze: bool) -> float:
    """Seconds per trial of ``trials`` queued LeNet-5 trials, as ``optimize_here`` runs them or without freezing."""
    study = optuna.create_study(storage=storage, direction="maximize")
    for _ in range(trials):
        study.enqueue_trial(PRESETS["lenet5"])
    objective = Objective(splits=splits, settings=ObjectiveSettings(max_epochs=1, seed=0))

    started = time.perf_counter()
    with survivors_frozen() if freeze else contextlib.nullcontext() as callback:
        study.optimize(objective, n_trials=trials, callbacks=[callback] if callback else [])
    return (time.perf_counter() - started) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("studies/trial-overhead.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    splits = load_splits(args.data_dir, device=torch.device("cpu"), val_size=100, train_subset=300, seed=0)
    storage = f"sqlite:///{root / 'overhead.db'}"
    _per_trial(splits, storage, 2, freeze=False)  # warm-up: the lazy imports of a first trial
    rounds = []
    for _ in range(args.rounds):
        rounds.append({f"{'frozen' if freeze else 'unfrozen'}_s_per_trial": round(_per_trial(
            splits, storage, args.trials, freeze=freeze), 3) for freeze in (False, True)})  # fmt: skip
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - started
    result = {
        "command": f"python -m benchmarks.trial_overhead --data-dir {args.data_dir} --trials {args.trials} "
        f"--rounds {args.rounds}",
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread", "trials_per_round": args.trials, "rounds": rounds,
        "one_full_collection_s": round(full, 3),
    }  # fmt: skip
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
