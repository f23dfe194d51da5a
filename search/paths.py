"""The ``studies/`` layout: where fsearch keeps studies, artifacts, exported models and reports.

Every default path of every command is spelled here once. Relative paths are relative to the
folder fsearch runs in, like the default storage URL.
"""

from __future__ import annotations

import re
from pathlib import Path

from search.errors import ConfigError

STUDIES = Path("studies")
DEFAULT_STORAGE = f"sqlite:///{STUDIES.as_posix()}/fsearch.db"
DEFAULT_STUDY = "fashion-mnist"
DEFAULT_ARTIFACTS = STUDIES / "artifacts"  # for storages that are not a SQLite file (else beside the file)


def safe_name(name: str) -> str:
    """A study or preset name usable as one folder name (no separators, no '..')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "_"


def make_output_dir(folder: Path, *, option: str = "--out") -> Path:
    """Create ``folder`` (and its parents) for a command's output before any long work: one that cannot be made
    (a file in its path, no permission) is one line naming it and ``option``, not a traceback after the training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot create the output folder {folder} ({reason}); pass another {option}") from None
    return folder


def model_dir(study: str) -> Path:
    """Where ``export-best`` writes the study's model: ``studies/<study>/best``."""
    return STUDIES / safe_name(study) / "best"


def report_dir(study: str) -> Path:
    """Where ``report`` writes the study's plots: ``studies/<study>/report``."""
    return STUDIES / safe_name(study) / "report"


def preset_dir(preset: str) -> Path:
    """Where ``train --preset`` writes its model: ``studies/presets/<preset>``."""
    return STUDIES / "presets" / safe_name(preset)


DEFAULT_MODEL = model_dir(DEFAULT_STUDY)  # what predict and evaluate load without --model
