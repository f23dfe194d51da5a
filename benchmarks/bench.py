"""Benchmark harness: one run measures fsearch's speed figures on this machine and writes them as JSON.

    python -m benchmarks.bench --data-dir ../shared/data [--parts loop,flops,overhead] [--headline]
                               [--out studies/bench.json]

Run it from the repository root, as a module (``-m``): ``benchmarks`` is then a package and the two
loops of ``benchmarks/loop_vs_dataloader.py`` are imported, not copied. Parts (``--parts``, comma-separated):

- ``loop``: training images/s of fsearch's loop and of a plain DataLoader loop with per-sample
  transforms, same model (``--preset``), same augmentation, same images, each in both memory formats; the
  on-device-batching gain and the channels_last gain, apart.
- ``flops``: the machine's fp32 matrix-multiply peak (best of timed ``torch.mm`` rounds) and the
  training FLOP/s the fsearch loop achieves on ``cnn3``, as GFLOP/s and a fraction of that peak.
- ``overhead``: Optuna's cost per trial (sampler + pruner + SQLite storage with heartbeats) when
  training takes no time, averaged over trials 1-50 and over the last 50 of ``--overhead-trials``.
- ``--headline`` (about an hour, off by default): ``fsearch run --trials 50`` then ``fsearch export-best``
  (wall time, validation and test accuracy), beside ``fsearch train`` of the cnn3 and lenet5 presets.

Parts 1-3 run on the CPU with torch's current thread count. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from benchmarks.derived import spearman
from benchmarks.loop_vs_dataloader import FORMATS, fsearch_loop, gains, plain_loop
from search.data import ensure_files
from search.store.record import FINALS_PASSED_OVER, PLAN, TrialRecord
from search.store.storage import open_storage
from search.store.study import create_or_resume
from search.tune.pruners import make_pruner
from search.tune.samplers import make_sampler
from space import preset_config, suggest
from space.model import model_size

PARTS = ("loop", "flops", "overhead")
FLOPS_PRESET = "cnn3"
MM_ROUNDS, MM_REPS = 5, 5  # the peak is the best of MM_ROUNDS timed rounds of MM_REPS products
WINDOW = 50  # trials averaged at each end of the overhead study
REFERENCES = ("cnn3", "lenet5")  # trained with their documented epochs (space/presets.py)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """A benchmark's figures as JSON at ``path`` (its folder made), written whole each time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].partition(":")[2].strip() if names else cpu
    return {
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__,
        "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }  # fmt: skip


def commit() -> str | None:
    """The code being measured: the checkout's short commit, with ``+changes`` when tracked files differ from it."""

    def git(*args: str) -> str:  # fixed arguments, no shell
        root = str(Path(__file__).resolve().parent.parent)
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout  # noqa: S603, S607

    try:
        rev, changes = git("rev-parse", "--short", "HEAD").strip(), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout (an sdist, say): a record then names the commit by hand
    return rev + ("+changes" if changes.strip() else "")


def measure_loop(data_dir: Path, *, preset: str, images: int, batch: int, workers: int, rounds: int) -> dict[str, Any]:
    """Both loops in both memory formats, alternating, after one untimed warm-up each; the median of
    ``rounds`` timed runs of each, and the two gains apart (``loop_vs_dataloader.gains``).

    A single short run of each was not repeatable on a shared 2-core VM: alternating spreads slow
    spells over every variant and the median drops the outliers.
    """
    variants = {
        f"{loop}, {fmt}": (loop, cl) for fmt, cl in FORMATS.items() for loop in ("fsearch", "plain")
    }  # fmt: skip

    def once(loop: str, channels_last: bool, n: int) -> float:
        if loop == "fsearch":
            return fsearch_loop(data_dir, preset, n, batch, channels_last=channels_last)
        return plain_loop(data_dir, preset, n, batch, workers, channels_last=channels_last)

    for loop, cl in variants.values():
        once(loop, cl, min(images, 2_000))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (loop, cl) in variants.items():
            samples[name].append(once(loop, cl, images))
    ips = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "preset": preset, "images": images, "batch": batch, "plain_workers": workers, "rounds": rounds,
        "images_per_second": {k: round(v, 1) for k, v in ips.items()},
        "samples": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
        **gains(ips),
    }  # fmt: skip


