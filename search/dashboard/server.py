"""optuna-dashboard on a study storage, with the study's artifact store: the library behind ``fsearch dashboard``.

The storage is opened like every other fsearch command does it (:func:`search.store.study.open_storage`:
SQLite in WAL mode with a long busy timeout), so the dashboard reads while a search writes and
neither sees "database is locked". The server is wsgiref with a thread per request (as
optuna-dashboard's own CLI runs it), quiet about each request.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.errors import ConfigError
from search.store.artifacts import artifact_dir
from search.store.storage import open_storage
from search.store.study import load_study

LOOPBACK_NAMES = ("localhost",)


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a browser's open connection must not keep Ctrl+C waiting


class _ThreadedServer6(_ThreadedServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(storage_url: str, *, artifacts: Path | None = None) -> Any:
    """The dashboard's WSGI app on ``storage_url`` (which must exist) with its artifact store."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    storage = open_storage(storage_url, create=False)
    # Not created here: a study without artifacts yet is still served (its artifact lists are empty).
    store = FileSystemArtifactStore(str(artifact_dir(storage_url, artifacts)))
    return wsgi(storage, artifact_store=store)


def study_path(storage_url: str, study: str | None) -> str:
    """The dashboard page of ``study`` (one clear error if it is not there), or the study list."""
    if study is None:
        return "/dashboard"
    storage = open_storage(storage_url, create=False)
    load_study(storage, study, storage_url)  # one clear error when it is not there
    return f"/dashboard/studies/{storage.get_study_id_from_name(study)}"


def listen(app: Any, *, host: str, port: int) -> WSGIServer:
    """A threaded WSGI server for ``app`` bound to ``host:port`` (port 0: any free port), not yet serving."""
    server_class = _ThreadedServer6 if ":" in host else _ThreadedServer
    try:
        return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use; pass another --port (0 picks a free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port") from None


def base_url(server: WSGIServer, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.server_port}"


def serve(app: Any, *, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted; ``on_ready`` gets the base URL once it listens.

    KeyboardInterrupt propagates after the socket is closed.
    """
    server = listen(app, host=host, port=port)
    try:
        if on_ready is not None:
            on_ready(base_url(server, host))
        server.serve_forever()
    finally:
        server.server_close()
