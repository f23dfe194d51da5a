"""Storage URLs: bad schemes, missing folders, mistyped names, odd passwords: one line, exit 2, no side effects."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import optuna
import pytest

from search.errors import StorageError
from search.store.storage import OPTUNA_SCHEMA, mask_url, open_storage
from tests.support import fsearch

EXAMPLE = "use e.g. sqlite:///studies/fsearch.db or postgresql://user:password@host/db"


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its content (SQLite's WAL side files aside: readers make them)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}  # fmt: skip


def _one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    return lines[0]


BAD_URLS = [
    ("nonsense", "Error: bad storage URL 'nonsense' (not a database URL); " + EXAMPLE),
    ("sqlite:/one-slash.db", "Error: bad storage URL 'sqlite:/one-slash.db' (not a database URL); " + EXAMPLE),
    ("://x", "Error: bad storage URL '://x' (not a database URL); " + EXAMPLE),
    ("foo://x", "Error: bad storage URL 'foo://x' (unknown database kind 'foo'); " + EXAMPLE),
    (
        "http://example.com/db",
        "Error: bad storage URL 'http://example.com/db' (unknown database kind 'http'); " + EXAMPLE,
    ),
    (
        "postgresql://u:pw@host:port/db",
        "Error: bad storage URL 'postgresql://u:***@host:port/db' (it does not parse: check the port, and "
        "percent-encode any @ / : # in the password); " + EXAMPLE,
    ),
    (
        "sqlite://",
        "Error: storage 'sqlite://' is an in-memory SQLite database: the study would be lost when fsearch exits; "
        "use a file, e.g. sqlite:///studies/fsearch.db",
    ),
    ("sqlite:///nodir/s.db", "Error: folder nodir for the SQLite database does not exist; create it first"),
]


@pytest.mark.parametrize("command", ["run", "studies", "show", "export-best"])
@pytest.mark.parametrize(("url", "line"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_bad_storage_url_is_one_line_and_creates_nothing(
    command: str, url: str, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    before = _snapshot(tmp_path)
    got = _one_error_line(*fsearch([command, "--storage", url], capsys, monkeypatch))
    if url == "sqlite:///nodir/s.db" and command != "run":
        line = "Error: no study database at nodir/s.db; run 'fsearch run' first or pass --storage"
    assert got == line
    assert _snapshot(tmp_path) == before and not (tmp_path / "nodir").exists()


PASSWORDS = ["p{a}ss", "{pw}", "p}w{", "x{SCHEMA_VERSION}", "p@ss", "pa:ss/w#rd", "p%zz", "[x]", "q'\"uote", "sp ace"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("scheme", ["postgresql", "mysql+pymysql"])
def test_a_password_with_special_characters_is_never_echoed(
    password: str, scheme: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{scheme}://user:{password}@127.0.0.1:9/db"  # port 9 (discard): refused at once if a driver is there
    for command in ("studies", "show", "run"):
        line = _one_error_line(*fsearch([command, "--storage", url], capsys, monkeypatch))
        assert password not in line, line


def test_mask_url() -> None:
    cases = {
        "sqlite:///studies/fsearch.db": "sqlite:///studies/fsearch.db",
        "postgresql://user:secret@db.example.com:5432/optuna": "postgresql://user:***@db.example.com:5432/optuna",
        "postgresql://user@host/db": "postgresql://user@host/db",
        "postgresql://user:p@ss:w@rd@host/db": "postgresql://user:***@host/db",
        "mysql://:only-password@host/db": "mysql://:***@host/db",
        "nonsense": "nonsense",
    }
    assert {url: mask_url(url) for url in cases} == cases
    # export-best records the storage in config.json: a password with an '@' loses no fragment there either
    assert mask_url("postgresql://user:p@ss:w@rd@host/db") == "postgresql://user:***@host/db"


def test_braces_in_a_sqlite_path_reach_the_database_unchanged(tmp_path: Path) -> None:
    # Optuna formats the URL with str.format; unescaped, these names would crash or be substituted.
    for name in ("a{b}c.db", "{SCHEMA_VERSION}.db", "}{.db"):
        storage = open_storage(f"sqlite:///{tmp_path / name}", create=True)
        optuna.create_study(storage=storage, study_name="s")
        assert (tmp_path / name).is_file()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["a{b}c.db", "{SCHEMA_VERSION}.db", "}{.db"]


@pytest.fixture
def study_db(tmp_path: Path) -> Path:
    db = tmp_path / "s.db"
    optuna.create_study(storage=open_storage(f"sqlite:///{db}", create=True), study_name="fashion-mnist")
    return db


@pytest.mark.parametrize("command", ["show", "export-best"])
def test_a_mistyped_study_name_suggests_the_right_one_and_changes_nothing(
    command: str, study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(tmp_path)
    args = [command, "--storage", f"sqlite:///{study_db}", "--study", "fashoin-mnist"]
    line = _one_error_line(*fsearch(args, capsys, monkeypatch))
    assert line == (
        f"Error: study 'fashoin-mnist' not found in sqlite:///{study_db} (studies there: fashion-mnist); "
        f"did you mean --study fashion-mnist?"
    )
    assert _snapshot(tmp_path) == before
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{study_db}")] == ["fashion-mnist"]


def test_a_mistyped_database_name_creates_no_file(
    study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(tmp_path)
    for command in ("studies", "show", "export-best"):
        line = _one_error_line(*fsearch([command, "--storage", f"sqlite:///{tmp_path}/S.db"], capsys, monkeypatch))
        assert line == f"Error: no study database at {tmp_path}/S.db; run 'fsearch run' first or pass --storage"
    assert _snapshot(tmp_path) == before


def test_another_programs_sqlite_file_is_neither_read_nor_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "notes.db").write_text("not a database at all, but long enough to have a header " * 4)
    before = _snapshot(tmp_path)
    expected = {
        "app.db": "is not an Optuna study database (tables: users); fsearch neither reads nor adds tables to it",
        "empty.db": "is not an Optuna study database (it is empty)",
        "notes.db": "is not a readable SQLite database (file is not a database); pass another --storage",
    }
    for name, message in expected.items():
        for command in ("studies", "run"):
            if name == "empty.db" and command == "run":
                continue  # an empty file is a fine place to start a new study
            line = _one_error_line(
                *fsearch([command, "--storage", f"sqlite:///{tmp_path / name}"], capsys, monkeypatch)
            )
            assert line.startswith(f"Error: {tmp_path / name} {message}"), line
    with pytest.raises(StorageError, match="is a folder, not an SQLite database file"):
        open_storage(f"sqlite:///{tmp_path}", create=True)
    assert _snapshot(tmp_path) == before


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_schema_another_worker_is_creating_is_joined_by_run_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four workers started together on a new file: one saw only Optuna's first table and refused (CI)."""
    db = tmp_path / "study.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="probe")
    assert _tables(db) == OPTUNA_SCHEMA  # the list of Optuna's tables is Optuna's own
    with sqlite3.connect(db) as conn:  # what a worker sees while another is still creating the schema
        for table in OPTUNA_SCHEMA - {"studies"}:
            conn.execute(f"DROP TABLE {table}")  # nosec B608 - the names are the constant above
        conn.execute("DELETE FROM studies")
    line = _one_error_line(*fsearch(["studies", "--storage", f"sqlite:///{db}"], capsys, monkeypatch))
    assert line == (
        f"Error: {db} is not an Optuna study database (tables: studies); fsearch neither reads nor adds tables "
        f"to it: pass the --storage that 'fsearch run' wrote"
    )
    storage = open_storage(f"sqlite:///{db}", create=True)  # what `run` opens: Optuna completes the schema
    optuna.create_study(storage=storage, study_name="joined")
    storage.engine.dispose()
    assert _tables(db) == OPTUNA_SCHEMA


def test_study_names_with_markup_characters_print_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    name = "odd [/] [bold]name"
    study = optuna.create_study(storage=db, study_name=name, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = fsearch(["show", "--storage", db, "--study", name], capsys, monkeypatch)
    assert code == 0, err
    assert "[/] [bold]name" in out
