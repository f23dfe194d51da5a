"""fsearch's benchmarks: run each from the repository root, e.g. ``python -m benchmarks.bench``."""
