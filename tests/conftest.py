"""Shared fixtures and helpers: tiny IDX files written on the fly, the CLI run in-process, a small saved
model, a pickle payload; the real data and a PostgreSQL server for the slow suite.

Test modules import the plain helpers from here (``from tests.conftest import fsearch``), never from
one another.
"""

from __future__ import annotations

import gc
import gzip
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from search.cli.app import main
from search.data import CLASSES, Splits, load_splits, raw_dir
from search.model.export import save_model
from space import Architecture, ConvBlock, TrainConfig, TrialConfig, build_model
from tests.pg_server import find_bin_dir, postgres_server

REPO = Path(__file__).resolve().parent.parent
# tmp_path on a RAM disk where there is one (unless $TMPDIR says where): SQLite syncs every commit to
# disk, ~4 ms each here, and a tiny search commits a thousand times.
if "TMPDIR" not in os.environ and os.access("/dev/shm", os.W_OK):
    os.environ["TMPDIR"] = "/dev/shm"
    tempfile.tempdir = None  # gettempdir() looks again
# The tiny networks gain nothing from intra-op threads; two threads spin-waiting on each other on a
# busy 2-core machine (another test run, another worker) made training several times slower.
torch.set_num_threads(1)
TINY_TRAIN = 300  # 30 per class
TINY_TEST = 50

MEAN, STD = 0.2860, 0.3530  # the normalisation save_small_model records
# A small network (two blocks, batch norm, a hidden dense layer): fast to train on tiny data.
SMALL = TrialConfig(
    arch=Architecture(blocks=(ConvBlock(8), ConvBlock(12)), dense=(16,), batch_norm=True),
    train=TrainConfig(batch_size=32, epochs=1),
)


def package_modules(*roots: str) -> dict[str, Path]:
    """Each module under the ``roots`` packages (default: search and space) by dotted name, a package by its own."""
    found = {}
    for root in roots or ("search", "space"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def fsearch(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run ``fsearch ARGS`` in-process through the real entry point; return (exit code, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["fsearch", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def save_small_model(directory: Path, cfg: TrialConfig = SMALL) -> tuple[torch.nn.Module, Path]:
    """An untrained ``cfg`` network (seeded, with non-default batch-norm statistics) saved as a model
    directory; returns the network and the directory."""
    torch.manual_seed(0)
    model = build_model(cfg.arch)
    for module in model.modules():  # non-default running statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    save_model(directory, model, cfg=cfg, mean=MEAN, std=STD, classes=CLASSES, extra={"test_accuracy": 0.5})
    return model, directory


class PicklePayload:
    """Unpickling this would create ``marker``: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzip'd IDX file, the format of the official files."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose class is a bright horizontal bar at row ``2 * label + 4``: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 * int(label) + 4
        images[i, row : row + 2, 4:24] = 230
    return images, labels


def write_tiny_dataset(root: Path, *, n_train: int = TINY_TRAIN, n_test: int = TINY_TEST) -> Path:
    folder = raw_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = tiny_images(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def pytest_collection_finish(session: pytest.Session) -> None:
    """Import what the first trial of a search would import lazily, before the heap is first frozen."""
    import matplotlib.backends.backend_agg  # the trials' confusion-matrix artifacts
    import optuna_dashboard  # the trials' architecture notes
    import torch._dynamo  # the first optimizer imports it

    del matplotlib, optuna_dashboard, torch


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


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data dir, written once for the session: never to be changed (copy it: tiny_data_dir)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture
def tiny_data_dir(tiny_files: Path, tmp_path: Path) -> Path:
    """A data dir in torchvision's layout with 300 training and 50 test images (md5s do not match):
    the test's own copy, which it may corrupt or delete files of."""
    return Path(shutil.copytree(tiny_files, tmp_path / "data"))


@pytest.fixture(scope="session")
def tiny_splits(tiny_files: Path) -> Splits:
    """The tiny data loaded once for the session (training indexes into it and never writes it)."""
    return load_splits(tiny_files, device=torch.device("cpu"), val_size=100, verify=False, download=False)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's cache or writes into the repo's studies/ folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # `fsearch run` defaults to --workers auto (2 processes here); tests that want workers ask for them.
    monkeypatch.setenv("FSEARCH_WORKERS", "1")
    torch.manual_seed(0)


@pytest.fixture
def real_data_dir() -> Path:
    """The official files (``$FSEARCH_DATA_DIR`` or ``../shared/data``); the slow suite needs them."""
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
