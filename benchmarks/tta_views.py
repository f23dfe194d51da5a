"""Which test-time views pay: flips and one-pixel shifts, on the validation split (never the test set).

    python -m benchmarks.tta_views --data-dir ../shared/data --recipes recipes.json --seed S --out OUT.json

Trains each recipe as ``benchmarks/recipe.py`` does (same JSON, 50,000-image training split) and then
evaluates the one trained network on ten views of each validation image: as it is and shifted by one
pixel left, right, up or down (zero fill, as the training's random crop pads), each also mirrored. It
reports the accuracy of the averaged softmax over several sets of views, and for each set how many images
it gets right that the shipped flip average (image + mirror) gets wrong, and the reverse: the same weights
on the same images, so the sets compare exactly. Shifted views are what a crop-trained network has seen,
so averaging them might gain what flip averaging gains; this measures whether it does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.recipe import train_recipe
from search.data import ImageSet, load_splits
from search.device import resolve_device
from search.runtime import Runtime
from search.train import evaluate

SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # (dx, dy): none, left, right, up, down
VIEW_SETS = {
    "plain": [(False, 0, 0)],
    "flip": [(False, 0, 0), (True, 0, 0)],  # what fsearch ships (search/model/tta.py)
    "shift5": [(False, dx, dy) for dx, dy in SHIFTS],
    "flip_shiftx6": [(f, dx, 0) for f in (False, True) for dx in (0, -1, 1)],
    "flip_shift10": [(f, dx, dy) for f in (False, True) for dx, dy in SHIFTS],
}


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """uint8 images ``(N, 1, H, W)`` moved ``dx`` pixels right and ``dy`` down (one at most), zero filled."""
    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2:]
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--recipes", type=Path, required=True, help="JSON list of recipes (benchmarks/recipe.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = resolve_device("auto")
    runtime = Runtime(device=device)
    splits = load_splits(args.data_dir, device=device, seed=args.seed)
    val = splits.val
    assert val is not None  # load_splits holds 10,000 images out by default
    results = []
    for recipe in json.loads(args.recipes.read_text()):
        model, params, cfg, result = train_recipe(recipe, splits, runtime, args.seed)
        probs = {}
        for view in {v for views in VIEW_SETS.values() for v in views}:
            flip, dx, dy = view
            x = shifted(val.x, dx, dy)
            ev = evaluate(model, ImageSet(x.flip(-1) if flip else x, val.y), mean=splits.mean, std=splits.std,
                          runtime=runtime)  # fmt: skip
            probs[view] = ev.logits.float().softmax(1)
        y = val.y.cpu()
        right = {name: sum(probs[v] for v in views).argmax(1) == y for name, views in VIEW_SETS.items()}
        flip_right = right["flip"]
        results.append({
            "name": recipe.get("name", ""), "epochs": cfg.train.epochs,
            "val_curve": [round(e.val_acc or 0.0, 4) for e in result.history],
            "train_seconds": round(result.train_seconds, 1),
            "val": {name: round(r.float().mean().item(), 4) for name, r in right.items()},
            "vs_flip": {name: {"only_this": int((r & ~flip_right).sum()), "only_flip": int((~r & flip_right).sum())}
                        for name, r in right.items()},
            "params": params,
        })  # fmt: skip
        print(json.dumps(results[-1]["val"]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": runtime.describe(), "torch": torch.__version__,
                                        "seed": args.seed, "results": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
