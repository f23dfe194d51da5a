"""Defaults of ``fsearch run`` (torch-free, so ``--help`` is fast); docs/defaults.md says why these."""

from __future__ import annotations

from types import MappingProxyType

DEFAULT_TRIALS = 50
DEFAULT_MAX_EPOCHS = 5  # epochs of a trial that is never pruned; export-best trains longer
DEFAULT_EVALS_PER_EPOCH = 2  # validation reports per epoch: the pruner can stop a trial after half an epoch
DEFAULT_TRAIN_SUBSET: int | None = None  # None: every trial trains on the whole 50,000-image training split
DEFAULT_MAX_MMACS = 30.0  # architectures above this many million MACs per image are skipped (fsearch-w1: 19.1)
DEFAULT_VAL_SIZE = 10_000
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "sha"
GRAPH_FORMATS = ("onnx", "torchscript")  # fsearch export-best/train --format
DEFAULT_BUDGET_MINUTES = 60.0  # the whole job, search and export-best: the time plan shares it out
KNOWN_BEST_PRESET = "fsearch-w1"  # --known-best: a new study's first trial, and the sampler's prior
WARM_START_PRESETS = ("cnn3", "cnn2", "lenet5")  # --warm-start: the references, queued first
# Parameters every sampled trial takes as given, whichever sampler draws it (queued trials, presets and finalists keep
# their own): flips pay at the export's length and rank low at the screen's, so a 5-epoch screen would learn to
# drop them (docs/defaults.md, "Why every sampled trial flips"); draws without batch norm or with a global-average
# head never reached a screen's best 3, so they only spent its time ("Choices no screen kept").
FIXED_IN_DRAWS = MappingProxyType({"flip": True, "batch_norm": True, "head": "flatten"})
