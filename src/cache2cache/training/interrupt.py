"""Stopping a training run on Ctrl-C (SIGINT) without losing the steps since the last checkpoint.

The first SIGINT only sets a flag: the loop finishes the optimizer step in flight, writes a
checkpoint for it and raises `TrainingInterrupted`, so `--resume` continues from exactly that step.
A second SIGINT while that happens interrupts at once, as Ctrl-C normally does. SIGKILL cannot be
caught; the atomic checkpoint writes of `state.py` are what protect a run from it.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT after saving `checkpoint` at optimizer step `step`."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class StopOnInterrupt:
    """Within the `with` block, SIGINT sets `requested` instead of raising `KeyboardInterrupt`.

    Outside the main thread (where Python cannot install signal handlers) it does nothing and
    Ctrl-C keeps its usual meaning.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: signal.Handlers | None | object = None
        self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]  # a second Ctrl-C stops at once
        logger.warning("interrupt: finishing this step and saving a checkpoint (press Ctrl-C again to stop at once)")

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False
