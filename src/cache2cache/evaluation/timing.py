"""Per-stage wall-clock timing of the model calls `c2c eval` makes (docs/method.md §6.8, with a breakdown).

The paper's protocol times one item at a time (batch size 1) around the whole `generate` call, with
`perf_counter` on CPU and a device synchronisation on CUDA, and no warm-up. `StageClock` does that,
stage by stage, and the two functions below are `C2CModel.generate_from_inputs` and
`C2CModel.forward` unrolled so each stage can be timed:

    prefill   kv.prefill(receiver, prompt[:-1])                          (receiver and C2C)
    sharer    kv.prefill(sharer, prompt[:-1], keep_all_tokens=True)      (C2C only)
    fuse      the fusers + kv.replace_layer                              (C2C only)
    decode    receiver.generate over the cache (last prompt token + new tokens)   (generate)
    score     one receiver pass over [last prompt token + continuation]            (loglik)

They compute exactly what the library calls compute (a test compares them token for token); the
runner uses them for timed items and the library calls for untimed batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import Cache

from .. import kv
from ..control import FusionControl
from ..model import C2CInputs, C2CModel


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

    Args:
        model: The pair.
        prefix: (B, P) inputs, normally the prompt minus its last token.
        fuse: False runs the receiver-only path (no sharer, no fusion).
        clock: Where the stage times go.
        control: Strength, layer subset and proportion of fusion; default plain C2C.

    Returns:
        The receiver's cache over the P tokens (fused where `prefix.fusion_mask`), None if P == 0.
    """
    control = control or FusionControl()
    control.check_layers(model.config.layer_map)
    if prefix.input_ids.shape[1] == 0:
        return None
    mask = control.fusion_mask(prefix.fusion_mask)
    with clock.stage("prefill"):
        cache = kv.prefill(model.receiver, prefix.input_ids, prefix.attention_mask)
    if not fuse or control.fuses_nothing or not bool(mask.any()):
        return cache
    with clock.stage("sharer"):
        sharer_cache = kv.prefill(model.sharer, prefix.sharer_input_ids, prefix.sharer_attention_mask, keep_all_tokens=True)
    with clock.stage("fuse"):
        fused = model.fusers(kv.layers(sharer_cache), kv.layers(cache), mask, layers=control.layers, strength=control.strength)
        for layer_idx, (keys, values) in fused.items():
            kv.replace_layer(cache, layer_idx, keys, values)
    return cache


@torch.no_grad()
def timed_generate(
    model: C2CModel, inputs: C2CInputs, *, fuse: bool, clock: StageClock, control: FusionControl | None = None, **generate_kwargs: Any
) -> Any:
    """`C2CModel.generate_from_inputs(inputs, fuse=fuse, control=control, **generate_kwargs)`, timed by stage.

    Args:
        model: The pair.
        inputs: (B, N) left-padded prompts.
        fuse: False: the receiver alone through the same path.
        clock: Gets `prefill`, `sharer`, `fuse` (C2C only) and `decode`.
        control: Strength, layer subset and proportion of fusion; default plain C2C.
        **generate_kwargs: Hugging Face `generate` arguments.

    Returns:
        What Hugging Face `generate` returns: (B, N + new) sequences by default.
    """
    cache = timed_fuse(model, inputs.truncate(inputs.input_ids.shape[1] - 1), fuse=fuse, clock=clock, control=control)
    if model.receiver_tokenizer is not None and model.receiver.generation_config.pad_token_id is None:
        generate_kwargs.setdefault("pad_token_id", model.receiver_tokenizer.pad_token_id)
    if cache is not None:
        generate_kwargs[kv.cache_kwarg(model.receiver)] = cache
    with clock.stage("decode"):
        return model.receiver.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **generate_kwargs)


@torch.no_grad()
def timed_forward(
    model: C2CModel, inputs: C2CInputs, prompt_length: int, *, fuse: bool, clock: StageClock, control: FusionControl | None = None
) -> torch.Tensor:
    """The logits of `C2CModel.forward(inputs, prompt_length, enabled=fuse, control=control)`, timed by stage.

    Args:
        model: The pair.
        inputs: (B, L): left-padded prompts of `prompt_length` columns, then right-padded continuations.
        prompt_length: P, the prompt's columns.
        fuse: False: the receiver alone.
        clock: Gets `prefill`, `sharer`, `fuse` (C2C only) and `score`.
        control: Strength, layer subset and proportion of fusion; default plain C2C.

    Returns:
        (B, L - P + 1, V) logits over columns P-1 .. L-1.
    """
    cache = timed_fuse(model, inputs.truncate(prompt_length - 1), fuse=fuse, clock=clock, control=control)
    start = prompt_length - 1
    with clock.stage("score"):
        out = model.receiver(
            input_ids=inputs.input_ids[:, start:],
            attention_mask=inputs.attention_mask,
            position_ids=kv.positions(inputs.attention_mask)[:, start:],
            use_cache=True,
            **{kv.cache_kwarg(model.receiver): cache},
        )
    return out.logits
