"""benchmarks/headline_record.py: the committed record of a headline run, built from the run's folder."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from benchmarks.headline_record import RecordError, build, plan_lines, screen_moves, summary

RECORDS = Path(__file__).resolve().parent.parent / "docs" / "measurements"
# Records written by the script this module replaced: rebuilding their summary from their raw JSON must agree.
REBUILT = ("staged-60-seed0-c6b998e.json", "staged-15-seed0-c6b998e.json", "staged-60-nkb-seed0-620771b.json")
NEWEST = "staged-60-seed0-29a0da6-epyc-avx2.json"  # a record written since it kept the export's epochs rule

LOG = """\
[13:01:01] plan for 60 min: screen 28 min at 5 epochs, 2 finalists x 15 epochs  
           (12 min), export 30 epochs (19 min)                                  
[13:01:32] trial 1 pruned: random start-up trial: measured to epoch 2 for the   
           sampler, then stopped (28s)                                          
[13:20:05] the screen now ends by 13:27: the finals of its leaders need the time
           the screen now ends by 13:26: the finals of its leaders need the time
[13:30:00] plan for 60 min: screen 25 min at 5 epochs, 2 finalists x 15 epochs (14 min), export 30 epochs (21 min)
           plan for 60 min: screen 25 min at 5 epochs, no finals (0 min),        
           export of the winner, the epochs its time holds (35 min)             
