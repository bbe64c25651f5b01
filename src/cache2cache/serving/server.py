"""Running the app under uvicorn, with draining: the first SIGTERM (or Ctrl-C) stops new requests
(503) and lets in-flight ones finish, then the server exits; a second one exits at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .app import ServerState

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains before it exits, and exits when the models fail to load.

    Args:
        config: The uvicorn config (its app is a `create_app` app).
        state: That app's `ServerState`.
        drain_timeout_s: Longest wait for in-flight requests once draining.
        on_ready: Called once with the base URL (e.g. "http://127.0.0.1:8000") when the socket is bound.
    """

    def __init__(self, config: uvicorn.Config, state: ServerState, *, drain_timeout_s: float,
                 on_ready: Callable[[str], None] | None = None) -> None:  # fmt: skip
        super().__init__(config)
        self.state = state
        self.drain_timeout_s = drain_timeout_s
        self.on_ready = on_ready
        self.drain_started: float | None = None
        self.announced = False

    def url(self) -> str:
        """The base URL the server listens on (the real port when the config asked for port 0)."""
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def drain(self) -> None:
        """Stop taking requests; exit once the in-flight ones are done (or `drain_timeout_s` passed)."""
        if self.drain_started is None:
            logger.info("draining: %d request(s) in flight; new requests get 503", self.state.in_flight)
            self.drain_started = time.monotonic()
            self.state.status = "draining"

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None:
            self.drain()
            return
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # exit with our status, not by re-raising the signal

    async def on_tick(self, counter: int) -> bool:
        if not self.announced and self.started and self.on_ready is not None:
            self.announced = True
            self.on_ready(self.url())
        if self.state.status == "failed":
            return True
        if self.drain_started is not None:
            if self.state.in_flight == 0 or time.monotonic() - self.drain_started > self.drain_timeout_s:
                return True
        return await super().on_tick(counter)


def build_server(app: FastAPI, host: str, port: int, *, drain_timeout_s: float,
                 on_ready: Callable[[str], None] | None = None) -> DrainingServer:  # fmt: skip
    """A `DrainingServer` for `app` on `host:port` (port 0: a free one), without access logs."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=drain_timeout_s
    )
    return DrainingServer(config, app.state.c2c, drain_timeout_s=drain_timeout_s, on_ready=on_ready)


def run_server(
    app: FastAPI, host: str, port: int, *, drain_timeout_s: float, on_ready: Callable[[str], None] | None = None
) -> int:
    """Serve `app` until SIGTERM/Ctrl-C (after draining); returns 0, or 1 if the models failed to load."""
    server = build_server(app, host, port, drain_timeout_s=drain_timeout_s, on_ready=on_ready)
    server.run()
    return 1 if app.state.c2c.status == "failed" else 0
