"""The benchmark readers that turn committed records into evidence: the rank correlation and its pooling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import cost_fit, dead_choices, draw_modes, export_speed
from benchmarks.derived import spearman
from benchmarks.fidelity_rank import gain_summary, pooled, run_of
from benchmarks.finals_replay import replay_of
from benchmarks.side_by_side import ratio_of
from space import PRESETS, preset_config

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "measurements"


def test_spearman_of_two_pairs_says_whether_the_order_held() -> None:
    assert spearman([0.93, 0.92], [0.946, 0.943]) == 1.0
    assert spearman([0.93, 0.92], [0.940, 0.944]) == -1.0
    assert spearman([0.93], [0.94]) is None  # one pair has no order
    assert spearman([0.93, 0.93], [0.94, 0.95]) is None  # a tie in one ranking: no spread


def test_spearman_ranks_ties_by_their_average_and_ignores_the_scale() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [1000, 3, 2, 1]) == -1.0
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.949, abs=1e-3)


def _record(finals: list[tuple[int, float, float]], params: dict[int, dict]) -> dict:
    """A headline record as the harness writes it: finalists (trial, screen, final) and the study's trials."""
    return {
        "commit": "abc1234", "seed": 0,
        "summary": {"finalists": [{"trial": t, "parent": t - 10, "screen_val": s, "final_val": f, "screen_epochs": 5.0,
                                   "final_epochs": 15.0} for t, s, f in finals]},
        "trials_of_the_study": [{"number": t, "params": p} for t, p in params.items()],
    }  # fmt: skip


def test_a_run_whose_finals_flip_the_screen_says_so() -> None:
    run = run_of(_record([(20, 0.93, 0.940), (21, 0.92, 0.944)], {20: {"a": 1}, 21: {"a": 2}}))
    assert run is not None
    assert run["spearman"] == -1.0
    assert run["screen_leader_won"] is False
    assert [p["params"] for p in run["pairs"]] == [{"a": 1}, {"a": 2}]
    assert run["finals_gain"] == pytest.approx(0.004)  # the second finalist beat the screen's best by 0.4 points
    kept = run_of(_record([(20, 0.93, 0.946), (21, 0.92, 0.943)], {}))
    assert kept is not None and kept["finals_gain"] == 0
    assert gain_summary([0.004, 0.0, 0.0]) == {"runs": 3, "mean": 0.00133, "median": 0.0, "max": 0.004, "none": 2}
    assert run_of({"summary": {"finalists": []}}) is None  # no finals, nothing to rank


def test_pooling_counts_a_configuration_once_when_asked() -> None:
    first = run_of(_record([(20, 0.93, 0.95), (21, 0.92, 0.94)], {20: {"a": 1}, 21: {"a": 2}}))
    again = run_of(_record([(30, 0.90, 0.96), (31, 0.91, 0.93)], {30: {"a": 1}, 31: {"a": 3}}))  # a=1 re-run
    runs = [first, again]
    every = pooled(runs, distinct=False)
    assert every["pairs"] == 4
    assert every["spearman"] < 1.0  # a=1's second pair (0.90 -> 0.96) breaks the order
    distinct = pooled(runs, distinct=True)
    assert distinct["pairs"] == 3  # a=1's second pair is left out
    assert distinct["spearman"] == 1.0
    assert json.dumps(distinct)  # plain JSON for the record


def test_the_finals_replay_passes_over_a_leader_too_slow_for_the_time_left_and_keeps_finals_that_fit() -> None:
    def replay(name: str) -> dict:
        found = replay_of(json.loads((RECORDS / name).read_text()))
        assert found is not None and found["replayed"], found
        return found

    # The --no-known-best run at f5006a0 had no finals: its leader, trial 60, trained at a quarter of its MACs'
    # peers' speed. Today's rule passes it over and trains the next two.
    slow = replay("staged-60-nkb-seed0-f5006a0-xeon.json")
    assert slow["finalists"] == [] and slow["now"]["passed_over"] == [60]
    assert slow["now"]["finalists"] == [49, 58] and "2 finalists" in slow["now"]["plan"]
    # The default run of seed 0 at f5006a0: finals that fit are chosen as the run chose them, replanned as it was.
    kept = replay("staged-60-seed0-f5006a0-xeon.json")
    assert kept["as_recorded"] and kept["replan_as_shown"] and kept["now"]["passed_over"] == []
    # Where the screen's end rule of today would have ended those screens, given all their trials: at f5006a0's
    # default seed 0 the screen ended (its trials done) before the rule's end; at 57951be (--no-known-best) the
    # screen ran 37 s past its planned end, and lost its finals: the rule ends it 45 s before that end instead.
    assert kept["screen_end"]["ended"] < kept["screen_end"]["rule"] <= kept["screen_end"]["planned"]
    over = replay("staged-60-nkb-seed0-57951be-xeon.json")["screen_end"]
    assert over["ended"] > over["planned"] > over["rule"] >= over["planned"] - 120
    # A run whose first plan had no finals is not a finals replay.
    assert replay_of(json.loads((RECORDS / "staged-15-seed0-f5006a0-xeon.json").read_text())) is None


