"""Model directories, metrics, the epochs rule and export-best / train --preset on tiny data."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.data import CLASSES, ImageSet, load_test
from search.defaults import DEFAULT_MAX_MMACS
from search.errors import ModelError
from search.metrics import classification_metrics
from search.model import retrain as retrain_module
from search.model.epochs import default_epochs
from search.model.export import WEIGHTS_FILE, load_model, sha256_file
from search.model.predict import evaluate_saved
from search.model.retrain import RetrainOptions, retrain
from search.model.tta import FlipAveraged, validation_says
from search.runtime import Runtime
from search.train import evaluate, prepare_model
from search.tune.runner import run_search
from space import Augment, preset_config
from tests.support import (
    MEAN,
    SMALL,
    STD,
    PicklePayload,
    fsearch,
    never_called,
    save_small_model,
    tiny_options,
    write_tiny_dataset,
)


def test_save_then_load_gives_identical_logits(tmp_path: Path) -> None:
    model, folder = save_small_model(tmp_path / "m")
    loaded = load_model(folder, device=torch.device("cpu"))
    assert loaded.cfg == SMALL and loaded.classes == CLASSES and (loaded.mean, loaded.std) == (MEAN, STD)
    assert not loaded.model.training and loaded.meta["test_accuracy"] == 0.5
    images = ImageSet(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8), torch.arange(64) % 10)
    runtime = Runtime()
    before = evaluate(prepare_model(model, runtime), images, mean=MEAN, std=STD, runtime=runtime)
    after = evaluate(prepare_model(loaded.model, runtime), images, mean=MEAN, std=STD, runtime=runtime)
    assert torch.equal(before.logits, after.logits)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")[1]


def _rewrite_config(directory: Path, change: Any) -> None:
    path = directory / "config.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_a_pickle_checkpoint_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "model.pt").write_bytes(pickle.dumps(PicklePayload(marker)))
    with pytest.raises(ModelError, match=r"holds model\.pt but no model\.safetensors; .*never from pickle files"):
        load_model(folder, device=torch.device("cpu"))
    assert not marker.exists()


def test_a_pickle_named_like_safetensors_is_refused_even_with_a_matching_checksum(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(pickle.dumps(PicklePayload(marker)))
    with pytest.raises(ModelError, match="does not match the SHA-256"):
        load_model(saved, device=torch.device("cpu"))
    _rewrite_config(saved, lambda meta: meta["weights"].update(sha256=sha256_file(weights)))
    with pytest.raises(ModelError, match="is not a valid safetensors file"):
        load_model(saved, device=torch.device("cpu"))
    assert not marker.exists()


def test_truncated_weights_are_refused(saved: Path) -> None:
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="truncated or changed"):
        load_model(saved, device=torch.device("cpu"))
    _rewrite_config(saved, lambda meta: meta["weights"].update(sha256=sha256_file(weights)))
    with pytest.raises(ModelError, match="is not a valid safetensors file"):
        load_model(saved, device=torch.device("cpu"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["config"]["arch"]["blocks"][0].update(filters=7),
            r"does not fit the architecture .*size mismatch for 0\.0\.weight",
        ),
        (lambda m: m["config"]["arch"]["dense"].append(10), "does not fit the architecture .*Missing key"),
        (lambda m: m["config"]["arch"].update(batch_norm=False), "does not fit the architecture .*Missing key.*bias"),
        (lambda m: m["config"]["arch"].update(wings=2), "is incomplete or malformed"),
        (lambda m: m.pop("normalization"), "is incomplete or malformed"),
        (lambda m: m.update(format_version=99), "has model format version 99"),
        (lambda m: m["classes"].pop(), "is inconsistent"),
    ],
)
def test_a_tampered_config_is_refused(saved: Path, change: Any, message: str) -> None:
    _rewrite_config(saved, change)
    with pytest.raises(ModelError, match=message):
        load_model(saved, device=torch.device("cpu"))


def test_missing_pieces_are_named(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found; run 'fsearch export-best' first or pass --model DIR"):
        load_model(tmp_path / "nowhere", device=torch.device("cpu"))
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="is not readable JSON"):
        load_model(saved, device=torch.device("cpu"))
    (saved / "config.json").unlink()
    with pytest.raises(ModelError, match=r"config\.json is missing"):
        load_model(saved, device=torch.device("cpu"))


def test_classification_metrics_by_hand() -> None:
    classes = ("a", "b", "c")
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])  # class c never predicted
    m = classification_metrics(torch.nn.functional.one_hot(pred, 3).float() * 5, labels, classes)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.5)
    a, b, c = m["per_class"]
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((1 / 3, 1 / 2, 0.4), abs=1e-6)
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((2 / 3, 1.0, 0.8), abs=1e-6)
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 2)


def _finished(curve: dict[int, float], **attrs: Any) -> optuna.trial.FrozenTrial:
    return create_trial(
        value=max(curve.values()), intermediate_values=curve, user_attrs={"epochs_run": len(curve), **attrs},
        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("curve", "epochs", "rising"),
    [
        ({1: 0.80, 2: 0.84, 3: 0.86, 4: 0.87, 5: 0.88}, 30, True),  # still rising: 6 x 5
        ({1: 0.80, 2: 0.86, 3: 0.85, 4: 0.85, 5: 0.84}, 5, False),  # peaked at 2: 2 x 2 = 4, clamped to 5
        ({i: 0.8 + 0.01 * min(i, 12) - 0.01 * (i == 15) for i in range(1, 16)}, 24, False),  # peaked at 12: 2 x 12
        ({i: 0.8 + 0.01 * min(i, 12) for i in range(1, 16)}, 45, True),  # level at its best to the end: not peaked
        # Run h2's known-best trial (its reports as epochs): a dip of 12 images in 10,000 is noise, not a peak.
        ({1: 0.8884, 2: 0.9128, 3: 0.9165, 4: 0.9307, 5: 0.9295}, 30, True),
        ({1: 0.8884, 2: 0.9128, 3: 0.9165, 4: 0.9307, 5: 0.9195}, 8, False),  # 1.1 points below: peaked at 4
        ({i: 0.5 + 0.01 * i for i in range(1, 21)}, 45, True),  # 6 x 20 = 120, clamped to 45
        ({1: 0.7}, 6, True),  # a single epoch counts as rising: 6 x 1
    ],
)
def test_the_default_epochs_rule(curve: dict[int, float], epochs: int, rising: bool) -> None:
    got, rule = default_epochs(_finished(curve))
    assert (got, rule["still_rising"], rule["epochs"]) == (epochs, rising, epochs)


def test_the_epochs_rule_reads_a_dip_against_the_trials_own_validation_size() -> None:
    curve = {1: 0.80, 2: 0.86, 3: 0.85, 4: 0.85, 5: 0.84}  # 2 points below the best: a peak on 10,000 images
    assert default_epochs(_finished(curve))[1]["still_rising"] is False
    # ... but within one standard error (3.5 points) of an accuracy measured on 100 images.
    got, rule = default_epochs(_finished(curve, val_images=100))
    assert (got, rule["still_rising"]) == (30, True)


def test_the_epochs_rule_compares_epoch_means_not_one_high_report() -> None:
    # Two reports an epoch at a constant learning rate: one high report (0.9135 after 4 epochs) among its
    # neighbours is not a peak (the --no-known-best answer at cc118e0, docs/defaults.md). Its epochs' means
    # end 0.19 points below their best: still rising, 6 x 5. Judged report by report it was peaked at 4: 8 epochs.
    reports = [0.8637, 0.8844, 0.8844, 0.8857, 0.9035, 0.9052, 0.9014, 0.9135, 0.9019, 0.9093]
    curve = dict(enumerate(reports, start=1))
    got, rule = default_epochs(_finished(curve, reports_per_epoch=2, epochs_run=5.0))
    assert (got, rule["still_rising"]) == (30, True)
    assert rule["epoch_means"]["4"] == pytest.approx((0.9014 + 0.9135) / 2)
    # A whole epoch below the best is still a drop: the last epoch's two reports 1.2 points under epoch 4's.
    dropped = curve | {9: 0.8950, 10: 0.8960}
    got, rule = default_epochs(_finished(dropped, reports_per_epoch=2, epochs_run=5.0))
    assert (got, rule["still_rising"], rule["best_epoch"]) == (8, False, 4)


def test_a_trial_the_deadline_cut_short_is_retrained_for_the_epochs_it_was_to_run() -> None:
    # A screen trial cut short at 2.5 of its 5 epochs, still rising (docs/defaults.md, the export's epochs).
    curve = {1: 0.8817, 2: 0.8957, 3: 0.9055, 4: 0.9123, 5: 0.9185}  # two reports an epoch
    attrs = {"reports_per_epoch": 2, "epochs_run": 2.5, "max_epochs": 5}
    assert default_epochs(_finished(curve, **attrs))[0] == 15  # without the deadline's mark: 6 x the 2.5 it ran
    got, rule = default_epochs(_finished(curve, cut_short="stopped at epoch 2.5: the screen's time was up", **attrs))
    assert (got, rule["cut_short"], rule["scheduled_epochs"], rule["epochs_run"]) == (30, True, 5.0, 2.5)
    peaked = curve | {5: 0.8900}  # a drop is still a peak, cut short or not: 2 x its best epoch (2), clamped to 5
    assert default_epochs(_finished(peaked, cut_short="stopped", **attrs))[0] == 5


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_a_model_shipped_with_flip_tta_predicts_evaluates_and_exports_the_average(tiny_data_dir: Path) -> None:
    cfg = dataclasses.replace(SMALL, train=dataclasses.replace(SMALL.train, augment=Augment(flip=True)))
    opts = RetrainOptions(
        out=Path("flip"), data_dir=tiny_data_dir, device="cpu", verify_data=False, tta=True, formats=("torchscript",)
    )
    report = retrain(cfg, opts, provenance={"source": "test"})
    m = report.metrics
    meta = json.loads(Path("flip/config.json").read_text())
    assert m["test_time_augmentation"] == meta["test_time_augmentation"] == "flip"
    assert meta["plain_test_accuracy"] == m["plain"]["accuracy"] and meta["test_accuracy"] == m["accuracy"]
    assert meta["graphs"] == {"torchscript": "model.torchscript.pt"}
    loaded = load_model(Path("flip"), device=torch.device("cpu"))
    assert isinstance(loaded.model, FlipAveraged)
    test = load_test(tiny_data_dir, device=torch.device("cpu"), verify=False)
    # The shipped model is the mean softmax of the plain network over each image and its mirror image ...
    net = loaded.model.model
    x = (test.x.float() / 255 - loaded.mean) / loaded.std
    with torch.inference_mode():
        mean_probs = (torch.softmax(net(x), 1) + torch.softmax(net(x.flip(-1)), 1)) / 2
        plain_acc = float((net(x).argmax(1) == test.y).double().mean())
    torch.testing.assert_close(loaded.probabilities(test.x), mean_probs, atol=1e-5, rtol=0)
    # ... and the recorded figures are that model's and the plain network's, on the same test images.
    assert m["accuracy"] == pytest.approx(float((mean_probs.argmax(1) == test.y).double().mean()))
    assert m["plain"]["accuracy"] == pytest.approx(plain_acc)
    assert evaluate_saved(loaded, data_dir=tiny_data_dir, verify=False)["accuracy"] == pytest.approx(m["accuracy"])
    graph = torch.jit.load("flip/model.torchscript.pt")  # type: ignore[no-untyped-call]
    torch.testing.assert_close(graph(test.x[:8].float() / 255), loaded.model(x[:8]), atol=1e-4, rtol=0)


def test_a_model_without_tta_loads_plain_and_an_unknown_tta_is_refused(saved: Path) -> None:
    assert not isinstance(load_model(saved, device=torch.device("cpu")).model, FlipAveraged)
    _rewrite_config(saved, lambda meta: meta.update(test_time_augmentation="rotate"))
    with pytest.raises(ModelError, match="test-time augmentation 'rotate', which fsearch does not know"):
        load_model(saved, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny study of two trials (shared by the export-best tests: a search takes seconds)."""
    root = tmp_path_factory.mktemp("searched")
    data_dir = write_tiny_dataset(root / "data")
    storage = f"sqlite:///{root / 'search.db'}"
    run_search(tiny_options(data_dir, storage, max_epochs=2))
    return data_dir, storage


