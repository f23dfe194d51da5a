"""``fsearch run --workers N``: several worker processes searching one study at the same time.

The engine is Optuna's own: each worker is an ordinary ``study.optimize`` loop on the shared
storage, so workers on other machines (``--storage postgresql://…``) join the same way. This
module only plans the workers (devices, threads), starts them, relays their progress to the
parent's display (:mod:`search.tune.events`) and forwards Ctrl+C / SIGTERM. It never decides
which trial runs where.

- Processes are started with ``spawn`` on every platform (the same behaviour on Linux, macOS
  and Windows; no forked CUDA or thread pools).
- The ``--trials`` budget is a shared counter of tickets: a worker takes one before each trial
  that trains, so exactly ``--trials`` trials train however long each takes.
- A worker that is killed (SIGKILL, out of memory, power loss) leaves its trial RUNNING; the
  storage's heartbeats fail it after the grace period and queue a retry with its parameters.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import TYPE_CHECKING, Any

import torch

from search.errors import FsearchError, signal_number
from search.tune.events import CheckedObserver, Lanes, QueueObserver, Relay, StopRequest
from search.tune.session import (
    SearchOptions,
    Stage,
    TrialEndCallback,
    join_study,
    optimize_here,
)

if TYPE_CHECKING:
    import optuna

# On a 2-core CPU two processes of one thread train more trials per hour than one process of two
# threads (docs/workers.md, with the measurement).
AUTO_CPU_WORKERS = 2
STOP_WAIT_S = 60  # how long an interrupted worker gets to fail its trial before it is killed
# How long an interrupted worker waits to learn whether the parent is stopping too: Ctrl+C reaches the parent and
# its workers at once, and the parent's flag follows within milliseconds (see _stop); a worker signalled alone waits
# this long once, then exits the ordinary way.
PARENT_STOP_WAIT_S = 1.0
# On CUDA a trial's step is bound by launching kernels from its process's one Python thread, and leaves the GPU
# idle most of the time: several worker processes share one GPU (each with its own CUDA context and
# cores // workers threads), as many as the cores allow. On an H200, 4 processes trained 3.8 times the images/s of
# one, 2 processes 1.7 times (benchmarks/gpu_workers.py, docs/gpu.md).
AUTO_WORKERS_PER_GPU = 4


@dataclass(frozen=True)
class WorkerSpec:
    """Where one worker trains: its device and its share of the CPU threads."""

    device: str
    threads: int


def plan_workers(requested: int | None, device: torch.device, *, trials: int) -> list[WorkerSpec]:
    """One spec per worker. ``requested`` None is ``--workers auto``: ``AUTO_WORKERS_PER_GPU`` per GPU on CUDA
    (fewer where the cores are fewer; round robin over the GPUs), one on MPS, ``AUTO_CPU_WORKERS`` on a CPU with
    that many cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if device.type == "cuda" and device.index is None:
        gpus = torch.cuda.device_count()
        n = requested or gpus * max(1, min(AUTO_WORKERS_PER_GPU, cores // gpus))
        devices = [f"cuda:{i % gpus}" for i in range(n)]  # round robin: several per GPU when n > gpus
    else:
        auto = min(cores, AUTO_CPU_WORKERS) if device.type == "cpu" else 1
        n = requested or auto
        devices = [str(device)] * n
    n = min(n, trials)  # a worker without a trial to run would only load the data
    return [WorkerSpec(device=d, threads=max(1, cores // n)) for d in devices[:n]]


class SharedTickets:
    """The budget shared by the worker processes (a counter in shared memory, under its lock)."""

    def __init__(self, left: Synchronized[int]) -> None:
        self.left = left

    def take(self) -> bool:
        with self.left.get_lock():
            if self.left.value <= 0:
                return False
            self.left.value -= 1
            return True


def _worker_main(
    opts: SearchOptions, stage: Stage, spec: WorkerSpec, lane: int, sampler_seed: int, timeout: float | None,
    tickets: Synchronized[int], events: Any, parent_stopping: Any,
) -> None:  # fmt: skip
    """Body of a worker process: load the data, join the study, optimise until the tickets run out.
    ``parent_stopping`` is the event the parent sets once it stops reading ``events`` (:func:`_stop`)."""
    stop = StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    torch.set_num_threads(spec.threads)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    relay = QueueObserver(events, lane)
    study = None
    try:
        study, splits = join_study(opts, device_name=spec.device, sampler_seed=sampler_seed, parallel=True)
        optimize_here(
            study, opts, splits, stage=stage, tickets=SharedTickets(tickets), observer=CheckedObserver(relay, stop),
            on_trial_end=relay, timeout=timeout,
        )  # fmt: skip
        stop.check()  # a signal after the last trial: still the exit code of one
    except KeyboardInterrupt as exc:
        if parent_stopping.wait(PARENT_STOP_WAIT_S):
            # The parent reads no more events (see _stop): exit without waiting for them to be sent.
            events.cancel_join_thread()
        elif study is not None:
            # This worker alone was signalled (`kill PID`) and the run goes on: the parent's display hears of
            # the failed trial, and the events still queued reach it before this process exits. A storage that
            # fails now costs the display that line, not the exit code.
            with contextlib.suppress(Exception):
                relay.interrupted(study)
        sys.exit(128 + signal_number(exc))
    except FsearchError as exc:  # a user's error (bad data, unreachable database): the parent re-raises it
        events.put(("user_error", lane, str(exc)))
        sys.exit(2)
    except Exception as exc:  # a bug: the parent shows it in one line and exits non-zero
        events.put(("crash", lane, f"worker {lane} crashed: {type(exc).__name__}: {exc}"))
        sys.exit(1)


def run_workers(
    opts: SearchOptions, plan: Sequence[WorkerSpec], *, stage: Stage, study: optuna.Study,
    sampler_seeds: Sequence[int], timeout: float | None, lanes: Lanes | None, on_trial_end: TrialEndCallback | None,
) -> list[str]:  # fmt: skip
    """Run one worker process per spec until the ``stage.trials`` tickets are used; the problems of
    workers that did not end cleanly (one line each). A user's error in a worker (say, a database it
    cannot reach) is raised here as :class:`FsearchError`. Ctrl+C / SIGTERM is passed on to the
    workers, which fail their running trials, and then re-raised."""
    ctx = multiprocessing.get_context("spawn")
    tickets = ctx.Value("i", stage.trials)
    events = ctx.Queue()
    parent_stopping = ctx.Event()
    relay = Relay(study, lanes, on_trial_end)
    procs = [
        ctx.Process(
            target=_worker_main,
            name=f"fsearch-worker-{i}",
            args=(opts, stage, spec, i, sampler_seeds[i], timeout, tickets, events, parent_stopping),
        )
        for i, spec in enumerate(plan)
    ]
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            relay.drain(events, wait=0.25)
        relay.drain(events, wait=0)
    except KeyboardInterrupt as exc:
        _stop(procs, signal_number(exc), parent_stopping)
        raise
    if relay.user_errors:
        raise FsearchError(relay.user_errors[0])
    explained = bool(relay.crashes)
    return relay.crashes + [_describe_exit(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode and not explained]


def _describe_exit(lane: int, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (
            f"worker {lane} was killed ({name}); its trial is failed and retried after the grace period "
            f"(or now with 'fsearch studies --repair')"
        )
    if code - 128 in (signal.SIGINT, signal.SIGTERM):
        name = signal.Signals(code - 128).name
        return f"worker {lane} was stopped ({name}) on its own; its running trial was marked failed"
    return f"worker {lane} exited with code {code}"


def _stop(procs: Sequence[multiprocessing.process.BaseProcess], signum: int, parent_stopping: Any) -> None:
    """Pass the interrupt on, give the workers time to fail their trials, then kill what is left.

    The events queue is not read from here on: the interrupt may have landed in the middle of reading a
    message, and the next read would take the rest of that message for a new one (a fresh clone's CI once
    saw it end the run with EOFError instead of exit code 130). ``parent_stopping`` says so to the workers, set
    before any is signalled: an interrupted worker that sees it exits without waiting for what it had queued to
    be read (``cancel_join_thread``), since the parent is exiting and needs none of it."""
    parent_stopping.set()
    for p in procs:
        if p.is_alive() and p.pid is not None:
            if sys.platform == "win32":  # Ctrl+C reached every process of the console already
                continue
            os.kill(p.pid, signum)
    deadline = time.monotonic() + STOP_WAIT_S
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
