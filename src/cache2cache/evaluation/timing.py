"""Per-stage wall-clock timing of the model calls `c2c eval` makes (docs/method.md §6.8, with a breakdown).

The paper's protocol times one item at a time (batch size 1) around the whole `generate` call, with
`perf_counter` on CPU and a device synchronisation on CUDA, and no warm-up. `StageClock` does that,
stage by stage: the functions below call `C2CModel.fuse`, `generate_from_inputs` and `forward`
with the clock's `stage` wrapped around each stage:

    prefill   kv.prefill(receiver, prompt[:-1])                          (receiver and C2C)
    sharer    kv.prefill(sharer, prompt[:-1], keep_all_tokens=True)      (C2C only)
    fuse      the fusers + kv.replace_layer                              (C2C only)
    decode    receiver.generate over the cache (last prompt token + new tokens)   (generate)
    score     one receiver pass over [last prompt token + continuation]            (loglik)

They are the library calls themselves, so they compute exactly what those compute (a test compares
them token for token); the runner uses them for timed items and the library calls for untimed batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import Cache

from ..control import FusionControl
from ..inputs import C2CInputs
from ..model import C2CModel


class StageClock:
    """Accumulates milliseconds per named stage; synchronises CUDA around each stage.

    Args:
        device: The device the timed work runs on (CUDA is synchronised before and after a stage).

    Example:
        >>> clock = StageClock(torch.device("cpu"))
        >>> with clock.stage("decode"):
        ...     pass
        >>> sorted(clock.ms)
        ['decode']
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.ms: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body and add it to stage `name`."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (time.perf_counter() - start)

    def breakdown(self) -> dict[str, float]:
        """Milliseconds per stage, plus `total` (their sum)."""
        return {**self.ms, "total": sum(self.ms.values())}


@torch.no_grad()
def timed_fuse(
    model: C2CModel, prefix: C2CInputs, *, fuse: bool, clock: StageClock, control: FusionControl | None = None
) -> Cache | None:
    """`C2CModel.fuse(prefix, enabled=fuse, control=control)`, timing the `prefill`, `sharer` and `fuse` stages.

    Returns:
        The receiver's cache over the P tokens of `prefix` (fused where its fusion mask says), None if P == 0.
    """
    return model.fuse(prefix, enabled=fuse, control=control, stage=clock.stage)


@torch.no_grad()
def timed_generate(
    model: C2CModel,
    inputs: C2CInputs,
    *,
    fuse: bool,
    clock: StageClock,
    control: FusionControl | None = None,
    **generate_kwargs: Any,
) -> Any:
    """`C2CModel.generate_from_inputs(inputs, fuse=fuse, control=control, **generate_kwargs)`, timing
    `prefill`, `sharer`, `fuse` (C2C only) and `decode`.

    Returns:
        What Hugging Face `generate` returns: (B, N + new) sequences by default.
    """
    return model.generate_from_inputs(inputs, fuse=fuse, control=control, stage=clock.stage, **generate_kwargs)


@torch.no_grad()
def timed_forward(
    model: C2CModel,
    inputs: C2CInputs,
    prompt_length: int,
    *,
    fuse: bool,
    clock: StageClock,
    control: FusionControl | None = None,
) -> torch.Tensor:
    """The logits of `C2CModel.forward(inputs, prompt_length, enabled=fuse, control=control)`, timing
    `prefill`, `sharer`, `fuse` (C2C only) and `score`.

    Returns:
        (B, L - P + 1, V) logits over columns P-1 .. L-1.
    """
    return model.forward(inputs, prompt_length, enabled=fuse, control=control, stage=clock.stage).logits
