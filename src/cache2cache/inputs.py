"""The inputs of a C2C call: chat messages normalised to conversations, and a tokenized batch for
both models (`C2CInputs`: receiver ids and mask, each sharer's aligned ids and mask, the fusion mask).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
"""The chat roles a prompt may use."""
Stage = Callable[[str], AbstractContextManager[Any]]
"""Wraps each stage of a call, by name (`prefill`, `sharer`, `fuse`, `decode`, `score`): a timer such as
`evaluation.timing.StageClock.stage`. The default runs every stage untimed."""


def untimed(name: str) -> AbstractContextManager[None]:
    """The default `Stage`: runs the stage untimed."""
    return nullcontext()


@dataclass
class SharerInputs:
    """One sharer's side of a batch, aligned token for token to the receiver's (B, N) tokens.

    Attributes:
        input_ids: Sharer token ids, (B, N).
        attention_mask: Sharer mask, (B, N).
        fusion_mask: (B, N) bool, True where this sharer's cache is fused into the receiver's.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    fusion_mask: torch.Tensor


@dataclass
class C2CInputs:
    """A tokenized batch for both models, left-padded, aligned token for token.

    Attributes:
        input_ids: Receiver token ids, (B, N).
        attention_mask: Receiver mask, (B, N), 0 on padding.
        sharer_input_ids: Sharer token ids, (B, N); equal to `input_ids` for a shared tokenizer.
        sharer_attention_mask: Sharer mask, (B, N).
        fusion_mask: (B, N) bool, True where the receiver's cache is fused with the sharer's.
        more_sharers: With several sharers, the inputs of sharers 2, 3, ...; empty means each of
            them reads the first sharer's ids (valid when they share its tokenizer).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sharer_input_ids: torch.Tensor
    sharer_attention_mask: torch.Tensor
    fusion_mask: torch.Tensor
    more_sharers: tuple[SharerInputs, ...] = ()

    def __post_init__(self) -> None:
        shapes = {f.name: tuple(getattr(self, f.name).shape) for f in fields(self) if f.name != "more_sharers"}
        for i, more in enumerate(self.more_sharers):
            shapes |= {f"more_sharers[{i}].{f.name}": tuple(getattr(more, f.name).shape) for f in fields(more)}
        if len(set(shapes.values())) != 1 or len(shapes["input_ids"]) != 2:
            raise ValueError(f"C2CInputs tensors must all be (B, N), got {shapes}")

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> C2CInputs:
        """The same inputs with `fn` applied to every tensor."""
        more = tuple(replace(m, **{f.name: fn(getattr(m, f.name)) for f in fields(m)}) for m in self.more_sharers)
        tensors = {f.name: fn(getattr(self, f.name)) for f in fields(self) if f.name != "more_sharers"}
        return replace(self, **tensors, more_sharers=more)

    def to(self, device: torch.device | str) -> C2CInputs:
        """The same inputs on `device`."""
        return self._map(lambda t: t.to(device))

    def truncate(self, length: int) -> C2CInputs:
        """The first `length` tokens of every sequence."""
        return self._map(lambda t: t[:, :length])

    def rows(self, index: torch.Tensor) -> C2CInputs:
        """The batch rows `index` (a (B',) long tensor; rows may repeat)."""
        return self._map(lambda t: t[index])

    def distinct_rows(self) -> tuple[C2CInputs, torch.Tensor] | None:
        """The batch without repeated rows, and where each original row went: `(distinct, inverse)`
        with `distinct.rows(inverse)` equal to `self`, `inverse` (B,); None when no row repeats."""
        tensors = [self.input_ids, self.attention_mask, self.sharer_input_ids, self.sharer_attention_mask,
                   self.fusion_mask, *(getattr(m, f.name) for m in self.more_sharers for f in fields(m))]  # fmt: skip
        found = distinct_index(torch.cat([t.long() for t in tensors], dim=1))
        return None if found is None else (self.rows(found[0]), found[1])

    def sharer_inputs(self, num_sharers: int) -> list[SharerInputs]:
        """Each of `num_sharers` sharers' inputs; sharers past the first read the first's when
        `more_sharers` is empty."""
        first = SharerInputs(self.sharer_input_ids, self.sharer_attention_mask, self.fusion_mask)
        if num_sharers > 1 and not self.more_sharers:
            return [first] * num_sharers
        if 1 + len(self.more_sharers) != num_sharers:
            raise ValueError(
                f"the inputs carry {1 + len(self.more_sharers)} sharers' tokens but the model has {num_sharers} sharers; "
                "build them with C2CModel.encode or inputs_from_ids"
            )
        return [first, *self.more_sharers]


def distinct_index(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Where a batch repeats itself: for (B, K) rows `key`, `(first, inverse)` with `first` (D,) the
    index of one row of each distinct value and `inverse` (B,) each row's place among them, so that
    `key[first][inverse]` equals `key`; None when no row repeats."""
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    if len(distinct) == len(key):
        return None
    first = torch.full((len(distinct),), len(key), dtype=torch.long, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return first, inverse


def as_conversations(messages: object) -> tuple[list[Messages], bool]:
    """Normalise a prompt to a batch of conversations; the flag says it was a single one.

    Raises:
        ValueError: not a string, a conversation or a list of conversations; an unknown role; a
            message without string content; or a user message with no text.
    """
    if isinstance(messages, str):
        conversations, single = [[{"role": "user", "content": messages}]], True
    elif isinstance(messages, list | tuple) and messages and isinstance(messages[0], dict):
        conversations, single = [list(messages)], True
    elif isinstance(messages, list | tuple) and messages and all(isinstance(c, list | tuple) for c in messages):
        conversations, single = [list(c) for c in messages], False
    else:
        raise ValueError(
            f"messages must be a string, a conversation (a list of {{'role', 'content'}} dicts) or a list of conversations; "
            f"got {type(messages).__name__} {str(messages)[:40]!r}"
        )
    for b, conversation in enumerate(conversations):
        where = f"conversation {b}, " if not single else ""
        if not conversation:
            raise ValueError(
                f"{f'conversation {b}' if not single else 'the conversation'} has no messages; give at least one user message"
            )
        for i, message in enumerate(conversation):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError(f"{where}message {i}: expected a dict with a string 'content', got {message!r}")
            role = message.get("role")
            if role not in ROLES:
                raise ValueError(f"{where}message {i}: role {role!r} is not one of {', '.join(ROLES)}; fix the role")
            if role == "user" and not message["content"].strip():
                raise ValueError(
                    f"{where}message {i}: the user message is empty; give the question or instruction to answer"
                )
    return conversations, single


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id a batch pads with on this tokenizer's side: pad, else eos, else unk, else 0 (always masked out)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def encode_left_padded(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, add_special_tokens: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of `texts`, left-padded to the longest, (B, N) each.

    The tokenizer pads on the left for this call only: its `padding_side` is restored afterwards.
    """
    previous_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = previous_side
    return enc["input_ids"], enc["attention_mask"]


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists left-padded with `pad` to the longest: ids and attention mask, (B, N) each."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            ids[b, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[b, width - len(row) :] = 1
    return ids, mask