@pytest.mark.real_figures  # the figures as an export draws them, not the placeholder
def test_export_best_writes_every_file_and_records_the_result_on_the_study(
    searched: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, storage = searched
    args = ["export-best", "--study", "tiny", "--storage", storage, "--data-dir", str(data_dir), "--no-verify-data",
            "--device", "cpu", "--epochs", "2", "--json"]  # fmt: skip
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    folder = Path("studies/tiny/best")
    assert Path(report["directory"]) == folder
    expected = {"model.safetensors", "config.json", "metrics.json", "history.csv", "confusion_matrix.png",
                "training_curves.png"}  # fmt: skip
    assert {p.name for p in folder.iterdir()} == expected == set(report["files"])
    study = optuna.load_study(study_name="tiny", storage=storage)
    best = study.best_trial
    meta = json.loads((folder / "config.json").read_text())
    prov = meta["provenance"]
    assert (prov["study"], prov["trial"], prov["params"], prov["epochs"]) == ("tiny", best.number, best.params, 2)
    assert prov["origin"].startswith("sampled")  # the study queued no preset: its answer is a draw, and says so
    assert prov["seed"] == best.user_attrs["seed"] == report["seed"]
    assert set(prov["versions"]) >= {"torch", "torchvision", "optuna"} and prov["device"].startswith("cpu")
    assert prov["epochs_rule"]["epochs_run"] == 2 and meta["train_images"] == 300 and meta["epochs"] == 2
    assert 0 < prov["epochs_rule"]["search_images_per_epoch"] <= 200  # 300 minus the 100 validation images
    assert meta["classes"] == list(CLASSES) and meta["config"]["train"]["epochs"] == 2
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_images"] == 50 and sum(map(sum, metrics["confusion_matrix"])) == 50
    assert [c["class"] for c in metrics["per_class"]] == list(CLASSES) and metrics["train_seconds"] > 0
    assert metrics["accuracy"] == meta["test_accuracy"] == report["test_accuracy"]
    history = (folder / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,train_acc") and len(history) == 3
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = study.user_attrs[f"export:{best.number}"]
    assert recorded["test_accuracy"] == metrics["accuracy"] and recorded["epochs"] == 2
    assert Path(recorded["path"]) == folder.resolve()

    code, out, err = fsearch(["evaluate", "--model", str(folder), "--data-dir", str(data_dir), "--no-verify-data",
                              "--device", "cpu", "--json"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    again = json.loads(out)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"]) and again["recorded_test_accuracy"] == meta[
        "test_accuracy"]  # fmt: skip


def test_export_best_with_an_explicit_trial_and_human_output(
    searched: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, storage = searched
    study = optuna.load_study(study_name="tiny", storage=storage)
    number = next(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    monkeypatch.setenv("COLUMNS", "200")
    args = ["export-best", "--study", "tiny", "--storage", storage, "--trial", str(number), "--data-dir",
            str(data_dir), "--no-verify-data", "--device", "cpu", "--epochs", "1", "--out", "here",
            "--seed", "3"]  # fmt: skip
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    assert f"retraining screen trial {number} (sampled" in out and "test accuracy" in out and "macro F1" in out
    assert "epoch 1/1: train loss" in out and "Saved to here: model.safetensors" in out
    assert json.loads(Path("here/config.json").read_text())["provenance"]["seed"] == 3


def test_train_preset_goes_through_the_same_export(
    tiny_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["train", "--preset", "lenet5", "--epochs", "1", "--data-dir", str(tiny_data_dir), "--no-verify-data",
            "--device", "cpu", "--json"]  # fmt: skip
    code, _, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    folder = Path("studies/presets/lenet5")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["provenance"]["source"] == "preset" and meta["provenance"]["preset"] == "lenet5"
    assert meta["parameters"] == 61_706 and (folder / "metrics.json").is_file()
    assert load_model(folder, device=torch.device("cpu")).cfg == preset_config("lenet5", epochs=1)


def test_an_output_folder_that_cannot_be_made_is_one_line_before_the_training(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where the folder should go: before, the training ran to its end and the save raised a traceback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(retrain_module, "train", never_called)
    out = blocker / "model"
    args = ["train", "--preset", "lenet5", "--epochs", "1", "--out", str(out), "--device", "cpu",
            "--data-dir", str(tiny_data_dir), "--no-verify-data"]  # fmt: skip
    code, stdout, err = fsearch(args, capsys, monkeypatch)
    assert code == 2 and stdout == ""
    assert err.startswith(f"Error: cannot create the output folder {out} (") and err.endswith("; pass another --out\n")


@pytest.fixture(scope="module")
def flip_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, optuna.trial.FrozenTrial]:
    """A tiny study whose one trial is the known-best preset, which trains with flips."""
    root = tmp_path_factory.mktemp("flip")
    data_dir = write_tiny_dataset(root / "data")
    storage = f"sqlite:///{root / 'search.db'}"
    run_search(tiny_options(data_dir, storage, study="w1", trials=1, known_best=True, max_mmacs=DEFAULT_MAX_MMACS))
    trial = optuna.load_study(study_name="w1", storage=storage).trials[0]
    return data_dir, storage, trial


def test_a_trial_that_trains_with_flips_records_its_validation_with_and_without_mirror_images(
    flip_study: tuple[Path, str, optuna.trial.FrozenTrial],
) -> None:
    *_, trial = flip_study
    assert trial.state == TrialState.COMPLETE and trial.params["flip"] is True
    measured = trial.user_attrs["flip_tta"]
    # The plain figure is the trial's own last report: the same weights, so the two compare exactly.
    assert measured["plain"] == trial.intermediate_values[max(trial.intermediate_values)]
    assert measured["epochs"] == 1 and 0 <= measured["flip"] <= 1
    # The images that changed their answer account for the difference exactly (100 validation images).
    assert measured["flip_only"] - measured["plain_only"] == round((measured["flip"] - measured["plain"]) * 100)


def test_flip_tta_ships_unless_validation_puts_it_behind_by_more_than_noise() -> None:
    def reading(flip_only: int, plain_only: int) -> dict[str, float | int]:
        return {"plain": 0.9, "flip": 0.9 + (flip_only - plain_only) / 10_000, "flip_only": flip_only,
                "plain_only": plain_only}  # fmt: skip

    assert validation_says(reading(30, 20)) and validation_says(reading(20, 20))  # ahead; a tie
    assert validation_says(reading(20, 28))  # 8 behind, within 2 x sqrt(48) = 13.9: noise
    assert not validation_says(reading(20, 35))  # 15 behind, beyond 2 x sqrt(55) = 14.8
    assert not validation_says(reading(0, 5)) and validation_says(reading(0, 4))  # 2 x sqrt(5) = 4.5
    # A reading from before the counts were recorded: ahead ships, a tie or less does not (its rule).
    assert validation_says({"plain": 0.90, "flip": 0.9001})
    assert not validation_says({"plain": 0.90, "flip": 0.90}) and not validation_says({"plain": 0.91, "flip": 0.90})
    assert not validation_says(None) and not validation_says({"flip": 0.9}) and not validation_says("0.9")
    assert not validation_says({"plain": 0.9, "flip": 0.9, "flip_only": "x", "plain_only": 1})


@pytest.mark.parametrize(("plain", "flip", "counts", "cli", "shipped"), [
    (0.90, 0.91, {}, [], "flip"),  # ahead on validation: shipped
    (0.90, 0.91, {}, ["--no-tta"], None),  # decided by hand
    (0.90, 0.899, {"flip_only": 20, "plain_only": 30}, [], "flip"),  # behind within noise: shipped
    (0.90, 0.897, {"flip_only": 10, "plain_only": 40}, [], None),  # behind beyond noise: not shipped
])  # fmt: skip
def test_export_best_ships_flip_tta_when_the_trials_validation_says_so(
    flip_study: tuple[Path, str, optuna.trial.FrozenTrial], plain: float, flip: float, counts: dict[str, int],
    cli: list[str], shipped: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data_dir, storage, trial = flip_study
    name = f"tta-{plain}-{flip}-{'-'.join(cli)}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in optuna.load_study(study_name="w1", storage=storage).user_attrs.items():
        study.set_user_attr(key, value)  # the space version
    attrs = trial.user_attrs | {"flip_tta": {"epochs": 1, "plain": plain, "flip": flip} | counts}
    study.add_trial(create_trial(params=trial.params, distributions=trial.distributions, value=plain,
                                 user_attrs=attrs, intermediate_values=trial.intermediate_values))  # fmt: skip
    args = ["export-best", "--study", name, "--storage", storage, "--data-dir", str(data_dir), "--no-verify-data",
            "--device", "cpu", "--epochs", "1", "--out", "m", "--json", *cli]  # fmt: skip
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    meta = json.loads(Path("m/config.json").read_text())
    decision = meta["provenance"]["test_time_augmentation"]
    assert meta["test_time_augmentation"] == json.loads(out)["test_time_augmentation"] == decision["shipped"] == shipped
    assert decision["from"] == ("--tta/--no-tta" if cli else "validation")
    assert decision["validation"] == {"epochs": 1, "plain": plain, "flip": flip} | counts
    assert (meta["plain_test_accuracy"] is None) == (shipped is None)
