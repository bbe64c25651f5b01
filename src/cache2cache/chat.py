"""Rendering chat messages to prompt text, with each tokenizer's own chat template.

Tokenizers without a chat template (base models such as Gemma-3-270M) use a plain-text fallback:
one line `"{role}: {content}"` per message, and `"assistant:"` as the generation prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

PLAIN_LINE = "{role}: {content}\n"
PLAIN_GENERATION_PROMPT = "assistant:"


def render_plain(messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True) -> str:
    """The plain-text fallback prompt for tokenizers without a chat template (base models).

    One line `"{role}: {content}\\n"` per message, then `"assistant:"` when `add_generation_prompt`.

    Example:
        >>> render_plain([{"role": "user", "content": "Hi"}])
        'user: Hi\\nassistant:'
    """
    text = "".join(PLAIN_LINE.format(role=m["role"], content=m["content"]) for m in messages)
    return text + (PLAIN_GENERATION_PROMPT if add_generation_prompt else "")


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool | None = None,
) -> str:
    """`messages` rendered with `tokenizer`'s own chat template, or `render_plain` if it has none.

    Args:
        tokenizer: Whose template to use.
        messages: `{"role", "content"}` dicts.
        add_generation_prompt: Append the assistant turn header.
        enable_thinking: Passed only to templates that mention `enable_thinking` (Qwen3); None
            passes nothing.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return render_plain(messages, add_generation_prompt=add_generation_prompt)
    extra = {}
    if enable_thinking is not None and "enable_thinking" in str(template):
        extra["enable_thinking"] = enable_thinking
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **extra
    )
