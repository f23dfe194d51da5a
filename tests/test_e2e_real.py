"""End to end on the real Fashion-MNIST files (the slow suite; CI runs it as its own step)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.data import load_splits
from search.runtime import Runtime
from search.train import train
from space import build_model, preset_config
from tests.support import fsearch

pytestmark = pytest.mark.slow


def test_a_short_search_on_the_real_data(
    real_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # --no-known-best: every trial is the search's own draw (a queued preset would be the best and
    # hide whether the sampled configurations learn).
    db = tmp_path / "real.db"
    args = [
        "run", "--trials", "3", "--max-epochs", "1", "--train-subset", "6000", "--val-size", "2000",
        "--data-dir", str(real_data_dir),
        "--storage", f"sqlite:///{db}", "--device", "cpu", "--no-known-best", "--budget", "0", "--json",
    ]  # fmt: skip
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    c = report["this_run"]
    assert c["complete"] + c["pruned"] + c["fail"] == 3 and c["fail"] == 0

    trials = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{db}").trials
    own = [t for t in trials if not t.user_attrs.get("over_budget")]
    assert len(own) == 3 and not [t for t in own if "preset" in t.user_attrs]
    assert len({json.dumps(t.params, sort_keys=True) for t in own}) == 3  # three different draws
    for t in own:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values, t
        assert t.user_attrs["device"].startswith("cpu") and t.user_attrs["epochs_run"] > 0
        assert all(0 <= v <= 1 for v in t.intermediate_values.values())
    # One epoch of 6,000 images (24-94 steps): the best sampled configuration is above chance (0.1), no more. On
    # 2,000 images (8-31 steps) three random draws could all still be at chance, as the draws of 6c84af2 were.
    assert max(max(t.intermediate_values.values()) for t in own) > 0.2
    assert report["best"]["value"] > 0.2 and "preset" not in report["best"]["user_attrs"]


def test_lenet5_learns_fashion_mnist(real_data_dir: Path) -> None:
    splits = load_splits(real_data_dir, device=torch.device("cpu"), train_subset=10_000)
    cfg = preset_config("lenet5", epochs=2)
    torch.manual_seed(0)
    result = train(build_model(cfg.arch), cfg.train, splits, runtime=Runtime(), seed=0)
    assert result.best is not None and result.best.val_acc is not None
    assert result.best.val_acc > 0.75