def matmul_peak(n: int) -> float:
    """FLOP/s of the best of :data:`MM_ROUNDS` rounds of fp32 ``n``x``n`` products (``2 n^3`` FLOPs each)."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    for _ in range(3):  # warm-up: thread pool, caches, clocks
        torch.mm(a, b, out=c)
    best = 0.0
    for _ in range(MM_ROUNDS):
        started = time.perf_counter()
        for _ in range(MM_REPS):
            torch.mm(a, b, out=c)
        best = max(best, MM_REPS * 2 * n**3 / (time.perf_counter() - started))
    return best


def measure_flops(images_per_second: float, *, source: str, mm_size: int) -> dict[str, Any]:
    peak = matmul_peak(mm_size)
    macs = model_size(preset_config(FLOPS_PRESET).arch).macs  # conv and linear layers, one image, forward
    # Training ≈ 3 forward passes (the backward pass computes the gradients of the activations and of the
    # weights, each about as costly as the forward pass) and a multiply-accumulate is 2 FLOPs.
    train_flops = 3 * 2 * macs * images_per_second
    return {
        "matmul": {"size": mm_size, "dtype": "float32", "threads": torch.get_num_threads()},
        "peak_gflops": round(peak / 1e9, 2),
        "model": FLOPS_PRESET, "forward_macs_per_image": macs, "images_per_second": round(images_per_second, 1),
        "images_per_second_from": source, "train_gflops": round(train_flops / 1e9, 2),
        "fraction_of_peak": round(train_flops / peak, 4),
    }  # fmt: skip


def _objective(trial: optuna.Trial) -> float:
    """fsearch's real ``suggest`` and two pruner reports, no training: what is left is Optuna's cost."""
    cfg = suggest(trial, epochs=5)
    # A made-up but deterministic score, so that TPE has something to model: best near lr 1e-3 and 3M MACs.
    macs = max(model_size(cfg.arch).macs, 1)
    score = 0.9 - 0.02 * abs(math.log10(cfg.train.lr) + 3) - 0.02 * abs(math.log10(macs) - 6.5)
    for step, fraction in enumerate((0.9, 0.97), start=1):
        trial.report(score * fraction, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return score


def measure_overhead(trials: int, *, folder: Path) -> dict[str, Any]:
    storage = open_storage(f"sqlite:///{folder / 'overhead.db'}", create=True, grace_period=60)
    study = create_or_resume(
        storage, "overhead", sampler=make_sampler("tpe", seed=0), pruner=make_pruner("sha", max_resource=10)
    )
    ends: list[float] = []
    started = time.perf_counter()
    study.optimize(_objective, n_trials=trials, callbacks=[lambda _s, _t: ends.append(time.perf_counter())])
    per_trial = [end - begin for begin, end in itertools.pairwise([started, *ends])]
    window = min(WINDOW, trials)

    def mean_ms(durations: list[float]) -> float:
        return round(1000 * sum(durations) / len(durations), 2)

    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    return {
        "trials": trials, "sampler": "tpe", "pruner": "sha", "storage": "sqlite, heartbeats (grace period 60 s)",
        "ms_per_trial": {
            f"trials 1-{window}": mean_ms(per_trial[:window]),
            f"trials {trials - window + 1}-{trials}": mean_ms(per_trial[-window:]),
            "all": mean_ms(per_trial),
        },
        "states": {state: states.count(state) for state in sorted(set(states))},
    }  # fmt: skip


def fsearch_cli(*argv: str) -> tuple[dict[str, Any], float]:
    """Run ``fsearch ARGV`` (which must print JSON) in a fresh process: its JSON and its wall seconds.

    Its live display (stderr) passes through, so a long run shows its progress."""
    cmd = [sys.executable, "-c", "from search.cli.app import main; main()", *argv]
    started = time.perf_counter()
    # The command is this interpreter and fixed arguments: nothing goes through a shell.
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"Error: 'fsearch {shlex.join(argv)}' exited with {done.returncode}; see its output above")
    try:
        return json.loads(done.stdout), wall
    except json.JSONDecodeError:
        raise SystemExit(f"Error: 'fsearch {argv[0]}' printed no JSON: {done.stdout[:200]!r}") from None


def stages_of(storage: str, study_name: str) -> dict[str, Any]:
    """Per stage: trials, states; the finalists' screen and final validation accuracy, and their rank correlation."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    by_stage: dict[str, dict[str, int]] = {}
    for t in trials:
        r = TrialRecord(t)
        key = "skipped" if r.over_budget else r.stage
        by_stage.setdefault(key, {}).setdefault(t.state.name.lower(), 0)
        by_stage[key][t.state.name.lower()] += 1
    finals = []
    for t in trials:
        r = TrialRecord(t)
        if r.stage == "final" and r.parent is not None and t.value is not None:
            parent = trials[r.parent]
            screen = parent.value if parent.value is not None else max(parent.intermediate_values.values())
            finals.append({"trial": t.number, "parent": r.parent, "origin": r.origin, "screen_val": screen,
                           "screen_epochs": TrialRecord(parent).epochs_run, "final_val": t.value,
                           "final_epochs": r.epochs_run})  # fmt: skip
    return {
        "trials_by_stage": by_stage, "finalists": finals,
        "spearman_screen_vs_final": spearman([f["screen_val"] for f in finals], [f["final_val"] for f in finals]),
        "plan": study.user_attrs.get(PLAN), "finals_passed_over": study.user_attrs.get(FINALS_PASSED_OVER),
    }  # fmt: skip


