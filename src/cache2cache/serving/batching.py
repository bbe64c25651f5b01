"""Dynamic batching: requests that arrive together run as one left-padded batch, in one worker thread.

The event loop only enqueues `Job`s and reads their events; the model runs in the `Batcher`'s worker
thread, so the loop stays free while a batch decodes. The worker takes the oldest waiting job, waits
up to `batch_wait_ms` (from that job's arrival) for more jobs with the same batch key (mode and
decoding settings), up to `max_batch_size`, and runs them through `generate_mode` with one
`BatchStreamer`. Each row's text goes back to its own request through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteriaList

from ..evaluation.modes import T2TStyle, generate_mode, mode_eos_ids, mode_stop_strings, mode_tokenizer, prompt_length
from ..evaluation.timing import StageClock
from ..model import C2CModel
from .errors import APIError
from .metrics import ServerMetrics
from .schema import ChatRequest
from .streaming import BatchStreamer, Finish, RowsDone, RowStream

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue already holds `max_queue` waiting requests."""


@dataclass(eq=False)
class Job:
    """One request waiting for, or running in, a batch.

    Attributes:
        request: The validated request.
        loop: The event loop of the request's handler (events are delivered on it).
        events: ("delta", str), ("finish", `Finish`) or ("error", `APIError`), in order.
        enqueued: `time.perf_counter()` at submission.
        cancelled: Set by the handler when its client has gone; the row stops at its next token.
        prompt_tokens: The prompt's length, set by the worker before the batch runs.
    """

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    prompt_tokens: int = 0

    def emit(self, kind: str, payload: Any) -> None:
        """Deliver an event to the handler, from any thread."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))


class Batcher:
    """The request queue and the worker thread that runs it in batches.

    Args:
        model: The pair.
        metrics: Where queue depth, batch sizes and generated tokens are recorded.
        max_batch_size: Most requests in one batch.
        batch_wait_ms: Longest wait, from the oldest request's arrival, for more requests to join it.
        max_queue: Most requests waiting (not yet running); `submit` refuses more with `QueueFull`.
        max_prompt_tokens: Longest prompt; a longer one is answered with 413 before its batch runs.
        t2t: How the t2t mode asks for and reads background.
    """

    def __init__(self, model: C2CModel, metrics: ServerMetrics, *, max_batch_size: int, batch_wait_ms: float,
                 max_queue: int, max_prompt_tokens: int, t2t: T2TStyle) -> None:  # fmt: skip
        self.model = model
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1e3
        self.max_queue = max_queue
        self.max_prompt_tokens = max_prompt_tokens
        self.t2t = t2t
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="c2c-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue `job`; raises `QueueFull` when `max_queue` requests are already waiting."""
        with self._cond:
            if len(self._pending) >= self.max_queue:
                raise QueueFull
            self._pending.append(job)
            self.metrics.queue_depth.set(len(self._pending))
            self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        """The client of `job` has gone: drop it from the queue, or stop its row at the next token."""
        job.cancelled = True
        with self._cond:
            if job in self._pending:
                self._pending.remove(job)
                self.metrics.queue_depth.set(len(self._pending))

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued and running batches, then stop the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _next_batch(self) -> list[Job] | None:
        """The next batch to run (None once closed and empty): the oldest job and those that may join it."""
        with self._cond:
            batch: list[Job] = []
            while not batch:
                while not self._pending:
                    if self._stopping:
                        return None
                    self._cond.wait()
                first = self._pending[0]
                while True:
                    batch = [job for job in self._pending if job.request.batch_key() == first.request.batch_key()]
                    batch = batch[: self.max_batch_size]
                    remaining = first.enqueued + self.batch_wait_s - time.perf_counter()
                    if (
                        len(batch) >= self.max_batch_size
                        or remaining <= 0
                        or self._stopping
                        or first not in self._pending
                    ):
                        break
                    self._cond.wait(remaining)
                if first not in self._pending:  # cancelled while waiting: start again from the new oldest
                    batch = []
                for job in batch:
                    self._pending.remove(job)
            self.metrics.queue_depth.set(len(self._pending))
            return batch

    def _admitted(self, batch: list[Job]) -> list[Job]:
        """The jobs of `batch` whose prompts fit `max_prompt_tokens`; the others get their error.

        Tokenizing happens here, in the worker thread, because a fast tokenizer must not be used
        from two threads at once."""
        admitted = []
        for job in batch:
            try:
                job.prompt_tokens = prompt_length(
                    self.model, job.request.mode, job.request.messages, sharer_conversation=job.request.sharer_messages
                )
            except ValueError as err:
                job.emit("error", APIError(400, str(err), param="messages", code="invalid_value"))
                continue
            except Exception as err:  # a prompt the tokenizer cannot take fails alone; the server stays up
                logger.exception("tokenizing a %s prompt failed", job.request.mode)
                job.emit(
                    "error",
                    APIError(
                        500, f"tokenizing the prompt failed: {type(err).__name__}: {err}", code="tokenizer_failed"
                    ),
                )
                continue
            if job.prompt_tokens > self.max_prompt_tokens:
                message = f"the prompt has {job.prompt_tokens} tokens, more than this server's max_prompt_tokens ({self.max_prompt_tokens}); shorten the messages"
                job.emit("error", APIError(413, message, param="messages", code="context_length_exceeded"))
                continue
            admitted.append(job)
        return admitted

    def _run(self, batch: list[Job]) -> None:
        """Generate for one batch, streaming each row to its job; no exception escapes."""
        batch = self._admitted(batch)
        if not batch:
            return
        request, model = batch[0].request, self.model
        mode = request.mode
        started = time.perf_counter()
        logger.debug("running a %s batch of %d (%s)", mode, len(batch), [id(j) for j in batch])
        self.metrics.batch_size.observe(len(batch))
        self.metrics.active_rows.inc(len(batch))
        rows: list[RowStream] = []
        try:
            tokenizer, eos_ids, extra_stops = (
                mode_tokenizer(model, mode),
                mode_eos_ids(model, mode),
                mode_stop_strings(model, mode),
            )
            rows = [
                RowStream(
                    tokenizer,
                    job.request.max_tokens,
                    eos_ids,
                    job.request.stop + extra_stops,
                    job.emit,
                    lambda job=job: job.cancelled,
                )
                for job in batch
            ]
            clock = StageClock(model.device)

            def on_finish(index: int, finish: Finish) -> None:
                job = batch[index]
                timing = {
                    "queue_ms": round(1e3 * (started - job.enqueued), 3),
                    **finish.timing,
                    "batch_size": len(batch),
                }
                job.emit("finish", replace(finish, timing=timing))
                self.metrics.generated_tokens.labels(mode=mode).inc(finish.completion_tokens)
                self.metrics.active_rows.dec()

            streamer = BatchStreamer(rows, clock, on_finish)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max(job.request.max_tokens for job in batch),
                "do_sample": request.do_sample,
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([RowsDone(streamer)]),
            }
            if request.do_sample:
                kwargs.update(temperature=request.temperature, top_p=request.top_p)
                if request.seed is not None:
                    torch.manual_seed(request.seed)
            generate_mode(
                model,
                mode,
                [job.request.messages for job in batch],
                t2t=self.t2t,
                clock=clock,
                control=request.control,
                sharer_conversations=_sharer_conversations(batch),
                **kwargs,
            )
        except Exception as err:  # a failed batch answers its requests with an error; the server stays up
            logger.exception("a %s batch of %d failed", mode, len(batch))
            failed = APIError(500, f"generation failed: {type(err).__name__}: {err}", code="generation_failed")
            done = [row.done for row in rows] or [False] * len(batch)
            open_rows = [job for job, finished in zip(batch, done) if not finished]
            for job in open_rows:
                job.emit("error", failed)
            self.metrics.active_rows.dec(len(open_rows))


def _sharer_conversations(batch: list[Job]) -> list[list[dict[str, str]]] | None:
    """The sharer's conversation per row when any request gives `sharer_messages` (a row without reads
    its own messages, which is plain C2C exactly), else None."""
    if all(job.request.sharer_messages is None for job in batch):
        return None
    return [job.request.sharer_messages or job.request.messages for job in batch]