def test_side_by_side_reads_the_calibration_the_plan_kept() -> None:
    """A plan that keeps its calibration gives the ratio directly; the first plan's finals minutes are not needed."""
    plan = {
        "workers": 2,
        "train_images": 50_000,
        "reference_mmacs": 19.1,
        "throughput": {"worker": 6.0e-5, "export": 2.5e-5},
        "calibrated": {"worker": 4.0e-5, "export": 2.5e-5},
    }
    record = {
        "commit": None,
        "bench": {"headline": {"stages": {"plan": plan}}},
        "summary": {"plans": ["plan for 60 min: screen 30 min at 5 epochs, 2 finalists x 15 epochs (12 min)"]},
    }
    row = ratio_of(record)
    assert row is not None
    assert (row["ratio"], row["calibrated_from"]) == (1.5, "the plan's calibration")
    one_worker = record | {"bench": {"headline": {"stages": {"plan": plan | {"workers": 1}}}}}
    assert ratio_of(one_worker) is None  # nothing side by side


def test_export_speed_compares_an_export_epoch_with_the_calibration_at_the_winners_macs() -> None:
    """The calibration the plan kept, else the plan's own throughput (which was the calibration until the plan counted
    the export slower); an export of under 2 epochs, or one whose winner is not in the record, is left out."""
    plan = {"throughput": {"worker": 6.0e-5, "export": 3.0e-5}, "calibrated": {"worker": 4.0e-5, "export": 2.5e-5}}
    export = {"trial": 7, "epochs": 20.0, "train_seconds": 20 * 60_000 * 10.0 * 2.5e-5 * 1.4}
    record = {
        "commit": "abc",
        "bench": {"headline": {"stages": {"plan": plan}, "export_best": export}},
        "trials_of_the_study": [{"number": 7, "mmacs": 10.0}],
    }
    row = export_speed.ratio_of(record)
    assert row is not None and row["ratio"] == pytest.approx(1.4) and row["winner_mmacs"] == 10.0
    older = json.loads(json.dumps(record))
    del older["bench"]["headline"]["stages"]["plan"]["calibrated"]
    assert export_speed.ratio_of(older)["ratio"] == round(1.4 * 2.5 / 3.0, 3)  # type: ignore[index]
    short = json.loads(json.dumps(record))
    short["bench"]["headline"]["export_best"]["epochs"] = 1.5
    assert export_speed.ratio_of(short) is None
    assert export_speed.ratio_of(record | {"trials_of_the_study": []}) is None


def test_worker_format_times_the_trials_that_trained_in_the_screen(tmp_path: Path) -> None:
    from benchmarks.worker_format import screen_trials

    params = PRESETS["fsearch-w1"]
    rows = [
        {"number": 0, "stage": "screen", "epochs_run": 5.0, "params": params},
        {"number": 1, "stage": "screen", "epochs_run": None, "params": params},  # skipped by the cap
        {"number": 2, "stage": "screen", "epochs_run": 0.5, "params": params | {"b0_filters": 24}},
        {"number": 3, "stage": "final", "epochs_run": 15.0, "params": params},
    ]
    path = tmp_path / "staged-60-seed0-x.json"
    path.write_text(json.dumps({"trials_of_the_study": rows}))
    found = screen_trials(path)
    assert [name for name, _ in found] == ["staged-60-seed0-x trial 0", "staged-60-seed0-x trial 2"]
    assert [cfg.arch.blocks[0].filters for _, cfg in found] == [32, 24]
    assert all(cfg.train.epochs == 1 for _, cfg in found)


