"""Ctrl+C and `kill` during `fsearch run`: the running trial is failed, the exit code is 128 + signal.

The default suite sends the signal to this very process from inside a trial, with the CLI run
in-process; the slow suite starts a real `fsearch run` process and signals it from outside.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from search.model import retrain
from search.paths import DEFAULT_STUDY
from search.tune import objective
from space import PRESETS
from tests.support import REPO, fsearch

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT state FROM trials ORDER BY number")]
        except sqlite3.OperationalError:  # tables not created yet
            return []


def _run_args(data_dir: Path, db: Path, max_epochs: int) -> list[str]:
    return [
        "run", "--trials", "1", "--max-epochs", str(max_epochs), "--data-dir", str(data_dir), "--no-verify-data",
        "--val-size", "100", "--storage", f"sqlite:///{db}", "--device", "cpu", "--max-mmacs", "0",
        "--no-known-best", "--budget", "0", "--json",
    ]  # fmt: skip


@pytest.fixture
def _signal_handlers() -> Iterator[None]:
    """Ctrl+C at Python's default (as a terminal gives it: a background job may inherit it ignored);
    both handlers put back afterwards (the CLI sets its own for SIGTERM)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


RunSending = Callable[[Callable[[], None]], tuple[int, str, str, Path]]


def _send_after_each_report(monkeypatch: pytest.MonkeyPatch, module: Any, send: Callable[[], None]) -> None:
    """``module.train`` (the search's objective or the retraining) calls ``send()`` after each report: the signal's
    handler then runs in the middle of the training."""
    real_train = module.train

    def train_and_send(*args: Any, on_epoch_end: Any, **kwargs: Any) -> Any:
        def report_then_send(stats: Any) -> None:
            on_epoch_end(stats)
            send()

        return real_train(*args, on_epoch_end=report_then_send, **kwargs)

    monkeypatch.setattr(module, "train", train_and_send)


@pytest.fixture
def run_sending(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> RunSending:
    """`fsearch run` in this process with ``send()`` called after each of its trial's reports: (exit code, stdout,
    stderr, the study's database). The trial: a small known network (the draw is not what is tested here)."""
    db = tmp_path / "sig.db"

    def run(send: Callable[[], None]) -> tuple[int, str, str, Path]:
        _send_after_each_report(monkeypatch, objective, send)
        optuna.create_study(storage=f"sqlite:///{db}", study_name=DEFAULT_STUDY).enqueue_trial(PRESETS["lenet5"])
        return (*fsearch(_run_args(tiny_data_dir, db, max_epochs=3), capsys, monkeypatch), db)

    return run


@pytest.mark.usefixtures("_signal_handlers")
@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_a_signal_during_a_trial_fails_it_and_exits_128_plus_signal(
    run_sending: RunSending, signum: int, code: int
) -> None:
    sent: list[int] = []

    def send() -> None:
        sent.append(signum)
        signal.raise_signal(signum)

    exit_code, out, err, db = run_sending(send)
    assert sent == [signum]
    assert exit_code == code, err
    assert out == "" and "Traceback" not in err
    assert " ".join(err.split()) == (
        "Interrupted: the running trial was marked failed and the study is saved; run the same command again to resume."
    )
    assert _states(db) == ["FAIL"]
    # `fsearch show` and the dashboard say why it failed.
    (failed,) = optuna.load_study(storage=f"sqlite:///{db}", study_name=DEFAULT_STUDY).trials
    assert failed.user_attrs["fail_reason"] == f"interrupted ({signal.Signals(signum).name})"


class _SignalsWhenCollected:
    """Sends ``signum`` from its finaliser, where Python prints an exception and swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)


@pytest.mark.usefixtures("_signal_handlers")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed raise
@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_a_signal_whose_raise_is_swallowed_still_stops_the_trial_at_its_next_batch(
    run_sending: RunSending, signum: int, code: int
) -> None:
    # CI once saw Ctrl+C land in an import lock's weakref callback: the run trained on and exited 0.
    reports: list[int] = []

    def send_in_a_finaliser() -> None:
        reports.append(signum)
        if len(reports) == 1:
            _SignalsWhenCollected(signum)  # collected at once: the handler's raise is swallowed
            reports.append(0)  # (so this line runs)

    exit_code, _, err, db = run_sending(send_in_a_finaliser)
    assert reports == [signum, 0]  # the raise was swallowed, and the next batch stopped the trial
    assert exit_code == code, err
    assert _states(db) == ["FAIL"]


@pytest.mark.usefixtures("_signal_handlers")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed raise
@pytest.mark.parametrize(("signum", "code"), SIGNALS)
@pytest.mark.parametrize("swallowed", [False, True])
def test_a_signal_during_a_retraining_stops_it_unsaved_and_exits_128_plus_signal(
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    signum: int,
    code: int,
    swallowed: bool,
) -> None:
    # `fsearch train` and `export-best` share the retraining's CLI path; its step bar is the safe point.
    sent: list[int] = []

    def send() -> None:
        sent.append(signum)
        if swallowed:
            _SignalsWhenCollected(signum)
        else:
            signal.raise_signal(signum)

    _send_after_each_report(monkeypatch, retrain, send)
    out_dir = tmp_path / "model"
    args = ["train", "--preset", "lenet5", "--epochs", "3", "--data-dir", str(tiny_data_dir), "--no-verify-data",
            "--device", "cpu", "--out", str(out_dir)]  # fmt: skip
    exit_code, _, err = fsearch(args, capsys, monkeypatch)
    assert sent == [signum]  # stopped before its second epoch ended
    assert exit_code == code, err
    assert "Interrupted: the retraining stopped; the model was not saved." in " ".join(err.split())
    assert not (out_dir / "model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_a_signal_to_a_run_process_fails_the_running_trial_and_exits_128_plus_signal(
    tiny_data_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    db = tmp_path / "sig.db"
    args = [sys.executable, "-c", "from search.cli.app import main; main()", *_run_args(tiny_data_dir, db, 500)]
    # A terminal delivers Ctrl+C to a process that has SIGINT at its default; a background job of a
    # non-interactive shell (as CI may run us) inherits it ignored, and Python then keeps it ignored.
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _states(db) != ["RUNNING"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the trial never started"
            time.sleep(0.2)
        time.sleep(1.0)  # let it train a little
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Interrupted: the running trial was marked failed" in err
    assert "Traceback" not in err
    assert _states(db) == ["FAIL"]
