"""Checks on a generation call's arguments, before any model runs: Hugging Face generation settings,
the prompt's length against the models' positions, and `sharer_messages` against `messages`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedModel

from .inputs import Messages, as_conversations

logger = logging.getLogger(__name__)


def check_generation_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse generation settings Hugging Face would accept silently or report without the fix.

    Raises:
        ValueError: `max_new_tokens` not a positive integer, `temperature` not > 0, `top_p` outside
            (0, 1] or `top_k` not a non-negative integer.
    """
    problems = []
    max_new = kwargs.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1):
        problems.append(
            f"max_new_tokens={max_new!r}: expected a positive integer (the most tokens to generate), e.g. 64"
        )
    temperature = kwargs.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not temperature > 0):
        problems.append(
            f"temperature={temperature!r}: expected a number > 0 (1.0 samples as trained; for greedy decoding, drop do_sample)"
        )
    top_p = kwargs.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p <= 1):
        problems.append(f"top_p={top_p!r}: expected a probability mass in (0, 1], e.g. 0.9 (1.0 keeps every token)")
    top_k = kwargs.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        problems.append(f"top_k={top_k!r}: expected an integer >= 0 (0 keeps every token)")
    if problems:
        raise ValueError("bad generation settings: " + "; ".join(problems))


def check_prompt_length(
    receiver: PreTrainedModel, sharers: Sequence[PreTrainedModel], length: int, max_new_tokens: Any
) -> None:
    """Refuse a prompt longer than either model's positions; warn when the answer would run past them.

    Args:
        receiver: The receiver.
        sharers: Every sharer.
        length: N, the prompt's tokens (padding included).
        max_new_tokens: The generation call's `max_new_tokens` (anything; only an int is checked).

    Raises:
        ValueError: The prompt is longer than a model's `max_position_embeddings`.
    """
    for role, model in (("receiver", receiver), *(("sharer", sharer) for sharer in sharers)):
        limit = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        if limit is None:
            continue
        name = getattr(model, "name_or_path", None) or model.config.model_type
        if length > limit:
            raise ValueError(
                f"the prompt is {length} tokens but the {role} {name!r} reads at most {limit} positions "
                "(max_position_embeddings); shorten the prompt"
            )
        if role == "receiver" and isinstance(max_new_tokens, int) and length + max_new_tokens > limit:
            logger.warning(
                "prompt (%d tokens) + max_new_tokens (%d) exceed the receiver's %d positions; tokens past them are unreliable",
                length, max_new_tokens, limit,
            )  # fmt: skip


def sharer_message_batch(
    messages: Messages | list[Messages] | str | None,
    sharer_messages: Messages | list[Messages] | str,
) -> list[Messages]:
    """`sharer_messages` as a batch of conversations, checked against `messages`.

    Raises:
        ValueError: No receiver messages (token ids instead), or a shape other than `messages`'.
    """
    if messages is None:
        raise ValueError(
            "sharer_messages needs chat messages for the receiver too; with token ids, pass sharer_input_ids instead"
        )
    conversations, single = as_conversations(messages)
    sharer_conversations, sharer_single = as_conversations(sharer_messages)
    if single != sharer_single or len(conversations) != len(sharer_conversations):
        raise ValueError(
            f"sharer_messages must have the shape of messages: got {len(sharer_conversations)} sharer "
            f"conversation(s) for {len(conversations)} receiver conversation(s); give one per conversation"
        )
    return sharer_conversations
