"""The new commands' exact one-line errors and exit code 2 (no training: every case fails first)."""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage

from search.model.graph import ONNX_PACKAGES
from space import PRESETS, SPACE_VERSION, suggest
from tests.support import PicklePayload, fsearch, save_small_model


def _study(storage: BaseStorage, name: str, *, version: str | None = SPACE_VERSION) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    if version is not None:
        study.set_user_attr("space_version", version)
    return study


def _told(study: optuna.Study, value: float | None, state: optuna.trial.TrialState, extra: bool = False) -> None:
    study.enqueue_trial(PRESETS["lenet5"])
    trial = study.ask()
    suggest(trial, epochs=1)
    if extra:
        trial.suggest_int("foo", 0, 1)
    study.tell(trial, value, state=state)


COMPLETE, PRUNED, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL


def _foreign(study: optuna.Study) -> None:
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, 0.9)


STUDIES: dict[str, Callable[[BaseStorage], object]] = {
    "empty": lambda db: _study(db, "empty"),
    "losers": lambda db: [_told(s := _study(db, "losers"), None, PRUNED), _told(s, None, FAIL), _told(s, None, PRUNED)],
    "old": lambda db: _told(_study(db, "old", version="0"), 0.9, COMPLETE),
    "alien": lambda db: _told(_study(db, "alien", version=None), 0.9, COMPLETE),
    "done": lambda db: [_told(s := _study(db, "done"), 0.8, COMPLETE), _told(s, None, PRUNED)],
    "foreign": lambda db: _foreign(_study(db, "foreign")),
    "extra": lambda db: _told(_study(db, "extra"), 0.9, COMPLETE, extra=True),
}


@pytest.fixture(scope="module")
def studies_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database with every kind of study (read-only for the tests: each fails before writing)."""
    db = tmp_path_factory.mktemp("studies") / "s.db"
    # Made in memory and copied: one SQLite commit per trial instead of one per parameter.
    memory = InMemoryStorage()
    for make in STUDIES.values():
        make(memory)
    storage = RDBStorage(f"sqlite:///{db}")
    for name in STUDIES:
        optuna.copy_study(from_study_name=name, from_storage=memory, to_storage=storage)
    storage.engine.dispose()
    return db


@pytest.mark.parametrize(
    ("study", "extra", "line"),
    [
        ("empty", [], "study 'empty' has no trials; run 'fsearch run --study empty' first"),
        (
            "losers",
            [],
            "study 'losers' has no completed trial (1 fail, 2 pruned); run 'fsearch run --study losers' to add trials",
        ),
        (
            "old",
            [],
            f"study 'old' was made with search space v0, this fsearch has v{SPACE_VERSION}; "
            "export it with the fsearch version that made it",
        ),
        (
            "alien",
            [],
            f"study 'alien' was made with no fsearch search space version, this fsearch has v{SPACE_VERSION}; "
            "export it with the fsearch version that made it",
        ),
        ("done", ["--trial", "7"], "trial 7 not found in study 'done' (trials 0-1); see 'fsearch show --study done'"),
        (
            "done",
            ["--trial", "1"],
            "trial 1 of study 'done' is pruned, not complete; pick a completed one (see 'fsearch show --study done')",
        ),
        (
            "foreign",
            [],
            "trial 0 of study 'foreign' does not fit this search space (The value of the parameter 'n_blocks' is "
            "not found. Please set it at the construction of the FixedTrial object.); "
            "export it with the fsearch version that made the study",
        ),
        (
            "extra",
            [],
            "trial 0 of study 'extra' does not fit this search space (parameters it does not know: foo); "
            "export it with the fsearch version that made the study",
        ),
        (
            "nowhere",
            [],
            "study 'nowhere' not found in sqlite:///{db} (studies there: {study}); run 'fsearch run "
            "--study nowhere' first",
        ),
    ],
)
def test_export_best_refuses_studies_it_cannot_export(
    study: str, extra: list[str], line: str, studies_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    db = studies_db
    args = ["export-best", "--storage", f"sqlite:///{db}", "--study", study, "--data-dir", str(tmp_path), *extra]
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.splitlines() == ["Error: " + line.format(db=db, study=", ".join(STUDIES))]
    assert not Path("studies").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["export-best", "--storage", "sqlite:///nowhere.db"],
            "no study database at nowhere.db; run 'fsearch run' first or pass --storage",
        ),
        (
            ["export-best", "--format", "svg"],
            "unknown --format 'svg'; use one of onnx, torchscript",
        ),
        (["export-best", "--epochs", "0"], None),
        (
            ["train", "--preset", "resnet"],
            "unknown preset 'resnet'; use one of lenet5, cnn2, cnn3, cnn3-fc128, lenet-aug, fsearch-r6, fsearch-w1",
        ),
        (
            ["train", "--preset", "lenet5", "--tta"],
            "--tta averages each image with its mirror image, but this model does not train with flips; drop --tta",
        ),
        (["train"], None),
        (
            ["evaluate"],
            "model directory studies/fashion-mnist/best not found; run 'fsearch export-best' first or pass --model DIR",
        ),
        (
            ["predict", "x.png"],
            "model directory studies/fashion-mnist/best not found; run 'fsearch export-best' first or pass --model DIR",
        ),
        (["predict"], None),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], line: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    if line is not None:
        assert lines[0] == "Error: " + line


def test_onnx_without_its_packages_names_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether or not the onnx extra is installed here, two of its packages look missing.
    real = importlib.util.find_spec
    missing = ONNX_PACKAGES[1:]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    code, _, err = fsearch(["train", "--preset", "lenet5", "--format", "onnx"], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == (
        f"Error: --format onnx needs the package(s) {', '.join(missing)}; install them with "
        f"'pip install {' '.join(missing)}' (or pip install 'fsearch[onnx]')"
    )


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_unsafe_or_broken_models_are_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.pth").write_bytes(pickle.dumps(PicklePayload(marker)))
    broken = save_small_model(tmp_path / "broken")[1]
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    extra = [str(tmp_path / "x.png")] if command == "predict" else []
    for folder, message in ((evil, "holds model.pth but no model.safetensors"), (broken, "truncated or changed")):
        code, out, err = fsearch([command, "--model", str(folder), *extra], capsys, monkeypatch)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith(f"Error: {folder}") and message in err
    assert not marker.exists()


def test_predict_top_is_bounded_by_the_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = save_small_model(tmp_path / "m")[1]
    code, _, err = fsearch(["predict", "--model", str(folder), "--top", "11", "x.png"], capsys, monkeypatch)
    assert code == 2 and err.strip() == "Error: --top must be within 1..10, got 11"
