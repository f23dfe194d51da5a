"""Plain helpers the test modules share: tiny IDX files, the CLI run in-process, a small saved model, a
pickle payload. Test modules import them from here (``from tests.support import fsearch``), never from one
another; the fixtures and hooks are in conftest.py, which imports none of this until a test runs.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from search.cli.app import main
from search.data import CLASSES, raw_dir
from search.model.export import save_model
from search.throughput import Throughput
from search.tune.session import SearchOptions
from space import Architecture, ConvBlock, TrainConfig, TrialConfig, build_model

REPO = Path(__file__).resolve().parent.parent
TINY_TRAIN = 300  # 30 per class
TINY_TEST = 50

MEAN, STD = 0.2860, 0.3530  # the normalisation save_small_model records
# A small network (two blocks, batch norm, a hidden dense layer): fast to train on tiny data.
SMALL = TrialConfig(
    arch=Architecture(blocks=(ConvBlock(8), ConvBlock(12)), dense=(16,), batch_norm=True),
    train=TrainConfig(batch_size=32, epochs=1),
)


# A valid PNG of one white pixel.
PLACEHOLDER_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a4944415478da63f80f00010101001bb6ee560000000049454e44ae426082"
)


def write_placeholder_png(path: Path, *args: Any, **kwargs: Any) -> None:
    """Stands in for search.metrics' figures in the default suite (tests/conftest.py): the file, not the drawing."""
    path.write_bytes(PLACEHOLDER_PNG)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A machine on which everything fits (seconds per image per million MACs): calibrate's answer in the staged tests.
FAST_MACHINE = Throughput(worker=1e-7, export=1e-7)


def tiny_options(data_dir: Path, storage: str, **kw: Any) -> SearchOptions:
    """A search as most tests run one: 2 random draws of 1 epoch on the tiny data in ``data_dir``, on the CPU, one
    worker, no prior, no pruning, no time plan, no confusion-matrix artifacts; ``kw`` overrides any field."""
    base: dict[str, Any] = {
        "storage": storage, "study": "tiny", "trials": 2, "data_dir": data_dir, "device": "cpu", "sampler": "random",
        "pruner": "none", "max_epochs": 1, "val_size": 100, "max_mmacs": 3.0, "verify_data": False, "seed": 0,
        "workers": 1, "known_best": False, "budget_minutes": None, "artifacts": False,
    }  # fmt: skip
    return SearchOptions(**(base | kw))


def staged_options(data_dir: Path, tmp_path: Path, **kw: Any) -> SearchOptions:
    """A staged search (:func:`tiny_options` with a 5-minute budget) of 3 trials: ``kw`` overrides any field."""
    staged = {"study": "staged", "trials": 3, "budget_minutes": 5.0}
    return tiny_options(data_dir, f"sqlite:///{tmp_path / 's.db'}", **(staged | kw))


def queue_trials(storage: str, params: list[dict[str, Any]]) -> None:
    """Queue ``params`` in order in the study "staged" (created if need be)."""
    study = optuna.create_study(storage=storage, study_name="staged", direction="maximize", load_if_exists=True)
    for p in params:
        study.enqueue_trial(p)


def package_modules(*roots: str) -> dict[str, Path]:
    """Each module under the ``roots`` packages (default: search and space) by dotted name, a package by its own."""
    found = {}
    for root in roots or ("search", "space"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def never_called(*args: Any, **kwargs: Any) -> None:
    """Patched over a function a test forbids (e.g. the training, when a check must fail before it)."""
    raise AssertionError("a function the test forbids was called")


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
