"""Queued trials on SQLite: workers asking at the same moment never start the same one."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import optuna

from search.store.storage import open_storage

WORKERS = 4
ASKS = 15  # per worker: every ask finds a queued trial, if none is taken twice


def _ask(url: str, barrier: Any, out: Any) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="claims", storage=open_storage(url, create=False))
    barrier.wait()
    out.put([study.ask().number for _ in range(ASKS)])


def test_workers_asking_together_each_start_a_different_queued_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    study = optuna.create_study(study_name="claims", storage=open_storage(url, create=True))
    for i in range(WORKERS * ASKS):
        study.enqueue_trial({"x": i})
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_ask, args=(url, barrier, out)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    started = [n for _ in procs for n in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert sorted(started) == list(range(WORKERS * ASKS))  # each queued trial once, and no new one drawn
