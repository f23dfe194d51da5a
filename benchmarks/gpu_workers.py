"""Benchmark: training images/s of 1, 2, 4 and 8 processes sharing one GPU, each running fsearch's loop.

Why: on a GPU a small network's step is bound by its process's Python thread launching kernels, so several
processes (``fsearch run --workers``, ``AUTO_WORKERS_PER_GPU``) may train more images per second together than
one alone. Each process trains the same network (random images: the loop's speed does not depend on the pixels)
with ``cores // N`` threads and the runtime's defaults, warms up, waits at a barrier with the others, then trains
``--steps`` steps; the aggregate is all their images over the span from the first start to the last end.

    python -m benchmarks.gpu_workers --out gpu_workers.json [--nets fsearch-r6,fsearch-w1] [--steps 300]
                                    [--no-cuda-graphs]

Each process trains twice (a warm-up, then the timed run), so with CUDA graphs (the CUDA default) it also checks that a
second capture in one process works (it failed once on an H200 before search/graphs.py held the garbage collector
off: docs/gpu.md).

Meant for CUDA (``--device cpu`` only checks the script).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import queue
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench import commit
from benchmarks.gpu_loop import sync
from search.runtime import Runtime
from search.speed import random_splits
from search.train import train
from space import build_model, preset_config


def _worker(
    net: str, steps: int, threads: int, device_name: str, graphs: bool | None, barrier: Barrier, out: Any
) -> None:
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    cfg = preset_config(net)
    runtime = Runtime(device=device, cuda_graphs=graphs)
    warm = dataclasses.replace(cfg.train, epochs=1)
    train(build_model(cfg.arch), warm, random_splits(cfg.train.batch_size * 20, device), runtime=runtime, seed=0)
    splits = random_splits(cfg.train.batch_size * steps, device)
    model = build_model(cfg.arch)
    sync(device)
    barrier.wait()
    started = time.time()
    train(model, warm, splits, runtime=runtime, seed=0)
    sync(device)
    out.put((started, time.time(), len(splits.train)))


def aggregate(net: str, n: int, steps: int, device: str, graphs: bool | None = None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // n)
    procs = [ctx.Process(target=_worker, args=(net, steps, threads, device, graphs, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    ends: list[tuple[float, float, int]] = []
    while len(ends) < n:  # a process that died sends nothing: stop waiting as soon as one has
        try:
            ends.append(out.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a process exited with code {dead[0]} (its traceback is in the log)") from None
    for p in procs:
        p.join()
    span = max(e[1] for e in ends) - min(e[0] for e in ends)
    images = sum(e[2] for e in ends)
    return {"processes": n, "threads_each": threads, "images_per_second": round(images / span, 1),
            "span_seconds": round(span, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nets", default="fsearch-r6,fsearch-w1")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--device", default="cuda", help="cpu only to check the script")
    parser.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CUDA graphs on or off in each process (default: the runtime's, on for CUDA)",
    )
    args = parser.parse_args()
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    runtime = Runtime(device=torch.device(args.device), cuda_graphs=args.cuda_graphs)
    result: dict[str, Any] = {
        "what": "aggregate training images/s of N processes sharing one GPU (benchmarks/gpu_workers.py)",
        "command": f"python -m benchmarks.gpu_workers --out {args.out.name}", "commit": commit(),
        "device": device, "torch": torch.__version__, "cpu_count": os.cpu_count(), "steps": args.steps,
        "runtime": runtime.describe(), "nets": {},
    }  # fmt: skip
    for net in args.nets.split(","):
        result["nets"][net] = []
        for n in (int(p) for p in args.processes.split(",")):
            try:
                found = aggregate(net, n, args.steps, args.device, args.cuda_graphs)
            except Exception as exc:  # recorded; the next count still runs
                found = {"processes": n, "error": f"{type(exc).__name__}: {exc}"}
            result["nets"][net].append(found)
            print(net, found, flush=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
