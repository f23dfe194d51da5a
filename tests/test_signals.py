"""Ctrl+C and `kill` on a real `fsearch run` process: the trial is failed, the exit code is 128 + signal."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT state FROM trials ORDER BY number")]
        except sqlite3.OperationalError:  # tables not created yet
            return []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_fails_the_running_trial_and_exits_128_plus_signal(
    tiny_data_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    db = tmp_path / "sig.db"
    args = [
        sys.executable, "-c", "from search.cli.app import main; main()", "run", "--trials", "1", "--max-epochs", "500",
        "--data-dir", str(tiny_data_dir), "--no-verify-data", "--val-size", "100", "--storage", f"sqlite:///{db}",
        "--device", "cpu", "--max-mmacs", "0", "--json",
    ]  # fmt: skip
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
