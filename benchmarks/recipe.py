"""Measure training recipes at full length on the validation split (never the test set).

    python -m benchmarks.recipe --data-dir ../shared/data --recipes recipes.json [--out results.json]

Each recipe in the JSON list is ``{"name": ..., "params": {...} | "preset": NAME, "epochs": N}``:
a configuration of the search space (a study trial's parameters, or a preset name, with optional
``"override"`` parameters on top) trained for ``epochs`` on the 50,000-image training split;
``"amp": false`` trains it in fp32 where the machine's default is bf16 autocast (``true``: bf16);
``"time_limit_s": S`` keeps its training within S seconds as ``export-best`` keeps to the plan's time (the
schedule runs on the clock when the epochs do not fit), so that recipes can be compared at equal time.
Reported per recipe: the validation accuracy after every epoch, at the end, and with flip
test-time augmentation, the model's MACs and parameters, and the training images/s on this
machine. This is how export-best's epoch rule and the known-best preset were chosen, so that
the test set never steers them (README, "How the defaults were chosen").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from search.data import Splits, load_splits
from search.device import resolve_device
from search.model.retrain import held_out_metrics
from search.model.tta import FLIP
from search.runtime import Runtime
from search.train import TrainResult, seed_everything, train
from space import PRESETS, TrialConfig, build_model, suggest
from space.model import model_size


def recipe_config(recipe: dict[str, Any]) -> tuple[dict[str, Any], TrialConfig]:
    """A recipe's parameters (a preset's or its own, with its overrides) and their configuration."""
    params = dict(PRESETS[recipe["preset"]]) if "preset" in recipe else dict(recipe["params"])
    params |= recipe.get("override", {})
    return params, suggest(optuna.trial.FixedTrial(params), epochs=int(recipe["epochs"]))


def train_recipe(
    recipe: dict[str, Any], splits: Splits, runtime: Runtime, seed: int
) -> tuple[nn.Module, dict[str, Any], TrialConfig, TrainResult]:
    """Train one recipe on ``splits``' training split: the model, its parameters, configuration and result."""
    params, cfg = recipe_config(recipe)
    seed_everything(seed)
    model = build_model(cfg.arch)
    if "amp" in recipe:
        runtime = dataclasses.replace(runtime, amp=bool(recipe["amp"]))
    limit = recipe.get("time_limit_s")
    return model, params, cfg, train(model, cfg.train, splits, runtime=runtime, seed=seed, time_limit_s=limit)


def run_recipe(recipe: dict[str, Any], splits: Splits, runtime: Runtime, seed: int) -> dict[str, Any]:
    model, params, cfg, result = train_recipe(recipe, splits, runtime, seed)
    size = model_size(cfg.arch)
    assert splits.val is not None  # load_splits holds 10,000 images out by default
    val = held_out_metrics(model, splits.val, splits, runtime, tta=FLIP)
    return {
        "name": recipe.get("name", ""), "epochs": cfg.train.epochs, "device": runtime.describe(),
        "mmacs": round(size.macs / 1e6, 2), "parameters": size.parameters,
        "val_acc": val["plain"]["accuracy"], "val_acc_flip_tta": val["accuracy"],
        "val_curve": [round(e.val_acc or 0.0, 4) for e in result.history],
        "train_seconds": round(result.train_seconds, 1), "images_per_second": round(result.images_per_second),
        "time_limit_s": recipe.get("time_limit_s"), "epochs_run": round(result.epochs_run, 2),
        "time_limited": result.time_limited, "params": params,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--recipes", type=Path, required=True, help="JSON list of recipes")
    parser.add_argument("--out", type=Path, default=Path("studies/recipes.json"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    runtime = Runtime(device=device)
    splits = load_splits(args.data_dir, device=device, seed=args.seed)
    results = []
    for recipe in json.loads(args.recipes.read_text()):
        results.append(run_recipe(recipe, splits, runtime, args.seed))
        r = results[-1]
        print(f"{r['name']:28s} {r['mmacs']:6.2f} MMAC {r['epochs']:3d} ep "
              f"val {r['val_acc']:.4f} tta {r['val_acc_flip_tta']:.4f} {r['train_seconds']:7.1f} s "
              f"{r['images_per_second']} img/s", flush=True)  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": runtime.describe(), "torch": torch.__version__,
                                        "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
