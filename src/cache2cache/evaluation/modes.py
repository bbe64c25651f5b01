"""The four ways a pair answers a chat: `c2c`, `receiver`, `sharer` and `t2t`, on batches of conversations.

- `c2c`: the receiver reads its cache fused with the sharer's (`C2CModel.generate_from_inputs`).
- `receiver`: the same code path with fusion off (`fuse=False`).
- `sharer`: the sharer alone, prompted with its own chat template (a template-less base model gets
  the plain-text fallback and its BOS token, and stops where the plain chat starts a new turn).
- `t2t`: text-to-text. Stage 1: the sharer writes background for the last user message (greedy,
  `T2TStyle.max_new_tokens`). Stage 2: the receiver answers with that background in its prompt.

`generate_mode` runs one mode on a left-padded batch, timing each stage with the evaluation's
`StageClock` (`prefill`, `sharer`, `fuse`, `decode`), and passes Hugging Face `generate` arguments
(`streamer`, `stopping_criteria`, sampling) to the final decoding call. `c2c eval`'s runner and
`c2c serve` both build on these functions.
"""

from __future__ import annotations

import typing
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteriaList, StopStringCriteria

from ..chat import render_chat
from ..control import FusionControl
from ..inputs import encode_left_padded, pad_id
from ..model import C2CModel
from ..tasks.prompts import T2T_BACKGROUND_PROMPT, background_prompt, t2t_messages
from .timing import StageClock, timed_generate

Messages = list[dict[str, str]]
MODES: tuple[str, ...] = ("c2c", "receiver", "sharer", "t2t")
PLAIN_STOPS: tuple[str, ...] = ("\nuser:", "\nassistant:")
"""Where a template-less (base) sharer starts a new turn of the plain-text chat; its reply ends there."""


@dataclass(frozen=True)
class T2TStyle:
    """How T2T asks the sharer for background, and how the receiver reads it.

    Attributes:
        request: The sharer's stage-1 user message; `{question}` becomes the last user message.
        reading: "turns": the receiver reads [request, background, question] as three turns (the
            paper's T2T, docs/method.md §6.7); "system": the background as a system message before the chat.
        max_new_tokens: Most background tokens the sharer writes.
    """

    request: str
    reading: Literal["turns", "system"]
    max_new_tokens: int


PAPER_T2T = T2TStyle(T2T_BACKGROUND_PROMPT, "turns", 256)
"""The paper's T2T: one sentence of background, read as a 3-turn chat."""


@dataclass
class ModeOutput:
    """What `generate_mode` produced.

    Attributes:
        new_tokens: (B, T) generated ids (finished rows padded), in `mode_tokenizer`'s vocabulary.
        prompt_tokens: Tokens of each row's final prompt (for t2t: the receiver's, background included).
        backgrounds: The sharer's stage-1 text per row (t2t only).
    """

    new_tokens: torch.Tensor
    prompt_tokens: list[int]
    backgrounds: list[str] | None = None


def check_mode(mode: str) -> None:
    """Raise `ValueError` unless `mode` is one of `MODES`."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")


def mode_tokenizer(model: C2CModel, mode: str) -> PreTrainedTokenizerBase:
    """The tokenizer that decodes `mode`'s output: the sharer's for `sharer`, the receiver's otherwise."""
    check_mode(mode)
    tok = model.sharer_tokenizer if mode == "sharer" else model.receiver_tokenizer
    if tok is None:
        raise ValueError(f"mode {mode!r} works on chat messages, so the C2CModel needs its tokenizers")
    return tok


def mode_stop_strings(model: C2CModel, mode: str) -> tuple[str, ...]:
    """Strings that end a reply in `mode` besides end-of-sequence: the plain chat's turn markers for a
    template-less sharer, nothing otherwise."""
    return PLAIN_STOPS if mode == "sharer" and not mode_tokenizer(model, mode).chat_template else ()


def mode_eos_ids(model: C2CModel, mode: str) -> set[int]:
    """Token ids that end a reply in `mode`: the generating model's EOS ids and its tokenizer's."""
    generator = model.sharer if mode == "sharer" else model.receiver
    eos = generator.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) | {mode_tokenizer(model, mode).eos_token_id}
    ids.discard(None)
    return ids


def sharer_texts(model: C2CModel, conversations: Sequence[Messages], *, enable_thinking: bool = False) -> list[str]:
    """The conversations rendered with the sharer's own chat template (or the plain fallback)."""
    return [
        render_chat(mode_tokenizer(model, "sharer"), c, add_generation_prompt=True, enable_thinking=enable_thinking)
        for c in conversations
    ]


