"""Several workers on one study: the plan, the shared trial budget, and real processes on tiny data.

The fast tests run `--workers 2` in-process through `run_search`. The slow ones start real
`fsearch run` processes on SQLite and on a throwaway PostgreSQL server: 4 workers x 25 trials,
a SIGKILLed worker whose trial is failed and retried, and SIGINT/SIGTERM of a `--workers 2` run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from search.errors import Interrupted
from search.tune import workers
from search.tune.objective import trial_seed
from search.tune.runner import run_search
from search.tune.session import LocalTickets, SearchOptions
from search.tune.workers import AUTO_WORKERS_PER_GPU, SharedTickets, WorkerSpec, plan_workers
from space import PRESETS
from tests.support import REPO, fsearch, tiny_options

FSEARCH = [sys.executable, "-c", "from search.cli.app import main; main()"]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


# --- the plan -------------------------------------------------------------------------------------


def test_auto_on_a_cpu_runs_two_single_thread_workers_per_two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert plan_workers(None, torch.device("cpu"), trials=50) == [WorkerSpec("cpu", 1)] * 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert plan_workers(None, torch.device("cpu"), trials=50) == [WorkerSpec("cpu", 8)] * 2
    assert plan_workers(4, torch.device("cpu"), trials=50) == [WorkerSpec("cpu", 4)] * 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert plan_workers(None, torch.device("cpu"), trials=50) == [WorkerSpec("cpu", 1)]


def test_no_more_workers_than_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert plan_workers(8, torch.device("cpu"), trials=3) == [WorkerSpec("cpu", 1)] * 3


def test_auto_on_cuda_shares_each_gpu_between_workers_as_the_cores_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert plan_workers(None, torch.device("cuda"), trials=50) == [WorkerSpec("cuda:0", 4)] * AUTO_WORKERS_PER_GPU
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # one worker per core at most
    assert plan_workers(None, torch.device("cuda"), trials=50) == [WorkerSpec("cuda:0", 1)] * 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    auto = plan_workers(None, torch.device("cuda"), trials=50)
    assert [s.device for s in auto] == ["cuda:0", "cuda:1", "cuda:2"] * 2  # 8 cores: two workers per GPU
    # More workers than GPUs share them round robin (small models leave a GPU idle otherwise).
    assert [s.device for s in plan_workers(4, torch.device("cuda"), trials=50)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0",
    ]  # fmt: skip
    # A pinned device keeps every worker on it.
    assert [s.device for s in plan_workers(2, torch.device("cuda:1"), trials=50)] == ["cuda:1", "cuda:1"]
    assert [s.device for s in plan_workers(None, torch.device("mps"), trials=50)] == ["mps"]


def test_tickets_hand_out_exactly_the_budget() -> None:
    local = LocalTickets(3)
    assert [local.take() for _ in range(5)] == [True, True, True, False, False]
    shared = SharedTickets(multiprocessing.get_context("spawn").Value("i", 2))
    assert [shared.take() for _ in range(4)] == [True, True, False, False]


# --- an interrupted worker ----------------------------------------------------------------------------


class _Events:
    """A worker's events queue, as the test sees it: what was sent, and whether sending was given up."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, Any]] = []
        self.cancelled = False

    def put(self, item: tuple[str, int, Any]) -> None:
        self.sent.append(item)

    def cancel_join_thread(self) -> None:
        self.cancelled = True


@pytest.fixture
def _in_process_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let `_worker_main` run in this process: its signal handlers put back, its thread count and
    Optuna's verbosity left as they are."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(optuna.logging, "set_verbosity", lambda v: None)
    monkeypatch.setattr(workers, "PARENT_STOP_WAIT_S", 0.01)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("_in_process_worker")
