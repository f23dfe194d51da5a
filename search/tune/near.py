"""Draws near a configuration: PriorBand's prior centred on a known good one (the prior's, the incumbent's).

A numeric parameter is perturbed by a Gaussian on the scale it is uniform on, a categorical one takes another choice
now and then; a parameter the configuration lacks (a block it has not) comes from another sampler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

# A draw near a value (the prior's or the incumbent's): a Gaussian of this fraction of the parameter's range
# (in log space for log parameters); a categorical parameter takes another choice with this probability.
# At these, a draw near fsearch-w1 changes 1.25 of its categorical choices on average and 80% fit the
# default --max-mmacs (at 0.15 / 0.2: 2.3 and 66%; docs/defaults.md, benchmarks/prior_draws.py): draws of this
# module alone, before the sampler sets FIXED_IN_DRAWS.
NEAR_STD = 0.1
NEAR_CHANGE = 0.1


def draw_near(
    value: Any, distribution: BaseDistribution, rng: np.random.Generator, *, std: float = NEAR_STD,
    change: float = NEAR_CHANGE,
) -> Any:  # fmt: skip
    """A value of ``distribution`` near ``value``: PriorBand's draw from a prior centred on it (``std``: of the
    parameter's range; ``change``: the chance a categorical takes another choice)."""
    if isinstance(distribution, CategoricalDistribution):
        others = [c for c in distribution.choices if c != value]
        if len(others) < len(distribution.choices) and (not others or rng.random() >= change):
            return value
        return others[int(rng.integers(len(others)))]
    assert isinstance(distribution, IntDistribution | FloatDistribution)
    low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
    # Perturbed on the scale the parameter is uniform on (log for learning rates and widths).
    lo, hi, centre = (math.log(v) if log else float(v) for v in (low, high, min(max(float(value), low), high)))
    x = float(centre + rng.normal(0.0, std * (hi - lo)))
    x = min(max(math.exp(x) if log else x, low), high)
    if step is not None:
        x = min(low + round((x - low) / step) * step, high)
    return round(x) if isinstance(distribution, IntDistribution) else x


class NearSampler(optuna.samplers.BaseSampler):
    """Every parameter near ``base``'s (:func:`draw_near`); one that ``base`` lacks (a block it has not) from
    ``missing``."""

    def __init__(
        self, base: Mapping[str, Any], *, rng: np.random.Generator, missing: optuna.samplers.BaseSampler,
        std: float = NEAR_STD, change: float = NEAR_CHANGE,
    ) -> None:  # fmt: skip
        self.base, self.rng, self.missing, self.std, self.change = base, rng, missing, std, change

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if param_name not in self.base:
            return self.missing.sample_independent(study, trial, param_name, param_distribution)
        return draw_near(self.base[param_name], param_distribution, self.rng, std=self.std, change=self.change)
