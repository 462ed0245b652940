"""A real uvicorn server on a thread of the test process, for tests that reach the app over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from gateway.serving import CoalescingHttpToolsProtocol


@dataclass
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Ask the server to exit and wait: its lifespan's shutdown has run when this returns."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@contextmanager
def uvicorn_thread(config: uvicorn.Config, start_timeout_s: float = 20.0) -> Iterator[RunningServer]:
    """Serve ``config`` until the block ends (or :meth:`RunningServer.stop`)."""
    server = uvicorn.Server(config)
    running = RunningServer(server, threading.Thread(target=server.run, daemon=True))
    running.thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not running.server.started:
        assert running.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield running
    finally:
        running.stop()


def loopback_config(app: object, port: int, **options: object) -> uvicorn.Config:
    """``app`` on 127.0.0.1:``port`` as ``serve`` runs it (its HTTP protocol; uvicorn's proxy-header handling
    on, trusting ``FORWARDED_ALLOW_IPS`` unless ``forwarded_allow_ips`` is given), quietly."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="asyncio",
        http=CoalescingHttpToolsProtocol,
        **options,  # type: ignore[arg-type]
    )
