"""Prefix reuse: the caches of a prompt's first columns, computed once and reused by later prompts
that start with the same tokens (a system prompt, a document, the earlier turns of a chat).

In C2C the receiver prefills the prompt *alone*; the fusers then replace the fused positions
(docs/method.md §1). So a prefix keeps three caches over its P columns: the receiver alone, each
sharer, and the fused cache the receiver answers from. A later prompt of N columns whose first k
columns equal the prefix's (every tensor of `C2CInputs`: receiver and sharer ids and masks, the
fusion mask) reuses them: its columns k .. N-2 are prefilled on top of the receiver-alone and
sharer caches, fused token by token, and appended to the fused cache; the receiver then runs the
last prompt token over the fused cache and decodes, exactly as a fresh prompt does. Each token's
K/V depend only on the columns up to it and each fuser reads one token, so the result equals
encoding the whole prompt (tests/test_prefix.py). Columns are compared, not messages, so a prefix
that ends in template text the full prompt renders differently (the token aligner pads each
template section to the longer side, which may differ once the next message follows) is reused up
to the first differing column.

A call never changes the prefix it is given (the caches are `kv.twin`s sharing its tensors); it
returns the prefix over the new prompt minus its last token, which the next turn of a chat reuses.

Refused, with the reason: batches of more than one row (left padding moves every column),
`fuse_proportion` < 1 (which tokens are fused depends on the whole prompt), `include_response`,
a prefix built with other fusion settings, and cutting a prefix back (k < P) on a receiver with
sliding-window layers (their earlier tokens are gone; with `recompute=True`, as `c2c chat` passes,
the prompt is computed afresh instead, and the log says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import Cache

from . import kv
from .control import FusionControl
from .generation import check_generation_kwargs, check_prompt_length
from .inputs import C2CInputs, Messages, Stage, as_conversations, untimed
from .sharers import run_fusers

if TYPE_CHECKING:
    from .model import C2CModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixCache:
    """The caches of a prompt's first P columns, for one conversation (batch size 1).

    Attributes:
        inputs: The P columns, (1, P) each, as encoding the whole prompt gives them.
        receiver: The receiver alone over the P columns (what new tokens are prefilled against).
        sharers: Each sharer's cache over the P columns (empty when fusion is off).
        fused: The receiver cache the answer reads: `receiver` with the fused positions replaced
            (the same cache as `receiver` when fusion is off).
        fuse: Whether the fused cache is fused (False: the receiver alone).
        control: The fusion settings the fused cache was computed with.
        reused: How many of the P columns came from the prefix this one was built on (0 when fresh).
    """

    inputs: C2CInputs
    receiver: Cache
    sharers: tuple[Cache, ...]
    fused: Cache
    fuse: bool
    control: FusionControl
    reused: int = 0

    @property
    def length(self) -> int:
        """P, the number of columns the caches cover."""
        return int(self.inputs.input_ids.shape[1])


def common_length(a: C2CInputs, b: C2CInputs) -> int:
    """How many leading columns two single-row inputs share in every tensor (ids, masks, fusion masks)."""
    tensors_a, tensors_b = _tensors(a), _tensors(b)
    if len(tensors_a) != len(tensors_b):
        return 0
    n = min(a.input_ids.shape[1], b.input_ids.shape[1])
    same = torch.ones(n, dtype=torch.bool, device=a.input_ids.device)
    for x, y in zip(tensors_a, tensors_b, strict=True):
        same &= x[0, :n].to(same.device) == y[0, :n].to(same.device)
    differ = (~same).nonzero()
    return n if differ.numel() == 0 else int(differ[0, 0])


def _tensors(inputs: C2CInputs) -> list[torch.Tensor]:
    more = [getattr(m, f.name) for m in inputs.more_sharers for f in fields(m)]
    return [getattr(inputs, f.name) for f in fields(inputs) if f.name != "more_sharers"] + more


def _check_settings(inputs: C2CInputs, fuse: bool, control: FusionControl, prefix: PrefixCache | None) -> None:
    """Refuse what prefix reuse cannot compute exactly (see the module docstring)."""
    problems = []
    if inputs.input_ids.shape[0] != 1:
        problems.append(
            f"a batch of {inputs.input_ids.shape[0]} rows: prefix reuse takes one conversation at a time "
            "(left padding moves every column); call it once per conversation"
        )
    if fuse and control.proportion != 1:
        problems.append(
            f"fuse_proportion={control.proportion}: which tokens are fused depends on the whole prompt; use 1"
        )
    if fuse and control.include_response:
        problems.append("include_response: the sharer would have to read the response; generate without a prefix")
    if fuse and control.ablate_sharer:
        problems.append("ablate_sharer: the sharer's mean depends on the whole prompt; ablate without a prefix")
    if prefix is not None and (prefix.fuse, prefix.control) != (fuse, control):
        problems.append(
            f"the prefix was computed with fuse={prefix.fuse}, {prefix.control}, this call asks for fuse={fuse}, "
            f"{control}: build the prefix with the same settings"
        )
    if problems:
        raise ValueError("cannot reuse a prefix here: " + "; ".join(problems))


def extend(
    model: C2CModel,
    inputs: C2CInputs,
    prefix: PrefixCache | None = None,
    *,
    fuse: bool = True,
    control: FusionControl | None = None,
    stage: Stage = untimed,
    recompute: bool = False,
) -> PrefixCache:
    """The caches of `inputs`' columns, reusing those `prefix` already holds.

    Args:
        model: The C2C pair.
        inputs: (1, P') the columns to cover: for generation, the prompt minus its last token.
        prefix: Caches of earlier columns; reused over the leading columns it shares with `inputs`
            (None, or none shared: everything is computed).
        fuse: False keeps the receiver alone (no sharer, no fusion).
        control: Strength and layer subset of fusion (`fuse_proportion` must be 1); default plain C2C.
        stage: Wraps the `prefill`, `sharer` and `fuse` stages (for timing them).
        recompute: When `inputs` share only part of the prefix and the receiver's sliding-window
            layers cannot be cut back to it, compute every column afresh (logged) instead of raising.

    Returns:
        A `PrefixCache` over the P' columns; `prefix` is left as it was.

    Raises:
        ValueError: settings prefix reuse cannot compute exactly, or (without `recompute`) a prefix
            that must be cut back on a receiver with sliding-window layers.
    """
    control = control or FusionControl()
    control.check_layers(model.config.fused_layers)
    _check_settings(inputs, fuse, control, prefix)
    fusing = fuse and not control.fuses_nothing
    k = 0 if prefix is None else min(common_length(prefix.inputs, inputs), prefix.length)
    if prefix is not None and k < prefix.length:
        logger.info("prefix: reusing %d of its %d columns (the prompt differs at column %d)", k, prefix.length, k)
        if recompute and k > 0 and not kv.can_cut(prefix.receiver, k):
            logger.info("prefix: the receiver's sliding-window layers cannot be cut back; computing every column")
            k = 0
    if prefix is None or k == 0:
        receiver = kv.empty_cache(model.receiver)
        sharers = tuple(kv.empty_cache(s, keep_all_tokens=True) for s in model.sharers) if fusing else ()
        fused = kv.empty_cache(model.receiver) if fusing else receiver
    else:
        receiver = kv.head(prefix.receiver, k)
        sharers = tuple(kv.head(c, k) for c in prefix.sharers)
        fused = kv.head(prefix.fused, k) if fusing else receiver
    new = inputs.input_ids.shape[1] - k
    if new > 0:
        with torch.no_grad():
            with stage("prefill"):
                receiver_new = kv.extend(model.receiver, receiver, inputs.input_ids[:, k:], inputs.attention_mask)
            if fusing:
                kv.append(fused, _fused_columns(model, inputs, k, sharers, receiver_new, control, stage))
    return PrefixCache(inputs, receiver, sharers, fused, fuse, control, reused=k)


def _fused_columns(
    model: C2CModel,
    inputs: C2CInputs,
    start: int,
    sharer_caches: tuple[Cache, ...],
    receiver_new: list[tuple[torch.Tensor, torch.Tensor]],
    control: FusionControl,
    stage: Stage,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fused K/V of columns `start ..`, per receiver layer, each (1, H_kv, T, D); extends each sharer cache."""
    sides = model._sharer_inputs(inputs)
    with stage("sharer"):
        sharer_new = [
            kv.extend(sharer, cache, side.input_ids[:, start:], side.attention_mask)
            for sharer, cache, side in zip(model.sharers, sharer_caches, sides, strict=True)
        ]
    masks = [control.fusion_mask(side.fusion_mask)[:, start:] for side in sides]
    if not any(bool(mask.any()) for mask in masks):
        return receiver_new
    with stage("fuse"):
        fused = run_fusers(
            model.fusers, sharer_new, receiver_new, masks, layers=control.layers, strength=control.strength
        )
    return [fused.get(i, pair) for i, pair in enumerate(receiver_new)]


def generate_from_inputs(
    model: C2CModel,
    inputs: C2CInputs,
    prefix: PrefixCache | None = None,
    *,
    fuse: bool = True,
    control: FusionControl | None = None,
    stage: Stage = untimed,
    recompute: bool = False,
    **generate_kwargs: Any,
) -> tuple[Any, PrefixCache]:
    """`C2CModel.generate_from_inputs` reusing `prefix`'s caches; returns Hugging Face `generate`'s
    output and the prefix over this prompt minus its last token (for the next turn).

    Args:
        model: The C2C pair.
        inputs: (1, N) the whole prompt.
        prefix: Caches of an earlier prompt (see `extend`); None computes everything.
        fuse: False runs the receiver alone.
        control: Strength and layer subset of fusion; default plain C2C.
        stage: Wraps `prefill`, `sharer`, `fuse` and `decode`.
        recompute: See `extend`.
        **generate_kwargs: Passed to Hugging Face `generate` (`max_new_tokens`, `streamer`, ...).
    """
    n = inputs.input_ids.shape[1]
    if n < 1:
        raise ValueError("the prompt is empty: give at least one token")
    covered = extend(
        model, inputs.truncate(n - 1), prefix, fuse=fuse, control=control, stage=stage, recompute=recompute
    )
    out = model.generate_from_inputs(
        inputs, fuse=fuse, control=covered.control, stage=stage, fused_cache=kv.twin(covered.fused), **generate_kwargs
    )
    return out, covered


def prefill(
    model: C2CModel,
    messages: Messages | str,
    *,
    fuse: bool = True,
    fusion_strength: float = 1.0,
    fuse_layers: Iterable[int] | None = None,
    enable_thinking: bool = False,
) -> PrefixCache:
    """The prefix caches of a conversation's start (a system prompt, a document as a user turn),
    rendered without a generation prompt, for `generate(..., prefix=)` to reuse.

    Example:
        >>> system = prefill(model, [{"role": "system", "content": long_document}])  # doctest: +SKIP
        >>> answer, _ = generate(model, [*system_messages, {"role": "user", "content": "Q?"}], prefix=system)  # doctest: +SKIP
    """
    conversations, _ = as_conversations(messages)
    if len(conversations) != 1:
        raise ValueError(f"a prefix is one conversation, got {len(conversations)}")
    inputs = model.encode(conversations, add_generation_prompt=False, enable_thinking=enable_thinking)
    control = FusionControl.from_kwargs(fusion_strength, fuse_layers, 1.0, False)
    return extend(model, inputs, fuse=fuse, control=control)


def generate(
    model: C2CModel,
    messages: Messages | str,
    *,
    prefix: PrefixCache | None = None,
    fuse: bool = True,
    fusion_strength: float = 1.0,
    fuse_layers: Iterable[int] | None = None,
    enable_thinking: bool = False,
    recompute: bool = False,
    **generate_kwargs: Any,
) -> tuple[str, PrefixCache]:
    """`C2CModel.generate` for one conversation, reusing `prefix` over the columns its prompt shares.

    Args:
        model: The C2C pair (with a receiver tokenizer).
        messages: One conversation, or a user string.
        prefix: From `prefill` or an earlier call; None computes everything.
        fuse: False runs the receiver alone.
        fusion_strength: alpha, as in `C2CModel.generate` (the prefix must have been built with it).
        fuse_layers: Receiver layers to fuse, as in `C2CModel.generate` (likewise).
        enable_thinking: Passed to chat templates that use it.
        recompute: See `extend`.
        **generate_kwargs: Passed to Hugging Face `generate`.

    Returns:
        The generated text and the prefix over this prompt minus its last token: pass it to the next
        turn's call, whose prompt starts with this one.
    """
    conversations, single = as_conversations(messages)
    if not single:
        raise ValueError(f"prefix reuse takes one conversation, got a batch of {len(conversations)}")
    check_generation_kwargs(generate_kwargs)
    inputs = model.encode(conversations, enable_thinking=enable_thinking)
    check_prompt_length(model.receiver, model.sharers, inputs.input_ids.shape[1], generate_kwargs.get("max_new_tokens"))
    control = FusionControl.from_kwargs(fusion_strength, fuse_layers, 1.0, False)
    out, covered = generate_from_inputs(
        model, inputs, prefix, fuse=fuse, control=control, recompute=recompute,
        **generate_kwargs,
    )  # fmt: skip
    sequences = out.sequences if hasattr(out, "sequences") else out
    texts = model.chat_tokenizer().batch_decode(sequences[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    return texts[0], covered
