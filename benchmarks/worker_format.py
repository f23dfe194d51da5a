"""Which memory format trains the screen's trials faster in a search worker: channels_last or contiguous.

    python -m benchmarks.worker_format --data-dir ../shared/data [--records docs/measurements/A.json ...]
        [--presets fsearch-w1] [--threads 1] [--timings 3] [--out results.json]

``export-best`` times its network in both formats and trains in the faster (``benchmarks/memory_format.py``
measures that choice); the search's workers train channels_last on the CPU. This times, in one process with
``--threads`` threads (a worker's share of a 2-core CPU: one), each network of the search as a worker trains it
(``search.speed.seconds_per_image``: real images, validation twice per epoch in the split's proportion), in each
format, ``--timings`` times alternating. The networks are the trials that trained in the given headline records'
screens (``benchmarks/headline_record.py``) and the given presets.
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
from search.data import Splits, load_splits
from search.runtime import Runtime
from search.speed import TIMED_IMAGES, seconds_per_image
from space import TrialConfig, preset_config, replay
from space.model import model_size

EVALS_PER_EPOCH = 2  # the search's default --evals-per-epoch


def measure(splits: Splits, name: str, cfg: TrialConfig, *, threads: int, timings: int) -> dict[str, Any]:
    """Seconds per training image of ``cfg`` in a worker, each format timed ``timings`` times, alternating."""
    timed: dict[str, list[float]] = {}
    for _ in range(timings):
        for channels_last in (True, False):
            runtime = Runtime(device=torch.device("cpu"), channels_last=channels_last)
            s = seconds_per_image(cfg, splits, runtime, threads=threads, evals_per_epoch=EVALS_PER_EPOCH)
            timed.setdefault(runtime.memory_format, []).append(round(s * 1e3, 4))
    median = {fmt: statistics.median(ms) for fmt, ms in timed.items()}
    return {
        "network": name, "mmacs": round(model_size(cfg.arch).macs / 1e6, 2),
        "filters": [b.filters for b in cfg.arch.blocks], "batch_norm": cfg.arch.batch_norm,
        "activation": cfg.arch.activation, "batch_size": cfg.train.batch_size,
        "ms_per_image": timed,
        "contiguous_over_channels_last": round(median["contiguous"] / median["channels_last"], 3),
    }  # fmt: skip


def screen_trials(path: Path) -> list[tuple[str, TrialConfig]]:
    """The trials that trained (reported at least once) in a headline record's screen."""
    record = json.loads(path.read_text(encoding="utf-8"))
    rows = [t for t in record.get("trials_of_the_study", []) if t.get("stage") == "screen" and t.get("epochs_run")]
    return [(f"{path.stem} trial {t['number']}", replay(t["params"], epochs=1)) for t in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--records", type=Path, nargs="*", default=[])
    parser.add_argument("--presets", nargs="*", default=["fsearch-w1"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timings", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("studies/worker-format.json"))
    args = parser.parse_args()
    networks = [(p, preset_config(p, epochs=1)) for p in args.presets]
    for path in args.records:
        try:
            networks += screen_trials(path)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"{path}: not a headline record with its trials ({exc})")
    splits = load_splits(args.data_dir, device=torch.device("cpu"), seed=0)  # the search's 50,000/10,000 split
    rows = []
    for name, cfg in networks:
        rows.append(measure(splits, name, cfg, threads=args.threads, timings=args.timings))
        print(json.dumps(rows[-1]), flush=True)
    ratios = [r["contiguous_over_channels_last"] for r in rows]
    result = {
        "command": "python -m benchmarks.worker_format " + shlex.join(sys.argv[1:]),
        "commit": commit(), "machine": machine(), "seed": 0, "threads": args.threads,
        "timed_images": TIMED_IMAGES, "evals_per_epoch": EVALS_PER_EPOCH, "networks": rows,
        "summary": {"networks": len(rows), "contiguous_faster": sum(r < 1 for r in ratios),
                    "median_ratio": statistics.median(ratios) if ratios else None,
                    "min_ratio": min(ratios, default=None), "max_ratio": max(ratios, default=None)},
    }  # fmt: skip
    write_json(args.out, result)


if __name__ == "__main__":
    main()