def sharer_encode(model: C2CModel, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded sharer ids and mask, (B, N) each, on the sharer's device; a template-less (base)
    tokenizer gets its special tokens (BOS)."""
    tok = mode_tokenizer(model, "sharer")
    ids, mask = encode_left_padded(tok, texts, add_special_tokens=not tok.chat_template)
    return ids.to(model.sharer.device), mask.to(model.sharer.device)


_STOP_CRITERIA: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[tuple[str, ...], StopStringCriteria]] = (
    weakref.WeakKeyDictionary()
)


def stop_criteria(tok: PreTrainedTokenizerBase, stops: Sequence[str]) -> StopStringCriteria:
    """Hugging Face's criterion that ends a row at any of `stops`, built once per tokenizer and stops.

    `generate(stop_strings=...)` rebuilds it on every call, which walks the whole vocabulary: about a
    second per call for Gemma-3's 262k tokens (benchmarks/stop_strings.py), more than decoding a short
    answer takes. The criterion holds no per-call state, so one instance serves every call.
    """
    by_stops = _STOP_CRITERIA.setdefault(tok, {})
    key = tuple(stops)
    if key not in by_stops:
        by_stops[key] = StopStringCriteria(tok, list(key))
    return by_stops[key]


def generated_lengths(new: torch.Tensor, generation_config: Any, tok: PreTrainedTokenizerBase) -> list[int]:
    """Tokens generated per row of `new` (B, T): up to and including the first end-of-sequence token
    (finished rows are filled with the pad token, which therefore also ends a row)."""
    eos = generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) | {
        tok.eos_token_id,
        generation_config.pad_token_id,
        tok.pad_token_id,
    }
    stops.discard(None)
    lengths = []
    for row in new.tolist():
        ends = [i for i, t in enumerate(row) if t in stops]
        lengths.append(ends[0] + 1 if ends else len(row))
    return lengths


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first of `stops`, stripped."""
    for stop in stops:
        text = text.split(stop)[0]
    return text.strip()


def prompt_length(
    model: C2CModel, mode: str, conversation: Messages, *, sharer_conversation: Messages | None = None
) -> int:
    """Tokens of `conversation`'s prompt as `mode` first reads it (for t2t: the receiver's question,
    before any background is added; for c2c with `sharer_conversation`: the receiver's filler included)."""
    check_mode(mode)
    if mode == "sharer":
        return int(sharer_encode(model, sharer_texts(model, [conversation]))[1].sum())
    sharers = None if sharer_conversation is None else [sharer_conversation]
    return int(model.encode([conversation], sharer_conversations=sharers).attention_mask.sum())


@dataclass
class SharerReplies:
    """Greedy sharer replies to a batch of conversations.

    Attributes:
        prompts: Each conversation as the sharer read it (its chat template, or the plain fallback).
        prompt_tokens: Tokens of each prompt.
        replies: Each reply, cut where a template-less sharer's plain chat starts a new turn.
        reply_tokens: Tokens generated per row, end-of-sequence included.
    """

    prompts: list[str]
    prompt_tokens: list[int]
    replies: list[str]
    reply_tokens: list[int]


def sharer_replies(
    model: C2CModel, conversations: Sequence[Messages], *, max_new_tokens: int, enable_thinking: bool = False
) -> SharerReplies:
    """The sharer alone answers each conversation, greedily (the sharer mode's and T2T stage 1's decoding)."""
    tok = mode_tokenizer(model, "sharer")
    prompts = sharer_texts(model, conversations, enable_thinking=enable_thinking)
    ids, mask = sharer_encode(model, prompts)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": pad_id(tok)}
    if not tok.chat_template:
        kwargs["stopping_criteria"] = StoppingCriteriaList([stop_criteria(tok, PLAIN_STOPS)])
    new = model.sharer.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, ids.shape[1] :]
    counts = generated_lengths(new, model.sharer.generation_config, tok)
    replies = [
        cut_at_stops(typing.cast(str, tok.decode(row[:n], skip_special_tokens=True)), PLAIN_STOPS)
        for row, n in zip(new.tolist(), counts)
    ]
    return SharerReplies(prompts, mask.sum(dim=1).tolist(), replies, counts)


def write_backgrounds(model: C2CModel, conversations: Sequence[Messages], style: T2TStyle) -> list[str]:
    """T2T stage 1: the sharer's background for each conversation's last user message (greedy)."""
    requests = [
        [{"role": "user", "content": style.request.replace("{question}", last_user_message(c))}] for c in conversations
    ]
    return sharer_replies(model, requests, max_new_tokens=style.max_new_tokens).replies


