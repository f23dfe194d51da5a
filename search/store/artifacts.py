"""Where a study's artifacts live, and uploading files to it with Optuna's artifact store.

The search (validation confusion matrices), ``export-best`` (the exported model and its plots)
and ``fsearch dashboard`` (which serves them) all find the store here: for a SQLite storage it
is the folder ``artifacts/`` beside the database file (``sqlite:///studies/fsearch.db`` ->
``studies/artifacts/``), so a study and its files move together; for any other storage it is
``--artifacts DIR`` (default ``studies/artifacts``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from search.errors import ConfigError
from search.paths import DEFAULT_ARTIFACTS, make_output_dir


def artifact_dir(storage_url: str, override: Path | None = None) -> Path:
    """The artifact folder of a storage: ``override``, else beside a SQLite file, else studies/artifacts."""
    if override is not None:
        return override
    try:
        url = sqlalchemy.engine.make_url(storage_url)
    except sqlalchemy.exc.ArgumentError:
        return DEFAULT_ARTIFACTS  # open_storage reports the bad URL itself
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent / "artifacts"
    return DEFAULT_ARTIFACTS


def open_store(folder: Path, *, create: bool) -> FileSystemArtifactStore:
    """The file-system artifact store in ``folder`` (made on demand when ``create``)."""
    if create:
        make_output_dir(folder, option="--artifacts")
    elif not folder.is_dir():
        raise ConfigError(f"artifact folder {folder} does not exist; pass --artifacts DIR or run a search first")
    return FileSystemArtifactStore(str(folder))


def upload(
    store: FileSystemArtifactStore, path: Path, target: optuna.Trial | optuna.Study, *, name: str | None = None
) -> str:
    """Upload ``path`` to a running trial or to a study, shown in the dashboard as ``name`` (default: its name).

    Finished trials cannot take artifacts (Optuna refuses to change them), so files made after a
    trial ended (an export) go to the study.
    """
    if name is None or name == path.name:
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=target)
    with tempfile.TemporaryDirectory() as tmp:
        renamed = Path(tmp) / name
        shutil.copyfile(path, renamed)
        return upload_artifact(artifact_store=store, file_path=str(renamed), study_or_trial=target)
