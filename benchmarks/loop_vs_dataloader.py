"""Benchmark: fsearch's on-device training loop against a plain torchvision DataLoader loop.

Same model, same optimiser, same augmentation (random crop with 2-pixel padding + horizontal
flip), same number of images, same process and machine. The plain loop is the textbook one:
a dataset yielding PIL images through per-sample ``transforms``, batched by a ``DataLoader``.

Each loop runs in both memory formats (contiguous NCHW and channels_last), so that the two
gains are reported apart and each comparison is like with like: on-device batching is fsearch
against plain in the same format, channels_last is fsearch's loop in one format against the other.

    python benchmarks/loop_vs_dataloader.py --data-dir ../shared/data [--preset cnn3] [--images 10000]

Prints images/second of each loop and the gains. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from search.data import ensure_files, load_splits
from search.runtime import Runtime
from search.train import train
from space import Augment, build_model, preset_config


class _PilDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images as PIL, one at a time, through ``transform``: what torchvision's datasets do."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = transforms.functional.to_pil_image(self.x[i])
        return self.transform(image), int(self.y[i])


FORMATS = {"contiguous": False, "channels_last": True}


def fsearch_loop(data_dir: Path, preset: str, images: int, batch: int, *, channels_last: bool = True) -> float:
    """Images/second of :func:`search.train.train` for one epoch on ``images`` images."""
    splits = load_splits(data_dir, device=torch.device("cpu"), train_subset=images)
    splits = dataclasses.replace(splits, val=None)  # time training only, like the plain loop
    cfg = preset_config(preset, epochs=1)
    train_cfg = dataclasses.replace(cfg.train, batch_size=batch, augment=Augment(crop_pad=2, flip=True))
    torch.manual_seed(0)
    runtime = Runtime(channels_last=channels_last)
    result = train(build_model(cfg.arch), train_cfg, splits, runtime=runtime, seed=0)
    return result.images_per_second


def plain_loop(
    data_dir: Path, preset: str, images: int, batch: int, workers: int, *, channels_last: bool = False
) -> float:
    """Images/second of a textbook DataLoader loop with per-sample transforms (in the given memory format)."""
    splits = load_splits(data_dir, device=torch.device("cpu"), val_size=0)
    tf = transforms.Compose(
        [
            transforms.RandomCrop(28, padding=2),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((splits.mean,), (splits.std,)),
        ]
    )
    # torchvision's FashionMNIST class wants the unpacked files (the shared folder is read-only): the same
    # per-sample path, PIL image -> transforms, over the already-decoded uint8 images.
    dataset = _PilDataset(splits.train.x[:images], splits.train.y[:images], tf)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    cfg = preset_config(preset, epochs=1)
    torch.manual_seed(0)
    model = build_model(cfg.arch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    started = time.perf_counter()
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - started)


def gains(ips: dict[str, float]) -> dict[str, dict[str, float]]:
    """The two gains, apart: on-device batching (fsearch / plain, same format), channels_last (fsearch)."""
    return {
        "on_device_batching_gain": {fmt: round(ips[f"fsearch, {fmt}"] / ips[f"plain, {fmt}"], 2) for fmt in FORMATS},
        "channels_last_gain": {"fsearch": round(ips["fsearch, channels_last"] / ips["fsearch, contiguous"], 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--preset", default="cnn3")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    ensure_files(args.data_dir, download=False)
    rows = {}
    for fmt, cl in FORMATS.items():
        rows[f"fsearch, {fmt}"] = fsearch_loop(args.data_dir, args.preset, args.images, args.batch, channels_last=cl)
        rows[f"plain, {fmt}"] = plain_loop(args.data_dir, args.preset, args.images, args.batch, 0, channels_last=cl)
    result = {
        "preset": args.preset,
        "images": args.images,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "images_per_second": {k: round(v, 1) for k, v in rows.items()},
        **gains(rows),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