def measure_headline(
    data_dir: Path, *, seed: int, trials: int, references: bool, folder: Path, run_args: list[str]
) -> dict[str, Any]:
    storage = f"sqlite:///{folder / 'bench.db'}"
    common = ("--storage", storage, "--study", "bench", "--data-dir", str(data_dir))
    run = ("run", "--json", "--trials", str(trials), "--seed", str(seed), *run_args, *common)
    found, search_wall = fsearch_cli(*run)
    best = found["best"] or {}
    export, export_wall = fsearch_cli("export-best", "--json", *common, "--out", str(folder / "best"))
    result: dict[str, Any] = {
        "search": {
            "command": "fsearch " + shlex.join(run), "trials": trials, "seed": seed,
            "wall_seconds": round(search_wall, 1), "stage_seconds": found.get("stage_seconds"),
            "workers": found["workers"], "device": found["device"], "this_run": found["this_run"],
            "best_trial": best.get("number"), "best_origin": best.get("origin"), "val_accuracy": best.get("value"),
        },
        "stages": stages_of(storage, "bench"),
        "export_best": {
            "wall_seconds": round(export_wall, 1), "epochs": export["epochs"], "trial": export["provenance"]["trial"],
            "origin": export["provenance"].get("origin"), "train_seconds": round(export["train_seconds"], 1),
            "test_accuracy": export["test_accuracy"],
            # With flip test-time augmentation shipped (chosen on validation), the plain network's figure beside it.
            "test_time_augmentation": export.get("test_time_augmentation"),
            "plain_test_accuracy": export.get("plain_test_accuracy"),
            "tta_decision": export["provenance"].get("test_time_augmentation"),
        },
        "total_wall_seconds": round(search_wall + export_wall, 1),
    }  # fmt: skip
    if references:
        result["references"] = {}
        for preset in REFERENCES:
            out = str(folder / preset)
            report, wall = fsearch_cli(
                "train", "--json", "--preset", preset, "--seed", str(seed), "--data-dir", str(data_dir), "--out", out
            )
            result["references"][preset] = {
                "epochs": report["epochs"], "wall_seconds": round(wall, 1),
                "train_seconds": round(report["train_seconds"], 1), "test_accuracy": report["test_accuracy"],
                "device": report["device"],
            }  # fmt: skip
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="folder holding FashionMNIST/raw (loop, flops, --headline)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}; '' = none")
    parser.add_argument("--headline", action="store_true", help="also the ~1 hour search + export + presets")
    parser.add_argument("--out", type=Path, default=Path("studies/bench.json"), help="JSON written after each part")
    parser.add_argument("--preset", default="cnn3", help="model of the loop part")
    parser.add_argument("--images", type=int, default=10_000, help="training images of each loop")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each loop (the median is reported)")
    parser.add_argument("--plain-workers", type=int, default=0, help="DataLoader workers of the plain loop")
    parser.add_argument("--mm-size", type=int, default=2048, help="side of the square matrices of the peak")
    parser.add_argument("--overhead-trials", type=int, default=1000)
    parser.add_argument("--headline-trials", type=int, default=50)
    parser.add_argument("--headline-dir", type=Path, help="keep the headline's study and models here (default: a "
                        "temporary folder, deleted afterwards)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the headline search and preset trainings")
    parser.add_argument("--skip-references", action="store_true", help="no preset trainings in the headline")
    parser.add_argument("--run-args", default="", help="more options for the headline's fsearch run, e.g. "
                        "'--budget 15' or '--no-known-best'")  # fmt: skip
    args = parser.parse_args()
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; use some of {', '.join(PARTS)}")
    if args.data_dir is None and ({"loop", "flops"} & set(args.parts) or args.headline):
        parser.error("--data-dir is needed by the loop and flops parts and by --headline")
    if args.overhead_trials < 1 or args.images < args.batch:
        parser.error("--overhead-trials must be at least 1 and --images at least --batch")
    return args


def main() -> None:
    args = parse_args()
    if args.data_dir is not None:
        ensure_files(args.data_dir, download=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result: dict[str, Any] = {
        "command": shlex.join(sys.orig_argv),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit(),
    }

    def save() -> None:  # after each part, so a long run that fails keeps what it measured
        write_json(args.out, result)

    if "loop" in args.parts:
        result["loop"] = measure_loop(
            args.data_dir, preset=args.preset, images=args.images, batch=args.batch, workers=args.plain_workers,
            rounds=args.rounds,
        )  # fmt: skip
        save()
    if "flops" in args.parts:
        if "loop" in result and args.preset == FLOPS_PRESET:
            ips, source = result["loop"]["images_per_second"]["fsearch, channels_last"], "the loop part's fsearch run"
        else:
            ips, source = fsearch_loop(args.data_dir, FLOPS_PRESET, args.images, args.batch), "its own fsearch run"
        result["flops"] = measure_flops(ips, source=f"{source} ({args.images} images, batch {args.batch})",
                                        mm_size=args.mm_size)  # fmt: skip
        save()
    if "overhead" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            result["overhead"] = measure_overhead(args.overhead_trials, folder=Path(tmp))
        save()
    if args.headline:
        with contextlib.ExitStack() as stack:
            folder = args.headline_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            folder.mkdir(parents=True, exist_ok=True)
            result["headline"] = measure_headline(
                args.data_dir, seed=args.seed, trials=args.headline_trials, references=not args.skip_references,
                folder=folder, run_args=shlex.split(args.run_args),
            )  # fmt: skip
        save()
    save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