@pytest.mark.parametrize("parent_stopping", [True, False])
def test_an_interrupted_worker_reports_its_failed_trial_unless_the_parent_is_stopping(
    monkeypatch: pytest.MonkeyPatch, parent_stopping: bool
) -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: 0.5, n_trials=1)  # trial 0 ended before the interrupt: not reported again

    def optimize_here(study: optuna.Study, *args: Any, observer: Any, **kwargs: Any) -> None:
        def objective(trial: optuna.Trial) -> float:
            observer.trial_started(trial.number, {})
            raise Interrupted(signal.SIGTERM)  # as the relay raises it after `kill PID`

        study.optimize(objective, n_trials=1)

    monkeypatch.setattr(workers, "join_study", lambda *args, **kwargs: (study, None))
    monkeypatch.setattr(workers, "optimize_here", optimize_here)
    events, stopping = _Events(), threading.Event()
    if parent_stopping:
        stopping.set()
    opts = _opts(Path("unused"), "sqlite://")
    with pytest.raises(SystemExit) as exited:
        workers._worker_main(opts, None, WorkerSpec("cpu", 1), 1, 0, None, None, events, stopping)  # type: ignore[arg-type]
    assert exited.value.code == 128 + signal.SIGTERM
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    ends = [payload.number for kind, lane, payload in events.sent if kind == "end"]
    if parent_stopping:  # Ctrl+C or `kill` of the run: the parent reads no more, so nothing waits to be sent
        assert events.cancelled and ends == []
    else:  # this worker alone: the run goes on, and its display hears of the failed trial
        assert not events.cancelled and ends == [1]
        assert [lane for kind, lane, _ in events.sent] == [1, 1]


def test_a_worker_stopped_on_its_own_is_named_with_its_signal() -> None:
    assert workers._describe_exit(1, 128 + signal.SIGTERM) == (
        "worker 1 was stopped (SIGTERM) on its own; its running trial was marked failed"
    )
    assert workers._describe_exit(0, 3) == "worker 0 exited with code 3"


# --- two workers in one run_search ------------------------------------------------------------------


def _opts(data_dir: Path, storage: str, **kw: Any) -> SearchOptions:
    """Two workers share 5 draws, small enough (a lower cost cap) to keep the spawned processes quick."""
    return tiny_options(data_dir, storage, **({"trials": 5, "max_mmacs": 1.5, "seed": 3, "workers": 2} | kw))


class _Lanes:
    """Records which worker lanes reported trials."""

    def __init__(self) -> None:
        self.started: dict[int, list[int]] = {}

    def lane(self, index: int) -> Any:
        lanes = self

        class Lane:
            def trial_started(self, number: int, params: dict[str, Any]) -> None:
                lanes.started.setdefault(index, []).append(number)

            def step(self, done: int, total: int) -> None:
                pass

            def epoch_ended(self, number: int, stats: Any) -> None:
                pass

        return Lane()


def test_two_workers_train_exactly_the_trials_asked_for(tiny_data_dir: Path, tmp_path: Path) -> None:
    # Four small known networks queued, three trials asked for: the workers stop with one still
    # queued. (Sampled draws at a MAC cap are mostly skipped, each costing the workers a trial's
    # overhead; skipped draws with several workers are the slow suite's 4 x 25 trials.)
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    queued = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    for _ in range(4):
        queued.enqueue_trial(PRESETS["lenet5"])
    ended: list[FrozenTrial] = []
    lanes = _Lanes()
    report = run_search(_opts(tiny_data_dir, storage, trials=3), lanes=lanes, on_trial_end=lambda s, t: ended.append(t))
    assert report.workers == 2 and report.problems == ()
    states = [t.state for t in report.study.trials]
    assert sorted(states, key=str) == [TrialState.COMPLETE] * 3 + [TrialState.WAITING]
    assert (report.counts["complete"], report.counts["pruned"], report.counts["fail"]) == (3, 0, 0)
    trained = [t for t in report.study.trials if t.state == TrialState.COMPLETE]
    # Every trial's end reached the parent, each trial was shown in a worker's lane, and each trained
    # with the seed of its number, whichever worker ran it. (Which workers trained is left to timing:
    # a worker that starts late may find the tickets used.)
    assert set(lanes.started) <= {0, 1}
    assert sorted(n for numbers in lanes.started.values() for n in numbers) == sorted(t.number for t in trained)
    assert sorted(t.number for t in ended) == sorted(t.number for t in trained)
    assert all(t.user_attrs["seed"] == trial_seed(3, t.number) for t in trained)
    assert report.device == "2 workers on cpu, 1 thread each" or report.device.startswith("2 workers on cpu")


