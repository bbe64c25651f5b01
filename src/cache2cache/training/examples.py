"""Training data, encoding: a conversation becomes a `TrainingExample` of token ids for both models.

`ExampleEncoder`: the instruction is every message but the last assistant turn; the loss falls only
on that turn (its content and end-of-turn tokens).
- Same tokenizer: the instruction is rendered with the receiver's template and the generation
  prompt, the whole conversation without it; the instruction and the rest of the text are tokenised
  separately, so the instruction ids are exactly what generation would see (also for templates
  whose generation prompt is not a prefix of the finished conversation, such as one that adds an
  empty think block only to the prompt). The sharer reads the receiver's ids; every prompt token is
  fused.
- Different tokenizers: `TokenAligner.align_messages` on the whole conversation; the prompt is every
  aligned position before the last message, the response the receiver's tokens from there on. Only
  message tokens of the prompt are fused.

A `TwoPromptConversation` (a record with `sharer_messages`) has the sharer's side of the prompt
encoded from its sharer prompt and laid out against the receiver's by `sharer_prompt.side_by_side`
(receiver filler where the sharer's prompt is longer; docs/method.md §1.6). The response and its
labels are the receiver conversation's.

Filtering (`ChatDataset`): conversations that cannot be trained on are dropped and counted by reason
(longer than `max_length`, no final assistant turn, nothing to fuse, ...); the counts are logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerBase

from ..chat import render_chat
from ..inputs import pad_id
from ..sharer_prompt import sharer_side, side_by_side
from .records import Conversation, SampleError, TwoPromptConversation

if TYPE_CHECKING:
    from ..alignment import TokenAligner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingExample:
    """One conversation, tokenized for both models.

    Attributes:
        prompt_ids: (P,) receiver ids of the instruction.
        prompt_mask: (P,) 1 on real receiver tokens (0 on the receiver's template padding).
        sharer_prompt_ids: (P,) sharer ids aligned 1:1 (the receiver's own ids for a shared tokenizer).
        sharer_prompt_mask: (P,) 1 on real sharer tokens.
        fusion_mask: (P,) True on prompt tokens to fuse.
        response_ids: (R,) receiver ids of the final assistant turn: the supervised tokens.
    """

    prompt_ids: list[int]
    prompt_mask: list[int]
    sharer_prompt_ids: list[int]
    sharer_prompt_mask: list[int]
    fusion_mask: list[bool]
    response_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


class ExampleEncoder:
    """Turns a conversation into a `TrainingExample` (see the module docstring).

    Args:
        receiver_tokenizer: The receiver's tokenizer (its chat template renders the prompt).
        aligner: The token aligner when the sharer's tokenizer differs; None when the sharer reads
            the receiver's ids.
        enable_thinking: Passed to chat templates that read it (Qwen3).
    """

    def __init__(
        self,
        receiver_tokenizer: PreTrainedTokenizerBase,
        aligner: TokenAligner | None = None,
        *,
        enable_thinking: bool = False,
    ) -> None:
        self.tokenizer = receiver_tokenizer
        self.aligner = aligner
        self.enable_thinking = enable_thinking
        self.prefix_mismatches = 0

    def encode(self, conversation: Conversation | TwoPromptConversation) -> TrainingExample:
        """Tokenize one conversation.

        Raises:
            SampleError: it does not end in a non-empty assistant turn after at least one other
                message, or leaves nothing to fuse or to supervise; a sharer prompt that is empty
                or ends in an assistant turn.
        """
        if isinstance(conversation, TwoPromptConversation):
            return self._encode_two_prompts(conversation)
        if len(conversation) < 2 or conversation[-1]["role"] != "assistant":
            raise SampleError(
                "no_final_assistant_turn", "the last message must be the assistant's answer, after the instruction"
            )
        if not conversation[-1]["content"].strip():
            raise SampleError("empty_answer", "the final assistant turn is empty")
        example = self._encode_aligned(conversation) if self.aligner is not None else self._encode_shared(conversation)
        if not example.response_ids:
            raise SampleError("empty_response", "the final assistant turn tokenised to nothing")
        if not any(example.fusion_mask[:-1]):
            # the last prompt token is never fused (the receiver runs it over the fused cache)
            raise SampleError("nothing_to_fuse", "no prompt token before the last one is in the fusion mask")
        return example

    def _encode_two_prompts(self, conversation: TwoPromptConversation) -> TrainingExample:
        """The receiver's example for `messages`, with the sharer's side of the prompt from `sharer_messages`."""
        sharer_messages = conversation.sharer_messages
        if not sharer_messages or sharer_messages[-1]["role"] == "assistant":
            raise SampleError(
                "sharer_messages_ends_in_answer",
                "sharer_messages is the sharer's prompt: drop its final assistant turn (the answer is the receiver's)",
            )
        example = self.encode(conversation.messages)
        sharer = sharer_side(
            self.tokenizer,
            self.aligner,
            sharer_messages,
            add_generation_prompt=True,
            enable_thinking=self.enable_thinking,
        )
        sharer_tok = self.aligner.sharer_tokenizer if self.aligner is not None else self.tokenizer
        row = side_by_side(
            (example.prompt_ids, example.prompt_mask),
            sharer,
            filler_id=pad_id(self.tokenizer),
            sharer_pad_id=pad_id(sharer_tok),
        )
        if not any(row.fusion_mask[:-1]):
            raise SampleError("nothing_to_fuse", "no prompt token before the last one is in the fusion mask")
        return TrainingExample(
            row.receiver_ids, row.receiver_mask, row.sharer_ids, row.sharer_mask, row.fusion_mask, example.response_ids
        )

    def _encode_shared(self, conversation: Conversation) -> TrainingExample:
        instruction = render_chat(
            self.tokenizer, conversation[:-1], add_generation_prompt=True, enable_thinking=self.enable_thinking
        )
        full = render_chat(
            self.tokenizer, conversation, add_generation_prompt=False, enable_thinking=self.enable_thinking
        )
        cut = len(instruction)
        if not full.startswith(instruction):
            # The template renders a finished answer turn differently from its generation prompt
            # (e.g. an empty think block only in the prompt). Keep the prompt exactly as generation
            # sees it and supervise the answer as the full rendering has it, from where the two part.
            cut = next(
                (i for i, (a, b) in enumerate(zip(instruction, full, strict=False)) if a != b),
                min(len(instruction), len(full)),
            )
            if not self.prefix_mismatches:
                logger.warning(
                    "the chat template's generation prompt ends in %r where the finished conversation has %r; "
                    "training on the generation prompt followed by the answer as rendered",
                    instruction[cut:][:40],
                    full[cut:][:40],
                )
            self.prefix_mismatches += 1
        prompt = self.tokenizer(instruction, add_special_tokens=False)["input_ids"]
        response = self.tokenizer(full[cut:], add_special_tokens=False)["input_ids"]
        ones = [1] * len(prompt)
        return TrainingExample(prompt, ones, prompt, ones, [True] * len(prompt), response)

    def _encode_aligned(self, conversation: Conversation) -> TrainingExample:
        assert self.aligner is not None
        seq = self.aligner.align_messages(
            conversation, add_generation_prompt=False, enable_thinking=self.enable_thinking
        )
        answer = seq.message_sections[-1]
        cut = answer.start
        response = [t for t, keep in zip(seq.receiver_ids[cut:], seq.receiver_mask[cut:], strict=True) if keep]
        return TrainingExample(
            seq.receiver_ids[:cut],
            seq.receiver_mask[:cut],
            seq.sharer_ids[:cut],
            seq.sharer_mask[:cut],
            seq.fusion_mask[:cut],
            response,
        )


class ChatDataset(Sequence[TrainingExample]):
    """Conversations that make valid training examples, encoded on access.

    Construction encodes every conversation once to measure it and drops those that fail or are
    longer than `max_length`; only the kept conversations and their lengths are stored, so a large
    corpus costs its text, not its token tensors.

    Args:
        conversations: Chat conversations.
        encoder: How to tokenize them.
        max_length: Longest kept example, in tokens (prompt + response, after alignment).
        name: For the log line ("train", "eval").
    """

    def __init__(
        self,
        conversations: Sequence[Conversation | TwoPromptConversation],
        encoder: ExampleEncoder,
        max_length: int,
        *,
        name: str = "data",
    ) -> None:
        self.encoder = encoder
        self.conversations: list[Conversation | TwoPromptConversation] = []
        self.lengths: list[int] = []
        self.dropped: Counter[str] = Counter()
        for conversation in conversations:
            try:
                length = len(encoder.encode(conversation))
            except SampleError as err:
                self.dropped[err.reason] += 1
                continue
            if length > max_length:
                self.dropped[f"longer_than_{max_length}"] += 1
                continue
            self.conversations.append(conversation)
            self.lengths.append(length)
        total = len(conversations)
        if self.dropped:
            logger.info("%s: kept %d of %d conversations; dropped %s", name, len(self), total, dict(self.dropped))
        else:
            logger.info("%s: kept all %d conversations", name, total)

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, index: int) -> TrainingExample:  # type: ignore[override]
        return self.encoder.encode(self.conversations[index])

    @property
    def num_tokens(self) -> int:
        """Tokens over all kept examples (prompt + response)."""
        return sum(self.lengths)
