"""Which memory format trains an exported network faster on this machine: channels_last or contiguous.

    python -m benchmarks.memory_format --data-dir ../shared/data [--records docs/measurements/A.json ...]
        [--presets fsearch-w1] [--recipes recipes.json] [--timings 2] [--rounds 1 2] [--epochs 1]
        [--out results.json]

``export-best`` times the chosen configuration in both memory formats on the CPU and trains in the faster
(:func:`search.speed.export_timing`). Per network, in one process, this takes that timing ``--timings`` times
with each number of ``--rounds`` in turn (the timing's default alone unless given), then trains ``--epochs`` real
export epochs (all 60,000 training images, all threads, no validation) in each format, so that each timing's
choice is checked against whole epochs (``--epochs 0``: the timings alone, to size candidates before training
them). The networks are the winners of the given headline records (``benchmarks/headline_record.py``), the given
presets and the configurations of a ``benchmarks.recipe`` file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench import commit, machine, write_json
from benchmarks.derived import winner_row
from benchmarks.recipe import recipe_config
from search.data import Splits, load_splits
from search.runtime import Runtime
from search.speed import TIMING_ROUNDS, export_timing
from search.throughput import EXPORT_IMAGES
from search.train import seed_everything, train
from space import PRESETS, TrialConfig, build_model, replay
from space.model import model_size


def measure(
    splits: Splits | None, name: str, cfg: TrialConfig, *, timings: int, rounds: tuple[int, ...] = (TIMING_ROUNDS,)
) -> dict[str, Any]:
    """The export's timings of ``cfg`` in both formats, ``timings`` times with each number of ``rounds`` in turn,
    then its trained epochs in each format on ``splits`` (all the training images, on this machine's CPU; none
    when ``cfg`` trains 0 epochs)."""
    device = torch.device("cpu")
    timed = [(r, export_timing(cfg, Runtime(device=device), rounds=r)) for _ in range(timings) for r in rounds]
    row = {
        "network": name, "mmacs": round(model_size(cfg.arch).macs / 1e6, 2),
        "filters": [b.filters for b in cfg.arch.blocks], "batch_norm": cfg.arch.batch_norm,
        "timed": [{"rounds": r, "chosen": t.memory_format,
                   "epoch_s": {f: [round(EXPORT_IMAGES * s, 1) for s in ts] for f, ts in t.timings_by_format.items()},
                   "mean_epoch_s": {f: round(EXPORT_IMAGES * s, 1) for f, s in t.by_format.items()}}
                  for r, t in timed],
    }  # fmt: skip
    if splits is None:  # --epochs 0: the timings alone
        return row
    trained: dict[str, list[float]] = {}
    for channels_last in (True, False):
        runtime = Runtime(device=device, channels_last=channels_last)
        seed_everything(0)
        result = train(build_model(cfg.arch), cfg.train, splits, runtime=runtime, seed=0)
        trained[runtime.memory_format] = [stats.seconds for stats in result.history]
    mean = {fmt: statistics.fmean(s) for fmt, s in trained.items()}
    faster = min(mean, key=lambda fmt: mean[fmt])
    return row | {
        "trained_epoch_s": {fmt: [round(x, 1) for x in s] for fmt, s in trained.items()},
        "contiguous_over_channels_last": round(mean["contiguous"] / mean["channels_last"], 3),
        "faster_trained": faster,
        "chose_faster": {str(r): sum(t.memory_format == faster for q, t in timed if q == r) for r in rounds},
    }


def gather(
    records: list[Path], presets: list[str], recipes: Path | None, *, epochs: int
) -> list[tuple[str, TrialConfig]]:
    """The networks to time, named: the given presets, the winners of headline records and the configurations of
    a ``benchmarks.recipe`` file, each to train ``epochs``. Raises ValueError naming what cannot be read."""
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    networks = [(p, recipe_config({"preset": p, "epochs": epochs})[1]) for p in presets]
    for path in records:
        try:
            winner = winner_row(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            winner = None
        if winner is None:
            raise ValueError(f"{path}: a headline record with an export and its trials is needed")
        networks.append((f"{path.stem} trial {winner['number']}", replay(winner["params"], epochs=epochs)))
    try:
        listed = json.loads(recipes.read_text(encoding="utf-8")) if recipes else []
        networks += [(r.get("name", ""), recipe_config(r | {"epochs": epochs})[1]) for r in listed]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{recipes}: not a benchmarks.recipe file ({exc})") from None
    return networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--records", type=Path, nargs="*", default=[])
    parser.add_argument("--presets", nargs="*", default=["fsearch-w1"])
    parser.add_argument("--recipes", type=Path, help="a benchmarks.recipe file: time each recipe's configuration")
    parser.add_argument("--timings", type=int, default=2)
    parser.add_argument("--rounds", type=int, nargs="+", default=[TIMING_ROUNDS],
                        help="the timing's rounds per format; several: each in turn, to compare them")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1, help="trained epochs per format (0: the timings alone)")
    parser.add_argument("--out", type=Path, default=Path("studies/memory-format.json"))
    args = parser.parse_args()
    if min(args.rounds) < 1:
        parser.error("--rounds: each number of rounds must be at least 1")
    try:
        networks = gather(args.records, args.presets, args.recipes, epochs=args.epochs)
    except ValueError as exc:
        parser.error(str(exc))
    # Loaded once, for every network; the timings alone run on random images.
    splits = load_splits(args.data_dir, device=torch.device("cpu"), val_size=0, seed=0) if args.epochs else None
    rows = []
    for name, cfg in networks:
        rows.append(measure(splits, name, cfg, timings=args.timings, rounds=tuple(args.rounds)))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": "python -m benchmarks.memory_format " + shlex.join(sys.argv[1:]),
        "commit": commit(), "machine": machine(), "seed": 0, "networks": rows,
    }  # fmt: skip
    write_json(args.out, result)


if __name__ == "__main__":
    main()