def test_a_bad_worker_count_is_one_line(
    tiny_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = fsearch(["run", "--workers", "two", "--data-dir", str(tiny_data_dir)], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.strip() == "Error: --workers must be a number or auto, got 'two'"


# --- real processes on SQLite and PostgreSQL (slow) -------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # One fresh database per test: the server is shared by the session.
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return str(sqlalchemy.engine.make_url(url).set(database=name).render_as_string(hide_password=False))


def _run_args(data_dir: Path, storage: str, *extra: str, cap: str = "10") -> list[str]:
    """`fsearch run` on tiny data; ``cap`` 0 (no MAC budget) when a test needs a trial on its first
    draw (with a cap, a run may end after 20 over-budget draws in a row without training one). At the
    default cap about a third of the random draws train and the rest are skipped: several workers
    skipping draws together, at a fraction of the cost of a lower cap's."""
    return [
        *FSEARCH, "run", "--data-dir", str(data_dir), "--no-verify-data", "--val-size", "100",
        "--storage", storage, "--study", "many", "--device", "cpu", "--sampler", "random", "--pruner", "none",
        "--max-mmacs", cap, "--no-known-best", "--budget", "0", "--json", *extra,
    ]  # fmt: skip


def _trials(storage: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name="many", storage=storage).get_trials(deepcopy=False)


def _trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if not t.user_attrs.get("over_budget")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["4 commands", "--workers 4"])
def test_four_workers_by_25_trials_finish_exactly_100(tiny_data_dir: Path, storage_url: str, mode: str) -> None:
    common = ("--max-epochs", "1", "--seed", "1")
    # "4 commands": four machines joining one study, started together, each with its own budget.
    budgets = (
        [("--trials", "25", "--workers", "1")] * 4 if mode == "4 commands" else [("--trials", "100", "--workers", "4")]
    )
    procs = [
        subprocess.Popen(
            _run_args(tiny_data_dir, storage_url, *budget, *common),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for budget in budgets
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    trials = _trials(storage_url)
    trained = _trained(trials)
    assert len(trained) == 100
    assert [t.state for t in trained] == [TrialState.COMPLETE] * 100
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.number for t in trials}) == len(trials)  # no trial number handed out twice


def _wait_for_running(storage: str, proc: subprocess.Popen[str], timeout: float = 180) -> FrozenTrial:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial started"
        trials = _trials_or_none(storage)
        running = [t for t in trials if _training(t)]
        if running:
            return running[0]
        time.sleep(0.2)


@pytest.mark.slow
@POSIX
def test_a_killed_workers_trial_is_failed_after_the_grace_period_and_retried(
    tiny_data_dir: Path, storage_url: str
) -> None:
    # A trial that would train for a long time, on a worker that is SIGKILLed mid-trial: no handler
    # runs, so the trial stays RUNNING until the heartbeats show it dead.
    doomed = subprocess.Popen(
        _run_args(tiny_data_dir, storage_url, "--trials", "1", "--workers", "1", "--max-epochs", "2000",
                  "--grace-period", "3", cap="0"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = _wait_for_running(storage_url, doomed)
    time.sleep(1.0)
    doomed.kill()
    doomed.communicate(timeout=60)
    assert [t.state for t in _trained(_trials(storage_url))] == [TrialState.RUNNING]
    time.sleep(4.0)  # past the grace period
    # A new worker fails the stale trial before it starts its own, and runs the retry first.
    helper = subprocess.run(
        _run_args(tiny_data_dir, storage_url, "--trials", "1", "--workers", "1", "--max-epochs", "1",
                  "--grace-period", "3", cap="0"),
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert helper.returncode == 0, helper.stderr
    trials = _trials(storage_url)
    assert [t.state for t in _trained(trials)] == [TrialState.FAIL, TrialState.COMPLETE]
    killed, retried = _trained(trials)
    assert killed.number == victim.number
    assert retried.system_attrs["failed_trial"] == killed.number
    assert retried.params == killed.params
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
@POSIX
def test_repair_fails_the_stale_trials_of_a_study_whose_workers_are_gone(tiny_data_dir: Path, storage_url: str) -> None:
    doomed = subprocess.Popen(
        _run_args(tiny_data_dir, storage_url, "--trials", "1", "--workers", "1", "--max-epochs", "2000", cap="0"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    victim = _wait_for_running(storage_url, doomed)
    doomed.kill()
    doomed.communicate(timeout=60)
    time.sleep(3.0)
    repair = subprocess.run(
        [*FSEARCH, "studies", "--storage", storage_url, "--repair", "--grace-period", "2", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert repair.returncode == 0, repair.stderr
    assert f"many: failed stale trial(s) {victim.number}; queued again" in repair.stderr
    states = [t.state for t in _trained(_trials(storage_url))]
    assert states == [TrialState.FAIL, TrialState.WAITING]  # the retry waits for the next run


@pytest.mark.slow
@POSIX
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_a_two_worker_run_fails_both_trials_and_the_study_resumes(
    tiny_data_dir: Path, storage_url: str, signum: int, code: int
) -> None:
    args = _run_args(tiny_data_dir, storage_url, "--trials", "4", "--workers", "2", "--max-epochs", "2000", cap="0")
    # Its own process group, as a terminal's foreground job: Ctrl+C reaches the parent and the workers.
    # SIGINT at its default, as a terminal gives it: a background job of a non-interactive shell (as
    # CI may run us) inherits it ignored, and the parent would then see only its workers stop.
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        _wait_for_training(storage_url, proc, 2)
        time.sleep(1.0)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C does
        else:
            proc.send_signal(signal.SIGTERM)  # `kill PID`: the parent passes it on
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert "Interrupted: the running trial was marked failed" in err
    assert [t.state for t in _trained(_trials(storage_url))] == [TrialState.FAIL, TrialState.FAIL]
    resumed = subprocess.run(
        _run_args(tiny_data_dir, storage_url, "--trials", "1", "--workers", "1", "--max-epochs", "1", cap="0"),
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [t.state for t in _trained(_trials(storage_url))] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc (Linux)")
def test_workers_signalled_on_their_own_fail_their_trials_and_the_run_names_them(
    tiny_data_dir: Path, storage_url: str
) -> None:
    # `kill PID` of a worker, not of the run: the parent is not interrupted, so it goes on reading its workers'
    # events, shows each failed trial as it shows any trial's end, names the workers at the end and exits 1.
    args = _run_args(tiny_data_dir, storage_url, "--trials", "2", "--workers", "2", "--max-epochs", "2000", cap="0")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_training(storage_url, proc, 2)
        pids = _worker_pids(proc.pid)
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    failed = _trained(_trials(storage_url))
    assert [t.state for t in failed] == [TrialState.FAIL, TrialState.FAIL]
    shown = " ".join(err.split())  # with --json the display writes to stderr
    for t in failed:
        assert f"trial {t.number} fail: interrupted (SIGTERM)" in shown
    for lane in (0, 1):
        assert f"Error: worker {lane} was stopped (SIGTERM) on its own; its running trial was marked failed" in shown


def _wait_for_training(storage: str, proc: subprocess.Popen[str], n: int) -> None:
    deadline = time.monotonic() + 180
    while len([t for t in _trials_or_none(storage) if _training(t)]) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the workers never started {n} trials"
        time.sleep(0.2)


def _worker_pids(parent: int) -> list[int]:
    """The worker processes of ``parent`` (multiprocessing's spawned children, not its resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def _training(t: FrozenTrial) -> bool:
    """Training, not an over-budget draw being sized: it has reported."""
    return t.state == TrialState.RUNNING and "epochs_run" in t.user_attrs


def _trials_or_none(storage: str) -> list[FrozenTrial]:
    try:
        return _trials(storage)
    except KeyError:  # the study is not created yet
        return []
