"""Shared fixtures and hooks: tiny IDX files written on the fly, the test's own environment, the real data
and a PostgreSQL server for the slow suite. The helpers are in tests/support.py.

Nothing heavy is imported at the top: pytest-xdist's controller loads this file too and runs no test, and the
workers it starts wait for it (importing torch here cost ~3 s of every run's start on a 2-core machine).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.pg_server import find_bin_dir, postgres_server

if TYPE_CHECKING:
    from search.data import Splits

# tmp_path on a RAM disk where there is one (unless $TMPDIR says where): SQLite syncs every commit to
# disk, ~4 ms each here, and a tiny search commits a thousand times.
if "TMPDIR" not in os.environ and os.access("/dev/shm", os.W_OK):
    os.environ["TMPDIR"] = "/dev/shm"
    tempfile.tempdir = None  # gettempdir() looks again


# The modules that take longest (`pytest --durations=0`; module fixtures, searches, spawned processes), run
# first. xdist hands a worker the next module when it is nearly done with its own, so the short ones fill in at
# the end and the two workers end together; its default order (most tests first) left a 5 s module of one test
# to run alone at the end. A module missing from here only runs later: the order never changes a result.
SLOWEST_FIRST = (
    "test_stages", "test_cli", "test_export", "test_workers", "test_dashboard", "test_runner", "test_graphs",
    "test_storage_claims", "test_hardening_storage", "test_prior_sampler", "test_screen_end", "test_train",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each module's tests stay together and in order; the modules in SLOWEST_FIRST go first (the same order
    in every xdist worker, which each collect the suite, as xdist requires)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    """In the process that runs the tests (not xdist's controller, which collects nothing): one intra-op thread,
    and what the first trial of a search would import lazily, imported before the heap is first frozen."""
    import matplotlib.backends.backend_agg  # the trials' confusion-matrix artifacts
    import optuna_dashboard  # the trials' architecture notes
    import torch._dynamo  # the first optimizer imports it

    # The tiny networks gain nothing from intra-op threads; two threads spin-waiting on each other on a
    # busy 2-core machine (another test run, another worker) made training several times slower.
    torch.set_num_threads(1)
    del matplotlib, optuna_dashboard


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before each test, move what is alive (torch, optuna, imports, caches) out of the collector's sight, so
    that collections scan only what the test creates.

    The objective runs ``gc.collect()`` before and after every trial that trains; a full collection over this
    process's heap takes ~0.3 s, most of a tiny trial. ``optimize_here`` freezes the heap for a search as this
    does (and, finding it frozen, leaves it so when the search ends), but many tests call the objective or
    ``study.optimize`` themselves. A collection first means no garbage is frozen; it scans only what the tests
    since the last freeze left.
    """
    gc.collect()
    gc.freeze()


# The figures a trial and an export draw (search.metrics): patched wherever the search package holds them.
FIGURES = ("plot_confusion_matrix", "plot_training_curves")


def figure_sites() -> list[tuple[Any, str, Any]]:
    """(module, name, real function) of every module of the search package that holds one of ``FIGURES``: the
    metrics module and each caller that imported a figure by name, found, not listed, so a new caller is patched
    too (a caller that imports the module's attribute at call time is covered by the metrics module's site)."""
    import importlib

    from search import metrics
    from tests.support import package_modules

    real = {name: getattr(metrics, name) for name in FIGURES}
    modules = [importlib.import_module(name) for name in package_modules("search")]
    return [(module, name, function) for module in modules for name, function in real.items()
            if getattr(module, name, None) is function]  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _placeholder_figures(request: pytest.FixtureRequest) -> Iterator[list[tuple[Any, str, Any]]]:
    """Trials and exports write a one-pixel PNG where they would draw a matplotlib figure: a confusion matrix
    takes ~0.3 s to draw here, and the figures were a tenth of the default suite's time, in tests that only check
    that the file is there. tests/test_metrics.py draws the real figures; so do a test marked ``real_figures``
    (the export's files) and a session that runs the slow suite. Yields (module, name, real function) of each."""
    from tests.support import write_placeholder_png

    sites = figure_sites()
    if any(item.get_closest_marker("slow") for item in request.session.items):
        yield sites
        return
    with pytest.MonkeyPatch.context() as patch:
        for module, name, _ in sites:
            patch.setattr(module, name, write_placeholder_png)
        yield sites


@pytest.fixture(autouse=True)
def _real_figures(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _placeholder_figures: list[tuple[Any, str, Any]]
) -> None:
    """The real figures back for a test marked ``real_figures``."""
    if request.node.get_closest_marker("real_figures"):
        for module, name, function in _placeholder_figures:
            monkeypatch.setattr(module, name, function)


@pytest.fixture
def fast_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged tests' machine: calibrated as one on which everything fits (``FAST_MACHINE``), finals of 3 epochs."""
    from search import plan
    from search.tune import runner
    from tests.support import FAST_MACHINE

    monkeypatch.setattr(runner, "calibrate", lambda *a, **k: FAST_MACHINE)
    monkeypatch.setattr(plan, "FINAL_EPOCHS", 3)  # the finals' fidelity, cut for tiny tests


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data dir, written once for the session: never to be changed (copy it: tiny_data_dir)."""
    from tests.support import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture
def tiny_data_dir(tiny_files: Path, tmp_path: Path) -> Path:
    """A data dir in torchvision's layout with 300 training and 50 test images (md5s do not match):
    the test's own copy, which it may corrupt or delete files of."""
    return Path(shutil.copytree(tiny_files, tmp_path / "data"))


@pytest.fixture(scope="session")
def tiny_splits(tiny_files: Path) -> Splits:
    """The tiny data loaded once for the session (training indexes into it and never writes it)."""
    import torch

    from search.data import load_splits

    return load_splits(tiny_files, device=torch.device("cpu"), val_size=100, verify=False, download=False)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's cache or writes into the repo's studies/ folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # `fsearch run` defaults to --workers auto (2 processes here); tests that want workers ask for them.
    monkeypatch.setenv("FSEARCH_WORKERS", "1")
    import torch

    torch.manual_seed(0)


@pytest.fixture
def real_data_dir() -> Path:
    """The official files (``$FSEARCH_DATA_DIR`` or ``../shared/data``); the slow suite needs them."""
    from search.data import raw_dir
    from tests.support import REPO

    candidates = [Path(os.environ["FSEARCH_DATA_DIR"])] if os.environ.get("FSEARCH_DATA_DIR") else []
    candidates.append(REPO.parent / "shared" / "data")
    for candidate in candidates:
        if (raw_dir(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return candidate
    pytest.fail("the real Fashion-MNIST files are not in $FSEARCH_DATA_DIR or ../shared/data")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the whole session (tests/pg_server.py): its SQLAlchemy URL.

    Skipped where PostgreSQL is not installed, except under CI (``$CI`` set), which must run it.
    """
    if find_bin_dir() is None:
        why = "PostgreSQL's server binaries (initdb, pg_ctl) are not on PATH nor in /usr/lib/postgresql/*/bin"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; .ci/run installs Debian's postgresql package")
        pytest.skip(f"needs a PostgreSQL server install (apt-get install postgresql): {why}")
    with postgres_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _short_export_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """export-best's timing of an epoch on 256 random images, not 2,048: the tiny networks' order and the plan's
    arithmetic are what the tests check, and the tests that time networks against each other set their own."""
    monkeypatch.setattr("search.speed.TIMED_IMAGES", 256)
