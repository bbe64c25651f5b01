"""Rendering chat messages to prompt text, with each tokenizer's own chat template.

Tokenizers without a chat template (base models such as Gemma-3-270M) use a plain-text fallback:
one line `"{role}: {content}"` per message, and `"assistant:"` as the generation prompt.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

PLAIN_LINE = "{role}: {content}\n"
PLAIN_GENERATION_PROMPT = "assistant:"


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    enable_thinking: bool = False,
) -> str:
    """The prompt text for `messages` under `tokenizer`'s chat template (or the plain fallback).

    Args:
        tokenizer: Whose template to use.
        messages: `{"role", "content"}` dicts.
        add_generation_prompt: Append the assistant turn header.
        enable_thinking: Passed to templates that read it (Qwen3); ignored by the others.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
    text = "".join(PLAIN_LINE.format(role=m["role"], content=m["content"]) for m in messages)
    return text + (PLAIN_GENERATION_PROMPT if add_generation_prompt else "")
