"""Study storage: URLs, SQLite checks, opening an Optuna RDB storage, heartbeats and repair.

The default storage is ``sqlite:///studies/fsearch.db``. SQLite gets a long busy timeout, WAL
journaling so a dashboard can read while a search writes, and transactions that take the write lock
when they begin, so that two workers never start the same queued trial. Any Optuna RDB URL is accepted.
A read-only command never creates a database as a side effect of a typo.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from search.errors import ConfigError, StorageError, one_line
from search.paths import DEFAULT_STORAGE

SQLITE_BUSY_TIMEOUT_S = 60
# Every running trial writes a heartbeat this often; one silent for GRACE_PERIOD_S (its worker was
# killed, or its machine died) is failed by the next worker that starts a trial, or by
# `fsearch studies --repair`, and queued again with the same parameters (at most MAX_RETRY times).
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60
MIN_GRACE_PERIOD_S = 2
MAX_RETRY = 2
CREATE_ATTEMPTS = 5  # tries at opening a database whose tables another worker is creating
OPTUNA_TABLES = {"studies", "version_info"}  # tables every Optuna RDB storage has
# Every table Optuna's schema creates (optuna/storages/_rdb/models.py, and alembic's): a file holding only
# some of them is a schema that another worker is creating at this moment, which `run` may join.
OPTUNA_SCHEMA = frozenset({
    "alembic_version", "studies", "study_directions", "study_system_attributes", "study_user_attributes",
    "trial_heartbeats", "trial_intermediate_values", "trial_params", "trial_system_attributes",
    "trial_user_attributes", "trial_values", "trials", "version_info",
})  # fmt: skip


def check_grace_period(seconds: int) -> None:
    """The one check of ``--grace-period``: a heartbeat needs at least a second between beats."""
    if seconds < MIN_GRACE_PERIOD_S:
        raise ConfigError(f"--grace-period must be at least {MIN_GRACE_PERIOD_S} seconds, got {seconds}")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages, logs and files.

    Works on the raw text rather than a parsed URL: an unescaped ``@``, ``/`` or ``#`` in a
    password would make a parser split it in the wrong place and print the rest. Everything
    between the user name and the last ``@`` is masked, so a password is never shown (at worst,
    an ``@`` in the query masks a little more than the password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def _bad_url(url: str, why: str) -> StorageError:
    return StorageError(
        f"bad storage URL {mask_url(url)!r} ({why}); use e.g. sqlite:///studies/fsearch.db or "
        f"postgresql://user:password@host/db"
    )


def parse_storage_url(url: str) -> sqlalchemy.engine.URL:
    """The parsed URL, or one :class:`StorageError` line (the password masked) for text that is not one."""
    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        why = "not a database URL"
    except (ValueError, TypeError):
        # Not the parser's message: with an '@' in a password it would quote part of the password.
        why = "it does not parse: check the port, and percent-encode any @ / : # in the password"
    raise _bad_url(url, why)


def _sqlite_path(url: sqlalchemy.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def check_storage(url: str, *, create: bool) -> sqlalchemy.engine.URL:
    """Check ``url`` without touching any database: its syntax, its driver, and for SQLite the file.

    ``create=False`` (read-only commands) needs an existing Optuna database; ``create=True`` may
    make a new file, but never in a folder that does not exist (a typo), never in memory (the
    study would be lost at exit) and never inside another program's SQLite database.
    """
    parsed = parse_storage_url(url)
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise _bad_url(url, f"unknown database kind {parsed.drivername!r}") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = exc.name or parsed.drivername
        raise StorageError(
            f"no database driver for {parsed.drivername!r} storage URLs: the Python module {module!r} is not "
            f"installed; install it (pip install {module}) or use a sqlite:/// storage"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed)
        if path is None:
            raise StorageError(
                f"storage {mask_url(url)!r} is an in-memory SQLite database: the study would be lost when fsearch "
                f"exits; use a file, e.g. sqlite:///studies/fsearch.db"
            )
        _check_sqlite_file(path, url=url, create=create)
    return parsed


def _check_sqlite_file(path: Path, *, url: str, create: bool) -> None:
    if path.is_dir():
        raise StorageError(
            f"{path} is a folder, not an SQLite database file; pass --storage sqlite:///{path}/fsearch.db"
        )
    if not path.exists():
        if not create:
            raise StorageError(f"no study database at {path}; run 'fsearch run' first or pass --storage")
        if not path.parent.is_dir() and url != DEFAULT_STORAGE:
            raise StorageError(f"folder {path.parent} for the SQLite database does not exist; create it first")
        return
    tables = _sqlite_tables(path)
    # `run` may start in an empty file, or in one whose Optuna tables another worker started at the same
    # moment is still creating (4 workers started together saw 'tables: studies'): Optuna completes the
    # schema, and _rdb_storage retries the collisions. Read-only commands need a whole Optuna schema.
    being_created = create and tables <= OPTUNA_SCHEMA
    if not tables >= OPTUNA_TABLES and not being_created:
        found = f"tables: {', '.join(sorted(tables)[:5])}" if tables else "it is empty"
        raise StorageError(
            f"{path} is not an Optuna study database ({found}); fsearch neither reads nor adds tables to it: "
            f"pass the --storage that 'fsearch run' wrote"
        )


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of an existing SQLite file, opened read-only (nothing is created or changed)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"{path} is not a readable SQLite database ({exc}); pass another --storage") from None
    return {str(row[0]) for row in rows}


def open_storage(url: str, *, create: bool, grace_period: int | None = None) -> RDBStorage:
    """An Optuna RDB storage for ``url``; with ``create=False`` the database must already exist.

    With ``grace_period`` (seconds) the storage runs heartbeats: each trial it runs writes one every
    ``min(HEARTBEAT_INTERVAL_S, grace_period // 3)`` seconds, and a trial of any worker silent for
    longer is failed and retried with its parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``).
    Every failure is one :class:`StorageError` line with the password masked.
    """
    parsed = check_storage(url, create=create)
    path = _sqlite_path(parsed)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        if create and not path.parent.is_dir():  # only the default storage's folder is made for the user
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = _rdb_storage(url, engine_kwargs, grace_period)
        if path is not None:
            # WAL lets readers (the dashboard) work while a search writes; the mode persists in the file.
            with storage.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            # Pooled connections opened before the switch still run in rollback mode: start afresh.
            storage.engine.dispose()
            _serialise_sqlite_transactions(storage.engine)
    except ImportError as exc:  # a driver that imports but lacks a piece (checked above, so rare)
        module = getattr(exc.__cause__, "name", None) or exc.name or parsed.drivername
        raise StorageError(
            f"the database driver for {parsed.drivername!r} failed to load ({module}); reinstall it"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as exc:
        detail = _scrub(str(getattr(exc, "orig", None) or exc), url, parsed)
        raise StorageError(
            f"cannot open storage {mask_url(url)}: {type(exc).__name__}: {detail}; check the URL, the server "
            f"and your access to it"
        ) from None
    return storage


def _serialise_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Every transaction on this engine takes SQLite's write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna starts a queued trial by reading that it is still WAITING and writing RUNNING, under a row lock
    (``SELECT ... FOR UPDATE``) that SQLite does not have; and Python's sqlite3 begins a transaction only at
    its first write, so the read runs outside it. Two workers asking at the same moment both read WAITING
    and both train the trial: the two workers of one default run trained the same finalist while the other
    waited (docs/workers.md). Beginning every transaction with the write lock makes read-then-write one
    step; the transactions are milliseconds long, and readers on other connections (the dashboard) are not
    blocked under WAL. The SQLAlchemy recipe for pysqlite: sqlite3 hands transaction control to SQLAlchemy."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], grace_period: int | None) -> RDBStorage:
    """``RDBStorage(url)``, tried again when another worker was creating the same database's tables
    at the same moment (Optuna creates them without a lock: on an empty PostgreSQL database, 3 of 4
    workers started together failed with 'relation already exists' or a duplicate key; on SQLite,
    'table ... already exists')."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Optuna runs str.format on the URL (for a '{SCHEMA_VERSION}' placeholder): doubled braces
                # keep a password such as 'p{a}ss' intact instead of crashing or being substituted.
                return RDBStorage(
                    url.replace("{", "{{").replace("}", "}}"), engine_kwargs=engine_kwargs,
                    **_heartbeat(grace_period),
                )  # fmt: skip
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as exc:
            # SQLite says "table ... already exists" as an OperationalError; other operational errors
            # (a wrong host, a bad password) are not races and fail at once.
            racing = not isinstance(exc, sqlalchemy.exc.OperationalError) or "already exists" in str(exc)
            if attempt == CREATE_ATTEMPTS - 1 or not racing:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat(grace_period: int | None) -> dict[str, Any]:
    if grace_period is None:
        return {}
    check_grace_period(grace_period)
    return {
        "heartbeat_interval": max(1, min(HEARTBEAT_INTERVAL_S, grace_period // 3)),
        "grace_period": grace_period,
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    }


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the study's RUNNING trials whose heartbeat is older than the storage's grace period
    (their worker is gone) and queue their retries; the numbers of the trials failed."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)


def repair_studies(storage: RDBStorage) -> dict[str, list[int]]:
    """:func:`fail_stale_trials` on every study of ``storage`` (opened with a grace period); the
    trials failed, by study."""
    repaired = {}
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        numbers = fail_stale_trials(study)
        if numbers:
            repaired[summary.study_name] = numbers
    return repaired


def _scrub(text: str, url: str, parsed: sqlalchemy.engine.URL) -> str:
    """A driver's message on one line, short, with neither the URL nor the password in it."""
    text = one_line(text).replace(url, mask_url(url))
    userinfo = url.partition("://")[2].rpartition("@")[0]
    # The password as parsed, and as typed (they differ when an unescaped '@' fooled the parser).
    for secret in (parsed.password, userinfo.partition(":")[2]):
        if secret:
            text = text.replace(str(secret), "***")
    return text if len(text) <= 200 else text[:197] + "..."
