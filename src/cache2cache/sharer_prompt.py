"""A separate conversation for the sharer (`sharer_messages=`, docs/method.md §1.6).

Plain C2C gives both models the same conversation. Here the sharer reads its own conversation S
(for instance a context, then the question) while the receiver reads R (the question alone). Fusion
still pairs position j of the receiver's cache with position j of the sharer's, so the two token
sequences are laid out side by side by one rule, **end alignment with receiver filler**:

1. Each conversation is encoded as plain C2C would encode it alone: R gives the receiver's tokens
   (N_r, with the token aligner's template padding when the tokenizers differ), S gives the sharer's
   tokens and fusion mask (N_s; message tokens only when the tokenizers differ, every token when
   they are shared).
2. The two are aligned at their ends, so both last prompt tokens (each side's generation prompt)
   share the last column. The row is N = max(N_r, N_s) long.
3. When S is longer (N_s > N_r, the sharer's extra context), the receiver's row starts with
   N_s - N_r **filler** tokens: the receiver's pad token (else eos, else unk, else 0), attended
   (mask 1) and fused wherever S's fusion mask says so. The fusers write the sharer's extra
   context into positions the receiver attends to but never reads as text.
4. When S is shorter (N_s < N_r), the sharer's row starts with N_r - N_s of its pads (mask 0);
   those receiver tokens are read as they are, unfused.
5. A column is fused when S's fusion mask is set there and the receiver's token is real or filler
   (never on the receiver's template padding). Batches are rows of this form, left-padded.

With S equal to R, step 1 gives the plain encoding on both sides and steps 2-4 change nothing, so
the result is plain C2C exactly. One sharer only. Fusion during the response (`include_response`)
works on this layout too: both prompts end in the same column, and the response continues both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .chat import render_chat
from .inputs import C2CInputs, Messages, left_pad, pad_id

if TYPE_CHECKING:
    from .alignment import TokenAligner


class EncodingPair(Protocol):
    """What encoding with sharer messages reads of a `C2CModel`."""

    def chat_tokenizer(self) -> PreTrainedTokenizerBase: ...
    @property
    def sharer_tokenizer(self) -> PreTrainedTokenizerBase | None: ...
    @property
    def aligner(self) -> TokenAligner | None: ...
    @property
    def sharers(self) -> list[PreTrainedModel]: ...
    @property
    def device(self) -> torch.device: ...


@dataclass(frozen=True)
class SideBySide:
    """One prompt row laid out for both models (every list has the same length N).

    Attributes:
        receiver_ids: (N,) receiver ids: filler, then the receiver's own prompt.
        receiver_mask: (N,) 1 on real and filler receiver tokens, 0 on the aligner's template padding.
        sharer_ids: (N,) sharer ids: pads, then the sharer's own prompt.
        sharer_mask: (N,) 1 on real sharer tokens.
        fusion_mask: (N,) True where the receiver's cache is fused.
        filler: Receiver filler tokens at the start of the row (N_s - N_r, or 0).
    """

    receiver_ids: list[int]
    receiver_mask: list[int]
    sharer_ids: list[int]
    sharer_mask: list[int]
    fusion_mask: list[bool]
    filler: int


def side_by_side(
    receiver: tuple[Sequence[int], Sequence[int]],
    sharer: tuple[Sequence[int], Sequence[int], Sequence[bool]],
    *,
    filler_id: int,
    sharer_pad_id: int,
) -> SideBySide:
    """Lay a receiver prompt and a sharer prompt out end to end (the module's rule, steps 2-5).

    Args:
        receiver: The receiver's (ids, mask), each (N_r,).
        sharer: The sharer's (ids, mask, fusion mask), each (N_s,).
        filler_id: The receiver token standing for the sharer's extra context.
        sharer_pad_id: The sharer's pad (masked out) where its prompt is the shorter.

    Raises:
        ValueError: Either prompt is empty, or a side's lists differ in length.
    """
    r_ids, r_mask = list(receiver[0]), list(receiver[1])
    s_ids, s_mask, s_fuse = list(sharer[0]), list(sharer[1]), [bool(f) for f in sharer[2]]
    if len(r_ids) != len(r_mask) or not len(s_ids) == len(s_mask) == len(s_fuse):
        raise ValueError(f"a side's ids and masks differ in length: receiver {len(r_ids)}/{len(r_mask)}, "
                         f"sharer {len(s_ids)}/{len(s_mask)}/{len(s_fuse)}")  # fmt: skip
    if not r_ids or not s_ids:
        raise ValueError("both prompts need at least one token (the receiver's and the sharer's rendered prompt)")
    filler, pads = max(0, len(s_ids) - len(r_ids)), max(0, len(r_ids) - len(s_ids))
    r_ids, r_mask = [filler_id] * filler + r_ids, [1] * filler + r_mask
    s_ids, s_mask, s_fuse = [sharer_pad_id] * pads + s_ids, [0] * pads + s_mask, [False] * pads + s_fuse
    fusion = [f and bool(m) for f, m in zip(s_fuse, r_mask, strict=True)]
    return SideBySide(r_ids, r_mask, s_ids, s_mask, fusion, filler)


def check_sharer_conversations(conversations: list[Messages], sharer_conversations: list[Messages]) -> None:
    """Raise `ValueError` unless there is one sharer conversation per receiver conversation."""
    if len(sharer_conversations) != len(conversations):
        raise ValueError(
            f"sharer_messages holds {len(sharer_conversations)} conversations for {len(conversations)} receiver "
            "conversations; give one sharer conversation per receiver conversation, in the same order"
        )


def encode_with_sharer_messages(
    model: EncodingPair,
    conversations: list[Messages],
    sharer_conversations: list[Messages],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = False,
) -> C2CInputs:
    """`C2CModel.encode` with the sharer reading its own conversations (the module's rule).

    Args:
        model: A single-sharer pair with a receiver tokenizer.
        conversations: B receiver conversations.
        sharer_conversations: B sharer conversations, row for row.
        add_generation_prompt: Append each side's assistant turn header.
        enable_thinking: Passed to templates that use it.

    Returns:
        Left-padded `C2CInputs` (B, N) on the model's device.

    Raises:
        ValueError: Several sharers, no receiver tokenizer, or mismatched batch sizes.
    """
    if len(model.sharers) > 1:
        raise ValueError(
            f"sharer_messages gives one sharer its own conversation, but this model reads {len(model.sharers)} "
            "sharers; use a single-sharer model, or drop sharer_messages"
        )
    tok = model.chat_tokenizer()
    check_sharer_conversations(conversations, sharer_conversations)
    sharer_tok = model.sharer_tokenizer or tok
    flags = {"add_generation_prompt": add_generation_prompt, "enable_thinking": enable_thinking}
    rows = [
        side_by_side(
            receiver_side(model, r, **flags),
            sharer_side(tok, model.aligner, s, **flags),
            filler_id=pad_id(tok),
            sharer_pad_id=pad_id(sharer_tok),
        )
        for r, s in zip(conversations, sharer_conversations, strict=True)
    ]
    # every list of a row has the row's length, so padding each list alone keeps the columns aligned
    ids, _ = left_pad([row.receiver_ids for row in rows], pad_id(tok))
    mask, _ = left_pad([row.receiver_mask for row in rows], 0)
    sharer_ids, _ = left_pad([row.sharer_ids for row in rows], pad_id(sharer_tok))
    sharer_mask, _ = left_pad([row.sharer_mask for row in rows], 0)
    fusion, _ = left_pad([[int(f) for f in row.fusion_mask] for row in rows], 0)
    return C2CInputs(ids, mask, sharer_ids, sharer_mask, fusion.bool()).to(model.device)


def receiver_side(
    model: EncodingPair, conversation: Messages, *, add_generation_prompt: bool, enable_thinking: bool
) -> tuple[list[int], list[int]]:
    """The receiver's (ids, mask) for one conversation, as plain C2C encodes it: the aligned receiver
    sequence when the tokenizers differ, the rendered prompt's tokens otherwise."""
    if model.aligner is not None:
        seq = model.aligner.align_messages(
            conversation, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
        return seq.receiver_ids, seq.receiver_mask
    ids = _tokens(model.chat_tokenizer(), conversation, add_generation_prompt, enable_thinking)
    return ids, [1] * len(ids)


def sharer_side(
    receiver_tokenizer: PreTrainedTokenizerBase | None,
    aligner: TokenAligner | None,
    conversation: Messages,
    *,
    add_generation_prompt: bool,
    enable_thinking: bool,
) -> tuple[list[int], list[int], list[bool]]:
    """The sharer's (ids, mask, fusion mask) for one conversation, as plain C2C encodes it: aligned by
    `aligner` (message tokens fused) when the tokenizers differ, else the receiver tokenizer's tokens
    (every token fused)."""
    if aligner is not None:
        seq = aligner.align_messages(
            conversation, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
        return seq.sharer_ids, seq.sharer_mask, seq.fusion_mask
    ids = _tokens(receiver_tokenizer, conversation, add_generation_prompt, enable_thinking)
    return ids, [1] * len(ids), [True] * len(ids)


def _tokens(
    tokenizer: PreTrainedTokenizerBase | None,
    conversation: Messages,
    add_generation_prompt: bool,
    enable_thinking: bool,
) -> list[int]:
    assert tokenizer is not None  # checked by the callers
    text = render_chat(
        tokenizer, conversation, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
