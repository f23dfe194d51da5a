"""Does averaging two trainings of one configuration beat one? Measured on the validation split only.

    python -m benchmarks.ensemble --data-dir ../shared/data \\
        --record docs/measurements/staged-60-seed0-f67e6b6.json --trial 67 --members 30:1,20:2 \\
        --concurrent "nothing" --out studies/ensemble.json

A headline run leaves time unused when its screen ends early and its export is already at its 30 epochs
(docs/runs.md). Before any of that time goes to a second member of an averaged export, this measures what
such a member buys: the recorded trial's parameters are trained once per member (``EPOCHS:SEED``, the
training seed) on the run's own 50,000/10,000 split (``--seed``, by default the record's), and each member
alone, then the mean of the members' softmax, are scored on the validation images, plain and with flip
test-time augmentation. The test set is never read. The JSON is rewritten after each member.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench import machine, write_json
from benchmarks.recipe import train_recipe
from search.data import load_splits
from search.device import resolve_device
from search.model.tta import FlipAveraged
from search.runtime import Runtime
from search.train import evaluate


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    return round(float((probs.argmax(1) == y).double().mean()), 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True, help="a staged-*.json record under docs/measurements")
    parser.add_argument("--trial", type=int, required=True, help="the record's trial whose parameters are trained")
    parser.add_argument("--members", default="30:1,20:2", help="EPOCHS:SEED per member, comma-separated")
    parser.add_argument("--seed", type=int, default=None, help="the split's seed (default: the record's)")
    parser.add_argument("--concurrent", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", type=Path, default=Path("studies/ensemble.json"))
    args = parser.parse_args()

    record = json.loads(args.record.read_text())
    trial = next(t for t in record["trials_of_the_study"] if t["number"] == args.trial)
    split_seed = record["seed"] if args.seed is None else args.seed
    members = [tuple(int(v) for v in m.split(":")) for m in args.members.split(",")]
    device = resolve_device("auto")
    runtime = Runtime(device=device)
    splits = load_splits(args.data_dir, device=device, seed=split_seed)
    assert splits.val is not None
    y = splits.val.y.cpu()
    git = shutil.which("git") or "git"
    head = subprocess.run([git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)  # noqa: S603
    commit = head.stdout.strip()
    result: dict[str, Any] = {
        "what": "one configuration trained once per member on the run's split; members alone and softmax-averaged, "
        "validation accuracy plain and with flip TTA (the test set is not read)",
        "command": "python -m benchmarks.ensemble " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")),
        "commit": commit, "machine": machine() | {"runtime": runtime.describe()}, "seed": split_seed,
        "concurrent": args.concurrent, "record": str(args.record), "trial": args.trial,
        "params": trial["params"], "members": [],
    }  # fmt: skip
    plain: list[torch.Tensor] = []
    flipped: list[torch.Tensor] = []
    norm = {"mean": splits.mean, "std": splits.std, "runtime": runtime}
    for epochs, seed in members:
        model, _, _, trained = train_recipe({"params": trial["params"], "epochs": epochs}, splits, runtime, seed)
        plain.append(evaluate(model, splits.val, **norm).logits.cpu().float().softmax(1))
        flipped.append(evaluate(FlipAveraged(model), splits.val, **norm).logits.cpu().float().softmax(1))
        result["members"].append({
            "epochs": epochs, "seed": seed, "val_acc": accuracy(plain[-1], y), "val_acc_flip": accuracy(flipped[-1], y),
            "val_curve": [round(e.val_acc or 0.0, 4) for e in trained.history],
            "train_seconds": round(trained.train_seconds, 1),
        })  # fmt: skip
        if len(plain) > 1:
            mean_plain, mean_flip = sum(plain) / len(plain), sum(flipped) / len(flipped)
            result["averaged"] = {"val_acc": accuracy(mean_plain, y), "val_acc_flip": accuracy(mean_flip, y)}
        write_json(args.out, result)
        print(json.dumps(result["members"][-1] | {"averaged": result.get("averaged")}), flush=True)


if __name__ == "__main__":
    main()
