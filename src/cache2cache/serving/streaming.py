"""Per-request text streams out of one batched `generate` call.

Hugging Face `generate` hands its streamer the prompt once, (B, N), then one token per row per step,
(B,). `BatchStreamer` splits those rows: each `RowStream` decodes its row's tokens incrementally,
holds back text that may be the start of a stop string (or an incomplete UTF-8 sequence), and
finishes at end-of-sequence, a stop string, its own token budget or a cancelled request. `RowsDone`
reports finished rows to `generate` as a stopping criterion, so a finished or abandoned row stops
costing work, and the batch ends once every row has finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from ..evaluation.timing import StageClock

Emit = Callable[[str, Any], None]
"""Sends one event of a row to its request: ("delta", text) or ("finish", `Finish`)."""


@dataclass(frozen=True)
class Finish:
    """How a row ended.

    Attributes:
        reason: "stop" (end-of-sequence or a stop string), "length" (its token budget) or "cancelled".
        completion_tokens: Tokens generated for the row (the ending EOS excluded).
        timing: Milliseconds of the batch's `prefill_ms`, `sharer_ms` and `fuse_ms`, and the row's `decode_ms`.
    """

    reason: str
    completion_tokens: int
    timing: dict[str, float]


class RowStream:
    """The text stream of one batch row.

    Args:
        tokenizer: Decodes the row's tokens.
        max_tokens: The row's own token budget.
        eos_ids: Ids that end the row (not part of the text).
        stops: Strings that end the row (not part of the text).
        emit: Where the row's events go.
        cancelled: Polled at every token; True ends the row without a finish event being needed.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens: int, eos_ids: set[int], stops: Sequence[str],
                 emit: Emit, cancelled: Callable[[], bool]) -> None:  # fmt: skip
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.eos_ids = eos_ids
        self.stops = tuple(stops)
        self.emit = emit
        self.cancelled = cancelled
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.done = False
        self.reason: str | None = None

    def add(self, token: int) -> str | None:
        """Take the row's next token; returns the finish reason when this token ended the row."""
        if self.done:
            return None
        if self.cancelled():
            return self._end("cancelled")
        if token in self.eos_ids:
            return self._end("stop")
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for stop in self.stops:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at >= 0:
                self._send(text[:at])
                return self._end("stop")
        if len(self.ids) >= self.max_tokens:
            self._send(text)
            return self._end("length")
        self._send(text[: len(text) - self._held_back(text)])
        return None

    def close(self) -> str | None:
        """`generate` returned: end the row if it has not ended (its budget or the model's own stop)."""
        if self.done:
            return None
        self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True))
        return self._end("length" if len(self.ids) >= self.max_tokens else "stop")

    def _held_back(self, text: str) -> int:
        """Characters at the end of `text` not safe to send yet: a possible stop-string start, or U+FFFD."""
        if text.endswith("\ufffd"):
            return 1
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            self.emit("delta", text[self.sent :])
            self.sent = len(text)

    def _end(self, reason: str) -> str:
        self.done, self.reason = True, reason
        return reason


class BatchStreamer(BaseStreamer):
    """A `generate` streamer that feeds one `RowStream` per batch row.

    Args:
        rows: One stream per row, in batch order.
        clock: The batch's stage clock; its prefill/sharer/fuse times are read when decoding starts.
        on_finish: Called with (row index, `Finish`) when a row ends.
    """

    def __init__(self, rows: Sequence[RowStream], clock: StageClock, on_finish: Callable[[int, Finish], None]) -> None:
        self.rows = list(rows)
        self.clock = clock
        self.on_finish = on_finish
        self.decode_start: float | None = None
        self.stages: dict[str, float] = {}

    def put(self, value: torch.Tensor) -> None:
        """The prompt (first call, (B, N)), then each step's tokens, (B,)."""
        if self.decode_start is None:
            self.decode_start = time.perf_counter()
            self.stages = dict(self.clock.ms)
            return
        for index, (row, token) in enumerate(zip(self.rows, value.reshape(len(self.rows), -1)[:, -1].tolist())):
            self._finished(index, row.add(int(token)))

    def end(self) -> None:
        """`generate` returned: close every row still open."""
        for index, row in enumerate(self.rows):
            self._finished(index, row.close())

    def done_mask(self) -> list[bool]:
        """Which rows have finished."""
        return [row.done for row in self.rows]

    def _finished(self, index: int, reason: str | None) -> None:
        if reason is None:
            return
        decode_ms = 1e3 * (time.perf_counter() - self.decode_start) if self.decode_start is not None else 0.0
        timing = {f"{stage}_ms": round(self.stages.get(stage, 0.0), 3) for stage in ("prefill", "sharer", "fuse")}
        timing["decode_ms"] = round(decode_ms, 3)
        self.on_finish(index, Finish(reason=reason, completion_tokens=len(self.rows[index].ids), timing=timing))


class RowsDone(StoppingCriteria):
    """Tells `generate` which rows of `streamer` have finished, (B,) bool."""

    def __init__(self, streamer: BatchStreamer) -> None:
        self.streamer = streamer

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.tensor(self.streamer.done_mask(), dtype=torch.bool, device=input_ids.device)
