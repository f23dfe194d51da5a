"""A throwaway PostgreSQL server for the slow suite, on a unix socket only (no TCP port is opened).

``postgres_server()`` makes a cluster in a fresh ``/tmp/fspgXXXXXXXX`` (short: a unix socket path may
not exceed ~107 characters), starts it with ``listen_addresses=''``, creates a database and yields
an SQLAlchemy URL for it; on exit it stops the server and removes the folder. It needs the server
binaries (``initdb``, ``pg_ctl``, ``createdb``): on PATH, else the newest ``/usr/lib/postgresql/*/bin``
(Debian's ``postgresql`` package, which .ci/run installs). initdb refuses to run as root, so as root
every server command runs as the ``postgres`` system user (a dedicated system user where Debian's
package did not make one) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

DATABASE = "fsearch"
FALLBACK_USER = "fsearch-pg"  # made only as root where no "postgres" system user exists
COMMAND_TIMEOUT_S = 120
LOG_TAIL_LINES = 30


class PostgresError(RuntimeError):
    """The server could not be set up; the message carries the command's output or the log's tail."""


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); ``9.6`` -> (9, 6); names that are not versions sort first."""
    parts = bin_dir.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_bin_dir() -> Path | None:
    """The folder with ``initdb``, ``pg_ctl`` and ``createdb``, or None when PostgreSQL is not installed."""
    needed = ("initdb", "pg_ctl", "createdb")
    on_path = shutil.which("initdb")
    if on_path is not None:
        # /usr/local/bin/initdb may be a link into /usr/lib/postgresql/N/bin: take the real folder,
        # so pg_ctl and createdb are the same version (Debian's /usr/bin/createdb is a wrapper).
        real = Path(on_path).resolve().parent
        if all((real / name).is_file() for name in needed):
            return real
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if all((candidate / name).is_file() for name in needed):
            return candidate
    return None


def _server_user() -> str:
    """The OS user that owns the cluster: the current one, or as root a system user (made if need be)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", FALLBACK_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    useradd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
    subprocess.run([*useradd, FALLBACK_USER], check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
    return FALLBACK_USER


def _free_port() -> int:
    """A port number nothing listens on (the server opens no TCP port: it only names the socket file)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty server log)"


class _Cluster:
    """Runs the server's commands as the cluster's owner, from the cluster's folder."""

    def __init__(self, bin_dir: Path, base: Path, user: str) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.user = user
        # Only our own arguments count: a PGDATA, PGHOST or PGPORT of the caller's must not steer them.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / name), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        try:
            done = subprocess.run(
                command, cwd=self.base, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{name} took over {COMMAND_TIMEOUT_S} s; server log:\n{_log_tail(self.log)}") from exc
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise PostgresError(
                f"{name} failed (exit {done.returncode}): {output}\nserver log ({self.log}):\n{_log_tail(self.log)}"
            )
        return done

    def stop(self) -> None:
        """Stop the server: fast (rolls back open transactions), else immediate, else kill it."""
        if not (self.data / "postmaster.pid").exists():
            return
        for mode in ("fast", "immediate"):
            with contextlib.suppress(PostgresError):  # a pg_ctl that hangs: try the next, harsher way
                stop = self.run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30", check=False)
                if stop.returncode == 0:
                    return
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_server(bin_dir: Path | None = None, database: str = DATABASE) -> Iterator[str]:
    """Start a private server, yield ``postgresql+psycopg2://USER@/DB?host=/tmp/fspg...&port=N``; stop and clean up."""
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise PostgresError("PostgreSQL's server binaries (initdb, pg_ctl) are not on PATH nor in /usr/lib/postgresql")
    user = _server_user()
    base = Path(tempfile.mkdtemp(prefix="fspg", dir="/tmp"))
    cluster = _Cluster(bin_dir, base, user)
    try:
        # Traversable by the client (the socket lives here); the data folder inside stays 0700.
        base.chmod(0o711)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(user)
            os.chown(base, owner.pw_uid, owner.pw_gid)
        cluster.run(
            "initdb", "-D", str(cluster.data), "-U", user, "--auth=trust", "--encoding=UTF8", "--no-locale",
            "--no-sync",
        )  # fmt: skip
        port = _free_port()
        settings = {
            "listen_addresses": "''",  # no TCP: only the unix socket below
            "unix_socket_directories": f"'{base}'",
            "port": str(port),
            "fsync": "off",  # a test database: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "100",  # several `fsearch run --workers` processes, each with a pool
        }
        with (cluster.data / "postgresql.conf").open("a") as conf:  # appended: keeps the file's owner
            conf.write("\n# tests/pg_server.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        cluster.run("pg_ctl", "start", "-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", "60")
        cluster.run("createdb", "-h", str(base), "-p", str(port), "-U", user, database)
        yield f"postgresql+psycopg2://{user}@/{database}?host={base}&port={port}"
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