"""  # noqa: W291 (the console pads wrapped lines with spaces)


def _headline(folder: Path) -> dict:
    search = {"seed": 3, "wall_seconds": 100.0, "stage_seconds": {"screen": 60.0, "final": 40.0}, "val_accuracy": 0.91}
    stages = {
        "trials_by_stage": {"screen": {"complete": 1, "pruned": 1}, "final": {"complete": 1}},
        "finalists": [{"trial": 2, "parent": 0, "final_val": 0.91}], "spearman_screen_vs_final": None,
        "plan": {"calibrated": {"worker": 4e-05, "export": 2.5e-05}},
    }  # fmt: skip
    export = {"wall_seconds": 50.0, "epochs": 30, "trial": 2, "origin": "sampled (tpe)", "test_accuracy": 0.9,
              "test_time_augmentation": None, "plain_test_accuracy": None, "tta_decision": None}  # fmt: skip
    return {
        "command": f".venv/bin/python -m benchmarks.bench --headline --seed 3 --headline-dir {folder} "
        f"--out {folder}/bench.json",
        "machine": {"platform": "Linux-6.1-x86_64", "cpu": "Some CPU", "cpu_count": 2, "python": "3.11.7",
                    "torch": "2.14.1+cu130", "optuna": "5.1.0", "torch_threads": 2, "cuda_available": False},
        "commit": "abc1234",
        "headline": {"search": search, "stages": stages, "export_best": export, "total_wall_seconds": 150.0},
    }  # fmt: skip


def _study(path: Path) -> None:
    """Three trials as a run leaves them: a completed screen trial, an over-budget draw, and its finalist."""
    study = optuna.create_study(study_name="bench", storage=f"sqlite:///{path}", direction="maximize")
    lr = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.9, params={"lr": 0.05}, distributions=lr,
        intermediate_values={1: 0.8, 2: 0.9}, user_attrs={"stage": "screen", "drawn_by": "prior", "macs": 19_094_528,
                                                          "epochs_run": 1.0, "reports_per_epoch": 2,
                                                          "parameters": 870_826, "images_per_second": 500.0,
                                                          "train_seconds": 90.0, "wall_seconds": 100.0},
    ))  # fmt: skip
    study.add_trial(create_trial(
        state=TrialState.PRUNED, params={"lr": 0.5}, distributions=lr,
        user_attrs={"over_budget": True, "pruned_reason": "over the cap", "macs": 99e6},
    ))  # fmt: skip
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.91, params={"lr": 0.05}, distributions=lr,
        user_attrs={"stage": "final", "parent": 0, "drawn_by": "prior", "macs": 19_094_528, "epochs_run": 3.0,
                    "flip_tta": {"epochs": 3, "plain": 0.91, "flip": 0.912}},
    ))  # fmt: skip


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    (tmp_path / "bench.json").write_text(json.dumps(_headline(tmp_path)))
    (tmp_path / "log.txt").write_text(LOG)
    _study(tmp_path / "bench.db")
    return tmp_path


def test_plan_lines_join_what_the_console_wrapped() -> None:
    assert plan_lines(LOG) == [
        "plan for 60 min: screen 28 min at 5 epochs, 2 finalists x 15 epochs (12 min), export 30 epochs (19 min)",
        "plan for 60 min: screen 25 min at 5 epochs, 2 finalists x 15 epochs (14 min), export 30 epochs (21 min)",
        # logged in the same second as the plan before it, so without a stamp of its own
        "plan for 60 min: screen 25 min at 5 epochs, no finals (0 min), export of the winner, the epochs its time "
        "holds (35 min)",
    ]


def test_the_screens_moves_are_read_apart_from_the_plans() -> None:
    assert screen_moves(LOG) == [
        "the screen now ends by 13:27: the finals of its leaders need the time",
        "the screen now ends by 13:26: the finals of its leaders need the time",
    ]
    assert len(plan_lines(LOG)) == 3 and all("screen now" not in line for line in plan_lines(LOG))


def test_a_record_keeps_the_raw_json_the_plans_and_every_trial(run_folder: Path) -> None:
    record = build(run_folder, what="a test run", concurrent="nothing")
    assert record["bench"] == json.loads((run_folder / "bench.json").read_text())
    assert record["command"] == "python -m benchmarks.bench --headline --seed 3 --headline-dir D --out D/bench.json"
    assert (record["commit"], record["seed"], record["what"], record["concurrent"]) == (
        "abc1234", 3, "a test run", "nothing"
    )  # fmt: skip
    assert record["machine"].startswith("2-core CPU (Some CPU), no GPU, Linux, Python 3.11.7, torch 2.14.1")
    assert "calibrated export speed 2.5e-05 s/image/MMAC" in record["machine"]
    s = record["summary"]
    assert len(s["plans"]) == 3 and s["plans"][0].endswith("export 30 epochs (19 min)")
    assert s["screen_end_moves"] == screen_moves(LOG)
    assert (s["winner"], s["test_accuracy"], s["export_wall_seconds"]) == (
        {"trial": 2, "origin": "sampled (tpe)", "val_accuracy": 0.91}, 0.9, 50.0
    )  # fmt: skip
    screen, skipped, final = record["trials_of_the_study"]
    assert screen == {
        "number": 0, "state": "complete", "stage": "screen", "drawn_by": "prior", "near": None, "preset": None,
        "parent": None,
        "mmacs": 19.09, "mparams": 0.871, "images_per_second": 500.0, "images_per_wall_second": 450.0,
        "epochs_run": 1.0, "value": 0.9, "curve": [0.8, 0.9], "reason": None, "flip_tta": None, "params": {"lr": 0.05},
    }  # fmt: skip
    assert (skipped["state"], skipped["reason"], skipped["value"], skipped["mmacs"]) == ("pruned", "over the cap",
                                                                                         None, 99.0)  # fmt: skip
    assert skipped["images_per_second"] == skipped["images_per_wall_second"] == 0.0  # never trained
    assert (final["stage"], final["parent"], final["flip_tta"]["flip"]) == ("final", 0, 0.912)


def test_the_exports_epochs_rule_comes_from_the_exported_config_and_is_null_without_one(run_folder: Path) -> None:
    assert build(run_folder, what="", concurrent="")["export_epochs_rule"] is None
    rule = {"plan_export_seconds": 1600.0, "export_epoch_seconds_timed": 80.0, "plan_export_epochs": 24}
    (run_folder / "best").mkdir()
    (run_folder / "best" / "config.json").write_text(json.dumps({"provenance": {"epochs_rule": rule}}))
    assert build(run_folder, what="", concurrent="")["export_epochs_rule"] == rule


def test_the_rows_have_the_committed_records_fields(run_folder: Path) -> None:
    committed = json.loads((RECORDS / NEWEST).read_text())
    record = build(run_folder, what="", concurrent="")
    assert set(record) == set(committed)
    assert set(record["trials_of_the_study"][0]) == set(committed["trials_of_the_study"][0])


@pytest.mark.parametrize("name", REBUILT)
def test_the_summary_of_a_committed_record_is_rebuilt_from_its_raw_json(name: str) -> None:
    committed = json.loads((RECORDS / name).read_text())
    assert summary(committed["bench"]["headline"], committed["summary"]["plans"]) == committed["summary"]


def test_a_commit_given_by_hand_wins_and_one_is_needed(run_folder: Path) -> None:
    assert build(run_folder, what="", concurrent="", commit="fff0000")["commit"] == "fff0000"
    raw = json.loads((run_folder / "bench.json").read_text())
    del raw["commit"]
    (run_folder / "bench.json").write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="--commit"):
        build(run_folder, what="", concurrent="")


def test_a_folder_without_the_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"missing .*bench\.json"):
        build(tmp_path, what="", concurrent="")
