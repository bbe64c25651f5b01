"""A live `c2c serve` app on 127.0.0.1 (a free port) in a background thread, and the tiny pair it serves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from cache2cache import C2CModel
from cache2cache.serving.app import ServeSettings, create_app
from cache2cache.serving.server import build_server
from tiny import tokenized_pair
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer


def tiny_chat_pair(receiver_words: bool = False) -> C2CModel:
    """Receiver Qwen3 + BPE tokenizer <- sharer Llama + word-level tokenizer (token-aligned), open gates.

    receiver_words: swap the tokenizers; the random receiver then writes visible words (with BPE it
    mostly writes newlines).
    """
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    if receiver_words:
        rt, st = st, rt
    return tokenized_pair(rt, st)


class LiveServer:
    """`create_app(load, settings)` served by uvicorn in a thread; `url` is its base URL.

    Args:
        load: Builds the model (called in the app's loading thread).
        settings: The server settings.
        wait_ready: Block until /health says ready.
    """

    def __init__(self, load: Callable[[], C2CModel], settings: ServeSettings, *, wait_ready: bool = True) -> None:
        self.app = create_app(load, settings)
        self.server = build_server(self.app, "127.0.0.1", 0, drain_timeout_s=10)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server.started and self.server.servers):
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = self.server.url()
        if wait_ready:
            self.wait_ready()

    @property
    def state(self):
        return self.app.state.c2c

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, f"not ready: {self.state.status} {self.state.error}"
            time.sleep(0.02)

    def metric(self, name: str) -> float:
        """The sum of every sample of the metric `name` (with any labels) in /metrics."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
