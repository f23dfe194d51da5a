"""Where the prior sampler's draws land, for a few spreads: no training, the sampler and the space only.

    python -m benchmarks.prior_draws [--draws 500] [--preset fsearch-w1] [--out studies/prior_draws.json]

A ``prior`` (or ``incumbent``) draw perturbs every parameter of a configuration (``NearSampler`` in
``search/tune/near.py``). For each (NEAR_STD, NEAR_CHANGE) pair this reports the draws' MACs, the
share that fits the default ``--max-mmacs``, and how many categorical choices (optimiser, activation,
normalisation, head, ...) differ from the prior's: how near a "near" draw is. Seeded, so repeatable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from search.defaults import DEFAULT_MAX_MMACS
from search.tune.near import NearSampler
from space import PRESETS, suggest
from space.model import model_size

SPREADS = ((0.15, 0.2), (0.1, 0.1), (0.08, 0.05))


def spread(prior: dict[str, Any], std: float, change: float, draws: int) -> dict[str, Any]:
    near = NearSampler(
        prior, rng=np.random.default_rng(0), missing=optuna.samplers.RandomSampler(seed=0), std=std, change=change
    )
    study = optuna.create_study(sampler=near)
    prior_mmacs = model_size(suggest(optuna.trial.FixedTrial(prior), epochs=1).arch).macs / 1e6
    mmacs, changed = [], []
    for _ in range(draws):
        trial = study.ask()
        mmacs.append(model_size(suggest(trial, epochs=1).arch).macs / 1e6)
        changed.append(sum(
            1 for name, value in trial.params.items()
            if isinstance(trial.distributions[name], optuna.distributions.CategoricalDistribution)
            and name in prior and value != prior[name]
        ))  # fmt: skip
        study.tell(trial, 0.0)
    m, c = np.array(mmacs), np.array(changed)
    return {
        "near_std": std, "near_change": change, "draws": draws, "prior_mmacs": round(prior_mmacs, 2),
        "mmacs_median": round(float(np.median(m)), 1),
        "mmacs_p10_p90": [round(float(x), 1) for x in np.percentile(m, [10, 90])],
        "share_within_max_mmacs": round(float((m <= DEFAULT_MAX_MMACS).mean()), 3),
        "share_within_25pct_of_prior_mmacs": round(float((abs(m / prior_mmacs - 1) <= 0.25).mean()), 3),
        "categoricals_changed_mean": round(float(c.mean()), 2),
        "share_no_categorical_changed": round(float((c == 0).mean()), 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--preset", default="fsearch-w1")
    parser.add_argument("--out", type=Path, default=Path("studies/prior_draws.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results = [spread(dict(PRESETS[args.preset]), std, change, args.draws) for std, change in SPREADS]
    text = json.dumps({"preset": args.preset, "max_mmacs": DEFAULT_MAX_MMACS, "results": results}, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
