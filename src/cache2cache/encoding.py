"""Tokenizing a C2C prompt for both models: chat conversations, or token ids given directly, as `C2CInputs`.

`encode_conversations` renders each conversation with the receiver's chat template; a sharer with
its own tokenizer gets its tokens from its `TokenAligner` (message tokens mapped 1:1 to the
receiver's, only they fused), a sharer with the receiver's tokenizer reads the receiver's ids.
`inputs_from_ids` completes and checks token ids given directly. `C2CModel.encode` and
`C2CModel.inputs_from_ids` call them and move the result to the receiver's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerBase

from .chat import render_chat
from .inputs import C2CInputs, Messages, SharerInputs, encode_left_padded

if TYPE_CHECKING:
    from .alignment import TokenAligner


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase,
    aligners: Sequence[TokenAligner | None],
    conversations: list[Messages],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = False,
) -> C2CInputs:
    """Chat conversations tokenized for the receiver and every sharer, left-padded.

    Args:
        tokenizer: The receiver's tokenizer.
        aligners: One per sharer, in order: its `TokenAligner`, or None when it shares the
            receiver's tokenizer.
        conversations: B conversations, each a list of `{"role", "content"}` messages.
        add_generation_prompt: Append the assistant turn header (for generation).
        enable_thinking: Passed to templates that use it (Qwen3).

    Returns:
        `C2CInputs` (B, N) on the CPU; a sharer with the receiver's tokenizer has every real token
        in its fusion mask.

    Raises:
        ValueError: Two sharers align the receiver's prompt differently (their templates differ in length).
    """
    aligned = [
        (
            i,
            a.align_batch(conversations, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking),
        )
        for i, a in enumerate(aligners)
        if a is not None
    ]
    if aligned:
        ids, mask = aligned[0][1].receiver_input_ids, aligned[0][1].receiver_attention_mask
        for i, batch in aligned[1:]:
            if not (torch.equal(batch.receiver_input_ids, ids) and torch.equal(batch.receiver_attention_mask, mask)):
                raise ValueError(
                    f"sharers {aligned[0][0] + 1} and {i + 1} align the receiver's prompt differently (their chat "
                    "templates differ in length, so the receiver's template is padded differently for each); "
                    "several sharers need one receiver sequence. Fix: use sharers with the same chat template"
                )
    else:
        texts = [
            render_chat(tokenizer, c, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)
            for c in conversations
        ]
        ids, mask = encode_left_padded(tokenizer, texts)
    by_sharer = dict(aligned)
    sides = [
        SharerInputs(b.sharer_input_ids, b.sharer_attention_mask, b.fusion_mask)
        if (b := by_sharer.get(i)) is not None
        else SharerInputs(ids, mask, mask.bool())  # a sharer with the receiver's tokenizer reads its ids
        for i in range(len(aligners))
    ]
    first = sides[0]
    return C2CInputs(ids, mask, first.input_ids, first.attention_mask, first.fusion_mask, tuple(sides[1:]))


def inputs_from_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    sharer_input_ids: torch.Tensor | Sequence[torch.Tensor] | None,
    sharer_attention_mask: torch.Tensor | Sequence[torch.Tensor] | None,
    fusion_mask: torch.Tensor | Sequence[torch.Tensor] | None,
    aligners: Sequence[TokenAligner | None],
    sharer_vocab_sizes: Sequence[int],
) -> C2CInputs:
    """`C2CInputs` from left-padded token ids (see `C2CModel.inputs_from_ids`).

    Args:
        input_ids: (B, N) receiver ids.
        attention_mask: (B, N) receiver mask; None: every token is real.
        sharer_input_ids: (B, N) sharer ids, or one tensor per sharer; None: the receiver's ids
            (refused for a sharer with its own tokenizer).
        sharer_attention_mask: (B, N), or one per sharer; None: the receiver's mask with its ids, else all ones.
        fusion_mask: (B, N) bool, or one per sharer; None: every token real on both sides.
        aligners: One per sharer: its `TokenAligner`, or None when it shares the receiver's tokenizer.
        sharer_vocab_sizes: One per sharer, to refuse ids outside its vocabulary.

    Raises:
        ValueError: A per-sharer list of the wrong length, missing sharer ids for a sharer with its
            own tokenizer, or a sharer id outside that sharer's vocabulary.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    n = len(aligners)
    per_sharer = []
    for name, value in (
        ("sharer_input_ids", sharer_input_ids),
        ("sharer_attention_mask", sharer_attention_mask),
        ("fusion_mask", fusion_mask),
    ):
        values = list(value) if isinstance(value, Sequence) else [value] * n
        if len(values) != n:
            raise ValueError(f"{name}: got {len(values)} tensors for {n} sharers; give one per sharer, in order")
        per_sharer.append(values)
    sides = []
    for i, (ids, mask, fused, aligner, vocab) in enumerate(zip(*per_sharer, aligners, sharer_vocab_sizes, strict=True)):
        which = f"sharer {i + 1}" if n > 1 else "sharer"
        if ids is None:
            if aligner is not None:
                raise ValueError(
                    f"receiver and {which} tokenizers differ, so token ids alone are ambiguous: pass sharer_input_ids "
                    "(aligned 1:1 with input_ids), or pass chat messages and let the token aligner build both"
                )
            ids, mask = input_ids, attention_mask
        if mask is None:
            mask = torch.ones_like(ids)
        if fused is None:
            fused = attention_mask.bool() & mask.bool()
        if int(ids.max()) >= vocab:
            raise ValueError(
                f"{which} token id {int(ids.max())} is outside the {which}'s vocabulary ({vocab}); "
                "the tokenizers probably differ: pass sharer_tokenizer= so prompts get aligned"
            )
        sides.append(SharerInputs(ids, mask, fused.bool()))
    first = sides[0]
    return C2CInputs(
        input_ids, attention_mask, first.input_ids, first.attention_mask, first.fusion_mask, tuple(sides[1:])
    )
