"""The search space: every sampled configuration builds and runs; presets match the references."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from space import (
    PRESETS,
    Architecture,
    ArchitectureError,
    ConvBlock,
    SpaceMismatch,
    build_model,
    count_macs,
    count_parameters,
    from_dict,
    preset_config,
    replay,
    suggest,
    to_dict,
)
from space.model import model_size

N_SAMPLED = 52  # two seeds of 26: the issue asks for 50+


def _sampled_trials(n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: (suggest(t, epochs=3), 0.0)[1], n_trials=n)
    return study.trials


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_configurations_build_and_run_forward(seed: int) -> None:
    for trial in _sampled_trials(N_SAMPLED // 2, seed):
        cfg = suggest(optuna.trial.FixedTrial(trial.params), epochs=3)
        model = build_model(cfg.arch).eval()
        with torch.no_grad():
            out = model(torch.randn(3, 1, 28, 28))
        assert out.shape == (3, 10), trial.params
        assert torch.isfinite(out).all(), trial.params
        # The arithmetic the search uses to skip over-budget draws agrees with the built model.
        size = model_size(cfg.arch)
        assert (size.parameters, size.macs) == (count_parameters(model), count_macs(model, cfg.arch)), trial.params


def test_conditional_parameters_exist_only_when_they_matter() -> None:
    for trial in _sampled_trials(80, seed=3):
        p = trial.params
        assert ("dense_dropout" in p) == (p["dense_layers"] > 0)
        assert all((f"dense{j}_units" in p) == (j < p["dense_layers"]) for j in range(2))
        assert all((f"b{i}_filters" in p) == (i < p["n_blocks"]) for i in range(4))
        assert ("padding" in p) == (p["n_blocks"] <= 2)
        assert ("weight_decay" in p) == (p["optimizer"] != "adam")
        assert ("sgd_lr" in p) == (p["optimizer"] == "sgd")
        assert ("adam_lr" in p) == (p["optimizer"] != "sgd")


def test_fixed_trial_replays_a_sampled_configuration_exactly() -> None:
    trial = _sampled_trials(5, seed=7)[-1]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    for _ in range(5):
        live = study.ask()
        original = suggest(live, epochs=4)
    assert live.params == trial.params
    assert suggest(optuna.trial.FixedTrial(trial.params), epochs=4) == original


def test_replay_gives_a_trials_configuration_and_refuses_another_spaces_parameters() -> None:
    """``replay`` is the one way from parameters to a configuration (export, finals, presets): a sampled trial's
    parameters give its configuration; a value out of range, a missing or an unknown parameter is a SpaceMismatch."""
    trial = _sampled_trials(3, seed=3)[-1]
    assert replay(trial.params, epochs=4) == suggest(optuna.trial.FixedTrial(trial.params), epochs=4)
    w1 = dict(PRESETS["fsearch-w1"])
    with pytest.raises(SpaceMismatch, match="b0_filters"):
        replay(w1 | {"b0_filters": 10_000}, epochs=1)  # FixedTrial alone would only warn
    with pytest.raises(SpaceMismatch, match="n_blocks"):
        replay({k: v for k, v in w1.items() if k != "n_blocks"}, epochs=1)
    with pytest.raises(SpaceMismatch, match="does not know: foo"):
        replay(w1 | {"foo": 1}, epochs=1)
    assert isinstance(SpaceMismatch("x"), ValueError)


def test_config_round_trips_through_a_dict() -> None:
    for trial in _sampled_trials(10, seed=5):
        cfg = suggest(optuna.trial.FixedTrial(trial.params), epochs=2)
        assert from_dict(to_dict(cfg)) == cfg


def test_unknown_config_keys_fail_at_once() -> None:
    data = to_dict(preset_config("lenet5"))
    data["train"]["warmup"] = 3
    with pytest.raises(TypeError):
        from_dict(data)


@pytest.mark.parametrize(
    ("name", "parameters"),
    [("lenet5", 61_706), ("cnn2", 1_625_866), ("cnn3", 390_410), ("cnn3-fc128", 241_546), ("lenet-aug", 62_394)],
)
def test_presets_reproduce_the_reference_parameter_counts(name: str, parameters: int) -> None:
    cfg = preset_config(name)
    model = build_model(cfg.arch)
    assert count_parameters(model) == parameters
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_presets_are_points_of_the_search_space() -> None:
    study = optuna.create_study()
    for params in PRESETS.values():
        study.enqueue_trial(params)
        trial = study.ask()
        suggest(trial, epochs=1)
        assert trial.params == params  # every preset value is inside the space's distributions


def test_lenet5_has_the_documented_macs() -> None:
    cfg = preset_config("lenet5")
    assert math.isclose(count_macs(build_model(cfg.arch), cfg.arch) / 1e6, 0.42, abs_tol=0.01)


def test_an_architecture_that_shrinks_the_image_away_is_rejected() -> None:
    arch = Architecture(blocks=tuple(ConvBlock(8, convs=3, kernel=5, padding="valid") for _ in range(3)))
    with pytest.raises(ArchitectureError):
        build_model(arch)
