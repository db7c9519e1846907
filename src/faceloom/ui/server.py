"""Serve the UI with uvicorn: a bound socket (the URL is known before serving), the app behind its
guard, serving in the main thread (`faceloom ui`) or in a background thread (tests, benchmarks).

Ctrl-C stops the server cleanly; a server started with SIGINT ignored (a background job of a shell
script) keeps ignoring it, as before, and stops on SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from faceloom.ui.app import UIApp, guarded
from faceloom.ui.config import UIConfig
from faceloom.ui.jobs import JobManager

GRACEFUL_S = 3
"""Open keep-alive connections get this long to finish when the server stops."""


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, leaving alone a SIGINT that the process was started to ignore."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        wanted = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            wanted.append(signal.SIGINT)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in wanted}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class UIServer:
    """The UI's server: ``url``, ``server_address``, ``app`` (the :class:`UIApp`), and
    :meth:`serve_forever` / :meth:`shutdown` / :meth:`server_close`."""

    def __init__(self, app: UIApp) -> None:
        self.app = app
        host = app.config.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, app.config.port))
        self.socket.listen(2048)
        self.socket.set_inheritable(False)
        config = uvicorn.Config(
            guarded(app),
            lifespan="off",
            ws="wsproto",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        self._server = _Uvicorn(config)
        self.stopped_by_signal = False

    @property
    def server_address(self) -> tuple[Any, ...]:
        return tuple(self.socket.getsockname())

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        if shown in ("0.0.0.0", "[::]"):
            shown = "127.0.0.1"
        return f"http://{shown}:{port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or, in the main thread, SIGTERM / Ctrl-C)."""
        self._server.run(sockets=[self.socket])
        self.stopped_by_signal = bool(self._server._captured_signals)

    def shutdown(self) -> None:
        self._server.should_exit = True

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


def make_server(config: UIConfig, jobs: JobManager | None = None) -> UIServer:
    """A ready server (bound, not yet serving); its job watcher is started."""
    app = UIApp(config, jobs)
    server = UIServer(app)
    app.jobs.start()
    return server


@contextlib.contextmanager
def running_server(config: UIConfig, jobs: JobManager | None = None) -> Iterator[UIServer]:
    """A server answering in a background thread for the ``with`` block (tests, benchmarks)."""
    server = make_server(config, jobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=GRACEFUL_S + 5)
        server.server_close()
        server.app.jobs.close()


__all__ = ["UIConfig", "UIServer", "make_server", "running_server"]