def t2t_conversation(conversation: Messages, background: str, style: T2TStyle) -> Messages:
    """T2T stage 2: the chat the receiver answers, `conversation` with the sharer's `background` in it."""
    question = last_user_message(conversation)
    if style.reading == "system":
        return [{"role": "system", "content": background.strip()}, *conversation]
    last = max(i for i, m in enumerate(conversation) if m["role"] == "user")
    return [
        *conversation[:last],
        *t2t_messages(background_prompt(question, style.request), background, question),
        *conversation[last + 1 :],
    ]


def last_user_message(conversation: Messages) -> str:
    """The content of the conversation's last user message; `ValueError` if it has none."""
    for message in reversed(conversation):
        if message["role"] == "user":
            return message["content"]
    raise ValueError("t2t needs a user message to ask the sharer about, and the conversation has none")


@torch.no_grad()
def generate_mode(
    model: C2CModel,
    mode: str,
    conversations: Sequence[Messages],
    *,
    t2t: T2TStyle = PAPER_T2T,
    clock: StageClock | None = None,
    enable_thinking: bool = False,
    control: FusionControl | None = None,
    sharer_conversations: Sequence[Messages] | None = None,
    **generate_kwargs: Any,
) -> ModeOutput:
    """Answer a batch of conversations in one mode.

    Args:
        model: The pair, with both tokenizers.
        mode: One of `MODES`.
        conversations: B conversations of `{"role", "content"}` messages (left-padded together).
        t2t: How the t2t mode asks for and reads background.
        clock: Gets the stages `prefill`, `sharer` (c2c: the sharer's prefill; t2t: stage 1), `fuse`
            and `decode`; a fresh one when None.
        enable_thinking: Passed to chat templates that use it (Qwen3).
        control: c2c only: fusion strength, layer subset and proportion (default plain C2C).
        sharer_conversations: c2c only: B conversations for the sharer to read instead (`sharer_messages`,
            docs/method.md §1.6); a row whose sharer conversation is its own is plain C2C.
        **generate_kwargs: Hugging Face `generate` arguments for the final decoding call
            (`max_new_tokens`, `do_sample`, `streamer`, `stopping_criteria`, ...).

    Returns:
        The generated ids and prompt lengths (`ModeOutput`).
    """
    check_mode(mode)
    if sharer_conversations is not None and mode != "c2c":
        raise ValueError(f"sharer_messages only apply to mode 'c2c', not {mode!r}")
    mode_tokenizer(model, mode)
    clock = clock or StageClock(model.device)
    conversations = list(conversations)
    backgrounds = None
    if mode == "sharer":
        ids, mask = sharer_encode(model, sharer_texts(model, conversations, enable_thinking=enable_thinking))
        generate_kwargs.setdefault("pad_token_id", pad_id(mode_tokenizer(model, "sharer")))
        with clock.stage("decode"):
            out = model.sharer.generate(input_ids=ids, attention_mask=mask, **generate_kwargs)
        return ModeOutput(out[:, ids.shape[1] :], mask.sum(dim=1).tolist())
    if mode == "t2t":
        with clock.stage("sharer"):
            backgrounds = write_backgrounds(model, conversations, t2t)
        conversations = [t2t_conversation(c, bg, t2t) for c, bg in zip(conversations, backgrounds)]
    sharers = None if sharer_conversations is None else list(sharer_conversations)
    inputs = model.encode(conversations, enable_thinking=enable_thinking, sharer_conversations=sharers)
    out = timed_generate(
        model, inputs, fuse=mode == "c2c", clock=clock, control=control if mode == "c2c" else None, **generate_kwargs
    )
    return ModeOutput(out[:, inputs.input_ids.shape[1] :], inputs.attention_mask.sum(dim=1).tolist(), backgrounds)


def reply_texts(
    model: C2CModel, mode: str, conversations: Sequence[Messages], *, t2t: T2TStyle = PAPER_T2T, **generate_kwargs: Any
) -> list[str]:
    """`generate_mode`'s replies as text: each row decoded up to its end of sequence, cut at the mode's
    stop strings and stripped."""
    out = generate_mode(model, mode, conversations, t2t=t2t, **generate_kwargs)
    tok = mode_tokenizer(model, mode)
    generator = model.sharer if mode == "sharer" else model.receiver
    counts = generated_lengths(out.new_tokens, generator.generation_config, tok)
    stops = mode_stop_strings(model, mode)
    return [
        cut_at_stops(typing.cast(str, tok.decode(row[:n], skip_special_tokens=True)), stops)
        for row, n in zip(out.new_tokens.tolist(), counts)
    ]
