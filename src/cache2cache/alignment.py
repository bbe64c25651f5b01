"""Cross-tokenizer token alignment (docs/method.md §4): equal-length receiver and sharer sequences.

Fusion pairs token j of the receiver's cache with token j of the sharer's cache, so when the two
models have different tokenizers both sequences must have exactly the same length and the same cut
points. `TokenAligner` builds them from chat messages:

1. Each side renders the SAME messages with ITS OWN chat template (`render_chat`; the plain-text
   fallback `render_plain` when a tokenizer has no template) and tokenises the text with offsets.
2. Each message's content is located in each rendered text (`alignment_sections.locate_contents`) and the character
   spans become token ranges, which cut each side into alternating sections:
   template 0, message 0, template 1, ..., message k-1, template k (always 2k+1 sections, some may
   be empty, so `sections[2 * i + 1]` is message i).
3. Template sections keep each side's native tokens; the shorter side is padded at the *start* of
   the section with its own pad id (0 in that side's mask), so every section ends on a real token of
   both sides. This matters for the last section, the generation prompt: the receiver runs the last
   prompt token over the fused cache, and that token must be its real last template token. Message
   sections keep the receiver's tokens and map them 1:1 to sharer tokens; they, and only they, are in
   the fusion mask.

Where this differs from the reference aligner:
- Spans are found by rendering a placeholder copy of the conversation, not by the "followed by `<`"
  heuristic: exact whenever the template inserts content verbatim; otherwise (a template that trims
  or rewrites content) an in-order search anchored on the template text around each placeholder.
- Message tokens are mapped through the text they cover in the rendered prompt (their character
  offsets), not by decoding the token id alone: a word the receiver does not know (its `<unk>`)
  still reaches the sharer as the word itself, and a byte-level piece of a multi-byte character
  maps as that character rather than as U+FFFD. Mappings are memoised per text, and aligned
  conversations per conversation.
- Receiver and sharer tokenizers are never modified (the reference sets a missing pad to eos).
- Batches are left-padded to a common length, so pads never appear inside a sequence beyond the
  per-side template padding, and every row of a batch equals the same conversation aligned alone.
- `strategy` defaults to `longest` (the paper's "maximal string coverage") and is validated.
- Each message section reports whether its sharer tokens carry the receiver's text (`round_trip_ok`).

Known lossiness of the 1:1 message mapping (inherent to one sharer token per receiver token):
a receiver token the sharer splits into several tokens keeps only one of them (`first` or
`longest`); text the sharer cannot tokenize (whitespace for a
word-level sharer, unknown words) maps to the sharer's unk token.
"""

from __future__ import annotations

import json
import logging
import typing
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch
from transformers import PreTrainedTokenizerBase

from .alignment_sections import AlignmentError, Messages, encode_side, section_bounds
from .config import AlignmentStrategy as Strategy
from .inputs import left_pad, pad_id

__all__ = ["AlignedBatch", "AlignedSequence", "AlignmentError", "AlignmentFidelity", "Section", "TokenAligner"]

logger = logging.getLogger(__name__)

_SPECIAL_ROLES = ("eos", "bos", "unk", "pad")  # eos first: a pad that doubles as eos is mapped as eos


@dataclass(frozen=True)
class Section:
    """A contiguous run of aligned positions `[start, end)` of one kind.

    Attributes:
        kind: "template" (chat-template text, not fused) or "message" (a message's content, fused).
        message_index: The index in `messages` for a message section, None for a template section.
        start: First aligned position.
        end: One past the last aligned position.
        round_trip_ok: Message sections only (None for templates): True when the sharer's tokens
            decode to the same text as the receiver's, ignoring whitespace (word-level tokenizers do
            not encode it). Holds whenever every receiver token maps to exactly one sharer token of
            the same text; False means the mapping lost or replaced characters.
    """

    kind: Literal["template", "message"]
    message_index: int | None
    start: int
    end: int
    round_trip_ok: bool | None = None


