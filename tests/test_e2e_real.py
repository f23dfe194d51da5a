"""End to end on the real Fashion-MNIST files (the slow suite; CI runs it as its own step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from search.data import load_splits
from search.train import Runtime, train
from space import build_model, preset_config
from tests.conftest import fsearch

pytestmark = pytest.mark.slow


def test_a_short_search_on_the_real_data(
    real_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "real.db"
    args = [
        "run", "--trials", "3", "--max-epochs", "1", "--train-subset", "2000", "--data-dir", str(real_data_dir),
        "--storage", f"sqlite:///{db}", "--device", "cpu", "--json",
    ]  # fmt: skip
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    c = report["this_run"]
    assert c["complete"] + c["pruned"] + c["fail"] == 3 and c["fail"] == 0
    assert report["best"]["value"] > 0.2  # a few steps on 2,000 images: above chance (0.1), no more
    assert report["best"]["user_attrs"]["device"].startswith("cpu")


def test_lenet5_learns_fashion_mnist(real_data_dir: Path) -> None:
    splits = load_splits(real_data_dir, device=torch.device("cpu"), train_subset=10_000)
    cfg = preset_config("lenet5", epochs=2)
    torch.manual_seed(0)
    result = train(build_model(cfg.arch), cfg.train, splits, runtime=Runtime(), seed=0)
    assert result.best is not None and result.best.val_acc is not None
    assert result.best.val_acc > 0.75
