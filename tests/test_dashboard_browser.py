"""``fsearch dashboard`` on a small real study, opened in headless Chromium (the slow suite).

A short search on the real data and an export make the study; ``fsearch dashboard`` serves it as a
subprocess on a free loopback port; Debian's ``chromium`` renders the pages (``--dump-dom`` for the
assertions, ``--screenshot`` for people). Screenshots land in ``test-output/`` (kept by CI, path
printed); ``FSEARCH_UPDATE_DOCS=1`` also refreshes ``docs/dashboard*.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, fsearch

pytestmark = pytest.mark.slow
OUTPUT = REPO / "test-output"
DOCS = REPO / "docs"
STUDY = "fashion-mnist"


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not on PATH; .ci/run installs Debian's chromium package")
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    return found


def _render(chromium: str, url: str, profile: Path, *mode: str, height: int = 1000) -> str:
    """Run headless Chromium on ``url`` (``--dump-dom`` or ``--screenshot=...``); its stdout."""
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--no-first-run", f"--user-data-dir={profile}", f"--window-size=1400,{height}", "--virtual-time-budget=10000",
        *mode, url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def dashboard_url(
    real_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, int]]:
    """A small real study with an export, served by ``fsearch dashboard``: (the study's URL, best trial)."""
    storage = f"sqlite:///{tmp_path / 'studies' / 'fsearch.db'}"
    (tmp_path / "studies").mkdir()
    # Four complete trials of two epochs (no pruner): learning curves and parameter importances have data.
    # Random draws under a 10M-MAC cap (the queued fsearch-w1 and some draws are skipped, and listed as such):
    # the export's epoch on all 60,000 images trains a small network.
    run = ["run", "--trials", "4", "--max-epochs", "2", "--train-subset", "2000", "--val-size", "2000",
           "--pruner", "none", "--sampler", "random", "--max-mmacs", "10", "--data-dir", str(real_data_dir),
           "--storage", storage, "--study", STUDY, "--device", "cpu", "--budget", "0", "--json"]  # fmt: skip
    code, out, err = fsearch(run, capsys, monkeypatch)
    assert code == 0, err
    best = json.loads(out)["best"]["number"]
    export = ["export-best", "--study", STUDY, "--storage", storage, "--epochs", "1", "--data-dir",
              str(real_data_dir), "--device", "cpu", "--out", str(tmp_path / "best"), "--json"]  # fmt: skip
    code, _, err = fsearch(export, capsys, monkeypatch)
    assert code == 0, err
    args = [sys.executable, "-c", "from search.cli.app import main; main()", "dashboard", "--storage", storage,
            "--study", STUDY, "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "optuna-dashboard on <storage>: <url>", once it listens
        found = re.search(r"(http://127\.0\.0\.1:\d+/dashboard/studies/\d+)$", line.strip())
        assert found, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url = found.group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)
        yield url, best
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_dashboard_lists_the_study_its_trials_and_their_artifacts(
    dashboard_url: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = _chromium()
    url, best = dashboard_url
    profile = tmp_path / "chromium-profile"
    study_page = _render(chromium, url, profile, "--dump-dom")
    assert STUDY in study_page and "Intermediate values" in study_page  # the learning curves' plot
    assert f"trial-{best}-test_confusion_matrix.png" in study_page  # the export's artifacts
    trials_url = f"{url}/trials?numbers={best}"
    trials_page = _render(chromium, trials_url, profile, "--dump-dom")
    assert STUDY in trials_page
    assert "Trial 0" in trials_page and "Trial 3" in trials_page  # the trials are listed
    assert "val_confusion_matrix.png" in trials_page  # the selected trial's artifact
    assert f"Trial {best}: architecture" in trials_page  # its note, rendered from markdown
    note_page = _render(chromium, f"{url}/note", profile, "--dump-dom")
    assert f"Exported model: trial {best}" in note_page and "Google AutoML Vision" in note_page

    OUTPUT.mkdir(exist_ok=True)
    # name: (page, window height); the first is the browser window, the others whole pages.
    shots = {"dashboard-trial.png": (trials_url, 1000), "dashboard-trial-full.png": (trials_url, 1800),
             "dashboard-study.png": (url, 3200)}  # fmt: skip
    for name, (page, height) in shots.items():
        shot = OUTPUT / name
        shot.unlink(missing_ok=True)
        _render(chromium, page, profile, f"--screenshot={shot}", height=height)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # not blank
        with capsys.disabled():
            print(f"\ndashboard screenshot: {shot}")
    if os.environ.get("FSEARCH_UPDATE_DOCS") == "1":
        _save_small(OUTPUT / "dashboard-study.png", DOCS / "dashboard.png")
        _save_small(OUTPUT / "dashboard-trial-full.png", DOCS / "dashboard-trial.png")


def _save_small(source: Path, target: Path) -> None:
    """A copy for the README: 256 colours are plenty for a web page and keep the file small."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256).save(target, optimize=True)
