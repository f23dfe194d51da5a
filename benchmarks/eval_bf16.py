"""Validation in fp32 against bf16 autocast on the CPU: time and accuracy of the same trained models.

    python -m benchmarks.eval_bf16 --data-dir ../shared/data [--out results.json]

Trains ``fsearch-w1`` (2 epochs) and ``fsearch-r6`` (1 epoch) on the 50,000-image training split in one
thread, as a search worker does, then evaluates each on the 10,000 validation images twice in fp32 and
twice under bf16 autocast (the search's validation since ``Runtime.cpu_eval_amp``). Never the test set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from search.data import load_splits
from search.runtime import Runtime
from search.train import evaluate, prepare_model, seed_everything, train
from space import build_model, preset_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("studies/eval-bf16.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_splits(args.data_dir, device=torch.device("cpu"), seed=0)
    assert splits.val is not None
    results = []
    for name, epochs in (("fsearch-w1", 2), ("fsearch-r6", 1)):
        cfg = preset_config(name, epochs=epochs)
        seed_everything(0)
        model = prepare_model(build_model(cfg.arch), Runtime())
        train(model, cfg.train, splits, runtime=Runtime(), seed=0)
        runs = []
        for bf16 in (False, True, False, True):
            started = time.perf_counter()
            ev = evaluate(model, splits.val, mean=splits.mean, std=splits.std, runtime=Runtime(cpu_eval_amp=bf16))
            runs.append({"bf16": bf16, "seconds": round(time.perf_counter() - started, 2),
                         "val_acc": ev.accuracy, "val_loss": round(ev.loss, 5)})  # fmt: skip
        results.append({"preset": name, "epochs": epochs, "evaluations": runs})
        print(name, runs, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": Runtime().describe(), "threads": 1, "results": results}, indent=1))


if __name__ == "__main__":
    main()
