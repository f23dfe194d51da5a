"""Benchmark: training images/s of fsearch's loop on a GPU, as it was and with each CUDA speed-up (issue 14).

Two networks at their own batch sizes: ``fsearch-w1`` (19.1M MACs, batch 128) and ``fsearch-r6`` (4.9M MACs,
batch 64, the small class whose 6 ms steps on an H100 opened issue 14). Each variant trains the same steps of the
same images through :func:`search.train.train` (the loop that ships), in one process, one after the other:

- ``before``: the loop as it was: eager, bf16 autocast, channels_last, torch's multi-tensor optimiser;
- ``fused``: the optimiser's step fused (``Runtime.fused_optimizer``);
- ``fused+cudnn``: and ``torch.backends.cudnn.benchmark`` (cuDNN times its algorithms per shape);
- ``graphs``: fused, and the model's forward and backward replayed as CUDA graphs (``Runtime.cuda_graphs``, now the
  CUDA default);
- ``graphs+cudnn``: and ``torch.backends.cudnn.benchmark``;
- ``compile``: fused, and the model under ``torch.compile(mode="reduce-overhead")`` (Inductor's kernels in CUDA
  graphs; not part of fsearch, measured to see what the compiler's route would give).

Each runs ``--epochs`` epochs of ``--steps`` steps without validation; the first epoch is the warm-up (capture,
compilation, cuDNN's timing) and is reported apart; images/s is over the later epochs. The validation accuracy
after the run is a check that a variant trains the same network, not a measure of quality (a few hundred steps).
The fraction of peak counts 6 FLOPs per MAC per training image (forward, and a backward of twice its work)
against this GPU's bf16 and fp32 matrix products, measured here.

    python -m benchmarks.gpu_loop --data-dir ../shared/data --out gpu_loop.json

Writes the JSON after every variant, so a run stopped early keeps what it measured. On a machine without CUDA
only ``before`` and ``fused`` run (a check of the script, not a GPU figure).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.bench import commit
from search.data import ImageSet, Splits, load_splits
from search.runtime import Runtime
from search.train import evaluate, train
from space import build_model, preset_config
from space.model import model_size

NETS = ("fsearch-w1", "fsearch-r6")
VARIANTS = ("before", "fused", "fused+cudnn", "graphs", "graphs+cudnn", "compile")
CUDA_ONLY = {"fused+cudnn", "graphs", "graphs+cudnn", "compile"}


def matmul_tflops(dtype: torch.dtype, n: int, device: torch.device, reps: int = 10) -> float:
    """TFLOP/s of ``n``x``n`` products of random ``dtype`` matrices (median of ``reps`` after 3 warm-ups)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e12


def peaks(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return {"bf16_tflops": matmul_tflops(torch.bfloat16, 8192, device),
                "fp32_tflops": matmul_tflops(torch.float32, 8192, device)}  # fmt: skip
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def run_variant(
    net: str, variant: str, splits: Splits, device: torch.device, *, steps: int, epochs: int
) -> dict[str, Any]:
    cfg = preset_config(net)
    batch = cfg.train.batch_size
    train_cfg = dataclasses.replace(cfg.train, epochs=epochs)
    n = batch * steps
    part = Splits(train=ImageSet(splits.train.x[:n], splits.train.y[:n]), val=None, mean=splits.mean,
                  std=splits.std)  # fmt: skip
    fused = variant != "before"
    runtime = Runtime(device=device, fused_optimizer=fused, cuda_graphs=variant.startswith("graphs"))
    torch.backends.cudnn.benchmark = variant.endswith("+cudnn")
    model: nn.Module = build_model(cfg.arch)
    plain = model
    if variant == "compile":
        model = torch.compile(model, mode="reduce-overhead")  # type: ignore[assignment]
    started = time.perf_counter()
    result = train(model, train_cfg, part, runtime=runtime, seed=0)
    wall = time.perf_counter() - started
    timed = result.history[1:]
    seconds = sum(e.seconds for e in timed)
    images = sum(e.images for e in timed)
    plain.eval()
    val = splits.val
    assert val is not None
    evaluate(plain, val, mean=splits.mean, std=splits.std, runtime=runtime)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    check = evaluate(plain, val, mean=splits.mean, std=splits.std, runtime=runtime)
    sync(device)
    eval_s = time.perf_counter() - t0
    return {
        "images_per_second": round(images / seconds, 1),
        "step_ms": round(1000 * seconds / (images / batch), 3),
        "warmup_epoch_seconds": round(result.history[0].seconds, 2),
        "wall_seconds": round(wall, 1),
        "val_accuracy_check": round(check.accuracy, 4),
        "eval_images_per_second": round(len(val) / eval_s, 1),
        "runtime": runtime.describe(),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # a variant that fails is recorded as such; the others still run
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant, the first one a warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    device = torch.device(args.device)
    splits = load_splits(args.data_dir, device=device, val_size=10_000, seed=0)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result: dict[str, Any] = {
        "what": "training images/s of fsearch's loop per CUDA speed-up (benchmarks/gpu_loop.py)",
        "command": f"python -m benchmarks.gpu_loop --data-dir {args.data_dir} --out {args.out.name}",
        "commit": commit(),
        "machine": {"device": gpu, "torch": torch.__version__, "python": platform.python_version(),
                    "cpu_threads": torch.get_num_threads()},
        "steps_per_epoch": args.steps, "epochs": args.epochs, "seed": 0,
        "peaks": attempt(lambda: peaks(device)),
        "nets": {},
    }  # fmt: skip
    for net in NETS:
        cfg = preset_config(net)
        result["nets"][net] = {"mmacs": round(model_size(cfg.arch).macs / 1e6, 2), "batch_size": cfg.train.batch_size,
                               "variants": {}}  # fmt: skip
    # Variant by variant, both networks each: the compiler's, slowest to set up, come last.
    for variant in args.variants.split(","):
        for net in NETS:
            if variant in CUDA_ONLY and device.type != "cuda":
                continue
            found = attempt(lambda: run_variant(net, variant, splits, device, steps=args.steps, epochs=args.epochs))  # noqa: B023
            if "images_per_second" in found and "bf16_tflops" in result["peaks"]:
                tflops = found["images_per_second"] * 6 * result["nets"][net]["mmacs"] / 1e6
                found["tflops"] = round(tflops, 3)
                found["fraction_of_bf16_peak"] = round(tflops / result["peaks"]["bf16_tflops"], 5)
                found["fraction_of_fp32_peak"] = round(tflops / result["peaks"]["fp32_tflops"], 4)
            result["nets"][net]["variants"][variant] = found
            print(net, variant, {k: v for k, v in found.items() if k != "traceback"}, flush=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