@dataclass(frozen=True)
class AlignedSequence:
    """One conversation aligned for both models; every list has the same length N.

    Attributes:
        receiver_ids: (N,) receiver token ids.
        receiver_mask: (N,) 1 on real receiver tokens, 0 on the receiver's template padding.
        sharer_ids: (N,) sharer token ids.
        sharer_mask: (N,) 1 on real sharer tokens, 0 on the sharer's template padding.
        fusion_mask: (N,) True exactly on message tokens.
        sections: 2k+1 sections for k messages, alternating template/message, in order.
        receiver_text: The receiver's rendered prompt.
        sharer_text: The sharer's rendered prompt.
    """

    receiver_ids: list[int]
    receiver_mask: list[int]
    sharer_ids: list[int]
    sharer_mask: list[int]
    fusion_mask: list[bool]
    sections: list[Section]
    receiver_text: str
    sharer_text: str

    def __len__(self) -> int:
        return len(self.receiver_ids)

    @property
    def message_sections(self) -> list[Section]:
        """The message sections in message order; `message_sections[-1]` is the last message
        (training supervises the receiver's tokens there)."""
        return [s for s in self.sections if s.kind == "message"]


@dataclass(frozen=True)
class AlignedBatch:
    """B aligned conversations, left-padded to a common length N.

    Template padding stays inside each row (mask 0); left padding adds pads only at the start.

    Attributes:
        receiver_input_ids: (B, N) long.
        receiver_attention_mask: (B, N) long, 0 on left padding and receiver template padding.
        sharer_input_ids: (B, N) long.
        sharer_attention_mask: (B, N) long, 0 on left padding and sharer template padding.
        fusion_mask: (B, N) bool, True exactly on message tokens.
        sequences: The B unpadded `AlignedSequence`s (section positions are relative to each).
        left_padding: Number of left pads per row; row b's sequence starts at `left_padding[b]`.
    """

    receiver_input_ids: torch.Tensor
    receiver_attention_mask: torch.Tensor
    sharer_input_ids: torch.Tensor
    sharer_attention_mask: torch.Tensor
    fusion_mask: torch.Tensor
    sequences: list[AlignedSequence]
    left_padding: list[int]


@dataclass(frozen=True)
class AlignmentFidelity:
    """How closely the sharer's aligned message tokens follow its own tokenization, over conversations.

    The 1:1 mapping gives the sharer one token per receiver token, so where the two tokenizers cut a
    text differently the sharer reads an unusual tokenization of it, or loses characters. This
    counts both, per conversation (`TokenAligner.fidelity`).

    Attributes:
        conversations: Conversations measured.
        message_tokens: Fused positions (message tokens), summed over the conversations.
        native_tokens: Tokens of the sharer's own encoding of each message text alone, summed.
        native_conversations: Conversations whose every message the sharer reads in exactly its own
            encoding of the text.
        lossy_conversations: Conversations with a message whose sharer tokens lose or replace
            characters (`Section.round_trip_ok` False).
    """

    conversations: int
    message_tokens: int
    native_tokens: int
    native_conversations: int
    lossy_conversations: int


