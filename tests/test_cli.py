"""The CLI: exit codes and the exact one-line errors users see; JSON output for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from search.model import retrain
from space import PRESETS
from tests.support import fsearch, never_called


def _tiny_run(data_dir: Path, db: Path, *extra: str) -> list[str]:
    return [
        "run", "--trials", "2", "--max-epochs", "1", "--data-dir", str(data_dir), "--no-verify-data",
        "--val-size", "100", "--train-subset", "0", "--storage", f"sqlite:///{db}", "--study", "cli",
        "--device", "cpu", "--sampler", "random", "--pruner", "none", "--max-mmacs", "3", "--no-known-best",
        "--budget", "0", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["run", "--sampler", "bohb"],
            "Error: unknown sampler 'bohb'; use one of tpe, random, cmaes, gp",
        ),
        (
            ["run", "--pruner", "asha"],
            "Error: unknown pruner 'asha'; use one of hyperband, median, sha, none",
        ),
        (["run", "--trials", "-3"], "Error: --trials must be at least 1, got -3"),
        (["run", "--trials", "many"], None),
        (["run", "--timeout", "0"], "Error: --timeout must be positive and finite, got 0"),
        # NaN compares false with everything: it ran a search with no deadline, or a traceback (inf).
        (["run", "--timeout", "nan"], "Error: --timeout must be positive and finite, got nan"),
        (["run", "--budget", "inf"], "Error: --budget must be positive and finite, got inf"),
        (["run", "--budget", "nan"], "Error: --budget must be positive and finite, got nan"),
        (["run", "--max-mmacs", "nan"], "Error: --max-mmacs must be positive and finite, got nan"),
        # The samplers seed numpy's legacy generator, which takes 0..2**32 - 1 (a traceback before).
        (["run", "--seed", "-1"], "Error: --seed must be within 0..4294967295, got -1"),
        (["run", "--seed", str(2**32)], "Error: --seed must be within 0..4294967295, got 4294967296"),
        (["train", "--preset", "lenet5", "--seed", "-1"], "Error: --seed must be within 0..4294967295, got -1"),
        (["export-best", "--seed", "-1"], "Error: --seed must be within 0..4294967295, got -1"),
        (["run", "--device", "tpu"], "Error: unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
        (["run", "--storage", "nonsense"], None),  # checked below: names the URL and an example
        (
            ["show", "--storage", "sqlite:///nowhere.db"],
            "Error: no study database at nowhere.db; run 'fsearch run' first or pass --storage",
        ),
        (
            ["studies", "--storage", "sqlite:///nowhere.db"],
            "Error: no study database at nowhere.db; run 'fsearch run' first or pass --storage",
        ),
        (
            ["run", "--data-dir", "does/not/exist"],
            "Error: data dir does/not/exist does not exist; pass a folder holding FashionMNIST/raw/*.gz",
        ),
        (["frobnicate"], None),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], line: str | None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 2
    assert out == ""  # errors go to stderr only
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    if line is not None:
        assert lines[0] == line


def test_corrupt_data_names_the_file(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [a for a in _tiny_run(tiny_data_dir, tmp_path / "s.db") if a != "--no-verify-data"]
    code, _, err = fsearch(args, capsys, monkeypatch)
    assert code == 2
    assert err.startswith(f"Error: {tiny_data_dir}/FashionMNIST/raw/train-images-idx3-ubyte.gz is corrupt (md5 ")


def test_a_new_study_starts_from_the_known_best_configuration(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    # The preset (19.1M MACs) obeys the cost cap like every trial: the cap is raised to fit it.
    args = [a for a in _tiny_run(tiny_data_dir, db, "--trials", "1", "--json") if a != "--no-known-best"]
    args += ["--max-mmacs", "30"]
    for _ in range(2):  # a resumed study does not queue it again
        code, _, err = fsearch(args, capsys, monkeypatch)
        assert code == 0, err
    import optuna

    trials = optuna.load_study(study_name="cli", storage=f"sqlite:///{db}").trials
    trained = [t for t in trials if not t.user_attrs.get("over_budget")]
    assert trained[0].user_attrs["preset"] == "fsearch-w1" and trained[0].params == PRESETS["fsearch-w1"]
    assert [t.user_attrs.get("preset") for t in trained].count("fsearch-w1") == 1


def test_run_then_studies_then_show(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    code, out, err = fsearch([*_tiny_run(tiny_data_dir, db), "--json"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    assert report["study"] == "cli" and report["this_run"]["complete"] == 2
    assert report["best"]["state"] == "complete" and 0 <= report["best"]["value"] <= 1

    code, out, _ = fsearch(["studies", "--storage", f"sqlite:///{db}", "--json"], capsys, monkeypatch)
    assert code == 0
    [row] = json.loads(out)
    assert row["study"] == "cli" and row["complete"] == 2

    code, out, _ = fsearch(["show", "--storage", f"sqlite:///{db}", "--study", "cli", "--json"], capsys, monkeypatch)
    assert code == 0
    shown = json.loads(out)
    assert shown[0]["number"] == report["best"]["number"]
    assert all("parameters" in t["user_attrs"] for t in shown)
    assert all(t["origin"].startswith("sampled") for t in shown)  # --no-known-best: every trial is a draw

    code, _, err = fsearch(["show", "--storage", f"sqlite:///{db}", "--study", "other"], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == (
        f"Error: study 'other' not found in sqlite:///{db} (studies there: cli); run 'fsearch run --study other' first"
    )


def test_an_incumbent_draw_records_the_trial_it_was_drawn_near(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    args = _tiny_run(tiny_data_dir, db, "--trials", "6")
    args[args.index("random")] = "tpe"  # PriorBand without a prior: random and incumbent draws at first
    code, _, err = fsearch(args, capsys, monkeypatch)
    assert code == 0, err
    code, out, _ = fsearch(["show", "--storage", f"sqlite:///{db}", "--study", "cli", "--json"], capsys, monkeypatch)
    assert code == 0
    shown = {t["number"]: t for t in json.loads(out)}
    drawn_near = {n: t["user_attrs"]["near"] for n, t in shown.items() if t["origin"] == "sampled (incumbent)"}
    assert drawn_near, "seed 0 draws some trials near a leader"
    assert all(anchor < n and shown[anchor]["intermediate_values"] for n, anchor in drawn_near.items())
    assert all("near" not in t["user_attrs"] for n, t in shown.items() if n not in drawn_near)


def test_human_output_has_a_summary_table(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = fsearch(_tiny_run(tiny_data_dir, tmp_path / "s.db"), capsys, monkeypatch)
    assert code == 0, err
    assert "cli: this run 2 complete, 0 pruned, 0 failed" in out
    assert "over-budget draws skipped" in " ".join(out.split())  # counted in the summary...
    assert "skipped:" not in out  # ...not logged one line each
    assert out.count(" complete: val acc ") == 2  # a log line per trial that trained
    assert "Best trials of the study" in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all("│ conv " in row and len(row) <= 80 for row in rows)  # one line per trial


def test_the_live_display_counts_skipped_draws_and_names_worker_lanes() -> None:
    import io

    from optuna.trial import TrialState, create_trial
    from rich.console import Console

    from search.cli.display import SearchDisplay

    console = Console(file=io.StringIO(), width=80)
    display = SearchDisplay(console, total_trials=4, max_epochs=5, header="fsearch · study s")
    for _ in range(3):
        display(None, create_trial(state=TrialState.PRUNED, user_attrs={"over_budget": True}))  # type: ignore[arg-type]
    assert console.file.getvalue() == ""  # skipped draws get no log line of their own
    display.lane(1).trial_started(7, PRESETS["fsearch-w1"])
    console.print(display.live.renderable)
    shown = console.file.getvalue().splitlines()
    assert "complete 0 · pruned 0 · failed 0 · skipped 3 over budget" in shown
    assert "worker 1 · trial 7: conv 32x2 64x2 · fc 256 · gelu bn · sgd 0.05 cosine bs128 ·…" in shown


def test_the_live_display_logs_a_move_of_the_screens_end_and_shows_it_in_the_plan_line() -> None:
    import io
    import time

    from rich.console import Console

    from search.cli.display import SearchDisplay, _clock
    from search.plan import make_plan
    from search.throughput import Throughput

    console = Console(file=io.StringIO(), width=200)
    display = SearchDisplay(console, total_trials=50, max_epochs=5, header="fsearch · study s")
    plan = make_plan(
        budget_s=3600, workers=2, train_images=50_000, reference_mmacs=19.1,
        throughput=Throughput(worker=5.7e-5, export=2.8e-5), screen_epochs=5,
    )  # fmt: skip
    display.show_plan(plan)
    end = time.time() + 600
    display.screen_moved(end, "the finals of its leaders need the time")
    assert f"the screen now ends by {_clock(end)}: the finals of its leaders need the time" in console.file.getvalue()
    assert display.plan_line.startswith(f"screen by {_clock(end)} · 2 finalists x 15 epochs")


@pytest.mark.parametrize(
    ("preset", "line"),
    [
        ("fsearch-w1", "conv 32x2 64x2 · fc 256 · gelu bn · sgd 0.05 cosine bs128 · crop 1 flip"),
        ("lenet5", "conv 6 16 k5 · fc 120-84 · relu · adam 0.001 constant bs64 · no augmentation"),
        ("fsearch-r6", "conv 22x2 · fc 315 · gelu bn · sgd 0.066 cosine bs64 · erase 0.19"),
    ],
)
def test_a_configuration_fits_on_one_line(preset: str, line: str) -> None:
    from search.cli.display import describe_params

    assert describe_params(PRESETS[preset]) == line


def test_help_texts_wrap_to_the_terminal_and_list_every_preset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from search.cli.app import app
    from space.presets import PRESET_EPOCHS

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, command in commands.items():  # a line break inside a paragraph would be kept at any width
        assert all("\n" not in paragraph for paragraph in (command.help or "").split("\n\n")), name
    [known_best] = [p for p in commands["run"].params if p.name == "known_best"]
    assert "Queue the hand-written preset fsearch-w1 as a new study's first trial" in (known_best.help or "")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = fsearch(["train", "--help"], capsys, monkeypatch)
    assert code == 0
    assert all(f"{name} {epochs}" in " ".join(out.split()) for name, epochs in PRESET_EPOCHS.items())
    assert set(PRESET_EPOCHS) == set(PRESETS)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = fsearch(["--help"], capsys, monkeypatch)
    assert code == 0
    assert all(cmd in out for cmd in ("run", "studies", "show"))


def test_the_progress_line_says_where_the_time_limit_ends_a_run_behind_its_plan() -> None:
    import io

    from rich.console import Console

    from search.cli.bars import TrainingProgress
    from search.train import EpochStats
    from search.tune.events import StopRequest

    bars = TrainingProgress(Console(file=io.StringIO()), StopRequest())
    bars.epochs = 22

    def stats(left: float | None) -> EpochStats:
        return EpochStats(epoch=6, train_loss=0.6, train_acc=0.9, val_loss=None, val_acc=None, lr=0.01,
                          seconds=120.0, images=60_000, report=6, epochs_done=6, time_left_s=left)  # fmt: skip

    # 840 s left at 120 s an epoch: 7 more, so near epoch 13 of the 22 planned.
    assert bars.ends_near(stats(840.0)) == "; at this pace the time limit ends training near epoch 13"
    assert bars.ends_near(stats(16 * 120.0)) == ""  # on pace for the 22 planned: nothing to say
    assert bars.ends_near(stats(None)) == ""  # no time limit


def test_an_artifacts_folder_that_cannot_be_made_is_one_line_before_any_training(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where the artifacts should go: before, every trial trained and then failed on its upload, and
    # export-best raised a traceback after its training.
    blocker, db = tmp_path / "a-file", tmp_path / "s.db"
    blocker.write_text("")
    code, out, err = fsearch(_tiny_run(tiny_data_dir, db, "--artifacts", str(blocker)), capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith(f"Error: cannot create the output folder {blocker} (") and "pass another --artifacts" in err
    assert optuna.get_all_study_names(f"sqlite:///{db}") == []  # no study, no trial
    code, _, err = fsearch(_tiny_run(tiny_data_dir, db), capsys, monkeypatch)
    assert code == 0, err
    monkeypatch.setattr(retrain, "train", never_called)
    args = ["export-best", "--storage", f"sqlite:///{db}", "--study", "cli", "--epochs", "1", "--device", "cpu",
            "--data-dir", str(tiny_data_dir), "--no-verify-data", "--artifacts", str(blocker / "x")]  # fmt: skip
    code, _, err = fsearch(args, capsys, monkeypatch)
    assert code == 2
    assert err.startswith(f"Error: cannot create the output folder {blocker}/x (") and "pass another --artifacts" in err
