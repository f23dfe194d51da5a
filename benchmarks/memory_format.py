"""Which memory format trains an exported network faster on this machine: channels_last or contiguous.

    python -m benchmarks.memory_format --data-dir ../shared/data [--records docs/measurements/A.json ...]
        [--presets fsearch-w1] [--timings 2] [--epochs 1] [--out results.json]

``export-best`` times the chosen configuration in both memory formats on the CPU and trains in the faster
(:func:`search.speed.export_timing`). Per network, in one process, this takes that timing ``--timings`` times,
then trains ``--epochs`` real export epochs (all 60,000 training images, all threads, no validation) in each
format, so that the timing's choice is checked against whole epochs. The networks are the winners of the given
headline records (``benchmarks/headline_record.py``) and the given presets.
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
from search.data import Splits, load_splits
from search.runtime import Runtime
from search.speed import export_timing
from search.throughput import EXPORT_IMAGES
from search.train import seed_everything, train
from space import TrialConfig, build_model, preset_config, replay
from space.model import model_size


def measure(splits: Splits, name: str, cfg: TrialConfig, *, timings: int) -> dict[str, Any]:
    """The export's timings of ``cfg`` in both formats, then its trained epochs in each on ``splits`` (all the
    training images, on this machine's CPU)."""
    device = torch.device("cpu")
    timed = [export_timing(cfg, Runtime(device=device)) for _ in range(timings)]
    trained: dict[str, list[float]] = {}
    for channels_last in (True, False):
        runtime = Runtime(device=device, channels_last=channels_last)
        seed_everything(0)
        result = train(build_model(cfg.arch), cfg.train, splits, runtime=runtime, seed=0)
        trained[runtime.memory_format] = [round(stats.seconds, 1) for stats in result.history]
    mean = {fmt: statistics.fmean(s) for fmt, s in trained.items()}
    return {
        "network": name, "mmacs": round(model_size(cfg.arch).macs / 1e6, 2),
        "filters": [b.filters for b in cfg.arch.blocks], "batch_norm": cfg.arch.batch_norm,
        "timed_epoch_s": [{f: round(EXPORT_IMAGES * s, 1) for f, s in t.by_format.items()} for t in timed],
        "chosen": [t.memory_format for t in timed], "trained_epoch_s": trained,
        "contiguous_over_channels_last": round(mean["contiguous"] / mean["channels_last"], 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--records", type=Path, nargs="*", default=[])
    parser.add_argument("--presets", nargs="*", default=["fsearch-w1"])
    parser.add_argument("--timings", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("studies/memory-format.json"))
    args = parser.parse_args()
    networks = [(p, preset_config(p, epochs=args.epochs)) for p in args.presets]
    for path in args.records:
        try:
            winner = winner_row(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            winner = None
        if winner is None:
            parser.error(f"{path}: a headline record with an export and its trials is needed")
        networks.append((f"{path.stem} trial {winner['number']}", replay(winner["params"], epochs=args.epochs)))
    splits = load_splits(args.data_dir, device=torch.device("cpu"), val_size=0, seed=0)  # once, for every network
    rows = []
    for name, cfg in networks:
        rows.append(measure(splits, name, cfg, timings=args.timings))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": "python -m benchmarks.memory_format " + shlex.join(sys.argv[1:]),
        "commit": commit(), "machine": machine(), "seed": 0, "networks": rows,
    }  # fmt: skip
    write_json(args.out, result)


if __name__ == "__main__":
    main()
