"""How well ``export-best``'s timing of one epoch predicts the epochs it then trains.

    python -m benchmarks.export_timing --data-dir ../shared/data [--presets fsearch-w1 cnn3] [--epochs 2]
        [--timings 3] [--out results.json]

``export-best`` times the chosen configuration on 2,048 random images (after a warm-up of 512) and sizes its
epochs to the plan's time from that (:func:`search.speed.export_seconds_per_image`). Per preset, in one process,
this takes that timing ``--timings`` times, then trains ``--epochs`` real export epochs (all 60,000 training
images, all threads, no validation, as ``export-best`` trains) and reports each timed epoch over the mean trained
one: above 1 the export plans fewer epochs than its time affords and ends early, below 1 its schedule runs on the
clock (:class:`search.optim.Pace`).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench import machine, write_json
from search.data import load_splits
from search.runtime import Runtime
from search.speed import export_seconds_per_image
from search.throughput import EXPORT_IMAGES
from search.train import seed_everything, train
from space import build_model, preset_config


def measure(data_dir: Path, preset: str, *, epochs: int, timings: int) -> dict[str, Any]:
    """Timed and trained seconds per export epoch of ``preset`` on this machine's CPU."""
    device = torch.device("cpu")
    cfg = preset_config(preset, epochs=epochs)
    timed = [EXPORT_IMAGES * export_seconds_per_image(cfg, Runtime(device=device)) for _ in range(timings)]
    splits = load_splits(data_dir, device=device, val_size=0, seed=0)
    seed_everything(0)
    trained: list[float] = []
    train(build_model(cfg.arch), cfg.train, splits, runtime=Runtime(device=device), seed=0,
          on_epoch_end=lambda stats: trained.append(stats.seconds))  # fmt: skip
    mean = statistics.fmean(trained)
    return {
        "preset": preset, "timed_epoch_s": [round(s, 1) for s in timed],
        "trained_epoch_s": [round(s, 1) for s in trained], "timed_over_trained": [round(s / mean, 3) for s in timed],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--presets", nargs="+", default=["fsearch-w1", "cnn3"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timings", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("studies/export-timing.json"))
    args = parser.parse_args()
    result = {
        "command": f"python -m benchmarks.export_timing --data-dir {args.data_dir} --presets {' '.join(args.presets)} "
        f"--epochs {args.epochs} --timings {args.timings}",
        "machine": machine(),
        "presets": [measure(args.data_dir, p, epochs=args.epochs, timings=args.timings) for p in args.presets],
    }  # fmt: skip
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