def test_memory_format_times_a_recipe_files_configurations(tmp_path: Path) -> None:
    from benchmarks.memory_format import gather

    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps([{"name": "wide", "preset": "fsearch-w1", "override": {"b1_filters": 96}}]))
    found = gather([], ["cnn3"], recipes, epochs=0)
    assert [name for name, _ in found] == ["cnn3", "wide"]
    assert [cfg.arch.blocks[-1].filters for _, cfg in found] == [128, 96]
    assert all(cfg.train.epochs == 0 for _, cfg in found)  # 0: the timings alone, nothing trained
    recipes.write_text(json.dumps({"name": "not a list"}))
    with pytest.raises(ValueError, match=r"not a benchmarks\.recipe file"):
        gather([], [], recipes, epochs=0)
    with pytest.raises(ValueError, match="unknown preset"):
        gather([], ["nope"], None, epochs=1)


def test_memory_format_checks_each_timings_choice_against_trained_epochs() -> None:
    from benchmarks.memory_format import measure
    from search.speed import random_splits

    cfg = preset_config("lenet5", epochs=1)
    row = measure(random_splits(64, torch.device("cpu")), "lenet5", cfg, timings=2, rounds=(1, 2))
    assert [t["rounds"] for t in row["timed"]] == [1, 2, 1, 2]  # the numbers of rounds in turn
    assert [len(t["epoch_s"]["contiguous"]) for t in row["timed"]] == [1, 2, 1, 2]
    assert set(row["trained_epoch_s"]) == {"channels_last", "contiguous"}
    faster = row["faster_trained"]
    assert row["chose_faster"] == {r: sum(t["chosen"] == faster for t in row["timed"] if t["rounds"] == int(r))
                                   for r in ("1", "2")}  # fmt: skip
    assert "trained_epoch_s" not in measure(None, "lenet5", cfg, timings=1)  # the timings alone


def _screen(trials: list[tuple[str | None, str, float | None, float | None]]) -> dict:
    """A headline record whose screen trials are (drawn_by, state, epochs run, value); a None mode is a preset's."""
    return {
        "commit": "abc1234", "seed": 0,
        "trials_of_the_study": [{"number": n, "stage": "screen", "drawn_by": m, "preset": None if m else "fsearch-w1",
                                 "state": s, "epochs_run": e, "value": v} for n, (m, s, e, v) in enumerate(trials)]
        + [{"number": 99, "stage": "final", "drawn_by": None, "preset": None, "state": "complete", "epochs_run": 15.0,
            "value": 0.99}],
    }  # fmt: skip


def test_draw_modes_counts_who_drew_a_screens_best_trials_at_its_full_epochs() -> None:
    record = _screen([
        (None, "complete", 5.0, 0.92), ("random", "pruned", 2.0, 0.95), ("prior", "complete", 5.0, 0.93),
        ("incumbent", "complete", 5.0, 0.94), ("tpe", "complete", 3.0, 0.97), ("tpe", "pruned", None, None),
        ("tpe", "complete", 5.0, 0.90),
    ])  # fmt: skip
    screen = draw_modes.screen_of(record)
    assert screen is not None
    assert screen["draws"] == {"preset": 1, "random": 1, "prior": 1, "incumbent": 1, "tpe": 3}
    assert screen["trained"]["tpe"] == 2  # the over-budget draw never trained
    # The best three at 5 epochs (a random draw stopped at 2, or a trial cut at 3, is not among them):
    assert screen["top"] == {"incumbent": 1, "prior": 1, "preset": 1} and screen["leader"] == "incumbent"
    assert draw_modes.screen_of(_screen([(None, "complete", 5.0, 0.9)])) is None  # no modes recorded
    kept = draw_modes.distinct([draw_modes.screen_of(record), draw_modes.screen_of(record)])  # type: ignore[list-item]
    assert len(kept) == 1
    modes = draw_modes.by_mode(kept)
    assert modes["tpe"] == {"draws": 3, "trained": 2, "top3": 0, "leaders": 0, "top3_per_trained": 0.0}
    assert modes["incumbent"]["top3_per_trained"] == 1.0


def test_draw_modes_reads_a_committed_record() -> None:
    record = json.loads((RECORDS / "staged-60-seed0-bd982df-xeon.json").read_text())
    screen = draw_modes.screen_of(record)
    assert screen is not None and screen["leader"] == "incumbent" and screen["leader_val"] == 0.9324