class TokenAligner:
    """Aligns a sharer's tokens 1:1 to a receiver's, per token and per chat conversation.

    Args:
        receiver_tokenizer: The receiver's fast tokenizer.
        sharer_tokenizer: The sharer's fast tokenizer.
        strategy: How to pick one sharer token when a receiver token's text needs several:
            "longest" (default, the paper's maximal string coverage: the candidate whose decoded
            text is longest, the first on ties) or "first".
        cache_size: Aligned conversations kept in the per-conversation LRU memo.

    Raises:
        ValueError: An unknown strategy, or a tokenizer without offsets (not a fast tokenizer).

    Example:
        >>> aligner = TokenAligner(receiver_tok, sharer_tok)
        >>> seq = aligner.align_messages([{"role": "user", "content": "Hello"}])
        >>> len(seq.receiver_ids) == len(seq.sharer_ids)
        True
    """

    def __init__(
        self,
        receiver_tokenizer: PreTrainedTokenizerBase,
        sharer_tokenizer: PreTrainedTokenizerBase,
        strategy: Strategy = "longest",
        cache_size: int = 4096,
    ) -> None:
        if strategy not in get_args(Strategy):
            raise ValueError(f"strategy must be one of {get_args(Strategy)}, got {strategy!r}")
        for side, tok in (("receiver", receiver_tokenizer), ("sharer", sharer_tokenizer)):
            if not getattr(tok, "is_fast", False):
                raise ValueError(
                    f"the {side} tokenizer ({type(tok).__name__}) is not a fast tokenizer, and token alignment needs "
                    "its character offsets: load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
                )
            if not getattr(tok, "chat_template", None):
                logger.info("the %s tokenizer has no chat template; using the plain-text fallback", side)
        self.receiver_tokenizer = receiver_tokenizer
        self.sharer_tokenizer = sharer_tokenizer
        self.strategy: Strategy = strategy
        self.cache_size = cache_size
        self.receiver_pad_id = pad_id(receiver_tokenizer)
        self.sharer_pad_id = pad_id(sharer_tokenizer)
        self._sharer_vocab = sharer_tokenizer.get_vocab()
        # Equal vocabularies mean equal ids for equal strings: the 1:1 map is the identity.
        self._identity = receiver_tokenizer.get_vocab() == self._sharer_vocab
        unk = sharer_tokenizer.unk_token_id
        self._sharer_unk_id = unk if unk is not None else self.sharer_pad_id
        self._receiver_roles: dict[int, str | None] = dict.fromkeys(_special_ids(receiver_tokenizer))
        for role in reversed(_SPECIAL_ROLES):
            token_id = getattr(receiver_tokenizer, f"{role}_token_id")
            if token_id is not None:
                self._receiver_roles[token_id] = role
        self._text_map: dict[str, int] = {}
        self._sequences: OrderedDict[tuple[str, bool, bool | None], AlignedSequence] = OrderedDict()

    # ------------------------------------------------------------------------------ per token

    def align_tokens(self, receiver_ids: Sequence[int]) -> list[int]:
        """Map receiver token ids 1:1 to sharer token ids (same length, memoised per token id).

        Each receiver token is decoded alone (`align_messages` uses the text each token covers in the
        prompt instead, which also carries words the receiver only knows as `<unk>`). A receiver
        special token maps to the sharer's token
        of the same role (eos, bos, unk, pad), else to the sharer token with the same string, else
        to the sharer's unk. Any other token's text is encoded by the sharer without special
        tokens: no ids -> the sharer's unk (its pad id when it has no unk, see `_pad_id`); one
        id -> that id; several -> `strategy`.

        Args:
            receiver_ids: (L,) receiver token ids.

        Returns:
            (L,) sharer token ids.
        """
        if self._identity:
            return [int(i) for i in receiver_ids]
        return [self._map_token(int(i), _token_text(self.receiver_tokenizer, int(i))) for i in receiver_ids]

    def _map_token(self, token_id: int, text: str) -> int:
        """One receiver token (its id and the text it stands for) to one sharer id."""
        unknown_word = token_id == self.receiver_tokenizer.unk_token_id and text != self.receiver_tokenizer.unk_token
        if token_id in self._receiver_roles and not unknown_word:
            role = self._receiver_roles[token_id]
            mapped = getattr(self.sharer_tokenizer, f"{role}_token_id") if role else None
            if mapped is None:
                mapped = self._sharer_vocab.get(text, self._sharer_unk_id)
            return mapped
        mapped = self._text_map.get(text)
        if mapped is None:
            mapped = self._text_map[text] = self._map_text(text)
        return mapped

    def _map_text(self, text: str) -> int:
        candidates = self.sharer_tokenizer.encode(text, add_special_tokens=False)
        if not candidates:
            return self._sharer_unk_id
        if len(candidates) == 1 or self.strategy == "first":
            return candidates[0]
        # max keeps the first of equally long candidates
        return max(candidates, key=lambda c: len(_token_text(self.sharer_tokenizer, c)))

    # ------------------------------------------------------------------------------ per conversation

    def align_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> AlignedSequence:
        """Render `messages` with each side's template and align the two token sequences.

        Args:
            messages: `{"role": str, "content": str}` dicts (system/user/assistant, any number).
            add_generation_prompt: Append each side's assistant turn header (the last template section).
            enable_thinking: Passed to templates that read it (see `render_chat`).

        Returns:
            An `AlignedSequence` of length N (lists), memoised per conversation and flags.

        Raises:
            AlignmentError: A message cannot be located in one side's rendering (its template drops
                or rewrites it), so the sides would not have the same sections.
            TypeError: A message is not a mapping with string `role` and `content`.
        """
        key = (_conversation_key(messages), add_generation_prompt, enable_thinking)
        seq = self._sequences.get(key)
        if seq is None:
            seq = self._align([dict(m) for m in messages], add_generation_prompt, enable_thinking)
            self._sequences[key] = seq
            if len(self._sequences) > self.cache_size:
                self._sequences.popitem(last=False)
        else:
            self._sequences.move_to_end(key)
        # Fresh lists, so a caller editing its copy cannot corrupt the memo.
        return replace(
            seq,
            receiver_ids=list(seq.receiver_ids),
            receiver_mask=list(seq.receiver_mask),
            sharer_ids=list(seq.sharer_ids),
            sharer_mask=list(seq.sharer_mask),
            fusion_mask=list(seq.fusion_mask),
            sections=list(seq.sections),
        )

    def _align(self, messages: Messages, add_generation_prompt: bool, enable_thinking: bool | None) -> AlignedSequence:
        sides = [
            encode_side(side, tok, messages, add_generation_prompt, enable_thinking)
            for side, tok in (("receiver", self.receiver_tokenizer), ("sharer", self.sharer_tokenizer))
        ]
        receiver, sharer = sides
        bounds = [section_bounds(s) for s in sides]
        assert len(bounds[0]) == len(bounds[1]) == 2 * len(messages) + 1, "both sides cut into 2k+1 sections"
        r_ids: list[int] = []
        r_mask: list[int] = []
        s_ids: list[int] = []
        s_mask: list[int] = []
        fusion: list[bool] = []
        sections: list[Section] = []
        for n, ((ra, rb), (sa, sb)) in enumerate(zip(*bounds)):
            start = len(r_ids)
            r_part = receiver.ids[ra:rb]
            if n % 2:  # message section: receiver tokens, sharer side mapped 1:1 through their text
                if self._identity:
                    s_part = list(r_part)
                else:
                    s_part = [self._map_token(receiver.ids[i], receiver.token_text(i)) for i in range(ra, rb)]
                r_ids += r_part
                s_ids += s_part
                r_mask += [1] * len(r_part)
                s_mask += [1] * len(r_part)
                fusion += [True] * len(r_part)
                ok = _squash(_text(self.receiver_tokenizer, r_part)) == _squash(_text(self.sharer_tokenizer, s_part))
                sections.append(Section("message", n // 2, start, len(r_ids), ok))
            else:  # template section: native tokens, the shorter side padded at the section start
                s_part = sharer.ids[sa:sb]
                width = max(len(r_part), len(s_part))
                r_ids += [self.receiver_pad_id] * (width - len(r_part)) + r_part
                s_ids += [self.sharer_pad_id] * (width - len(s_part)) + s_part
                r_mask += [0] * (width - len(r_part)) + [1] * len(r_part)
                s_mask += [0] * (width - len(s_part)) + [1] * len(s_part)
                fusion += [False] * width
                sections.append(Section("template", None, start, len(r_ids)))
        return AlignedSequence(r_ids, r_mask, s_ids, s_mask, fusion, sections, receiver.text, sharer.text)

    def align_batch(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> AlignedBatch:
        """Align B conversations and left-pad them to a common length N.

        Args:
            conversations: B message lists (see `align_messages`).
            add_generation_prompt: See `align_messages`.
            enable_thinking: See `align_messages`.

        Returns:
            An `AlignedBatch` of (B, N) tensors; row b stripped of its `left_padding[b]` pads equals
            `align_messages(conversations[b])`.
        """
        if not conversations:
            raise ValueError("align_batch needs at least one conversation, got an empty list")
        seqs = [
            self.align_messages(c, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking)
            for c in conversations
        ]
        # every list of a sequence has its length, so padding each list alone keeps the columns aligned
        r_ids, _ = left_pad([s.receiver_ids for s in seqs], self.receiver_pad_id)
        s_ids, _ = left_pad([s.sharer_ids for s in seqs], self.sharer_pad_id)
        r_mask, _ = left_pad([s.receiver_mask for s in seqs], 0)
        s_mask, _ = left_pad([s.sharer_mask for s in seqs], 0)
        fusion, _ = left_pad([[int(f) for f in s.fusion_mask] for s in seqs], 0)
        pads = [r_ids.shape[1] - len(s) for s in seqs]
        return AlignedBatch(r_ids, r_mask, s_ids, s_mask, fusion.bool(), seqs, pads)

    def fidelity(self, conversations: Iterable[Sequence[Mapping[str, Any]]]) -> AlignmentFidelity:
        """Measure, over `conversations` (each aligned with a generation prompt, as it is answered),
        how often the sharer reads its own tokenization of the messages (see `AlignmentFidelity`)."""
        conversations_seen = message_tokens = native_tokens = native_conversations = lossy_conversations = 0
        for messages in conversations:
            seq = self.align_messages(messages)
            native = True
            for message, section in zip(messages, seq.message_sections, strict=True):
                aligned = seq.sharer_ids[section.start : section.end]
                own = self.sharer_tokenizer.encode(message["content"], add_special_tokens=False)
                message_tokens += len(aligned)
                native_tokens += len(own)
                native = native and aligned == own
            conversations_seen += 1
            native_conversations += native
            lossy_conversations += not all(s.round_trip_ok for s in seq.message_sections)
        return AlignmentFidelity(
            conversations_seen, message_tokens, native_tokens, native_conversations, lossy_conversations
        )

    def preview(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> list[tuple[str, str, bool]]:
        """Position-by-position view of an aligned conversation, for `c2c inspect`.

        Returns:
            N rows `(receiver token text, sharer token text, fused?)`; each token decoded alone,
            and "" where that side is template padding.
        """
        seq = self.align_messages(
            messages, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
        return [
            (
                _token_text(self.receiver_tokenizer, r) if rm else "",
                _token_text(self.sharer_tokenizer, s) if sm else "",
                f,
            )
            for r, rm, s, sm, f in zip(
                seq.receiver_ids, seq.receiver_mask, seq.sharer_ids, seq.sharer_mask, seq.fusion_mask
            )
        ]


# ---------------------------------------------------------------------------------- helpers


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
    return ids


def _text(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> str:
    """The exact text of `token_ids`, special tokens included (decoding a list of ids gives one string)."""
    return typing.cast(str, tokenizer.decode(token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _token_text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    return _text(tokenizer, [token_id])


def _squash(text: str) -> str:
    return "".join(text.split())


def _conversation_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """A canonical JSON string of the conversation (the memo key), after validating it."""
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TypeError(
                f"message {i} must be a mapping with string 'role' and 'content', got {m!r}; "
                "token alignment needs plain-text content"
            )
    return json.dumps([dict(m) for m in messages], sort_keys=True, ensure_ascii=False, default=repr)
