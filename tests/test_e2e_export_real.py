"""Search -> export-best -> predict on the real Fashion-MNIST files (the slow suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from search.data import CLASSES, load_test
from tests.support import fsearch

pytestmark = pytest.mark.slow


def test_search_then_export_best_then_predict(
    real_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'real.db'}"
    common = ["--data-dir", str(real_data_dir), "--storage", storage, "--device", "cpu"]
    # --budget 0: no time plan, so no 15-epoch finals (the staged run has tests of its own on tiny data).
    # Random draws under a 10M-MAC cap (the queued fsearch-w1 is skipped by it): the export's epoch on all
    # 60,000 images trains a small network, a fraction of the time of w1's.
    run = ["run", "--trials", "2", "--max-epochs", "1", "--train-subset", "2000", "--val-size", "2000",
           "--sampler", "random", "--max-mmacs", "10", "--budget", "0", *common]  # fmt: skip
    code, _, err = fsearch(run, capsys, monkeypatch)
    assert code == 0, err
    code, out, err = fsearch(["export-best", "--epochs", "1", "--json", *common], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    folder = Path(report["directory"])
    assert folder == Path("studies/fashion-mnist/best")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_images"] == 10_000 and metrics["train_images"] == 60_000
    assert metrics["accuracy"] > 0.5  # one epoch on all 60,000 images: well above chance (0.1)

    # Test-set images written as PNG files go through predict's preprocessing and the saved model.
    test = load_test(real_data_dir, device=torch.device("cpu"))
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"test{i}.png")
        Image.fromarray(test.x[i, 0].numpy(), "L").save(paths[-1])
    code, out, err = fsearch(["predict", "--json", *map(str, paths)], capsys, monkeypatch)
    assert code == 0, err
    predicted = json.loads(out)
    assert [p["image"] for p in predicted] == list(map(str, paths))
    hits = sum(p["class"] == CLASSES[int(test.y[i])] for i, p in enumerate(predicted))
    assert hits >= 8  # 20 images, chance is 2

    code, out, err = fsearch(
        ["evaluate", "--json", "--data-dir", str(real_data_dir), "--device", "cpu"], capsys, monkeypatch
    )
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-3)