def test_cost_fit_finds_the_parameters_share_of_a_trials_time() -> None:
    # Times made of MACs and parameters per batch image: the fit with parameters recovers them exactly, the fit on
    # MACs alone does not, and under it the parameter-heavy trials take longer than predicted.
    sizes = [(mmacs, mparams) for mmacs in (2.0, 8.0, 15.0, 25.0) for mparams in (0.1, 0.5, 4.0, 8.0)]
    samples = [{"mmacs": m, "mparams": p, "batch_size": 128, "ms_per_image": 0.02 * m + 10 * p / 128 + 0.2}
               for m, p in sizes]  # fmt: skip
    both = cost_fit.fit(samples, with_params=True)
    assert both["r2"] == 1.0 and both["median_relative_error"] == 0.0
    assert both["coefficients"] == {"ms_per_mmac": 0.02, "ms_per_mparam_per_batch_image": 10.0, "ms_constant": 0.2}
    macs_only = cost_fit.fit(samples, with_params=False)
    assert macs_only["r2"] < 1.0 and macs_only["heavy_measured_over_predicted"] > 1.0


def test_cost_fit_reads_a_committed_records_screen_trials() -> None:
    name = "staged-60-nkb-seed0-57951be-xeon.json"
    samples = cost_fit.samples_of(json.loads((RECORDS / name).read_text()), name)
    leader = next(s for s in samples if s["trial"] == 48)
    assert leader["mparams"] > cost_fit.HEAVY_MPARAMS and leader["batch_size"] == 128
    assert leader["ms_per_image"] == pytest.approx(1e3 / 694, rel=0.01)
    assert all(s["cpu"].startswith("Intel") for s in samples)


def test_dead_choices_counts_the_draws_no_screen_kept_and_their_seconds() -> None:
    def trial(number: int, preset: str | None, state: str, epochs: float | None, value: float | None,
              batch_norm: bool, head: str = "flatten") -> dict:  # fmt: skip
        return {
            "number": number,
            "stage": "screen",
            "preset": preset,
            "state": state,
            "epochs_run": epochs,
            "value": value,
            "images_per_second": 1000.0,
            "params": {"batch_norm": batch_norm, "head": head},
        }

    record = {"trials_of_the_study": [
        trial(0, "fsearch-w1", "complete", 5.0, 0.93, True),  # a preset: in the top 3, counted in no choice
        trial(1, None, "complete", 5.0, 0.92, True),
        trial(2, None, "pruned", 0.5, 0.70, False),  # no batch norm: never kept, 25 s
        trial(3, None, "pruned", 0.5, 0.60, True, "gap"),  # a global-average head: never kept, 25 s
        trial(4, None, "complete", 5.0, 0.91, False),  # no batch norm but in the top 3: kept once
        trial(5, None, "pruned", None, None, True),  # over the cost cap: never trained, not a draw that trained
    ]}  # fmt: skip
    screen = dead_choices.screen_of(record)
    assert screen is not None and len(screen["draws"]) == 4 and screen["seconds"] == 800.0
    kept = dead_choices.distinct([screen, dead_choices.screen_of(record)])  # type: ignore[list-item]
    choices = dead_choices.by_choice(kept)
    assert choices["batch_norm=False"] == {"trained": 2, "full": 1, "best": 0.91, "top3": 1, "seconds": 0.344}
    assert choices["head=gap"] == {"trained": 1, "full": 0, "best": None, "top3": 0, "seconds": 0.031}
    total = dead_choices.never_kept([{"record": "r"} | s for s in kept])["total"]
    assert total["draws"] == 3 and total["of_trained"] == 4 and total["share_of_seconds"] == round(300 / 800, 3)


def test_the_choices_no_screen_kept_are_the_ones_the_draws_rule_out() -> None:
    """dead_choices counts the draws of what FIXED_IN_DRAWS now fixes to another value: the two lists agree."""
    from search.defaults import FIXED_IN_DRAWS

    assert dead_choices.NEVER_KEPT
    for name, value in dead_choices.NEVER_KEPT:
        assert name in dead_choices.CHOICES and name in FIXED_IN_DRAWS and FIXED_IN_DRAWS[name] != value
