"""fsearch's study storage on a real PostgreSQL server (the slow suite; tests/pg_server.py starts it).

The server is private to the session: a unix socket in a fresh /tmp folder, no TCP port, trust
authentication. Each test uses its own study name, so tests sharing the server do not interfere.
"""

from __future__ import annotations

import uuid

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from search.errors import StorageError
from search.store.storage import check_storage, mask_url, open_storage
from search.store.study import create_or_resume, load_study
from search.tune.pruners import make_pruner
from search.tune.samplers import make_sampler
from space import SPACE_VERSION

pytestmark = pytest.mark.slow


def _study_name() -> str:
    return f"pg-{uuid.uuid4().hex[:8]}"


def test_server_is_private(postgres_url: str) -> None:
    """The server listens on its unix socket only, and the URL reaches the database it made."""
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW listen_addresses").scalar() == ""
            assert conn.exec_driver_sql("SELECT current_database()").scalar() == "fsearch"
            assert conn.exec_driver_sql("SELECT inet_server_port()").scalar() is None  # a unix socket, not TCP
    finally:
        engine.dispose()


def test_study_storage_round_trip(postgres_url: str) -> None:
    """open_storage, create_or_resume and optimize on the server; a second storage reads 5 COMPLETE trials."""
    parsed = check_storage(postgres_url, create=True)
    assert parsed.get_backend_name() == "postgresql"
    assert parsed.get_driver_name() == "psycopg2"

    name = _study_name()
    storage = open_storage(postgres_url, create=True)
    study = create_or_resume(
        storage, name, sampler=make_sampler("random", seed=0), pruner=make_pruner("none", max_resource=1)
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        trial.report(x, step=0)
        return 1.0 - x * x

    study.optimize(objective, n_trials=5)
    storage.engine.dispose()

    again = open_storage(postgres_url, create=False)
    try:
        loaded = load_study(again, name, postgres_url)
        trials = loaded.get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
        assert sorted(t.number for t in trials) == list(range(5))
        assert all(t.intermediate_values == {0: t.params["x"]} for t in trials)
        assert loaded.best_value == max(t.value for t in trials if t.value is not None)
        assert loaded.user_attrs["space_version"] == SPACE_VERSION
        # Resuming through create_or_resume finds the same study and keeps its trials.
        resumed = create_or_resume(
            again, name, sampler=make_sampler("random", seed=1), pruner=make_pruner("none", max_resource=1)
        )
        assert resumed._study_id == loaded._study_id
        assert len(resumed.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) == 5
    finally:
        again.engine.dispose()


def test_mask_url_hides_a_postgres_password() -> None:
    url = "postgresql+psycopg2://fsearch:s3cr%40t-pw@db.example.org:5432/optuna?sslmode=require"
    masked = mask_url(url)
    assert "s3cr" not in masked
    assert masked == "postgresql+psycopg2://fsearch:***@db.example.org:5432/optuna?sslmode=require"
    assert (
        mask_url("postgresql+psycopg2://fsearch@/optuna?host=/tmp/fspg")
        == "postgresql+psycopg2://fsearch@/optuna?host=/tmp/fspg"
    )


def test_open_storage_error_masks_the_password(postgres_url: str) -> None:
    """A failure on the real server (a database that does not exist) is one StorageError without the password."""
    user = postgres_url.partition("://")[2].partition("@")[0]
    query = postgres_url.partition("?")[2]
    url = f"postgresql+psycopg2://{user}:hunter2-secret@/no_such_db?{query}"
    with pytest.raises(StorageError) as caught:
        open_storage(url, create=False)
    message = str(caught.value)
    assert "hunter2" not in message
    assert f"{user}:***@" in message
    assert "no_such_db" in message
