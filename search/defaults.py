"""Defaults of ``fsearch run`` (torch-free, so ``--help`` is fast); the README says why these."""

from __future__ import annotations

DEFAULT_TRIALS = 50
DEFAULT_MAX_EPOCHS = 5  # the top rung of the pruner; export-best trains longer
DEFAULT_TRAIN_SUBSET = 25_000  # images of the 50,000-image training split each trial trains on
DEFAULT_MAX_MMACS = 15.0  # architectures above this many million MACs per image are skipped
DEFAULT_VAL_SIZE = 10_000
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "hyperband"
