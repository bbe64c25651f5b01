"""Token alignment, per side: where each message sits in one model's rendered chat prompt.

`encode_side` renders a conversation with one side's chat template, tokenises it with offsets and
turns each message content's character span (`locate_contents`) into a token range, so
`section_bounds` can cut the side into alternating template/message sections (template 0, message 0,
..., message k-1, template k). `alignment.TokenAligner` pairs the two sides' sections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from .chat import render_chat

logger = logging.getLogger(__name__)

Messages = list[dict[str, Any]]

_ANCHOR_CHARS = 16  # template characters on each side of a message used to disambiguate matches


class AlignmentError(ValueError):
    """The receiver's and sharer's renderings of a conversation cannot be cut into matching sections."""


@dataclass(frozen=True)
class RenderedSide:
    """One side's tokenised rendering: ids and the token range `[a, b)` of each message."""

    text: str
    ids: list[int]
    ranges: list[tuple[int, int]]
    offsets: list[tuple[int, int]]

    def token_text(self, i: int) -> str:
        """The rendered text that token i covers."""
        start, end = self.offsets[i]
        return self.text[start:end]


def encode_side(
    side: str,
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    add_generation_prompt: bool,
    enable_thinking: bool | None,
) -> RenderedSide:
    """Render and tokenise one side, and turn each message's character span into a token range."""

    def render(msgs: Messages) -> str:
        try:
            return render_chat(
                tokenizer, msgs, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
            )
        except Exception as e:  # a template's own error (raise_exception, bad roles) gets the side named
            raise AlignmentError(f"the {side}'s chat template failed to render the conversation: {e}") from e

    text, spans = locate_contents(render, messages, side)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    ranges = []
    lo = 0
    for start, end in spans:
        a = lo
        if start == end:  # empty content: an empty range before the first token at or after it
            while a < len(offsets) and offsets[a][0] < start:
                a += 1
            b = a
        else:  # every token overlapping the span; one straddling the boundary goes with the message
            while a < len(offsets) and offsets[a][1] <= start:
                a += 1
            b = a
            while b < len(offsets) and offsets[b][0] < end:
                b += 1
        ranges.append((a, b))
        lo = b
    return RenderedSide(text, list(enc["input_ids"]), ranges, [tuple(o) for o in offsets])


def section_bounds(side: RenderedSide) -> list[tuple[int, int]]:
    """Token ranges of the 2k+1 alternating template/message sections of one side."""
    cuts = [0] + [i for r in side.ranges for i in r] + [len(side.ids)]
    return list(zip(cuts[:-1], cuts[1:]))


def locate_contents(
    render: Callable[[Messages], str], messages: Messages, side: str
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and each message content's character span `[start, end)` in it, in order.

    The conversation is rendered a second time with every content replaced by a unique
    placeholder; the text between placeholders is the template's own text. If the real rendering
    is exactly that text with the contents put back (the template inserts content verbatim), the
    spans are exact. Otherwise each content, or its stripped form (templates that trim), is
    searched after the previous match, preferring a match whose neighbours agree with the template
    text around its placeholder (a content equal to a role name is not confused with the role
    header), then the earliest.
    """
    text = render(messages)
    marks = [f"\u27e6c2c-message-{i}\u27e7" for i in range(len(messages))]
    skeleton = render([{**m, "content": mark} for m, mark in zip(messages, marks)])
    pieces = []
    cursor = 0
    for i, mark in enumerate(marks):
        at = skeleton.find(mark, cursor)
        if at < 0:
            raise AlignmentError(_missing(messages, i, side, "its chat template drops or reorders it"))
        pieces.append(skeleton[cursor:at])
        cursor = at + len(mark)
    pieces.append(skeleton[cursor:])

    contents = [m["content"] for m in messages]
    spans = []
    pos = 0
    for piece, content in zip(pieces, contents):
        pos += len(piece)
        spans.append((pos, pos + len(content)))
        pos += len(content)
    if "".join(p + c for p, c in zip(pieces, contents + [""])) == text:
        return text, spans

    logger.debug("the %s's template does not insert content verbatim; locating messages by anchored search", side)
    spans = []
    cursor = 0
    for i, content in enumerate(contents):
        before, after = pieces[i][-_ANCHOR_CHARS:], pieces[i + 1][:_ANCHOR_CHARS]
        best: tuple[int, int, int] | None = None  # (-score, start, end): higher score, then earliest
        for variant in dict.fromkeys((content, content.strip())):
            at = text.find(variant, cursor)
            while at >= 0:
                end = at + len(variant)
                score = int(text.endswith(before, 0, at)) + int(text.startswith(after, end))
                if best is None or (-score, at) < best[:2]:
                    best = (-score, at, end)
                if score == 2:
                    break
                at = text.find(variant, at + 1)
        if best is None:
            raise AlignmentError(_missing(messages, i, side, "its chat template rewrites the content"))
        spans.append(best[1:])
        cursor = best[2]
    return text, spans


def _missing(messages: Messages, i: int, side: str, why: str) -> str:
    content = messages[i]["content"]
    return (
        f"message {i} (role {messages[i]['role']!r}, content {content[:40]!r}{'...' if len(content) > 40 else ''}) "
        f"is not in the {side}'s rendered prompt ({why}), so the receiver and sharer sequences cannot be cut "
        "into the same template/message sections. Fix: merge or drop that message before aligning (e.g. fold "
        "a system prompt into the first user message), or give that tokenizer a chat template that renders "
        "every message's content verbatim."
    )
